"""The systolic-array engine (SPEC engine ``systolic``): one ``linear`` layer on batches.

Data path::

    i_data -> [gearbox] -> ActivationBuffer -> SystolicArray -> Collector -> skid -> OutputStage
                                 ^  sequencer (steps, weight rows)  ^            -> o_data
                                 weight ROM --------------------------

The batch is cut into chunks (:attr:`SystolicParams.chunk_sizes`); the activation buffer and
the collector are double-buffered by chunk, so loading chunk ``i+1``, computing chunk ``i`` and
draining chunk ``i-1`` overlap, and batches follow each other without a pause.
"""

import numpy as np
from amaranth import Cat, Module, Mux, Signal, Value, unsigned
from amaranth.hdl import Shape
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.arith import delay, pack_words
from ..common.memory import NO_RW_CHECK, Rom, pipelined_read
from ..common.outstage import OutputStage
from ..common.reference import acc_bounds, bits_for_range
from ..common.stream import Gearbox, SkidBuffer, vector_stream
from .array import SystolicArray
from .params import READ_LATENCY, RMW_LATENCY, Dataflow, SystolicParams
from .reference import os_weight_words, tile_psum_bounds, ws_weight_words

__all__ = ["ActivationBuffer", "WSSequencer", "OSSequencer", "Collector", "SystolicEngine",
           "tag_layout"]


def _bits(n):
    """Bits of a counter over ``0 .. n-1`` (at least 1)."""
    return max(1, (n - 1).bit_length())


def _wrap(value, limit):
    """``value + 1`` modulo ``limit``."""
    return Mux(value == limit - 1, 0, value + 1)


def tag_layout(params):
    """What travels with a step through the array to the collector: the collector address
    (``base = bank * ceil(M/C) + mt`` and the vector ``b`` inside the chunk), whether the step
    starts a sum (``first``), ends the chunk (``end``), and the chunk's last vector ``nbm1``."""
    low = _bits(params.batch_tile)
    return data.StructLayout({"base": range(2 * params.m_tiles), "bank": 1, "b": low,
                              "first": 1, "end": 1, "nbm1": low})


class _BankFlags:
    """Two per-bank flags with set and clear masks applied together."""

    def __init__(self, m, name):
        self.value = Signal(2, name=name)
        self.set = Signal(2, name=f"{name}_set")
        self.clear = Signal(2, name=f"{name}_clear")
        m.d.sync += self.value.eq((self.value & ~self.clear) | self.set)

    def __getitem__(self, bank):
        return self.value.bit_select(bank, 1)


class ActivationBuffer(wiring.Component):
    """Double-buffered store of the input vectors of a chunk.

    Takes the vectors of every batch from ``i_data`` (beats of ``beat`` elements, vector after
    vector), chunk after chunk, alternating between two halves; ``o_filled[h]`` rises when half
    ``h`` holds a whole chunk (of ``o_count[h]`` vectors) and falls on ``i_release[h]``, after
    which the half takes the next chunk. Reads take :data:`READ_LATENCY` cycles from
    ``i_addr`` to ``o_x``: weight-stationary, word ``(h * batch_tile + b) * KT + kt`` is the
    R-element k tile ``kt`` of vector ``b``; output-stationary, every row ``r`` reads word
    ``h * ceil(K/in_beat) + k // in_beat`` of vector ``r`` of the chunk and lane ``i_lane``.

    The two cycles are the block RAM's read register and :func:`output_register`, which the
    ECP5 flow folds into the block RAM, so no logic follows its slow clock-to-output. The
    sequencer reads only a filled half, which the input side writes only after its release, so
    a read that matters never meets a write of the same word (the RAM is ``NO_RW_CHECK``).
    """

    def __init__(self, params):
        p = self.params = params
        self.ws = p.dataflow is Dataflow.WS
        self.beat = p.rows if self.ws else p.in_beat
        self.words = p.batch_tile * p.k_tiles if self.ws else p.in_beats
        x = p.in_dtype.shape
        super().__init__({
            "i_data": In(vector_stream(x, self.beat)),
            "o_filled": Out(2),
            "o_count": Out(data.ArrayLayout(range(p.batch_tile + 1), 2)),
            "i_release": In(2),
            "i_addr": In(range(2 * self.words)),
            "i_lane": In(range(self.beat)),
            "o_x": Out(data.ArrayLayout(x, p.rows)),
        })

    def elaborate(self, platform):
        m = Module()
        p, i = self.params, self.i_data
        sizes = p.chunk_sizes
        per_vector = p.k_tiles if self.ws else p.in_beats
        bank, chunk = Signal(), Signal(range(len(sizes)))
        vec, beat = Signal(range(p.batch_tile)), Signal(range(per_vector))
        waddr = Signal(range(2 * self.words))
        nb = Mux(chunk == len(sizes) - 1, sizes[-1], sizes[0])
        filled = _BankFlags(m, "filled")
        counts = [Signal(range(p.batch_tile + 1), name=f"count{h}") for h in range(2)]
        m.d.comb += [i.ready.eq(~filled[bank]), self.o_filled.eq(filled.value),
                     filled.clear.eq(self.i_release)]
        m.d.comb += [self.o_count[h].eq(counts[h]) for h in range(2)]
        write = i.valid & i.ready
        vector_end = beat == per_vector - 1
        chunk_end = vector_end & (vec == nb - 1)
        with m.If(write):
            m.d.sync += [beat.eq(_wrap(beat, per_vector)), waddr.eq(waddr + 1)]
            with m.If(vector_end):
                m.d.sync += vec.eq(vec + 1)
                if not self.ws:
                    m.d.sync += waddr.eq(Mux(bank, self.words, 0))
            with m.If(chunk_end):
                m.d.sync += [vec.eq(0), bank.eq(~bank), chunk.eq(_wrap(chunk, len(sizes))),
                             waddr.eq(Mux(bank, 0, self.words))]
                m.d.comb += filled.set.eq(Mux(bank, 0b10, 0b01))
        for h in range(2):
            with m.If(write & chunk_end & (bank == h)):
                m.d.sync += counts[h].eq(nb)

        xbits = Shape.cast(p.in_dtype.shape).width
        payload = Value.cast(i.payload)
        lane = delay(m, self.i_lane, READ_LATENCY, "lane")
        for r in range(1 if self.ws else p.rows):
            mem = Memory(shape=unsigned(len(payload)), depth=2 * self.words, init=[],
                         attrs=NO_RW_CHECK)
            m.submodules[f"mem{r}"] = mem
            wp = mem.write_port()
            m.d.comb += [wp.addr.eq(waddr), wp.data.eq(payload),
                         wp.en.eq(write if self.ws else write & (vec == r))]
            word = pipelined_read(m, mem, self.i_addr, name=f"word{r}", read_name=f"read{r}")
            if self.ws:
                m.d.comb += Value.cast(self.o_x).eq(word)
            else:
                m.d.comb += Value.cast(self.o_x[r]).eq(word.word_select(lane, xbits))
        return m


def _sequencer_ports(params, buffer_words, tag):
    p = params
    ports = {
        "i_filled": In(2), "i_count": In(data.ArrayLayout(range(p.batch_tile + 1), 2)),
        "o_release": Out(2),
        "i_busy": In(2), "o_claim": Out(2), "o_claim_count": Out(range(p.batch_tile + 1)),
        "o_addr": Out(range(2 * buffer_words)), "o_lane": Out(range(p.in_beat)),
        "o_rom_addr": Out(range(max(2, p.weight_words))),
        # The step, registered: aligned with the buffer's and the ROM's read data.
        "o_valid": Out(1), "o_first": Out(1), "o_last": Out(1), "o_tag": Out(tag),
    }
    return ports


class _Chunk:
    """Chunk bookkeeping shared by the sequencers: wait for a filled input half (``ib``) and a
    free collector half (``cb``), claim them (``start``), count slot cycles ``s`` of
    ``period_of(nb)`` cycles per tile and output tiles ``mt``, and at the chunk's end release
    the input half and move on to the other halves."""

    def __init__(self, seq, m, *, ready, period_of):
        p = seq.params
        self.mt = Signal(range(p.m_tiles))
        self.running, self.ib, self.cb = Signal(), Signal(), Signal()
        self.s = Signal(range(max(p.period(n) for n in set(p.chunk_sizes))))
        self.nb = Signal(range(p.batch_tile + 1))
        self.base = Signal(range(2 * p.m_tiles))  # collector base: cb * ceil(M/C) + mt
        period = Signal.like(self.s)  # period - 1
        count = seq.i_count[self.ib]
        self.start = (ready & ~self.running & seq.i_filled.bit_select(self.ib, 1)
                      & ~seq.i_busy.bit_select(self.cb, 1))
        with m.If(self.start):
            m.d.sync += [self.running.eq(1), self.s.eq(0), self.mt.eq(0), self.nb.eq(count),
                         period.eq(period_of(count) - 1),
                         self.base.eq(Mux(self.cb, p.m_tiles, 0))]
            m.d.comb += [seq.o_claim.eq(Mux(self.cb, 0b10, 0b01)), seq.o_claim_count.eq(count)]
        self.slot_end = self.running & (self.s == period)
        with m.If(self.running):
            m.d.sync += self.s.eq(Mux(self.slot_end, 0, self.s + 1))
        self._m, self._seq = m, seq

    def finish(self, chunk_end):
        with self._m.If(chunk_end):
            self._m.d.sync += [self.running.eq(0), self.ib.eq(~self.ib), self.cb.eq(~self.cb)]
            self._m.d.comb += self._seq.o_release.eq(Mux(self.ib, 0b10, 0b01))


class _SequencerBase(wiring.Component):

    def _emit(self, m, **signals):
        """Drive the outputs ``signals`` ``READ_LATENCY`` cycles late, aligned with the read
        data of the activation buffer and the weight memory."""
        for name, value in signals.items():
            port = getattr(self, f"o_{name}")
            staged = Signal(port.shape(), name=f"{name}_0")
            m.d.comb += staged.eq(value)
            m.d.sync += port.eq(delay(m, staged, READ_LATENCY - 1, name))


class WSSequencer(_SequencerBase):
    """Weight-stationary schedule: for each chunk, for each output tile ``mt``, for each k tile
    ``kt``, one slot of ``max(nb, R)`` cycles issuing the ``nb`` vectors of the chunk while the
    R weight rows of the next tile (cyclically) go into the cells' shadow registers. After reset
    one prologue slot loads the first tile."""

    def __init__(self, params, buffer_words):
        self.params = params
        self.buffer_words = buffer_words
        tag = tag_layout(params)
        ports = _sequencer_ports(params, buffer_words, tag)
        ports.update({"o_wl_row": Out(range(params.rows)), "o_wl_en": Out(1)})
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        rows, kts, mts = p.rows, p.k_tiles, p.m_tiles
        primed = Signal()
        floor = p.period(1)
        st = _Chunk(self, m, ready=primed, period_of=lambda n: Mux(n > floor, n, floor))
        s, mt = st.s, st.mt
        kt = Signal(range(kts))
        xbase, xaddr = Signal.like(self.o_addr), Signal.like(self.o_addr)
        with m.If(st.start):
            m.d.sync += [kt.eq(0), xbase.eq(Mux(st.ib, self.buffer_words, 0)),
                         xaddr.eq(Mux(st.ib, self.buffer_words, 0))]

        # Weight rows: a prologue after reset, then R rows in the first R cycles of each slot.
        pro = Signal(range(rows))
        load = Mux(primed, st.running & (s < rows), 1)
        row = Mux(primed, s, pro)
        with m.If(~primed):
            m.d.sync += pro.eq(pro + 1)
            with m.If(pro == rows - 1):
                m.d.sync += [primed.eq(1), pro.eq(0)]
        waddr = Signal.like(self.o_rom_addr)
        m.d.comb += self.o_rom_addr.eq(waddr)
        with m.If(load):
            m.d.sync += waddr.eq(_wrap(waddr, p.weight_words))

        # Steps: vector s of the chunk, k tile kt.
        step = st.running & (s < st.nb)
        m.d.comb += self.o_addr.eq(xaddr)
        with m.If(step):
            m.d.sync += xaddr.eq(xaddr + kts)
        tile_end = (mt == mts - 1) & (kt == kts - 1)
        tag = Signal(self.o_tag.shape())
        m.d.comb += [tag.base.eq(st.base), tag.bank.eq(st.cb), tag.b.eq(s),
                     tag.first.eq(kt == 0), tag.end.eq(tile_end & (s == st.nb - 1)),
                     tag.nbm1.eq(st.nb - 1)]
        self._emit(m, valid=step, first=s == 0, last=0, tag=tag, wl_row=row, wl_en=load)
        with m.If(st.slot_end):
            with m.If(kt == kts - 1):
                m.d.sync += [kt.eq(0), mt.eq(_wrap(mt, mts)), st.base.eq(st.base + 1),
                             xbase.eq(xbase - (kts - 1)), xaddr.eq(xbase - (kts - 1))]
            with m.Else():
                m.d.sync += [kt.eq(kt + 1), xbase.eq(xbase + 1), xaddr.eq(xbase + 1)]
        st.finish(st.slot_end & tile_end)
        return m


class OSSequencer(_SequencerBase):
    """Output-stationary schedule: for each chunk (R vectors, one per row), for each output
    tile ``mt``, one slot of ``max(K, nb)`` cycles issuing steps ``k = 0 .. K-1`` (input ``k`` of
    every vector of the chunk, weights ``k`` of the tile's C outputs)."""

    def __init__(self, params, buffer_words):
        self.params = params
        self.buffer_words = buffer_words
        ports = _sequencer_ports(params, buffer_words, tag_layout(params))
        ports["o_rows"] = Out(params.rows)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        k_n, mts, beat = p.in_features, p.m_tiles, p.in_beat
        st = _Chunk(self, m, ready=1, period_of=lambda n: Mux(n > k_n, n, k_n))
        s, mt = st.s, st.mt
        lane, xaddr = Signal.like(self.o_lane), Signal.like(self.o_addr)
        rows = Signal(p.rows)
        with m.If(st.start):
            m.d.sync += [lane.eq(0), xaddr.eq(Mux(st.ib, self.buffer_words, 0))]
            count = self.i_count[st.ib]
            m.d.sync += rows.eq(Cat(count > r for r in range(p.rows)))
        step = st.running & (s < k_n)
        waddr = Signal.like(self.o_rom_addr)
        m.d.comb += [self.o_addr.eq(xaddr), self.o_lane.eq(lane), self.o_rom_addr.eq(waddr)]
        with m.If(step):
            m.d.sync += [waddr.eq(_wrap(waddr, p.weight_words)), lane.eq(_wrap(lane, beat))]
            with m.If(lane == beat - 1):
                m.d.sync += xaddr.eq(xaddr + 1)
        tag = Signal(self.o_tag.shape())
        m.d.comb += [tag.base.eq(st.base), tag.bank.eq(st.cb), tag.first.eq(1),
                     tag.end.eq(mt == mts - 1), tag.nbm1.eq(st.nb - 1)]
        self._emit(m, valid=step, first=s == 0, last=s == k_n - 1, tag=tag, rows=rows)
        with m.If(st.slot_end):
            m.d.sync += [mt.eq(_wrap(mt, mts)), st.base.eq(st.base + 1), lane.eq(0),
                         xaddr.eq(Mux(st.ib, self.buffer_words, 0))]
        st.finish(st.slot_end & (mt == mts - 1))
        return m


class Collector(wiring.Component):
    """Accumulates the array's column outputs per chunk and drains finished chunks.

    One memory per column, two halves (one per chunk in flight) of ``ceil(M/C)`` x
    ``2**b_bits`` accumulators, address ``base * 2**b_bits + b``. A column output flagged
    ``first`` is written, any other is added to what is there (weight-stationary sums over k
    tiles). The write of a chunk's last output marks its half done; the drain then reads it out
    in vector order (vector ``b``: output tiles ``0 .. ceil(M/C)-1``), one beat of C
    accumulators per cycle on ``o_raw``, and frees the half (``o_busy`` falls; the sequencer
    sets it with ``i_claim``, giving the chunk's vector count).

    Every block RAM read goes through the RAM's register and :func:`output_register` before
    any logic. The accumulation reads an address when its column output arrives and writes
    the sum :data:`RMW_LATENCY` cycles later, so a read does not see the writes of the two
    outputs before it. The weight-stationary schedule (see :mod:`.params`) returns to an
    accumulator exactly one slot of ``period(nb)`` cycles later (k tile after k tile; outputs
    1 cycle apart are different vectors or different tiles), so only a period of 2 (R <= 2 and
    a chunk of at most 2 vectors) reads a word in the cycle it is written: then
    (:attr:`forwards`) the sum being written is forwarded instead. No read meets a write of
    its word otherwise: the drain reads a half after its last write, an output-stationary
    output only writes.
    """

    def __init__(self, params, tag, row_shape):
        self.params = params
        acc = params.acc_shape
        c = params.cols
        super().__init__({
            "i_valid": In(c), "i_value": In(data.ArrayLayout(acc, c)),
            "i_tag": In(data.ArrayLayout(tag, c)), "i_row": In(data.ArrayLayout(row_shape, c)),
            "i_claim": In(2), "i_claim_count": In(range(params.batch_tile + 1)),
            "o_busy": Out(2),
            "o_raw": Out(vector_stream(acc, c)),
        })

    @property
    def forwards(self):
        """Whether an accumulator can be read in the cycle its previous sum is written (a
        weight-stationary slot of 2 cycles), so that sum is forwarded."""
        p = self.params
        return (p.dataflow is Dataflow.WS
                and min(p.period(nb) for nb in p.chunk_sizes) <= RMW_LATENCY)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        ws = p.dataflow is Dataflow.WS
        low = _bits(p.batch_tile)
        depth = 2 * p.m_tiles << low
        busy, done = _BankFlags(m, "busy"), _BankFlags(m, "done")
        counts = [Signal(range(p.batch_tile + 1), name=f"count{h}") for h in range(2)]
        m.d.comb += [busy.set.eq(self.i_claim), self.o_busy.eq(busy.value)]
        for h in range(2):
            with m.If(self.i_claim[h]):
                m.d.sync += counts[h].eq(self.i_claim_count)

        drain_addr, drain_en = Signal(range(depth)), Signal()
        for c in range(p.cols):
            mem = Memory(shape=p.acc_shape, depth=depth, init=[], attrs=NO_RW_CHECK)
            m.submodules[f"acc{c}"] = mem
            wp = mem.write_port()
            tag = self.i_tag[c]
            addr = Signal(range(depth), name=f"addr{c}")
            m.d.comb += addr.eq(Cat((tag.b if ws else self.i_row[c])[:low], tag.base))
            end = self.i_valid[c] & tag.end
            if not ws:
                end &= self.i_row[c] == tag.nbm1
            late = {name: delay(m, value, RMW_LATENCY, f"{name}{c}") for name, value in
                    (("valid", self.i_valid[c]), ("first", tag.first), ("addr", addr),
                     ("value", self.i_value[c]), ("end", end), ("bank", tag.bank))}
            total = self._accumulate(m, mem, wp, addr, late, c) if ws else late["value"]
            m.d.comb += [wp.addr.eq(late["addr"]), wp.en.eq(late["valid"]), wp.data.eq(total)]
            # the drain: the RAM's register and the output register, advancing together
            m.d.comb += self.o_raw.payload[c].eq(
                pipelined_read(m, mem, drain_addr, en=drain_en, out_en=drain_en,
                               name=f"raw{c}", read_name=f"drain{c}"))
            if c == p.cols - 1:
                with m.If(late["end"]):
                    m.d.comb += done.set.eq(Mux(late["bank"], 0b10, 0b01))
        self._drain(m, busy, done, counts, drain_addr, drain_en)
        return m

    def _accumulate(self, m, mem, wp, addr, late, c):
        """The sum to write for the output that arrived :data:`RMW_LATENCY` cycles ago
        (``late``): its value, or its value plus the accumulator read when it arrived."""
        stored = pipelined_read(m, mem, addr, name=f"stored{c}", read_name=f"rmw{c}")
        if self.forwards:
            # the output two cycles ahead wrote this word in the cycle it was read
            hit = Signal(name=f"hit{c}")
            m.d.comb += hit.eq(late["valid"] & (late["addr"] == addr))
            hit, written = delay(m, hit, 2, f"hit{c}"), delay(m, wp.data, 2, f"written{c}")
            stored = Mux(hit, written, stored)
        return Mux(late["first"], late["value"], stored + late["value"])

    def _drain(self, m, busy, done, counts, drain_addr, drain_en):
        p, o = self.params, self.o_raw
        low = _bits(p.batch_tile)
        bank, active = Signal(), Signal()
        b, mt = Signal(low), Signal(range(p.m_tiles))
        base, last_b = Signal(range(2 * p.m_tiles)), Signal(low)
        # two stages (the RAM's register, then its output register), advancing together
        advance, read = ~o.valid | o.ready, Signal()
        issue = active & advance
        m.d.comb += [drain_addr.eq(Cat(b, base)), drain_en.eq(advance)]
        with m.If(~active & done[bank]):
            m.d.sync += [active.eq(1), b.eq(0), mt.eq(0), base.eq(Mux(bank, p.m_tiles, 0)),
                         last_b.eq(Mux(bank, counts[1], counts[0]) - 1)]
        with m.If(advance):
            m.d.sync += [read.eq(issue), o.valid.eq(read)]
        with m.If(issue):
            m.d.sync += [mt.eq(_wrap(mt, p.m_tiles)), base.eq(base + 1)]
            with m.If(mt == p.m_tiles - 1):
                m.d.sync += [b.eq(b + 1), base.eq(Mux(bank, p.m_tiles, 0))]
                with m.If(b == last_b):
                    m.d.sync += [active.eq(0), bank.eq(~bank)]
                    m.d.comb += [busy.clear.eq(Mux(bank, 0b10, 0b01)),
                                 done.clear.eq(Mux(bank, 0b10, 0b01))]


def _prepare(params, weight):
    """The psum shape and the weight memory words of ``weight`` on ``params`` (TypeError /
    ValueError when they do not fit)."""
    if not isinstance(params, SystolicParams):
        raise TypeError(f"params must be SystolicParams, not {params!r}")
    p = params
    w = np.asarray(weight)
    if w.shape != (p.out_features, p.in_features) or w.dtype.kind not in "iuO":
        raise ValueError(f"weight must be an integer array of shape ({p.out_features}, "
                         f"{p.in_features}), not {w.shape} of {w.dtype}")
    if not p.weight_dtype.contains(w):
        raise ValueError(f"weight values lie outside {p.weight_dtype}")
    lo, hi = acc_bounds(w, p.in_dtype.lo, p.in_dtype.hi)
    if (any(int(a) < b for a, b in zip(lo, p.acc_lo, strict=True))
            or any(int(a) > b for a, b in zip(hi, p.acc_hi, strict=True))):
        raise ValueError("weight exceeds the accumulator bounds params was built for; "
                         "use SystolicParams.for_layer with these weights")
    if p.dataflow is Dataflow.WS:
        psum_shape = Shape(*bits_for_range(*tile_psum_bounds(
            w, p.rows, p.in_dtype.lo, p.in_dtype.hi)))
        words = ws_weight_words(w, p.rows, p.cols)
    else:
        psum_shape = p.acc_shape
        words = os_weight_words(w, p.cols)
    wbits = p.weight_dtype.bits
    return psum_shape, [pack_words(p.weight_dtype.encode(row), wbits) for row in words]


class SystolicEngine(wiring.Component):
    """One SPEC ``linear`` layer with its output stage on an R x C systolic array.

    ``i_data``: the B vectors of a batch, back to back, each in ``ceil(K/in_beat)`` beats of
    ``in_beat`` elements (hardware encoding of ``params.in_dtype``; padding ignored). ``o_data``:
    the B output vectors in order, each in ``ceil(M/C)`` beats of C elements (encoding of the
    output stage's shape; padding lanes undefined). Batches follow each other on the same
    streams without a pause. Bit-exact with SPEC 2.1 and 2.2: every width comes from worst-case
    bounds over the actual weights, so nothing overflows. Cycles: ``params.expected_cycles`` for
    the first batch after a reset (which also waits for the weight-stationary prologue),
    ``params.steady_cycles`` per batch back to back (see the cycle model in :mod:`.params`);
    the engine never drops a beat under any stall of either stream.

    Parameters
    ----------
    params : SystolicParams
    weight : (M, K) integer array
        The layer's weights, inside ``params.weight_dtype`` and within the bounds that
        ``params.acc_lo``/``acc_hi`` were computed for.
    """

    def __new__(cls, params, *, weight):
        # checked before the component exists, so a bad argument leaves no unused component
        psum_shape, words = _prepare(params, weight)
        self = super().__new__(cls)
        self.params, self.psum_shape, self._words = params, psum_shape, words
        return self

    def __init__(self, params, *, weight):
        p = self.params
        self.stage = OutputStage.from_params(p.output, pipelined=True)
        super().__init__({
            "i_data": In(vector_stream(p.in_dtype.shape, p.in_beat)),
            "o_data": Out(vector_stream(p.output.out_shape, p.cols)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        ws = p.dataflow is Dataflow.WS
        tag = tag_layout(p)
        m.submodules.buffer = buf = ActivationBuffer(p)
        upstream = wiring.flipped(self.i_data)
        if buf.beat != p.in_beat:
            m.submodules.gearbox = gear = Gearbox(p.in_dtype.shape, n_in=p.in_beat,
                                                  n_out=buf.beat, count=p.in_features)
            wiring.connect(m, upstream, gear.i_data)
            upstream = gear.o_data
        wiring.connect(m, upstream, buf.i_data)
        seq = (WSSequencer if ws else OSSequencer)(p, buf.words)
        m.submodules.sequencer = seq
        # READ_LATENCY: the block RAM's register, then its output register
        m.submodules.weights = rom = Rom(self._words, p.cols * p.weight_dtype.bits,
                                         registered=True)
        m.submodules.array = array = SystolicArray(
            dataflow=p.dataflow, rows=p.rows, cols=p.cols, x_shape=p.in_dtype.shape,
            w_shape=p.weight_dtype.shape, acc_shape=self.psum_shape, tag_shape=tag,
            dsp_cells=p.dsp_cells)
        m.submodules.collector = col = Collector(p, tag, array.o_row.shape().elem_shape)
        m.d.comb += [
            buf.i_release.eq(seq.o_release), buf.i_addr.eq(seq.o_addr),
            buf.i_lane.eq(seq.o_lane), seq.i_filled.eq(buf.o_filled),
            seq.i_count.eq(buf.o_count), seq.i_busy.eq(col.o_busy),
            col.i_claim.eq(seq.o_claim), col.i_claim_count.eq(seq.o_claim_count),
            rom.addr.eq(seq.o_rom_addr), rom.en.eq(1),
            array.i_x.eq(buf.o_x), array.i_valid.eq(seq.o_valid),
            array.i_first.eq(seq.o_first), array.i_last.eq(seq.o_last),
            array.i_tag.eq(seq.o_tag),
            col.i_valid.eq(array.o_valid), col.i_tag.eq(array.o_tag), col.i_row.eq(array.o_row),
        ]
        m.d.comb += [col.i_value[c].eq(array.o_value[c]) for c in range(p.cols)]
        weights = rom.data
        if ws:
            m.d.comb += [Value.cast(array.i_wl).eq(weights), array.i_wl_row.eq(seq.o_wl_row),
                         array.i_wl_en.eq(seq.o_wl_en)]
        else:
            m.d.comb += [Value.cast(array.i_w).eq(weights), array.i_rows.eq(seq.o_rows)]
        m.submodules.skid = skid = SkidBuffer(col.o_raw.payload.shape())
        m.submodules.stage = self.stage
        wiring.connect(m, col.o_raw, skid.i_data)
        wiring.connect(m, skid.o_data, self.stage.i_data)
        wiring.connect(m, self.stage.o_data, wiring.flipped(self.o_data))
        return m
