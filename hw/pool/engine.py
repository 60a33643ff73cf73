"""Pooling units: max and sum over sliding windows, and global pooling over the whole map."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.outstage import OutputStage
from ..window.engine import WindowUnit
from .params import PoolKind, PoolParams

__all__ = ["Reduce", "Pool"]


def _beats(shape, n):
    return stream.Signature(data.ArrayLayout(shape, n))


class Reduce(wiring.Component):
    """Element-wise reduction of groups of beats.

    The input is groups of ``positions * words`` beats of ``n`` elements, ordered (position,
    word); for every group it emits ``words`` beats, beat ``w`` being the maximum (``op`` max) or
    the exact sum (``op`` sum) of the ``positions`` input beats of word ``w``, element by
    element. A window unit's patches (positions = taps, words = C/n) give pooled pixels; a map
    itself (positions = H*W) gives global pooling. The running values of the ``words`` words
    live in a :class:`~amaranth.lib.memory.Memory` (block or LUT RAM, not ``C`` registers: a
    global pool over many channels needs many of them), read one cycle ahead through a
    synchronous port; a single word is a register.

    Throughput one input beat per cycle; an output beat is registered and leaves one cycle after
    the last position's input beat. ``i_data.ready`` depends combinationally on
    ``o_data.ready`` only on the last position.

    Parameters
    ----------
    op : PoolKind
    positions, words, n : int
    in_shape, out_shape : Shape
        Element shapes; a sum's ``out_shape`` must hold every sum (not checked here), a max's
        is ``in_shape``.
    """

    def __init__(self, *, op, positions, words, n, in_shape, out_shape):
        self.op, self.positions, self.words = PoolKind(op), positions, words
        self._out_elem = out_shape
        super().__init__({"i_data": In(_beats(in_shape, n)),
                          "o_data": Out(_beats(out_shape, n))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_data, self.o_data
        layout = o.payload.shape()
        position = Signal(range(self.positions))
        word = Signal(range(self.words))
        last = position == self.positions - 1
        accept = i.valid & i.ready
        combined = Signal(layout)
        running = self._running(m, layout, word, accept, combined)

        for e in range(layout.length):
            x, acc = i.payload[e], running[e]
            if self.op is PoolKind.MAX:
                merged = Mux(x > acc, x, acc)
            else:
                merged = acc + x
            m.d.comb += combined[e].eq(Mux(position == 0, x, merged))

        m.d.comb += i.ready.eq(~last | ~o.valid | o.ready)
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(accept):
            with m.If(last):
                m.d.sync += [o.payload.eq(combined), o.valid.eq(1)]
            with m.If(word == self.words - 1):
                m.d.sync += [word.eq(0), position.eq(Mux(last, 0, position + 1))]
            with m.Else():
                m.d.sync += word.eq(word + 1)
        return m

    def _running(self, m, layout, word, accept, combined):
        """The running value of ``word``; ``combined`` becomes its new value on ``accept``."""
        if self.words == 1:
            value = Signal(layout)
            with m.If(accept):
                m.d.sync += value.eq(combined)
            return value
        m.submodules.running = mem = Memory(shape=layout, depth=self.words, init=[])
        write = mem.write_port()
        read = mem.read_port(domain="sync")  # never reads the word written in the same cycle
        following = Mux(word == self.words - 1, 0, word + 1)
        m.d.comb += [
            write.addr.eq(word), write.data.eq(combined), write.en.eq(accept),
            # The read is one cycle ahead: the word of the next beat.
            read.addr.eq(Mux(accept, following, word)), read.en.eq(1),
        ]
        return read.data


class Pool(wiring.Component):
    """A pooling layer (SPEC 2.1b ``maxpool2d`` or ``sumpool2d``, global ones included).

    ``i_data`` takes the map ``(C, H, W)`` in HWC order, ``n`` elements per beat (hardware
    encoding of ``dtype``); ``o_data`` emits the pooled map ``(C, OH, OW)`` in HWC order, ``n``
    elements per beat: for max, the largest element of each window (dtype of the input; bipolar:
    OR of the bits); for sum, the exact sum of each window's input elements through the output
    stage (:class:`~nnaccel.hw.common.outstage.OutputStage`). Images follow one another without
    framing.

    Structure: a :class:`~nnaccel.hw.window.engine.WindowUnit` padding with
    :attr:`PoolParams.pad_value` and a :class:`Reduce` over its ``KH*KW`` taps; for global
    pooling (:attr:`PoolParams.is_global`) only a :class:`Reduce` over the ``H*W`` pixels with
    ``C`` running values, no line buffer. The sum accumulator is :attr:`PoolParams.acc_shape`,
    the worst case over the input dtype, so nothing overflows. Steady state:
    :attr:`PoolParams.expected_cycles` cycles per image.

    Parameters
    ----------
    params : PoolParams

    Attributes
    ----------
    i_data : In(stream.Signature(ArrayLayout(dtype.shape, n)))
    o_data : Out(stream.Signature(ArrayLayout(out_elem_dtype.shape, n)))
    """

    def __init__(self, params):
        if not isinstance(params, PoolParams):
            raise TypeError(f"params must be a PoolParams, not {params!r}")
        self.params = params
        super().__init__({"i_data": In(_beats(params.dtype.shape, params.n)),
                          "o_data": Out(_beats(params.out_elem_dtype.shape, params.n))})

    def elaborate(self, platform):
        m = Module()
        p = self.params
        elem = p.element_dtype.shape
        m.submodules.reduce = reducer = Reduce(
            op=p.kind, positions=p.positions, words=p.channel_words, n=p.n, in_shape=elem,
            out_shape=p.acc_shape)

        # A bipolar sum works on -1/+1 values (int2), so that padding can add nothing.
        to_values = p.element_dtype != p.dtype
        if p.is_global and not to_values:
            wiring.connect(m, wiring.flipped(self.i_data), reducer.i_data)
        else:
            target = reducer.i_data
            if not p.is_global:
                m.submodules.window = window = WindowUnit(p.window_params)
                wiring.connect(m, window.o_data, reducer.i_data)
                target = window.i_data
            m.d.comb += [target.valid.eq(self.i_data.valid),
                         self.i_data.ready.eq(target.ready)]
            for e in range(p.n):
                x = self.i_data.payload[e]
                m.d.comb += target.payload[e].eq(Mux(x, 1, -1) if to_values else x)

        if p.kind is PoolKind.MAX:
            wiring.connect(m, reducer.o_data, wiring.flipped(self.o_data))
        else:
            m.submodules.stage = stage = OutputStage.from_params(p.stage_params)
            wiring.connect(m, reducer.o_data, stage.i_data)
            wiring.connect(m, stage.o_data, wiring.flipped(self.o_data))
        return m

