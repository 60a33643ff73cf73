"""Choosing PE x SIMD folds so the layers of a pipeline are balanced.

Every layer of a streaming pipeline works on its own vector at the same time, so the pipeline's
cycles per inference are the *largest* layer's ``ceil(M/pe) * ceil(K/simd)``. For a target
number of cycles T, each layer should use the fewest lanes that meet T, with one constraint
between neighbours: the producer's ``pe`` and the consumer's ``simd`` must divide one another (the
gearbox between them only converts between such widths). A small dynamic programme over the
layers finds the fewest total lanes for T; a lane budget is met by bisection over T.
"""

from collections.abc import Callable
from dataclasses import dataclass

from ..hw.common.arith import cdiv
from .errors import UsageError

__all__ = ["Fold", "FoldSpace", "fold_cycles", "choose_folds", "cheapest_chain",
           "folds_for_budget"]


@dataclass(frozen=True)
class Fold:
    pe: int
    simd: int

    @property
    def lanes(self):
        return self.pe * self.simd


def fold_cycles(m, k, fold):
    return cdiv(m, fold.pe) * cdiv(k, fold.simd)


@dataclass(frozen=True, eq=False)
class FoldSpace:
    """What the chooser may pick for one layer of a feature-map network, and what it costs.

    A layer computes ``repeat`` matrix-vector products of ``(m, k)`` (a convolution: one per
    output pixel, ``repeat = OH*OW``), so a fold takes ``repeat * ceil(m/pe) * ceil(k/simd)``
    cycles, or ``floor(fold)`` when that is larger (e.g. the window unit's own cycles per
    image). ``pes`` and ``simds`` are the allowed values (None: any up to ``m``, ``k``); ``tied``
    folds have ``pe == simd`` (a pooling unit's beat, in and out). ``in_beat(fold)`` is the
    beat the layer takes from its producer (default ``simd``), which must divide the producer's
    ``pe`` or be divided by it; ``cost(fold)`` is the lanes the fold spends (default ``pe*simd``).
    """

    m: int
    k: int
    repeat: int = 1
    pes: tuple | None = None
    simds: tuple | None = None
    tied: bool = False
    floor: Callable | None = None
    in_beat: Callable | None = None
    cost: Callable | None = None

    def cycles(self, fold):
        c = self.repeat * fold_cycles(self.m, self.k, fold)
        return max(c, self.floor(fold)) if self.floor is not None else c

    def beat_in(self, fold):
        return fold.simd if self.in_beat is None else self.in_beat(fold)

    def lanes(self, fold):
        return fold.lanes if self.cost is None else self.cost(fold)

    def folds(self):
        """Every allowed fold (the spaces are small: divisors of channel counts)."""
        pes = self.pes or range(1, self.m + 1)
        simds = self.simds or range(1, self.k + 1)
        if self.tied:
            return [Fold(n, n) for n in sorted(set(pes) & set(simds))]
        return [Fold(pe, simd) for simd in simds for pe in pes]

    def slowest(self):
        return max(self.cycles(f) for f in self.folds())


def _space(shape):
    """``shape`` as a :class:`FoldSpace`, or None for a plain ``(m, k)`` layer."""
    return shape if isinstance(shape, FoldSpace) else None


def _cycles(shape, fold):
    space = _space(shape)
    return fold_cycles(*shape, fold) if space is None else space.cycles(fold)


def _beat_in(shape, fold):
    space = _space(shape)
    return fold.simd if space is None else space.beat_in(fold)


def _lanes(shape, fold):
    space = _space(shape)
    return fold.lanes if space is None else space.lanes(fold)


def _space_candidates(space, target, max_simd=None):
    """Folds of ``space`` meeting ``target`` (with ``simd <= max_simd``, or the least simd when
    none is that narrow), cheapest first."""
    folds = space.folds()
    if max_simd is not None:
        least = min(f.simd for f in folds)
        folds = [f for f in folds if f.simd <= max(max_simd, least)]
    meets = [f for f in folds if space.cycles(f) <= target]
    return sorted(meets, key=lambda f: (space.lanes(f), f.pe, f.simd))


def _compatible(a, b):
    return a % b == 0 or b % a == 0


def _smallest_pe(m, folds_allowed):
    """Fewest PEs that need at most ``folds_allowed`` neuron folds (0 if impossible)."""
    if folds_allowed < 1:
        return 0
    pe = cdiv(m, folds_allowed)
    return cdiv(m, cdiv(m, pe))  # same number of folds, least padding


def _candidates(m, k, target, prev_pe=None, next_simd=None, max_simd=None):
    """Folds meeting ``target`` cycles: for each simd, the least pe and a few rounder ones.

    ``prev_pe`` / ``next_simd`` are those of forced neighbours: every simd that fits ``prev_pe``
    is kept, and each simd also gets the least pe that fits ``next_simd``."""
    out = set()
    divisors = [d for d in range(1, (next_simd or 0) + 1) if next_simd % d == 0]
    for simd in range(1, min(k, max_simd or k) + 1):
        sf = cdiv(k, simd)
        pe_min = _smallest_pe(m, target // sf)
        if not pe_min:
            continue
        # skip a simd whose synapse folds equal the next smaller simd's (pure padding)
        if (simd > 1 and cdiv(k, simd - 1) == sf and (k % simd)
                and not (prev_pe and _compatible(prev_pe, simd))):
            continue
        pes = {pe_min}
        for pe in range(pe_min, m + 1):
            if m % pe == 0 or (pe & (pe - 1)) == 0:
                pes.add(pe)
                if len(pes) > 6:
                    break
        if next_simd is not None:
            fits = [d for d in divisors if pe_min <= d <= m]
            multiple = cdiv(pe_min, next_simd) * next_simd
            fits += [multiple] if multiple <= m else []
            pes.update(sorted(fits)[:1])
        out.update(Fold(pe, simd) for pe in pes)
    return sorted(out, key=lambda f: (f.lanes, f.pe))


def choose_folds(shapes, target, fixed=None, max_simd=None, cost=None):
    """Fewest-lane folds meeting ``target`` cycles for a chain of ``(M, K)`` layer shapes.

    ``fixed`` maps a layer index to a :class:`Fold` the user forced (which must meet ``target``
    too); ``max_simd`` caps every free layer's SIMD (the timing model's cap on adder and
    popcount trees); ``cost(n, fold)``, when given, replaces the lanes as what the chain
    spends (e.g. the resource model's share of a device). Returns a list of folds, or None
    when ``target`` cannot be met under the constraints.
    """
    fixed = fixed or {}
    layers = []
    for n, shape in enumerate(shapes):
        if n in fixed:
            layers.append([fixed[n]])
        elif _space(shape) is not None:
            layers.append(_space_candidates(shape, target, max_simd))
        else:
            prev = fixed[n - 1].pe if n - 1 in fixed else None
            after = fixed[n + 1].simd if n + 1 in fixed else None
            layers.append(_candidates(*shape, target, prev, after, max_simd))
    return cheapest_chain(shapes, layers, target, cost)


def cheapest_chain(shapes, candidates, target, cost=None):
    """Fewest-lane choice of one fold per layer among ``candidates`` (a list per layer), every
    layer within ``target`` cycles and each producer's ``pe`` compatible with its consumer's
    ``simd`` (a :class:`FoldSpace`'s in-beat); None when no choice is legal. A dynamic
    programme over the previous layer's pe. ``cost(n, fold)`` replaces the lanes when given."""
    # states: pe of the previous layer -> (total lanes, folds so far)
    states = {None: (0, [])}
    for n, (shape, cands) in enumerate(zip(shapes, candidates, strict=True)):
        new = {}
        for fold in cands:
            if _cycles(shape, fold) > target:
                continue
            beat = _beat_in(shape, fold)
            best = min(((lanes, folds) for pe, (lanes, folds) in states.items()
                        if pe is None or _compatible(pe, beat)),
                       key=lambda s: s[0], default=None)
            if best is None:
                continue
            total = best[0] + (_lanes(shape, fold) if cost is None else cost(n, fold))
            if fold.pe not in new or total < new[fold.pe][0]:
                new[fold.pe] = (total, best[1] + [fold])
        if not new:
            return None
        states = new
    return min(states.values(), key=lambda s: s[0])[1]


def folds_for_budget(shapes, max_lanes, fixed=None):
    """The fastest folds whose total lanes stay within ``max_lanes``."""
    fixed = fixed or {}
    slowest = max(s.slowest() if _space(s) is not None else s[0] * s[1] for s in shapes)
    for n, fold in fixed.items():
        slowest = max(slowest, _cycles(shapes[n], fold))

    def lanes(folds):
        return sum(_lanes(s, f) for s, f in zip(shapes, folds, strict=True))

    lo, hi = 1, slowest
    best = choose_folds(shapes, hi, fixed)
    if best is None or lanes(best) > max_lanes:
        raise UsageError(f"no folding fits {max_lanes} lanes (the smallest needs "
                         f"{lanes(best) if best else 'more'})")
    while lo < hi:
        mid = (lo + hi) // 2
        folds = choose_folds(shapes, mid, fixed)
        if folds is not None and lanes(folds) <= max_lanes:
            hi, best = mid, folds
        else:
            lo = mid + 1
    return best
