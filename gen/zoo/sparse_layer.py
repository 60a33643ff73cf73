"""Pruned, weight-shared layers for the sparse engine's benchmark, as one-layer SPEC models.

:func:`make_layer` follows Deep Compression on random weights: Gaussian weights pruned by
magnitude to a density, the survivors clustered (1-D k-means, linear initialisation) into a
small codebook whose first value is 0, quantised to int8. :func:`busy_layer` fills every
column of every PE with 8 to 16 entries (the engine's best case). :func:`sparse_model` wraps a
weight matrix into a model with uint8 inputs and a requantising ReLU output stage to uint8.
"""

import numpy as np

from ..ir import DType, Layer, Model, Op, OutputKind, OutputStage, readonly

__all__ = ["make_layer", "busy_layer", "sparse_model"]


def _kmeans_1d(values, clusters, iterations=30):
    """Centroids of a 1-D k-means with linear initialisation (as in Deep Compression)."""
    centroids = np.linspace(values.min(), values.max(), clusters)
    for _ in range(iterations):
        assign = np.abs(values[:, None] - centroids[None, :]).argmin(axis=1)
        for c in range(clusters):
            members = values[assign == c]
            if members.size:
                centroids[c] = members.mean()
    return centroids


def make_layer(size, in_features=None, *, density, codebook_size, seed=0):
    """A ``(size, in_features or size)`` layer: ``(weight, codebook, bias, mult, shift)``.

    Gaussian weights pruned to ``density`` by magnitude; the survivors clustered into
    ``codebook_size - 1`` centroids quantised to int8 (the codebook's first value is 0).
    """
    rng = np.random.default_rng(seed)
    k = size if in_features is None else in_features
    w = rng.normal(size=(size, k))
    keep = int(round(density * w.size))
    cut = np.sort(np.abs(w).ravel())[-keep]
    mask = np.abs(w) >= cut
    centroids = _kmeans_1d(w[mask], codebook_size - 1)
    scale = 127 / np.abs(centroids).max()
    book = np.round(centroids * scale).astype(np.int64)
    book[book == 0] = 1  # a centroid may not quantise to the pruned value
    book = np.unique(book)
    codebook = np.concatenate([[0], book])
    nearest = np.abs(w[..., None] * scale - book).argmin(axis=-1)
    weight = np.where(mask, book[nearest], 0)
    bias = rng.integers(-2000, 2000, size=size)
    return weight, codebook, bias, 1 << 10, 16


def busy_layer(n_pe, size, k, codebook, seed):
    """A (size, k) layer whose every column holds 8..16 entries per PE (of ``n_pe``)."""
    rng = np.random.default_rng(seed)
    rows = size // n_pe
    w = np.zeros((size, k), dtype=np.int64)
    values = codebook[1:]
    for p in range(n_pe):
        for j in range(k):
            count = int(rng.integers(8, 17))
            local = rng.choice(rows, size=min(count, rows), replace=False)
            w[local * n_pe + p, j] = rng.choice(values, size=len(local))
    return w


def sparse_model(weight, codebook, bias, mult, shift, *, name="sparse", layer="fc"):
    """A one-layer model of ``weight`` (M, K), int8, stored as codes into ``codebook`` (its
    first value 0); uint8 inputs; ``requant`` with ReLU to uint8 by ``mult``/``shift``."""
    weight = np.asarray(weight, dtype=np.int64)
    m, k = weight.shape
    code = {int(v): n for n, v in enumerate(codebook)}
    indices = np.vectorize(code.__getitem__, otypes=[np.int64])(weight)
    uint8 = DType.parse("uint8")
    out = OutputStage(OutputKind.REQUANT, uint8, mult=readonly(np.full(m, mult)),
                      shift=readonly(np.full(m, shift)), relu=True)
    fc = Layer(name=layer, op=Op.LINEAR, in_dtype=uint8, weight=readonly(weight),
               weight_dtype=DType.parse("int8"), output=out, bias=readonly(bias),
               codebook=readonly(codebook), indices=readonly(indices))
    return Model(name=name, input_shape=(k,), input_dtype=uint8, layers=(fc,))
