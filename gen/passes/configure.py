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
* Balance: without ``--target-cycles``, a sparse layer gets no more PEs than it needs to keep
  pace with the slowest sparse layer (their expected cycles, every activation non-zero): the
  layers are sized again with that as their cycle target. The network's pace is its slowest
  layer's, so this costs no cycles and saves the PEs a fast layer would idle on.
"""

from dataclasses import replace

from ..engines import ADAPTERS, Engine, adapter_for
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


def _configure(plan, shares, pace=None):
    """Every layer sized in order; ``pace``: the cycle target of the balanced (sparse) layers
    whose PE count the user did not force."""
    opts = plan.options
    layers = []
    prev_beat = None   # out beat of the previous layer when fixed
    for lp, share in zip(plan.layers, shares, strict=True):
        adapter = adapter_for(lp.engine)
        here = opts
        if (pace is not None and lp.engine is Engine.SPARSE
                and opts.forced(adapter.option, lp.layer.name) is None):
            here = replace(opts, target_cycles=pace)
        lp, prev_beat = adapter.configure(lp, share=share, prev_beat=prev_beat, options=here)
        layers.append(lp)
    return layers


def configure_engines(plan):
    _check_overrides(plan)
    opts = plan.options
    shares = _shares(plan, opts.max_lanes or DEFAULT_MAX_LANES)
    layers = _configure(plan, shares)
    sparse = [lp for lp in layers if lp.engine is Engine.SPARSE]
    if opts.target_cycles is None and len(sparse) > 1:
        adapter = adapter_for(Engine.SPARSE)
        pace = max(adapter.manifest(lp)["expected_cycles"] for lp in sparse)
        layers = _configure(plan, shares, pace)
    return plan.but(layers=tuple(layers))
