"""AXI4-Stream source and sink for cocotb testbenches, with random idle and backpressure.

Written once and reused by every cocotb testbench (STYLE.md point 10). Both sides work on the
same half-cycle discipline, so they are correct whatever order the simulator runs their
callbacks in and whether or not it shows registers already updated at a rising edge:

1. after a falling edge, drive (``tvalid``/``tdata``/``tlast`` for the source, ``tready`` for the
   sink);
2. in the read-only phase of that time step, sample the handshake: a transfer happens at the next
   rising edge exactly when ``tvalid`` and ``tready`` are both high now;
3. at the rising edge, record the transfer and its cycle number.

Idle and backpressure come from *pause generators* (iterators yielding one bool per decision,
True meaning "pause"), so a test can pass a seeded random pattern (:func:`random_pauses`) or any
fixed one (``itertools.cycle([False, True])``). The source never drops ``tvalid`` before the
transfer and the sink's ``tready`` never depends on ``tvalid``.
"""

import itertools
import random

from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

__all__ = ["random_pauses", "cycle_now", "AxisSource", "AxisSink"]


def random_pauses(probability, seed):
    """Endless pause generator: each item is True with ``probability``, from ``Random(seed)``.

    ``probability == 0`` never pauses (and draws no random numbers).
    """
    if not 0.0 <= probability < 1.0:
        raise ValueError(f"pause probability must be in [0, 1), not {probability!r}")
    if probability == 0:
        return itertools.repeat(False)
    rng = random.Random(seed)
    return (rng.random() < probability for _ in itertools.count())


def cycle_now(clock):
    """Index of the current clock cycle of ``clock`` (a :class:`cocotb.clock.Clock`).

    Cycle ``c`` spans simulation time ``[c*period, (c+1)*period)``, so each cycle holds exactly
    one rising edge, and consecutive rising edges have consecutive numbers.
    """
    return int(get_sim_time(clock.unit) // float(clock.period))


class _AxisPort:
    def __init__(self, dut, prefix, clock, pauses):
        self.clock = clock
        self.clk = clock.signal
        self.tdata = getattr(dut, f"{prefix}_tdata")
        self.tvalid = getattr(dut, f"{prefix}_tvalid")
        self.tready = getattr(dut, f"{prefix}_tready")
        self.tlast = getattr(dut, f"{prefix}_tlast")
        self.pauses = iter(pauses) if pauses is not None else itertools.repeat(False)
        #: Cycle (see :func:`cycle_now`) of every accepted beat, in order.
        self.cycles = []


class AxisSource(_AxisPort):
    """Drives an AXI4-Stream slave port ``<prefix>_tdata/tvalid/tready/tlast`` of ``dut``.

    Parameters
    ----------
    dut : cocotb handle
        The top level.
    prefix : str
        Port prefix, e.g. ``"s_axis"``.
    clock : cocotb.clock.Clock
        The running clock of the port.
    pauses : iterator of bool, optional
        One item per beat: while it yields True the source idles a cycle (``tvalid`` low)
        before presenting the beat. None never idles.

    Attributes
    ----------
    cycles : list of int
        Cycle of the transfer of every beat sent so far.
    idle_cycles : int
        Cycles the source held ``tvalid`` low before a beat because of ``pauses``.
    """

    def __init__(self, dut, prefix, clock, pauses=None):
        super().__init__(dut, prefix, clock, pauses)
        self.tvalid.value = 0
        self.tlast.value = 0
        self.idle_cycles = 0

    async def send(self, beats, lasts=None):
        """Send every beat of ``beats`` (ints), ``tlast`` from ``lasts`` (default all low).

        Must be awaited after a falling edge of the clock (the testbench's reset ends on one);
        returns after the falling edge that follows the last transfer, with ``tvalid`` low.
        """
        beats = list(beats)
        lasts = [False] * len(beats) if lasts is None else list(lasts)
        if len(lasts) != len(beats):
            raise ValueError(f"{len(beats)} beats but {len(lasts)} tlast values")
        for data, last in zip(beats, lasts, strict=True):
            while next(self.pauses):
                self.tvalid.value = 0
                self.idle_cycles += 1
                await RisingEdge(self.clk)
                await FallingEdge(self.clk)
            self.tdata.value = int(data)
            self.tlast.value = int(bool(last))
            self.tvalid.value = 1
            while True:
                await ReadOnly()
                accepted = bool(self.tready.value)
                await RisingEdge(self.clk)
                if accepted:
                    self.cycles.append(cycle_now(self.clock))
                await FallingEdge(self.clk)
                if accepted:
                    break
        self.tvalid.value = 0
        self.tlast.value = 0


class AxisSink(_AxisPort):
    """Takes beats from an AXI4-Stream master port ``<prefix>_tdata/tvalid/tready/tlast``.

    Parameters
    ----------
    dut, prefix, clock
        As for :class:`AxisSource` (e.g. ``prefix="m_axis"``).
    pauses : iterator of bool, optional
        One item per cycle: True holds ``tready`` low for that cycle (backpressure). None never
        stalls.

    Attributes
    ----------
    beats : list of int
        ``tdata`` of every accepted beat.
    lasts : list of bool
        ``tlast`` of every accepted beat.
    cycles : list of int
        Cycle of every accepted beat.
    refused_cycles : int
        Cycles with ``tvalid`` high and ``tready`` held low (backpressure that took effect).
    """

    def __init__(self, dut, prefix, clock, pauses=None):
        super().__init__(dut, prefix, clock, pauses)
        self.tready.value = 0
        self.beats = []
        self.lasts = []
        self.refused_cycles = 0

    async def receive(self, count):
        """Accept beats until ``count`` beats in total have arrived; returns :attr:`beats`.

        Same calling convention as :meth:`AxisSource.send`; ``tready`` is low on return.
        """
        while len(self.beats) < count:
            ready = not next(self.pauses)
            self.tready.value = int(ready)
            await ReadOnly()
            beat = None
            if ready and self.tvalid.value:
                beat = (_unsigned(self.tdata.value), bool(self.tlast.value))
            elif self.tvalid.value:
                self.refused_cycles += 1
            await RisingEdge(self.clk)
            if beat is not None:
                self.beats.append(beat[0])
                self.lasts.append(beat[1])
                self.cycles.append(cycle_now(self.clock))
            await FallingEdge(self.clk)
        self.tready.value = 0
        return self.beats

    async def expect_quiet(self, cycles):
        """Hold ``tready`` high for ``cycles`` cycles; raise AssertionError on any beat."""
        self.tready.value = 1
        for _ in range(cycles):
            await ReadOnly()
            if self.tvalid.value:
                raise AssertionError(f"unexpected extra output beat after {len(self.beats)} "
                                     f"beats (tdata={self.tdata.value})")
            await RisingEdge(self.clk)
            await FallingEdge(self.clk)
        self.tready.value = 0


def _unsigned(value):
    """A handle's value as an unsigned integer: a 1-bit ``tdata`` reads as a ``Logic``, which
    has no ``to_unsigned``."""
    return value.to_unsigned() if hasattr(value, "to_unsigned") else int(value)
