"""What the compression passes share: the options, the sample data and the pipeline state.

Every pass is a pure function ``pass_(state, config, samples) -> state``.
"""

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import UsageError
from ..ir import DTypeKind, readonly
from .floatmodel import Data, FloatModel

__all__ = ["CompressConfig", "Samples", "State", "PassRecord", "prepare_samples",
           "SYNTHETIC_SAMPLES"]

#: Calibration inputs drawn uniformly over the input dtype when the float model has none.
SYNTHETIC_SAMPLES = 256


def _per_layer(name, table, check):
    """Validate a per-layer table: a tuple of ``(layer or "*", value)``; returns it as tuple."""
    if isinstance(table, dict):
        table = tuple(table.items())
    table = tuple(tuple(item) for item in table)
    seen = set()
    for item in table:
        if len(item) != 2 or not isinstance(item[0], str):
            raise TypeError(f"{name} entries are (layer or '*', value) pairs, not {item!r}")
        if item[0] in seen:
            raise ValueError(f"{name} gives layer {item[0]!r} twice")
        seen.add(item[0])
        check(item[1])
    return table


def _lookup(table, layer):
    values = dict(table)
    return values.get(layer, values.get("*"))


def _int_in(name, lo, hi):
    def check(value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not (
                lo <= value <= hi):
            raise ValueError(f"{name} must be an integer in {lo}..{hi}, not {value!r}")
    return check


def _float_in(name, lo, hi, hi_open=False):
    def check(value):
        ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value) and lo <= value and (value < hi if hi_open
                                                               else value <= hi)
        if not ok:
            end = ")" if hi_open else "]"
            raise ValueError(f"{name} must be a number in [{lo}, {hi}{end}, not {value!r}")
    return check


@dataclass(frozen=True)
class CompressConfig:
    """Options of the compression pipeline, validated on construction.

    Per-layer options are tuples of ``(layer, value)`` pairs, where layer ``"*"`` gives the
    default for every layer not named.

    Attributes
    ----------
    prune : per-layer fraction in [0, 1)
        Fraction of the layer's weights removed, the smallest magnitudes.
    quality : per-layer float >= 0
        Deep Compression's threshold instead: weights with ``|w| <= quality * std(W)`` are
        removed. A layer may have ``prune`` or ``quality``, not both.
    prune_steps : int >= 1
        Rounds of pruning, each followed by retraining, to the target density (iterative
        pruning; see :mod:`.prune`).
    pe : int >= 1
        With ``pe > 1``, pruning is balanced over ``pe`` PEs whose rows are interleaved (row
        ``i`` on PE ``i mod pe``): every PE keeps the same number of weights. Also the PE count
        the sparse storage of the report assumes.
    share : per-layer int in 1..8
        Weight sharing with ``2**bits`` values (code 0 is zero).
    weight_bits : int in 2..16
        Integer weights (and codebook values) are ``int<weight_bits>``, symmetric.
    per_channel : bool
        One weight scale per output channel (else one per layer). Shared layers and the last
        layer always use one scale per layer (see :mod:`.quantize`).
    act_bits : int in 2..16
        Hidden activations are ``uint<act_bits>``.
    act_percentile : float in (0, 100]
        Percentile of the calibration activations that maps to the largest activation code.
    retrain_epochs : int >= 0
        Epochs of retraining after pruning and after sharing (0: none).
    retrain_lr : (float, float)
        Learning rate of the first and last retraining epoch.
    binarize : bool
        Binarize instead (bipolar weights and activations; excludes prune, quality and share).
    binarize_epochs : int >= 1
    seed : int
    log : callable or None
        Progress lines.
    """

    prune: tuple = ()
    quality: tuple = ()
    prune_steps: int = 1
    pe: int = 1
    share: tuple = ()
    weight_bits: int = 8
    per_channel: bool = True
    act_bits: int = 8
    act_percentile: float = 99.9
    retrain_epochs: int = 30
    retrain_lr: tuple = (3e-3, 1e-4)
    binarize: bool = False
    binarize_epochs: int = 40
    seed: int = 0
    log: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for name, check in (("prune", _float_in("prune", 0.0, 1.0, True)),
                            ("quality", _float_in("quality", 0.0, 1e6)),
                            ("share", _int_in("share", 1, 8))):
            object.__setattr__(self, name, _per_layer(name, getattr(self, name), check))
        both = {k for k, _ in self.prune} & {k for k, _ in self.quality}
        if both:
            raise ValueError(f"layer {sorted(both)[0]!r} has both prune and quality")
        _int_in("prune_steps", 1, 100)(self.prune_steps)
        _int_in("pe", 1, 1 << 16)(self.pe)
        _int_in("weight_bits", 2, 16)(self.weight_bits)
        _int_in("act_bits", 2, 16)(self.act_bits)
        _float_in("act_percentile", 1e-9, 100.0)(self.act_percentile)
        _int_in("retrain_epochs", 0, 1 << 20)(self.retrain_epochs)
        _int_in("binarize_epochs", 1, 1 << 20)(self.binarize_epochs)
        if not isinstance(self.per_channel, bool) or not isinstance(self.binarize, bool):
            raise TypeError("per_channel and binarize must be True or False")
        if len(self.retrain_lr) != 2 or not all(
                isinstance(v, (int, float)) and v > 0 for v in self.retrain_lr):
            raise ValueError(f"retrain_lr must be two positive numbers, not "
                             f"{self.retrain_lr!r}")
        if self.binarize and (self.prune or self.quality or self.share):
            raise ValueError("binarize excludes prune, quality and share (bipolar weights "
                             "have no zero)")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool):
            raise TypeError(f"seed must be an integer, not {self.seed!r}")

    def prune_for(self, layer):
        """``("fraction", f)``, ``("quality", q)`` or None for ``layer``."""
        for kind, table in (("fraction", self.prune), ("quality", self.quality)):
            if layer in dict(table):
                return kind, dict(table)[layer]
        for kind, table in (("fraction", self.prune), ("quality", self.quality)):
            if "*" in dict(table):
                return kind, dict(table)["*"]
        return None

    def share_for(self, layer):
        """Code bits of ``layer`` or None."""
        return _lookup(self.share, layer)

    def check_layers(self, model):
        """Raise UsageError when an option names a layer ``model`` does not have."""
        names = [layer.name for layer in model.layers]
        weighted = [layer.name for layer in model.layers if layer.weight is not None]
        for option, table in (("prune", self.prune), ("quality", self.quality),
                              ("share", self.share)):
            for layer, _ in table:
                if layer != "*" and layer not in names:
                    raise UsageError(f"--{option} names layer {layer!r}, which the float model "
                                     f"does not have (layers: {', '.join(names)})")
                if layer != "*" and layer not in weighted:
                    raise UsageError(f"--{option} names layer {layer!r}, which has no weights "
                                     f"(weighted layers: {', '.join(weighted)})")


@dataclass(frozen=True, eq=False)
class Samples:
    """The data every pass uses.

    ``x_train`` calibrates activations and retrains, with ``y_train`` (the given labels, or the
    float model's own argmax when there are none); ``x_eval``/``y_eval`` measure accuracy
    (test arrays, else the calib ones). ``labelled`` is False when ``y_eval`` is the float
    model's argmax: accuracies are then agreement with the float model. ``synthetic`` is True
    when the float model had no inputs and ``x_train`` was drawn uniformly over the input dtype.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    labelled: bool
    synthetic: bool


def prepare_samples(model, data=None, seed=0):
    """Samples of :class:`Samples` from a float model's optional data."""
    data = data or Data()
    synthetic = data.x_train is None
    if synthetic:
        dtype = model.input_dtype
        rng = np.random.default_rng([seed, 7])
        shape = (SYNTHETIC_SAMPLES, *model.input_shape)
        if dtype.kind is DTypeKind.BIPOLAR:
            x = np.where(rng.random(shape) < 0.5, -1, 1)
        else:
            x = rng.integers(dtype.lo, dtype.hi, shape, endpoint=True)
    else:
        x = data.x_train
    pseudo = np.argmax(model.forward(x), axis=1)
    y = data.y_train if data.y_train is not None else pseudo
    if data.x_test is not None:
        x_eval = data.x_test
        y_eval = data.y_test if data.y_test is not None else np.argmax(model.forward(x_eval),
                                                                      axis=1)
        labelled = data.y_test is not None
    else:
        x_eval, y_eval, labelled = x, y, data.y_train is not None
    return Samples(x_train=readonly(x), y_train=readonly(y), x_eval=readonly(x_eval),
                   y_eval=readonly(y_eval), labelled=labelled, synthetic=synthetic)


@dataclass(frozen=True, eq=False)
class PassRecord:
    """What one pass did: its name, the accuracy after it (0..1), its wall-clock time and the
    density of the weights after it (over all layers)."""

    name: str
    accuracy: float
    seconds: float
    density: float

    def dump(self):
        return {"pass": self.name, "accuracy": self.accuracy, "seconds": round(self.seconds, 3),
                "density": self.density}


@dataclass(frozen=True, eq=False)
class State:
    """The pipeline's IR: the float network being compressed and, once quantized or
    binarized, the integer SPEC model.

    Attributes
    ----------
    original : FloatModel
        The input.
    float_model : FloatModel
        The current float network (pruned, shared, retrained).
    model : nnaccel.gen.ir.Model or None
        The integer model (after ``quantize`` or ``binarize``).
    scales : tuple of dict
        Per layer, the quantization scales ``quantize`` chose (``in_scale``, ``weight_scale``,
        ``out_scale``); the float value of an integer ``v`` is ``v * scale``.
    bnn : mapping or None
        The trained binarized network's float parameters (after ``binarize``).
    history : tuple of PassRecord
    """

    original: FloatModel
    float_model: FloatModel
    model: object = None
    scales: tuple = ()
    bnn: object = None
    history: tuple = ()

    def but(self, **changes):
        return replace(self, **changes)

    def accuracy(self, samples):
        """Accuracy of the integer model if there is one, else of the float one."""
        if self.model is not None:
            scores = self.model.forward(samples.x_eval)
        else:
            scores = self.float_model.forward(samples.x_eval)
        return float(np.mean(np.argmax(scores, axis=1) == samples.y_eval))

    def density(self):
        layers = self.model.layers if self.model is not None else self.float_model.layers
        layers = [layer for layer in layers if getattr(layer, "weight", None) is not None]
        nz = sum(int(np.count_nonzero(layer.weight)) for layer in layers)
        return nz / sum(layer.weight.size for layer in layers)

    def dump(self):
        """A JSON-able summary of the IR (for ``stop_after`` and debugging)."""
        layers = []
        for layer in self.float_model.layers:
            if layer.weight is None:
                layers.append({"name": layer.name, "op": layer.op.value,
                               "kernel": list(layer.kernel)})
                continue
            layers.append({
                "name": layer.name, "shape": list(layer.weight.shape),
                "density": layer.density, "pruned": layer.mask is not None,
                "codebook": None if layer.codebook is None else layer.codebook.tolist(),
                "batch_norm": layer.bn is not None})
        out = {"name": self.float_model.name, "passes": [r.dump() for r in self.history],
               "float_layers": layers}
        if self.model is not None:
            out["model_layers"] = [
                {"name": layer.name, "op": layer.op.value, "out_dtype": str(layer.out_dtype)}
                if getattr(layer, "weight", None) is None else
                {"name": layer.name, "weight_dtype": str(layer.weight_dtype),
                 "output": layer.output.kind.value, "output_dtype": str(layer.output.dtype),
                 "density": layer.density, "shared": layer.codebook is not None}
                for layer in self.model.layers]
        return out
