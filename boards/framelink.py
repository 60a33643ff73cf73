"""Device side of the framed host link (:mod:`nnaccel.boards.frame`) in Amaranth.

:class:`FrameLink` sits between the UART's byte streams and the network's beat streams: it
receives frames, checks their CRC, keeps a batch of input vectors in an input buffer while it
feeds them to the network, collects the network's output bytes in an output buffer until the host
reads and acknowledges them, and answers every complete frame with one reply frame.
"""

import struct

from amaranth import Cat, Const, Module, Mux, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.crc import catalog
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import frame as proto
from .link import BeatsToBytes, BytesToBeats, beat_bytes

__all__ = ["FrameLink", "SelfTest"]

_STATUS_BYTES = struct.calcsize(proto.STATUS_FORMAT)

#: Cycles per tick of the receive timeout's counter.
_PRESCALE = 64


def _positive(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return value


class FrameLink(wiring.Component):
    """The framed link between a UART's bytes and a network's beats.

    Parameters
    ----------
    in_shape, out_shape : shape-castable
        Payload shapes of the network's input and output beats.
    in_beats, out_beats : int
        Beats per input and per output vector.
    in_capacity : int or None
        Bytes of the input buffer: the largest SEND payload, rounded down to whole vectors
        (default: as many whole vectors as fit in 2048 bytes, at least one).
    out_capacity : int
        Bytes of the output buffer, a power of two from 2 to 32768, at least one output
        vector (default 2048).
    max_read : int
        Most output bytes in one READ reply (default 256).
    timeout : int
        Receive timeout in clock cycles: a frame whose next byte does not come within it is
        dropped.
    selftest : (list of int, list of int) or None
        Input beats and expected output beats (bit patterns, whole vectors) of an on-chip
        self-test (:class:`SelfTest`) that the SELFTEST command runs.

    Attributes
    ----------
    i_rx : In(stream.Signature(8))
        Bytes from the host. Always ready: bytes are never held back (those that arrive while
        a reply is being sent are dropped).
    o_tx : Out(stream.Signature(8))
        Reply bytes to the host.
    o_data : Out(stream.Signature(in_shape))
        Input beats to the network.
    i_data : In(stream.Signature(out_shape))
        Output beats from the network. Ready unless the output buffer is full, which the
        SEND admission rule prevents.
    soft_reset : Out(1)
        One-cycle pulse after the reply to RESET has been handed to the transmitter: the
        caller resets this component and the network with it (``ResetInserter``).
    crc_error : Out(1)
        One-cycle strobe when a frame is refused for its CRC.
    """

    def __init__(self, in_shape, out_shape, *, in_beats=1, out_beats=1, in_capacity=None,
                 out_capacity=2048, max_read=256, timeout, selftest=None):
        self.in_shape, self.out_shape = in_shape, out_shape
        self.in_vector_bytes = _positive("in_beats", in_beats) * beat_bytes(in_shape)
        self.out_vector_bytes = _positive("out_beats", out_beats) * beat_bytes(out_shape)
        if in_capacity is None:
            in_capacity = max(1, 2048 // self.in_vector_bytes) * self.in_vector_bytes
        _positive("in_capacity", in_capacity)
        self.in_capacity = in_capacity - in_capacity % self.in_vector_bytes
        if not self.in_capacity or self.in_capacity > 65535:
            raise ValueError(f"in_capacity must hold one input vector of "
                             f"{self.in_vector_bytes} bytes and at most 65535, not "
                             f"{in_capacity!r}")
        _positive("out_capacity", out_capacity)
        if out_capacity & (out_capacity - 1) or not 2 <= out_capacity <= 32768 \
                or out_capacity < self.out_vector_bytes:
            raise ValueError(f"out_capacity must be a power of two from 2 to 32768 holding one "
                             f"output vector of {self.out_vector_bytes} bytes, not "
                             f"{out_capacity!r}")
        self.out_capacity = out_capacity
        self.max_read = min(_positive("max_read", max_read), 65535)
        self.timeout = _positive("timeout", timeout)
        self.selftest = selftest
        self.selftest_vectors = 0 if selftest is None else len(selftest[0]) // in_beats
        super().__init__({
            "i_rx": In(stream.Signature(8)),
            "o_tx": Out(stream.Signature(8)),
            "o_data": Out(stream.Signature(in_shape)),
            "i_data": In(stream.Signature(out_shape)),
            "soft_reset": Out(1),
            "crc_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        rx = _Receiver(self.timeout)
        m.submodules.rx = rx
        wiring.connect(m, wiring.flipped(self.i_rx), rx.i_rx)

        # -- input buffer and feeder -------------------------------------------------------
        m.submodules.in_mem = in_mem = Memory(shape=8, depth=self.in_capacity, init=[])
        in_w = in_mem.write_port()
        in_r = in_mem.read_port()
        feed_addr = Signal(16)
        feed_end = Signal(16)
        feed_valid = Signal()
        feeding = Signal()
        m.d.comb += feeding.eq((feed_addr != feed_end) | feed_valid)
        m.submodules.to_beats = to_beats = BytesToBeats(self.in_shape)
        m.d.comb += [to_beats.i_data.payload.eq(in_r.data), to_beats.i_data.valid.eq(feed_valid),
                     in_r.addr.eq(feed_addr), in_r.en.eq(~feed_valid | to_beats.i_data.ready)]
        with m.If(in_r.en):
            m.d.sync += feed_valid.eq(feed_addr != feed_end)
            with m.If(feed_addr != feed_end):
                m.d.sync += feed_addr.eq(feed_addr + 1)

        # -- payload of the frame being received -------------------------------------------
        write_ok = Signal()         # the feeder was idle when this frame's payload began
        vec_byte = Signal(range(self.in_vector_bytes))
        pend = Signal(32)           # output bytes the vectors of this SEND will produce
        ack, limit = Signal(16), Signal(16)
        with m.If(rx.start):
            m.d.sync += [write_ok.eq(~feeding), vec_byte.eq(0), pend.eq(0)]
        with m.If(rx.payload_valid):
            m.d.comb += [in_w.addr.eq(rx.count), in_w.data.eq(rx.byte),
                         in_w.en.eq((rx.cmd == proto.SEND) & write_ok
                                    & (rx.count < self.in_capacity))]
            with m.If(rx.count == 0):
                m.d.sync += ack[:8].eq(rx.byte)
            with m.If(rx.count == 1):
                m.d.sync += ack[8:].eq(rx.byte)
            with m.If(rx.count == 2):
                m.d.sync += limit[:8].eq(rx.byte)
            with m.If(rx.count == 3):
                m.d.sync += limit[8:].eq(rx.byte)
            with m.If(vec_byte == self.in_vector_bytes - 1):
                m.d.sync += [vec_byte.eq(0), pend.eq(pend + self.out_vector_bytes)]
            with m.Else():
                m.d.sync += vec_byte.eq(vec_byte + 1)

        # -- output buffer -----------------------------------------------------------------
        abits = (self.out_capacity - 1).bit_length()
        m.submodules.out_mem = out_mem = Memory(shape=8, depth=self.out_capacity, init=[])
        out_w = out_mem.write_port()
        out_r = out_mem.read_port()
        m.submodules.to_bytes = to_bytes = BeatsToBytes(self.out_shape)
        st_mode = Signal()
        st = self._network_streams(m, to_beats.o_data, to_bytes.i_data, st_mode)
        wr_ptr, rd_ptr = Signal(16), Signal(16)
        level = Signal(16)
        m.d.comb += level.eq(wr_ptr - rd_ptr)
        written = Signal()
        m.d.comb += [to_bytes.o_data.ready.eq(level != self.out_capacity),
                     written.eq(to_bytes.o_data.valid & to_bytes.o_data.ready),
                     out_w.addr.eq(wr_ptr[:abits]), out_w.data.eq(to_bytes.o_data.payload),
                     out_w.en.eq(written)]
        with m.If(written):
            m.d.sync += wr_ptr.eq(wr_ptr + 1)

        # -- counters ----------------------------------------------------------------------
        vectors_done, busy_cycles, clock_cycles = Signal(32), Signal(32), Signal(32)
        m.d.sync += clock_cycles.eq(clock_cycles + 1)
        crc_errors, timeouts = Signal(16), Signal(16)
        outstanding = Signal(32)
        out_byte = Signal(range(self.out_vector_bytes))
        with m.If(written):
            m.d.sync += out_byte.eq(Mux(out_byte == self.out_vector_bytes - 1, 0, out_byte + 1))
            with m.If(out_byte == self.out_vector_bytes - 1):
                m.d.sync += vectors_done.eq(vectors_done + 1)
        with m.If(outstanding != 0):
            m.d.sync += busy_cycles.eq(busy_cycles + 1)
        with m.If(rx.timed_out):
            m.d.sync += timeouts.eq(timeouts + 1)
        accepted = Signal()         # a SEND starts feeding this cycle
        added = Signal(32)          # registered: the frame decision stays off the adder
        m.d.sync += [added.eq(Mux(accepted, pend, 0)),
                     outstanding.eq(outstanding + added - written)]

        # -- executing a received frame ----------------------------------------------------
        tx = _Transmitter(_STATUS_BYTES)
        m.submodules.tx = tx
        wiring.connect(m, wiring.flipped(self.o_tx), tx.o_tx)
        m.d.comb += [out_r.addr.eq((rd_ptr + tx.index)[:abits]), tx.data_byte.eq(out_r.data)]
        last_send = Signal(8)
        last_send_valid = Signal()
        reset_pending = Signal()
        # a frame is executed three cycles after it is complete: two register stages cut the
        # arithmetic (buffer level, room, acknowledged bytes) and the frame's checks (length,
        # repeated SEND) into short paths. level_q and out_q are a consistent snapshot (a
        # written byte moves one from out_q to level_q).
        level_q, out_q = Signal(16), Signal(32)
        m.d.sync += [level_q.eq(level), out_q.eq(outstanding)]
        prep = Signal(range(3))
        delta, left, used, most = Signal(16), Signal(16), Signal(33), Signal(16)
        room, bad_ack = Signal(), Signal()
        bad_send, repeat, bad_read = Signal(), Signal(), Signal()
        with m.If(~rx.complete):
            m.d.sync += prep.eq(0)
        with m.Elif(prep == 0):
            m.d.sync += [prep.eq(1), delta.eq(ack - rd_ptr), used.eq(level_q + out_q + pend),
                         most.eq(Mux(limit > self.max_read, self.max_read, limit)),
                         bad_send.eq((rx.length == 0) | (rx.length > self.in_capacity)
                                     | (vec_byte != 0)),
                         repeat.eq(last_send_valid & (last_send == rx.seq)),
                         bad_read.eq(rx.length != 4)]
        with m.Elif(prep == 1):
            m.d.sync += [prep.eq(2), room.eq(used <= self.out_capacity),
                         bad_ack.eq(delta > level_q), left.eq(level_q - delta)]
        status = Cat(vectors_done, busy_cycles, clock_cycles, crc_errors, timeouts, level_q,
                     outstanding[:16],
                     Const(self.in_vector_bytes, 16), Const(self.out_vector_bytes, 16),
                     Const(self.in_capacity, 16), Const(self.out_capacity, 16), rd_ptr,
                     Const(self.max_read, 16), last_send, last_send_valid, Const(0, 7),
                     Const(proto.PROTOCOL_VERSION, 8), Const(self.selftest_vectors, 16),
                     Const(0, 32) if st is None else st.cycles,
                     Const(0, 16) if st is None else st.mismatches,
                     Const(0, 8) if st is None else st.running)

        def reply(code, kind=_Transmitter.NONE, length=0, reason=0):
            m.d.comb += [tx.start.eq(1), tx.code.eq(code), tx.kind.eq(kind),
                         tx.length.eq(length), tx.reason.eq(reason)]

        fire = Signal()
        m.d.comb += [fire.eq(rx.complete & (prep == 2) & tx.idle),
                     tx.seq.eq(rx.seq), tx.status.eq(status), rx.done.eq(fire)]
        with m.If(fire):
            with m.If(~rx.crc_ok):
                m.d.sync += crc_errors.eq(crc_errors + 1)
                m.d.comb += self.crc_error.eq(1)
                reply(proto.NAK)
            with m.Elif(rx.cmd == proto.SEND):
                with m.If(bad_send):
                    reply(proto.ERROR, _Transmitter.REASON, 1, 2)
                with m.Elif(repeat):
                    reply(proto.ACK | proto.SEND)
                with m.Elif(~write_ok | feeding | ~room):
                    reply(proto.BUSY)
                with m.Else():
                    m.d.comb += accepted.eq(1)
                    m.d.sync += [feed_addr.eq(0), feed_end.eq(rx.length),
                                 last_send.eq(rx.seq), last_send_valid.eq(1)]
                    reply(proto.ACK | proto.SEND)
            with m.Elif(rx.cmd == proto.READ):
                with m.If(bad_read):
                    reply(proto.ERROR, _Transmitter.REASON, 1, 2)
                with m.Elif(bad_ack):
                    reply(proto.ERROR, _Transmitter.REASON, 1, 3)
                with m.Else():
                    m.d.sync += rd_ptr.eq(ack)
                    reply(proto.ACK | proto.READ, _Transmitter.DATA, Mux(left > most, most, left))
            with m.Elif(rx.cmd == proto.STATUS):
                reply(proto.ACK | proto.STATUS, _Transmitter.STATUS, _STATUS_BYTES)
            with m.Elif(rx.cmd == proto.SELFTEST):
                if st is None:
                    reply(proto.ERROR, _Transmitter.REASON, 1, 1)
                else:
                    with m.If(feeding | (outstanding != 0) | to_beats.o_data.valid | st_mode):
                        reply(proto.BUSY)
                    with m.Else():
                        m.d.comb += st.start.eq(1)
                        m.d.sync += st_mode.eq(1)
                        reply(proto.ACK | proto.SELFTEST)
            with m.Elif(rx.cmd == proto.RESET):
                m.d.sync += reset_pending.eq(1)
                reply(proto.ACK | proto.RESET)
            with m.Else():
                reply(proto.ERROR, _Transmitter.REASON, 1, 1)
        with m.If(reset_pending & tx.idle & ~tx.start):
            m.d.comb += self.soft_reset.eq(1)
        if st is not None:
            with m.If(st_mode & ~st.running & ~st.start):
                m.d.sync += st_mode.eq(0)
        return m

    def _network_streams(self, m, link_in, link_out, st_mode):
        """Connect the network's streams to the link (and, while ``st_mode``, to the
        self-test instead); return the :class:`SelfTest` or None."""
        if self.selftest is None:
            wiring.connect(m, wiring.flipped(self.o_data), link_in)
            wiring.connect(m, wiring.flipped(self.i_data), link_out)
            return None
        m.submodules.selftest = st = SelfTest(self.in_shape, self.out_shape,
                                              inputs=self.selftest[0], expected=self.selftest[1])
        for mode, (source, sink) in ((1, (st.o_data, st.i_data)), (0, (link_in, link_out))):
            with m.If(st_mode == mode):
                m.d.comb += [self.o_data.payload.eq(source.payload),
                             self.o_data.valid.eq(source.valid),
                             source.ready.eq(self.o_data.ready),
                             sink.payload.eq(self.i_data.payload),
                             sink.valid.eq(self.i_data.valid),
                             self.i_data.ready.eq(sink.ready)]
        return st


class _Receiver(wiring.Component):
    """Frame receiver: parses header, payload and CRC; ``complete`` holds until ``done``."""

    def __init__(self, timeout):
        self.timeout = timeout
        super().__init__({
            "i_rx": In(stream.Signature(8)),
            "start": Out(1),            # strobe: a magic byte began a frame
            "payload_valid": Out(1),    # strobe: ``byte`` is payload byte number ``count``
            "byte": Out(8),
            "count": Out(16),
            "seq": Out(8), "cmd": Out(8), "length": Out(16),
            "complete": Out(1),         # a whole frame is waiting to be executed
            "crc_ok": Out(1),
            "timed_out": Out(1),        # strobe: a frame was dropped by the timeout
            "done": In(1),              # the frame waiting is executed this cycle (if complete)
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = catalog.CRC16_IBM_3740(data_width=8).create()
        # the timeout counts ticks of a prescaler (short carry chains): it fires between
        # ``timeout`` and ``timeout + _PRESCALE`` cycles after the last byte
        ticks = -(-self.timeout // _PRESCALE)
        prescaler = Signal(range(_PRESCALE))
        tick = Signal()
        m.d.sync += [prescaler.eq(prescaler + 1), tick.eq(prescaler == _PRESCALE - 1)]
        timer = Signal(range(ticks + 2))
        got = Signal()
        byte = self.i_rx.payload
        m.d.comb += [self.i_rx.ready.eq(1), got.eq(self.i_rx.valid), self.byte.eq(byte),
                     crc.data.eq(byte), self.crc_ok.eq(crc.match_detected)]
        with m.If(got):
            m.d.sync += timer.eq(ticks + 1)
        with m.Elif(tick & (timer != 0)):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("HUNT"):
                with m.If(got & (byte == proto.MAGIC)):
                    m.d.comb += [self.start.eq(1), crc.start.eq(1), crc.valid.eq(1)]
                    m.next = "SEQ"
            for state, target, nxt in (("SEQ", self.seq, "CMD"), ("CMD", self.cmd, "LEN0"),
                                       ("LEN0", self.length[:8], "LEN1")):
                with m.State(state):
                    self._timeout(m, timer)
                    with m.If(got):
                        m.d.comb += crc.valid.eq(1)
                        m.d.sync += target.eq(byte)
                        m.next = nxt
            with m.State("LEN1"):
                self._timeout(m, timer)
                with m.If(got):
                    m.d.comb += crc.valid.eq(1)
                    m.d.sync += [self.length[8:].eq(byte), self.count.eq(0)]
                    m.next = "PAYLOAD"
                    with m.If(Cat(self.length[:8], byte) == 0):
                        m.next = "CRC0"
            with m.State("PAYLOAD"):
                self._timeout(m, timer)
                with m.If(got):
                    m.d.comb += [crc.valid.eq(1), self.payload_valid.eq(1)]
                    m.d.sync += self.count.eq(self.count + 1)
                    with m.If(self.count == self.length - 1):
                        m.next = "CRC0"
            with m.State("CRC0"):
                self._timeout(m, timer)
                with m.If(got):
                    m.d.comb += crc.valid.eq(1)
                    m.next = "CRC1"
            with m.State("CRC1"):
                self._timeout(m, timer)
                with m.If(got):
                    m.d.comb += crc.valid.eq(1)
                    m.next = "EXEC"
            with m.State("EXEC"):
                m.d.comb += self.complete.eq(1)
                with m.If(self.done):
                    m.next = "HUNT"
        return m

    def _timeout(self, m, timer):
        with m.If(~self.i_rx.valid & (timer == 0)):
            m.d.comb += self.timed_out.eq(1)
            m.next = "HUNT"


class _Transmitter(wiring.Component):
    """Reply transmitter: header, payload (none, one reason byte, status snapshot or output
    buffer bytes at ``index``), CRC. ``start`` is taken only while ``idle``."""

    NONE, REASON, STATUS, DATA = range(4)

    def __init__(self, status_bytes):
        self.status_bytes = status_bytes
        super().__init__({
            "o_tx": Out(stream.Signature(8)),
            "start": In(1), "seq": In(8), "code": In(8), "kind": In(2), "length": In(16),
            "reason": In(8), "status": In(8 * status_bytes),
            "index": Out(16),           # payload byte wanted from the output buffer
            "data_byte": In(8),         # that byte, one cycle after ``index`` changed
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = catalog.CRC16_IBM_3740(data_width=8).create()
        seq, code, kind, length = Signal(8), Signal(8), Signal(2), Signal(16)
        reason, status = Signal(8), Signal(8 * self.status_bytes)
        counted = Signal()          # the byte on o_tx goes into the CRC
        primed = Signal()
        head = Signal(range(5))
        o = self.o_tx
        moved = o.valid & o.ready
        m.d.comb += [crc.data.eq(o.payload), crc.valid.eq(moved & counted)]
        with m.If(moved):
            m.d.sync += o.valid.eq(0)

        def emit(byte, in_crc=True):
            m.d.sync += [o.payload.eq(byte), o.valid.eq(1), counted.eq(in_crc)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(~o.valid)
                with m.If(self.start & ~o.valid):
                    m.d.comb += crc.start.eq(1)
                    m.d.sync += [seq.eq(self.seq), code.eq(self.code), kind.eq(self.kind),
                                 length.eq(self.length), reason.eq(self.reason),
                                 status.eq(self.status), head.eq(0), self.index.eq(0),
                                 primed.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                with m.If(~o.valid):
                    header = Cat(Const(proto.MAGIC, 8), seq, code, length)
                    emit(header.word_select(head, 8))
                    m.d.sync += head.eq(head + 1)
                    with m.If(head == 4):
                        m.next = "PAYLOAD"
                        with m.If(length == 0):
                            m.next = "CRC_HI"
            with m.State("PAYLOAD"):
                with m.If(~o.valid):
                    with m.If(primed):
                        with m.Switch(kind):
                            with m.Case(self.REASON):
                                emit(reason)
                            with m.Case(self.STATUS):
                                emit(status.word_select(
                                    self.index[:(self.status_bytes - 1).bit_length()], 8))
                            with m.Default():
                                emit(self.data_byte)
                        m.d.sync += [self.index.eq(self.index + 1), primed.eq(0)]
                        with m.If(self.index == length - 1):
                            m.next = "CRC_HI"
                    with m.Else():
                        m.d.sync += primed.eq(1)
            with m.State("CRC_HI"):
                with m.If(~o.valid):
                    emit(crc.crc[8:], in_crc=False)
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                with m.If(~o.valid):
                    emit(crc.crc[:8], in_crc=False)
                    m.next = "IDLE"
        return m


class SelfTest(wiring.Component):
    """On-chip self-test: stored input beats fed to the network back to back, its output beats
    compared with stored expected beats.

    Parameters
    ----------
    in_shape, out_shape : shape-castable
        The network's beat shapes.
    inputs, expected : sequence of int
        Bit patterns of every input beat and of every expected output beat (whole vectors).

    Attributes
    ----------
    o_data : Out(stream.Signature(in_shape))
        Input beats, one per cycle while the network takes them, from ``start`` on.
    i_data : In(stream.Signature(out_shape))
        Output beats; always ready.
    start : In(1)
        Strobe: run (again) from the first beat; ignored while running.
    running : Out(1)
        From ``start`` until the last expected beat arrived.
    cycles : Out(32)
        Cycles of the last run, from ``start`` to the last output beat.
    mismatches : Out(16)
        Output beats of the last run that differed from the expected ones (saturating).
    """

    def __init__(self, in_shape, out_shape, *, inputs, expected):
        self.in_shape, self.out_shape = in_shape, out_shape
        self.inputs, self.expected = list(inputs), list(expected)
        if not self.inputs or not self.expected:
            raise ValueError("a self-test needs at least one input and one expected beat")
        super().__init__({
            "o_data": Out(stream.Signature(in_shape)),
            "i_data": In(stream.Signature(out_shape)),
            "start": In(1), "running": Out(1), "cycles": Out(32), "mismatches": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        in_width = Shape.cast(self.in_shape).width
        out_width = Shape.cast(self.out_shape).width
        m.submodules.in_rom = in_rom = Memory(shape=in_width, depth=len(self.inputs),
                                              init=self.inputs)
        m.submodules.out_rom = out_rom = Memory(shape=out_width, depth=len(self.expected),
                                                init=self.expected)
        in_r, out_r = in_rom.read_port(), out_rom.read_port()
        feed = Signal(range(len(self.inputs) + 1), init=len(self.inputs))
        valid = Signal()
        m.d.comb += [Value.cast(self.o_data.payload).eq(in_r.data), self.o_data.valid.eq(valid),
                     in_r.addr.eq(feed), in_r.en.eq(~valid | self.o_data.ready)]
        with m.If(in_r.en):
            m.d.sync += valid.eq(feed != len(self.inputs))
            with m.If(feed != len(self.inputs)):
                m.d.sync += feed.eq(feed + 1)

        got = Signal(range(len(self.expected) + 1), init=len(self.expected))
        beat = Signal(out_width)
        compare = Signal()
        m.d.comb += [self.i_data.ready.eq(1), out_r.addr.eq(got), self.running.eq(
            (got != len(self.expected)) | compare)]
        m.d.sync += compare.eq(0)
        with m.If(self.i_data.valid & (got != len(self.expected))):
            m.d.sync += [beat.eq(Value.cast(self.i_data.payload)), compare.eq(1),
                         got.eq(got + 1)]
        with m.If(compare & (beat != out_r.data) & (self.mismatches != 0xFFFF)):
            m.d.sync += self.mismatches.eq(self.mismatches + 1)
        with m.If(self.running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.If(self.start & ~self.running & ~valid):
            m.d.sync += [feed.eq(0), got.eq(0), self.cycles.eq(0), self.mismatches.eq(0)]
        return m
