"""Read, validate and write SPEC model directories (``model.json`` + ``weights.npz``).

Every check of ../shared/SPEC.md section 5 happens here, before anything is generated; a failure
raises :class:`~nnaccel.gen.errors.ModelError` naming the layer and the field.
"""

import json
import zipfile
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..hw.common import reference as ref
from . import boundary
from .atomic import atomic_directory
from .errors import ModelError
from .ir import (
    MODEL_INPUT,
    Add,
    Concat,
    Conv2d,
    DType,
    DTypeKind,
    Layer,
    Model,
    Op,
    OutputKind,
    OutputStage,
    Pool2d,
    readonly,
)
from .names import name_problem
from .safeio import check_elements, load_json, npz_member

__all__ = ["FORMAT", "read_model", "write_model", "model_to_json", "model_from_arrays"]

FORMAT = "nnaccel-model/1"
_MODEL_KEYS = {"format", "name", "input", "layers", "output", "description"}
_INPUT_KEYS = {"shape", "dtype", "quantizer"}
_LINEAR_KEYS = {"name", "op", "inputs", "weight", "weight_dtype", "bias", "codebook", "indices",
                "output"}
_POOL_KEYS = {"name", "op", "inputs", "kernel", "stride", "padding"}
#: The fields each op accepts (SPEC 2.1, 2.1b).
_OP_KEYS = {
    "linear": _LINEAR_KEYS,
    "conv2d": _LINEAR_KEYS | {"groups", "stride", "dilation", "padding", "pad_value"},
    "maxpool2d": _POOL_KEYS,
    "sumpool2d": _POOL_KEYS | {"output"},
    "add": {"name", "op", "inputs", "scales", "output"},
    "concat": {"name", "op", "inputs"},
}
_SPATIAL_OPS = {Op.CONV2D, Op.MAXPOOL2D, Op.SUMPOOL2D, Op.CONCAT}
#: Largest kernel, stride, dilation or padding accepted along one axis.
SPATIAL_LIMIT = 1 << 16
#: add's scales satisfy |s| < SCALE_LIMIT (SPEC 2.1b).
SCALE_LIMIT = 1 << 16
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
            # sizes checked against the limits before anything is allocated (gen/safeio.py)
            arr = npz_member(npz.zip, ref, lambda m: ModelError(layer, fieldname, m))
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
    # a shared (1, L) row stays one row: a read-only broadcast view, never (M, L) in memory
    return OutputStage(kind, dtype, thresholds=np.broadcast_to(readonly(t), (m, levels)))


def _weights(name, spec, arrays, ndim, what):
    """weight_dtype, weight (ndim axes, none empty), codebook, indices of a weighted layer."""
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
        if indices.ndim != ndim:
            raise ModelError(name, "indices", f"needs shape {what}, not {indices.shape}")
        if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= codebook.size):
            raise ModelError(name, "indices", f"values must lie in 0..{codebook.size - 1}")
    if "weight" in spec:
        weight = arrays.get(name, "weight", spec["weight"])
    elif codebook is not None:
        weight = codebook[indices]
    else:
        raise ModelError(name, "weight", "missing")
    if weight.ndim != ndim or 0 in weight.shape:
        raise ModelError(name, "weight",
                         f"needs shape {what} with no axis empty, not {weight.shape}")
    _in_dtype(name, "weight", weight, wdtype)
    if codebook is not None:
        if indices.shape != weight.shape:
            raise ModelError(name, "indices", f"shape {indices.shape} differs from {weight.shape}")
        if not np.array_equal(codebook[indices], weight):
            raise ModelError(name, "codebook", "codebook[indices] differs from weight")
    return wdtype, weight, codebook, indices


def _bias(name, spec, arrays, m):
    if spec.get("bias") is None:
        return None
    bias = arrays.get(name, "bias", spec["bias"])
    if bias.shape != (m,):
        raise ModelError(name, "bias", f"needs shape ({m},), not {bias.shape}")
    _in_dtype(name, "bias", bias, DType(DTypeKind.INT, 32))
    return bias


def _ro(arr):
    return None if arr is None else readonly(arr)


def _ints(name, fieldname, spec, count, default, minimum):
    """A list of ``count`` integers in minimum..SPATIAL_LIMIT, or ``default`` when absent."""
    if fieldname not in spec:
        return default
    value = spec[fieldname]
    if (not isinstance(value, list) or len(value) != count
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        raise ModelError(name, fieldname, f"expected a list of {count} integers, not {value!r}")
    if not all(minimum <= v <= SPATIAL_LIMIT for v in value):
        raise ModelError(name, fieldname,
                         f"values must lie in {minimum}..{SPATIAL_LIMIT}, not {value!r}")
    return tuple(value)


def _shape_text(shape):
    return "(" + ", ".join(str(s) for s in shape) + (",)" if len(shape) == 1 else ")")


def _window_fits(name, fieldname, in_shape, out_shape, window, padding):
    top, left, bottom, right = padding
    check_elements((in_shape[0], in_shape[1] + top + bottom, in_shape[2] + left + right),
                   lambda m: ModelError(name, "padding", m), "the padded input")
    if out_shape[1] < 1 or out_shape[2] < 1:
        top, left, bottom, right = padding
        padded = (in_shape[1] + top + bottom, in_shape[2] + left + right)
        raise ModelError(name, fieldname,
                         f"the {window[0]}x{window[1]} window is larger than the padded input "
                         f"{padded[0]}x{padded[1]}")


def _linear(name, spec, src, arrays):
    in_shape, in_dtype = src
    wdtype, weight, codebook, indices = _weights(name, spec, arrays, 2, "(M, K)")
    m, k = weight.shape
    in_features = int(np.prod(in_shape))
    if k != in_features:
        raise ModelError(name, "weight",
                         f"shape {weight.shape} does not chain: the input {_shape_text(in_shape)}"
                         f" has {in_features} values")
    bias = _bias(name, spec, arrays, m)
    acc_lo, acc_hi = ref.acc_bounds(weight, in_dtype.lo, in_dtype.hi, bias)
    output = _output(name, _require(name, spec, "output"), m, acc_lo, acc_hi, arrays)
    return Layer(name=name, op=Op.LINEAR, in_dtype=in_dtype, weight=readonly(weight),
                 weight_dtype=wdtype, output=output, bias=_ro(bias), codebook=_ro(codebook),
                 indices=_ro(indices), in_shape=tuple(in_shape))


def _conv2d(name, spec, src, arrays):
    in_shape, in_dtype = src
    c = in_shape[0]
    wdtype, weight, codebook, indices = _weights(name, spec, arrays, 4, "(M, C/G, KH, KW)")
    m, cg, kh, kw = weight.shape
    groups = spec.get("groups", 1)
    if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        raise ModelError(name, "groups", f"expected a positive integer, not {groups!r}")
    if c % groups or m % groups:
        raise ModelError(name, "groups", f"{groups} groups do not divide the {c} input "
                         f"channels and the {m} output channels")
    if cg * groups != c:
        raise ModelError(name, "weight",
                         f"shape {weight.shape} does not chain: {groups} group(s) of the input "
                         f"{_shape_text(in_shape)} need weight.shape[1] == {c // groups}")
    stride = _ints(name, "stride", spec, 2, (1, 1), 1)
    dilation = _ints(name, "dilation", spec, 2, (1, 1), 1)
    padding = _ints(name, "padding", spec, 4, (0, 0, 0, 0), 0)
    out_shape = ref.conv2d_out_shape(in_shape, m, (kh, kw), stride, dilation, padding)
    window = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    _window_fits(name, "weight", in_shape, out_shape, window, padding)
    pad_value = spec.get("pad_value")
    if pad_value is not None:
        if not isinstance(pad_value, int) or isinstance(pad_value, bool):
            raise ModelError(name, "pad_value", f"expected an integer, not {pad_value!r}")
        _in_dtype(name, "pad_value", np.array([pad_value]), in_dtype)
    elif any(padding) and in_dtype.kind is DTypeKind.BIPOLAR:
        raise ModelError(name, "pad_value", "a padded bipolar input needs pad_value -1 or +1")
    else:
        pad_value = 0
    bias = _bias(name, spec, arrays, m)
    acc_lo, acc_hi = ref.conv2d_acc_bounds(weight, in_shape, in_dtype.lo, in_dtype.hi, bias,
                                           stride=stride, dilation=dilation, padding=padding,
                                           pad_value=pad_value)
    output = _output(name, _require(name, spec, "output"), m, acc_lo, acc_hi, arrays)
    return Conv2d(name=name, in_dtype=in_dtype, in_shape=tuple(in_shape),
                  weight=readonly(weight), weight_dtype=wdtype, output=output, bias=_ro(bias),
                  codebook=_ro(codebook), indices=_ro(indices), groups=groups, stride=stride,
                  dilation=dilation, padding=padding, pad_value=pad_value)


def _pool(name, op, spec, src, arrays):
    in_shape, in_dtype = src
    kernel = _ints(name, "kernel", spec, 2, None, 1)
    if kernel is None:
        raise ModelError(name, "kernel", "missing")
    stride = _ints(name, "stride", spec, 2, kernel, 1)
    padding = _ints(name, "padding", spec, 4, (0, 0, 0, 0), 0)
    out_shape = ref.conv2d_out_shape(in_shape, in_shape[0], kernel, stride, (1, 1), padding)
    _window_fits(name, "kernel", in_shape, out_shape, kernel, padding)
    counts = ref.pool2d_counts(in_shape[1:], kernel, stride, padding)
    if counts.min() < 1:
        oh, ow = (int(v) for v in np.argwhere(counts < 1)[0])
        raise ModelError(name, "padding", f"the pooling window at output ({oh}, {ow}) holds "
                         "only padding, no input element")
    layer = Pool2d(name=name, op=op, in_dtype=in_dtype, in_shape=tuple(in_shape), kernel=kernel,
                   stride=stride, padding=padding)
    if op is Op.SUMPOOL2D:
        acc_lo, acc_hi = layer.acc_bounds()
        output = _output(name, _require(name, spec, "output"), in_shape[0], acc_lo, acc_hi,
                         arrays)
        layer = replace(layer, output=output)
    return layer


def _add(name, spec, srcs, src_names, arrays):
    shapes = [s for s, _ in srcs]
    for other, shape in zip(src_names[1:], shapes[1:], strict=True):
        if shape != shapes[0]:
            raise ModelError(name, "inputs", f"add needs inputs of one shape: {src_names[0]!r} "
                             f"is {_shape_text(shapes[0])}, {other!r} is {_shape_text(shape)}")
    scales = [1] * len(srcs)
    if "scales" in spec:
        arr = arrays.get(name, "scales", spec["scales"])
        if arr.shape != (len(srcs),):
            raise ModelError(name, "scales",
                             f"needs one integer per input, shape ({len(srcs)},), not {arr.shape}")
        if np.any(np.abs(arr) >= SCALE_LIMIT):
            raise ModelError(name, "scales", f"values must lie in -{SCALE_LIMIT - 1}.."
                             f"{SCALE_LIMIT - 1} (|s| < 2^16)")
        scales = [int(s) for s in arr]
    dtypes = tuple(d for _, d in srcs)
    layer = Add(name=name, in_dtypes=dtypes, in_shape=tuple(shapes[0]), scales=tuple(scales),
                output=None)
    acc_lo, acc_hi = layer.acc_bounds()
    output = _output(name, _require(name, spec, "output"), shapes[0][0], acc_lo, acc_hi, arrays)
    return replace(layer, output=output)


def _concat(name, srcs, src_names):
    (shape0, dtype0) = srcs[0]
    for other, (shape, dtype) in zip(src_names[1:], srcs[1:], strict=True):
        if shape[1:] != shape0[1:]:
            raise ModelError(name, "inputs", f"concat needs equal H and W: {src_names[0]!r} is "
                             f"{_shape_text(shape0)}, {other!r} is {_shape_text(shape)}")
        if dtype != dtype0:
            raise ModelError(name, "inputs", f"concat needs one dtype: {src_names[0]!r} is "
                             f"{dtype0}, {other!r} is {dtype}")
    return Concat(name=name, in_dtype=dtype0, in_shapes=tuple(tuple(s) for s, _ in srcs))


def _inputs(name, spec, tensors, later, op):
    """The resolved input names of a layer, checked against the op's arity."""
    if "inputs" not in spec:
        names = (next(reversed(tensors)),)
    else:
        value = spec["inputs"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ModelError(name, "inputs", f"expected a list of layer names, not {value!r}")
        for src in value:
            if src == name:
                raise ModelError(name, "inputs", "a layer cannot read its own output")
            if src in later:
                raise ModelError(name, "inputs", f"{src!r} is a later layer; layers are written "
                                 "in topological order and read only earlier ones")
            if src not in tensors:
                raise ModelError(name, "inputs",
                                 f"{src!r} is neither 'input' nor the name of an earlier layer")
        names = tuple(value)
    many = op in (Op.ADD, Op.CONCAT)
    if many and len(names) < 2:
        raise ModelError(name, "inputs", f"{op.value} needs two or more inputs, not {len(names)}")
    if not many and len(names) != 1:
        raise ModelError(name, "inputs", f"{op.value} reads exactly one input, not {len(names)}")
    return names


def _layer(index, spec, tensors, later, arrays):
    """Parse layer ``index``; ``tensors`` maps every earlier name (and "input") to its
    (shape, dtype), ``later`` holds the names of the layers after it."""
    if not isinstance(spec, dict):
        raise ModelError(f"#{index}", "layers", "each layer is an object")
    name = spec.get("name")
    problem = name_problem(name)
    if problem is not None:
        raise ModelError(f"#{index}", "name", problem)
    if name in tensors:
        raise ModelError(name, "name", "another layer has this name")
    op_text = _require(name, spec, "op")
    try:
        op = Op(op_text)
    except (ValueError, TypeError):
        raise ModelError(name, "op", f"unknown op {op_text!r} "
                         f"({', '.join(o.value for o in Op)})") from None
    src_names = _inputs(name, spec, tensors, later, op)
    srcs = [tensors[s] for s in src_names]
    if op in _SPATIAL_OPS:
        for src, (shape, _) in zip(src_names, srcs, strict=True):
            if len(shape) != 3:
                where = "inputs" if "inputs" in spec else "op"
                raise ModelError(name, where, f"{op.value} needs a feature map (C, H, W); its "
                                 f"input {src!r} is {_shape_text(shape)}")
    if "output" in spec and "output" not in _OP_KEYS[op.value]:
        raise ModelError(name, "output", f"{op.value} has no output stage")
    _unknown_keys(name, "", spec, _OP_KEYS[op.value])
    if op is Op.LINEAR:
        layer = _linear(name, spec, srcs[0], arrays)
    elif op is Op.CONV2D:
        layer = _conv2d(name, spec, srcs[0], arrays)
    elif op in (Op.MAXPOOL2D, Op.SUMPOOL2D):
        layer = _pool(name, op, spec, srcs[0], arrays)
    elif op is Op.ADD:
        layer = _add(name, spec, srcs, src_names, arrays)
    else:
        layer = _concat(name, srcs, src_names)
    return replace(layer, inputs=src_names)


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
    # a 3-axis input is a feature map (C, H, W); any other shape is read as a flat vector
    count = check_elements(shape, lambda m: ModelError(None, "input.shape", m), "the input")
    tensor = tuple(shape) if len(shape) == 3 else (count,)
    tensors = {MODEL_INPUT: (tensor, dtype)}
    all_names = [s.get("name") if isinstance(s, dict) else None for s in layers_spec]
    layers = []
    for i, spec in enumerate(layers_spec):
        later = {n for n in all_names[i + 1:] if isinstance(n, str)}
        layer = _layer(i, spec, tensors, later, arrays)
        tensors[layer.name] = (tuple(layer.out_shape), layer.out_dtype)
        layers.append(layer)
    read = {src for layer in layers for src in layer.inputs}
    for layer in layers[:-1]:
        if layer.name not in read:
            raise ModelError(layer.name, "name", "no later layer reads this layer's output "
                             "(only the last layer's output is the model's output)")
    float_io = boundary.from_json(inp.get("quantizer"), doc.get("output"), tensor, dtype,
                                  tuple(layers[-1].out_shape))
    return Model(name=name, input_shape=tuple(shape), input_dtype=dtype, layers=tuple(layers),
                 float_io=float_io)


class _MemoryArrays:
    """The arrays of a model given as a dict (name -> array), checked like weights.npz's."""

    def __init__(self, arrays):
        self.arrays = arrays

    def get(self, layer, fieldname, ref):
        if isinstance(ref, str):
            if ref not in self.arrays:
                raise ModelError(layer, fieldname, f"array {ref!r} is not in the arrays")
            return _integers(layer, fieldname, np.asarray(self.arrays[ref]))
        if isinstance(ref, bool) or not isinstance(ref, (int, list)):
            raise ModelError(layer, fieldname, f"expected an array name or integers, not {ref!r}")
        try:
            arr = np.array(ref)
        except ValueError as e:
            raise ModelError(layer, fieldname, f"not a regular array: {e}") from None
        return _integers(layer, fieldname, arr)


def model_from_arrays(doc, arrays):
    """Validate a ``model.json`` document whose arrays are a dict (name -> numpy array), as
    :func:`read_model` does a directory; returns the :class:`~nnaccel.gen.ir.Model`."""
    return model_from_json(doc, _MemoryArrays(arrays))


def read_model(path):
    """Read and validate the model directory ``path`` (or its ``model.json``)."""
    path = Path(path)
    if path.is_file() and path.name == "model.json":
        path = path.parent
    if not path.is_dir():
        raise ModelError(None, "model", f"{str(path)!r} is not a model directory")
    jpath = path / "model.json"
    doc = load_json(jpath, lambda m: ModelError(None, "model.json", m))  # regular, capped
    arrays = _Arrays(path / "weights.npz")
    try:
        return model_from_json(doc, arrays)
    finally:
        arrays.close()


def _output_json(n, out, arrays):
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
    return ospec


def _weights_json(layer, spec, arrays):
    n = layer.name
    arrays[f"{n}.w"] = layer.weight
    spec["weight"] = f"{n}.w"
    spec["weight_dtype"] = str(layer.weight_dtype)
    if layer.bias is not None:
        arrays[f"{n}.b"] = layer.bias
        spec["bias"] = f"{n}.b"
    if layer.codebook is not None:
        arrays[f"{n}.codebook"], arrays[f"{n}.indices"] = layer.codebook, layer.indices
        spec["codebook"], spec["indices"] = f"{n}.codebook", f"{n}.indices"


def _layer_json(layer, default_input, arrays):
    n = layer.name
    spec = {"name": n, "op": layer.op.value}
    if tuple(layer.inputs) != (default_input,):
        spec["inputs"] = list(layer.inputs)
    if isinstance(layer, (Layer, Conv2d)):
        _weights_json(layer, spec, arrays)
    if isinstance(layer, Conv2d):
        if layer.groups != 1:
            spec["groups"] = layer.groups
        for key, default in (("stride", (1, 1)), ("dilation", (1, 1)),
                             ("padding", (0, 0, 0, 0))):
            if tuple(getattr(layer, key)) != default:
                spec[key] = [int(v) for v in getattr(layer, key)]
        if layer.pad_value != 0:
            spec["pad_value"] = int(layer.pad_value)
    elif isinstance(layer, Pool2d):
        spec["kernel"] = [int(v) for v in layer.kernel]
        if tuple(layer.stride) != tuple(layer.kernel):
            spec["stride"] = [int(v) for v in layer.stride]
        if any(layer.padding):
            spec["padding"] = [int(v) for v in layer.padding]
    elif isinstance(layer, Add) and any(s != 1 for s in layer.scales):
        spec["scales"] = [int(s) for s in layer.scales]
    if layer.output is not None:
        spec["output"] = _output_json(n, layer.output, arrays)
    return spec


def model_to_json(model):
    """The ``model.json`` document and the arrays of ``weights.npz`` for ``model``."""
    arrays, layers = {}, []
    previous = MODEL_INPUT
    for layer in model.layers:
        layers.append(_layer_json(layer, previous, arrays))
        previous = layer.name
    doc = {"format": FORMAT, "name": model.name,
           "input": {"shape": list(model.input_shape), "dtype": str(model.input_dtype)},
           "layers": layers}
    quantizer, output = boundary.to_json(model.float_io)
    if quantizer is not None:
        doc["input"]["quantizer"] = quantizer
    if output is not None:
        doc["output"] = output
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


