"""Byte-serial host link: stream beats of any width carried as little-endian bytes.

Protocol
--------
The link carries the network's input and output beats over a byte pipe (the UART). A beat of
``width`` bits travels as ``ceil(width / 8)`` bytes, least significant byte first: byte ``i``
holds bits ``[8*i, 8*i + 8)`` of the beat's bit pattern. For a beat of
``data.ArrayLayout(shape, n)``, element ``j`` occupies bits ``[j*w, (j+1)*w)`` with
``w = Shape.cast(shape).width``, in two's complement for signed shapes (the usual Amaranth
packing). Unused bits above ``width`` in the last byte are ignored by the device when received
and sent as zeros by the device.

* Host to device: the host sends each input beat as its bytes; :class:`BytesToBeats` emits the
  beat once its last byte has arrived.
* Device to host: :class:`BeatsToBytes` answers each output beat with its bytes, in the same
  order.

There is no framing on the wire: both sides count bytes. A vector of ``K`` elements carried in
beats of ``n`` elements is ``ceil(K / n)`` beats (ARCHITECTURE.md, "Streams inside the design");
the host sends a whole input vector and then reads the whole output vector. After a reset both
blocks start at a beat boundary.
"""

from amaranth import Cat, Const, Module, Shape, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["beat_bytes", "pack_beat", "unpack_beat", "BytesToBeats", "BeatsToBytes"]


def _width(shape):
    return Shape.cast(shape).width


def beat_bytes(shape):
    """Number of bytes on the wire for one beat of ``shape`` (at least one).

    Raises
    ------
    TypeError
        If ``shape`` is not shape-castable.
    """
    return max(1, (_width(shape) + 7) // 8)


def pack_beat(bits, shape):
    """The wire bytes of one beat given as its bit pattern ``bits`` (a non-negative int)."""
    width = _width(shape)
    if not isinstance(bits, int) or not 0 <= bits < (1 << width):
        raise ValueError(f"beat bits must be an integer in [0, 2**{width}), not {bits!r}")
    return bits.to_bytes(beat_bytes(shape), "little")


def unpack_beat(raw, shape):
    """The bit pattern (a non-negative int) of one beat received as the bytes ``raw``."""
    if len(raw) != beat_bytes(shape):
        raise ValueError(f"a beat of {_width(shape)} bits takes {beat_bytes(shape)} bytes, "
                         f"not {len(raw)}")
    return int.from_bytes(bytes(raw), "little") & ((1 << _width(shape)) - 1)


def _check_shape(shape):
    try:
        width = _width(shape)
    except TypeError as exc:
        raise TypeError(f"beat shape must be shape-castable, not {shape!r}") from exc
    if width == 0:
        raise ValueError(f"beat shape must be at least one bit wide, not {shape!r}")
    return shape


class BytesToBeats(wiring.Component):
    """Assemble beats of ``shape`` from little-endian bytes.

    Parameters
    ----------
    shape : shape-castable
        Payload shape of the output beats (e.g. ``data.ArrayLayout(signed(6), 3)``).

    Attributes
    ----------
    i_data : In(stream.Signature(8))
        Bytes, ``ceil(width / 8)`` per beat, least significant first.
    o_data : Out(stream.Signature(shape))
        Beats. A beat is valid the cycle after its last byte is taken and stays valid until
        taken; ``i_data.ready`` is low while a beat waits (one byte per cycle otherwise).
    """

    def __init__(self, shape):
        self.shape = _check_shape(shape)
        self.nbytes = beat_bytes(shape)
        super().__init__({
            "i_data": In(stream.Signature(8)),
            "o_data": Out(stream.Signature(shape)),
        })

    def elaborate(self, platform):
        m = Module()
        width = _width(self.shape)
        shreg = Signal(8 * self.nbytes)
        count = Signal(range(self.nbytes))

        m.d.comb += [
            self.i_data.ready.eq(~self.o_data.valid),
            Value.cast(self.o_data.payload).eq(shreg[:width]),
        ]
        with m.If(self.o_data.ready):
            m.d.sync += self.o_data.valid.eq(0)
        with m.If(self.i_data.valid & self.i_data.ready):
            m.d.sync += shreg.eq(Cat(shreg[8:], self.i_data.payload))
            with m.If(count == self.nbytes - 1):
                m.d.sync += [count.eq(0), self.o_data.valid.eq(1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        return m


class BeatsToBytes(wiring.Component):
    """Split beats of ``shape`` into little-endian bytes.

    Parameters
    ----------
    shape : shape-castable
        Payload shape of the input beats.

    Attributes
    ----------
    i_data : In(stream.Signature(shape))
        Beats. ``ready`` is high while no byte of the previous beat is left to send.
    o_data : Out(stream.Signature(8))
        Bytes, ``ceil(width / 8)`` per beat, least significant first, padding bits zero. The
        first byte is valid the cycle after the beat is taken.
    """

    def __init__(self, shape):
        self.shape = _check_shape(shape)
        self.nbytes = beat_bytes(shape)
        super().__init__({
            "i_data": In(stream.Signature(shape)),
            "o_data": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        width = _width(self.shape)
        shreg = Signal(8 * self.nbytes)
        remaining = Signal(range(self.nbytes + 1))

        m.d.comb += [
            self.i_data.ready.eq(remaining == 0),
            self.o_data.valid.eq(remaining != 0),
            self.o_data.payload.eq(shreg[:8]),
        ]
        with m.If(self.i_data.valid & self.i_data.ready):
            bits = Value.cast(self.i_data.payload)
            pad = Const(0, 8 * self.nbytes - width)
            m.d.sync += [shreg.eq(Cat(bits, pad)), remaining.eq(self.nbytes)]
        with m.If(self.o_data.valid & self.o_data.ready):
            m.d.sync += [shreg.eq(shreg[8:]), remaining.eq(remaining - 1)]
        return m
