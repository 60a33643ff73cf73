"""The compression demo on scikit-learn's digits (the data and split of
:mod:`nnaccel.gen.zoo.digits`).

:func:`compress_digits` trains a float MLP 64-256-128-10 with the zoo's trainer and compresses
it through the pipeline of :mod:`.pipeline`:

* every layer pruned to 10 % density in two rounds (31.6 %, then 10 %), each followed by 10
  epochs of masked retraining;
* weights shared to 16 values per layer (4-bit codes, code 0 is zero), then 10 epochs of
  centroid retraining;
* int8 weights (the codebooks), uint8 activations calibrated on the training split.

Measured on seeds 0..5 (test split, 450 images): float accuracy 98.0..98.4 %, compressed
97.3..98.0 %, 0.2..0.9 point below the float network; 31.4x smaller than the float32 weights
(10.2 stored bits per non-zero weight, relative indices and pointers included, one PE). About
7 s of CPU.

With ``binarize=True`` the same float network is binarized instead (bipolar weights and
activations, batch-norm folded into thresholds, trained for 15 epochs from the float weights
with the straight-through estimator): 96.7..97.1 % on seeds 0..3, 0.9..1.8 points below the
float network (40 epochs were no better), 32x smaller than float32.
"""

import time
from dataclasses import dataclass

import numpy as np

from ..ir import DType, readonly
from ..zoo.digits import load_split
from .floatmodel import Data, FloatLayer, FloatModel
from .pipeline import compress
from .state import CompressConfig
from .train import init_mlp, train_mlp

__all__ = ["DigitsCompression", "compress_digits", "digits_float_model", "HIDDEN"]

#: Hidden widths of the demo's float MLP.
HIDDEN = (256, 128)


@dataclass(frozen=True, eq=False)
class DigitsCompression:
    """The result of :func:`compress_digits`.

    Attributes
    ----------
    model : nnaccel.gen.ir.Model
        The compressed SPEC model.
    float_model : FloatModel
        The trained float network it came from.
    float_accuracy, accuracy : float
        Test accuracies (0..1) of the float network and of ``model``.
    compression : Compression
        The pipeline's result (``.report``, ``.state.history``).
    x_test, y_test : int64 arrays
        The test split (``uint4`` inputs, labels).
    seconds : float
        Wall-clock time of training and compression.
    """

    model: object
    float_model: FloatModel
    float_accuracy: float
    accuracy: float
    compression: object
    x_test: np.ndarray
    y_test: np.ndarray
    seconds: float

    @property
    def report(self):
        return self.compression.report


def digits_float_model(seed=0, *, hidden=HIDDEN, epochs=40, log=None):
    """Train the float MLP ``64 - hidden... - 10`` on the digits training split (Adam, learning
    rate 3e-3 to 1e-4, L2 1e-4, minibatches of 32) and return it with the split as
    ``(FloatModel, Data)``; inputs are ``uint4`` pixels with ``input_scale = 1/15``."""
    x_train, x_test, y_train, y_test = load_split()
    rng = np.random.default_rng(seed)
    sizes = (x_train.shape[1], *hidden, 10)
    p = train_mlp(init_mlp(sizes, rng), x_train / 15.0, y_train, rng, epochs=epochs,
                  batch=32, lr=(3e-3, 1e-4), l2=1e-4, log=log, name="digits float")
    layers = tuple(FloatLayer(f"fc{i}", readonly(p[f"w{i}"], np.float64),
                              readonly(p[f"b{i}"], np.float64)) for i in range(1, len(sizes)))
    fm = FloatModel(name="digits_sparse", input_dtype=DType.parse("uint4"),
                    input_scale=1.0 / 15.0, layers=layers)
    return fm, Data(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def compress_digits(seed=0, *, density=0.1, share_bits=4, weight_bits=8, act_bits=8,
                    prune_steps=2, retrain_epochs=10, hidden=HIDDEN, epochs=40,
                    binarize=False, binarize_epochs=15, trained=None, log=None):
    """Train the digits MLP and compress it (module docstring).

    Parameters
    ----------
    seed : int
        Seeds the float training and the retraining (not the data split).
    density : float
        Final density of every layer.
    share_bits : int or None
        Code bits of weight sharing (None: no sharing).
    weight_bits, act_bits : int
        Integer widths of weights (and codebooks) and of hidden activations.
    prune_steps, retrain_epochs : int
        Rounds of pruning, and retraining epochs after each round and after sharing.
    hidden : tuple of int
    epochs : int
        Float training epochs.
    binarize : bool
        Binarize instead of pruning and sharing (``binarize_epochs`` of training); the model
        is then named ``digits_binarized``.
    trained : (FloatModel, Data), optional
        What :func:`digits_float_model` returned, to compress without training again
        (``seed``, ``hidden`` and ``epochs`` then only seed the retraining).
    log : callable or None

    Returns
    -------
    DigitsCompression
    """
    t0 = time.perf_counter()
    if trained is None:
        trained = digits_float_model(seed, hidden=hidden, epochs=epochs, log=log)
    fm, data = trained
    if binarize:
        fm = fm.but(name="digits_binarized")
        config = CompressConfig(binarize=True, binarize_epochs=binarize_epochs, seed=seed,
                                log=log)
    else:
        config = CompressConfig(prune=(("*", 1.0 - density),), prune_steps=prune_steps,
                                share=(("*", share_bits),) if share_bits else (),
                                weight_bits=weight_bits, act_bits=act_bits,
                                retrain_epochs=retrain_epochs, seed=seed, log=log)
    result = compress(fm, data, config)
    history = result.state.history
    return DigitsCompression(model=result.model, float_model=fm,
                             float_accuracy=history[0].accuracy, accuracy=history[-1].accuracy,
                             compression=result, x_test=readonly(data.x_test),
                             y_test=readonly(data.y_test), seconds=time.perf_counter() - t0)
