"""The sparse engine against the SPEC reference (bit-exact) and its cycle model, under stalls."""

import random
from dataclasses import replace

import numpy as np
import pytest
from amaranth import Module
from amaranth.sim import Simulator

from nnaccel.hw.common import reference as ref
from nnaccel.hw.common.dtype import DType, DTypeKind
from nnaccel.hw.sparse.engine import (
    Collector,
    SparseCore,
    SparseEngine,
    check_matrix,
    encode_weight,
)
from nnaccel.hw.sparse.format import encode
from nnaccel.hw.sparse.params import SparseParams
from nnaccel.hw.sparse.reference import cycle_model
from nnaccel.sim.amsim import STALL_PATTERNS, StallPattern, from_beats, receive, send, to_beats

from .test_mvu_core import check_stalls_took_effect

NO_STALL = StallPattern()


def simulate(dut, beats, count, *, pattern=NO_STALL, seed=0, output="o_data"):
    """Run ``dut`` (``i_data`` and the stream ``output``); return the output payloads and the
    cycles of every input and output transfer (rising edges, counted from the start)."""
    top = Module()
    top.submodules.dut = dut
    sim = Simulator(top)
    sim.add_clock(1e-6)
    out, marks = [], {"in": [], "out": []}
    idle, refused = {}, {}

    async def source(ctx):
        await send(ctx, dut.i_data, beats, idle=pattern.idle, rng=random.Random(seed),
                   counts=idle)

    async def sink(ctx):
        out.extend(await receive(ctx, getattr(dut, output), count, stall=pattern.stall,
                                 rng=random.Random(seed + 1), timeout=50_000,
                                 counts=refused))

    async def monitor(ctx):
        edge = 0
        i, o = dut.i_data, getattr(dut, output)
        while True:
            *_, iv, ir, ov, orr = await ctx.tick().sample(i.valid, i.ready, o.valid, o.ready)
            if iv and ir:
                marks["in"].append(edge)
            if ov and orr:
                marks["out"].append(edge)
            edge += 1

    sim.add_testbench(source, background=True)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(sink)
    sim.run()
    check_stalls_took_effect({"idle": [idle.get("idle", 0)],
                              "refused": [refused.get("refused", 0)]}, pattern, len(beats),
                             len(out))
    return out, marks


def garbage_beats(bits, n, width, rng):
    """:func:`to_beats` of the element bit patterns ``bits`` (B, K), with random ``width``-bit
    garbage instead of zeros in the padding lanes of each vector's last beat (undefined by
    contract: the engine must ignore them)."""
    beats = to_beats(bits, n)
    k = np.shape(bits)[1]
    per, tail = -(-k // n), k - (-(-k // n) - 1) * n
    for v in range(len(beats) // per):
        beat = beats[(v + 1) * per - 1]
        beat[tail:] = [int(g) for g in rng.integers(0, 1 << width, size=n - tail)]
    return beats


def sparse_weight(rng, dtype, shape, density, codebook=None):
    if codebook is not None:
        w = rng.choice(np.asarray(codebook)[np.asarray(codebook) != 0], size=shape)
    else:
        w = rng.integers(dtype.lo, dtype.hi + 1, size=shape)
    return w * (rng.random(shape) < density)


def activations(rng, dtype, batch, k, density):
    if dtype.kind is DTypeKind.BIPOLAR:
        return rng.choice([-1, 1], size=(batch, k))
    x = rng.integers(dtype.lo, dtype.hi + 1, size=(batch, k))
    return x * (rng.random((batch, k)) < density)


def run_engine(params, w, x, *, pattern=NO_STALL, seed=0, codebook=None, bias=None,
               output=("identity", "int32", {})):
    """Simulate one batch; check it bit-exact against SPEC 2.1/2.2; return the engine, the
    output cycles relative to the first input and the model's prediction."""
    kind, out_name, extra = output
    out_dtype = DType.parse(out_name)
    params = SparseParams.for_layer(
        weight=w, pe=params.pe, queue_depth=params.queue_depth, in_beat=params.in_beat,
        in_dtype=params.in_dtype, weight_dtype=params.weight_dtype,
        index_bits=params.index_bits, bias=bias, output_kind=kind, out_dtype=out_dtype,
        out_lanes=params.out_lanes, **extra)
    dut = SparseEngine(params, weight=w, codebook=codebook)
    beats = garbage_beats(params.in_dtype.encode(x), params.in_beat, params.in_dtype.bits,
                          np.random.default_rng(seed + 17))
    rows = params.rows_per_pe
    out, marks = simulate(dut, beats, rows * len(x), pattern=pattern, seed=seed)
    got = out_dtype.decode(np.array(from_beats(out, params.out_features, params.pe),
                                    dtype=np.int64).reshape(len(x), -1))
    acc = ref.linear_acc(w, x, bias, params.in_dtype.lo, params.in_dtype.hi)
    want = ref.output_stage(acc, kind, out_dtype.kind.value, out_dtype.bits, **extra)
    assert got.tolist() == np.asarray(want).tolist()
    ends = [marks["out"][i] - marks["in"][0] for i in range(rows - 1, len(marks["out"]), rows)]
    model = cycle_model(dut.matrix.column_counts(), x != 0, in_beat=params.in_beat,
                        queue_depth=params.queue_depth, rows_per_pe=rows,
                        out_latency=params.out_latency, out_step=params.out_step)
    return dut, ends, model


def make_params(m, k, pe, depth, in_beat, wdt="int8", xdt="uint4", index_bits=4,
                out_lanes=None):
    return SparseParams(in_features=k, out_features=m, pe=pe, queue_depth=depth,
                        in_beat=in_beat, in_dtype=DType.parse(xdt), weight_dtype=DType.parse(wdt),
                        index_bits=index_bits, out_lanes=out_lanes)


def case_random(rng):
    """Random sparsity, a 16-entry codebook, requant with ReLU, a bias."""
    p = make_params(22, 19, 4, 2, 4)
    book = np.array([0, -128, -77, -40, -9, -3, -1, 1, 2, 5, 11, 30, 64, 90, 127, 100])
    w = sparse_weight(rng, p.weight_dtype, (22, 19), 0.3, book)
    x = activations(rng, p.in_dtype, 3, 19, 0.6)
    bias = rng.integers(-200, 200, size=22)
    mult = rng.integers(1, 1 << 12, size=22)
    return p, w, x, dict(codebook=book, bias=bias,
                         output=("requant", "uint8", dict(mult=mult, shift=9, relu=True)))


def case_unbalanced(rng):
    """An empty PE (PE 1), all the weight of PE 0 in one row, thresholds."""
    p = make_params(16, 12, 4, 1, 3, wdt="int4", xdt="int5")
    w = sparse_weight(rng, p.weight_dtype, (16, 12), 0.4)
    w[1::4] = 0
    w[0::4] = 0
    w[8] = rng.integers(1, 8, size=12)
    x = activations(rng, p.in_dtype, 3, 12, 0.8)
    t = np.sort(rng.integers(-60, 60, size=(16, 3)), axis=1)
    return p, w, x, dict(output=("threshold", "uint2", dict(thresholds=t)))


def case_empty(rng):
    """Empty columns, zero activations, an all-zero input vector and an all-zero one beat."""
    p = make_params(10, 16, 2, 3, 4, wdt="int6", xdt="int3")
    w = sparse_weight(rng, p.weight_dtype, (10, 16), 0.5)
    w[:, [0, 5, 6, 7, 15]] = 0
    x = activations(rng, p.in_dtype, 3, 16, 0.5)
    x[1] = 0
    x[2, 4:8] = 0
    return p, w, x, {}


def case_padding(rng):
    """Bipolar inputs (no zero activations); 2-bit indices, so long runs need padding."""
    p = make_params(40, 9, 3, 4, 9, wdt="int4", xdt="bipolar", index_bits=2)
    w = sparse_weight(rng, p.weight_dtype, (40, 9), 0.08)
    x = activations(rng, p.in_dtype, 2, 9, 1.0)
    return p, w, x, {}


CASES = [case_random, case_unbalanced, case_empty, case_padding]


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_engine_matches_reference(case, pattern):
    rng = np.random.default_rng(CASES.index(case))
    p, w, x, extra = case(rng)
    if case is case_padding:
        assert encode(w, p.pe, index_bits=2).padding > 0
    dut, ends, model = run_engine(p, w, x, pattern=pattern, seed=3, **extra)
    if pattern == NO_STALL:
        # back to back, no backpressure: the cycle model is exact
        assert ends == model.vector_end.tolist()


@pytest.mark.parametrize("pattern", [NO_STALL, *STALL_PATTERNS[-2:]], ids=str)
@pytest.mark.parametrize("case,out_lanes", [
    (case_random, 1), (case_random, 2), (case_unbalanced, 2), (case_empty, 1),
    (case_padding, 1)], ids=lambda v: v.__name__[5:] if callable(v) else str(v))
def test_narrow_output_stage_matches_reference(case, out_lanes, pattern):
    """An output stage narrower than the PEs (``out_lanes``): bit-exact under stalls, and
    without them each vector ends when the cycle model says, the read-out a row every
    ``pe / out_lanes`` cycles (the padding case: 40 rows on 3 PEs, two padding rows)."""
    rng = np.random.default_rng(CASES.index(case))
    p, w, x, extra = case(rng)
    p = replace(p, out_lanes=out_lanes)
    dut, ends, model = run_engine(p, w, x, pattern=pattern, seed=5, **extra)
    assert dut.stage.params.pe == out_lanes and dut.params.out_step == p.pe // out_lanes
    if pattern == NO_STALL:
        assert ends == model.vector_end.tolist()


@pytest.mark.parametrize("m,k,pe,depth,in_beat,density,adensity", [
    (48, 24, 8, 8, 8, 0.1, 0.35),
    (30, 20, 3, 1, 5, 0.25, 1.0),
    (9, 7, 9, 2, 1, 0.9, 0.7),       # one row per PE, one element per beat
    (13, 10, 3, 2, 4, 0.4, 0.6),     # two padding lanes (garbage) in each vector's last beat
])
def test_cycles_match_model(m, k, pe, depth, in_beat, density, adensity):
    rng = np.random.default_rng(m + k)
    p = make_params(m, k, pe, depth, in_beat)
    w = sparse_weight(rng, p.weight_dtype, (m, k), density)
    x = activations(rng, p.in_dtype, 4, k, adensity)
    _, ends, model = run_engine(p, w, x)
    assert ends == model.vector_end.tolist()
    assert model.cycles_total == ends[-1]


def test_cycles_match_model_when_queues_fill():
    # Queues of one; PE 0 busy on the first half of the columns, PE 1 on the second: while
    # PE 0's queue is full the broadcast waits (on the PEs' registered ready, a cycle late),
    # which keeps PE 1's tokens back; one slot more or less moves the vectors' ends.
    rng = np.random.default_rng(2)
    p = make_params(24, 20, 4, 1, 4)
    w = sparse_weight(rng, p.weight_dtype, (24, 20), 0.1)
    w[0::4, :10] = rng.integers(1, 100, size=(6, 10))
    w[1::4, 10:] = rng.integers(1, 100, size=(6, 10))
    x = activations(rng, p.in_dtype, 3, 20, 0.9)
    _, ends, model = run_engine(p, w, x)
    assert model.broadcast_stalls > 0
    assert ends == model.vector_end.tolist()


@pytest.mark.parametrize("m", [5, 6, 7, 13, 14, 15])
def test_columns_at_the_top_of_the_address_range(m):
    # One PE, one column of m entries: its pointers and entries share a memory of 1 + m words,
    # so m - 3 reaches the top codes of its address width (7: 100 in 3 bits, 15: 1100 in 4),
    # where a column's count less three must not read as "no entry" or "one entry", nor its
    # iterator's count as the last entry.
    p = make_params(m, 1, 1, 2, 1)
    w = np.arange(1, m + 1).reshape(m, 1) * (-1) ** np.arange(m).reshape(m, 1)
    x = np.array([[3], [0], [15], [1]])
    _, ends, model = run_engine(p, w, x)
    assert ends == model.vector_end.tolist()


def test_heavy_backpressure_fills_both_banks():
    # The sink takes one beat in ten: the PEs run ahead until both accumulator banks wait.
    rng = np.random.default_rng(12)
    p = make_params(8, 12, 4, 2, 4)
    w = sparse_weight(rng, p.weight_dtype, (8, 12), 0.5)
    x = activations(rng, p.in_dtype, 8, 12, 0.7)
    dut, ends, model = run_engine(p, w, x, pattern=StallPattern(0, 0.9), seed=1)
    assert ends[-1] > model.cycles_total + 10
    assert dut.params.expected_cycles(dut.matrix.column_counts()) >= model.cycles_per_inference


def run_random(seed, m, k, pe, depth, in_beat, *, density, batch, adensity, stall):
    """:func:`run_engine` on a random (m, k) layer and batch, the sink refusing ``stall``."""
    rng = np.random.default_rng(seed)
    p = make_params(m, k, pe, depth, in_beat)
    w = sparse_weight(rng, p.weight_dtype, (m, k), density)
    x = activations(rng, p.in_dtype, batch, k, adensity)
    run_engine(p, w, x, pattern=StallPattern(0, stall), seed=seed)
    return p


@pytest.mark.parametrize("seed", [0, 1])
def test_long_read_out_under_backpressure(seed):
    # 24 rows per PE against a sink that takes one beat in ten: the read-out does not wait on
    # the output, so the collector must stop asking for rows while its FIFO may fill, or beats
    # are lost.
    p = run_random(40 + seed, 48, 10, 2, 2, 5, density=0.3, batch=3, adensity=0.6, stall=0.9)
    assert p.rows_per_pe > 2 * Collector.FIFO_DEPTH


@pytest.mark.parametrize("seed", [0, 1])
def test_one_row_per_pe_under_backpressure(seed):
    # One row per PE and two-element vectors: both banks are often done at once, so right after
    # a bank's only row is read the collector turns back to it before its release; it must
    # wait for the release, or the sums come out twice.
    run_random(30 + seed, 3, 2, 3, 1, 2, density=0.5, batch=12, adensity=0.5, stall=0.6)


def test_full_throughput_on_busy_columns():
    # Every column holds 8 entries per PE: one entry per PE per cycle, no bubble between columns.
    p = make_params(32, 12, 4, 2, 4)
    rng = np.random.default_rng(5)
    w = rng.integers(1, 100, size=(32, 12))
    x = rng.integers(1, 16, size=(4, 12))
    _, ends, model = run_engine(p, w, x)
    per_vector = (ends[-1] - ends[0]) / (len(ends) - 1)
    entries_per_pe = 32 * 12 / 4
    assert per_vector == entries_per_pe
    assert model.entries_per_pe_cycle >= 0.9


def test_raw_core_and_storage_forms_agree():
    rng = np.random.default_rng(9)
    p = make_params(12, 10, 4, 2, 5)
    book = np.array([-5, 3, 7, 0])
    w = sparse_weight(rng, p.weight_dtype, (12, 10), 0.5, book)
    x = activations(rng, p.in_dtype, 2, 10, 0.7)
    for codebook in (book, None):
        core = SparseCore(p, encode(w, 4, codebook=codebook))
        assert core.raw_shape.signed
        out, _ = simulate(core, to_beats(x, 5), 3 * 2, pattern=STALL_PATTERNS[3],
                          output="o_raw")
        got = [[int(v) for v in beat] for beat in out]
        assert from_beats(got, 12, 4) == (x @ w.T).tolist()


def test_all_zero_matrix():
    p = make_params(5, 6, 2, 1, 6)
    w = np.zeros((5, 6), dtype=np.int64)
    x = np.array([[1, 2, 3, 4, 5, 6], [0] * 6])
    run_engine(p, w, x, bias=np.arange(5))


def test_bad_arguments():
    i8 = DType.parse("int8")
    with pytest.raises(ValueError, match="queue_depth must be a positive integer"):
        SparseParams(in_features=4, out_features=4, pe=2, queue_depth=0, in_beat=1,
                     in_dtype=i8, weight_dtype=i8)
    with pytest.raises(ValueError, match="pe .* must not exceed"):
        make_params(4, 4, 5, 1, 1)
    with pytest.raises(ValueError, match="bipolar"):
        make_params(4, 4, 2, 1, 1, wdt="bipolar")
    p = make_params(4, 6, 2, 1, 2)
    with pytest.raises(ValueError, match="expected \\(4, 6\\) on 2"):
        check_matrix(p, encode(np.ones((4, 6), dtype=int), 4))
    with pytest.raises(ValueError, match="3-bit indices"):
        check_matrix(p, encode(np.ones((4, 6), dtype=int), 2, index_bits=3))
    with pytest.raises(TypeError, match="SparseMatrix"):
        check_matrix(p, np.ones((4, 6)))
    with pytest.raises(ValueError, match="outside int8"):
        encode_weight(p, np.full((4, 6), 300))
    with pytest.raises(ValueError, match="shape \\(6, 4\\)"):
        encode_weight(p, np.ones((6, 4), dtype=int))


@pytest.fixture(scope="module")
def verilated_sparse(tmp_path_factory):
    """A sparse engine (M=13, K=10 on 3 PEs, beats of 4 inputs: two padding lanes in the last
    beat of a vector) in the AXI top level, as Verilog; the build is cached by the runner."""
    from amaranth.back import verilog

    from nnaccel.hw.common.pipeline import AxisTop

    rng = np.random.default_rng(21)
    p = make_params(13, 10, 3, 2, 4)
    w = sparse_weight(rng, p.weight_dtype, (13, 10), 0.4)
    bias = rng.integers(-100, 100, size=13)
    params = SparseParams.for_layer(weight=w, pe=3, queue_depth=2, in_beat=4,
                                    in_dtype=p.in_dtype, weight_dtype=p.weight_dtype, bias=bias,
                                    out_dtype=DType.parse("int16"))
    engine = SparseEngine(params, weight=w)
    path = tmp_path_factory.mktemp("sparse") / "sparse13.v"
    path.write_text(verilog.convert(AxisTop(engine, out_vector_beats=params.rows_per_pe),
                                    name="sparse13", emit_src=False))
    io = {"input": {"elements": 10, "elements_per_beat": 4, "bits_per_element": 4},
          "output": {"elements": 13, "elements_per_beat": 3, "bits_per_element": 16}}
    return path, io, params, engine, w, bias


@pytest.mark.verilator
@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
def test_verilator_bit_exact(monkeypatch, verilated_sparse, pattern):
    """Garbage in the input padding lanes, every stall pattern (checked to take effect); back
    to back, every vector ends exactly where the cycle model says."""
    from nnaccel.sim.scoreboard import compare

    from ..sim.test_verilator_axis import check_stalls, run_with_garbage

    path, io, params, engine, w, bias = verilated_sparse
    x = activations(np.random.default_rng(22), params.in_dtype, 8, 10, 0.6)
    result = run_with_garbage(monkeypatch, path, "sparse13", io, params.in_dtype.encode(x),
                              idle=pattern.idle, stall=pattern.stall, seed=5)
    want = ref.linear_acc(w, x, bias, params.in_dtype.lo, params.in_dtype.hi)
    assert compare(want, DType.parse("int16").decode(result.outputs_bits), "sparse") == 8 * 13
    check_stalls(result, pattern.idle, pattern.stall)
    if pattern == NO_STALL:
        rows = params.rows_per_pe
        ends = [c - result.input_cycles[0] for c in result.output_cycles[rows - 1::rows]]
        model = cycle_model(engine.matrix.column_counts(), x != 0, in_beat=4,
                            queue_depth=2, rows_per_pe=rows, out_latency=params.out_latency)
        assert ends == model.vector_end.tolist()


@pytest.mark.parametrize("pattern", STALL_PATTERNS[::3], ids=str)
def test_reset_mid_vector_then_exact(monkeypatch, pattern):
    """A reset while accumulator banks hold partial sums (and a bank waits to be read out):
    the banks are swept to zero, so the next vectors are exact."""
    from nnaccel.bench.sparse import sparse_options
    from nnaccel.gen.zoo.sparse_layer import make_layer, sparse_model

    from ..gen import test_reset

    weight, codebook, bias, mult, shift = make_layer(24, 16, density=0.3, codebook_size=8,
                                                     seed=4)
    model = sparse_model(weight, codebook, bias, mult, shift, layer="fc")
    monkeypatch.setitem(test_reset.CASES, "sparse", lambda: (model, sparse_options(4, 2)))
    test_reset.test_reset_mid_stream_then_exact("sparse", pattern)
