"""The compiler's intermediate representation: frozen dataclasses and enums.

A :class:`Model` is exactly what a SPEC model file says (../shared/SPEC.md sections 2 and 3),
validated; arrays are read-only int64 numpy arrays holding mathematical values (bipolar as -1/+1).
"""

import enum
from dataclasses import dataclass, field

import numpy as np

from ..hw.common import reference as ref
from ..hw.common.dtype import DType, DTypeKind
from .names import IDENTIFIER

__all__ = ["DType", "DTypeKind", "Op", "OutputKind", "OutputStage", "Layer", "Model",
           "WeightMatrix", "IDENTIFIER", "readonly"]



def readonly(arr, dtype=np.int64):
    """An immutable copy of ``arr`` (int64 unless told)."""
    out = np.array(arr, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


class Op(enum.Enum):
    LINEAR = "linear"


class OutputKind(enum.Enum):
    IDENTITY = "identity"
    REQUANT = "requant"
    THRESHOLD = "threshold"


@dataclass(frozen=True, eq=False)
class OutputStage:
    """SPEC 2.2. ``mult``/``shift`` are (M,) arrays (scalars broadcast at read time);
    ``thresholds`` is (M, L) (a shared (1, L) row is broadcast at read time)."""

    kind: OutputKind
    dtype: DType
    mult: np.ndarray | None = None
    shift: np.ndarray | None = None
    relu: bool = False
    thresholds: np.ndarray | None = None

    def apply(self, acc):
        """Exact SPEC arithmetic on accumulators (mathematical values in and out)."""
        return ref.output_stage(acc, self.kind.value, self.dtype.kind.value, self.dtype.bits,
                                mult=self.mult, shift=self.shift, relu=self.relu,
                                thresholds=self.thresholds)


class WeightMatrix:
    """Shape and density of a layer's ``weight`` (M outputs x K inputs)."""

    @property
    def out_features(self):
        return self.weight.shape[0]

    @property
    def in_features(self):
        return self.weight.shape[1]

    @property
    def density(self):
        """Fraction of non-zero weights."""
        return float(np.count_nonzero(self.weight)) / max(self.weight.size, 1)


@dataclass(frozen=True, eq=False)
class Layer(WeightMatrix):
    """One SPEC layer. ``weight`` is always present (derived from codebook[indices] when the
    file gives only those); ``in_dtype`` is the dtype of the vector that feeds it."""

    name: str
    op: Op
    in_dtype: DType
    weight: np.ndarray
    weight_dtype: DType
    output: OutputStage
    bias: np.ndarray | None = None
    codebook: np.ndarray | None = None
    indices: np.ndarray | None = None


    def acc_bounds(self):
        """Per-row worst-case (lo, hi) of the accumulator over every legal input."""
        return ref.acc_bounds(self.weight, self.in_dtype.lo, self.in_dtype.hi, self.bias)

    def forward(self, x):
        """SPEC 2.1 + 2.2 on a batch ``(B, K)`` of mathematical values."""
        acc = ref.linear_acc(self.weight, x, self.bias, self.in_dtype.lo, self.in_dtype.hi)
        return self.output.apply(acc)


@dataclass(frozen=True, eq=False)
class Model:
    """A validated model: a chain of layers."""

    name: str
    input_shape: tuple
    input_dtype: DType
    layers: tuple = field(default_factory=tuple)

    @property
    def in_features(self):
        return int(np.prod(self.input_shape))

    @property
    def output_dtype(self):
        return self.layers[-1].output.dtype

    def forward(self, x, upto=None):
        """Run the numpy reference on a batch ``(B, *input_shape)``; returns ``(B, M_last)``
        exact integers (mathematical values). ``upto`` stops after that many layers."""
        x = np.asarray(x).reshape(len(x), -1)
        for layer in self.layers[:upto]:
            x = layer.forward(x)
        return x

    def layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)
