"""Bit-exact numpy model of the sliding-window unit: HWC streams, im2col, weight reordering.

Imports only numpy. A feature map ``(C, H, W)`` travels in HWC raster order; the unit emits, for
each output pixel ``(oh, ow)`` in raster order, the patch ``p`` of ``K = KH*KW*C`` elements with

    p[(i*KW + j)*C + c] = xp[c, oh*SH + i*DH, ow*SW + j*DW]

where ``xp`` is the input padded by ``(top, left, bottom, right)`` with ``pad_value``. A
convolution (groups = 1) is then ``W' @ p`` with ``W'`` = :func:`patch_weights` ``(W)``. In the
depthwise order (:func:`depthwise_order`) a patch is ``(cb, i, j, c')`` instead, for blocks of
``n_out`` channels.
"""

import numpy as np

__all__ = ["to_hwc", "from_hwc", "out_size", "im2col", "depthwise_order", "patch_weights",
           "patch_stream"]


def to_hwc(x):
    """A map ``(C, H, W)`` (or a batch ``(B, C, H, W)``) as its HWC stream(s): ``(H*W*C,)``
    (or ``(B, H*W*C)``)."""
    x = np.asarray(x)
    if x.ndim == 3:
        return x.transpose(1, 2, 0).reshape(-1)
    return x.transpose(0, 2, 3, 1).reshape(x.shape[0], -1)


def from_hwc(stream, channels, height, width):
    """Inverse of :func:`to_hwc` for one map: ``(H*W*C,)`` -> ``(C, H, W)``."""
    return np.asarray(stream).reshape(height, width, channels).transpose(2, 0, 1)


def out_size(size, kernel, stride, dilation, pad_before, pad_after):
    """SPEC 2.1b: ``(size + pads - dilation*(kernel-1) - 1) // stride + 1``."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kernel, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), pad_value=0):
    """The patches of a map ``x`` (C, H, W) in the unit's order.

    Returns an ``(OH*OW, KH*KW*C)`` int64 array: row ``oh*OW + ow`` is the patch of output pixel
    ``(oh, ow)``, element ``(i*KW + j)*C + c`` is ``xp[c, oh*SH + i*DH, ow*SW + j*DW]``.
    """
    x = np.asarray(x, dtype=np.int64)
    c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    top, left, bottom, right = padding
    oh = out_size(h, kh, sh, dh, top, bottom)
    ow = out_size(w, kw, sw, dw, left, right)
    if oh < 1 or ow < 1:
        raise ValueError("the window is larger than the padded input")
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    rows = np.arange(oh)[:, None] * sh + np.arange(kh)[None, :] * dh      # (OH, KH)
    cols = np.arange(ow)[:, None] * sw + np.arange(kw)[None, :] * dw      # (OW, KW)
    # taps[c, oh, i, ow, j] -> (oh, ow, i, j, c)
    taps = xp[:, rows[:, :, None, None], cols[None, None, :, :]]
    return taps.transpose(1, 3, 2, 4, 0).reshape(oh * ow, kh * kw * c)


def patch_weights(weight):
    """Reorder a convolution weight ``(M, C, KH, KW)`` (groups = 1) to the patch order:
    ``W'[m, (i*KW + j)*C + c] = W[m, c, i, j]``, shape ``(M, KH*KW*C)``."""
    w = np.asarray(weight)
    return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)


def depthwise_order(patches, channels, block):
    """Patches ``(P, KH*KW*C)`` of :func:`im2col` reordered ``(cb, i, j, c')`` with
    ``c = cb*block + c'``: element ``(cb*KH*KW + i*KW + j)*block + c'`` of a row is element
    ``(i*KW + j)*C + cb*block + c'`` of the same row of ``patches``; ``block`` divides ``C``."""
    patches = np.asarray(patches)
    if channels % block:
        raise ValueError(f"block ({block}) must divide channels ({channels})")
    p, k = patches.shape
    taps = k // channels
    split = patches.reshape(p, taps, channels // block, block)
    return split.transpose(0, 2, 1, 3).reshape(p, k)


def patch_stream(x, params):
    """What the unit emits for one map ``x`` (C, H, W) under ``params`` (a ``WindowParams``):
    the patches of :func:`im2col` (in ``params.order``), concatenated, ``(OH*OW*KH*KW*C,)``."""
    patches = im2col(x, params.kernel, params.stride, params.dilation, params.padding,
                     params.pad_value)
    if params.order.value == "depthwise":
        patches = depthwise_order(patches, params.channels, params.n_out)
    return patches.reshape(-1)
