"""Pass: check every mapped layer against the numpy reference before any hardware is built.

Each engine's numpy model (its adapter's ``model_acc``: the MVU's folding, padding, raw sums and
affine hand-over, fed by the window unit's patches for a convolution; the sparse engine's
encoded matrix decoded back, its raw sums plus bias; the systolic engine's GEMM plus bias; the
pooling units' window maxima and sums) must reproduce the SPEC accumulator of the *model's*
layer on random and worst-case inputs, both in stream order (HWC for feature maps). So a
``linear`` layer on a feature map, whose plan weight follows the HWC stream, is checked against
SPEC's (C, H, W) flatten. A mismatch is a compiler bug and stops generation.
"""

import numpy as np

from ...hw.common import reference as ref
from ...hw.common.dtype import DTypeKind
from ..engines import adapter_for
from ..engines.base import to_stream
from ..ir import Op

__all__ = ["check_plan", "spec_acc"]


def spec_acc(layer, x):
    """SPEC's accumulator of the model's ``layer`` on the batch ``x`` (B, *in_shape), in
    stream order ``(B, elements)`` (max pooling: the maxima)."""
    if layer.op is Op.LINEAR:
        return ref.linear_acc(layer.weight, np.asarray(x).reshape(len(x), -1), layer.bias)
    if layer.op is Op.CONV2D:
        acc = ref.conv2d_acc(layer.weight, x, layer.bias, groups=layer.groups,
                             stride=layer.stride, dilation=layer.dilation,
                             padding=layer.padding, pad_value=layer.pad_value)
    else:
        kind = "max" if layer.op is Op.MAXPOOL2D else "sum"
        acc = ref.pool2d(x, kind, layer.kernel, layer.stride, layer.padding)
    return to_stream(acc, layer.out_shape)


def _random(rng, dt, shape):
    """Random tensors of ``dtype`` and ``shape`` (B first), the first two at its extremes."""
    if dt.kind is DTypeKind.BIPOLAR:
        return rng.choice([-1, 1], size=shape)
    x = rng.integers(dt.lo, dt.hi, size=shape, endpoint=True)
    x[0] = dt.lo
    x[1] = dt.hi
    return x


def _join_acc(model, layer, rng, vectors):
    """(engine model, SPEC) of a join on random inputs, stream order."""
    xs = [_random(rng, model.dtype_of(src), (vectors, *model.shape_of(src)))
          for src in layer.inputs]
    if layer.op is Op.ADD:
        want = to_stream(ref.add_acc(xs, layer.scales), layer.out_shape)
    else:
        want = to_stream(ref.concat(xs), layer.out_shape)
    return [to_stream(x, x.shape[1:]) for x in xs], want


def check_plan(plan, vectors=8, seed=0):
    rng = np.random.default_rng(seed)
    for lp in plan.layers:
        layer = plan.model.layer(lp.layer.name)
        if layer.op in (Op.ADD, Op.CONCAT):
            xs, want = _join_acc(plan.model, layer, rng, vectors)
            acc = adapter_for(lp.engine).model_acc(lp, xs)
        else:
            x = _random(rng, layer.in_dtype, (vectors, *layer.in_shape))
            want = spec_acc(layer, x)
            acc = adapter_for(lp.engine).model_acc(lp, to_stream(x, layer.in_shape))
        if np.asarray(acc).tolist() != np.asarray(want).tolist():
            raise AssertionError(f"layer {layer.name!r}: the {lp.engine.value} model disagrees "
                                 "with SPEC 2.1")
    return plan
