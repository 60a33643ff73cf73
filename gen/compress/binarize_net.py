"""Binarization of networks with convolutions and max pooling (:mod:`.binarize` does MLPs).

The binarized network has the structure of the float model: every weighted layer but the last
is

    h = sign(BN(op(sign(V), h_prev)))         op: conv2d or linear, no bias

with batch-norm per output channel (statistics over the batch and the positions of a feature
map) and ``sign(v) = +1`` where ``v >= 0``; max pooling layers pool the bipolar maps (the
maximum of +-1 values is an OR); the last layer is ``s * sign(V) h`` (``s > 0``). The first
weighted layer keeps the integer inputs, unscaled, as FINN does (bipolar weights on ``uintN``
inputs). Padding is part of the network: a convolution pads a bipolar input with
:data:`BIPOLAR_PAD` (-1) and any other input with 0, in training as in the integer model.

Training is that of :mod:`.binarize` (straight-through estimator, hardtanh window, latent
weights clipped to [-1, 1], Adam); afterwards the batch-norm statistics are the exact
population statistics over the training inputs and :func:`.binarize.fold_bn_sign` turns every
hidden ``BN + sign`` into a bipolar ``threshold`` stage, so the integer model and the float
network in inference mode (:func:`bnn_net_forward`) give the same logits for every input.
Average pooling is refused (its output is not bipolar).

Parameters live in a dict keyed by the 1-based position ``i`` of the layer: ``w{i}``,
``gamma{i}``, ``beta{i}``, ``log_scale`` (then ``mean{i}``, ``var{i}``, ``logit_scale`` and
``eps`` after :func:`bnn_net_statistics`).
"""

import numpy as np

from ..errors import ModelError
from ..ir import (
    Conv2d,
    DType,
    DTypeKind,
    Layer,
    Model,
    Op,
    OutputKind,
    OutputStage,
    Pool2d,
    readonly,
)
from .binarize import (
    BN_EPS,
    binarize,
    binarize_pass,
    bn_backward,
    bn_forward,
    bn_sign,
    fold_bn_sign,
)
from .nn import conv2d_backward, conv2d_forward, pool2d_backward, pool2d_forward
from .train import Adam, log_epoch, lr_schedule, one_blas_thread, softmax_xent

__all__ = ["BIPOLAR_PAD", "check_binarizable", "init_bnn_net", "train_bnn_net",
           "bnn_net_statistics", "bnn_net_forward", "bnn_net_model", "binarize_net_pass"]

#: The value a convolution pads a bipolar input with.
BIPOLAR_PAD = -1

_BIPOLAR = DType.parse("bipolar")
_INT32 = DType.parse("int32")
_CHUNK = 256


def check_binarizable(fm):
    """Raise ModelError naming the layer when ``fm`` has a layer binarization cannot map."""
    for layer in fm.layers:
        if layer.weight is None and layer.kind != "max":
            raise ModelError(layer.name, f"{layer.name}.op", "binarize maps max pooling only "
                             "(an average of bipolar values is not bipolar)")


def _in_bipolar(fm):
    """Per layer: whether its input is bipolar (after a weighted layer, or a bipolar input)."""
    bipolar = fm.input_dtype.kind is DTypeKind.BIPOLAR
    out = []
    for layer in fm.layers:
        out.append(bipolar)
        bipolar = bipolar or layer.weight is not None
    return out


def _pad(bipolar, i):
    """The pad value of layer ``i`` (1-based): -1 on a bipolar input, else 0."""
    return BIPOLAR_PAD if bipolar[i - 1] else 0


def init_bnn_net(fm, rng, latent=None):
    """Parameters for the structure of ``fm``: latent weights uniform in [-0.1, 0.1] (layer
    order) or ``latent`` (a dict ``i -> array``, clipped to [-1, 1]); batch-norm the identity;
    logit scale ``1 / sqrt(fan_in)`` of the last layer."""
    p = {}
    n = len(fm.layers)
    for i, layer in enumerate(fm.layers, 1):
        if layer.weight is None:
            continue
        if latent is None:
            p[f"w{i}"] = rng.uniform(-0.1, 0.1, layer.weight.shape)
        else:
            p[f"w{i}"] = np.clip(np.array(latent[i], dtype=np.float64), -1.0, 1.0)
        if i < n:
            p[f"gamma{i}"] = np.ones(layer.out_features)
            p[f"beta{i}"] = np.zeros(layer.out_features)
    p["log_scale"] = np.array([-0.5 * np.log(fm.layers[-1].weight[0].size)])
    return p


def _flat(a):
    """Channels last and flattened: ``(N, M)`` or ``(N*OH*OW, M)``."""
    return a if a.ndim == 2 else np.moveaxis(a, 1, -1).reshape(-1, a.shape[1])


def _unflat(v, shape):
    if len(shape) == 2:
        return v
    n, m, oh, ow = shape
    return np.moveaxis(v.reshape(n, oh, ow, m), -1, 1)


def _acc(layer, h, wb, pad):
    """The layer's accumulator and the cache of its backward pass."""
    if layer.is_conv:
        return conv2d_forward(h, wb, None, pad_value=pad, **layer.conv_args())
    flat = h.reshape(len(h), -1)
    return flat @ wb.T, (h.shape, flat)


def _acc_backward(layer, da, cache, wb):
    if layer.is_conv:
        dx, dw, _ = conv2d_backward(da, cache)
        return dx, dw
    shape, flat = cache
    return (da @ wb).reshape(shape), da.T @ flat


def _step(fm, p, xb, yb, bipolar):
    """Loss and gradients of one minibatch (training-mode batch-norm, STE)."""
    n = len(fm.layers)
    h = xb
    tape = []
    for i, layer in enumerate(fm.layers, 1):
        if layer.weight is None:
            h, cache = pool2d_forward(h, "max", layer.kernel, layer.stride, layer.padding)
            tape.append((cache,))
            continue
        wb = binarize(p[f"w{i}"])
        a, cache = _acc(layer, h, wb, _pad(bipolar, i))
        if i == n:
            tape.append((cache, wb))
            break
        z, bn_cache = bn_forward(_flat(a), p[f"gamma{i}"], p[f"beta{i}"], BN_EPS)
        h = _unflat(np.where(z >= 0, 1.0, -1.0), a.shape)
        tape.append((cache, wb, bn_cache, np.abs(z) <= 1.0, a.shape))
    scale = np.exp(p["log_scale"][0])
    loss, dlogits = softmax_xent(a * scale, yb)
    grads = {"log_scale": np.array([np.sum(dlogits * a) * scale])}
    d = dlogits * scale
    for i in range(n, 0, -1):
        layer, entry = fm.layers[i - 1], tape[i - 1]
        if layer.weight is None:
            d = pool2d_backward(d, entry[0])
            continue
        if i < n:
            cache, wb, bn_cache, window, shape = entry
            dz = _flat(d) * window
            da, grads[f"gamma{i}"], grads[f"beta{i}"] = bn_backward(dz, p[f"gamma{i}"],
                                                                    bn_cache)
            d = _unflat(da, shape)
        else:
            cache, wb = entry
        d, grads[f"w{i}"] = _acc_backward(layer, d, cache, wb)
    return loss, grads


def train_bnn_net(fm, p, x, y, rng, *, epochs, batch=64, lr=(1e-2, 1e-4), log=None,
                  name="bnn", every=5):
    """Train the binarized network ``p`` for the structure of ``fm`` in place on integer
    inputs ``x`` (N, *input_shape), as floats, and labels ``y``; returns ``p``."""
    check_binarizable(fm)
    bipolar = _in_bipolar(fm)
    x = np.asarray(x, dtype=np.float64).reshape(len(x), *fm.input_shape)
    weighted = [f"w{i}" for i, layer in enumerate(fm.layers, 1) if layer.weight is not None]
    with one_blas_thread():
        opt = Adam(p)
        for epoch in range(epochs):
            rate = lr_schedule(lr[0], lr[1], epoch, epochs)
            order = rng.permutation(len(x))
            total = 0.0
            for start in range(0, len(x), batch):
                idx = order[start:start + batch]
                loss, grads = _step(fm, p, x[idx], y[idx], bipolar)
                total += loss * len(idx)
                opt.step(grads, rate)
                for key in weighted:
                    np.clip(p[key], -1.0, 1.0, out=p[key])
            log_epoch(log, name, epoch, epochs, total / len(x), every)
    return p


def _inference(fm, p, x, stats=None):
    """The float network in inference mode on ``x``; with ``stats`` (a dict) it first sets
    each layer's population statistics from the accumulators of the whole batch."""
    bipolar = _in_bipolar(fm)
    n = len(fm.layers)
    h = np.asarray(x, dtype=np.float64).reshape(len(x), *fm.input_shape)
    for i, layer in enumerate(fm.layers, 1):
        if layer.weight is None:
            h = np.concatenate([pool2d_forward(h[s:s + _CHUNK], "max", layer.kernel,
                                               layer.stride, layer.padding)[0]
                                for s in range(0, len(h), _CHUNK)])
            continue
        wb = binarize(p[f"w{i}"])
        a = np.concatenate([_acc(layer, h[s:s + _CHUNK], wb, _pad(bipolar, i))[0]
                            for s in range(0, len(h), _CHUNK)])
        if i == n:
            return a
        flat = _flat(a)
        if stats is not None:
            p[f"mean{i}"], p[f"var{i}"] = flat.mean(axis=0), flat.var(axis=0)
        h = _unflat(bn_sign(flat, p[f"gamma{i}"], p[f"beta{i}"], p[f"mean{i}"], p[f"var{i}"],
                            BN_EPS).astype(np.float64), a.shape)
    raise ValueError("the last layer must be weighted")


def bnn_net_statistics(fm, p, x):
    """Set the exact population batch-norm statistics over ``x`` layer by layer, replace
    ``log_scale`` by ``logit_scale`` and add ``eps``; modifies and returns ``p``."""
    with one_blas_thread():
        _inference(fm, p, x, stats={})
    p["logit_scale"] = np.exp(p.pop("log_scale")[0])
    p["eps"] = np.array(BN_EPS)
    return p


def bnn_net_forward(fm, p, x):
    """The last accumulator of the float network in inference mode (after
    :func:`bnn_net_statistics`): integers as floats, equal to the integer model's logits."""
    with one_blas_thread():
        return _inference(fm, p, x)


def bnn_net_model(fm, p, name=None):
    """Fold the trained network into a SPEC model: bipolar weights, bipolar ``threshold``
    stages on the hidden weighted layers, ``maxpool2d`` on bipolar maps, ``identity`` int32
    logits."""
    check_binarizable(fm)
    bipolar = _in_bipolar(fm)
    n = len(fm.layers)
    layers, in_dtype = [], fm.input_dtype
    for i, fl in enumerate(fm.layers, 1):
        in_shape = tuple(fl.in_shape)
        if fl.weight is None:
            layers.append(Pool2d(name=fl.name, op=Op.MAXPOOL2D, in_dtype=in_dtype,
                                 in_shape=in_shape, kernel=fl.kernel, stride=fl.stride,
                                 padding=fl.padding))
            continue
        pad = _pad(bipolar, i)
        wb = binarize(p[f"w{i}"]).astype(np.int64)
        if i < n:
            lo, hi = (-1, 1) if in_dtype.kind is DTypeKind.BIPOLAR else (in_dtype.lo,
                                                                          in_dtype.hi)
            w, _, t = fold_bn_sign(wb.reshape(len(wb), -1), min(lo, pad), max(hi, pad),
                                   p[f"gamma{i}"], p[f"beta{i}"], p[f"mean{i}"], p[f"var{i}"])
            wb = w.reshape(wb.shape)
            output = OutputStage(OutputKind.THRESHOLD, _BIPOLAR, thresholds=readonly(t))
        else:
            output = OutputStage(OutputKind.IDENTITY, _INT32)
        common = {"name": fl.name, "in_dtype": in_dtype, "in_shape": in_shape,
                  "weight": readonly(wb), "weight_dtype": _BIPOLAR, "output": output}
        if fl.is_conv:
            layer = Conv2d(groups=fl.groups, stride=fl.stride, dilation=fl.dilation,
                           padding=fl.padding, pad_value=pad if any(fl.padding) else 0, **common)
        else:
            layer = Layer(op=Op.LINEAR, **common)
        layers.append(layer)
        in_dtype = layer.out_dtype
    lo, hi = layers[-1].acc_bounds()
    if int(min(lo)) < _INT32.lo or int(max(hi)) > _INT32.hi:
        raise ModelError(fm.layers[-1].name, "output.dtype", "int32 cannot hold the logits")
    return Model(name=name or fm.name, input_shape=tuple(fm.input_shape),
                 input_dtype=fm.input_dtype, layers=tuple(layers))


def binarize_net_pass(state, config, data):
    """Pipeline pass ``binarize``: :func:`.binarize.binarize_pass` for an MLP; for a network
    with convolutions or pooling, train the binarized network of this module from the float one
    (latent weights ``0.1 W / max|W|`` per layer, batch-norm from the float model's where it
    has one; ``config.binarize_epochs`` epochs on the training inputs, statistics on the same)
    and fold it into the integer model."""
    fm = state.float_model
    if fm.is_mlp:
        return binarize_pass(state, config, data)
    check_binarizable(fm)
    latent = {i: 0.1 * layer.weight / max(float(np.abs(layer.weight).max()), 1e-30)
              for i, layer in enumerate(fm.layers, 1) if layer.weight is not None}
    rng = np.random.default_rng(config.seed)
    p = init_bnn_net(fm, rng, latent=latent)
    for i, layer in enumerate(fm.layers[:-1], 1):
        if layer.bn is not None:
            p[f"gamma{i}"] = np.array(layer.bn.gamma, dtype=np.float64)
            p[f"beta{i}"] = np.array(layer.bn.beta, dtype=np.float64)
    x = data.x_train.astype(np.float64)
    train_bnn_net(fm, p, x, data.y_train, rng, epochs=config.binarize_epochs, log=config.log,
                  name=f"{fm.name}: binarize")
    bnn_net_statistics(fm, p, x)
    return state.but(model=bnn_net_model(fm, p), bnn=p)
