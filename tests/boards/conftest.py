"""Shared pieces of the boards tests: a stand-in network and a bit-level serial host."""

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

ELEM = signed(6)
LANES = 3


class AddOne(wiring.Component):
    """Stand-in network: adds 1 (wrapping) to each int6 element of a 3-element beat.

    One registered stage, ``i.valid & (~o.valid | o.ready)``.
    """

    def __init__(self, elem=ELEM, lanes=LANES):
        self.elem, self.lanes = elem, lanes
        layout = data.ArrayLayout(elem, lanes)
        super().__init__({
            "i_data": In(stream.Signature(layout)),
            "o_data": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_data, self.o_data
        m.d.comb += i.ready.eq(~o.valid | o.ready)
        with m.If(i.valid & i.ready):
            m.d.sync += o.valid.eq(1)
            for j in range(self.lanes):
                m.d.sync += o.payload[j].eq(i.payload[j] + 1)
        with m.Elif(o.ready):
            m.d.sync += o.valid.eq(0)
        return m


class Multiply(wiring.Component):
    """Stand-in with a multiplier: the int16 product of a beat's two int8 elements, with its
    operands and product registered (a DSP block's input and output registers)."""

    def __init__(self):
        super().__init__({
            "i_data": In(stream.Signature(data.ArrayLayout(signed(8), 2))),
            "o_data": Out(stream.Signature(signed(16))),
        })

    def elaborate(self, platform):
        m = Module()
        i, o = self.i_data, self.o_data
        a, b = Signal(signed(8)), Signal(signed(8))
        full = Signal()
        m.d.comb += i.ready.eq(~full | (~o.valid | o.ready))
        with m.If(i.valid & i.ready):
            m.d.sync += [a.eq(i.payload[0]), b.eq(i.payload[1]), full.eq(1)]
        with m.Elif(~o.valid | o.ready):
            m.d.sync += full.eq(0)
        with m.If(~o.valid | o.ready):
            m.d.sync += [o.payload.eq(a * b), o.valid.eq(full)]
        return m


def add_one_reference(x, bits=6):
    """numpy model of :class:`AddOne` on int arrays."""
    half = 1 << (bits - 1)
    return (np.asarray(x, dtype=np.int64) + 1 + half) % (1 << bits) - half


def pack_elements(values, bits):
    """Bit pattern of a beat whose element ``j`` is ``values[j]`` (two's complement)."""
    mask = (1 << bits) - 1
    return sum((int(v) & mask) << (j * bits) for j, v in enumerate(values))


def unpack_elements(pattern, bits, count):
    """Inverse of :func:`pack_elements` for signed elements."""
    mask, half = (1 << bits) - 1, 1 << (bits - 1)
    return [(((pattern >> (j * bits)) & mask) ^ half) - half for j in range(count)]


async def serial_send(ctx, line, payload, divisor, *, rng=None, max_gap=0, stop=1):
    """Drive ``line`` with 8N1 frames of ``payload`` bytes, idle gaps of 0..max_gap cycles.

    ``stop`` is the level sent in the stop bit (0 makes a framing error).
    """
    for byte in payload:
        if rng is not None and max_gap:
            await ctx.tick().repeat(rng.randrange(max_gap + 1) or 1)
        for bit in [0, *((byte >> n) & 1 for n in range(8)), stop]:
            ctx.set(line, bit)
            await ctx.tick().repeat(divisor)
        ctx.set(line, 1)


async def serial_receive(ctx, line, count, divisor, *, timeout):
    """Sample ``count`` 8N1 frames from ``line`` (checking start and stop bits)."""
    out = []
    cycles = 0
    while len(out) < count:
        while ctx.get(line):
            await ctx.tick()
            cycles += 1
            if cycles > timeout:
                raise TimeoutError(f"received {len(out)} of {count} bytes in {cycles} cycles")
        out.append(await serial_read_byte(ctx, line, divisor))
        cycles += 10 * divisor
    return out


async def serial_read_byte(ctx, line, divisor):
    """One 8N1 frame from ``line``, whose start bit has just begun (checking start and stop)."""
    await ctx.tick().repeat(divisor // 2)
    assert ctx.get(line) == 0, "start bit too short"
    byte = 0
    for n in range(8):
        await ctx.tick().repeat(divisor)
        byte |= ctx.get(line) << n
    await ctx.tick().repeat(divisor)
    assert ctx.get(line) == 1, "stop bit missing"
    return byte


@pytest.fixture
def serial():
    """The bit-level serial host helpers."""
    return SimpleNamespace(send=serial_send, receive=serial_receive, read_byte=serial_read_byte)


@pytest.fixture
def standin():
    """The stand-in network, its numpy model and beat packing helpers."""
    return SimpleNamespace(AddOne=AddOne, Multiply=Multiply, reference=add_one_reference,
                           pack=pack_elements, unpack=unpack_elements, bits=6, lanes=LANES)
