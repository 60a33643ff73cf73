"""Pass: choose PE x SIMD of every MVU layer, balanced for the user's target."""

from ..errors import UsageError
from ..folding import choose_folds, fold_cycles, folds_for_budget

__all__ = ["choose_folding", "DEFAULT_MAX_LANES"]

DEFAULT_MAX_LANES = 64


def choose_folding(plan):
    opts = plan.options
    shapes = [lp.layer.weight.shape for lp in plan.layers]
    fixed = {}
    for n, lp in enumerate(plan.layers):
        fold = opts.fold_for(lp.layer.name)
        if fold is not None:
            m, k = lp.layer.weight.shape
            if fold.pe > m or fold.simd > k:
                raise UsageError(f"layer {lp.layer.name!r}: --fold {fold.pe}x{fold.simd} "
                                 f"exceeds the layer's {m} outputs x {k} inputs")
            fixed[n] = fold
            before = fixed.get(n - 1)
            if before is not None and before.pe % fold.simd and fold.simd % before.pe:
                raise UsageError(f"layer {lp.layer.name!r}: --fold {fold.pe}x{fold.simd}: simd "
                                 f"{fold.simd} and the pe {before.pe} of layer "
                                 f"{plan.layers[n - 1].layer.name!r} must divide one another")
    if opts.target_cycles is not None:
        folds = choose_folds(shapes, opts.target_cycles, fixed)
        if folds is None:
            worst = max(fold_cycles(*shapes[n], f) for n, f in fixed.items()) if fixed else 1
            raise UsageError(f"--target-cycles {opts.target_cycles} cannot be met "
                             f"(forced folds need {worst} cycles)")
    else:
        folds = folds_for_budget(shapes, opts.max_lanes or DEFAULT_MAX_LANES, fixed)
    layers = tuple(lp.but(fold=f) for lp, f in zip(plan.layers, folds, strict=True))
    return plan.but(layers=layers)
