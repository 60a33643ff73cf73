"""Parameters of the FINN-like matrix-vector unit, shared by hardware, reference and generator."""

from dataclasses import dataclass, replace

import numpy as np
from amaranth.hdl import Shape

from ..common.arith import cdiv
from ..common.dtype import DType
from ..common.lanes import LaneKind, RawSumMixin, lane_kind_for
from ..common.memory import Storage, bram_blocks, choose_storage
from ..common.outstage import OutputStageParams
from ..common.reference import bits_for_range
from ..common.stream import check_positive, fifo_in_block_ram
from .reference import affine, raw_bounds

__all__ = ["LaneKind", "MVUParams"]



@dataclass(frozen=True, kw_only=True)
class MVUParams(RawSumMixin):
    """Shape and folding of one matrix-vector unit.

    An (M, K) layer is folded into ``neuron_folds = ceil(M/pe)`` groups of ``pe`` output rows
    computed in parallel, each in ``synapse_folds = ceil(K/simd)`` beats of ``simd`` inputs; one
    beat per cycle, so a vector takes ``neuron_folds * synapse_folds`` cycles in steady state.
    Folds that do not divide the layer are padded; the padding contributes nothing.

    Build the parameters of a whole layer with :meth:`for_layer`, which fixes the raw-sum bounds
    from the actual weights and the SPEC 2.2 output stage; the bare shape and folding (``raw_lo``,
    ``raw_hi`` and ``output`` None) describe an :class:`~.engine.MVUCore` alone, whose raw width
    then follows from the weights it is given.

    Parameters
    ----------
    in_features, out_features, pe, simd : int
        K, M and the folding.
    in_dtype, weight_dtype : DType
    weight_storage : Storage or str
    raw_lo, raw_hi : int, optional
        Worst-case range of a raw sum (:func:`.reference.raw_bounds`) over the layer's weights
        and every legal input; 0 lies inside.
    output : OutputStageParams, optional
        The output stage: ``pe`` lanes, ``out_features`` channels, ``raw_shape ==``
        :attr:`raw_shape`, ``scale`` 2 for XNOR lanes (else 1), ``offset`` from the bias
        (:func:`.reference.affine`).
    dsp_multipliers : int, optional
        How many of the lanes' :attr:`multipliers` are inferred multiplications that synthesis
        puts in DSP blocks (the first ones, lane ``q*simd + j`` in order); the others are
        shift-and-add multipliers in logic, for folds with more multipliers than the device has
        DSP blocks. Default: all. Only multiply lanes without :attr:`packed_products` can
        split.
    """

    in_features: int
    out_features: int
    pe: int
    simd: int
    in_dtype: DType
    weight_dtype: DType
    weight_storage: Storage = Storage.AUTO
    raw_lo: int = None
    raw_hi: int = None
    output: OutputStageParams = None
    dsp_multipliers: int = None

    def __post_init__(self):
        check_positive("in_features", self.in_features)
        check_positive("out_features", self.out_features)
        check_positive("pe", self.pe)
        check_positive("simd", self.simd)
        if self.pe > self.out_features:
            raise ValueError(f"pe ({self.pe}) must not exceed out_features ({self.out_features})")
        if self.simd > self.in_features:
            raise ValueError(f"simd ({self.simd}) must not exceed in_features "
                             f"({self.in_features})")
        for name in ("in_dtype", "weight_dtype"):
            if not isinstance(getattr(self, name), DType):
                raise TypeError(f"{name} must be a DType, not {getattr(self, name)!r}")
        object.__setattr__(self, "weight_storage", Storage(self.weight_storage))
        if (self.raw_lo is None) != (self.raw_hi is None):
            raise ValueError("raw_lo and raw_hi go together: give both or neither")
        if self.raw_lo is not None:
            for name in ("raw_lo", "raw_hi"):
                if not isinstance(getattr(self, name), int):
                    raise TypeError(f"{name} must be an integer, not {getattr(self, name)!r}")
            if not self.raw_lo <= 0 <= self.raw_hi:
                raise ValueError(f"raw_lo..raw_hi must contain 0, not "
                                 f"{self.raw_lo}..{self.raw_hi}")
        if self.output is not None:
            self._check_output()
        self._check_dsp()

    def _check_dsp(self):
        n = self.dsp_multipliers
        if n is None:
            return
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= self.multipliers:
            raise ValueError(f"dsp_multipliers must be an integer in 0..{self.multipliers} "
                             f"(the lanes' multipliers), not {n!r}")
        if n != self.multipliers and self.packed_products:
            raise ValueError("dsp_multipliers: lanes with two products per multiplier keep "
                             "every multiplier in a DSP block")

    def _check_output(self):
        out = self.output
        if not isinstance(out, OutputStageParams):
            raise TypeError(f"output must be an OutputStageParams, not {out!r}")
        if self.raw_lo is None:
            raise ValueError("output needs raw_lo and raw_hi (use MVUParams.for_layer)")
        scale = 2 if self.lane_kind is LaneKind.XNOR else 1
        if (out.pe, out.channels, out.raw_shape, out.scale) != (self.pe, self.out_features,
                                                                self.raw_shape, scale):
            raise ValueError(f"output must have pe {self.pe}, channels {self.out_features}, "
                             f"raw_shape {self.raw_shape!r} and scale {scale}, not {out.pe}, "
                             f"{out.channels}, {out.raw_shape!r} and {out.scale}")

    @classmethod
    def for_layer(cls, *, weight, pe, simd, in_dtype, weight_dtype, bias=None,
                  weight_storage=Storage.AUTO, output_kind="identity", out_dtype=None,
                  mult=None, shift=None, relu=False, thresholds=None, dsp_multipliers=None):
        """Parameters of the layer with weights ``weight`` (M, K) and ``bias`` (M,) folded
        ``pe`` x ``simd``, its output stage of kind ``output_kind`` to ``out_dtype`` (a DType,
        default ``int32``) with ``mult``, ``shift``, ``relu`` or ``thresholds`` (SPEC 2.2), and
        ``dsp_multipliers`` of its multipliers in DSP blocks (default all)."""
        w = np.asarray(weight)
        if w.ndim != 2 or 0 in w.shape or w.dtype.kind not in "iuO":
            raise ValueError(f"weight must be a non-empty 2-D integer array, not shape "
                             f"{w.shape} of {w.dtype}")
        m, k = w.shape
        bare = cls(in_features=k, out_features=m, pe=pe, simd=simd, in_dtype=in_dtype,
                   weight_dtype=weight_dtype, weight_storage=weight_storage,
                   dsp_multipliers=dsp_multipliers)
        xnor = bare.lane_kind is LaneKind.XNOR
        lo, hi = raw_bounds(w, in_dtype.lo, in_dtype.hi, xnor)
        raw = Shape(*bits_for_range(lo, hi))
        scale, offset = affine(m, k, bias, xnor)
        out_dtype = DType.parse("int32") if out_dtype is None else out_dtype
        if not isinstance(out_dtype, DType):
            raise TypeError(f"out_dtype must be a DType, not {out_dtype!r}")
        output = OutputStageParams.for_dtype(
            output_kind, out_dtype, pe=pe, channels=m, raw_shape=raw, scale=scale,
            offset=[int(v) for v in offset], mult=mult, shift=shift, relu=relu,
            thresholds=thresholds)
        return replace(bare, raw_lo=lo, raw_hi=hi, output=output)


    @property
    def neuron_folds(self):
        return cdiv(self.out_features, self.pe)

    @property
    def synapse_folds(self):
        return cdiv(self.in_features, self.simd)

    @property
    def lanes(self):
        """Multipliers (or XNOR / add-subtract lanes) instantiated."""
        return self.pe * self.simd

    @property
    def lane_kind(self):
        return lane_kind_for(self.weight_dtype, self.in_dtype)

    @property
    def packed_products(self):
        """Whether two products share one multiplier (18x18 signed, as the ECP5's DSP blocks):
        multiply lanes with weights of at most 4 bits and two PEs or more, where a product of
        two weights packed with a guard band of a product's width fits the multiplier."""
        wb, xb = self.weight_dtype.bits, self.in_dtype.bits
        return (self.lane_kind is LaneKind.MUL and wb <= 4 and self.pe >= 2
                and 2 * wb + xb + 2 <= 18 and xb + (not self.in_dtype.signed) <= 18)

    @property
    def multipliers(self):
        """Multipliers the lanes use: one per lane, one per pair of PEs with
        :attr:`packed_products`, none for XNOR and add/subtract lanes."""
        if self.lane_kind is not LaneKind.MUL:
            return 0
        if self.packed_products:
            return cdiv(self.pe, 2) * self.simd
        return self.lanes

    @property
    def buffer_registered(self):
        """Whether the core keeps the input vector in a buffer (several beats and several
        neuron folds) that it reads through an output register: when the buffer of
        ``synapse_folds`` words of ``simd`` inputs goes to block RAM
        (:func:`~nnaccel.hw.common.stream.fifo_in_block_ram`), so that its read reaches only
        registers (the DP16KD's own output register on the ECP5). Every beat then comes from
        the buffer, one cycle later than from a buffer in distributed RAM for multiplier
        lanes (not packed), two for other lanes."""
        return (self.neuron_folds > 1 and self.synapse_folds > 1
                and fifo_in_block_ram(self.synapse_folds, self.simd * self.in_dtype.bits))

    @property
    def logic_multipliers(self):
        """Multipliers built in logic (shift-and-add), not in DSP blocks."""
        return 0 if self.dsp_multipliers is None else self.multipliers - self.dsp_multipliers

    def dsp_lane(self, q, j):
        """Whether lane ``(q, j)`` (PE ``q``, input ``j``) multiplies in a DSP block."""
        return q * self.simd + j < self.multipliers - self.logic_multipliers

    @property
    def weight_memory(self):
        """Where the weights go (``weight_storage`` resolved): a :class:`Storage`, ``BRAM`` or
        ``LOGIC``; ``AUTO`` chooses by :func:`~nnaccel.hw.common.memory.choose_storage` over the
        memory of ``neuron_folds * synapse_folds`` words of ``pe * simd`` weights."""
        return choose_storage(*self.weight_words_shape, self.weight_storage)

    @property
    def weight_words_shape(self):
        """``(depth, width)`` of the weight memory in words and bits."""
        return (self.neuron_folds * self.synapse_folds,
                self.pe * self.simd * self.weight_dtype.bits)

    @property
    def weight_brams(self):
        """Block RAMs of the weight memory (0 when it is in logic)."""
        if self.weight_memory is Storage.LOGIC:
            return 0
        return bram_blocks(*self.weight_words_shape)

    @property
    def expected_cycles(self):
        """Steady-state cycles per vector (FINN's folding formula)."""
        return self.neuron_folds * self.synapse_folds
