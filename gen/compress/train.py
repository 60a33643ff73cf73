"""Numpy training of ReLU MLPs, dense, pruned (masked) or weight-shared (Deep Compression).

The network is ``logits = W_L relu(... relu(W_1 x + b_1) ...) + b_L``; its
parameters live in a dict with keys ``w1``, ``b1``, ... ``wL``, ``bL`` (``W_i`` of shape
``(M_i, K_i)``). Training is minibatch stochastic gradient descent with Adam steps on the mean
softmax cross-entropy, the learning rate decaying geometrically over the epochs.

Compressed layers keep their structure while training:

* a *masked* layer (``masks[i]``, boolean ``(M, K)``) has its gradient multiplied by the mask,
  so pruned weights stay exactly zero;
* a *shared* layer (``codes[i]``, integer ``(M, K)``) is trained through its centroids ``ci``
  (key ``c{i}`` instead of ``w{i}``; ``W = c[codes]``): the gradient of centroid ``j`` is the
  sum of the gradients of the weights with code ``j`` (Han et al., "Deep Compression", ICLR 2016,
  section 3.1), and centroid 0, the pruned weights, stays exactly 0.

Results are deterministic for a given generator state on a given machine. BLAS runs on one
thread while training (:func:`one_blas_thread`): the matrices are small, and on a loaded
machine BLAS threads only cost time (measured: 35 times the CPU time on two busy cores).
"""

import numpy as np
from threadpoolctl import threadpool_limits

__all__ = ["one_blas_thread", "Adam", "softmax_xent", "lr_schedule", "accuracy", "log_epoch",
           "init_mlp", "mlp_weights", "mlp_forward", "mlp_gradients", "train_mlp"]


def one_blas_thread():
    """Context manager: BLAS on one thread inside it."""
    return threadpool_limits(limits=1, user_api="blas")


class Adam:
    """Adam on a dict of float arrays (updated in place)."""

    def __init__(self, params, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params = params
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}
        self.t = 0

    def step(self, grads, lr):
        self.t += 1
        c1 = 1.0 - self.beta1 ** self.t
        c2 = 1.0 - self.beta2 ** self.t
        for k, g in grads.items():
            self.m[k] = self.beta1 * self.m[k] + (1.0 - self.beta1) * g
            self.v[k] = self.beta2 * self.v[k] + (1.0 - self.beta2) * g * g
            self.params[k] -= lr * (self.m[k] / c1) / (np.sqrt(self.v[k] / c2) + self.eps)


def softmax_xent(logits, y):
    """Mean cross-entropy of integer labels ``y`` and its gradient with respect to ``logits``."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.mean(np.log(p[np.arange(n), y] + 1e-300)))
    grad = p
    grad[np.arange(n), y] -= 1.0
    return loss, grad / n


def lr_schedule(lr0, lr1, epoch, epochs):
    """Learning rate decaying geometrically from ``lr0`` (first epoch) to ``lr1`` (last)."""
    return lr0 * (lr1 / lr0) ** (epoch / max(epochs - 1, 1))


def accuracy(scores, y):
    """Fraction of rows whose argmax is the label (0..1)."""
    return float(np.mean(np.argmax(scores, axis=1) == y))


def log_epoch(log, name, epoch, epochs, loss, every):
    """One progress line every ``every`` epochs and after the last one."""
    if log is not None and (epoch % every == every - 1 or epoch == epochs - 1):
        log(f"{name}: epoch {epoch + 1}/{epochs} loss {loss:.4f}")


def init_mlp(sizes, rng):
    """Fresh parameters of an MLP ``sizes[0] -> ... -> sizes[-1]``: zero biases, normal weights
    with variance ``2 / fan_in`` (He) before a ReLU and ``1 / fan_in`` for the last layer."""
    p = {}
    n = len(sizes) - 1
    for i in range(1, n + 1):
        gain = 2.0 if i < n else 1.0
        p[f"w{i}"] = rng.normal(0.0, np.sqrt(gain / sizes[i - 1]), (sizes[i], sizes[i - 1]))
        p[f"b{i}"] = np.zeros(sizes[i])
    return p


def _depth(params):
    return sum(1 for k in params if k[0] == "b" and k[1:].isdigit())


def mlp_weights(params, codes=None):
    """The weight matrices ``[W_1, ..., W_L]`` (``c[codes]`` for shared layers)."""
    codes = codes or {}
    return [params[f"c{i}"][codes[i]] if i in codes else params[f"w{i}"]
            for i in range(1, _depth(params) + 1)]


def mlp_forward(params, x, codes=None):
    """Logits of the float MLP on a batch ``x`` (already scaled to the float input)."""
    ws = mlp_weights(params, codes)
    h = x
    for i, w in enumerate(ws, 1):
        h = h @ w.T + params[f"b{i}"]
        if i < len(ws):
            h = np.maximum(h, 0.0)
    return h


def train_mlp(params, x, y, rng, *, epochs, batch=32, lr=(3e-3, 1e-4), l2=0.0, masks=None,
              codes=None, log=None, name="mlp", every=20):
    """Train ``params`` in place on ``(x, y)`` and return it.

    Parameters
    ----------
    params : dict of float64 arrays
        ``w{i}`` (or ``c{i}`` for shared layers) and ``b{i}``, ``i = 1..L``.
    x : (N, K) float array
        Inputs as the float network sees them.
    y : (N,) int array
        Labels ``0 .. M_L - 1``.
    rng : numpy.random.Generator
        Draws the minibatch order.
    epochs, batch : int
    lr : (float, float)
        Learning rate of the first and of the last epoch.
    l2 : float
        Weight decay added to the weight gradients (``l2 * W``).
    masks : dict of int to bool (M, K) arrays, optional
        Masked layers (1-based layer number): only weights where the mask is true change.
    codes : dict of int to int (M, K) arrays, optional
        Shared layers: trained through ``c{i}`` with ``W = c[codes]``; ``c{i}[0]`` stays 0.
    log : callable or None
        Receives a progress line every ``every`` epochs.
    """
    with one_blas_thread():
        return _train_mlp(params, x, y, rng, epochs, batch, lr, l2, masks or {}, codes or {},
                          log, name, every)


def mlp_gradients(params, xb, yb, *, l2=0.0, masks=None, codes=None):
    """Mean cross-entropy of a minibatch and its gradients, a dict keyed like ``params``.

    Masked layers get masked weight gradients; shared layers get centroid gradients (the sum of
    the gradients of the weights of each code, 0 for code 0). ``l2`` adds ``l2 * W`` to the
    weight gradients before masking and summing.
    """
    masks, codes = masks or {}, codes or {}
    n = _depth(params)
    ws = mlp_weights(params, codes)
    hs, pres = [xb], []
    for i in range(1, n):
        pre = hs[-1] @ ws[i - 1].T + params[f"b{i}"]
        pres.append(pre)
        hs.append(np.maximum(pre, 0.0))
    loss, dz = softmax_xent(hs[-1] @ ws[n - 1].T + params[f"b{n}"], yb)
    grads = {}
    for i in range(n, 0, -1):
        dw = dz.T @ hs[i - 1] + l2 * ws[i - 1] if l2 else dz.T @ hs[i - 1]
        if i in masks:
            dw = dw * masks[i]
        if i in codes:
            c = params[f"c{i}"]
            dc = np.bincount(codes[i].ravel(), weights=dw.ravel(), minlength=len(c))
            dc[0] = 0.0
            grads[f"c{i}"] = dc
        else:
            grads[f"w{i}"] = dw
        grads[f"b{i}"] = dz.sum(axis=0)
        if i > 1:
            dz = (dz @ ws[i - 1]) * (pres[i - 2] > 0)
    return loss, grads


def _train_mlp(params, x, y, rng, epochs, batch, lr, l2, masks, codes, log, name, every):
    opt = Adam(params)
    for epoch in range(epochs):
        rate = lr_schedule(lr[0], lr[1], epoch, epochs)
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            loss, grads = mlp_gradients(params, x[idx], y[idx], l2=l2, masks=masks,
                                        codes=codes)
            total += loss * len(idx)
            opt.step(grads, rate)
            for i in codes:
                params[f"c{i}"][0] = 0.0
        log_epoch(log, name, epoch, epochs, total / len(x), every)
    return params
