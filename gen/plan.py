"""The mapped IR: which engine runs each layer, and how it is folded."""

from dataclasses import dataclass, field, replace

import numpy as np

from ..hw.common.memory import Storage
from .engines import ArrayChoice, Engine, SparseChoice, adapter_for
from .folding import Fold
from .ir import Layer, Model

__all__ = ["Engine", "Options", "ArrayChoice", "SparseChoice", "LayerPlan", "Plan"]


@dataclass(frozen=True, kw_only=True)
class Options:
    """What the user asked of ``generate`` (and ``run``/``build``, which generate too).

    At most one of ``target_cycles`` / ``max_lanes`` / ``fill``; with none, ``max_lanes`` is
    64. ``fill`` (a fraction in (0, 1]) with ``board`` (a :class:`~nnaccel.gen.resources.Device`)
    chooses the folds of most throughput whose estimated LUT4, BRAM and DSP stay within ``fill``
    of the device (:mod:`nnaccel.gen.resources`).
    ``folds``, ``engines``, ``storage``, ``arrays`` (systolic layers) and ``sparse`` (sparse
    layers) map layer names to a forced choice.
    """

    target_cycles: int | None = None
    max_lanes: int | None = None
    batch: int = 1
    folds: tuple = ()          # ((layer, Fold), ...)
    engines: tuple = ()        # ((layer, Engine), ...)
    storage: tuple = ()        # ((layer or "*", Storage), ...)
    arrays: tuple = ()         # ((layer, ArrayChoice), ...)
    sparse: tuple = ()         # ((layer, SparseChoice), ...)
    pools: tuple = ()          # ((layer, Fold(n, n)), ...): a pooling layer's beat
    vvau_folds: tuple = ()     # ((layer, Fold(pe*mg, simd)), ...): grouped conv2d folds
    joins: tuple = ()          # never set by the CLI: a join's beat is chosen by the folder
    board: object = None       # a gen.resources.Device: the budget of ``fill``
    fill: float | None = None
    #: "rule": join FIFOs from graph_fifo_plan's closed-form bound; "simulation": the least
    #: depths measured on the graph's own schedule (gen.fifo_sizing; slower, exact).
    fifo_sizing: str = "rule"

    def forced(self, option, name):
        """The user's forced choice in the field ``option`` (an adapter's ``option``:
        ``folds``, ``arrays``, ``sparse``) for layer ``name``, or None."""
        return dict(getattr(self, option)).get(name)

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
    #: MVU: PE x SIMD. Every engine: ``pe`` is the output beat and ``simd`` the input beat.
    fold: Fold | None = None
    storage: Storage = Storage.AUTO
    #: The engine's hardware Params (output stage included), from the adapter: after the
    #: configure pass (engines sized there) or the folding pass (the MVU).
    params: object = None
    warnings: tuple = ()

    @property
    def adapter(self):
        """The adapter of this layer's engine (after the engine pass)."""
        return adapter_for(self.engine)

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
                "name": lp.layer.name, "op": lp.layer.op.value,
                "shape": list(getattr(lp.layer, "weight", np.zeros(0)).shape),
                "in_shape": list(lp.layer.in_shape), "out_shape": list(lp.layer.out_shape),
                "weight_dtype": str(getattr(lp.layer, "weight_dtype", None)),
                "in_dtype": str(lp.layer.in_dtype),
                "output": lp.layer.output.kind.value if lp.layer.output else None,
                "out_dtype": str(lp.layer.out_dtype),
                "density": round(lp.layer.density, 4) if hasattr(lp.layer, "density") else None,
                "engine": lp.engine.value if lp.engine else None,
                "requested_engine": (lp.requested_engine.value if lp.requested_engine
                                     else None),
                "engine_reason": lp.engine_reason,
                "pe": lp.fold.pe if lp.fold else None,
                "simd": lp.fold.simd if lp.fold else None,
                "storage": lp.storage.value,
                **(lp.adapter.dump(lp) if lp.params is not None else {}),
                "warnings": list(lp.warnings),
            } for lp in self.layers],
        }
