"""Generic board top: a network behind a UART host link.

Data path: UART receiver -> :class:`~nnaccel.boards.link.BytesToBeats` -> network ->
:class:`~nnaccel.boards.link.BeatsToBytes` -> UART transmitter, all in the platform's default
clock domain. The wire protocol is that of :mod:`nnaccel.boards.link` over 8N1 serial.
"""

from amaranth import Module, Signal
from amaranth.build import ResourceError
from amaranth.lib import io, stream, wiring
from amaranth.lib.wiring import In, Out

from ..gen.errors import UsageError
from ..hw.common.stream import SkidBuffer
from .link import BeatsToBytes, BytesToBeats
from .uart import MIN_DIVISOR, UARTRx, UARTTx, check_divisor

__all__ = ["BAUD_TOLERANCE", "ACTIVITY_BITS", "BoardTop", "baud_divisor", "stream_shape"]

#: Largest accepted relative error between the requested and the achieved baud rate.
BAUD_TOLERANCE = 0.02

#: The activity output stays high this many bit times after the last byte moved either way
#: (about 36 ms at 115200 baud).
ACTIVITY_BITS = 4096


def baud_divisor(clock_hz, baud):
    """Clock cycles per bit for ``baud`` at ``clock_hz``.

    Raises
    ------
    UsageError
        If ``baud`` is not a positive integer, or the nearest divisor is below
        :data:`~nnaccel.boards.uart.MIN_DIVISOR` or misses ``baud`` by more than
        :data:`BAUD_TOLERANCE`.
    """
    if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
        raise UsageError(f"baud must be a positive integer, not {baud!r}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise UsageError(f"baud {baud} is too fast for a {clock_hz / 1e6:g} MHz clock "
                         f"(at most {int(clock_hz // MIN_DIVISOR)})")
    error = abs(clock_hz / divisor - baud) / baud
    if error > BAUD_TOLERANCE:
        raise UsageError(f"baud {baud} cannot be made from a {clock_hz / 1e6:g} MHz clock: "
                         f"the nearest divisor {divisor} is off by {error:.1%}")
    return divisor


def stream_shape(component, name, flow):
    """Payload shape of the stream member ``name`` of ``component`` with direction ``flow``.

    Raises
    ------
    TypeError
        If ``component`` has no such stream member.
    """
    signature = getattr(component, "signature", None)
    members = getattr(signature, "members", None)
    if members is None or name not in members:
        raise TypeError(f"network must be a wiring.Component with a stream member {name!r}, "
                        f"not {component!r}")
    member = members[name]
    signature = member.signature if member.is_signature else None
    if signature is not None and flow == In:
        signature = signature.flip()
    if member.flow != flow or not isinstance(signature, stream.Signature):
        raise TypeError(f"network member {name!r} must be {flow.name}(stream.Signature(...)), "
                        f"not {member!r}")
    return member.signature.members["payload"].shape


class BoardTop(wiring.Component):
    """A network reachable over the board's UART.

    Parameters
    ----------
    network : wiring.Component
        The stream-level network: members ``i_data: In(stream.Signature(in_layout))`` and
        ``o_data: Out(stream.Signature(out_layout))``, running in the ``sync`` domain.
    baud : int
        Serial bit rate; the bit period is derived from the platform's default clock when the
        design is elaborated for a platform.
    divisor : int or None
        Clock cycles per bit, overriding ``baud``. Required when elaborating without a
        platform (simulation).

    Attributes
    ----------
    rx : In(1, init=1)
        Serial line from the host. Used only without a platform; on a board the UART
        resource's ``rx`` pin is used instead.
    tx : Out(1, init=1)
        Serial line to the host (on a board it also drives the UART resource's ``tx`` pin).
    activity : Out(1)
        High for :data:`ACTIVITY_BITS` bit times after a byte was received or sent. On a board
        it drives ``led`` 0 (or the OrangeCrab's green RGB LED) if there is one.
    error : Out(1)
        Sticky until reset: a received frame was dropped (framing error or overrun, see
        :class:`~nnaccel.boards.uart.UARTRx`). On a board it drives ``led`` 1 (or red).

    Notes
    -----
    Host protocol: see :mod:`nnaccel.boards.link`. The receiver holds one byte while it listens
    to the next, so a host that sends faster than the network consumes loses bytes (and lights
    ``error``); sending one input vector and reading its whole answer before the next is always
    safe.
    """

    def __init__(self, network, *, baud=115200, divisor=None):
        self.in_shape = stream_shape(network, "i_data", In)
        self.out_shape = stream_shape(network, "o_data", Out)
        if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
            raise UsageError(f"baud must be a positive integer, not {baud!r}")
        self.network = network
        self.baud = baud
        self.divisor = None if divisor is None else check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "activity": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        if self.divisor is not None:
            divisor = self.divisor
        elif platform is not None:
            divisor = baud_divisor(platform.default_clk_frequency, self.baud)
        else:
            raise ValueError("BoardTop needs a divisor when elaborated without a platform")

        m.submodules.uart_rx = uart_rx = UARTRx(divisor=divisor)
        m.submodules.bytes_to_beats = bytes_to_beats = BytesToBeats(self.in_shape)
        m.submodules.network = self.network
        m.submodules.beats_to_bytes = beats_to_bytes = BeatsToBytes(self.out_shape)
        m.submodules.uart_tx = uart_tx = UARTTx(divisor=divisor)
        # a register slice between the receiver and the network: no combinational path (valid,
        # ready or data) runs from the serial side into a network placed across the chip. (One
        # on the output side too made yosys 0.70's ABC9 pass fail an assertion on the 8x8
        # systolic design.)
        m.submodules.in_slice = in_slice = SkidBuffer(self.in_shape)

        wiring.connect(m, receiver=bytes_to_beats.i_data, sender=uart_rx.o_data)
        wiring.connect(m, receiver=in_slice.i_data, sender=bytes_to_beats.o_data)
        wiring.connect(m, receiver=self.network.i_data, sender=in_slice.o_data)
        wiring.connect(m, receiver=beats_to_bytes.i_data, sender=self.network.o_data)
        wiring.connect(m, receiver=uart_tx.i_data, sender=beats_to_bytes.o_data)

        hold = Signal(range(divisor * ACTIVITY_BITS + 1))
        moved = Signal()  # registered: the LED counter sits by the pins, far from the link
        m.d.sync += moved.eq((uart_rx.o_data.valid & uart_rx.o_data.ready)
                             | (uart_tx.i_data.valid & uart_tx.i_data.ready))
        with m.If(moved):
            m.d.sync += hold.eq(divisor * ACTIVITY_BITS)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
        with m.If(uart_rx.error):
            m.d.sync += self.error.eq(1)
        m.d.comb += [self.activity.eq(hold != 0), self.tx.eq(uart_tx.tx)]

        if platform is None:
            m.d.comb += uart_rx.rx.eq(self.rx)
        else:
            uart = platform.request("uart", 0, dir="-")
            m.submodules.rx_buffer = rx_buffer = io.Buffer("i", uart.rx)
            m.submodules.tx_buffer = tx_buffer = io.Buffer("o", uart.tx)
            m.d.comb += [uart_rx.rx.eq(rx_buffer.i), tx_buffer.o.eq(self.tx)]
            leds = self._request_leds(platform)
            for n, (led, signal) in enumerate(zip(leds, (self.activity, self.error)[:len(leds)],
                                                  strict=True)):
                m.submodules[f"led_buffer_{n}"] = led_buffer = io.Buffer("o", led)
                m.d.comb += led_buffer.o.eq(signal)
        return m

    @staticmethod
    def _request_leds(platform):
        """Up to two LED ports: ``led`` 0 and 1, else the green and red of ``rgb_led`` 0."""
        leds = []
        for number in range(2):
            try:
                leds.append(platform.request("led", number, dir="-"))
            except ResourceError:
                break
        if not leds:
            try:
                rgb = platform.request("rgb_led", 0, dir="-")
            except ResourceError:
                return []
            leds = [rgb.g, rgb.r]
        return leds
