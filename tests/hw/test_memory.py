"""Rom: a block RAM's read-port behaviour (data ``latency`` cycles after a read, held while
``en`` is low) in every storage, with and without the output register; issue_order_read."""

import numpy as np
import pytest
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nnaccel.hw.common.memory import Rom, Storage, issue_order_read


@pytest.mark.parametrize("storage", [Storage.BRAM, Storage.LOGIC])
@pytest.mark.parametrize("registered", [False, True])
def test_rom_reads_like_a_block_ram_port(storage, registered):
    rng = np.random.default_rng(hash((storage.value, registered)) % 2**32)
    words = rng.integers(0, 2**11, 37).tolist()
    dut = Rom(words, 11, storage=storage, registered=registered)
    assert dut.latency == (2 if registered else 1)
    addrs = rng.integers(0, len(words), 300).tolist()
    ens = (rng.random(300) < 0.6).tolist()

    # the model: a pipeline of `latency` stages, each loaded when the stage before it was read
    async def bench(ctx):
        stages = [None] * dut.latency  # word entering each stage, None: stage not loaded
        held = None
        for addr, en in zip(addrs, ens, strict=True):
            ctx.set(dut.addr, addr)
            ctx.set(dut.en, en)
            await ctx.tick()
            # one clock: the newest read enters, the oldest comes out
            stages = [words[addr] if en else None] + stages[:-1]
            if stages[-1] is not None:
                held = stages[-1]
            if held is not None:
                assert ctx.get(dut.data) == held

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()



class _Reader(wiring.Component):
    """A :class:`Rom` read by :func:`issue_order_read` (``gated``: with a clock enable)."""

    def __init__(self, words, storage, extra, gated):
        self.words, self.storage, self.extra, self.gated = words, storage, extra, gated
        #: what issue_order_read returns, known after elaboration
        self.stages = 3 if extra else 2
        super().__init__({"issue": In(1), "en": In(1), "word": Out(11)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.rom = rom = Rom(self.words, 11, storage=self.storage)
        word, stages = issue_order_read(m, rom, self.issue, en=self.en if self.gated else None,
                                        extra=self.extra)
        assert stages == self.stages
        m.d.comb += self.word.eq(word)
        return m


@pytest.mark.parametrize("storage", [Storage.BRAM, Storage.LOGIC])
@pytest.mark.parametrize("extra", [False, True])
@pytest.mark.parametrize("gated", [False, True])
def test_issue_order_read_gives_each_issue_its_word(storage, extra, gated):
    """Words in order, one per issue, wrapping (7 words, not a power of two), each reaching the
    output ``stages`` loads of the enable after its issue, under random issues and enables."""
    rng = np.random.default_rng(hash((storage.value, extra, gated)) % 2**32)
    words = rng.integers(0, 2**11, 7).tolist()
    dut = _Reader(words, storage, extra, gated)
    ens = (rng.random(400) < (0.7 if gated else 1)).tolist()
    issues = [en and bool(b) for en, b in zip(ens, rng.random(400) < 0.6, strict=True)]
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
    assert len(checked) > 100
