"""Host driver of the framed link (:mod:`nnaccel.boards.frame`) over a serial port (pyserial).

:class:`BoardLink` sends one frame, waits for its reply and sends the same frame again after a
NAK, a reply with a bad CRC or no reply in time, so a noisy line costs retries, never a wrong
answer: a reply is used only when its CRC, sequence number and code are right, SEND frames are
acknowledged exactly once by the device (a repeated sequence number is not fed again) and READ
replies are re-read by repeating the same acknowledgement. After ``retries`` failed attempts
at one frame it raises :class:`LinkError`. Batches and reads shrink while frames fail and grow
back while they pass, so a noisy line still makes progress.
"""

import struct
import time
from dataclasses import dataclass, field

from ..gen.errors import ToolError
from . import frame as proto

__all__ = ["LinkError", "LinkStats", "BoardLink", "open_port"]


class LinkError(ToolError):
    """The device did not answer a frame correctly within the allowed retries, or answered
    with ERROR."""


@dataclass
class LinkStats:
    """What the host saw on the link."""

    frames: int = 0             # frames the host sent (retries included)
    retries: int = 0            # frames sent again
    naks: int = 0               # NAK replies (the device saw a bad CRC)
    bad_replies: int = 0        # replies with a bad CRC, a wrong code or sequence number
    timeouts: int = 0           # no reply in time
    busy: int = 0               # SEND refused with BUSY
    bytes_out: int = 0
    bytes_in: int = 0
    events: list = field(default_factory=list)


def open_port(port, baudrate):
    """A pyserial port for the path or URL ``port`` (non-blocking reads)."""
    try:
        import serial
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise ToolError("pyserial is not installed (pip install pyserial)") from exc
    try:
        return serial.serial_for_url(port, baudrate=baudrate, timeout=0, write_timeout=5)
    except (serial.SerialException, ValueError, OSError) as exc:
        raise ToolError(f"cannot open the serial port {port!r}: {exc}") from None


class BoardLink:
    """One device behind a serial port.

    Parameters
    ----------
    port : str or serial.Serial
        A path (``/dev/ttyUSB0``), a pyserial URL, or an open port object with ``read``,
        ``write`` and ``reset_input_buffer``.
    baudrate : int
        Bit rate (used when opening ``port`` and for reply deadlines).
    timeout : float
        Seconds to wait for a reply beyond its transfer time; must exceed the device's receive
        timeout (:data:`nnaccel.boards.top.TIMEOUT_SECONDS` on a board).
    byte_seconds : float or None
        Allowance per byte sent or expected (default ``2 * 10 / baudrate``).
    retries : int
        Attempts at one frame before :class:`LinkError`.
    """

    def __init__(self, port, *, baudrate=3_000_000, timeout=0.1, byte_seconds=None,
                 retries=16):
        self.port = open_port(port, baudrate) if isinstance(port, str) else port
        self.timeout = timeout
        self.byte_seconds = 20 / baudrate if byte_seconds is None else byte_seconds
        self.retries = retries
        self.stats = LinkStats()
        self._seq = 0
        self._last_send = None
        self._reader = proto.FrameReader()

    def close(self):
        self.port.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- one command ---------------------------------------------------------------------

    def _next_seq(self, cmd):
        self._seq = (self._seq + 1) & 0xFF
        if cmd == proto.SEND and self._seq == self._last_send:
            self._seq = (self._seq + 1) & 0xFF
        return self._seq

    def command(self, cmd, payload=b"", *, expect=512, shrink=False):
        """Send ``cmd`` until a good reply comes; return ``(reply, attempts)`` (ACK or BUSY).

        ``expect`` is the longest reply payload, for the deadline. With ``shrink``, give up
        early and return ``(None, attempts)`` once the frame has failed twice and the device
        did not act on it: a READ may always be repeated smaller; a SEND whose reply was lost
        may have been fed, so the device's STATUS (``last_send``) says whether it was.

        Raises
        ------
        LinkError
            No good reply after ``retries`` attempts, or an ERROR reply.
        """
        seq = self._next_seq(cmd)
        raw = proto.encode_frame(seq, cmd, payload)
        deadline_s = self.timeout + (len(raw) + expect + 7) * self.byte_seconds
        uncertain = False
        for attempt in range(self.retries):
            if attempt:
                self.stats.retries += 1
            self.port.reset_input_buffer()
            self._reader = proto.FrameReader()
            self.port.write(raw)
            self.stats.frames += 1
            self.stats.bytes_out += len(raw)
            reply = self._await(seq, cmd, time.monotonic() + deadline_s)
            if not isinstance(reply, proto.Frame):
                uncertain |= reply != "nak"
                if shrink and attempt >= 1:
                    if cmd == proto.SEND and uncertain and self._accepted(seq):
                        self._last_send = seq
                        return proto.Frame(seq, proto.ACK | proto.SEND, b""), attempt + 1
                    return None, attempt + 1
                continue
            if reply.cmd == proto.ERROR:
                reason = proto.ERROR_REASONS.get(reply.payload[:1] and reply.payload[0], "?")
                raise LinkError(f"the device refused command 0x{cmd:02x}: {reason}")
            if cmd == proto.SEND:
                self._last_send = seq
            return reply, attempt + 1
        raise LinkError(f"no good reply to command 0x{cmd:02x} after {self.retries} attempts "
                        f"({self.stats.naks} NAKs, {self.stats.timeouts} timeouts, "
                        f"{self.stats.bad_replies} bad replies so far): is the board programmed "
                        f"with this design and the port right?")

    def _await(self, seq, cmd, deadline):
        """The good reply to (seq, cmd), else why not: "nak", "bad" or "timeout"."""
        while time.monotonic() < deadline:
            data = self.port.read(4096)
            if not data:
                time.sleep(0.0002)
                continue
            self.stats.bytes_in += len(data)
            try:
                frames = self._reader.feed(data)
            except proto.FrameError:
                self.stats.bad_replies += 1
                return "bad"
            for reply in frames:
                if reply.cmd == proto.NAK:
                    self.stats.naks += 1
                    return "nak"
                if reply.seq == seq and reply.cmd in (proto.ACK | cmd, proto.BUSY,
                                                      proto.ERROR):
                    return reply
                self.stats.bad_replies += 1
                return "bad"
        self.stats.timeouts += 1
        return "timeout"

    def _accepted(self, seq):
        """Whether the device's last accepted SEND has sequence number ``seq``."""
        return self.status().last_send == 0x100 | seq

    # -- the commands ----------------------------------------------------------------------

    def status(self):
        """The device's :class:`~nnaccel.boards.frame.Status`."""
        reply, _ = self.command(proto.STATUS, expect=64)
        try:
            return proto.Status.unpack(reply.payload)
        except proto.FrameError as exc:
            raise LinkError(f"{exc}: the device speaks another protocol version") from None

    def reset(self):
        """Reset the device's link, buffers, counters and network."""
        self.command(proto.RESET, expect=0)
        self._last_send = None

    def selftest(self, *, seconds=10.0):
        """Run the device's built-in self-test; return the STATUS after it finished.

        Raises
        ------
        LinkError
            The device has no self-test, or it did not finish within ``seconds``.
        """
        reply, _ = self.command(proto.SELFTEST, expect=1)
        if reply.cmd == proto.BUSY:
            raise LinkError("the device is busy with a batch; reset it and run the self-test "
                            "again")
        deadline = time.monotonic() + seconds
        while True:
            status = self.status()
            if not status.selftest_running:
                return status
            if time.monotonic() > deadline:
                raise LinkError(f"the self-test did not finish within {seconds:g} s")

    def run(self, vectors, *, vector_bytes, out_vector_bytes, status=None):
        """Send the input vectors and collect every output vector.

        Parameters
        ----------
        vectors : bytes
            The input vectors' wire bytes, back to back.
        vector_bytes, out_vector_bytes : int
            Wire bytes of one input and one output vector; checked against the device's status.
        status : Status or None
            A STATUS read just before (else one is read).

        Returns
        -------
        bytes
            The output vectors' wire bytes, in order.

        Raises
        ------
        LinkError
            The device is for another design (its vector sizes differ), or a frame failed.
        """
        st = self.status() if status is None else status
        if (st.in_vector_bytes, st.out_vector_bytes) != (vector_bytes, out_vector_bytes):
            raise LinkError(f"the device takes {st.in_vector_bytes}-byte input vectors and "
                            f"returns {st.out_vector_bytes}-byte outputs, this design "
                            f"{vector_bytes} and {out_vector_bytes}: program the board with "
                            f"this design's bitstream")
        if st.out_level or st.outstanding:
            raise LinkError(f"the device holds {st.out_level + st.outstanding} output bytes of "
                            f"an earlier run: reset it first")
        count = len(vectors) // vector_bytes
        most = max(1, min(st.in_capacity // vector_bytes, st.out_capacity // out_vector_bytes))
        batch, limit = 1, min(64, st.max_read)      # grown while frames pass
        ack = st.read_pointer
        sent, out, freed = 0, bytearray(), 0
        while len(out) < count * out_vector_bytes:
            # the outputs the device still holds (not yet freed by a READ's ack) limit a SEND:
            # a batch that would not fit would only be refused with BUSY after its transfer
            room = (st.out_capacity - (sent * out_vector_bytes - freed)) // out_vector_bytes
            if sent < count and room > 0:
                k = min(batch, count - sent, room)
                payload = vectors[sent * vector_bytes:(sent + k) * vector_bytes]
                reply, attempts = self.command(proto.SEND, payload, expect=0, shrink=k > 1)
                if reply is None:
                    batch = max(1, k // 2)
                    continue
                if reply.cmd == proto.BUSY:
                    self.stats.busy += 1
                else:
                    sent += k
                batch = max(1, batch // 2) if attempts > 1 else min(most, 2 * batch)
            reply, attempts = self.command(proto.READ, struct.pack("<HH", ack, limit),
                                           expect=limit, shrink=limit > 8)
            if reply is None:
                limit = max(8, limit // 2)
                continue
            freed = len(out)
            out += reply.payload
            ack = (ack + len(reply.payload)) & 0xFFFF
            limit = max(8, limit // 2) if attempts > 1 else min(st.max_read, limit * 2)
        # acknowledge the last bytes so the device's buffer is empty again
        self.command(proto.READ, struct.pack("<HH", ack, 0), expect=0)
        return bytes(out)
