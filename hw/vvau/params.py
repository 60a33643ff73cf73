"""Parameters of the vector-vector unit, shared by the hardware, its reference and the generator.

Every derived number (widths, lanes, beats, cycles) is a pure function of :class:`VVAUParams`.
"""

import numbers
from dataclasses import dataclass, replace

import numpy as np
from amaranth.hdl import Shape

from ..common.dtype import DType
from ..common.lanes import LaneKind, RawSumMixin, lane_kind_for, positive_int
from ..common.memory import Storage
from ..common.outstage import OutputStageParams
from ..common.reference import bits_for_range
from ..window.params import PatchOrder, WindowParams, check_dtype, check_pair
from .reference import affine, raw_bounds

__all__ = ["LaneKind", "VVAUParams"]




@dataclass(frozen=True, kw_only=True)
class VVAUParams(RawSumMixin):
    """One grouped (or depthwise) ``conv2d`` layer on the vector-vector unit.

    The layer reads a map ``(C, H, W)`` and writes ``(M, OH, OW)``, both in HWC order; it has
    ``G`` groups of ``cg = C/G`` input and ``mg = M/G`` output channels (depthwise: ``G = C``,
    ``cg = 1`` and ``mg = k``, the channel multiplier). A window unit
    (:attr:`window`, :attr:`PatchOrder.DEPTHWISE`) emits each output pixel's patch in blocks of
    ``pe`` whole groups; the unit has ``pe*mg*cg`` lanes (:attr:`lanes`), one per weight of a
    window position of the block's groups, so no lane ever holds a weight that is zero by the
    grouping. A pixel takes ``KH*KW*G/pe`` beats (:attr:`cycles_per_pixel`), one per cycle;
    with ``simd`` window positions per beat (every group in one beat), ``simd`` times fewer on
    ``simd`` times the lanes.

    Build the parameters of a layer with :meth:`for_layer`, which fixes the raw-sum bounds from
    the actual weights and the SPEC 2.2 output stage.

    Parameters
    ----------
    in_shape : (C, H, W)
    out_channels : int
        ``M``; ``G`` divides it.
    groups : int
        ``G``, dividing ``C`` and ``M``.
    kernel, stride, dilation, padding, pad_value
        The convolution's geometry (SPEC 2.1b); see :class:`~nnaccel.hw.window.params.
        WindowParams`.
    pe : int
        Groups per beat (depthwise: channels per beat); divides ``G``.
    simd : int
        Window positions per beat, default 1. Above 1 every group is in one beat (``pe = G``)
        and ``simd`` divides ``KW`` or is ``r*KW`` with ``r`` dividing ``KH`` (the window unit
        then emits ``simd`` consecutive positions of whole pixels per beat).
    n_in : int
        Input elements per beat (divides ``C``; the window unit's ``n_in``).
    in_dtype, weight_dtype : DType or str
    weight_storage : Storage or str
    raw_lo, raw_hi : int, optional
        Worst-case range of a raw sum (:func:`.reference.raw_bounds`); 0 lies inside.
    output : OutputStageParams, optional
        ``pe*mg`` lanes, ``M`` channels, ``raw_shape ==`` :attr:`raw_shape`, scale 2 for XNOR
        lanes (else 1), offset from the bias (:func:`.reference.affine`).

    Raises
    ------
    TypeError, ValueError
        A field has the wrong type or value.
    """

    in_shape: tuple
    out_channels: int
    groups: int
    kernel: tuple
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    pad_value: int = 0
    pe: int
    simd: int = 1
    n_in: int
    in_dtype: DType
    weight_dtype: DType
    weight_storage: Storage = Storage.AUTO
    raw_lo: int = None
    raw_hi: int = None
    output: OutputStageParams = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        if not isinstance(self.in_shape, (tuple, list)) or len(self.in_shape) != 3:
            raise TypeError(f"in_shape must be (C, H, W), not {self.in_shape!r}")
        put("in_shape", tuple(positive_int(f"in_shape[{n}]", v)
                              for n, v in enumerate(self.in_shape)))
        for name in ("out_channels", "groups", "pe", "simd", "n_in"):
            put(name, positive_int(name, getattr(self, name)))
        for name in ("in_dtype", "weight_dtype"):
            put(name, check_dtype(name, getattr(self, name)))
        try:
            put("weight_storage", Storage(self.weight_storage))
        except ValueError:
            choices = ", ".join(repr(s.value) for s in Storage)
            raise ValueError(f"weight_storage must be one of {choices}, not "
                             f"{self.weight_storage!r}") from None
        c, g = self.in_shape[0], self.groups
        if c % g or self.out_channels % g:
            raise ValueError(f"groups ({g}) must divide the input channels ({c}) and the "
                             f"output channels ({self.out_channels})")
        if g % self.pe:
            raise ValueError(f"pe ({self.pe}) must divide groups ({g})")
        self._check_simd()
        window = WindowParams(channels=c, height=self.in_shape[1], width=self.in_shape[2],
                              kernel=self.kernel, stride=self.stride, dilation=self.dilation,
                              padding=self.padding, pad_value=self.pad_value,
                              dtype=self.in_dtype, n_in=self.n_in, n_out=self.in_beat,
                              order=PatchOrder.DEPTHWISE if self.simd == 1 else PatchOrder.TAPS)
        for name in ("kernel", "stride", "dilation", "padding", "pad_value"):
            put(name, getattr(window, name))
        put("window", window)
        if (self.raw_lo is None) != (self.raw_hi is None):
            raise ValueError("raw_lo and raw_hi go together: give both or neither")
        if self.raw_lo is not None:
            for name in ("raw_lo", "raw_hi"):
                value = getattr(self, name)
                if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                    raise TypeError(f"{name} must be an integer, not {value!r}")
            if not self.raw_lo <= 0 <= self.raw_hi:
                raise ValueError(f"raw_lo..raw_hi must contain 0, not "
                                 f"{self.raw_lo}..{self.raw_hi}")
        if self.output is not None:
            self._check_output()

    def _check_simd(self):
        if self.simd == 1:
            return
        kh, kw = check_pair("kernel", self.kernel)
        if self.pe != self.groups:
            raise ValueError(f"simd ({self.simd}) above 1 needs every group in one beat: pe "
                             f"must be groups ({self.groups}), not {self.pe}")
        if not (kw % self.simd == 0 or (self.simd % kw == 0 and kh % (self.simd // kw) == 0)):
            raise ValueError(f"simd ({self.simd}) must divide KW ({kw}) or be r*KW with r "
                             f"dividing KH ({kh})")

    def _check_output(self):
        out = self.output
        if not isinstance(out, OutputStageParams):
            raise TypeError(f"output must be an OutputStageParams, not {out!r}")
        if self.raw_lo is None:
            raise ValueError("output needs raw_lo and raw_hi (use VVAUParams.for_layer)")
        scale = 2 if self.lane_kind is LaneKind.XNOR else 1
        want = (self.out_beat, self.out_channels, self.raw_shape, scale)
        if (out.pe, out.channels, out.raw_shape, out.scale) != want:
            raise ValueError(f"output must have pe {want[0]}, channels {want[1]}, raw_shape "
                             f"{want[2]!r} and scale {want[3]}, not {out.pe}, {out.channels}, "
                             f"{out.raw_shape!r} and {out.scale}")

    @classmethod
    def for_layer(cls, *, weight, in_shape, groups, pe, n_in, in_dtype, weight_dtype, simd=1,
                  bias=None, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0),
                  pad_value=0, weight_storage=Storage.AUTO, output_kind="identity",
                  out_dtype=None, mult=None, shift=None, relu=False, thresholds=None):
        """Parameters of the ``conv2d`` layer with weights ``weight`` ``(M, C/G, KH, KW)`` and
        ``bias`` ``(M,)``, ``pe`` groups per beat, its output stage of kind ``output_kind`` to
        ``out_dtype`` (default ``int32``) with ``mult``, ``shift``, ``relu`` or ``thresholds``
        (SPEC 2.2)."""
        w = np.asarray(weight)
        if w.ndim != 4 or 0 in w.shape or w.dtype.kind not in "iuO":
            raise ValueError(f"weight must be a non-empty 4-D integer array, not shape "
                             f"{w.shape} of {w.dtype}")
        bare = cls(in_shape=in_shape, out_channels=w.shape[0], groups=groups,
                   kernel=tuple(int(k) for k in w.shape[2:]), stride=stride,
                   dilation=dilation, padding=padding, pad_value=pad_value, pe=pe, simd=simd,
                   n_in=n_in,
                   in_dtype=in_dtype, weight_dtype=weight_dtype, weight_storage=weight_storage)
        if w.shape[1] != bare.group_in:
            raise ValueError(f"weight has shape {w.shape}; with {bare.in_shape[0]} input "
                             f"channels and groups {groups} its axis 1 must be {bare.group_in}")
        xnor = bare.lane_kind is LaneKind.XNOR
        lo, hi = raw_bounds(w, bare.in_dtype.lo, bare.in_dtype.hi, xnor)
        raw = Shape(*bits_for_range(lo, hi))
        scale, offset = affine(w.shape[0], bare.dot_length, bias, xnor)
        out_dtype = DType.parse("int32") if out_dtype is None else out_dtype
        if not isinstance(out_dtype, DType):
            raise TypeError(f"out_dtype must be a DType, not {out_dtype!r}")
        output = OutputStageParams.for_dtype(
            output_kind, out_dtype, pe=bare.out_beat, channels=w.shape[0], raw_shape=raw,
            scale=scale, offset=[int(v) for v in offset], mult=mult, shift=shift, relu=relu,
            thresholds=thresholds)
        return replace(bare, raw_lo=lo, raw_hi=hi, output=output)

    # --- shape -------------------------------------------------------------------------------

    @property
    def channels(self):
        """``C``."""
        return self.in_shape[0]

    @property
    def group_in(self):
        """``cg = C/G``: input channels of a group (1 for depthwise)."""
        return self.channels // self.groups

    @property
    def multiplier(self):
        """``mg = M/G``: output channels of a group (depthwise: the channel multiplier k)."""
        return self.out_channels // self.groups

    @property
    def depthwise(self):
        return self.groups == self.channels

    @property
    def taps(self):
        """``KH*KW``."""
        return self.kernel[0] * self.kernel[1]

    @property
    def dot_length(self):
        """Inputs of one output element: ``cg*KH*KW``."""
        return self.group_in * self.taps

    @property
    def out_shape(self):
        """``(M, OH, OW)``."""
        return (self.out_channels, self.window.out_height, self.window.out_width)

    @property
    def pixels(self):
        return self.window.out_height * self.window.out_width

    # --- beats and lanes ---------------------------------------------------------------------

    @property
    def in_beat(self):
        """Elements per patch beat (the window's ``n_out``): ``simd*pe*cg``."""
        return self.simd * self.pe * self.group_in

    @property
    def out_beat(self):
        """Output elements per beat: ``pe*mg``, channels of ``pe`` groups."""
        return self.pe * self.multiplier

    @property
    def blocks(self):
        """Output beats per pixel: ``G/pe``."""
        return self.groups // self.pe

    @property
    def lanes(self):
        """Multipliers (or XNOR / add-subtract lanes): ``simd*pe*mg*cg``."""
        return self.simd * self.pe * self.multiplier * self.group_in

    @property
    def block_beats(self):
        """Beats of one block of groups: ``KH*KW/simd``."""
        return self.taps // self.simd

    @property
    def weight_depth(self):
        """Words of the weight memory: ``G/pe * KH*KW/simd`` of ``lanes`` weights each."""
        return self.blocks * self.block_beats

    @property
    def weight_bits(self):
        """Bits of weights stored: ``M*cg*KH*KW*bits``."""
        return self.weight_depth * self.lanes * self.weight_dtype.bits

    @property
    def lane_kind(self):
        return lane_kind_for(self.weight_dtype, self.in_dtype)


    # --- cycles ------------------------------------------------------------------------------

    @property
    def cycles_per_pixel(self):
        """Beats (cycles) of one output pixel: ``KH*KW*G/(pe*simd)`` (depthwise, simd 1:
        ``KH*KW*C/pe``)."""
        return self.block_beats * self.blocks

    @property
    def expected_cycles(self):
        """Steady-state cycles per image, images back to back, no stalls: the window unit's
        (whose output is ``OH*OW*`` :attr:`cycles_per_pixel` beats, at least), since the unit
        takes one beat per cycle."""
        return self.window.expected_cycles
