"""What one multiply-accumulate lane computes, shared by the engines that have lanes, and the
raw-sum properties their Params share."""

import enum
import numbers

from amaranth import Mux, Shape, Signal

from .arith import tree_sum
from .dtype import DTypeKind
from .reference import bits_for_range

__all__ = ["LaneKind", "lane_kind_for", "positive_int", "RawSumMixin", "logic_product"]


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


def logic_product(m, a, b, name):
    """``a * b`` in look-up tables and carry chains, not a DSP block, one cycle late: the
    partial products of ``b``'s bits (the last one negative when ``b`` is signed) are summed in
    pairs into registers of module ``m``'s ``sync`` domain; the value returned is the sum of
    those registers (combinational, to be registered by the caller); it may be wider than
    ``a * b`` but holds the same value."""
    width = len(b)
    parts = []
    for i in range(width):
        part = Mux(b[i], a, 0) << i
        parts.append(-part if b.shape().signed and i == width - 1 else part)
    pairs = []
    for n in range(0, width, 2):
        pair = parts[n] + parts[n + 1] if n + 1 < width else parts[n]
        reg = Signal(pair.shape(), name=f"{name}_s{n // 2}")
        m.d.sync += reg.eq(pair)
        pairs.append(reg)
    return tree_sum(pairs)
