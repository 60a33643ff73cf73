"""Rom: a block RAM's read-port behaviour (data ``latency`` cycles after a read, held while
``en`` is low) in every storage, with and without the output register."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from nnaccel.hw.common.memory import Rom, Storage


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

