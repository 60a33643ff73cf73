"""Pass: choose the engine of every layer (SPEC 2.3 defaults, user overrides)."""

from ..errors import ModelError
from ..ir import DTypeKind
from ..plan import AVAILABLE_ENGINES, Engine

__all__ = ["assign_engines", "default_engine", "is_bipolar"]

SPARSE_DENSITY = 0.35


def is_bipolar(layer):
    """Bipolar weights or inputs: XNOR-popcount territory, only the MVU runs them."""
    return DTypeKind.BIPOLAR in (layer.weight_dtype.kind, layer.in_dtype.kind)


def default_engine(layer, batch):
    """SPEC 2.3: sparse at density <= 0.35 (not bipolar), systolic for batches (not bipolar),
    else mvu."""
    if is_bipolar(layer):
        return Engine.MVU, "bipolar layer (XNOR-popcount lanes)"
    if layer.density <= SPARSE_DENSITY:
        return Engine.SPARSE, f"density {layer.density:.2f} <= {SPARSE_DENSITY}"
    if batch > 1:
        return Engine.SYSTOLIC, f"dense layer in a design for batches of {batch}"
    return Engine.MVU, "dense layer, batch 1"


def assign_engines(plan):
    layers = []
    batch = plan.options.batch
    for lp in plan.layers:
        layer = lp.layer
        forced = plan.options.engine_for(layer.name)
        if forced is not None:
            wanted, reason = forced, "forced by --engine"
            if forced is not Engine.MVU and is_bipolar(layer):
                raise ModelError(layer.name, "engine", f"a bipolar layer cannot run on the "
                                 f"{forced.value} engine (only mvu has XNOR-popcount lanes)")
            if forced is Engine.SYSTOLIC and batch == 1:
                reason += "; at batch 1 the mvu would be better (the array idles between tiles)"
        else:
            wanted, reason = default_engine(layer, batch)
        engine = wanted
        if wanted not in AVAILABLE_ENGINES:
            engine = Engine.MVU
            reason += f"; the {wanted.value} engine is not available yet, so mvu runs it"
        layers.append(lp.but(requested_engine=wanted, engine=engine, engine_reason=reason,
                             storage=plan.options.storage_for(layer.name)))
    return plan.but(layers=tuple(layers))
