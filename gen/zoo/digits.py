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

from ..compress.binarize import (
    BN_EPS,
    binarize,
    bn_float,
    bn_sign,
    bnn_float_forward,
    bnn_model,
    bnn_statistics,
    fold_bn_sign,
    init_bnn,
    train_bnn,
)
from ..compress.floatmodel import FloatLayer, FloatModel
from ..compress.quantize import ACT_PERCENTILE, REQUANT_MULT_BITS, fixed_point, quantize_mlp
from ..compress.train import accuracy, init_mlp, train_mlp
from ..ir import DType, Model, readonly
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
# The training, quantization and binarization helpers live in nnaccel.gen.compress; these names
# stay here for existing users: ``REQUANT_MULT_BITS`` (``mult`` of the int8 model's requant is
# below ``2**REQUANT_MULT_BITS``), ``ACT_PERCENTILE`` (percentile of the training-set hidden
# activations that maps to 255 in the int8 model), ``BN_EPS`` (batch-norm epsilon of the
# binarized model), :func:`fixed_point`, :func:`binarize`, :func:`bn_float`, :func:`bn_sign` and
# :func:`fold_bn_sign`.

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
    # scikit-learn takes seconds to import: only the commands that train import it
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = quantize_pixels(digits.data)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=y)
    return x_train, x_test, y_train, y_test


# --- training helpers ---------------------------------------------------------------------------

def _frozen(params):
    return types.MappingProxyType({k: readonly(v, np.float64) for k, v in params.items()})


# --- int8 MLP -----------------------------------------------------------------------------------

def _train_float_mlp(x, y, rng, hidden, epochs, batch, log):
    """Float 64-hidden-10 ReLU MLP: Adam, softmax cross-entropy, small L2."""
    p = init_mlp((x.shape[1], hidden, 10), rng)
    return train_mlp(p, x, y, rng, epochs=epochs, batch=batch, lr=(3e-3, 1e-4), l2=1e-4,
                     log=log, name="digits_int8", every=20)


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

    # quantize_mlp floors the scale of a channel whose weights decayed to nothing (a dead
    # ReLU), so that its bias and requant ratio stay finite; its weights quantize to 0.
    fm = FloatModel(name="digits_int8", input_dtype=_UINT4, input_scale=in_scale, layers=(
        FloatLayer("fc1", readonly(p["w1"], np.float64), readonly(p["b1"], np.float64)),
        FloatLayer("fc2", readonly(p["w2"], np.float64), readonly(p["b2"], np.float64))))
    model, scales = quantize_mlp(fm, x_train, weight_bits=8, act_bits=8, per_channel=True,
                                 percentile=ACT_PERCENTILE)
    w1_scale, act_scale, ratio = (scales[0][k] for k in ("weight_scale", "out_scale", "ratio"))
    w2_scale = scales[1]["weight_scale"]

    float_acc = accuracy(fm.forward(x_test), y_test)
    int_acc = accuracy(model.forward(x_test), y_test)
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
    p = init_bnn((xf.shape[1], hidden, hidden, 10), rng)
    train_bnn(p, xf, y_train, rng, epochs=epochs, batch=64, lr=(1e-2, 1e-4), log=log,
              name="digits_bnn", every=10)
    # Exact population statistics of the accumulators over the training set, layer by layer.
    bnn_statistics(p, xf)
    model = bnn_model(p, "digits_bnn", _UINT4, (64,))

    _, acc3 = bnn_float_forward(p, x_test.astype(np.float64))
    float_acc = accuracy(acc3 * p["logit_scale"], y_test)
    int_acc = accuracy(model.forward(x_test), y_test)
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
