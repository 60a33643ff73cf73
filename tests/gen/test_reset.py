"""A reset in the middle of a stream (issue 17): after it, the generated design computes the
next vectors exactly, as if it had just come out of power-on reset.

Each case streams part of some vectors into a generated design while its output is held back
(so FIFOs, line buffers, folds and output stages are all mid-vector), asserts the synchronous
reset for a few cycles, then streams whole fresh vectors under random idle and back-pressure and
compares every output with ``Model.forward``. Cases: an MLP with several folds per layer, a CNN
chain (window unit, MVU, pool) and a residual graph (fork, join).
"""

import random

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import DomainReset, Simulator

from nnaccel.gen.engines.base import to_stream
from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Options
from nnaccel.sim.amsim import STALL_PATTERNS, receive, send
from nnaccel.sim.packing import pack, unpack

from .cnn_models import random_cnn, tiny_res
from .random_models import random_model
from .test_network import axis_ports


def _mlp():
    return random_model(np.random.default_rng(3), name="mlp", layers=2, sizes=(12, 9, 5)), \
        Options(max_lanes=6)


CASES = {
    "mlp": _mlp,
    "cnn": lambda: (random_cnn(2), Options(max_lanes=16)),
    "residual": lambda: (tiny_res(), Options(max_lanes=16)),
}


def _beats(model, design, X):
    ins = design.manifest["io"]["input"]
    bits = model.input_dtype.encode(to_stream(X, model.input_shape))
    return pack(bits, ins["elements_per_beat"], ins["bits_per_element"])


def _decode(model, design, got, count):
    outs = design.manifest["io"]["output"]
    width = outs["elements_per_beat"] * outs["bits_per_element"]
    data = [int(v) & ((1 << width) - 1) for v in got]
    flat = model.output_dtype.decode(unpack(data, count, outs["elements"],
                                            outs["elements_per_beat"], outs["bits_per_element"]))
    y = np.asarray(flat).reshape(count, -1)
    if len(model.out_shape) == 3:
        c, h, w = model.out_shape
        y = y.reshape(count, h, w, c).transpose(0, 3, 1, 2)
    return y.reshape(count, *model.out_shape)


def _inputs(rng, model, count):
    dt = model.input_dtype
    if dt.lo == -1 and dt.hi == 1 and dt.bits == 1:
        return rng.choice([-1, 1], size=(count, *model.input_shape))
    return rng.integers(dt.lo, dt.hi, size=(count, *model.input_shape), endpoint=True)


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_reset_mid_stream_then_exact(name, pattern):
    model, options = CASES[name]()
    design = generate(model, options)
    rng = np.random.default_rng(11)
    junk = _beats(model, design, _inputs(rng, model, 3))
    X = _inputs(rng, model, 3)
    beats = _beats(model, design, X)
    per_vector = len(junk) // 3
    cut = per_vector + per_vector // 2 + 1          # one and a half vectors, then reset
    out_beats = design.manifest["io"]["output"]["beats"] * len(X)
    src, sink_if = axis_ports(design.top)
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.dut = design.top
    sim = Simulator(top)
    sim.add_clock(1e-6)
    state = {"reset_done": False, "early": 0, "got": None, "accepted": 0}

    async def source(ctx):
        # Junk beats by the stream rules (valid and payload held until taken) until the
        # design stops taking them (its output is held back) or one and a half vectors are in;
        # then valid drops in the very cycle the reset rises.
        waited = 0
        for payload in junk[:cut]:
            ctx.set(src.valid, 1)
            ctx.set(src.payload, payload)
            ready = 0
            while not ready and waited < 2000:
                _, _, ready = await ctx.tick().sample(src.ready)
                waited += not ready
            if not ready:
                break
            state["accepted"] += 1
        for _ in range(5000):             # until an output waits at the held-back sink
            if state["early"]:
                break
            await ctx.tick()
        ctx.set(src.valid, 0)
        ctx.set(domain.rst, 1)
        for _ in range(3):
            try:
                await ctx.tick()
            except DomainReset:          # amaranth tells a testbench that the domain reset
                pass
        ctx.set(domain.rst, 0)
        await ctx.tick()
        state["reset_done"] = True
        await send(ctx, src, beats, idle=pattern.idle, rng=random.Random(5))

    async def drain(ctx):
        ctx.set(sink_if.ready, 0)                  # hold every output back before the reset
        while not state["reset_done"]:
            try:
                _, _, valid = await ctx.tick().sample(sink_if.valid)
                state["early"] += int(valid)
            except DomainReset:
                pass
        state["got"] = await receive(ctx, sink_if, out_beats, stall=pattern.stall,
                                     rng=random.Random(6), timeout=60_000)

    sim.add_testbench(source, background=True)
    sim.add_testbench(drain)
    sim.run()
    assert state["accepted"] > per_vector, "the reset did not come in mid-stream"
    assert state["early"] > 0, "the design had no output pending at the reset"
    got = _decode(model, design, state["got"], len(X))
    assert got.tolist() == np.asarray(model.forward(X)).tolist()
