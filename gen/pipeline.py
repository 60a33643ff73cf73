"""The compiler's ordered pass pipeline: read -> engines -> configure -> folding -> check."""

from .passes.check import check_plan
from .passes.configure import configure_engines
from .passes.engines import assign_engines
from .passes.folding import choose_folding
from .plan import Plan

__all__ = ["PASSES", "compile_plan"]

PASSES = (("engines", assign_engines), ("configure", configure_engines),
          ("folding", choose_folding), ("check", check_plan))


def compile_plan(model, options, stop_after=None):
    """Run the passes in order on ``model``; stop after the pass named ``stop_after``."""
    names = [name for name, _ in PASSES]
    if stop_after is not None and stop_after not in names:
        raise ValueError(f"unknown pass {stop_after!r}; passes: {', '.join(names)}")
    plan = Plan.start(model, options)
    for name, step in PASSES:
        plan = step(plan).but(done=plan.done + (name,))
        if name == stop_after:
            break
    return plan
