"""Pooling units: max and sum over sliding windows, and global pooling over the whole map."""

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.memory import NO_RW_CHECK, registered_read
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
    global pool over many channels needs many of them), read one cycle ahead
    (:func:`~nnaccel.hw.common.memory.registered_read`); a single word is a register.

    Throughput one input beat per cycle; an output beat is registered and leaves one cycle after
    the last position's input beat (two with ``registered``). ``i_data.ready`` depends
    combinationally on ``o_data.ready`` only on the last position.

    With ``registered``, each input beat is first held in a register, so the comparators or
    adders start from a register whatever drives ``i_data`` (a pool over a whole map takes its
    input straight from the previous layer); without, ``i_data.payload`` must come from a
    register (a :class:`~nnaccel.hw.window.engine.WindowUnit`'s output beat is one).

    Parameters
    ----------
    op : PoolKind
    positions, words, n : int
    in_shape, out_shape : Shape
        Element shapes; a sum's ``out_shape`` must hold every sum (not checked here), a max's
        is ``in_shape``.
    registered : bool
        Register the input beat first (one cycle more latency, same throughput).
    """

    def __init__(self, *, op, positions, words, n, in_shape, out_shape, registered=False):
        self.op, self.positions, self.words = PoolKind(op), positions, words
        self.registered = bool(registered)
        self._out_elem = out_shape
        super().__init__({"i_data": In(_beats(in_shape, n)),
                          "o_data": Out(_beats(out_shape, n))})

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_data, self.o_data
        layout = o.payload.shape()
        # (position, word) of the next input beat
        position = Signal(range(self.positions))
        word = Signal(range(self.words))
        last_word = word == self.words - 1
        taken = i.valid & i.ready
        with m.If(taken):
            with m.If(last_word):
                m.d.sync += [word.eq(0), position.eq(Mux(position == self.positions - 1, 0,
                                                         position + 1))]
            with m.Else():
                m.d.sync += word.eq(word + 1)

        if self.registered:
            # the beat being combined: a register loaded from the input
            x = Signal(i.payload.shape())
            x_word, x_first, x_last, x_valid = Signal.like(word), Signal(), Signal(), Signal()
            free = ~x_last | ~o.valid | o.ready
            accept = x_valid & free
            m.d.comb += i.ready.eq(~x_valid | free)
            with m.If(taken):
                m.d.sync += [x.eq(i.payload), x_word.eq(word), x_first.eq(position == 0),
                             x_last.eq(position == self.positions - 1), x_valid.eq(1)]
            with m.Elif(accept):
                m.d.sync += x_valid.eq(0)
            # the word combined next cycle: the beat taken now, else the one held
            following = Mux(taken, word, x_word)
        else:
            x, x_word = i.payload, word
            x_first, x_last = position == 0, position == self.positions - 1
            accept = taken
            m.d.comb += i.ready.eq(~x_last | ~o.valid | o.ready)
            following = Mux(taken, Mux(last_word, 0, word + 1), word)

        combined = Signal(layout)
        running = self._running(m, layout, x_word, following, accept, combined)
        for e in range(layout.length):
            merged = Mux(x[e] > running[e], x[e], running[e]) if self.op is PoolKind.MAX \
                else running[e] + x[e]
            m.d.comb += combined[e].eq(Mux(x_first, x[e], merged))

        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(accept & x_last):
            m.d.sync += [o.payload.eq(combined), o.valid.eq(1)]
        return m

    def _running(self, m, layout, word, following, accept, combined):
        """The running value of ``word``; ``combined`` becomes its new value on ``accept``;
        ``following`` is the word combined next cycle (read one cycle ahead)."""
        if self.words == 1:
            value = Signal(layout)
            with m.If(accept):
                m.d.sync += value.eq(combined)
            return value
        # A read never needs the word written in the same cycle: the next beat of a word comes
        # ``words`` >= 2 beats later.
        m.submodules.running = mem = Memory(shape=layout, depth=self.words, init=[],
                                            attrs=NO_RW_CHECK)
        write = mem.write_port()
        m.d.comb += [write.addr.eq(word), write.data.eq(combined), write.en.eq(accept)]
        return registered_read(m, mem, following, name="running")


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
    ``C`` running values, no line buffer, its input registered first (the window unit's output
    beat is a register already). The sum accumulator is :attr:`PoolParams.acc_shape`,
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
            out_shape=p.acc_shape, registered=p.is_global)

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

