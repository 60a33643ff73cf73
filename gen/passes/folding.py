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

__all__ = ["choose_folding", "DEFAULT_MAX_LANES"]

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
    return plan.but(layers=tuple(layers))
