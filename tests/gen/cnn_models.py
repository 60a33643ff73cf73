"""Valid random feature-map models for tests: the SPEC example ``tiny_res`` (conv, conv, residual
add, max pool, dense head) and a model using every spatial feature, as (doc, arrays) to corrupt
one field at a time, or as a read :class:`~nnaccel.gen.ir.Model`."""

import copy

import numpy as np

from nnaccel.gen.model_io import model_from_arrays

__all__ = ["tiny_res_doc", "tiny_res", "every_feature_doc", "every_feature", "layer_of"]


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
