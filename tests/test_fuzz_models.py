"""Property-based fuzzing of model files with hypothesis.

* Random valid ``linear`` models, written as raw SPEC files (``model.json`` + ``weights.npz``,
  built here, not through the project's writer): ``read_model`` accepts them and
  ``Model.forward`` equals :func:`spec_forward`, an independent statement of SPEC 2.1/2.2 in
  exact Python integers; a few are generated and simulated in amaranth.sim under random stalls
  and compared bit for bit.
* Random invalid models (one mutation of a valid one: wrong shapes, values outside their
  dtype, unknown fields, wrong types, huge numbers, deep nesting, bad names): ``nnaccel
  generate`` exits 2 with one message naming a field, no traceback, and writes nothing.

Example counts are small and derandomized in ``make test``; ``make fuzz`` (``NNACCEL_FUZZ=1``)
runs many more random ones. Failures found are kept in tests/fuzz_regressions/.
"""

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nnaccel.cli import main
from nnaccel.gen.model_io import read_model

FUZZ = bool(os.environ.get("NNACCEL_FUZZ"))


def budget(examples):
    """Settings for ``examples`` cases in ``make test`` (fixed), 25 times more under fuzz."""
    return settings(max_examples=examples * (25 if FUZZ else 1), derandomize=not FUZZ,
                    deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- dtypes, written out from SPEC section 1 --------------------------------------------------

INPUT_DTYPES = ["bipolar", "uint1", "uint2", "uint4", "uint8", "int2", "int3", "int4", "int8",
                "int16"]
WEIGHT_DTYPES = ["bipolar", "int2", "int3", "int4", "int8", "uint1", "uint2", "uint3"]
INT32 = (-(1 << 31), (1 << 31) - 1)


def limits(dtype):
    if dtype == "bipolar":
        return -1, 1
    bits = int(dtype.lstrip("uint"))
    if dtype.startswith("u"):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def values(dtype):
    """A strategy of one value of ``dtype``."""
    if dtype == "bipolar":
        return st.sampled_from([-1, 1])
    lo, hi = limits(dtype)
    return st.one_of(st.sampled_from([lo, hi]), st.integers(lo, hi))


def matrix(draw, dtype, rows, cols):
    return [[draw(values(dtype)) for _ in range(cols)] for _ in range(rows)]


# -- the independent reference (SPEC 2.1, 2.2) -------------------------------------------------

def spec_forward(doc, arrays, x):
    """One input vector ``x`` (list of ints) through the model ``doc`` with ``arrays``."""
    for layer in doc["layers"]:
        if "weight" in layer:
            w = arrays[layer["weight"]].tolist()
        else:
            cb, idx = arrays[layer["codebook"]].tolist(), arrays[layer["indices"]].tolist()
            w = [[cb[i] for i in row] for row in idx]
        bias = arrays[layer["bias"]].tolist() if "bias" in layer else [0] * len(w)
        acc = [sum(wv * xv for wv, xv in zip(row, x, strict=True)) + b
               for row, b in zip(w, bias, strict=True)]
        out = layer["output"]
        if out["kind"] == "identity":
            x = acc
        elif out["kind"] == "requant":
            mult, shift = (_channels(out[f], arrays, len(acc)) for f in ("mult", "shift"))
            lo, hi = limits(out["dtype"])
            if out.get("relu"):
                lo = max(lo, 0)
            x = []
            for a, mu, sh in zip(acc, mult, shift, strict=True):
                t = a * mu
                r = t if sh == 0 else (t + (1 << (sh - 1))) >> sh
                x.append(min(max(r, lo), hi))
        else:
            t = arrays[out["thresholds"]].tolist()
            counts = [sum(a >= level for level in t[m if len(t) > 1 else 0])
                      for m, a in enumerate(acc)]
            x = ([1 if c else -1 for c in counts] if out["dtype"] == "bipolar" else counts)
    return x


def _channels(field, arrays, m):
    if isinstance(field, int):
        return [field] * m
    v = arrays[field].reshape(-1).tolist()
    return v * m if len(v) == 1 else v


def acc_range(w, bias, in_dtype):
    lo_x, hi_x = limits(in_dtype)
    lo = [sum(min(a * lo_x, a * hi_x) for a in row) + b for row, b in zip(w, bias, strict=True)]
    hi = [sum(max(a * lo_x, a * hi_x) for a in row) + b for row, b in zip(w, bias, strict=True)]
    return lo, hi


# -- random valid models -----------------------------------------------------------------------

@st.composite
def valid_models(draw, max_layers=2, max_size=6):
    """(doc, arrays): a random valid model of 1..max_layers linear layers."""
    in_dtype = draw(st.sampled_from(INPUT_DTYPES))
    width = draw(st.integers(1, max_size))
    doc = {"format": "nnaccel-model/1", "name": "fz",
           "input": {"shape": [width], "dtype": in_dtype}, "layers": []}
    arrays = {}
    cur = in_dtype
    depth = draw(st.integers(1, max_layers))
    for n in range(depth):
        name = f"l{n}"
        m = draw(st.integers(1, max_size))
        wdt = draw(st.sampled_from(WEIGHT_DTYPES))
        layer = {"name": name, "op": "linear", "weight_dtype": wdt}
        if draw(st.booleans()) and wdt != "bipolar" or draw(st.integers(0, 3)) == 0:
            book = draw(st.lists(values(wdt), min_size=1, max_size=4, unique=True))
            idx = [[draw(st.integers(0, len(book) - 1)) for _ in range(width)]
                   for _ in range(m)]
            arrays[f"{name}.cb"], arrays[f"{name}.idx"] = np.array(book), np.array(idx)
            layer.update(codebook=f"{name}.cb", indices=f"{name}.idx")
            w = [[book[i] for i in row] for row in idx]
            if draw(st.booleans()):
                arrays[f"{name}.w"] = np.array(w)
                layer["weight"] = f"{name}.w"
        else:
            w = matrix(draw, wdt, m, width)
            if wdt != "bipolar" and draw(st.booleans()):  # pruned
                w = [[v if draw(st.booleans()) else 0 for v in row] for row in w]
            arrays[f"{name}.w"] = np.array(w)
            layer["weight"] = f"{name}.w"
        bias = [0] * m
        if draw(st.booleans()):
            bias = draw(st.lists(st.one_of(st.integers(-100, 100), st.integers(*INT32)),
                                 min_size=m, max_size=m))
            arrays[f"{name}.b"] = np.array(bias)
            layer["bias"] = f"{name}.b"
        lo, hi = acc_range(w, bias, cur)
        layer["output"], cur = draw(output_stage(name, arrays, m, lo, hi, last=n == depth - 1))
        doc["layers"].append(layer)
        width = m
    return doc, arrays


@st.composite
def output_stage(draw, name, arrays, m, lo, hi, *, last):
    kinds = ["requant", "threshold"]
    if INT32[0] <= min(lo) and max(hi) <= INT32[1]:
        kinds.append("identity")
    kind = draw(st.sampled_from(kinds))
    if kind == "identity":
        return {"kind": "identity", "dtype": "int32"}, "int32"
    if kind == "requant":
        dtype = draw(st.sampled_from(["uint1", "uint2", "uint4", "uint8", "int2", "int4",
                                      "int8", "int16"]))
        out = {"kind": "requant", "dtype": dtype, "relu": draw(st.booleans())}
        for field, top in (("mult", (1 << 31) - 1), ("shift", 31)):
            vals = st.one_of(st.integers(0, top), st.sampled_from([0, top]))
            if draw(st.booleans()):
                out[field] = draw(vals)
            else:
                arrays[f"{name}.{field}"] = np.array(draw(st.lists(vals, min_size=m,
                                                                   max_size=m)))
                out[field] = f"{name}.{field}"
        return out, dtype
    dtype = draw(st.sampled_from(["bipolar", "uint1", "uint2", "uint3"]))
    levels = 1 if dtype == "bipolar" else draw(st.integers(1, limits(dtype)[1]))
    rows = draw(st.sampled_from([1, m]))
    span = st.integers(min(lo) - 2, max(hi) + 2)
    t = [sorted(draw(st.lists(span, min_size=levels, max_size=levels))) for _ in range(rows)]
    arrays[f"{name}.t"] = np.array(t)
    return {"kind": "threshold", "dtype": dtype, "thresholds": f"{name}.t"}, dtype


def write_raw(path, doc, arrays, text=None):
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.json").write_text(text if text is not None else json.dumps(doc))
    with open(path / "weights.npz", "wb") as f:
        if NPZ_BYTES in arrays:
            f.write(arrays[NPZ_BYTES])
        else:
            np.savez(f, **arrays)
    return path


def inputs(doc):
    dtype, (k,) = doc["input"]["dtype"], doc["input"]["shape"]
    return st.lists(st.lists(values(dtype), min_size=k, max_size=k), min_size=1, max_size=3)


@budget(40)
@given(case=valid_models(), data=st.data())
def test_valid_models_read_and_forward(case, data):
    doc, arrays = case
    x = data.draw(inputs(doc))
    with tempfile.TemporaryDirectory() as tmp:
        model = read_model(write_raw(Path(tmp) / "m", doc, arrays))
    got = np.asarray(model.forward(np.array(x, dtype=np.int64))).tolist()
    assert got == [spec_forward(doc, arrays, row) for row in x]


@budget(8)
@given(case=valid_models(max_layers=2, max_size=4), data=st.data())
def test_valid_models_in_amaranth_sim(case, data):
    from nnaccel.gen.generate import generate
    from nnaccel.gen.plan import Engine, Options
    from nnaccel.sim.amsim import StallPattern

    from .gen.test_network import run_stalled

    doc, arrays = case
    x = data.draw(inputs(doc).filter(lambda rows: len(rows) >= 2))
    with tempfile.TemporaryDirectory() as tmp:
        model = read_model(write_raw(Path(tmp) / "m", doc, arrays))
    # every layer on the MVU (as tests/gen/test_network.py, whose stream driver this reuses),
    # a lane budget any model of two layers fits
    mvu = tuple((layer.name, Engine.MVU) for layer in model.layers)
    design = generate(model, Options(max_lanes=data.draw(st.integers(4, 24)), engines=mvu))
    pattern = StallPattern(idle=0.3, stall=0.3)
    got, _lasts = run_stalled(design, np.array(x, dtype=np.int64), pattern, seed=1)
    assert np.asarray(got).tolist() == [spec_forward(doc, arrays, row) for row in x]


# -- random invalid models ---------------------------------------------------------------------

BAD_NAMES = [5, "", "1abc", "a-b", "x" * 300, "module", "clk", "s_axis_tdata", None]
BAD_DTYPES = [5, "int1", "int33", "uint0", "uint33", "float32", "bipolar2", "INT8", None]
WRONG_TYPES = [5, -1, 1.5, True, None, "x", [], {}, [[1]], {"a": 1}]
HUGE = "1" + "0" * 5000


def _layer(doc, draw):
    return draw(st.sampled_from(doc["layers"]))


def _some_array(doc, draw, *names):
    """A layer and one of its array fields among ``names`` (top level or in ``output``)."""
    found = [(layer, where, f) for layer in doc["layers"]
             for where, spec in ((layer, layer), ("output", layer["output"]))
             for f in names if isinstance(spec.get(f), str)]
    return draw(st.sampled_from(found)) if found else None


def mutate(draw, doc, arrays):
    """One mutation that makes ``(doc, arrays)`` invalid; returns the raw JSON text (or None
    to dump ``doc``) and the mutation's name."""
    kind = draw(st.sampled_from([
        "unknown_field", "missing_field", "bad_name", "bad_dtype", "wrong_type", "bad_shape",
        "out_of_dtype", "float_array", "missing_array", "bad_bias", "bad_requant",
        "bad_thresholds", "bad_indices", "huge_number", "deep_nesting", "truncated",
        "bad_format", "wrapping_shape", "bad_inputs", "pickled_array", "bad_npz"]))
    layer = _layer(doc, draw)
    if kind == "unknown_field":
        where = draw(st.sampled_from(["top", "input", "layer", "output"]))
        target = {"top": doc, "input": doc["input"], "layer": layer,
                  "output": layer["output"]}[where]
        target[draw(st.sampled_from(["bogus", "Weight", "stride_x", "relu2"]))] = 1
    elif kind == "missing_field":
        where = draw(st.sampled_from(["format", "input", "layers", "op", "weight_dtype",
                                      "output", "kind", "shape", "dtype"]))
        if where in ("format", "input", "layers"):
            del doc[where]
        elif where in ("shape", "dtype"):
            del doc["input"][where]
        elif where == "kind":
            del layer["output"]["kind"]
        else:
            del layer[where]
    elif kind == "bad_name":
        target = draw(st.sampled_from([doc, layer]))
        target["name"] = draw(st.sampled_from(BAD_NAMES))
    elif kind == "bad_dtype":
        where = draw(st.sampled_from(["input", "weight_dtype", "output"]))
        bad = draw(st.sampled_from(BAD_DTYPES))
        if where == "input":
            doc["input"]["dtype"] = bad
        elif where == "weight_dtype":
            layer["weight_dtype"] = bad
        else:
            layer["output"]["dtype"] = bad if bad is not None else "bipolar2"
    elif kind == "wrong_type":
        where = draw(st.sampled_from(["shape", "op", "weight", "output", "kind", "layers",
                                      "relu", "input"]))
        bad = draw(st.sampled_from(WRONG_TYPES))
        if where == "shape":
            doc["input"]["shape"] = bad if bad != [[1]] else [[1]]
        elif where == "op":
            layer["op"] = bad if bad is not None else "conv3d"
        elif where == "weight":
            layer.pop("codebook", None), layer.pop("indices", None)
            layer["weight"] = bad if not isinstance(bad, str) else "no_such_array"
        elif where == "output":
            layer["output"] = bad if not isinstance(bad, dict) or bad == {"a": 1} else []
        elif where == "kind":
            layer["output"]["kind"] = bad if bad is not None else "softmax"
        elif where == "layers":
            doc["layers"] = bad if bad != [] else []
        elif where == "relu":
            layer["output"] = {"kind": "requant", "dtype": "int8", "mult": 1, "shift": 0,
                               "relu": bad if not isinstance(bad, bool) else "yes"}
        else:
            doc["input"] = bad if not isinstance(bad, dict) else {"a": 1}
    elif kind == "bad_shape":
        found = _some_array(doc, draw, "weight", "indices")
        if found is None:
            doc["input"]["shape"] = [doc["input"]["shape"][0] + 1]
        else:
            spec, _where, field = found
            a = arrays[spec[field]]
            change = draw(st.sampled_from(["column", "row3d", "flat", "empty"]))
            if change == "column":
                a = np.concatenate([a, a[:, :1]], axis=1)
            elif change == "row3d":
                a = a[None]
            elif change == "flat":
                a = a.reshape(-1)
            else:
                a = a[:, :0]
            arrays[spec[field]] = a
    elif kind == "out_of_dtype":
        found = _some_array(doc, draw, "weight", "codebook")
        if found is None:
            layer["output"] = {"kind": "requant", "dtype": "int8", "mult": -1, "shift": 0}
        else:
            spec, _where, field = found
            lo, hi = limits(spec["weight_dtype"])
            a = np.array(arrays[spec[field]])
            a.flat[draw(st.integers(0, a.size - 1))] = (
                0 if spec["weight_dtype"] == "bipolar" else draw(st.sampled_from([lo - 1,
                                                                                 hi + 1])))
            arrays[spec[field]] = a
            if field == "codebook" and "weight" in spec:
                del spec["weight"]
    elif kind == "float_array":
        found = _some_array(doc, draw, "weight", "bias", "thresholds", "mult")
        if found is None:
            doc["input"]["shape"] = [1.5]
        else:
            spec, where, field = found
            ref = (spec if where is spec else spec["output"])[field]
            arrays[ref] = arrays[ref] + 0.5
    elif kind == "missing_array":
        found = _some_array(doc, draw, "weight", "bias", "thresholds", "mult", "shift",
                            "codebook", "indices")
        if found is None:
            layer["bias"] = "no_such_array"
        else:
            spec, where, field = found
            (spec if where is spec else spec["output"])[field] = "no_such_array"
    elif kind == "bad_bias":
        m = _rows(layer, arrays)
        bias = draw(st.sampled_from([[1] * (m + 1), [1 << 31] * m, [-(1 << 31) - 1] * m,
                                     [[1] * m]]))
        arrays[f"{layer['name']}.badb"] = np.array(bias)
        layer["bias"] = f"{layer['name']}.badb"
    elif kind == "bad_requant":
        field, value = draw(st.sampled_from([("mult", 1 << 31), ("mult", -1), ("shift", 32),
                                             ("shift", -1), ("mult", "1"), ("shift", 2.5)]))
        out = {"kind": "requant", "dtype": "int8", "mult": 1, "shift": 0}
        out[field] = value
        layer["output"] = out
    elif kind == "bad_thresholds":
        m = _rows(layer, arrays)
        t, dtype = draw(st.sampled_from([
            ([[3, 1]] * m, "uint2"), ([[0, 1, 2, 3]], "uint2"), ([[0, 1]], "bipolar"),
            ([[0]] * (m + 1), "uint1"), ([0], "uint1"), ([[0]], "int4"), ([[]], "uint1")]))
        arrays[f"{layer['name']}.badt"] = np.array(t, dtype=np.int64)
        layer["output"] = {"kind": "threshold", "dtype": dtype,
                           "thresholds": f"{layer['name']}.badt"}
    elif kind == "bad_indices":
        m = _rows(layer, arrays)
        k = _cols(layer, arrays)
        layer.pop("weight", None)
        arrays[f"{layer['name']}.cb2"] = np.array([1])
        arrays[f"{layer['name']}.idx2"] = np.full((m, k), draw(st.sampled_from([1, -1])))
        layer.update(codebook=f"{layer['name']}.cb2", indices=f"{layer['name']}.idx2")
        layer["weight_dtype"] = "int4"
    elif kind == "huge_number":
        where = draw(st.sampled_from(["shape", "shift", "mult", "bias_inline"]))
        if where == "shape":
            doc["input"]["shape"] = ["@HUGE@"]
        elif where == "bias_inline":
            layer["bias"] = "@HUGE@"
        else:
            layer["output"] = {"kind": "requant", "dtype": "int8", "mult": 1, "shift": 0}
            layer["output"][where] = "@HUGE@"
        return json.dumps(doc).replace('"@HUGE@"', HUGE), kind
    elif kind == "deep_nesting":
        depth = draw(st.sampled_from([1000, 100_000]))
        doc["input"]["shape"] = "@DEEP@"
        return json.dumps(doc).replace('"@DEEP@"', "[" * depth + "]" * depth), kind
    elif kind == "truncated":
        text = json.dumps(doc)
        return text[:draw(st.integers(0, len(text) - 1))], kind
    elif kind == "bad_format":
        doc["format"] = draw(st.sampled_from(["nnaccel-model/2", "", 1, None, "onnx"]))
    elif kind == "wrapping_shape":
        doc["input"]["shape"] = draw(st.sampled_from([[2, 4, 4611686018427387905], [0], [-3],
                                                      [1 << 64], []]))
    elif kind == "bad_inputs":
        layer["inputs"] = draw(st.sampled_from([["nope"], [layer["name"]], "input", [5], []]))
        if layer["inputs"] == [] or layer["inputs"] == ["input"]:
            layer["inputs"] = ["later_layer"]
    elif kind == "pickled_array":
        found = _some_array(doc, draw, "weight", "bias", "thresholds", "codebook")
        spec, where, field = found or (layer, layer, "bias")
        ref = (spec if where is spec else spec["output"]).setdefault(field, "pickled")
        arrays[ref] = np.array([object()] * _rows(layer, arrays), dtype=object)
    elif kind == "bad_npz":
        arrays[NPZ_BYTES] = draw(st.sampled_from([b"", b"PK\x03\x04 not a zip", b"\x93NUMPY"]))
    return None, kind


NPZ_BYTES = "@raw npz bytes@"


def _rows(layer, arrays):
    ref = layer.get("weight") or layer.get("indices")
    return int(arrays[ref].shape[0])


def _cols(layer, arrays):
    ref = layer.get("weight") or layer.get("indices")
    return int(arrays[ref].shape[1])


def run_cli(argv):
    """``nnaccel`` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as e:  # argparse
            status = e.code
    return status, out.getvalue(), err.getvalue()


def check_refused(doc, arrays, text):
    """``nnaccel generate`` on the model exits 2 with one message naming a field, no
    traceback, and writes nothing."""
    with tempfile.TemporaryDirectory() as tmp:
        model = write_raw(Path(tmp) / "m", doc, arrays, text)
        before = sorted(p.name for p in Path(tmp).iterdir())
        out = Path(tmp) / "out"
        status, _stdout, err = run_cli(["generate", str(model), "-o", str(out)])
        after = sorted(p.name for p in Path(tmp).iterdir())
    assert status == 2, f"exit {status}: {err[-500:]}"
    assert "Traceback" not in err
    assert "field" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert after == before, f"left {sorted(set(after) - set(before))}"


@st.composite
def invalid_models(draw):
    doc, arrays = draw(valid_models(max_layers=2, max_size=4))
    text, kind = mutate(draw, doc, arrays)
    return doc, arrays, text, kind


@budget(60)
@given(case=invalid_models())
def test_invalid_models_refused(case):
    doc, arrays, text, _kind = case
    check_refused(doc, arrays, text)


def test_refusal_check_can_fail():
    """The check above fails on an unmutated (valid) model: it exits 0 and writes a design."""
    doc = {"format": "nnaccel-model/1", "name": "ok", "input": {"shape": [2], "dtype": "int4"},
           "layers": [{"name": "l0", "op": "linear", "weight": "w", "weight_dtype": "int4",
                       "output": {"kind": "identity", "dtype": "int32"}}]}
    with pytest.raises(AssertionError, match="exit 0"):
        check_refused(doc, {"w": np.array([[1, -2]])}, None)


# -- random valid feature-map models (SPEC 2.1b) -----------------------------------------------

def conv_forward(layer, arrays, x, shape):
    """``conv2d`` of SPEC 2.1b on ``x`` (nested lists (C, H, W)); returns acc (M, OH, OW)."""
    c, h, w_ = shape
    wt = arrays[layer["weight"]].tolist()
    m, cg, kh, kw = len(wt), len(wt[0]), len(wt[0][0]), len(wt[0][0][0])
    g_count = layer.get("groups", 1)
    sh, sw = layer.get("stride", [1, 1])
    dh, dw = layer.get("dilation", [1, 1])
    top, left, bottom, right = layer.get("padding", [0, 0, 0, 0])
    pv = layer.get("pad_value", 0)
    hp, wp = h + top + bottom, w_ + left + right
    xp = [[[x[ch][r - top][q - left] if top <= r < top + h and left <= q < left + w_ else pv
            for q in range(wp)] for r in range(hp)] for ch in range(c)]
    oh, ow = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    bias = arrays[layer["bias"]].tolist() if "bias" in layer else [0] * m
    per_group = m // g_count
    return [[[bias[o] + sum(wt[o][ch][i][j] * xp[(o // per_group) * cg + ch][r * sh + i * dh]
                                                   [q * sw + j * dw]
                            for ch in range(cg) for i in range(kh) for j in range(kw))
              for q in range(ow)] for r in range(oh)] for o in range(m)]


def maxpool_forward(layer, x):
    kh, kw = layer["kernel"]
    sh, sw = layer.get("stride", [kh, kw])
    h, w_ = len(x[0]), len(x[0][0])
    return [[[max(plane[r * sh + i][q * sw + j] for i in range(kh) for j in range(kw))
              for q in range((w_ - kw) // sw + 1)] for r in range((h - kh) // sh + 1)]
            for plane in x]


def stage_forward(out, arrays, acc):
    """The output stage of SPEC 2.2 on a list of per-channel lists of accumulators."""
    layer = {"weight": "@", "output": out}
    rows = [spec_forward({"layers": [layer]}, {**arrays, "@": np.eye(len(acc), dtype=np.int64)},
                         [a[n] for a in acc]) for n in range(len(acc[0]))]
    return [[row[ch] for row in rows] for ch in range(len(acc))]


@st.composite
def conv_models(draw):
    """(doc, arrays, input shape): conv2d, sometimes a maxpool2d, sometimes a final linear."""
    in_dtype = draw(st.sampled_from(INPUT_DTYPES))
    c = draw(st.integers(1, 3))
    groups = draw(st.sampled_from([g for g in (1, 2, 3) if c % g == 0]))
    m = groups * draw(st.integers(1, 2))
    # the unusual choice first: hypothesis leans towards early elements of sampled_from
    kh, kw = draw(st.sampled_from([3, 2, 1])), draw(st.sampled_from([2, 3, 1]))
    stride = [draw(st.sampled_from([2, 1])), draw(st.sampled_from([2, 1]))]
    dilation = [draw(st.sampled_from([2, 1])), draw(st.sampled_from([2, 1]))]
    padding = [draw(st.sampled_from([1, 0, 2])) for _ in range(4)]
    h = draw(st.integers(max(1, dilation[0] * (kh - 1) + 1 - padding[0] - padding[2]), 6))
    w_ = draw(st.integers(max(1, dilation[1] * (kw - 1) + 1 - padding[1] - padding[3]), 6))
    wdt = draw(st.sampled_from(WEIGHT_DTYPES))
    wt = [[[[draw(values(wdt)) for _ in range(kw)] for _ in range(kh)]
           for _ in range(c // groups)] for _ in range(m)]
    arrays = {"c.w": np.array(wt)}
    layer = {"name": "c", "op": "conv2d", "weight": "c.w", "weight_dtype": wdt,
             "groups": groups, "stride": stride, "dilation": dilation, "padding": padding}
    if in_dtype == "bipolar" or draw(st.sampled_from([True, True, False])):
        lo_x, hi_x = limits(in_dtype)
        layer["pad_value"] = draw(st.sampled_from([hi_x, lo_x]) | values(in_dtype))
    bias = [0] * m
    if draw(st.booleans()):
        bias = draw(st.lists(st.integers(-1000, 1000), min_size=m, max_size=m))
        arrays["c.b"], layer["bias"] = np.array(bias), "c.b"
    flat = [[v for plane in row for line in plane for v in line] for row in wt]
    lo, hi = acc_range(flat, bias, in_dtype)
    layer["output"], cur = draw(output_stage("c", arrays, m, lo, hi, last=False))
    doc = {"format": "nnaccel-model/1", "name": "fm",
           "input": {"shape": [c, h, w_], "dtype": in_dtype}, "layers": [layer]}
    oh = (h + padding[0] + padding[2] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (w_ + padding[1] + padding[3] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    if draw(st.booleans()):
        pk = [draw(st.integers(1, oh)), draw(st.integers(1, ow))]
        pool = {"name": "p", "op": "maxpool2d", "kernel": pk}
        if draw(st.booleans()):
            pool["stride"] = [draw(st.integers(1, 2)), draw(st.integers(1, 2))]
        doc["layers"].append(pool)
        ps = pool.get("stride", pk)
        oh, ow = (oh - pk[0]) // ps[0] + 1, (ow - pk[1]) // ps[1] + 1
    if draw(st.booleans()):
        k, n_out = m * oh * ow, draw(st.integers(1, 3))
        ldt = draw(st.sampled_from(WEIGHT_DTYPES))
        w2 = matrix(draw, ldt, n_out, k)
        arrays["f.w"] = np.array(w2)
        lo, hi = acc_range(w2, [0] * n_out, cur)
        out, _ = draw(output_stage("f", arrays, n_out, lo, hi, last=True))
        doc["layers"].append({"name": "f", "op": "linear", "weight": "f.w", "weight_dtype": ldt,
                              "output": out})
    return doc, arrays


def fm_forward(doc, arrays, x):
    """The feature-map model ``doc`` on one input ``x`` (nested lists (C, H, W))."""
    shape = doc["input"]["shape"]
    for layer in doc["layers"]:
        if layer["op"] == "conv2d":
            acc = conv_forward(layer, arrays, x, shape)
            oh, ow = len(acc[0]), len(acc[0][0])
            flat = stage_forward(layer["output"], arrays,
                                 [[v for line in plane for v in line] for plane in acc])
            x = [[ch[r * ow:(r + 1) * ow] for r in range(oh)] for ch in flat]
        elif layer["op"] == "maxpool2d":
            x = maxpool_forward(layer, x)
        else:
            x = spec_forward({"layers": [layer]}, arrays,
                             [v for plane in x for line in plane for v in line])
        if layer["op"] != "linear":
            shape = [len(x), len(x[0]), len(x[0][0])]
    return x


@budget(50)
@given(case=conv_models(), data=st.data())
def test_feature_map_models_read_and_forward(case, data):
    doc, arrays = case
    c, h, w_ = doc["input"]["shape"]
    dtype = doc["input"]["dtype"]
    plane = st.lists(st.lists(values(dtype), min_size=w_, max_size=w_), min_size=h, max_size=h)
    x = data.draw(st.lists(st.lists(plane, min_size=c, max_size=c), min_size=1, max_size=2))
    with tempfile.TemporaryDirectory() as tmp:
        model = read_model(write_raw(Path(tmp) / "m", doc, arrays))
    got = np.asarray(model.forward(np.array(x, dtype=np.int64))).tolist()
    assert got == [fm_forward(doc, arrays, one) for one in x]


@st.composite
def invalid_fm_models(draw):
    """A feature-map model with one spatial field made invalid (SPEC 2.1b, 5)."""
    doc, arrays = draw(conv_models())
    conv = doc["layers"][0]
    c, h, w_ = doc["input"]["shape"]
    wt = arrays["c.w"]
    kind = draw(st.sampled_from(["groups", "stride", "dilation", "padding", "pad_value",
                                 "pool_window", "conv_window", "channels", "pool_fields",
                                 "chain"]))
    if kind == "groups":
        conv["groups"] = draw(st.sampled_from([c + 1, 0, -1, "2", 2.0, [1]]))  # c+1 never divides c
    elif kind in ("stride", "dilation"):
        conv[kind] = draw(st.sampled_from([[0, 1], [1, -1], [1], [1, 1, 1], "1", [1.5, 1],
                                           [1 << 40, 1], None]))
    elif kind == "padding":
        conv["padding"] = draw(st.sampled_from([[-1, 0, 0, 0], [0, 0, 0], [1 << 40, 0, 0, 0],
                                                [0, 0, 0, "1"], 1]))
    elif kind == "pad_value":
        lo, hi = limits(doc["input"]["dtype"])
        conv["pad_value"] = draw(st.sampled_from(
            [0] if doc["input"]["dtype"] == "bipolar" else [hi + 1, lo - 1, 0.5, "0"]))
        conv["padding"] = [1, 1, 1, 1]
    elif kind == "pool_window":
        doc["layers"][1:] = [{"name": "p", "op": "maxpool2d",
                              "kernel": [draw(st.integers(100, 200)), 1]}]
    elif kind == "conv_window":
        top, left, bottom, right = conv.get("padding", [0, 0, 0, 0])
        conv["dilation"] = [1, 1]
        arrays["c.w"] = np.ones((wt.shape[0], wt.shape[1], h + top + bottom + 1, 1),
                                dtype=np.int64)
        conv["weight_dtype"] = "int2"
    elif kind == "channels":
        arrays["c.w"] = np.ones((wt.shape[0], wt.shape[1] + 1, *wt.shape[2:]), dtype=np.int64)
        conv["weight_dtype"] = "int2"
    elif kind == "pool_fields":
        pool = {"name": "p", "op": "maxpool2d",
                draw(st.sampled_from(["kernel", "stride", "padding"])):
                draw(st.sampled_from([[0, 1], [-1, -1], [1], "2", None]))}
        pool.setdefault("kernel", [1, 1])
        doc["layers"][1:] = [pool]
    else:
        doc["layers"][1:] = [{"name": "f", "op": "linear", "weight": "f.bad",
                              "weight_dtype": "int2",
                              "output": {"kind": "identity", "dtype": "int32"}}]
        arrays["f.bad"] = np.ones((2, 10_000), dtype=np.int64)
    return doc, arrays, kind


@budget(40)
@given(case=invalid_fm_models())
def test_invalid_feature_map_models_refused(case):
    doc, arrays, _kind = case
    check_refused(doc, arrays, None)


# -- random models under Verilator -------------------------------------------------------------

def _fm_inputs(doc, count):
    c, h, w_ = doc["input"]["shape"]
    dtype = doc["input"]["dtype"]
    plane = st.lists(st.lists(values(dtype), min_size=w_, max_size=w_), min_size=h, max_size=h)
    return st.lists(st.lists(plane, min_size=c, max_size=c), min_size=count, max_size=count)


@pytest.mark.verilator
@budget(1)  # two Verilator builds per example
@given(case=valid_models(max_layers=2, max_size=5), fm=conv_models(), data=st.data())
def test_random_models_under_verilator(case, fm, data):
    """A random MLP and a random feature-map chain, generated with a random lane budget and
    simulated under Verilator with random idle input and back-pressure, equal to SPEC restated
    here (not the package's reference)."""
    from nnaccel.gen.generate import generate
    from nnaccel.gen.plan import Options
    from nnaccel.sim.design import simulate

    doc, arrays = case
    x = data.draw(inputs(doc).filter(lambda rows: len(rows) >= 2))
    fm_doc, fm_arrays = fm
    fm_x = data.draw(_fm_inputs(fm_doc, 2))
    with tempfile.TemporaryDirectory() as tmp:
        model = read_model(write_raw(Path(tmp) / "m", doc, arrays))
        fm_model = read_model(write_raw(Path(tmp) / "f", fm_doc, fm_arrays))
    lanes = data.draw(st.integers(4, 24))
    got, _ = simulate(generate(model, Options(max_lanes=lanes)), np.array(x, dtype=np.int64),
                      idle=0.3, stall=0.3, seed=lanes, check=False)
    assert np.asarray(got).tolist() == [spec_forward(doc, arrays, row) for row in x]
    got, _ = simulate(generate(fm_model, Options(max_lanes=lanes)),
                      np.array(fm_x, dtype=np.int64), idle=0.3, stall=0.3, seed=lanes,
                      check=False)
    want = [fm_forward(fm_doc, fm_arrays, one) for one in fm_x]
    assert np.asarray(got).reshape(len(fm_x), -1).tolist() == \
        np.asarray(want, dtype=object).reshape(len(fm_x), -1).tolist()


@pytest.mark.verilator
def test_one_bit_output_under_verilator():
    """Found by the test above: a one-element uint1 output makes ``m_axis_tdata`` one bit wide,
    which cocotb reads as a ``Logic`` rather than a ``LogicArray``."""
    from nnaccel.gen.generate import generate
    from nnaccel.gen.plan import Options
    from nnaccel.sim.design import simulate

    doc = {"format": "nnaccel-model/1", "name": "fz",
           "input": {"shape": [1], "dtype": "bipolar"},
           "layers": [{"name": "l0", "op": "linear", "weight_dtype": "bipolar",
                       "codebook": "l0.cb", "indices": "l0.idx",
                       "output": {"kind": "requant", "dtype": "uint1", "relu": False,
                                  "mult": "l0.mult", "shift": "l0.shift"}}]}
    arrays = {"l0.cb": np.array([-1]), "l0.idx": np.array([[0]]), "l0.mult": np.array([1]),
              "l0.shift": np.array([0])}
    x = [[-1], [1], [-1]]
    with tempfile.TemporaryDirectory() as tmp:
        model = read_model(write_raw(Path(tmp) / "m", doc, arrays))
    got, _ = simulate(generate(model, Options()), np.array(x), stall=0.3, check=False)
    assert np.asarray(got).tolist() == [spec_forward(doc, arrays, row) for row in x]
