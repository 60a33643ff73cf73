"""Parameters of the pooling units (SPEC 2.1b ``maxpool2d``, ``sumpool2d``, global pooling),
shared by the hardware, its reference and the generator."""

import enum
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape

from ..common.dtype import DType, DTypeKind
from ..common.lanes import positive_int
from ..common.outstage import OutputStageParams, StageKind
from ..common.reference import bits_for_range
from ..window.params import WindowParams, check_dtype, check_padding, check_pair

__all__ = ["PoolKind", "PoolParams"]


class PoolKind(enum.Enum):
    """What a window reduces to."""

    #: the largest element (``maxpool2d``); bipolar: +1 if any element is +1
    MAX = "max"
    #: the exact sum (``sumpool2d``), then an output stage
    SUM = "sum"



def _window_counts(size, kernel, stride, pad_before, out):
    """Input (not padded) elements of each window along one axis."""
    start = np.arange(out) * stride - pad_before
    return np.minimum(start + kernel, size) - np.maximum(start, 0)


@dataclass(frozen=True, kw_only=True)
class PoolParams:
    """One pooling layer on a feature map ``(C, H, W)`` streamed in HWC order.

    Parameters
    ----------
    kind : PoolKind or str
        ``"max"`` or ``"sum"``.
    channels, height, width : int
        The input map.
    kernel : int or (int, int)
        ``(KH, KW)``; ``(H, W)`` without padding is global pooling.
    stride : int or (int, int), optional
        Default: the kernel.
    padding : int or (top, left, bottom, right)
        Default 0. Padded positions are never the maximum and add nothing to a sum; every
        window must hold at least one input element.
    dtype : DType or str
        Input element type; a max pool's output has the same type.
    n : int
        Elements per beat, in and out; it divides ``C``.
    out_kind : StageKind or str
        Sum only: ``"identity"`` (default), ``"requant"`` or ``"threshold"`` (SPEC 2.2).
    out_dtype : DType or str
        Sum only: the output type (default ``int32`` for ``identity``). An ``identity`` output
        must hold every sum (worst case over the dtype); otherwise ValueError.
    mult, shift, relu : optional
        Sum ``requant`` only: per-channel or scalar multipliers and shifts; ``relu`` raises the
        output's lower limit to 0.
    thresholds : (C, L) or (1, L) ints, optional
        Sum ``threshold`` only.

    Raises
    ------
    TypeError, ValueError
        A field has the wrong type or value.
    """

    kind: PoolKind
    channels: int
    height: int
    width: int
    kernel: tuple
    stride: tuple = None
    padding: tuple = (0, 0, 0, 0)
    dtype: DType
    n: int
    out_kind: StageKind = None
    out_dtype: DType = None
    mult: object = None
    shift: object = None
    relu: bool = False
    thresholds: object = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        try:
            put("kind", PoolKind(self.kind))
        except ValueError:
            raise ValueError(f"kind must be 'max' or 'sum', not {self.kind!r}") from None
        for name in ("channels", "height", "width", "n"):
            put(name, positive_int(name, getattr(self, name)))
        put("kernel", check_pair("kernel", self.kernel))
        put("stride", self.kernel if self.stride is None else check_pair("stride", self.stride))
        put("padding", check_padding(self.padding))
        put("dtype", check_dtype("dtype", self.dtype))
        if self.channels % self.n:
            raise ValueError(f"n ({self.n}) must divide channels ({self.channels})")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(f"kernel {self.kernel} is larger than the padded input")
        if self.min_count < 1:
            raise ValueError("every pooling window must hold at least one input element; "
                             f"padding {self.padding} is too large for kernel {self.kernel}")
        if self.kind is PoolKind.MAX:
            for name in ("out_kind", "out_dtype", "mult", "shift", "thresholds"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} does not apply to a max pool (no output stage)")
            if self.relu:
                raise ValueError("relu does not apply to a max pool (no output stage)")
            return
        try:
            put("out_kind", StageKind(StageKind.IDENTITY if self.out_kind is None
                                      else self.out_kind))
        except ValueError:
            raise ValueError(f"out_kind must be identity, requant or threshold, not "
                             f"{self.out_kind!r}") from None
        out_dtype = "int32" if self.out_dtype is None and \
            self.out_kind is StageKind.IDENTITY else self.out_dtype
        if out_dtype is None:
            raise ValueError(f"out_dtype is required for a {self.out_kind.value} output")
        put("out_dtype", check_dtype("out_dtype", out_dtype))
        if not isinstance(self.relu, bool):
            raise TypeError(f"relu must be a bool, not {self.relu!r}")
        if self.out_kind is StageKind.IDENTITY:
            lo, hi = self.acc_range
            if not self.out_dtype.contains([lo, hi]):
                raise ValueError(f"out_dtype {self.out_dtype} cannot hold every sum "
                                 f"({lo}..{hi}); use a wider dtype or requant")
        _ = self.stage_params  # validates mult, shift and thresholds

    # --- geometry -----------------------------------------------------------------------------

    @property
    def is_global(self):
        """True when one window covers the whole unpadded map (a dedicated unit, no line
        buffer)."""
        return self.kernel == (self.height, self.width) and self.padding == (0, 0, 0, 0)

    @property
    def out_height(self):
        top, _, bottom, _ = self.padding
        return (self.height + top + bottom - self.kernel[0]) // self.stride[0] + 1

    @property
    def out_width(self):
        _, left, _, right = self.padding
        return (self.width + left + right - self.kernel[1]) // self.stride[1] + 1

    @property
    def counts(self):
        """Input elements in each window: an ``(OH, OW)`` array."""
        rows = _window_counts(self.height, self.kernel[0], self.stride[0], self.padding[0],
                              self.out_height)
        cols = _window_counts(self.width, self.kernel[1], self.stride[1], self.padding[1],
                              self.out_width)
        return np.outer(rows, cols)

    @property
    def min_count(self):
        return int(self.counts.min())

    @property
    def max_count(self):
        return int(self.counts.max())

    @property
    def element_dtype(self):
        """Type of the elements the windows carry: the input type, except that a bipolar sum
        pool works on ``int2`` values -1/+1 (its padding is 0, not a bipolar value)."""
        if self.kind is PoolKind.SUM and self.dtype.kind is DTypeKind.BIPOLAR:
            return DType.parse("int2")
        return self.dtype

    @property
    def pad_value(self):
        """What the window unit pads with: the dtype's minimum for max (never larger than an
        input element, and every window holds one), 0 for sum."""
        return self.dtype.lo if self.kind is PoolKind.MAX else 0

    @property
    def window_params(self):
        """The :class:`WindowParams` of the window unit feeding a (non-global) pool."""
        return WindowParams(channels=self.channels, height=self.height, width=self.width,
                            kernel=self.kernel, stride=self.stride, padding=self.padding,
                            pad_value=self.pad_value, dtype=self.element_dtype, n_in=self.n,
                            n_out=self.n)

    @property
    def positions(self):
        """Beats of ``n`` elements reduced into each output beat, per channel word: the
        window's ``KH*KW`` taps, or ``H*W`` pixels for global pooling."""
        return self.height * self.width if self.is_global else self.kernel[0] * self.kernel[1]

    # --- arithmetic ---------------------------------------------------------------------------

    @property
    def acc_range(self):
        """Worst-case ``(lo, hi)`` of a sum (and of every partial sum) over the input dtype:
        ``max_count * min(lo, 0) .. max_count * max(hi, 0)``."""
        return (self.max_count * min(self.dtype.lo, 0), self.max_count * max(self.dtype.hi, 0))

    @property
    def acc_width(self):
        """Bits of the sum accumulator (max pool: the element width)."""
        if self.kind is PoolKind.MAX:
            return self.dtype.shape.width
        return bits_for_range(*self.acc_range)[0]

    @property
    def acc_shape(self):
        """Amaranth shape of the accumulator (max pool: the element shape)."""
        if self.kind is PoolKind.MAX:
            return self.dtype.shape
        return Shape(*bits_for_range(*self.acc_range))

    @property
    def stage_params(self):
        """The :class:`OutputStageParams` after a sum (None for max)."""
        if self.kind is PoolKind.MAX:
            return None
        return OutputStageParams.for_dtype(
            self.out_kind, self.out_dtype, pe=self.n, channels=self.channels,
            raw_shape=self.acc_shape, mult=self.mult, shift=self.shift, relu=self.relu,
            thresholds=None if self.thresholds is None else np.asarray(self.thresholds))

    @property
    def out_elem_dtype(self):
        """Type of the output elements."""
        return self.dtype if self.kind is PoolKind.MAX else self.out_dtype

    # --- beats and cycles ---------------------------------------------------------------------

    @property
    def channel_words(self):
        return self.channels // self.n

    @property
    def in_beats(self):
        return self.height * self.width * self.channel_words

    @property
    def out_beats(self):
        return self.out_height * self.out_width * self.channel_words

    @property
    def expected_cycles(self):
        """Steady-state cycles per image, images back to back, no stalls: the window unit's
        (the reduction takes one patch beat per cycle), or ``in_beats`` for global pooling."""
        if self.is_global:
            return self.in_beats
        return self.window_params.expected_cycles
