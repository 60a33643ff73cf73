"""Loading and checking ONNX files: the SPEC section 5 checks that come before any conversion.

Everything a user can get wrong in the file itself (not ONNX, a missing initializer, dynamic or
non-vector shapes) raises :class:`OnnxError`, which names the node (or the graph field) and is
reported by the CLI with exit status 2.
"""

import math
from pathlib import Path

import numpy as np

from ..errors import NnaccelError
from ..safeio import check_elements, max_bytes

__all__ = ["OnnxError", "Graph", "load", "inline_for_runtime", "node_label"]

#: The highest ONNX IR version onnxruntime 1.2x/1.3x accepts.
RUNTIME_IR_VERSION = 10


class OnnxError(NnaccelError):
    """An ONNX file cannot be imported exactly. ``node`` is None for graph-level fields."""

    def __init__(self, node, field, message):
        self.node, self.field, self.message = node, field, message
        where = f"node {node}, field {field!r}" if node is not None else f"field {field!r}"
        super().__init__(f"{where}: {message}")


def node_label(node, index):
    """``'name' (OpType)`` for messages; nodes without a name are numbered."""
    name = node.name or f"#{index}"
    return f"{name!r} ({node.op_type})"


def _onnx():
    try:
        import onnx
    except ImportError:  # pragma: no cover - depends on the installed extras
        raise NnaccelError("reading .onnx files needs the 'onnx' extra: "
                           "pip install 'nnaccel[onnx]'") from None
    return onnx


def load(path):
    """Read an ONNX file (and its external ``.data`` file, if any) into a ``ModelProto``."""
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise OnnxError(None, "file", f"no such file: {path}")
    size, limit = path.stat().st_size, max_bytes()
    if size > limit:
        raise OnnxError(None, "file", f"{path} has {size} bytes, over the limit of {limit} "
                                      "(NNACCEL_MAX_BYTES)")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        # initializer shapes within the limits before their external data is read
        for init in proto.graph.initializer:
            _check_size(None, f"initializer {init.name!r}", init.dims)
        from onnx.external_data_helper import load_external_data_for_model, uses_external_data

        if any(uses_external_data(init) for init in proto.graph.initializer):
            load_external_data_for_model(proto, str(path.parent))
    except OnnxError:
        raise
    except Exception as e:  # protobuf DecodeError, missing external data, ...
        raise OnnxError(None, "file", f"{path} is not an ONNX model: "
                                      f"{type(e).__name__}: {e}".strip()) from None
    if not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise OnnxError(None, "graph", f"{path} is not an ONNX model (no graph nodes)")
    return proto


def inline_for_runtime(src, dst, ir_version=RUNTIME_IR_VERSION):
    """Rewrite ``src`` as one self-contained file ``dst`` (weights inline, no ``.data`` side
    file) with an IR version onnxruntime accepts. torch 2.13 writes IR 14 with external data,
    which onnxruntime <= 1.32 refuses; the graph itself is unchanged."""
    onnx = _onnx()
    proto = onnx.load(str(src))
    proto.ir_version = min(proto.ir_version, ir_version)
    onnx.save_model(proto, str(dst), save_as_external_data=False)
    return Path(dst)


def _check_size(node, field, dims):
    """A tensor's shape within the limits of nnaccel.gen.safeio, before it is allocated."""
    check_elements(dims, lambda message: OnnxError(node, field, message), "the tensor")


class Graph:
    """Index of one ``GraphProto``: constants, producers, consumers, shapes."""

    def __init__(self, proto):
        onnx = _onnx()
        from onnx import numpy_helper

        self.proto = proto
        g = proto.graph
        self.consts = {}
        for init in g.initializer:
            _check_size(None, f"initializer {init.name!r}", init.dims)
            try:
                self.consts[init.name] = np.asarray(numpy_helper.to_array(init))
            except Exception as e:
                raise OnnxError(None, f"initializer {init.name!r}",
                                f"cannot be read: {e}") from None
        for i, node in enumerate(g.node):
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                attr = {a.name: a for a in node.attribute}
                if "value" not in attr:
                    raise OnnxError(node_label(node, i), "value",
                                    "only tensor-valued Constant nodes are supported")
                _check_size(node_label(node, i), "value", attr["value"].t.dims)
                self.consts[node.output[0]] = np.asarray(
                    numpy_helper.to_array(attr["value"].t))
        self.nodes = [(i, n) for i, n in enumerate(g.node)
                      if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx"))]
        self.inputs = [v for v in g.input if v.name not in self.consts]
        self.outputs = list(g.output)
        self.produced = {out for _, n in self.nodes for out in n.output}
        self.onnx = onnx

    def attrs(self, node):
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def check_names(self):
        """Every node input is a graph input, an initializer or another node's output."""
        known = set(self.consts) | {v.name for v in self.inputs} | self.produced | {""}
        for i, node in self.nodes:
            for j, name in enumerate(node.input):
                if name not in known:
                    raise OnnxError(node_label(node, i), f"input {j}",
                                    f"tensor {name!r} is neither an initializer, a graph input "
                                    "nor produced by a node (missing initializer?)")

    def input_shape(self):
        """The single graph input: its name and its shape without the batch dimension,
        ``(K,)`` for a vector or ``(C, H, W)`` for a feature map."""
        if len(self.inputs) != 1:
            names = [v.name for v in self.inputs]
            raise OnnxError(None, "graph.input",
                            f"expected one (non-initializer) input, not {len(names)}: {names}")
        value = self.inputs[0]
        return value.name, self._tensor_shape(value, "graph.input")

    def input_features(self):
        """The single graph input: its name and its number of elements."""
        name, shape = self.input_shape()
        return name, math.prod(shape)

    def output_name(self):
        if len(self.outputs) != 1:
            raise OnnxError(None, "graph.output",
                            f"expected one output, not {len(self.outputs)}")
        self._tensor_shape(self.outputs[0], "graph.output")
        return self.outputs[0].name

    def _tensor_shape(self, value, field):
        field = f"{field} {value.name!r}"
        t = value.type
        if not t.HasField("tensor_type"):
            raise OnnxError(None, field, "is not a tensor")
        if not t.tensor_type.HasField("shape"):
            raise OnnxError(None, field, "has no static shape (dynamic shapes are not supported)")
        dims = []
        for k, d in enumerate(t.tensor_type.shape.dim):
            if d.HasField("dim_value") and d.dim_value > 0:
                dims.append(d.dim_value)
            elif k == 0:  # a symbolic batch dimension is fine
                dims.append(1)
            else:
                sym = d.dim_param or "?"
                raise OnnxError(None, field, f"dimension {k} is dynamic ({sym!r}); only the "
                                             "batch dimension may be")
        _check_size(None, field, dims)
        if len(dims) == 4 and dims[0] == 1:
            return tuple(dims[1:])
        if len(dims) == 1:
            return (dims[0],)
        if len(dims) >= 2 and dims[0] == 1 and sum(d != 1 for d in dims[1:]) <= 1:
            return (math.prod(dims[1:]),)
        raise OnnxError(None, field, f"shape {dims} is neither a vector (batch, K) nor a "
                                     "feature map (batch, C, H, W)")
