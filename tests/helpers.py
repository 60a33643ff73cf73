"""Helpers shared by several test modules (not collected: no ``test_`` prefix)."""

from amaranth.hdl import Module
from amaranth.sim import Simulator

from nnaccel.gen.engines.base import to_stream
from nnaccel.sim.packing import pack

from .gen.test_network import axis_ports


def run_back_to_back(design, X, limit=None):
    """Run the batch ``X`` through a generated design in amaranth.sim, inputs back to back, no
    backpressure: ``(cycle of each image's last output beat, peak occupancy of every FIFO)``.

    The peaks are a dict keyed as ``design.network.fifos`` (a graph's ``(layer, port)``, a
    chain's FIFO index). Stops after ``limit`` cycles (default: 40 times the manifest's cycles
    for the batch, plus 2,000), so a deadlocked design returns fewer ends than images: callers
    check the count.
    """
    model = design.plan.model
    ins = design.manifest["io"]["input"]
    out_beats = design.manifest["io"]["output"]["beats"]
    bits = model.input_dtype.encode(to_stream(X, model.input_shape))
    beats = pack(bits, ins["elements_per_beat"], ins["bits_per_element"])
    src, sink = axis_ports(design.top)
    top = Module()
    top.submodules.dut = design.top
    sim = Simulator(top)  # elaborates: design.network.fifos exists from here
    sim.add_clock(1e-6)
    fifos = design.network.fifos
    keys = list(fifos) if isinstance(fifos, dict) else list(range(len(fifos)))
    fifos = [fifos[k] for k in keys]
    ports = [s for f in fifos for s in (f.i_data.valid, f.i_data.ready, f.o_data.valid,
                                         f.o_data.ready)]
    cycles, level, peak = [], [0] * len(fifos), [0] * len(fifos)
    limit = limit or 40 * design.manifest["expected_cycles_per_inference"] * len(X) + 2000

    stop = []

    async def source(ctx):  # ends when the monitor does (a deadlocked design stops taking)
        for beat in beats:
            ctx.set(src.valid, 1)
            ctx.set(src.payload, beat)
            taken = False
            while not (taken or stop):
                _, _, taken = await ctx.tick().sample(src.ready)
            if stop:
                break
        ctx.set(src.valid, 0)

    async def monitor(ctx):
        ctx.set(sink.ready, 1)
        now = 0
        while len(cycles) < len(X) * out_beats and now < limit:
            _, _, valid, *flags = await ctx.tick().sample(sink.valid, *ports)
            now += 1
            if valid:
                cycles.append(now)
            for n in range(len(fifos)):
                iv, ir, ov, orr = flags[4 * n:4 * n + 4]
                level[n] += int(iv and ir) - int(ov and orr)
                peak[n] = max(peak[n], level[n])
        stop.append(True)

    sim.add_testbench(source)
    sim.add_testbench(monitor)
    sim.run()
    return cycles[out_beats - 1::out_beats], dict(zip(keys, peak, strict=True))
