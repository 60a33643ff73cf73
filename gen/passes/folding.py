"""Pass: choose PE x SIMD of every layer whose engine folds freely (the MVU), balanced for the
user's target, then let each such layer's adapter turn its fold into hardware Params.

Layers of the other engines (sized by the configure pass) enter the fold chooser as fixed folds
``Fold(pe=out_beat, simd=in_beat)`` that cost nothing and always meet the target, so their free
neighbours get beats their gearboxes can convert; the lanes they use come off the budget.

Feature-map layers enter as their adapter's :class:`~nnaccel.gen.folding.FoldSpace`: a
convolution's cycles are ``OH*OW * ceil(M/pe) * ceil(K/simd)`` (K = ``C*KH*KW``; the window
unit's own cycles when larger) with PE dividing M and SIMD among the widths the window unit can
feed; a pool's beat divides C and costs no lanes. The producer's PE and the consumer's input
beat must divide one another, as between vector layers.
"""

from ..engines import adapter_for
from ..errors import UsageError
from ..folding import FoldSpace, choose_folds, fold_cycles, folds_for_budget
from ..resources import budget, estimate, fifo_bill, fits, spill_to_logic

__all__ = ["choose_folding", "share_dsps", "DEFAULT_MAX_LANES"]

DEFAULT_MAX_LANES = 64


def _cycles(shape, fold):
    if isinstance(shape, FoldSpace):
        return shape.cycles(fold)
    return fold_cycles(*shape, fold)


def choose_folding(plan):
    opts = plan.options
    shapes = []
    for lp in plan.layers:
        space = adapter_for(lp.engine).fold_space(lp)
        shapes.append(space if space is not None else lp.layer.weight.shape)
    fixed, others = {}, {}
    for n, lp in enumerate(plan.layers):
        adapter = adapter_for(lp.engine)
        if not adapter.free_fold:
            # a fold of 1 cycle on a shape of its own size: fixed beats, no cycle constraint
            others[n] = lp.fold
            fixed[n] = lp.fold
            shapes[n] = (lp.fold.pe, lp.fold.simd)
            continue
        fold = opts.forced(adapter.option, lp.layer.name)
        if fold is not None:
            space = shapes[n]
            m, k = (space.m, space.k) if isinstance(space, FoldSpace) else space
            if fold.pe > m or fold.simd > k:
                raise UsageError(f"layer {lp.layer.name!r}: --fold {fold.pe}x{fold.simd} "
                                 f"exceeds the layer's {m} outputs x {k} inputs")
            fixed[n] = fold
            before = fixed.get(n - 1)
            beat = space.beat_in(fold) if isinstance(space, FoldSpace) else fold.simd
            if before is not None and before.pe % beat and beat % before.pe:
                what = f"simd {beat}" if beat == fold.simd else f"input beat {beat}"
                raise UsageError(f"layer {lp.layer.name!r}: --fold {fold.pe}x{fold.simd}: "
                                 f"{what} and the pe {before.pe} of layer "
                                 f"{plan.layers[n - 1].layer.name!r} must divide one another")
    if len(others) == len(shapes):
        folds = [plan.layers[n].fold for n in range(len(shapes))]
    elif opts.fill is not None:
        folds = _folds_for_device(plan, shapes, fixed, others)
    elif opts.target_cycles is not None:
        folds = choose_folds(shapes, opts.target_cycles, fixed)
        if folds is None:
            free_fixed = {n: f for n, f in fixed.items() if n not in others}
            worst = max((_cycles(shapes[n], f) for n, f in free_fixed.items()), default=1)
            floors = [(min(s.cycles(f) for f in s.folds()), plan.layers[n].layer.name)
                      for n, s in enumerate(shapes) if isinstance(s, FoldSpace)]
            floor, name = max(floors, default=(1, None))
            why = (f"layer {name!r} needs at least {floor} cycles per image" if floor > worst
                   else f"forced folds need {worst} cycles")
            raise UsageError(f"--target-cycles {opts.target_cycles} cannot be met ({why})")
    else:
        budget = opts.max_lanes or DEFAULT_MAX_LANES
        engine_lanes = sum(adapter_for(plan.layers[n].engine).lanes(plan.layers[n])
                           for n in others)
        fold_lanes = sum(f.lanes for f in others.values())
        left = budget - engine_lanes
        try:
            folds = folds_for_budget(shapes, max(left, 0) + fold_lanes, fixed)
        except UsageError:
            if not others:
                raise
            raise UsageError(f"no folding of the mvu layers fits the {left} of {budget} lanes "
                             f"the sparse and systolic layers leave ({engine_lanes} lanes)"
                             ) from None
    layers = []
    for n, (lp, fold) in enumerate(zip(plan.layers, folds, strict=True)):
        if n not in others:
            lp = adapter_for(lp.engine).with_fold(lp, fold, opts)
        layers.append(lp)
    if opts.board is not None:
        layers = share_dsps(layers, opts.board, opts.fill or 1.0, opts)
    return plan.but(layers=tuple(layers))


def _splittable(lp):
    """``(count, a_bits, b_bits)`` of the lane multipliers of ``lp`` that may go to logic."""
    split = getattr(adapter_for(lp.engine), "splittable_multipliers", None)
    return split(lp) if split is not None else (0, 1, 1)


def share_dsps(layers, device, fill, options):
    """``layers`` with their lane multipliers split between DSP blocks and logic so that the
    design's DSP blocks stay within ``fill`` of ``device``'s: the DSP blocks nothing else can
    give up (output stages' requantising multipliers, other engines) come off the budget, and
    the rest go to the splittable lane multipliers (:meth:`MVUAdapter.splittable_multipliers
    <nnaccel.gen.engines.mvu.MVUAdapter.splittable_multipliers>`) layer by layer in order; the
    multipliers left over are built in logic, as few as the budget allows."""
    split = [_splittable(lp)[0] for lp in layers]
    used = sum(estimate(lp.adapter.resources(lp), device).dsp for lp in layers)
    left = max(int(device.dsp * fill) - (used - sum(split)), 0)
    if sum(split) <= left:
        return layers
    out = []
    for lp, n in zip(layers, split, strict=True):
        if n:
            give = min(n, left)
            left -= give
            lp = adapter_for(lp.engine).with_dsps(lp, give, options)
        out.append(lp)
    return out


def _slowest(shapes, fixed):
    slowest = max(s.slowest() if isinstance(s, FoldSpace) else s[0] * s[1] for s in shapes)
    return max([slowest] + [_cycles(shapes[n], f) for n, f in fixed.items()])


class _DeviceSearch:
    """Estimates of candidate fold chains on ``plan.options.board`` (memoised per layer fold)."""

    def __init__(self, plan, shapes, others):
        self.plan, self.shapes, self.others = plan, shapes, others
        self.device = plan.options.board
        self.limit = budget(self.device, plan.options.fill)
        self.layers = {}
        # cycles of the engines sized elsewhere (sparse, systolic) bound the pipeline too
        self.fixed_cycles = max((adapter_for(plan.layers[n].engine).manifest(
            plan.layers[n])["expected_cycles"] for n in others), default=1)

    def layer(self, n, fold):
        key = (n, fold)
        if key not in self.layers:
            lp = self.plan.layers[n]
            if n not in self.others:
                lp = adapter_for(lp.engine).with_fold(lp, fold, self.plan.options)
            self.layers[key] = (lp, estimate(lp.adapter.resources(lp), self.device))
        return self.layers[key]

    def cost(self, n, fold):
        """What a layer's fold spends: its estimated share of the budget's LUT4, BRAM and DSP
        (summed, so the chain of least cost balances the three)."""
        if n in self.others:
            return 0.0
        est = self.layer(n, fold)[1]
        return sum(getattr(est, k) / max(self.limit[k], 1e-9) for k in ("lut4", "bram", "dsp"))

    def evaluate(self, folds):
        """``(fits, inferences/s, estimate)`` of a fold chain, FIFOs included."""
        from ..generate import fifo_plan

        layers = [self.layer(n, f) for n, f in enumerate(folds)]
        total = layers[0][1]
        for _, est in layers[1:]:
            total = total.plus(est)
        if self.plan.model.is_chain:
            for fifo in fifo_plan(self.plan.but(layers=tuple(lp for lp, _ in layers))):
                if fifo.get("depth"):
                    width = fifo["bits"] // fifo["depth"]
                    total = total.plus(estimate(fifo_bill(fifo["depth"], width), self.device))
        # lane multipliers past the DSP budget are built in logic (share_dsps)
        split = [s for n, (lp, _) in enumerate(layers) if n not in self.others
                 for s in [_splittable(lp)] if s[0]]
        over = min(total.dsp - int(self.limit["dsp"]), sum(c for c, _, _ in split))
        if over > 0:
            total = spill_to_logic(total, over, *max(split, key=lambda s: s[1] * s[2])[1:],
                                   self.device)
        cycles = max([self.fixed_cycles] + [_cycles(s, f) for n, (s, f) in
                                             enumerate(zip(self.shapes, folds, strict=True))
                                             if n not in self.others])
        return (fits(total, self.device, self.plan.options.fill),
                total.fmax_mhz * 1e6 / cycles, total)


def _folds_for_device(plan, shapes, fixed, others):
    """The folds of most estimated throughput (Fmax estimate / cycles) whose estimated LUT4,
    BRAM and DSP stay within ``fill`` of the board's device.

    For every SIMD cap (powers of two, and none: the timing model's Fmax falls with the width
    of the adder and popcount trees), the smallest cycle target whose fewest-lane folds fit is
    found by bisection; the cap and target of most inferences per second win (ties: fewer
    LUT4)."""
    opts = plan.options
    search = _DeviceSearch(plan, shapes, others)
    slowest = _slowest(shapes, fixed)
    widest = max(s.k if isinstance(s, FoldSpace) else s[1] for s in shapes)
    caps = [1 << i for i in range(widest.bit_length()) if 1 << i < widest] + [None]
    best, smallest = None, None
    for cap in caps:
        folds = choose_folds(shapes, slowest, fixed, cap, search.cost)
        if folds is None:
            continue
        ok, rate, total = search.evaluate(folds)
        if smallest is None or total.lut4 < smallest.lut4:
            smallest = total
        if not ok:
            continue
        lo, hi, chosen = 1, slowest, (folds, rate, total)
        while lo < hi:
            mid = (lo + hi) // 2
            folds = choose_folds(shapes, mid, fixed, cap, search.cost)
            got = search.evaluate(folds) if folds is not None else (False, 0, None)
            if got[0]:
                hi, chosen = mid, (folds, got[1], got[2])
            else:
                lo = mid + 1
        key = (chosen[1], -chosen[2].lut4)
        if best is None or key > best[0]:
            best = (key, chosen[0])
    if best is None:
        device = opts.board
        need = "" if smallest is None else (f" (the smallest folding needs about "
                                            f"{smallest.lut4:,} LUT4, {smallest.bram} BRAM, "
                                            f"{smallest.dsp} DSP)")
        raise UsageError(f"--fill {opts.fill}: no folding fits {opts.fill:.0%} of the "
                         f"{device.name}'s {device.lut4:,} LUT4, {device.bram} block RAMs and "
                         f"{device.dsp} DSP blocks{need}")
    return best[1]
