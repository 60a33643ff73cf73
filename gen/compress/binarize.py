"""Binarization: bipolar weights and activations, batch-norm folded into thresholds.

The binarized network (Courbariaux et al., "Binarized Neural Networks", 2016; FINN's
MultiThreshold for the folding) is

    h_0 = x (the integer inputs, unscaled)
    h_i = sign(BN_i(sign(V_i) h_{i-1}))      for the hidden layers i = 1 .. L-1
    logits = s * sign(V_L) h_{L-1}           (s > 0, so the argmax is that of the accumulator)

with latent float weights ``V_i`` clipped to [-1, 1], ``sign(v) = +1`` where ``v >= 0``, no
biases, and inference batch-norm :func:`bn_float`. It is trained with the straight-through
estimator (the gradient of sign passes where ``|BN| <= 1``, hardtanh) and Adam; afterwards the
batch-norm statistics are the exact population mean and variance of the accumulators over the
training set, and :func:`fold_bn_sign` turns each hidden ``BN + sign`` into a bipolar
``threshold`` stage that reproduces the float network's sign for every legal integer input.

Parameters live in a dict: ``w{i}`` (latent weights), ``gamma{i}``, ``beta{i}`` (hidden layers)
and ``log_scale`` while training; ``mean{i}``, ``var{i}``, ``logit_scale`` and ``eps`` after
:func:`bnn_statistics`.
"""

import numpy as np

from ...hw.common import reference as ref
from ..ir import DType, Layer, Model, Op, OutputKind, OutputStage, readonly
from .train import Adam, log_epoch, lr_schedule, one_blas_thread, softmax_xent

__all__ = ["BN_EPS", "binarize", "bn_float", "bn_sign", "fold_bn_sign", "bn_forward",
           "bn_backward", "init_bnn", "train_bnn", "bnn_statistics", "bnn_float_forward",
           "bnn_model", "binarize_pass"]

#: Batch-norm epsilon of binarized networks.
BN_EPS = 1e-5

_BIPOLAR = DType.parse("bipolar")
_INT32 = DType.parse("int32")


def binarize(w):
    """Bipolar values of latent weights: +1 where ``w >= 0``, -1 elsewhere (float64)."""
    return np.where(np.asarray(w) >= 0, 1.0, -1.0)


def bn_float(acc, gamma, beta, mean, var, eps=BN_EPS):
    """Inference batch-norm, ``gamma * (acc - mean) / sqrt(var + eps) + beta``, in float64.

    This exact sequence of float64 operations is the float network's definition; the folded
    thresholds of :func:`fold_bn_sign` reproduce its sign for every integer accumulator.
    """
    return gamma * (np.asarray(acc, dtype=np.float64) - mean) / np.sqrt(var + eps) + beta


def bn_sign(acc, gamma, beta, mean, var, eps=BN_EPS):
    """The float network's activation: +1 where ``bn_float(acc) >= 0``, -1 elsewhere (int64)."""
    return np.where(bn_float(acc, gamma, beta, mean, var, eps) >= 0, 1, -1).astype(np.int64)


def fold_bn_sign(weight, in_lo, in_hi, gamma, beta, mean, var, eps=BN_EPS, bias=None):
    """Fold batch-norm + sign after an integer linear layer into a bipolar ``threshold`` stage.

    Every operation of :func:`bn_float` is monotone in ``acc`` (non-decreasing when
    ``gamma >= 0``, non-increasing otherwise), so for each channel the integer accumulators with
    ``bn_float(acc) >= 0`` form an interval reaching one end of the accumulator range. The
    threshold is found by bisection on the float expression itself, never from a rounded
    boundary, so the folded stage matches :func:`bn_sign` for every legal input. Rows with
    ``gamma < 0`` are negated (weight and bias) so that the comparison becomes ``acc' >= T``.

    Parameters
    ----------
    weight : (M, K) integer array
        The layer's weights. Negating a row keeps bipolar weights bipolar; for intN weights
        the caller must avoid -2**(N-1), whose negation does not fit.
    in_lo, in_hi : int
        Limits of the input dtype, which bound the accumulators.
    gamma, beta, mean, var : (M,) float arrays
        Batch-norm parameters and statistics.
    eps : float
    bias : (M,) integer array or None

    Returns
    -------
    weight, bias, thresholds : int64 arrays, shapes (M, K), (M,) or None, (M, 1)
        ``thresholds`` lies within ``lo .. hi + 1`` of each (negated) row's accumulator range:
        ``lo`` means always +1, ``hi + 1`` always -1.
    """
    w = np.asarray(weight, dtype=np.int64)
    gamma = np.asarray(gamma, dtype=np.float64)
    flip = gamma < 0
    sgn = np.where(flip, -1, 1).astype(np.int64)
    w_f = w * sgn[:, None]
    b_f = None if bias is None else np.asarray(bias, dtype=np.int64) * sgn
    lo, hi = ref.acc_bounds(w_f, in_lo, in_hi, b_f)
    lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)

    def fires(acc_f):
        """``bn_float >= 0`` as a function of the (possibly negated) accumulator."""
        return bn_float(acc_f * sgn, gamma, beta, mean, var, eps) >= 0

    # Smallest t in lo..hi+1 with fires(t) (hi + 1 when none): fires is non-decreasing in t.
    left, right = lo.copy(), hi + 1
    while np.any(left < right):
        mid = (left + right) // 2
        ok = fires(mid)
        right = np.where((left < right) & ok, mid, right)
        left = np.where((left < right) & ~ok, mid + 1, left)
    return w_f, b_f, left[:, None]


def bn_forward(a, g, b, eps):
    """Training-mode batch-norm of a batch: output and the cache :func:`bn_backward` needs."""
    mu = a.mean(axis=0)
    var = a.var(axis=0)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (a - mu) * inv
    return g * xhat + b, (xhat, inv)


def bn_backward(dy, g, cache):
    """Gradients of :func:`bn_forward`: with respect to its input, ``g`` and ``b``."""
    xhat, inv = cache
    n = len(dy)
    dxhat = dy * g
    da = inv / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return da, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def init_bnn(sizes, rng, latent=None):
    """Parameters of a binarized MLP ``sizes[0] -> ... -> sizes[-1]``.

    Latent weights are drawn uniformly in [-0.1, 0.1] (in layer order), or taken from
    ``latent`` (a list of ``(M, K)`` float arrays, clipped to [-1, 1]); batch-norm starts as the
    identity (``gamma = 1``, ``beta = 0``); the logit scale is ``1 / sqrt(sizes[-2])``.
    """
    n = len(sizes) - 1
    p = {}
    for i in range(1, n + 1):
        shape = (sizes[i], sizes[i - 1])
        if latent is None:
            p[f"w{i}"] = rng.uniform(-0.1, 0.1, shape)
        else:
            p[f"w{i}"] = np.clip(np.array(latent[i - 1], dtype=np.float64), -1.0, 1.0)
    for i in range(1, n):
        p[f"gamma{i}"], p[f"beta{i}"] = np.ones(sizes[i]), np.zeros(sizes[i])
    p["log_scale"] = np.array([-0.5 * np.log(sizes[-2])])
    return p


def _bnn_depth(p):
    return sum(1 for k in p if k[0] == "w" and k[1:].isdigit())


def train_bnn(p, x, y, rng, *, epochs, batch=64, lr=(1e-2, 1e-4), log=None, name="bnn",
              every=10):
    """Train the binarized MLP ``p`` (see :func:`init_bnn`) in place with the straight-through
    estimator on integer inputs ``x`` (as floats) and labels ``y``; returns ``p``."""
    with one_blas_thread():
        return _train_bnn(p, x, y, rng, epochs, batch, lr, log, name, every)


def _train_bnn(p, x, y, rng, epochs, batch, lr, log, name, every):
    n = _bnn_depth(p)
    opt = Adam(p)
    for epoch in range(epochs):
        rate = lr_schedule(lr[0], lr[1], epoch, epochs)
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            xb, yb = x[idx], y[idx]
            wb = [binarize(p[f"w{i}"]) for i in range(1, n + 1)]
            hs, zs, caches = [xb], [], []
            for i in range(1, n):
                z, cache = bn_forward(hs[-1] @ wb[i - 1].T, p[f"gamma{i}"], p[f"beta{i}"],
                                      BN_EPS)
                zs.append(z)
                caches.append(cache)
                hs.append(np.where(z >= 0, 1.0, -1.0))
            acc = hs[-1] @ wb[n - 1].T
            scale = np.exp(p["log_scale"][0])
            loss, dlogits = softmax_xent(acc * scale, yb)
            total += loss * len(idx)
            da = dlogits * scale
            grads = {}
            for i in range(n, 0, -1):
                if i < n:
                    dz = (da @ wb[i]) * (np.abs(zs[i - 1]) <= 1.0)
                    da, grads[f"gamma{i}"], grads[f"beta{i}"] = bn_backward(
                        dz, p[f"gamma{i}"], caches[i - 1])
                grads[f"w{i}"] = da.T @ hs[i - 1]
            grads["log_scale"] = np.array([np.sum(dlogits * acc) * scale])
            opt.step(grads, rate)
            for i in range(1, n + 1):
                np.clip(p[f"w{i}"], -1.0, 1.0, out=p[f"w{i}"])
        log_epoch(log, name, epoch, epochs, total / len(x), every)
    return p


def bnn_statistics(p, x):
    """Replace the trained ``log_scale`` by ``logit_scale`` and add the exact population
    batch-norm statistics ``mean{i}``, ``var{i}`` over the inputs ``x`` (float), layer by layer,
    and ``eps``; modifies and returns ``p``."""
    n = _bnn_depth(p)
    h = x
    for i in range(1, n):
        a = h @ binarize(p[f"w{i}"]).T
        p[f"mean{i}"], p[f"var{i}"] = a.mean(axis=0), a.var(axis=0)
        h = bn_sign(a, p[f"gamma{i}"], p[f"beta{i}"], p[f"mean{i}"], p[f"var{i}"])
    p["logit_scale"] = np.exp(p.pop("log_scale")[0])
    p["eps"] = np.array(BN_EPS)
    return p


def bnn_float_forward(p, x):
    """The float network in inference mode: the hidden activations and the last accumulator."""
    n = _bnn_depth(p)
    hs, h = [], x
    for i in range(1, n):
        h = bn_sign(h @ binarize(p[f"w{i}"]).T, p[f"gamma{i}"], p[f"beta{i}"], p[f"mean{i}"],
                    p[f"var{i}"])
        hs.append(h)
    return hs, h @ binarize(p[f"w{n}"]).T


def bnn_model(p, name, input_dtype, input_shape, names=None):
    """Fold the trained network (after :func:`bnn_statistics`) into a SPEC model: bipolar
    weights, bipolar ``threshold`` stages on the hidden layers, ``identity`` int32 logits.

    Raises ValueError when the logits do not fit int32 (they always do below 2**31 inputs).
    """
    n = _bnn_depth(p)
    names = names or [f"fc{i}" for i in range(1, n + 1)]
    layers, in_dtype = [], input_dtype
    for i in range(1, n):
        w, _, t = fold_bn_sign(binarize(p[f"w{i}"]).astype(np.int64), in_dtype.lo, in_dtype.hi,
                               p[f"gamma{i}"], p[f"beta{i}"], p[f"mean{i}"], p[f"var{i}"])
        layers.append(Layer(name=names[i - 1], op=Op.LINEAR, in_dtype=in_dtype,
                            weight=readonly(w), weight_dtype=_BIPOLAR,
                            output=OutputStage(OutputKind.THRESHOLD, _BIPOLAR,
                                               thresholds=readonly(t))))
        in_dtype = _BIPOLAR
    last = Layer(name=names[n - 1], op=Op.LINEAR, in_dtype=in_dtype,
                 weight=readonly(binarize(p[f"w{n}"]).astype(np.int64)),
                 weight_dtype=_BIPOLAR, output=OutputStage(OutputKind.IDENTITY, _INT32))
    lo, hi = last.acc_bounds()
    if int(min(lo)) < _INT32.lo or int(max(hi)) > _INT32.hi:
        raise ValueError(f"{last.name}: the logits do not fit int32")
    layers.append(last)
    return Model(name=name, input_shape=tuple(input_shape), input_dtype=input_dtype,
                 layers=tuple(layers))


def binarize_pass(state, config, data):
    """Pipeline pass: train the binarized network from the float one and fold it into the
    integer model (``state.model``).

    The latent weights start from the float weights scaled into [-0.1, 0.1] (``0.1 W /
    max|W|``), batch-norm from the float model's own batch-norm where it has one. Training uses
    ``data``'s training inputs (integers, unscaled) and labels, ``config.binarize_epochs``
    epochs; statistics are taken on the same inputs.
    """
    fm = state.float_model
    sizes = [fm.in_features] + [layer.out_features for layer in fm.layers]
    latent = [0.1 * layer.weight / max(float(np.abs(layer.weight).max()), 1e-30)
              for layer in fm.layers]
    rng = np.random.default_rng(config.seed)
    p = init_bnn(sizes, rng, latent=latent)
    for i, layer in enumerate(fm.layers[:-1], 1):
        if layer.bn is not None:
            p[f"gamma{i}"] = np.array(layer.bn.gamma, dtype=np.float64)
            p[f"beta{i}"] = np.array(layer.bn.beta, dtype=np.float64)
    x = data.x_train.astype(np.float64)
    train_bnn(p, x, data.y_train, rng, epochs=config.binarize_epochs, log=config.log,
              name=f"{fm.name}: binarize")
    bnn_statistics(p, x)
    model = bnn_model(p, fm.name, fm.input_dtype, (fm.in_features,),
                      names=[layer.name for layer in fm.layers])
    return state.but(model=model, bnn=p)
