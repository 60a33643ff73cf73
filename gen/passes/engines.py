"""Pass: choose the engine of every layer (SPEC 2.3 defaults, user overrides).

A layer that no engine accepts (an op no adapter maps yet) stops generation here, before any
pass reads weights. Graphs are lowered whole: forks (a tensor read by several layers) and joins
(``add``, ``concat`` on the join engine); a layer reading several tensors must be a join.
A ``linear`` layer reading a feature map is lowered first
(:func:`.layout.lower_layouts`): its weight columns follow the HWC stream.
"""

from ..engines import ADAPTERS, check_mappable, default_engine
from ..engines.base import is_bipolar
from ..engines.sparse import SPARSE_DENSITY
from ..errors import ModelError
from ..ir import Op
from .layout import lower_layouts

__all__ = ["assign_engines", "default_engine", "is_bipolar", "SPARSE_DENSITY"]


def check_graph(model):
    """Raise :class:`ModelError` (field ``inputs``) at the first layer reading several tensors
    that is not a join (``add``/``concat``); forks and branches are lowered."""
    for layer in model.layers:
        if len(layer.inputs) > 1 and layer.op not in (Op.ADD, Op.CONCAT):
            raise ModelError(layer.name, "inputs", f"reads {', '.join(layer.inputs)}: only "
                             "add and concat join several tensors")


def assign_engines(plan):
    layers = []
    batch = plan.options.batch
    check_graph(plan.model)
    for lp in plan.layers:
        check_mappable(lp.layer)
    plan = lower_layouts(plan)
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
