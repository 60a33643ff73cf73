"""Branch-FIFO depths measured on the graph's own schedule.

:func:`~nnaccel.gen.generate.graph_fifo_plan` sizes a join's input FIFOs from a closed-form
bound on the branches' skew: safe, but not tight (``tiny_res`` at 16 lanes: 118 beats computed
for a skip branch that needs 69). This module finds the least depths instead, by running the
generated graph itself -- every engine, fork, gearbox and FIFO as elaborated, so every pipeline
latency, burst and the FIFO's own latency and capacity (:class:`~nnaccel.hw.common.stream.
StreamFifo` as built, whatever its implementation) are the hardware's -- in amaranth.sim with
the outer streams at full rate (the input always valid, the output always ready):

1. a reference run with every branch FIFO (a join's input) deep enough never to fill: the
   graph's cycles per image ``T`` in steady state and each branch FIFO's peak occupancy;
2. for each branch FIFO in turn, a binary search between the FIFO's least capacity and that
   peak for the least depth at which the graph still finishes every image (no deadlock within
   a cycle limit) at ``T`` cycles per image (over the last images of the run);
3. each FIFO at its depth minus one, the others as found: a FIFO is *critical* when that run
   deadlocks or is slower than ``T``; the manifest's ``rule`` says which and by how much.

No margin is added: the depth is the least one found (and reported as such). The timing of the
engines it applies to (MVU, pool, VVAU, systolic, joins) does not depend on the data, so the
images are zeros; a graph with a sparse engine (its cycles follow the data) keeps the closed-form
rule. A smaller FIFO in a graph whose outer streams stall is never short of the data dependency
(the fork's beats a long branch must read before the join can take its next beat do not change
with the stalls), but its rate is only measured at full rate.
"""

import functools
import math

from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from ..hw.common.arith import cdiv
from .engines import Engine
from .ir import Op

__all__ = ["Occupancy", "SizingRun", "size_branch_fifos", "run_graph", "sizable"]

#: Images of the first run (the first image's latency sets how many the others take).
IMAGES = 3

#: Cycles (at least) over which the rate is measured, after the images in flight.
RATE_CYCLES = 256


def sizable(plan):
    """Whether :func:`size_branch_fifos` applies: a graph with a join and no engine whose timing
    depends on the data (the sparse engine skips zero activations)."""
    if not any(lp.layer.op in (Op.ADD, Op.CONCAT) for lp in plan.layers):
        return False
    return not any(lp.engine == Engine.SPARSE for lp in plan.layers)


class SizingRun:
    """One simulation: the cycle of each image's last output beat (fewer than the images when the
    graph stopped within the limit) and every FIFO's peak occupancy, keyed ``(layer, port)``,
    with the FIFO components as elaborated (``fifos``)."""

    def __init__(self, ends, peaks, fifos, images, skip):
        self.ends, self.peaks, self.fifos, self.images = ends, peaks, fifos, images
        self.skip = skip

    @property
    def finished(self):
        return len(self.ends) == self.images

    @property
    def steady(self):
        """Cycles from the end of image ``skip`` (counted from 0) to the last's (the rate
        measure); None if stopped."""
        return self.ends[-1] - self.ends[self.skip] if self.finished else None

    @property
    def rate(self):
        """Cycles per image in steady state; None if stopped."""
        return None if not self.finished else self.steady / (self.images - 1 - self.skip)


class Occupancy:
    """Beats inside each of ``fifos`` (stream components), counted from their handshakes: sample
    :attr:`signals` every cycle and pass the values to :meth:`update`; :attr:`peak` holds each
    one's most."""

    def __init__(self, fifos):
        self.signals = [s for f in fifos for s in (f.i_data.valid, f.i_data.ready,
                                                    f.o_data.valid, f.o_data.ready)]
        self.level = [0] * len(fifos)
        self.peak = [0] * len(fifos)

    def update(self, flags):
        for n in range(len(self.level)):
            iv, ir, ov, orr = flags[4 * n:4 * n + 4]
            self.level[n] += int(iv and ir) - int(ov and orr)
            self.peak[n] = max(self.peak[n], self.level[n])


def run_graph(network, *, in_beats, out_beats, images=IMAGES, skip=1, limit, target=None,
              quiet=None):
    """Run ``images`` zero images through the graph ``network`` (a
    :class:`~nnaccel.hw.common.graph.GraphNetwork`, built for this run), its input always valid
    and its output always ready, for at most ``limit`` cycles: a :class:`SizingRun`. A beat
    enters or leaves a FIFO on a cycle where its stream's valid and ready are both high.
    ``target``: stop as soon as the last image cannot end within that many cycles of the end of
    image ``skip`` (the run is then too slow, whatever follows); ``quiet``: stop after
    that many cycles without a transfer on any FIFO or outer stream (a deadlock)."""
    sim = Simulator(network)  # elaborates: network.fifos exists from here
    sim.add_clock(1e-6)
    keys = list(network.fifos)
    fifos = [network.fifos[k] for k in keys]
    occupancy = Occupancy(fifos)
    ends, stalled = [], []
    total_in = in_beats * images
    quiet = quiet or limit

    async def bench(ctx):
        ctx.set(network.o_data.ready, 1)
        ctx.set(network.i_data.valid, 1)
        sent = out = now = last = 0
        while len(ends) < images and now < limit:
            if target is not None and len(ends) > skip and now - ends[skip] > target:
                break
            _, _, taken, valid, *seen = await ctx.tick().sample(
                network.i_data.ready, network.o_data.valid, *occupancy.signals)
            now += 1
            if taken or valid or any(seen):
                last = now
            elif now - last > quiet:  # nothing moves: a deadlock
                stalled.append(now)
                break
            if taken:
                sent += 1
                if sent == total_in:
                    ctx.set(network.i_data.valid, 0)
            if valid:
                out += 1
                if out % out_beats == 0:
                    ends.append(now)
            occupancy.update(seen)

    sim.add_testbench(bench)
    sim.run()
    result = SizingRun(ends, dict(zip(keys, occupancy.peak, strict=True)),
                     dict(zip(keys, fifos, strict=True)), images, skip)
    result.deadlocked = bool(stalled)
    return result


def size_branch_fifos(plan, fifos, build):
    """The FIFO plan ``fifos`` (:func:`~nnaccel.gen.generate.graph_fifo_plan`'s: per layer, one
    dict per port) with every join input's depth replaced by the least one measured (see the
    module docstring), and ``critical``, ``peak``, ``rule_depth``, ``sizing`` added to those
    entries. ``build(fifos)`` returns a fresh graph network with those depths."""
    layers = [lp.layer.name for lp in plan.layers]
    branch = [(name, n) for lp, name in zip(plan.layers, layers, strict=True)
              if lp.layer.op in (Op.ADD, Op.CONCAT) for n in range(len(lp.layer.inputs))]
    depth = {(name, n): f["depth"] for name, ports in zip(layers, fifos, strict=True)
             for n, f in enumerate(ports)}
    model = plan.model
    pace = max(lp.adapter.manifest(lp)["expected_cycles"] for lp in plan.layers)
    out_count = math.prod(int(v) for v in plan.layers[-1].layer.out_shape)

    def run(trial, limit, target=None, images=IMAGES, skip=1, quiet=None):
        net = build(_with(fifos, layers, trial))
        return run_graph(net, in_beats=cdiv(math.prod(model.input_shape), net.in_beat),
                         out_beats=cdiv(out_count, net.out_beat), images=images, skip=skip,
                         limit=limit, target=target, quiet=quiet)

    # the reference: branch FIFOs that never fill (doubled until none reaches its depth), run
    # for the images in flight (``skip``: the first image's latency in images) and then for
    # at least RATE_CYCLES cycles, over which the rate is measured
    wide = dict(depth)
    for key in branch:
        wide[key] = 2 * depth[key] + 16
    limit = 40 * pace * IMAGES + 2000
    for _ in range(6):
        probe = run(wide, limit)
        if probe.finished:
            skip = cdiv(probe.ends[0], pace)
            images = skip + 1 + cdiv(RATE_CYCLES, pace)
            ref = run(wide, 40 * pace * images + 2000, images=images, skip=skip)
            if ref.finished and all(ref.peaks[k] < wide[k] for k in branch):
                break
        for key in branch:
            wide[key] *= 2
    else:
        raise AssertionError("the graph did not finish with its branch FIFOs unbounded")
    target = ref.steady
    limit = 2 * ref.ends[-1] + 4 * pace + 200
    # a run where nothing moves for longer than the first image took has stopped for good
    quiet = probe.ends[0] + pace
    run = functools.partial(run, images=images, skip=skip, quiet=quiet)

    def capacity(trial, key):
        """Beats the FIFO ``key`` holds at the depths ``trial`` (elaborated, not simulated)."""
        net = build(_with(fifos, layers, trial))
        Fragment.get(net, None)
        return getattr(net.fifos[key], "capacity", trial[key])

    def passes(trial):
        result = run(trial, limit, target)
        return result.finished and result.steady <= target

    # one FIFO after the other, the ones not yet searched still unbounded: ``chosen`` always
    # holds depths of a run that passed, so the last search's leaves the graph verified
    chosen = dict(wide)
    for key in branch:
        lo, hi, trial, step = 1, chosen[key], ref.peaks[key], 1
        while trial >= lo:  # gallop down from the peak to a depth that fails
            if not passes({**chosen, key: trial}):
                lo = trial + 1
                break
            hi = trial
            if trial == lo:
                break
            trial, step = max(lo, trial - step), 2 * step
        while lo < hi:
            mid = (lo + hi) // 2
            if passes({**chosen, key: mid}):
                hi = mid
            else:
                lo = mid + 1
        chosen[key] = hi
    # a FIFO holds at least its ``capacity`` (hw/common's StreamFifo: its output stages and
    # two memory words): a depth below that is written as the capacity, the same hardware
    for key in branch:
        chosen[key] = max(chosen[key], capacity(chosen, key))
    rate = ref.rate
    out = [[dict(f) for f in ports] for ports in fifos]
    for key in branch:
        entry = out[layers.index(key[0])][key[1]]
        d = chosen[key]
        why = (f"least depth on the graph's own schedule (amaranth.sim, {images} images, outer "
               f"streams at full rate, {rate:g} cycles per image in steady state, slowest "
               f"layer {pace}); peak occupancy {ref.peaks[key]} with the branches unbounded")
        critical = False
        if d > 1 and capacity({**chosen, key: d - 1}, key) < d:
            shorter = run({**chosen, key: d - 1}, limit)
            critical = not shorter.finished or shorter.steady > target
            if shorter.deadlocked:
                why += (f"; at {d - 1} the graph deadlocks (nothing moves for {quiet} cycles "
                        f"after {len(shorter.ends)} images)")
            elif not shorter.finished:
                why += f"; at {d - 1} the graph does not finish within {limit} cycles"
            elif critical:
                why += f"; at {d - 1} it runs {shorter.rate:g} cycles per image"
            else:
                why += f"; {d - 1} also keeps the rate (the searches interact)"
        else:
            why += f"; {d} is the least capacity of that FIFO"
        entry.update(depth=d, bits=entry["bits"] // entry["depth"] * d, rule=why,
                     critical=critical, peak=ref.peaks[key], rule_depth=entry["depth"],
                     sizing="simulation", schedule={"images": images, "skip": skip,
                                                    "cycles_per_image": rate})
    return out


def _with(fifos, layers, depth):
    return [[dict(f, depth=depth[(name, n)]) for n, f in enumerate(ports)]
            for name, ports in zip(layers, fifos, strict=True)]
