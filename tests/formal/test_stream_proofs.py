"""Formal proofs of the stream rules for SkidBuffer, StreamFifo and Gearbox (docs/FORMAL.md).

Each proof runs once on the real block (it must pass) and once per broken variant (it must
fail), so a proof that holds whatever the hardware does would be noticed.
"""

import functools

import pytest
from amaranth.hdl import unsigned

from nnaccel.hw.common.stream import Gearbox, SkidBuffer, StreamFifo

from .harness import Mutant, run_sby, valid_depends_on_ready
from .streams import BufferProof, PackProof, SplitProof, fifo_view, skid_view

ELEM = unsigned(3)


def skid(mutant=None, data=True):
    return BufferProof(SkidBuffer(ELEM), depth=2, view=skid_view, data=data, mutant=mutant)


def fifo(mutant=None, data=False, depth=3):
    return BufferProof(StreamFifo(ELEM, depth), depth=depth, view=fifo_view, data=data,
                       mutant=mutant)


def split(mutant=None, count=5):
    return SplitProof(Gearbox(unsigned(2), n_in=4, n_out=2, count=count), mutant=mutant)


def pack(mutant=None):
    return PackProof(Gearbox(unsigned(2), n_in=2, n_out=6, count=7), mutant=mutant)


#: (proof factory, mode, depth): k-induction where it closes, else bounded from reset.
PROOFS = {
    "skid": (skid, "prove", 6),
    "fifo_count": (fifo, "prove", 8),
    "fifo_data": (functools.partial(fifo, data=True), "bmc", 10),
    "gearbox_split": (split, "prove", 6),
    # every input beat whole: the device keeps no beat counter
    "gearbox_split_whole": (functools.partial(split, count=6), "prove", 6),
    "gearbox_pack": (pack, "prove", 6),
}


def mutated(kind):
    return functools.partial(Mutant, kind=kind)


@pytest.mark.parametrize("name", PROOFS)
def test_proof_passes(name, tmp_path):
    factory, mode, depth = PROOFS[name]
    result = run_sby(factory(), tmp_path, mode=mode, depth=depth)
    assert result.status == "PASS", result.log[-3000:]


@pytest.mark.slow  # a few minutes: each BMC step of the FIFO's memory costs more
def test_fifo_data_deeper(tmp_path):
    result = run_sby(fifo(data=True), tmp_path, mode="bmc", depth=14)
    assert result.status == "PASS", result.log[-3000:]


@pytest.mark.parametrize("name", PROOFS)
def test_valid_never_waits_for_ready(name, tmp_path):
    factory, _mode, _depth = PROOFS[name]
    assert not valid_depends_on_ready(factory(), tmp_path)
    assert valid_depends_on_ready(factory(mutated("valid_waits")), tmp_path / "broken")


@pytest.mark.parametrize("kind", ["drop", "unstable", "stale"])
@pytest.mark.parametrize("name", PROOFS)
def test_broken_variant_fails(name, kind, tmp_path):
    factory, mode, depth = PROOFS[name]
    result = run_sby(factory(mutated(kind)), tmp_path, mode=mode, depth=depth)
    assert result.status == "FAIL", result.log[-3000:]
