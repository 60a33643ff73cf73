"""Parameters of the sliding-window unit, shared by the hardware, its reference and the generator.

Every derived number (output size, beats, line-buffer size, cycles, latency) is a pure function
of :class:`WindowParams`.
"""

import enum
import numbers
from dataclasses import dataclass

from ..common.dtype import DType
from ..common.lanes import positive_int

__all__ = ["PatchOrder", "WindowParams", "check_pair", "check_padding", "check_dtype"]


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)



def check_pair(name, value):
    """``value`` as a pair of positive integers (an integer means the same for both axes)."""
    if _is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a positive integer or a pair of them, not {value!r}")
    return tuple(positive_int(f"{name}[{n}]", v) for n, v in enumerate(value))


def check_padding(value):
    """``value`` as ``(top, left, bottom, right)`` non-negative integers (an integer: all four)."""
    if _is_int(value):
        value = (value,) * 4
    if not isinstance(value, (tuple, list)) or len(value) != 4:
        raise TypeError(f"padding must be a non-negative integer or four of them "
                        f"(top, left, bottom, right), not {value!r}")
    result = []
    for n, v in enumerate(value):
        if not _is_int(v):
            raise TypeError(f"padding[{n}] must be a non-negative integer, not {v!r}")
        if v < 0:
            raise ValueError(f"padding[{n}] must be a non-negative integer, not {v!r}")
        result.append(int(v))
    return tuple(result)


def check_dtype(name, value):
    """``value`` as a :class:`DType` (a string such as ``"int8"`` is parsed)."""
    if isinstance(value, str):
        return DType.parse(value)
    if not isinstance(value, DType):
        raise TypeError(f"{name} must be a DType or a dtype string, not {value!r}")
    return value


class PatchOrder(enum.Enum):
    """The order of a patch's elements in the output stream of the window unit."""

    #: ``(i, j, c)``: every channel of a window position together (a matrix-vector unit's
    #: patch, ``K = KH*KW*C``).
    TAPS = "taps"
    #: ``(cb, i, j, c')`` with ``c = cb*n_out + c'``: for each block of ``n_out`` channels, its
    #: ``KH*KW`` window positions (a vector-vector unit's order for depthwise convolutions).
    DEPTHWISE = "depthwise"


@dataclass(frozen=True, kw_only=True)
class WindowParams:
    """Geometry and beat widths of one sliding-window unit.

    The unit reads a feature map ``(C, H, W)`` in HWC raster order, ``n_in`` elements per beat,
    and emits, for every output pixel ``(oh, ow)`` in raster order, its patch of
    ``K = KH*KW*C`` elements ordered ``(i, j, c)``: element ``xp[c, oh*SH + i*DH, ow*SW + j*DW]``
    of the input padded with ``pad_value``, ``n_out`` elements per beat.

    Parameters
    ----------
    channels, height, width : int
        ``C``, ``H``, ``W`` of the input map.
    kernel, stride, dilation : int or (int, int)
        ``(KH, KW)``, ``(SH, SW)`` (default 1), ``(DH, DW)`` (default 1).
    padding : int or (top, left, bottom, right)
        Padding, default 0; padded elements are generated, never stored.
    pad_value : int
        With any padding, a value of ``dtype`` (a bipolar map pads with -1 or +1); unused
        (and unchecked) without padding.
    dtype : DType or str
        Element type (SPEC section 1); the hardware element is ``dtype.shape``.
    n_in : int
        Elements per input beat; it divides ``C``.
    n_out : int
        Elements per output beat. Either it divides ``C`` (a beat holds part of one window
        position), or it is ``q*C`` for ``q`` window positions per beat: ``q`` divides ``KW`` (a
        beat holds ``q`` consecutive positions of one kernel row) or is ``r*KW`` with ``r``
        dividing ``KH`` (``r`` whole kernel rows). ``n_in`` and the line-buffer word
        (:attr:`word_elems`) must divide one another.
    order : PatchOrder or str
        The order of a patch's elements (default :attr:`PatchOrder.TAPS`, ``(i, j, c)``).
        :attr:`PatchOrder.DEPTHWISE` emits ``(cb, i, j, c')`` for channel blocks of ``n_out``
        channels, which must then divide ``C``.

    Raises
    ------
    TypeError, ValueError
        A field has the wrong type or value, or the window is larger than the padded input.
    """

    channels: int
    height: int
    width: int
    kernel: tuple
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    pad_value: int = 0
    dtype: DType
    n_in: int
    n_out: int
    order: PatchOrder = PatchOrder.TAPS

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("channels", "height", "width", "n_in", "n_out"):
            put(name, positive_int(name, getattr(self, name)))
        for name in ("kernel", "stride", "dilation"):
            put(name, check_pair(name, getattr(self, name)))
        put("padding", check_padding(self.padding))
        put("dtype", check_dtype("dtype", self.dtype))
        try:
            put("order", PatchOrder(self.order))
        except ValueError:
            choices = ", ".join(repr(o.value) for o in PatchOrder)
            raise ValueError(f"order must be one of {choices}, not {self.order!r}") from None
        if not _is_int(self.pad_value):
            raise TypeError(f"pad_value must be an integer, not {self.pad_value!r}")
        put("pad_value", int(self.pad_value))
        if any(self.padding) and not self.dtype.contains([self.pad_value]):
            raise ValueError(f"pad_value {self.pad_value} is not a value of {self.dtype}")
        if self.channels % self.n_in:
            raise ValueError(f"n_in ({self.n_in}) must divide channels ({self.channels})")
        kh, kw = self.kernel
        if self.order is PatchOrder.DEPTHWISE and self.channels % self.n_out:
            raise ValueError(f"n_out ({self.n_out}) must divide channels ({self.channels}) in "
                             f"the depthwise order")
        if self.channels % self.n_out:
            q = self.n_out // self.channels
            if self.n_out % self.channels or not (kw % q == 0 or
                                                  (q % kw == 0 and kh % (q // kw) == 0)):
                raise ValueError(
                    f"n_out ({self.n_out}) must divide channels ({self.channels}) or be q * "
                    f"{self.channels} with q dividing KW ({kw}) or q = r*KW with r dividing KH "
                    f"({kh})")
        if self.n_in % self.word_elems and self.word_elems % self.n_in:
            raise ValueError(f"n_in ({self.n_in}) and the line-buffer word ({self.word_elems} "
                             f"elements) must divide one another")
        if self.out_height < 1 or self.out_width < 1:
            raise ValueError(f"kernel {self.kernel} with dilation {self.dilation} is larger than "
                             f"the padded input ({self.padded_height}, {self.padded_width})")

    # --- geometry ---------------------------------------------------------------------------

    @property
    def padded_height(self):
        return self.height + self.padding[0] + self.padding[2]

    @property
    def padded_width(self):
        return self.width + self.padding[1] + self.padding[3]

    @property
    def out_height(self):
        """``OH = (H + top + bottom - DH*(KH-1) - 1) // SH + 1`` (SPEC 2.1b)."""
        return (self.padded_height - self.dilation[0] * (self.kernel[0] - 1) - 1) \
            // self.stride[0] + 1

    @property
    def out_width(self):
        """``OW``, likewise."""
        return (self.padded_width - self.dilation[1] * (self.kernel[1] - 1) - 1) \
            // self.stride[1] + 1

    @property
    def taps(self):
        """``KH * KW``: window positions per output pixel."""
        return self.kernel[0] * self.kernel[1]

    @property
    def patch_elems(self):
        """``K = KH * KW * C``: elements of one patch."""
        return self.taps * self.channels

    @property
    def elem_shape(self):
        """Amaranth shape of one element."""
        return self.dtype.shape

    # --- beats --------------------------------------------------------------------------------

    @property
    def word_elems(self):
        """Elements per line-buffer word: ``n_out`` when it divides ``C``, else ``C``."""
        return self.n_out if self.channels % self.n_out == 0 else self.channels

    @property
    def taps_per_beat(self):
        """Window positions per output beat, ``q``: 1 when ``n_out`` divides ``C``."""
        return self.n_out // self.word_elems

    @property
    def beat_shape(self):
        """``(rows, columns)`` of the window positions one beat covers: ``(1, q)`` when ``q``
        divides ``KW``, else ``(q / KW, KW)``."""
        q, kw = self.taps_per_beat, self.kernel[1]
        return (1, q) if kw % q == 0 else (q // kw, kw)

    @property
    def read_ports(self):
        """Line-buffer read ports, one per window position of a beat (yosys duplicates the
        block RAM for each)."""
        return self.taps_per_beat

    @property
    def pixel_words(self):
        """``C / word_elems``: line-buffer words per pixel."""
        return self.channels // self.word_elems

    @property
    def in_beats(self):
        """Input beats per image: ``H * W * C / n_in``."""
        return self.height * self.width * self.channels // self.n_in

    @property
    def out_beats(self):
        """Output beats per image: ``OH * OW * KH * KW * C / n_out``."""
        return self.out_height * self.out_width * self.patch_elems // self.n_out

    # --- line buffer --------------------------------------------------------------------------

    @property
    def span_rows(self):
        """``(KH-1)*DH + 1``: input rows one window spans."""
        return (self.kernel[0] - 1) * self.dilation[0] + 1

    @property
    def buffer_rows(self):
        """Rows held by the line buffer: ``span_rows + SH``, plus one when the output is not at
        least twice as slow as the input.

        The window's rows, plus the ``SH`` rows the next output row needs (written while the
        current one is emitted, so the input never waits for a whole output row). When the
        output takes fewer than twice the cycles per output row that the input does
        (``OW*KH*KW*C/n_out < 2 * SH * row_cycles``, e.g. pooling with the stride equal to the
        kernel), one more row of slack keeps a writer and a reader running at about the same
        rate from waiting on each other at every row boundary.
        """
        out_per_row = self.out_width * self.patch_elems // self.n_out
        slack = 1 if out_per_row < 2 * self.stride[0] * self.row_cycles else 0
        return self.span_rows + self.stride[0] + slack

    @property
    def row_words(self):
        """Line-buffer words per input row: ``W * C / word_elems``."""
        return self.width * self.pixel_words

    @property
    def buffer_depth(self):
        """Line-buffer words: ``buffer_rows * row_words``."""
        return self.buffer_rows * self.row_words

    @property
    def buffer_width(self):
        """Bits per line-buffer word: ``word_elems`` elements."""
        return self.word_elems * self.elem_shape.width

    @property
    def buffer_bits(self):
        """Bits of the line buffer, all read-port copies included."""
        return self.buffer_depth * self.buffer_width * self.read_ports

    # --- timing -------------------------------------------------------------------------------

    @property
    def write_cycles(self):
        """Cycles to take in one image: ``H * row_cycles`` (one input beat, and one line-buffer
        word, per cycle)."""
        return self.height * self.row_cycles

    @property
    def row_cycles(self):
        """Cycles to take in one input row: ``W*C / min(n_in, word_elems)``."""
        return self.width * self.channels // min(self.n_in, self.word_elems)

    @property
    def boundary_stall(self):
        """Cycles the output waits at the start of each image in the steady state.

        While the last output row of an image is emitted, the writer may run only
        ``buffer_rows`` rows ahead of that row's first row, so the first rows of the next image
        may not all be in the buffer yet; the first window then waits for them (each takes
        :attr:`row_cycles`), less the beats it can emit before it reaches them.
        """
        top, left = self.padding[0], self.padding[1]
        (kh, kw), (dh, dw) = self.kernel, self.dilation
        last_top = (self.out_height - 1) * self.stride[0] - top
        stored = min(max(last_top, 0), self.height) + self.buffer_rows
        first_j = next((j for j in range(kw) if 0 <= j * dw - left < self.width), 0)
        stall = 0
        for i in range(kh):
            y = i * dh - top
            missing = self.height + y - stored
            if 0 <= y < self.height and missing >= 0:
                beats_before = (i * kw + first_j) * self.pixel_words // self.taps_per_beat
                if self.order is PatchOrder.DEPTHWISE:   # the first channel block reads first
                    beats_before = i * kw + first_j
                stall = max(stall, (missing + 1) * self.row_cycles - beats_before)
        return stall

    @property
    def expected_cycles(self):
        """Steady-state cycles per image, images back to back, no stalls:
        ``max(write_cycles, out_beats + boundary_stall)`` (input and output overlap)."""
        return max(self.write_cycles, self.out_beats + self.boundary_stall)

    @property
    def read_latency(self):
        """Cycles from a line-buffer read to its output beat: 2 (the block RAM's read, then its
        output register), 3 with padding (the padding choice is registered too)."""
        return 3 if any(self.padding) else 2

    @property
    def latency(self):
        """Cycles from the first input transfer to the first output beat valid, without stalls.

        The first line-buffer word is written ``w0`` cycles after the first input transfer
        (``word_elems/n_in - 1`` when a word gathers several input beats, ``-(n_in/word_elems -
        1)`` when a beat holds several words, else 0). An image's output waits for its first
        word; a read also waits for its row to be complete. So, with ``r`` the
        :attr:`read_latency`, the latency is ``w0 + 1 + r`` when the first beat is all padding,
        else ``(y + 1) *`` :attr:`row_cycles` ``+ r + min(w0, 0)`` with ``y`` the last input
        row that beat reads (its last word is written, then the read). The first beat is read
        2 cycles after reset at the earliest (the reader's two address stages fill first), so
        with the input offered from reset the latency is at least ``2 + r + min(w0, 0)``."""
        w, n = self.word_elems, self.n_in
        w0 = w // n - 1 if n < w else -(n // w - 1)
        rows, cols = self.beat_shape
        top, left = self.padding[0], self.padding[1]
        (dh, dw) = self.dilation
        read = [i * dh - top for i in range(rows) for j in range(cols)
                if 0 <= i * dh - top < self.height and 0 <= j * dw - left < self.width]
        r = self.read_latency
        fill = 2 + r + min(w0, 0)
        if not read:
            return max(w0 + 1 + r, fill)
        return max((max(read) + 1) * self.row_cycles + r + min(w0, 0), fill)
