"""SPEC 2.1b, 3 and 5 for feature maps and graphs: the reader accepts conv2d, maxpool2d,
sumpool2d, add, concat and ``inputs``, evaluates the graph as the SPEC says, refuses every bad
input with one ModelError naming the layer and the field, and the writer round-trips."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from nnaccel.gen.errors import ModelError
from nnaccel.gen.ir import Layer, Model, Op, OutputKind, OutputStage
from nnaccel.gen.model_io import model_from_arrays, model_to_json, read_model, write_model
from nnaccel.hw.common.dtype import DType

from .cnn_models import copy_doc, every_feature_doc, layer_of, random_cnn_doc, tiny_res_doc

torch = pytest.importorskip("torch")
F = torch.nn.functional

DOCS = Path(__file__).resolve().parents[2] / "docs" / "FORMAT.md"

# --- SPEC arithmetic written out again, on torch float64 (exact at these sizes) -----------------


def t_conv(x, w, bias=None, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), pad_value=0,
           groups=1):
    top, left, bottom, right = padding
    xp = F.pad(torch.tensor(np.asarray(x), dtype=torch.float64), (left, right, top, bottom),
               value=pad_value)
    b = None if bias is None else torch.tensor(np.asarray(bias), dtype=torch.float64)
    out = F.conv2d(xp, torch.tensor(np.asarray(w), dtype=torch.float64), b, stride=stride,
                   dilation=dilation, groups=groups)
    return out.numpy().astype(np.int64)


def t_maxpool(x, kernel, stride, padding=(0, 0, 0, 0)):
    top, left, bottom, right = padding
    xp = F.pad(torch.tensor(np.asarray(x), dtype=torch.float64), (left, right, top, bottom),
               value=-1e9)
    return F.max_pool2d(xp, kernel, stride).numpy().astype(np.int64)


def t_sumpool(x, kernel, stride=None):
    xt = torch.tensor(np.asarray(x), dtype=torch.float64)
    return F.avg_pool2d(xt, kernel, stride, divisor_override=1).numpy().astype(np.int64)


def requant(acc, mult, shift, lo, hi):
    """SPEC 2.2 in Python integers, per channel on axis 1."""
    acc = np.asarray(acc)
    out = np.empty(acc.shape, dtype=np.int64)
    for idx in np.ndindex(acc.shape):
        m = idx[1]
        mm = mult[m] if np.ndim(mult) else mult
        s = shift[m] if np.ndim(shift) else shift
        t = int(acc[idx]) * int(mm)
        r = t if s == 0 else (t + (1 << (s - 1))) >> s
        out[idx] = min(max(r, lo), hi)
    return out


def threshold(acc, t):
    acc = np.asarray(acc)
    t = np.asarray(t)
    out = np.empty(acc.shape, dtype=np.int64)
    for idx in np.ndindex(acc.shape):
        row = t[idx[1]] if len(t) > 1 else t[0]
        out[idx] = sum(1 for v in row if int(acc[idx]) >= int(v))
    return out


def spec_tiny_res(arrays, x):
    c1 = requant(t_conv(x, arrays["c1.w"], padding=(1, 1, 1, 1)), arrays["c1.mult"], 12, 0, 15)
    c2 = requant(t_conv(c1, arrays["c2.w"], padding=(1, 1, 1, 1)), arrays["c2.mult"], 12, 0, 15)
    r = requant(c1 + c2, 1, 1, 0, 15)
    p = t_maxpool(r, (2, 2), (2, 2))
    return p.reshape(len(x), -1) @ arrays["fc.w"].T


def spec_every_feature(a, x):
    cb = a["g.cb"][a["g.idx"]]
    av = requant(t_conv(x, a["a.w"], a["a.b"], (2, 1), (1, 2), (1, 0, 2, 1), -2), 900, 12, -8, 7)
    g = requant(t_conv(av, cb, a["g.b"], groups=2), [40, 50, 60, 70, 80, 90, 100, 110], 6, 0, 7)
    d = threshold(t_conv(g, a["d.w"], padding=(1, 1, 1, 1), groups=8), a["d.t"])
    cat = np.concatenate([g, av, g], axis=1)
    sg = 2 * threshold(t_sumpool(d, (2, 3)), a["s.t"]) - 1
    ad = requant(3 * cat - 2 * cat, 1, 0, -128, 127)
    mp = t_maxpool(ad, (3, 3), (2, 2), (1, 1, 0, 0))
    gp = t_sumpool(mp, (2, 4))
    bc = t_conv(sg, a["b.w"], padding=(1, 1, 1, 1), pad_value=-1)
    bp = t_maxpool(bc, (3, 3), (3, 3))
    j = np.concatenate([gp, bp], axis=1)
    return j.reshape(len(x), -1) @ a["f.w"].T


def t_sumpool_padded(x, kernel, stride, padding):
    top, left, bottom, right = padding
    xp = F.pad(torch.tensor(np.asarray(x), dtype=torch.float64), (left, right, top, bottom))
    return F.avg_pool2d(xp, kernel, stride, divisor_override=1).numpy().astype(np.int64)


def spec_stage(acc, out, arrays):
    """SPEC 2.2 for a stage as written in model.json (requant limits from the dtype name)."""
    if out["kind"] == "identity":
        return np.asarray(acc)
    if out["kind"] == "threshold":
        t = out["thresholds"]
        count = threshold(acc, arrays[t] if isinstance(t, str) else np.asarray(t))
        return 2 * count - 1 if out["dtype"] == "bipolar" else count
    bits = int(out["dtype"].lstrip("uint"))
    lo, hi = (0, 2 ** bits - 1) if out["dtype"].startswith("u") else \
        (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
    return requant(acc, out["mult"], out["shift"], 0 if out.get("relu") else lo, hi)


def spec_chain(doc, arrays, x):
    """A chain model evaluated straight from its document, on torch and Python integers."""
    for spec in doc["layers"]:
        op = spec["op"]
        if op == "conv2d":
            acc = t_conv(x, arrays[spec["weight"]], arrays.get(spec.get("bias")),
                         spec.get("stride", (1, 1)), spec.get("dilation", (1, 1)),
                         spec.get("padding", (0, 0, 0, 0)), spec.get("pad_value", 0),
                         spec.get("groups", 1))
        elif op == "maxpool2d":
            x = t_maxpool(x, spec["kernel"], spec.get("stride", spec["kernel"]),
                          spec.get("padding", (0, 0, 0, 0)))
            continue
        elif op == "sumpool2d":
            acc = t_sumpool_padded(x, spec["kernel"], spec.get("stride", spec["kernel"]),
                                   spec.get("padding", (0, 0, 0, 0)))
        else:
            acc = x.reshape(len(x), -1) @ arrays[spec["weight"]].T
        x = spec_stage(acc, spec["output"], arrays)
    return x


# --- good models --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_random_cnn_runs_as_the_spec_says(seed, tmp_path):
    """Random chains over the SPEC 2.1b cases (tests/gen/cnn_models.py), evaluated from the
    document; every eighth one also written and read back."""
    doc, arrays = random_cnn_doc(seed)
    model = model_from_arrays(doc, arrays)
    rng = np.random.default_rng(seed)
    dt = model.input_dtype
    x = rng.integers(dt.lo, dt.hi, size=(4, *model.input_shape), endpoint=True)
    if str(dt) == "bipolar":
        x = np.where(x > 0, 1, -1)
    assert np.array_equal(model.forward(x), spec_chain(doc, arrays, x))
    if seed % 8 == 0:
        back = read_model(write_model(model, tmp_path / "m"))
        assert np.array_equal(back.forward(x), model.forward(x))


@pytest.mark.parametrize("seed", range(3))
def test_tiny_res_reads_and_runs_as_the_spec_says(seed):
    doc, arrays = tiny_res_doc(seed)
    model = model_from_arrays(doc, arrays)
    assert [(la.name, la.op) for la in model.layers] == [
        ("c1", Op.CONV2D), ("c2", Op.CONV2D), ("r", Op.ADD), ("p", Op.MAXPOOL2D),
        ("fc", Op.LINEAR)]
    assert [la.inputs for la in model.layers] == [
        ("input",), ("c1",), ("c1", "c2"), ("r",), ("p",)]
    assert [la.out_shape for la in model.layers] == [
        (4, 8, 8), (4, 8, 8), (4, 8, 8), (4, 4, 4), (10,)]
    assert model.layer("fc").in_shape == (4, 4, 4) and model.layer("fc").in_features == 64
    assert not model.is_chain
    assert [la.name for la in model.consumers("c1")] == ["c2", "r"]
    assert model.out_shape == (10,) and str(model.output_dtype) == "int32"
    x = np.random.default_rng(seed).integers(0, 16, size=(5, 1, 8, 8))
    y = model.forward(x)
    assert np.array_equal(y, spec_tiny_res(arrays, x))
    # the residual branch matters: the stages before it are not saturated or all zero
    c1 = model.forward(x, upto=1)
    assert 0 < np.count_nonzero(c1) < c1.size
    assert model.forward(x, upto=3).shape == (5, 4, 8, 8)


@pytest.mark.parametrize("seed", range(3))
def test_every_feature_runs_as_the_spec_says(seed):
    doc, arrays = every_feature_doc(seed)
    model = model_from_arrays(doc, arrays)
    x = np.random.default_rng(seed).integers(-8, 8, size=(4, 2, 7, 9))
    assert np.array_equal(model.forward(x), spec_every_feature(arrays, x))
    assert model.layer("cat").out_shape == (20, 4, 8)
    assert model.layer("d").out_shape == (16, 4, 8) and model.layer("d").groups == 8
    assert model.layer("j").in_shapes == ((20, 1, 1), (3, 1, 1))
    assert len(model.consumers("g")) == 2 and model.consumers("g")[1].inputs == ("g", "a", "g")
    assert str(model.layer("mp").out_dtype) == "int8"
    assert str(model.layer("sg").out_dtype) == "bipolar"


def test_feature_map_input_of_a_linear_is_flattened_in_chw_order():
    w = np.zeros((1, 12), dtype=np.int64)
    w[0, 1 * 6 + 0 * 3 + 2] = 1  # element (c=1, h=0, w=2)
    doc = {"format": "nnaccel-model/1", "name": "flat", "input": {"shape": [2, 2, 3],
                                                                  "dtype": "uint4"},
           "layers": [{"name": "fc", "op": "linear", "weight": "w", "weight_dtype": "int2",
                       "output": {"kind": "identity", "dtype": "int8"}}]}
    model = model_from_arrays(doc, {"w": w})
    x = np.arange(12).reshape(1, 2, 2, 3)
    assert model.forward(x).tolist() == [[int(x[0, 1, 0, 2])]]
    assert model.layers[0].in_shape == (2, 2, 3)


def test_conv_accumulator_bounds_are_tight_for_identity_outputs():
    """bc (a bipolar 2x2x16 conv padded with -1) reaches +-64 only in its one unpadded window:
    the identity dtype int8 holds that, int7 (-64..63) does not."""
    doc, arrays = copy_doc(*every_feature_doc(0))
    arrays["b.w"] = np.ones_like(arrays["b.w"])
    model = model_from_arrays(doc, arrays)
    lo, hi = model.layer("bc").acc_bounds()
    assert list(lo) == [-64] * 3 and list(hi) == [64] * 3
    layer_of(doc, "bc")["output"]["dtype"] = "int8"
    layer_of(doc, "gp")["output"] = {"kind": "requant", "mult": 1, "shift": 3, "dtype": "int8"}
    model = model_from_arrays(doc, arrays)
    assert str(model.layer("j").out_dtype) == "int8"
    layer_of(doc, "bc")["output"]["dtype"] = "int7"
    with pytest.raises(ModelError) as e:
        model_from_arrays(doc, arrays)
    assert (e.value.layer, e.value.field) == ("bc", "output.dtype")
    assert "-64..64" in e.value.message


def test_model_resolves_default_inputs_and_refuses_unknown_ones():
    out = OutputStage(OutputKind.IDENTITY, DType.parse("int32"))
    u4 = DType.parse("uint4")
    a = Layer(name="a", op=Op.LINEAR, in_dtype=u4, weight=np.ones((3, 4), dtype=np.int64),
              weight_dtype=DType.parse("int2"), output=out)
    b = Layer(name="b", op=Op.LINEAR, in_dtype=DType.parse("int32"),
              weight=np.ones((2, 3), dtype=np.int64), weight_dtype=DType.parse("int2"),
              output=out)
    model = Model(name="m", input_shape=(4,), input_dtype=u4, layers=(a, b))
    assert [la.inputs for la in model.layers] == [("input",), ("a",)]
    assert model.is_chain and model.out_shape == (2,)
    assert model.forward(np.ones((1, 4), dtype=np.int64)).tolist() == [[12, 12]]
    with pytest.raises(ValueError, match="earlier layer"):
        Model(name="m", input_shape=(4,), input_dtype=u4,
              layers=(a, Layer(**{**b.__dict__, "inputs": ("c",)})))


# --- every bad input: (id, doc factory, mutation, layer, field) ---------------------------------

def _set(layer, key, value):
    def mutate(doc, arrays):
        obj = layer_of(doc, layer)
        *path, last = key.split(".")
        for k in path:
            obj = obj[k]
        obj[last] = value
    return mutate


def _del(layer, key):
    def mutate(doc, arrays):
        del layer_of(doc, layer)[key]
    return mutate


def _arr(name, value):
    def mutate(doc, arrays):
        arrays[name] = np.asarray(value)
    return mutate


def _both(*mutations):
    def mutate(doc, arrays):
        for m in mutations:
            m(doc, arrays)
    return mutate


def _input(shape):
    def mutate(doc, arrays):
        doc["input"]["shape"] = shape
    return mutate


TR, EF = tiny_res_doc, every_feature_doc
BAD = [
    # shapes that do not chain
    ("conv-chain", TR, _arr("c2.w", np.ones((4, 3, 3, 3))), "c2", "weight"),
    ("linear-after-map", TR, _arr("fc.w", np.ones((10, 63))), "fc", "weight"),
    ("conv-on-vector", TR, _input([64]), "c1", "op"),
    ("conv-on-2d-input", TR, _input([8, 8]), "c1", "op"),
    ("pool-on-vector", EF, _set("bp", "inputs", ["f"]), "bp", "inputs"),
    ("conv-weight-2d", TR, _arr("c1.w", np.ones((4, 9))), "c1", "weight"),
    ("conv-weight-empty", TR, _arr("c1.w", np.ones((0, 1, 3, 3))), "c1", "weight"),
    ("indices-ndim", EF, _arr("g.idx", np.zeros((8, 2))), "g", "indices"),
    ("indices-range", EF, _arr("g.idx", np.full((8, 2, 1, 1), 5)), "g", "indices"),
    ("conv-bias-shape", EF, _arr("a.b", np.ones(5)), "a", "bias"),
    ("conv-weight-dtype", TR, _arr("c1.w", np.full((4, 1, 3, 3), 8)), "c1", "weight"),
    ("conv-mult-shape", EF, _set("g", "output.mult", [1, 2, 3]), "g", "output.mult"),
    ("conv-thresholds-rows", EF, _arr("d.t", np.zeros((8, 3))), "d", "output.thresholds"),
    # windows
    ("conv-window-large", EF, _arr("a.w", np.ones((4, 2, 11, 2))), "a", "weight"),
    ("conv-dilated-window-large", EF, _set("a", "dilation", [5, 2]), "a", "weight"),
    ("conv-wide-window", TR, _both(_set("c1", "padding", [1, 0, 1, 0]),
                                   _arr("c1.w", np.ones((4, 1, 1, 9)))), "c1", "weight"),
    ("pool-window-large", EF, _set("mp", "kernel", [6, 6]), "mp", "kernel"),
    ("pool-only-padding", EF, _set("mp", "padding", [3, 0, 0, 0]), "mp", "padding"),
    ("pool-only-padding-right", EF, _both(_set("mp", "padding", [0, 0, 0, 4]),
                                          _set("mp", "stride", [2, 4])), "mp", "padding"),
    ("pool-kernel-missing", EF, _del("mp", "kernel"), "mp", "kernel"),
    ("pool-kernel-zero", EF, _set("mp", "kernel", [0, 2]), "mp", "kernel"),
    ("pool-kernel-huge", EF, _set("mp", "kernel", [1 << 17, 1]), "mp", "kernel"),
    ("pool-kernel-scalar", EF, _set("mp", "kernel", 3), "mp", "kernel"),
    ("stride-zero", EF, _set("a", "stride", [0, 1]), "a", "stride"),
    ("stride-short", EF, _set("a", "stride", [1]), "a", "stride"),
    ("stride-text", EF, _set("a", "stride", "2"), "a", "stride"),
    ("stride-bool", EF, _set("a", "stride", [True, 1]), "a", "stride"),
    ("dilation-zero", EF, _set("a", "dilation", [1, 0]), "a", "dilation"),
    ("padding-negative", EF, _set("a", "padding", [-1, 0, 0, 0]), "a", "padding"),
    ("padding-two", EF, _set("a", "padding", [1, 1]), "a", "padding"),
    ("padding-too-large", EF, _set("a", "padding", [60000, 60000, 60000, 60000]), "a",
     "padding"),
    ("pool-stride-float", EF, _set("mp", "stride", [2.0, 2]), "mp", "stride"),
    # groups
    ("groups-c", EF, _set("g", "groups", 3), "g", "groups"),
    ("groups-m", EF, _both(_arr("d.w", np.ones((12, 1, 3, 3))),
                           _arr("d.t", np.zeros((12, 3)))), "d", "groups"),
    ("groups-zero", EF, _set("g", "groups", 0), "g", "groups"),
    ("groups-text", EF, _set("g", "groups", "2"), "g", "groups"),
    ("groups-chain", EF, _set("g", "groups", 4), "g", "weight"),
    # pad_value
    ("pad-value-range", EF, _set("a", "pad_value", 8), "a", "pad_value"),
    ("pad-value-bipolar-zero", EF, _set("bc", "pad_value", 0), "bc", "pad_value"),
    ("pad-value-bipolar-missing", EF, _del("bc", "pad_value"), "bc", "pad_value"),
    ("pad-value-bool", EF, _set("a", "pad_value", True), "a", "pad_value"),
    ("pad-value-list", EF, _set("a", "pad_value", [0]), "a", "pad_value"),
    # inputs
    ("inputs-later", EF, _set("cat", "inputs", ["g", "ad"]), "cat", "inputs"),
    ("inputs-unknown", EF, _set("cat", "inputs", ["g", "nope"]), "cat", "inputs"),
    ("inputs-self", EF, _set("cat", "inputs", ["g", "cat"]), "cat", "inputs"),
    ("inputs-text", EF, _set("cat", "inputs", "g"), "cat", "inputs"),
    ("inputs-number", EF, _set("cat", "inputs", ["g", 3]), "cat", "inputs"),
    ("inputs-empty", EF, _set("a", "inputs", []), "a", "inputs"),
    ("conv-two-inputs", EF, _set("g", "inputs", ["a", "a"]), "g", "inputs"),
    ("add-one-input", EF, _set("ad", "inputs", ["cat"]), "ad", "inputs"),
    ("concat-one-input", EF, _set("cat", "inputs", ["g"]), "cat", "inputs"),
    ("unread-layer", TR, _set("p", "inputs", ["c2"]), "r", "name"),
    ("unread-branch", EF, _both(_set("j", "inputs", ["gp", "gp"]),
                                _arr("f.w", np.ones((5, 40)))), "bp", "name"),
    # joins
    ("add-shapes", EF, _set("ad", "inputs", ["cat", "g"]), "ad", "inputs"),
    ("concat-hw", EF, _set("j", "inputs", ["gp", "bc"]), "j", "inputs"),
    ("concat-dtype", EF, _set("cat", "inputs", ["g", "d"]), "cat", "inputs"),
    ("scales-range", EF, _set("ad", "scales", [1 << 16, 1]), "ad", "scales"),
    ("scales-range-negative", EF, _set("ad", "scales", [-(1 << 16), 1]), "ad", "scales"),
    ("scales-count", EF, _set("ad", "scales", [1]), "ad", "scales"),
    ("scales-missing-array", EF, _set("ad", "scales", "ad.s"), "ad", "scales"),
    ("scales-float", EF, _set("ad", "scales", [1.5, 1]), "ad", "scales"),
    # output stages
    ("add-identity-narrow", EF, _set("ad", "output", {"kind": "identity", "dtype": "int4"}),
     "ad", "output.dtype"),
    ("sumpool-identity-narrow", EF, _set("gp", "output.dtype", "int8"), "gp", "output.dtype"),
    ("conv-identity-narrow", EF, _set("bc", "output.dtype", "int4"), "bc", "output.dtype"),
    ("maxpool-output", EF, _set("mp", "output", {"kind": "identity"}), "mp", "output"),
    ("concat-output", EF, _set("cat", "output", {"kind": "identity"}), "cat", "output"),
    ("sumpool-no-output", EF, _del("sg", "output"), "sg", "output"),
    ("add-no-output", EF, _del("ad", "output"), "ad", "output"),
    ("conv-no-output", EF, _del("a", "output"), "a", "output"),
    # unknown fields and ops
    ("maxpool-dilation", EF, _set("mp", "dilation", [1, 1]), "mp", "dilation"),
    ("conv-kernel", EF, _set("a", "kernel", [3, 2]), "a", "kernel"),
    ("add-weight", EF, _set("ad", "weight", "a.w"), "ad", "weight"),
    ("concat-scales", EF, _set("cat", "scales", [1, 1, 1]), "cat", "scales"),
    ("linear-groups", TR, _set("fc", "groups", 1), "fc", "groups"),
    ("sumpool-typo", EF, _set("sg", "kernal", [2, 2]), "sg", "kernal"),
    ("unknown-op", EF, _set("mp", "op", "avgpool2d"), "mp", "op"),
]


@pytest.mark.parametrize("make, mutate, layer, field",
                         [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_model_names_layer_and_field(make, mutate, layer, field):
    doc, arrays = copy_doc(*make(0))
    model_from_arrays(doc, arrays)  # valid before the mutation
    mutate(doc, arrays)
    with pytest.raises(ModelError) as e:
        model_from_arrays(doc, arrays)
    assert (e.value.layer, e.value.field) == (layer, field), str(e.value)
    assert str(e.value).count("\n") == 0


def test_bad_model_from_a_directory(tmp_path):
    """The same checks through read_model (weights.npz on disk)."""
    doc, arrays = copy_doc(*every_feature_doc(0))
    layer_of(doc, "mp")["kernel"] = [6, 6]
    path = tmp_path / "m"
    path.mkdir()
    (path / "model.json").write_text(json.dumps(doc))
    np.savez(path / "weights.npz", **arrays)
    with pytest.raises(ModelError) as e:
        read_model(path)
    assert (e.value.layer, e.value.field) == ("mp", "kernel")
    assert "larger than the padded input" in e.value.message


def test_scales_at_the_limit_are_accepted():
    doc, arrays = copy_doc(*every_feature_doc(0))
    layer_of(doc, "ad")["scales"] = [(1 << 16) - 1, -(1 << 16) + 1]
    layer_of(doc, "ad")["output"] = {"kind": "requant", "mult": 1, "shift": 16, "dtype": "int8"}
    model = model_from_arrays(doc, arrays)
    assert model.layer("ad").scales == ((1 << 16) - 1, -(1 << 16) + 1)


def test_concat_of_vectors_is_refused():
    doc = {"format": "nnaccel-model/1", "name": "v", "input": {"shape": [4], "dtype": "uint4"},
           "layers": [
               {"name": "a", "op": "linear", "weight": [[1, 1, 1, 1]], "weight_dtype": "int2",
                "output": {"kind": "requant", "mult": 1, "shift": 0, "dtype": "uint4"}},
               {"name": "b", "op": "concat", "inputs": ["a", "input"]}]}
    with pytest.raises(ModelError) as e:
        model_from_arrays(doc, {})
    assert (e.value.layer, e.value.field) == ("b", "inputs")


def test_add_of_vectors_and_the_model_input():
    doc = {"format": "nnaccel-model/1", "name": "v", "input": {"shape": [3], "dtype": "uint4"},
           "layers": [
               {"name": "a", "op": "linear", "weight": [[1, 0, 0], [0, 1, 0], [0, 0, -1]],
                "weight_dtype": "int2",
                "output": {"kind": "requant", "mult": 1, "shift": 0, "dtype": "int8"}},
               {"name": "s", "op": "add", "inputs": ["input", "a"], "scales": [2, 3],
                "output": {"kind": "requant", "mult": [1, 1, 2], "shift": 0, "dtype": "int8"}}]}
    model = model_from_arrays(doc, {})
    assert model.forward(np.array([[1, 2, 3]])).tolist() == [[5, 10, -6]]


# --- writer -------------------------------------------------------------------------------------

def _same(a, b):
    da, aa = model_to_json(a)
    db, ab = model_to_json(b)
    assert da == db
    assert sorted(aa) == sorted(ab)
    for key in aa:
        assert np.array_equal(aa[key], ab[key]), key


@pytest.mark.parametrize("make", [tiny_res_doc, every_feature_doc])
def test_write_read_round_trip(make, tmp_path):
    doc, arrays = make(1)
    model = model_from_arrays(doc, arrays)
    back = read_model(write_model(model, tmp_path / "out"))
    _same(model, back)
    written = json.loads((tmp_path / "out" / "model.json").read_text())
    for spec, orig in zip(written["layers"], doc["layers"], strict=True):
        for key in ("op", "inputs", "stride", "dilation", "padding", "pad_value", "groups",
                    "kernel", "scales"):
            if key in orig and key in spec:  # default values may be left out
                assert spec[key] == orig[key], (spec["name"], key)
    x = np.random.default_rng(0).integers(-8, 8, size=(3, *model.input_shape))
    x = np.clip(x, model.input_dtype.lo, model.input_dtype.hi)
    assert np.array_equal(model.forward(x), back.forward(x))
    assert [la.inputs for la in back.layers] == [la.inputs for la in model.layers]


def test_writer_leaves_default_inputs_out():
    doc, arrays = tiny_res_doc(0)
    written, _ = model_to_json(model_from_arrays(doc, arrays))
    assert [("inputs" in spec) for spec in written["layers"]] == [False, False, True, False,
                                                                 False]
    assert written["layers"][3] == {"name": "p", "op": "maxpool2d", "kernel": [2, 2]}


# --- docs/FORMAT.md: every JSON example parses and validates -----------------------------------

def _format_arrays(rng):
    """The arrays of docs/FORMAT.md's examples, by model name."""
    return {
        "digits_mlp": {
            "fc1.w": rng.integers(-128, 128, size=(32, 64)),
            "fc1.b": rng.integers(-1000, 1000, size=32),
            "fc1.mult": rng.integers(1, 1 << 10, size=32),
            "fc2.w": rng.choice([-1, 1], size=(16, 32)),
            "fc2.t": rng.integers(-1000, 1000, size=(16, 1)),
            "fc3.w": rng.choice([-1, 1], size=(10, 16)),
        },
        "tiny_res": tiny_res_doc(0)[1],
        "dw_block": {
            "dw.w": rng.integers(-8, 8, size=(8, 1, 3, 3)),
            "pw.w": rng.integers(-8, 8, size=(6, 8, 1, 1)),
            "pw.b": rng.integers(-100, 100, size=6),
            "pw.mult": rng.integers(1, 1 << 12, size=6),
        },
    }


def test_format_doc_examples_validate():
    text = DOCS.read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    models = [json.loads(b) for b in blocks if '"format"' in b]
    assert len(models) >= 3
    arrays = _format_arrays(np.random.default_rng(0))
    for doc in models:
        assert doc["name"] in arrays, f"docs/FORMAT.md example {doc['name']!r} has no arrays"
        model = model_from_arrays(doc, arrays[doc["name"]])
        x = np.zeros((1, *model.input_shape), dtype=np.int64) + max(model.input_dtype.lo, 1)
        assert model.forward(x).shape == (1, *model.out_shape)


# --- nnaccel run on a graph model ---------------------------------------------------------------

def test_cli_run_numpy_on_a_graph(tmp_path, capsys):
    from nnaccel.cli import main

    doc, arrays = copy_doc(*tiny_res_doc(2))
    doc["layers"] = doc["layers"][:4]  # ends with the max pool: a feature-map output
    model = model_from_arrays(doc, arrays)
    write_model(model, tmp_path / "m")
    x = np.random.default_rng(0).integers(0, 16, size=(3, 1, 8, 8))
    np.save(tmp_path / "x.npy", x)
    status = main(["run", str(tmp_path / "m"), "--input", str(tmp_path / "x.npy"),
                   "--output", str(tmp_path / "y.npy"), "--json"])
    assert status == 0
    result = json.loads(capsys.readouterr().out)
    expected = spec_tiny_res({**arrays, "fc.w": np.eye(64, dtype=np.int64)}, x)
    assert result["outputs"] == expected.tolist()
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (3, 4, 4, 4)
    assert np.array_equal(y.reshape(3, -1), expected)


# --- no input makes the reader fail other than with a ModelError --------------------------------

_FUZZ_VALUES = [None, True, 0, 1, -1, 3, 65536, 1 << 40, 1.5, "x", "", "input", "g", "cat", [],
                [0], [1, 1], [0, 0, 0, 0], [1, 1, 1, 1], [-1, 0], [[1]], ["g", "g"], ["input"],
                {}, {"kind": "identity"}, [1 << 70, 1], [3, 3], [1, 2, 3], "bipolar", "int4",
                [9, 9], [100, 100, 100, 100]]
_FUZZ_KEYS = ["inputs", "kernel", "stride", "dilation", "padding", "pad_value", "groups",
              "scales", "weight", "bias", "output", "op", "codebook", "indices", "weight_dtype",
              "name"]


@pytest.mark.parametrize("seed", range(4))
def test_random_corruptions_give_model_errors_only(seed):
    rng = np.random.default_rng(seed)
    for _ in range(100):
        doc, arrays = copy_doc(*(every_feature_doc(0) if rng.random() < 0.7 else tiny_res_doc(0)))
        for _ in range(int(rng.integers(1, 4))):
            spec = doc["layers"][int(rng.integers(len(doc["layers"])))]
            key = _FUZZ_KEYS[int(rng.integers(len(_FUZZ_KEYS)))]
            if key in spec and rng.random() < 0.15:
                del spec[key]
            else:
                spec[key] = _FUZZ_VALUES[int(rng.integers(len(_FUZZ_VALUES)))]
        try:
            model_from_arrays(doc, arrays)
        except ModelError as e:
            assert "\n" not in str(e)
