"""Compression of float networks into SPEC models (Deep Compression style, and binarization).

``nnaccel compress FLOAT_MODEL -o MODEL_DIR`` reads a float MLP or CNN (:mod:`.floatmodel`, an
``.npz``; ``conv2d``, max and average pooling and dense layers), runs the passes of
:mod:`.pipeline` in order, and writes a SPEC model directory with a ``report.json``
(:mod:`.report`):

* :mod:`.batchnorm`: batch-norm folded into the linear layers;
* :mod:`.prune`: magnitude pruning per layer, by target density or Deep Compression's
  ``quality * std`` threshold, optionally balanced across interleaved PEs;
* :mod:`.share`: k-means weight sharing, linear initialisation, code 0 reserved for zero;
* :mod:`.retrain`: masked and shared-centroid retraining (:mod:`.train`);
* :mod:`.quantize`: integer weights (per channel or per layer) and activations calibrated on
  sample inputs, ``requant`` output stages with ``mult``/``shift``;
* :mod:`.binarize`: bipolar weights and activations, batch-norm folded into thresholds
  (:mod:`.binarize_net` for networks with convolutions and pooling).

MLPs train with :mod:`.train`; networks with convolutions with :mod:`.nettrain` on the numpy
forward and backward passes of :mod:`.nn`.

:func:`nnaccel.gen.compress.digits.compress_digits` is the demo on scikit-learn's digits,
:func:`nnaccel.gen.zoo.digits_cnn.digits_cnn` its CNN.
"""

from .floatmodel import (
    BatchNorm,
    Data,
    FloatLayer,
    FloatModel,
    read_float_model,
    write_float_model,
)
from .pipeline import PASSES, Compression, compress, plan, write_compressed
from .report import format_report
from .state import CompressConfig, Samples, State

__all__ = ["BatchNorm", "Data", "FloatLayer", "FloatModel", "read_float_model",
           "write_float_model", "PASSES", "Compression", "compress", "plan", "write_compressed",
           "format_report", "CompressConfig", "Samples", "State"]
