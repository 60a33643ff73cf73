"""The sliding-window unit (the idea of FINN's ConvolutionInputGenerator).

It turns a feature map streamed in HWC raster order into the stream of its patches, in the order
a matrix-vector unit consumes them (see :mod:`.reference` for the exact order and for the
matching weight reordering).
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.stream import Gearbox
from .params import PatchOrder, WindowParams

__all__ = ["WindowUnit"]


def _count(m, levels):
    """Step nested counters (innermost first). Each level is ``(counter, limit, on_step,
    on_wrap)``: statements for the sync domain when that level steps or wraps to 0; a level
    steps when every level inside it wraps."""
    counter, limit, on_step, on_wrap = levels[0]
    with m.If(counter != limit - 1):
        m.d.sync += [counter.eq(counter + 1), *on_step]
    with m.Else():
        m.d.sync += [counter.eq(0), *on_wrap]
        if len(levels) > 1:
            _count(m, levels[1:])


class WindowUnit(wiring.Component):
    """Sliding windows over a feature map, padding generated on the fly.

    ``i_data`` takes the map ``(C, H, W)`` in HWC raster order, ``n_in`` elements per beat
    (``H*W*C/n_in`` beats per image, hardware encoding of ``dtype``). ``o_data`` emits, for each
    output pixel in raster order, the ``KH*KW*C`` elements of its window ordered ``(i, j, c)``,
    ``n_out`` per beat (:attr:`WindowParams.out_beats` beats per image); padded positions carry
    ``pad_value``. With :attr:`PatchOrder.DEPTHWISE` the patch is ordered ``(cb, i, j, c')``
    instead: for each block of ``n_out`` channels, its window positions one beat each.
    ``n_out`` may be a part of a pixel's channels, or several whole window positions
    (:attr:`WindowParams.beat_shape`) when the consumer needs more elements per cycle.
    Images follow one another without any framing; the unit counts beats, and emits nothing of
    an image (not even its padding) before the image's first input word.

    The rows a window spans are kept in a line buffer of :attr:`WindowParams.buffer_rows`
    input rows (one :class:`~amaranth.lib.memory.Memory` of ``buffer_depth`` words of
    ``word_elems`` elements, with one synchronous read port per window position of a beat, so
    it becomes block RAM). A writer fills it in input order while a reader walks the windows;
    the writer may run up to ``buffer_rows`` rows ahead of the oldest row the reader still
    needs, also into the next image. A read waits until its row is complete; padded positions
    are never stored nor read.

    Throughput: one input beat (or line-buffer word) and one output beat per cycle at the same
    time; an image takes :attr:`WindowParams.expected_cycles` cycles in the steady state, images
    back to back. Latency: :attr:`WindowParams.latency`. ``o_data.valid`` and ``i_data.ready``
    are registered decisions (neither depends on the other side's handshake).

    Parameters
    ----------
    params : WindowParams

    Attributes
    ----------
    i_data : In(stream.Signature(ArrayLayout(dtype.shape, n_in)))
    o_data : Out(stream.Signature(ArrayLayout(dtype.shape, n_out)))
    """

    def __init__(self, params):
        if not isinstance(params, WindowParams):
            raise TypeError(f"params must be a WindowParams, not {params!r}")
        self.params = params
        super().__init__({
            "i_data": In(stream.Signature(data.ArrayLayout(params.elem_shape, params.n_in))),
            "o_data": Out(stream.Signature(data.ArrayLayout(params.elem_shape, params.n_out))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        word = data.ArrayLayout(p.elem_shape, p.word_elems)
        m.submodules.buffer = buffer = Memory(shape=word, depth=p.buffer_depth, init=[])
        # Row counters are kept modulo 2**seq_bits; every difference compared is far smaller.
        seq_bits = (4 * (p.height + p.buffer_rows + p.padded_height)).bit_length() + 1

        if p.n_in == p.word_elems:
            source = self.i_data
        else:
            m.submodules.gearbox = gearbox = Gearbox(p.elem_shape, n_in=p.n_in,
                                                     n_out=p.word_elems, count=p.channels)
            wiring.connect(m, wiring.flipped(self.i_data), gearbox.i_data)
            source = gearbox.o_data

        written = Signal(seq_bits)        # sequence number of the row being written
        column = Signal(range(p.row_words))  # words written of that row
        release = Signal(seq_bits)        # oldest row the reader may still need
        self._writer(m, buffer.write_port(), source, written, column, release)
        ports = [buffer.read_port(domain="sync") for _ in range(p.read_ports)]
        self._reader(m, ports, written, column, release)
        return m

    def _writer(self, m, port, source, written, column, release):
        """Input words in order into the line buffer, one row slot after another."""
        p = self.params
        addr = Signal(range(p.buffer_depth))
        ahead = (written - release)[:len(written)].as_signed()
        m.d.comb += [
            source.ready.eq(ahead < p.buffer_rows),
            port.addr.eq(addr),
            port.data.eq(source.payload),
            port.en.eq(source.valid & source.ready),
        ]
        with m.If(port.en):
            m.d.sync += addr.eq(Mux(addr == p.buffer_depth - 1, 0, addr + 1))
            _count(m, [(column, p.row_words, [], [written.eq(written + 1)])])

    def _reader(self, m, ports, written, column, release):
        """Walk the windows, one beat of window positions at a time; read the line buffer (one
        read port per position of a beat) or emit padding."""
        p = self.params
        top, left = p.padding[0], p.padding[1]
        (kh, kw), (sh, sw), (dh, dw) = p.kernel, p.stride, p.dilation
        rows, cw, depth = p.buffer_rows, p.pixel_words, p.buffer_depth
        valid = Signal()
        advance = ~valid | self.o_data.ready

        def wrap(value):  # value in 0 .. 2*depth-1, modulo depth
            return Mux(value >= depth, value - depth, value)

        def row_offset(n):  # address offset of n rows further down, modulo the buffer
            return (n % rows) * p.row_words

        rows_per_beat, cols_per_beat = p.beat_shape
        oh, ow = Signal(range(p.out_height)), Signal(range(p.out_width))
        ig, jg = Signal(range(kh // rows_per_beat)), Signal(range(kw // cols_per_beat))
        cb = Signal(range(cw))
        y0 = Signal(range(-top - 1, p.padded_height + 1), init=-top)    # oh*SH - top
        x0 = Signal(range(-left - 1, p.padded_width + 1), init=-left)   # ow*SW - left
        base = Signal(len(written))                                     # image's first row
        base_addr = Signal(range(depth))
        row0 = Signal(range(depth), init=row_offset(-top))              # address of row y0
        col0 = Signal(signed(len(x0) + cw.bit_length() + 1), init=-left * cw)  # x0 * C/word

        def rows_done(row):  # rows written past ``row`` of this image (modular, signed)
            return (written - (base + row)[:len(written)])[:len(written)].as_signed()

        # An image's padding waits for its first input word, so that nothing is emitted for an
        # image that has not begun.
        issue = (rows_done(0) > 0) | ((rows_done(0) == 0) & (column != 0))
        pads = []
        for t, port in enumerate(ports):
            i = ig * rows_per_beat + t // cols_per_beat
            j = jg * cols_per_beat + t % cols_per_beat
            y, x = y0 + i * dh, x0 + j * dw
            pad = (y < 0) | (y >= p.height) | (x < 0) | (x >= p.width)
            issue &= pad | (rows_done(y) > 0)
            addr = wrap(row0 + i * (dh * p.row_words)) + col0 + j * (dw * cw) + cb
            m.d.comb += [port.addr.eq(addr[:len(port.addr)]), port.en.eq(advance)]
            pads.append(pad)
        m.d.comb += release.eq(base + Mux(y0 < 0, 0, Mux(y0 > p.height, p.height, y0)))

        padded = Signal(len(ports))
        pad_word = word_const(p)
        m.d.comb += [
            self.o_data.valid.eq(valid),
            self.o_data.payload.eq(Cat(Mux(padded[t], pad_word, port.data)
                                       for t, port in enumerate(ports))),
        ]
        with m.If(advance):
            m.d.sync += [valid.eq(issue), padded.eq(Cat(pads))]
            with m.If(issue):
                taps = [(jg, kw // cols_per_beat, [], []), (ig, kh // rows_per_beat, [], [])]
                block = [(cb, cw, [], [])]
                _count(m, [
                    *(taps + block if p.order is PatchOrder.DEPTHWISE else block + taps),
                    (ow, p.out_width, [x0.eq(x0 + sw), col0.eq(col0 + sw * cw)],
                     [x0.eq(-left), col0.eq(-left * cw)]),
                    (oh, p.out_height, [y0.eq(y0 + sh), row0.eq(wrap(row0 + row_offset(sh)))],
                     [y0.eq(-top), base.eq(base + p.height),
                      base_addr.eq(wrap(base_addr + row_offset(p.height))),
                      row0.eq(wrap(base_addr + row_offset(p.height - top)))]),
                ])


def word_const(p):
    """A line-buffer word of ``word_elems`` padding elements, as an amaranth constant."""
    bits = p.elem_shape.width
    value = int(p.dtype.encode([p.pad_value])[0]) if any(p.padding) else 0
    return Const(sum(value << (bits * e) for e in range(p.word_elems)), bits * p.word_elems)
