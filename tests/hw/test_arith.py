"""The popcount of hw/common/arith.py: exact counts, exactly popcount_stages cycles late."""

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator

from nnaccel.hw.common.arith import pipelined_popcount, popcount_stages


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 16, 37, 100])
def test_popcount_counts_every_cycle(n):
    """A new random word every cycle (all ones and all zeros among them); the count of the
    word of cycle ``t`` appears at cycle ``t + popcount_stages(n)``."""
    m = Module()
    bits = Signal(n)
    total, stages = pipelined_popcount(m, [bits[j] for j in range(n)], "pc")
    assert stages == popcount_stages(n)
    rng = np.random.default_rng(n)
    words = [0, (1 << n) - 1] + [int(v) for v in rng.integers(0, 1 << min(n, 62), size=30)]
    if n > 62:
        words += [int(rng.integers(0, 2)) << (n - 1) | (1 << (n - 2)) for _ in range(4)]
    got = []

    async def bench(ctx):
        for cycle in range(len(words) + stages):
            if cycle < len(words):
                ctx.set(bits, words[cycle])
            await ctx.tick()
            if cycle + 1 >= stages:
                got.append(ctx.get(total))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got[:len(words)] == [bin(w).count("1") for w in words]
