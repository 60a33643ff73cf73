"""Feature-map and graph operators of the ONNX importer: Conv, pools, Pad, Flatten/Reshape of a
map, residual Add, Concat, and their onnxruntime forms (see :mod:`nnaccel.gen.onnx`).

:class:`MapOps` is a mixin of the converter in :mod:`.convert`: its handlers use the
converter's helpers (``fail``, ``const``, ``per_channel``, the output-stage builders).
"""

import math
from dataclasses import replace
from fractions import Fraction

import numpy as np

from ...hw.common import reference as ref
from ..ir import Concat, DType, DTypeKind, Op, OutputKind, OutputStage, Pool2d
from . import fold
from .state import _ONNX_INT_TYPES, _Const, _Grid, _min_int_dtype, _Pending, _ratio


class MapOps:
    """The converter's handlers for feature maps and joins."""

    # ---------------------------------------------------------------- feature maps
    def _identity(self, x):
        """A quantized tensor requantized: the identity layer (a 1x1 ``sumpool2d`` on a
        feature map, a unit-matrix ``linear`` on a vector) whose output stage the quantizer
        that follows decides; dropped again when that stage changes nothing."""
        shape, s, z = x.shape, x.s, x.z
        if x.src_shape != x.shape:  # element-wise, so on the map before its flatten
            shape, step = x.src_shape, x.src_shape[1] * x.src_shape[2]
            s, z = s[::step], z[::step]
        n = len(s)
        chain = fold.Chain(n)
        chain.then_affine(s, [0] * n)
        base = [-int(v) for v in z]
        if len(shape) == 3:
            return _Pending(None, None, x.dtype, base, chain, self.where, Op.SUMPOOL2D,
                            (x.src,), shape, shape, {"kernel": (1, 1), "stride": (1, 1)}, x)
        return _Pending(np.eye(n, dtype=np.int64), DType(DTypeKind.INT, 2), x.dtype, base,
                        chain, self.where, Op.LINEAR, (x.src,), shape, shape, {}, x)

    def _sum_grid(self, x):
        """The exact integer output of an ``add`` read without a quantizer (Brevitas adds
        quantized branches of one scale and may feed the sum straight to a convolution): an
        identity stage in the smallest intN holding it, real value ``k * (y - z)``."""
        steps = x.chain.steps
        if x.op is not Op.ADD or x.err or len(steps) != 1 or len(set(steps[0].a)) != 1 or any(
                steps[0].c):
            return x
        lo, hi = self._acc_bounds(x, None)
        dtype = _min_int_dtype(np.array([int(min(lo)), int(max(hi))]))
        self._add_layer(x, OutputStage(OutputKind.IDENTITY, dtype), None)
        return self._grid(dtype, list(steps[0].a), [-b for b in x.base])

    def _map(self, x, j=0, what="the input"):
        if isinstance(x, _Pending):
            x = self._sum_grid(x)
        if isinstance(x, _Pending):
            self.fail(f"input {j}", f"{what} is the unquantized output of {x.node}: quantize "
                                    "it first")
        if not isinstance(x, _Grid):
            self.fail(f"input {j}", f"{what} must be a quantized feature map (after Quant, "
                                    "BipolarQuant, MultiThreshold or QuantizeLinear)")
        if len(x.shape) != 3:
            self.fail(f"input {j}", f"{what} is a vector of shape {x.shape}, not a feature map "
                                    "(N, C, H, W)")
        return x

    def _window(self, a, in_hw, kernel, default_stride, dilated=True):
        """stride, dilation and [top, left, bottom, right] padding of a Conv or pool."""
        field_ = "kernel_shape"
        if len(kernel) != 2:
            self.fail(field_, f"{len(kernel)}-d windows: only 2-d ones are supported")
        if min(kernel) < 1:
            self.fail(field_, f"{list(kernel)} is not two positive integers")
        stride = tuple(int(v) for v in a.get("strides", default_stride))
        dilation = tuple(int(v) for v in a.get("dilations", (1, 1)))
        if len(stride) != 2 or min(stride) < 1:
            self.fail("strides", f"{list(stride)} is not two positive integers")
        if len(dilation) != 2 or min(dilation) < 1:
            self.fail("dilations", f"{list(dilation)} is not two positive integers")
        if not dilated and dilation != (1, 1):
            self.fail("dilations", "dilated pooling windows are not supported")
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        pads = [int(v) for v in a.get("pads", (0, 0, 0, 0))]
        if len(pads) != 4 or min(pads) < 0:
            self.fail("pads", f"{pads} is not four non-negative integers")
        if auto == "VALID":
            pads = [0, 0, 0, 0]
        elif auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for d in range(2):
                out = -(-in_hw[d] // stride[d])
                total = max((out - 1) * stride[d] + dilation[d] * (kernel[d] - 1) + 1
                            - in_hw[d], 0)
                small, big = total // 2, total - total // 2
                pads[d], pads[d + 2] = (small, big) if auto == "SAME_UPPER" else (big, small)
        elif auto != "NOTSET":
            self.fail("auto_pad", f"unknown value {auto!r}")
        top, left, bottom, right = pads
        padding = (top, left, bottom, right)
        if int(a.get("ceil_mode", 0)):
            for d, p0, p1 in ((0, top, bottom), (1, left, right)):
                if (in_hw[d] + p0 + p1 - dilation[d] * (kernel[d] - 1) - 1) % stride[d]:
                    self.fail("ceil_mode", "ceil_mode=1 adds a partial window here, which "
                                           "SPEC pooling does not have")
        for d, p0, p1 in ((0, top, bottom), (1, left, right)):
            if in_hw[d] + p0 + p1 - dilation[d] * (kernel[d] - 1) - 1 < 0:
                self.fail("kernel_shape", f"the window {list(kernel)} is larger than the "
                                          f"padded input {list(in_hw)}")
        return stride, dilation, padding

    def _conv_weights(self, c, field_):
        """Integer (M, C/G, KH, KW) weights and per-output-channel scales of a Conv."""
        if c is None:
            self.fail(field_, "the weights are missing")
        if c.ints is None:
            v = c.values
            if not np.all(v == np.round(v)):
                self.fail(field_, "float weights: quantize them (Quant, BipolarQuant or "
                                  "DequantizeLinear on the initializer)")
            c = _Const(v, ints=v.astype(np.int64), scale=np.ones(1), zp=np.zeros(1))
        W = np.asarray(c.ints, dtype=np.int64)
        if W.ndim != 4:
            self.fail(field_, f"weights of shape {W.shape} are not (M, C/G, KH, KW)")
        sc = np.asarray(c.scale, dtype=np.float64)
        if sc.ndim == 1 and sc.size == W.shape[0] and sc.size > 1:
            sc = sc.reshape(-1, 1, 1, 1)
        sc = np.broadcast_to(sc.reshape((1,) * (4 - sc.ndim) + sc.shape) if sc.ndim < 4
                             else sc, W.shape).reshape(W.shape[0], -1)
        if not np.all(sc == sc[:, :1]):
            self.fail(field_, "weight scales vary within an output channel: no integer "
                              "equivalent")
        dtype = c.dtype
        if dtype is None or not dtype.contains(W):
            dtype = _min_int_dtype(W)
        return W, dtype, [fold.fraction(v) for v in sc[:, 0]]

    def _start_conv(self, x, W, wdtype, ws, a):
        x = self._map(x)
        C, H, Wd = x.shape
        M, cg, kh, kw = W.shape
        groups = int(a.get("group", 1))
        ks = tuple(int(v) for v in a.get("kernel_shape", (kh, kw)))
        if ks != (kh, kw):
            self.fail("kernel_shape", f"{list(ks)} differs from the weights' {[kh, kw]}")
        if groups < 1 or C % groups or M % groups:
            self.fail("group", f"{groups} groups do not divide {C} input and {M} output "
                               "channels")
        if cg * groups != C:
            self.fail("input 1", f"weights of shape {W.shape} with {groups} groups do not "
                                 f"read {C} channels")
        if len(set(x.s)) != 1:
            self.fail("input 0", "per-channel activation scales cannot be folded into the "
                                 "next layer")
        before = x.pad[:4] if x.pad else (0, 0, 0, 0)
        padded = (H + before[0] + before[2], Wd + before[1] + before[3])
        stride, dilation, padding = self._window(a, padded, (kh, kw), (1, 1))
        z = np.asarray(x.z, dtype=np.int64)
        pad_value = 0
        if any(padding) or any(before):
            if len(set(x.z)) != 1:
                self.fail("pads", "padding an input whose zero point differs between "
                                  "channels: no single pad_value")
            pad_value = int(x.z[0])
            if any(before) and any(padding) and x.pad[4] != pad_value:
                self.fail("pads", f"the Pad before fills with the level {x.pad[4]}, the Conv's "
                                  f"own padding with {pad_value}: no single pad_value")
            pad_value = x.pad[4] if any(before) else pad_value
            padding = tuple(p + q for p, q in zip(padding, before, strict=True))
            if x.dtype.kind is DTypeKind.BIPOLAR or not x.dtype.contains(np.array(pad_value)):
                self.fail("pads", f"the padded zeros are the level {pad_value}, not a value of "
                                  f"the input dtype {x.dtype} (no pad_value exists)")
        zg = z.reshape(groups, cg)[np.arange(M) // (M // groups)]  # (M, C/G)
        base = [-int(v) for v in np.einsum("mcij,mc->m", W, zg)]
        chain = fold.Chain(M)
        chain.then_affine([x.s[0] * w for w in ws], [0] * M)
        params = {"groups": groups, "stride": stride, "dilation": dilation,
                  "padding": padding, "pad_value": pad_value}
        out = ref.conv2d_out_shape(x.shape, M, (kh, kw), stride, dilation, padding)
        return _Pending(W, wdtype, x.dtype, base, chain, self.where, Op.CONV2D, (x.src,),
                        x.shape, tuple(out), params)

    def op_Conv(self, node, states):
        W, wdtype, ws = self._conv_weights(self.const(node, 1, "the weights"), "input 1")
        pend = self._start_conv(states[0], W, wdtype, ws, self.attrs(node))
        bias = self.const(node, 2, "the bias")
        if bias is not None:
            pend.chain.then_affine([1] * pend.channels,
                                   self.per_channel(bias.values, pend.channels, "input 2"))
        return pend

    def _pool(self, node, x, a, kernel):
        x = self._map(x)
        if len(node.output) > 1 and node.output[1]:
            self.fail("output 1", "the indices output of MaxPool is not supported")
        kernel = tuple(int(v) for v in kernel)
        stride, _, padding = self._window(a, x.shape[1:], kernel, (1, 1), dilated=False)
        return x, kernel, stride, padding

    def op_MaxPool(self, node, states):
        a = self.attrs(node)
        return self._maxpool(node, states[0], a, a.get("kernel_shape", ()))

    def op_GlobalMaxPool(self, node, states):
        x = self._map(states[0])
        return self._maxpool(node, x, {}, x.shape[1:])

    def _maxpool(self, node, x, a, kernel):
        if isinstance(x, _Pending):
            x = self._sum_grid(x)
        if isinstance(x, _Pending):
            self.fail("input 0", f"MaxPool of the unquantized output of {x.node}: "
                                 "quantize before pooling")
        x, kernel, stride, padding = self._pool(node, x, a, kernel)
        # the real value s*(v - z) rises with v (s > 0): the max of the levels is the max
        name = f"pool{len(self.layers) + 1}"
        layer = Pool2d(name=name, op=Op.MAXPOOL2D, in_dtype=x.dtype, in_shape=tuple(x.shape),
                       kernel=kernel, stride=stride, padding=padding, inputs=(x.src,))
        if np.any(layer.window_counts() == 0):
            self.fail("pads", "a pooling window holds only padding")
        self.layers.append(layer)
        return _Grid(x.dtype, x.s, x.z, tuple(layer.out_shape), name, x.shift)

    def _avgpool(self, node, x, a, kernel):
        x, kernel, stride, padding = self._pool(node, x, a, kernel)
        pool = Pool2d(name="p", op=Op.SUMPOOL2D, in_dtype=x.dtype, in_shape=tuple(x.shape),
                      kernel=kernel, stride=stride, padding=padding)
        counts = np.unique(pool.window_counts())
        n = kernel[0] * kernel[1]
        if any(padding) and int(a.get("count_include_pad", 0)):
            if any(x.z):  # padded real zeros are the level z, which SPEC's sum leaves out
                self.fail("count_include_pad", "padding counted in the average of an input "
                                               "with a non-zero zero point: no exact sum pool")
            zs = [0] * len(x.z)
        else:
            if counts.size != 1 or 0 in counts:
                self.fail("pads", f"windows hold {sorted(int(c) for c in counts)} elements: "
                                  "one output stage per channel cannot divide by each")
            n = int(counts[0])
            zs = [n * int(v) for v in x.z]
        C = x.shape[0]
        chain = fold.Chain(C)
        chain.then_affine([v / n for v in x.s], [0] * C)
        return _Pending(None, None, x.dtype, [-v for v in zs], chain, self.where,
                        Op.SUMPOOL2D, (x.src,), x.shape, tuple(pool.out_shape),
                        {"kernel": kernel, "stride": stride, "padding": padding})

    def op_AveragePool(self, node, states):
        a = self.attrs(node)
        return self._avgpool(node, states[0], a, a.get("kernel_shape", ()))

    def op_GlobalAveragePool(self, node, states):
        x = self._map(states[0])
        return self._avgpool(node, x, {}, x.shape[1:])

    def _flatten(self, node, x):
        """A feature map seen as the (C, H, W)-ordered vector SPEC's ``linear`` reads."""
        if len(x.shape) != 3:
            return x
        C, H, W = x.shape
        rep = H * W
        return _Grid(x.dtype, [v for v in x.s for _ in range(rep)],
                     [v for v in x.z for _ in range(rep)], (C * H * W,), x.src, x.shift,
                     x.src_shape)

    def _map_reshape(self, node, states):
        x = states[0]
        if not (isinstance(x, (_Grid, _Pending)) and len(x.shape) == 3):
            return self._shape_only(node, states)
        if isinstance(x, _Pending):
            self.fail("input 0", f"{node.op_type} of the unquantized output of {x.node}: "
                                 "quantize before flattening")
        C, H, W = x.shape
        if node.op_type == "Flatten":
            if int(self.attrs(node).get("axis", 1)) != 1:
                self.fail("axis", "only Flatten with axis 1 keeps the batch dimension")
            return self._flatten(node, x)
        if node.op_type == "Reshape":
            target = self.const(node, 1, "the shape")
            t = [int(v) for v in np.asarray(target.values).reshape(-1)]
            if len(t) >= 1 and t[0] in (1, 0, -1) and len(t) == 2 and t[1] in (-1, C * H * W):
                return self._flatten(node, x)
            if t[0] in (1, 0, -1) and tuple(t[1:]) == (C, H, W):
                return x
            self.fail("input 1", f"reshaping the feature map {[C, H, W]} to {t}: only a "
                                 "flatten in (C, H, W) order is supported")
        if node.op_type in ("Squeeze", "Unsqueeze"):
            self.fail("input 0", f"{node.op_type} of a feature map is not supported")
        return x

    op_Flatten = op_Reshape = op_Squeeze = op_Unsqueeze = _map_reshape

    def op_Pad(self, node, states):
        """A constant Pad of a quantized feature map, taken over by the Conv that reads it."""
        x = self._map(states[0])
        a = self.attrs(node)
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            self.fail("mode", f"{mode!r} padding: only constant padding is supported")
        if len(node.input) > 3 and node.input[3]:
            self.fail("input 3", "axes are not supported: give pads for all four axes")
        pads = self.const(node, 1, "pads")
        p = ([int(v) for v in np.asarray(pads.values).reshape(-1)] if pads is not None
             else [int(v) for v in a.get("pads", ())])
        if len(p) != 8 or min(p) < 0 or p[0] or p[1] or p[4] or p[5]:
            self.fail("input 1", f"pads {p}: only non-negative padding of H and W")
        cv = self.const(node, 2, "constant_value")
        value = Fraction(0) if cv is None else fold.fraction(np.asarray(cv.values).reshape(-1)[0])
        if len(set(x.s)) != 1 or len(set(x.z)) != 1:
            self.fail("input 0", "padding a map whose scale or zero point differs between "
                                 "channels")
        level = value / x.s[0] + x.z[0]
        if level.denominator != 1 or not x.dtype.contains(np.array(int(level))) or (
                x.dtype.kind is DTypeKind.BIPOLAR):
            self.fail("input 2", f"the value {float(value):g} is no level of the input's "
                                 f"{x.dtype} grid")
        if x.pad:
            self.fail("input 0", "two Pads in a row")
        return replace(x, pad=(p[2], p[3], p[6], p[7], int(level)))

    def op_Add(self, node, states):
        x, y = states[0], states[1]
        if isinstance(x, _Grid) and isinstance(y, _Grid):
            return self._join_add([x, y], [None, None])
        return self._elementwise(node, states, np.add)

    def _join_add(self, xs, scales):
        """Residual join of quantized tensors ``xs`` (``scales`` None: their own grids):
        ``sum_i s_i (v_i - z_i) = k * sum_i a_i v_i - k * sum_i a_i z_i`` with integer
        ``a_i = s_i / k`` below 2^16, exact only when the scales are in such a ratio."""
        shape = xs[0].shape
        for j, x in enumerate(xs):
            if x.shape != shape:
                self.fail(f"input {j}", f"shape {x.shape} differs from {shape}")
            if x.src_shape != x.shape:
                self.fail(f"input {j}", "a flattened feature map cannot be added")
            if len(set(x.s)) != 1:
                self.fail(f"input {j}", "per-channel scales cannot be joined")
        s = [x.s[0] for x in xs]
        k = s[0]
        for v in s[1:]:  # the largest k dividing every scale: gcd of the fractions
            k = Fraction(math.gcd(k.numerator, v.numerator),
                         math.lcm(k.denominator, v.denominator))
        ints = [v / k for v in s]
        err = Fraction(0)
        if max(ints) >= 1 << 16 and self.ort and len(xs) == 2:
            # onnxruntime's float scales: integer scales below 2^16 approximate the ratio
            # (like requant's 31-bit multiplier; the bound goes to max_error_lsb): the
            # simplest fraction within float32 precision (0.05 : 0.07 is 5 : 7, so that
            # the ties onnxruntime's float formula meets stay ties), else the closest one
            p, q = _ratio(s[0] / s[1], (1 << 16) - 1)
            k = s[1] / q
            ints = [p, q]
            for a, v, x in zip(ints, s, xs, strict=True):
                span = max(abs(x.dtype.lo - min(x.z)), abs(x.dtype.hi - min(x.z)),
                           abs(x.dtype.lo - max(x.z)), abs(x.dtype.hi - max(x.z)))
                err += abs(a * k - v) * span
        elif max(ints) >= 1 << 16:
            ratio = " : ".join(f"{float(v):.9g}" for v in s)
            self.fail("input 1", f"the inputs' scales {ratio} are not in a ratio of integers "
                                 "below 2^16: no exact integer add (quantize the branches "
                                 "with a shared scale)")
        ints = [int(v) for v in ints]
        n = len(xs[0].s)
        chain = fold.Chain(n)
        chain.then_affine([k] * n, [0] * n)
        base = [-sum(a * x.z[c] for a, x in zip(ints, xs, strict=True)) for c in range(n)]
        return _Pending(None, None, xs[0].dtype, base, chain, self.where, Op.ADD,
                        tuple(x.src for x in xs), shape, shape,
                        {"in_dtypes": tuple(x.dtype for x in xs), "scales": tuple(ints)},
                        err=err)

    def op_Concat(self, node, states):
        a = self.attrs(node)
        xs = [self._map(x, j, f"input {j}") for j, x in enumerate(states)]
        axis = int(a.get("axis", 1))
        if axis not in (1, -3):
            self.fail("axis", f"concatenation along axis {axis}: only channels (axis 1)")
        return self._concat(xs)

    def _concat(self, xs):
        for j, x in enumerate(xs):
            if x.shape[1:] != xs[0].shape[1:]:
                self.fail(f"input {j}", f"H, W {x.shape[1:]} differ from {xs[0].shape[1:]}")
            if x.dtype != xs[0].dtype or x.shift != xs[0].shift:
                self.fail(f"input {j}", f"dtype {x.dtype} differs from {xs[0].dtype}")
        # channels keep their own scales; a layer reading them needs one scale (it refuses
        # otherwise) and a quantizer after the concat requantizes each channel exactly
        name = f"cat{len(self.layers) + 1}"
        layer = Concat(name=name, in_dtype=xs[0].dtype, in_shapes=tuple(x.shape for x in xs),
                       inputs=tuple(x.src for x in xs))
        self.layers.append(layer)
        return _Grid(xs[0].dtype, [v for x in xs for v in x.s], [v for x in xs for v in x.z],
                     tuple(layer.out_shape), name, xs[0].shift)

    # ---------------------------------------------------------------- onnxruntime feature maps
    def _qconv_weights(self, node, jw, js, jz):
        w = self.const(node, jw, "the weights")
        if w is None or w.ints is None:
            self.fail(f"input {jw}", "integer weights expected")
        scale, zp, _ = self._qparams(node, js, jz, "weight")
        ints = np.asarray(w.ints, dtype=np.int64)
        if ints.ndim != 4:
            self.fail(f"input {jw}", f"weights of shape {ints.shape} are not (M, C/G, KH, KW)")
        z = np.asarray(zp, dtype=np.int64).reshape(-1)
        s = np.asarray(scale, dtype=np.float64).reshape(-1)
        ints = ints - (z.reshape(-1, 1, 1, 1) if z.size > 1 else z[0])
        c = _Const(None, ints=ints, scale=s.reshape(-1, 1, 1, 1) if s.size > 1 else s,
                   zp=np.zeros(1), dtype=_ONNX_INT_TYPES.get(np.asarray(w.ints).dtype))
        return self._conv_weights(c, f"input {jw}")

    def op_QLinearConv(self, node, states):
        x = self._grid_from(node, states[0], 1, 2)
        W, wdtype, ws = self._qconv_weights(node, 3, 4, 5)
        pend = self._start_conv(x, W, wdtype, ws, self.attrs(node))
        bias = self.const(node, 8, "B (the int32 bias)")
        if bias is not None:
            b = [int(v) for v in np.asarray(bias.ints if bias.ints is not None
                                            else bias.values).reshape(-1)]
            if len(b) != W.shape[0]:
                self.fail("input 8", f"bias of {len(b)} values for {W.shape[0]} outputs")
            pend.base = [p + q for p, q in zip(pend.base, b, strict=True)]
        scale, zp, zdt = self._qparams(node, 6, 7, "y")
        return self.finish_requant(pend, scale, zp, _ONNX_INT_TYPES[zdt])

    def op_ConvInteger(self, node, states):
        x = states[0]
        if not isinstance(x, _Grid):
            self.fail("input 0", "the input must come from a static QuantizeLinear")
        zp = self.const(node, 2, "x zero point")
        if zp is not None:
            x = _Grid(x.dtype, x.s, [int(v) + x.shift for v in self.per_channel(
                zp.ints if zp.ints is not None else zp.values, len(x.s), "input 2")],
                x.shape, x.src, x.shift, x.src_shape)
        w = self.const(node, 1, "w")
        if w is None or w.ints is None:
            self.fail("input 1", "integer weights expected")
        ints = np.asarray(w.ints, dtype=np.int64)
        zw = self.const(node, 3, "w zero point")
        if zw is not None:
            z = np.asarray(zw.ints if zw.ints is not None else zw.values,
                           dtype=np.int64).reshape(-1)
            ints = ints - (z.reshape(-1, 1, 1, 1) if z.size > 1 else z[0])
        W, wdtype, _ = self._conv_weights(_Const(None, ints=ints, scale=np.ones(1),
                                                 zp=np.zeros(1)), "input 1")
        # the output is the exact integer accumulator: real value 1 per unit
        one = replace(x, s=[Fraction(1)] * len(x.s))
        return self._start_conv(one, W, wdtype, [Fraction(1)] * W.shape[0], self.attrs(node))

    def _ort_pool_out(self, node, pend, js, jz):
        scale, zp, zdt = self._qparams(node, js, jz, "y")
        return self.finish_requant(pend, scale, zp, _ONNX_INT_TYPES[zdt])

    def op_QLinearGlobalAveragePool(self, node, states):
        if int(self.attrs(node).get("channels_last", 0)):
            self.fail("channels_last", "channels-last tensors are not supported")
        x = self._map(self._grid_from(node, states[0], 1, 2))
        pend = self._avgpool(node, x, {}, x.shape[1:])
        return self._ort_pool_out(node, pend, 3, 4)

    def op_QLinearAveragePool(self, node, states):
        a = self.attrs(node)
        if int(a.get("channels_last", 0)):
            self.fail("channels_last", "channels-last tensors are not supported")
        x = self._grid_from(node, states[0], 1, 2)
        pend = self._avgpool(node, x, a, a.get("kernel_shape", ()))
        return self._ort_pool_out(node, pend, 3, 4)

    def op_QLinearAdd(self, node, states):
        """``y = round((sa (a - za) + sb (b - zb)) / sy + zy)``: an ``add`` layer (the inputs
        are already rounded by the layers before, as in onnxruntime) with integer scales when
        ``sa : sb`` is a ratio of integers below 2^16, else refused; its output stage is an
        exact threshold stage of that formula."""
        a = self._grid_from(node, states[0], 1, 2)
        b = self._grid_from(node, states[3], 4, 5)
        pend = self._join_add([a, b], None)
        scale, zp, zdt = self._qparams(node, 6, 7, "y")
        return self.finish_requant(pend, scale, zp, _ONNX_INT_TYPES[zdt], zp_rounded=True)

    def op_QLinearConcat(self, node, states):
        if int(self.attrs(node).get("axis", 1)) not in (1, -3):
            self.fail("axis", "concatenation along another axis than channels")
        ys, yz, zdt = self._qparams(node, 0, 1, "y")
        if zdt not in _ONNX_INT_TYPES:
            self.fail("input 1", f"quantization to {zdt} is not supported")
        xs = []
        for t in range(2, len(node.input), 3):
            x = self._map(self._grid_from(node, states[t], t + 1, t + 2), t, f"input {t}")
            # each input on the output's grid: a no-op when it is there already, else an exact
            # threshold stage of round(s_x / s_y * (x - z_x)) + z_y, as onnxruntime computes
            xs.append(self._requantize(x, ys, yz, _ONNX_INT_TYPES[zdt]))
        return self._concat(xs)
