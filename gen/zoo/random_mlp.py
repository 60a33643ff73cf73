"""MLPs with random weights of fixed shapes, for benchmarks (random weights change neither the
cycles nor, to first order, the resources of a dense design).

* :func:`sfc_model`: FINN's SFC topology, binarized;
* :func:`prime_int4_model`: an int4 MLP with prime widths (every fold pads);
* :func:`random_inputs`: input vectors covering a model's whole input dtype.
"""

import numpy as np

from ..ir import DType, DTypeKind, Layer, Model, Op, OutputKind, OutputStage, readonly

__all__ = ["sfc_model", "prime_int4_model", "random_inputs"]


def random_inputs(model, n, seed=0):
    """``n`` random input vectors covering the model's whole input dtype."""
    rng = np.random.default_rng(seed)
    dt = model.input_dtype
    shape = (n, model.in_features)
    if dt.kind is DTypeKind.BIPOLAR:
        return rng.choice(np.array([-1, 1]), size=shape)
    return rng.integers(dt.lo, dt.hi, size=shape, endpoint=True)


def sfc_model(seed=0, widths=(784, 256, 256, 256, 10), name="sfc_bnn"):
    """FINN's SFC topology with random weights: bipolar (binarized) input, bipolar weights, a
    ``threshold`` stage to bipolar after every hidden layer, ``int32`` logits.

    Thresholds are random even integers in -8..8 (the accumulators of ±1 products over an even
    K are even), so hidden activations are roughly balanced.
    """
    rng = np.random.default_rng(seed)
    bipolar = DType.parse("bipolar")
    layers = []
    for n, (k, m) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        weight = rng.choice(np.array([-1, 1]), size=(m, k))
        if n == len(widths) - 2:
            out = OutputStage(OutputKind.IDENTITY, DType.parse("int32"))
        else:
            t = 2 * rng.integers(-4, 4, size=(m, 1), endpoint=True)
            out = OutputStage(OutputKind.THRESHOLD, bipolar, thresholds=readonly(t))
        layers.append(Layer(name=f"fc{n + 1}", op=Op.LINEAR, in_dtype=bipolar,
                            weight=readonly(weight), weight_dtype=bipolar, output=out))
    return Model(name=name, input_shape=(widths[0],), input_dtype=bipolar,
                 layers=tuple(layers))


def prime_int4_model(seed=0, widths=(97, 61, 13), name="prime_int4"):
    """An int4 MLP with prime widths and random weights: ``int4`` input, ``int4`` weights and
    int32 biases; hidden layers requantize to ``int4`` (no ReLU) with a per-channel ``mult`` set
    so that three standard deviations of the accumulator on random inputs reach the int4 range;
    ``int32`` logits."""
    rng = np.random.default_rng(seed)
    int4 = DType.parse("int4")
    shift = 16
    layers = []
    probe = rng.integers(int4.lo, int4.hi, size=(256, widths[0]), endpoint=True)
    for n, (k, m) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        weight = rng.integers(int4.lo, int4.hi, size=(m, k), endpoint=True)
        weight[weight == 0] = 1  # dense: keep the layer on the MVU, whatever the seed
        bias = rng.integers(-64, 64, size=m, endpoint=True)
        acc = probe @ weight.T + bias
        if n == len(widths) - 2:
            out = OutputStage(OutputKind.IDENTITY, DType.parse("int32"))
        else:
            std = np.maximum(acc.std(axis=0), 1.0)
            mult = np.round(int4.hi / (3 * std) * 2**shift).astype(np.int64)
            out = OutputStage(OutputKind.REQUANT, int4, mult=readonly(np.maximum(mult, 1)),
                              shift=readonly(np.full(m, shift)), relu=False)
        layer = Layer(name=f"fc{n + 1}", op=Op.LINEAR, in_dtype=int4 if n == 0 else
                      layers[-1].output.dtype, weight=readonly(weight), weight_dtype=int4,
                      bias=readonly(bias), output=out)
        layers.append(layer)
        probe = layer.forward(probe)
    return Model(name=name, input_shape=(widths[0],), input_dtype=int4,
                 layers=tuple(layers))
