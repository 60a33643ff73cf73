"""Fast amaranth.sim tests of the SPEC 2.2 output stages against the numpy reference."""

import gc
from dataclasses import dataclass, field
from random import Random

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import signed, unsigned
from amaranth.sim import Simulator

from nnaccel.hw.common import reference as ref
from nnaccel.hw.common.outstage import OutputStage, OutputStageParams, StageKind
from nnaccel.sim.amsim import STALL_PATTERNS, receive, run_stream_test, send

MULT_MAX = (1 << 31) - 1


def shape_range(shape):
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


@dataclass
class Case:
    """One configuration: the stage's parameters and the SPEC output dtype they implement."""

    name: str
    stage: dict
    dtype: tuple  # (kind, bits) of SPEC section 1
    relu: bool = False
    memory: bool = field(default=True)  # whether some parameter must live in a ROM

    @property
    def params(self):
        return OutputStageParams(**self.stage)


def out_shape(dtype):
    kind, bits = dtype
    return {"int": signed, "uint": unsigned, "bipolar": lambda _: unsigned(1)}[kind](bits)


def requant_case(name, rng, *, pe, channels, raw_shape, dtype, relu=False, scale=1,
                 offset=None, mult=None, shift=None, memory=True):
    lo, hi = ref.dtype_limits(*dtype)
    lo = max(lo, 0) if relu else lo
    rmin, rmax = shape_range(raw_shape)
    if offset is None:
        offset = rng.integers(-2 * rmax - 5, 2 * rmax + 5, channels)
    if shift is None:
        shift = rng.integers(0, 32, channels)
    if mult is None:
        # Multipliers that bring the accumulator range roughly onto the output range.
        span = max(abs(rmin), rmax) * scale + int(np.max(np.abs(offset))) + 1
        mult = np.array([rng.integers(0, min(MULT_MAX, max(1, (hi - lo) << int(s)) // span) + 2)
                         for s in np.broadcast_to(shift, channels)])
    stage = dict(kind="requant", pe=pe, channels=channels, raw_shape=raw_shape,
                 out_shape=out_shape(dtype), scale=scale, offset=offset, mult=mult,
                 shift=shift, lo=lo, hi=hi)
    return Case(name, stage, dtype, relu, memory)


def threshold_case(name, rng, *, pe, channels, raw_shape, dtype, levels, scale=1, offset=None,
                   uniform=False, memory=True):
    rmin, rmax = shape_range(raw_shape)
    if offset is None:
        offset = rng.integers(-rmax - 3, rmax + 3, channels)
    off = np.broadcast_to(offset, channels)
    rows = 1 if uniform else channels
    # Thresholds over (and a little beyond) each channel's accumulator range, duplicates allowed.
    lo = scale * rmin + int(off.min()) - 4
    hi = scale * rmax + int(off.max()) + 4
    thresholds = np.sort(rng.integers(lo, hi + 1, (rows, levels)), axis=1)
    stage = dict(kind="threshold", pe=pe, channels=channels, raw_shape=raw_shape,
                 out_shape=out_shape(dtype), scale=scale, offset=offset, thresholds=thresholds)
    return Case(name, stage, dtype, memory=memory)


def make_cases():
    rng = np.random.default_rng(2024)
    cases = [
        Case("identity-signed-perchannel",
             dict(kind="identity", pe=3, channels=7, raw_shape=signed(8), out_shape=signed(32),
                  offset=rng.integers(-1000, 1000, 7)), ("int", 32)),
        # XNOR lanes: raw is the popcount of K=20 bits, acc = 2 * popcount - K + bias.
        Case("identity-xnor-scale2",
             dict(kind="identity", pe=4, channels=8, raw_shape=unsigned(5), out_shape=signed(16),
                  scale=2, offset=rng.integers(-50, 50, 8) - 20), ("int", 16)),
        Case("identity-m1-pe1",
             dict(kind="identity", pe=1, channels=1, raw_shape=unsigned(4), out_shape=signed(8),
                  offset=3), ("int", 8), memory=False),
    ]
    # Per-channel requant, forcing mult 0 and 2**31-1 and shift 0 and 31 into some channels.
    shift = rng.integers(0, 32, 10)
    shift[[1, 2, 3]] = [31, 0, 0]
    mult = np.array([rng.integers(0, min(MULT_MAX, (255 << int(s)) // 4096) + 2) for s in shift])
    mult[[0, 1, 3]] = [0, MULT_MAX, MULT_MAX]
    cases += [
        requant_case("requant-perchannel", rng, pe=4, channels=10, raw_shape=signed(12),
                     dtype=("int", 8), mult=mult, shift=shift),
        requant_case("requant-uniform-mult-relu-scale2", rng, pe=4, channels=6,
                     raw_shape=unsigned(8), dtype=("uint", 8), relu=True, scale=2,
                     mult=(1 << 18) + 1, shift=19),
        requant_case("requant-all-uniform", rng, pe=2, channels=5, raw_shape=signed(10),
                     dtype=("int", 4), offset=-7, mult=3, shift=7, memory=False),
        requant_case("requant-pe1", rng, pe=1, channels=5, raw_shape=signed(6),
                     dtype=("int", 16)),
        requant_case("requant-m1-extremes", rng, pe=1, channels=1, raw_shape=signed(16),
                     dtype=("int", 32), offset=[12345], mult=[MULT_MAX], shift=[31],
                     memory=False),
        requant_case("requant-shift0-maxmult", rng, pe=2, channels=2, raw_shape=signed(4),
                     dtype=("int", 32), mult=MULT_MAX, shift=0, memory=False),
        requant_case("requant-one-fold-perlane", rng, pe=8, channels=5, raw_shape=signed(8),
                     dtype=("uint", 4), relu=True, memory=False),
        threshold_case("threshold-bipolar-xnor", rng, pe=4, channels=6, raw_shape=unsigned(5),
                       dtype=("bipolar", 1), levels=1, scale=2,
                       offset=rng.integers(-8, 8, 6) - 24),
        threshold_case("threshold-uint4-L15", rng, pe=3, channels=8, raw_shape=signed(7),
                       dtype=("uint", 4), levels=15),
        threshold_case("threshold-uniform", rng, pe=2, channels=3, raw_shape=signed(6),
                       dtype=("uint", 2), levels=3, offset=0, uniform=True, memory=False),
        threshold_case("threshold-m1-scale2", rng, pe=1, channels=1, raw_shape=unsigned(3),
                       dtype=("uint", 2), levels=2, scale=2, offset=1, memory=False),
        threshold_case("threshold-uniform-scale2-offsets", rng, pe=2, channels=4,
                       raw_shape=unsigned(4), dtype=("uint", 3), levels=5, scale=2,
                       uniform=True),
    ]
    # parameter tables deep enough for block RAM (read through its output register)
    cases += [
        Case("identity-bram-table",
             dict(kind="identity", pe=2, channels=300, raw_shape=signed(8),
                  out_shape=signed(32), offset=rng.integers(-30000, 30000, 300)), ("int", 32)),
        requant_case("requant-bram-table", rng, pe=1, channels=200, raw_shape=signed(12),
                     dtype=("int", 8)),
        threshold_case("threshold-bram-table", rng, pe=1, channels=512, raw_shape=unsigned(10),
                       dtype=("bipolar", 1), levels=1, scale=2,
                       offset=rng.integers(-40, 40, 512) - 1000),
    ]
    return cases


CASES = make_cases()


def stimulus(params, rng, vectors=3):
    """Raw vectors (extremes first) and the beats that carry them, padding lanes random."""
    rmin, rmax = params.raw_range
    m, slots = params.channels, params.folds * params.pe
    raws = np.stack([np.full(m, rmin), np.full(m, rmax), np.where(np.arange(m) % 2, rmin, rmax)]
                    + [rng.integers(rmin, rmax + 1, m) for _ in range(vectors)])
    beats = []
    for raw in raws:
        padded = np.concatenate([raw, rng.choice([rmin, rmax], slots - m)])
        beats += [[int(v) for v in padded[f * params.pe:(f + 1) * params.pe]]
                  for f in range(params.folds)]
    return raws, beats


def expected(case, raws):
    """SPEC 2.2 through the numpy reference, on acc = scale * raw + offset."""
    p = case.params
    acc = ref.exact(raws) * p.scale + ref.exact(np.array(p.offset))
    stage = case.stage
    return ref.output_stage(acc, p.kind.value, *case.dtype, mult=stage.get("mult"),
                            shift=stage.get("shift"), relu=case.relu,
                            thresholds=stage.get("thresholds"))


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_output_stage_matches_reference(case, pattern):
    params = case.params
    rng = np.random.default_rng(7)
    raws, beats = stimulus(params, rng)
    dut = OutputStage(**case.stage)
    [got] = run_stream_test(dut, [(dut.i_data, beats)], [(dut.o_data, len(beats))],
                            pattern=pattern, seed=3, timeout=2000 + 4 * len(beats))
    hw = np.array([list(beat) for beat in got], dtype=object)
    hw = hw.reshape(len(raws), params.folds * params.pe)[:, :params.channels]
    if case.dtype[0] == "bipolar":
        hw = ref.decode(hw, "bipolar", 1)
    want = expected(case, raws)
    assert [[int(v) for v in row] for row in hw] == [[int(v) for v in row] for row in want]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rom_only_when_parameters_vary(case):
    text = rtlil.convert(OutputStage(**case.stage))
    assert ("$mem" in text) == case.memory


def _output_cycles(dut, params):
    """The cycles in which ``dut``'s output is valid when one vector goes in back to back
    (its input always ready, checked), and the number of beats sent."""
    _, beats = stimulus(params, np.random.default_rng(0), vectors=1)
    seen = []

    async def bench(ctx):
        ctx.set(dut.o_data.ready, 1)
        ctx.set(dut.i_data.valid, 1)
        for cycle in range(len(beats) + dut.latency + 2):
            if cycle < len(beats):
                ctx.set(dut.i_data.payload, beats[cycle])
            else:
                ctx.set(dut.i_data.valid, 0)
            _, _, ready, valid = await ctx.tick().sample(dut.i_data.ready, dut.o_data.valid)
            assert ready
            if valid:
                seen.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen, len(beats)


@pytest.mark.parametrize("bram", [False, True], ids=["logic", "bram"])
@pytest.mark.parametrize("kind", ["identity", "requant", "threshold"])
def test_latency_and_throughput(kind, bram):
    """Back to back, every beat ``latency`` cycles after it went in: the stage's latency by
    kind, one more with its parameter table in block RAM."""
    case = next(c for c in CASES if c.params.kind is StageKind(kind) and c.memory
                and c.params.table_in_bram == bram)
    dut = OutputStage(**case.stage)
    seen, beats = _output_cycles(dut, case.params)
    # The beat sent in cycle c is valid at the output `latency` cycles later, back to back.
    assert seen == [c + dut.latency for c in range(beats)]
    if kind != "requant":
        assert dut.latency == OutputStage.LATENCY[StageKind(kind)] + bram


@pytest.mark.parametrize("kind", ["identity", "requant", "threshold"])
def test_output_obeys_stream_rules(kind):
    """Under idle and backpressure, a valid output beat stays valid and unchanged until taken."""
    case = next(c for c in CASES if c.params.kind is StageKind(kind) and c.memory)
    dut = OutputStage(**case.stage)
    _, beats = stimulus(case.params, np.random.default_rng(1))
    rng = np.random.default_rng(5)
    refused = []

    async def source(ctx):
        await send(ctx, dut.i_data, beats, idle=0.4, rng=Random(11))

    async def monitor(ctx):
        held = None
        async for _, _, valid, ready, payload in ctx.tick().sample(
                dut.o_data.valid, dut.o_data.ready, dut.o_data.payload):
            if held is not None:
                assert valid and list(payload) == held
            held = list(payload) if valid and not ready else None
            refused.append(held is not None)

    async def sink(ctx):
        await receive(ctx, dut.o_data, len(beats), stall=0.6, rng=Random(int(rng.integers(99))),
                      timeout=2000)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source, background=True)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert any(refused)


def test_params_normalise():
    p = OutputStageParams(kind="threshold", pe=4, channels=6, raw_shape=unsigned(3),
                          out_shape=unsigned(2), thresholds=np.array([[1, 2, 3]]))
    assert p.kind is StageKind.THRESHOLD
    assert p.folds == 2 and p.levels == 3
    assert p.offset == (0,) * 6
    assert p.thresholds == ((1, 2, 3),) * 6
    dut = OutputStage.from_params(p)
    assert dut.params == p
    rtlil.convert(dut)
    q = OutputStageParams(kind="identity", pe=1, channels=2, raw_shape=signed(4),
                          out_shape=signed(8), scale=2, offset=[-3, 5])
    assert q.acc_range == (-19, 19)
    assert q.acc_shape == signed(6)


BASE = dict(kind="requant", pe=2, channels=3, raw_shape=signed(8), out_shape=signed(8),
            mult=1, shift=0, lo=-128, hi=127)
THRESH = dict(kind="threshold", pe=2, channels=3, raw_shape=signed(8), out_shape=unsigned(2),
              thresholds=[[0, 1, 2]])


@pytest.mark.parametrize("changes, exc, message", [
    (dict(kind="relu"), ValueError, r"kind must be one of 'identity', 'requant', 'threshold'"),
    (dict(pe=0), ValueError, r"pe must be a positive integer, not 0"),
    (dict(pe=1.5), TypeError, r"pe must be a positive integer, not 1.5"),
    (dict(channels=True), TypeError, r"channels must be a positive integer, not True"),
    (dict(raw_shape="int8"), TypeError, r"raw_shape must be an amaranth shape"),
    (dict(out_shape=unsigned(0)), ValueError, r"out_shape must be at least 1 bit wide"),
    (dict(scale=3), ValueError, r"scale must be 1 or 2, not 3"),
    (dict(offset=[1, 2]), ValueError, r"offset must be a scalar or have shape \(3,\), not \(2,\)"),
    (dict(offset=[0.5, 1, 2]), TypeError, r"offset must hold integers"),
    (dict(mult=[1, -1, 2]), ValueError, r"mult\[1\] must be in 0..2147483647, not -1"),
    (dict(mult=1 << 31), ValueError, r"mult\[0\] must be in 0..2147483647, not 2147483648"),
    (dict(shift=32), ValueError, r"shift\[0\] must be in 0..31, not 32"),
    (dict(shift=None), ValueError, r"shift is required for an output stage of kind 'requant'"),
    (dict(lo=5, hi=4), ValueError, r"lo must not exceed hi, not lo=5 > hi=4"),
    (dict(hi=255), ValueError, r"cannot hold the clamp range -128..255"),
    (dict(thresholds=[[1]]), ValueError, r"thresholds does not apply to an output stage of "
                                         r"kind 'requant'"),
])
def test_invalid_requant_parameters(changes, exc, message):
    with pytest.raises(exc, match=message):
        OutputStageParams(**{**BASE, **changes})


@pytest.mark.parametrize("changes, exc, message", [
    (dict(thresholds=None), ValueError, r"thresholds is required"),
    (dict(thresholds=[[2, 1, 3]]), ValueError, r"thresholds row 0 must be ascending"),
    (dict(thresholds=[[0, 1]] * 2), ValueError,
     r"thresholds must have shape \(3, L\) or \(1, L\) with L >= 1, not \(2, 2\)"),
    (dict(thresholds=np.zeros((3, 0), dtype=int)), ValueError, r"with L >= 1, not \(3, 0\)"),
    (dict(thresholds=[[0, 1, 2, 3]]), ValueError, r"cannot hold the threshold count 0..4"),
    (dict(mult=3), ValueError, r"mult does not apply to an output stage of kind 'threshold'"),
])
def test_invalid_threshold_parameters(changes, exc, message):
    with pytest.raises(exc, match=message):
        OutputStageParams(**{**THRESH, **changes})


# The half-built component of a failed constructor is an elaboratable that is never used.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_component_validates_before_building():
    with pytest.raises(ValueError, match=r"pe must be a positive integer, not -2"):
        OutputStage(**{**BASE, "pe": -2})
    with pytest.raises(TypeError, match=r"OutputStage.__init__\(\) takes 1 positional"):
        OutputStage("requant")
    gc.collect()


REQUANT_CASES = [c for c in CASES if c.params.kind is StageKind.REQUANT]


@pytest.mark.parametrize("pattern", STALL_PATTERNS[::3], ids=str)
@pytest.mark.parametrize("case", REQUANT_CASES, ids=lambda c: c.name)
def test_pipelined_requant_matches_reference(case, pattern):
    """``pipelined=True``: the product split over 18x18 partial products behind registers,
    rounding and clamping in two stages; the same values under stalls."""
    params = case.params
    raws, beats = stimulus(params, np.random.default_rng(8))
    dut = OutputStage(**case.stage, pipelined=True)
    assert dut.latency > OutputStage.LATENCY[StageKind.REQUANT]
    [got] = run_stream_test(dut, [(dut.i_data, beats)], [(dut.o_data, len(beats))],
                            pattern=pattern, seed=5, timeout=4000)
    hw = np.array([list(beat) for beat in got], dtype=object)
    hw = hw.reshape(len(raws), params.folds * params.pe)[:, :params.channels]
    want = expected(case, raws)
    assert [[int(v) for v in row] for row in hw] == [[int(v) for v in row] for row in want]


def test_pipelined_requant_latency_and_throughput():
    """Back to back, each beat out exactly ``latency`` cycles after it went in; a wide
    accumulator times a 31-bit multiplier takes four partial products."""
    from amaranth.hdl import Const

    from nnaccel.hw.common.outstage import _partial_products

    case = next(c for c in REQUANT_CASES if c.memory)
    dut = OutputStage(**case.stage, pipelined=True)
    seen, beats = _output_cycles(dut, case.params)
    assert seen == [c + dut.latency for c in range(beats)]
    assert len(_partial_products(Const(0, signed(30)), Const(0, unsigned(31)))) == 4
