"""Generic board top: a network behind a UART host link.

Data path: UART receiver -> :class:`~nnaccel.boards.framelink.FrameLink` (frames checked by CRC,
input buffer, feeder) -> network -> FrameLink (output buffer, replies) -> UART transmitter. The
protocol on the 8N1 serial line is that of :mod:`nnaccel.boards.frame`.
"""

from amaranth import ClockDomain, Elaboratable, Module, ResetInserter, Signal
from amaranth.build import ResourceError
from amaranth.lib import io, stream, wiring
from amaranth.lib.wiring import In, Out

from ..gen.errors import UsageError
from ..hw.common.stream import SkidBuffer
from .framelink import FrameLink
from .pll import PLLClock
from .uart import MIN_DIVISOR, UARTRx, UARTTx, check_divisor

__all__ = ["BAUD_TOLERANCE", "ACTIVITY_BITS", "TIMEOUT_BYTES", "LINK_BAUDS", "BoardTop",
           "baud_divisor", "link_bauds", "stream_shape"]

#: Largest accepted relative error between the requested and the achieved baud rate.
BAUD_TOLERANCE = 0.02

#: The activity output stays high this many bit times after the last byte moved either way
#: (about 36 ms at 115200 baud).
ACTIVITY_BITS = 4096

#: The link's receive timeout, in byte times at least (on a board at least 20 ms as well, which
#: covers a USB serial adapter's latency between the packets of one frame).
TIMEOUT_BYTES = 64
TIMEOUT_SECONDS = 0.02

#: The host link's bit rates per board, fastest first: the ULX3S's FT231X is specified to
#: 3 Mbaud (its 48 MHz clock / 16); the iCEBreaker's FT2232H reaches 12 Mbaud (120 MHz / 10,
#: then / n). Other boards use an external USB adapter: 3 Mbaud, which the common FT232R,
#: FT231X and CP2102N reach. The clock must make one of them within BAUD_TOLERANCE.
LINK_BAUDS = {"ulx3s": (3_000_000, 1_500_000, 1_000_000),
              "icebreaker": (12_000_000, 6_000_000, 4_000_000, 3_000_000, 2_000_000)}
DEFAULT_BAUDS = (3_000_000, 1_500_000, 1_000_000)


def link_bauds(board):
    """The host link's bit rates for the board named ``board``, fastest first."""
    for prefix, bauds in LINK_BAUDS.items():
        if board.startswith(prefix):
            return bauds
    return DEFAULT_BAUDS


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
    in_beats, out_beats : int
        Beats per input and per output vector (the link counts vectors and admits only whole
        ones).
    baud : int
        Serial bit rate; the bit period is derived from the platform's default clock when the
        design is elaborated for a platform.
    divisor : int or None
        Clock cycles per bit, overriding ``baud``. Required when elaborating without a
        platform (simulation).
    pll : PLLSetting or None
        Run everything from the board's PLL (:class:`~nnaccel.boards.pll.PLLClock`) at this
        setting instead of the oscillator (boards only); the baud divisor follows its clock.
    link_options : dict
        Further keyword arguments of :class:`~nnaccel.boards.framelink.FrameLink` (buffer
        sizes, ``timeout`` in cycles; the default timeout is :data:`TIMEOUT_BYTES` byte times,
        and on a platform at least :data:`TIMEOUT_SECONDS`).

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
        Sticky until reset: a serial byte was dropped (framing error, see
        :class:`~nnaccel.boards.uart.UARTRx`) or a frame was refused for its CRC. On a board it
        drives ``led`` 1 (or red).

    Notes
    -----
    Host protocol: see :mod:`nnaccel.boards.frame`. The link takes every byte as it arrives (it
    never overruns); the RESET command resets the link and the network.
    """

    def __init__(self, network, *, in_beats=1, out_beats=1, baud=115200, divisor=None,
                 pll=None, **link_options):
        self.in_shape = stream_shape(network, "i_data", In)
        self.out_shape = stream_shape(network, "o_data", Out)
        if not isinstance(baud, int) or isinstance(baud, bool) or baud <= 0:
            raise UsageError(f"baud must be a positive integer, not {baud!r}")
        self.network = network
        self.baud = baud
        self.divisor = None if divisor is None else check_divisor(divisor)
        self.in_beats, self.out_beats = in_beats, out_beats
        self.pll = pll
        self.link_options = link_options
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "activity": Out(1),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        clock_hz = None
        if platform is not None:
            clock_hz = platform.default_clk_frequency
            if self.pll is not None:
                m.domains.sync = ClockDomain("sync")
                m.submodules.clocking = PLLClock(self.pll)
                clock_hz = self.pll.f_out
        if self.divisor is not None:
            divisor = self.divisor
        elif platform is not None:
            divisor = baud_divisor(clock_hz, self.baud)
        else:
            raise ValueError("BoardTop needs a divisor when elaborated without a platform")

        options = dict(self.link_options)
        if "timeout" not in options:
            seconds = 0 if platform is None else clock_hz * TIMEOUT_SECONDS
            options["timeout"] = max(10 * divisor * TIMEOUT_BYTES, int(seconds))
        link = FrameLink(self.in_shape, self.out_shape, in_beats=self.in_beats,
                         out_beats=self.out_beats, **options)
        m.submodules.uart_rx = uart_rx = UARTRx(divisor=divisor)
        m.submodules.uart_tx = uart_tx = UARTTx(divisor=divisor)
        m.submodules.core = ResetInserter(link.soft_reset)(_Core(link, self.network))
        wiring.connect(m, receiver=link.i_rx, sender=uart_rx.o_data)
        wiring.connect(m, receiver=uart_tx.i_data, sender=link.o_tx)

        hold = Signal(range(divisor * ACTIVITY_BITS + 1))
        moved = Signal()  # registered: the LED counter sits by the pins, far from the link
        m.d.sync += moved.eq((uart_rx.o_data.valid & uart_rx.o_data.ready)
                             | (uart_tx.i_data.valid & uart_tx.i_data.ready))
        with m.If(moved):
            m.d.sync += hold.eq(divisor * ACTIVITY_BITS)
        with m.Elif(hold != 0):
            m.d.sync += hold.eq(hold - 1)
        with m.If(uart_rx.error | link.crc_error):
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


class _Core(Elaboratable):
    """The link and the network, which the link's RESET command resets together.

    A register slice sits between the link and the network: no combinational path (valid, ready
    or data) runs from the link into a network placed across the chip. (One on the output side
    too made yosys 0.70's ABC9 pass fail an assertion on the 8x8 systolic design.)
    """

    def __init__(self, link, network):
        self.link, self.network = link, network

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        m.submodules.network = self.network
        m.submodules.in_slice = in_slice = SkidBuffer(self.link.in_shape)
        wiring.connect(m, receiver=in_slice.i_data, sender=self.link.o_data)
        wiring.connect(m, receiver=self.network.i_data, sender=in_slice.o_data)
        wiring.connect(m, receiver=self.link.i_data, sender=self.network.o_data)
        return m
