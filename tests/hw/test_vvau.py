"""The vector-vector unit for grouped and depthwise convolutions, and the window unit's depthwise
patch order that feeds it: numpy references against naive SPEC loops, parameters, and the
hardware (window unit -> VVAU -> output stage) against SPEC 2.1b + 2.2 under every stall
pattern."""

import gc

import numpy as np
import pytest

from nnaccel.hw.common import reference as common_ref
from nnaccel.hw.common.dtype import DType, DTypeKind
from nnaccel.hw.vvau.engine import VectorVectorUnit, VVAUConvolution
from nnaccel.hw.vvau.params import LaneKind, VVAUParams
from nnaccel.hw.vvau.reference import conv_acc, weight_words
from nnaccel.hw.window.engine import WindowUnit
from nnaccel.hw.window.params import PatchOrder, WindowParams
from nnaccel.hw.window.reference import depthwise_order, im2col, patch_stream, to_hwc
from nnaccel.sim.amsim import STALL_PATTERNS, StallPattern, from_beats, to_beats

from .map_streams import random_map, simulate

# --- naive statements of SPEC 2.1b, independent of the code under test ------------------------


def naive_depthwise_patches(x, kernel, stride, dilation, padding, pad_value, block):
    """Patches ordered (oh, ow) then (cb, i, j, c') with c = cb*block + c', by loops."""
    c, h, w = x.shape
    top, left, bottom, right = padding
    oh_n = (h + top + bottom - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    ow_n = (w + left + right - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1

    def xp(ch, r, s):
        r, s = r - top, s - left
        return int(x[ch, r, s]) if 0 <= r < h and 0 <= s < w else pad_value

    out = []
    for oh in range(oh_n):
        for ow in range(ow_n):
            out.append([xp(cb * block + cc, oh * stride[0] + i * dilation[0],
                           ow * stride[1] + j * dilation[1])
                        for cb in range(c // block) for i in range(kernel[0])
                        for j in range(kernel[1]) for cc in range(block)])
    return out


def naive_grouped_conv(weight, x, bias, groups, stride, dilation, padding, pad_value):
    """SPEC 2.1b acc[m, oh, ow] with groups, by loops."""
    m_n, cg, kh, kw = weight.shape
    c, h, w = x.shape
    top, left, bottom, right = padding
    oh_n = (h + top + bottom - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow_n = (w + left + right - dilation[1] * (kw - 1) - 1) // stride[1] + 1

    def xp(ch, r, s):
        r, s = r - top, s - left
        return int(x[ch, r, s]) if 0 <= r < h and 0 <= s < w else pad_value

    acc = np.zeros((m_n, oh_n, ow_n), dtype=np.int64)
    for m in range(m_n):
        g = m // (m_n // groups)
        for oh in range(oh_n):
            for ow in range(ow_n):
                acc[m, oh, ow] = (0 if bias is None else int(bias[m])) + sum(
                    int(weight[m, cc, i, j]) * xp(g * cg + cc, oh * stride[0] + i * dilation[0],
                                                  ow * stride[1] + j * dilation[1])
                    for cc in range(cg) for i in range(kh) for j in range(kw))
    return acc


def random_conv_geometry(rng, max_size=7):
    """Kernels 1..5 (non-square), strides 1..3, dilations 1..2, asymmetric padding."""
    while True:
        kernel = tuple(int(k) for k in rng.integers(1, 6, 2))
        stride = tuple(int(s) for s in rng.integers(1, 4, 2))
        dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
        padding = tuple(int(p) for p in rng.integers(0, 3, 4))
        h, w = (int(v) for v in rng.integers(1, max_size + 1, 2))
        oh = common_ref.window_out_size(h, kernel[0], stride[0], dilation[0], padding[0],
                                        padding[2])
        ow = common_ref.window_out_size(w, kernel[1], stride[1], dilation[1], padding[1],
                                        padding[3])
        if oh >= 1 and ow >= 1:
            return dict(height=h, width=w, kernel=kernel, stride=stride, dilation=dilation,
                        padding=padding)


# --- window unit, depthwise order -------------------------------------------------------------


@pytest.mark.parametrize("seed", range(30))
def test_depthwise_order_matches_naive_loops(seed):
    rng = np.random.default_rng(seed)
    g = random_conv_geometry(rng)
    c = int(rng.choice([1, 2, 4, 6]))
    block = int(rng.choice([b for b in (1, 2, 3, 6) if c % b == 0]))
    pad_value = int(rng.integers(-8, 8))
    x = rng.integers(-8, 8, size=(c, g["height"], g["width"]))
    patches = im2col(x, g["kernel"], g["stride"], g["dilation"], g["padding"], pad_value)
    got = depthwise_order(patches, c, block)
    assert got.tolist() == naive_depthwise_patches(x, g["kernel"], g["stride"], g["dilation"],
                                                   g["padding"], pad_value, block)


def test_window_order_field():
    base = dict(channels=4, height=5, width=5, kernel=3, dtype="int4", n_in=2, n_out=2)
    assert WindowParams(**base).order is PatchOrder.TAPS
    assert WindowParams(**base, order="depthwise").order is PatchOrder.DEPTHWISE
    with pytest.raises(ValueError, match="order must be one of 'taps', 'depthwise'"):
        WindowParams(**base, order="chw")
    with pytest.raises(ValueError, match=r"n_out \(12\) must divide channels \(4\) in the "
                                         r"depthwise order"):
        WindowParams(**dict(base, n_out=12), order=PatchOrder.DEPTHWISE)


def run_window(params, maps, pattern, seed=0):
    dut = WindowUnit(params)
    beats = to_beats([params.dtype.encode(to_hwc(x)) for x in maps], params.n_in)
    out, in_cycles, out_cycles = simulate(dut, beats, len(maps) * params.out_beats,
                                          pattern=pattern, seed=seed)
    streams = from_beats(out, params.out_beats * params.n_out, params.n_out)
    return [params.dtype.decode(np.array(s)) for s in streams], in_cycles, out_cycles


WINDOW_CASES = {
    "3x3-pad1-blocks2": dict(channels=4, height=5, width=4, kernel=3, padding=1, dtype="int4",
                             n_in=2, n_out=2),
    "5x2-dil-stride-asym": dict(channels=3, height=9, width=6, kernel=(5, 2), stride=(1, 2),
                                dilation=(2, 1), padding=(2, 0, 1, 3), pad_value=-3,
                                dtype="int4", n_in=3, n_out=1),
    "bipolar-pad-plus1": dict(channels=4, height=4, width=5, kernel=(2, 3), stride=(2, 1),
                              padding=(1, 1, 0, 2), pad_value=1, dtype="bipolar", n_in=4,
                              n_out=2),
    "1x1-c1": dict(channels=1, height=3, width=5, kernel=1, dtype="uint3", n_in=1, n_out=1),
    "whole-channels": dict(channels=2, height=6, width=5, kernel=(3, 2), stride=2, padding=1,
                           pad_value=2, dtype="int3", n_in=1, n_out=2),
}


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("name", WINDOW_CASES)
def test_window_depthwise_order_matches_reference(name, pattern):
    p = WindowParams(**WINDOW_CASES[name], order=PatchOrder.DEPTHWISE)
    rng = np.random.default_rng(len(name))
    maps = [random_map(rng, p.dtype, p.channels, p.height, p.width) for _ in range(2)]
    got, _, _ = run_window(p, maps, pattern, seed=len(name))
    for stream, x in zip(got, maps, strict=True):
        expected = naive_depthwise_patches(x, p.kernel, p.stride, p.dilation, p.padding,
                                           p.pad_value, p.n_out)
        assert stream.tolist() == sum(expected, [])
        assert stream.tolist() == patch_stream(x, p).tolist()


@pytest.mark.parametrize("name", ["3x3-pad1-blocks2", "whole-channels", "5x2-dil-stride-asym"])
def test_window_depthwise_cycles_and_latency(name):
    p = WindowParams(**WINDOW_CASES[name], order=PatchOrder.DEPTHWISE)
    rng = np.random.default_rng(5)
    maps = [random_map(rng, p.dtype, p.channels, p.height, p.width) for _ in range(4)]
    got, in_cycles, out_cycles = run_window(p, maps, StallPattern())
    assert all(s.tolist() == patch_stream(x, p).tolist() for s, x in zip(got, maps, strict=True))
    ends = [out_cycles[(k + 1) * p.out_beats - 1] for k in range(len(maps))]
    for per_image in np.diff(ends):
        assert abs(per_image - p.expected_cycles) <= 0.05 * p.expected_cycles, \
            (per_image, p.expected_cycles)
    assert out_cycles[0] - in_cycles[0] == p.latency


BOUNDARY_CASES = {
    "8ch-one-per-beat": dict(channels=8, height=6, width=6, kernel=3, dtype="int4", n_in=8,
                             n_out=1),
    "stride2-3x2": dict(channels=8, height=5, width=7, kernel=(3, 2), stride=(2, 1),
                        dtype="int4", n_in=8, n_out=2),
    "5x1-dilated-pad-bottom": dict(channels=4, height=8, width=4, kernel=(5, 1), dilation=(2, 1),
                                   padding=(0, 0, 2, 0), dtype="int4", n_in=4, n_out=1),
}


@pytest.mark.parametrize("name", BOUNDARY_CASES)
def test_window_depthwise_image_boundary_wait(name):
    """Input-starved at each image's start (the first block waits for rows of the next image):
    the steady-state cycles per image are exactly ``expected_cycles``, whose boundary wait
    counts the first channel block's beats before each kernel row."""
    p = WindowParams(**BOUNDARY_CASES[name], order=PatchOrder.DEPTHWISE)
    rng = np.random.default_rng(0)
    maps = [random_map(rng, p.dtype, p.channels, p.height, p.width) for _ in range(4)]
    got, _, out_cycles = run_window(p, maps, StallPattern())
    assert all(s.tolist() == patch_stream(x, p).tolist() for s, x in zip(got, maps, strict=True))
    ends = [out_cycles[(k + 1) * p.out_beats - 1] for k in range(len(maps))]
    assert p.boundary_stall > 0
    assert np.diff(ends).tolist() == [p.expected_cycles] * (len(maps) - 1)


# --- VVAU reference ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(20))
def test_reference_matches_spec(seed):
    rng = np.random.default_rng(200 + seed)
    g = random_conv_geometry(rng, max_size=6)
    groups, cg, mg = [(3, 1, 1), (4, 1, 2), (2, 3, 2), (1, 2, 3), (3, 2, 1)][seed % 5]
    bipolar = seed % 3 == 0
    c, m = groups * cg, groups * mg
    shape = (m, cg, *g["kernel"])
    if bipolar:
        weight, x = rng.choice([-1, 1], shape), rng.choice([-1, 1], (c, g["height"], g["width"]))
        pad_value = int(rng.choice([-1, 1]))
    else:
        weight, x = rng.integers(-7, 8, shape), rng.integers(-8, 8, (c, g["height"], g["width"]))
        pad_value = int(rng.integers(-8, 8))
    bias = rng.integers(-50, 50, m)
    kw = dict(stride=g["stride"], dilation=g["dilation"], padding=g["padding"],
              pad_value=pad_value)
    got = conv_acc(weight, x, bias, groups=groups, xnor=bipolar, **kw)
    expected = naive_grouped_conv(weight, x, bias, groups, g["stride"], g["dilation"],
                                  g["padding"], pad_value)
    assert got.tolist() == expected.tolist()
    assert np.array_equal(common_ref.conv2d_acc(weight, x, bias, groups=groups, **kw), expected)


def test_weight_words_order_several_positions_per_beat():
    weight = np.arange(4 * 1 * 2 * 3).reshape(4, 1, 2, 3)     # depthwise C=2, k=2, 2x3
    words = weight_words(weight, groups=2, pe=2, simd=3)
    assert words.shape == (2, 2 * 2 * 3)
    for s in range(2):
        for p in range(2):
            for u in range(2):
                for q in range(3):
                    t = s * 3 + q
                    assert words[s, (p * 2 + u) * 3 + q] == weight[p * 2 + u, 0, t // 3, t % 3]


def test_weight_words_order():
    weight = np.arange(6 * 2 * 2 * 3).reshape(6, 2, 2, 3)     # G=3, cg=2, mg=2, KH=2, KW=3
    words = weight_words(weight, groups=3, pe=1)
    assert words.shape == (3 * 6, 1 * 2 * 2)
    for gb in range(3):
        for i in range(2):
            for j in range(3):
                for u in range(2):
                    for c in range(2):
                        assert words[gb * 6 + i * 3 + j, u * 2 + c] == weight[gb * 2 + u, c, i, j]


# --- parameters -------------------------------------------------------------------------------


DW = dict(in_shape=(8, 6, 6), groups=8, pe=2, n_in=2, in_dtype="int8", weight_dtype="int8")


def dw_weight(k=1, kernel=(3, 3), c=8):
    return np.ones((k * c, 1, *kernel), dtype=np.int64)


@pytest.mark.parametrize(("change", "error", "match"), [
    (dict(pe=3), ValueError, r"pe \(3\) must divide groups \(8\)"),
    (dict(pe=0), ValueError, "pe must be a positive integer"),
    (dict(pe=2.0), TypeError, "pe must be a positive integer"),
    (dict(groups=3), ValueError, r"groups \(3\) must divide the input channels \(8\)"),
    (dict(in_shape=(8, 6)), TypeError, r"in_shape must be \(C, H, W\)"),
    (dict(n_in=3), ValueError, r"n_in \(3\) must divide channels \(8\)"),
    (dict(in_dtype="float"), ValueError, "unknown dtype"),
    (dict(weight_storage="rom"), ValueError, "weight_storage must be one of"),
    (dict(in_shape=(8, 2, 2)), ValueError, "larger than the padded input"),
    (dict(groups=4), ValueError, r"its axis 1 must be 2"),
    (dict(simd=3), ValueError, r"simd \(3\) above 1 needs every group in one beat: pe must "
                               r"be groups \(8\), not 2"),
    (dict(pe=8, simd=2), ValueError, r"simd \(2\) must divide KW \(3\) or be r\*KW"),
    (dict(pe=8, simd=0), ValueError, "simd must be a positive integer"),
])
def test_params_reject_bad_values(change, error, match):
    with pytest.raises(error, match=match):
        VVAUParams.for_layer(weight=dw_weight(), **dict(DW, **change))


def test_params_reject_bad_raw_bounds_and_output():
    p = VVAUParams.for_layer(weight=dw_weight(), **DW)
    fields = dict(in_shape=p.in_shape, out_channels=8, groups=8, kernel=(3, 3), pe=2, n_in=2,
                  in_dtype="int8", weight_dtype="int8")
    with pytest.raises(ValueError, match="raw_lo and raw_hi go together"):
        VVAUParams(**fields, raw_lo=-5)
    with pytest.raises(ValueError, match="must contain 0"):
        VVAUParams(**fields, raw_lo=1, raw_hi=5)
    with pytest.raises(ValueError, match="output needs raw_lo and raw_hi"):
        VVAUParams(**fields, output=p.output)
    with pytest.raises(ValueError, match="output must have pe 4, channels 8"):
        VVAUParams(**dict(fields, pe=4), raw_lo=p.raw_lo, raw_hi=p.raw_hi, output=p.output)


def test_params_derived_numbers():
    # 3x3 depthwise, 64 channels, multiplier 2, PE 8
    w = np.full((128, 1, 3, 3), -128, dtype=np.int64)
    p = VVAUParams.for_layer(weight=w, in_shape=(64, 16, 16), groups=64, pe=8, n_in=8,
                             padding=1, in_dtype="int8", weight_dtype="int8",
                             bias=np.full(128, 7))
    assert (p.group_in, p.multiplier, p.taps, p.depthwise) == (1, 2, 9, True)
    assert (p.in_beat, p.out_beat, p.blocks, p.lanes) == (8, 16, 8, 16)
    assert p.cycles_per_pixel == 9 * 64 // 8 and p.weight_depth == 8 * 9
    assert (p.raw_lo, p.raw_hi) == (-9 * 128 * 127, 9 * 128 * 128)
    assert p.raw_shape.width == 19 and p.acc_width == 20 and p.output.offset[0] == 7
    assert p.out_shape == (128, 16, 16) and p.pixels == 256
    assert p.expected_cycles == p.window.expected_cycles >= 256 * 72
    assert p.lane_kind is LaneKind.MUL and p.weight_bits == 128 * 9 * 8
    assert p.window.order is PatchOrder.DEPTHWISE and p.window.n_out == 8
    b = VVAUParams.for_layer(weight=np.ones((6, 3, 2, 2), dtype=np.int64), in_shape=(6, 4, 4),
                             groups=2, pe=1, n_in=3, padding=1, pad_value=-1,
                             in_dtype="bipolar", weight_dtype="bipolar", bias=np.zeros(6))
    assert b.lane_kind is LaneKind.XNOR and (b.raw_lo, b.raw_hi) == (0, 12)
    assert b.output.offset == (-12,) * 6 and b.output.scale == 2 and b.lanes == 9
    s = VVAUParams.for_layer(weight=w, in_shape=(64, 16, 16), groups=64, pe=64, simd=3, n_in=8,
                             padding=1, in_dtype="int8", weight_dtype="int8")
    assert (s.in_beat, s.out_beat, s.lanes, s.block_beats) == (192, 128, 384, 3)
    assert s.cycles_per_pixel == 3 and s.weight_depth == 3 and s.weight_bits == p.weight_bits
    assert s.window.order is PatchOrder.TAPS and s.window.taps_per_beat == 3


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_components_check_their_arguments():
    p = VVAUParams.for_layer(weight=dw_weight(), **DW)
    with pytest.raises(TypeError, match="params must be VVAUParams"):
        VVAUConvolution(dict(DW), weight=dw_weight())
    with pytest.raises(ValueError, match="weight has shape"):
        VectorVectorUnit(p, weight=dw_weight(k=2))
    with pytest.raises(ValueError, match="outside int8"):
        VVAUConvolution(p, weight=dw_weight() * 200)
    with pytest.raises(ValueError, match="exceeds the raw-sum bounds"):
        VVAUConvolution(p, weight=dw_weight() * 2)
    gc.collect()


# --- hardware ---------------------------------------------------------------------------------


def layer_case(rng, *, c, groups, mg, dtype, wdtype, kind, geometry, pe, n_in, pad_value=0,
               simd=1):
    """Random weights, bias and output stage of a conv2d layer: ``(params, weight, stage)``."""
    in_dt, w_dt = DType.parse(dtype), DType.parse(wdtype)
    m = groups * mg
    shape = (m, c // groups, *geometry["kernel"])
    if w_dt.kind is DTypeKind.BIPOLAR:
        weight = rng.choice([-1, 1], shape)
    else:
        weight = rng.integers(w_dt.lo, w_dt.hi + 1, shape)
        weight.reshape(-1)[0] = w_dt.lo          # an extreme weight
    bias = rng.integers(-40, 40, m)
    stage = dict(output_kind=kind)
    if kind == "requant":
        stage.update(out_dtype=DType.parse("int6"), mult=rng.integers(1, 300, m), shift=9,
                     relu=bool(rng.integers(0, 2)))
    elif kind == "threshold":
        out = DType.parse("uint2")
        t = np.sort(rng.integers(-60, 60, (m, 3)), axis=1)
        stage.update(out_dtype=out, thresholds=t)
    else:
        stage.update(out_dtype=DType.parse("int32"))
    params = VVAUParams.for_layer(weight=weight, bias=bias, in_shape=(c, geometry["height"],
                                  geometry["width"]), groups=groups, pe=pe, simd=simd,
                                  n_in=n_in, stride=geometry["stride"],
                                  dilation=geometry["dilation"], padding=geometry["padding"],
                                  pad_value=pad_value,
                                  in_dtype=in_dt, weight_dtype=w_dt, **stage)
    return params, weight, bias, stage


def expected_map(params, weight, bias, stage, x):
    """SPEC 2.1b (hw/common/reference.conv2d_acc) then SPEC 2.2, as (M, OH, OW)."""
    acc = common_ref.conv2d_acc(weight, x, bias, groups=params.groups, stride=params.stride,
                                dilation=params.dilation, padding=params.padding,
                                pad_value=params.pad_value)
    out = stage["out_dtype"]
    y = common_ref.output_stage(np.moveaxis(acc, 0, -1), stage["output_kind"], out.kind.value,
                                out.bits, mult=stage.get("mult"), shift=stage.get("shift"),
                                relu=stage.get("relu", False),
                                thresholds=stage.get("thresholds"))
    return np.moveaxis(np.asarray(y), -1, 0)


def run_conv(params, weight, maps, pattern, out_dtype, seed=0):
    """Stream ``maps`` back to back through a VVAUConvolution; returns the decoded output maps
    (M, OH, OW) and the transfer cycles."""
    dut = VVAUConvolution(params, weight=weight)
    beats = to_beats([params.in_dtype.encode(to_hwc(x)) for x in maps], params.n_in)
    m, oh, ow = params.out_shape
    count = oh * ow * params.blocks * len(maps)
    out, in_cycles, out_cycles = simulate(dut, beats, count, pattern=pattern, seed=seed,
                                          timeout=200_000)
    streams = from_beats(out, m * oh * ow, params.out_beat)
    got = [out_dtype.decode(np.array(s)).reshape(oh, ow, m).transpose(2, 0, 1)
           for s in streams]
    return got, in_cycles, out_cycles


def check_conv(case, pattern, seed, images=2):
    rng = np.random.default_rng(seed)
    params, weight, bias, stage = case(rng)
    maps = [random_map(rng, params.in_dtype, *params.in_shape) for _ in range(images)]
    got, _, _ = run_conv(params, weight, maps, pattern, stage["out_dtype"], seed)
    for n, (y, x) in enumerate(zip(got, maps, strict=True)):
        expected = expected_map(params, weight, bias, stage, x)
        assert y.tolist() == expected.tolist(), f"image {n} differs"


GEOM = {
    "3x3-pad1": dict(height=5, width=4, kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
                     padding=(1, 1, 1, 1)),
    "5x2-stride-dil-asym": dict(height=8, width=6, kernel=(5, 2), stride=(1, 2),
                                dilation=(2, 1), padding=(2, 0, 1, 3)),
    "1x1-stride2": dict(height=5, width=5, kernel=(1, 1), stride=(2, 2), dilation=(1, 1),
                        padding=(0, 0, 0, 0)),
    "2x4-stride3": dict(height=7, width=9, kernel=(2, 4), stride=(3, 2), dilation=(1, 1),
                        padding=(0, 1, 2, 0)),
}

CASES = {
    "dw-int8-k1-identity": lambda rng: layer_case(
        rng, c=4, groups=4, mg=1, dtype="int8", wdtype="int8", kind="identity",
        geometry=GEOM["3x3-pad1"], pe=2, n_in=4, pad_value=-5),
    "dw-int4-k2-requant": lambda rng: layer_case(
        rng, c=3, groups=3, mg=2, dtype="int4", wdtype="int4", kind="requant",
        geometry=GEOM["5x2-stride-dil-asym"], pe=1, n_in=3, pad_value=3),
    "dw-uint4-k2-pe-all-threshold": lambda rng: layer_case(
        rng, c=4, groups=4, mg=2, dtype="uint4", wdtype="int3", kind="threshold",
        geometry=GEOM["2x4-stride3"], pe=4, n_in=2, pad_value=0),
    "dw-bipolar-xnor-pad-minus1": lambda rng: layer_case(
        rng, c=4, groups=4, mg=1, dtype="bipolar", wdtype="bipolar", kind="identity",
        geometry=GEOM["3x3-pad1"], pe=2, n_in=2, pad_value=-1),
    "dw-bipolar-xnor-k2-pad-plus1": lambda rng: layer_case(
        rng, c=2, groups=2, mg=2, dtype="bipolar", wdtype="bipolar", kind="threshold",
        geometry=GEOM["2x4-stride3"], pe=1, n_in=2, pad_value=1),
    "dw-bipolar-weights-int-inputs": lambda rng: layer_case(
        rng, c=2, groups=2, mg=1, dtype="int4", wdtype="bipolar", kind="identity",
        geometry=GEOM["5x2-stride-dil-asym"], pe=2, n_in=1, pad_value=-8),
    "dw-int-weights-bipolar-inputs": lambda rng: layer_case(
        rng, c=2, groups=2, mg=2, dtype="bipolar", wdtype="int4", kind="requant",
        geometry=GEOM["1x1-stride2"], pe=1, n_in=2, pad_value=1),
    "grouped-g2-cg3-mg2": lambda rng: layer_case(
        rng, c=6, groups=2, mg=2, dtype="int4", wdtype="int4", kind="identity",
        geometry=GEOM["3x3-pad1"], pe=1, n_in=3, pad_value=2),
    "grouped-g2-cg2-mg3-pe2": lambda rng: layer_case(
        rng, c=4, groups=2, mg=3, dtype="uint3", wdtype="int4", kind="requant",
        geometry=GEOM["2x4-stride3"], pe=2, n_in=4),
    "dw-simd3-kernel-row": lambda rng: layer_case(
        rng, c=2, groups=2, mg=2, dtype="int4", wdtype="int4", kind="requant",
        geometry=GEOM["3x3-pad1"], pe=2, simd=3, n_in=2, pad_value=-3),
    "dw-simd-whole-kernel-5x2": lambda rng: layer_case(
        rng, c=3, groups=3, mg=1, dtype="int8", wdtype="int3", kind="identity",
        geometry=GEOM["5x2-stride-dil-asym"], pe=3, simd=10, n_in=1, pad_value=100),
    "grouped-simd2-bipolar": lambda rng: layer_case(
        rng, c=4, groups=2, mg=1, dtype="bipolar", wdtype="bipolar", kind="threshold",
        geometry=GEOM["2x4-stride3"], pe=2, simd=2, n_in=4, pad_value=-1),
    "groups1-dense": lambda rng: layer_case(
        rng, c=2, groups=1, mg=3, dtype="int3", wdtype="int3", kind="identity",
        geometry=GEOM["1x1-stride2"], pe=1, n_in=1, pad_value=0),
}


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("name", CASES)
def test_conv_matches_spec(name, pattern):
    check_conv(CASES[name], pattern, seed=len(name))


def random_case(seed):
    def case(rng):
        g = random_conv_geometry(rng, max_size=6)
        dtype = str(rng.choice(["int8", "bipolar", "uint2", "int3"]))
        wdtype = "bipolar" if dtype == "bipolar" and rng.random() < 0.7 else str(
            rng.choice(["int8", "int3"]))
        c = int(rng.choice([1, 2, 3, 4]))
        grouped = c > 2 and c % 2 == 0 and rng.random() < 0.3
        groups = c // 2 if grouped else c
        pe = int(rng.choice([d for d in (1, 2, 4) if groups % d == 0]))
        n_in = int(rng.choice([d for d in (1, 2, 4) if c % d == 0]))
        dt = DType.parse(dtype)
        pad_value = int(rng.choice([-1, 1])) if dt.kind is DTypeKind.BIPOLAR else int(
            rng.integers(dt.lo, dt.hi + 1))
        kh, kw = g["kernel"]
        simds = [q for q in range(2, kh * kw + 1)
                 if kw % q == 0 or (q % kw == 0 and kh % (q // kw) == 0)]
        simd = 1
        if simds and rng.random() < 0.4:       # several window positions per beat
            pe, simd = groups, int(rng.choice(simds))
        return layer_case(rng, c=c, groups=groups, mg=int(rng.choice([1, 2])), dtype=dtype,
                          wdtype=wdtype, kind=str(rng.choice(["identity", "requant",
                                                              "threshold"])),
                          geometry=g, pe=pe, n_in=n_in, pad_value=pad_value, simd=simd)
    return case


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("seed", range(8))
def test_conv_random_shapes(seed, pattern):
    check_conv(random_case(seed), pattern, seed=3000 + seed)


def test_accumulator_holds_the_worst_case():
    """Every tap at its extreme, every weight at its most negative: the raw sum reaches the
    bound the widths were derived from and the output is still exact."""
    c, geometry = 2, GEOM["3x3-pad1"]
    weight = np.full((c, 1, 3, 3), -128, dtype=np.int64)
    params = VVAUParams.for_layer(weight=weight, in_shape=(c, 5, 4), groups=c, pe=1, n_in=1,
                                  padding=1, pad_value=-128, in_dtype="int8",
                                  weight_dtype="int8", bias=np.full(c, 2**20),
                                  **{k: geometry[k] for k in ("stride", "dilation")})
    stage = dict(output_kind="identity", out_dtype=DType.parse("int32"))
    maps = [np.full((c, 5, 4), -128), np.full((c, 5, 4), 127)]
    got, _, _ = run_conv(params, weight, maps, StallPattern(0.3, 0.3), stage["out_dtype"])
    for y, x in zip(got, maps, strict=True):
        assert y.tolist() == expected_map(params, weight, np.full(c, 2**20), stage, x).tolist()
    assert got[0][0, 1, 1] == 9 * 128 * 128 + 2**20 == params.raw_hi + 2**20


@pytest.mark.parametrize(("name", "pe", "simd"), [
    ("dw-int8-k1-identity", 1, 1), ("dw-int8-k1-identity", 4, 1), ("grouped-g2-cg3-mg2", 2, 1),
    ("dw-int8-k1-identity", 4, 3), ("dw-int8-k1-identity", 4, 9)])
def test_cycles_per_image(name, pe, simd):
    """No stalls, images back to back: cycles per image within 5% of ``expected_cycles``, which
    is at least ``OH*OW*KH*KW*G/(pe*simd)``."""
    rng = np.random.default_rng(11)
    p0, weight, _, _ = CASES[name](rng)
    fields = {f: getattr(p0, f) for f in ("in_shape", "stride", "dilation", "padding",
                                          "pad_value", "n_in", "in_dtype", "weight_dtype")}
    params = VVAUParams.for_layer(weight=weight, groups=p0.groups, pe=pe, simd=simd, **fields)
    maps = [random_map(rng, params.in_dtype, *params.in_shape) for _ in range(4)]
    _, _, out_cycles = run_conv(params, weight, maps, StallPattern(), DType.parse("int32"))
    per = len(out_cycles) // len(maps)
    ends = [out_cycles[(k + 1) * per - 1] for k in range(len(maps))]
    assert params.expected_cycles >= params.pixels * params.cycles_per_pixel
    for per_image in np.diff(ends):
        assert abs(per_image - params.expected_cycles) <= 0.05 * params.expected_cycles, \
            (per_image, params.expected_cycles)
