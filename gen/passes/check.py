"""Pass: check every mapped layer against the numpy reference before any hardware is built.

Each engine's numpy model (its adapter's ``model_acc``: the MVU's folding, padding, raw sums and
affine hand-over; the sparse engine's encoded matrix decoded back, its raw sums plus bias; the
systolic engine's GEMM plus bias) must reproduce the SPEC accumulator on random and worst-case
inputs; a mismatch is a compiler bug and stops generation.
"""

import numpy as np

from ...hw.common import reference as ref
from ...hw.common.dtype import DTypeKind
from ..engines import adapter_for

__all__ = ["check_plan"]


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
        acc = adapter_for(lp.engine).model_acc(lp, x)
        if acc.tolist() != want.tolist():
            raise AssertionError(f"layer {layer.name!r}: the {lp.engine.value} model disagrees "
                                 "with SPEC 2.1")
    return plan
