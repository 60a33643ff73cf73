"""What one multiply-accumulate lane computes, shared by the engines that have lanes, and the
raw-sum properties their Params share."""

import enum
import numbers

from amaranth import Mux, Shape, Signal

from .arith import tree_sum
from .dtype import DTypeKind
from .reference import bits_for_range

__all__ = ["LaneKind", "lane_kind_for", "positive_int", "RawSumMixin", "logic_product",
           "logic_product_stages"]


class LaneKind(enum.Enum):
    """What one lane computes."""

    #: bipolar weights and bipolar inputs: XNOR, then popcount (acc = 2*popcount - K + bias)
    XNOR = "xnor"
    #: bipolar weights, integer inputs: add or subtract the input
    ADDSUB_W = "addsub_w"
    #: integer weights, bipolar inputs: add or subtract the weight
    ADDSUB_X = "addsub_x"
    #: integer weights and inputs: a multiplier (DSP block where it fits)
    MUL = "mul"


def lane_kind_for(weight_dtype, in_dtype):
    """The :class:`LaneKind` for weights of ``weight_dtype`` on inputs of ``in_dtype``."""
    wb = weight_dtype.kind is DTypeKind.BIPOLAR
    xb = in_dtype.kind is DTypeKind.BIPOLAR
    if wb and xb:
        return LaneKind.XNOR
    if wb:
        return LaneKind.ADDSUB_W
    if xb:
        return LaneKind.ADDSUB_X
    return LaneKind.MUL


def positive_int(name, value):
    """``value`` as an ``int``; TypeError unless it is an integer (numpy's included, not a
    bool), ValueError unless it is positive."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


class RawSumMixin:
    """``raw_shape`` and ``acc_width`` of Params that carry ``raw_lo``/``raw_hi`` (the range of
    a raw sum) and ``output`` (an :class:`~.outstage.OutputStageParams`)."""

    @property
    def raw_shape(self):
        """Shape of a raw sum (None without ``raw_lo``/``raw_hi``)."""
        if self.raw_lo is None:
            return None
        return Shape(*bits_for_range(self.raw_lo, self.raw_hi))

    @property
    def acc_width(self):
        """Width of the SPEC accumulator the output stage forms from a raw sum (None without
        an output stage)."""
        return None if self.output is None else self.output.acc_shape.width


def logic_product_stages(stages=1):
    """The cycles :func:`logic_product` adds with ``stages`` (its latency before the caller's
    register): ``stages`` itself, checked to be a positive integer. Callers that line other
    lanes up with logic products (the MVU's DSP lanes, the systolic array's cells) delay those
    by this count."""
    return positive_int("stages", stages)


def logic_product(m, a, b, name, *, stages=1):
    """``a * b`` in look-up tables and carry chains, not a DSP block, ``stages`` cycles late
    (:func:`logic_product_stages`).

    The partial products of ``b``'s bits (``a`` or 0, shifted; the last one negative when
    ``b`` is signed) are summed as a balanced adder tree; the first ``stages`` levels each end
    in registers of module ``m``'s ``sync`` domain (past the tree's last level, the sum is
    registered again), the levels after them are combinational: the value returned is their
    sum, to be registered by the caller. With the default ``stages=1`` (an int8 ``b``: pairs
    registered, then two adder levels to the caller's register), ``stages=2`` leaves one adder
    level before the caller's register, ``stages=3`` none. The value may be wider than
    ``a * b`` but holds the same value."""
    stages = logic_product_stages(stages)
    width = len(b)
    values = []
    for i in range(width):
        part = Mux(b[i], a, 0) << i
        values.append(-part if b.shape().signed and i == width - 1 else part)
    for level in range(stages):
        if len(values) > 1:
            paired = [values[n] + values[n + 1] for n in range(0, len(values) - 1, 2)]
            values = paired + values[len(paired) * 2:]
        regs = [Signal(v.shape(), name=f"{name}_s{k}" if level == 0 else
                       f"{name}_l{level}_{k}") for k, v in enumerate(values)]
        m.d.sync += [r.eq(v) for r, v in zip(regs, values, strict=True)]
        values = regs
    return tree_sum(values)
