"""Bit-exact numpy statement of the arithmetic of ../shared/SPEC.md, section 2.

Imports only numpy. Every function works on exact integers: arrays are int64 when the worst-case
magnitude provably fits, and Python integers (``dtype=object``) otherwise, so nothing can
overflow silently. Values are the *mathematical* values of SPEC section 1 (a bipolar element is
-1 or +1); the hardware bit encodings are handled by :func:`encode` and :func:`decode`.
"""

import numpy as np

__all__ = [
    "INT64_SAFE", "exact", "acc_bounds", "bits_for_range", "linear_acc", "requant",
    "threshold", "output_stage", "dtype_limits", "encode", "decode", "window_out_size",
    "conv2d_out_shape", "pad2d", "conv2d_acc", "conv2d_acc_bounds", "pool2d_counts", "pool2d",
    "add_acc", "add_acc_bounds", "concat",
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
    if t.shape[0] == 1 or t.strides[0] == 0:  # one shared ascending row: no (..., M, L) array
        return np.searchsorted(t[0], acc, side="right").astype(np.int64)
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


# --- SPEC 2.1b: feature maps (C, H, W), batches (B, C, H, W) ------------------------------------

def window_out_size(size, kernel, stride=1, dilation=1, pad_before=0, pad_after=0):
    """SPEC 2.1b: outputs along one axis, ``(size + pads - dilation*(kernel-1) - 1)//stride + 1``.

    The result is below 1 when the (dilated) window is larger than the padded input.
    """
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def conv2d_out_shape(in_shape, out_channels, kernel, stride=(1, 1), dilation=(1, 1),
                     padding=(0, 0, 0, 0)):
    """``(M, OH, OW)`` of a convolution (or, with ``out_channels = C``, of a pooling) of an
    input ``(C, H, W)``; ``padding`` is ``[top, left, bottom, right]``."""
    _, h, w = in_shape
    top, left, bottom, right = padding
    return (int(out_channels),
            window_out_size(h, kernel[0], stride[0], dilation[0], top, bottom),
            window_out_size(w, kernel[1], stride[1], dilation[1], left, right))


def _taps(xp, kernel, stride, dilation, out_hw):
    """Every window tap of a padded batch ``xp`` (B, C, HP, WP): a list over (i, j) in raster
    order of (B, C, OH, OW) views, tap (i, j) of window (oh, ow) at ``xp[..., oh*SH + i*DH,
    ow*SW + j*DW]``."""
    oh, ow = out_hw
    sh, sw = stride
    dh, dw = dilation
    return [xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            for i in range(kernel[0]) for j in range(kernel[1])]


def _batch4(x):
    x = np.asarray(x)
    if x.ndim == 3:
        return x[None], True
    if x.ndim != 4:
        raise ValueError(f"expected (C, H, W) or (B, C, H, W), not shape {x.shape}")
    return x, False


def pad2d(x, padding, value):
    """A batch ``(B, C, H, W)`` padded by ``[top, left, bottom, right]`` with ``value``."""
    top, left, bottom, right = padding
    b, c, h, w = x.shape
    # not np.pad, which puts numpy scalars (that can overflow) into an object array
    out = np.full((b, c, top + h + bottom, left + w + right), value, dtype=x.dtype)
    out[:, :, top:top + h, left:left + w] = x
    return out


def conv2d_acc(weight, x, bias=None, *, groups=1, stride=(1, 1), dilation=(1, 1),
               padding=(0, 0, 0, 0), pad_value=0, in_lo=None, in_hi=None):
    """SPEC 2.1b ``conv2d`` accumulators, exactly.

    Parameters
    ----------
    weight : (M, C/G, KH, KW) integer array
    x : (C, H, W) or (B, C, H, W) integer array
        Padded with ``pad_value`` by ``padding`` ``[top, left, bottom, right]``.
    bias : (M,) integer array or None
    groups : int
        G, dividing C and M; output channel m reads input channels ``g*C/G .. (g+1)*C/G - 1``
        with ``g = m // (M/G)``.
    in_lo, in_hi : int, optional
        Limits of the input dtype; they let the result stay int64 when that is provably safe
        (without them the bound is taken from the actual ``x``).

    Returns
    -------
    (M, OH, OW) or (B, M, OH, OW) exact integers (int64, or Python integers when int64 could
    overflow).
    """
    w = np.asarray(weight)
    xb, single = _batch4(x)
    m, cg, kh, kw = w.shape
    b, c, h, wd = xb.shape
    if c != cg * groups or m % groups:
        raise ValueError(f"weight {w.shape} with groups={groups} does not fit {c} channels")
    if in_lo is None:
        in_lo, in_hi = (int(xb.min()), int(xb.max())) if xb.size else (0, 0)
    in_mag = max(abs(int(in_lo)), abs(int(in_hi)), abs(int(pad_value)))
    bound = _max_abs(w) * in_mag * max(cg * kh * kw, 1) + (0 if bias is None else _max_abs(bias))
    _, oh, ow = conv2d_out_shape((c, h, wd), m, (kh, kw), stride, dilation, padding)
    if oh < 1 or ow < 1:
        raise ValueError("the window is larger than the padded input")
    xp = pad2d(exact(xb, bound), padding, pad_value)
    # patches[b, g, (c, i, j), p]: the weight's own (C/G, KH, KW) order
    taps = np.stack(_taps(xp, (kh, kw), stride, dilation, (oh, ow)), axis=2)  # B,C,T,OH,OW
    patches = taps.reshape(b, groups, cg * kh * kw, oh * ow)
    wg = exact(w, bound).reshape(groups, m // groups, cg * kh * kw)
    acc = np.matmul(wg, patches).reshape(b, m, oh, ow)
    if bias is not None:
        acc = acc + exact(bias, bound).reshape(1, m, 1, 1)
    return acc[0] if single else acc


def _valid_masks(size, kernel, stride, dilation, pad_before, out):
    """For every output position along one axis, which of its ``kernel`` taps lie inside the
    unpadded input: a boolean (out, kernel) array."""
    pos = np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] * dilation - pad_before
    return (pos >= 0) & (pos < size)


def conv2d_acc_bounds(weight, in_shape, in_lo, in_hi, bias=None, *, stride=(1, 1),
                      dilation=(1, 1), padding=(0, 0, 0, 0), pad_value=0):
    """Tight worst-case range of each output channel's ``conv2d`` accumulator.

    Over every input whose elements lie in ``in_lo..in_hi``, every output position, with padded
    taps fixed at ``pad_value``. Returns ``lo, hi``: (M,) arrays of exact integers, each extreme
    reached by some input at some position (the taps of one window are distinct elements).
    """
    w = np.asarray(weight)
    m, cg, kh, kw = w.shape
    _, h, wd = in_shape
    top, left, _, _ = padding
    _, oh, ow = conv2d_out_shape(in_shape, m, (kh, kw), stride, dilation, padding)
    bound = _max_abs(w) * max(abs(in_lo), abs(in_hi), abs(pad_value)) * max(cg * kh * kw, 1)
    bound += 0 if bias is None else _max_abs(bias)
    we = exact(w, bound)
    lo_t = np.minimum(we * int(in_lo), we * int(in_hi)).sum(axis=1)   # (M, KH, KW)
    hi_t = np.maximum(we * int(in_lo), we * int(in_hi)).sum(axis=1)
    pad_t = (we * int(pad_value)).sum(axis=1)
    rows = np.unique(_valid_masks(h, kh, stride[0], dilation[0], top, oh), axis=0)
    cols = np.unique(_valid_masks(wd, kw, stride[1], dilation[1], left, ow), axis=0)
    lo = hi = None
    for r in rows:
        for c in cols:
            valid = np.outer(r, c)[None]
            cand_lo = np.where(valid, lo_t, pad_t).reshape(m, -1).sum(axis=1)
            cand_hi = np.where(valid, hi_t, pad_t).reshape(m, -1).sum(axis=1)
            lo = cand_lo if lo is None else np.minimum(lo, cand_lo)
            hi = cand_hi if hi is None else np.maximum(hi, cand_hi)
    if bias is not None:
        lo = lo + exact(bias, bound)
        hi = hi + exact(bias, bound)
    return lo, hi


def pool2d_counts(in_hw, kernel, stride, padding):
    """How many input (not padded) elements each pooling window holds: an (OH, OW) array."""
    h, w = in_hw
    top, left, bottom, right = padding
    oh = window_out_size(h, kernel[0], stride[0], 1, top, bottom)
    ow = window_out_size(w, kernel[1], stride[1], 1, left, right)
    if oh < 1 or ow < 1:
        return np.zeros((max(oh, 0), max(ow, 0)), dtype=np.int64)
    rows = _valid_masks(h, kernel[0], stride[0], 1, top, oh).sum(axis=1)
    cols = _valid_masks(w, kernel[1], stride[1], 1, left, ow).sum(axis=1)
    return np.outer(rows, cols).astype(np.int64)


def pool2d(x, op, kernel, stride=None, padding=(0, 0, 0, 0)):
    """SPEC 2.1b ``maxpool2d`` (``op="max"``) or the ``sumpool2d`` accumulator (``op="sum"``).

    ``x`` is (C, H, W) or (B, C, H, W); ``stride`` defaults to the kernel. A padded position
    is never the maximum and adds nothing to a sum; every window must hold an input element
    (ValueError otherwise). Returns exact integers of shape ``(..., C, OH, OW)``.
    """
    xb, single = _batch4(x)
    stride = tuple(kernel) if stride is None else tuple(stride)
    b, c, h, w = xb.shape
    counts = pool2d_counts((h, w), kernel, stride, padding)
    if counts.size == 0 or counts.min() < 1:
        raise ValueError("a pooling window holds no input element")
    oh, ow = counts.shape
    if op == "max":
        xb = xb.astype(object) if xb.dtype == object else xb.astype(np.int64)
        low = (int(xb.min()) - 1) if xb.size else 0
        taps = _taps(pad2d(xb, padding, low), kernel, stride, (1, 1), (oh, ow))
        out = taps[0]
        for t in taps[1:]:
            out = np.maximum(out, t)
    elif op == "sum":
        bound = _max_abs(xb) * kernel[0] * kernel[1]
        taps = _taps(pad2d(exact(xb, bound), padding, 0), kernel, stride, (1, 1), (oh, ow))
        out = taps[0]
        for t in taps[1:]:
            out = out + t
    else:
        raise ValueError(f"unknown pooling {op!r} (max, sum)")
    return out[0] if single else out


def add_acc(xs, scales=None):
    """SPEC 2.1b ``add``: ``acc = sum_i scales[i] * xs[i]`` element by element, exactly."""
    xs = [np.asarray(x) for x in xs]
    scales = [1] * len(xs) if scales is None else [int(s) for s in scales]
    if len(scales) != len(xs):
        raise ValueError(f"{len(scales)} scales for {len(xs)} inputs")
    bound = sum(abs(s) * _max_abs(x) for s, x in zip(scales, xs, strict=True))
    acc = exact(0, bound)
    for s, x in zip(scales, xs, strict=True):
        acc = acc + exact(x, bound) * s
    return acc


def add_acc_bounds(scales, limits):
    """Worst-case ``(lo, hi)`` of an ``add`` accumulator, ``limits`` a list of the inputs'
    ``(lo, hi)``; Python integers."""
    lo = sum(min(int(s) * a, int(s) * b) for s, (a, b) in zip(scales, limits, strict=True))
    hi = sum(max(int(s) * a, int(s) * b) for s, (a, b) in zip(scales, limits, strict=True))
    return lo, hi


def concat(xs):
    """SPEC 2.1b ``concat``: feature maps joined along the channel axis (axis -3) in order."""
    xs = [np.asarray(x) for x in xs]
    if any(x.dtype == object for x in xs):
        xs = [x.astype(object) for x in xs]
    return np.concatenate(xs, axis=-3)
