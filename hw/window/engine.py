"""The sliding-window unit (the idea of FINN's ConvolutionInputGenerator).

It turns a feature map streamed in HWC raster order into the stream of its patches, in the order
a matrix-vector unit consumes them (see :mod:`.reference` for the exact order and for the
matching weight reordering).
"""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.memory import NO_RW_CHECK, pipelined_read
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
    ``word_elems`` elements, with one registered read per window position of a beat
    (:func:`~nnaccel.hw.common.memory.registered_read`), so it becomes block RAM). A writer
    fills it in input order while a reader walks the windows; the writer may run up to
    ``buffer_rows`` rows ahead of the oldest row the reader still needs, also into the next
    image. A read waits until its row is complete; padded positions are never stored nor read.

    Throughput: one input beat (or line-buffer word) and one output beat per cycle at the same
    time; an image takes :attr:`WindowParams.expected_cycles` cycles in the steady state, images
    back to back. Latency: :attr:`WindowParams.latency`. ``o_data.valid`` and ``i_data.ready``
    are registers; ``o_data.payload`` is one too: each read's data goes through
    :func:`~nnaccel.hw.common.memory.output_register`, which the ECP5 flow folds into the block
    RAM, then, with padding, through the padding choice into a register.

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
        # no read ever meets a write of its word: a row is read only once complete, and
        # written again only once released
        m.submodules.buffer = buffer = Memory(shape=word, depth=p.buffer_depth, init=[],
                                              attrs=NO_RW_CHECK)
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
        # ``limit``: the oldest row the reader may still need, plus ``buffer_rows`` (the first
        # row the writer may not begin); on ``load`` it becomes ``pending`` next cycle
        limit = Signal(seq_bits, init=p.buffer_rows)
        pending, load = Signal(seq_bits), Signal()
        after = self._writer(m, buffer.write_port(), source, written, column,
                             (limit, pending, load))
        self._reader(m, buffer, after, (limit, pending, load))
        return m

    def _writer(self, m, port, source, written, column, limits):
        """Input words in order into the line buffer, one row slot after another, while the
        row written comes before the reader's limit. Returns what the reader needs of the
        writer's next position: the row being written now, the one after it, whether this
        cycle completes the row (then the next row is the one after and none of its words is
        written), and else whether a word of the row is written by the end of this cycle."""
        p = self.params
        addr = Signal(range(p.buffer_depth))
        limit, pending, load = limits
        # ``ready`` is a register holding next cycle's ``written < limit`` (row numbers modulo
        # 2**seq_bits: the sign of a difference), every candidate compared at once, then chosen
        ready = Signal(init=1)
        following = Signal.like(written, init=1)    # written + 1
        wrap = port.en & (column == p.row_words - 1)

        def fits(bound):
            return Mux(wrap, before(following, bound), before(written, bound))

        m.d.sync += ready.eq(Mux(load, fits(pending), fits(limit)))
        m.d.comb += [
            source.ready.eq(ready),
            port.addr.eq(addr),
            port.data.eq(source.payload),
            port.en.eq(source.valid & source.ready),
        ]
        with m.If(port.en):
            m.d.sync += addr.eq(Mux(addr == p.buffer_depth - 1, 0, addr + 1))
            _count(m, [(column, p.row_words, [],
                        [written.eq(written + 1), following.eq(following + 1)])])
        return written, following, wrap, port.en | (column != 0)

    def _reader(self, m, buffer, after, limits):
        """Walk the windows, one beat of window positions at a time; read the line buffer (one
        read port per position of a beat) or emit padding.

        Three registered stages, so that no path runs from the window counters through the
        address arithmetic into the read decision: a generator (the counters, with running
        offsets instead of multiplications) describes the next beat; stage ``s1`` holds each
        position's row, column and partial addresses; stage ``d`` (the next beat to issue)
        holds its read addresses, padding flags and the sequence numbers of the rows it needs.
        The generator never waits, so both stages stay full; a beat issues from ``d`` when its
        rows are written and the output pipeline moves (:attr:`WindowParams.read_latency`
        cycles from the read to the output beat). Whether d's rows are written is a register,
        loaded with the answer for d's next beat and the writer's next position (``after``),
        so no row comparison lies between the output's ready and the counters."""
        p = self.params
        top, left = p.padding[0], p.padding[1]
        (kh, kw), (sh, sw), (dh, dw) = p.kernel, p.stride, p.dilation
        rows, cw, depth = p.buffer_rows, p.pixel_words, p.buffer_depth
        written, following, row_done, begun = after
        seq = len(written)

        def wrap(value, offset):
            # value + offset (a constant), in 0 .. 2*depth-1, modulo depth: both candidates
            # summed at once and chosen by the sign bit of the second, so that no comparison
            # follows the adder
            under = value + (offset - depth)
            return Mux(under[-1], value + offset, under)

        def row_offset(n):  # address offset of n rows further down, modulo the buffer
            return (n % rows) * p.row_words

        rows_per_beat, cols_per_beat = p.beat_shape
        oh, ow = Signal(range(p.out_height)), Signal(range(p.out_width))
        ig, jg = Signal(range(kh // rows_per_beat)), Signal(range(kw // cols_per_beat))
        cb = Signal(range(cw))
        y0 = Signal(range(-top - 1, p.padded_height + 1), init=-top)    # oh*SH - top
        x0 = Signal(range(-left - 1, p.padded_width + 1), init=-left)   # ow*SW - left
        base = Signal(seq)                                              # image's first row
        base_limit = Signal(seq, init=rows)                             # base + buffer_rows
        base_addr = Signal(range(depth))
        row0 = Signal(range(depth), init=row_offset(-top))              # address of row y0
        col0 = Signal(signed(len(x0) + cw.bit_length() + 1), init=-left * cw)  # x0 * C/word
        # running offset of the beat's first window position: jg*q*DW columns, in words
        joff = Signal(range(kw * dw * cw + 1))

        n = p.read_ports
        taps = [((t // cols_per_beat) * dh, (t % cols_per_beat) * dw) for t in range(n)]
        # for each row of a beat's positions (di rows below its first): that row's address
        # offset from row0, (ig*r*DH + di) rows, as is (near) and less the buffer's depth
        # (far), running with ig. A position's row address, row0 plus near modulo the depth,
        # is then two additions side by side from registers and a choice by the sign of the
        # far one (row0 plus a running offset, then wrap's two adders, was three carry chains
        # in a row, 10.9 ns, which held cnv_mid at 91.4 MHz)
        rstep = rows_per_beat * dh * p.row_words
        offsets = {di: di * p.row_words for di, _ in taps}
        top_off = (kh * dh + max(offsets)) * p.row_words
        near = {di: Signal(range(top_off + 1), init=e, name=f"near{di}")
                for di, e in offsets.items()}
        far = {di: Signal(range(-depth, top_off + 1), init=e - depth, name=f"far{di}")
               for di, e in offsets.items()}
        # each row and column of a beat's positions in the padded map: y = y0 + ig*r*DH + di,
        # x = x0 + jg*q*DW + dj, and each less the map's height or width, all running like
        # the counters, so a position's padding flag is a LUT of four sign bits (summing and
        # comparing x took two carry chains in a row, 9.9 ns, which held cnv_mid at 101.3 MHz)
        y_span = range(-top - p.height - 1, p.padded_height + kh * dh + sh + 1)
        x_span = range(-left - p.width - 1, p.padded_width + kw * dw + 1)
        ys = {di: Signal(y_span, init=di - top, name=f"y{di}") for di in offsets}
        yh = {di: Signal(y_span, init=di - top - p.height, name=f"y{di}_h") for di in offsets}
        cols = sorted({dj for _, dj in taps})
        xs = {dj: Signal(x_span, init=dj - left, name=f"x{dj}") for dj in cols}
        xw = {dj: Signal(x_span, init=dj - left - p.width, name=f"x{dj}_w") for dj in cols}

        def rows_at(y):   # ys and yh for the beat's first row at y
            return [*(ys[di].eq(y + di) for di in offsets),
                    *(yh[di].eq(y + di - p.height) for di in offsets)]

        # y0 clamped to the image (what s1's limit adds to base_limit), loaded on a new output
        # row from the next row's y0 (y_next) and y_next less H + 1 by their sign bits, so the
        # limit is one addition from registers (the clamp's compare and then the addition
        # took 8.9 ns, which held cnv_mid at 112.2 MHz)
        y_clamp = Signal(range(p.height + 1), init=max(min(-top, p.height), 0))
        y_next = Signal(y_span, init=sh - top)
        y_over = Signal(y_span, init=sh - top - p.height - 1)   # y_next - (H + 1)

        def cols_at(x):
            return [*(xs[dj].eq(x + dj) for dj in cols),
                    *(xw[dj].eq(x + dj - p.width) for dj in cols)]
        # stage s1: per position its row's sequence number, whether it is padding, and the two
        # halves of its address
        s1_valid = Signal()
        s1_seq = [Signal(seq, name=f"s1_seq{t}") for t in range(n)]    # base + y
        s1_pad = Signal(n)
        s1_row = [Signal(range(depth), name=f"s1_row{t}") for t in range(n)]
        s1_col = [Signal.like(col0, name=f"s1_col{t}") for t in range(n)]
        s1_base = Signal(seq)
        s1_limit = Signal(seq, init=rows)    # base + buffer_rows + y0 clamped to the image
        # stage d: the next beat to issue
        d_valid = Signal()
        d_addr = [Signal(range(depth), name=f"d_addr{t}") for t in range(n)]
        d_seq = [Signal(seq, name=f"d_seq{t}") for t in range(n)]    # base + y
        d_pad = Signal(n)
        d_base = Signal(seq)
        d_limit, pending, d_load = limits    # the writer's limit for d's beat; d loads from s1

        # A row is read once complete (before the row being written). An image's padding waits
        # for its first input word, so that nothing is emitted for an image that has not begun.
        # Evaluated for the writer's next position: both candidates at once (the comparisons
        # start from registers), then chosen.
        def rows_in(base, seqs, pads):
            def at(row, started):
                ok = before(base, row) | ((row == base) & started)
                for s, pad in zip(seqs, pads, strict=True):
                    ok &= pad | before(s, row)
                return ok
            return Mux(row_done, at(following, 0), at(written, begun))

        ready = Signal()    # d's rows are written (``rows_in`` one cycle earlier)
        # The read pipeline: stage k holds a beat k+1 cycles after its read, the last one the
        # output beat. A stage loads when it or a later one is empty or the output is taken.
        # Whether stages k.. are all full is a register (``full``, loaded with next cycle's
        # value), and so is whether s1 and d have filled after reset (``primed``): s1 then
        # loads, and the counters move, on one LUT of four registers and the output's ready
        # (the AND over the stages and the two valid flags before it took three LUT levels,
        # 8.1 ns with their routes, which held cnv_mid at 123.2 MHz)
        stages = [Signal(name=f"read_valid{k}") for k in range(p.read_latency)]
        full = [Signal(name=f"read_full{k}") for k in range(p.read_latency)]
        primed = Signal()
        moves = [self.o_data.ready | ~full[k] for k in range(len(stages))]
        valid, advance = stages[-1], moves[0]
        take = d_valid & ready & advance
        load_d = ~d_valid | take
        load_s1 = ~primed | (ready & advance)
        staged = [Mux(moves[k], stages[k - 1] if k else take, stages[k])
                  for k in range(len(stages))]
        m.d.sync += [full[k].eq(Cat(staged[k:]).all()) for k in range(len(stages))]
        m.d.sync += primed.eq((s1_valid | load_s1)
                              & Mux(load_d & s1_valid, 1, d_valid & ~take))
        m.d.comb += [pending.eq(s1_limit), d_load.eq(load_d & s1_valid)]
        m.d.sync += ready.eq(Mux(load_d & s1_valid, rows_in(s1_base, s1_seq, s1_pad),
                                 rows_in(d_base, d_seq, d_pad)))

        with m.If(load_d & s1_valid):
            m.d.sync += d_valid.eq(1)
            m.d.sync += [d_addr[t].eq((s1_row[t] + s1_col[t])[:len(d_addr[t])])
                         for t in range(n)]
            m.d.sync += [d_seq[t].eq(s1_seq[t]) for t in range(n)]
            m.d.sync += [d_pad.eq(s1_pad), d_base.eq(s1_base), d_limit.eq(s1_limit)]
        with m.Elif(take):
            m.d.sync += d_valid.eq(0)

        with m.If(load_s1):
            m.d.sync += [s1_valid.eq(1), s1_base.eq(base),
                         s1_limit.eq(base_limit + y_clamp)]
            for t, (di, dj) in enumerate(taps):
                m.d.sync += [
                    s1_seq[t].eq((base + ys[di])[:seq]),
                    s1_pad[t].eq(ys[di][-1] | ~yh[di][-1] | xs[dj][-1] | ~xw[dj][-1]),
                    s1_row[t].eq(Mux((row0 + far[di])[-1], row0 + near[di], row0 + far[di])),
                    s1_col[t].eq(col0 + joff + cb + dj * cw),
                ]
            tap_levels = [(jg, kw // cols_per_beat,
                           [*(v.eq(v + cols_per_beat * dw) for v in (*xs.values(),
                                                                     *xw.values())),
                            joff.eq(joff + cols_per_beat * dw * cw)],
                           [*cols_at(x0), joff.eq(0)]),
                          (ig, kh // rows_per_beat,
                           [*(v.eq(v + rows_per_beat * dh) for v in (*ys.values(),
                                                                     *yh.values())),
                            *(near[di].eq(near[di] + rstep) for di in offsets),
                            *(far[di].eq(far[di] + rstep) for di in offsets)],
                           [*rows_at(y0), *(near[di].eq(e) for di, e in offsets.items()),
                            *(far[di].eq(e - depth) for di, e in offsets.items())])]
            block = [(cb, cw, [], [])]
            _count(m, [
                *(tap_levels + block if p.order is PatchOrder.DEPTHWISE else block + tap_levels),
                (ow, p.out_width, [x0.eq(x0 + sw), col0.eq(col0 + sw * cw), *cols_at(x0 + sw)],
                 [x0.eq(-left), col0.eq(-left * cw), *cols_at(-left)]),
                (oh, p.out_height, [y0.eq(y0 + sh), row0.eq(wrap(row0, row_offset(sh))),
                                    *rows_at(y0 + sh), y_next.eq(y_next + sh),
                                    y_over.eq(y_over + sh),
                                    y_clamp.eq(Mux(y_next[-1], 0,
                                                   Mux(y_over[-1], y_next, p.height)))],
                 [y0.eq(-top), *rows_at(-top), y_next.eq(sh - top),
                  y_over.eq(sh - top - p.height - 1), y_clamp.eq(y_clamp.init),
                  base.eq(base + p.height),
                  base_limit.eq(base_limit + p.height),
                  base_addr.eq(wrap(base_addr, row_offset(p.height))),
                  row0.eq(wrap(base_addr, row_offset(p.height - top)))]),
            ])

        # Behind the read: each port's data through its block RAM's output register, then, with
        # padding, the choice of the padding word into the output beat's register; so nothing
        # but a register follows a block RAM read, and the output beat is a register.
        q = [pipelined_read(m, buffer, d_addr[t], en=advance, out_en=moves[1],
                            name=f"bram_q{t}", read_name=f"line{t}")
             for t in range(n)]
        m.d.comb += self.o_data.valid.eq(valid)
        m.d.sync += [stage.eq(staged[k]) for k, stage in enumerate(stages)]
        if not any(p.padding):
            m.d.comb += self.o_data.payload.eq(Cat(q))
            return
        padded = [Signal(n, name=f"padded{k}") for k in range(p.read_latency - 1)]
        pad_word = word_const(p)
        for k, flags in enumerate(padded):
            with m.If(moves[k]):
                m.d.sync += flags.eq(padded[k - 1] if k else d_pad)
        with m.If(moves[-1]):
            m.d.sync += self.o_data.payload.eq(Cat(Mux(padded[-1][t], pad_word, q[t])
                                                   for t in range(n)))


def before(a, b):
    """``a < b`` for row numbers modulo ``2**len(a)`` that lie less than half of it apart."""
    return (a - b)[len(a) - 1]


def word_const(p):
    """A line-buffer word of ``word_elems`` padding elements, as an amaranth constant."""
    bits = p.elem_shape.width
    value = int(p.dtype.encode([p.pad_value])[0]) if any(p.padding) else 0
    return Const(sum(value << (bits * e) for e in range(p.word_elems)), bits * p.word_elems)
