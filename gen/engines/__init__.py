"""The engine adapters and their registry: the one place that lists the engines.

Each adapter (see :mod:`.base` for the contract) owns everything the compiler knows about one
engine; the passes (:mod:`nnaccel.gen.passes`) and the emitter (:mod:`nnaccel.gen.generate`) loop
over layers and ask the adapter of each layer's engine. Adding an engine is a folder
``hw/<engine>/`` (params, engine, reference), one adapter module here, a member of
:class:`Engine` and one line in :data:`ADAPTERS`.
"""

from ..errors import ModelError
from ..ir import Op
from .base import Engine, EngineAdapter
from .join import JoinAdapter
from .mvu import MVUAdapter
from .pool import PoolAdapter
from .sparse import SparseAdapter, SparseChoice
from .systolic import ArrayChoice, SystolicAdapter
from .vvau import VVAUAdapter

__all__ = ["Engine", "EngineAdapter", "ADAPTERS", "DEFAULT_ORDER", "adapter_for",
           "check_mappable", "default_engine", "ArrayChoice", "SparseChoice"]

#: Every engine's adapter.
ADAPTERS = {Engine.MVU: MVUAdapter(), Engine.SYSTOLIC: SystolicAdapter(),
            Engine.SPARSE: SparseAdapter(), Engine.POOL: PoolAdapter(), Engine.VVAU: VVAUAdapter(),
            Engine.JOIN: JoinAdapter()}
#: The order in which SPEC 2.3's defaults offer a layer to the engines (the first that accepts
#: and claims it wins; the MVU claims every layer it accepts).
DEFAULT_ORDER = (Engine.SPARSE, Engine.SYSTOLIC, Engine.MVU, Engine.POOL, Engine.VVAU,
                 Engine.JOIN)


def adapter_for(engine):
    """The adapter of ``engine`` (an :class:`Engine`)."""
    return ADAPTERS[engine]


def check_mappable(layer):
    """Raise :class:`ModelError` (field ``op``; ``groups`` for a grouped convolution) unless
    some engine accepts ``layer``."""
    if not any(a.accepts(layer)[0] for a in ADAPTERS.values()):
        if layer.op is Op.CONV2D:
            raise ModelError(layer.name, "groups", ADAPTERS[Engine.MVU].accepts(layer)[1])
        raise ModelError(layer.name, "op", f"no engine maps op {layer.op.value} yet (the "
                         "engines run linear, conv2d and pooling layers); this version cannot "
                         "generate it")


def default_engine(layer, batch):
    """``(engine, reason)`` by SPEC 2.3's defaults: sparse at density <= 0.35 (not bipolar),
    systolic for batches (not bipolar), else mvu."""
    for engine in DEFAULT_ORDER:
        adapter = ADAPTERS[engine]
        if adapter.accepts(layer)[0]:
            reason = adapter.claims(layer, batch)
            if reason is not None:
                return engine, reason
    raise ModelError(layer.name, "op", f"no engine takes op {layer.op.value}")
