"""Read, validate and write SPEC model directories (``model.json`` + ``weights.npz``).

Every check of ../shared/SPEC.md section 5 happens here, before anything is generated; a failure
raises :class:`~nnaccel.gen.errors.ModelError` naming the layer and the field.
"""

import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..hw.common import reference as ref
from .atomic import atomic_directory
from .errors import ModelError
from .ir import DType, DTypeKind, Layer, Model, Op, OutputKind, OutputStage, readonly
from .names import name_problem

__all__ = ["FORMAT", "read_model", "write_model", "model_to_json"]

FORMAT = "nnaccel-model/1"
_RESERVED_OPS = {"conv2d", "maxpool2d"}
_MODEL_KEYS = {"format", "name", "input", "layers", "description"}
_INPUT_KEYS = {"shape", "dtype"}
_LAYER_KEYS = {"name", "op", "weight", "weight_dtype", "bias", "codebook", "indices", "output"}
_OUTPUT_KEYS = {
    "identity": {"kind", "dtype"},
    "requant": {"kind", "dtype", "mult", "shift", "relu"},
    "threshold": {"kind", "dtype", "thresholds"},
}
_UINT31 = (1 << 31) - 1
#: What reading a damaged weights.npz can raise (zip, zlib, numpy header, end of data).
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


class _Arrays:
    """Lazy access to weights.npz that turns every failure into a ModelError."""

    def __init__(self, path):
        self.path = path
        self._npz = self._file = None

    def _open(self, layer, fieldname):
        if self._npz is None:
            if not self.path.is_file():
                raise ModelError(layer, fieldname, f"weights.npz: no such file: {self.path}")
            try:
                # our own file object (closed by close()): np.load leaks the one it opens when
                # a damaged zip fails to open
                self._file = open(self.path, "rb")
                npz = np.load(self._file, allow_pickle=False)
            except _READ_ERRORS as e:
                raise ModelError(layer, fieldname,
                                 f"weights.npz is not a numpy .npz file: {e}") from None
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ModelError(layer, fieldname, "weights.npz is not a numpy .npz file")
            self._npz = npz
        return self._npz

    def get(self, layer, fieldname, ref):
        """Resolve an array field: a name in weights.npz, or an inline number/list."""
        if isinstance(ref, bool):
            raise ModelError(layer, fieldname, f"expected an array name or integers, not {ref!r}")
        if isinstance(ref, str):
            npz = self._open(layer, fieldname)
            if ref not in npz.files:
                raise ModelError(layer, fieldname, f"array {ref!r} is not in weights.npz")
            try:
                arr = npz[ref]
            except _READ_ERRORS as e:
                raise ModelError(layer, fieldname, f"array {ref!r} cannot be read: {e}") from None
            if not isinstance(arr, np.ndarray):
                raise ModelError(layer, fieldname, f"array {ref!r} is not a numpy array")
        elif isinstance(ref, (int, list)):
            try:
                arr = np.array(ref)
            except ValueError as e:
                raise ModelError(layer, fieldname, f"not a regular array: {e}") from None
        else:
            raise ModelError(layer, fieldname, f"expected an array name or integers, not {ref!r}")
        return _integers(layer, fieldname, arr)

    def close(self):
        if self._npz is not None:
            self._npz.close()
        if self._file is not None:
            self._file.close()


def _integers(layer, fieldname, arr):
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ModelError(layer, fieldname, "values must be integers")
        if arr.size and max(abs(float(arr.min())), abs(float(arr.max()))) >= 2.0**62:
            raise ModelError(layer, fieldname, "values out of range")
        arr = arr.astype(np.int64)
    elif np.issubdtype(arr.dtype, np.unsignedinteger):
        if arr.size and int(arr.max()) >= 1 << 62:
            raise ModelError(layer, fieldname, "values out of range")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ModelError(layer, fieldname, f"expected integers, not {arr.dtype}")
    return arr.astype(np.int64)


def _unknown_keys(layer, where, obj, allowed):
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ModelError(layer, f"{where}{extra[0]}", "unknown field")


def _dtype(layer, fieldname, text):
    try:
        dtype = DType.parse(text)
    except ValueError as e:
        raise ModelError(layer, fieldname, str(e)) from None
    if str(dtype) != text:
        raise ModelError(layer, fieldname, f"write {text!r} as {str(dtype)!r}")
    return dtype


def _require(layer, obj, key, prefix=""):
    if key not in obj:
        raise ModelError(layer, prefix + key, "missing")
    return obj[key]


def _in_dtype(layer, fieldname, arr, dtype):
    if not dtype.contains(arr):
        v = np.asarray(arr)
        bad = v[(v < dtype.lo) | (v > dtype.hi) | ((v == 0) & (dtype.kind is DTypeKind.BIPOLAR))]
        raise ModelError(layer, fieldname, f"value {int(bad.flat[0])} is outside {dtype}")


def _per_channel(layer, fieldname, arr, m, lo, hi):
    if arr.ndim == 0 or arr.shape == (1,):
        arr = np.full(m, int(arr.reshape(-1)[0]), dtype=np.int64)
    if arr.shape != (m,):
        raise ModelError(layer, fieldname, f"shape {arr.shape} is neither a scalar nor ({m},)")
    if arr.size and (int(arr.min()) < lo or int(arr.max()) > hi):
        raise ModelError(layer, fieldname, f"values must lie in {lo}..{hi}")
    return readonly(arr)


def _output(layer, spec, m, acc_lo, acc_hi, arrays):
    if not isinstance(spec, dict):
        raise ModelError(layer, "output", "expected an object")
    kind_text = _require(layer, spec, "kind", "output.")
    try:
        kind = OutputKind(kind_text)
    except ValueError:
        raise ModelError(layer, "output.kind",
                         f"unknown kind {kind_text!r} (identity, requant, threshold)") from None
    _unknown_keys(layer, "output.", spec, _OUTPUT_KEYS[kind.value])
    if kind is OutputKind.IDENTITY:
        dtype = _dtype(layer, "output.dtype", spec.get("dtype", "int32"))
        if dtype.kind is DTypeKind.BIPOLAR:
            raise ModelError(layer, "output.dtype", "identity cannot produce bipolar values")
        lo, hi = (int(min(acc_lo)), int(max(acc_hi))) if m else (0, 0)
        if lo < dtype.lo or hi > dtype.hi:
            raise ModelError(layer, "output.dtype",
                             f"{dtype} cannot hold the accumulator range {lo}..{hi}")
        return OutputStage(kind, dtype)
    dtype = _dtype(layer, "output.dtype", _require(layer, spec, "dtype", "output."))
    if kind is OutputKind.REQUANT:
        if dtype.kind is DTypeKind.BIPOLAR:
            raise ModelError(layer, "output.dtype", "requant produces intN or uintN, not bipolar")
        mult = arrays.get(layer, "output.mult", _require(layer, spec, "mult", "output."))
        mult = _per_channel(layer, "output.mult", mult, m, 0, _UINT31)
        shift = arrays.get(layer, "output.shift", _require(layer, spec, "shift", "output."))
        shift = _per_channel(layer, "output.shift", shift, m, 0, 31)
        relu = spec.get("relu", False)
        if not isinstance(relu, bool):
            raise ModelError(layer, "output.relu", f"expected true or false, not {relu!r}")
        return OutputStage(kind, dtype, mult=mult, shift=shift, relu=relu)
    t = arrays.get(layer, "output.thresholds", _require(layer, spec, "thresholds", "output."))
    if t.ndim != 2 or t.shape[0] not in (1, m) or t.shape[1] < 1:
        raise ModelError(layer, "output.thresholds",
                         f"shape {t.shape} is neither ({m}, L) nor (1, L) with L >= 1")
    descending = t[:, 1:] < t[:, :-1]  # not np.diff, which can wrap around in int64
    if np.any(descending):
        row = int(np.nonzero(np.any(descending, axis=1))[0][0])
        raise ModelError(layer, "output.thresholds", f"row {row} is not ascending")
    levels = t.shape[1]
    if dtype.kind is DTypeKind.BIPOLAR and levels != 1:
        raise ModelError(layer, "output.thresholds", f"bipolar output needs L == 1, not {levels}")
    if dtype.kind is DTypeKind.INT:
        raise ModelError(layer, "output.dtype", "threshold produces uintN or bipolar, not intN")
    if dtype.kind is DTypeKind.UINT and levels > dtype.hi:
        raise ModelError(layer, "output.thresholds",
                         f"{levels} thresholds do not fit {dtype} (at most {dtype.hi})")
    return OutputStage(kind, dtype, thresholds=readonly(np.broadcast_to(t, (m, levels))))


def _layer(index, spec, in_dtype, in_features, arrays, names):
    if not isinstance(spec, dict):
        raise ModelError(f"#{index}", "layers", "each layer is an object")
    name = spec.get("name")
    problem = name_problem(name)
    if problem is not None:
        raise ModelError(f"#{index}", "name", problem)
    if name in names:
        raise ModelError(name, "name", "another layer has this name")
    op = _require(name, spec, "op")
    if isinstance(op, str) and op in _RESERVED_OPS:
        raise ModelError(name, "op", f"{op!r} is reserved for a later version; only 'linear'")
    if op != Op.LINEAR.value:
        raise ModelError(name, "op", f"unknown op {op!r} (only 'linear')")
    _unknown_keys(name, "", spec, _LAYER_KEYS)
    wdtype = _dtype(name, "weight_dtype", _require(name, spec, "weight_dtype"))
    codebook = indices = None
    if ("codebook" in spec) != ("indices" in spec):
        missing = "indices" if "codebook" in spec else "codebook"
        raise ModelError(name, missing, "codebook and indices come together")
    if "codebook" in spec:
        codebook = arrays.get(name, "codebook", spec["codebook"])
        if codebook.ndim != 1 or not 1 <= codebook.size <= 256:
            raise ModelError(name, "codebook",
                             f"needs 1..256 values in a vector, not {codebook.shape}")
        _in_dtype(name, "codebook", codebook, wdtype)
        indices = arrays.get(name, "indices", spec["indices"])
        if indices.ndim != 2:
            raise ModelError(name, "indices", f"needs shape (M, K), not {indices.shape}")
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= codebook.size):
            raise ModelError(name, "indices", f"values must lie in 0..{codebook.size - 1}")
    if "weight" in spec:
        weight = arrays.get(name, "weight", spec["weight"])
    elif codebook is not None:
        weight = codebook[indices]
    else:
        raise ModelError(name, "weight", "missing")
    if weight.ndim != 2 or 0 in weight.shape:
        raise ModelError(name, "weight", f"needs shape (M, K) with M, K >= 1, not {weight.shape}")
    m, k = weight.shape
    if k != in_features:
        raise ModelError(name, "weight",
                         f"shape {weight.shape} does not chain: the input has {in_features} values")
    _in_dtype(name, "weight", weight, wdtype)
    if codebook is not None:
        if indices.shape != weight.shape:
            raise ModelError(name, "indices", f"shape {indices.shape} differs from {weight.shape}")
        if not np.array_equal(codebook[indices], weight):
            raise ModelError(name, "codebook", "codebook[indices] differs from weight")
    bias = None
    if spec.get("bias") is not None:
        bias = arrays.get(name, "bias", spec["bias"])
        if bias.shape != (m,):
            raise ModelError(name, "bias", f"needs shape ({m},), not {bias.shape}")
        _in_dtype(name, "bias", bias, DType(DTypeKind.INT, 32))
    acc_lo, acc_hi = ref.acc_bounds(weight, in_dtype.lo, in_dtype.hi, bias)
    output = _output(name, _require(name, spec, "output"), m, acc_lo, acc_hi, arrays)
    return Layer(name=name, op=Op.LINEAR, in_dtype=in_dtype, weight=readonly(weight),
                 weight_dtype=wdtype, output=output,
                 bias=None if bias is None else readonly(bias),
                 codebook=None if codebook is None else readonly(codebook),
                 indices=None if indices is None else readonly(indices))


def model_from_json(doc, arrays):
    """Validate a parsed ``model.json`` against its arrays and build the IR."""
    if not isinstance(doc, dict):
        raise ModelError(None, "model.json", "the top level must be an object")
    fmt = doc.get("format")
    if fmt != FORMAT:
        raise ModelError(None, "format", f"expected {FORMAT!r}, not {fmt!r}")
    _unknown_keys(None, "", doc, _MODEL_KEYS)
    name = doc.get("name")
    problem = name_problem(name)
    if problem is not None:
        raise ModelError(None, "name", problem)
    inp = _require(None, doc, "input")
    if not isinstance(inp, dict):
        raise ModelError(None, "input", "expected an object")
    _unknown_keys(None, "input.", inp, _INPUT_KEYS)
    shape = _require(None, inp, "shape", "input.")
    if (not isinstance(shape, list) or not shape
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in shape)):
        raise ModelError(None, "input.shape",
                         f"expected a list of positive integers, not {shape!r}")
    dtype = _dtype(None, "input.dtype", _require(None, inp, "dtype", "input."))
    layers_spec = _require(None, doc, "layers")
    if not isinstance(layers_spec, list) or not layers_spec:
        raise ModelError(None, "layers", "expected a non-empty list of layers")
    layers, names = [], set()
    in_dtype, in_features = dtype, int(np.prod(shape))
    for i, spec in enumerate(layers_spec):
        layer = _layer(i, spec, in_dtype, in_features, arrays, names)
        names.add(layer.name)
        layers.append(layer)
        in_dtype, in_features = layer.output.dtype, layer.out_features
    return Model(name=name, input_shape=tuple(shape), input_dtype=dtype, layers=tuple(layers))


def read_model(path):
    """Read and validate the model directory ``path`` (or its ``model.json``)."""
    path = Path(path)
    if path.is_file() and path.name == "model.json":
        path = path.parent
    if not path.is_dir():
        raise ModelError(None, "model", f"{str(path)!r} is not a model directory")
    jpath = path / "model.json"
    try:
        doc = json.loads(jpath.read_text())
    except FileNotFoundError:
        raise ModelError(None, "model.json", f"no such file: {jpath}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(None, "model.json", f"not valid JSON: {e}") from None
    arrays = _Arrays(path / "weights.npz")
    try:
        return model_from_json(doc, arrays)
    finally:
        arrays.close()


def model_to_json(model):
    """The ``model.json`` document and the arrays of ``weights.npz`` for ``model``."""
    arrays, layers = {}, []
    for layer in model.layers:
        n = layer.name
        spec = {"name": n, "op": layer.op.value}
        arrays[f"{n}.w"] = layer.weight
        spec["weight"] = f"{n}.w"
        spec["weight_dtype"] = str(layer.weight_dtype)
        if layer.bias is not None:
            arrays[f"{n}.b"] = layer.bias
            spec["bias"] = f"{n}.b"
        if layer.codebook is not None:
            arrays[f"{n}.codebook"], arrays[f"{n}.indices"] = layer.codebook, layer.indices
            spec["codebook"], spec["indices"] = f"{n}.codebook", f"{n}.indices"
        out = layer.output
        ospec = {"kind": out.kind.value, "dtype": str(out.dtype)}
        if out.kind is OutputKind.REQUANT:
            for key in ("mult", "shift"):
                values = getattr(out, key)
                if np.all(values == values[0]):
                    ospec[key] = int(values[0])
                else:
                    arrays[f"{n}.{key}"] = values
                    ospec[key] = f"{n}.{key}"
            ospec["relu"] = out.relu
        elif out.kind is OutputKind.THRESHOLD:
            t = out.thresholds
            arrays[f"{n}.t"] = t[:1] if np.all(t == t[:1]) else t
            ospec["thresholds"] = f"{n}.t"
        spec["output"] = ospec
        layers.append(spec)
    doc = {"format": FORMAT, "name": model.name,
           "input": {"shape": list(model.input_shape), "dtype": str(model.input_dtype)},
           "layers": layers}
    return doc, arrays


def write_model(model, path):
    """Write ``model`` as a SPEC model directory, atomically (complete or absent)."""
    path = Path(path)
    doc, arrays = model_to_json(model)
    with atomic_directory(path) as tmp:
        (tmp / "model.json").write_text(json.dumps(doc, indent=2) + "\n")
        with open(tmp / "weights.npz", "wb") as f:
            np.savez_compressed(f, **arrays)
    return path


