"""The zoo by name, for ``nnaccel zoo NAME -o DIR``: each entry makes a SPEC model and sample
inputs for it (seeded, deterministic, nothing downloaded)."""

from dataclasses import dataclass

import numpy as np

from ...hw.common.dtype import DTypeKind

__all__ = ["ZOO", "ZooEntry", "sample_inputs"]


@dataclass(frozen=True)
class ZooEntry:
    """``make(seed)`` returns the Model; ``inputs(model, n, seed)`` a batch ``(n, *shape)``."""

    summary: str
    make: object
    inputs: object


def sample_inputs(model, n, seed=0):
    """``n`` random inputs ``(n, *input_shape)`` over the model's whole input dtype."""
    rng = np.random.default_rng(seed)
    dt = model.input_dtype
    shape = (n, *model.input_shape)
    if dt.kind is DTypeKind.BIPOLAR:
        return rng.choice(np.array([-1, 1]), size=shape)
    return rng.integers(dt.lo, dt.hi, size=shape, endpoint=True)


def _digits(kind):
    def make(seed):
        from .digits import binarized_mlp, int8_mlp

        return (int8_mlp if kind == "int8" else binarized_mlp)(seed).model
    return make


def _digit_images(model, n, seed):
    """The first ``n`` held-out test images (uint4 pixels), whatever the seed."""
    from .digits import load_split

    x_test = load_split()[1]
    return np.resize(x_test, (n, x_test.shape[1]))


def _cnv(seed):
    from .cnv import cnv_model

    return cnv_model(seed)


def _resnet8(seed):
    from .resnet8 import resnet8_model

    return resnet8_model(seed)


def _mobilenet(seed):
    from .resnet8 import mobilenet_model

    return mobilenet_model(seed)


def _random_mlp(which):
    def make(seed):
        from . import random_mlp

        return getattr(random_mlp, which)(seed)
    return make


ZOO = {
    "digits_int8": ZooEntry("scikit-learn's 8x8 digits, a trained 64-32-10 MLP: uint4 pixels, "
                            "int8 weights (a few seconds of training)", _digits("int8"),
                            _digit_images),
    "digits_bnn": ZooEntry("the digits MLP binarized: bipolar weights and activations, "
                           "batch-norm folded into thresholds (trained)", _digits("bnn"),
                           _digit_images),
    "sfc_bnn": ZooEntry("FINN's SFC topology 784-256-256-256-10, binarized, random weights",
                        _random_mlp("sfc_model"), sample_inputs),
    "prime_int4": ZooEntry("an int4 MLP with prime widths 97-61-13, random weights",
                           _random_mlp("prime_int4_model"), sample_inputs),
    "cnv_w1a1": ZooEntry("FINN's CNV-W1A1 topology on 3x32x32 uint8 images, random weights",
                         _cnv, sample_inputs),
    "resnet8": ZooEntry("MLPerf Tiny's ResNet-8 topology, int8, random weights", _resnet8,
                        sample_inputs),
    "mobilenet": ZooEntry("MobileNet-v1-style depthwise-separable blocks, random weights",
                          _mobilenet, sample_inputs),
}
