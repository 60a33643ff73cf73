"""The framed link (boards/frame.py, boards/framelink.py) in BoardTop under amaranth.sim, over
the serial line bit by bit: good, corrupted, truncated and garbage frames, against the protocol's
Python side and the stand-in network's numpy model."""

import random
import struct

import numpy as np
import pytest
from amaranth.sim import Simulator

from nnaccel.boards import frame as proto
from nnaccel.boards.link import pack_beat, unpack_beat
from nnaccel.boards.top import BoardTop

DIVISOR = 4
TIMEOUT = 400


def test_crc16_check_value():
    assert proto.crc16(b"123456789") == 0x29B1
    assert proto.crc16(b"") == 0xFFFF


def test_frame_reader_resynchronises():
    good = proto.encode_frame(7, proto.STATUS)
    bad = bytearray(proto.encode_frame(8, proto.RESET))
    bad[-1] ^= 1
    reader = proto.FrameReader()
    assert reader.feed(b"\x00\x13" + good[:3]) == []
    assert reader.feed(good[3:]) == [proto.Frame(7, proto.STATUS, b"")]
    with pytest.raises(proto.FrameError, match="CRC"):
        reader.feed(bytes(bad) + good)
    assert reader.feed(b"") == [proto.Frame(7, proto.STATUS, b"")]


def _uart_monitor(line, out, divisor, serial):
    async def monitor(ctx):
        while True:
            while ctx.get(line):
                await ctx.tick()
            out.append(await serial.read_byte(ctx, line, divisor))
    return monitor


def _run(standin, serial, script, *, seed=0, **options):
    """Run ``script(host)`` against a BoardTop around AddOne; ``host.exchange(raw)`` sends bytes
    and returns the reply frame (or None when none comes within the wait)."""
    network = standin.AddOne()
    shape = network.signature.members["i_data"].signature.members["payload"].shape
    top = BoardTop(network, divisor=DIVISOR, timeout=TIMEOUT, **options)
    sim = Simulator(top)
    sim.add_clock(1e-6)
    received = []
    rng = random.Random(seed)

    class Host:
        def __init__(self, ctx):
            self.ctx = ctx
            self.reader = proto.FrameReader()

        async def exchange(self, raw, wait=40 * 10 * DIVISOR + 2 * TIMEOUT):
            received.clear()
            await serial.send(self.ctx, top.rx, raw, DIVISOR, rng=rng, max_gap=3)
            for _ in range(wait):
                await self.ctx.tick()
                frames = self.reader.feed(received)
                received.clear()
                if frames:
                    assert len(frames) == 1
                    await self.ctx.tick().repeat(2 * 10 * DIVISOR)  # nothing else follows
                    assert received == []
                    return frames[0]
            return None

        async def command(self, seq, cmd, payload=b""):
            return await self.exchange(proto.encode_frame(seq, cmd, payload))

        async def status(self, seq=200):
            reply = await self.command(seq, proto.STATUS)
            assert reply.cmd == proto.ACK | proto.STATUS and reply.seq == seq
            return proto.Status.unpack(reply.payload)

    async def bench(ctx):
        await script(Host(ctx), shape, top)

    sim.add_testbench(_uart_monitor(top.tx, received, DIVISOR, serial), background=True)
    sim.add_testbench(bench)
    sim.run()


def _vectors(standin, shape, x):
    return b"".join(pack_beat(standin.pack(row, standin.bits), shape) for row in x)


def _outputs(standin, shape, raw):
    n = len(pack_beat(0, shape))
    return np.array([standin.unpack(unpack_beat(raw[i:i + n], shape), standin.bits,
                                    standin.lanes) for i in range(0, len(raw), n)])


def test_send_read_status(standin, serial):
    x = np.random.default_rng(1).integers(-32, 32, size=(9, standin.lanes))

    async def script(host, shape, top):
        reply = await host.command(1, proto.SEND, _vectors(standin, shape, x[:5]))
        assert (reply.seq, reply.cmd, reply.payload) == (1, proto.ACK | proto.SEND, b"")
        reply = await host.command(2, proto.SEND, _vectors(standin, shape, x[5:]))
        assert reply.cmd == proto.ACK | proto.SEND
        # READ in small pieces (limit 4), acknowledging what arrived
        got = b""
        while len(got) < 9 * 3:
            reply = await host.command(3, proto.READ, struct.pack("<HH", len(got), 4))
            assert reply.cmd == proto.ACK | proto.READ and 0 < len(reply.payload) <= 4
            got += reply.payload
        np.testing.assert_array_equal(_outputs(standin, shape, got), standin.reference(x))
        # a repeated READ with the same ack gets the same bytes (a lost reply is read again)
        again = await host.command(4, proto.READ, struct.pack("<HH", 24, 100))
        assert again.payload == got[24:]
        # freed bytes cannot be read again
        reply = await host.command(5, proto.READ, struct.pack("<HH", 23, 100))
        assert (reply.cmd, reply.payload) == (proto.ERROR, b"\x03")
        status = await host.status()
        assert (status.vectors_done, status.crc_errors, status.timeouts) == (9, 0, 0)
        assert (status.out_level, status.outstanding, status.read_pointer) == (3, 0, 24)
        assert (status.in_vector_bytes, status.out_vector_bytes) == (3, 3)
        assert status.last_send == 0x100 | 2 and status.clock_cycles > status.busy_cycles
        assert status.busy_cycles > 0 and status.version == proto.PROTOCOL_VERSION
        assert ctx_get(host, top.error) == 0

    _run(standin, serial, script)


def ctx_get(host, signal):
    return host.ctx.get(signal)


def test_bad_crc_is_refused_and_resent(standin, serial):
    x = [[1, 2, 3], [-32, 31, 0]]

    async def script(host, shape, top):
        raw = bytearray(proto.encode_frame(9, proto.SEND, _vectors(standin, shape, x)))
        raw[6] ^= 0x10
        reply = await host.exchange(bytes(raw))
        assert reply.cmd == proto.NAK
        status = await host.status()
        assert (status.crc_errors, status.vectors_done, status.outstanding) == (1, 0, 0)
        assert ctx_get(host, top.error) == 1
        reply = await host.command(9, proto.SEND, _vectors(standin, shape, x))
        assert reply.cmd == proto.ACK | proto.SEND
        # the same SEND again (its ACK was lost): acknowledged, not fed twice
        reply = await host.command(9, proto.SEND, _vectors(standin, shape, x))
        assert reply.cmd == proto.ACK | proto.SEND
        reply = await host.command(10, proto.READ, struct.pack("<HH", 0, 100))
        np.testing.assert_array_equal(_outputs(standin, shape, reply.payload),
                                      standin.reference(x))
        assert (await host.status()).vectors_done == 2

    _run(standin, serial, script)


def test_truncated_and_garbage_frames_never_hang(standin, serial):
    rng = random.Random(5)

    async def script(host, shape, top):
        full = proto.encode_frame(3, proto.SEND, _vectors(standin, shape, [[1, 1, 1]] * 4))
        assert await host.exchange(full[:9]) is None        # truncated: dropped by timeout
        # a corrupted length field: the device waits for bytes that never come, then times out
        raw = bytearray(full)
        raw[4] = 0x7F
        assert await host.exchange(bytes(raw)) is None
        # garbage with magic bytes in it
        garbage = bytes(rng.choice([proto.MAGIC, rng.randrange(256)]) for _ in range(60))
        await host.exchange(garbage)
        status = await host.status(seq=77)
        assert status.timeouts >= 2 and status.vectors_done == 0
        reply = await host.command(4, proto.SEND, _vectors(standin, shape, [[5, 6, 7]]))
        assert reply.cmd == proto.ACK | proto.SEND
        reply = await host.command(5, proto.READ, struct.pack("<HH", 0, 100))
        np.testing.assert_array_equal(_outputs(standin, shape, reply.payload), [[6, 7, 8]])

    _run(standin, serial, script)


def test_errors_busy_and_reset(standin, serial):
    async def script(host, shape, top):
        one = _vectors(standin, shape, [[1, 2, 3]])
        reply = await host.command(1, 0x33)
        assert (reply.cmd, reply.payload) == (proto.ERROR, b"\x01")
        reply = await host.command(2, proto.SEND, one[:2])            # not a whole vector
        assert (reply.cmd, reply.payload) == (proto.ERROR, b"\x02")
        reply = await host.command(3, proto.READ, struct.pack("<HH", 1, 10))  # nothing to ack
        assert (reply.cmd, reply.payload) == (proto.ERROR, b"\x03")
        # the output buffer holds 2 vectors of 3 bytes (out_capacity 8): a third waits
        assert (await host.command(4, proto.SEND, one * 2)).cmd == proto.ACK | proto.SEND
        assert (await host.command(5, proto.SEND, one)).cmd == proto.BUSY
        reply = await host.command(6, proto.READ, struct.pack("<HH", 0, 3))
        assert reply.payload == _vectors(standin, shape, [[2, 3, 4]])
        reply = await host.command(7, proto.READ, struct.pack("<HH", 3, 0))
        assert (await host.command(8, proto.SEND, one)).cmd == proto.ACK | proto.SEND
        assert (await host.status()).vectors_done == 3
        assert (await host.command(9, proto.RESET)).cmd == proto.ACK | proto.RESET
        status = await host.status(seq=9)   # a SEND seq 8 after reset would be fed again
        assert (status.vectors_done, status.busy_cycles, status.out_level,
                status.read_pointer, status.crc_errors, status.last_send) == (0, 0, 0, 0, 0, 0)
        assert (await host.command(8, proto.SEND, one)).cmd == proto.ACK | proto.SEND
        reply = await host.command(10, proto.READ, struct.pack("<HH", 0, 10))
        assert reply.payload == _vectors(standin, shape, [[2, 3, 4]])

    _run(standin, serial, script, out_capacity=8)


def test_selftest_runs_back_to_back_and_counts_mismatches(standin, serial):
    """20 stored vectors through AddOne at one beat per cycle; one expected beat is wrong on
    purpose: the status reports 1 mismatch and about 20 cycles (not the link's pace)."""
    rng = np.random.default_rng(7)
    x = rng.integers(-32, 32, size=(20, standin.lanes))
    y = standin.reference(x)
    inputs = [standin.pack(row, standin.bits) for row in x]
    expected = [standin.pack(row, standin.bits) for row in y]
    expected[13] ^= 1

    async def script(host, shape, top):
        status = await host.status()
        assert (status.selftest_vectors, status.selftest_running) == (20, 0)
        reply = await host.command(1, proto.SELFTEST)
        assert reply.cmd == proto.ACK | proto.SELFTEST
        status = await host.status()
        assert status.selftest_running == 0 and status.selftest_mismatches == 1
        assert 20 <= status.selftest_cycles <= 26
        assert status.vectors_done == 0           # self-test outputs never reach the buffer
        # the link still works afterwards, and a second run starts afresh
        reply = await host.command(2, proto.SEND, _vectors(standin, shape, x[:2]))
        assert reply.cmd == proto.ACK | proto.SEND
        reply = await host.command(3, proto.READ, struct.pack("<HH", 0, 100))
        np.testing.assert_array_equal(_outputs(standin, shape, reply.payload), y[:2])
        assert (await host.command(4, proto.SELFTEST)).cmd == proto.ACK | proto.SELFTEST
        status = await host.status(seq=201)
        assert (status.selftest_mismatches, status.vectors_done) == (1, 2)

    _run(standin, serial, script, selftest=(inputs, expected))


def test_selftest_absent_is_an_error(standin, serial):
    async def script(host, shape, top):
        reply = await host.command(1, proto.SELFTEST)
        assert (reply.cmd, reply.payload) == (proto.ERROR, b"\x01")
        assert (await host.status()).selftest_vectors == 0

    _run(standin, serial, script)
