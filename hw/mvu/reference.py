"""Bit-exact numpy model of the matrix-vector unit: folding, padding and the raw sums.

Imports only numpy. The unit computes, per output row m, a *raw* sum that the output stage turns
into the SPEC accumulator ``acc = scale * raw + offset``:

* XNOR lanes: raw = popcount of XNOR(weight bits, input bits) over the K real columns,
  scale 2, offset = bias - K;
* every other lane kind: raw = sum_k W[m, k] * x[k], scale 1, offset = bias.
"""

import numpy as np

__all__ = ["fold_matrix", "raw_sums", "affine", "raw_bounds"]


def fold_matrix(weight, pe, simd, fill=0):
    """(M, K) -> (NF, SF, pe, simd): element [n, s, p, j] = W[n*pe + p, s*simd + j] or ``fill``."""
    m, k = weight.shape
    nf, sf = -(-m // pe), -(-k // simd)
    out = np.full((nf * pe, sf * simd), fill, dtype=np.int64)
    out[:m, :k] = weight
    return out.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3)


def raw_sums(weight, x, xnor):
    """Raw sums for a batch ``x`` (B, K) of mathematical values, exactly as the unit computes."""
    w = np.asarray(weight, dtype=object if np.asarray(weight).dtype == object else np.int64)
    x = np.asarray(x)
    if xnor:
        return ((w[None, :, :] == x[:, None, :]).sum(axis=2)).astype(np.int64)
    return x.astype(object) @ w.T.astype(object)


def affine(out_features, in_features, bias, xnor):
    """(scale, offset[M]) with ``acc = scale * raw + offset``."""
    b = np.zeros(out_features, dtype=np.int64) if bias is None else np.asarray(bias, np.int64)
    return (2, b - in_features) if xnor else (1, b.copy())


def raw_bounds(weight, in_lo, in_hi, xnor):
    """Worst-case (lo, hi) of the raw sums over all rows and inputs; 0 is always included."""
    if xnor:
        return 0, int(weight.shape[1])
    w = np.asarray(weight).astype(object)
    a, b = w * in_lo, w * in_hi
    lo = np.minimum(a, b).sum(axis=1)
    hi = np.maximum(a, b).sum(axis=1)
    return min(int(lo.min()), 0), max(int(hi.max()), 0)
