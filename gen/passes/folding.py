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

from ...hw.common.memory import Storage
from ..engines import adapter_for
from ..errors import UsageError
from ..folding import FoldSpace, choose_folds, fold_cycles, folds_for_budget
from ..resources import budget, edge_bills, estimate, fits

__all__ = ["choose_folding", "share_dsps", "DEFAULT_MAX_LANES"]

DEFAULT_MAX_LANES = 64
#: With ``--fill``, a folding within this fraction of the fastest estimated rate that needs
#: fewer LUT4 is preferred (the Fmax estimate is not that precise; a wide memory moved from
#: block RAM into logic may buy a few percent for thousands of LUT4).
RATE_SLACK = 0.02


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
    storages = {}
    if len(others) == len(shapes) and opts.fill is None:
        folds = [plan.layers[n].fold for n in range(len(shapes))]
    elif opts.fill is not None:
        folds, storages = _folds_for_device(plan, shapes, fixed, others)
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
            lp = adapter_for(lp.engine).with_fold(
                lp.but(storage=storages.get(n, lp.storage)), fold, opts)
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
        """``(layer plan, estimate)`` of layer ``n`` folded ``fold``. A weight memory whose
        storage the user left to ``auto`` goes where it costs least of the budget: block RAM,
        or a ROM in logic (a shallow, wide memory of a fast fold fills many block RAMs of
        which it uses a few words; in logic it costs ``width * depth / 16`` LUT4)."""
        key = (n, fold)
        if key not in self.layers:
            lp = self.plan.layers[n]
            kinds = [None]   # as the user (or auto) says first: it stays on a tie
            if n not in self.others and lp.storage is Storage.AUTO:
                kinds += [Storage.BRAM, Storage.LOGIC]
            self.layers[key] = min((self.layer_as(n, fold, k) for k in kinds),
                                   key=lambda o: self._share(o[1]))
        return self.layers[key]

    def layer_as(self, n, fold, kind=None):
        """``(layer plan, estimate)`` of layer ``n`` folded ``fold`` with its weights in
        ``kind`` of storage (None: the plan's)."""
        key = (n, fold, kind)
        if key not in self.layers:
            lp = self.plan.layers[n]
            if n not in self.others:
                lp = lp if kind is None else lp.but(storage=kind)
                lp = adapter_for(lp.engine).with_fold(lp, fold, self.plan.options)
            self.layers[key] = (lp, estimate(lp.adapter.resources(lp), self.device))
        return self.layers[key]

    def storages(self, folds):
        """Weight storage per free layer of ``folds``: block RAM where the plan leaves it to
        ``auto`` and it fits, then, while the design does not fit, the memory of most block
        RAMs saved per LUT4 added moves into logic."""
        kinds = {n: None for n in range(len(folds)) if n not in self.others}
        while not self.evaluate(folds, kinds)[0]:
            moves = []
            for n, kind in kinds.items():
                if kind is None and self.plan.layers[n].storage is Storage.AUTO:
                    now, logic = (self.layer_as(n, folds[n], k)[1] for k in (None,
                                                                             Storage.LOGIC))
                    if logic.bram < now.bram:
                        moves.append(((now.bram - logic.bram) / max(logic.lut4 - now.lut4, 1),
                                      n))
            if not moves:
                break
            kinds[max(moves)[1]] = Storage.LOGIC
        if not self.evaluate(folds, kinds)[0]:
            # the greedy moves missed: each layer's cheapest storage, as the search found it
            return {n: self.layer(n, folds[n])[0].storage for n in kinds}
        return {n: self.layer_as(n, folds[n], k)[0].storage for n, k in kinds.items()}

    def _share(self, est):
        return sum(getattr(est, k) / max(self.limit[k], 1e-9) for k in ("lut4", "bram", "dsp"))

    def cost(self, n, fold):
        """What a layer's fold spends: its estimated share of the budget's LUT4, BRAM and DSP
        (summed, so the chain of least cost balances the three)."""
        if n in self.others:
            return 0.0
        return self._share(self.layer(n, fold)[1])

    def _shared(self, layers):
        """``layers`` (``(plan, estimate)`` pairs) after :func:`share_dsps`, re-estimated where
        it moved lane multipliers into logic."""
        plans = share_dsps([lp for lp, _ in layers], self.device, self.plan.options.fill,
                           self.plan.options)
        out = []
        for (lp, est), shared in zip(layers, plans, strict=True):
            if shared is not lp:
                est = estimate(shared.adapter.resources(shared), self.device)
            out.append((shared, est))
        return out

    def evaluate(self, folds, kinds=None):
        """``(fits, inferences/s, estimate)`` of a fold chain, FIFOs and gearboxes included
        (:func:`~nnaccel.gen.resources.edge_bills`); ``kinds``: the
        weight storage of each layer (:meth:`layer_as`) instead of the cheapest."""
        from ..generate import fifo_plan, graph_fifo_plan

        layers = [self.layer(n, f) if kinds is None else self.layer_as(n, f, kinds.get(n))
                  for n, f in enumerate(folds)]
        if sum(est.dsp for _, est in layers) > self.limit["dsp"]:
            # lane multipliers past the DSP budget are built in logic, as the design will be
            layers = self._shared(layers)
        total = layers[0][1]
        for _, est in layers[1:]:
            total = total.plus(est)
        # the FIFOs and gearboxes in front of every layer, as the generator builds them
        plan = self.plan.but(layers=tuple(lp for lp, _ in layers))
        fifos = fifo_plan(plan) if plan.model.is_chain else graph_fifo_plan(plan)
        for edge in edge_bills(plan, fifos):
            total = total.plus(estimate(edge, self.device))
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
    found by bisection; of every fitting folding met on the way, the one of fewest LUT4 within
    :data:`RATE_SLACK` of the most inferences per second wins. Returns the folds and, per
    layer, its weight storage (:meth:`_DeviceSearch.storages`)."""
    opts = plan.options
    search = _DeviceSearch(plan, shapes, others)
    slowest = _slowest(shapes, fixed)
    widest = max(s.k if isinstance(s, FoldSpace) else s[1] for s in shapes)
    caps = [1 << i for i in range(widest.bit_length()) if 1 << i < widest] + [None]
    smallest, fitting = None, []
    for cap in caps:
        folds = choose_folds(shapes, slowest, fixed, cap, search.cost)
        if folds is None:
            continue
        ok, rate, total = search.evaluate(folds)
        if smallest is None or total.lut4 < smallest.lut4:
            smallest = total
        if not ok:
            continue
        fitting.append((folds, rate, total))
        lo, hi = 1, slowest
        while lo < hi:
            mid = (lo + hi) // 2
            folds = choose_folds(shapes, mid, fixed, cap, search.cost)
            got = search.evaluate(folds) if folds is not None else (False, 0, None)
            if got[0]:
                hi = mid
                fitting.append((folds, got[1], got[2]))
            else:
                lo = mid + 1
    if not fitting:
        device = opts.board
        need = "" if smallest is None else (f" (the smallest folding needs about "
                                            f"{smallest.lut4:,} LUT4, {smallest.bram} BRAM, "
                                            f"{smallest.dsp} DSP)")
        raise UsageError(f"--fill {opts.fill}: no folding fits {opts.fill:.0%} of the "
                         f"{device.name}'s {device.lut4:,} LUT4, {device.bram} block RAMs and "
                         f"{device.dsp} DSP blocks{need}")
    # of the foldings within RATE_SLACK of the fastest, the one of fewest LUT4
    fastest = max(rate for _, rate, _ in fitting)
    best = min((f for f in fitting if f[1] >= (1 - RATE_SLACK) * fastest),
               key=lambda f: (f[2].lut4, -f[1]))[0]
    return best, search.storages(best)
