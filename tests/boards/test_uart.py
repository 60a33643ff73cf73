"""UART transmitter/receiver and the byte/beat link blocks under amaranth.sim."""

import gc
import random

import pytest
from amaranth import Module, Shape, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.sim import Simulator

from nnaccel.boards.link import (
    BeatsToBytes,
    BytesToBeats,
    pack_beat,
    unpack_beat,
)
from nnaccel.boards.uart import UARTRx, UARTTx, check_divisor
from nnaccel.sim.amsim import STALL_PATTERNS, receive, run_stream_test, send


def _loopback(divisor):
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor=divisor)
    m.submodules.rx = rx = UARTRx(divisor=divisor)
    errors = Signal(8)
    m.d.comb += rx.rx.eq(tx.tx)
    with m.If(rx.error):
        m.d.sync += errors.eq(errors + 1)
    return m, tx, rx, errors


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("divisor", [4, 5, 13])
def test_uart_loopback(divisor, pattern):
    rng = random.Random(divisor)
    payload = [rng.randrange(256) for _ in range(40)] + [0x00, 0xFF, 0x55, 0xAA]
    m, tx, rx, errors = _loopback(divisor)
    sim = Simulator(m)
    sim.add_clock(1e-6)
    got = []

    async def source(ctx):
        await send(ctx, tx.i_data, payload, idle=pattern.idle, rng=random.Random(1))

    async def sink(ctx):
        got.extend(await receive(ctx, rx.o_data, len(payload), stall=pattern.stall,
                                 rng=random.Random(2), timeout=len(payload) * 12 * divisor + 100))
        assert ctx.get(errors) == 0

    sim.add_testbench(source, background=True)
    sim.add_testbench(sink)
    sim.run()
    assert got == payload


def test_uart_tx_line_format(serial):
    divisor = 6
    dut = UARTTx(divisor=divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    got = []

    async def source(ctx):
        await send(ctx, dut.i_data, [0x35, 0xC2])

    async def host(ctx):
        assert ctx.get(dut.tx) == 1
        got.extend(await serial.receive(ctx, dut.tx, 2, divisor, timeout=200))

    sim.add_testbench(source, background=True)
    sim.add_testbench(host)
    sim.run()
    assert got == [0x35, 0xC2]


def test_uart_rx_framing_error_and_glitch(serial):
    divisor = 8
    dut = UARTRx(divisor=divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    events = []

    async def line(ctx):
        await ctx.tick().repeat(5)
        ctx.set(dut.rx, 0)                       # glitch shorter than half a bit: ignored
        await ctx.tick().repeat(2)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        await serial.send(ctx, dut.rx, [0x12], divisor, stop=0)   # framing error: dropped
        await ctx.tick().repeat(2 * divisor)
        await serial.send(ctx, dut.rx, [0x34], divisor)           # then a good byte

    async def monitor(ctx):
        ctx.set(dut.o_data.ready, 1)
        for _ in range(30 * divisor):
            _clk, _rst, error, valid, payload = await ctx.tick().sample(
                dut.error, dut.o_data.valid, dut.o_data.payload)
            if error:
                events.append("error")
            if valid:
                events.append(payload)

    sim.add_testbench(line, background=True)
    sim.add_testbench(monitor)
    sim.run()
    assert events == ["error", 0x34]


def test_uart_rx_overrun(serial):
    divisor = 5
    dut = UARTRx(divisor=divisor)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    errors = []

    async def line(ctx):
        await serial.send(ctx, dut.rx, [1, 2, 3], divisor)

    async def monitor(ctx):                     # never ready: bytes 2 and 3 overrun
        for _ in range(40 * divisor):
            errors.append((await ctx.tick().sample(dut.error))[-1])
        assert ctx.get(dut.o_data.valid) and ctx.get(dut.o_data.payload) == 1

    sim.add_testbench(line, background=True)
    sim.add_testbench(monitor)
    sim.run()
    assert sum(errors) == 2


@pytest.mark.parametrize("bad,exc", [(3, ValueError), (0, ValueError), (4.0, TypeError),
                                     ("8", TypeError), (True, TypeError)])
def test_divisor_validated(bad, exc):
    with pytest.raises(exc, match="divisor"):
        check_divisor(bad)


SHAPES = {
    "u1": unsigned(1), "u8": unsigned(8), "u13": unsigned(13), "s70": signed(70),
    "int6x3": data.ArrayLayout(signed(6), 3), "u16": unsigned(16),
}


def _random_patterns(shape, count, seed):
    width = Shape.cast(shape).width
    rng = random.Random(seed)
    return [rng.getrandbits(width) for _ in range(count)]


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("name", list(SHAPES))
def test_bytes_to_beats(name, pattern):
    shape = SHAPES[name]
    beats = _random_patterns(shape, 25, 1)
    raw = [b for bits in beats for b in pack_beat(bits, shape)]
    dut = BytesToBeats(shape)
    (out,) = run_stream_test(dut, [(dut.i_data, raw)], [(dut.o_data, len(beats))],
                             pattern=pattern, seed=3)
    assert [_bits(b, shape) for b in out] == beats


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("name", list(SHAPES))
def test_beats_to_bytes(name, pattern):
    shape = SHAPES[name]
    beats = _random_patterns(shape, 25, 2)
    raw = [b for bits in beats for b in pack_beat(bits, shape)]
    dut = BeatsToBytes(shape)
    (out,) = run_stream_test(dut, [(dut.i_data, [_value(b, shape) for b in beats])],
                             [(dut.o_data, len(raw))], pattern=pattern, seed=4)
    assert out == raw


@pytest.mark.parametrize("pattern", STALL_PATTERNS, ids=str)
@pytest.mark.parametrize("width", [13, 70])
def test_link_round_trip(width, pattern):
    shape = unsigned(width)
    beats = _random_patterns(shape, 30, width)
    raw = [b for bits in beats for b in pack_beat(bits, shape)]
    m = Module()
    m.submodules.b2b = b2b = BytesToBeats(shape)
    m.submodules.b2y = b2y = BeatsToBytes(shape)
    wiring.connect(m, b2b.o_data, b2y.i_data)
    (out,) = run_stream_test(m, [(b2b.i_data, raw)], [(b2y.o_data, len(raw))],
                             pattern=pattern, seed=5)
    assert out == raw


def test_padding_bits_ignored():
    shape = unsigned(13)
    assert unpack_beat(b"\xff\xff", shape) == (1 << 13) - 1
    dut = BytesToBeats(shape)
    (out,) = run_stream_test(dut, [(dut.i_data, [0x34, 0xF2])], [(dut.o_data, 1)])
    assert out == [0x1234]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_link_shape_validated():
    with pytest.raises(TypeError, match="shape-castable"):
        BytesToBeats("x")
    with pytest.raises(ValueError, match="at least one bit"):
        BeatsToBytes(unsigned(0))
    with pytest.raises(ValueError, match="bytes"):
        unpack_beat(b"\x00", unsigned(13))
    with pytest.raises(ValueError, match="beat bits"):
        pack_beat(1 << 13, unsigned(13))
    gc.collect()       # the abandoned components warn when collected: while the filter holds


def _bits(payload, shape):
    """Bit pattern of a sampled payload (an int or a data.Const)."""
    if isinstance(payload, data.Const):
        return payload.as_bits()
    return payload & ((1 << Shape.cast(shape).width) - 1)


def _value(bits, shape):
    """What to ``ctx.set`` on a stream payload of ``shape`` for the bit pattern ``bits``."""
    if isinstance(shape, data.Layout):
        return data.Const(shape, bits)
    shape = Shape.cast(shape)
    if shape.signed and bits >> (shape.width - 1):
        return bits - (1 << shape.width)
    return bits
