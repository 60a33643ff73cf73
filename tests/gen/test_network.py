"""Randomized end-to-end tests of generated networks in amaranth.sim.

Each seed draws a random valid model (tests/gen/random_models.py: 1-3 layers, prime sizes and
1, every dtype kind, codebooks, biases, every output stage) and random folds, often not dividing
the layer, generates the design and drives its AXI4-Stream top level:

* with random idle on the input and random backpressure on the output, every output equals
  ``Model.forward`` (the numpy reference) and ``m_axis_tlast`` marks each vector's last beat;
* with inputs back to back and no backpressure, the steady-state cycles per inference are
  within 5 % of max over layers of ``ceil(M/pe) * ceil(K/simd)``, computed here from the folds.

Every layer runs on the MVU engine (forced, so pruned layers do not move to the sparse engine):
the folds and the rate formula are the MVU's.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Cat
from amaranth.sim import Simulator

from nnaccel.gen.folding import Fold, fold_cycles
from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Engine, Options
from nnaccel.hw.common.dtype import DTypeKind
from nnaccel.hw.common.pipeline import INPUT_LATENCY
from nnaccel.sim.amsim import StallPattern, run_stream_test
from nnaccel.sim.packing import beats_per_vector, pack, unpack

from ..helpers import run_back_to_back as run_with_fifo_peaks
from .random_models import random_folds, random_inputs, random_model

SEEDS = range(30)
#: Vectors per run; the first WARMUP outputs of the back-to-back run are left out of the rate.
VECTORS, BACK_TO_BACK, WARMUP = 5, 7, 2
TOLERANCE = 0.05


def axis_ports(top):
    """The AXI4-Stream ports of a generated top level as the stream-like objects the amsim
    source and sink drive; the output payload is ``{tlast, tdata}``."""
    src = SimpleNamespace(valid=top.s_axis_tvalid, ready=top.s_axis_tready,
                          payload=top.s_axis_tdata)
    sink = SimpleNamespace(valid=top.m_axis_tvalid, ready=top.m_axis_tready,
                           payload=Cat(top.m_axis_tdata, top.m_axis_tlast))
    return src, sink


def case(seed):
    """The model, its generation options and the folds every layer must end up with.

    Seeds cycle through three ways of choosing the folds: all forced, some forced and the rest
    chosen for a cycle target, and all chosen for a lane budget."""
    rng = np.random.default_rng(seed)
    model = random_model(rng, name=f"rnd{seed}")
    depth = len(model.layers)
    mvu = tuple((layer.name, Engine.MVU) for layer in model.layers)  # pruned layers too
    way = seed % 3
    if way == 0:
        folds = random_folds(rng, model)
        options = Options(folds=folds, max_lanes=10**6, engines=mvu)
    elif way == 1:
        keep = {int(n) for n in rng.choice(depth, size=rng.integers(1, depth, endpoint=True),
                                           replace=False)}
        folds = random_folds(rng, model, layers=keep)
        worst = max(fold_cycles(*model.layer(name).weight.shape, fold) for name, fold in folds)
        options = Options(folds=folds, target_cycles=worst + int(rng.integers(0, 8)),
                          engines=mvu)
    else:
        folds = ()
        options = Options(max_lanes=int(rng.integers(depth, 64, endpoint=True)), engines=mvu)
    return model, options, dict(folds), rng


def io_shape(model, design):
    first, last = design.plan.layers[0].fold, design.plan.layers[-1].fold
    m = model.layers[-1].out_features
    return first.simd, last.pe, m, beats_per_vector(m, last.pe)


def run_stalled(design, X, pattern, seed):
    """Outputs (mathematical values) and tlast flags of ``X`` under ``pattern``."""
    model = design.plan.model
    in_beat, out_beat, m, out_beats = io_shape(model, design)
    beats = pack(model.input_dtype.encode(X), in_beat, model.input_dtype.bits)
    src, sink = axis_ports(design.top)
    (out,) = run_stream_test(design.top, [(src, beats)], [(sink, len(X) * out_beats)],
                             pattern=pattern, seed=seed, timeout=20_000)
    width = out_beat * model.output_dtype.bits
    data = [int(v) & ((1 << width) - 1) for v in out]
    lasts = [int(v) >> width for v in out]
    bits = unpack(data, len(X), m, out_beat, model.output_dtype.bits)
    return model.output_dtype.decode(bits), lasts


def run_back_to_back(design, X):
    """Cycle of the last output beat of every vector, inputs back to back, no backpressure."""
    ends, _ = run_with_fifo_peaks(design, X)
    assert len(ends) == len(X), "the design stopped producing outputs"
    return ends


@pytest.mark.parametrize("seed", SEEDS)
def test_random_network(seed):
    model, options, forced, rng = case(seed)
    design = generate(model, options)
    X = random_inputs(rng, model.input_dtype, (VECTORS, model.in_features))
    pattern = StallPattern(idle=float(rng.uniform(0.1, 0.6)), stall=float(rng.uniform(0.1, 0.6)))
    got, lasts = run_stalled(design, X, pattern, seed)  # elaborates the design first
    folds = [lp.fold for lp in design.plan.layers]
    want = model.forward(X)
    assert np.asarray(got).tolist() == np.asarray(want).tolist(), \
        f"{[str(f) for f in folds]} under {pattern}"
    out_beats = io_shape(model, design)[3]
    assert lasts == ([0] * (out_beats - 1) + [1]) * VECTORS

    for layer, fold in zip(model.layers, folds, strict=True):
        assert forced.get(layer.name, fold) == fold, f"{layer.name}: forced fold not honoured"
    # the expected rate from the folds alone (FINN's formula), not from the manifest
    shapes = [layer.weight.shape for layer in model.layers]
    expected = max(fold_cycles(m, k, f) for (m, k), f in zip(shapes, folds, strict=True))
    assert design.manifest["expected_cycles_per_inference"] == expected
    assert [entry["engine"] for entry in design.manifest["layers"]] == ["mvu"] * len(folds)
    ends = run_back_to_back(design, random_inputs(rng, model.input_dtype,
                                                  (BACK_TO_BACK, model.in_features)))
    rate = (ends[-1] - ends[WARMUP]) / (BACK_TO_BACK - 1 - WARMUP)
    assert abs(rate - expected) <= TOLERANCE * expected, \
        f"{rate} cycles per inference, expected {expected} ({folds})"


def test_seeds_cover_the_space():
    """The random cases reach what the issue asks for; a change to random_models.py that
    narrows them fails here instead of silently testing less."""
    seen = set()
    for seed in SEEDS:
        model, options, _, _ = case(seed)
        plan = generate(model, options, stop_after="folding")
        seen.add(f"in:{model.input_dtype.kind.value}")
        seen.add(f"depth:{len(model.layers)}")
        for lp in plan.layers:
            layer, fold = lp.layer, lp.fold
            m, k = layer.weight.shape
            seen.add(f"w:{layer.weight_dtype.kind.value}")
            seen.add(f"out:{layer.output.kind.value}:{layer.output.dtype.kind.value}")
            seen.update({"K=1"} if k == 1 else set())
            seen.update({"M=1"} if m == 1 else set())
            seen.update({"prime"} if m in (7, 11, 13, 17) or k in (7, 11, 13, 17) else set())
            seen.update({"pe does not divide M"} if m % fold.pe else set())
            seen.update({"simd does not divide K"} if k % fold.simd else set())
            seen.update({"codebook"} if layer.codebook is not None else set())
            seen.update({"bias"} if layer.bias is not None else set())
            seen.update({"relu"} if layer.output.relu else set())
            seen.add(f"lanes:{plan.layers[0].fold.simd > 1}")
    want = {"in:int", "in:uint", "in:bipolar", "depth:1", "depth:2", "depth:3",
            "w:int", "w:uint", "w:bipolar", "out:identity:int", "out:requant:int",
            "out:requant:uint", "out:threshold:uint", "out:threshold:bipolar", "K=1", "M=1",
            "prime", "pe does not divide M", "simd does not divide K", "codebook", "bias",
            "relu", "lanes:True", "lanes:False"}
    assert want <= seen, f"never drawn: {sorted(want - seen)}"


def test_prime_shapes_and_k1():
    """Shapes the random draw may miss: K = 1, M = 1, and primes with folds dividing neither."""
    rng = np.random.default_rng(99)
    model = random_model(rng, name="primes", layers=3, sizes=[1, 13, 1, 7])
    folds = (("fc0", Fold(5, 1)), ("fc1", Fold(1, 5)), ("fc2", Fold(3, 1)))
    mvu = tuple((layer.name, Engine.MVU) for layer in model.layers)
    design = generate(model, Options(folds=folds, max_lanes=10**6, engines=mvu))
    assert [lp.fold for lp in design.plan.layers] == [f for _, f in folds]
    X = random_inputs(rng, model.input_dtype, (VECTORS, 1))
    got, _ = run_stalled(design, X, StallPattern(0.5, 0.5), 99)
    assert np.asarray(got).tolist() == np.asarray(model.forward(X)).tolist()
    ends = run_back_to_back(design, random_inputs(rng, model.input_dtype, (BACK_TO_BACK, 1)))
    rate = (ends[-1] - ends[WARMUP]) / (BACK_TO_BACK - 1 - WARMUP)
    assert abs(rate - 3) <= TOLERANCE * 3  # fc0: ceil(13/5) * 1; fc1: 1 * 3; fc2: 3 * 1


@pytest.mark.parametrize("engine", [Engine.MVU, Engine.SYSTOLIC, Engine.SPARSE])
def test_input_latency_in_front_of_the_first_engine(engine):
    """A beat taken by an idle design reaches its first engine INPUT_LATENCY cycles later (the
    benchmarks count an engine's cycles from there)."""
    rng = np.random.default_rng(3)
    model = random_model(rng, name="lat", layers=1, sizes=[12, 6])
    while engine is not Engine.MVU and DTypeKind.BIPOLAR in (
            model.layers[0].in_dtype.kind, model.layers[0].weight_dtype.kind):
        model = random_model(rng, name="lat", layers=1, sizes=[12, 6])
    design = generate(model, Options(engines=(("fc0", engine),), batch=2))
    top = design.top
    first = design.network.stages[0].engine
    taken = {}

    async def bench(ctx):
        ctx.set(top.m_axis_tready, 1)
        ctx.set(top.s_axis_tvalid, 1)
        for cycle in range(20):
            if ctx.get(top.s_axis_tvalid) and ctx.get(top.s_axis_tready) and "in" not in taken:
                taken["in"] = cycle
            if ctx.get(first.i_data.valid) and ctx.get(first.i_data.ready) \
                    and "engine" not in taken:
                taken["engine"] = cycle
            await ctx.tick()

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert taken["engine"] - taken["in"] == INPUT_LATENCY
