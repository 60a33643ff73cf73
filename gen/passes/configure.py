"""Pass: size every layer whose engine is not folded by the fold chooser, and fix its beats.

Runs after the engine pass and before the folding pass, which then treats every such layer as a
fixed fold ``Fold(pe=out_beat, simd=in_beat)`` so the gearboxes between layers always see beats
that divide one another. The sizing itself (lanes, beats, the hardware Params) belongs to each
engine's adapter (:mod:`nnaccel.gen.engines`); this pass hands each layer its lane share and the
previous layer's output beat:

* Lanes: with a lane budget (``--max-lanes``, default 64) a layer gets at most its share of the
  budget, proportional to its multiply-accumulates; with ``--target-cycles`` the fewest lanes
  that meet the target (the fastest it can do, and a warning, if none does).
* Beats: a layer's input beat follows the previous layer's output beat when that is fixed (an
  engine sized here, or an MVU layer whose fold the user forced).
"""

from ..engines import ADAPTERS, adapter_for
from ..engines.base import layer_macs
from .folding import DEFAULT_MAX_LANES

__all__ = ["configure_engines"]


def _shares(plan, budget):
    """Lane share of every layer, proportional to its multiply-accumulates."""
    macs = [layer_macs(lp.layer) for lp in plan.layers]
    total = max(sum(macs), 1)
    return [max(1, budget * mac // total) for mac in macs]


def _check_overrides(plan):
    """Every forced choice (``--fold``, ``--array``, ``--sparse``) is for a layer of its
    engine, and sane."""
    for lp in plan.layers:
        for adapter in ADAPTERS.values():
            choice = plan.options.forced(adapter.option, lp.layer.name)
            if choice is None:
                continue
            if lp.engine is not adapter.engine:
                raise adapter.wrong_engine(lp)
            adapter.check_choice(lp, choice)


def configure_engines(plan):
    _check_overrides(plan)
    opts = plan.options
    shares = _shares(plan, opts.max_lanes or DEFAULT_MAX_LANES)
    layers = []
    prev_beat = None   # out beat of the previous layer when fixed
    for lp, share in zip(plan.layers, shares, strict=True):
        lp, prev_beat = adapter_for(lp.engine).configure(lp, share=share, prev_beat=prev_beat,
                                                         options=opts)
        layers.append(lp)
    return plan.but(layers=tuple(layers))
