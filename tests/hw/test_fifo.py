"""StreamFifo against a deque, cycle by cycle, under random valid/ready stalls.

Every cycle checks what the FIFO promises exactly (``hw/common/stream.py``): each output beat is
the oldest beat inside (none lost, duplicated or reordered); ``o_data.valid`` is high exactly
when the oldest beat inside came in at least ``latency`` cycles ago (so no bubble: a full-rate
producer and consumer see one beat per cycle); ``i_data.ready`` exactly while fewer than
``capacity`` beats are inside; and neither depends on the other side's handshake in the same
cycle (both are registers).
"""

import gc
from collections import deque

import numpy as np
import pytest
from amaranth import unsigned
from amaranth.sim import Simulator

from nnaccel.hw.common.stream import StreamFifo, fifo_in_block_ram

WIDTH = 10


def _run(dut, p_in, p_out, cycles, seed):
    """Drive ``dut`` for ``cycles`` cycles with a producer offering a beat with probability
    ``p_in`` and a consumer ready with probability ``p_out``; returns (beats in, beats out,
    most beats inside at once)."""
    rng = np.random.default_rng(seed)
    i, o = dut.i_data, dut.o_data
    stats = {"in": 0, "out": 0, "most": 0}

    async def bench(ctx):
        inside = deque()  # (payload, cycle it came in)
        for cycle in range(cycles):
            offer, take = rng.random() < p_in, rng.random() < p_out
            word = int(rng.integers(0, 1 << WIDTH))
            ctx.set(i.payload, word)
            # registered handshakes: flipping the other side's signal changes nothing now
            ctx.set(i.valid, not offer)
            ctx.set(o.ready, not take)
            flipped = (ctx.get(i.ready), ctx.get(o.valid))
            ctx.set(i.valid, offer)
            ctx.set(o.ready, take)
            ready, valid = ctx.get(i.ready), ctx.get(o.valid)
            assert (ready, valid) == flipped, f"cycle {cycle}: combinational handshake"
            assert ready == (len(inside) < dut.capacity), f"cycle {cycle}: ready {ready}"
            due = bool(inside) and inside[0][1] <= cycle - dut.latency
            assert valid == due, f"cycle {cycle}: valid {valid}, inside {list(inside)}"
            if valid and take:
                assert ctx.get(o.payload) == inside.popleft()[0], f"cycle {cycle}: payload"
                stats["out"] += 1
            if offer and ready:
                inside.append((word, cycle))
                stats["in"] += 1
            stats["most"] = max(stats["most"], len(inside))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return stats


#: (depth, block_ram): distributed RAM (one stage) and block RAM (two), the smallest depths,
#: depths that wrap the memory's pointers at odd and power-of-two sizes.
SHAPES = [(1, False), (2, False), (3, False), (4, False), (7, False), (16, False),
          (1, True), (3, True), (4, True), (5, True), (9, True), (32, True)]


@pytest.mark.parametrize("depth,block_ram", SHAPES)
@pytest.mark.parametrize("p_in,p_out", [(0.5, 0.5), (0.9, 0.3), (0.3, 0.9), (0.8, 0.8)])
def test_random_stalls(depth, block_ram, p_in, p_out):
    dut = StreamFifo(unsigned(WIDTH), depth, block_ram=block_ram)
    stats = _run(dut, p_in, p_out, 400, seed=depth * 7 + int(p_in * 10) + int(p_out * 100))
    assert stats["out"] > 50


@pytest.mark.parametrize("depth,block_ram", SHAPES)
def test_full_rate_and_latency(depth, block_ram):
    """A producer and consumer that never stall: one beat per cycle after ``latency``."""
    dut = StreamFifo(unsigned(WIDTH), depth, block_ram=block_ram)
    assert dut.latency == (3 if block_ram else 2)
    stats = _run(dut, 1.0, 1.0, 100, seed=1)
    assert stats["in"] == 100
    assert stats["out"] == 100 - dut.latency
    assert stats["most"] == dut.latency


@pytest.mark.parametrize("depth,block_ram", SHAPES)
def test_capacity(depth, block_ram):
    """A consumer that takes nothing: the FIFO fills to its capacity, ``depth`` or more."""
    dut = StreamFifo(unsigned(WIDTH), depth, block_ram=block_ram)
    assert dut.capacity == max(depth, dut.stages + 2)
    stats = _run(dut, 1.0, 0.0, 3 * depth + 10, seed=2)
    assert stats["in"] == stats["most"] == dut.capacity
    # then drains in order at full rate (random stalls cover the mix)
    stats = _run(StreamFifo(unsigned(WIDTH), depth, block_ram=block_ram), 1.0, 0.97, 200, 3)
    assert stats["out"] > 150


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_block_ram_choice():
    """Block RAM (two stages) where memory_libmap would put the memory there: deep, wide."""
    assert not fifo_in_block_ram(16, 64)    # one distributed RAM cell per 4 bits
    assert not fifo_in_block_ram(3, 8)      # flip-flops
    assert fifo_in_block_ram(512, 36)
    assert fifo_in_block_ram(100, 64)
    assert StreamFifo(unsigned(64), 300).stages == 2
    assert StreamFifo(unsigned(64), 8).stages == 1
    gc.collect()  # let amaranth's unused-component warning fire here, where it is ignored
