"""A streaming dataflow pipeline of layer engines, and its AXI4-Stream top level."""

from dataclasses import dataclass

from amaranth import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .arith import cdiv
from .stream import Gearbox, StreamFifo, check_positive, vector_stream

__all__ = ["Stage", "Pipeline", "AxisTop", "INPUT_LATENCY"]

#: Cycles from the transfer of a beat into an idle :class:`Pipeline` to the transfer of that beat
#: into its first stage, when the first stage takes the pipeline's beat (no gearbox in front, as
#: ``generate`` builds it) and is ready: the first stage's input FIFO, empty, in distributed RAM
#: (:attr:`StreamFifo.latency`; one cycle more when that FIFO is deep enough for block RAM).
INPUT_LATENCY = 2


@dataclass(frozen=True)
class Stage:
    """A layer engine and what its ports carry: ``in_count`` elements in beats of ``in_beat``,
    ``out_count`` elements in beats of ``out_beat``.

    ``fifo_depth``: beats of the FIFO in front of the stage (default: the whole input,
    ``ceil(in_count / wide) + fifo_slack`` beats of the wider side). ``in_group``: the
    elements after which the gearbox in front restarts its count (default ``in_count``; a
    feature map's channels ``C``, since every beat width divides ``C``)."""

    name: str
    engine: wiring.Component
    in_count: int
    in_beat: int
    out_count: int
    out_beat: int
    fifo_depth: int | None = None
    in_group: int | None = None


class Pipeline(wiring.Component):
    """Chains stages as a streaming dataflow pipeline.

    Before each stage a FIFO (by default holding a whole input vector, so a stage that reads its
    input only in its first neuron fold finds the next vector ready; :attr:`Stage.fifo_depth`
    sets another depth) and, where the producer's beat differs
    from the consumer's, a :class:`Gearbox` converts, on the narrow side of the FIFO.
    Throughput: that of the slowest stage.
    """

    def __init__(self, stages, *, in_shape, in_beat, out_shape, fifo_slack=2):
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages = list(stages)
        self.in_beat = check_positive("in_beat", in_beat)
        self.out_beat = self.stages[-1].out_beat
        self.fifo_slack = check_positive("fifo_slack", fifo_slack, zero=True)
        self._in_shape = in_shape
        super().__init__({
            "i_data": In(vector_stream(in_shape, in_beat)),
            "o_data": Out(vector_stream(out_shape, self.out_beat)),
        })

    def elaborate(self, platform):
        m = Module()
        #: The FIFO in front of each stage, in order (for testbenches that watch occupancy).
        self.fifos = []
        upstream, beat, shape = wiring.flipped(self.i_data), self.in_beat, self._in_shape
        for n, st in enumerate(self.stages):
            # The FIFO sits on the wide side of the gearbox, so it delivers a whole vector at
            # the consumer's full rate (one beat per cycle) in its first neuron fold.
            gear = None
            if beat != st.in_beat:
                gear = Gearbox(shape, n_in=beat, n_out=st.in_beat,
                               count=st.in_group or st.in_count)
                m.submodules[f"gear{n}_{st.name}"] = gear
            wide = max(beat, st.in_beat)
            depth = st.fifo_depth or cdiv(st.in_count, wide) + self.fifo_slack
            fifo = StreamFifo(data.ArrayLayout(shape, wide), depth)
            self.fifos.append(fifo)
            m.submodules[f"fifo{n}_{st.name}"] = fifo
            chain = [fifo, gear] if gear is not None and beat > st.in_beat else [gear, fifo]
            for block in chain:
                if block is not None:
                    wiring.connect(m, upstream, block.i_data)
                    upstream = block.o_data
            m.submodules[f"layer{n}_{st.name}"] = st.engine
            wiring.connect(m, upstream, st.engine.i_data)
            upstream = st.engine.o_data
            beat, shape = st.out_beat, st.engine.o_data.payload.shape().elem_shape
        wiring.connect(m, upstream, wiring.flipped(self.o_data))
        return m


class AxisTop(wiring.Component):
    """AXI4-Stream top level around a stream component with ``i_data``/``o_data``.

    Ports ``s_axis_tdata/tvalid/tready/tlast`` and ``m_axis_tdata/tvalid/tready/tlast``;
    ``s_axis_tlast`` is accepted and ignored (framing is counted), ``m_axis_tlast`` marks the last
    of every ``out_vector_beats`` output beats.
    """

    def __init__(self, inner, *, out_vector_beats):
        self.inner = inner
        self.out_vector_beats = check_positive("out_vector_beats", out_vector_beats)
        iw = inner.i_data.payload.shape().size
        ow = inner.o_data.payload.shape().size
        super().__init__({
            "s_axis_tdata": In(iw), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(ow), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.network = net = self.inner
        beat = Signal(range(self.out_vector_beats))
        last = beat == self.out_vector_beats - 1
        m.d.comb += [
            net.i_data.payload.eq(self.s_axis_tdata),
            net.i_data.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(net.i_data.ready),
            self.m_axis_tdata.eq(net.o_data.payload),
            self.m_axis_tvalid.eq(net.o_data.valid),
            net.o_data.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(last),
        ]
        with m.If(net.o_data.valid & self.m_axis_tready):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
        return m
