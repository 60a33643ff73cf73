"""Adapter of the systolic-array engine (:mod:`nnaccel.hw.systolic`).

SPEC 2.3 gives it the dense layers of a design for batches (``--batch B > 1``; bipolar ones
excepted). Sizing: ``rows`` R and ``cols`` C are powers of two up to :data:`MAX_ARRAY_SIDE` (R up
to about K, C up to about M); the dataflow is the one with the fewer steady-state cycles per
batch in the engine's cycle model (:mod:`nnaccel.hw.systolic.params`), ties to
weight-stationary. Input beat: the previous layer's output beat when fixed, else R; a
weight-stationary array needs R and its input beat to divide one another. Cycles per inference:
a batch's steady-state cycles over B (may be fractional).
"""

import math
from dataclasses import dataclass

import numpy as np

from ...hw.systolic import reference as systolic_ref
from ...hw.systolic.engine import SystolicEngine
from ...hw.systolic.params import Dataflow, SystolicParams
from ..errors import UsageError
from ..folding import Fold
from .base import Engine, EngineAdapter, is_bipolar, is_matrix_layer, number, pick, stage_kwargs

__all__ = ["SystolicAdapter", "ArrayChoice", "MAX_ARRAY_SIDE"]

MAX_ARRAY_SIDE = 16


@dataclass(frozen=True)
class ArrayChoice:
    """The user's choice for a systolic layer (``--array LAYER=RxC[,ws|os]``): ``rows`` x
    ``cols`` cells, the dataflow (None: the cycle model's pick) and how many cells multiply in
    DSP blocks (None: all; the Python API only, for devices with fewer DSP blocks)."""

    rows: int
    cols: int
    dataflow: Dataflow | None = None
    dsp_cells: int | None = None


def systolic_params(layer, array, batch, in_beat=None, dataflow=None):
    return SystolicParams.for_layer(
        weight=layer.weight, rows=array.rows, cols=array.cols,
        dataflow=dataflow or array.dataflow or Dataflow.WS, batch=batch,
        in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype, bias=layer.bias,
        in_beat=in_beat, dsp_cells=array.dsp_cells, **stage_kwargs(layer))


def per_inference(params):
    """Steady-state cycles per inference of a systolic layer: a batch's cycles over B."""
    return params.steady_cycles / params.batch


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


class SystolicAdapter(EngineAdapter):
    engine = Engine.SYSTOLIC
    option, flag = "arrays", "--array"
    batched = True

    def accepts(self, layer):
        if is_matrix_layer(layer) and is_bipolar(layer):
            return False, ("a bipolar layer cannot run on the systolic engine (only mvu has "
                           "XNOR-popcount lanes)")
        return super().accepts(layer)

    def claims(self, layer, batch):
        return f"dense layer in a design for batches of {batch}" if batch > 1 else None

    def forced_note(self, batch):
        if batch == 1:
            return "; at batch 1 the mvu would be better (the array idles between tiles)"
        return ""

    def check_choice(self, lp, choice):
        if choice.rows < 1 or choice.cols < 1 or max(choice.rows, choice.cols) > 64:
            raise UsageError(f"layer {lp.layer.name!r}: --array {choice.rows}x{choice.cols}: "
                             "rows and cols must be between 1 and 64")
        if choice.dsp_cells is not None and not 0 <= choice.dsp_cells <= choice.rows * choice.cols:
            raise UsageError(f"layer {lp.layer.name!r}: dsp_cells {choice.dsp_cells} must be "
                             f"between 0 and the array's {choice.rows * choice.cols} cells")

    def _choose(self, layer, batch, share, target):
        m, k = layer.weight.shape
        cands = []
        for rows in _pow2_upto(k):
            for cols in _pow2_upto(m):
                p = _best_dataflow(layer, ArrayChoice(rows, cols), batch, None)
                cands.append((rows * cols, per_inference(p), ArrayChoice(rows, cols)))
        (_, cycles, array), ok = pick(cands, share, target)
        return array, ok, cycles

    def configure(self, lp, *, share, prev_beat, options):
        layer, batch = lp.layer, options.batch
        warn = ()
        array = options.forced(self.option, layer.name)
        if array is None:
            array, ok, cycles = self._choose(layer, batch, share, options.target_cycles)
            if not ok:
                warn = (f"--target-cycles {options.target_cycles} not met: the fastest "
                        f"systolic configuration needs {cycles:g} cycles",)
        k = layer.in_features
        if prev_beat is not None:
            in_beat = prev_beat
            if (array.dataflow in (None, Dataflow.WS) and in_beat % array.rows
                    and array.rows % in_beat):
                in_beat = math.gcd(in_beat, array.rows)
        else:
            in_beat = array.rows if array.rows <= k else 1 << (k.bit_length() - 1)
        dataflow = array.dataflow
        if dataflow is None:
            dataflow = _best_dataflow(layer, array, batch, in_beat).dataflow
        params = systolic_params(layer, array, batch, in_beat=in_beat, dataflow=dataflow)
        lp = lp.but(params=params, fold=Fold(array.cols, in_beat), warnings=lp.warnings + warn)
        return lp, array.cols

    def model_acc(self, lp, x):
        layer = lp.layer
        bias = 0 if layer.bias is None else np.asarray(layer.bias).astype(object)
        return systolic_ref.gemm(layer.weight, x) + bias

    def build(self, lp):
        return SystolicEngine(lp.params, weight=lp.layer.weight)

    def manifest(self, lp):
        p = lp.params
        return {
            "lanes": p.lanes, "rows": p.rows, "cols": p.cols, "dataflow": p.dataflow.value,
            "batch": p.batch, "in_beat": p.in_beat, "out_beat": p.cols,
            "tiles": f"{p.m_tiles}x{p.k_tiles}", "m_tiles": p.m_tiles, "k_tiles": p.k_tiles,
            "acc_width": p.acc_width,
            "expected_cycles": number(p.steady_cycles / p.batch),
            "expected_cycles_per_batch": p.steady_cycles,
            "expected_cycles_first_batch": p.expected_cycles,
            "ideal": number(p.ideal_cycles / p.batch),
        }

    def first_cycles(self, manifest):
        return manifest["expected_cycles_first_batch"]

    def dump(self, lp):
        p = lp.params
        return {"rows": p.rows, "cols": p.cols, "dataflow": p.dataflow.value}
