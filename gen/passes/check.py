"""Pass: check every mapped layer against the numpy reference before any hardware is built.

The MVU's numpy model (folding, padding, raw sums, affine hand-over), the sparse engine's
(the encoded matrix decoded back, its raw sums plus bias) and the systolic engine's (the GEMM
plus bias) must reproduce the SPEC accumulator on random and worst-case inputs; a mismatch is a
compiler bug and stops generation.
"""

import numpy as np

from ...hw.common import reference as ref
from ...hw.common.dtype import DTypeKind
from ...hw.mvu.params import LaneKind, MVUParams
from ...hw.mvu.reference import affine, fold_matrix, raw_sums
from ...hw.sparse import reference as sparse_ref
from ...hw.sparse.format import decode, encode
from ...hw.systolic import reference as systolic_ref
from ..plan import Engine

__all__ = ["check_plan", "mvu_params"]


def mvu_params(lp):
    layer = lp.layer
    m, k = layer.weight.shape
    return MVUParams(in_features=k, out_features=m, pe=lp.fold.pe, simd=lp.fold.simd,
                     in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype,
                     weight_storage=lp.storage)


def check_plan(plan, vectors=8, seed=0):
    rng = np.random.default_rng(seed)
    for lp in plan.layers:
        layer = lp.layer
        dt = layer.in_dtype
        if dt.kind is DTypeKind.BIPOLAR:
            x = rng.choice([-1, 1], size=(vectors, layer.in_features))
        else:
            x = rng.integers(dt.lo, dt.hi, size=(vectors, layer.in_features), endpoint=True)
            x[0] = dt.lo
            x[1] = dt.hi
        want = ref.linear_acc(layer.weight, x, layer.bias)
        bias = 0 if layer.bias is None else np.asarray(layer.bias).astype(object)
        if lp.engine is Engine.SPARSE:
            matrix = encode(layer.weight, lp.sparse.pe, index_bits=lp.sparse.index_bits,
                            codebook=layer.codebook)
            acc = sparse_ref.raw_sums(decode(matrix), x) + bias
        elif lp.engine is Engine.SYSTOLIC:
            acc = systolic_ref.gemm(layer.weight, x) + bias
        else:
            acc = _mvu_acc(lp, x)
        if acc.tolist() != want.tolist():
            raise AssertionError(f"layer {layer.name!r}: the {lp.engine.value} model disagrees "
                                 "with SPEC 2.1")
    return plan


def _mvu_acc(lp, x):
    layer = lp.layer
    params = mvu_params(lp)
    xnor = params.lane_kind is LaneKind.XNOR
    folded = fold_matrix(layer.weight, params.pe, params.simd)
    unfolded = folded.transpose(0, 2, 1, 3).reshape(params.neuron_folds * params.pe, -1)
    w = unfolded[:layer.out_features, :layer.in_features]
    scale, offset = affine(layer.out_features, layer.in_features, layer.bias, xnor)
    return scale * raw_sums(w, x, xnor) + offset
