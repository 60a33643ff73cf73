"""Pass: choose the engine of every layer (SPEC 2.3 defaults, user overrides).

A layer that no engine accepts (an op no adapter maps yet) stops generation here, before any
pass reads its weights.
"""

from ..engines import ADAPTERS, check_mappable, default_engine
from ..engines.base import is_bipolar
from ..engines.sparse import SPARSE_DENSITY
from ..errors import ModelError

__all__ = ["assign_engines", "default_engine", "is_bipolar", "SPARSE_DENSITY"]


def assign_engines(plan):
    layers = []
    batch = plan.options.batch
    for lp in plan.layers:
        layer = lp.layer
        check_mappable(layer)
        forced = plan.options.engine_for(layer.name)
        if forced is not None:
            adapter = ADAPTERS[forced]
            ok, why = adapter.accepts(layer)
            if not ok:
                raise ModelError(layer.name, "engine", why)
            engine, reason = forced, "forced by --engine" + adapter.forced_note(batch)
        else:
            engine, reason = default_engine(layer, batch)
        layers.append(lp.but(requested_engine=engine, engine=engine, engine_reason=reason,
                             storage=plan.options.storage_for(layer.name)))
    return plan.but(layers=tuple(layers))
