"""Bit-exact numpy model of the pooling units (SPEC 2.1b ``maxpool2d`` and ``sumpool2d``).

Imports only numpy (and the numpy-only references beside it). Windows come from the window
unit's :func:`~nnaccel.hw.window.reference.im2col`; a mask of the unpadded positions keeps
padding out of every maximum and every sum.
"""

import numpy as np

from ..common.reference import output_stage
from ..window.reference import im2col

__all__ = ["pool_windows", "max_pool", "sum_pool", "pool"]


def pool_windows(x, kernel, stride, padding):
    """The windows of a map ``x`` (C, H, W): ``(values, valid)`` with ``values`` of shape
    ``(OH, OW, KH*KW, C)`` (padded positions 0) and ``valid`` of shape ``(OH, OW, KH*KW)``,
    True where the position lies in the unpadded map."""
    x = np.asarray(x, dtype=np.int64)
    c, h, w = x.shape
    taps = kernel[0] * kernel[1]
    values = im2col(x, kernel, stride, (1, 1), padding, 0)
    valid = im2col(np.ones((1, h, w), dtype=np.int64), kernel, stride, (1, 1), padding, 0)
    top, left, bottom, right = padding
    oh = (h + top + bottom - kernel[0]) // stride[0] + 1
    ow = (w + left + right - kernel[1]) // stride[1] + 1
    return values.reshape(oh, ow, taps, c), valid.reshape(oh, ow, taps).astype(bool)


def max_pool(x, kernel, stride, padding=(0, 0, 0, 0)):
    """SPEC ``maxpool2d``: the largest input element of each window, ``(C, OH, OW)``.
    Every window must hold an input element (ValueError otherwise)."""
    values, valid = pool_windows(x, kernel, stride, padding)
    if not valid.any(axis=2).all():
        raise ValueError("a pooling window holds no input element")
    low = np.iinfo(np.int64).min
    out = np.where(valid[..., None], values, low).max(axis=2)
    return out.transpose(2, 0, 1)


def sum_pool(x, kernel, stride, padding=(0, 0, 0, 0)):
    """SPEC ``sumpool2d`` accumulator: the exact sum of each window's input elements,
    ``(C, OH, OW)``."""
    values, valid = pool_windows(x, kernel, stride, padding)
    if not valid.any(axis=2).all():
        raise ValueError("a pooling window holds no input element")
    return (values * valid[..., None]).sum(axis=2).transpose(2, 0, 1)


def pool(x, params):
    """What a pooling unit with ``params`` (a ``PoolParams``) outputs for one map ``x``
    (C, H, W) of mathematical values: a ``(C, OH, OW)`` map of mathematical values."""
    if params.kind.value == "max":
        return max_pool(x, params.kernel, params.stride, params.padding)
    acc = sum_pool(x, params.kernel, params.stride, params.padding)
    dtype = params.out_dtype
    stage = params.out_kind.value
    extra = {}
    if stage == "requant":
        extra = dict(mult=_per_channel(params.mult), shift=_per_channel(params.shift),
                     relu=params.relu)
    elif stage == "threshold":
        extra = dict(thresholds=np.asarray(params.thresholds))
    # output_stage works on the last axis: put channels last, then back.
    y = output_stage(acc.transpose(1, 2, 0), stage, dtype.kind.value, dtype.bits, **extra)
    return np.asarray(y).transpose(2, 0, 1)


def _per_channel(value):
    return np.asarray(value, dtype=np.int64)
