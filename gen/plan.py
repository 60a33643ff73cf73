"""The mapped IR: which engine runs each layer, and how it is folded."""

import enum
from dataclasses import dataclass, field, replace

from ..hw.common.memory import Storage
from .folding import Fold
from .ir import Layer, Model

__all__ = ["Engine", "Options", "LayerPlan", "Plan"]


class Engine(enum.Enum):
    MVU = "mvu"
    SPARSE = "sparse"
    SYSTOLIC = "systolic"


#: Engines that exist in this version; the others map to the MVU (and the manifest says so).
AVAILABLE_ENGINES = frozenset({Engine.MVU})


@dataclass(frozen=True, kw_only=True)
class Options:
    """What the user asked of ``generate`` (and ``run``/``build``, which generate too).

    At most one of ``target_cycles`` / ``max_lanes``; with neither, ``max_lanes`` is 64.
    ``folds``, ``engines`` and ``storage`` map layer names to a forced choice.
    """

    target_cycles: int | None = None
    max_lanes: int | None = None
    batch: int = 1
    folds: tuple = ()          # ((layer, Fold), ...)
    engines: tuple = ()        # ((layer, Engine), ...)
    storage: tuple = ()        # ((layer or "*", Storage), ...)

    def fold_for(self, name):
        return dict(self.folds).get(name)

    def engine_for(self, name):
        return dict(self.engines).get(name)

    def storage_for(self, name):
        table = dict(self.storage)
        return table.get(name, table.get("*", Storage.AUTO))


@dataclass(frozen=True, kw_only=True)
class LayerPlan:
    layer: Layer
    requested_engine: Engine | None = None
    engine: Engine | None = None
    engine_reason: str = ""
    fold: Fold | None = None
    storage: Storage = Storage.AUTO

    def but(self, **changes):
        return replace(self, **changes)


@dataclass(frozen=True, kw_only=True)
class Plan:
    model: Model
    options: Options
    layers: tuple = field(default_factory=tuple)
    done: tuple = ()   # names of the passes run so far

    def but(self, **changes):
        return replace(self, **changes)

    @classmethod
    def start(cls, model, options):
        return cls(model=model, options=options,
                   layers=tuple(LayerPlan(layer=layer) for layer in model.layers))

    def dump(self):
        """A JSON-able view of the plan, for ``generate --dump-ir``."""
        return {
            "model": self.model.name, "passes_done": list(self.done),
            "layers": [{
                "name": lp.layer.name, "shape": list(lp.layer.weight.shape),
                "weight_dtype": str(lp.layer.weight_dtype), "in_dtype": str(lp.layer.in_dtype),
                "output": lp.layer.output.kind.value, "out_dtype": str(lp.layer.output.dtype),
                "density": round(lp.layer.density, 4),
                "engine": lp.engine.value if lp.engine else None,
                "requested_engine": (lp.requested_engine.value if lp.requested_engine
                                     else None),
                "engine_reason": lp.engine_reason,
                "pe": lp.fold.pe if lp.fold else None,
                "simd": lp.fold.simd if lp.fold else None,
                "storage": lp.storage.value,
            } for lp in self.layers],
        }
