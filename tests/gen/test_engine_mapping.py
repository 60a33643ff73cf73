"""Mapping layers onto the mvu, sparse and systolic engines: SPEC 2.3 defaults, the --array /
--sparse / --engine overrides and their errors, the manifest of each engine, and amaranth.sim
runs of small mixed networks, bit-exact against ``Model.forward`` under random stalls."""

import gc
import json
from types import SimpleNamespace

import numpy as np
import pytest

from nnaccel.cli import main
from nnaccel.gen.errors import ModelError, UsageError
from nnaccel.gen.folding import Fold
from nnaccel.gen.generate import generate
from nnaccel.gen.ir import DType, DTypeKind, Layer, Model, Op, OutputKind, OutputStage, readonly
from nnaccel.gen.model_io import write_model
from nnaccel.gen.plan import ArrayChoice, Engine, Options, SparseChoice
from nnaccel.hw.systolic.params import Dataflow
from nnaccel.sim.amsim import StallPattern

from .random_models import random_inputs, validated
from .test_network import run_stalled

#: Designs checked only by their manifest are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

I8, U4, I32 = DType.parse("int8"), DType.parse("uint4"), DType.parse("int32")
BIPOLAR = DType.parse("bipolar")


def _layer(rng, name, in_dtype, m, k, density, last, weight_dtype=I8):
    if weight_dtype.kind is DTypeKind.BIPOLAR:
        w = rng.choice([-1, 1], size=(m, k))
    else:
        w = rng.integers(-8, 8, size=(m, k), endpoint=True)
        w[w == 0] = 1
        if density < 1:  # exactly round(density * m * k) non-zeros
            keep = rng.permutation(m * k) < round(density * m * k)
            w = w * keep.reshape(m, k)
    bias = rng.integers(-20, 20, size=m, endpoint=True)
    if last:
        output = OutputStage(OutputKind.IDENTITY, I32)
    else:
        x = random_inputs(rng, in_dtype, (64, k))
        span = max(float(np.ptp(x @ w.T)), 1.0)
        shift = np.full(m, 10)
        mult = np.full(m, max(1, int(15 * 2**10 / span * 2)))
        output = OutputStage(OutputKind.REQUANT, U4, mult=readonly(mult),
                             shift=readonly(shift), relu=True)
    return Layer(name=name, op=Op.LINEAR, in_dtype=in_dtype, weight=readonly(w),
                 weight_dtype=weight_dtype, output=output, bias=readonly(bias))


def mixed_model(seed, sizes, densities, *, in_dtype=U4, name="mixed", bipolar=()):
    """A chain of int8 layers of ``sizes`` (input first) with these weight densities; hidden
    outputs are requantised ReLU uint4, the last is an int32 identity. Layers whose index is in
    ``bipolar`` have bipolar weights instead."""
    rng = np.random.default_rng(seed)
    layers, dt = [], in_dtype
    for n, density in enumerate(densities):
        layer = _layer(rng, f"fc{n}", dt, sizes[n + 1], sizes[n], density,
                       n == len(densities) - 1, BIPOLAR if n in bipolar else I8)
        layers.append(layer)
        dt = layer.output.dtype
    return validated(Model(name=name, input_shape=(sizes[0],), input_dtype=in_dtype,
                           layers=tuple(layers)))


@pytest.fixture(autouse=True)
def _collect_unused_designs():
    yield
    gc.collect()  # while the filter above applies


def engines(design):
    return [lp.engine for lp in design.plan.layers]


# -- default choices (SPEC 2.3) ----------------------------------------------------------------

def test_defaults_density_boundary_and_batch():
    # 0.35 exactly is sparse; just above is dense
    model = mixed_model(0, [20, 20, 20, 20], [0.35, 0.36, 1.0])
    plan = generate(model, Options(), stop_after="engines")
    assert [lp.engine for lp in plan.layers] == [Engine.SPARSE, Engine.MVU, Engine.MVU]
    plan = generate(model, Options(batch=4), stop_after="engines")
    assert [lp.engine for lp in plan.layers] == [Engine.SPARSE, Engine.SYSTOLIC,
                                                 Engine.SYSTOLIC]
    assert all(lp.requested_engine is lp.engine for lp in plan.layers)


def test_bipolar_never_sparse_or_systolic():
    model = mixed_model(1, [16, 8, 8], [1.0, 0.2], bipolar={0})
    plan = generate(model, Options(batch=4), stop_after="engines")
    assert plan.layers[0].engine is Engine.MVU
    for engine in (Engine.SPARSE, Engine.SYSTOLIC):
        with pytest.raises(ModelError) as e:
            generate(model, Options(engines=(("fc0", engine),)), stop_after="engines")
        assert e.value.layer == "fc0" and e.value.field == "engine"


def test_forced_systolic_at_batch_one_says_mvu_is_better():
    model = mixed_model(2, [8, 8], [1.0])
    design = generate(model, Options(engines=(("fc0", Engine.SYSTOLIC),)))
    entry = design.manifest["layers"][0]
    assert entry["engine"] == "systolic" and "mvu would be better" in entry["engine_reason"]


# -- configuration -------------------------------------------------------------------------------

def test_configuration_within_budget_and_compatible_beats():
    model = mixed_model(3, [24, 32, 16, 10], [0.3, 1.0, 1.0])
    design = generate(model, Options(batch=4, max_lanes=48))
    layers = design.plan.layers
    assert engines(design) == [Engine.SPARSE, Engine.SYSTOLIC, Engine.SYSTOLIC]
    assert design.manifest["lanes"] <= 48
    for before, after in zip(layers, layers[1:], strict=False):
        a, b = before.fold.pe, after.fold.simd
        assert a % b == 0 or b % a == 0
    for lp in layers[1:]:
        r, c = lp.params.rows, lp.params.cols
        assert r & (r - 1) == 0 and c & (c - 1) == 0 and max(r, c) <= 16
        if lp.params.dataflow is Dataflow.WS:
            assert r % lp.fold.simd == 0 or lp.fold.simd % r == 0
    assert layers[0].params.queue_depth == 8


def test_sparse_warning_when_pes_idle():
    model = mixed_model(4, [16, 8], [0.1])
    design = generate(model, Options(sparse=(("fc0", SparseChoice(8)),)))
    entry = design.manifest["layers"][0]
    assert entry["pe"] == 8 and entry["nonzeros_per_pe_per_column"] < 1
    assert entry["warnings"] and design.manifest["warnings"]


def test_overrides_and_mixed_mvu_folds():
    model = mixed_model(5, [12, 16, 8, 6], [1.0, 0.25, 1.0])
    opts = Options(batch=2, engines=(("fc0", Engine.MVU),),
                   arrays=(("fc2", ArrayChoice(4, 2, Dataflow.OS)),),
                   sparse=(("fc1", SparseChoice(4, 2)),))
    design = generate(model, opts)
    fc0, fc1, fc2 = design.manifest["layers"]
    assert (fc0["engine"], fc1["engine"], fc2["engine"]) == ("mvu", "sparse", "systolic")
    assert (fc1["pe"], fc1["queue_depth"]) == (4, 2)
    assert (fc2["rows"], fc2["cols"], fc2["dataflow"]) == (4, 2, "os")
    pe, simd = fc0["pe"], fc1["in_beat"]
    assert pe % simd == 0 or simd % pe == 0


def test_dsp_cells_of_a_forced_array():
    model = mixed_model(5, [12, 16, 8, 6], [1.0, 1.0, 1.0])
    opts = Options(batch=2, arrays=(("fc1", ArrayChoice(4, 2, Dataflow.WS, dsp_cells=3)),))
    design = generate(model, opts)
    assert design.plan.layers[1].params.dsp_cells == 3
    assert design.plan.layers[2].params.dsp_cells == design.plan.layers[2].params.lanes
    bad = Options(batch=2, arrays=(("fc1", ArrayChoice(4, 2, dsp_cells=9)),))
    with pytest.raises(UsageError, match="dsp_cells 9 must be between 0 and the array's 8"):
        generate(model, bad)


@pytest.mark.parametrize("args, field", [
    (["--array", "fc0=4x4"], "--array"),                      # fc0 is an mvu layer
    (["--array", "fc1=4x0"], "--array"),
    (["--array", "fc1=4x4,xy"], "--array"),
    (["--sparse", "fc0=99"], "--sparse"),
    (["--sparse", "fc0=0"], "--sparse"),
    (["--sparse", "nope=2"], "--sparse"),
    (["--fold", "fc0=2x2", "--fold", "fc1=2x2"], "--fold"),   # fc1 is systolic
    (["--engine", "fc2=sparse"], "engine"),                   # bipolar weights
])
def test_override_errors_exit_2(tmp_path, capsys, args, field):
    model = mixed_model(6, [8, 8, 8, 4], [0.3, 1.0, 1.0], bipolar={2})
    path = write_model(model, tmp_path / "m")
    status = main(["generate", str(path), "-o", str(tmp_path / "out"), "--batch", "2",
                   "--engine", "fc1=systolic", *args])
    err = capsys.readouterr().err
    assert status == 2 and field in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


# -- manifest ------------------------------------------------------------------------------------

def test_manifest_fields(tmp_path):
    model = mixed_model(7, [16, 16, 12, 8], [1.0, 0.3, 1.0])
    path = write_model(model, tmp_path / "m")
    assert main(["generate", str(path), "-o", str(tmp_path / "out"), "--batch", "4",
                 "--engine", "fc0=mvu", "--array", "fc2=4x4,ws", "--sparse", "fc1=4,8"]) == 0
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["batch"] == 4
    common = {"name", "engine", "requested_engine", "engine_reason", "in_features",
              "out_features", "in_dtype", "weight_dtype", "out_dtype", "output", "density",
              "lanes", "acc_width", "macs", "expected_cycles", "warnings"}
    mvu, sparse, systolic = manifest["layers"]
    for entry in manifest["layers"]:
        assert common <= set(entry)
    assert {"pe", "simd", "neuron_folds", "synapse_folds"} <= set(mvu)
    assert {"pe", "queue_depth", "index_bits", "nonzeros", "bits_per_nonzero", "stored_bits",
            "expected_cycles_assumes"} <= set(sparse)
    assert sparse["nonzeros"] == int(np.count_nonzero(model.layers[1].weight))
    assert "dense activations" in sparse["expected_cycles_assumes"]
    assert {"rows", "cols", "dataflow", "batch", "tiles", "expected_cycles_per_batch",
            "ideal"} <= set(systolic)
    assert (systolic["rows"], systolic["cols"], systolic["dataflow"]) == (4, 4, "ws")
    assert systolic["tiles"] == "2x3"   # ceil(8/4) x ceil(12/4)
    assert systolic["expected_cycles"] == pytest.approx(
        systolic["expected_cycles_per_batch"] / 4, abs=1e-3)
    assert manifest["expected_cycles_per_inference"] == max(
        e["expected_cycles"] for e in manifest["layers"])
    assert manifest["lanes"] == mvu["lanes"] + 4 + 16


# -- amaranth.sim end to end ---------------------------------------------------------------------

CASES = [
    # (sizes, densities, batch, options)
    ([8, 8, 6, 5], [1.0, 0.3, 1.0], 2, dict(engines=(("fc0", Engine.MVU),), max_lanes=24)),
    ([6, 7, 9], [0.3, 1.0], 3, dict(arrays=(("fc1", ArrayChoice(2, 4, Dataflow.OS)),),
                                    max_lanes=16)),
    ([9, 5, 4, 3], [1.0, 1.0, 0.25], 4, dict(arrays=(("fc0", ArrayChoice(4, 2)),),
                                           engines=(("fc1", Engine.MVU),), max_lanes=20)),
]


@pytest.mark.parametrize("n", range(len(CASES)))
def test_mixed_networks_bit_exact_under_stalls(n):
    sizes, densities, batch, kw = CASES[n]
    model = mixed_model(10 + n, sizes, densities, name=f"mixed{n}")
    design = generate(model, Options(batch=batch, **kw))
    used = set(engines(design))
    assert {Engine.SPARSE, Engine.SYSTOLIC} <= used
    rng = np.random.default_rng(n)
    X = random_inputs(rng, model.input_dtype, (2 * batch, sizes[0]))
    outputs, lasts = run_stalled(design, X, StallPattern(0.3, 0.3), seed=n)
    assert outputs.tolist() == model.forward(X).tolist()
    out_beats = design.manifest["io"]["output"]["beats"]
    assert lasts == ([0] * (out_beats - 1) + [1]) * len(X)


class _UnmappedLayer:
    """A stand-in for a layer of an op no engine maps (an op this version does not know):
    reading its weights is a failure of the test, since generation must stop before any pass
    does."""

    name = "join1"
    op = SimpleNamespace(value="softmax")
    inputs = ()

    def __getattr__(self, attr):
        raise AssertionError(f"a pass read {attr!r} of a layer it should have refused")


@pytest.mark.parametrize("options", [Options(), Options(batch=4),
                                     Options(engines=(("join1", Engine.SPARSE),))])
def test_a_layer_no_engine_maps_is_refused_first(options):
    model = SimpleNamespace(name="m", layers=(_UnmappedLayer(),))
    with pytest.raises(ModelError, match="no engine maps op softmax yet") as info:
        generate(model, options)
    assert (info.value.layer, info.value.field) == ("join1", "op")


def _conv_model(groups):
    from nnaccel.gen.ir import Conv2d

    conv = Conv2d(name="conv1", in_dtype=I8, in_shape=(2, 4, 4), groups=groups,
                  weight=readonly(np.ones((2, 2 // groups, 3, 3), dtype=np.int64)),
                  weight_dtype=I8, output=OutputStage(OutputKind.IDENTITY, I32))
    return Model(name="m", input_shape=(2, 4, 4), input_dtype=I8, layers=(conv,))


def test_a_grouped_convolution_forced_onto_the_mvu_exits_2(tmp_path, capsys):
    path = write_model(_conv_model(2), tmp_path / "m")
    assert main(["generate", str(path), "-o", str(tmp_path / "out"),
                 "--engine", "conv1=mvu"]) == 2
    err = capsys.readouterr().err
    assert "layer 'conv1', field 'engine'" in err and "groups = 2" in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_a_convolution_maps_onto_the_mvu(tmp_path):
    design = generate(_conv_model(1), Options(max_lanes=36))
    (entry,) = design.manifest["layers"]
    assert (entry["engine"], entry["op"], entry["in_order"], entry["out_order"]) == \
        ("mvu", "conv2d", "HWC", "HWC")
    assert entry["in_shape"] == [2, 4, 4] and entry["out_shape"] == [2, 2, 2]
    assert entry["patch_elems"] == 18 and entry["pixels"] == 4
    assert 2 % entry["pe"] == 0 and entry["lanes"] == entry["pe"] * entry["simd"] <= 36
    assert entry["expected_cycles"] == max(4 * -(-2 // entry["pe"]) * -(-18 // entry["simd"]),
                                           entry["window"]["expected_cycles"])
    assert design.manifest["io"]["input"]["order"] == "HWC"
    assert design.manifest["io"]["input"]["shape"] == [2, 4, 4]


def test_a_graph_maps_its_joins_onto_the_join_engine():
    from .cnn_models import tiny_res

    design = generate(tiny_res(), Options())
    entry = next(e for e in design.manifest["layers"] if e["name"] == "r")
    assert (entry["engine"], entry["inputs"]) == ("join", ["c1", "c2"])


@pytest.mark.parametrize(("flag", "needle"), [
    (["--fold", "conv1=3x2"], "pe dividing its 2 output channels"),
    (["--fold", "conv1=1x4"], "simd one of"),
    (["--target-cycles", "3"], "cannot be met (layer 'conv1' needs at least"),
])
def test_bad_convolution_choices_exit_2(tmp_path, capsys, flag, needle):
    """A conv fold the window unit cannot feed, or a target below what any fold reaches (the
    window unit reads one word per cycle: 16 pixels), exits 2 with nothing written."""
    path = write_model(_conv_model(1), tmp_path / "m")
    assert main(["generate", str(path), "-o", str(tmp_path / "out"), *flag]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fault", ["fields reversed", "words reversed", "one word shifted"])
def test_check_pass_reads_the_mvu_weight_words(monkeypatch, fault):
    """The check pass computes the MVU's accumulator from its weight memory words, not from
    the folding code's own inverse: a layout fault in the words stops generation."""
    import nnaccel.gen.engines.mvu as mvu_adapter
    from nnaccel.hw.mvu import engine as mvu_engine

    good = mvu_engine.weight_words

    def broken(params, weight):
        words = good(params, weight)
        if fault == "fields reversed":
            bits, n = params.weight_dtype.bits, params.pe * params.simd
            mask = (1 << bits) - 1
            return [sum(((w >> (f * bits)) & mask) << ((n - 1 - f) * bits) for f in range(n))
                    for w in words]
        if fault == "words reversed":
            return words[::-1]
        return words[1:] + words[:1]

    rng = np.random.default_rng(5)
    w = rng.integers(-8, 8, size=(6, 10))
    layer = Layer(name="fc", op=Op.LINEAR, in_dtype=DType(DTypeKind.INT, 4), weight=readonly(w),
                  weight_dtype=DType(DTypeKind.INT, 4),
                  output=OutputStage(OutputKind.IDENTITY, DType(DTypeKind.INT, 32)))
    model = Model(name="m", input_shape=(10,), input_dtype=DType(DTypeKind.INT, 4),
                  layers=(layer,))
    generate(model, Options(folds=(("fc", Fold(2, 5)),)), stop_after="check")
    monkeypatch.setattr(mvu_adapter, "weight_words", broken)
    with pytest.raises(AssertionError, match="disagrees"):
        generate(model, Options(folds=(("fc", Fold(2, 5)),)), stop_after="check")
