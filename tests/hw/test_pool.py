"""Pooling units: the numpy reference against naive loops of SPEC 2.1b, the parameters, and the
hardware against the reference under every stall pattern."""

import gc

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned

from nnaccel.hw.common import reference as common_ref
from nnaccel.hw.common.outstage import StageKind
from nnaccel.hw.pool.engine import Pool, Reduce
from nnaccel.hw.pool.params import PoolKind, PoolParams
from nnaccel.hw.pool.reference import max_pool, pool, sum_pool
from nnaccel.hw.window.reference import to_hwc
from nnaccel.sim.amsim import STALL_PATTERNS, StallPattern, from_beats, to_beats

from .map_streams import random_map, simulate

# --- naive statements of SPEC 2.1b ----------------------------------------------------------


def naive_pool(x, op, kernel, stride, padding):
    """Max or sum over the input (never padded) elements of each window, by loops."""
    c, h, w = x.shape
    top, left, bottom, right = padding
    oh_count = (h + top + bottom - kernel[0]) // stride[0] + 1
    ow_count = (w + left + right - kernel[1]) // stride[1] + 1
    out = np.zeros((c, oh_count, ow_count), dtype=np.int64)
    for ch in range(c):
        for oh in range(oh_count):
            for ow in range(ow_count):
                elems = []
                for i in range(kernel[0]):
                    for j in range(kernel[1]):
                        r, s = oh * stride[0] + i - top, ow * stride[1] + j - left
                        if 0 <= r < h and 0 <= s < w:
                            elems.append(int(x[ch, r, s]))
                out[ch, oh, ow] = max(elems) if op == "max" else sum(elems)
    return out


def random_pool_geometry(rng, max_size=7):
    """Kernels 1..4 (non-square), strides 1..3, asymmetric padding below the kernel, windows
    that need not divide the map; every window holds an input element."""
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 5, 2))
        stride = tuple(int(s) for s in rng.integers(1, 4, 2))
        padding = tuple(int(rng.integers(0, kernel[n % 2])) for n in range(4))
        height, width = (int(v) for v in rng.integers(1, max_size + 1, 2))
        channels = int(rng.choice([1, 2, 3, 4]))
        fields = dict(channels=channels, height=height, width=width, kernel=kernel,
                      stride=stride, padding=padding)
        counts = common_ref.pool2d_counts((height, width), kernel, stride, padding)
        if counts.size and counts.min() >= 1:
            return fields


@pytest.mark.parametrize("seed", range(40))
def test_reference_matches_naive_loops(seed):
    rng = np.random.default_rng(seed)
    g = random_pool_geometry(rng)
    x = rng.integers(-8, 8, size=(g["channels"], g["height"], g["width"]))
    args = (g["kernel"], g["stride"], g["padding"])
    assert max_pool(x, *args).tolist() == naive_pool(x, "max", *args).tolist()
    assert sum_pool(x, *args).tolist() == naive_pool(x, "sum", *args).tolist()
    assert np.array_equal(max_pool(x, *args), common_ref.pool2d(x, "max", *args))
    assert np.array_equal(sum_pool(x, *args), common_ref.pool2d(x, "sum", *args))


def test_reference_padding_is_never_the_maximum():
    x = np.full((1, 2, 2), -5)
    assert max_pool(x, (2, 2), (1, 1), (1, 1, 1, 1)).tolist() == [[[-5] * 3] * 3]
    assert sum_pool(x, (2, 2), (1, 1), (1, 1, 1, 1)).tolist() == [
        [[-5, -10, -5], [-10, -20, -10], [-5, -10, -5]]]
    with pytest.raises(ValueError, match="no input element"):
        max_pool(x, (2, 2), (2, 2), (2, 0, 0, 0))


# --- parameters -----------------------------------------------------------------------------

BASE = dict(kind="max", channels=4, height=6, width=6, kernel=2, dtype="int8", n=2)


@pytest.mark.parametrize(("change", "error", "match"), [
    (dict(kind="avg"), ValueError, "kind must be 'max' or 'sum'"),
    (dict(n=3), ValueError, r"n \(3\) must divide channels \(4\)"),
    (dict(n=0), ValueError, "n must be a positive integer"),
    (dict(kernel=(7, 1)), ValueError, "larger than the padded input"),
    (dict(kernel=2, padding=(2, 0, 0, 0)), ValueError, "at least one input element"),
    (dict(out_dtype="int8"), ValueError, "out_dtype does not apply to a max pool"),
    (dict(relu=True), ValueError, "relu does not apply"),
    (dict(kind="sum", out_dtype="int8"), ValueError, r"cannot hold every sum \(-512..508\)"),
    (dict(kind="sum", out_kind="requant", out_dtype="int8"), ValueError, "mult is required"),
    (dict(kind="sum", out_kind="requant", out_dtype="int8", mult=1 << 31, shift=2),
     ValueError, "mult"),
    (dict(kind="sum", out_kind="threshold", out_dtype="uint2"), ValueError, "thresholds"),
    (dict(kind="sum", out_kind="threshold", out_dtype="uint1", thresholds=[[0, 1]]),
     ValueError, "cannot hold the threshold count"),
    (dict(kind="sum", out_kind="round"), ValueError, "out_kind must be"),
    (dict(kind="sum", relu=1), TypeError, "relu must be a bool"),
    (dict(dtype=4), TypeError, "dtype must be a DType"),
])
def test_params_reject_bad_values(change, error, match):
    with pytest.raises(error, match=match):
        PoolParams(**dict(BASE, **change))


def test_params_derived_numbers():
    p = PoolParams(kind="sum", channels=4, height=7, width=5, kernel=(3, 2), padding=(1, 0, 1, 1),
                   dtype="uint4", n=2)
    assert p.stride == (3, 2) and (p.out_height, p.out_width) == (3, 3)
    assert p.max_count == 6 and p.min_count == 2
    assert p.acc_range == (0, 90) and p.acc_width == 7 and p.acc_shape == unsigned(7)
    assert p.out_dtype.bits == 32 and p.out_kind is StageKind.IDENTITY
    assert p.pad_value == 0 and not p.is_global
    q = PoolParams(kind="sum", channels=2, height=3, width=5, kernel=(3, 5), dtype="bipolar",
                   n=1, out_dtype="int5")
    assert q.is_global and q.acc_range == (-15, 15) and q.acc_shape == signed(5)
    assert q.expected_cycles == q.in_beats == 30
    r = PoolParams(**BASE)
    assert r.kind is PoolKind.MAX and r.pad_value == -128 and r.acc_width == 8
    assert r.expected_cycles == r.window_params.expected_cycles



# The half-built component of a failed constructor is an elaboratable that is never used.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_component_takes_only_params():
    with pytest.raises(TypeError, match="params must be a PoolParams"):
        Pool(BASE)
    gc.collect()  # let amaranth's unused-component warning fire here, where it is ignored


# --- hardware -------------------------------------------------------------------------------


def expected_output(x, p):
    """Independent expectation: naive loops, then the SPEC output stage."""
    op = p.kind.value
    acc = naive_pool(x, op, p.kernel, p.stride, p.padding)
    if op == "max" or p.out_kind is StageKind.IDENTITY:
        return acc
    d = p.out_dtype
    if p.out_kind is StageKind.REQUANT:
        mult = np.broadcast_to(np.asarray(p.mult), (p.channels,))[:, None, None]
        shift = np.broadcast_to(np.asarray(p.shift), (p.channels,))[:, None, None]
        lo = max(d.lo, 0) if p.relu else d.lo
        return common_ref.requant(acc, mult, shift, lo, d.hi)
    t = np.asarray(p.thresholds)
    t = np.broadcast_to(t, (p.channels, t.shape[1]))
    count = (acc[:, :, :, None] >= t[:, None, None, :]).sum(axis=3)
    return 2 * count - 1 if d.kind.value == "bipolar" else count


def run_pool(params, maps, pattern, seed=0):
    dut = Pool(params)
    beats = to_beats([params.dtype.encode(to_hwc(x)) for x in maps], params.n)
    out, in_cycles, out_cycles = simulate(dut, beats, len(maps) * params.out_beats,
                                          pattern=pattern, seed=seed)
    count = params.out_beats * params.n
    streams = from_beats(out, count, params.n)
    d = params.out_elem_dtype
    shape = (params.out_height, params.out_width, params.channels)
    maps_out = [d.decode(np.array(s)).reshape(shape).transpose(2, 0, 1) for s in streams]
    return maps_out, in_cycles, out_cycles


def check_pool(params, pattern, seed, images=2):
    rng = np.random.default_rng(seed)
    maps = [random_map(rng, params.dtype, params.channels, params.height, params.width)
            for _ in range(images)]
    got, _, _ = run_pool(params, maps, pattern, seed)
    for n, (y, x) in enumerate(zip(got, maps, strict=True)):
        expected = expected_output(x, params)
        assert y.tolist() == expected.tolist(), f"image {n} differs"
        assert np.array_equal(pool(x, params), expected)


CASES = {
    "max-2x2": dict(kind="max", channels=4, height=4, width=6, kernel=2, dtype="int4", n=2),
    "max-3x3-s2-pad-odd": dict(kind="max", channels=2, height=7, width=5, kernel=3, stride=2,
                               padding=(1, 0, 1, 2), dtype="int3", n=1),
    "max-uint-3x2-not-dividing": dict(kind="max", channels=3, height=5, width=7, kernel=(3, 2),
                                      dtype="uint3", n=3),
    "max-bipolar-pad": dict(kind="max", channels=2, height=5, width=5, kernel=(2, 3),
                            stride=(2, 2), padding=(1, 1, 0, 1), dtype="bipolar", n=2),
    "max-1x1-c1": dict(kind="max", channels=1, height=3, width=5, kernel=1, stride=(1, 2),
                       dtype="int4", n=1),
    "sum-identity-pad": dict(kind="sum", channels=2, height=5, width=6, kernel=(3, 3),
                             stride=(2, 3), padding=(2, 1, 0, 1), dtype="int4", n=2,
                             out_dtype="int8"),
    "sum-requant-avg": dict(kind="sum", channels=4, height=6, width=5, kernel=2,
                            dtype="uint4", n=2, out_kind="requant", out_dtype="uint4",
                            mult=[16384, 16384, 8192, 30000], shift=16),
    "sum-requant-relu": dict(kind="sum", channels=3, height=5, width=5, kernel=(2, 3),
                             stride=(1, 2), padding=(0, 1, 1, 0), dtype="int4", n=1,
                             out_kind="requant", out_dtype="int4", mult=5461, shift=14,
                             relu=True),
    "sum-threshold-bipolar": dict(kind="sum", channels=2, height=4, width=5, kernel=2,
                                  padding=(1, 1, 0, 0), dtype="bipolar", n=2,
                                  out_kind="threshold", out_dtype="bipolar",
                                  thresholds=[[0], [-1]]),
    "sum-threshold-uint2": dict(kind="sum", channels=2, height=5, width=3, kernel=(2, 2),
                                stride=1, dtype="int3", n=1, out_kind="threshold",
                                out_dtype="uint2", thresholds=[[-3, 0, 4], [-8, -1, 2]]),
    "global-max": dict(kind="max", channels=3, height=3, width=5, kernel=(3, 5),
                       dtype="int4", n=3),
    "global-max-bipolar": dict(kind="max", channels=2, height=2, width=3, kernel=(2, 3),
                               dtype="bipolar", n=1),
    "global-avg": dict(kind="sum", channels=4, height=5, width=3, kernel=(5, 3), dtype="uint8",
                       n=2, out_kind="requant", out_dtype="uint8", mult=4369, shift=16),
    "global-sum-bipolar": dict(kind="sum", channels=1, height=3, width=3, kernel=3,
                               dtype="bipolar", n=1, out_dtype="int5"),
}


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("name", CASES)
def test_pool_matches_reference(name, pattern):
    check_pool(PoolParams(**CASES[name]), pattern, seed=len(name))


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("seed", range(4))
def test_pool_random_geometries(seed, pattern):
    rng = np.random.default_rng(500 + seed)
    g = random_pool_geometry(rng)
    dtype = str(rng.choice(["int4", "uint3", "bipolar"]))
    kind = "max" if seed % 2 else "sum"
    extra = {} if kind == "max" else dict(out_dtype="int16")
    n = int(rng.choice([d for d in (1, 2, 4) if g["channels"] % d == 0]))
    check_pool(PoolParams(kind=kind, dtype=dtype, n=n, **g, **extra), pattern, seed=seed)


def test_sum_accumulator_holds_the_worst_case():
    """Every element at the dtype's extreme: the sum needs every bit of acc_shape."""
    p = PoolParams(kind="sum", channels=2, height=4, width=4, kernel=(2, 4), stride=(2, 4),
                   dtype="int4", n=2, out_dtype="int8")
    assert p.acc_range == (-64, 56) and p.acc_shape == signed(7)
    lows, highs = np.full((2, 4, 4), -8), np.full((2, 4, 4), 7)
    got, _, _ = run_pool(p, [lows, highs], StallPattern())
    assert got[0].tolist() == [[[-64]] * 2] * 2
    assert got[1].tolist() == [[[56]] * 2] * 2


@pytest.mark.parametrize("name", ["max-2x2", "sum-requant-avg", "global-avg",
                                  "max-3x3-s2-pad-odd"])
def test_cycles_per_image(name):
    """No stalls, images back to back: steady-state cycles per image within 5% of
    ``expected_cycles``."""
    p = PoolParams(**CASES[name])
    rng = np.random.default_rng(11)
    maps = [random_map(rng, p.dtype, p.channels, p.height, p.width) for _ in range(4)]
    got, _, out_cycles = run_pool(p, maps, StallPattern())
    assert all(y.tolist() == expected_output(x, p).tolist()
               for y, x in zip(got, maps, strict=True))
    ends = [out_cycles[(k + 1) * p.out_beats - 1] for k in range(len(maps))]
    for per_image in np.diff(ends):
        assert abs(per_image - p.expected_cycles) <= 0.05 * p.expected_cycles, \
            (per_image, p.expected_cycles)


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("registered", [False, True], ids=["direct", "registered"])
@pytest.mark.parametrize(("op", "words"), [("sum", 1), ("sum", 2), ("max", 5), ("sum", 7),
                                           ("max", 2)])
def test_reduce_alone(op, words, registered, pattern):
    """The reduction block on raw groups: 3 positions of ``words`` words of 2 elements, with
    the input beat used directly or registered first."""
    dut = Reduce(op=op, positions=3, words=words, n=2, in_shape=signed(4), out_shape=signed(6),
                 registered=registered)
    rng = np.random.default_rng(5)
    groups = rng.integers(-8, 8, size=(4, 3, words, 2))            # group, position, word, elem
    beats = [[int(v) for v in groups[g, p, w]] for g in range(4) for p in range(3)
             for w in range(words)]
    out, _, _ = simulate(dut, beats, 4 * words, pattern=pattern, seed=3)
    reduced = groups.sum(axis=1) if op == "sum" else groups.max(axis=1)
    expected = [[int(v) for v in reduced[g, w]] for g in range(4) for w in range(words)]
    assert [[v - 64 if v >= 32 else v for v in beat] for beat in out] == expected
