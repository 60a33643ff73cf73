"""ONNX / QONNX front end: ``nnaccel import FILE -o MODEL_DIR`` and ``.onnx`` models in the CLI.

Two kinds of files are read into the SPEC model (../shared/SPEC.md section 3):

* **QONNX** (Brevitas' ``export_qonnx``, FINN, hls4ml): ``Quant``, ``BipolarQuant``, ``Trunc``,
  ``MultiThreshold`` around ``Gemm``/``MatMul`` (+ ``Add`` bias) and ``Conv``, ``MaxPool``,
  ``AveragePool``/``GlobalAveragePool`` (``sumpool2d``), residual ``Add`` of quantized tensors
  whose scales are in an integer ratio, ``Concat``, ``BatchNormalization``, ``Relu``,
  ``Sign``, ``Mul``/``Div`` by constants, ``Flatten``/``Reshape`` (a feature map flattened in
  (C, H, W) order). ONNX's zero padding is the quantized level of real zero: ``pad_value``. Weights
  become integers; every quantizer after a layer becomes a SPEC ``threshold`` stage computed in
  exact rational arithmetic, so for every integer input the model gives exactly the quantizer
  levels of the real-number graph. Zero points and signed levels are folded into the next
  layer's bias. Where no exact integer equivalent exists the import stops with exit status 2,
  naming the node and the reason; nothing is approximated.
* **onnxruntime int8** (``quantize_static``; QDQ: ``QuantizeLinear``/``DequantizeLinear``
  around ``MatMul``/``Gemm``/``Conv`` and the pools; QOperator: ``QLinearMatMul``, ``QGemm``,
  ``MatMulInteger``, ``QLinearConv``, ``ConvInteger``, ``QLinearAveragePool``,
  ``QLinearGlobalAveragePool``, ``QLinearConcat``, ``QLinearAdd`` (the scale ratio of its
  branches as integers up to 65535, within the same error bound)):
  each output ``QuantizeLinear`` becomes SPEC ``requant`` with a 31-bit fixed-point
  multiplier. This is the importer's one approximation; :func:`fold.requant_stage` states the
  bound (``Imported.max_error_lsb``): a layer's output differs from exact rounding by at most
  one LSB, and only where the exact value lies within ``eps`` (typically < 1e-3 LSB) of a
  rounding boundary or on an exact tie.

Integer semantics of the imported model: its input is the integer the first quantizer produces
(``q`` of ``Quant``/``QuantizeLinear``, +-1 of ``BipolarQuant``); its output ``y`` maps to the
ONNX graph's output as ``Imported.to_real(y)``.
"""

from pathlib import Path

from .convert import Imported, convert
from .graph import OnnxError, inline_for_runtime, load

__all__ = ["Imported", "OnnxError", "import_onnx", "is_onnx_path", "inline_for_runtime"]


def is_onnx_path(path):
    """True when ``path`` names an ONNX file rather than a model directory."""
    path = Path(path)
    return path.suffix.lower() == ".onnx" and not path.is_dir()


def import_onnx(path, name=None):
    """Read the ONNX/QONNX file ``path`` into a validated :class:`Imported` model."""
    from ..model_io import model_from_json, model_to_json

    path = Path(path)
    imported = convert(load(path), name or path.stem)
    doc, arrays = model_to_json(imported.model)
    imported.model = model_from_json(doc, _Arrays(arrays))  # the checks of SPEC section 5
    return imported


class _Arrays:
    def __init__(self, arrays):
        self.arrays = arrays

    def get(self, layer, fieldname, ref):
        import numpy as np

        return np.asarray(self.arrays[ref] if isinstance(ref, str) else ref, dtype=np.int64)
