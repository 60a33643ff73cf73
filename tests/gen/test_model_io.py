"""SPEC sections 3 and 5: the model reader rejects every bad input with one ModelError naming
the layer and the field; the writer round-trips, is atomic and honours the umask."""

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnaccel.gen import model_io
from nnaccel.gen.errors import ModelError, UsageError
from nnaccel.gen.ir import OutputKind
from nnaccel.gen.model_io import read_model, write_model

INT32_LO, INT32_HI = -(1 << 31), (1 << 31) - 1


def limits(dtype):
    """SPEC section 1, written out again: the value range of a dtype string."""
    if dtype == "bipolar":
        return -1, 1
    if dtype.startswith("uint"):
        return 0, (1 << int(dtype[4:])) - 1
    n = int(dtype[3:])
    return -(1 << (n - 1)), (1 << (n - 1)) - 1


# --- a good model with every feature, to corrupt one thing at a time ----------------------------

def good_model():
    """(doc, arrays) of a valid 4-layer model: requant with per-channel mult and relu, bipolar
    weights with a bipolar threshold, a codebook layer without ``weight`` and a shared (1, L)
    threshold row, and identity logits with the default dtype."""
    rng = np.random.default_rng(1234)
    arrays = {
        "fc1.w": rng.integers(-128, 128, size=(4, 6)),
        "fc1.b": rng.integers(-1000, 1000, size=4),
        "fc1.mult": np.array([3, 5, 7, 1 << 20]),
        "fc2.w": rng.choice([-1, 1], size=(3, 4)),
        "fc2.t": np.array([[-10], [0], [25]]),
        "fc3.cb": np.array([-3, 0, 2, 5]),
        "fc3.idx": rng.integers(0, 4, size=(5, 3)),
        "fc3.t": np.array([[-4, 0, 4]]),
        "fc4.w": rng.integers(-128, 128, size=(2, 5)),
    }
    doc = {
        "format": "nnaccel-model/1",
        "name": "good_model",
        "input": {"shape": [2, 3], "dtype": "uint4"},
        "layers": [
            {"name": "fc1", "op": "linear", "weight": "fc1.w", "weight_dtype": "int8",
             "bias": "fc1.b",
             "output": {"kind": "requant", "mult": "fc1.mult", "shift": 8, "dtype": "uint8",
                        "relu": True}},
            {"name": "fc2", "op": "linear", "weight": "fc2.w", "weight_dtype": "bipolar",
             "output": {"kind": "threshold", "thresholds": "fc2.t", "dtype": "bipolar"}},
            {"name": "fc3", "op": "linear", "codebook": "fc3.cb", "indices": "fc3.idx",
             "weight_dtype": "int4",
             "output": {"kind": "threshold", "thresholds": "fc3.t", "dtype": "uint2"}},
            {"name": "fc4", "op": "linear", "weight": "fc4.w", "weight_dtype": "int8",
             "output": {"kind": "identity"}},
        ],
    }
    return doc, arrays


def write_raw(path, doc, arrays):
    """A model directory written by hand (not by write_model)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.json").write_text(json.dumps(doc))
    if arrays is not None:
        np.savez(path / "weights.npz", **arrays)
    return path


def layer_of(doc, name):
    return next(spec for spec in doc["layers"] if spec.get("name") == name)


def test_good_model_reads(tmp_path):
    doc, arrays = good_model()
    model = read_model(write_raw(tmp_path / "m", doc, arrays))
    assert [layer.name for layer in model.layers] == ["fc1", "fc2", "fc3", "fc4"]
    assert model.input_shape == (2, 3)
    assert model.layers[2].weight.tolist() == arrays["fc3.cb"][arrays["fc3.idx"]].tolist()
    assert str(model.layers[3].output.dtype) == "int32"


# --- every bad input: (id, mutation of (doc, arrays), layer, field) -----------------------------

def _set(*keys_value):
    """A mutation setting doc[k1][k2]... = value; layer names select layers."""
    *keys, value = keys_value

    def mutate(doc, arrays):
        obj = doc
        for key in keys[:-1]:
            obj = layer_of(obj, key) if isinstance(obj, dict) and key.startswith("fc") else obj[key]
        obj[keys[-1]] = value
    return mutate


def _del(*keys):
    def mutate(doc, arrays):
        obj = doc
        for key in keys[:-1]:
            obj = layer_of(obj, key) if key.startswith("fc") else obj[key]
        del obj[keys[-1]]
    return mutate


def _arr(name, value):
    def mutate(doc, arrays):
        arrays[name] = np.asarray(value)
    return mutate


def _arr_at(name, index, value):
    def mutate(doc, arrays):
        a = np.array(arrays[name], dtype=np.asarray(value).dtype if isinstance(value, float)
                     else arrays[name].dtype)
        a[index] = value
        arrays[name] = a
    return mutate


def _drop_arr(name):
    def mutate(doc, arrays):
        del arrays[name]
    return mutate


def _layers(fn):
    def mutate(doc, arrays):
        doc["layers"] = fn(doc["layers"])
    return mutate


def _both(*mutations):
    def mutate(doc, arrays):
        for m in mutations:
            m(doc, arrays)
    return mutate


BAD_DTYPES = ["int1", "int33", "int0", "uint0", "uint33", "int", "uint", "float32", "INT8",
              "Int8", "int08", " int8", "int8 ", "bipolar1", "binary", "int-8", "", "int\u0668",
              8, None, ["int8"]]

CASES = [
    # model level (layer None)
    ("format-missing", _del("format"), None, "format"),
    ("format-other-version", _set("format", "nnaccel-model/2"), None, "format"),
    ("format-not-string", _set("format", 1), None, "format"),
    ("model-unknown-field", _set("layerz", []), None, "layerz"),
    ("name-missing", _del("name"), None, "name"),
    *[(f"name-{i}", _set("name", bad), None, "name")
      for i, bad in enumerate(["1abc", "a-b", "", "a b", "caf\u00e9", "a.b", "x\n", 5, None,
                               ["m"]])],
    ("input-missing", _del("input"), None, "input"),
    ("input-not-object", _set("input", [6]), None, "input"),
    ("input-unknown-field", _set("input", "layout", "nchw"), None, "input.layout"),
    ("input-shape-missing", _del("input", "shape"), None, "input.shape"),
    *[(f"input-shape-{i}", _set("input", "shape", bad), None, "input.shape")
      for i, bad in enumerate([[], [0], [-6], [6.0], [True, 6], "6", 6, None, [[6]]])],
    ("input-dtype-missing", _del("input", "dtype"), None, "input.dtype"),
    *[(f"input-dtype-{i}", _set("input", "dtype", bad), None, "input.dtype")
      for i, bad in enumerate(BAD_DTYPES)],
    ("layers-missing", _del("layers"), None, "layers"),
    ("layers-empty", _set("layers", []), None, "layers"),
    ("layers-object", _set("layers", {"fc1": {}}), None, "layers"),
    ("layers-string", _set("layers", "fc1"), None, "layers"),
    ("layer-not-object", _layers(lambda ls: [ls[0], "fc2"]), "#1", "layers"),
    # layer names
    ("layer-name-missing", _del("fc1", "name"), "#0", "name"),
    *[(f"layer-name-{i}", _layers(lambda ls, bad=bad: [ls[0], {**ls[1], "name": bad}] + ls[2:]),
       "#1", "name")
      for i, bad in enumerate(["2fc", "fc-2", "", "fc 2", "\u00e9", 2, None])],
    ("layer-name-duplicate", _set("fc2", "name", "fc1"), "fc1", "name"),
    # op
    ("op-missing", _del("fc1", "op"), "fc1", "op"),
    *[(f"op-{bad}", _set("fc2", "op", bad), "fc2", "op")
      for bad in ["conv2d", "maxpool2d", "dense", "Linear", ""]],
    ("op-int", _set("fc2", "op", 5), "fc2", "op"),
    ("op-null", _set("fc2", "op", None), "fc2", "op"),
    ("op-list", _set("fc2", "op", ["linear"]), "fc2", "op"),
    ("op-object", _set("fc2", "op", {"linear": 1}), "fc2", "op"),
    ("layer-unknown-field", _set("fc1", "weights", "fc1.w"), "fc1", "weights"),
    ("layer-unknown-field-2", _set("fc4", "activation", "relu"), "fc4", "activation"),
    # weight_dtype
    ("weight-dtype-missing", _del("fc1", "weight_dtype"), "fc1", "weight_dtype"),
    *[(f"weight-dtype-{i}", _set("fc4", "weight_dtype", bad), "fc4", "weight_dtype")
      for i, bad in enumerate(BAD_DTYPES)],
    # weight
    ("weight-missing", _del("fc1", "weight"), "fc1", "weight"),
    ("weight-null", _set("fc1", "weight", None), "fc1", "weight"),
    ("weight-array-missing", _drop_arr("fc1.w"), "fc1", "weight"),
    ("weight-array-misnamed", _set("fc4", "weight", "fc4.W"), "fc4", "weight"),
    ("weight-1d", _arr("fc1.w", np.zeros(6, dtype=np.int64)), "fc1", "weight"),
    ("weight-3d", _arr("fc1.w", np.zeros((4, 6, 1), dtype=np.int64)), "fc1", "weight"),
    ("weight-0d", _arr("fc1.w", np.int64(3)), "fc1", "weight"),
    ("weight-no-rows", _arr("fc1.w", np.zeros((0, 6), dtype=np.int64)), "fc1", "weight"),
    ("weight-transposed", _arr("fc1.w", np.zeros((6, 4), dtype=np.int64)), "fc1", "weight"),
    ("chain-fc2", _arr("fc2.w", np.ones((3, 5), dtype=np.int64)), "fc2", "weight"),
    ("chain-fc4", _arr("fc4.w", np.ones((2, 4), dtype=np.int64)), "fc4", "weight"),
    ("chain-codebook", _arr("fc3.idx", np.zeros((5, 4), dtype=np.int64)), "fc3", "weight"),
    ("weight-above-int8", _arr_at("fc1.w", (2, 3), 128), "fc1", "weight"),
    ("weight-below-int8", _arr_at("fc1.w", (0, 0), -129), "fc1", "weight"),
    ("weight-far-out", _arr_at("fc4.w", (1, 4), 1 << 40), "fc4", "weight"),
    ("weight-uint-negative", _both(_set("fc4", "weight_dtype", "uint8"),
                                   _arr("fc4.w", [[0, 1, 2, 3, -1], [0, 0, 0, 0, 0]])),
     "fc4", "weight"),
    ("weight-uint-above", _both(_set("fc4", "weight_dtype", "uint2"),
                                _arr("fc4.w", [[0, 1, 2, 3, 4], [0, 0, 0, 0, 0]])),
     "fc4", "weight"),
    ("weight-bipolar-zero", _arr_at("fc2.w", (1, 1), 0), "fc2", "weight"),
    ("weight-bipolar-two", _arr_at("fc2.w", (2, 3), 2), "fc2", "weight"),
    ("weight-bipolar-as-bits", _arr("fc2.w", [[1, 0, 1, 0]] * 3), "fc2", "weight"),
    ("weight-uint64-huge", _arr("fc4.w", np.full((2, 5), 1 << 63, dtype=np.uint64)),
     "fc4", "weight"),
    ("weight-float-fraction", _arr_at("fc1.w", (1, 1), 0.5), "fc1", "weight"),
    ("weight-float-nan", _arr_at("fc1.w", (1, 1), float("nan")), "fc1", "weight"),
    ("weight-float-inf", _arr_at("fc1.w", (1, 1), float("inf")), "fc1", "weight"),
    ("weight-float-huge", _arr_at("fc1.w", (1, 1), 1e30), "fc1", "weight"),
    ("weight-strings", _arr("fc1.w", np.full((4, 6), "1")), "fc1", "weight"),
    ("weight-complex", _arr("fc1.w", np.ones((4, 6), dtype=complex)), "fc1", "weight"),
    ("weight-inline-fraction", _set("fc4", "weight", [[0.5] * 5] * 2), "fc4", "weight"),
    ("weight-inline-ragged", _set("fc4", "weight", [[1] * 5, [1] * 4]), "fc4", "weight"),
    ("weight-inline-bool", _set("fc4", "weight", True), "fc4", "weight"),
    ("weight-inline-object", _set("fc4", "weight", {"name": "fc4.w"}), "fc4", "weight"),
    ("weight-inline-float", _set("fc4", "weight", 1.0), "fc4", "weight"),
    ("weight-inline-huge", _set("fc4", "weight", [[1 << 70] * 5] * 2), "fc4", "weight"),
    ("weight-inline-strings", _set("fc4", "weight", [["a"] * 5] * 2), "fc4", "weight"),
    # bias
    ("bias-array-missing", _drop_arr("fc1.b"), "fc1", "bias"),
    ("bias-short", _arr("fc1.b", [1, 2, 3]), "fc1", "bias"),
    ("bias-2d", _arr("fc1.b", [[1], [2], [3], [4]]), "fc1", "bias"),
    ("bias-scalar", _set("fc1", "bias", 3), "fc1", "bias"),
    ("bias-above-int32", _arr_at("fc1.b", 2, INT32_HI + 1), "fc1", "bias"),
    ("bias-below-int32", _arr_at("fc1.b", 0, INT32_LO - 1), "fc1", "bias"),
    ("bias-fraction", _arr_at("fc1.b", 0, 1.5), "fc1", "bias"),
    ("bias-string", _set("fc1", "bias", ["1", "2", "3", "4"]), "fc1", "bias"),
    # codebook and indices
    ("codebook-alone", _del("fc3", "indices"), "fc3", "indices"),
    ("indices-alone", _del("fc3", "codebook"), "fc3", "codebook"),
    ("codebook-array-missing", _drop_arr("fc3.cb"), "fc3", "codebook"),
    ("indices-array-missing", _drop_arr("fc3.idx"), "fc3", "indices"),
    ("codebook-2d", _arr("fc3.cb", [[-3, 0], [2, 5]]), "fc3", "codebook"),
    ("codebook-empty", _arr("fc3.cb", np.zeros(0, dtype=np.int64)), "fc3", "codebook"),
    ("codebook-257", _both(_set("fc3", "weight_dtype", "int16"),
                           _arr("fc3.cb", np.arange(257))), "fc3", "codebook"),
    ("codebook-outside-dtype", _arr("fc3.cb", [-3, 0, 2, 8]), "fc3", "codebook"),
    ("codebook-fraction", _arr("fc3.cb", [-3.0, 0.0, 2.5, 5.0]), "fc3", "codebook"),
    ("indices-too-big", _arr_at("fc3.idx", (4, 2), 4), "fc3", "indices"),
    ("indices-negative", _arr_at("fc3.idx", (0, 0), -1), "fc3", "indices"),
    ("indices-1d", _arr("fc3.idx", np.zeros(15, dtype=np.int64)), "fc3", "indices"),
    ("indices-3d", _arr("fc3.idx", np.zeros((5, 3, 1), dtype=np.int64)), "fc3", "indices"),
    ("indices-fraction", _arr_at("fc3.idx", (0, 0), 0.5), "fc3", "indices"),
    ("indices-shape-vs-weight", _both(_set("fc3", "weight", [[0, 0, 0]] * 5),
                                      _arr("fc3.idx", np.zeros((5, 2), dtype=np.int64))),
     "fc3", "indices"),
    ("codebook-disagrees-with-weight", _set("fc3", "weight", [[5, 5, 5]] * 5),
     "fc3", "codebook"),
    # output
    ("output-missing", _del("fc1", "output"), "fc1", "output"),
    ("output-string", _set("fc1", "output", "identity"), "fc1", "output"),
    ("output-kind-missing", _del("fc1", "output", "kind"), "fc1", "output.kind"),
    *[(f"output-kind-{i}", _set("fc4", "output", "kind", bad), "fc4", "output.kind")
      for i, bad in enumerate(["softmax", "Identity", "", None, 3, ["identity"]])],
    ("identity-extra-relu", _set("fc4", "output", "relu", True), "fc4", "output.relu"),
    ("identity-extra-mult", _set("fc4", "output", "mult", 1), "fc4", "output.mult"),
    ("requant-extra-thresholds", _set("fc1", "output", "thresholds", "fc2.t"),
     "fc1", "output.thresholds"),
    ("threshold-extra-shift", _set("fc2", "output", "shift", 1), "fc2", "output.shift"),
    ("threshold-extra-relu", _set("fc3", "output", "relu", False), "fc3", "output.relu"),
    # identity
    ("identity-bipolar", _set("fc4", "output", "dtype", "bipolar"), "fc4", "output.dtype"),
    ("identity-too-narrow", _set("fc4", "output", "dtype", "int8"), "fc4", "output.dtype"),
    ("identity-unsigned-for-negative", _set("fc4", "output", "dtype", "uint32"),
     "fc4", "output.dtype"),
    *[(f"identity-dtype-{i}", _set("fc4", "output", "dtype", bad), "fc4", "output.dtype")
      for i, bad in enumerate(BAD_DTYPES)],
    # requant
    ("requant-dtype-missing", _del("fc1", "output", "dtype"), "fc1", "output.dtype"),
    ("requant-bipolar", _set("fc1", "output", "dtype", "bipolar"), "fc1", "output.dtype"),
    ("requant-dtype-bad", _set("fc1", "output", "dtype", "uint64"), "fc1", "output.dtype"),
    ("mult-missing", _del("fc1", "output", "mult"), "fc1", "output.mult"),
    ("shift-missing", _del("fc1", "output", "shift"), "fc1", "output.shift"),
    ("mult-negative", _set("fc1", "output", "mult", -1), "fc1", "output.mult"),
    ("mult-2^31", _set("fc1", "output", "mult", 1 << 31), "fc1", "output.mult"),
    ("mult-array-2^31", _arr_at("fc1.mult", 3, 1 << 31), "fc1", "output.mult"),
    ("mult-array-negative", _arr_at("fc1.mult", 0, -5), "fc1", "output.mult"),
    ("mult-short", _arr("fc1.mult", [1, 2, 3]), "fc1", "output.mult"),
    ("mult-2d", _arr("fc1.mult", [[1, 2, 3, 4]]), "fc1", "output.mult"),
    ("mult-empty", _arr("fc1.mult", np.zeros(0, dtype=np.int64)), "fc1", "output.mult"),
    ("mult-array-missing", _drop_arr("fc1.mult"), "fc1", "output.mult"),
    ("mult-fraction", _set("fc1", "output", "mult", 1.5), "fc1", "output.mult"),
    ("mult-bool", _set("fc1", "output", "mult", True), "fc1", "output.mult"),
    ("shift-negative", _set("fc1", "output", "shift", -1), "fc1", "output.shift"),
    ("shift-32", _set("fc1", "output", "shift", 32), "fc1", "output.shift"),
    ("shift-per-channel-32", _set("fc1", "output", "shift", [0, 31, 32, 1]),
     "fc1", "output.shift"),
    ("shift-wrong-length", _set("fc1", "output", "shift", [1, 2]), "fc1", "output.shift"),
    ("shift-string", _set("fc1", "output", "shift", "8"), "fc1", "output.shift"),
    ("shift-null", _set("fc1", "output", "shift", None), "fc1", "output.shift"),
    ("relu-int", _set("fc1", "output", "relu", 1), "fc1", "output.relu"),
    ("relu-string", _set("fc1", "output", "relu", "true"), "fc1", "output.relu"),
    # threshold
    ("thresholds-missing", _del("fc2", "output", "thresholds"), "fc2", "output.thresholds"),
    ("thresholds-array-missing", _drop_arr("fc3.t"), "fc3", "output.thresholds"),
    ("threshold-dtype-missing", _del("fc2", "output", "dtype"), "fc2", "output.dtype"),
    ("threshold-int-dtype", _set("fc3", "output", "dtype", "int4"), "fc3", "output.dtype"),
    ("threshold-bad-dtype", _set("fc3", "output", "dtype", "uint"), "fc3", "output.dtype"),
    ("thresholds-descending", _arr("fc3.t", [[-4, 4, 0]]), "fc3", "output.thresholds"),
    ("thresholds-row-descending",
     _both(_set("fc2", "output", "dtype", "uint2"), _arr("fc2.t", [[1, 2], [3, 2], [0, 0]])),
     "fc2", "output.thresholds"),
    ("thresholds-descending-int64-extremes",
     _arr("fc3.t", np.array([[np.iinfo(np.int64).max, 0, np.iinfo(np.int64).min]])),
     "fc3", "output.thresholds"),
    ("thresholds-bipolar-two-levels", _arr("fc2.t", [[0, 1]] * 3), "fc2", "output.thresholds"),
    ("thresholds-too-many-for-uint2", _arr("fc3.t", [[-4, 0, 4, 8]]), "fc3",
     "output.thresholds"),
    ("thresholds-too-many-for-uint1", _set("fc3", "output", "dtype", "uint1"), "fc3",
     "output.thresholds"),
    ("thresholds-wrong-rows", _arr("fc3.t", [[-4, 0, 4]] * 2), "fc3", "output.thresholds"),
    ("thresholds-1d", _arr("fc3.t", [-4, 0, 4]), "fc3", "output.thresholds"),
    ("thresholds-3d", _arr("fc3.t", [[[-4, 0, 4]]]), "fc3", "output.thresholds"),
    ("thresholds-no-levels", _arr("fc3.t", np.zeros((1, 0), dtype=np.int64)), "fc3",
     "output.thresholds"),
    ("thresholds-scalar", _set("fc3", "output", "thresholds", 3), "fc3", "output.thresholds"),
    ("thresholds-fraction", _arr("fc3.t", [[-4, 0.5, 4]]), "fc3", "output.thresholds"),
    ("thresholds-nan", _arr("fc3.t", [[-4, float("nan"), 4]]), "fc3", "output.thresholds"),
]


@pytest.mark.parametrize(("mutate", "layer", "field"),
                         [pytest.param(m, la, f, id=i) for i, m, la, f in CASES])
def test_bad_model(tmp_path, mutate, layer, field):
    doc, arrays = good_model()
    mutate(doc, arrays)
    path = write_raw(tmp_path / "m", doc, arrays)
    with pytest.raises(ModelError) as info:
        read_model(path)
    e = info.value
    assert (e.layer, e.field) == (layer, field), str(e)
    text = str(e)
    assert f"field {field!r}" in text
    if layer is not None:
        assert f"layer {layer!r}" in text
    assert "\n" not in text and len(text) < 400


def test_every_case_is_distinct():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))


def test_reader_is_not_a_blanket_reject(tmp_path):
    """The base of the bad cases is good, and so are its lenient variants."""
    variants = [
        lambda d, a: None,
        _set("fc1", "bias", None),                                   # bias: null
        _del("fc1", "bias"),
        _set("description", "a note"),
        _set("fc1", "output", "mult", 3),                            # scalar mult
        _set("fc1", "output", "shift", [0, 31, 8, 1]),               # per-channel shift
        _set("fc1", "output", "mult", [(1 << 31) - 1, 0, 1, 2]),     # mult limits
        _del("fc1", "output", "relu"),                               # relu defaults to false
        _set("fc4", "output", "dtype", "int32"),
        _arr("fc3.t", [[-4, 0, 4]] * 5),                             # (M, L) thresholds
        _arr("fc3.t", [[1, 1, 1]]),                                  # equal is ascending
        _arr("fc2.t", [[-(1 << 62)], [0], [1 << 62]]),               # thresholds any int
        _arr("fc3.t", np.array([[np.iinfo(np.int64).min, 0, np.iinfo(np.int64).max]])),
        _arr("fc1.w", np.zeros((4, 6), dtype=np.int8)),              # narrow int arrays
        _arr("fc1.w", np.full((4, 6), 7, dtype=np.uint8)),
        _arr("fc1.w", np.full((4, 6), -3.0)),                        # integral floats
        _set("fc4", "weight", [[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]]),  # inline arrays
        _set("fc4", "weight_dtype", "int32"),
        _arr("fc1.b", [INT32_LO, INT32_HI, 0, 0]),
        _both(_arr("fc3.cb", np.arange(-8, 8)), _arr("fc3.idx", np.full((5, 3), 15))),
    ]
    for i, mutate in enumerate(variants):
        doc, arrays = good_model()
        mutate(doc, arrays)
        read_model(write_raw(tmp_path / f"m{i}", doc, arrays))


def test_dtype_bits_limits_accepted(tmp_path):
    """The extreme dtypes of SPEC section 1 are legal everywhere a dtype goes."""
    for dtype in ("int2", "int32", "uint1", "uint32", "bipolar"):
        lo, hi = limits(dtype)
        w = np.array([[lo, hi], [hi, lo]])
        doc = {"format": "nnaccel-model/1", "name": "m",
               "input": {"shape": [2], "dtype": dtype},
               "layers": [{"name": "l", "op": "linear", "weight": w.tolist(),
                           "weight_dtype": dtype,
                           "output": {"kind": "threshold", "thresholds": [[0]],
                                      "dtype": "uint1"}}]}
        model = read_model(write_raw(tmp_path / dtype, doc, None))
        assert str(model.input_dtype) == dtype
        assert model.layers[0].weight.tolist() == w.tolist()


@pytest.mark.parametrize("name, problem", [
    ("module", "Verilog keyword"), ("clk", "port of the generated top level"),
    ("rst", "port of the generated top level"), ("s_axis_tdata", "port of the generated"),
    ("m_axis_x", "port of the generated"), ("a" * 65, "at most 64 characters"),
])
@pytest.mark.parametrize("where", ["model", "layer"])
def test_reserved_and_long_names_refused(tmp_path, name, problem, where):
    """Names that would break the generated Verilog are refused by the reader, naming the
    field; the keyword check is case-sensitive (Verilog is)."""
    doc, arrays = good_model()
    if where == "model":
        doc["name"] = name
    else:
        doc["layers"][0]["name"] = name
    with pytest.raises(ModelError, match=problem) as info:
        read_model(write_raw(tmp_path / "m", doc, arrays))
    assert info.value.field == "name"


@pytest.mark.parametrize("name", ["Module", "WIRE", "clk2", "axis", "a" * 64])
def test_names_near_reserved_ones_accepted(tmp_path, name):
    doc, arrays = good_model()
    doc["name"] = name
    doc["layers"][0]["name"] = name
    model = read_model(write_raw(tmp_path / "m", doc, arrays))
    assert model.name == name and model.layers[0].name == name


# --- files: model.json and weights.npz ----------------------------------------------------------

def _npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return bytearray(buf.getvalue())


def _crc_damaged(arrays):
    raw = _npz_bytes(**arrays)
    start = raw.find(b"\x93NUMPY")          # the first member's data (stored, uncompressed)
    raw[start + 200] ^= 0xFF
    return bytes(raw)


def _deflate_damaged(arrays):
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    raw = bytearray(buf.getvalue())
    raw[60:90] = bytes(30)
    return bytes(raw)


def _member_not_npy(arrays):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("fc1.w.npy", b"this is not a numpy array")
    return buf.getvalue()


def _npy_not_npz(arrays):
    buf = io.BytesIO()
    np.save(buf, arrays["fc1.w"])
    return buf.getvalue()


def _pickled_member(arrays):
    return bytes(_npz_bytes(**{**arrays, "fc1.w": np.array([[1, 2]], dtype=object)}))


@pytest.mark.parametrize("damage", [
    pytest.param(lambda a: b"", id="empty"),
    pytest.param(lambda a: b"not a zip file at all " * 20, id="garbage"),
    pytest.param(lambda a: bytes(_npz_bytes(**a)[:300]), id="truncated"),
    pytest.param(_crc_damaged, id="crc"),
    pytest.param(_deflate_damaged, id="deflate"),
    pytest.param(_member_not_npy, id="member-not-npy"),
    pytest.param(_npy_not_npz, id="npy-not-npz"),
    pytest.param(_pickled_member, id="pickled-member"),
])
def test_corrupt_weights_npz(tmp_path, damage):
    doc, arrays = good_model()
    path = write_raw(tmp_path / "m", doc, None)
    (path / "weights.npz").write_bytes(damage(arrays))
    with pytest.raises(ModelError) as info:
        read_model(path)
    assert info.value.layer == "fc1"          # the first layer, which reads the file first
    assert info.value.field == "weight"
    assert "layer 'fc1', field 'weight'" in str(info.value)


def test_missing_weights_npz(tmp_path):
    doc, arrays = good_model()
    path = write_raw(tmp_path / "m", doc, None)
    with pytest.raises(ModelError) as info:
        read_model(path)
    assert (info.value.layer, info.value.field) == ("fc1", "weight")
    assert "weights.npz" in str(info.value)


def test_weights_npz_is_a_directory(tmp_path):
    doc, arrays = good_model()
    path = write_raw(tmp_path / "m", doc, None)
    (path / "weights.npz").mkdir()
    with pytest.raises(ModelError) as info:
        read_model(path)
    assert (info.value.layer, info.value.field) == ("fc1", "weight")


def test_inline_only_model_needs_no_npz(tmp_path):
    doc = {"format": "nnaccel-model/1", "name": "m", "input": {"shape": [2], "dtype": "int8"},
           "layers": [{"name": "l", "op": "linear", "weight": [[1, -1]], "weight_dtype": "int2",
                       "bias": [7], "output": {"kind": "identity", "dtype": "int16"}}]}
    model = read_model(write_raw(tmp_path / "m", doc, None))
    assert model.forward(np.array([[5, 3]])).tolist() == [[9]]


@pytest.mark.parametrize(("text", "field"), [
    ("", "model.json"),
    ("{", "model.json"),
    ("not json", "model.json"),
    ("[1, 2]", "model.json"),
    ("42", "model.json"),
    ("null", "model.json"),
    ('{"format": "nnaccel-model/1"} trailing', "model.json"),
])
def test_bad_model_json(tmp_path, text, field):
    path = tmp_path / "m"
    path.mkdir()
    (path / "model.json").write_text(text)
    with pytest.raises(ModelError) as info:
        read_model(path)
    assert (info.value.layer, info.value.field) == (None, field)


def test_model_json_not_utf8(tmp_path):
    path = tmp_path / "m"
    path.mkdir()
    (path / "model.json").write_bytes(b"\xff\xfe{\x00")
    with pytest.raises(ModelError) as info:
        read_model(path)
    assert info.value.field == "model.json"


def test_missing_model_json_and_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError) as info:
        read_model(tmp_path / "empty")
    assert info.value.field == "model.json"
    with pytest.raises(ModelError) as info:
        read_model(tmp_path / "absent")
    assert info.value.field == "model"
    (tmp_path / "file").write_text("{}")
    with pytest.raises(ModelError) as info:
        read_model(tmp_path / "file")
    assert info.value.field == "model"


def test_read_model_accepts_the_model_json_path(tmp_path):
    doc, arrays = good_model()
    path = write_raw(tmp_path / "m", doc, arrays)
    assert read_model(path / "model.json").name == "good_model"
    assert read_model(str(path)).name == "good_model"


def test_first_error_wins_in_layer_order(tmp_path):
    """Two bad layers: the message names the first one only."""
    doc, arrays = good_model()
    arrays["fc2.w"] = np.zeros((3, 4), dtype=np.int64)       # bipolar zero
    arrays["fc4.w"] = np.full((2, 5), 999)                   # int8 overflow
    with pytest.raises(ModelError) as info:
        read_model(write_raw(tmp_path / "m", doc, arrays))
    assert info.value.layer == "fc2"


# --- round trip ---------------------------------------------------------------------------------

INPUT_DTYPES = ["int2", "int4", "int8", "int16", "int32", "uint1", "uint3", "uint8", "uint32",
                "bipolar"]
WEIGHT_DTYPES = ["int2", "int3", "int8", "int16", "int32", "uint1", "uint4", "uint32", "bipolar"]


def random_values(rng, dtype, size):
    lo, hi = limits(dtype)
    if dtype == "bipolar":
        return rng.choice([-1, 1], size=size)
    v = rng.integers(lo, hi, size=size, endpoint=True, dtype=np.int64)
    if rng.random() < 0.3 and lo <= 0 <= hi:                # pruned
        v = np.where(rng.random(size) < 0.6, 0, v)
    return v


def acc_range(w, in_dtype, bias):
    """Worst case of the accumulator, in Python integers, straight from SPEC 2.1."""
    lo_in, hi_in = limits(in_dtype)
    los, his = [], []
    for m, row in enumerate(w.tolist()):
        b = int(bias[m]) if bias is not None else 0
        los.append(sum(min(x * lo_in, x * hi_in) for x in row) + b)
        his.append(sum(max(x * lo_in, x * hi_in) for x in row) + b)
    return los, his


def random_model(rng, *, layers=None):
    """(doc, arrays) of a random valid model, arrays partly inline, partly in weights.npz."""
    arrays = {}

    def put(name, value):
        value = np.asarray(value, dtype=np.int64)
        if rng.random() < 0.3:
            return value.tolist()
        arrays[name] = value
        return name

    in_dtype = str(rng.choice(INPUT_DTYPES))
    shape = [int(s) for s in rng.integers(1, 5, size=int(rng.integers(1, 3)))]
    k = int(np.prod(shape))
    doc = {"format": "nnaccel-model/1", "name": f"m{int(rng.integers(1000))}",
           "input": {"shape": shape, "dtype": in_dtype}, "layers": []}
    n_layers = layers or int(rng.integers(1, 4))
    for i in range(n_layers):
        name = f"l{i}"
        m = int(rng.integers(1, 6))
        wdtype = str(rng.choice(WEIGHT_DTYPES))
        spec = {"name": name, "op": "linear", "weight_dtype": wdtype}
        if rng.random() < 0.3:
            lo, hi = limits(wdtype)
            n = int(rng.integers(1, 9))
            cb = np.unique(random_values(rng, wdtype, n))
            idx = rng.integers(0, cb.size, size=(m, k))
            w = cb[idx]
            spec["codebook"], spec["indices"] = put(f"{name}.cb", cb), put(f"{name}.idx", idx)
            if rng.random() < 0.5:
                spec["weight"] = put(f"{name}.w", w)
        else:
            w = random_values(rng, wdtype, (m, k))
            spec["weight"] = put(f"{name}.w", w)
        bias = None
        if rng.random() < 0.5:
            bias = rng.integers(INT32_LO, INT32_HI, size=m, endpoint=True)
            if rng.random() < 0.5:
                bias //= 1 << 20
            spec["bias"] = put(f"{name}.b", bias)
        los, his = acc_range(w, in_dtype, bias)
        kinds = ["requant", "threshold"]
        if INT32_LO <= min(los) and max(his) <= INT32_HI:
            kinds += ["identity"] * (1 if i < n_layers - 1 else 3)
        kind = str(rng.choice(kinds))
        if kind == "identity":
            out = {"kind": "identity"}
            if rng.random() < 0.5:
                out["dtype"] = "int32"
            out_dtype = "int32"
        elif kind == "requant":
            out_dtype = str(rng.choice(["int2", "int4", "int8", "int32", "uint1", "uint4",
                                        "uint8", "uint32"]))
            mult = rng.integers(0, 1 << 31, size=m if rng.random() < 0.5 else 1)
            shift = rng.integers(0, 32, size=m if rng.random() < 0.5 else 1)
            out = {"kind": "requant", "dtype": out_dtype,
                   "mult": int(mult[0]) if mult.size == 1 and rng.random() < 0.5
                   else put(f"{name}.mult", mult),
                   "shift": int(shift[0]) if shift.size == 1 and rng.random() < 0.5
                   else put(f"{name}.shift", shift)}
            if rng.random() < 0.7:
                out["relu"] = bool(rng.random() < 0.5)
        else:
            out_dtype = str(rng.choice(["bipolar", "uint1", "uint2", "uint3", "uint8"]))
            levels = 1 if out_dtype == "bipolar" else int(
                rng.integers(1, min(limits(out_dtype)[1], 6), endpoint=True))
            rows = m if rng.random() < 0.6 else 1
            lo_t, hi_t = max(min(los), -(1 << 62)), min(max(his), 1 << 62)
            t = [sorted(lo_t + int(u * (hi_t - lo_t)) for u in rng.random(levels))
                 for _ in range(rows)]
            out = {"kind": "threshold", "dtype": out_dtype,
                   "thresholds": put(f"{name}.t", t)}
        spec["output"] = out
        doc["layers"].append(spec)
        in_dtype, k = out_dtype, m
    return doc, arrays


def assert_same_model(a, b):
    assert (a.name, a.input_shape, a.input_dtype) == (b.name, b.input_shape, b.input_dtype)
    assert len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers, strict=True):
        assert (la.name, la.op, la.in_dtype, la.weight_dtype) == \
            (lb.name, lb.op, lb.in_dtype, lb.weight_dtype)
        for key in ("weight", "bias", "codebook", "indices"):
            va, vb = getattr(la, key), getattr(lb, key)
            assert (va is None) == (vb is None), key
            if va is not None:
                assert va.shape == vb.shape and np.array_equal(va, vb), key
        oa, ob = la.output, lb.output
        assert (oa.kind, oa.dtype, oa.relu) == (ob.kind, ob.dtype, ob.relu)
        for key in ("mult", "shift", "thresholds"):
            va, vb = getattr(oa, key), getattr(ob, key)
            assert (va is None) == (vb is None), key
            if va is not None:
                assert va.shape == vb.shape and np.array_equal(va, vb), key


def _resolve(ref, arrays):
    return np.asarray(arrays[ref] if isinstance(ref, str) else ref)


def assert_model_matches_doc(model, doc, arrays):
    """The IR holds exactly what the file says (scalars and (1, L) rows broadcast)."""
    assert model.name == doc["name"]
    assert list(model.input_shape) == doc["input"]["shape"]
    assert str(model.input_dtype) == doc["input"]["dtype"]
    for layer, spec in zip(model.layers, doc["layers"], strict=True):
        assert layer.name == spec["name"]
        assert str(layer.weight_dtype) == spec["weight_dtype"]
        if "codebook" in spec:
            cb, idx = _resolve(spec["codebook"], arrays), _resolve(spec["indices"], arrays)
            assert layer.codebook.tolist() == cb.tolist()
            assert layer.indices.tolist() == idx.tolist()
            assert layer.weight.tolist() == [[int(cb[i]) for i in row] for row in idx.tolist()]
        if "weight" in spec:
            assert layer.weight.tolist() == _resolve(spec["weight"], arrays).tolist()
        if spec.get("bias") is not None:
            assert layer.bias.tolist() == _resolve(spec["bias"], arrays).tolist()
        else:
            assert layer.bias is None
        out, m = spec["output"], layer.out_features
        assert layer.output.kind is OutputKind(out["kind"])
        assert str(layer.output.dtype) == out.get("dtype", "int32")
        if out["kind"] == "requant":
            for key in ("mult", "shift"):
                v = _resolve(out[key], arrays).reshape(-1)
                want = [int(v[0])] * m if v.size == 1 else v.tolist()
                assert getattr(layer.output, key).tolist() == want
            assert layer.output.relu is out.get("relu", False)
        if out["kind"] == "threshold":
            t = _resolve(out["thresholds"], arrays)
            want = t.tolist() * m if t.shape[0] == 1 else t.tolist()
            assert layer.output.thresholds.tolist() == want


@pytest.mark.parametrize("seed", range(40))
def test_round_trip(tmp_path, seed):
    rng = np.random.default_rng(seed)
    doc, arrays = random_model(rng)
    a = read_model(write_raw(tmp_path / "raw", doc, arrays or None))
    assert_model_matches_doc(a, doc, arrays)
    out = write_model(a, tmp_path / "out" / "model")
    assert out == tmp_path / "out" / "model"
    assert sorted(p.name for p in out.iterdir()) == [".nnaccel-output.json", "model.json",
                                                     "weights.npz"]
    b = read_model(out)
    assert_same_model(a, b)
    # and once more, through write_model's own output (a fixed point)
    c = read_model(write_model(b, tmp_path / "again"))
    assert_same_model(b, c)
    assert json.loads((out / "model.json").read_text()) == \
        json.loads((tmp_path / "again" / "model.json").read_text())


def test_round_trip_covers_everything():
    """The random models above really contain every output kind, dtype and codebooks."""
    kinds, dtypes, codebooks, inline = set(), set(), 0, 0
    for seed in range(40):
        doc, arrays = random_model(np.random.default_rng(seed))
        dtypes.add(doc["input"]["dtype"])
        for spec in doc["layers"]:
            kinds.add(spec["output"]["kind"])
            dtypes.add(spec["weight_dtype"])
            codebooks += "codebook" in spec
            inline += isinstance(spec.get("weight"), list)
    assert kinds == {"identity", "requant", "threshold"}
    assert {"int2", "int32", "uint1", "uint32", "bipolar"} <= dtypes
    assert codebooks >= 3 and inline >= 3


def test_round_trip_good_model(tmp_path):
    doc, arrays = good_model()
    a = read_model(write_raw(tmp_path / "raw", doc, arrays))
    b = read_model(write_model(a, tmp_path / "out"))
    assert_same_model(a, b)
    x = np.random.default_rng(0).integers(0, 16, size=(20, 2, 3))
    assert np.array_equal(a.forward(x), b.forward(x))


def test_write_model_overwrites(tmp_path):
    docs = [random_model(np.random.default_rng(s)) for s in (1, 2)]
    models = [read_model(write_raw(tmp_path / f"raw{i}", d, a or None))
              for i, (d, a) in enumerate(docs)]
    target = tmp_path / "target"
    write_model(models[0], target)
    write_model(models[1], target)  # its own complete earlier output is replaced
    assert_same_model(read_model(target), models[1])
    assert sorted(p.name for p in target.iterdir()) == [".nnaccel-output.json", "model.json",
                                                        "weights.npz"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw0", "raw1", "target"]
    (target / "notes.txt").write_text("the user's")  # ... but never a file of the user's
    with pytest.raises(UsageError, match="notes.txt"):
        write_model(models[0], target)
    assert (target / "notes.txt").read_text() == "the user's"
    assert_same_model(read_model(target), models[1])


def test_write_model_creates_parents(tmp_path):
    doc, arrays = good_model()
    model = read_model(write_raw(tmp_path / "raw", doc, arrays))
    out = write_model(model, tmp_path / "a" / "b" / "c")
    assert read_model(out).name == "good_model"


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o027])
def test_write_model_respects_umask(tmp_path, umask):
    doc, arrays = good_model()
    model = read_model(write_raw(tmp_path / "raw", doc, arrays))
    old = os.umask(umask)
    try:
        out = write_model(model, tmp_path / "out")
        reference = tmp_path / "made_by_mkdir"
        reference.mkdir()
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    assert out.stat().st_mode & 0o777 == reference.stat().st_mode & 0o777
    for f in out.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask


def _boom(*args, **kwargs):
    raise OSError("disk full")


def test_write_model_is_atomic_on_failure(tmp_path, monkeypatch):
    doc, arrays = good_model()
    model = read_model(write_raw(tmp_path / "raw", doc, arrays))
    parent = tmp_path / "out"
    parent.mkdir()
    monkeypatch.setattr(model_io.np, "savez_compressed", _boom)
    with pytest.raises(OSError, match="disk full"):
        write_model(model, parent / "model")
    assert list(parent.iterdir()) == []          # neither the model nor a temporary directory


def test_write_model_failure_keeps_the_old_model(tmp_path, monkeypatch):
    doc, arrays = good_model()
    model = read_model(write_raw(tmp_path / "raw", doc, arrays))
    target = write_model(model, tmp_path / "out" / "model")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    other = read_model(write_raw(tmp_path / "raw2", *random_model(np.random.default_rng(3))))
    monkeypatch.setattr(model_io.np, "savez_compressed", _boom)
    with pytest.raises(OSError):
        write_model(other, target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model"]


def test_write_model_failure_in_json(tmp_path, monkeypatch):
    doc, arrays = good_model()
    model = read_model(write_raw(tmp_path / "raw", doc, arrays))

    def bad_dumps(*args, **kwargs):
        raise TypeError("not serialisable")

    monkeypatch.setattr(model_io.json, "dumps", bad_dumps)
    with pytest.raises(TypeError):
        write_model(model, tmp_path / "out" / "model")
    assert list((tmp_path / "out").iterdir()) == []
