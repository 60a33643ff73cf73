"""BoardTop under amaranth.sim: a stand-in network driven over the serial line bit by bit, one
SEND frame and one READ frame (boards/frame.py; the protocol's own tests are in
test_frame_link.py)."""

import gc
import random
import struct

import numpy as np
import pytest
from amaranth import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from nnaccel.boards import frame as proto
from nnaccel.boards.link import pack_beat, unpack_beat
from nnaccel.boards.platforms import board_names, get_board
from nnaccel.boards.top import BoardTop, baud_divisor
from nnaccel.gen.errors import UsageError


def _simulate(top, vectors, expect_bytes, divisor, serial, *, max_gap, seed):
    """Send ``vectors`` (bytes) in a SEND frame, then a READ frame; return the READ reply's
    payload (``expect_bytes`` output bytes) and the LED flags."""
    to_device = (proto.encode_frame(1, proto.SEND, bytes(vectors))
                 + proto.encode_frame(2, proto.READ, struct.pack("<HH", 0, expect_bytes)))
    payload, flags = _exchange(top, to_device, 14 + expect_bytes, divisor, serial,
                               max_gap=max_gap, seed=seed)
    replies = proto.FrameReader().feed(payload)
    assert [(r.seq, r.cmd) for r in replies] == [(1, proto.ACK | proto.SEND),
                                                 (2, proto.ACK | proto.READ)]
    return list(replies[1].payload), flags


def _exchange(top, to_device, expect_bytes, divisor, serial, *, max_gap, seed):
    sim = Simulator(top)
    sim.add_clock(1e-6)
    got, flags = [], {}

    async def host_tx(ctx):
        await serial.send(ctx, top.rx, to_device, divisor, rng=random.Random(seed),
                          max_gap=max_gap)

    async def host_rx(ctx):
        timeout = (len(to_device) + expect_bytes) * (10 * divisor + max_gap) + 1000
        got.extend(await serial.receive(ctx, top.tx, expect_bytes, divisor, timeout=timeout))
        flags["activity"] = ctx.get(top.activity)
        flags["error"] = ctx.get(top.error)

    sim.add_testbench(host_tx, background=True)
    sim.add_testbench(host_rx)
    sim.run()
    return got, flags


@pytest.mark.parametrize("divisor,max_gap", [(4, 0), (5, 17), (9, 40)])
def test_board_top_add_one(divisor, max_gap, serial, standin):
    rng = np.random.default_rng(divisor)
    network = standin.AddOne()
    layout_shape = network.signature.members["i_data"].signature.members["payload"].shape
    x = rng.integers(-32, 32, size=(7, standin.lanes))
    x[0] = [-32, 31, -1]                                  # wrap-around and sign extremes
    to_device = [b for row in x
                 for b in pack_beat(standin.pack(row, standin.bits), layout_shape)]
    nbytes = len(pack_beat(0, layout_shape))

    top = BoardTop(network, divisor=divisor)
    got, flags = _simulate(top, to_device, len(to_device), divisor, serial, max_gap=max_gap,
                           seed=divisor)

    beats = [unpack_beat(got[i:i + nbytes], layout_shape) for i in range(0, len(got), nbytes)]
    y = np.array([standin.unpack(b, standin.bits, standin.lanes) for b in beats])
    np.testing.assert_array_equal(y, standin.reference(x))
    assert flags == {"activity": 1, "error": 0}


def test_board_top_wide_odd_beats(serial):
    """A 70-bit beat (signed(35) x 2): 9 bytes each way, padding bits sent as zeros."""
    from amaranth.lib import data

    layout = data.ArrayLayout(signed(35), 2)

    class Negate(wiring.Component):
        i_data: In(stream.Signature(layout))
        o_data: Out(stream.Signature(layout))

        def elaborate(self, platform):
            m = Module()
            m.d.comb += [self.i_data.ready.eq(self.o_data.ready),
                         self.o_data.valid.eq(self.i_data.valid)]
            for j in range(2):
                m.d.comb += self.o_data.payload[j].eq(-self.i_data.payload[j])
            return m

    rng = random.Random(70)
    x = [[rng.randrange(-2**34 + 1, 2**34) for _ in range(2)] for _ in range(4)]
    mask = (1 << 35) - 1
    to_device = [b for row in x for b in pack_beat(sum((v & mask) << (35 * j)
                                                       for j, v in enumerate(row)), layout)]
    assert len(to_device) == 4 * 9
    divisor = 4
    got, flags = _simulate(BoardTop(Negate(), divisor=divisor), to_device, len(to_device),
                           divisor, serial, max_gap=3, seed=1)
    for n, row in enumerate(x):
        raw = got[9 * n:9 * n + 9]
        assert raw[-1] >> 6 == 0                          # bits 70..71 are padding: zero
        bits = unpack_beat(raw, layout)
        assert [((bits >> (35 * j)) & mask) for j in range(2)] == [(-v) & mask for v in row]
    assert flags["error"] == 0


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_board_top_needs_divisor_without_platform(standin):
    top = BoardTop(standin.AddOne())
    with pytest.raises(ValueError, match="divisor"):
        Simulator(top)
    del top
    gc.collect()       # the abandoned components warn when collected: while the filter holds


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_board_top_validates(standin):
    with pytest.raises(TypeError, match="i_data"):
        BoardTop(object())
    with pytest.raises(UsageError, match="baud"):
        BoardTop(standin.AddOne(), baud=0)
    with pytest.raises(ValueError, match="divisor"):
        BoardTop(standin.AddOne(), divisor=2)
    gc.collect()


def test_baud_divisor():
    assert baud_divisor(12e6, 115200) == 104
    assert baud_divisor(25e6, 115200) == 217
    assert baud_divisor(48e6, 115200) == 417
    with pytest.raises(UsageError, match="too fast"):
        baud_divisor(12e6, 4_000_000)
    with pytest.raises(UsageError, match="off by"):
        baud_divisor(1e6, 115200)
    with pytest.raises(UsageError, match="positive integer"):
        baud_divisor(12e6, 9600.0)


@pytest.mark.parametrize("board", board_names())
def test_board_top_prepares_for_every_board(board, standin):
    """The board top elaborates for every platform: UART pins, LEDs, clock (no tools run)."""
    plan = get_board(board).platform().build(BoardTop(standin.AddOne()), name="top",
                                             do_build=False)
    rtlil = plan.files["top.il"]
    assert "uart_0__tx" in rtlil and "uart_0__rx" in rtlil
    assert "network" in rtlil
