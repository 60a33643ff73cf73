"""Weight sharing by k-means (Han et al., "Deep Compression", ICLR 2016, section 3).

A layer shared with ``b`` bits has a codebook of ``2**b`` float values: code 0 is exactly 0 and
stands for the pruned (zero) weights; the other ``2**b - 1`` are the centroids of a
one-dimensional k-means over the layer's non-zero weights, initialised *linearly* (evenly spaced
between the smallest and the largest non-zero weight, which Deep Compression found best, since
it keeps the few large weights their own centroids).
"""

import numpy as np

__all__ = ["linear_init", "nearest", "kmeans_1d", "share_weights", "share_pass", "MAX_ITER"]

#: Lloyd iterations before :func:`kmeans_1d` gives up waiting for a fixed point.
MAX_ITER = 300


def linear_init(values, k):
    """``k`` centroids evenly spaced between ``min(values)`` and ``max(values)``."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return np.zeros(k)
    return np.linspace(float(v.min()), float(v.max()), k)


def nearest(values, centroids):
    """Index of the nearest centroid of every value (ties: the lowest index)."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = np.asarray(centroids, dtype=np.float64)[None, :]
    step = max(1, (1 << 22) // max(c.size, 1))  # bounds the distance matrix's memory
    return np.concatenate([np.argmin(np.abs(v[i:i + step, None] - c), axis=1)
                           for i in range(0, v.size, step)] or [np.zeros(0, dtype=np.int64)])


def kmeans_1d(values, k, max_iter=MAX_ITER):
    """Lloyd's k-means of scalars from :func:`linear_init`.

    Iterates until the assignment no longer changes, so the result is a fixed point: every
    value is assigned to its nearest centroid and every centroid with values is their mean (an
    empty cluster keeps its previous centroid).

    Returns
    -------
    centroids : (k,) float64 array
    assignment : (N,) int64 array
        Index of each value's centroid.
    converged : bool
        False when ``max_iter`` iterations ended before the fixed point.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    c = linear_init(v, k)
    assign = nearest(v, c)
    for _ in range(max_iter):
        counts = np.bincount(assign, minlength=k)
        sums = np.bincount(assign, weights=v, minlength=k)
        c = np.where(counts > 0, sums / np.maximum(counts, 1), c)
        new = nearest(v, c)
        if np.array_equal(new, assign):
            return c, assign.astype(np.int64), True
        assign = new
    return c, assign.astype(np.int64), False


def share_weights(weight, bits):
    """Share the non-zero weights of ``weight`` among ``2**bits - 1`` centroids.

    Returns
    -------
    codebook : (2**bits,) float64 array
        ``codebook[0] == 0``, then the centroids in ascending order of their initial position.
    codes : (M, K) int64 array
        0 where the weight is zero, else 1 + the index of its centroid.
    """
    w = np.asarray(weight, dtype=np.float64)
    nonzero = w != 0
    centroids, assign, _ = kmeans_1d(w[nonzero], (1 << bits) - 1)
    codes = np.zeros(w.shape, dtype=np.int64)
    codes[nonzero] = assign + 1
    return np.concatenate([[0.0], centroids]), codes


def share_pass(state, config, samples):
    """Pipeline pass: share the weights of every layer with a ``share`` option."""
    layers = []
    for layer in state.float_model.layers:
        bits = None if layer.weight is None else config.share_for(layer.name)
        if bits is None:
            layers.append(layer)
            continue
        codebook, codes = share_weights(layer.weight, bits)
        layers.append(layer.but(weight=codebook[codes], codebook=codebook, codes=codes))
    return state.but(float_model=state.float_model.but(layers=layers))
