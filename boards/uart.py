"""Asynchronous serial (UART) transmitter and receiver with stream ports.

Frame format: 8N1, i.e. one start bit (low), eight data bits least significant first, one stop
bit (high); the line idles high. Both blocks are parameterised by ``divisor``, the number of clock
cycles per bit (``round(clock_frequency / baud)``).
"""

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["MIN_DIVISOR", "check_divisor", "UARTRx", "UARTTx"]

#: Smallest supported clock cycles per bit: the receiver samples each bit near its middle and
#: needs at least one cycle of margin on either side of the sampling point.
MIN_DIVISOR = 4


def check_divisor(divisor):
    """Validate ``divisor`` (clock cycles per bit) and return it.

    Raises
    ------
    TypeError
        If ``divisor`` is not an integer.
    ValueError
        If ``divisor`` is smaller than :data:`MIN_DIVISOR`.
    """
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise TypeError(f"divisor must be an integer, not {divisor!r}")
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR} clock cycles per bit, "
                         f"not {divisor!r}")
    return divisor


class UARTRx(wiring.Component):
    """UART receiver: serial line in, a stream of bytes out.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Attributes
    ----------
    rx : In(1, init=1)
        The serial line. It may be asynchronous to the clock: it is synchronised by two
        flip-flops inside.
    o_data : Out(stream.Signature(8))
        Received bytes. A byte is offered one cycle after the middle of its stop bit and stays
        valid until taken; the receiver keeps listening meanwhile, so the consumer has one whole
        frame time to take it.
    error : Out(1)
        One-cycle strobe when a frame is dropped: its stop bit was low (framing error, e.g. a
        baud rate mismatch or a break), or the previous byte had still not been taken when this
        one completed (overrun).

    Notes
    -----
    A start bit is recognised on a falling edge and confirmed in its middle (a shorter low pulse
    is ignored as a glitch); every later bit is sampled ``divisor`` cycles after the previous
    one. Latency from the middle of the stop bit to ``o_data.valid`` is one cycle, plus the two
    cycles of the input synchroniser.
    """

    def __init__(self, *, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o_data": Out(stream.Signature(8)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor

        line = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(divisor))
        bit = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)

        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(divisor - 1), bit.eq(0)]
                    with m.If(line):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [
                        shreg.eq(Cat(shreg[1:], line)),
                        timer.eq(divisor - 1),
                        bit.eq(bit + 1),
                    ]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line & (~self.o_data.valid | self.o_data.ready)):
                        m.d.sync += [self.o_data.payload.eq(shreg), self.o_data.valid.eq(1)]
                    with m.Else():
                        m.d.comb += self.error.eq(1)
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART transmitter: a stream of bytes in, serial line out.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Attributes
    ----------
    i_data : In(stream.Signature(8))
        Bytes to send. ``ready`` is high while the transmitter is idle (it does not depend on
        ``valid``); a byte taken on cycle ``t`` has its start bit on the line from ``t + 1``.
    tx : Out(1, init=1)
        The serial line, driven directly by a flip-flop (glitch-free), idle high.

    Notes
    -----
    Throughput: one byte per ``10 * divisor + 1`` cycles when bytes are offered back to back
    (the stop bit lasts one cycle longer than the other bits).
    """

    def __init__(self, *, divisor):
        self.divisor = check_divisor(divisor)
        super().__init__({
            "i_data": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor

        shreg = Signal(10, init=(1 << 10) - 1)  # bit 0 is on the line
        remaining = Signal(range(11))
        timer = Signal(range(divisor))
        m.d.comb += self.tx.eq(shreg[0])

        with m.If(remaining == 0):
            m.d.comb += self.i_data.ready.eq(1)
            with m.If(self.i_data.valid):
                m.d.sync += [
                    shreg.eq(Cat(Const(0, 1), self.i_data.payload, Const(1, 1))),
                    remaining.eq(10),
                    timer.eq(divisor - 1),
                ]
        with m.Elif(timer == 0):
            m.d.sync += [
                shreg.eq(Cat(shreg[1:], Const(1, 1))),
                remaining.eq(remaining - 1),
                timer.eq(divisor - 1),
            ]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m
