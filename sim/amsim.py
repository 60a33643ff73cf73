"""Stream source/sink for amaranth.sim testbenches, with random idle and backpressure.

Written once and used by every engine's and block's fast tests. A source sends payloads on an
``amaranth.lib.stream`` interface, idling before a beat with probability ``idle``; a sink takes
beats, refusing a cycle with probability ``stall``. Both obey the stream rules (valid stays up
until the transfer; ready is independent of valid).
"""

import random
from dataclasses import dataclass

from amaranth import Module, Signal
from amaranth.sim import Simulator

from ..hw.common.arith import cdiv

__all__ = ["StallPattern", "STALL_PATTERNS", "send", "receive", "run_stream_test", "to_beats",
           "from_beats"]


@dataclass(frozen=True)
class StallPattern:
    """Probabilities of an idle source cycle and of a refused sink cycle."""

    idle: float = 0.0
    stall: float = 0.0

    def __str__(self):
        return f"idle{self.idle:g}-stall{self.stall:g}"


#: {no idle, random idle} x {no backpressure, random backpressure}.
STALL_PATTERNS = [StallPattern(0, 0), StallPattern(0.3, 0), StallPattern(0, 0.3),
                  StallPattern(0.3, 0.3)]


async def send(ctx, stream, payloads, *, idle=0.0, rng=None, counts=None):
    """Drive every payload of ``payloads`` into ``stream`` (an In-flipped or Out interface).
    ``counts`` (a dict), if given, gets ``"idle"``: the cycles the source idled."""
    rng = rng or random.Random(0)
    for payload in payloads:
        while idle and rng.random() < idle:
            if counts is not None:
                counts["idle"] = counts.get("idle", 0) + 1
            await ctx.tick()
        ctx.set(stream.valid, 1)
        ctx.set(stream.payload, payload)
        await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)


async def receive(ctx, stream, count, *, stall=0.0, rng=None, timeout=None, counts=None):
    """Take ``count`` payloads from ``stream``; returns them in order.

    ``timeout`` bounds the number of cycles spent (raises TimeoutError), so a hardware bug that
    never produces a beat fails the test instead of hanging it. ``counts`` (a dict), if given,
    gets ``"refused"``: the cycles with ``valid`` high and ``ready`` held low (backpressure
    that took effect).
    """
    rng = rng or random.Random(1)
    out = []
    cycles = 0
    while len(out) < count:
        ready = not (stall and rng.random() < stall)
        ctx.set(stream.ready, ready)
        _clk, _rst, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if ready and valid:
            out.append(payload)
        elif valid and counts is not None:
            counts["refused"] = counts.get("refused", 0) + 1
        cycles += 1
        if timeout is not None and cycles > timeout:
            raise TimeoutError(f"received {len(out)} of {count} beats in {cycles} cycles")
    ctx.set(stream.ready, 0)
    return out


def run_stream_test(dut, sources, sinks, *, pattern=StallPattern(), seed=0, timeout=100_000,
                    vcd=None, stats=None):
    """Simulate ``dut`` with sources ``[(stream, payloads)]`` and sinks ``[(stream, count)]``.

    Returns the list of received payload lists, one per sink. Each source and sink has its own
    random generator derived from ``seed``. ``stats`` (a dict), if given, gets ``"idle"``: the
    idle cycles of each source, and ``"refused"``: the backpressure cycles of each sink (valid
    high, ready low), so a test can check that the stall pattern took effect.
    """
    top = Module()
    top.submodules.dut = dut
    heartbeat = Signal()  # a sync domain exists even for a purely combinational DUT
    top.d.sync += heartbeat.eq(~heartbeat)
    sim = Simulator(top)
    sim.add_clock(1e-6)
    results = [None] * len(sinks)
    idle = [{} for _ in sources]
    refused = [{} for _ in sinks]

    for n, (stream, payloads) in enumerate(sources):
        async def source(ctx, stream=stream, payloads=payloads, n=n):
            await send(ctx, stream, payloads, idle=pattern.idle, rng=random.Random(seed * 101 + n),
                       counts=idle[n])
        sim.add_testbench(source, background=True)

    for n, (stream, count) in enumerate(sinks):
        async def sink(ctx, stream=stream, count=count, n=n):
            results[n] = await receive(ctx, stream, count, stall=pattern.stall,
                                       rng=random.Random(seed * 103 + 50 + n), timeout=timeout,
                                       counts=refused[n])
        sim.add_testbench(sink)

    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    if stats is not None:
        stats["idle"] = [c.get("idle", 0) for c in idle]
        stats["refused"] = [c.get("refused", 0) for c in refused]
    return results


def to_beats(vectors, n, pad=0):
    """Split each vector of ``vectors`` into beats of ``n`` elements (lists of ints); the tail
    of each vector's last beat is ``pad``."""
    beats = []
    for v in vectors:
        v = [int(x) for x in v]
        for b in range(0, len(v), n):
            chunk = v[b:b + n]
            beats.append(chunk + [pad] * (n - len(chunk)))
    return beats


def from_beats(beats, count, n):
    """Inverse of :func:`to_beats`: join beats (iterables of ints) into vectors of ``count``
    elements, dropping the padding."""
    per = cdiv(count, n)
    if len(beats) % per:
        raise ValueError(f"{len(beats)} beats is not a whole number of {per}-beat vectors")
    flat = [[int(x) for x in beat] for beat in beats]
    return [sum(flat[v * per:(v + 1) * per], [])[:count] for v in range(len(beats) // per)]
