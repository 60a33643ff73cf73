"""Parameters of the join units (:mod:`nnaccel.hw.join.engine`), frozen and validated."""

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape

from ..common.dtype import DType
from ..common.outstage import OutputStageParams, StageKind
from ..common.reference import bits_for_range

__all__ = ["AddParams", "ConcatParams"]


def _positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


def _dtypes(name, values):
    values = tuple(values)
    if not values or not all(isinstance(d, DType) for d in values):
        raise TypeError(f"{name} must be a non-empty sequence of DType, not {values!r}")
    return values


@dataclass(frozen=True, kw_only=True)
class AddParams:
    """An ``add`` of ``len(in_dtypes)`` (>= 2) feature maps of ``channels`` x ``pixels``
    elements, ``n`` elements per beat (``n`` divides ``channels``) on every port.

    ``acc = sum_i scales[i] * x_i`` per element, in ``acc_shape`` (worst case over the input
    dtypes, exact), then the SPEC 2.2 output stage ``out_kind`` (identity, requant with
    ``mult``/``shift``/``relu``, or threshold) to ``out_dtype``."""

    in_dtypes: tuple
    scales: tuple
    channels: int
    pixels: int
    n: int
    out_kind: StageKind
    out_dtype: DType
    mult: object = None
    shift: object = None
    relu: bool = False
    thresholds: object = None

    def __post_init__(self):
        object.__setattr__(self, "in_dtypes", _dtypes("in_dtypes", self.in_dtypes))
        if len(self.in_dtypes) < 2:
            raise ValueError(f"an add joins at least 2 inputs, not {len(self.in_dtypes)}")
        scales = tuple(self.scales)
        if len(scales) != len(self.in_dtypes):
            raise ValueError(f"{len(scales)} scales for {len(self.in_dtypes)} inputs")
        for s in scales:
            if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
                raise TypeError(f"scales must be integers, not {s!r}")
        object.__setattr__(self, "scales", tuple(int(s) for s in scales))
        for name in ("channels", "pixels", "n"):
            _positive(name, getattr(self, name))
        if self.channels % self.n:
            raise ValueError(f"n ({self.n}) must divide channels ({self.channels})")
        object.__setattr__(self, "out_kind", StageKind(self.out_kind))
        if not isinstance(self.out_dtype, DType):
            raise TypeError(f"out_dtype must be a DType, not {self.out_dtype!r}")
        _ = self.stage_params  # validates mult, shift and thresholds

    @property
    def k(self):
        """Number of inputs."""
        return len(self.in_dtypes)

    @property
    def acc_range(self):
        """Worst-case ``(lo, hi)`` of the accumulator (inputs independent)."""
        lo = sum(min(s * d.lo, s * d.hi) for s, d in zip(self.scales, self.in_dtypes, strict=True))
        hi = sum(max(s * d.lo, s * d.hi) for s, d in zip(self.scales, self.in_dtypes, strict=True))
        return lo, hi

    @property
    def acc_shape(self):
        return Shape(*bits_for_range(*self.acc_range))

    @property
    def stage_params(self):
        return OutputStageParams.for_dtype(
            self.out_kind, self.out_dtype, pe=self.n, channels=self.channels,
            raw_shape=self.acc_shape, mult=self.mult, shift=self.shift, relu=self.relu,
            thresholds=None if self.thresholds is None else np.asarray(self.thresholds))

    @property
    def beats(self):
        """Beats per image on every port."""
        return self.pixels * self.channels // self.n

    @property
    def expected_cycles(self):
        """Steady-state cycles per image: one beat per cycle."""
        return self.beats


@dataclass(frozen=True, kw_only=True)
class ConcatParams:
    """A ``concat`` of feature maps with ``channels[i]`` channels and ``pixels`` pixels, all of
    ``dtype``, ``n`` elements per beat on every port (``n`` divides every ``channels[i]``).
    An output pixel is input 0's channels, then input 1's, and so on."""

    dtype: DType
    channels: tuple
    pixels: int
    n: int

    def __post_init__(self):
        if not isinstance(self.dtype, DType):
            raise TypeError(f"dtype must be a DType, not {self.dtype!r}")
        chans = tuple(self.channels)
        if len(chans) < 2:
            raise ValueError(f"a concat joins at least 2 inputs, not {len(chans)}")
        for c in chans:
            _positive("channels", c)
        object.__setattr__(self, "channels", chans)
        _positive("pixels", self.pixels)
        _positive("n", self.n)
        if any(c % self.n for c in chans):
            raise ValueError(f"n ({self.n}) must divide every input's channels {chans}")

    @property
    def k(self):
        return len(self.channels)

    @property
    def out_channels(self):
        return sum(self.channels)

    @property
    def beats(self):
        """Output beats per image."""
        return self.pixels * self.out_channels // self.n

    @property
    def expected_cycles(self):
        return self.beats
