"""Proof wrappers for components with several input streams (the join units) and for the
AXI4-Stream top level (see docs/FORMAL.md).

Like :mod:`.engines`, these observe ports only and are run bounded from reset, with the reset
free at every cycle:

* :class:`AddProof`: the stream rules at every port; the inputs are taken together (one beat of
  each in the same cycle, never one alone); counting (output beats never exceed the input beat
  groups taken, none left after draining); the beat group chosen by ``pick`` leaves with
  ``sum_i scales[i] * x_i`` in element ``which`` after exactly the groups ahead of it (identity
  output stage); a clean reset.
* :class:`ConcatProof`: the stream rules; an output beat is taken exactly when one input beat
  is, from the input whose turn it is (``channels[i] / n`` beats of input ``i`` per pixel, in
  order) and with that beat's payload; the order restarts at a reset.
* :class:`AxisProof`: the AXI4-Stream rules (``tvalid`` held, ``tdata``/``tlast`` stable until
  taken) at both sides of an :class:`~nnaccel.hw.common.pipeline.AxisTop`, ``m_axis_tlast``
  high exactly on every ``out_vector_beats``-th output beat since reset, counting of beats
  through the wrapped pass-through network, and a clean reset.
"""

from amaranth.hdl import Assert, Assume, Cat, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .harness import Built, StreamRules, elaborate, mutate_output, transfer

__all__ = ["AddProof", "ConcatProof", "AxisProof", "JoinMutant", "JOIN_MUTANTS"]


def _quiet(m, inputs, o, drain):
    """High after ``drain`` cycles in which no input offered a beat and the output was ready."""
    count = Signal(range(drain + 1))
    busy = Cat(i.valid for i in inputs).any() | ~o.ready
    with m.If(busy):
        m.d.sync += count.eq(0)
    with m.Elif(count != drain):
        m.d.sync += count.eq(count + 1)
    return count == drain


def _join_signature(dut):
    ports = dut.in_ports
    sig = {f"i{n}": In(stream.Signature(p.payload.shape())) for n, p in enumerate(ports)}
    sig["o_data"] = Out(stream.Signature(dut.o_data.payload.shape()))
    sig["pick"] = In(1)
    return sig


class JoinMutant(wiring.Component):
    """A join unit wrapped so that it breaks one rule:

    * ``"drop"``: input 0's ready is always 1, so its beat is lost while the unit waits;
    * ``"valid_waits"``: output valid is the unit's valid and ready;
    * ``"unstable"``: the payload of a waiting output beat toggles its low bit every cycle;
    * ``"stale"``: a one-beat output register whose valid has no reset;
    * ``"swap"``: inputs 0 and 1 exchanged (the order of a concat, the scales of an add).
    """

    def __init__(self, inner, kind):
        if kind not in JOIN_MUTANTS:
            raise ValueError(f"unknown mutant {kind!r}")
        self.inner, self.kind = inner, kind
        self.params = inner.params
        self._ports = [p.payload.shape() for p in inner.in_ports]
        super().__init__({
            **{f"in{n}": In(stream.Signature(s)) for n, s in enumerate(self._ports)},
            "o_data": Out(stream.Signature(inner.o_data.payload.shape())),
        })

    @property
    def in_ports(self):
        return [getattr(self, f"in{n}") for n in range(len(self._ports))]

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        outer_ins = self.in_ports
        if self.kind == "swap":
            outer_ins = [outer_ins[1], outer_ins[0], *outer_ins[2:]]
        for n, (i, ii) in enumerate(zip(outer_ins, inner.in_ports, strict=True)):
            m.d.comb += [ii.payload.eq(i.payload), ii.valid.eq(i.valid), i.ready.eq(ii.ready)]
            if self.kind == "drop" and n == 0:
                m.d.comb += i.ready.eq(1)
        mutate_output(m, self.kind, inner.o_data, self.o_data)
        return m


JOIN_MUTANTS = ("drop", "valid_waits", "unstable", "stale", "swap")


class _JoinProof(wiring.Component):
    def __init__(self, dut, *, drain, bound, mutant=None):
        self.dut, self.drain, self.bound = dut, drain, bound
        self.outer = mutant(dut) if mutant else dut
        super().__init__(_join_signature(dut))

    @property
    def inputs(self):
        return [getattr(self, f"i{n}") for n in range(len(self.dut.in_ports))]

    def _wire(self, m, platform):
        fragment, _loc = elaborate(self.outer, platform)
        m.submodules.dut = Built(fragment)
        for i, ii in zip(self.inputs, self.outer.in_ports, strict=True):
            wiring.connect(m, wiring.flipped(i), ii)
        wiring.connect(m, self.outer.o_data, wiring.flipped(self.o_data))
        rules = StreamRules(m)
        for i in self.inputs:
            rules.assume_input(i)
        rules.assert_output(self.o_data)
        return rules


class AddProof(_JoinProof):
    """Port properties of an :class:`~nnaccel.hw.join.engine.AddUnit` with an identity output
    stage (its output element is the exact scaled sum)."""

    def elaborate(self, platform):
        m = Module()
        rules = self._wire(m, platform)
        ins, o = self.inputs, self.o_data
        p = self.dut.params
        taken = transfer(ins[0])
        for i in ins[1:]:
            m.d.comb += Assert(transfer(i) == taken, "inputs not taken together")
        owed = Signal(range(-1, self.bound + 2))
        m.d.sync += owed.eq(owed + taken - transfer(o))
        m.d.comb += [Assert(~o.valid | (owed > 0), "an output beat no input group asked for"),
                     Assert(owed <= self.bound, "more beats inside than the unit can hold")]
        with m.If(_quiet(m, ins, o, self.drain)):
            m.d.comb += Assert(owed == 0, "output beats missing after draining")
        with m.If(rules.past_rst):
            m.d.comb += Assert(~o.valid, "valid after reset")
            with m.If(Cat(i.valid for i in ins).all()):
                m.d.comb += Assert(ins[0].ready, "not ready after reset")

        # data: the picked group's element 0 leaves as the scaled sum
        out_shape = o.payload.shape().elem_shape
        armed = Signal()
        pos = Signal(range(self.bound + 2))
        want = Signal(out_shape)
        with m.If(armed & transfer(o)):
            with m.If(pos == 0):
                m.d.comb += Assert(o.payload[0] == want, "picked sum corrupted")
                m.d.sync += armed.eq(0)
            with m.Else():
                m.d.sync += pos.eq(pos - 1)
        with m.If(~armed & taken & self.pick):
            total = 0
            for s, i in zip(p.scales, ins, strict=True):
                total = total + i.payload[0] * s
            m.d.sync += [armed.eq(1), pos.eq(owed - transfer(o)), want.eq(total)]
        return m


class ConcatProof(_JoinProof):
    """Port properties of a :class:`~nnaccel.hw.join.engine.ConcatUnit` (zero latency: each
    output beat is the input beat taken in the same cycle)."""

    def elaborate(self, platform):
        m = Module()
        self._wire(m, platform)
        ins, o = self.inputs, self.o_data
        p = self.dut.params
        words = [c // p.n for c in p.channels]
        per_pixel = sum(words)
        pos = Signal(range(per_pixel))
        with m.If(transfer(o)):
            m.d.sync += pos.eq(Mux(pos == per_pixel - 1, 0, pos + 1))
        m.d.comb += Assert(transfer(o) == Cat(transfer(i) for i in ins).any(),
                           "an output beat without an input beat, or the reverse")
        start = 0
        for n, (i, w) in enumerate(zip(ins, words, strict=True)):
            turn = (pos >= start) & (pos < start + w)
            m.d.comb += Assert(~transfer(i) | turn, f"input {n} taken out of its turn")
            with m.If(transfer(i)):
                m.d.comb += Assert(Value.cast(o.payload) == Value.cast(i.payload),
                                   f"input {n}'s beat corrupted")
            start += w
        return m


class AxisProof(wiring.Component):
    """Port properties of an :class:`~nnaccel.hw.common.pipeline.AxisTop` around a network
    that passes its beats through unchanged (so in - out = occupancy <= ``bound``)."""

    def __init__(self, top, *, drain, bound):
        self.top, self.drain, self.bound = top, drain, bound
        self.period = top.out_vector_beats
        self.iw = len(top.s_axis_tdata)
        self.ow = len(top.m_axis_tdata)
        super().__init__({"s_data": In(self.iw), "s_valid": In(1), "s_last": In(1),
                          "s_ready": Out(1), "m_data": Out(self.ow), "m_valid": Out(1),
                          "m_ready": In(1), "m_last": Out(1)})

    def elaborate(self, platform):
        m = Module()
        fragment, _loc = elaborate(self.top, platform)
        m.submodules.dut = Built(fragment)
        t = self.top
        m.d.comb += [t.s_axis_tdata.eq(self.s_data), t.s_axis_tvalid.eq(self.s_valid),
                     t.s_axis_tlast.eq(self.s_last), self.s_ready.eq(t.s_axis_tready),
                     self.m_data.eq(t.m_axis_tdata), self.m_valid.eq(t.m_axis_tvalid),
                     t.m_axis_tready.eq(self.m_ready), self.m_last.eq(t.m_axis_tlast)]
        rules = StreamRules(m)
        # AXI4-Stream: a beat (data and last) that waits is held
        s_beat = Cat(self.s_data, self.s_last)
        m_beat = Cat(self.m_data, self.m_last)
        for valid, ready, beat, check in ((self.s_valid, self.s_ready, s_beat, Assume),
                                          (self.m_valid, self.m_ready, m_beat, Assert)):
            waiting = Signal()
            held = Signal(len(beat))
            m.d.sync += [waiting.eq(valid & ~ready), held.eq(beat)]
            with m.If(waiting):
                m.d.comb += check(valid & (beat == held))

        s_taken = self.s_valid & self.s_ready
        m_taken = self.m_valid & self.m_ready
        owed = Signal(range(-1, self.bound + 2))
        m.d.sync += owed.eq(owed + s_taken - m_taken)
        m.d.comb += [Assert(~self.m_valid | (owed > 0), "an output beat nobody sent"),
                     Assert(owed <= self.bound, "more beats inside than the network holds")]
        count = Signal(range(self.drain + 1))
        with m.If(self.s_valid | ~self.m_ready):
            m.d.sync += count.eq(0)
        with m.Elif(count != self.drain):
            m.d.sync += count.eq(count + 1)
        with m.If(count == self.drain):
            m.d.comb += Assert(owed == 0, "beats stuck after draining")

        beat = Signal(range(self.period))
        with m.If(m_taken):
            m.d.sync += beat.eq(Mux(beat == self.period - 1, 0, beat + 1))
        with m.If(self.m_valid):
            m.d.comb += Assert(self.m_last == (beat == self.period - 1),
                               "tlast not on the last beat of a vector")
        with m.If(rules.past_rst):
            m.d.comb += [Assert(~self.m_valid, "valid after reset"),
                         Assert(self.s_ready, "not ready after reset")]
        return m
