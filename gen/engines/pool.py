"""Adapter of the pooling units (:mod:`nnaccel.hw.pool`): ``maxpool2d`` and ``sumpool2d``.

Every pooling layer runs on them (a window unit and a reduction; global pooling, a kernel
covering the whole map without padding, needs no line buffer). The only choice is the beat
``n`` (elements per beat in and out, dividing C), picked by the pipeline-wide fold chooser as the
fold ``Fold(n, n)``; a pool has no multipliers, so it costs no lanes. Cycles per image: the
unit's (:attr:`~nnaccel.hw.pool.params.PoolParams.expected_cycles`).
"""

from ...hw.pool.engine import Pool
from ...hw.pool.params import PoolKind, PoolParams
from ...hw.pool.reference import max_pool, sum_pool
from ...hw.window.reference import from_hwc
from ..errors import UsageError
from ..folding import FoldSpace
from ..ir import Op
from .base import Engine, EngineAdapter, divisors, stage_kwargs, to_stream

__all__ = ["PoolAdapter"]


def _params(layer, n):
    c, h, w = layer.in_shape
    kind = PoolKind.MAX if layer.op is Op.MAXPOOL2D else PoolKind.SUM
    stage = {}
    if kind is PoolKind.SUM:
        kw = stage_kwargs(layer)
        stage = dict(out_kind=kw.pop("output_kind"), **kw)
    return PoolParams(kind=kind, channels=c, height=h, width=w, kernel=layer.kernel,
                      stride=layer.stride, padding=layer.padding, dtype=layer.in_dtype, n=n,
                      **stage)


class PoolAdapter(EngineAdapter):
    engine = Engine.POOL
    option, flag = "pools", "--pool-beat"
    free_fold = True

    def accepts(self, layer):
        if layer.op in (Op.MAXPOOL2D, Op.SUMPOOL2D):
            return True, ""
        return False, f"the pool engine runs maxpool2d and sumpool2d, not {layer.op.value}"

    def claims(self, layer, batch):
        return "pooling layer (window unit + reduction)"

    def check_choice(self, lp, choice):
        c = lp.layer.in_shape[0]
        if c % choice.pe or choice.pe != choice.simd:
            raise UsageError(f"layer {lp.layer.name!r}: a pool's beat must divide its {c} "
                             f"channels, not {choice.pe}")

    def configure(self, lp, *, share, prev_beat, options):
        forced = options.forced(self.option, lp.layer.name)
        return lp, (forced.pe if forced is not None else None)

    def fold_space(self, lp):
        layer = lp.layer
        c = layer.in_shape[0]
        beats = tuple(divisors(c))
        cycles = {n: _params(layer, n).expected_cycles for n in beats}
        return FoldSpace(m=c, k=c, repeat=0, pes=beats, simds=beats, tied=True,
                         floor=lambda f: cycles[f.pe], cost=lambda f: 0)

    def with_fold(self, lp, fold, options):
        return lp.but(fold=fold, params=_params(lp.layer, fold.pe))

    def lanes(self, lp):
        return 0

    def model_acc(self, lp, x):
        """Max: the pooled values; sum: the window sums (before the output stage); HWC."""
        layer, p = lp.layer, lp.params
        c, h, w = layer.in_shape
        op = max_pool if p.kind is PoolKind.MAX else sum_pool
        maps = [op(from_hwc(v, c, h, w), p.kernel, p.stride, p.padding) for v in x]
        return to_stream(maps, layer.out_shape)

    def build(self, lp):
        return Pool(lp.params)

    def resources(self, lp):
        """The window unit (none for a global pool), the running values of a pixel's channel
        words (a memory of ``n`` accumulators a word) with the comparators or adders
        (``stage``), and a sum's output stage."""
        from ..resources import Bill, Memory, stage_bill, stream_bill, window_bill

        p = lp.params
        acc = p.acc_shape.width
        bill = Bill(quantities={"layer": 1, "stage": p.n * acc},
                    memories=(Memory(p.channel_words, p.n * acc, rom=False),), carry=acc)
        if not p.is_global:
            bill = bill.plus(window_bill(p.window_params))
        if p.stage_params is not None:
            bill = bill.plus(stage_bill(p.stage_params))
        return bill.plus(stream_bill(p.n * p.dtype.bits, p.n * lp.layer.out_dtype.bits))

    def manifest(self, lp):
        p = lp.params
        return {"lanes": 0, "n": p.n, "kind": p.kind.value, "global": p.is_global,
                "acc_width": p.acc_width, "expected_cycles": p.expected_cycles,
                "line_buffer_bits": 0 if p.is_global else p.window_params.buffer_bits}
