"""Stream building blocks: a skid buffer, a FIFO and a width converter (gearbox).

All three are ``wiring.Component`` with ``i_data``/``o_data`` ports of ``amaranth.lib.stream``
and obey the stream rules: ``o_data.valid`` never depends combinationally on ``o_data.ready``
and never drops before the transfer.
"""

from amaranth import Cat, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import cdiv, check_positive
from .memory import NO_RW_CHECK, bram_blocks, output_register, registered_read

__all__ = ["SkidBuffer", "StreamFifo", "fifo_in_block_ram", "fifo_geometry", "Gearbox",
           "Broadcast", "check_positive", "vector_stream"]


def vector_stream(elem_shape, n):
    """Signature of a stream of vector beats: ``n`` elements of ``elem_shape`` per beat
    (``data.ArrayLayout``; element ``j`` of beat ``b`` is vector element ``b*n + j``)."""
    return stream.Signature(data.ArrayLayout(elem_shape, n))


class SkidBuffer(wiring.Component):
    """A registered stream stage that registers ``ready`` too (two entries).

    Latency 1 cycle; throughput one beat per cycle under any backpressure. Breaks every
    combinational path between its two sides.
    """

    def __init__(self, shape):
        self._shape = shape
        super().__init__({"i_data": In(stream.Signature(shape)),
                          "o_data": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_data, self.o_data
        skid = Signal(self._shape)
        skid_valid = Signal()
        m.d.comb += i.ready.eq(~skid_valid)
        with m.If(o.ready | ~o.valid):
            with m.If(skid_valid):
                m.d.sync += [o.payload.eq(skid), o.valid.eq(1), skid_valid.eq(0)]
            with m.Else():
                m.d.sync += [o.payload.eq(i.payload), o.valid.eq(i.valid)]
        with m.Elif(i.valid & ~skid_valid):
            m.d.sync += [skid.eq(i.payload), skid_valid.eq(1)]
        return m


def core_then_stage(m, outer, core, stage):
    """Wire an engine made of a ``core`` (``i_data``, raw results on ``o_raw``) and its output
    ``stage`` into ``outer``'s ``i_data``/``o_data``, with a :class:`SkidBuffer` between them
    (the stage's ready never reaches back into the core combinationally)."""
    m.submodules.core = core
    m.submodules.skid = skid = SkidBuffer(core.o_raw.payload.shape())
    m.submodules.stage = stage
    wiring.connect(m, wiring.flipped(outer.i_data), core.i_data)
    wiring.connect(m, core.o_raw, skid.i_data)
    wiring.connect(m, skid.o_data, stage.i_data)
    wiring.connect(m, stage.o_data, wiring.flipped(outer.o_data))


#: memory_libmap's costs on the ECP5, as it weighs where a RAM goes: a DP16KD, a 16x4
#: distributed RAM cell (TRELLIS_DPR16X4, plus a 2:1 multiplexer per bit and extra 16 words), a
#: bit in a flip-flop.
_BRAM_COST, _LUTRAM_COST, _FF_COST = 128, 4, 1


def fifo_in_block_ram(depth, width):
    """Whether synthesis puts a RAM of ``depth`` words of ``width`` bits (a FIFO's memory) in
    block RAM: when a block RAM costs less than distributed RAM and than flip-flops."""
    if depth <= 1:
        return False
    bram = _BRAM_COST * bram_blocks(depth, width)
    return bram < min(_lutram_cost(depth, width), _FF_COST * depth * width)


def _lutram_cost(depth, width):
    return _LUTRAM_COST * cdiv(depth, 16) * cdiv(width, 4) + (cdiv(depth, 16) - 1) * width / 2


def fifo_geometry(depth, width, block_ram=None):
    """``(stages, capacity)`` of a :class:`StreamFifo` of ``depth`` beats of ``width`` bits:
    registers behind its memory's read port (2 where the memory goes to block RAM,
    ``block_ram``, or when None :func:`fifo_in_block_ram`'s choice; else 1) and the beats it
    holds (``depth``, at least ``stages + 2``); its memory has ``capacity - stages`` words."""
    if block_ram is None:
        block_ram = fifo_in_block_ram(depth - 2, width)
    stages = 2 if block_ram else 1
    return stages, max(depth, stages + 2)


class StreamFifo(wiring.Component):
    """A synchronous FIFO of ``depth`` beats on streams (block RAM when large).

    A memory and, behind its read port, a stall pipeline of :attr:`stages` registers, the last
    one driving ``o_data``: one register (:func:`registered_read`) when the memory is distributed
    RAM or flip-flops, two when it is block RAM, the second an :func:`output_register` that the
    ECP5 flow folds into the DP16KD's own (so the block RAM's 5.6 ns clock-to-output never
    reaches the consumer's logic). ``block_ram``: two stages (True) or one (False); None: two
    where :func:`fifo_in_block_ram` puts the memory in block RAM. Each stage loads while it is
    empty or the one after it loads: ``o_data.ready`` reaches only clock enables and the next
    state of registers. ``o_data.valid``, ``o_data.payload`` and ``i_data.ready`` are
    registers: no combinational path crosses the FIFO.

    Throughput one beat per cycle in and out under any stalls: ``o_data.valid`` is high from
    :attr:`latency` cycles after the oldest beat inside came in (2, or 3 with two stages);
    ``i_data.ready`` while fewer than :attr:`capacity` beats are inside: ``depth``, at least
    ``stages + 2`` (the memory holds at least two words, as a word read frees its place for
    ``i_data.ready`` only a cycle later).
    """

    def __init__(self, shape, depth, *, block_ram=None):
        self._shape = shape
        self.depth = check_positive("depth", depth)
        #: Registers behind the memory's read port (2 for block RAM, else 1); beats it holds
        #: (memory words + stages).
        self.stages, self.capacity = fifo_geometry(depth, Shape.cast(shape).width, block_ram)
        #: Cycles from a beat's transfer into the empty FIFO to its ``o_data.valid``.
        self.latency = self.stages + 1
        super().__init__({"i_data": In(stream.Signature(shape)),
                          "o_data": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_data, self.o_data
        width = Shape.cast(self._shape).width
        words = self.capacity - self.stages
        # one stage: the memory must not go to block RAM, whose read would reach the consumer
        # unregistered (5.6 ns); where distributed RAM costs less than flip-flops, say so (at a
        # near tie yosys 0.23 put digits_sparse's 40 x 64 FIFO in a DP16KD)
        style = ({"ram_style": "distributed"} if self.stages == 1 and _lutram_cost(words, width)
                 < _FF_COST * words * width else {})
        m.submodules.mem = mem = memory.Memory(shape=unsigned(width), depth=words, init=[],
                                               attrs={**NO_RW_CHECK, **style})
        # words in memory; ``has``: not none, ``ready``: not all
        held = Signal(range(words + 1))
        has = Signal()
        ready = Signal(init=1)
        produce, consume = Signal(range(words)), Signal(range(words))
        valid = [Signal(name=f"valid{k}") for k in range(self.stages)]
        # stage k loads (from the memory, or stage k-1) while empty or while stage k+1 loads
        load = [Signal(name=f"load{k}") for k in range(self.stages)]
        after = o.ready
        for k in reversed(range(self.stages)):
            m.d.comb += load[k].eq(~valid[k] | after)
            after = load[k]
        write = i.valid & ready
        read = load[0] & has
        wport = mem.write_port()
        m.d.comb += [wport.addr.eq(produce), wport.data.eq(Value.cast(i.payload)),
                     wport.en.eq(write), i.ready.eq(ready)]
        # the read of a word written in the same cycle never happens: ``has`` counts a word
        # from the cycle after its write, and a write needs a free word (``ready``)
        data = registered_read(m, mem, consume, en=load[0], name="fifo_rd")
        m.d.sync += valid[0].eq(Mux(load[0], has, valid[0]))
        if self.stages == 2:
            data = output_register(m, data, en=load[1], name="fifo_q")
            m.d.sync += valid[1].eq(Mux(load[1], valid[0], valid[1]))
        # the flags' next values from comparisons of registers: the handshakes reach them
        # through a multiplexer, not through the counter's adder
        grow, shrink = write & ~read, read & ~write
        m.d.sync += [held.eq(held + write - read),
                     has.eq(Mux(grow, 1, Mux(shrink, held != 1, has))),
                     ready.eq(Mux(shrink, 1, Mux(grow, held != words - 1, ready)))]
        with m.If(write):
            m.d.sync += produce.eq(Mux(produce == words - 1, 0, produce + 1))
        with m.If(read):
            m.d.sync += consume.eq(Mux(consume == words - 1, 0, consume + 1))
        m.d.comb += [Value.cast(o.payload).eq(data), o.valid.eq(valid[-1])]
        # beats inside (for proofs and testbenches): the memory's and the stages'
        level = Signal(range(self.capacity + 1))
        m.d.comb += level.eq(held + sum(valid))
        return m


class Gearbox(wiring.Component):
    """Converts vectors of ``count`` elements from ``n_in`` to ``n_out`` elements per beat.

    One of ``n_in``, ``n_out`` must divide the other. A vector takes ``ceil(count/n_in)`` input
    beats and ``ceil(count/n_out)`` output beats; padding elements past ``count`` are undefined on
    both sides (consumers ignore them). No added latency (combinational on the data path, with
    registers only for the collected chunks); one input or output beat per cycle.
    """

    def __init__(self, elem_shape, *, n_in, n_out, count):
        check_positive("n_in", n_in)
        check_positive("n_out", n_out)
        check_positive("count", count)
        if n_in % n_out and n_out % n_in:
            raise ValueError(f"n_in ({n_in}) and n_out ({n_out}) must divide one another")
        self._elem = elem_shape
        self.n_in, self.n_out, self.count = n_in, n_out, count
        super().__init__({
            "i_data": In(vector_stream(elem_shape, n_in)),
            "o_data": Out(vector_stream(elem_shape, n_out)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_data, self.o_data
        w = Shape.cast(self._elem).width
        ibits, obits = Value.cast(i.payload), Value.cast(o.payload)
        if self.n_in == self.n_out:
            m.d.comb += [obits.eq(ibits), o.valid.eq(i.valid), i.ready.eq(o.ready)]
            return m
        if self.n_in > self.n_out:
            k = self.n_in // self.n_out
            beats = cdiv(self.count, self.n_out)
            sub = Signal(range(k))
            # whether this output beat is its input beat's last: a register loaded with the
            # counters, so the input's ready is one AND away from a flip-flop; the vector's
            # beat is counted only when its last input beat is short
            last_sub = Signal(init=k == 1 or beats == 1)
            next_sub = Mux(last_sub, 0, sub + 1)
            next_last = next_sub == k - 1
            if beats % k:
                beat = Signal(range(beats))
                next_beat = Mux(beat == beats - 1, 0, beat + 1)
                next_last = next_last | (next_beat == beats - 1)
            chunk = obits.shape().width
            m.d.comb += [
                obits.eq(ibits.word_select(sub, chunk)),
                o.valid.eq(i.valid),
                i.ready.eq(o.ready & last_sub),
            ]
            with m.If(o.valid & o.ready):
                m.d.sync += [sub.eq(next_sub), last_sub.eq(next_last)]
                if beats % k:
                    m.d.sync += beat.eq(next_beat)
            return m
        k = self.n_out // self.n_in
        beats = cdiv(self.count, self.n_in)
        chunk = self.n_in * w
        sub = Signal(range(k))
        beat = Signal(range(beats))
        held = [Signal(chunk, name=f"held{j}") for j in range(k - 1)]
        # whether this input beat completes an output beat: a register loaded with the
        # counters, so the output's valid is one AND away from a flip-flop (the next FIFO's
        # write and word count follow it)
        final = Signal(init=beats == 1)
        next_sub = Mux(final, 0, sub + 1)
        next_beat = Mux(beat == beats - 1, 0, beat + 1)
        # every output beat whole (no short last one): the chunks shift through the held
        # registers, no multiplexer or decoder per chunk
        whole = beats % k == 0
        m.d.comb += [
            obits.eq(Cat(*(held if whole else (Mux(sub == j, ibits, held[j])
                                              for j in range(k - 1))), ibits)),
            o.valid.eq(i.valid & final),
            i.ready.eq(Mux(final, o.ready, 1)),
        ]
        with m.If(i.valid & i.ready):
            m.d.sync += [sub.eq(next_sub), beat.eq(next_beat),
                         final.eq((next_sub == k - 1) | (next_beat == beats - 1))]
            if whole:
                with m.If(~final):
                    m.d.sync += Cat(*held).eq(Cat(*held[1:], ibits))
            else:
                for j in range(k - 1):
                    with m.If(~final & (sub == j)):
                        m.d.sync += held[j].eq(ibits)
        return m


class Broadcast(wiring.Component):
    """A fork: one input stream ``i_data`` copied to ``k`` outputs ``o_data[j]``.

    A beat is offered to every output at once; each output that takes it is marked done, and
    the input beat is released (``i_data.ready``) in the cycle its last output takes it. So a
    slow consumer never makes another miss or repeat a beat; one beat per cycle when all
    consumers are ready. No latency, no storage besides ``k`` flags.
    """

    def __init__(self, shape, k):
        self._shape = shape
        self.k = check_positive("k", k)
        super().__init__({
            "i_data": In(stream.Signature(shape)),
            "o_data": Out(stream.Signature(shape)).array(k),
        })

    def elaborate(self, platform):
        m = Module()
        i = self.i_data
        done = Signal(self.k)
        release = Signal()
        for j in range(self.k):
            o = self.o_data[j]
            m.d.comb += [o.payload.eq(i.payload), o.valid.eq(i.valid & ~done[j])]
        m.d.comb += release.eq(Cat(done[j] | self.o_data[j].ready for j in range(self.k)).all())
        m.d.comb += i.ready.eq(release)
        with m.If(i.valid):
            with m.If(release):
                m.d.sync += done.eq(0)
            with m.Else():
                for j in range(self.k):
                    with m.If(self.o_data[j].ready):
                        m.d.sync += done[j].eq(1)
        return m
