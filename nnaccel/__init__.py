"""nnaccel: compressed neural networks to verified accelerators with open tools."""

from .api import Design, Model, from_onnx, from_torch, load, open, program

__all__ = ["Model", "Design", "load", "from_onnx", "from_torch", "open", "program"]
