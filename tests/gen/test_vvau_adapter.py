"""The vector-vector unit's engine adapter: acceptance, SPEC 2.3 claim, fold space (lanes and
cycles), Params, manifest fields, its numpy model against SPEC 2.1b, and grouped and depthwise
convolutions compiled by ``generate`` and simulated bit-exact under every stall pattern."""

import gc

import numpy as np
import pytest

from nnaccel.gen.engines import ADAPTERS, Engine, adapter_for, default_engine
from nnaccel.gen.engines.base import to_stream
from nnaccel.gen.engines.vvau import vvau_params
from nnaccel.gen.errors import UsageError
from nnaccel.gen.folding import Fold
from nnaccel.gen.generate import generate
from nnaccel.gen.ir import Conv2d, DType, Layer, Model, Op, OutputKind, OutputStage
from nnaccel.gen.plan import LayerPlan, Options
from nnaccel.hw.common import reference as ref
from nnaccel.hw.vvau.engine import VVAUConvolution
from nnaccel.sim.amsim import STALL_PATTERNS

from .cnn_models import random_cnn, random_cnn_doc
from .test_cnn_lowering import check, inputs

ADAPTER = ADAPTERS[Engine.VVAU]


def conv_layer(rng, *, c=6, groups=6, mg=2, kernel=(3, 2), dtype="int4", wdtype="int4",
               stride=(1, 2), dilation=(2, 1), padding=(1, 0, 2, 1), pad_value=3, hw=(7, 6)):
    in_dt, w_dt = DType.parse(dtype), DType.parse(wdtype)
    m = groups * mg
    shape = (m, c // groups, *kernel)
    if w_dt.kind.value == "bipolar":
        weight = rng.choice([-1, 1], shape)
    else:
        weight = rng.integers(w_dt.lo, w_dt.hi + 1, shape)
    out = OutputStage(kind=OutputKind.IDENTITY, dtype=DType.parse("int32"))
    return Conv2d(name="dw", in_dtype=in_dt, in_shape=(c, *hw), weight=weight,
                  weight_dtype=w_dt, output=out, bias=rng.integers(-30, 30, m), groups=groups,
                  stride=stride, dilation=dilation, padding=padding, pad_value=pad_value)


def planned(layer, pe):
    lp = LayerPlan(layer=layer, engine=Engine.VVAU)
    return ADAPTER.with_fold(lp, Fold(pe * layer.out_channels // layer.groups, 1), Options())


def test_accepts_grouped_convolutions_only():
    rng = np.random.default_rng(0)
    assert ADAPTER.accepts(conv_layer(rng))[0]
    assert ADAPTER.accepts(conv_layer(rng, c=6, groups=2))[0]
    ok, why = ADAPTER.accepts(conv_layer(rng, groups=1))
    assert not ok and "groups = 1 runs on the mvu" in why
    dense = Layer(name="fc", op=Op.LINEAR, in_dtype=DType.parse("int4"),
                  weight=np.ones((2, 3), dtype=np.int64), weight_dtype=DType.parse("int4"),
                  output=OutputStage(kind=OutputKind.IDENTITY, dtype=DType.parse("int32")))
    ok, why = ADAPTER.accepts(dense)
    assert not ok and "not linear" in why


def test_default_engine_of_grouped_and_depthwise():
    rng = np.random.default_rng(1)
    engine, reason = default_engine(conv_layer(rng), batch=1)
    assert engine is Engine.VVAU and reason.startswith("depthwise convolution")
    engine, reason = default_engine(conv_layer(rng, c=6, groups=3, mg=1), batch=1)
    assert engine is Engine.VVAU and reason.startswith("grouped (3 groups) convolution")
    engine, reason = default_engine(conv_layer(rng, dtype="bipolar", wdtype="bipolar",
                                               pad_value=-1), batch=4)
    assert engine is Engine.VVAU and "XNOR" in reason
    assert adapter_for(Engine.VVAU) is ADAPTER


def test_fold_space_lanes_and_cycles():
    rng = np.random.default_rng(2)
    layer = conv_layer(rng, c=6, groups=3, mg=2)       # cg = 2, mg = 2, kernel 3x2
    space = ADAPTER.fold_space(LayerPlan(layer=layer, engine=Engine.VVAU))
    folds = space.folds()
    assert folds == [Fold(2, 1), Fold(6, 1), Fold(6, 2), Fold(6, 6)]
    m, oh, ow = layer.out_shape
    for (pe, simd), fold in zip([(1, 1), (3, 1), (3, 2), (3, 6)], folds, strict=True):
        p = vvau_params(layer, pe, simd)
        assert space.lanes(fold) == p.lanes == simd * pe * 2 * 2
        assert space.beat_in(fold) == p.n_in == pe * 2
        assert space.cycles(fold) == p.expected_cycles
        assert p.expected_cycles >= oh * ow * 3 * 2 * 3 // (pe * simd)   # OH*OW*KH*KW*G/(pe*simd)


def test_params_and_manifest():
    rng = np.random.default_rng(3)
    layer = conv_layer(rng)                          # depthwise, C = 6, k = 2
    lp = planned(layer, pe=3)
    p = lp.params
    assert lp.fold == Fold(6, 1) and ADAPTER.in_beat(lp) == 3 and ADAPTER.lanes(lp) == 6
    man = ADAPTER.manifest(lp)
    m, oh, ow = layer.out_shape
    lo, hi = layer.acc_bounds()
    assert man["pe"] == 3 and man["simd"] == 1 and man["multiplier"] == 2
    assert man["lanes"] == 6 and man["groups"] == 6 and man["group_channels"] == 1
    assert man["cycles_per_pixel"] == 3 * 2 * 6 // 3      # KH*KW*G/pe
    assert man["expected_cycles"] == p.expected_cycles >= oh * ow * man["cycles_per_pixel"]
    assert man["acc_width"] == p.acc_width
    # the accumulator width holds the tight SPEC bounds of every channel
    assert -(1 << (man["acc_width"] - 1)) <= min(lo) and max(hi) < 1 << (man["acc_width"] - 1)
    assert man["window"]["order"] == "depthwise" and man["window"]["out_beat"] == 3
    assert ADAPTER.dump(lp) == {"pe": 3, "simd": 1, "multiplier": 2, "groups": 6}


def test_check_choice():
    rng = np.random.default_rng(4)
    lp = LayerPlan(layer=conv_layer(rng), engine=Engine.VVAU)    # G = 6, k = 2, kernel 3x2
    ADAPTER.check_choice(lp, Fold(4, 1))
    ADAPTER.check_choice(lp, Fold(12, 6))
    with pytest.raises(UsageError, match="one of 2, 4, 6, 12, or 12xSIMD"):
        ADAPTER.check_choice(lp, Fold(3, 1))
    with pytest.raises(UsageError, match=r"SIMD \(window positions per beat\) one of 1, 2, 6$"):
        ADAPTER.check_choice(lp, Fold(4, 2))
    with pytest.raises(UsageError, match="takes PEx1"):
        ADAPTER.check_choice(lp, Fold(12, 3))
    with pytest.raises(UsageError, match="--fold applies to mvu layers; this one runs on "
                                         "the vvau engine"):
        generate(Model(name="m", input_shape=lp.layer.in_shape, input_dtype=lp.layer.in_dtype,
                       layers=(lp.layer,)), Options(folds=(("dw", Fold(4, 1)),)))


def test_forced_fold_with_several_positions_per_beat():
    rng = np.random.default_rng(6)
    layer = conv_layer(rng, c=4, groups=4, mg=1, kernel=(3, 3), padding=(1, 1, 1, 1),
                       stride=(1, 1), dilation=(1, 1), hw=(5, 5))
    model = Model(name="m", input_shape=layer.in_shape, input_dtype=layer.in_dtype,
                  layers=(layer,))
    design = generate(model, Options(vvau_folds=(("dw", Fold(4, 3)),)))
    (entry,) = design.manifest["layers"]
    assert (entry["engine"], entry["pe"], entry["simd"], entry["lanes"]) == ("vvau", 4, 3, 12)
    assert entry["cycles_per_pixel"] == 3 and entry["window"]["order"] == "taps"
    x = rng.integers(-8, 8, (2, *layer.in_shape))
    for n, pattern in enumerate(STALL_PATTERNS):
        check(design, x, pattern, seed=n)


@pytest.mark.parametrize("seed", range(12))
def test_model_acc_matches_spec(seed):
    rng = np.random.default_rng(100 + seed)
    c, groups, mg = [(4, 4, 1), (4, 4, 2), (6, 2, 2), (6, 3, 1)][seed % 4]
    bipolar = seed % 3 == 0
    layer = conv_layer(rng, c=c, groups=groups, mg=mg,
                       dtype="bipolar" if bipolar else "int4",
                       wdtype="bipolar" if bipolar else str(rng.choice(["int4", "bipolar"])),
                       pad_value=-1 if bipolar else 5,
                       kernel=tuple(int(k) for k in rng.integers(1, 4, 2)))
    pe = int(rng.choice([d for d in range(1, groups + 1) if groups % d == 0]))
    lp = planned(layer, pe)
    dt = layer.in_dtype
    x = (rng.choice([-1, 1], (5, *layer.in_shape)) if bipolar
         else rng.integers(dt.lo, dt.hi + 1, (5, *layer.in_shape)))
    x[0], x[1] = dt.lo, dt.hi
    want = ref.conv2d_acc(layer.weight, x, layer.bias, groups=groups, stride=layer.stride,
                          dilation=layer.dilation, padding=layer.padding,
                          pad_value=layer.pad_value)
    got = ADAPTER.model_acc(lp, to_stream(x, layer.in_shape))
    assert got.tolist() == to_stream(want, layer.out_shape).tolist()


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_build():
    rng = np.random.default_rng(5)
    lp = planned(conv_layer(rng), pe=2)
    unit = ADAPTER.build(lp)
    assert isinstance(unit, VVAUConvolution)
    assert len(unit.i_data.payload) == 2 and len(unit.o_data.payload) == 4
    del unit
    gc.collect()  # amaranth's unused-component warning fires here, where it is ignored


def grouped_seeds(count):
    out, seed = [], 0
    while len(out) < count:
        doc, _ = random_cnn_doc(seed)
        if any(spec.get("groups", 1) > 1 for spec in doc["layers"]):
            out.append(seed)
        seed += 1
    return out


@pytest.mark.parametrize("seed", grouped_seeds(6))
def test_generated_design_bit_exact(seed):
    """Random CNN chains with depthwise (multiplier 1 or 2) and grouped convolutions, through
    ``generate``: the grouped layers run on the vvau, and the design equals
    ``Model.forward`` under every stall pattern."""
    model = random_cnn(seed)
    design = generate(model, Options(max_lanes=int(np.random.default_rng(seed).integers(4, 40))))
    for spec, entry in zip(model.layers, design.manifest["layers"], strict=True):
        if spec.op is Op.CONV2D and spec.groups > 1:
            assert entry["engine"] == "vvau"
            assert entry["lanes"] == (entry["pe"] * entry["simd"] * spec.weight.shape[1]
                                      * entry["multiplier"])
    rng = np.random.default_rng(seed + 1000)
    for n, pattern in enumerate(STALL_PATTERNS):
        check(design, inputs(rng, model, 2), pattern, seed=seed * 4 + n)
