"""The sliding-window unit: its numpy reference against naive loops of the SPEC formulas, its
parameters, and the hardware against the reference under every stall pattern."""

import gc

import numpy as np
import pytest

from nnaccel.hw.common import reference as common_ref
from nnaccel.hw.common.dtype import DType
from nnaccel.hw.window.engine import WindowUnit
from nnaccel.hw.window.params import WindowParams
from nnaccel.hw.window.reference import from_hwc, im2col, patch_stream, patch_weights, to_hwc
from nnaccel.sim.amsim import STALL_PATTERNS, StallPattern, from_beats, to_beats

from .map_streams import random_map, simulate

# --- naive statements of SPEC 2.1b, independent of the code under test ------------------------


def naive_padded(x, padding, pad_value):
    c, h, w = x.shape
    top, left, bottom, right = padding
    xp = [[[pad_value] * (w + left + right) for _ in range(h + top + bottom)] for _ in range(c)]
    for ch in range(c):
        for r in range(h):
            for s in range(w):
                xp[ch][r + top][s + left] = int(x[ch, r, s])
    return xp


def naive_patches(x, kernel, stride, dilation, padding, pad_value):
    """Patches as a list of lists, ordered (oh, ow) then (i, j, c), from the SPEC's loops."""
    c, h, w = x.shape
    top, left, bottom, right = padding
    oh_count = (h + top + bottom - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow_count = (w + left + right - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    xp = naive_padded(x, padding, pad_value)
    patches = []
    for oh in range(oh_count):
        for ow in range(ow_count):
            patch = []
            for i in range(kernel[0]):
                for j in range(kernel[1]):
                    for ch in range(c):
                        patch.append(xp[ch][oh * stride[0] + i * dilation[0]]
                                       [ow * stride[1] + j * dilation[1]])
            patches.append(patch)
    return patches


def naive_conv(weight, x, stride, dilation, padding, pad_value):
    """SPEC 2.1b acc[m, oh, ow] for groups = 1, no bias, by loops."""
    m_count, c, kh, kw = weight.shape
    _, h, w = x.shape
    top, left, bottom, right = padding
    oh_count = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow_count = (w + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    xp = naive_padded(x, padding, pad_value)
    acc = np.zeros((m_count, oh_count, ow_count), dtype=np.int64)
    for m in range(m_count):
        for oh in range(oh_count):
            for ow in range(ow_count):
                acc[m, oh, ow] = sum(
                    int(weight[m, ch, i, j]) * xp[ch][oh * stride[0] + i * dilation[0]]
                    [ow * stride[1] + j * dilation[1]]
                    for ch in range(c) for i in range(kh) for j in range(kw))
    return acc


# --- random geometries ----------------------------------------------------------------------


def random_geometry(rng, *, dtype="int4", max_size=7):
    """Random valid WindowParams fields: kernels 1..5, strides 1..3, dilations 1..2, asymmetric
    padding, odd and even sizes."""
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
        stride = tuple(int(s) for s in rng.integers(1, 4, 2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
        padding = tuple(int(p) for p in rng.integers(0, 3, 4))
        height, width = (int(v) for v in rng.integers(1, max_size + 1, 2))
        channels = int(rng.choice([1, 2, 3, 4]))
        n_out = int(rng.choice([d for d in (1, 2, 4) if channels % d == 0]))
        n_in = int(rng.choice([d for d in (1, 2, 4) if channels % d == 0
                               and (d % n_out == 0 or n_out % d == 0)]))
        kh, kw = kernel
        several = [q for q in range(2, kh * kw + 1)
                   if kw % q == 0 or (q % kw == 0 and kh % (q // kw) == 0)]
        if several and rng.random() < 0.4:  # several window positions per beat
            n_out = int(rng.choice(several)) * channels
            n_in = int(rng.choice([d for d in (1, 2, 4) if channels % d == 0]))
        fields = dict(channels=channels, height=height, width=width, kernel=kernel,
                      stride=stride, dilation=dilation, padding=padding, dtype=dtype,
                      n_in=n_in, n_out=n_out)
        oh = common_ref.window_out_size(height, kernel[0], stride[0], dilation[0], padding[0],
                                        padding[2])
        ow = common_ref.window_out_size(width, kernel[1], stride[1], dilation[1], padding[1],
                                        padding[3])
        if oh >= 1 and ow >= 1:
            return fields


# --- reference ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(40))
def test_im2col_matches_naive_loops(seed):
    rng = np.random.default_rng(seed)
    g = random_geometry(rng)
    pad_value = int(rng.integers(-8, 8))
    x = rng.integers(-8, 8, size=(g["channels"], g["height"], g["width"]))
    got = im2col(x, g["kernel"], g["stride"], g["dilation"], g["padding"], pad_value)
    expected = naive_patches(x, g["kernel"], g["stride"], g["dilation"], g["padding"],
                             pad_value)
    assert got.tolist() == expected


@pytest.mark.parametrize("seed", range(20))
def test_reordered_weights_times_patches_is_the_convolution(seed):
    rng = np.random.default_rng(100 + seed)
    g = random_geometry(rng)
    c, kh, kw = g["channels"], *g["kernel"]
    m = int(rng.integers(1, 5))
    weight = rng.integers(-7, 8, size=(m, c, kh, kw))
    x = rng.integers(-8, 8, size=(c, g["height"], g["width"]))
    pad_value = int(rng.integers(-8, 8))
    patches = im2col(x, g["kernel"], g["stride"], g["dilation"], g["padding"], pad_value)
    got = patch_weights(weight) @ patches.T                            # (M, OH*OW)
    expected = naive_conv(weight, x, g["stride"], g["dilation"], g["padding"], pad_value)
    assert got.reshape(expected.shape).tolist() == expected.tolist()
    spec = common_ref.conv2d_acc(weight, x, stride=g["stride"], dilation=g["dilation"],
                                 padding=g["padding"], pad_value=pad_value)
    assert np.array_equal(spec, expected)


def test_patch_weights_order():
    w = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)          # (M, C, KH, KW)
    wp = patch_weights(w)
    for m in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    assert wp[m, (i * 2 + j) * 3 + c] == w[m, c, i, j]


def test_hwc_round_trip_and_order():
    x = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    s = to_hwc(x)
    assert s[:4].tolist() == [x[0, 0, 0], x[1, 0, 0], x[0, 0, 1], x[1, 0, 1]]
    assert np.array_equal(from_hwc(s, 2, 3, 4), x)
    assert np.array_equal(to_hwc(x[None])[0], s)


# --- parameters -----------------------------------------------------------------------------


BASE = dict(channels=4, height=5, width=6, kernel=(3, 3), dtype="int8", n_in=2, n_out=2)


@pytest.mark.parametrize(("change", "error", "match"), [
    (dict(channels=0), ValueError, "channels must be a positive integer"),
    (dict(height=2.0), TypeError, "height must be a positive integer"),
    (dict(kernel=(3, 0)), ValueError, r"kernel\[1\] must be a positive integer"),
    (dict(kernel="3x3"), TypeError, "kernel must be a positive integer or a pair"),
    (dict(stride=(1, 2, 3)), TypeError, "stride must be"),
    (dict(padding=(1, 1, -1, 0)), ValueError, r"padding\[2\] must be a non-negative"),
    (dict(padding=(1, 1)), TypeError, "padding must be"),
    (dict(n_in=3), ValueError, r"n_in \(3\) must divide channels \(4\)"),
    (dict(channels=6, n_in=4, n_out=3), ValueError, r"n_in \(4\) must divide channels"),
    (dict(channels=6, n_in=2, n_out=3), ValueError, "must divide one another"),
    (dict(n_out=8), ValueError, r"n_out \(8\) must divide channels \(4\) or be q"),
    (dict(n_out=6), ValueError, r"n_out \(6\) must divide channels"),
    (dict(kernel=(3, 2), n_out=16), ValueError, r"q = r\*KW with r dividing KH \(3\)"),
    (dict(dtype="float"), ValueError, "unknown dtype"),
    (dict(dtype=8), TypeError, "dtype must be a DType"),
    (dict(pad_value=200, padding=(0, 0, 1, 0)), ValueError,
     "pad_value 200 is not a value of int8"),
    (dict(dtype="bipolar", pad_value=0, padding=1), ValueError,
     "pad_value 0 is not a value of bipolar"),
    (dict(pad_value=1.5), TypeError, "pad_value must be an integer"),
    (dict(kernel=(6, 3)), ValueError, "larger than the padded input"),
    (dict(kernel=(3, 3), dilation=(1, 3)), ValueError, "larger than the padded input"),
])
def test_params_reject_bad_values(change, error, match):
    with pytest.raises(error, match=match):
        WindowParams(**dict(BASE, **change))


def test_params_derived_numbers():
    p = WindowParams(channels=64, height=32, width=32, kernel=3, padding=1, dtype="int8",
                     n_in=8, n_out=8)
    assert (p.out_height, p.out_width, p.patch_elems) == (32, 32, 576)
    assert p.dtype == DType.parse("int8") and p.padding == (1, 1, 1, 1)
    assert p.in_beats == 32 * 32 * 8 and p.out_beats == 32 * 32 * 9 * 8
    assert p.span_rows == 3 and p.buffer_rows == 4        # output-bound: no slack row
    assert p.buffer_depth == 4 * 32 * 8 and p.buffer_width == 64
    assert p.expected_cycles == p.out_beats
    q = WindowParams(channels=2, height=9, width=9, kernel=(2, 2), stride=(2, 2),
                     dilation=(2, 1), padding=(0, 0, 1, 1), dtype="uint2", n_in=2, n_out=1)
    assert (q.out_height, q.out_width) == (4, 5)
    assert q.span_rows == 3 and q.buffer_rows == 6
    assert q.write_cycles == 9 * 9 * 2 and q.expected_cycles == q.write_cycles
    s = WindowParams(channels=3, height=6, width=6, kernel=(4, 2), dtype="bipolar", n_in=1,
                     n_out=12)  # no padding: the default pad_value 0 is never used
    assert s.word_elems == 3 and s.taps_per_beat == 4 and s.beat_shape == (2, 2)
    assert s.read_ports == 4 and s.out_beats == 3 * 5 * 2 and s.row_cycles == 18



# The half-built component of a failed constructor is an elaboratable that is never used.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_component_takes_only_params():
    with pytest.raises(TypeError, match="params must be a WindowParams"):
        WindowUnit(dict(BASE))
    gc.collect()  # let amaranth's unused-component warning fire here, where it is ignored


# --- hardware -------------------------------------------------------------------------------


def run_unit(params, maps, pattern, seed=0):
    """Stream ``maps`` back to back through a WindowUnit; returns the decoded patch streams and
    the transfer cycles."""
    dut = WindowUnit(params)
    beats = to_beats([params.dtype.encode(to_hwc(x)) for x in maps], params.n_in)
    out, in_cycles, out_cycles = simulate(dut, beats, len(maps) * params.out_beats,
                                          pattern=pattern, seed=seed)
    streams = from_beats(out, params.out_beats * params.n_out, params.n_out)
    return [params.dtype.decode(np.array(s)) for s in streams], in_cycles, out_cycles


def check_unit(params, pattern, seed, images=2):
    rng = np.random.default_rng(seed)
    maps = [random_map(rng, params.dtype, params.channels, params.height, params.width)
            for _ in range(images)]
    got, _, _ = run_unit(params, maps, pattern, seed)
    for n, (stream, x) in enumerate(zip(got, maps, strict=True)):
        expected = patch_stream(x, params)
        assert stream.tolist() == expected.tolist(), f"image {n} differs"


CASES = {
    "3x3-pad1": dict(channels=2, height=5, width=4, kernel=(3, 3), padding=(1, 1, 1, 1),
                     dtype="int4", n_in=2, n_out=2),
    "1x1-c1": dict(channels=1, height=3, width=5, kernel=(1, 1), dtype="uint3", n_in=1,
                   n_out=1),
    "1x1-stride3": dict(channels=2, height=7, width=5, kernel=1, stride=3, dtype="int3",
                        n_in=2, n_out=1),
    "5x2-dil2-asym": dict(channels=3, height=9, width=5, kernel=(5, 2), stride=(1, 2),
                          dilation=(2, 1), padding=(2, 0, 1, 3), pad_value=-3, dtype="int4",
                          n_in=3, n_out=1),
    "2x4-stride-2x3": dict(channels=4, height=7, width=9, kernel=(2, 4), stride=(2, 3),
                           padding=(0, 1, 2, 0), pad_value=5, dtype="int4", n_in=1, n_out=4),
    "bipolar-pad-minus1": dict(channels=2, height=5, width=5, kernel=(3, 3), padding=1,
                               pad_value=-1, dtype="bipolar", n_in=2, n_out=2),
    "bipolar-pad-plus1": dict(channels=4, height=3, width=5, kernel=(2, 3), stride=(1, 2),
                              padding=(2, 1, 0, 2), pad_value=1, dtype="bipolar", n_in=4,
                              n_out=2),
    "whole-map": dict(channels=1, height=3, width=3, kernel=(3, 3), dtype="int2", n_in=1,
                      n_out=1),
    "stretch-row-of-3": dict(channels=3, height=5, width=6, kernel=(3, 3), padding=1,
                             pad_value=-2, dtype="int4", n_in=3, n_out=9),
    "stretch-whole-patch": dict(channels=2, height=7, width=6, kernel=(2, 3), stride=2,
                                dilation=(2, 1), padding=(0, 1, 1, 0), pad_value=3,
                                dtype="int4", n_in=1, n_out=12),
    "stretch-2-of-4-dilated": dict(channels=1, height=6, width=9, kernel=(3, 4),
                                   dilation=(1, 2), padding=(1, 2, 0, 1), pad_value=1,
                                   dtype="uint2", n_in=1, n_out=2),
    "stretch-bipolar": dict(channels=2, height=4, width=5, kernel=(2, 2), padding=(1, 0, 0, 1),
                            pad_value=1, dtype="bipolar", n_in=2, n_out=8),
    "pad-only-rows": dict(channels=1, height=2, width=3, kernel=(1, 2), stride=(1, 1),
                          padding=(2, 0, 3, 0), pad_value=1, dtype="int3", n_in=1, n_out=1),
}


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("name", CASES)
def test_unit_matches_reference(name, pattern):
    check_unit(WindowParams(**CASES[name]), pattern, seed=len(name))


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("seed", range(8))
def test_unit_random_geometries(seed, pattern):
    rng = np.random.default_rng(1000 + seed)
    dtype = str(rng.choice(["int3", "uint2", "bipolar", "int8"]))
    fields = random_geometry(rng, dtype=dtype)
    pad_value = int(rng.choice([-1, 1])) if dtype == "bipolar" else int(
        rng.integers(DType.parse(dtype).lo, DType.parse(dtype).hi + 1))
    check_unit(WindowParams(**fields, pad_value=pad_value), pattern, seed=seed, images=2)


CYCLE_CASES = {
    "conv3x3-pad": dict(channels=4, height=6, width=6, kernel=3, padding=1, dtype="int4",
                        n_in=2, n_out=2),
    "conv3x3-stride2": dict(channels=4, height=8, width=9, kernel=3, stride=2, dtype="int4",
                            n_in=4, n_out=2),
    "conv3x2-boundary": dict(channels=3, height=7, width=7, kernel=(3, 2), dtype="uint3",
                             n_in=3, n_out=3),
    "pool2x2": dict(channels=4, height=8, width=8, kernel=2, stride=2, dtype="int4", n_in=2,
                    n_out=2),
    "pool3x3-stride3-odd": dict(channels=2, height=9, width=7, kernel=3, stride=3,
                                padding=(0, 0, 0, 2), dtype="int4", n_in=1, n_out=2),
    "1x1-stride3": dict(channels=1, height=9, width=6, kernel=1, stride=3, dtype="int4",
                        n_in=1, n_out=1),
    "stretch-row-of-3": dict(channels=3, height=8, width=8, kernel=3, padding=1, dtype="int4",
                             n_in=3, n_out=9),
    "stretch-whole-patch": dict(channels=2, height=8, width=7, kernel=(3, 2), dtype="int4",
                                n_in=2, n_out=12),
}


@pytest.mark.parametrize("name", CYCLE_CASES)
def test_cycles_per_image_and_latency(name):
    """No stalls, images back to back: the steady-state cycles per image (from the last output
    beat of one image to the next) are within 5% of ``expected_cycles``, and the first output
    beat comes ``latency`` cycles after the first input beat."""
    p = WindowParams(**CYCLE_CASES[name])
    rng = np.random.default_rng(7)
    maps = [random_map(rng, p.dtype, p.channels, p.height, p.width) for _ in range(4)]
    got, in_cycles, out_cycles = run_unit(p, maps, StallPattern())
    assert all(s.tolist() == patch_stream(x, p).tolist() for s, x in zip(got, maps, strict=True))
    ends = [out_cycles[(k + 1) * p.out_beats - 1] for k in range(len(maps))]
    for per_image in np.diff(ends):
        assert abs(per_image - p.expected_cycles) <= 0.05 * p.expected_cycles, \
            (per_image, p.expected_cycles)
    assert out_cycles[0] - in_cycles[0] == p.latency


def test_input_accepted_while_emitting():
    """An output-bound unit keeps taking input while it emits: input beats of the second image
    are accepted before the first image's last output beat."""
    p = WindowParams(**CYCLE_CASES["conv3x3-pad"])
    rng = np.random.default_rng(3)
    maps = [random_map(rng, p.dtype, p.channels, p.height, p.width) for _ in range(2)]
    _, in_cycles, out_cycles = run_unit(p, maps, StallPattern())
    first_image_done = out_cycles[p.out_beats - 1]
    assert in_cycles[p.in_beats] < first_image_done
    assert in_cycles[p.in_beats - 1] > out_cycles[0]
