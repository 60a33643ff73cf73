"""Float models, the input of ``nnaccel compress``: one ``.npz`` file (numpy's own format, read
with ``allow_pickle=False``).

Layout
------
The network is a chain of layers on integer inputs ``x`` (the float network sees
``x * input_scale``). A *weighted* layer is ``linear`` (``W h + b``) or ``conv2d`` (SPEC 2.1b's
convolution in float, padded with zeros), optionally followed by inference batch-norm
``gamma * (a - mean) / sqrt(var + eps) + beta`` (per output channel) and then a ReLU; the last
layer is ``linear``, has neither batch-norm nor ReLU, and its argmax is the class. Pooling layers
(``maxpool2d``, ``avgpool2d``: the window sum divided by ``KH * KW``, padded positions counting
as zeros) have no weights and no activation. A ``linear`` layer after a feature map reads it
flattened in (C, H, W) order (the flatten before a dense head is implicit, as in SPEC 2.1), so
its K is ``C * H * W``. An MLP file (only ``linear`` layers) needs none of the spatial arrays.

=======================  ==========================================================  ==========
array                    meaning                                                     required
=======================  ==========================================================  ==========
``layers``               1-D array of str: the layer names, in order; each an          yes
                         identifier ``[A-Za-z_][A-Za-z0-9_]*``, all different
``input_dtype``          str scalar: SPEC dtype of the integer inputs, e.g. ``uint4``   yes
``input_shape``          1-D int array: ``(K,)`` or a feature map ``(C, H, W)``         when the
                                                                                     first layer
                                                                                     is not
                                                                                     linear
``input_scale``          float scalar > 0: the float network sees ``x * input_scale``   no (1.0)
``name``                 str scalar: model name, an identifier                          no
``<layer>.op``           str scalar: ``linear``, ``conv2d``, ``maxpool2d`` or           no (from
                         ``avgpool2d``                                                  ``.w``)
``<layer>.w``            float weight: ``(M, K)`` for ``linear`` (K chains: the input   weighted
                         size, or the previous layer's output size), ``(M, C/G, KH,     layers
                         KW)`` for ``conv2d`` (a 4-D ``.w`` makes the layer a conv)
``<layer>.b``            (M,) float: bias                                               no (0)
``<layer>.groups``       int scalar G >= 1 dividing C and M (``conv2d``)                no (1)
``<layer>.stride``       (2,) ints >= 1 (``conv2d``, pooling)                           no (1, 1;
                                                                                     pools: the
                                                                                     kernel)
``<layer>.dilation``     (2,) ints >= 1 (``conv2d``)                                    no (1, 1)
``<layer>.padding``      (4,) ints >= 0: top, left, bottom, right (``conv2d``,          no (zeros)
                         pooling); every pooling window must hold an input element
``<layer>.kernel``       (2,) ints >= 1: KH, KW of a pooling layer                      pools
``<layer>.bn_gamma``,    (M,) float each: batch-norm of a hidden weighted layer, all    no
``.bn_beta``,            four together (``var >= 0``)
``.bn_mean``, ``.bn_var``
``<layer>.bn_eps``       float scalar > 0                                               no (1e-5)
``calib_x``              (N, K) or (N, C, H, W) integers of ``input_dtype``: sample     no
                         inputs, used to calibrate activations and to retrain
``calib_y``              (N,) integer labels ``0 .. M_last - 1`` of ``calib_x``         no
``test_x``, ``test_y``   the same for measuring accuracy (default: the calib arrays)    no
=======================  ==========================================================  ==========

Every value must be finite. Any other array, or an attribute that the layer's op does not have,
is an error (it is usually a typo). Problems raise :class:`~nnaccel.gen.errors.ModelError`
naming the layer (or None) and the array (SPEC section 5).
"""

import enum
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...hw.common import reference as ref
from ..errors import ModelError
from ..ir import IDENTIFIER, DType, DTypeKind, WeightMatrix, readonly
from ..safeio import npz_member
from .nn import conv2d_forward, pool2d_forward

__all__ = ["BatchNorm", "FloatLayer", "FloatOp", "FloatPool", "FloatModel", "Data",
           "read_float_model", "write_float_model", "BN_EPS"]

#: Default batch-norm epsilon.
BN_EPS = 1e-5
_BN_FIELDS = ("gamma", "beta", "mean", "var")
_GLOBAL = {"layers", "input_dtype", "input_shape", "input_scale", "name", "calib_x", "calib_y",
           "test_x", "test_y"}
_ATTRS = ("op", "groups", "stride", "dilation", "padding", "kernel")
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
_CHUNK = 512


class FloatOp(enum.Enum):
    """The ops of a float model (``<layer>.op``)."""

    LINEAR = "linear"
    CONV2D = "conv2d"
    MAXPOOL2D = "maxpool2d"
    AVGPOOL2D = "avgpool2d"


def _frozen(arr, dtype=np.float64):
    return None if arr is None else readonly(arr, dtype)


def _channels_last(fn, a):
    """``fn`` of per-channel (M,) parameters applied to ``(N, M)`` or ``(N, M, H, W)``."""
    if a.ndim <= 2:
        return fn(a)
    return np.moveaxis(fn(np.moveaxis(a, 1, -1)), -1, 1)


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """Inference batch-norm of one layer: (M,) arrays and ``eps`` (channels: axis 1)."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = BN_EPS

    def apply(self, a):
        return _channels_last(
            lambda v: self.gamma * (v - self.mean) / np.sqrt(self.var + self.eps) + self.beta,
            np.asarray(a))


@dataclass(frozen=True, eq=False)
class FloatLayer(WeightMatrix):
    """One float weighted layer (``linear`` or ``conv2d``) while it is being compressed.

    Attributes
    ----------
    weight : (M, K) or (M, C/G, KH, KW) read-only float64 array
        Zero where pruned; ``codebook[codes]`` when shared.
    bias : (M,) float64 array or None
    bn : BatchNorm or None
    mask : read-only bool array of the weight's shape, or None
        The weights kept by pruning (None: not pruned).
    codebook : (C,) float64 array or None
        Shared values, ``codebook[0] == 0`` (the pruned weights).
    codes : int64 array of the weight's shape, or None
        Index of each weight in ``codebook``.
    op : FloatOp
        ``LINEAR`` or ``CONV2D``.
    in_shape : tuple
        The input tensor's shape, ``(K,)`` or ``(C, H, W)`` (set by :class:`FloatModel`).
    groups, stride, dilation, padding
        Of a ``conv2d`` (SPEC 2.1b; padded with zeros).
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None
    bn: BatchNorm | None = None
    mask: np.ndarray | None = None
    codebook: np.ndarray | None = None
    codes: np.ndarray | None = None
    op: FloatOp = FloatOp.LINEAR
    in_shape: tuple = ()
    groups: int = 1
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)

    @property
    def is_conv(self):
        return self.op is FloatOp.CONV2D

    @property
    def kernel(self):
        """(KH, KW) of a convolution."""
        return tuple(int(k) for k in self.weight.shape[2:])

    @property
    def weight_matrix(self):
        """The weight as ``(M, K)`` (a convolution's columns in (c, i, j) order)."""
        return self.weight.reshape(self.out_features, -1)

    @property
    def out_shape(self):
        if not self.is_conv:
            return (self.out_features,)
        _, oh, ow = ref.conv2d_out_shape(self.in_shape, self.out_features, self.kernel,
                                         self.stride, self.dilation, self.padding)
        return (self.out_features, oh, ow)

    def conv_args(self):
        """Keyword arguments of :func:`.nn.conv2d_forward` for this layer."""
        return {"groups": self.groups, "stride": self.stride, "dilation": self.dilation,
                "padding": self.padding}

    def but(self, **changes):
        """A copy with ``changes``; arrays are frozen."""
        for key in ("weight", "bias", "codebook"):
            if key in changes:
                changes[key] = _frozen(changes[key])
        if "mask" in changes:
            changes["mask"] = _frozen(changes["mask"], bool)
        if "codes" in changes:
            changes["codes"] = _frozen(changes["codes"], np.int64)
        return replace(self, **changes)

    def pre_activation(self, h):
        """The layer's output before its ReLU, batch-norm included, on a batch ``h``."""
        h = np.asarray(h, dtype=np.float64)
        if self.is_conv:
            a, _ = conv2d_forward(h.reshape(len(h), *self.in_shape), self.weight, self.bias,
                                  **self.conv_args())
        else:
            a = h.reshape(len(h), -1) @ self.weight.T
            if self.bias is not None:
                a = a + self.bias
        return a if self.bn is None else self.bn.apply(a)


@dataclass(frozen=True, eq=False)
class FloatPool:
    """A pooling layer (``MAXPOOL2D`` or ``AVGPOOL2D``) on ``in_shape`` ``(C, H, W)``."""

    name: str
    op: FloatOp
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0, 0, 0)
    in_shape: tuple = ()

    weight = None
    bn = None

    @property
    def kind(self):
        """``"max"`` or ``"avg"``."""
        return "max" if self.op is FloatOp.MAXPOOL2D else "avg"

    @property
    def out_shape(self):
        return ref.conv2d_out_shape(self.in_shape, self.in_shape[0], self.kernel, self.stride,
                                    (1, 1), self.padding)

    def but(self, **changes):
        return replace(self, **changes)

    def pre_activation(self, h):
        h = np.asarray(h, dtype=np.float64)
        y, _ = pool2d_forward(h.reshape(len(h), *self.in_shape), self.kind, self.kernel,
                              self.stride, self.padding)
        return y


@dataclass(frozen=True, eq=False)
class FloatModel:
    """A float network (see the module docstring) on integer inputs of ``input_dtype``.

    ``input_shape`` defaults to ``(K,)`` of the first layer; construction sets every layer's
    ``in_shape`` from it (ValueError when a layer does not chain)."""

    name: str
    input_dtype: DType
    input_scale: float
    layers: tuple
    input_shape: tuple = ()

    def __post_init__(self):
        layers = tuple(self.layers)
        shape = tuple(int(v) for v in self.input_shape) or (layers[0].in_features,)
        chained = []
        for layer in layers:
            if layer.weight is not None and not layer.is_conv:
                if int(np.prod(shape)) != layer.in_features:
                    raise ValueError(f"layer {layer.name!r}: {layer.in_features} inputs do "
                                     f"not chain to {shape}")
            elif len(shape) != 3:
                raise ValueError(f"layer {layer.name!r} needs a feature map, not {shape}")
            if tuple(layer.in_shape) != shape:
                layer = replace(layer, in_shape=shape)
            chained.append(layer)
            shape = tuple(int(v) for v in layer.out_shape)
        object.__setattr__(self, "layers", tuple(chained))
        object.__setattr__(self, "input_shape", tuple(int(v) for v in
                                                      (self.input_shape or chained[0].in_shape)))

    @property
    def in_features(self):
        return int(np.prod(self.input_shape))

    @property
    def out_features(self):
        return self.layers[-1].out_features

    @property
    def is_mlp(self):
        """True when the input is a vector and every layer is ``linear`` (the MLP code paths
        of the passes)."""
        return len(self.input_shape) == 1 and all(layer.op is FloatOp.LINEAR
                                                  for layer in self.layers)

    @property
    def weighted(self):
        """The layers with weights (``linear`` and ``conv2d``), in order."""
        return tuple(layer for layer in self.layers if layer.weight is not None)

    def relu_after(self, i):
        """Whether layer ``i`` (0-based) is followed by a ReLU: weighted and not the last."""
        return self.layers[i].weight is not None and i < len(self.layers) - 1

    def but(self, **changes):
        if "layers" in changes:
            changes["layers"] = tuple(changes["layers"])
        return replace(self, **changes)

    def activations(self, x):
        """Float outputs of every layer on integer inputs ``x`` (N, K) or (N, *input_shape):
        hidden weighted ones after the ReLU, pools as they are, the last one the logits."""
        h = np.asarray(x, dtype=np.float64) * self.input_scale
        if not self.is_mlp:
            h = h.reshape(len(h), *self.input_shape)
            if len(h) > _CHUNK:  # bounds the memory of the convolutions' patches
                parts = [self.activations(x[s:s + _CHUNK]) for s in range(0, len(x), _CHUNK)]
                return [np.concatenate(layer) for layer in zip(*parts, strict=True)]
        out = []
        for i, layer in enumerate(self.layers):
            h = layer.pre_activation(h)
            if self.relu_after(i):
                h = np.maximum(h, 0.0)
            out.append(h)
        return out

    def forward(self, x):
        """Float logits on integer inputs ``x``."""
        return self.activations(x)[-1]


@dataclass(frozen=True, eq=False)
class Data:
    """Sample data of a float model: integer inputs and labels (any of them may be None)."""

    x_train: np.ndarray | None = None
    y_train: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None


# --- reading ------------------------------------------------------------------------------------

def _load(path):
    path = Path(path)
    if not path.is_file():
        raise ModelError(None, "float model", f"no such file: {path}")
    try:
        with open(path, "rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ModelError(None, "float model", f"{path} is a .npy array, not a .npz file")
            with npz:
                arrays = {}
                for key in npz.files:  # sizes checked before allocating (gen/safeio.py)
                    arrays[key] = npz_member(
                        npz.zip, key, lambda m, key=key: ModelError(_owner(key), key, m),
                        kinds="biufU")
    except _READ_ERRORS as e:
        raise ModelError(None, "float model", f"{path} is not a numpy .npz file: {e}") from None
    return arrays


def _owner(key):
    return key.split(".", 1)[0] if "." in key else None


def _string(arrays, key, default=None):
    if key not in arrays:
        if default is None:
            raise ModelError(None, key, "missing")
        return default
    arr = arrays[key]
    if arr.ndim != 0 or arr.dtype.kind != "U":
        raise ModelError(None, key, f"expected a string scalar, not {arr.dtype} {arr.shape}")
    return str(arr)


def _floats(layer, key, arr, shape=None):
    if arr.dtype.kind not in "fiu":
        raise ModelError(layer, key, f"expected numbers, not {arr.dtype}")
    if shape is not None and arr.shape != shape:
        want = "a scalar" if shape == () else str(shape)
        raise ModelError(layer, key, f"needs shape {want}, not {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ModelError(layer, key, "values must be finite")
    return arr


def _integers(key, arr, shape, lo, hi, what):
    if arr.ndim != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, arr.shape, strict=True)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise ModelError(None, key, f"needs shape {want}, not {arr.shape}")
    if len(arr) == 0:
        raise ModelError(None, key, "is empty")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ModelError(None, key, "values must be integers")
    elif arr.dtype.kind not in "iub":
        raise ModelError(None, key, f"expected integers, not {arr.dtype}")
    bad = arr[(arr < lo) | (arr > hi)]
    if bad.size:
        raise ModelError(None, key, f"value {bad.flat[0]} is outside {what}")
    return arr.astype(np.int64)


def _attr_ints(name, key, arrays, count, default, minimum):
    """An attribute of ``count`` integers >= ``minimum`` (a scalar when count is None)."""
    full = f"{name}.{key}"
    if full not in arrays:
        return default
    arr = arrays[full]
    shape = () if count is None else (count,)
    if arr.dtype.kind not in "iuf" or arr.shape != shape:
        want = "an integer scalar" if count is None else f"{count} integers"
        raise ModelError(name, full, f"needs {want}, not {arr.dtype} {arr.shape}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise ModelError(name, full, "values must be integers")
    values = [int(v) for v in np.atleast_1d(arr)]
    if any(v < minimum for v in values):
        raise ModelError(name, full, f"values must be at least {minimum}, not {values}")
    return values[0] if count is None else tuple(values)


def _layer_op(name, arrays):
    key = f"{name}.op"
    if key not in arrays:
        w = arrays.get(f"{name}.w")
        return FloatOp.CONV2D if w is not None and w.ndim == 4 else FloatOp.LINEAR
    arr = arrays[key]
    if arr.ndim != 0 or arr.dtype.kind != "U":
        raise ModelError(name, key, f"expected a string scalar, not {arr.dtype} {arr.shape}")
    try:
        return FloatOp(str(arr))
    except ValueError:
        raise ModelError(name, key, f"unknown op {str(arr)!r} (linear, conv2d, maxpool2d, "
                                    "avgpool2d)") from None


def _check_attrs(name, op, arrays):
    """Refuse arrays that ``op`` does not have (usually a typo or a wrong op)."""
    allowed = {FloatOp.LINEAR: {"w", "b"}, FloatOp.CONV2D: {"w", "b", "groups", "stride",
                                                              "dilation", "padding"}}
    has = allowed.get(op, {"kernel", "stride", "padding"}) | {"op"}
    if op in allowed:
        has |= {"bn_eps"} | {f"bn_{f}" for f in _BN_FIELDS}
    for key in sorted(arrays):
        if _owner(key) == name and key[len(name) + 1:] not in has:
            raise ModelError(name, key, f"a {op.value} layer has no such array")


def _batch_norm(name, arrays, m, last):
    present = [f for f in _BN_FIELDS if f"{name}.bn_{f}" in arrays]
    if not present and f"{name}.bn_eps" not in arrays:
        return None
    if last:
        raise ModelError(name, f"{name}.bn_{(present or ['eps'])[0]}",
                         "the last layer cannot have batch-norm")
    missing = [f for f in _BN_FIELDS if f not in present]
    if missing:
        raise ModelError(name, f"{name}.bn_{missing[0]}", "missing (batch-norm needs "
                                                          "gamma, beta, mean and var)")
    values = {f: _floats(name, f"{name}.bn_{f}", arrays[f"{name}.bn_{f}"], (m,))
              for f in _BN_FIELDS}
    if np.any(values["var"] < 0):
        raise ModelError(name, f"{name}.bn_var", "a variance is negative")
    eps = BN_EPS
    if f"{name}.bn_eps" in arrays:
        eps = float(_floats(name, f"{name}.bn_eps", arrays[f"{name}.bn_eps"], ()))
        if eps <= 0:
            raise ModelError(name, f"{name}.bn_eps", f"must be positive, not {eps}")
    return BatchNorm(**{f: _frozen(v) for f, v in values.items()}, eps=eps)


def _shape_text(shape):
    return "x".join(str(v) for v in shape)


def _window(name, key, in_shape, kernel, stride, dilation, padding):
    """Refuse a window larger than its padded input (SPEC section 5)."""
    _, oh, ow = ref.conv2d_out_shape(in_shape, 1, kernel, stride, dilation, padding)
    if oh < 1 or ow < 1:
        raise ModelError(name, key, f"the window {_shape_text(kernel)} is larger than the "
                                    f"padded input {_shape_text(in_shape)}")


def _conv(name, arrays, w, in_shape):
    wkey = f"{name}.w"
    if w.ndim != 4 or 0 in w.shape:
        raise ModelError(name, wkey, f"needs shape (M, C/G, KH, KW) with every size >= 1, not "
                                     f"{w.shape}")
    if len(in_shape) != 3:
        raise ModelError(name, wkey, f"a conv2d needs a feature map input (C, H, W), not "
                                     f"{in_shape}")
    m, cg = w.shape[:2]
    c = in_shape[0]
    groups = _attr_ints(name, "groups", arrays, None, 1, 1)
    if c % groups or m % groups:
        raise ModelError(name, f"{name}.groups", f"{groups} groups do not divide the {c} input "
                                                 f"and the {m} output channels")
    if cg * groups != c:
        raise ModelError(name, wkey, f"shape {w.shape} does not chain: {groups} group(s) of "
                                     f"the input {_shape_text(in_shape)} need w.shape[1] == "
                                     f"{c // groups}")
    stride = _attr_ints(name, "stride", arrays, 2, (1, 1), 1)
    dilation = _attr_ints(name, "dilation", arrays, 2, (1, 1), 1)
    padding = _attr_ints(name, "padding", arrays, 4, (0, 0, 0, 0), 0)
    _window(name, wkey, in_shape, w.shape[2:], stride, dilation, padding)
    return {"op": FloatOp.CONV2D, "groups": groups, "stride": stride, "dilation": dilation,
            "padding": padding}


def _pool(name, op, arrays, in_shape):
    if len(in_shape) != 3:
        raise ModelError(name, f"{name}.op", f"a {op.value} needs a feature map input (C, H, "
                                             f"W), not {in_shape}")
    kernel = _attr_ints(name, "kernel", arrays, 2, None, 1)
    if kernel is None:
        raise ModelError(name, f"{name}.kernel", "missing")
    stride = _attr_ints(name, "stride", arrays, 2, kernel, 1)
    padding = _attr_ints(name, "padding", arrays, 4, (0, 0, 0, 0), 0)
    _window(name, f"{name}.kernel", in_shape, kernel, stride, (1, 1), padding)
    if ref.pool2d_counts(in_shape[1:], kernel, stride, padding).min() < 1:
        raise ModelError(name, f"{name}.padding", "a pooling window holds only padding, no "
                                                  "input element")
    return FloatPool(name=name, op=op, kernel=kernel, stride=stride, padding=padding,
                     in_shape=tuple(in_shape))


def _layer(name, arrays, in_shape, last):
    op = _layer_op(name, arrays)
    _check_attrs(name, op, arrays)
    if op in (FloatOp.MAXPOOL2D, FloatOp.AVGPOOL2D):
        if last:
            raise ModelError(name, f"{name}.op", "the last layer must be linear (the logits)")
        return _pool(name, op, arrays, in_shape)
    wkey = f"{name}.w"
    if wkey not in arrays:
        raise ModelError(name, wkey, "missing")
    w = _floats(name, wkey, arrays[wkey])
    if op is FloatOp.CONV2D:
        if last:
            raise ModelError(name, f"{name}.op", "the last layer must be linear (the logits)")
        attrs = _conv(name, arrays, w, in_shape)
    else:
        if w.ndim != 2 or 0 in w.shape:
            raise ModelError(name, wkey, f"needs shape (M, K) with M, K >= 1, not {w.shape}")
        k = w.shape[1]
        if in_shape is not None and k != int(np.prod(in_shape)):
            raise ModelError(name, wkey, f"shape {w.shape} does not chain: the input has "
                                         f"{int(np.prod(in_shape))} values")
        attrs = {}
    m = w.shape[0]
    bias = None
    if f"{name}.b" in arrays:
        bias = _floats(name, f"{name}.b", arrays[f"{name}.b"], (m,))
    bn = _batch_norm(name, arrays, m, last)
    layer = FloatLayer(name=name, weight=_frozen(w), bias=_frozen(bias), bn=bn, **attrs)
    if in_shape is not None:
        layer = replace(layer, in_shape=tuple(in_shape))
    return layer


def _names(arrays):
    if "layers" not in arrays:
        raise ModelError(None, "layers", "missing")
    names = arrays["layers"]
    if names.ndim != 1 or names.dtype.kind != "U" or names.size == 0:
        raise ModelError(None, "layers", f"expected a non-empty 1-D array of names, not "
                                         f"{names.dtype} {names.shape}")
    seen = []
    for name in names.tolist():
        if not IDENTIFIER.match(name):
            raise ModelError(name, "layers", f"{name!r} is not an identifier "
                                             "[A-Za-z_][A-Za-z0-9_]*")
        if name in seen:
            raise ModelError(name, "layers", "another layer has this name")
        seen.append(name)
    return seen


def _input_shape(arrays):
    if "input_shape" not in arrays:
        return None
    arr = arrays["input_shape"]
    if arr.dtype.kind not in "iu" or arr.ndim != 1 or len(arr) not in (1, 3) or np.any(arr < 1):
        raise ModelError(None, "input_shape", f"needs (K,) or (C, H, W) positive integers, not "
                                              f"{arr.dtype} {arr.tolist()}")
    return tuple(int(v) for v in arr)


def _samples(key, arr, model, lo, hi, dtype):
    """Sample inputs, (N, K) or (N, *input_shape), returned as (N, *input_shape)."""
    shape = model.input_shape
    want = (None, *shape) if arr.ndim == 1 + len(shape) else (None, model.in_features)
    x = _integers(key, arr, want, lo, hi, str(dtype))
    return x.reshape(len(x), *shape)


def model_from_arrays(arrays):
    """Validate the arrays of a float model file; returns ``(FloatModel, Data)``."""
    names = _names(arrays)
    allowed = set(_GLOBAL)
    for n in names:
        allowed |= {f"{n}.w", f"{n}.b", f"{n}.bn_eps"} | {f"{n}.bn_{f}" for f in _BN_FIELDS}
        allowed |= {f"{n}.{a}" for a in _ATTRS}
    for key in sorted(arrays):
        if key not in allowed:
            raise ModelError(_owner(key) if _owner(key) in names else None, key,
                             "unknown array")
    name = _string(arrays, "name", "model")
    if not IDENTIFIER.match(name):
        raise ModelError(None, "name", f"{name!r} is not an identifier [A-Za-z_][A-Za-z0-9_]*")
    try:
        dtype = DType.parse(_string(arrays, "input_dtype"))
    except ValueError as e:
        raise ModelError(None, "input_dtype", str(e)) from None
    scale = 1.0
    if "input_scale" in arrays:
        scale = float(_floats(None, "input_scale", arrays["input_scale"], ()))
        if scale <= 0:
            raise ModelError(None, "input_scale", f"must be positive, not {scale}")
    input_shape = _input_shape(arrays)
    if input_shape is None and _layer_op(names[0], arrays) is not FloatOp.LINEAR:
        raise ModelError(names[0], "input_shape", "missing (the first layer is not linear)")
    layers, shape = [], input_shape
    for i, n in enumerate(names):
        layer = _layer(n, arrays, shape, i == len(names) - 1)
        layers.append(layer)
        shape = tuple(layer.out_shape)
    model = FloatModel(name=name, input_dtype=dtype, input_scale=scale, layers=tuple(layers),
                       input_shape=input_shape or ())
    lo, hi = (-1, 1) if dtype.kind is DTypeKind.BIPOLAR else (dtype.lo, dtype.hi)
    data = {}
    for part in ("calib", "test"):
        x = arrays.get(f"{part}_x")
        y = arrays.get(f"{part}_y")
        if y is not None and x is None:
            raise ModelError(None, f"{part}_x", f"missing (needed by {part}_y)")
        if x is not None:
            x = _samples(f"{part}_x", x, model, lo, hi, dtype)
            if dtype.kind is DTypeKind.BIPOLAR and np.any(x == 0):
                raise ModelError(None, f"{part}_x", "value 0 is outside bipolar")
        if y is not None:
            y = _integers(f"{part}_y", y, (len(x),), 0, model.out_features - 1,
                          f"the labels 0..{model.out_features - 1}")
        key = "train" if part == "calib" else "test"
        data[f"x_{key}"] = None if x is None else readonly(x)
        data[f"y_{key}"] = None if y is None else readonly(y)
    return model, Data(**data)


def read_float_model(path):
    """Read and validate a float model ``.npz`` (module docstring); ``(FloatModel, Data)``."""
    return model_from_arrays(_load(path))


def float_model_arrays(model, data=None):
    """The arrays of the ``.npz`` layout (module docstring) for ``model`` and ``data``."""
    arrays = {"layers": np.array([layer.name for layer in model.layers]),
              "input_dtype": np.array(str(model.input_dtype)),
              "input_scale": np.array(model.input_scale), "name": np.array(model.name)}
    if not model.is_mlp:
        arrays["input_shape"] = np.array(model.input_shape, dtype=np.int64)
    for layer in model.layers:
        n = layer.name
        if layer.op is not FloatOp.LINEAR:
            arrays[f"{n}.op"] = np.array(layer.op.value)
        if isinstance(layer, FloatPool):
            arrays[f"{n}.kernel"] = np.array(layer.kernel, dtype=np.int64)
            arrays[f"{n}.stride"] = np.array(layer.stride, dtype=np.int64)
            arrays[f"{n}.padding"] = np.array(layer.padding, dtype=np.int64)
            continue
        arrays[f"{n}.w"] = layer.weight
        if layer.is_conv:
            arrays[f"{n}.groups"] = np.array(layer.groups, dtype=np.int64)
            for key in ("stride", "dilation", "padding"):
                arrays[f"{n}.{key}"] = np.array(getattr(layer, key), dtype=np.int64)
        if layer.bias is not None:
            arrays[f"{n}.b"] = layer.bias
        if layer.bn is not None:
            for f in _BN_FIELDS:
                arrays[f"{n}.bn_{f}"] = getattr(layer.bn, f)
            arrays[f"{n}.bn_eps"] = np.array(layer.bn.eps)
    if data is not None:
        for key, value in (("calib_x", data.x_train), ("calib_y", data.y_train),
                           ("test_x", data.x_test), ("test_y", data.y_test)):
            if value is not None:
                arrays[key] = value
    return arrays


def write_float_model(path, model, data=None):
    """Write ``model`` (and ``data``) in the layout of the module docstring."""
    arrays = float_model_arrays(model, data)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)
