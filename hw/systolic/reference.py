"""numpy statement of how the systolic engine lays out its weights and bounds its sums.

Imports only numpy. The arithmetic is SPEC 2.1 (exact ``W @ x``, :mod:`nnaccel.hw.common.
reference`); the engine adds the bias and applies the output stage after the array
(:mod:`nnaccel.hw.common.outstage`). The layout functions give the words of the weight memory,
padded with zeros so that padding rows and columns of the array contribute nothing.
"""

import numpy as np

__all__ = ["ws_weight_words", "os_weight_words", "tile_psum_bounds", "gemm"]



def _padded(weight, rows, cols):
    w = np.asarray(weight, dtype=np.int64)
    m, k = w.shape
    out = np.zeros((-(-m // cols) * cols, -(-k // rows) * rows), dtype=np.int64)
    out[:m, :k] = w
    return out


def ws_weight_words(weight, rows, cols):
    """Weight-stationary weight memory: ``(ceil(M/C) * ceil(K/R) * R, C)``.

    Word ``(mt * KT + kt) * R + r`` holds row ``r`` of weight tile ``(mt, kt)``: lane ``c`` is
    ``W[mt*C + c, kt*R + r]`` (0 past M or K). Tiles are in the order the engine computes them.
    """
    w = _padded(weight, rows, cols)
    mt, kt = w.shape[0] // cols, w.shape[1] // rows
    # (mt, c, kt, r) -> (mt, kt, r, c)
    return w.reshape(mt, cols, kt, rows).transpose(0, 2, 3, 1).reshape(-1, cols)


def os_weight_words(weight, cols):
    """Output-stationary weight memory: ``(ceil(M/C) * K, C)``.

    Word ``mt * K + k`` holds the weights entering the array's top edge at step ``k`` of output
    tile ``mt``: lane ``c`` is ``W[mt*C + c, k]`` (0 past M).
    """
    w = _padded(weight, 1, cols)
    mt = w.shape[0] // cols
    return w.reshape(mt, cols, -1).transpose(0, 2, 1).reshape(-1, cols)


def tile_psum_bounds(weight, rows, in_lo, in_hi):
    """Worst-case ``(lo, hi)`` of a weight-stationary column sum over one k tile of R inputs
    (and of every partial sum inside it), over every input in ``in_lo..in_hi`` (``in_lo <= 0 <=
    in_hi``)."""
    w = _padded(weight, rows, 1).astype(object)
    a, b = w * int(in_lo), w * int(in_hi)
    lo = np.minimum(a, b).reshape(w.shape[0], -1, rows).sum(axis=2)
    hi = np.maximum(a, b).reshape(w.shape[0], -1, rows).sum(axis=2)
    return min(int(lo.min()), 0), max(int(hi.max()), 0)


def gemm(weight, x):
    """``X @ W.T`` exactly (Python integers, so no width can overflow): what the array
    accumulates, before bias and output stage."""
    w = np.asarray(weight).astype(object)
    return np.asarray(x).astype(object) @ w.T
