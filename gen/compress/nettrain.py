"""Numpy training of float networks with convolutions and pooling (a :class:`FloatModel` that
is not an MLP), dense, pruned (masked) or weight-shared, as :mod:`.train` does for MLPs.

The network is the float model's own: ``conv2d`` and ``linear`` layers with biases, a ReLU
after every weighted layer but the last, max and average pooling (:mod:`.nn` gives each op's
forward and backward pass; a ``linear`` layer after a feature map reads it flattened in
(C, H, W) order). Parameters live in a dict keyed by the 1-based position ``i`` of the layer in
``FloatModel.layers`` (pools have none): ``w{i}`` (the weight, in its own shape) or ``c{i}``
(the centroids of a shared layer, ``W = c[codes]``) and ``b{i}``. Masked layers get masked
weight gradients, shared layers centroid gradients with centroid 0 fixed at zero (Deep
Compression's retraining), exactly as :func:`.train.mlp_gradients` does. Batch-norm must be
folded first.
"""

import numpy as np

from .nn import conv2d_backward, conv2d_forward, pool2d_backward, pool2d_forward
from .train import Adam, log_epoch, lr_schedule, one_blas_thread, softmax_xent

__all__ = ["init_net", "net_params", "net_with_params", "net_forward", "net_gradients",
           "train_net"]


def init_net(fm, rng):
    """Fresh parameters for the structure of ``fm``: zero biases and normal weights of variance
    ``2 / fan_in`` (He) before a ReLU, ``1 / fan_in`` for the last layer (fan_in is ``K`` or
    ``C/G * KH * KW``), drawn in layer order."""
    p = {}
    n = len(fm.layers)
    for i, layer in enumerate(fm.layers, 1):
        if layer.weight is None:
            continue
        fan_in = layer.weight[0].size
        gain = 2.0 if i < n else 1.0
        p[f"w{i}"] = rng.normal(0.0, np.sqrt(gain / fan_in), layer.weight.shape)
        p[f"b{i}"] = np.zeros(layer.out_features)
    return p


def net_params(fm):
    """``(params, masks, codes)`` of the float network ``fm`` (module docstring); raises
    ValueError when a layer still has batch-norm."""
    params, masks, codes = {}, {}, {}
    for i, layer in enumerate(fm.layers, 1):
        if layer.weight is None:
            continue
        if layer.bn is not None:
            raise ValueError(f"{layer.name}: fold batch-norm before retraining")
        if layer.codes is not None:
            params[f"c{i}"] = np.array(layer.codebook)
            codes[i] = np.asarray(layer.codes)
        else:
            params[f"w{i}"] = np.array(layer.weight)
            if layer.mask is not None:
                masks[i] = np.asarray(layer.mask)
        params[f"b{i}"] = (np.zeros(layer.out_features) if layer.bias is None
                           else np.array(layer.bias))
    return params, masks, codes


def net_with_params(fm, params, codes=None):
    """``fm`` with the weights, centroids and biases of ``params``."""
    codes = codes or {}
    layers = []
    for i, layer in enumerate(fm.layers, 1):
        if layer.weight is not None:
            if i in codes:
                cb = params[f"c{i}"]
                layer = layer.but(codebook=cb, weight=cb[codes[i]])
            else:
                layer = layer.but(weight=params[f"w{i}"])
            layer = layer.but(bias=params[f"b{i}"])
        layers.append(layer)
    return fm.but(layers=layers)


def _weight(params, codes, i):
    return params[f"c{i}"][codes[i]] if i in codes else params[f"w{i}"]


def net_forward(fm, params, x, codes=None):
    """Logits of the network on ``x`` (N, *input_shape), already scaled to float inputs, and
    the tape :func:`net_gradients` walks back."""
    codes = codes or {}
    h = np.asarray(x, dtype=np.float64).reshape(len(x), *fm.input_shape)
    tape = []
    for i, layer in enumerate(fm.layers, 1):
        if layer.weight is None:
            h, cache = pool2d_forward(h, layer.kind, layer.kernel, layer.stride, layer.padding)
            tape.append((cache, None, None))
            continue
        w = _weight(params, codes, i)
        if layer.is_conv:
            a, cache = conv2d_forward(h, w, params[f"b{i}"], **layer.conv_args())
        else:
            flat = h.reshape(len(h), -1)
            a = flat @ w.T + params[f"b{i}"]
            cache = (h.shape, flat)
        relu = a > 0 if i < len(fm.layers) else None
        h = a if relu is None else a * relu
        tape.append((cache, w, relu))
    return h, tape


def net_gradients(fm, params, xb, yb, *, l2=0.0, masks=None, codes=None):
    """Mean cross-entropy of a minibatch and its gradients, a dict keyed like ``params``
    (masked and centroid gradients as :func:`.train.mlp_gradients`)."""
    masks, codes = masks or {}, codes or {}
    logits, tape = net_forward(fm, params, xb, codes)
    loss, d = softmax_xent(logits, yb)
    grads = {}
    for i in range(len(fm.layers), 0, -1):
        layer = fm.layers[i - 1]
        cache, w, relu = tape[i - 1]
        if layer.weight is None:
            d = pool2d_backward(d, cache)
            continue
        if relu is not None:
            d = d * relu
        if layer.is_conv:
            dx, dw, db = conv2d_backward(d, cache)
        else:
            shape, flat = cache
            dw, db = d.T @ flat, d.sum(axis=0)
            dx = (d @ w).reshape(shape) if i > 1 else None
        if l2:
            dw = dw + l2 * w
        if i in masks:
            dw = dw * masks[i]
        if i in codes:
            c = params[f"c{i}"]
            dc = np.bincount(codes[i].ravel(), weights=dw.ravel(), minlength=len(c))
            dc[0] = 0.0
            grads[f"c{i}"] = dc
        else:
            grads[f"w{i}"] = dw
        grads[f"b{i}"] = db
        d = dx
    return loss, grads


def train_net(fm, params, x, y, rng, *, epochs, batch=32, lr=(3e-3, 1e-4), l2=0.0,
              masks=None, codes=None, log=None, name="net", every=5):
    """Train ``params`` (for the structure of ``fm``) in place on ``(x, y)`` and return it;
    the arguments are those of :func:`.train.train_mlp` (``x`` already scaled)."""
    masks, codes = masks or {}, codes or {}
    with one_blas_thread():
        opt = Adam(params)
        for epoch in range(epochs):
            rate = lr_schedule(lr[0], lr[1], epoch, epochs)
            order = rng.permutation(len(x))
            total = 0.0
            for start in range(0, len(x), batch):
                idx = order[start:start + batch]
                loss, grads = net_gradients(fm, params, x[idx], y[idx], l2=l2, masks=masks,
                                            codes=codes)
                total += loss * len(idx)
                opt.step(grads, rate)
                for i in codes:
                    params[f"c{i}"][0] = 0.0
            log_epoch(log, name, epoch, epochs, total / len(x), every)
    return params
