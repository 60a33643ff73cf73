"""Join and fork units: :class:`AddUnit`, :class:`ConcatUnit` and :class:`Broadcast`.

Streams carry feature maps in HWC order, ``n`` elements per beat (``n`` divides the channels,
so a beat never straddles two pixels).
"""

from amaranth import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.outstage import OutputStage
from ..common.stream import SkidBuffer, vector_stream

__all__ = ["AddUnit", "ConcatUnit"]


class AddUnit(wiring.Component):
    """SPEC 2.1b ``add`` of :class:`~nnaccel.hw.join.params.AddParams` ``params``.

    Ports ``i_data[i]`` (``n`` elements of ``in_dtypes[i]`` per beat) and ``o_data`` (``n``
    elements of ``out_dtype``). A beat is taken from every input at once (the join aligns its
    inputs: it waits until each has a beat), summed exactly with the scales, registered in a
    skid buffer and passed through the output stage. One beat per cycle; latency 1 + the
    stage's.
    """

    def __init__(self, params):
        self.params = p = params
        super().__init__({
            "i_data": In(vector_stream(p.in_dtypes[0].shape, p.n)).array(p.k)
            if len({d.shape for d in p.in_dtypes}) == 1 else
            In(wiring.Signature({
                f"in{i}": Out(vector_stream(d.shape, p.n)) for i, d in enumerate(p.in_dtypes)})),
            "o_data": Out(vector_stream(p.out_dtype.shape, p.n)),
        })

    @property
    def in_ports(self):
        """The input streams, in order."""
        p = self.params
        if len({d.shape for d in p.in_dtypes}) == 1:
            return [self.i_data[i] for i in range(p.k)]
        return [getattr(self.i_data, f"in{i}") for i in range(p.k)]

    def elaborate(self, platform):
        m = Module()
        p = self.params
        ins = self.in_ports
        acc_layout = data.ArrayLayout(p.acc_shape, p.n)
        m.submodules.skid = skid = SkidBuffer(acc_layout)
        m.submodules.stage = stage = OutputStage.from_params(p.stage_params)
        all_valid = Signal()
        m.d.comb += all_valid.eq(Cat(port.valid for port in ins).all())
        acc = Signal(acc_layout)
        for j in range(p.n):
            total = 0
            for s, port in zip(p.scales, ins, strict=True):
                total = total + port.payload[j] * s
            m.d.comb += acc[j].eq(total)
        m.d.comb += [skid.i_data.payload.eq(acc), skid.i_data.valid.eq(all_valid)]
        for port in ins:
            m.d.comb += port.ready.eq(skid.i_data.ready & all_valid)
        wiring.connect(m, skid.o_data, stage.i_data)
        wiring.connect(m, stage.o_data, wiring.flipped(self.o_data))
        return m


class ConcatUnit(wiring.Component):
    """SPEC 2.1b ``concat`` of :class:`~nnaccel.hw.join.params.ConcatParams` ``params``.

    Ports ``i_data[i]`` and ``o_data``, ``n`` elements of ``dtype`` per beat. Per pixel it
    passes ``channels[0] / n`` beats of input 0, then ``channels[1] / n`` of input 1, ...;
    an input is read only in its turn (the others wait, their FIFOs absorbing what arrives).
    Combinational path from ``o_data.ready`` to the selected input's ``ready``; no latency.
    """

    def __init__(self, params):
        self.params = p = params
        super().__init__({
            "i_data": In(vector_stream(p.dtype.shape, p.n)).array(p.k),
            "o_data": Out(vector_stream(p.dtype.shape, p.n)),
        })

    @property
    def in_ports(self):
        """The input streams, in order."""
        return [self.i_data[i] for i in range(self.params.k)]

    def elaborate(self, platform):
        m = Module()
        p = self.params
        words = [c // p.n for c in p.channels]
        per_pixel = sum(words)
        pos = Signal(range(per_pixel))
        o = self.o_data
        with m.If(o.valid & o.ready):
            m.d.sync += pos.eq(0)
            with m.If(pos != per_pixel - 1):
                m.d.sync += pos.eq(pos + 1)
        start = 0
        for i, w in enumerate(words):
            port = self.i_data[i]
            with m.If((pos >= start) & (pos < start + w)):
                m.d.comb += [o.valid.eq(port.valid), o.payload.eq(port.payload),
                             port.ready.eq(o.ready)]
            start += w
        return m
