"""The vector-vector unit (FINN's VVAU idea) for grouped and depthwise convolutions."""

import numpy as np
from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..common.arith import pack_words, tree_sum
from ..common.memory import Rom, issue_order_read
from ..common.outstage import OutputStage
from ..common.stream import core_then_stage, vector_stream
from ..window.patches import PatchFed
from .params import LaneKind, VVAUParams
from .reference import raw_bounds, weight_words

__all__ = ["check_weight", "VVAUCore", "VectorVectorUnit", "VVAUConvolution"]


def check_weight(params, weight):
    """``weight`` as int64 after checking it against ``params`` (TypeError/ValueError): type,
    shape ``(M, C/G, KH, KW)``, values of the weight dtype, and the raw-sum bounds ``params``
    was built for (:meth:`VVAUParams.for_layer`)."""
    if not isinstance(params, VVAUParams):
        raise TypeError(f"params must be VVAUParams, not {params!r}")
    if params.output is None:
        raise ValueError("params has no output stage: build it with VVAUParams.for_layer")
    weight = np.asarray(weight)
    if weight.dtype.kind not in "iuO":
        raise TypeError(f"weight must be an integer array, not {weight.dtype}")
    weight = weight.astype(np.int64)
    shape = (params.out_channels, params.group_in, *params.kernel)
    if weight.shape != shape:
        raise ValueError(f"weight has shape {weight.shape}, expected {shape}")
    if not params.weight_dtype.contains(weight):
        raise ValueError(f"weight values lie outside {params.weight_dtype}")
    lo, hi = raw_bounds(weight, params.in_dtype.lo, params.in_dtype.hi,
                        params.lane_kind is LaneKind.XNOR)
    if lo < params.raw_lo or hi > params.raw_hi:
        raise ValueError("weight exceeds the raw-sum bounds params was built for; use "
                         "VVAUParams.for_layer with these weights")
    return weight


def _field(word, index, width, signed_):
    value = word[index * width:(index + 1) * width]
    return value.as_signed() if signed_ else value


class VVAUCore(wiring.Component):
    """Raw sums of a grouped convolution from its depthwise-ordered patches.

    ``i_data``: the window unit's patch beats, ``simd*pe*cg`` elements (``pe`` groups of
    ``simd`` window positions) each, ``KH*KW/simd`` beats per block of groups, ``G/pe`` blocks
    per pixel. ``o_raw``:
    one beat of ``pe*mg`` raw sums per block (output channels of those groups, in order), see
    :mod:`.reference`. One input beat per cycle; the accumulators are the output register
    itself, so there is no accumulator memory. Latency: 4 cycles (5 with multiplier lanes)
    from a block's last input beat to its output beat. Raw sums and every partial sum are
    exact (widths from worst-case bounds over the actual weights).
    """

    def __init__(self, params, weight):
        weight = check_weight(params, weight)
        self.params = params
        wd = params.weight_dtype
        words = weight_words(weight, params.groups, params.pe, params.simd)
        self._words = [pack_words(wd.encode(row), wd.bits) for row in words]
        super().__init__({
            "i_data": In(vector_stream(params.in_dtype.shape, params.in_beat)),
            "o_raw": Out(vector_stream(params.raw_shape, params.out_beat)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        beats, cg, mg, simd = p.block_beats, p.group_in, p.multiplier, p.simd
        chunk = p.pe * cg   # elements of one window position in a beat
        wbits, xbits = p.weight_dtype.bits, p.in_dtype.bits
        i, o = self.i_data, self.o_raw
        m.submodules.weights = wrom = Rom(self._words, p.lanes * wbits,
                                          storage=p.weight_storage, copied=True)

        # Stage A: take a beat; read its weights (:func:`issue_order_read`: the address is a
        # register). Multiplier lanes get them once more in a register beside the multipliers
        # (a block RAM's own output register lies far from them), and their beat one more
        # register with them; every stage loads when ``advance``.
        advance, issue = Signal(), Signal()
        tap = Signal(range(beats))
        m.d.comb += [advance.eq(~o.valid | o.ready), issue.eq(advance & i.valid),
                     i.ready.eq(advance)]
        with m.If(issue):
            m.d.sync += tap.eq(Mux(tap == beats - 1, 0, tap + 1))
        w_word, w_stages = issue_order_read(m, wrom, issue, en=advance,
                                            extra=p.lane_kind is LaneKind.MUL, name="w")

        # Stage B: the beat (the memory reads its weights); Stage R: both registered, so no path
        # runs from a block RAM output through a multiplier (the weights' register is the block
        # RAM's own output register on the ECP5, nnaccel.boards.ecp5_bram); with late weights,
        # the beat once more.
        v_b, first_b, last_b = Signal(), Signal(), Signal()
        x_b = Signal(p.in_beat * xbits)
        with m.If(advance):
            m.d.sync += [v_b.eq(issue), first_b.eq(tap == 0), last_b.eq(tap == beats - 1),
                         x_b.eq(i.payload.as_value())]
        v_r, first_r, last_r, x_r = v_b, first_b, last_b, x_b
        for k in range(w_stages - 1):
            # no reset on the beat: foldable into DSP registers
            regs = (Signal(name=f"v_r{k}"), Signal(name=f"first_r{k}"), Signal(name=f"last_r{k}"),
                    Signal.like(x_b, name=f"x_r{k}", reset_less=True))
            with m.If(advance):
                m.d.sync += [r.eq(v) for r, v in zip(regs, (v_r, first_r, last_r, x_r),
                                                     strict=True)]
            v_r, first_r, last_r, x_r = regs
        sums = []
        for g in range(p.pe):
            for u in range(mg):
                lanes = [self._lane(_field(w_word, ((g * mg + u) * simd + q) * cg + c, wbits,
                                           p.weight_dtype.signed),
                                    _field(x_r, q * chunk + g * cg + c, xbits,
                                           p.in_dtype.signed))
                         for q in range(simd) for c in range(cg)]
                sums.append(lanes)

        # Stage C: registered lane values; accumulation into the output register.
        v_c, first_c, last_c = Signal(), Signal(), Signal()
        regs = [[Signal(v.shape(), name=f"lane_{q}_{c}", reset_less=True)
                 for c, v in enumerate(lanes)]
                for q, lanes in enumerate(sums)]
        with m.If(advance):
            m.d.sync += [v_c.eq(v_r), first_c.eq(first_r), last_c.eq(last_r),
                         o.valid.eq(v_c & last_c)]
            m.d.sync += [r.eq(v) for rs, vs in zip(regs, sums, strict=True)
                         for r, v in zip(rs, vs, strict=True)]
            with m.If(v_c):
                for q, rs in enumerate(regs):
                    m.d.sync += o.payload[q].eq(Mux(first_c, 0, o.payload[q]) + tree_sum(rs))
        return m

    def _lane(self, w, x):
        kind = self.params.lane_kind
        if kind is LaneKind.XNOR:
            return ~(w ^ x)
        if kind is LaneKind.ADDSUB_W:
            return Mux(w, x, -x)
        if kind is LaneKind.ADDSUB_X:
            return Mux(x, w, -w)
        return w * x


class VectorVectorUnit(wiring.Component):
    """A grouped or depthwise ``conv2d``'s arithmetic on depthwise-ordered patches, output
    stage included.

    ``i_data``: the patch beats of :class:`VVAUCore` (``pe*cg`` elements, hardware encoding of
    ``params.in_dtype``); ``o_data``: ``G/pe`` beats of ``pe*mg`` output elements per pixel
    (encoding of the output stage's dtype), output channel ``m = g*mg + u`` (SPEC 2.1b), i.e.
    the output map in HWC order. One beat per cycle in the steady state. Bit-exact with SPEC
    sections 2.1b and 2.2; nothing can overflow.

    Parameters
    ----------
    params : VVAUParams
        From :meth:`VVAUParams.for_layer`.
    weight : (M, C/G, KH, KW) integer array
        The layer's weights, within the bounds ``params`` was built for.
    """

    def __new__(cls, params, *, weight):
        check_weight(params, weight)  # before the component exists
        return super().__new__(cls)

    def __init__(self, params, *, weight):
        self.params = params
        self.core = VVAUCore(params, weight)
        self.stage = OutputStage.from_params(params.output)
        super().__init__({
            "i_data": In(vector_stream(params.in_dtype.shape, params.in_beat)),
            "o_data": Out(vector_stream(params.output.out_shape, params.out_beat)),
        })

    def elaborate(self, platform):
        m = Module()
        core_then_stage(m, self, self.core, self.stage)
        return m


class VVAUConvolution(PatchFed):
    """One grouped or depthwise ``conv2d`` layer: a :class:`~nnaccel.hw.window.engine.
    WindowUnit` in the depthwise patch order feeding a :class:`VectorVectorUnit`.

    ``i_data``: the input map in HWC order, ``n_in`` elements per beat; ``o_data``: the output
    map ``(M, OH, OW)`` in HWC order, ``pe*mg`` elements per beat. Steady state:
    ``params.expected_cycles`` cycles per image, images back to back.

    Parameters
    ----------
    params : VVAUParams
    weight : (M, C/G, KH, KW) integer array
    """

    def __new__(cls, params, *, weight):
        check_weight(params, weight)
        return super().__new__(cls)

    def __init__(self, params, *, weight):
        self.params = params
        self.unit = VectorVectorUnit(params, weight=weight)
        super().__init__(params.window, self.unit)
