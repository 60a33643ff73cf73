"""Convolutions on the systolic array (window unit -> im2col patches -> array) against SPEC
2.1b's numpy reference, under random stalls on both streams, batches of images back to back."""

import numpy as np
import pytest

from nnaccel.gen.engines import ArrayChoice, Engine
from nnaccel.gen.errors import UsageError
from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Options
from nnaccel.hw.common import reference as ref
from nnaccel.hw.common.dtype import DType
from nnaccel.hw.systolic.conv import SystolicConv, SystolicConvParams
from nnaccel.hw.systolic.params import Dataflow
from nnaccel.sim.amsim import STALL_PATTERNS, from_beats, run_stream_test, to_beats

from .map_streams import simulate
from .test_mvu_core import check_stalls_took_effect

CASES = [  # C, H, W, M, kernel, stride, padding, images, rows, cols, dataflow, n_out, stage
    (1, 5, 7, 4, (3, 3), (1, 1), (1, 1, 1, 1), 2, 4, 2, "ws", 1, "requant"),    # C = 1, odd map
    (3, 7, 5, 6, (3, 3), (2, 2), (1, 0, 1, 1), 3, 3, 3, "os", 3, "identity"),   # stride 2
    (4, 5, 5, 8, (1, 1), (1, 1), (0, 0, 0, 0), 4, 4, 4, "ws", 4, "requant"),    # 1x1
    (2, 6, 5, 3, (2, 3), (2, 1), (0, 1, 1, 0), 2, 6, 1, "ws", 6, "identity"),   # 3 taps a beat
    (2, 5, 5, 4, (3, 3), (1, 1), (1, 1, 1, 1), 2, 8, 4, "ws", 2, "requant"),    # gearbox 2 -> 8
    (3, 4, 6, 4, (3, 2), (1, 2), (2, 1, 0, 1), 3, 2, 2, "os", 1, "requant"),    # K tiles, OS
]

I4, U4 = DType.parse("int4"), DType.parse("uint4")


def run_conv(case, pattern, seed=0):
    c, h, w, m, kernel, stride, padding, images, rows, cols, df, n_out, kind = case
    rng = np.random.default_rng(seed)
    xdt, wdt = (I4, I4) if kind == "identity" else (U4, I4)
    weight = rng.integers(wdt.lo, wdt.hi + 1, size=(m, c, *kernel))
    bias = rng.integers(-50, 50, size=m)
    pad_value = int(rng.integers(xdt.lo, xdt.hi + 1))
    geometry = dict(stride=stride, padding=padding, pad_value=pad_value)
    if kind == "requant":
        stage = dict(output_kind="requant", out_dtype=DType.parse("uint4"),
                     mult=rng.integers(1, 4, size=m), shift=5, relu=True)
    else:
        stage = dict(output_kind="identity", out_dtype=DType.parse("int16"))
    params = SystolicConvParams.for_layer(
        weight=weight, in_shape=(c, h, w), images=images, rows=rows, cols=cols, dataflow=df,
        n_out=n_out, in_dtype=xdt, weight_dtype=wdt, bias=bias, **geometry, **stage)
    batches = 2
    x = rng.integers(xdt.lo, xdt.hi + 1, size=(images * batches, c, h, w))
    dut = SystolicConv(params, weight=weight)
    stream = xdt.encode(x.transpose(0, 2, 3, 1).reshape(len(x), -1))
    beats = to_beats(stream, params.in_beat)
    oh, ow = params.window.out_height, params.window.out_width
    stats = {}
    (got,) = run_stream_test(dut, [(dut.i_data, beats)],
                             [(dut.o_data, len(x) * oh * ow * m // cols)],
                             pattern=pattern, seed=seed, timeout=50_000, stats=stats)
    check_stalls_took_effect(stats, pattern, len(beats), len(got))
    out = stage["out_dtype"]
    bits = np.array(from_beats(got, oh * ow * m, cols), dtype=np.int64)
    values = out.decode(bits & ((1 << out.bits) - 1)).reshape(len(x), oh, ow, m)
    acc = ref.conv2d_acc(weight, x, bias, **geometry).transpose(0, 2, 3, 1)  # HWC
    want = ref.output_stage(acc, kind, out.kind.value, out.bits, mult=stage.get("mult"),
                            shift=stage.get("shift"), relu=stage.get("relu", False))
    assert values.tolist() == np.asarray(want).tolist()
    return params


@pytest.mark.parametrize("case", CASES, ids=lambda c: "c{}_{}x{}_m{}_{}".format(*c[:4], c[10]))
def test_conv_bit_exact_under_stalls(case):
    """Random idle cycles on the input and back-pressure on the output together (the runs
    without stalls are those of :func:`test_steady_cycles`)."""
    run_conv(case, STALL_PATTERNS[3], seed=sum(case[:4]))


CYCLE_CASES = [  # C, H, W, M, kernel, stride, padding, images, rows, cols, dataflow, n_out
    (4, 5, 5, 8, (1, 1), (1, 1), (0, 0, 0, 0), 2, 4, 4, "ws", 4),     # the array binds
    (4, 8, 8, 4, (1, 1), (2, 2), (0, 0, 0, 0), 3, 4, 4, "ws", 4),     # the window unit binds
    (2, 7, 7, 2, (3, 3), (1, 1), (0, 0, 0, 0), 2, 8, 2, "os", 6),     # the window unit binds
]


@pytest.mark.parametrize("case", CYCLE_CASES, ids=lambda c: "c{}_{}x{}_m{}_{}".format(
    *c[:4], c[10]))
def test_steady_cycles(case):
    """Batches back to back, no stalls: the cycles between the last output beats of the last
    two batches are the model's (the array's or the window unit's, whichever is slower), at
    most one more where the window unit binds."""
    c, h, w, m, kernel, stride, padding, images, rows, cols, df, n_out = case
    rng = np.random.default_rng(0)
    weight = rng.integers(I4.lo, I4.hi + 1, size=(m, c, *kernel))
    p = SystolicConvParams.for_layer(
        weight=weight, in_shape=(c, h, w), images=images, rows=rows, cols=cols, dataflow=df,
        n_out=n_out, in_dtype=I4, weight_dtype=I4, stride=stride, padding=padding,
        output_kind="identity", out_dtype=DType.parse("int16"))
    x = rng.integers(I4.lo, I4.hi + 1, size=(images * 3, c, h, w))
    beats = to_beats(I4.encode(x.transpose(0, 2, 3, 1).reshape(len(x), -1)), p.in_beat)
    per_batch = images * p.pixels * m // cols
    _, _, out_cycles = simulate(SystolicConv(p, weight=weight), beats, 3 * per_batch,
                                pattern=STALL_PATTERNS[0])
    ends = out_cycles[per_batch - 1::per_batch]
    steady = ends[2] - ends[1]
    if p.window_cycles < p.array.steady_cycles:
        assert steady == p.steady_cycles == p.array.steady_cycles
    else:
        assert p.steady_cycles == p.window_cycles <= steady <= p.steady_cycles + 1


def test_params_are_checked():
    weight = np.ones((6, 2, 3, 3), dtype=int)
    args = dict(weight=weight, in_shape=(2, 5, 5), images=2, rows=4, dataflow="ws",
                in_dtype=I4, weight_dtype=I4)
    with pytest.raises(ValueError, match="cols .4. must divide the output channels .6."):
        SystolicConvParams.for_layer(cols=4, n_out=2, **args)
    with pytest.raises(ValueError, match=r"in_beat \(3\) and rows \(4\) must divide"):
        SystolicConvParams.for_layer(cols=3, n_out=3, **{**args, "in_shape": (3, 5, 5),
                                                         "weight": np.ones((6, 3, 3, 3), int)})
    p = SystolicConvParams.for_layer(cols=3, n_out=2, **args)
    assert (p.pixels, p.array.batch, p.array.in_features) == (9, 18, 18)
    with pytest.raises(ValueError, match="weight has shape"):
        SystolicConv(p, weight=np.ones((6, 2, 2, 2), dtype=int))


def test_generated_cnn_at_batch_runs_its_convolutions_on_the_array():
    """End to end through generate(): SPEC 2.3 puts the dense (not bipolar) convolutions of a
    design for batches on the systolic engine, and the design is bit-exact under stalls."""
    from ..gen.cnn_models import random_cnn
    from ..gen.test_cnn_lowering import check, inputs

    seed, batch = 8, 4   # two dense convolutions and a linear layer
    model = random_cnn(seed)
    design = generate(model, Options(batch=batch))
    convs = [lp for lp in design.plan.layers if lp.layer.op.value == "conv2d"]
    on_array = [lp for lp in convs if lp.engine is Engine.SYSTOLIC]
    assert on_array, [(lp.layer.name, lp.engine) for lp in convs]
    for lp in on_array:
        entry = next(e for e in design.manifest["layers"] if e["name"] == lp.layer.name)
        assert entry["engine_reason"].startswith("convolution in a design for batches")
        assert entry["patches_per_batch"] == batch * entry["pixels"]
    rng = np.random.default_rng(seed)
    for n, pattern in enumerate((STALL_PATTERNS[0], STALL_PATTERNS[3])):
        check(design, inputs(rng, model, batch), pattern, seed=seed * 4 + n)


def test_array_forced_on_a_convolution():
    """``--array`` forces the array and dataflow of a convolution (shown in the manifest);
    ``--engine`` puts one on the array at batch 1; cols that do not divide M are refused."""
    from ..gen.cnn_models import random_cnn

    model = random_cnn(5)
    conv = model.layers[0]
    m = conv.out_channels
    cols = max(d for d in range(1, 5) if m % d == 0)
    forced = Options(batch=2, arrays=((conv.name, ArrayChoice(2, cols, Dataflow.OS)),))
    entry = generate(model, forced).manifest["layers"][0]
    assert (entry["engine"], entry["rows"], entry["cols"], entry["dataflow"]) == (
        "systolic", 2, cols, "os")
    assert entry["lanes"] == 2 * cols and entry["out_beat"] == cols
    one = generate(model, Options(engines=((conv.name, Engine.SYSTOLIC),)))
    assert one.plan.layers[0].params.images == 1
    bad = Options(batch=2, arrays=((conv.name, ArrayChoice(2, m + 1)),))
    with pytest.raises(UsageError, match=f"cols dividing its {m} output channels"):
        generate(model, bad)


@pytest.mark.verilator
def test_verilator_generated_cnn_at_batch():
    """The same design's Verilog under Verilator, two batches with random idle and
    back-pressure (checked to take effect), every output equal to numpy."""
    from nnaccel.sim.design import simulate

    from ..gen.cnn_models import random_cnn
    from ..gen.test_cnn_lowering import inputs
    from ..sim.test_verilator_axis import check_stalls

    model = random_cnn(8)
    design = generate(model, Options(batch=4))
    assert sum(lp.engine is Engine.SYSTOLIC for lp in design.plan.layers) == 3
    x = inputs(np.random.default_rng(8), model, 8)
    _, result = simulate(design, x, idle=0.3, stall=0.3, seed=5)
    check_stalls(result, 0.3, 0.3)


def test_residual_graph_at_batch():
    """SPEC's tiny_res at batch 2: both convolutions on the array, one of them on a forked
    branch joined with its identity skip; bit-exact under stalls (so no deadlock)."""
    from ..gen.cnn_models import tiny_res
    from ..gen.test_cnn_lowering import check, inputs

    model = tiny_res(channels=2, size=5)
    design = generate(model, Options(batch=2))
    engines = {lp.layer.name: lp.engine for lp in design.plan.layers}
    assert engines["c1"] is engines["c2"] is Engine.SYSTOLIC
    check(design, inputs(np.random.default_rng(1), model, 2), STALL_PATTERNS[3], seed=1)
