"""A small CNN on scikit-learn's 8x8 digits, trained in numpy and compressed to int8 and to a
binarized network (issue 10's demo model).

Data: the fixed split and the ``uint4`` pixels of :mod:`nnaccel.gen.zoo.digits` (1347 training
and 450 test images), as feature maps ``(1, 8, 8)``; the float network sees ``x / 15``.

Float network (:func:`digits_cnn_float`)::

    c1  conv2d 1 -> C1, 3x3, padding 1, ReLU        (C1, 8, 8)
    c2  conv2d C1 -> C2, 3x3, padding 1, ReLU       (C2, 8, 8)
    p1  maxpool2d 2x2                               (C2, 4, 4)
    fc  linear C2*4*4 -> 10 (reads (C, H, W) flattened)

trained with :func:`nnaccel.gen.compress.nettrain.train_net` (He initialisation, Adam, learning
rate 3e-3 to 1e-4, L2 1e-4, minibatches of 32; deterministic for a seed on a machine).

Compressed forms (:func:`digits_cnn`), both through :func:`nnaccel.gen.compress.compress`:

* ``"int8"``: int8 weights per output channel, int32 biases, uint8 activations calibrated on
  the training split (``requant`` stages), int32 logits;
* ``"binarized"``: bipolar weights and activations (the first convolution keeps the uint4
  pixels, FINN-style), batch-norm + sign folded into bipolar thresholds, max pooling on bipolar
  maps (an OR), the second convolution padding its bipolar input with -1; trained from the
  float weights with the straight-through estimator for :data:`BINARIZE_EPOCHS` epochs.

Measured (test split, 450 images; channels 32 and 32, 12 float epochs, 20 binarized epochs):

====  =======  =======  =========
seed  float    int8     binarized
====  =======  =======  =========
0     98.22 %  98.22 %  96.67 %
1     98.00 %  98.00 %  96.89 %
2     98.22 %  98.22 %  96.67 %
3     98.00 %  98.00 %  96.67 %
====  =======  =======  =========

so int8 equals float and binarized is 1.1..1.6 points below (issue 10's targets: 1 and 3
points). Float training takes about 10 s of one core, binarized training about 15 s (twice
that on a loaded machine). Channels 16 and 32 trained faster but binarized up to 3.3 points
below float (seed 2: 98.00 % vs 94.67 %; 95.56 % with 40 epochs).

Deep Compression works on the same float CNN through the same pipeline: every layer pruned to
25 % density, weights shared to 16 values (4-bit codes), 3 epochs of retraining after each,
int8: 97.78 % on seed 0 (float 98.22 %), 12.7 times smaller than the float32 weights, 9 s.
"""

import functools
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..compress.floatmodel import (
    Data,
    FloatLayer,
    FloatModel,
    FloatOp,
    FloatPool,
    write_float_model,
)
from ..compress.nettrain import init_net, net_with_params, train_net
from ..compress.pipeline import compress
from ..compress.state import CompressConfig
from ..compress.train import accuracy
from ..ir import DType, readonly
from ..model_io import write_model
from .digits import load_split

__all__ = ["CHANNELS", "EPOCHS", "BINARIZE_EPOCHS", "KINDS", "DigitsCnn", "digits_cnn_data",
           "digits_cnn_structure", "digits_cnn_float", "digits_cnn", "write_digits_cnn_float",
           "write_digits_cnns"]

#: Output channels of the two convolutions.
CHANNELS = (32, 32)
#: Float training epochs.
EPOCHS = 12
#: Epochs of binarized training.
BINARIZE_EPOCHS = 20
#: What :func:`digits_cnn` builds.
KINDS = ("int8", "binarized")

_SHAPE = (1, 8, 8)


@dataclass(frozen=True, eq=False)
class DigitsCnn:
    """A compressed digits CNN.

    Attributes
    ----------
    kind : str
        ``"int8"`` or ``"binarized"``.
    model : nnaccel.gen.ir.Model
        The SPEC model: input ``uint4`` ``(1, 8, 8)``, output 10 int32 logits.
    float_model : FloatModel
    float_accuracy, accuracy : float
        Test accuracies (0..1) of the float network and of ``model`` (numpy reference).
    x_test, y_test : int64 arrays
        The test split, ``(450, 1, 8, 8)`` uint4 pixels and labels.
    compression : nnaccel.gen.compress.Compression
        The pipeline's result (report, history).
    seconds : float
        Wall-clock time of the compression (float training excluded).
    """

    kind: str
    model: object
    float_model: FloatModel
    float_accuracy: float
    accuracy: float
    x_test: np.ndarray
    y_test: np.ndarray
    compression: object
    seconds: float

    @property
    def int_accuracy(self):
        """``accuracy``, under the name :class:`~nnaccel.gen.zoo.digits.DigitsResult` uses."""
        return self.accuracy


def digits_cnn_data():
    """The digits split as :class:`~nnaccel.gen.compress.Data` with ``(N, 1, 8, 8)`` inputs."""
    x_train, x_test, y_train, y_test = load_split()
    return Data(x_train=readonly(x_train.reshape(-1, *_SHAPE)), y_train=readonly(y_train),
                x_test=readonly(x_test.reshape(-1, *_SHAPE)), y_test=readonly(y_test))


def digits_cnn_structure(channels=CHANNELS):
    """The float network's structure with zero weights (module docstring)."""
    c1, c2 = channels
    conv = {"op": FloatOp.CONV2D, "padding": (1, 1, 1, 1)}
    layers = (FloatLayer("c1", np.zeros((c1, 1, 3, 3)), np.zeros(c1), **conv),
              FloatLayer("c2", np.zeros((c2, c1, 3, 3)), np.zeros(c2), **conv),
              FloatPool("p1", FloatOp.MAXPOOL2D, (2, 2), (2, 2)),
              FloatLayer("fc", np.zeros((10, c2 * 16)), np.zeros(10)))
    return FloatModel(name="digits_cnn", input_dtype=DType.parse("uint4"),
                      input_scale=1.0 / 15.0, layers=layers, input_shape=_SHAPE)


@functools.lru_cache(maxsize=4)
def digits_cnn_float(seed=0, *, channels=CHANNELS, epochs=EPOCHS):
    """Train the float CNN; returns ``(FloatModel, Data)`` (cached per arguments: the models
    are immutable)."""
    data = digits_cnn_data()
    fm = digits_cnn_structure(channels)
    rng = np.random.default_rng(seed)
    params = train_net(fm, init_net(fm, rng), data.x_train * fm.input_scale, data.y_train, rng,
                       epochs=epochs, batch=32, lr=(3e-3, 1e-4), l2=1e-4,
                       name="digits cnn float")
    return net_with_params(fm, params), data


def digits_cnn(kind, seed=0, *, channels=CHANNELS, epochs=EPOCHS,
               binarize_epochs=BINARIZE_EPOCHS, log=None):
    """The digits CNN compressed to ``kind`` (``"int8"`` or ``"binarized"``).

    Returns
    -------
    DigitsCnn

    Raises
    ------
    ValueError
        An unknown ``kind``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    fm, data = digits_cnn_float(seed, channels=channels, epochs=epochs)
    t0 = time.perf_counter()
    if kind == "int8":
        fm = fm.but(name="digits_cnn_int8")
        config = CompressConfig(weight_bits=8, act_bits=8, seed=seed, log=log)
    else:
        fm = fm.but(name="digits_cnn_binarized")
        config = CompressConfig(binarize=True, binarize_epochs=binarize_epochs, seed=seed,
                                log=log)
    result = compress(fm, data, config)
    return DigitsCnn(kind=kind, model=result.model, float_model=fm,
                     float_accuracy=accuracy(fm.forward(data.x_test), data.y_test),
                     accuracy=accuracy(result.model.forward(data.x_test), data.y_test),
                     x_test=data.x_test, y_test=data.y_test, compression=result,
                     seconds=time.perf_counter() - t0)


def write_digits_cnn_float(path, seed=0, *, channels=CHANNELS, epochs=EPOCHS):
    """Write the trained float CNN and the digits split (training split as ``calib_*``, test
    split as ``test_*``) as a float model file for ``nnaccel compress``; returns the path."""
    fm, data = digits_cnn_float(seed, channels=channels, epochs=epochs)
    return write_float_model(path, fm, data)


def write_digits_cnns(outdir, seed=0, log=None):
    """Build both compressed CNNs and write them as SPEC model directories
    ``outdir/digits_cnn_int8`` and ``outdir/digits_cnn_binarized`` (atomically); returns
    ``{name: DigitsCnn}``."""
    outdir = Path(outdir)
    results = {}
    for kind in KINDS:
        result = digits_cnn(kind, seed, log=log)
        path = write_model(result.model, outdir / result.model.name)
        if log is not None:
            log(f"{result.model.name}: float {result.float_accuracy:.4f}, numpy "
                f"{result.accuracy:.4f}, written to {path}")
        results[result.model.name] = result
    return results
