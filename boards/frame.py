"""The framed host link protocol: frames, CRC, commands and replies (host side in Python).

Every exchange is one frame from the host and one reply frame from the device; the device never
speaks unasked. Both directions use the same frame layout (all multi-byte fields little-endian
except the CRC)::

    offset  size  field
    0       1     magic, MAGIC (0xA5)
    1       1     seq: sequence number, echoed in the reply
    2       1     cmd: a command (host to device) or a reply code (device to host)
    3       2     length: number of payload bytes
    5       len   payload
    5+len   2     CRC-16/IBM-3740 (CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no
                  reflection) of bytes 0 .. 5+len-1, most significant byte first

Commands (host to device):

``SEND`` (0x01)
    Payload: whole input vectors, each as its beats on the wire (:mod:`nnaccel.boards.link`:
    ``ceil(width / 8)`` bytes per beat, least significant first). The device checks the CRC,
    then feeds the vectors to the network back to back and replies ``ACK``. It replies ``BUSY``
    (nothing fed) when the previous batch is still being fed, or when its output buffer could
    not hold the outputs of this batch together with those not yet read; the host reads
    outputs and sends again. A ``SEND`` whose ``seq`` equals that of the last accepted ``SEND``
    is acknowledged without feeding anything again (its first reply was lost): the host gives
    consecutive ``SEND`` frames different sequence numbers.
``READ`` (0x02)
    Payload: 4 bytes, ``ack`` and ``limit`` (u16 each): ``ack`` is the number of output bytes
    the host has received so far, modulo 2**16. The device frees the bytes before ``ack`` and
    replies ``ACK`` with the next output bytes, at most ``limit`` and at most the device's
    ``max_read``, so a lost reply is read again by repeating the same ``READ`` (a host on a
    noisy line asks for fewer bytes per reply).
``STATUS`` (0x03)
    No payload. Reply ``ACK`` with :data:`STATUS_FORMAT` (see :class:`Status`).
``RESET`` (0x04)
    No payload. Reply ``ACK``, then the device resets the link, its buffers and counters and the
    network.
``SELFTEST`` (0x05)
    No payload. On a device built with a self-test (``nnaccel build --self-test N``): reply
    ``ACK`` and feed the N stored input vectors to the network back to back at full clock,
    comparing its outputs with the N stored expected ones; STATUS reports the run's cycles and
    mismatches. ``BUSY`` while a batch or a self-test is in the network; ``ERROR`` 1 on a
    device without one.

Replies (device to host) carry the command's ``seq``: ``ACK`` is ``0x80 | cmd``; ``NAK``
(0xE0) refuses a frame whose CRC is wrong (the host resends it); ``BUSY`` (0xE1); ``ERROR``
(0xE2, one payload byte: :data:`ERROR_REASONS`) for a well-formed frame the device cannot
execute.

Timeouts: the device drops a frame whose next byte does not arrive within its receive timeout
(counted in the status), and then waits for the next magic byte; bytes that arrive while it
replies are dropped. A host that sends garbage therefore at worst gets no reply; it waits
longer than the device's timeout and sends again. Nothing the host sends can hang the device.
"""

import struct
from dataclasses import dataclass

__all__ = [
    "MAGIC", "HEADER_BYTES", "CRC_BYTES", "SEND", "READ", "STATUS", "RESET", "SELFTEST",
    "ACK", "NAK",
    "BUSY", "ERROR", "ERROR_REASONS", "STATUS_FORMAT", "PROTOCOL_VERSION", "crc16",
    "encode_frame", "Frame", "FrameError", "FrameReader", "Status",
]

MAGIC = 0xA5
HEADER_BYTES = 5
CRC_BYTES = 2

SEND, READ, STATUS, RESET, SELFTEST = 0x01, 0x02, 0x03, 0x04, 0x05
ACK = 0x80
NAK, BUSY, ERROR = 0xE0, 0xE1, 0xE2

#: ERROR reply payload byte -> meaning.
ERROR_REASONS = {
    1: "unknown command",
    2: "payload length is wrong for the command (SEND: not whole vectors, or more than the "
       "input buffer holds)",
    3: "READ acknowledges more bytes than were available",
}

PROTOCOL_VERSION = 1

#: STATUS reply payload: vectors_done, busy_cycles, clock_cycles (u32), crc_errors, timeouts,
#: out_level, outstanding, in_vector_bytes, out_vector_bytes, in_capacity, out_capacity,
#: read_pointer, max_read, last_send (u16), version (u8), selftest_vectors (u16),
#: selftest_cycles (u32), selftest_mismatches (u16), selftest_running (u8).
STATUS_FORMAT = "<IIIHHHHHHHHHHHBHIHB"

_POLY = 0x1021


def crc16(data, crc=0xFFFF):
    """CRC-16/IBM-3740 of ``data`` (bytes-like), bit by bit (check value of b"123456789":
    0x29B1)."""
    for byte in bytes(data):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ _POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def encode_frame(seq, cmd, payload=b""):
    """The bytes of one frame."""
    payload = bytes(payload)
    if not 0 <= seq < 256 or not 0 <= cmd < 256:
        raise ValueError(f"seq and cmd are bytes, not {seq!r}, {cmd!r}")
    if len(payload) >= 1 << 16:
        raise ValueError(f"a payload holds at most 65535 bytes, not {len(payload)}")
    body = bytes([MAGIC, seq, cmd]) + len(payload).to_bytes(2, "little") + payload
    return body + crc16(body).to_bytes(2, "big")


@dataclass(frozen=True)
class Frame:
    """One decoded frame."""

    seq: int
    cmd: int
    payload: bytes


class FrameError(Exception):
    """A received frame was malformed (bad CRC, or too long)."""


class FrameReader:
    """Incremental decoder of frames from a byte stream.

    Feed it bytes with :meth:`feed`; it returns the frames completed so far. Bytes before a
    magic byte are skipped. A frame with a bad CRC raises :class:`FrameError` (after which the
    reader starts hunting again from the byte after that frame's magic).

    Parameters
    ----------
    max_payload : int
        Longest payload accepted; a longer length field is treated as a corrupt header.
    """

    def __init__(self, max_payload=65535):
        self.max_payload = max_payload
        self.buffer = bytearray()
        self.skipped = 0

    def feed(self, data):
        """Add ``data``; return the list of complete, valid frames."""
        self.buffer += bytes(data)
        frames = []
        while True:
            start = self.buffer.find(MAGIC)
            if start < 0:
                self.skipped += len(self.buffer)
                self.buffer.clear()
                return frames
            self.skipped += start
            del self.buffer[:start]
            if len(self.buffer) < HEADER_BYTES:
                return frames
            length = int.from_bytes(self.buffer[3:5], "little")
            if length > self.max_payload:
                del self.buffer[:1]
                self.skipped += 1
                raise FrameError(f"frame length {length} exceeds {self.max_payload}")
            total = HEADER_BYTES + length + CRC_BYTES
            if len(self.buffer) < total:
                return frames
            raw = bytes(self.buffer[:total])
            if crc16(raw[:-CRC_BYTES]) != int.from_bytes(raw[-CRC_BYTES:], "big"):
                del self.buffer[:1]
                self.skipped += 1
                raise FrameError("bad CRC")
            del self.buffer[:total]
            frames.append(Frame(raw[1], raw[2], raw[HEADER_BYTES:-CRC_BYTES]))


@dataclass(frozen=True)
class Status:
    """The device's STATUS reply.

    Attributes
    ----------
    vectors_done : int
        Output vectors the network produced since reset (modulo 2**32).
    busy_cycles : int
        Clock cycles during which outputs were expected from the network (some vector was fed
        whose output was not complete), since reset, modulo 2**32.
    crc_errors, timeouts : int
        Frames refused for a bad CRC, and frames dropped by the receive timeout (mod 2**16).
    out_level : int
        Output bytes waiting to be read.
    outstanding : int
        Output bytes still expected from the network for vectors already fed.
    in_vector_bytes, out_vector_bytes : int
        Wire bytes of one input and one output vector.
    in_capacity, out_capacity : int
        Bytes of the input buffer (the largest SEND payload) and of the output buffer.
    read_pointer : int
        Output bytes freed by READ acknowledgements since reset, modulo 2**16.
    max_read : int
        Most output bytes in one READ reply.
    last_send : int
        ``0x100 | seq`` of the last SEND the device accepted since reset, 0 if none: a host
        that lost the reply to a SEND learns here whether it was fed.
    version : int
        :data:`PROTOCOL_VERSION` of the device.
    selftest_vectors : int
        Vectors of the built-in self-test (0: none).
    selftest_cycles, selftest_mismatches, selftest_running : int
        Of the last self-test run: clock cycles from its start to its last output, output
        beats that differed from the expected ones, and whether it is still running.
    """

    vectors_done: int
    busy_cycles: int
    clock_cycles: int
    crc_errors: int
    timeouts: int
    out_level: int
    outstanding: int
    in_vector_bytes: int
    out_vector_bytes: int
    in_capacity: int
    out_capacity: int
    read_pointer: int
    max_read: int
    last_send: int
    version: int
    selftest_vectors: int
    selftest_cycles: int
    selftest_mismatches: int
    selftest_running: int

    @classmethod
    def unpack(cls, payload):
        """Decode a STATUS payload; :class:`FrameError` if its size is wrong."""
        if len(payload) != struct.calcsize(STATUS_FORMAT):
            raise FrameError(f"STATUS reply of {len(payload)} bytes, expected "
                             f"{struct.calcsize(STATUS_FORMAT)}")
        return cls(*struct.unpack(STATUS_FORMAT, payload))

    def pack(self):
        """The payload bytes (the inverse of :meth:`unpack`)."""
        return struct.pack(STATUS_FORMAT, *(getattr(self, f) for f in self.__dataclass_fields__))
