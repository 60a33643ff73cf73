"""GEMMs ``(M, K, N)`` as one-layer SPEC models, for the systolic engine's benchmark: M input
vectors (the batch) of K int8 elements, N outputs with int8 weights and an int32 bias, then a
requantising stage to int8 (or a 15-level threshold stage to uint4)."""

import numpy as np

from ..ir import DType, Layer, Model, Op, OutputKind, OutputStage, readonly

__all__ = ["make_gemm", "gemm_model"]


def make_gemm(m, k, n, seed=0):
    """Random int8 ``X`` (M, K), weights ``W`` (N, K), bias, and a requantising stage to int8
    (``mult``, ``shift``) that keeps the outputs spread over the int8 range."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(m, k))
    w = rng.integers(-128, 128, size=(n, k))
    bias = rng.integers(-4096, 4096, size=n)
    spread = 128 * 128 * np.sqrt(k) / 3  # about 3 standard deviations of an accumulator
    shift = max(int(np.ceil(np.log2(spread / 127))) + 4, 0)
    mult = rng.integers(8, 17, size=n)
    return x, w, bias, mult, shift


def gemm_model(w, bias, *, mult=None, shift=None, thresholds=None, name="gemm", layer="fc"):
    """The layer ``W`` (N, K) with ``bias`` on int8 inputs: ``requant`` to int8 by ``mult``
    (N,) and ``shift``, or ``threshold`` to uint4 with ``thresholds`` (N, 15)."""
    w = np.asarray(w)
    n, k = w.shape
    if thresholds is None:
        out = OutputStage(OutputKind.REQUANT, DType.parse("int8"), mult=readonly(mult),
                          shift=readonly(np.full(n, shift)), relu=False)
    else:
        out = OutputStage(OutputKind.THRESHOLD, DType.parse("uint4"),
                          thresholds=readonly(thresholds))
    int8 = DType.parse("int8")
    fc = Layer(name=layer, op=Op.LINEAR, in_dtype=int8, weight=readonly(w), weight_dtype=int8,
               output=out, bias=readonly(bias))
    return Model(name=name, input_shape=(k,), input_dtype=int8, layers=(fc,))
