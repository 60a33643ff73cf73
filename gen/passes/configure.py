"""Pass: size the sparse and systolic layers and fix their stream beats.

Runs after the engine pass and before the MVU folding pass, which then treats every sparse and
systolic layer as a fixed fold ``Fold(pe=out_beat, simd=in_beat)`` so the gearboxes between
layers always see beats that divide one another.

* Lanes: with a lane budget (``--max-lanes``, default 64) a sparse or systolic layer gets at
  most its share of the budget, proportional to its multiply-accumulates; with
  ``--target-cycles`` it gets the fewest lanes that meet the target (the fastest it can do, and a
  warning, if none does).
* Systolic: ``rows`` R and ``cols`` C are powers of two up to 16 (R up to about K, C up to about
  M); the dataflow is the one with the fewer steady-state cycles per batch in the engine's
  cycle model (:mod:`nnaccel.hw.systolic.params`); ties go to weight-stationary.
* Sparse: ``pe`` N <= M, queue depth D = 8 (EIE: no gain beyond 8); N is judged by the cycle
  model (:func:`nnaccel.hw.sparse.reference.cycle_model`) with every activation non-zero, the
  worst case. A layer with fewer than one non-zero weight per PE per input column gets a
  warning: its PEs idle for part of every column.
* Input beats: what the previous layer sends if that layer is a sparse or systolic one (or an
  MVU layer whose fold the user forced), else R (systolic) or a power of two up to 8 (sparse);
  a weight-stationary array needs R and its input beat to divide one another.
"""

import math
from dataclasses import replace

import numpy as np

from ...hw.common.arith import cdiv
from ...hw.sparse.format import choose_index_bits, encode
from ...hw.sparse.reference import cycle_model
from ...hw.systolic.params import Dataflow, SystolicParams
from ..errors import UsageError
from ..folding import Fold
from ..ir import OutputKind
from ..plan import ArrayChoice, Engine, SparseChoice
from .folding import DEFAULT_MAX_LANES

__all__ = ["configure_engines", "systolic_params", "output_kwargs", "sparse_index_bits",
           "MAX_ARRAY_SIDE", "QUEUE_DEPTH"]

MAX_ARRAY_SIDE = 16
QUEUE_DEPTH = 8
#: Cycles from a row's read-out to its output beat, for judging PE counts (steady state does
#: not depend on it).
_OUT_LATENCY = 6


def output_kwargs(layer):
    """The output stage arguments every engine takes: ``output_kind``, ``out_dtype``, ..."""
    out = layer.output
    kw = dict(output_kind=out.kind.value, out_dtype=out.dtype)
    if out.kind is OutputKind.REQUANT:
        kw.update(mult=out.mult, shift=out.shift, relu=out.relu)
    elif out.kind is OutputKind.THRESHOLD:
        kw.update(thresholds=out.thresholds)
    return kw


def systolic_params(layer, array, batch, in_beat=None, dataflow=None):
    return SystolicParams.for_layer(
        weight=layer.weight, rows=array.rows, cols=array.cols,
        dataflow=dataflow or array.dataflow or Dataflow.WS, batch=batch,
        in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype, bias=layer.bias,
        in_beat=in_beat, **output_kwargs(layer))


def per_inference(params):
    """Steady-state cycles per inference of a systolic layer: a batch's cycles over B."""
    return params.steady_cycles / params.batch


def sparse_index_bits(layer, pe):
    return choose_index_bits(layer.weight, pe, codebook=layer.codebook).index_bits


def sparse_cycles(layer, pe, in_beat, queue_depth=QUEUE_DEPTH, index_bits=4):
    """Steady-state cycles per inference with every activation non-zero."""
    counts = encode(layer.weight, pe, index_bits=index_bits,
                    codebook=layer.codebook).column_counts()
    active = np.ones((2, layer.in_features), dtype=bool)
    return cycle_model(counts, active, in_beat=in_beat, queue_depth=queue_depth,
                       rows_per_pe=cdiv(layer.out_features, pe),
                       out_latency=_OUT_LATENCY).cycles_per_inference


def _pow2_upto(n):
    """Powers of two up to ``n`` rounded up to a power of two, and at most MAX_ARRAY_SIDE."""
    top = min(MAX_ARRAY_SIDE, 1 << max(n - 1, 0).bit_length())
    return [1 << i for i in range(top.bit_length())]


def _best_dataflow(layer, array, batch, in_beat):
    """The dataflow with the fewer steady cycles (weight-stationary on a tie), and its params."""
    best = None
    for df in (Dataflow.WS, Dataflow.OS):
        beat = in_beat
        if df is Dataflow.WS and beat is not None and beat % array.rows and array.rows % beat:
            continue
        p = systolic_params(layer, array, batch, beat, df)
        if best is None or p.steady_cycles < best.steady_cycles:
            best = p
    return best


def _pick(cands, share, target):
    """``cands``: (lanes, cycles, choice). Budget: the fastest within ``share`` lanes (ties to
    fewer lanes); target: the fewest lanes meeting ``target`` (else the fastest)."""
    if target is None:
        fits = [c for c in cands if c[0] <= share] or [min(cands, key=lambda c: c[0])]
        return min(fits, key=lambda c: (c[1], c[0])), True
    meets = [c for c in cands if c[1] <= target]
    if meets:
        return min(meets, key=lambda c: (c[0], c[1])), True
    return min(cands, key=lambda c: (c[1], c[0])), False


def _choose_array(layer, batch, share, target):
    m, k = layer.weight.shape
    cands = []
    for rows in _pow2_upto(k):
        for cols in _pow2_upto(m):
            p = _best_dataflow(layer, ArrayChoice(rows, cols), batch, None)
            cands.append((rows * cols, per_inference(p), ArrayChoice(rows, cols)))
    (_, cycles, array), ok = _pick(cands, share, target)
    return array, ok, cycles


def _choose_sparse(layer, share, target):
    m, k = layer.weight.shape
    in_beat = _sparse_beat(k)
    pes = sorted({1 << i for i in range(m.bit_length()) if 1 << i <= m} | {m})
    cands = [(pe, sparse_cycles(layer, pe, in_beat), SparseChoice(pe, QUEUE_DEPTH))
             for pe in pes if target is not None or pe <= max(share, 1)]
    (_, cycles, choice), ok = _pick(cands, share, target)
    return choice, ok, cycles


def _sparse_beat(k):
    return 1 << (min(k, 8).bit_length() - 1)


def _shares(plan, budget):
    """Lane share of every layer, proportional to its multiply-accumulates."""
    macs = [lp.layer.weight.size for lp in plan.layers]
    total = sum(macs)
    return [max(1, budget * mac // total) for mac in macs]


def _check_overrides(plan):
    opts = plan.options
    for lp in plan.layers:
        name, engine = lp.layer.name, lp.engine
        m, k = lp.layer.weight.shape
        if opts.fold_for(name) is not None and engine is not Engine.MVU:
            raise UsageError(f"layer {name!r}: --fold applies to mvu layers; this one runs on "
                             f"the {engine.value} engine (see --array / --sparse)")
        array = opts.array_for(name)
        if array is not None:
            if engine is not Engine.SYSTOLIC:
                raise UsageError(f"layer {name!r}: --array applies to systolic layers; this one "
                                 f"runs on the {engine.value} engine (use --engine "
                                 f"{name}=systolic)")
            if array.rows < 1 or array.cols < 1 or max(array.rows, array.cols) > 64:
                raise UsageError(f"layer {name!r}: --array {array.rows}x{array.cols}: rows and "
                                 "cols must be between 1 and 64")
        sparse = opts.sparse_for(name)
        if sparse is not None:
            if engine is not Engine.SPARSE:
                raise UsageError(f"layer {name!r}: --sparse applies to sparse layers; this one "
                                 f"runs on the {engine.value} engine (use --engine "
                                 f"{name}=sparse)")
            if not 1 <= sparse.pe <= m:
                raise UsageError(f"layer {name!r}: --sparse {sparse.pe}: the PEs must be "
                                 f"between 1 and the layer's {m} outputs")
            if sparse.queue_depth < 1:
                raise UsageError(f"layer {name!r}: --sparse queue depth must be positive, not "
                                 f"{sparse.queue_depth}")


def _size(plan):
    """Choose R x C or N of every sparse/systolic layer (pass 1)."""
    opts = plan.options
    shares = _shares(plan, opts.max_lanes or DEFAULT_MAX_LANES)
    layers = []
    for lp, share in zip(plan.layers, shares, strict=True):
        warn = []
        if lp.engine is Engine.SYSTOLIC:
            array, ok, cycles = opts.array_for(lp.layer.name), True, None
            if array is None:
                array, ok, cycles = _choose_array(lp.layer, opts.batch, share,
                                                  opts.target_cycles)
            lp = lp.but(array=array)
        elif lp.engine is Engine.SPARSE:
            choice, ok, cycles = opts.sparse_for(lp.layer.name), True, None
            if choice is None:
                choice, ok, cycles = _choose_sparse(lp.layer, share, opts.target_cycles)
            lp = lp.but(sparse=choice)
        else:
            layers.append(lp)
            continue
        if not ok:
            warn.append(f"--target-cycles {opts.target_cycles} not met: the fastest "
                        f"{lp.engine.value} configuration needs {cycles:g} cycles")
        layers.append(lp.but(warnings=lp.warnings + tuple(warn)))
    return layers


def _beats(plan, layers):
    """Fix the input beat (and so the fold) of every sparse/systolic layer (pass 2)."""
    opts = plan.options
    out = []
    prev_beat = None   # out beat of the previous layer when fixed (non-MVU or forced fold)
    for lp in layers:
        layer = lp.layer
        m, k = layer.weight.shape
        if lp.engine is Engine.MVU:
            forced = opts.fold_for(layer.name)
            prev_beat = forced.pe if forced is not None else None
            out.append(lp)
            continue
        if lp.engine is Engine.SYSTOLIC:
            array = lp.array
            if prev_beat is not None:
                in_beat = prev_beat
                if (array.dataflow in (None, Dataflow.WS) and in_beat % array.rows
                        and array.rows % in_beat):
                    in_beat = math.gcd(in_beat, array.rows)
            else:
                in_beat = array.rows if array.rows <= k else 1 << (k.bit_length() - 1)
            if array.dataflow is None:
                params = _best_dataflow(layer, array, opts.batch, in_beat)
                array = ArrayChoice(array.rows, array.cols, params.dataflow)
            lp = lp.but(array=array, fold=Fold(array.cols, in_beat))
            prev_beat = array.cols
        else:
            in_beat = prev_beat if prev_beat is not None else _sparse_beat(k)
            nonzeros = int(np.count_nonzero(layer.weight))
            per = nonzeros / (lp.sparse.pe * k)
            warn = ()
            if per < 1:
                warn = (f"{per:.2f} non-zero weights per PE per input column (< 1): PEs idle "
                        f"part of every column; fewer PEs would cost little",)
            choice = replace(lp.sparse, index_bits=lp.sparse.index_bits
                             or sparse_index_bits(layer, lp.sparse.pe))
            lp = lp.but(sparse=choice, fold=Fold(choice.pe, in_beat),
                        warnings=lp.warnings + warn)
            prev_beat = lp.sparse.pe
        out.append(lp)
    return out


def configure_engines(plan):
    _check_overrides(plan)
    return plan.but(layers=tuple(_beats(plan, _size(plan))))
