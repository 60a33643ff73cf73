"""Pass: choose the engine of every layer (SPEC 2.3 defaults, user overrides)."""

from ..ir import DTypeKind
from ..plan import AVAILABLE_ENGINES, Engine

__all__ = ["assign_engines", "default_engine"]

SPARSE_DENSITY = 0.35


def default_engine(layer, batch):
    """SPEC 2.3: sparse at density <= 0.35 (not bipolar), systolic for batches, else mvu."""
    if layer.density <= SPARSE_DENSITY and layer.weight_dtype.kind is not DTypeKind.BIPOLAR:
        return Engine.SPARSE, f"density {layer.density:.2f} <= {SPARSE_DENSITY}"
    if batch > 1:
        return Engine.SYSTOLIC, f"dense layer in a design for batches of {batch}"
    return Engine.MVU, "dense layer, batch 1"


def assign_engines(plan):
    layers = []
    for lp in plan.layers:
        forced = plan.options.engine_for(lp.layer.name)
        if forced is not None:
            wanted, reason = forced, "forced by --engine"
        else:
            wanted, reason = default_engine(lp.layer, plan.options.batch)
        engine = wanted
        if wanted not in AVAILABLE_ENGINES:
            engine = Engine.MVU
            reason += f"; the {wanted.value} engine is not available yet, so mvu runs it"
        layers.append(lp.but(requested_engine=wanted, engine=engine, engine_reason=reason,
                             storage=plan.options.storage_for(lp.layer.name)))
    return plan.but(layers=tuple(layers))
