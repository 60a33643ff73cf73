"""The FINN-like matrix-vector unit (SPEC engine ``mvu``)."""

import numpy as np
from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from ..common.arith import (
    KEEP,
    cdiv,
    delay,
    pack_words,
    pipelined_popcount,
    pipelined_tree_sum,
    popcount_stages,
    tree_stages,
)
from ..common.lanes import logic_product
from ..common.memory import NO_RW_CHECK, Rom, issue_order_read, pipelined_read, rom_banked
from ..common.outstage import OutputStage
from ..common.reference import bits_for_range
from ..common.stream import StreamFifo, core_then_stage, vector_stream
from .params import LaneKind, MVUParams
from .reference import fold_matrix, raw_bounds

__all__ = ["check_weight", "input_copies", "INPUT_COPY_PES", "MVUCore", "MatrixVectorUnit"]

#: PEs served by one copy of the register holding the input beat, with XNOR lanes: each input
#: bit reaches a look-up table of every PE, and the PEs of a wide fold lie across the chip
#: (CNV's third convolution, 32 PEs, was held at 74.5 MHz by that register: 11.7 ns of
#: routing to its farthest PE).
INPUT_COPY_PES = 8


def input_copies(params):
    """Copies of the input beat's register (:data:`INPUT_COPY_PES`): one per group of PEs
    with XNOR lanes, else one (a multiplier lane's register is its DSP block's own)."""
    if params.lane_kind is not LaneKind.XNOR:
        return 1
    return cdiv(params.pe, INPUT_COPY_PES)


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
    neuron fold, and kept in a buffer for the others. Latency: :attr:`fifo_latency` cycles (5,
    6 for multiplier lanes or banked weights, whose weights are registered once more, 7 with an
    input buffer in block RAM (:attr:`MVUParams.buffer_registered`), plus the adder tree's
    register stages, chosen by width, and the stages of packed or logic products) from the
    issue of a neuron fold's last beat to its sum entering the output FIFO of
    :attr:`fifo_depth` sums, then 1 or 2 cycles through the FIFO. The datapath has no clock
    enable; only the issue stage stalls. Raw sums are exact: their width is the worst case over
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
        #: Multiplier lanes' weights go through one more register (beside the multipliers), and
        #: so do a banked table's (issue_order_read adds it after the bank multiplexer); the
        #: input beats follow.
        self._late_weights = (
            params.lane_kind is LaneKind.MUL and not params.packed_products
            or rom_banked(len(self._words), params.pe * params.simd * params.weight_dtype.bits,
                          params.weight_memory))
        wd, xd = params.weight_dtype, params.in_dtype
        product = self._lane(Const(0, signed(wd.bits) if wd.signed else unsigned(wd.bits)),
                             Const(0, signed(xd.bits) if xd.signed else unsigned(xd.bits)),
                             Const(1, 1)).shape()
        #: Cycles from a beat's issue to its sum entering the output FIFO.
        tree = (popcount_stages(params.simd) if self.xnor
                else 1 + tree_stages([product] * params.simd))
        self.fifo_latency = ((6 if params.buffer_registered else 4 + self._late_weights)
                             + 2 * params.packed_products
                             + (params.logic_multipliers > 0) + tree)
        #: Sums the output FIFO holds: as many as are issued while the first one goes round
        #: (through the FIFO, whose output is up to 2 cycles late, and back as a free slot).
        self.fifo_depth = cdiv(self.fifo_latency + 3, params.synapse_folds) + 1
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

        # The datapath runs free (no clock enable to fan out over the lanes): back-pressure
        # stops only the issue stage, which starts a neuron fold's last beat only while the
        # output FIFO has room reserved for its sum (``pending`` counts the sums issued and not
        # yet taken from the FIFO).
        depth = self.fifo_depth
        # a few sums: distributed RAM, so that its latency is the 2 cycles the depth counts
        m.submodules.out_fifo = fifo = StreamFifo(o.payload.shape(), depth, block_ram=False)
        wiring.connect(m, fifo.o_data, wiring.flipped(o))
        pending = Signal(range(depth + 1))

        m.submodules.weights = wrom = Rom(self._words, pe * simd * wbits,
                                          storage=p.weight_memory, copied=True)

        # Stage A: issue one beat (from the input stream in neuron fold 0, else from the buffer).
        # ``take`` (neuron fold 0) and ``room`` (the FIFO can take the sum of a neuron fold's
        # last beat) are registers, computed from the next state, so that the input's ready
        # (a wide clock enable upstream) leaves two flip-flops and an AND gate. The weight
        # memory's address is a register too (:func:`issue_order_read`): the handshake reaches
        # only the counters.
        sf, sf_next = Signal(range(sf_n)), Signal(range(sf_n))
        nf, nf_next = Signal(range(nf_n)), Signal(range(nf_n))
        pending_next = Signal.like(pending)
        last_a, issue = Signal(), Signal()
        take, room = Signal(init=1), Signal(init=1)
        popped = fifo.o_data.valid & fifo.o_data.ready
        m.d.comb += [
            last_a.eq(sf == sf_n - 1),
            issue.eq(room & (~take | i.valid)),
            i.ready.eq(room & take),
            sf_next.eq(Mux(issue, Mux(last_a, 0, sf + 1), sf)),
            nf_next.eq(Mux(issue & last_a, Mux(nf == nf_n - 1, 0, nf + 1), nf)),
            pending_next.eq(pending + (issue & last_a) - popped),
        ]
        m.d.sync += [sf.eq(sf_next), nf.eq(nf_next), pending.eq(pending_next),
                     take.eq(nf_next == 0),
                     room.eq((sf_next != sf_n - 1) | (pending_next != depth))]
        # Multiplier lanes get the weight word once more in a register beside them (a block
        # RAM's own output register lies far from the DSP blocks), and their input beat one
        # more register with it. With a registered input buffer, the beat reaches x_c 4 cycles
        # after its issue, and the weight memory reads its word as many cycles late (delayed
        # flip-flops on the issue).
        late, registered = self._late_weights, p.buffer_registered
        lag = 2 - late if registered else 0
        w_c, w_stages = issue_order_read(m, wrom, delay(m, issue, lag, "issue"),
                                         extra=late, name="w")
        w_stages += lag

        xin = i.payload.as_value()
        buffered = nf_n > 1 and sf_n > 1
        # every beat from the buffer, read in the cycle after its issue (a beat from the input
        # is written in its issue cycle): no input register
        all_from_buffer = buffered and (late or registered)
        if buffered:
            # A block RAM buffer is read into its output register (the DP16KD's own on the
            # ECP5) and then x_c, so that no block RAM read reaches logic; the write in the
            # cycle of that read is to the next beat's word, never the one read (NO_RW_CHECK).
            m.submodules.buffer = buf = memory.Memory(
                shape=unsigned(simd * xbits), depth=sf_n, init=[],
                attrs=NO_RW_CHECK if registered else None)
            wp = buf.write_port()
            m.d.comb += [wp.addr.eq(sf), wp.data.eq(xin), wp.en.eq(i.valid & i.ready)]
            if registered:
                x_read = pipelined_read(m, buf, delay(m, sf, 1, "sf_b"), name="x_q",
                                        read_name="x_rd")
            else:
                rp = buf.read_port(domain="sync")
                m.d.comb += [rp.addr.eq(delay(m, sf, 1, "sf_b") if late else sf), rp.en.eq(1)]
                x_read = rp.data

        # Stage B: the input beat arrives (the weight word is read); Stage C: both registered
        # (the multipliers' input registers; the weight word's is the block RAM's own output
        # register on the ECP5, nnaccel.boards.ecp5_bram), one stage later with late weights.
        v_b, from_b, first_b, last_b = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [v_b.eq(issue), from_b.eq(take), first_b.eq(sf == 0), last_b.eq(last_a)]
        if not all_from_buffer:
            x_b = Signal(simd * xbits)
            m.d.sync += x_b.eq(xin)
        # datapath registers have no reset (the valid bits say what they hold), so that the
        # ECP5 flow can fold them into the DSP blocks' registers (nnaccel.boards.ecp5_bram);
        # with XNOR lanes one copy per group of PEs (input_copies), each marked to be kept
        copies = input_copies(p)

        def held(name, k):
            return Signal(simd * xbits, reset_less=True, attrs=KEEP if copies > 1 else {},
                          name=name if copies == 1 else f"{name}{k}")

        x_cs = [held("x_c", k) for k in range(copies)]
        for k, x_c in enumerate(x_cs):
            if buffered:
                m.d.sync += x_c.eq(x_read if all_from_buffer else Mux(from_b, x_b, x_read))
            else:
                # one beat per vector: x_c keeps it for the other neuron folds (no buffer, no
                # mux)
                with m.If(from_b):
                    m.d.sync += x_c.eq(x_b)
                if late:
                    x_late = held("x_late", k)
                    m.d.sync += x_late.eq(x_c)
                    x_cs[k] = x_late
        v_c, first_c, last_c = (delay(m, s, w_stages - 1, n) for s, n in
                                ((v_b, "v"), (first_b, "first"), (last_b, "last")))
        tail = p.in_features - (sf_n - 1) * simd  # real lanes in the last synapse fold
        live = [(j < tail) | ~last_c for j in range(simd)]
        products = [[self._lane(_field(w_c, q * simd + j, wbits, p.weight_dtype.signed),
                                _field(x_cs[min(q // INPUT_COPY_PES, copies - 1)], j,
                                       xbits, p.in_dtype.signed), live[j])
                     for j in range(simd)] for q in range(pe)]
        x_c = x_cs[0]

        # Stage D: registered products (the multipliers' output registers); with two products
        # per multiplier, two more stages pack the operands and split the products. Then the
        # adder trees, pipelined by width; then the accumulators, whose sum goes into the FIFO
        # in the cycle after a neuron fold's last beat: nothing but the accumulators' own
        # registers lies before the FIFO's write. An accumulator loads the beat's sum onto its
        # own, or alone on a fold's first beat: that choice follows the adder, so the flag's
        # fan-out over every accumulator bit reaches one LUT, not a carry chain.
        if p.packed_products:
            products = self._packed(m, products, w_c, x_c)
        if p.logic_multipliers:
            products = self._split(m, products, w_c, x_c)
        sums = self._sums(m, products)
        stages = 2 * p.packed_products + (p.logic_multipliers > 0) + sums[0][1]
        v_e, first_e, last_e = (delay(m, s, stages, n) for s, n in
                                ((v_c, "v"), (first_c, "first"), (last_c, "last")))
        acc = Signal(o.payload.shape())
        with m.If(v_e):
            m.d.sync += [acc[q].eq(Mux(first_e, sums[q][0], acc[q] + sums[q][0]))
                         for q in range(pe)]
        done = Signal()
        m.d.sync += done.eq(v_e & last_e)
        m.d.comb += [fifo.i_data.payload.eq(acc), fifo.i_data.valid.eq(done)]
        return m

    def _sums(self, m, products):
        """``[(sum, stages)]`` of every PE: XNOR lanes into a popcount whose first levels are
        look-up-table logic before its first register (:func:`pipelined_popcount`), other
        lanes' products registered (the multipliers' output registers), then an adder tree
        pipelined by width."""
        if self.xnor:
            return [pipelined_popcount(m, row, f"tree{q}") for q, row in enumerate(products)]
        sums = []
        for q, row in enumerate(products):
            prod_d = [Signal(v.shape(), name=f"prod_{q}_{j}", reset_less=True)
                      for j, v in enumerate(row)]
            m.d.sync += [r.eq(v) for r, v in zip(prod_d, row, strict=True)]
            total, stages = pipelined_tree_sum(m, prod_d, f"tree{q}")
            sums.append((total, 1 + stages))
        return sums

    def _packed(self, m, products, w_word, x_word):
        """Two products per multiplier (``params.packed_products``): PEs ``2r`` and ``2r+1``
        share input ``j``, so ``(w_a + w_b * 2**S) * x = w_a*x + (w_b*x) * 2**S`` with ``S`` the
        width of a product; the low ``S`` bits are ``w_a*x`` (two's complement when signed), the
        rest ``w_b*x`` less the low part's sign. Registers the packed operands (the multipliers'
        input registers) and the packed products (their output registers) and returns the split
        products, two cycles after ``products``."""
        p = self.params
        simd, wbits, xbits = p.simd, p.weight_dtype.bits, p.in_dtype.bits
        w_signed = p.weight_dtype.signed
        out = [list(row) for row in products]
        for r in range(p.pe // 2):
            for j in range(simd):
                shape = products[2 * r][j].shape()
                s = shape.width
                wa = _field(w_word, 2 * r * simd + j, wbits, w_signed)
                wb = _field(w_word, (2 * r + 1) * simd + j, wbits, w_signed)
                if w_signed:
                    high = (wb - wa[-1])[:wbits + 1]
                    a = Cat(wa, wa[-1].replicate(s - wbits), high).as_signed()
                else:
                    a = Cat(wa, Const(0, s - wbits), wb)
                # registered operands, so nothing but the multiplier lies between registers
                a_reg = Signal(a.shape(), name=f"pair_a_{r}_{j}", reset_less=True)
                x_reg = Signal(signed(xbits) if p.in_dtype.signed else unsigned(xbits),
                               name=f"pair_x_{r}_{j}", reset_less=True)
                packed = Signal(signed(2 * s + 1), name=f"pair_{r}_{j}", reset_less=True)
                m.d.sync += [a_reg.eq(a), x_reg.eq(_field(x_word, j, xbits, p.in_dtype.signed)),
                             packed.eq(a_reg * x_reg)]
                low = packed[:s].as_signed() if shape.signed else packed[:s]
                high = packed[s:] + (low[-1] if shape.signed else 0)
                out[2 * r][j], out[2 * r + 1][j] = low, high[:s].as_signed() \
                    if shape.signed else high[:s]
        for q in range(p.pe - p.pe % 2, p.pe):  # an odd PE: its products delayed alike
            for j in range(simd):
                out[q][j] = delay(m, products[q][j], 2, f"single_{q}_{j}")
        return out

    def _split(self, m, products, w_word, x_word):
        """Multipliers split between DSP blocks and logic (``params.dsp_multipliers``): a DSP
        lane's product is registered once more (between the multiplier's output register and
        the adder tree), a logic lane's is a shift-and-add over the weight's bits
        (:func:`~nnaccel.hw.common.lanes.logic_product`); both one cycle later than
        ``products``, in the products' shapes."""
        p = self.params
        simd, wbits, xbits = p.simd, p.weight_dtype.bits, p.in_dtype.bits
        out = []
        for q, row in enumerate(products):
            out.append([])
            for j, product in enumerate(row):
                late = Signal(product.shape(), name=f"late_{q}_{j}", reset_less=True)
                if p.dsp_lane(q, j):
                    m.d.sync += late.eq(product)
                else:
                    w = _field(w_word, q * simd + j, wbits, p.weight_dtype.signed)
                    x = _field(x_word, j, xbits, p.in_dtype.signed)
                    m.d.comb += late.eq(logic_product(m, x, w, f"lmul_{q}_{j}"))
                out[q].append(late)
        return out

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
        self.stage = OutputStage.from_params(params.output, pipelined=True)
        super().__init__({
            "i_data": In(vector_stream(params.in_dtype.shape, params.simd)),
            "o_data": Out(vector_stream(params.output.out_shape, params.pe)),
        })

    def elaborate(self, platform):
        m = Module()
        core_then_stage(m, self, self.core, self.stage)
        return m

