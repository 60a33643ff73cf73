"""Float models, the input of ``nnaccel compress``: one ``.npz`` file (numpy's own format, read
with ``allow_pickle=False``).

Layout
------
The network is an MLP: ``logits = L_n(relu(... relu(L_1(x * input_scale)) ...))`` where each
``L_i(h) = W_i h + b_i``, optionally followed on hidden layers by inference batch-norm
``gamma * (a - mean) / sqrt(var + eps) + beta`` before the ReLU. The last layer has no
activation; its argmax is the class.

=======================  ==========================================================  ==========
array                    meaning                                                     required
=======================  ==========================================================  ==========
``layers``               1-D array of str: the layer names, in order; each an          yes
                         identifier ``[A-Za-z_][A-Za-z0-9_]*``, all different
``input_dtype``          str scalar: SPEC dtype of the integer inputs, e.g. ``uint4``   yes
``input_scale``          float scalar > 0: the float network sees ``x * input_scale``   no (1.0)
``name``                 str scalar: model name, an identifier                          no
``<layer>.w``            (M, K) float: weight; K chains (the first layer's K is the     yes
                         input size, each next K the previous M)
``<layer>.b``            (M,) float: bias                                               no (0)
``<layer>.bn_gamma``,    (M,) float each: batch-norm of a hidden layer, all four        no
``.bn_beta``,            together (``var >= 0``)
``.bn_mean``, ``.bn_var``
``<layer>.bn_eps``       float scalar > 0                                               no (1e-5)
``calib_x``              (N, K) integers of ``input_dtype``: sample inputs, used to     no
                         calibrate activations and to retrain
``calib_y``              (N,) integer labels ``0 .. M_last - 1`` of ``calib_x``         no
``test_x``, ``test_y``   the same for measuring accuracy (default: the calib arrays)    no
=======================  ==========================================================  ==========

Every value must be finite. Any other array is an error (it is usually a typo). Problems raise
:class:`~nnaccel.gen.errors.ModelError` naming the layer (or None) and the array
(SPEC section 5).
"""

import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ModelError
from ..ir import IDENTIFIER, DType, DTypeKind, WeightMatrix, readonly
from ..safeio import npz_member

__all__ = ["BatchNorm", "FloatLayer", "FloatModel", "Data", "read_float_model",
           "write_float_model", "BN_EPS"]

#: Default batch-norm epsilon.
BN_EPS = 1e-5
_BN_FIELDS = ("gamma", "beta", "mean", "var")
_GLOBAL = {"layers", "input_dtype", "input_scale", "name", "calib_x", "calib_y", "test_x",
           "test_y"}
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _frozen(arr, dtype=np.float64):
    return None if arr is None else readonly(arr, dtype)


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """Inference batch-norm of one layer: (M,) arrays and ``eps``."""

    gamma: np.ndarray
    beta: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    eps: float = BN_EPS

    def apply(self, a):
        return self.gamma * (a - self.mean) / np.sqrt(self.var + self.eps) + self.beta


@dataclass(frozen=True, eq=False)
class FloatLayer(WeightMatrix):
    """One float layer while it is being compressed.

    Attributes
    ----------
    weight : (M, K) read-only float64 array
        Zero where pruned; ``codebook[codes]`` when shared.
    bias : (M,) float64 array or None
    bn : BatchNorm or None
    mask : (M, K) read-only bool array or None
        The weights kept by pruning (None: not pruned).
    codebook : (C,) float64 array or None
        Shared values, ``codebook[0] == 0`` (the pruned weights).
    codes : (M, K) int64 array or None
        Index of each weight in ``codebook``.
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray | None = None
    bn: BatchNorm | None = None
    mask: np.ndarray | None = None
    codebook: np.ndarray | None = None
    codes: np.ndarray | None = None

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
        a = h @ self.weight.T
        if self.bias is not None:
            a = a + self.bias
        return a if self.bn is None else self.bn.apply(a)


@dataclass(frozen=True, eq=False)
class FloatModel:
    """A float MLP (see the module docstring) on integer inputs of ``input_dtype``."""

    name: str
    input_dtype: DType
    input_scale: float
    layers: tuple

    @property
    def in_features(self):
        return self.layers[0].in_features

    @property
    def out_features(self):
        return self.layers[-1].out_features

    def but(self, **changes):
        if "layers" in changes:
            changes["layers"] = tuple(changes["layers"])
        return replace(self, **changes)

    def activations(self, x):
        """Float outputs of every layer on integer inputs ``x`` (N, K): hidden ones after the
        ReLU, the last one the logits."""
        h = np.asarray(x, dtype=np.float64) * self.input_scale
        out = []
        for i, layer in enumerate(self.layers):
            h = layer.pre_activation(h)
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
            out.append(h)
        return out

    def forward(self, x):
        """Float logits on integer inputs ``x`` (N, K)."""
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


def _layer(name, arrays, in_features, last):
    wkey = f"{name}.w"
    if wkey not in arrays:
        raise ModelError(name, wkey, "missing")
    w = _floats(name, wkey, arrays[wkey])
    if w.ndim != 2 or 0 in w.shape:
        raise ModelError(name, wkey, f"needs shape (M, K) with M, K >= 1, not {w.shape}")
    m, k = w.shape
    if in_features is not None and k != in_features:
        raise ModelError(name, wkey, f"shape {w.shape} does not chain: the input has "
                                     f"{in_features} values")
    bias = None
    if f"{name}.b" in arrays:
        bias = _floats(name, f"{name}.b", arrays[f"{name}.b"], (m,))
    present = [f for f in _BN_FIELDS if f"{name}.bn_{f}" in arrays]
    bn = None
    if present or f"{name}.bn_eps" in arrays:
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
        bn = BatchNorm(**{f: _frozen(v) for f, v in values.items()}, eps=eps)
    return FloatLayer(name=name, weight=_frozen(w), bias=_frozen(bias), bn=bn)


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


def model_from_arrays(arrays):
    """Validate the arrays of a float model file; returns ``(FloatModel, Data)``."""
    names = _names(arrays)
    allowed = set(_GLOBAL)
    for n in names:
        allowed |= {f"{n}.w", f"{n}.b", f"{n}.bn_eps"} | {f"{n}.bn_{f}" for f in _BN_FIELDS}
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
    layers, k = [], None
    for i, n in enumerate(names):
        layer = _layer(n, arrays, k, i == len(names) - 1)
        layers.append(layer)
        k = layer.out_features
    model = FloatModel(name=name, input_dtype=dtype, input_scale=scale, layers=tuple(layers))
    lo, hi = (-1, 1) if dtype.kind is DTypeKind.BIPOLAR else (dtype.lo, dtype.hi)
    data = {}
    for part in ("calib", "test"):
        x = arrays.get(f"{part}_x")
        y = arrays.get(f"{part}_y")
        if y is not None and x is None:
            raise ModelError(None, f"{part}_x", f"missing (needed by {part}_y)")
        if x is not None:
            x = _integers(f"{part}_x", x, (None, model.in_features), lo, hi, str(dtype))
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


def write_float_model(path, model, data=None):
    """Write ``model`` (and ``data``) in the layout of the module docstring."""
    arrays = {"layers": np.array([layer.name for layer in model.layers]),
              "input_dtype": np.array(str(model.input_dtype)),
              "input_scale": np.array(model.input_scale), "name": np.array(model.name)}
    for layer in model.layers:
        arrays[f"{layer.name}.w"] = layer.weight
        if layer.bias is not None:
            arrays[f"{layer.name}.b"] = layer.bias
        if layer.bn is not None:
            for f in _BN_FIELDS:
                arrays[f"{layer.name}.bn_{f}"] = getattr(layer.bn, f)
            arrays[f"{layer.name}.bn_eps"] = np.array(layer.bn.eps)
    if data is not None:
        for key, value in (("calib_x", data.x_train), ("calib_y", data.y_train),
                           ("test_x", data.x_test), ("test_y", data.y_test)):
            if value is not None:
                arrays[key] = value
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)
