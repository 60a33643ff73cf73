"""Output stages of SPEC section 2.2 (``identity``, ``requant``, ``threshold``) as a stream block.

The matrix-vector engines hand over one beat of ``pe`` raw lane values per cycle; this block turns
them into the layer's output values. The accumulator of the SPEC is ``acc[m] = scale * raw[m] +
offset[m]`` (for XNOR-popcount lanes ``raw`` is the popcount, ``scale`` is 2 and ``offset`` is
``bias - K``); the arithmetic after it is exactly that of :mod:`nnaccel.hw.common.reference`.
"""

import enum
import numbers
from dataclasses import dataclass, fields

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from nnaccel.hw.common.arith import cdiv, pipelined_tree_sum, tree_stages
from nnaccel.hw.common.memory import output_register
from nnaccel.hw.common.reference import bits_for_range

__all__ = ["StageKind", "OutputStageParams", "OutputStage", "MULT_MAX", "SHIFT_MAX"]

#: Largest ``mult`` of a ``requant`` stage (SPEC 2.2).
MULT_MAX = (1 << 31) - 1
#: Largest ``shift`` of a ``requant`` stage (SPEC 2.2).
SHIFT_MAX = 31
#: Deepest parameter table in logic read straight into the datapath: 16 words, one LUT4 per
#: bit; a deeper one is read through a register more (:attr:`OutputStageParams.table_registered`).
TABLE_DIRECT_DEPTH = 16


class StageKind(enum.Enum):
    """The output stage kinds of SPEC section 2.2 (field ``output.kind``)."""

    IDENTITY = "identity"
    REQUANT = "requant"
    THRESHOLD = "threshold"


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _shape_range(shape):
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def _shape_for(lo, hi):
    width, is_signed = bits_for_range(lo, hi)
    return Shape(width, is_signed)


def _check_shape(name, shape):
    if isinstance(shape, Shape):
        result = shape
    elif _is_int(shape) and shape > 0:
        result = unsigned(int(shape))
    else:
        raise TypeError(f"{name} must be an amaranth shape (signed(w) or unsigned(w)), "
                        f"not {shape!r}")
    if result.width < 1:
        raise ValueError(f"{name} must be at least 1 bit wide, not {result!r}")
    return result


def _int_array(name, value):
    arr = np.asarray(value)
    if arr.dtype.kind in "iu":
        return arr
    if arr.dtype == object and all(_is_int(v) for v in arr.flat):
        return arr
    if arr.size == 0 and arr.dtype.kind == "f":
        return arr.astype(np.int64)
    raise TypeError(f"{name} must hold integers, not {value!r}")


def _channel_ints(name, value, channels, lo=None, hi=None):
    """Scalar or ``(channels,)`` integers -> tuple of ``channels`` Python ints in lo..hi."""
    arr = _int_array(name, value)
    if arr.ndim == 0:
        arr = np.full(channels, arr, dtype=arr.dtype)
    if arr.shape != (channels,):
        raise ValueError(f"{name} must be a scalar or have shape ({channels},), "
                         f"not {arr.shape}")
    result = tuple(int(v) for v in arr)
    for m, v in enumerate(result):
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise ValueError(f"{name}[{m}] must be in {lo}..{hi}, not {v}")
    return result


def _unused(kind, **given):
    for name, value in given.items():
        if value is not None:
            raise ValueError(f"{name} does not apply to an output stage of kind "
                             f"{kind.value!r}; leave it None")


@dataclass(frozen=True, kw_only=True)
class OutputStageParams:
    """Validated parameters of an :class:`OutputStage`.

    Construction checks and normalises everything: ``kind`` becomes a :class:`StageKind`,
    shapes become :class:`~amaranth.hdl.Shape`, per-channel arrays (scalars are broadcast) become
    tuples of ``channels`` Python integers, and ``thresholds`` a tuple of ``channels`` ascending
    rows. Bad values raise :exc:`TypeError` (wrong type) or :exc:`ValueError` (wrong value).

    Parameters
    ----------
    kind : StageKind or str
        ``"identity"``, ``"requant"`` or ``"threshold"``.
    pe : int
        Lanes per beat (positive).
    channels : int
        Number of real output channels ``M`` (positive); lane ``p`` of fold ``f`` carries
        channel ``f * pe + p``, lanes past ``M`` in the last fold are padding.
    raw_shape : Shape
        Shape of each input lane.
    out_shape : Shape
        Shape of each output lane (``signed(N)``, ``unsigned(N)``, ``unsigned(1)`` for bipolar).
    scale : int
        1 or 2; ``acc = scale * raw + offset``.
    offset : int or (M,) ints, optional
        Per-channel offset of the accumulator (default 0).
    mult, shift : int or (M,) ints
        ``requant`` only: multipliers in ``0..2**31-1`` and shifts in ``0..31``.
    lo, hi : int
        ``requant`` only: output clamp limits (``lo`` already raised to 0 for ``relu``); the
        range must fit ``out_shape``.
    thresholds : (M, L) or (1, L) ints
        ``threshold`` only: ascending rows, ``L >= 1``; ``out_shape`` must hold ``0..L``.
    """

    kind: StageKind
    pe: int
    channels: int
    raw_shape: Shape
    out_shape: Shape
    scale: int = 1
    offset: tuple = None
    mult: tuple = None
    shift: tuple = None
    lo: int = None
    hi: int = None
    thresholds: tuple = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        try:
            kind = StageKind(self.kind)
        except ValueError:
            choices = ", ".join(repr(k.value) for k in StageKind)
            raise ValueError(f"kind must be one of {choices}, not {self.kind!r}") from None
        put("kind", kind)
        for name in ("pe", "channels"):
            value = getattr(self, name)
            if not _is_int(value):
                raise TypeError(f"{name} must be a positive integer, not {value!r}")
            if value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
            put(name, int(value))
        put("raw_shape", _check_shape("raw_shape", self.raw_shape))
        put("out_shape", _check_shape("out_shape", self.out_shape))
        if not _is_int(self.scale) or self.scale not in (1, 2):
            raise ValueError(f"scale must be 1 or 2, not {self.scale!r}")
        put("scale", int(self.scale))
        offset = 0 if self.offset is None else self.offset
        put("offset", _channel_ints("offset", offset, self.channels))

        if kind is StageKind.REQUANT:
            self._check_requant(put)
        else:
            _unused(kind, mult=self.mult, shift=self.shift, lo=self.lo, hi=self.hi)
        if kind is StageKind.THRESHOLD:
            self._check_thresholds(put)
        else:
            _unused(kind, thresholds=self.thresholds)

    def _check_requant(self, put):
        for name in ("mult", "shift", "lo", "hi"):
            if getattr(self, name) is None:
                raise ValueError(f"{name} is required for an output stage of kind 'requant'")
        put("mult", _channel_ints("mult", self.mult, self.channels, 0, MULT_MAX))
        put("shift", _channel_ints("shift", self.shift, self.channels, 0, SHIFT_MAX))
        for name in ("lo", "hi"):
            value = getattr(self, name)
            if not _is_int(value):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            put(name, int(value))
        if self.lo > self.hi:
            raise ValueError(f"lo must not exceed hi, not lo={self.lo} > hi={self.hi}")
        out_lo, out_hi = _shape_range(self.out_shape)
        if self.lo < out_lo or self.hi > out_hi:
            raise ValueError(f"out_shape {self.out_shape!r} cannot hold the clamp range "
                             f"{self.lo}..{self.hi}")

    def _check_thresholds(self, put):
        if self.thresholds is None:
            raise ValueError("thresholds is required for an output stage of kind 'threshold'")
        arr = _int_array("thresholds", self.thresholds)
        if arr.ndim != 2 or arr.shape[0] not in (1, self.channels) or arr.shape[1] < 1:
            raise ValueError(f"thresholds must have shape ({self.channels}, L) or (1, L) with "
                             f"L >= 1, not {arr.shape}")
        rows = [tuple(int(v) for v in row) for row in arr]
        for m, row in enumerate(rows):
            if any(a > b for a, b in zip(row, row[1:], strict=False)):
                raise ValueError(f"thresholds row {m} must be ascending, not {list(row)}")
        if len(rows) == 1:
            rows = rows * self.channels
        levels = len(rows[0])
        out_lo, out_hi = _shape_range(self.out_shape)
        if out_hi < levels:
            raise ValueError(f"out_shape {self.out_shape!r} cannot hold the threshold count "
                             f"0..{levels}")
        put("thresholds", tuple(rows))

    @classmethod
    def for_dtype(cls, kind, out_dtype, *, pe, channels, raw_shape, scale=1, offset=None,
                  mult=None, shift=None, relu=False, thresholds=None):
        """The stage of a layer as a model states it (SPEC 2.2): ``kind``, the output dtype
        ``out_dtype`` (a :class:`~nnaccel.hw.common.dtype.DType`), ``requant``'s ``mult``,
        ``shift`` and ``relu`` (the clamp follows from the dtype), ``threshold``'s
        ``thresholds``; ``pe``, ``channels``, ``raw_shape``, ``scale`` and ``offset`` are the
        engine's hand-over (see the class)."""
        kind = StageKind(kind)
        extra = {}
        if kind is StageKind.REQUANT:
            extra = dict(mult=mult, shift=shift, hi=out_dtype.hi,
                         lo=max(out_dtype.lo, 0) if relu else out_dtype.lo)
        elif kind is StageKind.THRESHOLD:
            extra = dict(thresholds=thresholds)
        return cls(kind=kind, pe=pe, channels=channels, raw_shape=raw_shape,
                   out_shape=out_dtype.shape, scale=scale, offset=offset, **extra)

    @property
    def folds(self):
        """Beats per vector: ``ceil(channels / pe)``."""
        return cdiv(self.channels, self.pe)

    @property
    def levels(self):
        """Number of thresholds ``L`` per channel (``threshold`` only, else ``None``)."""
        return None if self.thresholds is None else len(self.thresholds[0])

    @property
    def raw_range(self):
        """``(min, max)`` of a raw lane value."""
        return _shape_range(self.raw_shape)

    @property
    def acc_range(self):
        """Worst-case ``(min, max)`` of ``acc = scale * raw + offset`` over every channel."""
        rmin, rmax = self.raw_range
        return self.scale * rmin + min(self.offset), self.scale * rmax + max(self.offset)

    @property
    def acc_shape(self):
        """Smallest shape holding every accumulator value (:attr:`acc_range`)."""
        return _shape_for(*self.acc_range)

    def tables(self):
        """Per-parameter ``(shape, per-lane-slot values)`` padded to ``folds * pe`` slots."""
        p = self
        pad = p.folds * p.pe - p.channels

        def padded(values):
            values = list(values)
            return values + [values[0]] * pad

        if p.kind is StageKind.THRESHOLD:
            rmin, rmax = p.raw_range
            # acc >= T  <=>  raw >= ceil((T - offset) / scale), clamped to raw_min..raw_max+1.
            rows = [tuple(min(max(-((off - t) // p.scale), rmin), rmax + 1) for t in row)
                    for off, row in zip(p.offset, p.thresholds, strict=True)]
            flat = [t for row in rows for t in row]
            shape = data.ArrayLayout(_shape_for(min(flat), max(flat)), p.levels)
            return {"thresholds": (shape, padded(rows))}
        tables = {"offset": (_shape_for(min(p.offset), max(p.offset)), padded(p.offset))}
        if p.kind is StageKind.REQUANT:
            tables["mult"] = (unsigned(max(max(p.mult).bit_length(), 1)), padded(p.mult))
            tables["shift"] = (unsigned(max(max(p.shift).bit_length(), 1)), padded(p.shift))
        return tables

    def rom_tables(self):
        """The :meth:`tables` that differ between folds (a read-only memory of :attr:`folds`
        words); the others are constants per lane."""
        return {name: (shape, values) for name, (shape, values) in self.tables().items()
                if any(len(set(values[q::self.pe])) > 1 for q in range(self.pe))}

    @property
    def table_width(self):
        """Bits of a word of the parameter memory (every lane of a fold; 0: none)."""
        return sum(Shape.cast(shape).width for shape, _ in self.rom_tables().values()) * self.pe

    @property
    def table_in_bram(self):
        """Whether the parameter memory goes to block RAM (by
        :func:`~nnaccel.hw.common.memory.choose_storage`): then its read goes through the
        block RAM's output register too, one cycle more latency."""
        from .memory import Storage, choose_storage

        width = self.table_width
        return width > 0 and self.folds > 1 and \
            choose_storage(self.folds, width) is Storage.BRAM

    @property
    def table_registered(self):
        """Whether the parameter memory's read goes through a register more (one cycle more
        latency): in block RAM (its output register), or in logic deeper than
        :data:`TABLE_DIRECT_DEPTH` words, whose look-up takes several levels of logic."""
        return self.table_in_bram or (self.table_width > 0 and self.folds > TABLE_DIRECT_DEPTH)

    def latency(self, *, pipelined=False):
        """Cycles from an input transfer to its output beat becoming valid in an
        :class:`OutputStage` of these parameters (``pipelined``: see the class)."""
        if pipelined and self.kind is StageKind.REQUANT:
            mult = unsigned(max(max(self.mult).bit_length(), 1))
            parts = _partial_products(Const(0, self.acc_shape), Const(0, mult))
            return 8 + tree_stages([v.shape() for v in parts]) + self.table_registered
        return OutputStage.LATENCY[self.kind] + self.table_registered


class OutputStage(wiring.Component):
    """SPEC 2.2 output stage on a stream of folded lane beats.

    Beats arrive in fold order ``0 .. folds-1``, repeating for every vector; the block counts the
    folds itself. Lane ``p`` of fold ``f`` is channel ``m = f * pe + p`` with
    ``acc[m] = scale * raw[m] + offset[m]``, and the output lane is:

    * ``identity``: ``acc`` (the caller guarantees that ``out_shape`` holds it; otherwise the
      value wraps to ``out_shape``);
    * ``requant``: ``clamp(round_half_up(acc * mult / 2**shift), lo, hi)``, bit-exact with
      :func:`nnaccel.hw.common.reference.requant`;
    * ``threshold``: the number of ``l`` with ``acc >= thresholds[m, l]`` (for a bipolar output
      a count of 1 is the bit meaning +1).

    Every internal width is derived from worst-case bounds over the raw shape and the actual
    parameters, so no input can overflow. Padding lanes (``m >= channels``) produce arbitrary
    values. Per-channel parameters that differ between folds are held in a ROM
    (:class:`~amaranth.lib.memory.Memory`, synchronous read port; in block RAM, read through
    the block's output register too, when :attr:`OutputStageParams.table_in_bram`, and in logic
    through a register when deeper than :data:`TABLE_DIRECT_DEPTH`); otherwise
    they are constants.

    Latency is :attr:`latency` cycles (2 for ``identity``, 5 for ``requant``, 3 for
    ``threshold``, one more with the table in block RAM) from an input transfer to the output
    beat becoming valid; throughput is one
    beat per cycle while the output is not stalled. The pipeline advances when its last stage is
    empty or the output is ready, so ``i_data.ready`` depends combinationally on
    ``o_data.ready``; ``o_data.valid`` is a register.

    Parameters
    ----------
    **params
        Keyword-only, see :class:`OutputStageParams`.

    Attributes
    ----------
    params : OutputStageParams
    i_data : In(stream.Signature(ArrayLayout(raw_shape, pe)))
    o_data : Out(stream.Signature(ArrayLayout(out_shape, pe)))
    """

    LATENCY = {StageKind.IDENTITY: 2, StageKind.REQUANT: 5, StageKind.THRESHOLD: 3}

    def __init__(self, *, kind, pe, channels, raw_shape, out_shape, scale=1, offset=None,
                 mult=None, shift=None, lo=None, hi=None, thresholds=None, pipelined=False):
        self.pipelined = bool(pipelined)
        self.params = OutputStageParams(
            kind=kind, pe=pe, channels=channels, raw_shape=raw_shape, out_shape=out_shape,
            scale=scale, offset=offset, mult=mult, shift=shift, lo=lo, hi=hi,
            thresholds=thresholds)
        p = self.params
        super().__init__({
            "i_data": In(stream.Signature(data.ArrayLayout(p.raw_shape, p.pe))),
            "o_data": Out(stream.Signature(data.ArrayLayout(p.out_shape, p.pe))),
        })

    @classmethod
    def from_params(cls, params, *, pipelined=False):
        """Build the stage from an :class:`OutputStageParams` (``pipelined``: see the class)."""
        return cls(**{f.name: getattr(params, f.name) for f in fields(params)},
                   pipelined=pipelined)

    @property
    def latency(self):
        """Cycles from an input transfer to the corresponding output beat becoming valid."""
        return self.params.latency(pipelined=self.pipelined)

    def _lane_params(self, m, fold, enable):
        """Per-lane parameter values, aligned with the first pipeline register."""
        p = self.params
        lanes, rom = {}, p.rom_tables()
        for name, (shape, values) in p.tables().items():
            if name not in rom:
                lanes[name] = [shape.const(values[q]) if isinstance(shape, data.Layout)
                               else Const(values[q], shape) for q in range(p.pe)]
        if rom:
            layout = data.StructLayout({name: data.ArrayLayout(shape, p.pe)
                                        for name, (shape, _) in rom.items()})
            init = [{name: values[f * p.pe:(f + 1) * p.pe] for name, (_, values) in rom.items()}
                    for f in range(p.folds)]
            bram = p.table_in_bram
            m.submodules.params = mem = Memory(
                shape=layout, depth=p.folds, init=init,
                attrs={"ram_style": "block"} if bram else {"rom_style": "logic"})
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(fold), port.en.eq(enable)]
            word = port.data
            if p.table_registered:   # in block RAM, into its own output register (the ECP5
                # flow folds it in); in logic, a register behind the look-up
                word = data.View(layout, output_register(m, port.data.as_value(), en=enable,
                                                         name="params_q"))
            for name in rom:
                lanes[name] = [getattr(word, name)[q] for q in range(p.pe)]
        return lanes

    def elaborate(self, platform):
        m = Module()
        p = self.params

        valid = [Signal(name=f"valid_{n}") for n in range(self.latency)]
        advance = Signal()
        m.d.comb += [
            advance.eq(~valid[-1] | self.o_data.ready),
            self.i_data.ready.eq(advance),
            self.o_data.valid.eq(valid[-1]),
        ]
        with m.If(advance):
            m.d.sync += valid[0].eq(self.i_data.valid)
            m.d.sync += [b.eq(a) for a, b in zip(valid, valid[1:], strict=False)]

        fold = Signal(range(p.folds))
        with m.If(self.i_data.valid & self.i_data.ready):
            m.d.sync += fold.eq(Mux(fold == p.folds - 1, 0, fold + 1))

        raw = Signal(data.ArrayLayout(p.raw_shape, p.pe))
        with m.If(advance):
            m.d.sync += raw.eq(self.i_data.payload)
        if p.table_registered:   # a stage more, as the parameters' output register
            raw_q = Signal.like(raw, name="raw_q")
            with m.If(advance):
                m.d.sync += raw_q.eq(raw)
            raw = raw_q
        lanes = self._lane_params(m, fold, advance)

        datapath = {StageKind.IDENTITY: self._identity, StageKind.REQUANT: self._requant,
                    StageKind.THRESHOLD: self._threshold}[p.kind]
        for q in range(p.pe):
            params = {name: values[q] for name, values in lanes.items()}
            y = datapath(_Stages(m, advance, f"lane{q}"), raw[q], **params)
            m.d.comb += self.o_data.payload[q].eq(y)
        return m

    def _identity(self, st, raw, *, offset):
        return st.reg(self.params.scale * raw + offset, self.params.out_shape, "acc")

    def _product_shape(self):
        """Shape holding ``acc * mult`` of every channel (worst case)."""
        p = self.params
        rmin, rmax = p.raw_range
        pairs = list(zip(p.offset, p.mult, strict=True))
        lows = [(p.scale * rmin + off) * k for off, k in pairs]
        highs = [(p.scale * rmax + off) * k for off, k in pairs]
        return _shape_for(min(lows), max(highs))

    def _requant(self, st, raw, *, offset, mult, shift):
        if self.pipelined:
            return self._requant_pipelined(st, raw, offset=offset, mult=mult, shift=shift)
        p = self.params
        # Registered multiplier inputs and output, so the product maps to a DSP block.
        acc = st.reg(p.scale * raw + offset, p.acc_shape, "acc")
        mult = st.delay(mult, 1, "mult")
        shift = st.delay(shift, 1, "shift")
        t = st.reg(acc * mult, self._product_shape(), "product")
        shift = st.delay(shift, 1, "shift")
        # (t + 2**(s-1)) >> s == (((2t) >> s) + 1) >> 1 for s >= 1, and t == (2t + 1) >> 1.
        if isinstance(shift, Const):
            u = t.shift_left(1).shift_right(shift.value)
        else:
            u = t.shift_left(1) >> shift
        u = st.reg(u, u.shape(), "shifted")
        return st.reg(self._clamped(*self._rounded(u)), p.out_shape, "y")

    def _requant_pipelined(self, st, raw, *, offset, mult, shift):
        """``_requant`` for Fmax: the product split into DSP-sized partial products, summed by
        a pipelined adder tree; rounding and clamping in two stages. Each DSP block's operands
        and products go through two registers, so that placement can put one next to the
        block on either side (the ECP5's MULT18X18D takes 3.9 ns alone; with one register the
        routing to and from it added 4.1 ns), or fold it into the block's own registers.
        Latency :attr:`latency` (8 plus the tree's stages)."""
        p = self.params
        acc = st.reg(p.scale * raw + offset, p.acc_shape, "acc")
        # the registers next to the DSP blocks have no reset: the ECP5 flow folds them in
        acc = st.reg(acc, acc.shape(), "acc_q", reset_less=True)
        mult = st.delay(mult, 1, "mult")
        if not isinstance(mult, Const):
            mult = st.reg(mult, mult.shape(), "mult_q", reset_less=True)
        shift = st.delay(shift, 4, "shift")
        parts = [st.delay(st.reg(v, v.shape(), f"part{n}", reset_less=True), 1, f"part{n}_q")
                 for n, v in enumerate(_partial_products(acc, mult))]
        total, stages = pipelined_tree_sum(st.m, parts, f"{st.prefix}_sum", enable=st.enable)
        t = Signal(self._product_shape(), name=f"{st.prefix}_product")
        st.m.d.comb += t.eq(total)
        shift = st.delay(shift, stages, "shift")
        if isinstance(shift, Const):
            u = t.shift_left(1).shift_right(shift.value)
        else:
            u = t.shift_left(1) >> shift
        u = st.reg(u, u.shape(), "shifted")
        r, below, above = self._rounded(u)
        r = st.reg(r, r.shape(), "rounded")
        below = st.reg(below, 1, "below")
        above = st.reg(above, 1, "above")
        return st.reg(self._clamped(r, below, above), p.out_shape, "y")

    def _rounded(self, u):
        """``r = (u + 1) >> 1`` in the output's width and whether the full ``r`` lies below
        ``lo`` or above ``hi``. The two compares read ``u``, not ``r``, so that they run beside
        the rounding adder rather than after it: ``r < lo`` is ``u < 2 lo - 1`` and ``r > hi``
        is ``u > 2 hi``. Within ``lo..hi``, ``r`` is its own low bits, so the adder is only as
        wide as the output."""
        p = self.params
        width = p.out_shape.width
        if len(u) > width + 1:
            r = (u[:width + 1] + 1)[1:width + 1]
            r = r.as_signed() if p.out_shape.signed else r
        else:
            r = (u + 1).shift_right(1)
        return r, u < 2 * p.lo - 1, u > 2 * p.hi

    def _clamped(self, r, below, above):
        p = self.params
        return Mux(below, p.lo, Mux(above, p.hi, r))

    def _threshold(self, st, raw, *, thresholds):
        levels = self.params.levels
        above = st.reg(Cat(raw >= thresholds[n] for n in range(levels)), levels, "above")
        return st.reg(sum(above[n] for n in range(levels)), self.params.out_shape, "count")


def _limbs(value):
    """``value`` as ``[(limb, offset)]`` with ``value == sum(limb << offset)``, each limb an
    operand of an 18x18 signed multiplier (17-bit unsigned slices, the top one signed when
    ``value`` is)."""
    shape = value.shape()
    limit = 18 if shape.signed else 17
    if shape.width <= limit:
        return [(value, 0)]
    limbs, low = [], 0
    while shape.width - low > limit:
        limbs.append((value[low:low + 17], low))
        low += 17
    top = value[low:]
    limbs.append((top.as_signed() if shape.signed else top, low))
    return limbs


def _partial_products(a, b):
    """The partial products of ``a * b``, each from one 18x18 multiplier, shifted into place."""
    return [(x * y).shift_left(i + j) if i + j else x * y
            for x, i in _limbs(a) for y, j in _limbs(b)]


class _Stages:
    """Pipeline registers of one lane, all clock-enabled by the pipeline's advance signal."""

    def __init__(self, m, enable, prefix):
        self.m, self.enable, self.prefix = m, enable, prefix

    def reg(self, value, shape, name, *, reset_less=False):
        reg = Signal(shape, name=f"{self.prefix}_{name}", reset_less=reset_less)
        with self.m.If(self.enable):
            self.m.d.sync += reg.eq(value)
        return reg

    def delay(self, value, stages, name):
        if isinstance(value, Const):
            return value
        for _ in range(stages):
            value = self.reg(value, value.shape(), name)
        return value
