"""hw/common/reference.py's feature-map arithmetic (SPEC 2.1b) against SPEC written out again.

Every expected value comes from plain Python loops over Python integers, transcribed from
../shared/SPEC.md (no numpy arithmetic, no helper of the implementation), and, where float64
is exact, from torch.nn.functional.
"""

import itertools

import numpy as np
import pytest

from nnaccel.hw.common import reference as ref

torch = pytest.importorskip("torch")
F = torch.nn.functional

# --- SPEC 2.1b, transcribed ---------------------------------------------------------------------


def spec_element(x, c, r, q, padding, pad_value):
    """Element (c, r, q) of the padded input xp: r, q count from the padded map's corner."""
    top, left = padding[0], padding[1]
    r, q = r - top, q - left
    if 0 <= r < len(x[c]) and 0 <= q < len(x[c][0]):
        return int(x[c][r][q])
    return pad_value


def spec_outputs(size, kernel, stride, dilation, before, after):
    """How many windows fit along one axis, counted one by one."""
    count = 0
    while count * stride + dilation * (kernel - 1) < size + before + after:
        count += 1
    return count


def spec_conv(w, x, bias, groups, stride, dilation, padding, pad_value):
    """acc[m][oh][ow] = bias[m] + sum W[m, c, i, j] * xp[g*C/G + c, oh*SH + i*DH, ow*SW + j*DW]."""
    m_count, cg, kh, kw = len(w), len(w[0]), len(w[0][0]), len(w[0][0][0])
    c_count, h, wd = len(x), len(x[0]), len(x[0][0])
    oh_n = spec_outputs(h, kh, stride[0], dilation[0], padding[0], padding[2])
    ow_n = spec_outputs(wd, kw, stride[1], dilation[1], padding[1], padding[3])
    per_group = m_count // groups
    assert cg * groups == c_count
    out = []
    for m in range(m_count):
        g = m // per_group
        plane = []
        for oh in range(oh_n):
            row = []
            for ow in range(ow_n):
                total = 0 if bias is None else int(bias[m])
                for c in range(cg):
                    for i in range(kh):
                        for j in range(kw):
                            total += int(w[m][c][i][j]) * spec_element(
                                x, g * cg + c, oh * stride[0] + i * dilation[0],
                                ow * stride[1] + j * dilation[1], padding, pad_value)
                row.append(total)
            plane.append(row)
        out.append(plane)
    return out


def spec_pool(x, op, kernel, stride, padding):
    """max: the largest input element of each window; sum: the sum of its input elements."""
    h, wd = len(x[0]), len(x[0][0])
    oh_n = spec_outputs(h, kernel[0], stride[0], 1, padding[0], padding[2])
    ow_n = spec_outputs(wd, kernel[1], stride[1], 1, padding[1], padding[3])
    out = []
    for plane in x:
        rows = []
        for oh in range(oh_n):
            row = []
            for ow in range(ow_n):
                elems = []
                for i in range(kernel[0]):
                    for j in range(kernel[1]):
                        r, q = oh * stride[0] + i - padding[0], ow * stride[1] + j - padding[1]
                        if 0 <= r < h and 0 <= q < wd:
                            elems.append(int(plane[r][q]))
                assert elems, "a window without input elements"
                row.append(max(elems) if op == "max" else sum(elems))
            rows.append(row)
        out.append(rows)
    return out


def as_lists(arr):
    """A numpy array as nested lists of Python ints (object arrays included)."""
    return np.asarray(arr).tolist()


def to_int(nested):
    if isinstance(nested, list):
        return [to_int(v) for v in nested]
    return int(nested)


# --- random shapes covering the cases the SPEC names --------------------------------------------


def random_conv_case(rng):
    """A random convolution: odd/even maps, C = 1, 1x1 and non-square kernels up to 5, strides
    1..3, dilations 1..2, asymmetric padding, groups incl. depthwise with a multiplier."""
    kind = rng.choice(["dense", "grouped", "depthwise", "pointwise", "one_channel"])
    if kind == "depthwise":
        groups = c = int(rng.integers(1, 5))
        m = c * int(rng.integers(1, 4))
    elif kind == "grouped":
        groups = int(rng.integers(2, 4))
        c, m = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    else:
        groups, c, m = 1, 1 if kind == "one_channel" else int(rng.integers(1, 5)), \
            int(rng.integers(1, 5))
    kh, kw = (1, 1) if kind == "pointwise" else (int(v) for v in rng.integers(1, 6, size=2))
    sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
    dh, dw = (int(v) for v in rng.integers(1, 3, size=2))
    padding = tuple(int(v) for v in rng.integers(0, 3, size=4))
    h = int(rng.integers(max(1, dh * (kh - 1) + 1 - padding[0] - padding[2]), 10))
    wd = int(rng.integers(max(1, dw * (kw - 1) + 1 - padding[1] - padding[3]), 10))
    return dict(c=c, m=m, groups=groups, kernel=(kh, kw), stride=(sh, sw),
                dilation=(dh, dw), padding=padding, h=h, w=wd)


@pytest.mark.parametrize("seed", range(60))
def test_conv2d_acc_matches_the_spec(seed):
    rng = np.random.default_rng(seed)
    case = random_conv_case(rng)
    bipolar = seed % 4 == 3
    shape_w = (case["m"], case["c"] // case["groups"], *case["kernel"])
    shape_x = (2, case["c"], case["h"], case["w"])
    if bipolar:
        w, x = rng.choice([-1, 1], size=shape_w), rng.choice([-1, 1], size=shape_x)
        pad_value, bias = int(rng.choice([-1, 1])), None
    else:
        w, x = rng.integers(-8, 8, size=shape_w), rng.integers(0, 16, size=shape_x)
        pad_value, bias = int(rng.integers(0, 16)), rng.integers(-100, 100, size=case["m"])
    acc = ref.conv2d_acc(w, x, bias, groups=case["groups"], stride=case["stride"],
                         dilation=case["dilation"], padding=case["padding"],
                         pad_value=pad_value)
    expected = [spec_conv(w.tolist(), xb.tolist(), bias, case["groups"], case["stride"],
                          case["dilation"], case["padding"], pad_value) for xb in x]
    assert to_int(as_lists(acc)) == expected
    assert ref.conv2d_out_shape((case["c"], case["h"], case["w"]), case["m"], case["kernel"],
                                case["stride"], case["dilation"], case["padding"]) \
        == acc.shape[1:]
    # a single map (C, H, W) gives the same as a batch of one
    one = ref.conv2d_acc(w, x[0], bias, groups=case["groups"], stride=case["stride"],
                         dilation=case["dilation"], padding=case["padding"],
                         pad_value=pad_value)
    assert to_int(as_lists(one)) == expected[0]


@pytest.mark.parametrize("seed", range(40))
def test_conv2d_acc_matches_torch(seed):
    """float64 is exact here: every partial sum is far below 2**53."""
    rng = np.random.default_rng(1000 + seed)
    case = random_conv_case(rng)
    w = rng.integers(-128, 128, size=(case["m"], case["c"] // case["groups"], *case["kernel"]))
    x = rng.integers(-128, 128, size=(3, case["c"], case["h"], case["w"]))
    bias = rng.integers(-1000, 1000, size=case["m"])
    pad_value = int(rng.integers(-128, 128))
    top, left, bottom, right = case["padding"]
    xp = F.pad(torch.tensor(x, dtype=torch.float64), (left, right, top, bottom), value=pad_value)
    expected = F.conv2d(xp, torch.tensor(w, dtype=torch.float64),
                        torch.tensor(bias, dtype=torch.float64), stride=case["stride"],
                        dilation=case["dilation"], groups=case["groups"]).numpy()
    acc = ref.conv2d_acc(w, x, bias, groups=case["groups"], stride=case["stride"],
                         dilation=case["dilation"], padding=case["padding"],
                         pad_value=pad_value, in_lo=-128, in_hi=127)
    assert acc.dtype == np.int64
    assert acc.shape == expected.shape
    assert np.array_equal(acc, expected.astype(np.int64))


def test_conv2d_acc_is_exact_beyond_int64():
    """int32 weights and inputs over a 3x3x3 patch: the sums overflow int64."""
    rng = np.random.default_rng(7)
    lo, hi = -(1 << 31), (1 << 31) - 1
    w = rng.choice([lo, hi], size=(2, 3, 3, 3))
    w[0] = lo
    x = np.full((1, 3, 4, 4), lo, dtype=np.int64)
    bias = np.array([hi, lo])
    acc = ref.conv2d_acc(w, x, bias, padding=(1, 1, 0, 0), pad_value=lo, in_lo=lo, in_hi=hi)
    expected = spec_conv(w.tolist(), x[0].tolist(), bias.tolist(), 1, (1, 1), (1, 1),
                         (1, 1, 0, 0), lo)
    assert to_int(as_lists(acc[0])) == expected
    assert expected[0][0][0] == 27 * lo * lo + hi  # 27 * 2**62 + ...: no int64 holds it
    assert acc.dtype == object


def test_conv2d_acc_refuses_a_window_larger_than_the_padded_input():
    with pytest.raises(ValueError, match="larger than the padded input"):
        ref.conv2d_acc(np.ones((1, 1, 3, 1)), np.ones((1, 1, 1, 1)), padding=(0, 0, 1, 0))
    with pytest.raises(ValueError, match="does not fit"):
        ref.conv2d_acc(np.ones((3, 1, 1, 1)), np.ones((1, 2, 2, 2)), groups=2)


@pytest.mark.parametrize("dtype", [("bipolar", 1), ("uint", 1), ("int", 2)])
@pytest.mark.parametrize("seed", range(6))
def test_conv2d_acc_bounds_are_tight(dtype, seed):
    """Brute force over every input of a tiny map: the bounds are the exact extremes."""
    rng = np.random.default_rng(seed)
    lo, hi = (-1, 1) if dtype[0] == "bipolar" else \
        ((0, 1) if dtype[0] == "uint" else (-2, 1))
    values = [-1, 1] if dtype[0] == "bipolar" else list(range(lo, hi + 1))
    c, h, wd = [(1, 3, 3), (2, 2, 2), (1, 2, 3)][seed % 3]  # at most 4**9 inputs
    kh, kw = int(rng.integers(1, min(h, 2) + 1)), int(rng.integers(1, min(wd, 3) + 1))
    padding = tuple(int(v) for v in rng.integers(0, 2, size=4))
    pad_value = int(rng.choice(values))
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    w = rng.integers(-5, 6, size=(2, c, kh, kw))
    bias = rng.integers(-9, 10, size=2)
    every = np.array(list(itertools.product(values, repeat=c * h * wd))).reshape(-1, c, h, wd)
    acc = ref.conv2d_acc(w, every, bias, stride=stride, padding=padding, pad_value=pad_value)
    blo, bhi = ref.conv2d_acc_bounds(w, (c, h, wd), lo, hi, bias, stride=stride,
                                     padding=padding, pad_value=pad_value)
    assert to_int(list(blo)) == acc.min(axis=(0, 2, 3)).tolist()
    assert to_int(list(bhi)) == acc.max(axis=(0, 2, 3)).tolist()


# --- pooling ------------------------------------------------------------------------------------


def random_pool_case(rng):
    kh, kw = (int(v) for v in rng.integers(1, 5, size=2))
    stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
    padding = tuple(int(rng.integers(0, k)) for k in (kh, kw, kh, kw))  # keeps inputs in windows
    h = int(rng.integers(max(1, kh - padding[0] - padding[2]), 11))
    wd = int(rng.integers(max(1, kw - padding[1] - padding[3]), 11))
    return (kh, kw), stride, padding, h, wd


@pytest.mark.parametrize("op", ["max", "sum"])
@pytest.mark.parametrize("seed", range(40))
def test_pool2d_matches_the_spec(op, seed):
    rng = np.random.default_rng(seed)
    kernel, stride, padding, h, wd = random_pool_case(rng)
    c = int(rng.integers(1, 4))
    if seed % 3 == 2:
        x = rng.choice([-1, 1], size=(2, c, h, wd))  # bipolar: max is +1 if any +1
    else:
        x = rng.integers(-128, 128, size=(2, c, h, wd))
    counts = ref.pool2d_counts((h, wd), kernel, stride, padding)
    if counts.size == 0 or counts.min() < 1:
        with pytest.raises(ValueError):
            ref.pool2d(x, op, kernel, stride, padding)
        return
    out = ref.pool2d(x, op, kernel, stride, padding)
    expected = [spec_pool(xb.tolist(), op, kernel, stride, padding) for xb in x]
    assert to_int(as_lists(out)) == expected
    ones = spec_pool(np.ones((1, h, wd), dtype=int).tolist(), "sum", kernel, stride, padding)
    assert counts.tolist() == ones[0]


def test_pool2d_padding_never_wins_and_adds_nothing():
    x = np.full((1, 1, 3, 3), -100)
    assert ref.pool2d(x, "max", (3, 3), (1, 1), (1, 1, 1, 1)).tolist() == \
        [[[[-100] * 3] * 3]]
    assert ref.pool2d(x, "sum", (3, 3), (2, 2), (1, 1, 1, 1)).tolist() == \
        [[[[-400, -400], [-400, -400]]]]
    bip = -np.ones((1, 2, 2))
    bip[0, 1, 1] = 1
    assert ref.pool2d(bip, "max", (2, 2), (1, 1), (1, 1, 0, 0)).tolist() == \
        [[[-1, -1], [-1, 1]]]


def test_pool2d_refuses_windows_of_only_padding():
    with pytest.raises(ValueError, match="no input element"):
        ref.pool2d(np.ones((1, 1, 2, 2)), "max", (2, 2), (2, 2), (2, 0, 0, 0))
    with pytest.raises(ValueError, match="unknown pooling"):
        ref.pool2d(np.ones((1, 1, 2, 2)), "avg", (2, 2))


@pytest.mark.parametrize("seed", range(30))
def test_pool2d_matches_torch(seed):
    """Symmetric padding of at most half the kernel (what torch accepts); global pooling every
    third case. sumpool is avg_pool2d with divisor 1 (zero padding adds nothing)."""
    rng = np.random.default_rng(2000 + seed)
    c, h, wd = int(rng.integers(1, 4)), int(rng.integers(1, 12)), int(rng.integers(1, 12))
    x = rng.integers(-(1 << 20), 1 << 20, size=(2, c, h, wd))
    if seed % 3 == 0:
        kernel, stride, pad = (h, wd), (h, wd), (0, 0)
    else:
        kernel = (int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(wd, 5) + 1)))
        stride = tuple(int(v) for v in rng.integers(1, 4, size=2))
        pad = (int(rng.integers(0, kernel[0] // 2 + 1)), int(rng.integers(0, kernel[1] // 2 + 1)))
    padding = (pad[0], pad[1], pad[0], pad[1])
    xt = torch.tensor(x, dtype=torch.float64)
    tmax = F.max_pool2d(xt, kernel, stride, pad).numpy()
    tsum = F.avg_pool2d(xt, kernel, stride, pad, divisor_override=1).numpy()
    assert np.array_equal(ref.pool2d(x, "max", kernel, stride, padding), tmax.astype(np.int64))
    assert np.array_equal(ref.pool2d(x, "sum", kernel, stride, padding), tsum.astype(np.int64))
    area = kernel[0] * kernel[1]
    tavg = F.avg_pool2d(xt, kernel, stride, pad, count_include_pad=True).numpy() * area
    assert np.array_equal(ref.pool2d(x, "sum", kernel, stride, padding),
                          np.round(tavg).astype(np.int64))
    if seed % 3 == 0:
        assert ref.pool2d(x, "sum", kernel).shape == (2, c, 1, 1)
        assert np.array_equal(ref.pool2d(x, "sum", kernel)[:, :, 0, 0], x.sum(axis=(2, 3)))


# --- add and concat -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(10))
def test_add_acc_matches_the_spec(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 5))
    shape = (2, 3, 4, 5) if seed % 2 else (3, 7)
    big = seed >= 5
    lim = 1 << 31 if big else 16
    xs = [rng.integers(-lim, lim, size=shape) for _ in range(n)]
    scales = [int(s) for s in rng.integers(-(1 << 16) + 1, 1 << 16, size=n)]
    acc = ref.add_acc(xs, scales)
    flat = [x.reshape(-1).tolist() for x in xs]
    expected = [sum(s * int(col[k]) for s, col in zip(scales, flat, strict=True))
                for k in range(len(flat[0]))]
    assert to_int(np.asarray(acc).reshape(-1).tolist()) == expected
    assert np.asarray(acc).shape == shape
    lo, hi = ref.add_acc_bounds(scales, [(-lim, lim - 1)] * n)
    assert lo == sum(min(s * -lim, s * (lim - 1)) for s in scales)
    assert hi == sum(max(s * -lim, s * (lim - 1)) for s in scales)
    assert to_int(np.asarray(ref.add_acc(xs)).reshape(-1).tolist()) == \
        [sum(int(col[k]) for col in flat) for k in range(len(flat[0]))]


def test_add_acc_stays_exact_beyond_int64():
    x = np.full((1, 2), (1 << 31) - 1)
    acc = ref.add_acc([x] * 4, [(1 << 16) - 1] * 4)
    assert acc.tolist() == [[4 * ((1 << 16) - 1) * ((1 << 31) - 1)] * 2]
    huge = np.array([[1 << 61]], dtype=np.int64)
    assert ref.add_acc([huge, huge, huge], [3, 3, 3]).tolist() == [[9 << 61]]


def test_concat_joins_channels_in_order():
    a = np.arange(2 * 1 * 2 * 3).reshape(2, 1, 2, 3)
    b = 100 + np.arange(2 * 2 * 2 * 3).reshape(2, 2, 2, 3)
    out = ref.concat([a, b, a])
    assert out.shape == (2, 4, 2, 3)
    for n in range(2):
        assert out[n].tolist() == a[n].tolist() + b[n].tolist() + a[n].tolist()
    assert ref.concat([a[0], b[0]]).tolist() == a[0].tolist() + b[0].tolist()
