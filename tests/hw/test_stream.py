"""Stream blocks under random stalls: skid buffer, FIFO, gearbox."""

import gc

import numpy as np
import pytest
from amaranth import signed, unsigned

from nnaccel.hw.common.stream import Gearbox, SkidBuffer, StreamFifo
from nnaccel.sim.amsim import STALL_PATTERNS, run_stream_test


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("block", ["skid", "fifo2", "fifo17"])
def test_order_preserved(block, pattern):
    rng = np.random.default_rng(3)
    items = [int(v) for v in rng.integers(0, 1 << 12, 60)]
    dut = SkidBuffer(unsigned(12)) if block == "skid" else StreamFifo(unsigned(12),
                                                                      int(block[4:]))
    (out,) = run_stream_test(dut, [(dut.i_data, items)], [(dut.o_data, len(items))],
                             pattern=pattern, seed=7)
    assert out == items


def _beats(vectors, n, pad=0):
    """Split each vector into beats of n elements; the tail of the last beat is ``pad``."""
    beats = []
    for v in vectors:
        for b in range(0, len(v), n):
            chunk = [int(x) for x in v[b:b + n]]
            beats.append((chunk + [pad] * (n - len(chunk)), len(chunk)))
    return beats


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("n_in,n_out,count", [
    (4, 2, 10), (4, 1, 7), (6, 3, 6), (2, 6, 11), (1, 4, 9), (3, 9, 10), (5, 5, 13),
    (8, 4, 1), (1, 8, 1),
    (2, 8, 16), (2, 8, 15), (1, 3, 6),  # whole output beats: the chunks shift in
])
def test_gearbox(n_in, n_out, count, pattern):
    rng = np.random.default_rng(n_in * 100 + n_out * 10 + count)
    vectors = [list(rng.integers(-16, 16, count)) for _ in range(5)]
    dut = Gearbox(signed(5), n_in=n_in, n_out=n_out, count=count)
    inp = [beat for beat, _ in _beats(vectors, n_in, pad=-3)]
    want = _beats(vectors, n_out)
    (out,) = run_stream_test(dut, [(dut.i_data, inp)], [(dut.o_data, len(want))],
                             pattern=pattern, seed=count)
    for got, (exp, real) in zip(out, want, strict=True):
        assert [int(x) for x in list(got)[:real]] == exp[:real]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_gearbox_rejects_incompatible_widths():
    with pytest.raises(ValueError, match="divide one another"):
        Gearbox(unsigned(3), n_in=4, n_out=6, count=12)
    with pytest.raises(ValueError, match="n_in must be a positive integer"):
        Gearbox(unsigned(3), n_in=0, n_out=6, count=12)
    gc.collect()  # let amaranth's unused-component warning fire here, where it is ignored
