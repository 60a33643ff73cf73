"""Parameters of the systolic-array engine, shared by the hardware, its reference and the
generator, with the engine's cycle model.

Vocabulary (one ``linear`` layer, SPEC 2.1, run on a batch):

* ``out_features`` M (the layer's outputs), ``in_features`` K, ``batch`` B;
* an array of ``rows`` R x ``cols`` C multiply-accumulate cells. Columns always hold C
  consecutive outputs (an *output tile* ``mt`` of ``ceil(M/C)``); rows hold R consecutive
  inputs ``k`` (weight-stationary: a *k tile* ``kt`` of ``ceil(K/R)``) or R vectors of the
  batch (output-stationary);
* the batch is processed in *chunks* of vectors (:attr:`SystolicParams.chunk_sizes`): a chunk
  is loaded into one half of the double-buffered activation buffer, computed tile by tile into
  one half of the double-buffered collector, and drained through the output stage while the
  next chunk computes.

Cycle model
-----------
Per chunk of ``nb`` vectors the engine spends

* ``fill = nb * ceil(K / in_beat)`` cycles taking input beats (one per cycle);
* ``compute = tiles * period(nb)`` cycles issuing steps into the array, where

  - weight-stationary: ``tiles = ceil(M/C) * ceil(K/R)`` and ``period(nb) = max(nb, R, 2)`` -- the
    ``nb`` vectors of the chunk stream through the array once per weight tile while the next
    tile's R weight rows are written into the cells' shadow registers, one row per cycle;
  - output-stationary: ``tiles = ceil(M/C)`` and ``period(nb) = max(K, nb)`` -- K steps
    per output tile; the R x C results of a tile leave the array one row per cycle in every
    column while the next tile accumulates;

* ``drain = nb * ceil(M/C)`` cycles sending output beats of C lanes (one per cycle).

Fill-and-drain of the array itself is overlapped: steps of consecutive tiles follow each other
without a gap (one idle cycle between chunks). The three activities form a pipeline with two
buffers between neighbours; with ``F[i], S[i], D[i]`` the cycles at which chunk ``i`` starts
filling, computing and draining (chunk 0 starts filling at cycle 0, terms with a negative index
are dropped)::

    F[i] = max(F[i-1] + fill[i-1], S[i-2] + compute[i-2])               (input half free)
    S[i] = max(F[i] + fill[i] + 1, S[i-1] + compute[i-1] + 1, D[i-2] + drain[i-2] + 1)
    D[i] = max(S[i] + compute[i] + L(nb[i]), D[i-1] + drain[i-1] + 1)
    cycles = D[n-1] + drain[n-1] + Z - 1

After a reset a weight-stationary engine first loads the first weight tile, one row per cycle
(:attr:`SystolicParams.prologue`), so the first chunk of the first batch also waits for it:
``S[0] >= prologue - t0`` when the engine accepts its first input beat ``t0`` cycles after the
reset (``t0 = 0``: the first cycle out of reset). This binds only when loading that chunk takes
fewer cycles than the prologue (small batches on tall arrays).

``L`` is the latency from the end of a chunk's last slot to its first drain read (the array's
``R + C`` plus the collector, see :meth:`SystolicParams.latencies`), ``Z - 1`` that from the last
drain read to the last output beat (skid buffer and output stage). ``cycles`` counts from the
cycle the first input beat is accepted to the cycle the last output beat is accepted, for the
first batch after a reset with no stalls (:attr:`SystolicParams.expected_cycles`, input from
the first cycle; :meth:`SystolicParams.first_batch_cycles` for a later start); the hardware
matches it exactly. When the compute dominates this is ``fill[0] + sum(compute + 1) + L +
drain[-1] + Z - 1``: the only exposed overheads are loading the first chunk and draining the
last, so a large GEMM approaches ``B*M*K/(R*C)`` cycles.
"""

import enum
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Shape

from ..common.arith import cdiv
from ..common.dtype import DType, DTypeKind
from ..common.outstage import OutputStageParams, StageKind
from ..common.reference import bits_for_range
from ..common.stream import check_positive

__all__ = ["Dataflow", "SystolicParams"]


class Dataflow(enum.Enum):
    """How the GEMM is mapped onto the array."""

    #: weight-stationary: each cell holds one weight; inputs flow right, partial sums flow down.
    WS = "ws"
    #: output-stationary: each cell accumulates one output; inputs flow right, weights down.
    OS = "os"



def _ints(name, value, count):
    arr = np.asarray(value)
    if arr.shape != (count,) or (arr.size and arr.dtype.kind not in "iuO"):
        raise ValueError(f"{name} must hold {count} integers, not {value!r}")
    return tuple(int(v) for v in arr)


@dataclass(frozen=True, kw_only=True)
class SystolicParams:
    """Shape, mapping and arithmetic widths of one systolic-array engine.

    Build it with :meth:`for_layer` from a layer's weights (which fixes the accumulator bounds);
    the constructor validates everything and raises :exc:`TypeError` or :exc:`ValueError` with
    the offending field.

    Parameters
    ----------
    rows, cols : int
        Array size R x C.
    dataflow : Dataflow or str
        ``"ws"`` or ``"os"``.
    out_features, in_features, batch : int
        M, K and the number B of vectors per batch.
    in_dtype, weight_dtype : DType
        ``intN`` or ``uintN`` (bipolar layers belong to the ``mvu`` engine).
    acc_lo, acc_hi : sequences of M ints
        Worst-case range of ``sum_k W[m, k] * x[k]`` (no bias) per output, over every input the
        input dtype allows (:func:`nnaccel.hw.common.reference.acc_bounds`).
    output : OutputStageParams
        The SPEC 2.2 output stage: ``pe == cols``, ``channels == out_features``, ``raw_shape ==``
        :attr:`acc_shape`, ``scale == 1``, ``offset`` the bias.
    in_beat : int, optional
        Input elements per beat (default R). Weight-stationary: R and ``in_beat`` must divide
        one another. Output beats always carry C elements.
    batch_tile : int, optional
        Weight-stationary only: vectors per chunk, the last chunk of a batch taking the rest
        (default ``ceil(B / max(1, B // R))``: at least R when B >= R, so that streaming a chunk
        through the array takes as long as loading the next weight tile). Output-stationary
        chunks are R vectors.
    dsp_cells : int, optional
        How many cells (row-major) multiply in a DSP block; the others use logic. Default: all.
        Set it below ``R * C`` when the device has fewer DSP blocks than the array has cells.
    """

    rows: int
    cols: int
    dataflow: Dataflow
    out_features: int
    in_features: int
    batch: int
    in_dtype: DType
    weight_dtype: DType
    acc_lo: tuple
    acc_hi: tuple
    output: OutputStageParams
    in_beat: int = None
    batch_tile: int = None
    dsp_cells: int = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        for name in ("rows", "cols", "out_features", "in_features", "batch"):
            check_positive(name, getattr(self, name))
        try:
            put("dataflow", Dataflow(self.dataflow))
        except ValueError:
            raise ValueError(f"dataflow must be 'ws' or 'os', not {self.dataflow!r}") from None
        for name in ("in_dtype", "weight_dtype"):
            dtype = getattr(self, name)
            if not isinstance(dtype, DType):
                raise TypeError(f"{name} must be a DType, not {dtype!r}")
            if dtype.kind is DTypeKind.BIPOLAR:
                raise ValueError(f"{name} must be intN or uintN, not {dtype}: the systolic "
                                 f"engine multiplies integers (bipolar layers use 'mvu')")
        put("in_beat", self.rows if self.in_beat is None else self.in_beat)
        check_positive("in_beat", self.in_beat)
        if self.dataflow is Dataflow.WS:
            if self.rows % self.in_beat and self.in_beat % self.rows:
                raise ValueError(f"in_beat ({self.in_beat}) and rows ({self.rows}) must divide "
                                 f"one another in a weight-stationary engine")
            if self.batch_tile is None:
                put("batch_tile", cdiv(self.batch, max(1, self.batch // self.rows)))
            check_positive("batch_tile", self.batch_tile)
            if self.batch_tile > self.batch:
                raise ValueError(f"batch_tile ({self.batch_tile}) must not exceed batch "
                                 f"({self.batch})")
        elif self.batch_tile is not None:
            raise ValueError("batch_tile applies only to a weight-stationary engine; "
                             "an output-stationary chunk is one vector per row")
        else:
            put("batch_tile", min(self.rows, self.batch))
        if self.dsp_cells is None:
            put("dsp_cells", self.rows * self.cols)
        check_positive("dsp_cells", self.dsp_cells, zero=True)
        if self.dsp_cells > self.rows * self.cols:
            raise ValueError(f"dsp_cells ({self.dsp_cells}) must not exceed rows * cols "
                             f"({self.rows * self.cols})")
        m = self.out_features
        put("acc_lo", _ints("acc_lo", self.acc_lo, m))
        put("acc_hi", _ints("acc_hi", self.acc_hi, m))
        for n, (lo, hi) in enumerate(zip(self.acc_lo, self.acc_hi, strict=True)):
            if not lo <= 0 <= hi:
                raise ValueError(f"acc_lo[{n}]..acc_hi[{n}] must contain 0, not {lo}..{hi}")
        self._check_output()

    def _check_output(self):
        out = self.output
        if not isinstance(out, OutputStageParams):
            raise TypeError(f"output must be an OutputStageParams, not {out!r}")
        if out.pe != self.cols or out.channels != self.out_features:
            raise ValueError(f"output must have pe == cols ({self.cols}) and channels == "
                             f"out_features ({self.out_features}), not pe={out.pe}, "
                             f"channels={out.channels}")
        if out.raw_shape != self.acc_shape or out.scale != 1:
            raise ValueError(f"output must have raw_shape {self.acc_shape!r} and scale 1, not "
                             f"{out.raw_shape!r} and {out.scale}")
        if out.kind is StageKind.IDENTITY:
            width, signed = out.out_shape.width, out.out_shape.signed
            lo, hi = (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width)
                                                                                    - 1)
            for n, (a, b, off) in enumerate(zip(self.acc_lo, self.acc_hi, out.offset,
                                                strict=True)):
                if a + off < lo or b + off > hi:
                    raise ValueError(f"an identity output of shape {out.out_shape!r} cannot "
                                     f"hold output {n}, whose range is {a + off}..{b + off}")

    @classmethod
    def for_layer(cls, *, weight, rows, cols, dataflow, batch, in_dtype, weight_dtype, bias=None,
                  output_kind="identity", out_dtype=None, mult=None, shift=None, relu=False,
                  thresholds=None, in_beat=None, batch_tile=None, dsp_cells=None):
        """Parameters for the layer with integer weights ``weight`` (M, K) and ``bias`` (M,).

        The accumulator bounds are the worst case over these weights and every input of
        ``in_dtype``; ``out_dtype`` (a DType, default ``int32``) and ``mult``, ``shift``,
        ``relu``, ``thresholds`` define the SPEC 2.2 output stage of kind ``output_kind``.
        """
        from ..common.reference import acc_bounds

        for name, value in (("rows", rows), ("cols", cols), ("batch", batch)):
            check_positive(name, value)
        for name, dtype in (("in_dtype", in_dtype), ("weight_dtype", weight_dtype)):
            if not isinstance(dtype, DType):
                raise TypeError(f"{name} must be a DType, not {dtype!r}")
        w = np.asarray(weight)
        if w.ndim != 2 or 0 in w.shape or (w.dtype.kind not in "iuO"):
            raise ValueError(f"weight must be a non-empty 2-D integer array, not shape "
                             f"{w.shape} of {w.dtype}")
        if weight_dtype.kind is not DTypeKind.BIPOLAR and not weight_dtype.contains(w):
            raise ValueError(f"weight values lie outside {weight_dtype}")
        lo, hi = acc_bounds(w, in_dtype.lo, in_dtype.hi)
        lo, hi = [min(int(v), 0) for v in lo], [max(int(v), 0) for v in hi]
        m = w.shape[0]
        raw = Shape(*bits_for_range(min(lo), max(hi)))
        out_dtype = DType.parse("int32") if out_dtype is None else out_dtype
        if not isinstance(out_dtype, DType):
            raise TypeError(f"out_dtype must be a DType, not {out_dtype!r}")
        offset = None if bias is None else _ints("bias", bias, m)
        output = OutputStageParams.for_dtype(output_kind, out_dtype, pe=cols, channels=m,
                                             raw_shape=raw, offset=offset, mult=mult,
                                             shift=shift, relu=relu, thresholds=thresholds)
        return cls(rows=rows, cols=cols, dataflow=dataflow, out_features=m,
                   in_features=w.shape[1], batch=batch, in_dtype=in_dtype,
                   weight_dtype=weight_dtype, acc_lo=lo, acc_hi=hi, output=output,
                   in_beat=in_beat, batch_tile=batch_tile, dsp_cells=dsp_cells)

    # -- shapes ----------------------------------------------------------------------------------

    @property
    def acc_shape(self):
        """Shape of the accumulators in the array and the collector (no bias)."""
        return Shape(*bits_for_range(min(self.acc_lo), max(self.acc_hi)))

    @property
    def acc_width(self):
        """Width of the SPEC accumulator ``W @ x + bias`` (worst case over the weights)."""
        off = self.output.offset
        lo = min(a + b for a, b in zip(self.acc_lo, off, strict=True))
        hi = max(a + b for a, b in zip(self.acc_hi, off, strict=True))
        return bits_for_range(lo, hi)[0]

    @property
    def out_beat(self):
        """Output elements per beat: C."""
        return self.cols

    @property
    def lanes(self):
        """Multipliers instantiated: R x C (``dsp_cells`` of them in DSP blocks)."""
        return self.rows * self.cols

    # -- tiling ----------------------------------------------------------------------------------

    @property
    def m_tiles(self):
        """Output tiles: ``ceil(M/C)`` (also the output beats per vector)."""
        return cdiv(self.out_features, self.cols)

    @property
    def k_tiles(self):
        """Weight-stationary k tiles: ``ceil(K/R)`` (1 for output-stationary)."""
        return cdiv(self.in_features, self.rows) if self.dataflow is Dataflow.WS else 1

    @property
    def weight_words(self):
        """Words of C weights in the weight memory: one per row of each weight tile
        (``ceil(M/C) * ceil(K/R) * R``, weight-stationary) or per step of each output tile
        (``ceil(M/C) * K``, output-stationary)."""
        if self.dataflow is Dataflow.WS:
            return self.m_tiles * self.k_tiles * self.rows
        return self.m_tiles * self.in_features

    @property
    def in_beats(self):
        """Input beats per vector: ``ceil(K/in_beat)``."""
        return cdiv(self.in_features, self.in_beat)

    @property
    def chunk_sizes(self):
        """Vectors in each chunk of a batch."""
        full, rest = divmod(self.batch, self.batch_tile)
        return (self.batch_tile,) * full + ((rest,) if rest else ())

    @property
    def tiles_per_chunk(self):
        return self.m_tiles * self.k_tiles

    def period(self, nb):
        """Cycles per tile for a chunk of ``nb`` vectors (see the module's cycle model)."""
        if self.dataflow is Dataflow.WS:
            return max(nb, self.rows, RMW_LATENCY)
        return max(self.in_features, nb)

    # -- cycle model -----------------------------------------------------------------------------

    @property
    def readout_levels(self):
        """Register levels of the output-stationary column read-out tree."""
        n, levels = cdiv(self.rows, 2), 1
        while n > 1:
            n, levels = cdiv(n, 4), levels + 1
        return levels

    def latencies(self, nb):
        """``(A, L, Z)`` of the cycle model for a chunk of ``nb`` vectors: last input beat of
        the chunk to its first step, end of its last slot to its first drain read, and a drain
        read to its output beat (plus one)."""
        r, c = self.rows, self.cols
        fixed = MUL_LATENCY + READ_LATENCY + RMW_LATENCY + 1
        if self.dataflow is Dataflow.WS:
            # memory reads, skew and array (R + MUL_LATENCY + 1 + c), collector, done flag,
            # drain start; the last step is nb-1 of a slot of period(nb) cycles
            lat = r + c + fixed - (self.period(nb) - nb)
        else:
            # the last row (nb - 1) leaves the read-out of the last column
            lat = self.readout_levels + c + nb + fixed - (self.period(nb) - self.in_features)
        return 1, lat, 4 + self.output.latency(pipelined=True)

    @property
    def prologue(self):
        """Cycles after a reset before the first step can issue: weight-stationary, the R
        cycles loading the first weight tile, then the cycle that claims the chunk (``R + 1``);
        output-stationary, 0 (weights stream with the steps)."""
        return self.rows + 1 if self.dataflow is Dataflow.WS else 0

    def _schedule(self, batches=1, start=0):
        """Cycle of the last output beat of each batch, batches sent back to back from cycle 0,
        into an engine out of reset since ``start`` cycles (the module's cycle model)."""
        sizes = list(self.chunk_sizes) * batches
        fill = [nb * self.in_beats for nb in sizes]
        comp = [self.tiles_per_chunk * self.period(nb) for nb in sizes]
        drain = [nb * self.m_tiles for nb in sizes]
        f, s, d = [], [], []
        for i, nb in enumerate(sizes):
            a, lat, z = self.latencies(nb)
            fi = 0 if i == 0 else f[i - 1] + fill[i - 1]
            si = fi + fill[i] + a
            if i == 0:
                si = max(si, self.prologue - start)
            di = 0
            if i >= 1:
                si = max(si, s[i - 1] + comp[i - 1] + 1)
                di = d[i - 1] + drain[i - 1] + 1
            if i >= 2:
                fi = max(fi, s[i - 2] + comp[i - 2])
                si = max(si, fi + fill[i] + a, d[i - 2] + drain[i - 2] + 1)
            di = max(di, si + comp[i] + lat)
            f.append(fi)
            s.append(si)
            d.append(di)
        n = len(self.chunk_sizes)
        return [d[(b + 1) * n - 1] + drain[(b + 1) * n - 1] + z - 1 for b in range(batches)]

    @property
    def expected_cycles(self):
        """Cycles for the first batch after a reset, from the first input beat accepted (in
        the first cycle out of reset) to the last output beat accepted, with no stalls (the
        module's cycle model). No later batch and no later start takes longer."""
        return self._schedule(1)[0]

    def first_batch_cycles(self, start=0):
        """Like :attr:`expected_cycles` when the engine accepts its first input beat ``start``
        cycles after the reset (``start >= prologue``: as for an idle engine that has run
        before)."""
        check_positive("start", start, zero=True)
        return self._schedule(1, start)[0]

    @property
    def steady_cycles(self):
        """Cycles between the last output beats of consecutive batches sent back to back."""
        ends = self._schedule(3)
        return ends[2] - ends[1]

    @property
    def ideal_cycles(self):
        """``B*M*K / (R*C)``: every multiplier busy every cycle."""
        return self.batch * self.out_features * self.in_features / (self.rows * self.cols)


#: Cycles from a cell's operand registers to its registered product (see ``array.py``).
MUL_LATENCY = 4
#: Cycles from an address to the data of the engine's activation buffer and weight memory (the
#: block RAM's own register, then its output register, which the ECP5 flow folds into the
#: DP16KD: no logic follows a RAM's slow clock-to-output).
READ_LATENCY = 2
#: Cycles from a column output to its write into the collector (the read's two registers as
#: above, then add and write); a collector address is read again at least this many cycles
#: after it was read (one in the cycle of its previous write gets that sum forwarded).
RMW_LATENCY = 2
