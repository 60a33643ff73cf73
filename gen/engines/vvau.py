"""Adapter of the vector-vector unit (:mod:`nnaccel.hw.vvau`): grouped and depthwise ``conv2d``.

A ``conv2d`` with ``groups`` G > 1 runs on a window unit in the depthwise patch order feeding a
vector-vector unit whose ``pe*mg*cg`` lanes hold only the weights of ``pe`` groups (``cg = C/G``
input and ``mg = M/G`` output channels per group; depthwise: ``cg = 1``, ``mg = k``), so no lane
is spent on the zeros a grouped weight has as a dense ``(M, C*KH*KW)`` matrix. SPEC 2.3 leaves
convolutions to the ``mvu``'s territory (the dataflow engines); this is its grouped branch, and
the MVU itself runs ``groups = 1``. Groups ``1 < G < C`` run on the same unit with ``cg``-element
dot products per lane group (a beat carries whole groups).

The fold: ``pe`` groups per beat (depthwise: channels per beat), dividing G, and ``simd``
window positions per beat: 1, or, with every group in one beat, a divisor of KW or ``r*KW`` with
``r`` dividing KH. In the pipeline-wide fold chooser the layer's fold is ``Fold(pe*mg, simd)``
(``pe*mg`` is its output beat), its input beat ``pe*cg`` and its cost ``simd*pe*mg*cg`` lanes;
``Options(vvau_folds=((LAYER, Fold(pe*mg, simd)),))`` forces one (the command line has no flag
for it yet). Cycles per image: ``OH*OW*KH*KW*G/(pe*simd)``, or the window unit's own cycles
when larger (:attr:`~nnaccel.hw.vvau.params.VVAUParams.expected_cycles`).
"""

from dataclasses import dataclass, replace

import numpy as np

from ...hw.vvau.engine import VVAUConvolution
from ...hw.vvau.params import LaneKind, VVAUParams
from ...hw.vvau.reference import conv_acc
from ...hw.window.reference import from_hwc, to_hwc
from ..errors import UsageError
from ..folding import Fold, FoldSpace
from ..ir import Op
from .base import Engine, EngineAdapter, divisors, is_bipolar, stage_kwargs

__all__ = ["VVAUAdapter", "VVAUFoldSpace", "vvau_params", "simds"]


def vvau_params(layer, pe, simd=1, storage="auto"):
    """The :class:`VVAUParams` of the grouped ``conv2d`` ``layer`` with ``pe`` groups and
    ``simd`` window positions per beat (the window unit's input beat is ``pe*cg``)."""
    cg = layer.in_shape[0] // layer.groups
    return VVAUParams.for_layer(
        weight=layer.weight, bias=layer.bias, in_shape=layer.in_shape, groups=layer.groups,
        pe=pe, simd=simd, n_in=pe * cg, stride=layer.stride, dilation=layer.dilation,
        padding=layer.padding, pad_value=layer.pad_value, in_dtype=layer.in_dtype,
        weight_dtype=layer.weight_dtype, weight_storage=storage, **stage_kwargs(layer))


def simds(kernel):
    """Window positions per beat the window unit can feed whole pixels of: 1, divisors of KW,
    and ``r*KW`` for ``r`` dividing KH."""
    kh, kw = kernel
    return tuple(sorted(set(divisors(kw)) | {r * kw for r in divisors(kh)}))


@dataclass(frozen=True, eq=False)
class VVAUFoldSpace(FoldSpace):
    """The folds of a grouped convolution: ``Fold(pe*mg, 1)`` for ``pe`` dividing G, and
    ``Fold(G*mg, simd)`` for several window positions per beat (every group in one beat)."""

    def folds(self):
        full = max(self.pes)
        return [Fold(pe, 1) for pe in self.pes] + [Fold(full, q) for q in self.simds if q > 1]


def _shape(layer):
    """``(G, cg, mg)`` of a grouped convolution."""
    g = layer.groups
    return g, layer.in_shape[0] // g, layer.out_channels // g


class VVAUAdapter(EngineAdapter):
    engine = Engine.VVAU
    option, flag = "vvau_folds", "--vvau-fold"
    free_fold = True

    def accepts(self, layer):
        if layer.op is Op.CONV2D and layer.groups > 1:
            return True, ""
        if layer.op is Op.CONV2D:
            return False, ("the vvau engine runs grouped and depthwise conv2d (groups > 1); "
                           "groups = 1 runs on the mvu")
        return False, f"the vvau engine runs grouped conv2d layers, not {layer.op.value}"

    def claims(self, layer, batch):
        g, cg, _ = _shape(layer)
        kind = "depthwise" if cg == 1 else f"grouped ({g} groups)"
        lanes = "XNOR-popcount lanes" if is_bipolar(layer) else "lanes"
        return (f"{kind} convolution (window unit + vector-vector unit: {lanes} only for the "
                f"weights of each group, none on the zeros between groups)")

    def _out_beats(self, layer):
        g, _, mg = _shape(layer)
        return tuple(pe * mg for pe in divisors(g))

    def check_choice(self, lp, choice):
        layer = lp.layer
        g, _, mg = _shape(layer)
        beats, qs = self._out_beats(layer), simds(layer.kernel)
        if choice.simd == 1 and choice.pe in beats:
            return
        if choice.pe == g * mg and choice.simd in qs:
            return
        raise UsageError(f"layer {layer.name!r}: --fold {choice.pe}x{choice.simd}: a grouped "
                         f"convolution on the vvau takes PEx1 with PE (output channels per "
                         f"beat, whole groups) one of {', '.join(map(str, beats))}, or "
                         f"{g * mg}xSIMD with SIMD (window positions per beat) one of "
                         f"{', '.join(map(str, qs))}")

    def configure(self, lp, *, share, prev_beat, options):
        forced = options.forced(self.option, lp.layer.name)
        return lp, (forced.pe if forced is not None else None)

    def fold_space(self, lp):
        layer = lp.layer
        g, cg, mg = _shape(layer)
        cycles = {}

        def floor(fold):
            key = (fold.pe // mg, fold.simd)
            if key not in cycles:
                cycles[key] = vvau_params(layer, *key).expected_cycles
            return cycles[key]

        return VVAUFoldSpace(m=layer.out_channels, k=layer.kernel[0] * layer.kernel[1],
                             repeat=0, pes=self._out_beats(layer), simds=simds(layer.kernel),
                             floor=floor, in_beat=lambda f: f.pe // mg * cg,
                             cost=lambda f: f.pe * cg * f.simd)

    def with_fold(self, lp, fold, options):
        _, _, mg = _shape(lp.layer)
        params = vvau_params(lp.layer, fold.pe // mg, fold.simd, lp.storage)
        return lp.but(fold=fold, params=params)

    def in_beat(self, lp):
        return lp.params.n_in

    def model_acc(self, lp, x):
        """The unit's accumulators (``scale * raw + offset``, XNOR popcounts for bipolar) on a
        batch ``x`` of input maps in HWC stream order ``(B, H*W*C)``; HWC out."""
        layer, p = lp.layer, lp.params
        xnor = p.lane_kind is LaneKind.XNOR
        out = [to_hwc(conv_acc(layer.weight, from_hwc(v, *p.in_shape), layer.bias,
                               groups=p.groups, stride=p.stride, dilation=p.dilation,
                               padding=p.padding, pad_value=p.pad_value, xnor=xnor))
               for v in np.asarray(x)]
        return np.array(out)

    def build(self, lp):
        return VVAUConvolution(lp.params, weight=lp.layer.weight)

    def resources(self, lp):
        """The lanes and stage as the default bill counts them, the weight memory (``lanes``
        weights a word) and the window unit."""
        from ..resources import Memory, window_bill

        p = lp.params
        force = None if p.weight_storage.value == "auto" else p.weight_storage.value
        weights = Memory(p.weight_depth, p.lanes * p.weight_dtype.bits, force=force,
                         table=True)
        bill = super().resources(lp).plus(window_bill(p.window))
        return replace(bill, memories=bill.memories + (weights,))

    def manifest(self, lp):
        p = lp.params
        win = p.window
        return {
            "lanes": p.lanes, "lane_kind": p.lane_kind.value, "pe": p.pe, "simd": p.simd,
            "groups": p.groups, "group_channels": p.group_in, "multiplier": p.multiplier,
            "in_beat": p.n_in, "out_beat": p.out_beat, "acc_width": p.acc_width,
            "raw_width": p.raw_shape.width, "weight_storage": p.weight_storage.value,
            "weight_bits": p.weight_bits, "pixels": p.pixels,
            "cycles_per_pixel": p.cycles_per_pixel, "expected_cycles": p.expected_cycles,
            "window": {"order": win.order.value, "in_beat": win.n_in, "out_beat": win.n_out,
                       "buffer_rows": win.buffer_rows, "buffer_words": win.buffer_depth,
                       "buffer_bits": win.buffer_bits, "expected_cycles": win.expected_cycles,
                       "latency": win.latency},
        }

    def dump(self, lp):
        p = lp.params
        return {"pe": p.pe, "simd": p.simd, "multiplier": p.multiplier, "groups": p.groups}
