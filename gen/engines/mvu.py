"""Adapter of the FINN-like matrix-vector unit (:mod:`nnaccel.hw.mvu`).

Every linear layer can run on it; SPEC 2.3 gives it bipolar layers (XNOR-popcount lanes) and
dense layers at batch 1. Its PE x SIMD come from the pipeline-wide fold chooser
(:mod:`nnaccel.gen.passes.folding`, ``--fold`` forces one); cycles per inference are FINN's
``ceil(M/pe) * ceil(K/simd)``.
"""

import numpy as np

from ...hw.mvu.engine import MatrixVectorUnit
from ...hw.mvu.params import LaneKind, MVUParams
from ...hw.mvu.reference import affine, fold_matrix, raw_sums
from ..errors import UsageError
from .base import Engine, EngineAdapter, is_bipolar, stage_kwargs

__all__ = ["MVUAdapter"]


class MVUAdapter(EngineAdapter):
    engine = Engine.MVU
    option, flag = "folds", "--fold"
    free_fold = True

    def claims(self, layer, batch):
        return "bipolar layer (XNOR-popcount lanes)" if is_bipolar(layer) else \
            "dense layer, batch 1"

    def wrong_engine(self, lp):
        from . import ADAPTERS

        others = " / ".join(a.flag for a in ADAPTERS.values() if a is not self)
        return UsageError(f"layer {lp.layer.name!r}: --fold applies to mvu layers; this one "
                          f"runs on the {lp.engine.value} engine (see {others})")

    def configure(self, lp, *, share, prev_beat, options):
        forced = options.forced(self.option, lp.layer.name)
        return lp, (forced.pe if forced is not None else None)

    def with_fold(self, lp, fold, options):
        layer = lp.layer
        params = MVUParams.for_layer(weight=layer.weight, bias=layer.bias, pe=fold.pe,
                                     simd=fold.simd, in_dtype=layer.in_dtype,
                                     weight_dtype=layer.weight_dtype, weight_storage=lp.storage,
                                     **stage_kwargs(layer))
        return lp.but(fold=fold, params=params)

    def model_acc(self, lp, x):
        layer, p = lp.layer, lp.params
        xnor = p.lane_kind is LaneKind.XNOR
        folded = fold_matrix(layer.weight, p.pe, p.simd)
        unfolded = folded.transpose(0, 2, 1, 3).reshape(p.neuron_folds * p.pe, -1)
        w = unfolded[:layer.out_features, :layer.in_features]
        scale, offset = affine(layer.out_features, layer.in_features, layer.bias, xnor)
        return scale * raw_sums(w, np.asarray(x), xnor) + offset

    def build(self, lp):
        return MatrixVectorUnit(lp.params, weight=lp.layer.weight)

    def manifest(self, lp):
        p = lp.params
        return {
            "lanes": p.lanes, "lane_kind": p.lane_kind.value, "pe": p.pe, "simd": p.simd,
            "neuron_folds": p.neuron_folds, "synapse_folds": p.synapse_folds,
            "acc_width": p.acc_width, "raw_width": p.raw_shape.width,
            "weight_storage": p.weight_storage.value,
            "weight_bits": p.lanes * lp.layer.weight_dtype.bits * p.expected_cycles,
            "expected_cycles": p.expected_cycles,
        }
