"""The importer's view of ONNX tensors while it walks a graph (see :mod:`.convert`).

A tensor is a float constant or quantized initializer (:class:`_Const`), quantized integer
activations with their real-value grid (:class:`_Grid`), a layer whose output stage the nodes
after it still decide (:class:`_Pending`), or the float graph input (:class:`_Float`).
"""

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from ..ir import MODEL_INPUT, DType, DTypeKind, Op
from . import fold

_INT32 = (-(1 << 31), (1 << 31) - 1)
_ONNX_INT_TYPES = {np.dtype(np.int8): DType(DTypeKind.INT, 8),
                   np.dtype(np.uint8): DType(DTypeKind.UINT, 8),
                   np.dtype(np.int16): DType(DTypeKind.INT, 16),
                   np.dtype(np.uint16): DType(DTypeKind.UINT, 16)}
_CONVS = ("Conv", "QLinearConv", "ConvInteger")


@dataclass
class _Const:
    values: np.ndarray  # float64 real values
    ints: np.ndarray | None = None  # integer form: values == scale * (ints - zp)
    scale: np.ndarray | None = None
    zp: np.ndarray | None = None
    dtype: DType | None = None  # declared dtype of ``ints - zp``


@dataclass
class _Grid:
    """Integer activations ``v`` (dtype) with real value ``s[k] * (v[k] - z[k])``, one entry
    per channel (per element of a vector); ``shape`` is ``(K,)`` or ``(C, H, W)``; ``src``
    the layer (or ``"input"``) that produces ``v``; ``shift`` is what was added to ONNX's
    integer ``q`` to make the levels non-negative (threshold stages count from 0)."""

    dtype: DType
    s: list
    z: list
    shape: tuple = ()
    src: str = MODEL_INPUT
    shift: int = 0
    src_shape: tuple = ()  # the shape ``src`` produces (a feature map seen flattened)
    pad: tuple = ()  # (top, left, bottom, right, level) of a Pad the next Conv takes over

    def __post_init__(self):
        self.src_shape = tuple(self.src_shape or self.shape)


@dataclass
class _Pending:
    """A layer whose output stage is not known yet: real = chain(acc + base), per output
    channel. ``op`` is the SPEC op; ``weight`` (linear, conv2d) may be None (sumpool2d, add,
    which have no bias: their ``base`` stays zero and offsets live in ``chain``); ``params``
    holds the op's other fields; ``shape`` is the output shape."""

    weight: np.ndarray | None
    wdtype: DType | None
    in_dtype: DType
    base: list
    chain: fold.Chain
    node: str
    op: Op = Op.LINEAR
    inputs: tuple = ()
    in_shape: tuple = ()
    shape: tuple = ()
    params: dict = field(default_factory=dict)
    of: _Grid | None = None  # the tensor an identity layer requantizes
    err: Fraction = Fraction(0)  # bound on |chain - exact real value| (approximated add)

    @property
    def channels(self):
        return self.chain.channels


class _Float:
    """The graph input before its first quantizer."""


def _min_int_dtype(values):
    if values.size == 0:
        return DType(DTypeKind.INT, 2)
    lo, hi = int(values.min()), int(values.max())
    bits = max(2, max((-lo - 1).bit_length(), hi.bit_length()) + 1)
    return DType(DTypeKind.INT, bits)


def _ratio(r, limit):
    """Integers ``(p, q)``, both at most ``limit``, with ``p / q`` the simplest convergent of
    the positive Fraction ``r`` within float32 precision of it, else the closest fraction."""
    h0, h1, k0, k1 = 0, 1, 1, 0  # convergents h/k of the continued fraction of r
    x = r
    while True:
        a = math.floor(x)
        h0, h1 = h1, a * h1 + h0
        k0, k1 = k1, a * k1 + k0
        if max(h1, k1) > limit:
            break
        if h1 and abs(Fraction(h1, k1) - r) <= r * Fraction(1, 1 << 23):
            return h1, k1
        if x == a:
            break
        x = 1 / (x - a)
    f = r.limit_denominator(limit) if r <= 1 else (1 / r).limit_denominator(limit)
    if f == 0:  # r too far from 1 for two integers up to the limit
        return (1, limit) if r < 1 else (limit, 1)
    return (f.numerator, f.denominator) if r <= 1 else (f.denominator, f.numerator)


def _qrange(signed, narrow, bits):
    if signed:
        return -(1 << (bits - 1)) + int(narrow), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1 - int(narrow)
