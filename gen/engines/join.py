"""Adapter of the join units (:mod:`nnaccel.hw.join`): ``add`` and ``concat``.

Every join runs on them. The only choice is the beat ``n`` (elements per beat on every port,
dividing the channels of every input), picked by the pipeline-wide fold chooser as the fold
``Fold(n, n)``; a join has no multipliers, so it costs no lanes. Cycles per image: one beat per
cycle, ``H*W*C / n`` (output channels for concat). A vector ``(K,)`` is joined as one pixel of
``K`` channels.
"""

import math

import numpy as np

from ...hw.join.engine import AddUnit, ConcatUnit
from ...hw.join.params import AddParams, ConcatParams
from ...hw.join.reference import add_acc, concat
from ..errors import UsageError
from ..folding import FoldSpace
from ..ir import Op
from .base import Engine, EngineAdapter, divisors, stage_kwargs

__all__ = ["JoinAdapter"]


def _grid(shape):
    """``(channels, pixels)`` of a stream of ``shape`` (a vector is one pixel)."""
    if len(shape) == 3:
        return shape[0], shape[1] * shape[2]
    return shape[0], 1


def _channels(layer):
    """Channels of every input (add: all equal)."""
    if layer.op is Op.CONCAT:
        return tuple(s[0] for s in layer.in_shapes)
    return (_grid(layer.in_shape)[0],) * len(layer.inputs)


def _params(layer, n):
    chans = _channels(layer)
    pixels = _grid(layer.in_shape)[1]
    if layer.op is Op.CONCAT:
        return ConcatParams(dtype=layer.in_dtype, channels=chans, pixels=pixels, n=n)
    kw = stage_kwargs(layer)
    return AddParams(in_dtypes=layer.in_dtypes, scales=layer.scales, channels=chans[0],
                     pixels=pixels, n=n, out_kind=kw.pop("output_kind"), **kw)


class JoinAdapter(EngineAdapter):
    engine = Engine.JOIN
    option, flag = "joins", "--join-beat"
    free_fold = True
    #: A join reads several streams: :meth:`model_acc` takes one batch per input.
    joins = True

    def accepts(self, layer):
        if layer.op in (Op.ADD, Op.CONCAT):
            return True, ""
        return False, f"the join engine runs add and concat, not {layer.op.value}"

    def claims(self, layer, batch):
        return "join of branches (add or concat unit)"

    def check_choice(self, lp, choice):
        raise UsageError(f"layer {lp.layer.name!r}: a join's beat is not user-set")

    def configure(self, lp, *, share, prev_beat, options):
        return lp, None

    def beats(self, layer):
        """The allowed beats: divisors of the gcd of the inputs' channels."""
        return tuple(divisors(math.gcd(*_channels(layer))))

    def fold_space(self, lp):
        layer = lp.layer
        beats = self.beats(layer)
        c_out, pixels = _grid(layer.out_shape)
        return FoldSpace(m=c_out, k=c_out, repeat=0, pes=beats, simds=beats, tied=True,
                         floor=lambda f: pixels * c_out // f.pe, cost=lambda f: 0)

    def with_fold(self, lp, fold, options):
        return lp.but(fold=fold, params=_params(lp.layer, fold.pe))

    def lanes(self, lp):
        return 0

    def model_acc(self, lp, xs):
        """Add: ``sum scales[i] * x_i`` (before the output stage); concat: the joined maps;
        ``xs`` one batch per input in stream order (HWC), HWC out."""
        layer = lp.layer
        xs = [np.asarray(x) for x in xs]
        if layer.op is Op.CONCAT:
            return concat(xs, _channels(layer))
        return add_acc(xs, layer.scales)

    def resources(self, lp):
        """Add: the scaled sum of ``n`` elements of each input (``stage``: ``n`` x the sum's
        width per input) and its output stage; concat: the beat multiplexer; the streams."""
        from ..resources import Bill, stage_bill, stream_bill

        p, layer = lp.params, lp.layer
        dtypes = getattr(layer, "in_dtypes", None) or (layer.in_dtype,) * len(layer.inputs)
        ins = sum(d.bits for d in dtypes)
        bill = stream_bill(p.n * ins, p.n * layer.out_dtype.bits).plus(
            Bill(quantities={"layer": 1}))
        if isinstance(p, AddParams):
            acc = p.acc_shape.width
            bill = bill.plus(Bill(quantities={"stage": p.n * acc * len(p.scales)}, carry=acc))
            bill = bill.plus(stage_bill(p.stage_params))
        return bill

    def build(self, lp):
        if lp.layer.op is Op.CONCAT:
            return ConcatUnit(lp.params)
        return AddUnit(lp.params)

    def manifest(self, lp):
        p = lp.params
        out = {"lanes": 0, "n": p.n, "inputs": list(lp.layer.inputs),
               "expected_cycles": p.expected_cycles}
        if isinstance(p, AddParams):
            out.update(scales=list(p.scales), acc_width=p.acc_shape.width)
        else:
            out.update(acc_width=0, channels=list(p.channels))
        return out
