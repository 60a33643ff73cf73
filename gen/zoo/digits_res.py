"""A small residual CNN on scikit-learn's 8x8 digits, trained in numpy and quantized to int8
(issue 11's trained residual network).

Data: the fixed split and the ``uint4`` pixels of :mod:`nnaccel.gen.zoo.digits` as feature maps
``(1, 8, 8)``; the float network sees ``x / 15``. Float network::

    c1  conv2d 1 -> C, 3x3, padding 1, ReLU          (C, 8, 8)
    c2  conv2d C -> C, 3x3, padding 1, ReLU          (C, 8, 8)
    c3  conv2d C -> C, 3x3, padding 1                (C, 8, 8)
    r   add(c3, c1), ReLU                            (C, 8, 8)   the residual connection
    p   maxpool2d 2x2                                (C, 4, 4)
    fc  linear C*4*4 -> 10                           (reads (C, H, W) flattened)

trained with Adam on softmax cross-entropy (He initialisation, learning rate 3e-3 to 1e-4,
minibatches of 32, :data:`EPOCHS` epochs; the forward and backward passes of
:mod:`nnaccel.gen.compress.nn`). Quantized (post-training, calibrated on the training split):
int8 weights per output channel, int32 biases, unsigned 8-bit activations after each ReLU and
a signed int8 ``c3`` (scales: the largest activation of the training split), the residual
``add`` with integer per-input scales ``round(s_i / s_r * 2^ADD_SHIFT)`` and a requant by
``2^-ADD_SHIFT``, int32 logits. Every requant multiplier is ``round(s_in * s_w[m] / s_out *
2^SHIFT)``.

Measured (seed 0, test split of 450 images): float 98.00 %, int8 (numpy) 98.00 %; 8 channels
and 15 epochs gave 96.44 % and 96.22 %. Training takes about 8 s of one core.
"""

from dataclasses import dataclass

import numpy as np

from ..compress.nn import conv2d_backward, conv2d_forward, pool2d_backward, pool2d_forward
from ..compress.train import Adam, accuracy, lr_schedule, one_blas_thread, softmax_xent
from ..model_io import model_from_arrays
from .digits import load_split

__all__ = ["CHANNELS", "EPOCHS", "DigitsRes", "digits_res_data", "train_digits_res",
           "float_forward", "quantize_digits_res", "digits_res"]

#: Channels of the three convolutions.
CHANNELS = 16
#: Float training epochs.
EPOCHS = 20
#: Requant shift of the convolutions and the residual add's scales.
SHIFT = 16
ADD_SHIFT = 8
_PAD = (1, 1, 1, 1)


@dataclass(frozen=True)
class DigitsRes:
    """The trained float parameters, the int8 model and the accuracies (0..1, test split)."""

    params: dict
    model: object
    float_accuracy: float
    numpy_accuracy: float


def digits_res_data():
    """``(x_train, x_test, y_train, y_test)``: uint4 maps (N, 1, 8, 8) and labels."""
    x_train, x_test, y_train, y_test = load_split()
    return x_train.reshape(-1, 1, 8, 8), x_test.reshape(-1, 1, 8, 8), y_train, y_test


def _conv(x, p, name):
    return conv2d_forward(x, p[f"{name}.w"], p[f"{name}.b"], padding=_PAD)


def float_forward(p, x, cache=False):
    """Logits of the float network for uint4 maps ``x`` (and the activations with ``cache``)."""
    h0 = np.asarray(x, dtype=np.float64) / 15.0
    a1, k1 = _conv(h0, p, "c1")
    h1 = np.maximum(a1, 0)
    a2, k2 = _conv(h1, p, "c2")
    h2 = np.maximum(a2, 0)
    a3, k3 = _conv(h2, p, "c3")
    r = a3 + h1
    hr = np.maximum(r, 0)
    hp, kp = pool2d_forward(hr, "max", (2, 2))
    flat = hp.reshape(len(hp), -1)
    logits = flat @ p["fc.w"].T + p["fc.b"]
    if not cache:
        return logits
    return logits, {"h1": h1, "h2": h2, "a3": a3, "r": r, "hp": hp, "flat": flat,
                    "k": (k1, k2, k3, kp)}


def _gradients(p, xb, yb):
    logits, c = float_forward(p, xb, cache=True)
    loss, dl = softmax_xent(logits, yb)
    k1, k2, k3, kp = c["k"]
    g = {"fc.w": dl.T @ c["flat"], "fc.b": dl.sum(axis=0)}
    dhp = (dl @ p["fc.w"]).reshape(c["hp"].shape)
    dr = pool2d_backward(dhp, kp) * (c["r"] > 0)
    dh2, g["c3.w"], g["c3.b"] = conv2d_backward(dr, k3)
    da2 = dh2 * (c["h2"] > 0)
    dh1, g["c2.w"], g["c2.b"] = conv2d_backward(da2, k2)
    da1 = (dh1 + dr) * (c["h1"] > 0)  # the skip carries dr straight to h1
    _, g["c1.w"], g["c1.b"] = conv2d_backward(da1, k1)
    return loss, g


def train_digits_res(seed=0, *, channels=CHANNELS, epochs=EPOCHS, batch=32, lr=(3e-3, 1e-4),
                     log=None):
    """Float parameters trained on the training split (deterministic for a seed)."""
    x, _, y, _ = digits_res_data()
    rng = np.random.default_rng(seed)

    def he(shape, gain=2.0):
        return rng.normal(0.0, np.sqrt(gain / np.prod(shape[1:])), shape)

    c = channels
    p = {"c1.w": he((c, 1, 3, 3)), "c2.w": he((c, c, 3, 3)), "c3.w": he((c, c, 3, 3), 1.0),
         "fc.w": he((10, c * 16), 1.0)}
    for name, m in (("c1", c), ("c2", c), ("c3", c), ("fc", 10)):
        p[f"{name}.b"] = np.zeros(m)
    opt = Adam(p)
    with one_blas_thread():
        for epoch in range(epochs):
            order = rng.permutation(len(x))
            rate = lr_schedule(*lr, epoch, epochs)
            total = 0.0
            for start in range(0, len(x), batch):
                idx = order[start:start + batch]
                loss, g = _gradients(p, x[idx], y[idx])
                opt.step(g, rate)
                total += loss * len(idx)
            if log is not None:
                log(f"digits_res: epoch {epoch + 1}/{epochs} loss {total / len(x):.4f}")
    return p


def _weights(w):
    """int8 weights per output channel and their scales."""
    flat = w.reshape(len(w), -1)
    scale = np.maximum(np.abs(flat).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.round(flat / scale[:, None]), -127, 127).astype(np.int64)
    return q.reshape(w.shape), scale


def _mult(s_in, s_w, s_out):
    return np.maximum(1, np.round(s_in * s_w / s_out * (1 << SHIFT))).astype(np.int64)


def quantize_digits_res(p, x_calibration, name="digits_res"):
    """The int8 :class:`~nnaccel.gen.ir.Model` of float parameters ``p`` (see the module's
    docstring), activation scales from ``x_calibration`` (uint4 maps)."""
    _, c = float_forward(p, x_calibration, cache=True)
    s = {"in": 1 / 15.0, "c1": c["h1"].max() / 255, "c2": c["h2"].max() / 255,
         "c3": np.abs(c["a3"]).max() / 127, "r": np.maximum(c["r"], 0).max() / 255}
    arrays, layers = {}, []
    for layer, src, out, relu in (("c1", "in", "c1", True), ("c2", "c1", "c2", True),
                                  ("c3", "c2", "c3", False)):
        w, s_w = _weights(p[f"{layer}.w"])
        arrays[f"{layer}.w"] = w
        arrays[f"{layer}.b"] = np.round(p[f"{layer}.b"] / (s[src] * s_w)).astype(np.int64)
        arrays[f"{layer}.mult"] = _mult(s[src], s_w, s[out])
        layers.append({"name": layer, "op": "conv2d", "weight": f"{layer}.w",
                       "weight_dtype": "int8", "bias": f"{layer}.b", "padding": list(_PAD),
                       "output": {"kind": "requant", "mult": f"{layer}.mult", "shift": SHIFT,
                                  "dtype": "uint8" if relu else "int8", "relu": relu}})
    scales = [int(round(s[k] / s["r"] * (1 << ADD_SHIFT))) for k in ("c3", "c1")]
    layers.append({"name": "r", "op": "add", "inputs": ["c3", "c1"], "scales": scales,
                   "output": {"kind": "requant", "mult": 1, "shift": ADD_SHIFT,
                              "dtype": "uint8", "relu": True}})
    layers.append({"name": "p", "op": "maxpool2d", "kernel": [2, 2]})
    w, s_w = _weights(p["fc.w"])
    arrays["fc.w"] = w
    arrays["fc.b"] = np.round(p["fc.b"] / (s["r"] * s_w)).astype(np.int64)
    layers.append({"name": "fc", "op": "linear", "weight": "fc.w", "weight_dtype": "int8",
                   "bias": "fc.b", "output": {"kind": "identity", "dtype": "int32"}})
    doc = {"format": "nnaccel-model/1", "name": name,
           "input": {"shape": [1, 8, 8], "dtype": "uint4"}, "layers": layers}
    return model_from_arrays(doc, arrays)


def digits_res(seed=0, *, channels=CHANNELS, epochs=EPOCHS, log=None):
    """Train, quantize and measure: a :class:`DigitsRes`."""
    x_train, x_test, _, y_test = digits_res_data()
    p = train_digits_res(seed, channels=channels, epochs=epochs, log=log)
    model = quantize_digits_res(p, x_train)
    return DigitsRes(params=p, model=model,
                     float_accuracy=accuracy(float_forward(p, x_test), y_test),
                     numpy_accuracy=accuracy(np.asarray(model.forward(x_test)), y_test))
