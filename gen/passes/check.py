"""Pass: check every mapped layer against the numpy reference before any hardware is built.

The MVU's numpy model (folding, padding, raw sums, affine hand-over) must reproduce the SPEC
accumulator on random and worst-case inputs; a mismatch is a compiler bug and stops generation.
"""

import numpy as np

from ...hw.common import reference as ref
from ...hw.mvu.params import LaneKind, MVUParams
from ...hw.mvu.reference import affine, fold_matrix, raw_sums

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
        params = mvu_params(lp)
        dt = layer.in_dtype
        if dt.kind.value == "bipolar":
            x = rng.choice([-1, 1], size=(vectors, layer.in_features))
        else:
            x = rng.integers(dt.lo, dt.hi, size=(vectors, layer.in_features), endpoint=True)
            x[0] = dt.lo
            x[1] = dt.hi
        xnor = params.lane_kind is LaneKind.XNOR
        folded = fold_matrix(layer.weight, params.pe, params.simd)
        unfolded = folded.transpose(0, 2, 1, 3).reshape(params.neuron_folds * params.pe, -1)
        w = unfolded[:layer.out_features, :layer.in_features]
        scale, offset = affine(layer.out_features, layer.in_features, layer.bias, xnor)
        acc = scale * raw_sums(w, x, xnor) + offset
        want = ref.linear_acc(layer.weight, x, layer.bias)
        if acc.tolist() != want.tolist():
            raise AssertionError(f"layer {layer.name!r}: the MVU model disagrees with SPEC 2.1")
    return plan
