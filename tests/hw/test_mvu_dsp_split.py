"""Matrix-vector units whose multipliers are split between DSP blocks and logic
(``MVUParams.dsp_multipliers``): bit-exact with numpy under random stalls, in amaranth.sim and
under Verilator, at the folding rate."""

import numpy as np
import pytest

from nnaccel.hw.common.dtype import DType
from nnaccel.hw.common.reference import linear_acc
from nnaccel.hw.mvu.engine import MVUCore
from nnaccel.hw.mvu.params import MVUParams
from nnaccel.hw.mvu.reference import raw_sums
from nnaccel.sim.amsim import STALL_PATTERNS, from_beats, run_stream_test

from .test_mvu_core import (
    _axis_verilog,
    check_stalls_took_effect,
    extreme_values,
    garbage_beats,
    random_values,
)


def _core(w, x, pe, simd, wdt, xdt, dsp, *, pattern, seed):
    m, k = w.shape
    params = MVUParams(in_features=k, out_features=m, pe=pe, simd=simd, in_dtype=xdt,
                       weight_dtype=wdt, dsp_multipliers=dsp)
    assert params.logic_multipliers == pe * simd - dsp
    dut = MVUCore(params, w)
    beats = garbage_beats(xdt.encode(x), simd, xdt.bits, np.random.default_rng(seed))
    stats = {}
    (out,) = run_stream_test(dut, [(dut.i_data, beats)],
                             [(dut.o_raw, params.neuron_folds * len(x))], pattern=pattern,
                             seed=seed, stats=stats)
    check_stalls_took_effect(stats, pattern, len(beats), len(out))
    return np.array(from_beats(out, m, pe), dtype=object)


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("m,k,pe,simd,dsp,wdt,xdt", [
    (6, 10, 2, 4, 3, "int8", "int8"),      # three DSP lanes, five in logic, padded folds
    (5, 9, 1, 9, 0, "int8", "uint8"),      # every multiplier in logic, unsigned inputs
    (4, 7, 4, 3, 11, "int6", "int5"),      # one lane in logic, the last
    (3, 8, 3, 2, 2, "uint7", "int8"),      # unsigned weights
])
def test_split_matches_numpy(m, k, pe, simd, dsp, wdt, xdt, pattern):
    rng = np.random.default_rng(m * 100 + k)
    wdt, xdt = DType.parse(wdt), DType.parse(xdt)
    w = random_values(rng, wdt, (m, k))
    x = np.concatenate([random_values(rng, xdt, (3, k)), extreme_values(rng, xdt, (2, k))])
    got = _core(w, x, pe, simd, wdt, xdt, dsp, pattern=pattern, seed=m + k)
    assert got.tolist() == raw_sums(w, x, False).tolist()


def test_logic_multipliers_over_every_int8_weight():
    """Every int8 weight (a 16 x 16 matrix of -128..127) in logic lanes, times inputs at the
    int8 edges and random ones."""
    i8 = DType.parse("int8")
    w = np.arange(-128, 128).reshape(16, 16)
    rng = np.random.default_rng(5)
    x = np.concatenate([np.full((1, 16), -128), np.full((1, 16), 127),
                        extreme_values(rng, i8, (2, 16)), random_values(rng, i8, (2, 16))])
    got = _core(w, x, 4, 4, i8, i8, 5, pattern=STALL_PATTERNS[3], seed=3)
    assert got.tolist() == (x @ w.T).tolist()


def test_dsp_multipliers_are_validated():
    i8, i4 = DType.parse("int8"), DType.parse("int4")

    def p(**kw):
        return MVUParams(in_features=6, out_features=4, pe=2, simd=3, **kw)
    assert p(in_dtype=i8, weight_dtype=i8).logic_multipliers == 0
    assert p(in_dtype=i8, weight_dtype=i8, dsp_multipliers=2).logic_multipliers == 4
    for bad in (-1, 7, 2.0, True):
        with pytest.raises(ValueError, match="dsp_multipliers must be an integer in 0..6"):
            p(in_dtype=i8, weight_dtype=i8, dsp_multipliers=bad)
    with pytest.raises(ValueError, match="two products per multiplier"):
        p(in_dtype=i8, weight_dtype=i4, dsp_multipliers=1)
    with pytest.raises(ValueError, match=r"in 0\.\.0"):
        p(in_dtype=i8, weight_dtype=DType.parse("bipolar"), dsp_multipliers=1)


@pytest.fixture(scope="module")
def verilated_split(tmp_path_factory):
    """A whole int8 MVU (M=7, K=10 folded 3 x 4: padded folds) with 5 of its 12 multipliers in
    DSP blocks and 7 in logic, and a requantising output stage, in the AXI top level."""
    rng = np.random.default_rng(31)
    i8, out = DType.parse("int8"), DType.parse("int16")
    w = random_values(rng, i8, (7, 10))
    bias = rng.integers(-500, 500, size=7)
    mult, shift = rng.integers(1 << 14, 1 << 15, size=7), np.full(7, 15)
    params = MVUParams.for_layer(weight=w, pe=3, simd=4, in_dtype=i8, weight_dtype=i8,
                                 bias=bias, output_kind="requant", out_dtype=out, mult=mult,
                                 shift=shift, dsp_multipliers=5)
    assert params.logic_multipliers == 7
    path, io = _axis_verilog(tmp_path_factory, "mvu_split", params, w)
    return path, io, params, w, bias, mult, shift


@pytest.mark.verilator
@pytest.mark.parametrize("pattern", STALL_PATTERNS[::2], ids=str)
def test_verilator_split_bit_exact(monkeypatch, verilated_split, pattern):
    """Under Verilator: inputs at the int8 edges and random, garbage in the padding lanes,
    stalls; back to back, exactly ``expected_cycles`` per vector."""
    from nnaccel.hw.common.reference import requant
    from nnaccel.sim.scoreboard import compare

    from ..sim.test_verilator_axis import check_stalls, run_with_garbage

    path, io, params, w, bias, mult, shift = verilated_split
    rng = np.random.default_rng(32)
    x = np.concatenate([extreme_values(rng, params.in_dtype, (6, 10)),
                        random_values(rng, params.in_dtype, (6, 10))])
    result = run_with_garbage(monkeypatch, path, "mvu_split", io, params.in_dtype.encode(x),
                              idle=pattern.idle, stall=pattern.stall, seed=7)
    want = requant(linear_acc(w, x, bias), mult, shift, -(1 << 15), (1 << 15) - 1)
    assert compare(want, DType.parse("int16").decode(result.outputs_bits), "mvu") == 12 * 7
    check_stalls(result, pattern.idle, pattern.stall)
    if pattern == STALL_PATTERNS[0]:
        assert result.cycles_per_inference == params.expected_cycles == 3 * 3
