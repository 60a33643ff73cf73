"""What an engine adapter is: the one place that knows how the compiler maps layers onto an engine.

An adapter (one per engine, registered in :mod:`nnaccel.gen.engines`) answers every question the
passes and the emitter ask about its engine, so no other file branches on the engine:

==================  ======================================================================
``accepts``         whether the engine can run a layer at all, and why not (``engine`` error)
``claims``          whether SPEC 2.3's defaults give it the layer, and why (``engine_reason``)
``check_choice``    the user's forced choice (``--fold``/``--array``/``--sparse``) is sane
``configure``       sizing under a lane share or a cycle target, the stream beats, and the
                    hardware Params (output stage included) it produces
``with_fold``       the Params once the pipeline-wide fold chooser has picked PE x SIMD
                    (engines with ``free_fold``)
``fold_space``      what the fold chooser may pick for a feature-map layer (a
                    :class:`~nnaccel.gen.folding.FoldSpace`: allowed PE/SIMD, cycles per
                    image, input beat, lane cost); None for a plain (M, K) matrix layer
``in_beat``         elements per beat the layer takes from its producer (default: SIMD)
``lanes``           multipliers (or XNOR lanes) its Params instantiate
``model_acc``       its numpy model of the accumulator (max pooling: the maxima) on inputs
                    in stream order (HWC for feature maps), checked against SPEC 2.1/2.1b
``build``           the engine component, ``Engine(params, *, weight...)``
``manifest``        its manifest fields, including ``expected_cycles`` (cycles per inference,
                    steady state) and ``lanes``, computed from the Params alone
``dump``            its fields of ``generate --dump-ir``
``resources``       what its Params instantiate, as a :class:`~nnaccel.gen.resources.Bill`
                    (lanes, trees, accumulators, output stage, memories, multipliers) for the
                    resource and timing model (:mod:`nnaccel.gen.resources`)
==================  ======================================================================

Adapters are stateless: their methods take a layer or its :class:`~nnaccel.gen.plan.LayerPlan`
and return a new LayerPlan or a value.
"""

import enum

import numpy as np

from ...hw.common.outstage import StageKind
from ..errors import UsageError
from ..ir import DTypeKind, Op
from ..resources import Bill, lanes_bill, stage_bill, stream_bill

__all__ = ["Engine", "EngineAdapter", "is_bipolar", "is_matrix_layer", "stage_kwargs", "pick",
           "number", "is_map", "stream_order", "layer_macs", "to_stream", "divisors"]


class Engine(enum.Enum):
    """The engines a layer can run on (``--engine LAYER=<value>``)."""

    MVU = "mvu"
    SPARSE = "sparse"
    SYSTOLIC = "systolic"
    POOL = "pool"
    VVAU = "vvau"
    JOIN = "join"


def is_map(shape):
    """True for a feature map ``(C, H, W)``, False for a vector ``(K,)``."""
    return len(shape) == 3


def stream_order(shape):
    """How a tensor of ``shape`` travels between layers: ``"HWC"`` (a feature map, pixel by
    pixel in raster order, a pixel's channels together) or ``"vector"``."""
    return "HWC" if is_map(shape) else "vector"


def to_stream(x, shape):
    """A batch ``x`` of tensors of ``shape`` as the stream carries them: ``(B, elements)``,
    HWC order for feature maps."""
    x = np.asarray(x).reshape(len(x), *shape)
    if is_map(shape):
        x = x.transpose(0, 2, 3, 1)
    return x.reshape(len(x), -1)


def divisors(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def layer_macs(layer):
    """Multiply-accumulates of one inference through ``layer`` (0 for pooling)."""
    if layer.op is Op.CONV2D:
        m, oh, ow = layer.out_shape
        return m * oh * ow * layer.patch_size
    if layer.op is Op.LINEAR:
        return int(layer.weight.size)
    return 0


def is_matrix_layer(layer):
    """A layer with a weight matrix (M, K) on a vector: what the present engines run."""
    return layer.op is Op.LINEAR


def is_bipolar(layer):
    """Bipolar weights or inputs: XNOR-popcount territory, only the MVU runs them."""
    return DTypeKind.BIPOLAR in (layer.weight_dtype.kind, layer.in_dtype.kind)


def stage_kwargs(layer):
    """The SPEC 2.2 output stage of ``layer`` as the ``for_layer`` constructors of the engines'
    Params take it: ``output_kind`` (a :class:`StageKind`), ``out_dtype``, ``mult``, ``shift``,
    ``relu``, ``thresholds``."""
    out = layer.output
    kind = StageKind(out.kind.value)
    kw = dict(output_kind=kind, out_dtype=out.dtype)
    if kind is StageKind.REQUANT:
        kw.update(mult=out.mult, shift=out.shift, relu=out.relu)
    elif kind is StageKind.THRESHOLD:
        kw.update(thresholds=out.thresholds)
    return kw


def pick(cands, share, target):
    """Sizing under a budget or a target. ``cands``: (lanes, cycles, choice). Budget: the
    fastest within ``share`` lanes (ties to fewer lanes; the smallest if none fits); target:
    the fewest lanes meeting ``target`` (else the fastest, and ``ok`` False).
    Returns ``((lanes, cycles, choice), ok)``."""
    if target is None:
        fits = [c for c in cands if c[0] <= share] or [min(cands, key=lambda c: c[0])]
        return min(fits, key=lambda c: (c[1], c[0])), True
    meets = [c for c in cands if c[1] <= target]
    if meets:
        return min(meets, key=lambda c: (c[0], c[1])), True
    return min(cands, key=lambda c: (c[1], c[0])), False


def number(x):
    """An int when ``x`` is integral, else ``x`` rounded to 3 decimals (JSON-friendly)."""
    return int(x) if float(x).is_integer() else round(float(x), 3)


class EngineAdapter:
    """Base of the adapters: the defaults and the contract (see the module)."""

    #: The engine this adapter maps onto.
    engine: Engine
    #: The :class:`~nnaccel.gen.plan.Options` field of the user's forced choices, and its flag.
    option: str
    flag: str
    #: True: PE x SIMD come from the pipeline-wide fold chooser (gen.passes.folding) and the
    #: Params from :meth:`with_fold`; False: :meth:`configure` fixes the beats and the Params.
    free_fold = False
    #: True: the engine computes whole batches (the stream carries multiples of the batch).
    batched = False

    def accepts(self, layer):
        """``(True, "")`` when the engine can run ``layer``, else ``(False, why not)``."""
        if not is_matrix_layer(layer):
            return False, f"the {self.engine.value} engine runs linear layers, not {layer.op.value}"
        return True, ""

    def claims(self, layer, batch):
        """The reason SPEC 2.3's defaults put ``layer`` on this engine, or None."""
        return None

    def forced_note(self, batch):
        """What ``engine_reason`` adds when ``--engine`` forces this engine at ``batch``."""
        return ""

    def check_choice(self, lp, choice):
        """Raise :class:`UsageError` unless the forced ``choice`` fits the layer."""

    def wrong_engine(self, lp):
        """The error for a forced choice of this engine on a layer that runs elsewhere."""
        name = lp.layer.name
        return UsageError(f"layer {name!r}: {self.flag} applies to {self.engine.value} layers; "
                          f"this one runs on the {lp.engine.value} engine (use --engine "
                          f"{name}={self.engine.value})")

    def configure(self, lp, *, share, prev_beat, options):
        """Size the layer and fix its beats: ``(lp, out_beat)``; ``prev_beat`` is the previous
        layer's output beat when fixed (else None), ``out_beat`` this layer's (or None)."""
        raise NotImplementedError

    def with_fold(self, lp, fold, options):
        """``lp`` with the fold the fold chooser picked (engines with :attr:`free_fold`)."""
        return lp

    def fold_space(self, lp):
        """What the fold chooser may pick for ``lp`` (engines with :attr:`free_fold`): a
        :class:`~nnaccel.gen.folding.FoldSpace`, or None for a plain ``(M, K)`` matrix layer
        (any PE up to M, any SIMD up to K)."""
        return None

    def in_beat(self, lp):
        """Elements per beat the layer takes from its producer (default: the fold's SIMD)."""
        return lp.fold.simd

    def lanes(self, lp):
        return lp.params.lanes

    def model_acc(self, lp, x):
        """The engine's numpy model of the SPEC accumulator on the batch ``x`` (B, K)."""
        raise NotImplementedError

    def build(self, lp):
        """The engine component of ``lp`` (after every pass)."""
        raise NotImplementedError

    def manifest(self, lp):
        """The manifest fields of the engine (``lanes``, ``acc_width``, ``expected_cycles`` and
        the engine's own, see docs/ARCHITECTURE.md)."""
        raise NotImplementedError

    def first_cycles(self, manifest):
        """Cycles of the first inference through the layer (for the latency estimate)."""
        return manifest["expected_cycles"]

    def dump(self, lp):
        """The engine's fields of ``generate --dump-ir``."""
        return {}

    def resources(self, lp):
        """What ``lp``'s Params instantiate (a :class:`~nnaccel.gen.resources.Bill`). The default
        reads the attributes most Params share: ``pe``, ``lanes``, ``lane_kind``, ``raw_shape``,
        ``output``, the dtypes; engines with memories of their own add them."""
        p, layer = lp.params, lp.layer
        bill = Bill(quantities={"layer": 1})
        kind = getattr(p, "lane_kind", None)
        wd = getattr(layer, "weight_dtype", None)
        raw = getattr(p, "raw_shape", None)
        lanes = getattr(p, "lanes", 0) or 0
        if kind is not None and wd is not None and raw is not None and lanes:
            pe = getattr(p, "pe", 1)
            bill = lanes_bill(pe, max(lanes // pe, 1), kind, wd.bits, layer.in_dtype.bits,
                              raw.width)
        out = getattr(p, "output", None)
        if out is not None and hasattr(out, "acc_shape"):
            bill = bill.plus(stage_bill(out))
        return bill.plus(stream_bill(self.in_beat(lp) * layer.in_dtype.bits,
                                     lp.fold.pe * layer.out_dtype.bits))
