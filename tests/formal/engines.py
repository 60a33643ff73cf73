"""Proof wrappers at the ports of whole engines and pipelines (see docs/FORMAL.md).

These are black-box: only the ports are observed, and the proofs are bounded (``mode bmc``) from
reset, since their invariants would need the engines' internals. Each adds:

* the stream rules at both ports (:class:`.harness.StreamRules`);
* the clean-reset property: in the cycle after a reset the output is invalid and the input
  ready;
* counting: the output beats owed (``out_per_vector`` for every complete input vector, minus the
  output transfers) never go negative (no beat duplicated or made up) and, after ``drain``
  quiet cycles (no input offered, output ready), are zero (no beat lost or stuck);
* for pipelines of pass-through stages, a data-tracking property on single elements
  (:class:`ElementProof`).
"""

from amaranth.hdl import Assert, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .harness import Built, StreamRules, elaborate, passthrough, transfer

__all__ = ["VectorProof", "ElementProof"]


def _signature(dut):
    return {"i_data": In(stream.Signature(dut.i_data.payload.shape())),
            "o_data": Out(stream.Signature(dut.o_data.payload.shape())),
            "pick": In(1)}


def _quiet(m, i, o, drain):
    """A signal that is high after ``drain`` cycles without input offered and with output
    ready."""
    count = Signal(range(drain + 1))
    with m.If(i.valid | ~o.ready):
        m.d.sync += count.eq(0)
    with m.Elif(count != drain):
        m.d.sync += count.eq(count + 1)
    return count == drain


class VectorProof(wiring.Component):
    """Port properties of a vector engine: ``in_per_vector`` input beats give ``out_per_vector``
    output beats, all out within ``drain`` quiet cycles. ``bound`` sizes the model's counter
    (at least the output beats a run of the proof's depth can owe).

    ``streaming``: the device may emit a vector's output beats before its input is complete (a
    window or pool unit emits an output pixel once its window is in); its output beats are then
    owed from the vector's first input beat, and the no-beat-lost check applies when no vector
    is partly in."""

    def __init__(self, dut, *, in_per_vector, out_per_vector, drain, bound, mutant=None,
                 streaming=False):
        self.dut, self.in_per_vector, self.out_per_vector = dut, in_per_vector, out_per_vector
        self.drain, self.bound, self.streaming = drain, bound, streaming
        self.outer = mutant(dut) if mutant else dut
        super().__init__(_signature(dut))

    def elaborate(self, platform):
        m = Module()
        fragment, _loc = elaborate(self.outer, platform)
        m.submodules.dut = Built(fragment)
        passthrough(m, self, self.outer)
        i, o = self.i_data, self.o_data
        rules = StreamRules(m)
        rules.assume_input(i)
        rules.assert_output(o)
        beat = Signal(range(self.in_per_vector))
        owed = Signal(range(-self.bound - 1, self.bound + self.out_per_vector + 1))
        owing_beat = 0 if self.streaming else self.in_per_vector - 1
        ends = transfer(i) & (beat == owing_beat)
        with m.If(transfer(i)):
            m.d.sync += beat.eq(Mux(beat == self.in_per_vector - 1, 0, beat + 1))
        m.d.sync += owed.eq(owed + Value.cast(ends) * self.out_per_vector - transfer(o))
        m.d.comb += Assert(~o.valid | (owed > 0), "an output beat no input vector asked for")
        with m.If(_quiet(m, i, o, self.drain) & (beat == 0)):
            m.d.comb += Assert(owed == 0, "output beats missing after draining")
        with m.If(rules.past_rst):
            m.d.comb += [Assert(~o.valid, "valid after reset"),
                         Assert(i.ready, "not ready after reset")]
        return m


class ElementProof(wiring.Component):
    """A pipeline that passes its elements through unchanged, in order (only the beat widths
    change): counting of elements, and one element (chosen by ``pick`` among the beat's
    elements, by the free ``which``) leaves with its value after exactly those ahead of it."""

    def __init__(self, dut, *, drain, bound, mutant=None):
        self.dut, self.drain, self.bound = dut, drain, bound
        self.outer = mutant(dut) if mutant else dut
        self.n_in = dut.i_data.payload.shape().length
        self.n_out = dut.o_data.payload.shape().length
        super().__init__({**_signature(dut), "which": In(range(self.n_in))})

    def elaborate(self, platform):
        m = Module()
        fragment, _loc = elaborate(self.outer, platform)
        m.submodules.dut = Built(fragment)
        passthrough(m, self, self.outer)
        i, o = self.i_data, self.o_data
        rules = StreamRules(m)
        rules.assume_input(i)
        rules.assert_output(o)
        n_in, n_out = self.n_in, self.n_out
        owed = Signal(range(-n_out - 1, self.bound + n_in + 1))
        m.d.sync += owed.eq(owed + transfer(i) * n_in - transfer(o) * n_out)
        m.d.comb += [
            Assert(~o.valid | (owed >= n_out), "an output beat with elements nobody sent"),
            Assert(owed <= self.bound, "more elements inside than the pipeline can hold"),
        ]
        with m.If(_quiet(m, i, o, self.drain)):
            m.d.comb += Assert(owed < n_out, "elements stuck after draining")
        with m.If(rules.past_rst):
            m.d.comb += [Assert(~o.valid, "valid after reset"),
                         Assert(i.ready, "not ready after reset")]

        armed = Signal()
        pos = Signal(range(self.bound + n_in + 1))  # elements ahead of the tracked one
        value = Signal(len(Value.cast(i.payload[0])))
        with m.If(armed & transfer(o)):
            with m.If(pos < n_out):
                for n in range(n_out):
                    with m.If(pos == n):
                        m.d.comb += Assert(Value.cast(o.payload[n]) == value,
                                           "tracked element corrupted")
                m.d.sync += armed.eq(0)
            with m.Else():
                m.d.sync += pos.eq(pos - n_out)
        with m.If(~armed & transfer(i) & self.pick):
            ahead = owed - Mux(transfer(o), n_out, 0) + self.which
            m.d.sync += [armed.eq(1), pos.eq(ahead), value.eq(i.payload[self.which])]
        return m
