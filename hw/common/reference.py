"""Bit-exact numpy statement of the arithmetic of ../shared/SPEC.md, section 2.

Imports only numpy. Every function works on exact integers: arrays are int64 when the worst-case
magnitude provably fits, and Python integers (``dtype=object``) otherwise, so nothing can
overflow silently. Values are the *mathematical* values of SPEC section 1 (a bipolar element is
-1 or +1); the hardware bit encodings are handled by :func:`encode` and :func:`decode`.
"""

import numpy as np

__all__ = [
    "INT64_SAFE", "exact", "acc_bounds", "bits_for_range", "linear_acc", "requant",
    "threshold", "output_stage", "dtype_limits", "encode", "decode",
]

#: Magnitudes below this bound keep every intermediate sum and product inside int64.
INT64_SAFE = 1 << 62


def exact(values, magnitude_bound=None):
    """Return ``values`` as an exact integer array.

    int64 when ``magnitude_bound`` (an upper bound on the magnitude of every result that will
    be computed from the array) is below 2**62, Python integers otherwise.
    """
    arr = np.asarray(values)
    if arr.dtype == object:
        return arr
    if magnitude_bound is not None and magnitude_bound >= INT64_SAFE:
        return arr.astype(object)
    return arr.astype(np.int64)


def _max_abs(arr):
    arr = np.asarray(arr)
    if arr.size == 0:
        return 0
    return max(abs(int(arr.max())), abs(int(arr.min())))


def acc_bounds(weight, in_lo, in_hi, bias=None):
    """Worst-case range of ``acc = W @ x + bias`` over every input with in_lo <= x[k] <= in_hi.

    Parameters
    ----------
    weight : (M, K) integer array
    in_lo, in_hi : int
        Limits of the input dtype (for bipolar, -1 and +1).
    bias : (M,) integer array or None

    Returns
    -------
    lo, hi : (M,) arrays of exact integers (tight per row: each row's extreme is reached).
    """
    w = np.asarray(weight)
    bound = _max_abs(w) * max(abs(in_lo), abs(in_hi)) * max(w.shape[1], 1)
    bound += _max_abs(bias) if bias is not None else 0
    w = exact(w, bound)
    a = w * int(in_lo)
    b = w * int(in_hi)
    lo = np.minimum(a, b).sum(axis=1)
    hi = np.maximum(a, b).sum(axis=1)
    if bias is not None:
        bias = exact(bias, bound)
        lo = lo + bias
        hi = hi + bias
    return lo, hi


def bits_for_range(lo, hi):
    """Smallest two's complement (if ``lo < 0``) or unsigned width holding ``lo..hi``.

    Returns ``(width, signed)``; width is at least 1.
    """
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"empty range {lo}..{hi}")
    if lo >= 0:
        return max(hi.bit_length(), 1), False
    width = max((-lo - 1).bit_length(), max(hi, 0).bit_length()) + 1
    return width, True


def linear_acc(weight, x, bias=None, in_lo=None, in_hi=None):
    """SPEC 2.1: ``acc[..., m] = sum_k W[m, k] * x[..., k] + bias[m]``, exactly.

    ``x`` may be a vector ``(K,)`` or a batch ``(B, K)``. ``in_lo``/``in_hi`` (the input dtype's
    limits) let the function stay in int64 when that is provably safe; without them the bound is
    taken from the actual ``x``.
    """
    w = np.asarray(weight)
    x = np.asarray(x)
    if in_lo is None:
        in_lo, in_hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
    lo, hi = acc_bounds(w, in_lo, in_hi, bias)
    bound = max(_max_abs(lo), _max_abs(hi))
    bound = max(bound, _max_abs(w) * max(abs(in_lo), abs(in_hi)) * max(w.shape[1], 1))
    w = exact(w, bound)
    xs = exact(x, bound)
    acc = xs @ w.T
    if bias is not None:
        acc = acc + exact(bias, bound)
    return acc


def dtype_limits(kind, bits):
    """Limits of a SPEC dtype given as (``"int"``/``"uint"``/``"bipolar"``, bits)."""
    if kind == "int":
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    if kind == "uint":
        return 0, (1 << bits) - 1
    if kind == "bipolar":
        return -1, 1
    raise ValueError(f"unknown dtype kind {kind!r}")


def requant(acc, mult, shift, lo, hi):
    """SPEC 2.2 ``requant``: ``clamp(round_half_up((acc * mult) / 2**shift), lo, hi)``.

    ``mult`` and ``shift`` are scalars or per-channel arrays broadcasting over the last axis of
    ``acc``; ``>>`` is arithmetic (floor), so the rounding is half towards +infinity.
    """
    acc = np.asarray(acc)
    mult = np.asarray(mult)
    shift = np.asarray(shift)
    bound = (_max_abs(acc) + 1) * (_max_abs(mult) + 1) * 2
    t = exact(acc, bound) * exact(mult, bound)
    shift = exact(shift, bound)
    half = np.where(shift == 0, 0, np.left_shift(exact(1, bound), np.maximum(shift - 1, 0)))
    r = (t + half) >> shift
    return np.clip(r, lo, hi)


def threshold(acc, thresholds):
    """SPEC 2.2 ``threshold``: ``y[m] = #{l : acc[m] >= T[m, l]}`` (T is (M, L) or (1, L))."""
    acc = np.asarray(acc)
    t = np.asarray(thresholds)
    if acc.dtype == object or t.dtype == object:
        acc, t = acc.astype(object), t.astype(object)
    return (acc[..., :, None] >= t).sum(axis=-1).astype(np.int64)


def output_stage(acc, kind, dtype_kind, dtype_bits, *, mult=None, shift=None, relu=False,
                 thresholds=None):
    """SPEC 2.2: apply the output stage ``kind`` to exact accumulators; mathematical values out.

    For ``threshold`` with a ``bipolar`` output, a count of 1 means +1 and 0 means -1.
    """
    if kind == "identity":
        return acc
    lo, hi = dtype_limits(dtype_kind, dtype_bits)
    if kind == "requant":
        return requant(acc, mult, shift, max(lo, 0) if relu else lo, hi)
    if kind == "threshold":
        count = threshold(acc, thresholds)
        return 2 * count - 1 if dtype_kind == "bipolar" else count
    raise ValueError(f"unknown output kind {kind!r}")


def encode(values, kind, bits):
    """Mathematical values to the hardware's unsigned bit patterns (SPEC section 1)."""
    v = np.asarray(values)
    if kind == "bipolar":
        return (v > 0).astype(np.uint64)
    if kind == "int":
        v = v.astype(object) if v.dtype == object else v.astype(np.int64)
        return (v & ((1 << bits) - 1)).astype(np.uint64)
    return v.astype(np.uint64)


def decode(bits_, kind, bits):
    """Hardware bit patterns (unsigned integers) to mathematical values."""
    b = np.asarray(bits_).astype(np.int64)
    if kind == "bipolar":
        return np.where(b & 1, 1, -1).astype(np.int64)
    if kind == "int":
        b = b & ((1 << bits) - 1)
        return np.where(b >= (1 << (bits - 1)), b - (1 << bits), b)
    return b
