"""Walk a checked ONNX graph and build the nnaccel IR (see :mod:`nnaccel.gen.onnx`)."""

import re
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np

from ...hw.common import reference as ref
from ..boundary import FloatIO, InputQuantizer
from ..ir import (
    MODEL_INPUT,
    Add,
    Conv2d,
    DType,
    DTypeKind,
    Layer,
    Model,
    Op,
    OutputKind,
    OutputStage,
    Pool2d,
    readonly,
)
from . import fold
from .graph import Graph, OnnxError, node_label
from .maps import MapOps
from .state import (
    _CONVS,
    _INT32,
    _ONNX_INT_TYPES,
    _Const,
    _Float,
    _Grid,
    _min_int_dtype,
    _Pending,
    _qrange,
)

__all__ = ["Imported", "convert"]

_DOMAINS = {"", "ai.onnx", "qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas",
            "com.microsoft"}


@dataclass
class Imported:
    """An imported model and how its integer outputs map to the ONNX graph's values.

    ``real = output_scale * y + output_offset`` per output channel (float64; shaped
    ``(C, 1, 1)`` when the output is a feature map); the model's integer input ``q`` stands for
    ``input_scale * (q - input_zero_point)`` (the zero point per element of a vector input,
    ``(C, 1, 1)`` for a feature map). ``exact`` is True
    when every output stage is exact; otherwise ``max_error_lsb`` bounds the requant rounding
    error before rounding, in LSBs, per approximated layer (see :func:`fold.requant_stage`).
    """

    model: Model
    output_scale: np.ndarray
    output_offset: np.ndarray
    exact: bool = True
    input_scale: float = 1.0
    input_zero_point: np.ndarray | None = None
    max_error_lsb: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_real(self, y):
        return np.asarray(y, dtype=np.float64) * self.output_scale + self.output_offset


def _identifier(text):
    name = re.sub(r"[^A-Za-z0-9_]", "_", text) or "model"
    return name if re.match(r"[A-Za-z_]", name) else f"m_{name}"


class _Converter(MapOps):
    def __init__(self, graph, name):
        self.g = graph
        self.name = name
        self.layers = []
        self.errors = {}
        self.env = {k: _Const(v.astype(np.float64) if v.dtype.kind == "f" else v.copy())
                    for k, v in graph.consts.items()}
        for _k, c in self.env.items():
            if c.values.dtype.kind in "iub":
                c.ints, c.values = c.values.astype(np.int64), c.values.astype(np.float64)
        self.input_dtype = None
        self.input_quantizer = None
        self.exact = True
        self.ort = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") or
                       n.op_type.startswith("QLinear") for _, n in graph.nodes)

    # ---------------------------------------------------------------- helpers
    def fail(self, field_, message):
        raise OnnxError(self.where, field_, message)

    def need(self, node, j, what):
        """The constant input ``j`` of ``node``, which must be there."""
        state = self.const(node, j, what)
        if state is None:
            self.fail(f"input {j}", f"{what} is missing")
        return state

    def const(self, node, j, what):
        if j >= len(node.input) or node.input[j] == "":
            return None
        state = self.env[node.input[j]]
        if not isinstance(state, _Const):
            self.fail(f"input {j}", f"{what} must be a constant (initializer)")
        return state

    def per_channel(self, values, m, field_):
        arr = np.asarray(values, dtype=np.float64)
        flat = arr.reshape(-1)
        if flat.size == 1:
            flat = np.full(m, flat[0])
        elif flat.size != m or (arr.ndim >= 1 and max(arr.shape) != m):
            self.fail(field_, f"shape {arr.shape} is neither a scalar nor per channel ({m})")
        if not np.all(np.isfinite(flat)):
            self.fail(field_, "values are not finite")
        return [fold.fraction(v) for v in flat]

    def attrs(self, node):
        return self.g.attrs(node)

    def _grid(self, dtype, s, z, shift=0):
        """The quantized output of the stage finished last (a new layer, or the tensor a
        requantization left unchanged)."""
        src, shape, src_shape = self._out
        if len(shape) == 1 and len(src_shape) == 3 and len(s) == src_shape[0]:  # flattened
            step = src_shape[1] * src_shape[2]
            s, z = [v for v in s for _ in range(step)], [v for v in z for _ in range(step)]
        return _Grid(dtype, list(s), list(z), tuple(shape), src, shift, tuple(src_shape))

    # ---------------------------------------------------------------- driver
    def run(self):
        in_name, self.in_shape = self.g.input_shape()
        self.in_features = int(np.prod(self.in_shape))
        out_name = self.g.output_name()
        self.env[in_name] = _Float()
        readers = {}
        for _, node in self.g.nodes:
            for n in set(node.input):
                readers[n] = readers.get(n, 0) + 1
        readers[out_name] = readers.get(out_name, 0) + 1
        for index, node in self.g.nodes:
            self.where = node_label(node, index)
            self.node = node
            states = [self.env.get(n) if n else None for n in node.input]
            for j, (n, st) in enumerate(zip(node.input, states, strict=True)):
                if isinstance(st, _Grid) and st.pad and node.op_type not in _CONVS:
                    self.fail(f"input {j}", "a Pad is supported only right before a "
                                            "convolution (which takes it over)")
                if isinstance(st, _Pending) and readers.get(n, 0) > 1:
                    self.fail(f"input {j}", f"the unquantized output of {st.node} is read by "
                                            "several nodes: quantize it before it forks")
            handler = getattr(self, f"op_{node.op_type}", None)
            if node.domain not in _DOMAINS or handler is None:
                raise OnnxError(self.where, "op_type",
                                f"unsupported op {node.domain + '.' if node.domain else ''}"
                                f"{node.op_type}")
            outs = handler(node, states)
            if not isinstance(outs, tuple):
                outs = (outs,)
            for name, state in zip(node.output, outs, strict=False):
                if name:
                    self.env[name] = state
        self.where = None
        return self.finish(self.env[out_name])

    # ---------------------------------------------------------------- constants
    def _const_quant(self, c, scale, zp, bits, signed, narrow, mode, bipolar=False):
        s = np.asarray(scale, dtype=np.float64)
        if np.any(s <= 0) or not np.all(np.isfinite(s)):
            self.fail("scale", "quantizer scales must be positive and finite")
        x = c.values / s
        if bipolar or (bits == 1 and signed):
            q = np.where(x >= 0, 1, -1).astype(np.int64)
            z = np.zeros_like(s)
            dtype = DType(DTypeKind.BIPOLAR, 1)
        else:
            z = np.asarray(zp, dtype=np.float64)
            if np.any(z != np.round(z)):
                self.fail("zeropt", "a non-integer zero point has no integer equivalent")
            lo, hi = _qrange(signed, narrow, bits)
            rnd = fold.round_mode(mode)
            if rnd is None:
                self.fail("rounding_mode", f"unknown rounding mode {mode!r}")
            q = np.array([rnd(fold.fraction(v)) for v in (x + z).reshape(-1)],
                         dtype=np.int64).reshape(x.shape)
            q = np.clip(q, lo, hi)
            dtype = DType(DTypeKind.INT if signed else DTypeKind.UINT, bits)
        ints = q - np.broadcast_to(z, q.shape).astype(np.int64)
        return _Const((q - z) * s, ints=ints, scale=s, zp=np.zeros(1), dtype=dtype)

    # ---------------------------------------------------------------- QONNX quantizers
    def op_Quant(self, node, states):
        a = self.attrs(node)
        signed, narrow = bool(a.get("signed", 1)), bool(a.get("narrow", 0))
        mode = a.get("rounding_mode", b"ROUND")
        mode = mode.decode() if isinstance(mode, bytes) else mode
        scale = self.need(node, 1, "scale").values
        zp = self.need(node, 2, "zero point").values
        bits_arr = self.need(node, 3, "bit width").values.reshape(-1)
        if bits_arr.size != 1 or bits_arr[0] != int(bits_arr[0]) or not 1 <= bits_arr[0] <= 32:
            self.fail("input 3", f"bit width {bits_arr.tolist()} is not an integer in 1..32")
        bits = int(bits_arr[0])
        x = states[0]
        if isinstance(x, _Const):
            return self._const_quant(x, scale, zp, bits, signed, narrow, mode)
        if bits == 1 and signed:
            return self._bipolar(node, x, scale)
        if not np.all(np.isfinite(scale)) or np.any(np.asarray(scale) <= 0):
            self.fail("input 1", "quantizer scales must be positive and finite")
        zf = np.asarray(zp, dtype=np.float64)
        if np.any(zf != np.round(zf)):
            self.fail("input 2", "a non-integer zero point has no integer equivalent")
        if np.any(np.abs(zf) > 2.0 ** 32):
            self.fail("input 2", "zero points lie within +-2**32 (the levels are <= 32 bits)")
        rnd = fold.round_mode(mode)
        if rnd is None:
            self.fail("rounding_mode", f"unknown rounding mode {mode!r}")
        lo, hi = _qrange(signed, narrow, bits)
        if isinstance(x, _Float):
            return self._quantized_input(scale, zf, DType(
                DTypeKind.INT if signed else DTypeKind.UINT, bits), lo, hi,
                kind="quant", rounding=str(mode).upper())
        pend = self._pending(x, "the input")
        m = pend.channels
        s = self.per_channel(scale, m, "input 1")
        z = [int(v) for v in self.per_channel(zf, m, "input 2")]

        def level(ch, v):
            q = rnd(v / s[ch] + z[ch])
            return min(max(q, lo), hi) - lo

        out = self.finish_thresholds(pend, fold.Quantizer(hi - lo, level,
                                                          lambda ch: (s[ch], z[ch])),
                                     DType(DTypeKind.UINT, bits))
        return self._grid(out, s, [zz - lo for zz in z], shift=-lo)

    def _bipolar(self, node, x, scale):
        if isinstance(x, _Const):
            return self._const_quant(x, scale, 0, 1, True, False, "ROUND", bipolar=True)
        if np.any(np.asarray(scale) <= 0):
            self.fail("input 1", "quantizer scales must be positive")
        if isinstance(x, _Float):
            return self._quantized_input(scale, np.zeros(1), DType(DTypeKind.BIPOLAR, 1), -1, 1,
                                         kind="bipolar")
        pend = self._pending(x, "the input")
        m = pend.channels
        s = self.per_channel(scale, m, "input 1")
        out = self.finish_thresholds(pend, fold.Quantizer(1, lambda ch, v: int(v >= 0)),
                                     DType(DTypeKind.BIPOLAR, 1))
        return self._grid(out, s, [0] * m)

    def op_BipolarQuant(self, node, states):
        return self._bipolar(node, states[0], self.need(node, 1, "scale").values)

    def op_Sign(self, node, states):
        x = states[0]
        if isinstance(x, _Float):
            self.fail("input 0", "Sign on the graph input: Sign(0) = 0 is not bipolar; use "
                                 "BipolarQuant")
        pend = self._pending(x, "the input")
        m = pend.channels
        probe = self._threshold_matrix(pend, fold.Quantizer(1, lambda ch, v: int(v > 0)))
        at_zero = self._threshold_matrix(pend, fold.Quantizer(1, lambda ch, v: int(v >= 0)))
        bad = np.nonzero(probe[:, 0] != at_zero[:, 0])[0]
        if bad.size:
            self.fail("input 0", f"channel {int(bad[0])} reaches exactly 0, where Sign gives 0 "
                                 "(not bipolar); use BipolarQuant")
        out = self.finish_thresholds(pend, fold.Quantizer(1, lambda ch, v: int(v >= 0)),
                                     DType(DTypeKind.BIPOLAR, 1))
        return self._grid(out, [Fraction(1)] * m, [0] * m)

    def op_MultiThreshold(self, node, states):
        a = self.attrs(node)
        layout = a.get("data_layout", b"NCHW")
        layout = layout.decode() if isinstance(layout, bytes) else str(layout)
        if layout not in ("NCHW", "NC"):
            self.fail("data_layout", f"{layout}: only channels-first tensors are supported")
        pend = self._pending(states[0], "the input")
        m = pend.channels
        t = self.need(node, 1, "thresholds").values
        if t.ndim != 2 or t.shape[0] not in (1, m):
            self.fail("input 1", f"thresholds of shape {t.shape} are neither ({m}, L) nor (1, L)")
        if not np.all(np.isfinite(t)):
            self.fail("input 1", "thresholds are not finite")
        tf = [[fold.fraction(v) for v in row] for row in np.broadcast_to(t, (m, t.shape[1]))]
        levels = t.shape[1]
        out_scale = fold.fraction(a.get("out_scale", 1.0))
        out_bias = fold.fraction(a.get("out_bias", 0.0))
        if out_scale <= 0:
            self.fail("out_scale", "must be positive")

        def level(ch, v):
            return sum(v >= x for x in tf[ch])

        if levels == 1 and out_scale == 2 and out_bias == -1:
            dtype = DType(DTypeKind.BIPOLAR, 1)
            self.finish_thresholds(pend, fold.Quantizer(1, level), dtype)
            return self._grid(dtype, [Fraction(1)] * m, [0] * m)
        z = -out_bias / out_scale
        if z.denominator != 1:
            self.fail("out_bias", "out_bias / out_scale is not an integer: no integer grid")
        dtype = DType(DTypeKind.UINT, max(1, levels.bit_length()))
        self.finish_thresholds(pend, fold.Quantizer(levels, level), dtype)
        return self._grid(dtype, [out_scale] * m, [int(z)] * m)

    def op_Trunc(self, node, states):
        """QONNX ``Trunc``: version 1 (inputs x, scale, zero point, input bit width, output bit
        width; no clamp, rescaled by the input scale) and version 2 (x, scale, zero point,
        input bit width, output scale, output bit width; clamped to the output range), both
        as qonnx's executor computes them."""
        a = self.attrs(node)
        x = states[0]
        if isinstance(x, (_Const, _Float)):
            self.fail("input 0", "Trunc is supported after a linear layer only")
        pend = self._pending(x, "the input")
        m = pend.channels
        s = self.per_channel(self.need(node, 1, "scale").values, m, "input 1")
        zp = self.per_channel(self.need(node, 2, "zero point").values, m, "input 2")
        mode = a.get("rounding_mode", b"FLOOR")
        rnd = fold.round_mode(mode.decode() if isinstance(mode, bytes) else mode)
        if rnd is None:
            self.fail("rounding_mode", f"unsupported rounding mode {mode!r}")
        if any(v <= 0 for v in s):
            self.fail("input 1", "the scale must be positive")
        if any(v.denominator != 1 for v in zp):
            self.fail("input 2", "the zero point must be an integer")
        v2 = len(node.input) > 5 and node.input[5] != ""
        if v2:
            out_scale = self.per_channel(self.need(node, 4, "output scale").values, m,
                                         "input 4")
            if any(v <= 0 for v in out_scale):
                self.fail("input 4", "the output scale must be positive")
            out_bits = self._bit_width(node, 5, "output bit width")
            # qonnx: the truncation scale is the power of two nearest (in log2) to out/in
            shift = [Fraction(2) ** int(np.round(np.log2(float(o / i))))
                     for o, i in zip(out_scale, s, strict=True)]
            out_zp = [z / t for z, t in zip(zp, shift, strict=True)]
            if any(z.denominator != 1 for z in out_zp):
                self.fail("input 2", "zero point / truncation scale is not an integer: no "
                                     "integer grid")
            lo, hi = _qrange(bool(a.get("signed", 1)), bool(a.get("narrow", 0)), out_bits)

            def q(ch, v):
                return min(max(rnd(Fraction(round(v / s[ch] + zp[ch])) / shift[ch]), lo), hi)
        else:
            if len(node.input) < 5 or node.input[4] == "":
                self.fail("input 4", "Trunc needs an output bit width")
            in_bits = self._bit_width(node, 3, "input bit width")
            out_bits = self._bit_width(node, 4, "output bit width")
            if out_bits > in_bits:
                self.fail("input 4", f"output bit width {out_bits} exceeds the input bit width "
                                     f"{in_bits}")
            shift = Fraction(2) ** (in_bits - out_bits)
            out_scale, out_zp = s, zp

            def q(ch, v):  # version 1 does not clamp
                return rnd(Fraction(round(v / s[ch] + zp[ch])) / shift)

            bounds = self._value_bounds(pend)
            lo = min(q(ch, v) for ch, (v, _) in enumerate(bounds))
            hi = max(q(ch, v) for ch, (_, v) in enumerate(bounds))
        dtype = DType(DTypeKind.UINT, max(1, (hi - lo).bit_length()))
        dtype = self.finish_thresholds(pend, fold.Quantizer(hi - lo, lambda ch, v: q(ch, v) - lo),
                                       dtype)
        return self._grid(dtype, list(out_scale), [int(z) - lo for z in out_zp], shift=-lo)

    def _bit_width(self, node, j, what):
        c = self.const(node, j, what)
        if c is None:
            self.fail(f"input {j}", f"{what} is missing")
        v = np.asarray(c.values).reshape(-1)
        if v.size != 1 or v[0] != np.round(v[0]) or not 1 <= v[0] <= 64:
            self.fail(f"input {j}", f"{what} must be one integer from 1 to 64")
        return int(v[0])

    def _value_bounds(self, pend):
        """Per channel (smallest, largest) real value the pending chain reaches over every
        legal input."""
        chain, lo, hi, _ = self._shifted(pend)
        return [(chain(m, int(lo[m])), chain(m, int(hi[m]))) for m in range(chain.channels)]

    def _quantized_input(self, scale, zp, dtype, lo, hi, *, kind, rounding="ROUND"):
        if self.input_dtype is not None:
            self.fail("input 0", "the graph input is quantized twice")
        n = self.in_shape[0]  # channels of a feature map, elements of a vector
        s = self.per_channel(scale, n, "input 1")
        if len(set(s)) != 1:
            self.fail("input 1", "a per-element input scale cannot be folded (use one scale)")
        self.input_dtype = dtype
        z = [int(v) for v in self.per_channel(zp, n, "input 2")]
        zp = np.array(z, dtype=np.int64)
        self.input_grid = (float(s[0]), zp.reshape(-1, 1, 1) if len(self.in_shape) == 3 else zp)
        self.input_quantizer = InputQuantizer(
            kind=kind, scale=float(s[0]), zero_point=tuple(z), rounding=rounding,
            lo=None if lo == dtype.lo else int(lo), hi=None if hi == dtype.hi else int(hi))
        return _Grid(dtype, s, z, tuple(self.in_shape), MODEL_INPUT)

    # ---------------------------------------------------------------- linear layers
    def _weights(self, c, trans, field_):
        """Integer (M, K) weights and per-row scale from a constant B of Gemm/MatMul."""
        if c.ints is None:
            v = c.values
            if not np.all(v == np.round(v)):
                self.fail(field_, "float weights: quantize them (Quant, BipolarQuant or "
                                  "DequantizeLinear on the initializer)")
            if np.any(np.abs(v) > 2.0 ** 32):
                self.fail(field_, "integer weights lie within +-2**32")
            c = _Const(v, ints=v.astype(np.int64), scale=np.ones(1), zp=np.zeros(1))
        ints = np.asarray(c.ints)
        if ints.ndim != 2:
            self.fail(field_, f"weights of shape {ints.shape} are not a matrix")
        W = ints if trans else ints.T
        s = np.broadcast_to(np.asarray(c.scale, dtype=np.float64),
                            ints.shape if np.asarray(c.scale).ndim == ints.ndim
                            else ((1,) * (ints.ndim - np.asarray(c.scale).ndim)
                                  + np.asarray(c.scale).shape))
        s = np.broadcast_to(s, ints.shape)
        s = s if trans else s.T
        if not np.all(s == s[:, :1]):
            self.fail(field_, "weight scales vary along the input dimension: no integer "
                              "equivalent")
        dtype = c.dtype
        if dtype is None or not dtype.contains(W):
            dtype = _min_int_dtype(W)
        return W.astype(np.int64), dtype, [fold.fraction(v) for v in s[:, 0]]

    def _start_linear(self, x, W, wdtype, ws, alpha=Fraction(1)):
        if isinstance(x, _Float):
            self.fail("input 0", "the graph input reaches a linear layer without a quantizer "
                                 "(Quant, BipolarQuant, MultiThreshold or QuantizeLinear)")
        if isinstance(x, _Pending):
            self.fail("input 0", "two linear layers without a quantizer between them")
        if not isinstance(x, _Grid):
            self.fail("input 0", "the input must be the quantized activation vector")
        if len(x.shape) == 3:
            self.fail("input 0", f"the input is the feature map {list(x.shape)}: Flatten it "
                                 "first")
        M, K = W.shape
        if K != len(x.s):
            self.fail("input 1", f"weights of shape {W.shape} do not chain: the input has "
                                 f"{len(x.s)} values")
        if len(set(x.s)) != 1:
            self.fail("input 0", "per-channel activation scales cannot be folded into the "
                                 "next layer")
        base = [-int(v) for v in W @ np.asarray(x.z, dtype=np.int64)]
        chain = fold.Chain(M)
        chain.then_affine([alpha * x.s[0] * w for w in ws], [0] * M)
        return _Pending(W, wdtype, x.dtype, base, chain, self.where, Op.LINEAR, (x.src,),
                        x.src_shape, (M,))

    def op_Gemm(self, node, states):
        a = self.attrs(node)
        if a.get("transA", 0):
            self.fail("transA", "transposed activations are not supported")
        alpha = fold.fraction(a.get("alpha", 1.0))
        beta = fold.fraction(a.get("beta", 1.0))
        W, wdtype, ws = self._weights(self.const(node, 1, "B (the weights)"),
                                      bool(a.get("transB", 0)), "input 1")
        pend = self._start_linear(states[0], W, wdtype, ws, alpha)
        bias = self.const(node, 2, "C (the bias)")
        if bias is not None:
            c = self.per_channel(bias.values, W.shape[0], "input 2")
            pend.chain.then_affine([1] * W.shape[0], [beta * v for v in c])
        return pend

    def op_MatMul(self, node, states):
        W, wdtype, ws = self._weights(self.const(node, 1, "B (the weights)"), False, "input 1")
        return self._start_linear(states[0], W, wdtype, ws)

    def _pending(self, x, what):
        if isinstance(x, _Grid):
            return self._identity(x)
        if not isinstance(x, _Pending):
            self.fail("input 0", f"{what} is not the output of a linear layer (supported: "
                                 "quantizers after Gemm/MatMul and element-wise ops)")
        return x

    def _elementwise(self, node, states, combine):
        x, y = states[0], states[1]
        if isinstance(y, _Pending) and isinstance(x, _Const) and node.op_type in ("Add", "Mul"):
            x, y = y, x
        if isinstance(x, _Const) and isinstance(y, _Const):
            return _Const(combine(x.values, y.values))
        if not isinstance(y, _Const):
            self.fail("input 1", f"{node.op_type} needs one constant operand")
        if isinstance(x, _Grid) and node.op_type in ("Mul", "Div"):
            k = y.values.reshape(-1)
            if k.size != 1 or k[0] == 0:
                self.fail("input 1", "only a non-zero scalar can rescale quantized activations")
            f = fold.fraction(k[0])
            return replace(x, s=[v * f if node.op_type == "Mul" else v / f for v in x.s])
        pend = self._pending(x, "the other operand")
        m = pend.channels
        k = self.per_channel(y.values, m, "input 1")
        if node.op_type == "Add":
            pend.chain.then_affine([1] * m, k)
        elif node.op_type == "Sub":
            pend.chain.then_affine([1] * m, [-v for v in k])
        elif node.op_type == "Mul":
            pend.chain.then_affine(k, [0] * m)
        else:
            if any(v == 0 for v in k):
                self.fail("input 1", "division by zero")
            pend.chain.then_affine([1 / v for v in k], [0] * m)
        return pend

    def op_Sub(self, node, states):
        return self._elementwise(node, states, np.subtract)

    def op_Mul(self, node, states):
        return self._elementwise(node, states, np.multiply)

    def op_Div(self, node, states):
        return self._elementwise(node, states, np.divide)

    def op_BatchNormalization(self, node, states):
        pend = self._pending(states[0], "the input")
        m = pend.channels
        a = self.attrs(node)
        eps = fold.fraction(a.get("epsilon", 1e-5))
        gamma, beta, mean, var = (self.per_channel(self.const(node, j, f).values, m, f"input {j}")
                                  for j, f in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")))
        mul = []
        for g, v in zip(gamma, var, strict=True):
            if v + eps <= 0:
                self.fail("input 4", "variance + epsilon is not positive")
            mul.append(g / fold.sqrt_fraction(v + eps))
        pend.chain.then_affine(mul, [b - mu * k for b, mu, k in zip(beta, mean, mul, strict=True)])
        return pend

    def op_Relu(self, node, states):
        pend = self._pending(states[0], "the input")
        pend.chain.then_relu()
        return pend

    def op_Clip(self, node, states):
        pend = self._pending(states[0], "the input")
        bounds = []
        for j, what in ((1, "min"), (2, "max")):
            c = self.const(node, j, what)
            if c is None:
                bounds.append(None)
                continue
            v = np.asarray(c.values, dtype=np.float64).reshape(-1)
            if v.size != 1 or not np.isfinite(v[0]):
                self.fail(f"input {j}", f"{what} must be one finite number")
            bounds.append(fold.fraction(v[0]))
        if bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]:
            self.fail("input 1", "min is above max")
        pend.chain.steps.append(fold.Clip(*bounds))
        return pend

    def _shape_only(self, node, states):
        x = states[0]
        if isinstance(x, _Const) and node.op_type != "Transpose":
            self.fail("input 0", f"{node.op_type} of a constant is not supported")
        return x  # vectors stay vectors: the shapes are checked at the graph's ends


    def op_Transpose(self, node, states):
        x = states[0]
        if not isinstance(x, _Const):
            return self._shape_only(node, states)
        perm = self.attrs(node).get("perm")
        values = np.asarray(x.values)
        perm = list(perm) if perm is not None else list(range(values.ndim))[::-1]
        if x.ints is None:
            return _Const(values.transpose(perm))
        ints = np.asarray(x.ints)
        scale = np.asarray(x.scale, dtype=np.float64)
        scale = np.broadcast_to(scale.reshape((1,) * (ints.ndim - scale.ndim) + scale.shape),
                                ints.shape).transpose(perm)
        return _Const(values.transpose(perm), ints=ints.transpose(perm), scale=scale,
                      zp=x.zp, dtype=x.dtype)

    def op_Identity(self, node, states):
        return states[0]

    op_Dropout = op_Identity

    def op_Cast(self, node, states):
        return states[0]

    # ---------------------------------------------------------------- onnxruntime int8
    def _qparams(self, node, js, jz, what):
        s = self.const(node, js, f"{what} scale")
        z = self.const(node, jz, f"{what} zero point")
        zdt = np.dtype(np.uint8) if z is None else np.asarray(
            self.g.consts.get(node.input[jz], z.ints)).dtype
        return s.values, (np.zeros(1) if z is None else z.ints if z.ints is not None
                          else z.values), zdt

    def op_QuantizeLinear(self, node, states):
        scale, zp, zdt = self._qparams(node, 1, 2, "y")
        if zdt not in _ONNX_INT_TYPES:
            self.fail("input 2", f"quantization to {zdt} is not supported")
        dtype = _ONNX_INT_TYPES[zdt]
        x = states[0]
        if isinstance(x, _Float):
            return self._quantized_input(scale, zp, dtype, dtype.lo, dtype.hi,
                                         kind="quantize_linear")
        if isinstance(x, _Const):
            self.fail("input 0", "quantize the weights offline (initializer + "
                                 "DequantizeLinear)")
        return self._requantize(x, scale, zp, dtype)

    def _requantize(self, x, scale, zp, dtype):
        same_levels = isinstance(x, _Grid) and (
            (x.dtype == dtype and x.shift == 0)
            or (x.dtype == DType(DTypeKind.UINT, dtype.bits) and x.shift == -dtype.lo))
        if same_levels:
            s = self.per_channel(scale, len(x.s), "input 1")
            z = [int(v) + x.shift for v in self.per_channel(zp, len(x.s), "input 2")]
            if s == list(x.s) and z == list(x.z):  # the grid it already is: nothing to do
                return x
        pend = self._pending(x, "the input")
        return self.finish_requant(pend, scale, zp, dtype)

    def op_DequantizeLinear(self, node, states):
        x = states[0]
        scale, zp, _ = self._qparams(node, 1, 2, "x")
        if isinstance(x, _Const):
            if x.ints is None:
                self.fail("input 0", "DequantizeLinear of a float constant")
            axis = self.attrs(node).get("axis", 1)
            s = np.asarray(scale, dtype=np.float64)
            z = np.asarray(zp, dtype=np.int64)
            if s.ndim == 1 and s.size > 1:
                shape = [1] * x.ints.ndim
                shape[axis] = s.size
                s, z = s.reshape(shape), z.reshape(shape)
            ints = x.ints - z
            return _Const(s * ints, ints=ints, scale=s, zp=np.zeros(1),
                          dtype=_min_int_dtype(ints))
        if not isinstance(x, _Grid):
            self.fail("input 0", "DequantizeLinear of a tensor that QuantizeLinear did not "
                                 "produce")
        n = len(x.s)
        return replace(x, s=self.per_channel(scale, n, "input 1"),
                       z=[int(v) + x.shift for v in self.per_channel(zp, n, "input 2")])

    def _grid_from(self, node, x, js, jz):
        if not isinstance(x, _Grid):
            self.fail("input 0", "the input must come from QuantizeLinear")
        scale, zp, _ = self._qparams(node, js, jz, "input")
        n = len(x.s)
        return replace(x, s=self.per_channel(scale, n, f"input {js}"),
                       z=[int(v) + x.shift for v in self.per_channel(zp, n, f"input {jz}")])

    def _qweights(self, node, jw, js, jz, trans):
        w = self.const(node, jw, "the weights")
        scale, zp, _ = self._qparams(node, js, jz, "weight")
        if w.ints is None:
            self.fail(f"input {jw}", "integer weights expected")
        ints = np.asarray(w.ints)
        s = np.asarray(scale, dtype=np.float64).reshape(-1)
        z = np.asarray(zp, dtype=np.int64).reshape(-1)
        col = (1, -1) if not trans else (-1, 1)
        ints = ints - (z.reshape(col) if z.size > 1 else z[0])
        c = _Const(None, ints=ints, scale=s.reshape(col) if s.size > 1 else s, zp=np.zeros(1),
                   dtype=_ONNX_INT_TYPES.get(np.asarray(w.ints).dtype))
        return self._weights(c, trans, f"input {jw}")

    def op_QLinearMatMul(self, node, states):
        x = self._grid_from(node, states[0], 1, 2)
        W, wdtype, ws = self._qweights(node, 3, 4, 5, False)
        pend = self._start_linear(x, W, wdtype, ws)
        scale, zp, zdt = self._qparams(node, 6, 7, "y")
        return self.finish_requant(pend, scale, zp, _ONNX_INT_TYPES[zdt])

    def op_QGemm(self, node, states):
        a = self.attrs(node)
        if a.get("transA", 0):
            self.fail("transA", "transposed activations are not supported")
        x = self._grid_from(node, states[0], 1, 2)
        W, wdtype, ws = self._qweights(node, 3, 4, 5, bool(a.get("transB", 0)))
        alpha = fold.fraction(a.get("alpha", 1.0))
        pend = self._start_linear(x, W, wdtype, ws, alpha)
        bias = self.const(node, 6, "C (the int32 bias)")
        if bias is not None:
            b = [int(v) for v in np.asarray(bias.ints if bias.ints is not None
                                            else bias.values).reshape(-1)]
            if len(b) != W.shape[0]:
                self.fail("input 6", f"bias of {len(b)} values for {W.shape[0]} outputs")
            pend.base = [p + q for p, q in zip(pend.base, b, strict=True)]
        if len(node.input) > 7 and node.input[7]:
            scale, zp, zdt = self._qparams(node, 7, 8, "y")
            return self.finish_requant(pend, scale, zp, _ONNX_INT_TYPES[zdt])
        return pend

    def op_MatMulInteger(self, node, states):
        x = states[0]
        if not isinstance(x, _Grid):
            self.fail("input 0", "the input must come from a static QuantizeLinear")
        zp = self.const(node, 2, "A zero point")
        if zp is not None:
            x = replace(x, z=[int(v) + x.shift for v in self.per_channel(
                zp.ints if zp.ints is not None else zp.values, len(x.s), "input 2")])
        w = self.const(node, 1, "B")
        zb = self.const(node, 3, "B zero point")
        ints = np.asarray(w.ints)
        if zb is not None:
            ints = ints - np.asarray(zb.ints).reshape(1, -1)
        W, wdtype, _ = self._weights(_Const(None, ints=ints, scale=np.ones(1), zp=np.zeros(1)),
                                     False, "input 1")
        # the output is the exact integer accumulator: real value 1 per unit
        return self._start_linear(replace(x, s=[Fraction(1)] * len(x.s)), W, wdtype,
                                  [Fraction(1)] * W.shape[0])

    def op_DynamicQuantizeLinear(self, node, states):
        self.fail("op_type", "dynamic quantization (scale computed at run time) has no static "
                             "integer equivalent; quantize with quantize_static")

    # ---------------------------------------------------------------- output stages
    def _flip_rows(self, pend, rows):
        if not any(rows):
            return
        if pend.weight is None:
            m = int(np.nonzero(rows)[0][0])
            raise OnnxError(pend.node, "output", f"channel {m} falls as the accumulator rises "
                            f"(a negative scale after {pend.op.value}); no weights to negate")
        W = pend.weight.copy()
        for m in np.nonzero(rows)[0]:
            neg = -W[m]
            if not pend.wdtype.contains(neg):
                self.fail("input 0", f"channel {int(m)} has a negative scale and its weights "
                                     f"cannot be negated within {pend.wdtype}")
            W[m] = neg
            pend.base[m] = -pend.base[m]
        pend.weight = W

    def _shifted(self, pend):
        """The chain over the accumulator without its bias, rows with a falling chain
        negated: ``(chain, acc_lo, acc_hi, flip)``, ``chain`` non-decreasing per row."""
        flip = [pend.chain.direction(m) < 0 for m in range(pend.channels)]
        if pend.weight is None:
            self._flip_rows(pend, flip)  # refuses
            W = None
        else:
            rows = np.asarray(flip).reshape((-1,) + (1,) * (pend.weight.ndim - 1))
            W = np.where(rows, -pend.weight, pend.weight)
        lo, hi = self._acc_bounds(pend, W)
        base = [-b if f else b for b, f in zip(pend.base, flip, strict=True)]
        return _Shifted(pend.chain, base, flip), lo, hi, flip

    def _acc_bounds(self, pend, W, bias=None):
        """Per output channel worst-case accumulator of ``pend`` with weights ``W``."""
        lo_in, hi_in = pend.in_dtype.lo, pend.in_dtype.hi
        if pend.op is Op.LINEAR:
            return ref.acc_bounds(W, lo_in, hi_in, bias)
        p = pend.params
        if pend.op is Op.CONV2D:
            return ref.conv2d_acc_bounds(W, pend.in_shape, lo_in, hi_in, bias,
                                         stride=p["stride"], dilation=p["dilation"],
                                         padding=p["padding"], pad_value=p["pad_value"])
        if pend.op is Op.SUMPOOL2D:
            layer = Pool2d(name="p", op=Op.SUMPOOL2D, in_dtype=pend.in_dtype,
                           in_shape=tuple(pend.in_shape), **p)
        else:
            layer = Add(name="a", in_shape=tuple(pend.in_shape), output=None, **p)
        return layer.acc_bounds()

    def _threshold_matrix(self, pend, quantizer):
        chain, lo, hi, flip = self._shifted(pend)

        def key(m):  # what chain(m, .) depends on
            steps = tuple((st.a[m], st.c[m]) if isinstance(st, fold.Affine) else st
                          for st in pend.chain.steps)
            return steps, chain.base[m], chain.flip[m]

        keys = [key(m) for m in range(pend.channels)]
        return fold.thresholds(chain, quantizer, lo, hi, [False] * len(flip), keys)

    def finish_thresholds(self, pend, quantizer, dtype):
        flip = [pend.chain.direction(m) < 0 for m in range(pend.channels)]
        T = self._threshold_matrix(pend, quantizer)
        self._flip_rows(pend, flip)
        if dtype.kind is DTypeKind.UINT:
            dtype = DType(DTypeKind.UINT, max(1, quantizer.levels.bit_length()))
        stage = OutputStage(OutputKind.THRESHOLD, dtype, thresholds=readonly(T.astype(object)
                                                                             .astype(np.int64)))
        grid = pend.of
        if grid is not None and dtype == grid.dtype and not any(flip):
            v = np.arange(dtype.lo, dtype.hi + 1)
            v = v[(v != 0) | (dtype.kind is not DTypeKind.BIPOLAR)]
            acc = np.repeat(v[:, None], pend.channels, axis=1)
            if np.array_equal(np.asarray(stage.apply(acc), dtype=np.int64), acc):
                self._out = (grid.src, grid.shape, grid.src_shape)  # a no-op: no layer
                return dtype
        self._add_layer(pend, stage, None)
        return dtype

    def finish_requant(self, pend, scale, zp, dtype, zp_rounded=False):
        """onnxruntime's ``q = clamp(round(real / scale) + zp)`` (``round(real / scale + zp)``
        with ``zp_rounded``, as its QLinearAdd computes) as the layer's output stage."""
        m = pend.channels
        if pend.weight is None:  # no bias to hold the zero points: an exact threshold stage
            s = self.per_channel(scale, 1, "input 1")[0]
            z = [int(v) for v in self.per_channel(zp, 1, "input 2")][0]
            if s <= 0:
                self.fail("input 1", "the output scale must be positive")
            lo, hi = dtype.lo, dtype.hi

            def level(ch, v):  # round half to even, as onnxruntime
                q = round(v / s + z) if zp_rounded else round(v / s) + z
                return min(max(q, lo), hi) - lo

            out = self.finish_thresholds(pend, fold.Quantizer(hi - lo, level, lambda ch: 0),
                                         DType(DTypeKind.UINT, dtype.bits))
            if pend.err:
                self.exact = False
                self.errors[self._out[0]] = float(pend.err / s)
            return self._grid(out, [s] * m, [z - lo] * m, shift=-lo)
        affine = pend.chain.affine_only()
        relu = False
        if affine is None:
            steps = pend.chain.steps
            sv = self.per_channel(scale, 1, "input 1")[0]
            zv = int(self.per_channel(zp, 1, "input 2")[0])
            top = sv * (dtype.hi - zv)  # the largest real value the quantizer gives
            if (len(steps) == 2 and isinstance(steps[0], fold.Affine)
                    and isinstance(steps[1], fold.Clip) and steps[1].lo == 0
                    and (steps[1].hi is None or steps[1].hi >= top)):
                steps = [steps[0], fold.Relu()]  # ReLU6 whose 6 the range already clamps
            if (len(steps) == 2 and isinstance(steps[0], fold.Affine)
                    and isinstance(steps[1], fold.Relu)):
                affine, relu = (list(steps[0].a), list(steps[0].c)), True
            else:
                self.fail("input 0", "only scale, bias and ReLU (or a Clip from 0 to at least "
                                     "the output range) may come between the layer and "
                                     "QuantizeLinear")
        a, c = affine
        s = self.per_channel(scale, 1, "input 1")[0]
        z = [int(v) for v in self.per_channel(zp, 1, "input 2")][0]
        if relu and z != dtype.lo and z != 0:
            self.fail("input 2", f"ReLU with zero point {z}: SPEC requant clamps at 0 only")
        if s <= 0:
            self.fail("input 1", "the output scale must be positive")
        flip = [v < 0 for v in a]
        self._flip_rows(pend, flip)
        a = [-v if f else v for v, f in zip(a, flip, strict=True)]
        lo, hi = self._acc_bounds(pend, pend.weight, np.asarray(pend.base, dtype=np.int64))
        absmax = [max(abs(int(x)), abs(int(y))) for x, y in zip(lo, hi, strict=True)]
        # q - z rounds as q does (z is an integer): with z at the bottom of the range the
        # layer outputs the levels u = q - z in uintN, and no fraction z/M is rounded into the
        # bias (the requant stage's one avoidable error)
        shift = -z if z == dtype.lo and z != 0 else 0
        r = fold.requant_stage(a, c, s, z + shift, absmax)
        if isinstance(r, tuple):
            self.fail("input 1", f"channel {r[0]}: {r[1]}")
        bias = [b + extra for b, extra in zip(pend.base, r.bias, strict=True)]
        out = DType(DTypeKind.UINT, dtype.bits) if shift else dtype
        stage = OutputStage(OutputKind.REQUANT, out, mult=readonly(r.mult),
                            shift=readonly(r.shift), relu=relu and z == 0)
        self.exact = False
        self._add_layer(pend, stage, bias, eps=r.eps)
        return self._grid(out, [s] * m, [z + shift] * m, shift=shift)

    def _add_layer(self, pend, stage, bias, eps=None):
        prefix = {Op.LINEAR: "fc", Op.CONV2D: "conv", Op.SUMPOOL2D: "pool", Op.ADD: "add"}
        name = f"{prefix[pend.op]}{len(self.layers) + 1}"
        if bias is not None:
            if any(not _INT32[0] <= b <= _INT32[1] for b in bias):
                raise OnnxError(pend.node, "bias", "the folded integer bias does not fit int32")
            bias = readonly(bias) if any(bias) else None
        if pend.op is not Op.LINEAR and pend.op is not Op.CONV2D and bias is not None:
            raise OnnxError(pend.node, "bias", "a constant offset cannot be folded into this "
                                               "output stage (the op has no bias)")
        p, inputs = pend.params, tuple(pend.inputs)
        if pend.op is Op.LINEAR:
            layer = Layer(name=name, op=Op.LINEAR, in_dtype=pend.in_dtype,
                          weight=readonly(pend.weight), weight_dtype=pend.wdtype, output=stage,
                          bias=bias, inputs=inputs, in_shape=tuple(pend.in_shape))
        elif pend.op is Op.CONV2D:
            layer = Conv2d(name=name, in_dtype=pend.in_dtype, in_shape=tuple(pend.in_shape),
                           weight=readonly(pend.weight), weight_dtype=pend.wdtype,
                           output=stage, bias=bias, inputs=inputs, **p)
        elif pend.op is Op.SUMPOOL2D:
            layer = Pool2d(name=name, op=Op.SUMPOOL2D, in_dtype=pend.in_dtype,
                           in_shape=tuple(pend.in_shape), output=stage, inputs=inputs, **p)
        else:
            layer = Add(name=name, in_shape=tuple(pend.in_shape), output=stage, inputs=inputs,
                        **p)
        self.layers.append(layer)
        out = tuple(layer.out_shape)
        flat = pend.of is not None and pend.of.src_shape != pend.of.shape
        self._out = (name, (int(np.prod(out)),) if flat else out, out)
        if eps is not None:
            self.errors[name] = eps

    def finish(self, state):
        if isinstance(state, _Pending):
            affine = state.chain.affine_only()
            if affine is None:
                raise OnnxError(None, "graph.output", "the output is a ReLU of float values: "
                                "end the graph with a quantizer")
            a, c = affine
            base = list(state.base)
            offset = []
            for m in range(len(a)):
                k = c[m] / a[m] if a[m] != 0 else None
                if state.weight is None:  # no bias: the zero points stay in the offset
                    offset.append(float(a[m] * base[m] + c[m]))
                elif k is not None and k.denominator == 1:
                    base[m] += int(k)
                    offset.append(0.0)
                else:
                    offset.append(float(c[m]))
            state.base = base
            self._add_layer(state, OutputStage(OutputKind.IDENTITY, DType(DTypeKind.INT, 32)),
                            base if state.weight is not None else None)
            scale, offset = np.array([float(v) for v in a]), np.array(offset)
        elif isinstance(state, _Grid):
            if state.pad:
                raise OnnxError(None, "graph.output", "the output is padded by a Pad: no "
                                                      "convolution takes the padding over")
            if not self.layers:
                raise OnnxError(None, "graph.output", "the graph has no linear layer")
            scale = np.array([float(v) for v in state.s])
            offset = -scale * np.array(state.z, dtype=np.float64)
        else:
            raise OnnxError(None, "graph.output", "the output does not depend on the input "
                            "through a linear layer")
        if self.input_dtype is None:
            raise OnnxError(None, "graph.input", "the input is not quantized")
        float_io = FloatIO(input=self.input_quantizer,
                           output_scale=tuple(float(v) for v in scale.reshape(-1)),
                           output_offset=tuple(float(v) for v in offset.reshape(-1)))
        model = Model(name=self.name, input_shape=tuple(self.in_shape),
                      input_dtype=self.input_dtype, layers=tuple(self.layers),
                      float_io=float_io)
        if len(model.out_shape) == 3:  # per channel of a feature map
            scale, offset = scale.reshape(-1, 1, 1), offset.reshape(-1, 1, 1)
        return Imported(model, scale, offset, exact=self.exact, input_scale=self.input_grid[0],
                        input_zero_point=self.input_grid[1], max_error_lsb=self.errors)


class _Shifted:
    """``chain(m, sign * (acc + base))``: thresholds over the accumulator without its bias."""

    def __init__(self, chain, base, flip):
        self.chain, self.base, self.flip = chain, base, flip
        self.channels = chain.channels

    def __call__(self, m, acc):
        v = acc + self.base[m]
        return self.chain(m, -v if self.flip[m] else v)


def convert(proto, name):
    """Convert a loaded ``ModelProto`` into :class:`Imported` (raises OnnxError).

    A file that breaks ONNX's own rules (a damaged or hand-edited file: names that are not
    text, outputs nothing produces, a required input missing) may trip the converter in ways it
    does not anticipate; such a failure is reported as bad input with what ONNX's checker says
    of the file. On a file the checker accepts, the failure stays what it is: a bug."""
    try:
        graph = Graph(proto)
        graph.check_names()
        return _Converter(graph, _identifier(name)).run()
    except OnnxError:
        raise
    except Exception:
        problem = malformed(proto)
        if problem is None:
            raise
        raise OnnxError(None, "graph", f"malformed ONNX file: {problem}") from None


def malformed(proto):
    """What is structurally wrong with ``proto`` by ONNX's checker (and the text fields every
    ONNX reader needs), or None when nothing is."""
    import onnx

    for node in proto.graph.node:
        for text in (node.op_type, node.domain, node.name, *node.input, *node.output):
            if not isinstance(text, str):
                return f"node {node.name!r}: a name or op type that is not UTF-8 text"
        for attr in node.attribute:
            try:
                attr.s.decode()
                [s.decode() for s in attr.strings]
            except UnicodeDecodeError:
                return f"node {node.name!r}: attribute {attr.name!r} is not UTF-8 text"
    known = {i.name for i in proto.graph.input} | {i.name for i in proto.graph.initializer}
    known |= {o for node in proto.graph.node for o in node.output}
    for out in proto.graph.output:
        if out.name not in known:
            return f"graph output {out.name!r} is produced by no node"
    try:
        onnx.checker.check_model(proto)
    except Exception as e:  # ValidationError, and the checker's own failures on damaged protos
        return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None
