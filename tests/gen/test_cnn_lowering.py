"""Convolutional chains lowered onto the window unit, the MVU and the pooling units, in
amaranth.sim, bit-exact against ``Model.forward`` under the four stall patterns.

Models: tests/gen/cnn_models.py's ``random_cnn(seed)`` chains (odd maps, C = 1, 1x1 and
non-square kernels up to 5, strides 1..3, dilations 1..2, asymmetric padding, bipolar maps padded
with -1 or +1, pools whose windows do not divide the map, global pooling, flatten into linear),
the seeds whose convolutions all have groups = 1 (grouped ones need the vector-vector unit), and
a few hand-written chains. Maps travel in HWC order: the test packs each input (C, H, W) as its
HWC stream and unpacks a feature-map output back.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from nnaccel.gen.engines.base import to_stream
from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Options
from nnaccel.sim.amsim import STALL_PATTERNS, run_stream_test, send
from nnaccel.sim.packing import pack, unpack

from .cnn_models import random_cnn, random_cnn_doc
from .test_network import axis_ports


def dense_seeds(count, start=0):
    """The first ``count`` seeds from ``start`` whose random_cnn has no grouped convolution."""
    out, seed = [], start
    while len(out) < count:
        doc, _ = random_cnn_doc(seed)
        if all(spec.get("groups", 1) == 1 for spec in doc["layers"]):
            out.append(seed)
        seed += 1
    return out


SEEDS = dense_seeds(12)


def inputs(rng, model, count):
    dt = model.input_dtype
    shape = (count, *model.input_shape)
    if dt.kind.value == "bipolar":
        return rng.choice([-1, 1], size=shape)
    return rng.integers(dt.lo, dt.hi, size=shape, endpoint=True)


def run_design(design, X, pattern, seed=0):
    """Outputs of ``X`` (B, *input_shape) through the design's AXI top, as (B, *out_shape)."""
    model = design.plan.model
    io = design.manifest["io"]
    ins, outs = io["input"], io["output"]
    bits = model.input_dtype.encode(to_stream(X, model.input_shape))
    beats = pack(bits, ins["elements_per_beat"], ins["bits_per_element"])
    src, sink = axis_ports(design.top)
    (got,) = run_stream_test(design.top, [(src, beats)], [(sink, len(X) * outs["beats"])],
                             pattern=pattern, seed=seed, timeout=50_000)
    width = outs["elements_per_beat"] * outs["bits_per_element"]
    data = [int(v) & ((1 << width) - 1) for v in got]
    lasts = [int(v) >> width for v in got]
    flat = model.output_dtype.decode(unpack(data, len(X), outs["elements"],
                                            outs["elements_per_beat"],
                                            outs["bits_per_element"]))
    shape = model.out_shape
    y = np.asarray(flat).reshape(len(X), -1)
    if len(shape) == 3:
        c, h, w = shape
        y = y.reshape(len(X), h, w, c).transpose(0, 3, 1, 2)
    return y.reshape(len(X), *shape), lasts


def check(design, X, pattern, seed=0):
    model = design.plan.model
    y, lasts = run_design(design, X, pattern, seed)
    assert y.tolist() == np.asarray(model.forward(X)).tolist()
    beats = design.manifest["io"]["output"]["beats"]
    assert lasts == ([0] * (beats - 1) + [1]) * len(X)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_cnn_bit_exact(seed):
    model = random_cnn(seed)
    design = generate(model, Options(max_lanes=int(np.random.default_rng(seed).integers(4, 40))))
    rng = np.random.default_rng(seed + 1000)
    for n, pattern in enumerate(STALL_PATTERNS):
        check(design, inputs(rng, model, 2), pattern, seed=seed * 4 + n)


#: Images per back-to-back run; the first WARMUP outputs are left out of the rate.
IMAGES, WARMUP, TOLERANCE = 6, 2, 0.05


def run_back_to_back(design, X):
    """Inputs back to back, no backpressure: the cycle of each image's last output beat, and
    the largest number of beats each inter-layer FIFO held."""
    model = design.plan.model
    ins = design.manifest["io"]["input"]
    out_beats = design.manifest["io"]["output"]["beats"]
    bits = model.input_dtype.encode(to_stream(X, model.input_shape))
    beats = pack(bits, ins["elements_per_beat"], ins["bits_per_element"])
    src, sink = axis_ports(design.top)
    top = Module()
    top.submodules.dut = design.top
    sim = Simulator(top)   # elaborates: design.network.fifos exists from here
    sim.add_clock(1e-6)
    fifos = design.network.fifos
    ports = [s for f in fifos for s in (f.i_data.valid, f.i_data.ready, f.o_data.valid,
                                         f.o_data.ready)]
    cycles, level, peak = [], [0] * len(fifos), [0] * len(fifos)
    limit = 40 * design.manifest["expected_cycles_per_inference"] * len(X) + 2000

    async def source(ctx):
        await send(ctx, src, beats, rng=random.Random(0))

    async def monitor(ctx):
        ctx.set(sink.ready, 1)
        now = 0
        while len(cycles) < len(X) * out_beats and now < limit:
            _, _, valid, *flags = await ctx.tick().sample(sink.valid, *ports)
            now += 1
            if valid:
                cycles.append(now)
            for n in range(len(fifos)):
                iv, ir, ov, orr = flags[4 * n:4 * n + 4]
                level[n] += int(iv and ir) - int(ov and orr)
                peak[n] = max(peak[n], level[n])

    sim.add_testbench(source, background=True)
    sim.add_testbench(monitor)
    sim.run()
    assert len(cycles) == len(X) * out_beats, "the design stopped producing outputs"
    return cycles[out_beats - 1::out_beats], peak


def assert_rate(design, X):
    ends, peak = run_back_to_back(design, X)
    expected = design.manifest["expected_cycles_per_inference"]
    rate = (ends[-1] - ends[WARMUP]) / (len(X) - 1 - WARMUP)
    layers = [(e["name"], e["expected_cycles"], e["fifo"]["depth"])
              for e in design.manifest["layers"]]
    assert abs(rate - expected) <= TOLERANCE * expected, \
        f"{rate} cycles per image, expected {expected}: {layers}, FIFO peaks {peak}"
    depths = [e["fifo"]["depth"] for e in design.manifest["layers"]]
    # the FIFOs never hold more than stated (the first one is the AXI input's, full at times)
    assert all(p <= d for p, d in zip(peak, depths, strict=True))
    return rate, peak


@pytest.mark.parametrize("seed", SEEDS)
def test_random_cnn_rate(seed):
    """Back to back, the cycles per image are within 5 % of the manifest's, which is max over
    layers of OH*OW*ceil(M/pe)*ceil(K/simd) (or the window/pool unit's own cycles)."""
    model = random_cnn(seed)
    design = generate(model, Options(max_lanes=int(np.random.default_rng(seed).integers(4, 40))))
    for entry, lp in zip(design.manifest["layers"], design.plan.layers, strict=True):
        if entry["op"] == "conv2d":
            m, oh, ow = entry["out_shape"]
            k = entry["in_shape"][0] * lp.layer.kernel[0] * lp.layer.kernel[1]
            nf, sf = -(-m // entry["pe"]), -(-k // entry["simd"])
            mvu = oh * ow * nf * sf
            assert entry["mvu_cycles"] == mvu
            # the window unit's boundary wait that the MVU's other neuron folds do not hide
            stall = lp.params.window.boundary_stall
            assert entry["expected_cycles"] == max(mvu + max(0, stall - (nf - 1) * sf),
                                                   entry["window"]["expected_cycles"])
    assert_rate(design, inputs(np.random.default_rng(seed), model, IMAGES))
