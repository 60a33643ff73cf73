"""Float forward and backward passes of convolution and pooling, in numpy (for training).

Tensors are batches of feature maps ``(N, C, H, W)``; the windows are those of SPEC 2.1b:
``padding`` is ``(top, left, bottom, right)``, ``stride`` ``(SH, SW)``, ``dilation``
``(DH, DW)``, and ``OH = (H + top + bottom - DH*(KH-1) - 1) // SH + 1`` (likewise ``OW``).

A convolution is a matrix product over *patches* (im2col): :func:`im2col` gathers, for every
output position, the ``C x KH x KW`` input values under the window, in the weight's own
``(c, i, j)`` order; :func:`col2im` is its adjoint (it adds the gradient of every patch element
back to the input position it came from, so overlapping windows accumulate). Each ``*_forward``
returns the output and a cache; the matching ``*_backward`` takes the output gradient and that
cache and returns the input gradient (and the parameter gradients). Average pooling divides
the window sum by ``KH * KW`` whatever the padding (padded positions count as zeros, PyTorch's
``count_include_pad``), so it is ``sumpool2d`` followed by a constant factor; max pooling never
picks a padded position (ties: the first element of the window in ``(i, j)`` order).
"""

import numpy as np

__all__ = ["out_size", "im2col", "col2im", "conv2d_forward", "conv2d_backward",
           "pool2d_forward", "pool2d_backward"]


def out_size(size, kernel, stride, dilation, before, after):
    """Output size of a window along one axis (SPEC 2.1b)."""
    return (size + before + after - dilation * (kernel - 1) - 1) // stride + 1


def _geometry(shape, kernel, stride, dilation, padding):
    n, c, h, w = shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    top, left, bottom, right = padding
    oh = out_size(h, kh, sh, dh, top, bottom)
    ow = out_size(w, kw, sw, dw, left, right)
    if oh < 1 or ow < 1:
        raise ValueError(f"the window {tuple(kernel)} is larger than the padded input "
                         f"{h}x{w}")
    return oh, ow


def _slices(i, j, oh, ow, stride, dilation):
    (sh, sw), (dh, dw) = stride, dilation
    return (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


def im2col(x, kernel, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0), pad_value=0.0):
    """Patches of ``x`` ``(N, C, H, W)``: an ``(N, C, KH, KW, OH, OW)`` array whose element
    ``[n, c, i, j, oh, ow]`` is ``xp[n, c, oh*SH + i*DH, ow*SW + j*DW]``, with ``xp`` the input
    padded with ``pad_value``."""
    x = np.asarray(x)
    kh, kw = kernel
    oh, ow = _geometry(x.shape, kernel, stride, dilation, padding)
    top, left, bottom, right = padding
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=pad_value)
    cols = np.empty((*x.shape[:2], kh, kw, oh, ow), dtype=xp.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _slices(i, j, oh, ow, stride, dilation)
            cols[:, :, i, j] = xp[:, :, rows, columns]
    return cols


def col2im(cols, shape, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0)):
    """The adjoint of :func:`im2col`: patch gradients ``(N, C, KH, KW, OH, OW)`` summed back
    into an input gradient of ``shape`` ``(N, C, H, W)`` (padding dropped)."""
    n, c, h, w = shape
    _, _, kh, kw, oh, ow = cols.shape
    top, left, bottom, right = padding
    dxp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            rows, columns = _slices(i, j, oh, ow, stride, dilation)
            dxp[:, :, rows, columns] += cols[:, :, i, j]
    return dxp[:, :, top:top + h, left:left + w]


def conv2d_forward(x, weight, bias=None, *, groups=1, stride=(1, 1), dilation=(1, 1),
                   padding=(0, 0, 0, 0), pad_value=0.0):
    """Float ``conv2d`` (SPEC 2.1b arithmetic in float64) of ``x`` ``(N, C, H, W)`` with
    ``weight`` ``(M, C/G, KH, KW)`` and optional ``bias`` ``(M,)``.

    Returns ``y`` ``(N, M, OH, OW)`` and the cache :func:`conv2d_backward` needs.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weight, dtype=np.float64)
    m, cg, kh, kw = w.shape
    n, c = x.shape[:2]
    if c != cg * groups or m % groups:
        raise ValueError(f"weight {w.shape} with groups={groups} does not fit {c} channels")
    cols = im2col(x, (kh, kw), stride, dilation, padding, pad_value)
    oh, ow = cols.shape[-2:]
    patches = cols.reshape(n, groups, cg * kh * kw, oh * ow)
    wg = w.reshape(groups, m // groups, cg * kh * kw)
    y = np.matmul(wg[None], patches).reshape(n, m, oh, ow)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64).reshape(1, m, 1, 1)
    cache = (x.shape, patches, w, groups, stride, dilation, padding)
    return y, cache


def conv2d_backward(dy, cache):
    """Gradients of :func:`conv2d_forward`: ``dx`` ``(N, C, H, W)``, ``dw`` (the weight's
    shape) and ``db`` ``(M,)``."""
    shape, patches, w, groups, stride, dilation, padding = cache
    m, cg, kh, kw = w.shape
    n, _, oh, ow = dy.shape
    dyg = dy.reshape(n, groups, m // groups, oh * ow)
    dw = np.matmul(dyg, patches.transpose(0, 1, 3, 2)).sum(axis=0).reshape(w.shape)
    wg = w.reshape(groups, m // groups, cg * kh * kw)
    dcols = np.matmul(wg.transpose(0, 2, 1)[None], dyg)
    dcols = dcols.reshape(n, shape[1], kh, kw, oh, ow)
    dx = col2im(dcols, shape, stride, dilation, padding)
    return dx, dw, dy.sum(axis=(0, 2, 3))


def pool2d_forward(x, kind, kernel, stride=None, padding=(0, 0, 0, 0)):
    """Float max (``kind="max"``) or average (``kind="avg"``) pooling of ``(N, C, H, W)``;
    ``stride`` defaults to the kernel. Returns ``y`` ``(N, C, OH, OW)`` and a cache."""
    x = np.asarray(x, dtype=np.float64)
    stride = tuple(kernel) if stride is None else tuple(stride)
    kh, kw = kernel
    pad = -np.inf if kind == "max" else 0.0
    cols = im2col(x, kernel, stride, (1, 1), padding, pad)
    n, c, _, _, oh, ow = cols.shape
    cols = cols.reshape(n, c, kh * kw, oh, ow)
    if kind == "max":
        where = np.argmax(cols, axis=2)[:, :, None]
        y = np.take_along_axis(cols, where, axis=2)[:, :, 0]
    elif kind == "avg":
        where = None
        y = cols.sum(axis=2) / (kh * kw)
    else:
        raise ValueError(f"unknown pooling {kind!r} (max, avg)")
    if not np.all(np.isfinite(y)) and np.all(np.isfinite(x)):
        raise ValueError("a pooling window holds no input element")
    return y, (x.shape, kind, tuple(kernel), stride, tuple(padding), where)


def pool2d_backward(dy, cache):
    """The input gradient of :func:`pool2d_forward`: max pooling routes each output gradient
    to the element it picked, average pooling spreads it evenly over the window."""
    shape, kind, (kh, kw), stride, padding, where = cache
    n, c, oh, ow = dy.shape
    if kind == "max":
        dcols = np.zeros((n, c, kh * kw, oh, ow))
        np.put_along_axis(dcols, where, dy[:, :, None], axis=2)
    else:
        dcols = np.broadcast_to(dy[:, :, None] / (kh * kw), (n, c, kh * kw, oh, ow))
    return col2im(dcols.reshape(n, c, kh, kw, oh, ow), shape, stride, (1, 1), padding)
