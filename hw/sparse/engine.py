"""The EIE-like sparse matrix-vector engine (SPEC engine ``sparse``).

Block diagram (see :mod:`.reference` for the cycle-level contract)::

    i_data -> LeadingNonZero --(value, column) broadcast--> N x ProcessingElement -> Collector
                                                                  (its FIFO) -> OutputStage

* :class:`LeadingNonZero` scans each input beat and broadcasts its non-zero activations, one per
  cycle, with their column index; zeros cost nothing (a beat without any costs one cycle). The
  broadcast stalls only when some PE cannot take the activation.
* Each :class:`ProcessingElement` owns the rows ``i = p mod N`` of the weight matrix in EIE's
  format (:mod:`nnaccel.hw.sparse.format`): a column pointer lookup, an activation queue, an
  entry iterator issuing one entry per cycle, codebook lookup, a multiplier and an accumulator
  bank (two banks: one vector is drained while the next is computed).
* :class:`Collector` reads the finished banks out row by row, PEs side by side, which is the
  output order (beat ``r`` carries rows ``r*N .. r*N + N - 1``), into a FIFO that it never
  overfills, so the read-out never waits on the output.
"""

from types import SimpleNamespace

import numpy as np
from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.arith import delay
from ..common.dtype import DTypeKind
from ..common.memory import NO_RW_CHECK, output_register, pipelined_read
from ..common.outstage import OutputStage
from ..common.reference import bits_for_range
from ..common.stream import Gearbox, SkidBuffer, StreamFifo, vector_stream
from .format import SparseMatrix, decode, encode
from .params import SparseParams
from .reference import IN_FLIGHT, raw_bounds

__all__ = ["check_matrix", "encode_weight", "token_layout", "LeadingNonZero",
           "ProcessingElement", "Collector", "SparseCore", "SparseEngine"]


#: yosys attributes of the PE memories: block RAM, and no logic around it for a read of the row
#: written in the same cycle (the PE never uses such a read: it forwards the accumulator's sum
#: and counts a queue entry readable only from the cycle after its write).
BLOCK_RAM = {"ram_style": "block", **NO_RW_CHECK}


def _shape(lo, hi):
    width, is_signed = bits_for_range(lo, hi)
    return Shape(width, is_signed)


def _bits(count):
    """Unsigned width that holds 0 .. count - 1 (at least 1)."""
    return max((count - 1).bit_length(), 1)


def token_layout(params):
    """One broadcast activation: its value, its column, whether it is one (``work``; a token
    without work only ends a vector) and whether it ends the vector (``last``)."""
    return data.StructLayout({"value": params.in_dtype.shape,
                              "col": unsigned(_bits(params.in_features)),
                              "work": 1, "last": 1})


def check_matrix(params, matrix):
    """Raise TypeError/ValueError unless ``matrix`` is an encoding that fits ``params``."""
    if not isinstance(params, SparseParams):
        raise TypeError(f"params must be SparseParams, not {params!r}")
    if not isinstance(matrix, SparseMatrix):
        raise TypeError(f"matrix must be a SparseMatrix, not {matrix!r}")
    want = (params.out_features, params.in_features)
    if matrix.shape != want or matrix.pe != params.pe:
        raise ValueError(f"matrix is {matrix.shape} on {matrix.pe} PEs, expected {want} on "
                         f"{params.pe}")
    if matrix.index_bits != params.index_bits:
        raise ValueError(f"matrix has {matrix.index_bits}-bit indices, params say "
                         f"{params.index_bits}")


def encode_weight(params, weight, codebook=None, *, whole_layer=False):
    """Check ``weight`` against ``params``; encode it with the params' PEs and index width.
    ``whole_layer``: ``params`` must carry the output stage (:meth:`SparseParams.for_layer`)."""
    if not isinstance(params, SparseParams):
        raise TypeError(f"params must be SparseParams, not {params!r}")
    if whole_layer and params.output is None:
        raise ValueError("params has no output stage: build it with SparseParams.for_layer")
    weight = np.asarray(weight, dtype=np.int64)
    want = (params.out_features, params.in_features)
    if weight.shape != want:
        raise ValueError(f"weight has shape {weight.shape}, expected {want}")
    if not params.weight_dtype.contains(weight):
        raise ValueError(f"weight values lie outside {params.weight_dtype}")
    if params.raw_lo is not None:
        lo, hi = raw_bounds(weight, params.in_dtype.lo, params.in_dtype.hi)
        if lo < params.raw_lo or hi > params.raw_hi:
            raise ValueError("weight exceeds the raw-sum bounds params was built for; use "
                             "SparseParams.for_layer with these weights")
    return encode(weight, params.pe, index_bits=params.index_bits, codebook=codebook)


def _at_most_one(bits):
    """Whether at most one bit of ``bits`` is set: a tree of (any, two or more) pairs."""
    pairs = [(bit, Const(0)) for bit in bits]
    while len(pairs) > 1:
        merged = [(a0 | a1, m0 | m1 | (a0 & a1))
                  for (a0, m0), (a1, m1) in zip(pairs[::2], pairs[1::2], strict=False)]
        pairs = merged + pairs[len(merged) * 2:]
    return ~pairs[0][1] if pairs else Const(1)


class LeadingNonZero(wiring.Component):
    """Turns input beats into a stream of non-zero activations (tokens), lowest column first.

    One token per cycle, in two stages behind an input register (which holds the beat as
    accepted, so no logic follows an input FIFO's block RAM read across the chip). The beat
    stage holds the taken beat split into groups
    of :attr:`GROUP` lanes, with each group's remaining non-zero lanes and, registered, the
    value and lane of its lowest one; the token register (the broadcast, ``o_token``) loads
    the lowest group's (a select among the groups' registers) whenever it is empty or its token
    leaves. A beat is taken from the input register in the cycle its predecessor's last token
    moves into the token register (or, when the beat stage is empty, at once), and the input
    register accepts the next beat in the same cycle, so a beat with ``n`` non-zero
    elements takes ``max(n, 1)`` cycles; its first token can leave two cycles after the beat was
    taken (three after it was accepted); a beat without non-zeros is dropped one cycle after it
    was taken. The last token of
    a vector has ``last`` set; when the vector's last beat holds no non-zero, a token without
    work carries it. Bipolar elements are never zero. Padding lanes of the last beat are
    ignored.
    """

    #: Lanes per group: each group's lowest non-zero is found within the group and registered.
    GROUP = 4

    def __init__(self, params):
        self.params = params
        self._layout = token_layout(params)
        super().__init__({
            "i_data": In(vector_stream(params.in_dtype.shape, params.in_beat)),
            "o_token": Out(stream.Signature(self._layout)),
        })

    def _lowest(self, m, bits, lanes, name):
        """``(lane, value)`` of the lowest set bit of ``bits`` (a one-hot AND-OR)."""
        k = len(bits)
        onehot = Signal(k, name=f"{name}_onehot")
        m.d.comb += onehot.eq(bits & ~(bits - 1))
        lane = 0
        value = 0
        for j in range(k):
            if j:
                lane = lane | Mux(onehot[j], j, 0)
            value = value | Mux(onehot[j], Value.cast(lanes[j]), 0)
        return lane, value

    def elaborate(self, platform):
        m = Module()
        p = self.params
        n, beats, g_lanes = p.in_beat, p.in_beats, self.GROUP
        i, o = self.i_data, self.o_token
        bipolar = p.in_dtype.kind is DTypeKind.BIPOLAR
        groups = [range(s, min(s + g_lanes, n)) for s in range(0, n, g_lanes)]
        shape = p.in_dtype.shape
        lane_bits = _bits(g_lanes)

        # the beat stage: the beat, each group's remaining non-zero lanes, the lowest one's
        # value and lane (registered), the column of lane 0, whether the beat ends the vector
        held = Signal(data.ArrayLayout(shape, n))
        masks = [Signal(len(g), name=f"mask{q}") for q, g in enumerate(groups)]
        low_value = [Signal(shape, name=f"low_value{q}") for q in range(len(groups))]
        low_lane = [Signal(lane_bits, name=f"low_lane{q}") for q in range(len(groups))]
        valid, final = Signal(), Signal()
        base = Signal(range(beats * n))
        next_base = Signal(range(beats * n))  # column of lane 0 of the next beat taken

        some = [mask.any() for mask in masks]
        sel = [Signal(name=f"sel{q}") for q in range(len(groups))]  # the lowest group
        for q in range(len(groups)):
            m.d.comb += sel[q].eq(some[q] & ~Cat(some[:q]).any() if q else some[q])
        # a token left (a set bit over all the masks), at most one left (none or one): registers
        # written with the masks, so the take and the input's ready start at flip-flops
        has_token = Signal()
        one_left = Signal(init=1)
        item = valid & (has_token | final)  # a token (or the vector's end) to move on
        fire = o.valid & o.ready
        move = item & (~o.valid | fire)

        # the token register: the selected group's registers
        value = 0
        offset = 0
        for q, g in enumerate(groups):
            value = value | Mux(sel[q], low_value[q], 0)
            offset = offset | Mux(sel[q], low_lane[q] + g.start, 0)
        with m.If(move):
            m.d.sync += [o.valid.eq(1), o.payload.value.eq(value),
                         o.payload.col.eq(base + offset), o.payload.work.eq(has_token),
                         o.payload.last.eq(final & one_left)]
        with m.Elif(fire):
            m.d.sync += o.valid.eq(0)

        # the beat stage: the moved token's lane cleared in its group, whose next lowest is
        # decoded from its registers alone (in parallel with the move)
        after = []  # the masks once the moved token's lane is cleared
        for q, g in enumerate(groups):
            rest = Signal(len(g), name=f"rest{q}")
            m.d.comb += rest.eq(masks[q] & (masks[q] - 1))
            lane, val = self._lowest(m, rest, [held[j] for j in g], f"rest{q}")
            with m.If(move & sel[q]):
                m.d.sync += [masks[q].eq(rest), low_lane[q].eq(lane), low_value[q].eq(val)]
            after.append(Mux(sel[q], rest, masks[q]))
        with m.If(move):
            m.d.sync += [has_token.eq(Cat(*after).any()),
                         one_left.eq(_at_most_one(Cat(*after)))]
        with m.If(move & one_left):
            m.d.sync += valid.eq(0)

        # the input register: takes a beat whenever it is empty or its beat is taken; with
        # it, which of its lanes are non-zero, so that the beat's masks and its one_left are
        # a LUT level closer to flip-flops (from the beat itself, that compare led the
        # digits_sparse bench's critical path into one_left, 8.0 ns)
        beat = Signal.like(held, name="in_beat")
        beat_nz = Signal(n, name="in_nonzero")
        beat_valid = Signal(name="in_valid")
        take = beat_valid & (~valid | (~has_token & ~final) | (move & one_left))
        m.d.comb += i.ready.eq(~beat_valid | take)
        with m.If(i.valid & i.ready):
            m.d.sync += [beat_valid.eq(1), beat.eq(i.payload)]
            if not bipolar:
                m.d.sync += beat_nz.eq(Cat(i.payload[j] != 0 for j in range(n)))
        with m.Elif(take):
            m.d.sync += beat_valid.eq(0)

        last_in = next_base == (beats - 1) * n
        tail = p.in_features - (beats - 1) * n
        nonzero = [(Const(1) if bipolar else beat_nz[j]) & ((j < tail) | ~last_in)
                   for j in range(n)]
        with m.If(take):
            m.d.sync += [valid.eq(1), final.eq(last_in), held.eq(beat),
                         base.eq(next_base), next_base.eq(Mux(last_in, 0, next_base + n)),
                         has_token.eq(Cat(*nonzero).any()),
                         one_left.eq(_at_most_one(Cat(*nonzero)))]
            for q, g in enumerate(groups):
                bits = Cat(nonzero[j] for j in g)
                lane, val = self._lowest(m, bits, [beat[j] for j in g], f"in{q}")
                m.d.sync += [masks[q].eq(bits), low_lane[q].eq(lane), low_value[q].eq(val)]
        return m


class ProcessingElement(wiring.Component):
    """One PE: the rows ``p, p + N, p + 2N, ...`` of the matrix.

    Ports
    -----
    tok, tok_take, tok_ready
        The broadcast: ``tok_take`` is high in a cycle the broadcast transfers ``tok`` to every
        PE; ``tok_ready`` is a register (it does not depend on this cycle's broadcast): this PE
        holds fewer than ``slots - 1`` tokens, so it can take one now and one in the next cycle.
    lock, done : Out(2)
        Per accumulator bank: ``lock`` once the last entry of a vector has been issued into it,
        ``done`` once that entry has been accumulated (the bank may then be read out).
    release : In(2)
        Pulse: the bank has been read out and its last row taken; clears its ``lock`` and
        ``done``.
    rd_bank, rd_addr, rd_en, rd_data
        Read-out port of a ``done`` bank: a cycle with ``rd_en`` asks for local row
        ``rd_addr`` of bank ``rd_bank``; the PE registers that command (so the collector's
        logic never reaches a block RAM's pins across the chip) and reads the row in the next
        cycle into the bank's read port, then its output register, which loads every cycle;
        ``rd_data`` shows the row three cycles after its ``rd_en`` (the bank it shows follows
        the command through the PE's own registers), whatever happens downstream. Every row
        read is cleared behind the read (its valid bit low: it reads as zero), so a bank is
        all zeros when released.

    Pipeline (every block RAM read goes through the RAM's output register before any logic): the
    token register (T: the column's pointers are read, then registered twice, P and L), the
    queue (activations whose column holds entries for this PE, or that end a vector), then one
    entry per cycle through the entry read (E1: the read port; R: its output register; F: a
    register in the fabric, the row and the codebook lookup), E2 (accumulator read), the
    multiplier's operands registered (E3), its product (E4; the row in the bank's output
    register), the accumulate (E5) and the write back (W). A column with ``n`` entries takes
    ``max(n, 1)`` iterator cycles and columns follow each other without a bubble; a column
    without entries for this PE is dropped in L. Every token taken holds a slot
    (``queue_depth`` in all) from the cycle after it is taken until L drops it or the iterator
    pops it, so ``tok_ready`` is registered and T never stalls; a PE holds :attr:`slots`
    tokens at most.

    The core registers the AND of every PE's ``tok_ready``, which the broadcast then waits on
    a cycle late; :data:`BROADCAST_SLACK` slots make up for it (see :mod:`.reference`).

    Memories: one read-only memory holds both the column pointers (word ``j``: the first and
    the end entry address of column ``j``, one read per token) and the entries (one read per
    cycle), in block RAM; so is the queue; each accumulator bank is its own memory (one read
    port and one write port, shared in time between accumulating and read-out). After a reset
    that interrupted a vector (a bank written and not yet read out), both banks are swept to
    zero, one row per cycle, before the iterator starts.
    """

    def __init__(self, params, matrix, index, raw_shape):
        self.params, self.index, self.raw_shape = params, index, raw_shape
        self._values = [int(v) for v in matrix.values[index]]
        self._z = [int(v) for v in matrix.z[index]]
        self._pointers = [int(v) for v in matrix.pointers[index]]
        self._codebook = matrix.codebook
        self._value_bits = matrix.value_bits
        self._value_signed = matrix.value_signed
        self.entries = len(self._z)
        rows = params.rows_per_pe
        super().__init__({
            "tok": In(token_layout(params)), "tok_take": In(1), "tok_ready": Out(1, init=1),
            "lock": Out(2), "done": Out(2), "release": In(2),
            "rd_bank": In(1), "rd_addr": In(range(max(rows, 2))), "rd_en": In(1),
            "rd_data": Out(raw_shape),
        })

    @property
    def _entry_bits(self):
        return self._value_bits + self.params.index_bits

    @property
    def _shared(self):
        """Pointers and entries in one memory: when that fits one block RAM (ECP5 DP16KD
        with both ports read: 1K x 18, 2K x 9, 4K x 4)."""
        depth = self.params.in_features + self.entries
        width = max(2 * max(depth.bit_length(), 1), self._entry_bits)
        return any(depth <= d and width <= w for d, w in ((1024, 18), (2048, 9), (4096, 4)))

    @property
    def _base(self):
        """Address of entry 0: after the pointer words when they share the memory."""
        return self.params.in_features if self._shared else 0

    @property
    def _abits(self):
        """Bits of an entry address (up to the end) and of a column's count less three, whose
        top bit then tells a count of 0, 1 or 2 (-3, -2, -1) from any other
        (:meth:`_count_flags`; the iterator's last entry, :meth:`_iterate`); at least 3."""
        most = max(hi - lo for lo, hi in zip(self._pointers[:-1], self._pointers[1:],
                                              strict=True))
        return max((self._base + self.entries).bit_length(), max(most - 3, 0).bit_length() + 1,
                   3)

    def _memories(self, m):
        """The pointer read port (word: a column's first entry address ``start`` and its entry
        count less three, modulo ``2**abits``: :meth:`_count_flags`) and the entry read port."""
        abits, base, k = self._abits, self._base, self.params.in_features
        vmask = (1 << self._value_bits) - 1
        entries = [(v & vmask) | (z << self._value_bits)
                   for v, z in zip(self._values, self._z, strict=True)]
        amask = (1 << abits) - 1
        pointers = [(base + lo) | (((hi - lo - 3) & amask) << abits)
                    for lo, hi in zip(self._pointers[:-1], self._pointers[1:], strict=True)]
        block = BLOCK_RAM
        if self._shared:
            words = pointers + entries
            m.submodules.rom = rom = Memory(
                shape=unsigned(max(2 * abits, self._entry_bits)), depth=len(words),
                init=words, attrs=block)
            return rom.read_port(), rom.read_port()
        m.submodules.pointers = ptr = Memory(shape=unsigned(2 * abits), depth=k,
                                             init=pointers, attrs=block)
        m.submodules.entries = ent = Memory(shape=unsigned(self._entry_bits),
                                            depth=max(self.entries, 1), init=entries or [0],
                                            attrs=block)
        return ptr.read_port(), ent.read_port()

    def elaborate(self, platform):
        m = Module()
        ptr_port, e_port = self._memories(m)
        queue, queued, dropped = self._lookup(m, ptr_port)
        # after a reset, until the banks are swept; hold: the iterator waits for the sweep (a
        # register, loaded in _accumulate; set after a reset unless a bank has a single row)
        after_reset = Signal(init=1)
        hold = Signal(init=int(self.params.rows_per_pe > 1))
        e1, word = self._iterate(m, queue, queued, e_port, hold)
        # the entry read registered (R): the block RAM's output drives nothing else (the ECP5
        # flow folds this register into the block RAM); then registered again in the fabric
        # (F), so that the route from the block RAM, which may lie across the chip, and the
        # row's adder are in different cycles (at 75d1901 that route alone took 6.0 ns)
        copy = output_register(m, output_register(m, word.as_value(), name="entry_q"),
                               name="entry_f")
        word = data.View(word.shape(), copy)
        e1 = self._stage(m, "f", **vars(self._stage(m, "r", **vars(e1))))
        self._reserve(m, queue, dropped)
        e2, weight = self._fetch(m, e1, word)
        self._accumulate(m, e2, weight, after_reset, hold)
        return m

    @property
    def slots(self):
        """Tokens a PE holds at most: ``queue_depth`` plus :data:`IN_FLIGHT` (the token
        register, the two pointer registers, the queue memory's read and its head, and the
        broadcast's slack)."""
        return self.params.queue_depth + IN_FLIGHT

    def _queue(self, m, width, flag_width):
        """The activation queue, in block RAM: more words than ``slots`` (a power of two, so
        the pointers wrap by themselves and never meet when it is full); an entry written at
        ``w`` can be popped from ``w + 3``: the memory's registered read, then the head
        register ``r_data`` (so the iterator's logic starts at a flop), loaded whenever it is
        empty or being popped (``r_en``); ``r_rdy``: it holds an entry. Each entry's
        ``flag_width`` flags (``w_flags``, ``r_flags``) go the same way through a queue of
        their own in distributed RAM, whose registers are fabric flip-flops beside the
        iterator that decides on them (from the block RAM's output register they were routed
        3.6 ns to it on the digits_sparse bench)."""
        depth = 1 << self.slots.bit_length()
        m.submodules.queue = mem = Memory(shape=unsigned(width), depth=depth, init=[],
                                          attrs=BLOCK_RAM)
        w_ptr = Signal(range(depth), name="q_w_ptr")
        # its successor, so a write only selects
        w_next = Signal(range(depth), init=1, name="q_w_next")
        # a word the memory can read: written before this cycle and not yet read (a register)
        avail = Signal(name="q_avail")
        # fill: the memory's read moves into the head register; addr: the word the memory
        # reads (the read pointer after this cycle's fill), counting the fills. Both are loaded
        # with their next values (``go_next``: the iterator may pop next cycle, from its own
        # next state), so the block RAM's address and output enable are flip-flops, however
        # far away it lies
        fill = Signal(name="q_fill")
        addr = Signal(range(depth), name="q_addr")
        w_port = mem.write_port()
        q = SimpleNamespace(w_en=Signal(name="q_w_en"), w_data=Signal(width, name="q_w_data"),
                            w_flags=Signal(flag_width, name="q_w_flags"),
                            r_en=Signal(name="q_r_en"), r_rdy=Signal(name="q_r_rdy"),
                            go_next=Signal(name="q_go_next"),
                            r_data=pipelined_read(m, mem, addr, out_en=fill,
                                                  name="q_head", read_name="queue_rd"))
        m.d.comb += [w_port.addr.eq(w_ptr), w_port.en.eq(q.w_en), w_port.data.eq(q.w_data)]
        m.submodules.queue_flags = small = Memory(shape=unsigned(flag_width), depth=depth,
                                                  init=[], attrs=NO_RW_CHECK)
        f_port = small.write_port()
        m.d.comb += [f_port.addr.eq(w_ptr), f_port.en.eq(q.w_en), f_port.data.eq(q.w_flags)]
        q.r_flags = pipelined_read(m, small, addr, out_en=fill,
                                   name="q_head_flags", read_name="queue_flags_rd")
        r_rdy_next, avail_next = fill | (q.r_rdy & ~q.r_en), w_ptr != addr
        fill_next = avail_next & (~r_rdy_next | q.go_next)
        m.d.sync += [avail.eq(avail_next), q.r_rdy.eq(r_rdy_next), fill.eq(fill_next)]
        with m.If(fill_next):
            m.d.sync += addr.eq(addr + 1)
        with m.If(q.w_en):
            m.d.sync += [w_ptr.eq(w_next), w_next.eq(w_next + 1)]
        return q

    @staticmethod
    def _count_flags(left):
        """``(empty, single)`` of a column whose count less three is ``left`` (modulo
        ``2**abits``): no entry, at most one entry. Every count of three or more is below
        ``2**(abits - 1) + 3`` (:attr:`_abits`), so the top bit is set for -3, -2 and -1 only
        (low bits 01, 10, 11): each flag is a LUT4 of three bits, however far the pointer
        memory lies."""
        top = left[-1]
        return top & ~left[1], top & ~(left[1] & left[0])

    def _lookup(self, m, port):
        """T: the broadcast token while its column's pointers are read; P: the pointers in the
        block RAM's output register, ``empty`` and ``single`` decoded from them (a token
        without work has neither entry); L: all registered again (the block RAM may lie far
        from the logic), then into the queue. Returns the queue, the layouts of its entries
        and of their flags, and whether L drops a token this cycle."""
        p = self.params
        abits = self._abits
        queued = (data.StructLayout({"value": p.in_dtype.shape, "start": unsigned(abits),
                                     "left": unsigned(abits)}),
                  # what the iterator's pop decides on (``_iterate``)
                  data.StructLayout({"last": 1, "empty": 1, "single": 1}))
        queue = self._queue(m, *(Shape.cast(layout).width for layout in queued))
        t = self._stage(m, "t", valid=self.tok_take, value=self.tok.value, work=self.tok.work,
                        last=self.tok.last)
        m.d.comb += [port.addr.eq(self.tok.col), port.en.eq(1)]
        t1 = self._stage(m, "p", valid=t.valid, value=t.value, work=t.work, last=t.last)
        # the column's flags are decoded from P's pointer word (the block RAM's output
        # register) into L's registers, so L's write into the queue (whose block RAM may lie
        # far away) starts at flip-flops
        pointers = output_register(m, port.data[:2 * abits], name="ptr_q")
        empty, single = self._count_flags(pointers[abits:])
        t2 = self._stage(m, "l", valid=t1.valid, value=t1.value, last=t1.last,
                         pointers=pointers, useful=(t1.work & ~empty) | t1.last,
                         empty=~t1.work | empty, single=~t1.work | single)
        start, left = t2.pointers[:abits], t2.pointers[abits:]
        m.d.comb += [
            queue.w_en.eq(t2.valid & t2.useful),
            queue.w_data.eq(Cat(t2.value, start, left)),
            queue.w_flags.eq(Cat(t2.last, t2.empty, t2.single)),
        ]
        return queue, queued, t2.valid & ~t2.useful

    def _reserve(self, m, queue, dropped):
        """Slots held: +1 per token taken, -1 when P drops one or the iterator pops one;
        ``tok_ready`` is registered from the next count: ``held + step < slots - 1`` (compared
        as ``held < slots - 1 - step`` for every step, so the late signals only select), one
        slot short of full, as the broadcast sees it a cycle late and may send one more."""
        held = Signal(range(self.slots + 1))
        events = Cat(self.tok_take, dropped, queue.r_en)
        m.d.sync += held.eq(held + self.tok_take - dropped - queue.r_en)
        with m.Switch(events):
            for code in range(8):
                step = (code & 1) - (code >> 1 & 1) - (code >> 2 & 1)
                with m.Case(code):
                    m.d.sync += self.tok_ready.eq(held < self.slots - 1 - step)

    def _iterate(self, m, queue, queued, e_port, hold):
        """Entry iterator: one slot per cycle, the next column right after the last entry;
        the entry read. Returns the E1 registers and the entry word (valid in E1)."""
        p = self.params
        head, flags = (data.View(layout, value)
                       for layout, value in zip(queued, (queue.r_data, queue.r_flags),
                                                strict=True))
        busy, last, bank = Signal(), Signal(), Signal()
        # busy: addr is the column's next entry, left the entries after it less one
        addr, left = Signal(self._abits), Signal(self._abits)
        value = Signal(p.in_dtype.shape)
        # blocked: the iterator's bank locked, or the banks not swept after a reset (a register
        # loaded with the next values of both, so the pop starts at flip-flops)
        blocked = Signal(init=1)
        busy_next, blocked_next = Signal(), Signal()
        pop = ~busy & queue.r_rdy & ~blocked
        s_valid = busy | pop
        s_addr = Mux(busy, addr, head.start)
        s_last = Mux(busy, last, flags.last)
        # while busy, left counts the entries after the next one less one: the last entry
        # comes at -1, the only value with the top bit set (:attr:`_abits`), so no compare
        s_final = Mux(busy, left[-1], flags.single)
        m.d.comb += queue.r_en.eq(pop)
        m.d.sync += addr.eq(s_addr + 1)  # used only while busy
        with m.If(busy):
            m.d.sync += left.eq(left - 1)
        with m.Elif(pop):
            m.d.sync += [left.eq(head.left), last.eq(flags.last), value.eq(head.value)]
        m.d.comb += busy_next.eq(Mux(s_valid, ~s_final, busy))
        with m.If(s_valid & s_final & s_last):
            m.d.sync += [bank.eq(~bank), self.lock.bit_select(bank, 1).eq(1)]
        ends = s_valid & s_final & s_last  # the vector's last entry: its bank locks
        # blocked next: the next bank's lock (Mux(bank ^ ends, lock_next[1], lock_next[0]))
        # or hold; chosen between the values of flip-flops, stay (this bank's lock) or, when
        # the vector ends, swap (the other bank's: this cycle's ``ends`` sets only this
        # bank's), so that this cycle's slot only selects. Through the lock it was a chain of
        # 5 LUT levels from ``blocked`` into the queue's fill decision, the digits_sparse
        # bench's critical path (8.2 ns at f727375)
        held = [hold | (self.lock[b] & ~self.release[b]) for b in range(2)]
        stay, swap = Mux(bank, held[1], held[0]), Mux(bank, held[0], held[1])
        m.d.comb += [
            blocked_next.eq(Mux(ends, swap, stay)),
            queue.go_next.eq(~busy_next & ~blocked_next),   # the queue's pop next, if ready
        ]
        m.d.sync += [busy.eq(busy_next), blocked.eq(blocked_next)]

        entry = data.StructLayout({"value": unsigned(self._value_bits),
                                   "z": unsigned(p.index_bits)})
        m.d.comb += [e_port.addr.eq(s_addr), e_port.en.eq(1)]
        e1 = self._stage(m, "e1", valid=s_valid, write=busy | (pop & ~flags.empty),
                         first=~busy, bank=bank, vend=s_valid & s_final & s_last,
                         act=Mux(busy, value, head.value))
        return e1, data.View(entry, e_port.data[:self._entry_bits])

    def _fetch(self, m, e1, word):
        """E1: the entry's local row; the codebook lookup. Returns the E2 registers and the
        weight (valid in E2)."""
        rows = self.params.rows_per_pe
        prev_row = Signal(range(max(rows, 2)))
        row = Signal(range(max(rows, 2)))
        m.d.comb += row.eq(Mux(e1.first, word.z, prev_row + word.z + 1))
        with m.If(e1.write):
            m.d.sync += prev_row.eq(row)
        weight = {}
        if self._codebook is None:
            weight["weight"] = word.value.as_signed() if self._value_signed else word.value
        e2 = self._stage(m, "e2", **{k: getattr(e1, k) for k in ("write", "bank", "vend", "act")},
                         row=row, **weight)
        if self._codebook is None:
            return e2, e2.weight
        m.submodules.codebook = cb = Memory(
            shape=_shape(min(self._codebook), max(self._codebook)),
            depth=len(self._codebook), init=list(self._codebook))
        cb_port = cb.read_port()
        m.d.comb += [cb_port.addr.eq(word.value), cb_port.en.eq(1)]
        return e2, cb_port.data

    def _accumulate(self, m, e2, weight, after_reset, hold):
        """E2: the accumulator read; E3: the multiplier's operands and the row read
        registered (the block RAM's port); E4: the product, and the row in the bank's output
        register; E5: the product and the row of the entry's bank registered again (the block
        RAMs may lie far from the adder) and the accumulate; W: the sum registered and written
        back. The four entries before may write the row after this one read it: the latest one's
        sum is forwarded. Each word carries a valid bit: a row cleared behind its read-out, or
        swept after a reset, has it low and reads as zero. The read-out port (its command
        registered, C); the sweep; the bank release."""
        p = self.params
        rows = p.rows_per_pe
        act = Mux(e2.act, 1, -1) if p.in_dtype.kind is DTypeKind.BIPOLAR else e2.act
        keys = ("vend", "write", "row", "bank")
        # E3 registers the multiplier's operands, E4 its product: both without reset and
        # read by nothing else, so the ECP5 flow folds them into the MULT18X18D
        # (nnaccel.boards.ecp5_bram), which then lies between registers of its own
        e3 = self._stage(m, "e3", **{k: getattr(e2, k) for k in keys})
        w3 = Signal(Value.cast(weight).shape(), name="e3_weight", reset_less=True)
        a3 = Signal(Value.cast(act).shape(), name="e3_act", reset_less=True)
        m.d.sync += [w3.eq(weight), a3.eq(act)]
        e4 = self._stage(m, "e4", **{k: getattr(e3, k) for k in keys})
        e4.product = Signal((w3 * a3).shape(), name="e4_product", reset_less=True)
        m.d.sync += e4.product.eq(w3 * a3)
        e5 = self._stage(m, "e5", **{k: getattr(e4, k) for k in ("product", *keys)})
        # W writes the sum; H1..H2 only remember the rows written, for the forwarding
        later = [self._stage(m, "w", **{k: getattr(e5, k) for k in keys})]
        for h in range(2):
            later.append(self._stage(m, f"h{h + 1}", write=later[-1].write,
                                     row=later[-1].row, bank=later[-1].bank))

        def same_row(a, b):
            return a.write & b.write & (a.row == b.row) & (a.bank == b.bank)

        # fwd[k]: the entry k + 1 places before wrote (or writes) this one's row too, and no
        # later one did; decided in E4 against the entries in E5, W, H1, H2
        hit = [same_row(e4, b) for b in (e5, *later)]
        fwd = [Signal(name=f"forward{k + 1}") for k in range(4)]
        m.d.sync += [f.eq(hit[k] & ~Cat(hit[:k]).any()) for k, f in enumerate(fwd)]
        # dirty: the bank holds non-zero rows; survives a reset, which then starts a sweep
        dirty = [Signal(name=f"dirty{b}", reset_less=True) for b in range(2)]
        # C: the collector's read-out command, registered here (near this PE's banks)
        cmd_en = [Signal(name=f"cmd_en{b}") for b in range(2)]
        cmd_addr = Signal.like(self.rd_addr, name="cmd_addr")
        m.d.sync += [cmd_addr.eq(self.rd_addr)] + [
            cmd_en[b].eq(self.rd_en & (self.rd_bank == b)) for b in range(2)]
        # the bank whose row the output registers hold: the command's, two cycles later
        sel = self._stage(m, "cmd", bank=self.rd_bank)
        for stage in ("sel_r", "sel_o"):
            sel = self._stage(m, stage, bank=sel.bank)
        # the row a sweep (after a reset: 0, 1, ...) or a clear (the row read out a cycle
        # ago) writes invalid
        zero_row = Signal.like(self.rd_addr)
        sweeping, after_next = Signal(), Signal()
        # hold: the iterator waits while a sweep may go on next cycle, that is
        # ``after_reset & (zero_row != rows - 1)``; from the reset's flag and the row alone, so
        # that its pop (and the queue's next fill) need not wait for the dirty flags: with
        # clean banks it holds the cycle after a reset too, when the queue is still empty. A
        # register, loaded with that value for the next cycle (after_reset stays set only while
        # sweeping, when the row counts up), so the queue's fill decision starts at flip-flops
        m.d.comb += [sweeping.eq(after_reset & (dirty[0] | dirty[1])),
                     after_next.eq(sweeping & (zero_row != rows - 1))]
        m.d.sync += hold.eq(after_next & (zero_row != rows - 2))
        m.d.sync += after_reset.eq(after_next)
        with m.If(sweeping):
            m.d.sync += zero_row.eq(zero_row + 1)
        with m.Else():
            m.d.sync += zero_row.eq(cmd_addr)
        # the banks' dirty flags next: set by a write, cleared by the release and the sweep's end
        swept = sweeping & (zero_row == rows - 1)
        w = later[0]
        mines = [w.write & (w.bank == b) for b in range(2)]   # W writes a sum into bank b
        dirty_next = [Signal(name=f"dirty{b}_next") for b in range(2)]
        for b in range(2):
            m.d.comb += dirty_next[b].eq(Mux(self.release[b], 0,
                                             Mux(mines[b], 1, dirty[b] & ~swept)))
            m.d.sync += dirty[b].eq(dirty_next[b])
        sweep_next = after_next & (dirty_next[0] | dirty_next[1])
        width = self.raw_shape.width
        word = unsigned(width + 1)  # the sum and its valid bit
        sums = [Signal(self.raw_shape, name=f"sum{k + 1}") for k in range(4)]
        total = Signal(self.raw_shape)
        m.d.sync += [sums[0].eq(total)] + [sums[k + 1].eq(sums[k]) for k in range(3)]
        stored = []
        for b in range(2):
            mem = Memory(shape=word, depth=rows, init=[], attrs=BLOCK_RAM)
            m.submodules[f"acc{b}"] = mem
            w_port = mem.write_port()
            out = self.done[b]
            reading = cmd_en[b] & out
            # zero: this bank's write port writes an invalid word (the sweep's, or the clear of
            # the row read out a cycle ago), a register so the port's address and enable are a
            # LUT from flip-flops (the banks may lie far away); its reset value writes row 0 of
            # a clean bank invalid once more in the first cycle, where it already is
            zero = Signal(init=1, name=f"zero{b}")
            m.d.sync += zero.eq(sweep_next | reading)
            mine = mines[b]
            m.d.comb += [
                w_port.addr.eq(Mux(zero, zero_row, w.row)),
                w_port.en.eq(zero | mine),
                w_port.data.eq(Cat(sums[0], ~zero)),
            ]
            # the row read into the port's register, then the output register (every cycle)
            stored.append(pipelined_read(m, mem, Mux(out, cmd_addr, e2.row),
                                         en=Mux(out, reading, e2.write & (e2.bank == b)),
                                         name=f"acc{b}_q", read_name=f"acc{b}_rd"))
            with m.If(self.release[b]):
                m.d.sync += [self.lock[b].eq(0), self.done[b].eq(0)]
        # done as the last entry reaches W: the collector sees it a cycle later, after its write
        with m.If(e5.vend):
            m.d.sync += self.done.bit_select(e5.bank, 1).eq(1)

        # E5: the row read registered again (with its valid bit); the sum it continues: the
        # latest forwarded one, else the row's word when valid, else zero
        row_sum = Signal(word, name="row_sum")
        use_row = Signal()
        m.d.sync += [row_sum.eq(Mux(e4.bank, stored[1], stored[0])),
                     use_row.eq(~Cat(hit).any())]
        acc_bits = Mux(use_row & row_sum[width], row_sum[:width], 0)
        for f, s in zip(fwd, sums, strict=True):
            acc_bits = acc_bits | Mux(f, s.as_unsigned(), 0)
        acc_in = acc_bits.as_signed() if self.raw_shape.signed else acc_bits
        # the read-out word registered here, beside the banks: the route to the collector (the
        # PEs lie across the chip) starts at a flip-flop
        m.d.comb += total.eq(acc_in + e5.product)
        m.d.sync += self.rd_data.eq(Mux(sel.bank & stored[1][width], stored[1][:width], 0)
                                    | Mux(~sel.bank & stored[0][width], stored[0][:width], 0))

    @staticmethod
    def _stage(m, name, **values):
        """Registers ``values`` (every cycle) into a namespace of signals."""
        regs = {}
        for key, value in values.items():
            shape = value.shape() if hasattr(value, "shape") else unsigned(1)
            regs[key] = Signal(shape, name=f"{name}_{key}")
            m.d.sync += regs[key].eq(value)
        return SimpleNamespace(**regs)


class Collector(wiring.Component):
    """Reads finished accumulator banks out, one row of every PE per beat, in bank order.

    Starts a bank when every PE has it ``done``; beat ``r`` carries local row ``r`` of PE
    ``0 .. N-1`` (rows ``r*N .. r*N + N - 1``). One beat per cycle. The read-out never stalls
    once issued: a row asked for (``rd_en``) reaches ``rd_data`` :data:`READ_LATENCY` cycles
    later (the PE's command register, the bank's read port, its output register, the PE's
    read-out register) and goes into
    a FIFO (:class:`StreamFifo`, distributed RAM) that drives ``o_raw``; a row is asked for only
    while the beats asked for and not yet taken from the FIFO are fewer than its capacity (a
    count in a register). So nothing downstream reaches the PEs: ``rd_en`` follows from this
    collector's registers alone. A bank is released (a registered pulse) in the cycle after its
    last row was asked for, when the PEs read it. With ``params.out_step`` above 1 (an output
    stage narrower than the PEs), rows are asked for at most one every ``out_step`` cycles, the
    rate at which the stage takes them, so the FIFO never fills while the output flows.
    """

    #: Cycles from a row's ``rd_en`` to its word on ``rd_data``.
    READ_LATENCY = 4
    #: Beats the output FIFO holds: enough for a beat per cycle (the ``READ_LATENCY`` beats in
    #: flight, the FIFO's own latency and the count's register).
    FIFO_DEPTH = 8

    def __init__(self, params, raw_shape):
        self.params = params
        n, rows = params.pe, params.rows_per_pe
        self._fifo_shape = vector_stream(raw_shape, n).members["payload"].shape
        super().__init__({
            "done": In(2).array(n), "release": Out(2),
            "rd_bank": Out(1), "rd_addr": Out(range(max(rows, 2))), "rd_en": Out(1),
            "rd_data": In(raw_shape).array(n),
            "o_raw": Out(vector_stream(raw_shape, n)),
        })

    #: Cycles from a row's ``rd_en`` to its beat valid on ``o_raw`` (the FIFO empty): the read,
    #: then the FIFO's latency (distributed RAM: its write, then its output register).
    OUT_LATENCY = READ_LATENCY + 2

    def elaborate(self, platform):
        m = Module()
        rows = self.params.rows_per_pe
        m.submodules.fifo = fifo = StreamFifo(self._fifo_shape, self.FIFO_DEPTH,
                                              block_ram=False)
        assert self.READ_LATENCY + fifo.latency == self.OUT_LATENCY
        wiring.connect(m, fifo.o_data, wiring.flipped(self.o_raw))
        bank = Signal()
        row = Signal(range(max(rows, 2)))
        # every PE done with a bank, registered; a bank read out waits for its release
        # (drained), which clears it at once
        all_done = [Signal(name=f"all_done{b}") for b in range(2)]
        drained = [Signal(name=f"drained{b}") for b in range(2)]
        for b in range(2):
            m.d.sync += all_done[b].eq(Cat(d[b] for d in self.done).all() & ~self.release[b])
        ready = Mux(bank, all_done[1] & ~drained[1], all_done[0] & ~drained[0])
        # beats asked for and not yet taken from the FIFO, a take counted a cycle late (a
        # register: the downstream ready reaches one flip-flop, no carry chain), so the count
        # is never below the FIFO's; room: fewer than it holds
        count = Signal(range(fifo.capacity + 1))
        room = Signal(init=1)
        issue = ready & room
        step = self.params.out_step
        if step > 1:   # `free`: out_step cycles since the last row asked for, a register
            free = Signal(init=1)
            wait = Signal(range(step))
            issue = issue & free
            with m.If(issue):
                m.d.sync += [wait.eq(step - 2), free.eq(0)]
            with m.Elif(~free):
                m.d.sync += [wait.eq(wait - 1), free.eq(wait == 0)]
        last_row = row == rows - 1
        taken = Signal()
        m.d.sync += taken.eq(self.o_raw.valid & self.o_raw.ready)
        m.d.sync += count.eq(count + issue - taken)
        # room after this cycle, for a count one less, the same or one more: decoded from the
        # count register (a look-up table, no carry chain), then chosen by issue and taken
        fewer, same, more = Signal(), Signal(), Signal()
        with m.Switch(count):
            for v in range(fifo.capacity + 1):
                with m.Case(v):
                    m.d.comb += [fewer.eq(v - 1 < fifo.capacity), same.eq(v < fifo.capacity),
                                 more.eq(v + 1 < fifo.capacity)]
        m.d.sync += room.eq(Mux(issue == taken, same, Mux(issue, more, fewer)))
        m.d.comb += [self.rd_bank.eq(bank), self.rd_addr.eq(row), self.rd_en.eq(issue)]
        # the rows in flight: their words reach rd_data READ_LATENCY cycles after rd_en
        flight = delay(m, issue, self.READ_LATENCY, "flight")
        m.d.comb += [fifo.i_data.valid.eq(flight),
                     Value.cast(fifo.i_data.payload).eq(Cat(self.rd_data))]
        # the bank's release: the cycle after its last row's rd_en (the PEs read it then)
        m.d.sync += self.release.eq(Mux(issue & last_row, Mux(bank, 2, 1), 0))
        with m.If(issue):
            m.d.sync += row.eq(Mux(last_row, 0, row + 1))
            with m.If(last_row):
                m.d.sync += bank.eq(~bank)
        for b in range(2):  # a bank's release and its last row's read never meet
            with m.If(self.release[b]):
                m.d.sync += drained[b].eq(0)
            with m.If(issue & last_row & (bank == b)):
                m.d.sync += drained[b].eq(1)
        return m


class SparseCore(wiring.Component):
    """Raw sums ``W @ x`` of a sparse matrix, computed by skipping zero weights and activations.

    ``i_data``: ``params.in_beats`` beats of ``in_beat`` input elements per vector (padding of
    the last beat ignored). ``o_raw``: ``params.rows_per_pe`` beats of ``pe`` raw sums per vector
    (rows past M are zero padding). Raw sums are exact: their width is the worst case over the
    actual weights and every legal input. Cycles: see :func:`.reference.cycle_model`, which this
    core meets exactly when its output is never stalled.
    """

    def __new__(cls, params, matrix):
        check_matrix(params, matrix)  # before the component exists (see SparseEngine)
        return super().__new__(cls)

    def __init__(self, params, matrix):
        self.params, self.matrix = params, matrix
        self.weight = decode(matrix)
        self.raw_shape = params.raw_shape
        if self.raw_shape is None:
            self.raw_shape = _shape(*raw_bounds(self.weight, params.in_dtype.lo,
                                                params.in_dtype.hi))
        super().__init__({
            "i_data": In(vector_stream(params.in_dtype.shape, params.in_beat)),
            "o_raw": Out(vector_stream(self.raw_shape, params.pe)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.lnzd = lnzd = LeadingNonZero(p)
        m.submodules.collector = col = Collector(p, self.raw_shape)
        wiring.connect(m, wiring.flipped(self.i_data), lnzd.i_data)
        wiring.connect(m, col.o_raw, wiring.flipped(self.o_raw))
        pes = [ProcessingElement(p, self.matrix, q, self.raw_shape) for q in range(p.pe)]
        # the broadcast's ready: every PE's, registered (the PEs lie across the chip; each
        # keeps a slot for the token this register may still let through)
        ready = Signal()
        m.d.sync += ready.eq(Cat(pe.tok_ready for pe in pes).all())
        m.d.comb += lnzd.o_token.ready.eq(ready)
        for q, pe in enumerate(pes):
            m.submodules[f"pe{q}"] = pe
            m.d.comb += [
                pe.tok.eq(lnzd.o_token.payload), pe.tok_take.eq(lnzd.o_token.valid & ready),
                pe.release.eq(col.release), col.done[q].eq(pe.done),
                pe.rd_bank.eq(col.rd_bank), pe.rd_addr.eq(col.rd_addr), pe.rd_en.eq(col.rd_en),
                col.rd_data[q].eq(pe.rd_data),
            ]
        return m


class SparseEngine(wiring.Component):
    """One SPEC ``linear`` layer on the EIE-like sparse engine, output stage included.

    ``i_data``: ``ceil(K/in_beat)`` beats of ``in_beat`` input elements per vector (hardware
    encoding of ``params.in_dtype``); ``o_data``: ``ceil(M/pe)`` beats of ``pe`` output elements
    (encoding of the output stage's dtype; element ``j`` of beat ``r`` is output ``r*pe + j``,
    the tail of the last beat is padding). Bit-exact with SPEC sections 2.1 and 2.2; nothing can
    overflow. Cycles: :meth:`SparseParams.cycle_report` on :attr:`matrix`.

    Parameters
    ----------
    params : SparseParams
        From :meth:`SparseParams.for_layer`: sizing, raw-sum bounds and the output stage (whose
        offset carries the bias).
    weight : (M, K) integer array
        The layer's weight (zeros are skipped), within the bounds ``params`` was built for.
    codebook : 1-D integer array, optional
        Store codes into this codebook instead of the weights (every non-zero weight must be one
        of its values).
    """

    def __new__(cls, params, *, weight, codebook=None):
        # checked before the component exists, so a bad argument leaves no unused component
        matrix = encode_weight(params, weight, codebook, whole_layer=True)
        self = super().__new__(cls)
        self._matrix = matrix
        return self

    def __init__(self, params, *, weight, codebook=None):
        self.params = params
        self.core = SparseCore(params, self._matrix)
        self.stage = OutputStage.from_params(params.stage, pipelined=True)
        super().__init__({
            "i_data": In(vector_stream(params.in_dtype.shape, params.in_beat)),
            "o_data": Out(vector_stream(params.output.out_shape, params.pe)),
        })

    @property
    def matrix(self):
        """The encoded weights (:class:`~nnaccel.hw.sparse.format.SparseMatrix`)."""
        return self.core.matrix

    def cycle_report(self, active):
        """:meth:`SparseParams.cycle_report` of this engine's matrix."""
        return self.params.cycle_report(self.matrix.column_counts(), active)

    def elaborate(self, platform):
        m = Module()
        # no skid buffer between core and stage: the core's output is its collector's FIFO,
        # whose ready reaches only clock enables and the collector's count register
        m.submodules.core, m.submodules.stage = self.core, self.stage
        wiring.connect(m, wiring.flipped(self.i_data), self.core.i_data)
        p = self.params
        # the output through a skid buffer: the next layer's ready reaches its registers
        # alone, not the stage's pipeline enables and the collector's FIFO behind them
        m.submodules.skid = skid = SkidBuffer(self.o_data.payload.shape())
        wiring.connect(m, skid.o_data, wiring.flipped(self.o_data))
        if p.out_lanes == p.pe:
            wiring.connect(m, self.core.o_raw, self.stage.i_data)
            wiring.connect(m, self.stage.o_data, skid.i_data)
            return m
        # a narrower stage: each row's sums go through it out_lanes at a time, and its
        # outputs are collected into rows again
        count = p.rows_per_pe * p.pe
        m.submodules.split = split = Gearbox(self.core.raw_shape, n_in=p.pe, n_out=p.out_lanes,
                                             count=count)
        m.submodules.join = join = Gearbox(p.output.out_shape, n_in=p.out_lanes, n_out=p.pe,
                                           count=count)
        # a skid buffer in front of the stage: its pipeline's ready (from the output's skid
        # buffer, through the join) ends at a register there, and the split and the
        # collector's FIFO behind it see that register's ready alone (the stage lies by its
        # multipliers, the collector by the PEs: on digits_sparse the chain held fc1 at
        # 117.3 MHz, 6.4 ns of routing)
        m.submodules.stage_skid = stage_skid = SkidBuffer(split.o_data.payload.shape())
        wiring.connect(m, self.core.o_raw, split.i_data)
        wiring.connect(m, split.o_data, stage_skid.i_data)
        wiring.connect(m, stage_skid.o_data, self.stage.i_data)
        wiring.connect(m, self.stage.o_data, join.i_data)
        wiring.connect(m, join.o_data, skid.i_data)
        return m


