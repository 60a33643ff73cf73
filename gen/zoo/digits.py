"""Two classifiers of scikit-learn's 8x8 digits, trained here and turned into SPEC models.

Data
----
``sklearn.datasets.load_digits`` (bundled with scikit-learn, nothing is downloaded): 1797 images
of 8x8 pixels with values 0..16 in 10 classes. The split is fixed, whatever the seed of a model:
``train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)``, 1347 training and 450
test images. Both models take a ``uint4`` vector of shape ``[64]`` (the image row by row) with

    x_q = round(pixel * 15 / 16)      halves rounded up, computed exactly as (15*pixel + 8) // 16

so 0 stays 0 and 16 becomes 15. The float networks are trained on these same quantized pixels,
so float and integer accuracies are measured on identical inputs.

Models
------
``digits_int8`` (:func:`int8_mlp`)
    64-32-10 MLP with ReLU, trained in float (numpy, Adam, softmax cross-entropy) on
    ``x_q / 15``, then quantized after training:

    * ``fc1``: int8 weights, symmetric, one scale per output channel (``max|w| / 127``); int32
      bias ``round(b / (s_in * s_w))``; ``requant`` to ``uint8`` with ``relu``. The activation
      scale ``s_h`` is the 99.9th percentile of the float hidden activations on the training set,
      divided by 255. ``mult[m] / 2**shift[m]`` approximates ``s_in * s_w[m] / s_h`` (see
      :func:`fixed_point`: ``mult < 2**16``, relative error below ``2**-15``).
    * ``fc2``: int8 weights with *one* scale for the whole matrix, int32 bias, ``identity`` int32
      logits. An ``identity`` output cannot rescale channels, so per-channel scales would change
      the argmax; with a shared scale the logits are a positive multiple of the float ones.

    Seeds 0..4: float test accuracy 97.1..98.2 %, the int8 model's equal to it on every seed.

``digits_bnn`` (:func:`binarized_mlp`)
    64-128-128-10 binarized MLP trained in numpy with the straight-through estimator: latent float
    weights clipped to [-1, 1] and binarized by sign (``w >= 0`` gives +1) in the forward pass,
    batch-norm after the two hidden linear layers, sign activations with the hardtanh STE
    gradient (the gradient passes where ``|bn| <= 1``), a learned positive scale on the logits
    and Adam. No biases; no batch-norm on the last layer (a positive scale keeps the argmax).
    After training, the batch-norm statistics are the exact population mean and variance of the
    accumulators over the training set.

    * ``fc1``: uint4 inputs times bipolar weights; ``fc2``: bipolar times bipolar; each followed
      by a ``threshold`` stage with a ``bipolar`` output and one threshold per channel, folded
      exactly from batch-norm + sign (:func:`fold_bn_sign`).
    * ``fc3``: bipolar times bipolar, ``identity`` int32 logits (the argmax is the class).

    Hidden width 128 (25,856 weight bits; 40 epochs, under 2 s): test accuracy 96.2..96.9 % over
    seeds 0..3. Width 256 gave 96.4..97.6 % for 3.3 times the weight bits, 512 gave
    96.9..98.2 % for 11.6 times; more epochs did not help. The float network and the integer
    model agree bit for bit, so their accuracies are equal.

Every model is deterministic for a given seed on a given machine (numpy generators seeded from
``seed``; BLAS may round differently on another CPU).
"""

import time
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from ...hw.common import reference as ref
from ..ir import DType, Layer, Model, Op, OutputKind, OutputStage, readonly
from ..model_io import write_model

__all__ = [
    "DigitsResult", "load_split", "quantize_pixels", "int8_mlp", "binarized_mlp", "train_all",
    "fixed_point", "binarize", "bn_float", "bn_sign", "fold_bn_sign",
    "TEST_SIZE", "SPLIT_SEED", "MLP_HIDDEN", "BNN_HIDDEN", "REQUANT_MULT_BITS", "ACT_PERCENTILE",
    "BN_EPS",
]

#: Fraction of the images held out for testing, and the seed of the (stratified) split.
TEST_SIZE = 0.25
SPLIT_SEED = 0
#: Hidden widths of the two models.
MLP_HIDDEN = 32
BNN_HIDDEN = 128
#: ``mult`` of the int8 model's requant is below ``2**REQUANT_MULT_BITS``.
REQUANT_MULT_BITS = 16
#: Percentile of the training-set hidden activations that maps to 255 in the int8 model.
ACT_PERCENTILE = 99.9
#: Batch-norm epsilon of the binarized model.
BN_EPS = 1e-5

_UINT4 = DType.parse("uint4")
_UINT8 = DType.parse("uint8")
_INT8 = DType.parse("int8")
_INT32 = DType.parse("int32")
_BIPOLAR = DType.parse("bipolar")


@dataclass(frozen=True, eq=False)
class DigitsResult:
    """One trained zoo model.

    Attributes
    ----------
    model : nnaccel.gen.ir.Model
        The SPEC model.
    float_accuracy : float
        Test accuracy of the float network on the quantized test inputs (0..1).
    int_accuracy : float
        Test accuracy of ``argmax(model.forward(x_test))`` (0..1).
    x_test : (N, 64) int64 array
        Test inputs, ``uint4`` values.
    y_test : (N,) int64 array
        Test labels 0..9.
    params : mapping of str to read-only float64 arrays
        The trained float parameters and scales the model was derived from (see
        :func:`int8_mlp` and :func:`binarized_mlp` for the keys).
    train_seconds : float
        Wall-clock time of training and conversion.
    """

    model: Model
    float_accuracy: float
    int_accuracy: float
    x_test: np.ndarray
    y_test: np.ndarray
    params: types.MappingProxyType
    train_seconds: float


# --- data ---------------------------------------------------------------------------------------

def quantize_pixels(pixels):
    """Digits pixels 0..16 to ``uint4`` values: ``round(pixel * 15 / 16)``, halves rounded up.

    Parameters
    ----------
    pixels : integer-valued array
        Values in 0..16.

    Returns
    -------
    int64 array of the same shape, values in 0..15.
    """
    p = np.asarray(pixels)
    if p.size and (np.any(p != np.round(p)) or p.min() < 0 or p.max() > 16):
        raise ValueError("digits pixels are integers in 0..16")
    return (15 * p.astype(np.int64) + 8) // 16


def load_split():
    """The fixed train/test split of scikit-learn's digits, inputs quantized to ``uint4``.

    Returns
    -------
    x_train, x_test : (1347, 64), (450, 64) int64 arrays
        Values 0..15 (:func:`quantize_pixels`).
    y_train, y_test : (1347,), (450,) int64 arrays
        Labels 0..9.
    """
    digits = load_digits()
    x = quantize_pixels(digits.data)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y)
    return x_train, x_test, y_train, y_test


# --- training helpers ---------------------------------------------------------------------------

class _Adam:
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


def _softmax_xent(logits, y):
    """Mean cross-entropy and its gradient with respect to ``logits``."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.mean(np.log(p[np.arange(n), y] + 1e-300)))
    grad = p
    grad[np.arange(n), y] -= 1.0
    return loss, grad / n


def _lr(lr0, lr1, epoch, epochs):
    """Learning rate decaying geometrically from ``lr0`` (first epoch) to ``lr1`` (last)."""
    return lr0 * (lr1 / lr0) ** (epoch / max(epochs - 1, 1))


def _accuracy(scores, y):
    return float(np.mean(np.argmax(scores, axis=1) == y))


def _frozen(params):
    return types.MappingProxyType({k: readonly(v, np.float64) for k, v in params.items()})


def _log_epoch(log, name, epoch, epochs, loss, every):
    if log is not None and (epoch % every == every - 1 or epoch == epochs - 1):
        log(f"{name}: epoch {epoch + 1}/{epochs} loss {loss:.4f}")


# --- int8 MLP -----------------------------------------------------------------------------------

def fixed_point(ratio, mult_bits=REQUANT_MULT_BITS):
    """Fixed-point approximation ``mult / 2**shift`` of positive real scale ratios.

    For each ratio ``shift`` is the largest value in 0..31 such that
    ``mult = round(ratio * 2**shift)`` (halves up) is below ``2**mult_bits``.

    Parameters
    ----------
    ratio : (M,) array of positive floats
    mult_bits : int
        1..31.

    Returns
    -------
    mult, shift : (M,) int64 arrays
        ``0 < mult < 2**mult_bits``, ``0 <= shift <= 31``,
        ``|mult * 2**-shift - ratio| <= 2**-(shift + 1)`` and the relative error
        ``|mult * 2**-shift / ratio - 1|`` is below ``2**(1 - mult_bits)``.

    Raises
    ------
    ValueError
        When a ratio is not positive, or too large or too small for that precision.
    """
    if not 1 <= mult_bits <= 31:
        raise ValueError(f"mult_bits must lie in 1..31, not {mult_bits!r}")
    top = (1 << mult_bits) - 1
    mults, shifts = [], []
    for r in np.asarray(ratio, dtype=np.float64).reshape(-1):
        r = float(r)
        if not (np.isfinite(r) and r > 0):
            raise ValueError(f"scale ratio {r!r} is not a positive number")
        mult = shift = None
        for s in range(31, -1, -1):
            m = int(np.floor(r * 2.0**s + 0.5))
            if m <= top:
                mult, shift = m, s
                break
        if mult is None:
            raise ValueError(f"scale ratio {r!r} needs a mult of {mult_bits}+ bits at shift 0")
        if mult == 0 or abs(mult * 2.0**-shift / r - 1.0) >= 2.0 ** (1 - mult_bits):
            raise ValueError(f"scale ratio {r!r} is too small for {mult_bits}-bit precision")
        mults.append(mult)
        shifts.append(shift)
    return np.array(mults, dtype=np.int64), np.array(shifts, dtype=np.int64)


def _train_float_mlp(x, y, rng, hidden, epochs, batch, log):
    """Float 64-hidden-10 ReLU MLP: Adam, softmax cross-entropy, small L2."""
    k = x.shape[1]
    p = {"w1": rng.normal(0.0, np.sqrt(2.0 / k), (hidden, k)), "b1": np.zeros(hidden),
         "w2": rng.normal(0.0, np.sqrt(1.0 / hidden), (10, hidden)), "b2": np.zeros(10)}
    opt = _Adam(p)
    l2 = 1e-4
    for epoch in range(epochs):
        lr = _lr(3e-3, 1e-4, epoch, epochs)
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            xb, yb = x[idx], y[idx]
            pre = xb @ p["w1"].T + p["b1"]
            h = np.maximum(pre, 0.0)
            loss, dz = _softmax_xent(h @ p["w2"].T + p["b2"], yb)
            total += loss * len(idx)
            dh = (dz @ p["w2"]) * (pre > 0)
            opt.step({"w2": dz.T @ h + l2 * p["w2"], "b2": dz.sum(axis=0),
                      "w1": dh.T @ xb + l2 * p["w1"], "b1": dh.sum(axis=0)}, lr)
        _log_epoch(log, "digits_int8", epoch, epochs, total / len(x), 20)
    return p


def int8_mlp(seed=0, *, epochs=120, log=None):
    """Train the 64-32-10 MLP and quantize it to the SPEC model ``digits_int8``.

    Parameters
    ----------
    seed : int
        Seeds the initialisation and the minibatch order (not the data split).
    epochs : int
        Training epochs (minibatches of 32, learning rate 3e-3 decaying to 1e-4).
    log : callable or None
        Receives one short progress line every 20 epochs and a summary.

    Returns
    -------
    DigitsResult
        ``params`` holds the float network (``w1`` (32, 64), ``b1``, ``w2`` (10, 32), ``b2``, on
        inputs ``x_q * in_scale``) and the quantization scales: ``in_scale`` (1/15), ``w1_scale``
        (32,), ``act_scale`` (the hidden ``uint8`` step), ``w2_scale`` (scalar) and
        ``requant_ratio`` = ``in_scale * w1_scale / act_scale``, which fc1's
        ``mult / 2**shift`` approximates.
    """
    t0 = time.perf_counter()
    x_train, x_test, y_train, y_test = load_split()
    rng = np.random.default_rng(seed)
    in_scale = 1.0 / 15.0
    p = _train_float_mlp(x_train * in_scale, y_train, rng, MLP_HIDDEN, epochs, 32, log)

    h_train = np.maximum(x_train * in_scale @ p["w1"].T + p["b1"], 0.0)
    act_scale = float(np.percentile(h_train, ACT_PERCENTILE)) / 255.0
    # A channel whose weights decayed to nothing (a dead ReLU) gets a floor on its scale, so
    # that its bias and requant ratio stay finite; its weights quantize to 0.
    w1_scale = np.abs(p["w1"]).max(axis=1) / 127.0
    w1_scale = np.maximum(w1_scale, 1e-3 * w1_scale.max())
    w2_scale = float(np.abs(p["w2"]).max()) / 127.0 or 1.0
    w1_q = np.clip(np.round(p["w1"] / w1_scale[:, None]), -127, 127).astype(np.int64)
    b1_q = np.round(p["b1"] / (in_scale * w1_scale)).astype(np.int64)
    w2_q = np.clip(np.round(p["w2"] / w2_scale), -127, 127).astype(np.int64)
    b2_q = np.round(p["b2"] / (act_scale * w2_scale)).astype(np.int64)
    for name, b in (("fc1", b1_q), ("fc2", b2_q)):
        if not _INT32.contains(b):
            raise ValueError(f"{name}: the quantized bias does not fit int32")
    ratio = in_scale * w1_scale / act_scale
    mult, shift = fixed_point(ratio)

    fc1 = Layer(name="fc1", op=Op.LINEAR, in_dtype=_UINT4, weight=readonly(w1_q),
                weight_dtype=_INT8, bias=readonly(b1_q),
                output=OutputStage(OutputKind.REQUANT, _UINT8, mult=readonly(mult),
                                   shift=readonly(shift), relu=True))
    fc2 = Layer(name="fc2", op=Op.LINEAR, in_dtype=_UINT8, weight=readonly(w2_q),
                weight_dtype=_INT8, bias=readonly(b2_q),
                output=OutputStage(OutputKind.IDENTITY, _INT32))
    model = Model(name="digits_int8", input_shape=(64,), input_dtype=_UINT4, layers=(fc1, fc2))

    h_test = np.maximum(x_test * in_scale @ p["w1"].T + p["b1"], 0.0)
    float_acc = _accuracy(h_test @ p["w2"].T + p["b2"], y_test)
    int_acc = _accuracy(model.forward(x_test), y_test)
    params = dict(p, in_scale=in_scale, w1_scale=w1_scale, act_scale=act_scale,
                  w2_scale=w2_scale, requant_ratio=ratio)
    seconds = time.perf_counter() - t0
    if log is not None:
        log(f"digits_int8: float accuracy {float_acc:.4f}, int8 accuracy {int_acc:.4f} "
            f"({seconds:.1f} s)")
    return DigitsResult(model=model, float_accuracy=float_acc, int_accuracy=int_acc,
                        x_test=readonly(x_test), y_test=readonly(y_test), params=_frozen(params),
                        train_seconds=seconds)


# --- binarized MLP ------------------------------------------------------------------------------

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


def _bn_forward(a, g, b, eps):
    mu = a.mean(axis=0)
    var = a.var(axis=0)
    inv = 1.0 / np.sqrt(var + eps)
    xhat = (a - mu) * inv
    return g * xhat + b, (xhat, inv)


def _bn_backward(dy, g, cache):
    xhat, inv = cache
    n = len(dy)
    dxhat = dy * g
    da = inv / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return da, (dy * xhat).sum(axis=0), dy.sum(axis=0)


def _train_bnn(x, y, rng, hidden, epochs, batch, log):
    """Binarized MLP with STE; returns the latent parameters and the logit scale."""
    k = x.shape[1]
    p = {"w1": rng.uniform(-0.1, 0.1, (hidden, k)), "w2": rng.uniform(-0.1, 0.1, (hidden, hidden)),
         "w3": rng.uniform(-0.1, 0.1, (10, hidden)),
         "gamma1": np.ones(hidden), "beta1": np.zeros(hidden),
         "gamma2": np.ones(hidden), "beta2": np.zeros(hidden),
         "log_scale": np.array([-0.5 * np.log(hidden)])}
    opt = _Adam(p)
    for epoch in range(epochs):
        lr = _lr(1e-2, 1e-4, epoch, epochs)
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            xb, yb = x[idx], y[idx]
            wb1, wb2, wb3 = binarize(p["w1"]), binarize(p["w2"]), binarize(p["w3"])
            z1, c1 = _bn_forward(xb @ wb1.T, p["gamma1"], p["beta1"], BN_EPS)
            h1 = np.where(z1 >= 0, 1.0, -1.0)
            z2, c2 = _bn_forward(h1 @ wb2.T, p["gamma2"], p["beta2"], BN_EPS)
            h2 = np.where(z2 >= 0, 1.0, -1.0)
            a3 = h2 @ wb3.T
            scale = np.exp(p["log_scale"][0])
            loss, dlogits = _softmax_xent(a3 * scale, yb)
            total += loss * len(idx)
            da3 = dlogits * scale
            dz2 = (da3 @ wb3) * (np.abs(z2) <= 1.0)
            da2, dg2, db2 = _bn_backward(dz2, p["gamma2"], c2)
            dz1 = (da2 @ wb2) * (np.abs(z1) <= 1.0)
            da1, dg1, db1 = _bn_backward(dz1, p["gamma1"], c1)
            opt.step({"w3": da3.T @ h2, "w2": da2.T @ h1, "w1": da1.T @ xb,
                      "gamma2": dg2, "beta2": db2, "gamma1": dg1, "beta1": db1,
                      "log_scale": np.array([np.sum(dlogits * a3) * scale])}, lr)
            for name in ("w1", "w2", "w3"):
                np.clip(p[name], -1.0, 1.0, out=p[name])
        _log_epoch(log, "digits_bnn", epoch, epochs, total / len(x), 10)
    return p


def _bnn_float_forward(p, x):
    """Float BN + sign network in inference mode: (h1, h2, logits accumulators)."""
    h1 = bn_sign(x @ binarize(p["w1"]).T, p["gamma1"], p["beta1"], p["mean1"], p["var1"])
    h2 = bn_sign(h1 @ binarize(p["w2"]).T, p["gamma2"], p["beta2"], p["mean2"], p["var2"])
    return h1, h2, h2 @ binarize(p["w3"]).T


def binarized_mlp(seed=0, *, hidden=BNN_HIDDEN, epochs=40, log=None):
    """Train the binarized MLP 64-H-H-10 and fold it into the SPEC model ``digits_bnn``.

    Parameters
    ----------
    seed : int
        Seeds the latent weights and the minibatch order (not the data split).
    hidden : int
        Width H of the two hidden layers.
    epochs : int
        Training epochs (minibatches of 64, learning rate 1e-2 decaying to 1e-4).
    log : callable or None
        Receives one short progress line every 10 epochs and a summary.

    Returns
    -------
    DigitsResult
        ``params`` holds the float network: latent weights ``w1`` (H, 64), ``w2`` (H, H), ``w3``
        (10, H) (binarized by :func:`binarize`), batch-norm ``gamma1``, ``beta1``, ``mean1``,
        ``var1``, ``gamma2``, ``beta2``, ``mean2``, ``var2`` (used by :func:`bn_sign` with
        ``eps``) and ``logit_scale`` (positive; the float logits are
        ``logit_scale * h2 @ binarize(w3).T``). The float network runs on the integer inputs
        ``x_q`` directly.
    """
    t0 = time.perf_counter()
    x_train, x_test, y_train, y_test = load_split()
    rng = np.random.default_rng(seed)
    xf = x_train.astype(np.float64)
    p = _train_bnn(xf, y_train, rng, hidden, epochs, 64, log)

    # Exact population statistics of the accumulators over the training set, layer by layer.
    a1 = xf @ binarize(p["w1"]).T
    p["mean1"], p["var1"] = a1.mean(axis=0), a1.var(axis=0)
    h1 = bn_sign(a1, p["gamma1"], p["beta1"], p["mean1"], p["var1"])
    a2 = h1 @ binarize(p["w2"]).T
    p["mean2"], p["var2"] = a2.mean(axis=0), a2.var(axis=0)
    p["logit_scale"] = np.exp(p.pop("log_scale")[0])
    p["eps"] = np.array(BN_EPS)

    layers, in_dtype = [], _UINT4
    for i in (1, 2):
        w, _, t = fold_bn_sign(binarize(p[f"w{i}"]).astype(np.int64), in_dtype.lo, in_dtype.hi,
                               p[f"gamma{i}"], p[f"beta{i}"], p[f"mean{i}"], p[f"var{i}"])
        layers.append(Layer(name=f"fc{i}", op=Op.LINEAR, in_dtype=in_dtype, weight=readonly(w),
                            weight_dtype=_BIPOLAR,
                            output=OutputStage(OutputKind.THRESHOLD, _BIPOLAR,
                                               thresholds=readonly(t))))
        in_dtype = _BIPOLAR
    layers.append(Layer(name="fc3", op=Op.LINEAR, in_dtype=_BIPOLAR,
                        weight=readonly(binarize(p["w3"]).astype(np.int64)),
                        weight_dtype=_BIPOLAR, output=OutputStage(OutputKind.IDENTITY, _INT32)))
    model = Model(name="digits_bnn", input_shape=(64,), input_dtype=_UINT4, layers=tuple(layers))

    _, _, acc3 = _bnn_float_forward(p, x_test.astype(np.float64))
    float_acc = _accuracy(acc3 * p["logit_scale"], y_test)
    int_acc = _accuracy(model.forward(x_test), y_test)
    seconds = time.perf_counter() - t0
    if log is not None:
        log(f"digits_bnn: float accuracy {float_acc:.4f}, integer accuracy {int_acc:.4f} "
            f"({seconds:.1f} s)")
    return DigitsResult(model=model, float_accuracy=float_acc, int_accuracy=int_acc,
                        x_test=readonly(x_test), y_test=readonly(y_test), params=_frozen(p),
                        train_seconds=seconds)


# --- both ---------------------------------------------------------------------------------------

def train_all(outdir, seed=0, log=print):
    """Train both digits models and write them as SPEC model directories.

    Parameters
    ----------
    outdir : path
        Receives ``digits_int8/`` and ``digits_bnn/`` (each ``model.json`` + ``weights.npz``,
        written atomically; an existing directory of that name is replaced).
    seed : int
    log : callable or None
        Progress lines (epochs, accuracies, where each model went).

    Returns
    -------
    dict
        ``{"digits_int8": DigitsResult, "digits_bnn": DigitsResult}``.
    """
    outdir = Path(outdir)
    results = {}
    for train in (int8_mlp, binarized_mlp):
        result = train(seed, log=log)
        path = write_model(result.model, outdir / result.model.name)
        if log is not None:
            log(f"{result.model.name}: written to {path}")
        results[result.model.name] = result
    return results
