"""Pass: choose the engine of every layer (SPEC 2.3 defaults, user overrides).

A graph that is not a chain (a layer reading anything but the layer before it: joins, forks)
and a layer that no engine accepts (an op no adapter maps yet) stop generation here, before any
pass reads weights. A ``linear`` layer reading a feature map is lowered first
(:func:`.layout.lower_layouts`): its weight columns follow the HWC stream.
"""

from ..engines import ADAPTERS, check_mappable, default_engine
from ..engines.base import is_bipolar
from ..engines.sparse import SPARSE_DENSITY
from ..errors import ModelError
from ..ir import MODEL_INPUT
from .layout import lower_layouts

__all__ = ["assign_engines", "default_engine", "is_bipolar", "SPARSE_DENSITY"]


def check_chain(model):
    """Raise :class:`ModelError` (field ``inputs``) at the first layer that does not read
    exactly the layer before it (the first one: the model input)."""
    prev = MODEL_INPUT
    for layer in model.layers:
        inputs = tuple(layer.inputs) or (prev,)
        if inputs != (prev,):
            raise ModelError(layer.name, "inputs", f"reads {', '.join(inputs)}: this version "
                             "lowers chains only, each layer reading the one before it (joins "
                             "and forks such as add, concat or residual branches are not "
                             "supported yet)")
        prev = layer.name


def assign_engines(plan):
    layers = []
    batch = plan.options.batch
    check_chain(plan.model)
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
