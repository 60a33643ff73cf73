"""Bit-exact numpy model of the vector-vector unit (grouped and depthwise convolutions).

Imports only numpy (and the window unit's reference). A convolution of ``G`` groups over ``C``
input and ``M`` output channels (``cg = C/G`` input and ``mg = M/G`` output channels per group;
depthwise: ``G = C``, ``cg = 1``, ``mg = k`` the channel multiplier) is computed per output pixel
from the window unit's depthwise-ordered patch: blocks of ``pe*cg`` channels (``pe`` whole
groups), each block's ``KH*KW`` window positions one beat each (or, with ``simd > 1`` and every
group in one block, ``simd`` consecutive window positions per beat). For each block the unit
keeps ``pe*mg`` accumulators, one per output channel of its groups, and adds in every beat the
``simd*cg``-element dot product of that channel's weights at the beat's window positions with
the beat's channels of its group. After the block's last window position it hands over the raw sums
of output channels ``gb*pe*mg .. (gb+1)*pe*mg - 1``, so the output stream is HWC again. Output
channel ``m = g*mg + u`` reads group ``g = m // mg`` (SPEC 2.1b).

The output stage turns a raw sum into the SPEC accumulator, ``acc = scale * raw + offset``:
XNOR lanes (bipolar weights and inputs) count agreements, ``raw`` = popcount over the
``cg*KH*KW`` taps, scale 2, offset ``bias - cg*KH*KW``; every other lane kind sums the products,
scale 1, offset ``bias``.
"""

import numpy as np

from ..window.reference import im2col

__all__ = ["weight_words", "raw_bounds", "affine", "conv_raw", "conv_acc"]


def weight_words(weight, groups, pe, simd=1):
    """The weights ``(M, cg, KH, KW)`` in the unit's memory order,
    ``(G/pe * KH*KW/simd, pe*mg*simd*cg)``.

    Word ``gb*KH*KW/simd + s`` holds at lane ``((p*mg + u)*simd + q)*cg + c'`` the weight
    ``W[m, c', i, j]`` of output channel ``m = (gb*pe + p)*mg + u`` for channel ``c'`` of its
    group at window position ``i*KW + j = s*simd + q`` (a beat holds ``simd`` consecutive window
    positions in raster order).
    """
    w = np.asarray(weight)
    m, cg, kh, kw = w.shape
    split = w.reshape(groups // pe, pe, m // groups, cg, kh * kw // simd, simd)
    return split.transpose(0, 4, 1, 2, 5, 3).reshape(groups // pe * kh * kw // simd, -1)


def raw_bounds(weight, in_lo, in_hi, xnor):
    """Worst-case ``(lo, hi)`` of a raw sum over every output channel and every input with
    elements (padding included) in ``in_lo..in_hi``; 0 always lies inside, and so does every
    partial sum the unit forms on the way."""
    w = np.asarray(weight)
    if xnor:
        return 0, int(np.prod(w.shape[1:]))
    w = w.reshape(w.shape[0], -1).astype(object)
    a, b = w * int(in_lo), w * int(in_hi)
    return (min(int(np.minimum(a, b).sum(axis=1).min()), 0),
            max(int(np.maximum(a, b).sum(axis=1).max()), 0))


def affine(out_channels, taps, bias, xnor):
    """``(scale, offset[M])`` with ``acc = scale * raw + offset``; ``taps`` = ``cg*KH*KW``."""
    b = np.zeros(out_channels, dtype=np.int64) if bias is None else np.asarray(bias, np.int64)
    return (2, b - taps) if xnor else (1, b.copy())


def conv_raw(weight, x, *, groups, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0),
             pad_value=0, xnor=False):
    """The raw sums ``(M, OH, OW)`` the unit computes for one map ``x`` ``(C, H, W)`` of
    mathematical values (exact Python integers where int64 could overflow)."""
    w = np.asarray(weight)
    m, cg, kh, kw = w.shape
    c = int(np.asarray(x).shape[0])
    if c != cg * groups or m % groups:
        raise ValueError(f"weight {w.shape} with groups={groups} does not fit {c} channels")
    patches = im2col(x, (kh, kw), stride, dilation, padding, pad_value)     # (P, T*C)
    p = patches.shape[0]
    taps = patches.reshape(p, kh * kw, groups, cg).transpose(0, 2, 1, 3)   # (P, G, T, cg)
    wg = w.reshape(groups, m // groups, cg, kh * kw).transpose(0, 1, 3, 2)  # (G, mg, T, cg)
    if xnor:
        raw = (taps[:, :, None] == wg[None]).sum(axis=(3, 4))
    else:
        bound = (int(np.abs(wg).max(initial=0)) * int(np.abs(taps).max(initial=0))
                 * cg * kh * kw)
        kind = np.int64 if bound < 1 << 62 else object     # exact either way
        raw = np.einsum("pgtc,gutc->pgu", taps.astype(kind), wg.astype(kind))
    _, oh, ow = (m, *_out_hw(x, (kh, kw), stride, dilation, padding))
    return raw.reshape(p, m).T.reshape(m, oh, ow)


def _out_hw(x, kernel, stride, dilation, padding):
    _, h, w = np.asarray(x).shape
    top, left, bottom, right = padding
    return ((h + top + bottom - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1,
            (w + left + right - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1)


def conv_acc(weight, x, bias=None, *, groups, stride=(1, 1), dilation=(1, 1),
             padding=(0, 0, 0, 0), pad_value=0, xnor=False):
    """The SPEC accumulator ``scale * raw + offset`` as the unit and its output stage form it:
    ``(M, OH, OW)`` for one map ``x``."""
    w = np.asarray(weight)
    raw = conv_raw(w, x, groups=groups, stride=stride, dilation=dilation, padding=padding,
                   pad_value=pad_value, xnor=xnor)
    scale, offset = affine(w.shape[0], int(np.prod(w.shape[1:])), bias, xnor)
    return scale * raw + offset.astype(object)[:, None, None]
