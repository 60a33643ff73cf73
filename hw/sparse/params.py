"""Parameters of the EIE-like sparse engine, shared by the hardware, its model and the generator."""

from dataclasses import dataclass, replace

import numpy as np
from amaranth.hdl import Shape

from ..common.arith import cdiv
from ..common.dtype import DType, DTypeKind
from ..common.lanes import RawSumMixin
from ..common.outstage import OutputStageParams
from ..common.reference import bits_for_range
from ..common.stream import check_positive
from .reference import cycle_model, raw_bounds

__all__ = ["SparseParams"]


@dataclass(frozen=True, kw_only=True)
class SparseParams(RawSumMixin):
    """Shape and sizing of one sparse engine (SPEC engine ``sparse``).

    An (M, K) layer runs on ``pe`` processing elements (PEs); row ``i`` belongs to PE
    ``i mod pe`` (see :mod:`nnaccel.hw.sparse.format`). The input vector arrives in beats of
    ``in_beat`` elements; zero activations are skipped and each non-zero one is broadcast to every
    PE, which queues up to ``queue_depth`` of them. The output leaves in ``rows_per_pe`` beats of
    ``pe`` elements (beat ``r`` carries rows ``r*pe .. r*pe + pe - 1``).

    Parameters
    ----------
    in_features, out_features : int
        K and M.
    pe : int
        Number of PEs (multipliers), at most M.
    queue_depth : int
        Activation queue depth per PE (D).
    in_beat : int
        Input elements per beat, at most K.
    in_dtype, weight_dtype : DType
        Input and weight dtypes (SPEC section 1); bipolar weights are not sparse.
    index_bits : int
        Width of the relative row index of the sparse format (1..16).
    raw_lo, raw_hi : int, optional
        Worst-case range of a raw sum (:func:`.reference.raw_bounds`) over the layer's weights
        and every legal input; 0 lies inside. None: a :class:`~.engine.SparseCore` alone, whose
        raw width follows from its matrix.
    output : OutputStageParams, optional
        The output stage (``pe`` lanes, ``out_features`` channels, ``raw_shape ==``
        :attr:`raw_shape`, scale 1, offset the bias). :meth:`for_layer` builds all of it.
    out_lanes : int, optional
        Lanes of the output stage as built (:attr:`stage`), dividing ``pe`` (default ``pe``):
        fewer lanes cost fewer multipliers and LUTs, and the read-out takes a row every
        :attr:`out_step` cycles instead of every cycle. The engine's output beats stay ``pe``
        wide.
    """

    in_features: int
    out_features: int
    pe: int
    queue_depth: int
    in_beat: int
    in_dtype: DType
    weight_dtype: DType
    index_bits: int = 4
    raw_lo: int = None
    raw_hi: int = None
    output: OutputStageParams = None
    out_lanes: int = None

    def __post_init__(self):
        if self.out_lanes is None:
            object.__setattr__(self, "out_lanes", self.pe)
        check_positive("out_lanes", self.out_lanes)
        if self.pe % self.out_lanes:
            raise ValueError(f"out_lanes ({self.out_lanes}) must divide pe ({self.pe})")
        for name in ("in_features", "out_features", "pe", "queue_depth", "in_beat",
                     "index_bits"):
            check_positive(name, getattr(self, name))
        if self.pe > self.out_features:
            raise ValueError(f"pe ({self.pe}) must not exceed out_features "
                             f"({self.out_features})")
        if self.in_beat > self.in_features:
            raise ValueError(f"in_beat ({self.in_beat}) must not exceed in_features "
                             f"({self.in_features})")
        if self.index_bits > 16:
            raise ValueError(f"index_bits must be at most 16, not {self.index_bits}")
        for name in ("in_dtype", "weight_dtype"):
            if not isinstance(getattr(self, name), DType):
                raise TypeError(f"{name} must be a DType, not {getattr(self, name)!r}")
        if self.weight_dtype.kind is DTypeKind.BIPOLAR:
            raise ValueError("weight_dtype must not be bipolar: bipolar weights have no zeros")
        if (self.raw_lo is None) != (self.raw_hi is None):
            raise ValueError("raw_lo and raw_hi go together: give both or neither")
        if self.raw_lo is not None and not self.raw_lo <= 0 <= self.raw_hi:
            raise ValueError(f"raw_lo..raw_hi must contain 0, not {self.raw_lo}..{self.raw_hi}")
        if self.output is not None:
            out = self.output
            if not isinstance(out, OutputStageParams):
                raise TypeError(f"output must be an OutputStageParams, not {out!r}")
            if self.raw_lo is None:
                raise ValueError("output needs raw_lo and raw_hi (use SparseParams.for_layer)")
            if (out.pe, out.channels, out.raw_shape, out.scale) != (
                    self.pe, self.out_features, self.raw_shape, 1):
                raise ValueError(f"output must have pe {self.pe}, channels {self.out_features}, "
                                 f"raw_shape {self.raw_shape!r} and scale 1, not {out.pe}, "
                                 f"{out.channels}, {out.raw_shape!r} and {out.scale}")

    @classmethod
    def for_layer(cls, *, weight, pe, queue_depth, in_beat, in_dtype, weight_dtype,
                  index_bits=4, bias=None, output_kind="identity", out_dtype=None, mult=None,
                  shift=None, relu=False, thresholds=None, out_lanes=None):
        """Parameters of the layer with weights ``weight`` (M, K) and ``bias`` (M,) on ``pe``
        PEs, its output stage of kind ``output_kind`` to ``out_dtype`` (a DType, default
        ``int32``) with ``mult``, ``shift``, ``relu`` or ``thresholds`` (SPEC 2.2), built
        ``out_lanes`` wide (default ``pe``)."""
        w = np.asarray(weight)
        if w.ndim != 2 or 0 in w.shape or w.dtype.kind not in "iuO":
            raise ValueError(f"weight must be a non-empty 2-D integer array, not shape "
                             f"{w.shape} of {w.dtype}")
        m, k = w.shape
        bare = cls(in_features=k, out_features=m, pe=pe, queue_depth=queue_depth,
                   in_beat=in_beat, in_dtype=in_dtype, weight_dtype=weight_dtype,
                   index_bits=index_bits, out_lanes=out_lanes)
        lo, hi = raw_bounds(w, in_dtype.lo, in_dtype.hi)
        out_dtype = DType.parse("int32") if out_dtype is None else out_dtype
        if not isinstance(out_dtype, DType):
            raise TypeError(f"out_dtype must be a DType, not {out_dtype!r}")
        offset = None if bias is None else [int(v) for v in bias]
        output = OutputStageParams.for_dtype(
            output_kind, out_dtype, pe=pe, channels=m, raw_shape=Shape(*bits_for_range(lo, hi)),
            offset=offset, mult=mult, shift=shift, relu=relu, thresholds=thresholds)
        return replace(bare, raw_lo=lo, raw_hi=hi, output=output)

    @property
    def acc_width(self):
        """Width of the SPEC accumulator ``raw + bias`` (None without an output stage)."""
        if self.output is None:
            return None
        off = self.output.offset
        return bits_for_range(self.raw_lo + min(off), self.raw_hi + max(off))[0]

    @property
    def out_step(self):
        """Cycles per row read out: ``pe / out_lanes`` (the output stage takes a row's
        ``pe`` sums ``out_lanes`` at a time)."""
        return self.pe // self.out_lanes

    @property
    def stage(self):
        """The output stage as built: :attr:`output` itself, or for ``out_lanes < pe`` the
        same stage ``out_lanes`` wide over every row the read-out gives (``rows_per_pe * pe``
        channels, the padding rows with channel 0's parameters)."""
        out = self.output
        if out is None or self.out_lanes == self.pe:
            return out
        channels = self.rows_per_pe * self.pe
        pad = channels - out.channels

        def padded(values):
            return None if values is None else tuple(values) + (values[0],) * pad

        return replace(out, pe=self.out_lanes, channels=channels, offset=padded(out.offset),
                       mult=padded(out.mult), shift=padded(out.shift),
                       thresholds=padded(out.thresholds))

    @property
    def out_latency(self):
        """Cycles from the collector's read of a vector's last row to its last output beat
        being valid: the PE's command register, the read port's register, the banks' output
        register, the PE's read-out register and the collector's FIFO (its write, its output
        register), the row's further ``out_step - 1`` slices, the output stage (the
        pipelined one: a requantising multiply split into partial products behind
        registers; behind a skid buffer when narrower than the PEs), then the output's skid
        buffer."""
        from .engine import Collector

        narrow = int(self.out_lanes < self.pe)
        return (Collector.OUT_LATENCY + self.out_step - 1 + narrow
                + self.stage.latency(pipelined=True) + 1)

    def cycle_report(self, column_counts, active):
        """The cycle model (:func:`.reference.cycle_model`) of these params on a matrix with
        ``column_counts`` (:meth:`~.format.SparseMatrix.column_counts`) for a batch whose
        non-zero activations are ``active`` ((B, K) booleans), back to back, output never
        stalled."""
        return cycle_model(column_counts, active, in_beat=self.in_beat,
                           queue_depth=self.queue_depth, rows_per_pe=self.rows_per_pe,
                           out_latency=self.out_latency, out_step=self.out_step)

    def expected_cycles(self, column_counts):
        """Steady-state cycles per inference when every activation is non-zero (the worst
        case: zero activations only save cycles)."""
        active = np.ones((2, self.in_features), dtype=bool)
        return self.cycle_report(column_counts, active).cycles_per_inference

    @property
    def rows_per_pe(self):
        """Local rows of the busiest PE, ``ceil(M / pe)``; also the output beats per vector."""
        return cdiv(self.out_features, self.pe)

    @property
    def in_beats(self):
        """Input beats per vector, ``ceil(K / in_beat)``."""
        return cdiv(self.in_features, self.in_beat)

    @property
    def out_beat(self):
        """Output elements per beat: one per PE."""
        return self.pe

    @property
    def lanes(self):
        """Multipliers instantiated: one per PE."""
        return self.pe

    @property
    def dense_cycles(self):
        """Cycles a dense engine with as many multipliers needs: ``ceil(M * K / pe)``."""
        return cdiv(self.out_features * self.in_features, self.pe)
