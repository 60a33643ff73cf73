"""The FINN-like matrix-vector unit (SPEC engine ``mvu``)."""

import numpy as np
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..common.arith import pack_words, tree_sum
from ..common.memory import Rom
from ..common.outstage import OutputStage
from ..common.reference import bits_for_range
from ..common.stream import core_then_stage, vector_stream
from .params import LaneKind, MVUParams
from .reference import fold_matrix, raw_bounds

__all__ = ["check_weight", "MVUCore", "MatrixVectorUnit"]


def check_weight(params, weight, *, whole_layer=False):
    """``weight`` as int64 after checking it against ``params`` (TypeError/ValueError):
    shape, dtype, and the raw-sum bounds ``params`` states; ``whole_layer``: ``params`` must
    carry the output stage (:meth:`MVUParams.for_layer`)."""
    if not isinstance(params, MVUParams):
        raise TypeError(f"params must be MVUParams, not {params!r}")
    if whole_layer and params.output is None:
        raise ValueError("params has no output stage: build it with MVUParams.for_layer")
    weight = np.asarray(weight, dtype=np.int64)
    if weight.shape != (params.out_features, params.in_features):
        raise ValueError(f"weight has shape {weight.shape}, expected "
                         f"({params.out_features}, {params.in_features})")
    if not params.weight_dtype.contains(weight):
        raise ValueError(f"weight values lie outside {params.weight_dtype}")
    if params.raw_lo is not None:
        lo, hi = raw_bounds(weight, params.in_dtype.lo, params.in_dtype.hi,
                            params.lane_kind is LaneKind.XNOR)
        if lo < params.raw_lo or hi > params.raw_hi:
            raise ValueError("weight exceeds the raw-sum bounds params was built for; use "
                             "MVUParams.for_layer with these weights")
    return weight


def _raw_shape(params, weight):
    if params.raw_shape is not None:
        return params.raw_shape
    lo, hi = raw_bounds(weight, params.in_dtype.lo, params.in_dtype.hi,
                        params.lane_kind is LaneKind.XNOR)
    width, is_signed = bits_for_range(lo, hi)
    return signed(width) if is_signed else unsigned(width)


def _field(word, index, width, signed_):
    value = word[index * width:(index + 1) * width]
    return value.as_signed() if signed_ else value


class MVUCore(wiring.Component):
    """Folded matrix-vector product: raw sums of ``pe`` rows per output beat.

    Input: ``ceil(K/simd)`` beats of ``simd`` elements per vector (padding ignored). Output:
    ``ceil(M/pe)`` beats of ``pe`` raw sums per vector (see :mod:`.reference` for what a raw sum
    is; rows past M are padding). Throughput: one input-or-reuse beat per cycle, so a vector takes
    ``params.expected_cycles`` cycles in steady state; the input vector is read once, in the first
    neuron fold, and kept in a buffer for the others. Latency: 3 cycles from the last input beat
    of a neuron fold to its output beat. Raw sums are exact: their width is the worst case over
    the actual weights and every legal input.
    """

    def __new__(cls, params, weight):
        check_weight(params, weight)  # before the component exists (see MatrixVectorUnit)
        return super().__new__(cls)

    def __init__(self, params, weight):
        weight = check_weight(params, weight)
        self.params = params
        self.xnor = params.lane_kind is LaneKind.XNOR
        self.raw_shape = _raw_shape(params, weight)
        self._words = weight_words(params, weight)
        super().__init__({
            "i_data": In(vector_stream(params.in_dtype.shape, params.simd)),
            "o_raw": Out(vector_stream(self.raw_shape, params.pe)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        sf_n, nf_n, simd, pe = p.synapse_folds, p.neuron_folds, p.simd, p.pe
        wbits, xbits = p.weight_dtype.bits, p.in_dtype.bits
        i, o = self.i_data, self.o_raw

        m.submodules.weights = wrom = Rom(self._words, pe * simd * wbits,
                                          storage=p.weight_storage)
        advance = Signal()
        m.d.comb += advance.eq(~o.valid | o.ready)

        # Stage A: issue one beat (from the input stream in neuron fold 0, else from the buffer).
        sf = Signal(range(sf_n))
        nf = Signal(range(nf_n))
        waddr = Signal(range(max(sf_n * nf_n, 2)))
        take = Signal()
        issue = Signal()
        m.d.comb += [
            take.eq(nf == 0),
            issue.eq(advance & (~take | i.valid)),
            i.ready.eq(advance & take),
            wrom.addr.eq(waddr),
            wrom.en.eq(advance),
        ]
        with m.If(issue):
            m.d.sync += [sf.eq(Mux(sf == sf_n - 1, 0, sf + 1)),
                         waddr.eq(Mux(waddr == sf_n * nf_n - 1, 0, waddr + 1))]
            with m.If(sf == sf_n - 1):
                m.d.sync += nf.eq(Mux(nf == nf_n - 1, 0, nf + 1))

        xin = i.payload.as_value()
        if nf_n > 1:
            m.submodules.buffer = buf = memory.Memory(shape=unsigned(simd * xbits), depth=sf_n,
                                                      init=[])
            wp = buf.write_port()
            rp = buf.read_port(domain="sync")
            m.d.comb += [wp.addr.eq(sf), wp.data.eq(xin), wp.en.eq(i.valid & i.ready),
                         rp.addr.eq(sf), rp.en.eq(advance)]

        # Stage B: operands; lane products.
        v_b, from_b, first_b, last_b = Signal(), Signal(), Signal(), Signal()
        x_b = Signal(simd * xbits)
        with m.If(advance):
            m.d.sync += [v_b.eq(issue), from_b.eq(take), first_b.eq(sf == 0),
                         last_b.eq(sf == sf_n - 1), x_b.eq(xin)]
        x_word = Mux(from_b, x_b, rp.data) if nf_n > 1 else x_b
        w_word = wrom.data
        tail = p.in_features - (sf_n - 1) * simd  # real lanes in the last synapse fold
        live = [(j < tail) | ~last_b for j in range(simd)]
        products = [[self._lane(_field(w_word, q * simd + j, wbits, p.weight_dtype.signed),
                                _field(x_word, j, xbits, p.in_dtype.signed), live[j])
                     for j in range(simd)] for q in range(pe)]

        # Stage C: registered products; Stage D: adder tree and accumulation.
        v_c, first_c, last_c = Signal(), Signal(), Signal()
        prod_c = [[Signal(products[q][j].shape(), name=f"prod_{q}_{j}") for j in range(simd)]
                  for q in range(pe)]
        with m.If(advance):
            m.d.sync += [v_c.eq(v_b), first_c.eq(first_b), last_c.eq(last_b)]
            m.d.sync += [prod_c[q][j].eq(products[q][j]) for q in range(pe) for j in range(simd)]
            m.d.sync += o.valid.eq(v_c & last_c)
            with m.If(v_c):
                for q in range(pe):
                    m.d.sync += o.payload[q].eq(Mux(first_c, 0, o.payload[q])
                                                + tree_sum(prod_c[q]))
        return m

    def _lane(self, w, x, live):
        kind = self.params.lane_kind
        if kind is LaneKind.XNOR:
            return ~(w ^ x) & live
        if kind is LaneKind.ADDSUB_W:
            xm = Mux(live, x, 0)
            return Mux(w, xm, -xm)
        if kind is LaneKind.ADDSUB_X:
            return Mux(x, w, -w)  # padded weights are zero
        return w * x  # padded weights are zero


def weight_words(params, weight):
    """The weight memory's words, as the unit stores them: word ``nf*SF + sf`` holds, in field
    ``q*simd + j`` (``weight_dtype.bits`` wide, field 0 at bit 0), the encoding of
    ``W[nf*pe + q, sf*simd + j]``, or 0 where that lies outside the matrix."""
    wd = params.weight_dtype
    folded = fold_matrix(weight, params.pe, params.simd, fill=0)
    enc = wd.encode(folded).reshape(params.neuron_folds * params.synapse_folds, -1)
    return [pack_words(row, wd.bits) for row in enc]


class MatrixVectorUnit(wiring.Component):
    """One SPEC ``linear`` layer on the folded matrix-vector unit, output stage included.

    ``i_data``: ``ceil(K/simd)`` beats of ``simd`` input elements per vector (hardware encoding
    of ``params.in_dtype``); ``o_data``: ``ceil(M/pe)`` beats of ``pe`` output elements (encoding
    of the output stage's dtype). Steady state: ``params.expected_cycles`` cycles per vector.
    Bit-exact with SPEC sections 2.1 and 2.2; nothing can overflow (widths from worst-case
    bounds).

    Parameters
    ----------
    params : MVUParams
        From :meth:`MVUParams.for_layer`: folding, raw-sum bounds and the output stage (whose
        offset carries the bias).
    weight : (M, K) integer array
        The layer's weights, within the bounds ``params`` was built for.
    """

    def __new__(cls, params, *, weight):
        # checked before the component exists, so a bad argument leaves no unused component
        check_weight(params, weight, whole_layer=True)
        return super().__new__(cls)

    def __init__(self, params, *, weight):
        self.params = params
        self.core = MVUCore(params, weight)
        self.stage = OutputStage.from_params(params.output)
        super().__init__({
            "i_data": In(vector_stream(params.in_dtype.shape, params.simd)),
            "o_data": Out(vector_stream(params.output.out_shape, params.pe)),
        })

    def elaborate(self, platform):
        m = Module()
        core_then_stage(m, self, self.core, self.stage)
        return m

