"""Join and fork units: add, concat and broadcast against the numpy reference under every stall
pattern on every input and the output."""

import numpy as np
import pytest

from nnaccel.hw.common import reference as common_ref
from nnaccel.hw.common.dtype import DType
from nnaccel.hw.common.outstage import StageKind
from nnaccel.hw.common.stream import Broadcast
from nnaccel.hw.join.engine import AddUnit, ConcatUnit
from nnaccel.hw.join.params import AddParams, ConcatParams
from nnaccel.hw.join.reference import add_acc, concat
from nnaccel.sim.amsim import STALL_PATTERNS, from_beats, run_stream_test, to_beats

from .map_streams import random_map


def _hwc(x):
    return x.transpose(1, 2, 0).reshape(-1)


def _encode(beats, dtype):
    return [[int(v) for v in beat] for beat in beats]


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("case", ["requant2", "identity3"])
def test_add_unit(pattern, case):
    rng = np.random.default_rng(7)
    c, h, w, images = 4, 3, 2, 2
    if case == "requant2":
        dts, scales, n = [DType.parse("uint4"), DType.parse("uint4")], (1, 1), 2
        out = DType.parse("uint4")
        mult, shift = rng.integers(1, 9, size=c), 3
        p = AddParams(in_dtypes=dts, scales=scales, channels=c, pixels=h * w, n=n,
                      out_kind="requant", out_dtype=out, mult=mult, shift=shift, relu=True)
    else:
        dts, scales, n = [DType.parse("int4"), DType.parse("uint3"), DType.parse("int4")], \
            (3, -2, 1), 4
        out = DType.parse("int8")
        p = AddParams(in_dtypes=dts, scales=scales, channels=c, pixels=h * w, n=n,
                      out_kind=StageKind.IDENTITY, out_dtype=out)
    xs = [[_hwc(random_map(rng, d, c, h, w)) for _ in range(images)] for d in dts]
    acc = add_acc([np.array(x) for x in xs], scales)
    if case == "requant2":
        want = common_ref.requant(acc.reshape(images, -1, c), mult, shift, 0, out.hi)
        want = np.asarray(want).reshape(images, -1)
    else:
        want = acc
    dut = AddUnit(p)
    sources = [(port, to_beats(x, n)) for port, x in zip(dut.in_ports, xs, strict=True)]
    stats = {}
    (got,) = run_stream_test(dut, sources, [(dut.o_data, p.beats * images)], pattern=pattern,
                             seed=3, timeout=5000, stats=stats)
    assert from_beats(got, c * h * w, n) == [[int(v) for v in row] for row in want]
    if pattern.stall:
        assert stats["refused"][0] > 0


@pytest.mark.parametrize("dtypes", [("uint4", "uint4"), ("int8", "uint8")])
def test_add_unit_inputs_connect_as_inputs(dtypes):
    """Every input port (one array when the dtypes agree, named members when they differ) is an
    input of the unit: wiring.connect joins a producer's output to it (a graph of an int8
    branch and a uint8 skip failed here)."""
    from amaranth.hdl import Fragment, Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import Out

    from nnaccel.hw.common.stream import vector_stream

    dts = [DType.parse(d) for d in dtypes]
    p = AddParams(in_dtypes=dts, scales=(1, 1), channels=2, pixels=1, n=2,
                  out_kind=StageKind.IDENTITY, out_dtype=DType.parse("int16"))
    dut = AddUnit(p)
    m = Module()
    m.submodules.dut = dut
    for d, port in zip(dts, dut.in_ports, strict=True):
        src = wiring.Signature({"o": Out(vector_stream(d.shape, 2))}).create()
        wiring.connect(m, src.o, port)
    assert all(isinstance(port.signature, wiring.FlippedSignature) for port in dut.in_ports)
    Fragment.get(m, None)  # elaborates (an unelaborated component warns at collection)


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("channels,n", [((2, 4, 6), 2), ((3, 1), 1)])
def test_concat_unit(pattern, channels, n):
    rng = np.random.default_rng(11)
    h, w, images = 2, 3, 2
    dt = DType.parse("int5")
    p = ConcatParams(dtype=dt, channels=channels, pixels=h * w, n=n)
    xs = [[_hwc(random_map(rng, dt, ci, h, w)) for _ in range(images)] for ci in channels]
    want = concat([np.array(x) for x in xs], channels)
    dut = ConcatUnit(p)
    sources = [(dut.i_data[i], to_beats(x, n)) for i, x in enumerate(xs)]
    (got,) = run_stream_test(dut, sources, [(dut.o_data, p.beats * images)], pattern=pattern,
                             seed=5, timeout=5000)
    assert from_beats(got, sum(channels) * h * w, n) == want.tolist()


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("k", [2, 3])
def test_broadcast(pattern, k):
    rng = np.random.default_rng(k)
    beats = [int(v) for v in rng.integers(0, 256, size=40)]
    dut = Broadcast(8, k)
    outs = run_stream_test(dut, [(dut.i_data, beats)],
                           [(dut.o_data[j], len(beats)) for j in range(k)], pattern=pattern,
                           seed=9, timeout=2000)
    for got in outs:
        assert [int(v) for v in got] == beats


def test_params_validated():
    u4 = DType.parse("uint4")
    with pytest.raises(ValueError, match="scales"):
        AddParams(in_dtypes=[u4, u4], scales=(1,), channels=4, pixels=1, n=2,
                  out_kind="identity", out_dtype=u4)
    with pytest.raises(ValueError, match="divide"):
        AddParams(in_dtypes=[u4, u4], scales=(1, 1), channels=4, pixels=1, n=3,
                  out_kind="identity", out_dtype=u4)
    with pytest.raises(ValueError, match="mult is required"):
        AddParams(in_dtypes=[u4, u4], scales=(1, 1), channels=4, pixels=1, n=2,
                  out_kind="requant", out_dtype=u4)
    with pytest.raises(ValueError, match="divide"):
        ConcatParams(dtype=u4, channels=(2, 3), pixels=1, n=2)
    with pytest.raises(ValueError, match="at least 2"):
        ConcatParams(dtype=u4, channels=(2,), pixels=1, n=2)
    with pytest.raises(TypeError):
        ConcatParams(dtype="uint4", channels=(2, 2), pixels=1, n=2)


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
def test_graph_fork_and_beats_that_do_not_divide(pattern):
    """A GraphNetwork whose input (3 elements per beat) is forked into both ports of a concat
    taking 2 per beat: each edge converts through lcm(3, 2) = 6 elements per beat."""
    from nnaccel.hw.common.graph import GraphNetwork, Node, Port

    rng = np.random.default_rng(4)
    c, h, w, images = 6, 2, 2, 2
    dt = DType.parse("int4")
    unit = ConcatUnit(ConcatParams(dtype=dt, channels=(c, c), pixels=h * w, n=2))
    ports = tuple(Port(source="input", fifo_depth=3, count=c * h * w, group=c)
                  for _ in range(2))
    net = GraphNetwork([Node(name="cat", engine=unit, ports=ports, in_beat=2, out_beat=2)],
                       in_shape=dt.shape, in_beat=3, out_shape=dt.shape)
    xs = [_hwc(random_map(rng, dt, c, h, w)) for _ in range(images)]
    want = concat([np.array(xs), np.array(xs)], (c, c))
    (got,) = run_stream_test(net, [(net.i_data, to_beats(xs, 3))],
                             [(net.o_data, 2 * c * h * w // 2 * images)], pattern=pattern,
                             seed=6, timeout=5000)
    assert from_beats(got, 2 * c * h * w, 2) == want.tolist()


def test_an_edge_of_beats_that_do_not_divide_keeps_the_narrower_rate():
    """An input of 4 elements a beat forked into both ports of an add taking 10 a beat: the
    edges (through lcm(4, 10) = 20) pass 4 elements a cycle, so 3 images of 4 pixels x 20
    channels arrive in 60 cycles plus a few of latency (through gcd(4, 10) = 2 they took
    120); no stalls, bit-exact."""
    from nnaccel.hw.common.graph import GraphNetwork, Node, Port

    rng = np.random.default_rng(5)
    c, h, w, images = 20, 2, 2, 3
    dt = DType.parse("int4")
    p = AddParams(in_dtypes=[dt, dt], scales=(1, -2), channels=c, pixels=h * w, n=10,
                  out_kind="identity", out_dtype=DType.parse("int8"))
    ports = tuple(Port(source="input", fifo_depth=2, count=c * h * w, group=c)
                  for _ in range(2))
    net = GraphNetwork([Node(name="add", engine=AddUnit(p), ports=ports, in_beat=10,
                             out_beat=10)],
                       in_shape=dt.shape, in_beat=4, out_shape=p.out_dtype.shape)
    xs = [_hwc(random_map(rng, dt, c, h, w)) for _ in range(images)]
    want = [[-v for v in x.tolist()] for x in xs]
    cycles = images * c * h * w // 4
    (got,) = run_stream_test(net, [(net.i_data, to_beats(xs, 4))],
                             [(net.o_data, images * c * h * w // 10)],
                             pattern=STALL_PATTERNS[0], timeout=cycles + 6)
    assert from_beats(got, c * h * w, 10) == want
