"""Vectors of element bit patterns <-> AXI4-Stream beats (docs/ARCHITECTURE.md).

A vector of K elements travels as ``ceil(K / n)`` beats of ``n`` elements of ``w`` bits: element
``j`` of beat ``b`` is vector element ``b*n + j``, at bits ``[j*w, (j+1)*w)`` of the beat. The
tail of the last beat of each vector is zero when packing and ignored when unpacking. Beats are
Python integers, so they may be wider than 64 bits.
"""

import numpy as np

from ..hw.common.arith import cdiv

__all__ = ["beats_per_vector", "pack", "unpack"]


def _check(elems_per_beat, bits_per_element):
    for name, value in (("elems_per_beat", elems_per_beat),
                        ("bits_per_element", bits_per_element)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if bits_per_element > 64:
        raise ValueError(f"bits_per_element must be at most 64, not {bits_per_element}")


def beats_per_vector(elements, elems_per_beat):
    """Number of beats that carry a vector of ``elements`` elements: ``ceil(K / n)``."""
    return cdiv(int(elements), int(elems_per_beat))


def pack(bits, elems_per_beat, bits_per_element):
    """Pack a batch of vectors into beats.

    Parameters
    ----------
    bits : array_like, shape (B, K)
        Unsigned element bit patterns, each in ``0 .. 2**bits_per_element - 1``.
    elems_per_beat : int
        Elements per beat ``n``.
    bits_per_element : int
        Width ``w`` of one element (at most 64).

    Returns
    -------
    list of int
        ``B * ceil(K / n)`` beats, the beats of vector 0 first, each in ``0 .. 2**(n*w) - 1``.

    Raises
    ------
    ValueError
        An element is negative or does not fit in ``w`` bits, or the array is not 2-D.
    """
    _check(elems_per_beat, bits_per_element)
    arr = np.asarray(bits)
    if arr.ndim != 2:
        raise ValueError(f"bits must be a (B, K) array, not of shape {arr.shape}")
    n, w = int(elems_per_beat), int(bits_per_element)
    batch, k = arr.shape
    if arr.size and arr.dtype.kind not in "iuO":
        raise ValueError(f"bits must hold integers, not {arr.dtype}")
    vals = arr.astype(object)
    if arr.size:
        lo, hi = min(vals.flat), max(vals.flat)
        if lo < 0 or hi >= 1 << w:
            bad = lo if lo < 0 else hi
            raise ValueError(f"element bit pattern {bad} does not fit in {w} unsigned bits")
    nb = beats_per_vector(k, n)
    padded = np.zeros((batch, nb * n), dtype=object)
    padded[:, :k] = vals
    padded = padded.reshape(batch, nb, n)
    beats = np.zeros((batch, nb), dtype=object)
    for j in range(n):
        beats |= padded[:, :, j] << (j * w)
    return [int(b) for b in beats.ravel()]


def unpack(beats, n_vectors, elements, elems_per_beat, bits_per_element):
    """Unpack beats into a batch of vectors (inverse of :func:`pack`).

    Parameters
    ----------
    beats : sequence of int
        ``n_vectors * ceil(elements / n)`` non-negative beats.
    n_vectors : int
        Number of vectors ``B``.
    elements : int
        Elements per vector ``K``.
    elems_per_beat, bits_per_element : int
        As for :func:`pack`.

    Returns
    -------
    numpy.ndarray, shape (B, K), uint64
        Element bit patterns; the padding at the tail of each vector's last beat is dropped.

    Raises
    ------
    ValueError
        The number of beats does not match, or a beat is negative.
    """
    _check(elems_per_beat, bits_per_element)
    n, w = int(elems_per_beat), int(bits_per_element)
    nb = beats_per_vector(elements, n)
    seq = [int(b) for b in beats]
    if len(seq) != n_vectors * nb:
        raise ValueError(f"{n_vectors} vectors of {elements} elements take "
                         f"{n_vectors * nb} beats of {n}, not {len(seq)}")
    if any(b < 0 for b in seq):
        raise ValueError("beats must be non-negative integers")
    arr = np.array(seq, dtype=object).reshape(n_vectors, nb)
    mask = (1 << w) - 1
    out = np.zeros((n_vectors, nb, n), dtype=np.uint64)
    for j in range(n):
        out[:, :, j] = ((arr >> (j * w)) & mask).astype(np.uint64)
    return np.ascontiguousarray(out.reshape(n_vectors, nb * n)[:, :elements])
