"""The compiler's intermediate representation: frozen dataclasses and enums.

A :class:`Model` is exactly what a SPEC model file says (../shared/SPEC.md sections 2 and 3),
validated; arrays are read-only int64 numpy arrays holding mathematical values (bipolar as -1/+1).

Every layer class has ``name``, ``op``, ``inputs`` (the resolved source names: ``"input"`` or
an earlier layer), ``in_shape``/``out_shape`` (``(K,)`` or ``(C, H, W)``), ``in_dtype`` (the
dtype of its first input), ``out_dtype`` and ``output`` (its output stage, or None for the ops
that have none), and ``forward(*xs)`` on batches. Feature maps are (C, H, W), batches
(B, C, H, W); output stages act per channel (axis 0 of a tensor).
"""

import enum
from dataclasses import dataclass, field, replace

import numpy as np

from ..hw.common import reference as ref
from ..hw.common.dtype import DType, DTypeKind
from .names import IDENTIFIER

__all__ = ["DType", "DTypeKind", "Op", "OutputKind", "OutputStage", "Layer", "Conv2d", "Pool2d",
           "Add", "Concat", "Model", "WeightMatrix", "IDENTIFIER", "readonly", "MODEL_INPUT"]

#: The name under which ``inputs`` refers to the model's input.
MODEL_INPUT = "input"


def readonly(arr, dtype=np.int64):
    """An immutable copy of ``arr`` (int64 unless told)."""
    out = np.array(arr, dtype=dtype, copy=True)
    out.setflags(write=False)
    return out


class Op(enum.Enum):
    LINEAR = "linear"
    CONV2D = "conv2d"
    MAXPOOL2D = "maxpool2d"
    SUMPOOL2D = "sumpool2d"
    ADD = "add"
    CONCAT = "concat"


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

    def apply_channels(self, acc):
        """:meth:`apply` on a batch whose channels are axis 1: ``(B, C, ...)``."""
        acc = np.asarray(acc)
        if acc.ndim <= 2:
            return self.apply(acc)
        moved = np.moveaxis(acc, 1, -1)
        return np.moveaxis(np.asarray(self.apply(moved)), -1, 1)


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


def _density(weight):
    return float(np.count_nonzero(weight)) / max(weight.size, 1)


def _batch(x, shape):
    """``x`` as a batch of tensors of ``shape``."""
    x = np.asarray(x)
    return x.reshape((len(x), *shape))


@dataclass(frozen=True, eq=False)
class Layer(WeightMatrix):
    """SPEC 2.1 ``linear``. ``weight`` is always present (derived from codebook[indices] when
    the file gives only those); ``in_dtype`` is the dtype of the tensor that feeds it.

    ``in_shape`` is ``(K,)`` (the default) or the feature map ``(C, H, W)`` it reads flattened
    in (C, H, W) order, with ``C*H*W == K``; ``inputs`` is resolved by :class:`Model` (empty
    means "the previous layer")."""

    name: str
    op: Op
    in_dtype: DType
    weight: np.ndarray
    weight_dtype: DType
    output: OutputStage
    bias: np.ndarray | None = None
    codebook: np.ndarray | None = None
    indices: np.ndarray | None = None
    inputs: tuple = ()
    in_shape: tuple = ()

    def __post_init__(self):
        if not self.in_shape:
            object.__setattr__(self, "in_shape", (self.in_features,))
        if int(np.prod(self.in_shape)) != self.in_features:
            raise ValueError(f"layer {self.name!r}: in_shape {self.in_shape} does not hold "
                             f"{self.in_features} values")

    @property
    def out_shape(self):
        return (self.out_features,)

    @property
    def out_dtype(self):
        return self.output.dtype

    def acc_bounds(self):
        """Per-row worst-case (lo, hi) of the accumulator over every legal input."""
        return ref.acc_bounds(self.weight, self.in_dtype.lo, self.in_dtype.hi, self.bias)

    def forward(self, x):
        """SPEC 2.1 + 2.2 on a batch ``(B, K)`` (or ``(B, *in_shape)``, flattened) of
        mathematical values; returns ``(B, M)``."""
        x = np.asarray(x)
        if x.ndim > 2:
            x = x.reshape(len(x), -1)
        acc = ref.linear_acc(self.weight, x, self.bias, self.in_dtype.lo, self.in_dtype.hi)
        return self.output.apply(acc)


@dataclass(frozen=True, eq=False)
class Conv2d:
    """SPEC 2.1b ``conv2d`` on ``in_shape`` ``(C, H, W)``: ``weight`` ``(M, C/G, KH, KW)``,
    ``groups`` G, ``stride`` (SH, SW), ``dilation`` (DH, DW), ``padding`` (top, left, bottom,
    right) filled with ``pad_value``; then ``output`` per output channel."""

    name: str
    in_dtype: DType
    in_shape: tuple
    weight: np.ndarray
    weight_dtype: DType
    output: OutputStage
    bias: np.ndarray | None = None
    codebook: np.ndarray | None = None
    indices: np.ndarray | None = None
    groups: int = 1
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    pad_value: int = 0
    inputs: tuple = ()

    op = Op.CONV2D

    @property
    def out_channels(self):
        return self.weight.shape[0]

    @property
    def kernel(self):
        """(KH, KW)."""
        return tuple(int(k) for k in self.weight.shape[2:])

    @property
    def patch_size(self):
        """Inputs of one output element: C/G * KH * KW."""
        return int(np.prod(self.weight.shape[1:]))

    @property
    def weight_matrix(self):
        """The weight as ``(M, C/G*KH*KW)``, columns in (c, i, j) order."""
        return self.weight.reshape(self.out_channels, -1)

    @property
    def out_shape(self):
        return ref.conv2d_out_shape(self.in_shape, self.out_channels, self.kernel, self.stride,
                                    self.dilation, self.padding)

    @property
    def out_dtype(self):
        return self.output.dtype

    @property
    def density(self):
        """Fraction of non-zero weights."""
        return _density(self.weight)

    def acc_bounds(self):
        """Per output channel worst-case (lo, hi) of the accumulator over every legal input
        (padded taps hold ``pad_value``); tight."""
        return ref.conv2d_acc_bounds(self.weight, self.in_shape, self.in_dtype.lo,
                                     self.in_dtype.hi, self.bias, stride=self.stride,
                                     dilation=self.dilation, padding=self.padding,
                                     pad_value=self.pad_value)

    def forward(self, x):
        """SPEC 2.1b + 2.2 on a batch ``(B, C, H, W)``; returns ``(B, M, OH, OW)``."""
        acc = ref.conv2d_acc(self.weight, _batch(x, self.in_shape), self.bias,
                             groups=self.groups, stride=self.stride, dilation=self.dilation,
                             padding=self.padding, pad_value=self.pad_value,
                             in_lo=self.in_dtype.lo, in_hi=self.in_dtype.hi)
        return self.output.apply_channels(acc)


@dataclass(frozen=True, eq=False)
class Pool2d:
    """SPEC 2.1b ``maxpool2d`` (``output`` None; the output dtype is the input's) or
    ``sumpool2d`` (an output stage per channel) on ``in_shape`` ``(C, H, W)``."""

    name: str
    op: Op
    in_dtype: DType
    in_shape: tuple
    kernel: tuple
    stride: tuple
    padding: tuple = (0, 0, 0, 0)
    output: OutputStage | None = None
    inputs: tuple = ()

    @property
    def out_shape(self):
        return ref.conv2d_out_shape(self.in_shape, self.in_shape[0], self.kernel, self.stride,
                                    (1, 1), self.padding)

    @property
    def out_dtype(self):
        return self.in_dtype if self.output is None else self.output.dtype

    def window_counts(self):
        """Input elements held by each window, an (OH, OW) array (padding excluded)."""
        return ref.pool2d_counts(self.in_shape[1:], self.kernel, self.stride, self.padding)

    def acc_bounds(self):
        """``sumpool2d``: per channel worst-case (lo, hi) of the window sums."""
        counts = np.unique(self.window_counts())
        lo = min(int(n) * self.in_dtype.lo for n in counts)
        hi = max(int(n) * self.in_dtype.hi for n in counts)
        c = self.in_shape[0]
        return np.full(c, lo, dtype=object), np.full(c, hi, dtype=object)

    def forward(self, x):
        """SPEC 2.1b on a batch ``(B, C, H, W)``; returns ``(B, C, OH, OW)``."""
        kind = "max" if self.op is Op.MAXPOOL2D else "sum"
        y = ref.pool2d(_batch(x, self.in_shape), kind, self.kernel, self.stride, self.padding)
        return y if self.output is None else self.output.apply_channels(y)


@dataclass(frozen=True, eq=False)
class Add:
    """SPEC 2.1b ``add``: ``acc = sum_i scales[i] * x_i`` over inputs of one shape
    ``in_shape`` (dtypes ``in_dtypes``), then ``output`` per channel."""

    name: str
    in_dtypes: tuple
    in_shape: tuple
    scales: tuple
    output: OutputStage
    inputs: tuple = ()

    op = Op.ADD

    @property
    def in_dtype(self):
        return self.in_dtypes[0]

    @property
    def out_shape(self):
        return tuple(self.in_shape)

    @property
    def out_dtype(self):
        return self.output.dtype

    def acc_bounds(self):
        """Per channel worst-case (lo, hi) of the accumulator (inputs taken independent)."""
        lo, hi = ref.add_acc_bounds(self.scales, [(d.lo, d.hi) for d in self.in_dtypes])
        c = self.in_shape[0]
        return np.full(c, lo, dtype=object), np.full(c, hi, dtype=object)

    def forward(self, *xs):
        """SPEC 2.1b + 2.2 on batches ``(B, *in_shape)``, one per input."""
        acc = ref.add_acc([_batch(x, self.in_shape) for x in xs], self.scales)
        return self.output.apply_channels(acc)


@dataclass(frozen=True, eq=False)
class Concat:
    """SPEC 2.1b ``concat``: feature maps ``in_shapes`` of one dtype joined along channels."""

    name: str
    in_dtype: DType
    in_shapes: tuple
    inputs: tuple = ()

    op = Op.CONCAT
    output = None

    @property
    def in_shape(self):
        return tuple(self.in_shapes[0])

    @property
    def out_shape(self):
        c = sum(s[0] for s in self.in_shapes)
        return (c, *self.in_shapes[0][1:])

    @property
    def out_dtype(self):
        return self.in_dtype

    def forward(self, *xs):
        """SPEC 2.1b on batches, one per input; returns ``(B, sum C_i, H, W)``."""
        return ref.concat([_batch(x, s) for x, s in zip(xs, self.in_shapes, strict=True)])


@dataclass(frozen=True, eq=False)
class Model:
    """A validated model: a graph of layers in topological order (SPEC section 2).

    Layers whose ``inputs`` are empty read the previous layer (the first one the model input);
    construction resolves them, so ``layer.inputs`` is always a tuple of names. Names must be
    ``"input"`` or an earlier layer's (ValueError otherwise; the reader checks everything else
    and reports it as a ModelError).
    """

    name: str
    input_shape: tuple
    input_dtype: DType
    layers: tuple = field(default_factory=tuple)
    #: The optional float boundary (:class:`~nnaccel.gen.boundary.FloatIO`): how real inputs
    #: become the integer input and what real value an output integer stands for. The integer
    #: model never reads it.
    float_io: object = None

    def __post_init__(self):
        resolved, seen = [], [MODEL_INPUT]
        for layer in self.layers:
            inputs = tuple(layer.inputs) or (seen[-1],)
            for src in inputs:
                if src not in seen:
                    raise ValueError(f"layer {layer.name!r}: input {src!r} is not the model "
                                     "input or an earlier layer")
            if inputs != layer.inputs:
                layer = replace(layer, inputs=inputs)
            resolved.append(layer)
            seen.append(layer.name)
        object.__setattr__(self, "layers", tuple(resolved))

    @property
    def in_features(self):
        return int(np.prod(self.input_shape))

    @property
    def output_dtype(self):
        return self.layers[-1].out_dtype

    @property
    def out_shape(self):
        return tuple(self.layers[-1].out_shape)

    @property
    def is_chain(self):
        """True when every layer reads only the one before it (the first the model input)."""
        prev = MODEL_INPUT
        for layer in self.layers:
            if layer.inputs != (prev,):
                return False
            prev = layer.name
        return True

    def consumers(self, name):
        """The layers reading ``name`` (a layer or ``"input"``), in order, as a tuple."""
        return tuple(layer for layer in self.layers if name in layer.inputs)

    def shape_of(self, name):
        """The shape of the tensor ``name`` (a layer's output or ``"input"``)."""
        return tuple(self.input_shape) if name == MODEL_INPUT else self.layer(name).out_shape

    def dtype_of(self, name):
        """The dtype of the tensor ``name`` (a layer's output or ``"input"``)."""
        return self.input_dtype if name == MODEL_INPUT else self.layer(name).out_dtype

    def forward(self, x, upto=None):
        """Run the numpy reference on a batch ``(B, *input_shape)``.

        Returns the last layer's output, ``(B, *out_shape)`` exact integers (mathematical
        values); ``upto`` stops after that many layers and returns the output of the last one
        run.
        """
        x = np.asarray(x)
        shape = tuple(self.input_shape)
        x = x.reshape((len(x), *shape)) if len(shape) == 3 else x.reshape(len(x), -1)
        layers = self.layers[:upto]
        last_use = {}
        for i, layer in enumerate(layers):
            for src in layer.inputs:
                last_use[src] = i
        values = {MODEL_INPUT: x}
        for i, layer in enumerate(layers):
            y = layer.forward(*(values[src] for src in layer.inputs))
            for src in set(layer.inputs):
                if last_use[src] == i:
                    del values[src]
            values[layer.name] = y
        return values[layers[-1].name] if layers else x

    def layer(self, name):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)
