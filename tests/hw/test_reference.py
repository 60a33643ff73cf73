"""hw/common/reference.py and Model.forward against SPEC section 2, written out again here.

Every expected value comes from plain Python integers (no overflow, no numpy arithmetic)
computed by the straightforward functions below, transcribed from ../shared/SPEC.md, never from
the implementation's own helpers.
"""

import itertools
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from nnaccel.gen.model_io import read_model
from nnaccel.hw.common import reference as ref

# --- SPEC, transcribed --------------------------------------------------------------------------

DTYPES = [("int", n) for n in (2, 3, 4, 8, 16, 31, 32)] + \
         [("uint", n) for n in (1, 2, 4, 8, 16, 31, 32)] + [("bipolar", 1)]


def spec_limits(kind, bits):
    """SPEC section 1 table."""
    if kind == "int":
        return -2 ** (bits - 1), 2 ** (bits - 1) - 1
    if kind == "uint":
        return 0, 2 ** bits - 1
    return -1, 1


def spec_acc(w, x, bias=None):
    """SPEC 2.1: acc[m] = sum_k W[m, k] * x[k] + bias[m], Python integers."""
    out = []
    for m, row in enumerate(w):
        total = 0
        for wk, xk in zip(row, x, strict=True):
            total += int(wk) * int(xk)
        out.append(total + (int(bias[m]) if bias is not None else 0))
    return out


def spec_requant(acc, mult, shift, lo, hi, relu=False):
    """SPEC 2.2 requant, literally."""
    t = acc * mult
    r = t if shift == 0 else (t + (1 << (shift - 1))) >> shift
    if relu:
        lo = max(lo, 0)
    return min(max(r, lo), hi)


def round_half_up(t, shift):
    """What the SPEC formula means: t / 2**shift rounded to nearest, ties towards +infinity."""
    return math.floor(Fraction(t, 2 ** shift) + Fraction(1, 2))


def spec_threshold(acc, row):
    """SPEC 2.2 threshold: the number of l with acc >= T[l]."""
    return sum(1 for t in row if acc >= t)


def spec_bits(v, kind, bits):
    """SPEC section 1 hardware encoding of one value, as an unsigned integer."""
    if kind == "bipolar":
        return 1 if v == 1 else 0
    return v % (2 ** bits)      # two's complement for int, the value itself for uint


def random_values(rng, kind, bits, size):
    lo, hi = spec_limits(kind, bits)
    if kind == "bipolar":
        return rng.choice([-1, 1], size=size)
    v = rng.integers(lo, hi, size=size, endpoint=True, dtype=np.int64)
    # put the extremes in often: they are where overflow would show
    pick = rng.random(size)
    return np.where(pick < 0.15, lo, np.where(pick > 0.85, hi, v))


def as_ints(a):
    """A numpy result as nested Python ints (object or int64 arrays alike)."""
    return np.asarray(a).tolist()


# --- dtype limits, encode, decode ---------------------------------------------------------------

@pytest.mark.parametrize(("kind", "bits"), DTYPES + [("int", n) for n in range(2, 33)])
def test_dtype_limits(kind, bits):
    assert ref.dtype_limits(kind, bits) == spec_limits(kind, bits)


def test_dtype_limits_unknown_kind():
    with pytest.raises(ValueError):
        ref.dtype_limits("float", 32)


@pytest.mark.parametrize(("kind", "bits"), DTYPES)
def test_encode_decode(kind, bits):
    rng = np.random.default_rng(bits * 7 + len(kind))
    lo, hi = spec_limits(kind, bits)
    values = np.concatenate([[lo, hi, lo + 1 if kind != "bipolar" else lo, hi - 1 if kind !=
                              "bipolar" else hi], random_values(rng, kind, bits, 200)])
    if kind != "bipolar" and lo <= 0 <= hi:
        values = np.concatenate([values, [0, -1] if lo < 0 else [0]])
    encoded = ref.encode(values, kind, bits)
    assert encoded.tolist() == [spec_bits(int(v), kind, bits) for v in values]
    assert all(0 <= int(b) < 2 ** bits for b in encoded)
    assert as_ints(ref.decode(encoded, kind, bits)) == values.tolist()


@pytest.mark.parametrize(("kind", "bits"), [("int", 2), ("int", 3), ("int", 5), ("uint", 1),
                                            ("uint", 3), ("bipolar", 1)])
def test_decode_every_pattern(kind, bits):
    """Every bit pattern of a small width decodes to the value that encodes to it."""
    patterns = list(range(2 ** bits))
    decoded = as_ints(ref.decode(np.array(patterns, dtype=np.uint64), kind, bits))
    lo, hi = spec_limits(kind, bits)
    by_value = {spec_bits(v, kind, bits): v for v in range(lo, hi + 1)
                if kind != "bipolar" or v != 0}
    assert decoded == [by_value[p] for p in patterns]


def test_decode_ignores_high_bits_of_signed():
    """A signed pattern wider than the dtype: only the low ``bits`` bits count."""
    assert as_ints(ref.decode(np.array([0b1_0111, 0b1111_1000]), "int", 4)) == [7, -8]


# --- linear (SPEC 2.1) --------------------------------------------------------------------------

PAIRS = [(("int", 8), ("uint", 4)), (("int", 2), ("int", 8)), (("bipolar", 1), ("bipolar", 1)),
         (("bipolar", 1), ("uint", 8)), (("uint", 4), ("int", 16)), (("int", 16), ("int", 16)),
         (("int", 32), ("int", 32)), (("uint", 32), ("uint", 32)), (("int", 32), ("uint", 32)),
         (("uint", 1), ("bipolar", 1))]


@pytest.mark.parametrize(("wdt", "xdt"), PAIRS, ids=lambda d: f"{d[0]}{d[1]}")
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_linear_acc(wdt, xdt, bias, seed):
    rng = np.random.default_rng([seed, wdt[1], xdt[1], bias])
    m, k, batch = int(rng.integers(1, 9)), int(rng.integers(1, 40)), int(rng.integers(1, 6))
    w = random_values(rng, *wdt, (m, k))
    if wdt[0] != "bipolar" and rng.random() < 0.5:
        w = np.where(rng.random((m, k)) < 0.7, 0, w)        # pruned: zeros in W
    x = random_values(rng, *xdt, (batch, k))
    b = random_values(rng, "int", 32, m) if bias else None
    want = [spec_acc(w.tolist(), row, None if b is None else b.tolist()) for row in x.tolist()]
    lo, hi = spec_limits(*xdt)
    assert as_ints(ref.linear_acc(w, x, b, lo, hi)) == want
    assert as_ints(ref.linear_acc(w, x, b)) == want                  # bound from x itself
    assert as_ints(ref.linear_acc(w, x[0], b, lo, hi)) == want[0]     # a single vector


@pytest.mark.parametrize(("wdt", "xdt"), [(("int", 32), ("int", 32)),
                                          (("int", 32), ("uint", 32)),
                                          (("uint", 32), ("int", 32))])
def test_linear_acc_wide_stays_exact(wdt, xdt):
    """int32 x int32 with K = 4096 reaches 2**74: far beyond int64, and still exact."""
    rng = np.random.default_rng(4096)
    k = 4096
    wlo, whi = spec_limits(*wdt)
    xlo, xhi = spec_limits(*xdt)
    w = np.stack([np.full(k, wlo), np.full(k, whi), random_values(rng, *wdt, k),
                  np.where(np.arange(k) % 2, wlo, whi)])
    x = np.stack([np.full(k, xlo), np.full(k, xhi), random_values(rng, *xdt, k)])
    bias = np.array([spec_limits("int", 32)[0], spec_limits("int", 32)[1], 12345, -1])
    want = [spec_acc(w.tolist(), row, bias.tolist()) for row in x.tolist()]
    assert max(abs(v) for row in want for v in row) >= 2 ** 63    # the test means it
    got = ref.linear_acc(w, x, bias, xlo, xhi)
    assert as_ints(got) == want
    assert as_ints(ref.linear_acc(w, x, bias)) == want


def test_linear_acc_just_below_and_above_int64():
    """Sums straddling 2**63 with few terms: exact on both sides."""
    w = np.array([[2 ** 31 - 1] * 4, [-(2 ** 31)] * 4])
    x = np.array([[2 ** 31 - 1] * 4, [-(2 ** 31)] * 4, [2 ** 31 - 1, -(2 ** 31), 0, 5]])
    bias = np.array([2 ** 31 - 1, -(2 ** 31)])
    want = [spec_acc(w.tolist(), row, bias.tolist()) for row in x.tolist()]
    assert as_ints(ref.linear_acc(w, x, bias, -(2 ** 31), 2 ** 31 - 1)) == want


@pytest.mark.parametrize("seed", range(6))
def test_bipolar_xnor_popcount(seed):
    """SPEC 2.1: for bipolar W and x, acc == 2 * popcount(XNOR(wbits, xbits)) - K."""
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(1, 10)), int(rng.integers(1, 200))
    w = rng.choice([-1, 1], size=(m, k))
    x = rng.choice([-1, 1], size=(5, k))
    got = as_ints(ref.linear_acc(w, x, None, -1, 1))
    wbits = ref.encode(w, "bipolar", 1)
    xbits = ref.encode(x, "bipolar", 1)
    mask = (1 << k) - 1
    for b in range(5):
        xword = sum(int(bit) << i for i, bit in enumerate(xbits[b]))
        for row in range(m):
            wword = sum(int(bit) << i for i, bit in enumerate(wbits[row]))
            xnor = ~(wword ^ xword) & mask
            assert got[b][row] == 2 * bin(xnor).count("1") - k


@pytest.mark.parametrize("seed", range(4))
def test_linear_acc_codebook(seed):
    """A weight-shared layer computes with W == codebook[indices]."""
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(1, 8)), int(rng.integers(1, 50))
    codebook = random_values(rng, "int", 8, int(rng.integers(1, 17)))
    indices = rng.integers(0, codebook.size, size=(m, k))
    x = random_values(rng, "uint", 8, (4, k))
    want = [[sum(int(codebook[indices[r, c]]) * int(xk) for c, xk in enumerate(row))
             for r in range(m)] for row in x.tolist()]
    assert as_ints(ref.linear_acc(codebook[indices], x, None, 0, 255)) == want


# --- accumulator bounds and widths --------------------------------------------------------------

@pytest.mark.parametrize(("wdt", "xdt"), [(("int", 3), ("int", 2)), (("int", 2), ("uint", 2)),
                                          (("uint", 2), ("int", 3)), (("bipolar", 1), ("int", 2)),
                                          (("int", 4), ("bipolar", 1)),
                                          (("bipolar", 1), ("bipolar", 1))])
@pytest.mark.parametrize("seed", range(4))
def test_acc_bounds_tight_brute_force(wdt, xdt, seed):
    """acc_bounds equals the extreme over every legal input vector (enumerated)."""
    rng = np.random.default_rng([seed, *wdt[1:], *xdt[1:]])
    m, k = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    w = random_values(rng, *wdt, (m, k))
    bias = random_values(rng, "int", 8, m) if seed % 2 else None
    lo_in, hi_in = spec_limits(*xdt)
    legal = [v for v in range(lo_in, hi_in + 1) if xdt[0] != "bipolar" or v != 0]
    accs = [spec_acc(w.tolist(), x, None if bias is None else bias.tolist())
            for x in itertools.product(legal, repeat=k)]
    lo, hi = ref.acc_bounds(w, lo_in, hi_in, bias)
    assert as_ints(lo) == [min(a[r] for a in accs) for r in range(m)]
    assert as_ints(hi) == [max(a[r] for a in accs) for r in range(m)]


def test_acc_bounds_wide():
    """int32 x int32 with K = 4096: bounds beyond int64, equal to the per-row sum of extremes."""
    rng = np.random.default_rng(7)
    k = 4096
    w = np.stack([random_values(rng, "int", 32, k), np.full(k, -(2 ** 31)),
                  np.full(k, 2 ** 31 - 1)])
    bias = np.array([5, -(2 ** 31), 2 ** 31 - 1])
    lo_in, hi_in = spec_limits("int", 32)
    lo, hi = ref.acc_bounds(w, lo_in, hi_in, bias)
    want_lo = [sum(min(int(v) * lo_in, int(v) * hi_in) for v in row) + int(b)
               for row, b in zip(w, bias, strict=True)]
    want_hi = [sum(max(int(v) * lo_in, int(v) * hi_in) for v in row) + int(b)
               for row, b in zip(w, bias, strict=True)]
    assert as_ints(lo) == want_lo and as_ints(hi) == want_hi
    assert want_hi[1] == 4096 * 2 ** 62 - 2 ** 31                  # (-2^31)(-2^31) K + bias


def brute_bits(lo, hi):
    """The smallest two's complement (lo < 0) or unsigned width holding lo..hi, by search."""
    width = 1
    while True:
        if lo < 0:
            if -(2 ** (width - 1)) <= lo and hi <= 2 ** (width - 1) - 1:
                return width, True
        elif hi <= 2 ** width - 1:
            return width, False
        width += 1


EDGES = [(0, 0), (0, 1), (0, 2), (-1, 0), (-1, -1), (-2, 1), (-3, 0), (-1, 1), (-128, 127),
         (-129, 127), (-128, 128), (0, 255), (0, 256), (-(2 ** 31), 2 ** 31 - 1),
         (-(2 ** 74), 2 ** 74), (-(2 ** 74) - 1, 0), (0, 2 ** 64 - 1), (0, 2 ** 64),
         (5, 5), (-5, -5), (2 ** 40, 2 ** 40 + 1)]


@pytest.mark.parametrize(("lo", "hi"), EDGES)
def test_bits_for_range_edges(lo, hi):
    assert ref.bits_for_range(lo, hi) == brute_bits(lo, hi)


def test_bits_for_range_random():
    rng = np.random.default_rng(11)
    for _ in range(2000):
        scale = 2 ** int(rng.integers(0, 80))
        a, b = (int(rng.integers(-1000, 1000)) * scale // 1000 for _ in range(2))
        lo, hi = min(a, b), max(a, b)
        assert ref.bits_for_range(lo, hi) == brute_bits(lo, hi)
        assert ref.bits_for_range(np.int64(lo) if abs(lo) < 2 ** 62 else lo, hi) == \
            brute_bits(lo, hi)


def test_bits_for_range_empty():
    with pytest.raises(ValueError):
        ref.bits_for_range(3, 2)


@pytest.mark.parametrize(("wdt", "xdt"), [(("int", 3), ("int", 2)), (("uint", 2), ("uint", 2)),
                                          (("bipolar", 1), ("bipolar", 1)),
                                          (("int", 2), ("uint", 3))])
def test_acc_width_is_tight(wdt, xdt):
    """The width from the worst-case bounds holds every reachable accumulator, and one bit
    fewer would not hold some reachable one (the bound is not a guess)."""
    for seed in range(20):
        rng = np.random.default_rng([seed, 99])
        m, k = int(rng.integers(1, 4)), int(rng.integers(1, 5))
        w = random_values(rng, *wdt, (m, k))
        lo_in, hi_in = spec_limits(*xdt)
        legal = [v for v in range(lo_in, hi_in + 1) if xdt[0] != "bipolar" or v != 0]
        reach = [a for x in itertools.product(legal, repeat=k) for a in spec_acc(w.tolist(), x)]
        lo, hi = ref.acc_bounds(w, lo_in, hi_in)
        width, signed = ref.bits_for_range(min(as_ints(lo)), max(as_ints(hi)))
        assert (width, signed) == brute_bits(min(reach), max(reach))


# --- requant (SPEC 2.2) -------------------------------------------------------------------------

def test_requant_rounding_exhaustive():
    """Every (acc, mult, shift) of a small grid: the SPEC formula, which rounds half up."""
    accs = list(range(-70, 71))
    for mult in (0, 1, 2, 3, 5, 7, 255):
        for shift in range(0, 9):
            got = as_ints(ref.requant(np.array(accs), mult, shift, -(2 ** 40), 2 ** 40))
            assert got == [spec_requant(a, mult, shift, -(2 ** 40), 2 ** 40) for a in accs]
            assert got == [round_half_up(a * mult, shift) for a in accs]


@pytest.mark.parametrize(("acc", "shift", "want"), [
    (1, 1, 1), (-1, 1, 0),           # +-0.5: ties go up, not away from zero
    (3, 1, 2), (-3, 1, -1),          # +-1.5
    (5, 1, 3), (-5, 1, -2),          # +-2.5
    (-6, 2, -1), (6, 2, 2),          # +-1.5
    (-2, 2, 0), (2, 2, 1),           # +-0.5
    (-7, 2, -2), (7, 2, 2),          # -1.75, 1.75
    (-1, 31, 0), (2 ** 30, 31, 1), (-(2 ** 30), 31, 0), (-(2 ** 30) - 1, 31, -1),
    (7, 0, 7), (-7, 0, -7),
])
def test_requant_ties(acc, shift, want):
    assert as_ints(ref.requant(np.array([acc]), 1, shift, -(2 ** 40), 2 ** 40)) == [want]


@pytest.mark.parametrize(("kind", "bits"), [d for d in DTYPES if d[0] != "bipolar"])
@pytest.mark.parametrize("relu", [False, True])
def test_requant_clamp_relu_per_channel(kind, bits, relu):
    rng = np.random.default_rng([bits, relu, len(kind)])
    m, batch = 7, 30
    acc = rng.integers(-(2 ** 40), 2 ** 40, size=(batch, m))
    acc[0], acc[1] = 2 ** 40, -(2 ** 40)
    mult = rng.integers(0, 2 ** 31, size=m)
    mult[0], mult[1] = 2 ** 31 - 1, 0
    shift = rng.integers(0, 32, size=m)
    shift[2], shift[3] = 0, 31
    lo, hi = spec_limits(kind, bits)
    got = ref.output_stage(acc, "requant", kind, bits, mult=mult, shift=shift, relu=relu)
    want = [[spec_requant(int(a), int(mu), int(s), lo, hi, relu)
             for a, mu, s in zip(row, mult, shift, strict=True)] for row in acc]
    assert as_ints(got) == want
    direct = ref.requant(acc, mult, shift, max(lo, 0) if relu else lo, hi)
    assert as_ints(direct) == want
    flat = [v for row in want for v in row]
    assert lo <= min(flat) and max(flat) <= hi
    if relu:
        assert min(flat) >= 0


def test_requant_unclamped_values_vary():
    """Not everything clamps: with moderate scales, most values are inside the range."""
    rng = np.random.default_rng(3)
    acc = rng.integers(-5000, 5000, size=(50, 4))
    mult, shift = np.array([3, 100, 1, 77]), np.array([6, 12, 0, 10])
    got = as_ints(ref.requant(acc, mult, shift, -128, 127))
    want = [[spec_requant(int(a), int(mu), int(s), -128, 127)
             for a, mu, s in zip(row, mult, shift, strict=True)] for row in acc]
    assert got == want
    assert len({v for row in want for v in row}) > 50


def test_requant_beyond_int64():
    """acc * mult beyond int64 (accumulators of 2**74, mult 2**31 - 1): exact."""
    accs = [2 ** 74, -(2 ** 74), 2 ** 62 + 12345, -(2 ** 62) - 1, 2 ** 40 - 1, 0, 1, -1]
    for mult, shift in [(2 ** 31 - 1, 31), (2 ** 31 - 1, 0), (12345, 17), (1, 1), (3, 30)]:
        for kind, bits in [("int", 32), ("uint", 32), ("int", 8)]:
            lo, hi = spec_limits(kind, bits)
            # the accumulators as they arrive from linear_acc when they cannot fit int64
            acc = np.array(accs, dtype=object)
            got = as_ints(ref.requant(acc, mult, shift, lo, hi))
            assert got == [spec_requant(a, mult, shift, lo, hi) for a in accs]
            wide = as_ints(ref.requant(acc, mult, shift, -(2 ** 200), 2 ** 200))
            assert wide == [round_half_up(a * mult, shift) for a in accs]


def test_requant_int64_acc_whose_product_overflows():
    """int64 accumulators (|acc| < 2**62) times mult 2**31 - 1 overflow int64: still exact."""
    accs = np.array([2 ** 61, -(2 ** 61), 2 ** 45 + 3, -(2 ** 50) - 7], dtype=np.int64)
    mult = 2 ** 31 - 1
    for shift in (0, 1, 20, 31):
        got = as_ints(ref.requant(accs, mult, shift, -(2 ** 100), 2 ** 100))
        assert got == [round_half_up(int(a) * mult, shift) for a in accs]


# --- threshold (SPEC 2.2) -----------------------------------------------------------------------

@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_threshold(shared, seed):
    rng = np.random.default_rng([seed, shared])
    m, levels, batch = int(rng.integers(1, 8)), int(rng.integers(1, 16)), 40
    t = np.sort(rng.integers(-50, 50, size=(1 if shared else m, levels)), axis=1)
    acc = rng.integers(-60, 60, size=(batch, m))
    acc[0] = t[0, 0] if shared else t[:, 0]               # ties: acc == T counts
    got = as_ints(ref.threshold(acc, t))
    rows = [t[0].tolist()] * m if shared else t.tolist()
    want = [[spec_threshold(int(a), rows[r]) for r, a in enumerate(row)] for row in acc]
    assert got == want
    assert all(0 <= v <= levels for row in got for v in row)
    assert {v for row in want for v in row} != {want[0][0]}          # not a constant


def test_threshold_huge_accumulators():
    acc = np.array([[2 ** 74, -(2 ** 74), 2 ** 63, 0]], dtype=object)
    t = np.array([[-(2 ** 62), 0, 2 ** 62]] * 4)
    assert as_ints(ref.threshold(acc, t)) == [[3, 0, 3, 2]]


@pytest.mark.parametrize("seed", range(3))
def test_threshold_output_stage(seed):
    """Bipolar: a count of 1 means +1, 0 means -1; uintN: the count itself."""
    rng = np.random.default_rng(seed)
    acc = rng.integers(-20, 20, size=(25, 6))
    t1 = rng.integers(-10, 10, size=(6, 1))
    got = as_ints(ref.output_stage(acc, "threshold", "bipolar", 1, thresholds=t1))
    assert got == [[1 if a >= t1[r, 0] else -1 for r, a in enumerate(row)] for row in acc]
    t3 = np.sort(rng.integers(-10, 10, size=(1, 3)), axis=1)
    got = as_ints(ref.output_stage(acc, "threshold", "uint", 2, thresholds=t3))
    assert got == [[spec_threshold(int(a), t3[0].tolist()) for a in row] for row in acc]


def test_identity_output_stage():
    acc = np.array([[2 ** 74, -3]], dtype=object)
    assert as_ints(ref.output_stage(acc, "identity", "int", 32)) == [[2 ** 74, -3]]
    with pytest.raises(ValueError):
        ref.output_stage(acc, "softmax", "int", 32)


# --- Model.forward: chains of layers ------------------------------------------------------------

def _scale(rng, acc_lo, acc_hi, out_lo, out_hi):
    """mult, shift that map the accumulator span roughly onto the output span."""
    span = max(acc_hi - acc_lo, 1)
    shift = int(rng.integers(0, 24))
    mult = (out_hi - out_lo + 1) * 2 ** shift // span
    mult = int(min(max(mult + int(rng.integers(-2, 3)), 0), 2 ** 31 - 1))
    return mult, shift


def random_chain(rng):
    """(doc, arrays, layers) of a random valid multi-layer model; ``layers`` keeps the plain
    Python values each layer computes with."""
    in_dtype = [("int", 4), ("uint", 4), ("bipolar", 1), ("int", 8), ("uint", 1),
                ("int", 32)][int(rng.integers(6))]
    k = int(rng.integers(1, 20))
    doc = {"format": "nnaccel-model/1", "name": "chain",
           "input": {"shape": [k], "dtype": _name(in_dtype)}, "layers": []}
    arrays, plain = {}, []
    cur = in_dtype
    n = int(rng.integers(2, 5))
    for i in range(n):
        name, m = f"l{i}", int(rng.integers(1, 12))
        wdt = [("int", 8), ("int", 2), ("bipolar", 1), ("uint", 3), ("int", 32)][
            int(rng.integers(5))]
        spec = {"name": name, "op": "linear", "weight_dtype": _name(wdt)}
        layer = {}
        if rng.random() < 0.3:
            cb = np.unique(random_values(rng, *wdt, int(rng.integers(1, 6))))
            idx = rng.integers(0, cb.size, size=(m, k))
            arrays[f"{name}.cb"], arrays[f"{name}.idx"] = cb, idx
            spec["codebook"], spec["indices"] = f"{name}.cb", f"{name}.idx"
            layer["w"] = [[int(cb[j]) for j in row] for row in idx.tolist()]
        else:
            w = random_values(rng, *wdt, (m, k))
            arrays[f"{name}.w"] = w
            spec["weight"] = f"{name}.w"
            layer["w"] = w.tolist()
        layer["b"] = None
        if rng.random() < 0.5:
            b = rng.integers(-1000, 1000, size=m)
            spec["bias"] = b.tolist()
            layer["b"] = b.tolist()
        lo_in, hi_in = spec_limits(*cur)
        bias = layer["b"] or [0] * m
        acc_lo = min(sum(min(v * lo_in, v * hi_in) for v in row) + b
                     for row, b in zip(layer["w"], bias, strict=True))
        acc_hi = max(sum(max(v * lo_in, v * hi_in) for v in row) + b
                     for row, b in zip(layer["w"], bias, strict=True))
        kinds = ["requant", "threshold"]
        if i == n - 1 and -(2 ** 31) <= acc_lo and acc_hi < 2 ** 31:
            kinds.append("identity")
        kind = kinds[int(rng.integers(len(kinds)))]
        if kind == "identity":
            spec["output"] = {"kind": "identity"}
            layer["out"] = ("identity",)
            cur = ("int", 32)
        elif kind == "requant":
            odt = [("int", 8), ("uint", 4), ("int", 4), ("uint", 1), ("int", 32)][
                int(rng.integers(5))]
            lo, hi = spec_limits(*odt)
            relu = bool(rng.random() < 0.5)
            mults, shifts = zip(*(_scale(rng, acc_lo, acc_hi, lo, hi) for _ in range(m)),
                                strict=True)
            if rng.random() < 0.4:
                mults, shifts = (mults[0],) * m, (shifts[0],) * m
                spec["output"] = {"kind": "requant", "mult": mults[0], "shift": shifts[0]}
            else:
                arrays[f"{name}.mult"] = np.array(mults)
                spec["output"] = {"kind": "requant", "mult": f"{name}.mult",
                                  "shift": list(shifts)}
            spec["output"].update(dtype=_name(odt), relu=relu)
            layer["out"] = ("requant", mults, shifts, max(lo, 0) if relu else lo, hi)
            cur = odt
        else:
            odt = [("bipolar", 1), ("uint", 2), ("uint", 3)][int(rng.integers(3))]
            levels = 1 if odt[0] == "bipolar" else int(rng.integers(1, 2 ** odt[1]))
            rows = m if rng.random() < 0.6 else 1
            t = [sorted(int(v) for v in rng.integers(acc_lo, acc_hi + 1, size=levels))
                 for _ in range(rows)]
            arrays[f"{name}.t"] = np.array(t)
            spec["output"] = {"kind": "threshold", "thresholds": f"{name}.t",
                              "dtype": _name(odt)}
            layer["out"] = ("threshold", t * m if rows == 1 else t, odt[0] == "bipolar")
            cur = odt
        doc["layers"].append(spec)
        plain.append(layer)
        k = m
    return doc, arrays, plain, in_dtype


def _name(dtype):
    return "bipolar" if dtype[0] == "bipolar" else f"{dtype[0]}{dtype[1]}"


def spec_forward(plain, x, upto=None):
    """SPEC 2: the chain, one vector, Python integers throughout."""
    for layer in plain[:upto]:
        acc = spec_acc(layer["w"], x, layer["b"])
        out = layer["out"]
        if out[0] == "identity":
            x = acc
        elif out[0] == "requant":
            _, mults, shifts, lo, hi = out
            x = [spec_requant(a, mu, s, lo, hi) for a, mu, s in zip(acc, mults, shifts,
                                                                     strict=True)]
        else:
            _, t, bipolar = out
            counts = [spec_threshold(a, row) for a, row in zip(acc, t, strict=True)]
            x = [2 * c - 1 for c in counts] if bipolar else counts
    return x


def _write(path, doc, arrays):
    path.mkdir()
    (path / "model.json").write_text(json.dumps(doc))
    np.savez(path / "weights.npz", **arrays)
    return path


@pytest.mark.parametrize("seed", range(30))
def test_model_forward_chain(tmp_path, seed):
    rng = np.random.default_rng([seed, 2024])
    doc, arrays, plain, in_dtype = random_chain(rng)
    model = read_model(_write(tmp_path / "m", doc, arrays))
    x = random_values(rng, *in_dtype, (12, doc["input"]["shape"][0]))
    want = [spec_forward(plain, row) for row in x.tolist()]
    assert as_ints(model.forward(x)) == want
    upto = int(rng.integers(1, len(plain)))
    assert as_ints(model.forward(x, upto=upto)) == [spec_forward(plain, row, upto)
                                                    for row in x.tolist()]


def test_model_forward_chain_outputs_vary(tmp_path):
    """The random chains are not degenerate: their outputs take many values overall."""
    seen = set()
    for seed in range(30):
        rng = np.random.default_rng([seed, 2024])
        doc, arrays, plain, in_dtype = random_chain(rng)
        x = random_values(rng, *in_dtype, (12, doc["input"]["shape"][0]))
        for row in x.tolist():
            seen.update(spec_forward(plain, row))
    assert len(seen) > 40


def test_model_forward_wide_chain(tmp_path):
    """int32 everywhere, K = 512: accumulators and requant products far beyond int64, through
    two layers, with a multi-dimensional input shape."""
    rng = np.random.default_rng(5)
    k, m = 512, 6
    i32 = ("int", 32)
    w1, w2 = random_values(rng, *i32, (m, k)), random_values(rng, *i32, (3, m))
    w1[0] = -(2 ** 31)
    w1[1:] = rng.integers(-(2 ** 16), 2 ** 16, size=(m - 1, k))   # these rows need not clamp
    b1 = random_values(rng, *i32, m)
    mult = np.array([2 ** 31 - 1, 1, 12345, 2 ** 30, 7, 0])
    shift = np.array([31, 31, 31, 20, 0, 5])
    doc = {"format": "nnaccel-model/1", "name": "wide",
           "input": {"shape": [8, 64], "dtype": "int32"},
           "layers": [
               {"name": "a", "op": "linear", "weight": "a.w", "weight_dtype": "int32",
                "bias": "a.b", "output": {"kind": "requant", "mult": "a.m", "shift": "a.s",
                                          "dtype": "int32"}},
               {"name": "b", "op": "linear", "weight": "b.w", "weight_dtype": "int32",
                "output": {"kind": "threshold", "thresholds": [[-(2 ** 40), 0, 2 ** 40]],
                           "dtype": "uint2"}}]}
    model = read_model(_write(tmp_path / "m", doc,
                              {"a.w": w1, "a.b": b1, "a.m": mult, "a.s": shift, "b.w": w2}))
    plain = [{"w": w1.tolist(), "b": b1.tolist(),
              "out": ("requant", mult.tolist(), shift.tolist(), -(2 ** 31), 2 ** 31 - 1)},
             {"w": w2.tolist(), "b": None,
              "out": ("threshold", [[-(2 ** 40), 0, 2 ** 40]] * 3, False)}]
    x = random_values(rng, *i32, (6, k))
    x[0], x[1] = -(2 ** 31), 2 ** 31 - 1
    want1 = [spec_forward(plain, row, 1) for row in x.tolist()]
    assert as_ints(model.forward(x.reshape(6, 8, 64), upto=1)) == want1
    assert len({v for row in want1 for v in row}) > 6            # not everything clamps
    assert as_ints(model.forward(x.reshape(6, 8, 64))) == [spec_forward(plain, row)
                                                           for row in x.tolist()]
