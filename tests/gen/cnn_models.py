"""Valid random feature-map models for tests: the SPEC example ``tiny_res`` (conv, conv, residual
add, max pool, dense head) and a model using every spatial feature, as (doc, arrays) to corrupt
one field at a time, or as a read :class:`~nnaccel.gen.ir.Model`."""

import copy

import numpy as np

from nnaccel.gen.model_io import model_from_arrays
from nnaccel.hw.common import reference as ref

__all__ = ["tiny_res_doc", "tiny_res", "every_feature_doc", "every_feature", "random_cnn_doc",
           "random_cnn", "layer_of", "copy_doc"]


def layer_of(doc, name):
    """The layer object named ``name`` in a model document."""
    return next(spec for spec in doc["layers"] if spec.get("name") == name)


def _mult(rng, channels, typical_acc, levels, shift):
    """Per-channel requant multipliers mapping a typical accumulator to about ``levels``."""
    base = max(1, round(levels * (1 << shift) / max(typical_acc, 1)))
    return rng.integers(max(1, base // 2), base * 2, size=channels, endpoint=True)


def tiny_res_doc(seed=0, channels=4, size=8, classes=10):
    """(doc, arrays) of SPEC section 3's ``tiny_res`` with random int4/int8 weights: input
    (1, size, size) uint4; c1, c2 3x3 convs with padding 1 to ``channels`` uint4 channels; r the
    residual add of c1 and c2 (requant by 1/2); p a 2x2 max pool; fc a dense int32 head."""
    rng = np.random.default_rng(seed)
    half = size // 2
    arrays = {
        "c1.w": rng.integers(-8, 8, size=(channels, 1, 3, 3)),
        "c1.mult": _mult(rng, channels, 9 * 8 * 8, 15, 12),
        "c2.w": rng.integers(-8, 8, size=(channels, channels, 3, 3)),
        "c2.mult": _mult(rng, channels, 9 * channels * 8 * 4, 15, 12),
        "fc.w": rng.integers(-128, 128, size=(classes, channels * half * half)),
    }
    doc = {
        "format": "nnaccel-model/1", "name": "tiny_res",
        "input": {"shape": [1, size, size], "dtype": "uint4"},
        "layers": [
            {"name": "c1", "op": "conv2d", "weight": "c1.w", "weight_dtype": "int4",
             "padding": [1, 1, 1, 1],
             "output": {"kind": "requant", "mult": "c1.mult", "shift": 12, "dtype": "uint4",
                        "relu": True}},
            {"name": "c2", "op": "conv2d", "weight": "c2.w", "weight_dtype": "int4",
             "padding": [1, 1, 1, 1],
             "output": {"kind": "requant", "mult": "c2.mult", "shift": 12, "dtype": "uint4",
                        "relu": True}},
            {"name": "r", "op": "add", "inputs": ["c1", "c2"],
             "output": {"kind": "requant", "mult": 1, "shift": 1, "dtype": "uint4"}},
            {"name": "p", "op": "maxpool2d", "kernel": [2, 2]},
            {"name": "fc", "op": "linear", "weight": "fc.w", "weight_dtype": "int8",
             "output": {"kind": "identity", "dtype": "int32"}},
        ],
    }
    return doc, arrays


def tiny_res(seed=0, **kwargs):
    """:func:`tiny_res_doc` read into a validated Model."""
    return model_from_arrays(*tiny_res_doc(seed, **kwargs))


def every_feature_doc(seed=0):
    """(doc, arrays) of a graph using every op and field of SPEC 2.1b: a fork with three
    consumers, a strided dilated conv with asymmetric padding and bias, a grouped conv with a
    codebook, a depthwise conv with channel multiplier 2 and a threshold stage, a bipolar conv
    padded with -1, concat of unequal channel counts, add with scales, a padded max pool whose
    windows do not divide the map, a global sum pool, and a dense head."""
    rng = np.random.default_rng(seed)
    arrays = {
        "a.w": rng.integers(-8, 8, size=(4, 2, 3, 2)),
        "a.b": rng.integers(-50, 50, size=4),
        "g.cb": np.array([-3, -1, 0, 2, 5]),
        "g.idx": rng.integers(0, 5, size=(8, 2, 1, 1)),
        "g.b": rng.integers(-20, 20, size=8),
        "d.w": rng.integers(-4, 4, size=(16, 1, 3, 3)),
        "d.t": np.sort(rng.integers(-60, 60, size=(16, 3)), axis=1),
        "s.t": np.array([[0]]),
        "b.w": rng.choice([-1, 1], size=(3, 16, 2, 2)),
        "f.w": rng.integers(-128, 128, size=(5, 23)),
    }
    doc = {
        "format": "nnaccel-model/1", "name": "every_feature",
        "input": {"shape": [2, 7, 9], "dtype": "int4"},
        "layers": [
            {"name": "a", "op": "conv2d", "weight": "a.w", "weight_dtype": "int4", "bias": "a.b",
             "stride": [2, 1], "dilation": [1, 2], "padding": [1, 0, 2, 1], "pad_value": -2,
             "output": {"kind": "requant", "mult": 900, "shift": 12, "dtype": "int4"}},
            {"name": "g", "op": "conv2d", "codebook": "g.cb", "indices": "g.idx",
             "weight_dtype": "int4", "groups": 2, "bias": "g.b",
             "output": {"kind": "requant", "mult": [40, 50, 60, 70, 80, 90, 100, 110], "shift": 6,
                        "dtype": "int4", "relu": True}},
            {"name": "d", "op": "conv2d", "inputs": ["g"], "weight": "d.w", "weight_dtype": "int4",
             "groups": 8, "padding": [1, 1, 1, 1],
             "output": {"kind": "threshold", "thresholds": "d.t", "dtype": "uint2"}},
            {"name": "cat", "op": "concat", "inputs": ["g", "a", "g"]},
            {"name": "sg", "op": "sumpool2d", "inputs": ["d"], "kernel": [2, 3],
             "output": {"kind": "threshold", "thresholds": "s.t", "dtype": "bipolar"}},
            {"name": "ad", "op": "add", "inputs": ["cat", "cat"], "scales": [3, -2],
             "output": {"kind": "requant", "mult": 1, "shift": 0, "dtype": "int8"}},
            {"name": "mp", "op": "maxpool2d", "kernel": [3, 3], "stride": [2, 2],
             "padding": [1, 1, 0, 0]},
            {"name": "gp", "op": "sumpool2d", "kernel": [2, 4],
             "output": {"kind": "identity", "dtype": "int16"}},
            {"name": "bc", "op": "conv2d", "inputs": ["sg"], "weight": "b.w",
             "weight_dtype": "bipolar", "padding": [1, 1, 1, 1], "pad_value": -1,
             "output": {"kind": "identity", "dtype": "int16"}},
            {"name": "bp", "op": "maxpool2d", "inputs": ["bc"], "kernel": [3, 3], "stride": [3, 3]},
            {"name": "j", "op": "concat", "inputs": ["gp", "bp"]},
            {"name": "f", "op": "linear", "weight": "f.w", "weight_dtype": "int8",
             "output": {"kind": "identity"}},
        ],
    }
    return doc, arrays


def every_feature(seed=0):
    """:func:`every_feature_doc` read into a validated Model."""
    return model_from_arrays(*every_feature_doc(seed))


def copy_doc(doc, arrays):
    """Deep copies, to mutate."""
    return copy.deepcopy(doc), {k: np.array(v) for k, v in arrays.items()}


def _window_ok(size, kernel, stride, dilation, before, after):
    return size + before + after - dilation * (kernel - 1) - 1 >= 0


def _requant_for(rng, channels, typical, dtype):
    """A requant stage mapping accumulators of about ``typical`` onto ``dtype``'s range."""
    levels = 7 if dtype.startswith("int") else 15
    return {"kind": "requant", "shift": 16, "dtype": dtype, "relu": bool(rng.random() < 0.3),
            "mult": [int(v) for v in _mult(rng, channels, typical, levels, 16)]}


def random_cnn_doc(seed):
    """(doc, arrays) of a random valid chain of 1..3 spatial layers and a dense head, covering
    the cases SPEC 2.1b names: odd maps, C = 1, 1x1 and non-square kernels up to 5, strides
    1..3, dilations 1..2, asymmetric padding, groups and depthwise convolutions with a channel
    multiplier, bipolar maps padded with -1 or +1 (every fourth seed), max and sum pools whose
    windows do not divide the map, global pooling."""
    rng = np.random.default_rng(seed)
    bipolar = seed % 4 == 3
    c, h, w = int(rng.choice([1, 2, 3])), int(rng.integers(3, 12)), int(rng.integers(3, 12))
    dtype = "bipolar" if bipolar else str(rng.choice(["uint4", "int4"]))
    doc = {"format": "nnaccel-model/1", "name": f"random_cnn_{seed}",
           "input": {"shape": [c, h, w], "dtype": dtype}, "layers": []}
    arrays = {}
    lo, hi = (-8, 7) if dtype == "int4" else (0, 15)
    sample = rng.integers(lo, hi, size=(16, c, h, w), endpoint=True)
    if bipolar:
        sample = np.where(sample > 7, 1, -1)
    for n in range(int(rng.integers(1, 4))):
        name = f"l{n}"
        op = "conv2d" if n == 0 or rng.random() < 0.6 else str(
            rng.choice(["maxpool2d", "sumpool2d"]))
        if op == "conv2d":
            spec = _random_conv(rng, name, (c, h, w), dtype, arrays)
        else:
            spec = _random_pool(rng, name, op, (c, h, w), dtype)
        doc["layers"].append(spec)
        model = model_from_arrays(doc, arrays)  # the chain so far: valid on its own
        if spec.get("output", {}).get("kind") == "requant":
            _calibrate(model, spec, sample)
            model = model_from_arrays(doc, arrays)
        c, h, w = model.layer(name).out_shape
        dtype = str(model.layer(name).out_dtype)
    wdtype = "bipolar" if dtype == "bipolar" else "int8"
    arrays["fc.w"] = (rng.choice([-1, 1], size=(5, c * h * w)) if wdtype == "bipolar"
                      else rng.integers(-128, 128, size=(5, c * h * w)))
    doc["layers"].append({"name": "fc", "op": "linear", "weight": "fc.w", "weight_dtype": wdtype,
                          "output": {"kind": "identity"}})
    return doc, arrays


def _calibrate(model, spec, sample):
    """Set a requant layer's per-channel ``mult`` so its accumulators on ``sample`` spread over
    the output dtype (about +-2.5 standard deviations fill the range)."""
    layer = model.layers[-1]
    x = model.forward(sample, upto=len(model.layers) - 1)
    if layer.op.value == "conv2d":
        acc = ref.conv2d_acc(layer.weight, x, layer.bias, groups=layer.groups,
                             stride=layer.stride, dilation=layer.dilation,
                             padding=layer.padding, pad_value=layer.pad_value)
    else:
        acc = ref.pool2d(x, "sum", layer.kernel, layer.stride, layer.padding)
    levels = 8 if spec["output"]["dtype"].startswith("int") else 16
    spread = np.asarray(acc, dtype=np.float64).std(axis=(0, 2, 3)) * 5 + 1
    mult = np.clip(np.round(levels * (1 << 16) / spread), 1, (1 << 31) - 1)
    spec["output"]["mult"] = [int(v) for v in mult]


def _random_conv(rng, name, in_shape, dtype, arrays):
    c, h, w = in_shape
    while True:
        kind = rng.choice(["dense", "depthwise", "grouped"])
        if kind == "depthwise":
            groups, m = c, c * int(rng.integers(1, 3))
        elif kind == "grouped" and c > 1:
            groups = int(rng.choice([g for g in range(2, c + 1) if c % g == 0]))
            m = groups * int(rng.integers(1, 3))
        else:
            groups, m = 1, int(rng.integers(1, 5))
        kh, kw = (1, 1) if rng.random() < 0.2 else (int(v) for v in rng.integers(1, 6, size=2))
        stride = [int(v) for v in rng.integers(1, 4, size=2)]
        dilation = [int(v) for v in rng.integers(1, 3, size=2)]
        padding = [int(v) for v in rng.integers(0, 3, size=4)]
        if (_window_ok(h, kh, stride[0], dilation[0], padding[0], padding[2])
                and _window_ok(w, kw, stride[1], dilation[1], padding[1], padding[3])):
            break
    spec = {"name": name, "op": "conv2d", "weight": f"{name}.w", "groups": groups,
            "stride": stride, "dilation": dilation, "padding": padding}
    patch = (c // groups) * kh * kw
    if dtype == "bipolar":
        arrays[f"{name}.w"] = rng.choice([-1, 1], size=(m, c // groups, kh, kw))
        spec["weight_dtype"] = "bipolar"
        spec["pad_value"] = int(rng.choice([-1, 1]))
        spread = max(1, int(np.sqrt(patch)))
        t = rng.integers(-spread, spread + 1, size=(m, 1))
        arrays[f"{name}.t"] = t
        spec["output"] = {"kind": "threshold", "thresholds": f"{name}.t", "dtype": "bipolar"}
    else:
        arrays[f"{name}.w"] = rng.integers(-8, 8, size=(m, c // groups, kh, kw))
        spec["weight_dtype"] = "int4"
        spec["pad_value"] = int(rng.integers(0, 8))
        arrays[f"{name}.b"] = rng.integers(-20, 21, size=m)
        spec["bias"] = f"{name}.b"
        spec["output"] = _requant_for(rng, m, int(16 * np.sqrt(patch)) + 1,
                                      str(rng.choice(["uint4", "int4"])))
    return spec


def _random_pool(rng, name, op, in_shape, dtype):
    c, h, w = in_shape
    if rng.random() < 0.25:
        kernel, stride, padding = [h, w], [h, w], [0, 0, 0, 0]  # global
    else:
        kernel = [int(rng.integers(1, min(h, 3) + 1)), int(rng.integers(1, min(w, 3) + 1))]
        stride = [int(v) for v in rng.integers(1, 4, size=2)]
        padding = [int(rng.integers(0, k)) for k in (kernel[0], kernel[1])] * 2
    spec = {"name": name, "op": op, "kernel": kernel, "stride": stride, "padding": padding}
    if op == "sumpool2d":
        if dtype == "bipolar":
            spec["output"] = {"kind": "threshold", "thresholds": [[0]], "dtype": "bipolar"}
        else:
            spec["output"] = _requant_for(rng, c, 8 * kernel[0] * kernel[1],
                                          str(rng.choice(["uint4", "int4"])))
    return spec


def random_cnn(seed):
    """:func:`random_cnn_doc` read into a validated Model."""
    return model_from_arrays(*random_cnn_doc(seed))
