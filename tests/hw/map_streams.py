"""Shared by the window and pool tests: random feature maps and a stream run that records the
cycle of every transfer (on top of sim/amsim.py's source and sink)."""

import random

import numpy as np
from amaranth import Module, Signal
from amaranth.sim import Simulator

from nnaccel.hw.common.dtype import DType, DTypeKind
from nnaccel.sim.amsim import receive, send

__all__ = ["random_map", "simulate"]


def random_map(rng, dtype, channels, height, width):
    """A (C, H, W) map of random values of ``dtype`` (its extremes included)."""
    dtype = DType.parse(dtype) if isinstance(dtype, str) else dtype
    shape = (channels, height, width)
    if dtype.kind is DTypeKind.BIPOLAR:
        return rng.choice(np.array([-1, 1]), size=shape)
    x = rng.integers(dtype.lo, dtype.hi + 1, size=shape)
    flat = x.reshape(-1)
    flat[rng.integers(0, flat.size)] = dtype.lo
    flat[rng.integers(0, flat.size)] = dtype.hi
    return x


def simulate(dut, beats, count, *, pattern, seed=0, timeout=50_000):
    """Send ``beats`` into ``dut.i_data`` and take ``count`` beats from ``dut.o_data`` under the
    stall ``pattern``; both sides must finish (a unit that leaves input unread fails).

    Returns ``(outputs, in_cycles, out_cycles)``: the output payloads as lists of ints and the
    cycle of every input and output transfer.
    """
    top = Module()
    top.submodules.dut = dut
    cycle = Signal(32)
    top.d.sync += cycle.eq(cycle + 1)
    sim = Simulator(top)
    sim.add_clock(1e-6)
    got, in_cycles, out_cycles, sent = [], [], [], []

    async def source(ctx):
        await send(ctx, dut.i_data, beats, idle=pattern.idle, rng=random.Random(seed))
        sent.append(True)

    async def sink(ctx):
        got.extend(await receive(ctx, dut.o_data, count, stall=pattern.stall,
                                 rng=random.Random(seed + 1), timeout=timeout))
        for _ in range(timeout):
            if sent:
                break
            await ctx.tick()
        else:
            raise TimeoutError(f"{len(in_cycles)} of {len(beats)} input beats were taken")

    async def monitor(ctx):
        async for _clk, _rst, now, iv, ir, ov, orr in ctx.tick().sample(
                cycle, dut.i_data.valid, dut.i_data.ready, dut.o_data.valid, dut.o_data.ready):
            if iv and ir:
                in_cycles.append(now)
            if ov and orr:
                out_cycles.append(now)

    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.add_process(monitor)
    sim.run()
    outputs = [[int(e) for e in beat] for beat in got]
    return outputs, in_cycles, out_cycles
