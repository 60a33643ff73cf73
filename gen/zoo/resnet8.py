"""MLPerf Tiny's image-classification ResNet-8 and MobileNet-v1-style depthwise-separable
blocks in int8 with random weights, for benchmarks (random weights change neither the cycles
nor, to first order, the resources).

* :func:`resnet8_model`: input (3, 32, 32) int8; ``c0`` a 3x3 convolution to 16 channels;
  three residual stacks of 16, 32 and 64 filters (each: a 3x3 convolution with ReLU, stride 2
  in the second and third stack, a 3x3 convolution, a shortcut -- the stack's input itself in
  the first stack, a strided 1x1 projection in the others -- and an ``add`` with ReLU); a global
  average pool (``sumpool2d`` 8x8 with a requant by 1/64) and a dense layer to 10 int32 scores.
  Padding 1 on every 3x3 convolution (PyTorch's ``Conv2d(..., 3, stride, 1)``, as the ONNX
  import test's ResNet-8).
* :func:`mobilenet_model`: MobileNet-v1-style blocks on (3, 32, 32) int8: a 3x3 stride-2
  convolution, then ``blocks`` depthwise-separable blocks (a 3x3 depthwise convolution, stride 2
  where the channel count doubles, then a 1x1 pointwise convolution), a global average pool and
  a dense head.
* :func:`zoo_inputs`: random int8 images.

Every requant multiplier is calibrated on random images so that about a third of each layer's
outputs saturate neither way (a constant or saturated map would test little): the model is
built layer by layer, and each layer's multiplier maps the spread of its accumulator over a
calibration batch to about :data:`SPREAD` output levels.
"""

import numpy as np

from ..ir import MODEL_INPUT
from ..model_io import model_from_arrays

__all__ = ["RESNET8_STACKS", "MOBILENET_BLOCKS", "SPREAD", "INPUT", "resnet8_doc", "resnet8_model",
           "mobilenet_doc", "mobilenet_model", "zoo_inputs", "doc_until"]

#: Filters of ResNet-8's three residual stacks.
RESNET8_STACKS = (16, 32, 64)
#: MobileNet-v1-style blocks: (output channels of the pointwise convolution, depthwise stride).
MOBILENET_BLOCKS = ((32, 1), (64, 2), (64, 1), (128, 2))
#: Output levels (int8) the spread (standard deviation) of an accumulator is mapped to.
SPREAD = 40
#: Shift of every requant stage; multipliers are calibrated against it.
SHIFT = 16
#: The input image (C, H, W), int8.
INPUT = (3, 32, 32)
CLASSES = 10


def doc_until(doc, last):
    """``doc`` cut after the layer named ``last``: it and the layers it derives from (a model's
    layers must all lead to its output), every input named."""
    layers, prev = [], MODEL_INPUT
    for layer in doc["layers"]:
        layers.append(dict(layer, inputs=layer.get("inputs", [prev])))
        prev = layer["name"]
    keep, todo = set(), [last]
    while todo:
        name = todo.pop()
        if name not in keep and name != MODEL_INPUT:
            keep.add(name)
            todo += next(x for x in layers if x["name"] == name)["inputs"]
    return dict(doc, layers=[x for x in layers if x["name"] in keep])


def _conv(name, *, stride=1, padding=1, groups=1, inputs=None, relu=True):
    layer = {"name": name, "op": "conv2d", "weight": f"{name}.w", "weight_dtype": "int8",
             "stride": [stride, stride], "padding": [padding] * 4,
             "output": {"kind": "requant", "mult": f"{name}.mult", "shift": SHIFT,
                        "dtype": "int8", "relu": relu}}
    if groups != 1:
        layer["groups"] = groups
    if inputs is not None:
        layer["inputs"] = inputs
    return layer


class _Builder:
    """Adds layers one at a time and calibrates each new requant stage on random images."""

    def __init__(self, name, seed, calibration, input_shape):
        self.rng = np.random.default_rng(seed)
        self.doc = {"format": "nnaccel-model/1", "name": name,
                    "input": {"shape": list(input_shape), "dtype": "int8"}, "layers": []}
        self.arrays = {}
        self.sample = zoo_inputs(input_shape, calibration, seed=seed + 1)

    def weights(self, name, shape):
        self.arrays[f"{name}.w"] = self.rng.integers(-128, 128, size=shape)

    def add(self, layer, channels=None):
        """Append ``layer``; if it has a requant stage with an array ``mult``, calibrate it."""
        self.doc["layers"].append(layer)
        out = layer.get("output", {})
        mult = out.get("mult")
        if not isinstance(mult, str):
            return
        # probe with multiplier 1 and shift 0 in int32: the accumulator itself
        probe = dict(out, kind="identity", dtype="int32")
        probe.pop("mult"), probe.pop("shift"), probe.pop("relu", None)
        layer["output"] = probe
        model = model_from_arrays(doc_until(self.doc, layer["name"]), self.arrays)
        acc = np.asarray(model.forward(self.sample)).astype(np.float64)
        acc = np.moveaxis(acc.reshape(len(acc), channels, -1), 1, 0).reshape(channels, -1)
        spread = np.maximum(acc.std(axis=1), 1.0)
        scale = self.rng.uniform(0.75, 1.25, size=channels)
        self.arrays[mult] = np.maximum(1, np.round(SPREAD * (1 << SHIFT) * scale / spread)
                                       ).astype(np.int64)
        layer["output"] = out

    def model(self):
        return model_from_arrays(self.doc, self.arrays)


def _head(b, channels, size):
    b.add({"name": "gap", "op": "sumpool2d", "kernel": [size, size],
           "output": {"kind": "requant", "mult": 1, "shift": round(np.log2(size * size)),
                      "dtype": "int8"}})
    b.weights("fc", (CLASSES, channels))
    b.add({"name": "fc", "op": "linear", "weight": "fc.w", "weight_dtype": "int8",
           "output": {"kind": "identity", "dtype": "int32"}})


def resnet8_doc(seed=0, stacks=RESNET8_STACKS, calibration=8, input_shape=INPUT,
                name="resnet8"):
    """(doc, arrays) of ResNet-8 (see the module's docstring), or a scaled-down network of
    the same kind (other ``stacks`` filters, a smaller square ``input_shape``)."""
    b = _Builder(name, seed, calibration, input_shape)
    c = stacks[0]
    b.weights("c0", (c, input_shape[0], 3, 3))
    b.add(_conv("c0"), c)
    prev, size = "c0", input_shape[1]
    for n, m in enumerate(stacks):
        stride = 1 if n == 0 else 2
        s = f"s{n + 1}"
        b.weights(f"{s}a", (m, c, 3, 3))
        b.add(_conv(f"{s}a", stride=stride, inputs=[prev]), m)
        b.weights(f"{s}b", (m, m, 3, 3))
        b.add(_conv(f"{s}b", relu=False), m)
        skip = prev
        if stride != 1 or m != c:
            b.weights(f"{s}p", (m, c, 1, 1))
            b.add(_conv(f"{s}p", stride=stride, padding=0, inputs=[prev], relu=False), m)
            skip = f"{s}p"
        b.add({"name": f"{s}r", "op": "add", "inputs": [f"{s}b", skip],
               "output": {"kind": "requant", "mult": 1, "shift": 1, "dtype": "int8",
                          "relu": True}})
        prev, c, size = f"{s}r", m, (size - 1) // stride + 1
    _head(b, c, size)
    return b.doc, b.arrays


def resnet8_model(seed=0, **kwargs):
    """:func:`resnet8_doc` read into a validated Model."""
    return model_from_arrays(*resnet8_doc(seed, **kwargs))


def mobilenet_doc(seed=0, blocks=MOBILENET_BLOCKS, stem=16, calibration=8, input_shape=INPUT,
                  name="mobilenet"):
    """(doc, arrays) of the MobileNet-v1-style blocks (see the module's docstring), or
    scaled-down ones (other ``blocks``, ``stem``, a smaller square ``input_shape``)."""
    b = _Builder(name, seed, calibration, input_shape)
    b.weights("c0", (stem, input_shape[0], 3, 3))
    b.add(_conv("c0", stride=2), stem)
    c, size = stem, (input_shape[1] - 1) // 2 + 1
    for n, (m, stride) in enumerate(blocks):
        d, p = f"b{n + 1}dw", f"b{n + 1}pw"
        b.weights(d, (c, 1, 3, 3))
        b.add(_conv(d, stride=stride, groups=c), c)
        b.weights(p, (m, c, 1, 1))
        b.add(_conv(p, padding=0), m)
        c, size = m, (size - 1) // stride + 1
    _head(b, c, size)
    return b.doc, b.arrays


def mobilenet_model(seed=0, **kwargs):
    """:func:`mobilenet_doc` read into a validated Model."""
    return model_from_arrays(*mobilenet_doc(seed, **kwargs))


def zoo_inputs(shape, n, seed=0):
    """``n`` random int8 images of ``shape`` (C, H, W)."""
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, size=(n, *shape))
