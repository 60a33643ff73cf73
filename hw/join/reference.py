"""Numpy reference of the join units on streams (HWC vectors, one row per image).

Imports only numpy. ``add_acc``: SPEC 2.1b ``acc = sum_i scales[i] * x_i`` element by element
(before the output stage); ``concat``: a pixel's channels of input 0, then input 1's, ...
"""

import numpy as np

__all__ = ["add_acc", "concat"]


def add_acc(xs, scales):
    """``sum_i scales[i] * xs[i]`` on equal-shape arrays, exactly (Python integers)."""
    if len(xs) != len(scales):
        raise ValueError(f"{len(scales)} scales for {len(xs)} inputs")
    acc = np.zeros(np.shape(xs[0]), dtype=object)
    for s, x in zip(scales, xs, strict=True):
        acc = acc + np.asarray(x).astype(object) * int(s)
    return acc


def concat(xs, channels):
    """Join HWC streams ``xs`` (``(B, P * C_i)`` each) along channels, pixel by pixel."""
    xs = [np.asarray(x) for x in xs]
    b = xs[0].shape[0]
    parts = [x.reshape(b, -1, c) for x, c in zip(xs, channels, strict=True)]
    return np.concatenate(parts, axis=2).reshape(b, -1)
