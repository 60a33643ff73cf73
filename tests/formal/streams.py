"""Proof wrappers for the stream blocks of hw/common/stream.py (see docs/FORMAL.md).

Each wrapper is a ``wiring.Component`` with the device's ``i_data``/``o_data`` ports (plus a
free ``pick`` input that chooses the beat the data-tracking property follows) and adds:

* the stream rules at both ports (:class:`.harness.StreamRules`);
* a counting property: a model of the occupancy, counted from the transfers at the ports,
  equals the device's own (white box) and never exceeds its depth;
* a data-tracking property: the one beat chosen by ``pick`` leaves with its own payload after
  exactly the beats that entered before it (so no beat is lost, duplicated or reordered);
* the clean-reset property: in the cycle after a reset the device is empty, its output is
  invalid and its input is ready.
"""

from amaranth.hdl import Assert, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .harness import Built, StreamRules, elaborate, passthrough, transfer

__all__ = ["BufferProof", "SplitProof", "PackProof", "skid_view", "fifo_view"]


def _signature(dut):
    return {"i_data": In(stream.Signature(dut.i_data.payload.shape())),
            "o_data": Out(stream.Signature(dut.o_data.payload.shape())),
            "pick": In(1)}


def skid_view(dut, loc):
    """SkidBuffer internals: occupancy and the slots (valid, payload), oldest first."""
    here = loc[dut]
    o = dut.o_data
    slots = [(o.valid, Value.cast(o.payload)), (here["skid_valid"], Value.cast(here["skid"]))]
    return o.valid + here["skid_valid"], slots


def fifo_view(dut, loc):
    """StreamFifo internals: the beats in its memory and stages (no slot view: its memory),
    and the invariants of its registered flags (``has``: a word in memory, ``ready``: a free
    one), which k-induction needs stated: they are registers of their own, not comparisons."""
    own = loc[dut]
    held, words = own["held"], own["words"]
    return own["level"], None, [own["has"] == (held != 0), own["ready"] == (held != words)]


class BufferProof(wiring.Component):
    """A FIFO-like block of ``depth`` beats (``SkidBuffer``: 2, ``StreamFifo``: its depth).

    ``view(dut, locals)`` returns the device's occupancy and, if the data invariant can be
    stated, its slots; ``data`` adds the data-tracking property; ``mutant(dut)`` wraps the
    device in a broken variant (the white box still reads the device inside it).
    """

    def __init__(self, dut, *, depth, view, data=True, mutant=None):
        self.dut, self.depth, self.view, self.data = dut, depth, view, data
        self.outer = mutant(dut) if mutant else dut
        super().__init__(_signature(dut))

    def elaborate(self, platform):
        m = Module()
        fragment, loc = elaborate(self.outer, platform)
        m.submodules.dut = Built(fragment)
        passthrough(m, self, self.outer)
        i, o = self.i_data, self.o_data
        rules = StreamRules(m)
        rules.assume_input(i)
        rules.assert_output(o)

        occupancy, slots, *invariants = self.view(self.dut, loc)
        for invariant in (invariants[0] if invariants else []):
            m.d.comb += Assert(invariant, "the device's own invariant")
        occ = Signal(range(self.depth + 2))
        m.d.sync += occ.eq(occ + transfer(i) - transfer(o))
        m.d.comb += [
            Assert(occ <= self.depth, "more beats inside than the depth"),
            Assert(occ == occupancy, "beats in - beats out != occupancy"),
            Assert(~o.valid | (occ != 0), "an output beat out of nothing"),
        ]
        with m.If(rules.past_rst):
            m.d.comb += [Assert(occupancy == 0, "not empty after reset"),
                         Assert(~o.valid, "valid after reset"),
                         Assert(i.ready, "not ready after reset")]
        if self.data:
            self._track(m, occ, slots)
        return m

    def _track(self, m, occ, slots):
        i, o = self.i_data, self.o_data
        payload = Value.cast(i.payload)
        armed = Signal()
        pos = Signal(range(self.depth + 1))  # beats ahead of the tracked one
        value = Signal(len(payload))
        with m.If(armed & transfer(o)):
            with m.If(pos == 0):
                m.d.comb += Assert(Value.cast(o.payload) == value, "tracked beat corrupted")
                m.d.sync += armed.eq(0)
            with m.Else():
                m.d.sync += pos.eq(pos - 1)
        with m.If(~armed & transfer(i) & self.pick):
            m.d.sync += [armed.eq(1), value.eq(payload), pos.eq(occ - transfer(o))]
        with m.If(armed):
            m.d.comb += Assert(pos < occ, "tracked beat lost")
            if slots is not None:
                held = _select(pos, [payload for _valid, payload in slots])
                m.d.comb += Assert(held == value, "tracked beat changed inside")


class SplitProof(wiring.Component):
    """Gearbox with ``n_in = k * n_out``: each input beat leaves as its ``k`` chunks in order
    (fewer for the vector's last beat), combinationally, and is accepted with its last chunk.

    The model counts the chunk (``sub``) and the output beat of the vector (``beat``) from the
    port transfers alone; white box, they equal the device's counters, and its last-chunk flag
    (a register since 0b33e55) equals their comparison, which k-induction needs.
    """

    def __init__(self, dut, *, mutant=None):
        self.dut = dut
        self.outer = mutant(dut) if mutant else dut
        super().__init__(_signature(dut))

    def elaborate(self, platform):
        m = Module()
        fragment, loc = elaborate(self.outer, platform)
        m.submodules.dut = Built(fragment)
        passthrough(m, self, self.outer)
        i, o, dut = self.i_data, self.o_data, self.dut
        rules = StreamRules(m)
        rules.assume_input(i)
        rules.assert_output(o)
        k = dut.n_in // dut.n_out
        beats = -(-dut.count // dut.n_out)
        sub, beat = Signal(range(k)), Signal(range(beats))
        last = (sub == k - 1) | (beat == beats - 1)
        with m.If(transfer(o)):
            m.d.sync += [sub.eq(Mux(last, 0, sub + 1)),
                         beat.eq(Mux(beat == beats - 1, 0, beat + 1))]
        chunk = len(Value.cast(o.payload))
        m.d.comb += [
            Assert(o.valid == i.valid, "output valid is not the input's"),
            Assert(i.ready == (o.ready & last), "input accepted before its last chunk"),
            Assert(~o.valid | (Value.cast(o.payload)
                               == Value.cast(i.payload).word_select(sub, chunk)),
                   "wrong chunk"),
            Assert(sub == loc[dut]["sub"], "chunk counter"),
            Assert(loc[dut]["last_sub"] == last, "last-chunk flag"),
            Assert((sub < k) & (beat < beats), "counters in range"),
        ]
        # the device counts the vector's beats only when its last input beat is short
        if "beat" in loc[dut]:
            m.d.comb += Assert(beat == loc[dut]["beat"], "beat counter")
        with m.If(rules.past_rst):
            m.d.comb += Assert(loc[dut]["sub"] == 0, "chunk counter after reset")
            if "beat" in loc[dut]:
                m.d.comb += Assert(loc[dut]["beat"] == 0, "beat counter after reset")
        return m


class PackProof(wiring.Component):
    """Gearbox with ``n_out = k * n_in``: ``k`` input beats (fewer at the vector's end) leave as
    one output beat, with the last of them; a tracked input beat (chosen by ``pick``) appears in
    its chunk of that output beat. The model counts input beats from the port transfers."""

    def __init__(self, dut, *, mutant=None):
        self.dut = dut
        self.outer = mutant(dut) if mutant else dut
        super().__init__(_signature(dut))

    def elaborate(self, platform):
        m = Module()
        fragment, loc = elaborate(self.outer, platform)
        m.submodules.dut = Built(fragment)
        passthrough(m, self, self.outer)
        i, o, dut = self.i_data, self.o_data, self.dut
        rules = StreamRules(m)
        rules.assume_input(i)
        rules.assert_output(o)
        k = dut.n_out // dut.n_in
        beats = -(-dut.count // dut.n_in)
        sub, beat = Signal(range(k)), Signal(range(beats))
        final = (sub == k - 1) | (beat == beats - 1)
        with m.If(transfer(i)):
            m.d.sync += [sub.eq(Mux(final, 0, sub + 1)),
                         beat.eq(Mux(beat == beats - 1, 0, beat + 1))]
        ibits, obits = Value.cast(i.payload), Value.cast(o.payload)
        chunk = len(ibits)
        m.d.comb += [
            Assert(transfer(o) == (transfer(i) & final), "an output beat without its inputs"),
            Assert(~o.valid | i.valid, "output valid before its last input"),
            Assert(i.ready == (~final | o.ready), "input refused mid-beat"),
            Assert(sub == loc[dut]["sub"], "chunk counter"),
            Assert(beat == loc[dut]["beat"], "beat counter"),
            Assert(loc[dut]["final"] == final, "completion flag"),
            Assert((sub < k) & (beat < beats), "counters in range"),
            Assert(~o.valid | (obits.word_select(sub, chunk) == ibits), "last chunk"),
        ]
        armed, where, value = Signal(), Signal(range(k)), Signal(chunk)
        held = loc[dut]["held"]
        with m.If(armed):
            if held:
                m.d.comb += Assert(_select(where, held) == value, "held chunk changed")
            m.d.comb += Assert(where < sub, "tracked chunk not held")
            with m.If(transfer(o)):
                m.d.comb += Assert(obits.word_select(where, chunk) == value, "chunk corrupted")
                m.d.sync += armed.eq(0)
        with m.Elif(transfer(i) & ~final & self.pick):
            m.d.sync += [armed.eq(1), where.eq(sub), value.eq(ibits)]
        with m.If(rules.past_rst):
            m.d.comb += [Assert(loc[dut]["sub"] == 0, "chunk counter after reset"),
                         Assert(loc[dut]["beat"] == 0, "beat counter after reset"),
                         Assert(~o.valid | i.valid, "valid after reset")]
        return m


def _select(index, values):
    out = values[-1]
    for n, v in enumerate(values[:-1]):
        out = Mux(index == n, v, out)
    return out
