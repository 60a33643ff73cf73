"""Adapter of the systolic-array engine (:mod:`nnaccel.hw.systolic`).

SPEC 2.3 gives it the dense layers of a design for batches (``--batch B > 1``; bipolar ones
excepted). Sizing: ``rows`` R and ``cols`` C are powers of two up to :data:`MAX_ARRAY_SIDE` (R up
to about K, C up to about M); the dataflow is the one with the fewer steady-state cycles per
batch in the engine's cycle model (:mod:`nnaccel.hw.systolic.params`), ties to
weight-stationary. Input beat: the previous layer's output beat when fixed, else R; a
weight-stationary array needs R and its input beat to divide one another. Cycles per inference:
a batch's steady-state cycles over B (may be fractional).

A ``conv2d`` with ``groups = 1`` runs on it too (SPEC 2.3 gives it those of a design for
batches, bipolar ones excepted): the sliding-window unit's im2col patches of ``K = KH*KW*C``
elements, ordered ``(i, j, c)``, are the vectors of one GEMM against the weight reordered to that
order, a batch of B images being ``B*OH*OW`` patch vectors (:mod:`nnaccel.hw.systolic.conv`).
``cols`` divides M (an output pixel's channels fill whole beats); the window's patch beat is the
widest it can emit (:func:`~nnaccel.gen.engines.mvu.conv_simds`) that divides R or that R divides
(weight-stationary) or is at most R (output-stationary), and whose line-buffer word divides the
previous layer's output beat or is divided by it. Cycles per image: a batch's steady state (the
array's, or the window unit's when it is the slower) over B.
"""

import math
from dataclasses import dataclass

import numpy as np

from ...hw.systolic import reference as systolic_ref
from ...hw.systolic.conv import SystolicConv, SystolicConvParams
from ...hw.systolic.engine import SystolicEngine
from ...hw.systolic.params import Dataflow, SystolicParams
from ...hw.window.reference import from_hwc, patch_stream, patch_weights
from ..errors import UsageError
from ..folding import Fold
from ..ir import Op
from .base import (
    Engine,
    EngineAdapter,
    divisors,
    is_bipolar,
    is_matrix_layer,
    number,
    pick,
    stage_kwargs,
)
from .mvu import conv_simds

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


def _is_conv(layer):
    return layer.op is Op.CONV2D


def _patch_beat(layer, rows, dataflow, prev_beat):
    """The window's patch beat for a convolution on ``rows`` rows (see the module)."""
    c = layer.in_shape[0]

    def fits(n):
        word = n if c % n == 0 else c
        if prev_beat is not None and prev_beat % word and word % prev_beat:
            return False
        return rows % n == 0 or n % rows == 0 if dataflow is Dataflow.WS else n <= rows

    return max((n for n in conv_simds(c, layer.kernel) if fits(n)), default=1)


def systolic_params(layer, array, batch, in_beat=None, dataflow=None, prev_beat=None):
    """The Params of ``layer`` on ``array``: :class:`SystolicConvParams` for a convolution
    (``in_beat`` unused: the patch beat follows from the array and ``prev_beat``), else
    :class:`SystolicParams`."""
    dataflow = dataflow or array.dataflow or Dataflow.WS
    if _is_conv(layer):
        return SystolicConvParams.for_layer(
            weight=layer.weight, in_shape=layer.in_shape, images=batch, rows=array.rows,
            cols=array.cols, dataflow=dataflow,
            n_out=_patch_beat(layer, array.rows, Dataflow(dataflow), prev_beat),
            in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype, stride=layer.stride,
            dilation=layer.dilation, padding=layer.padding, pad_value=layer.pad_value,
            bias=layer.bias, dsp_cells=array.dsp_cells, **stage_kwargs(layer))
    return SystolicParams.for_layer(
        weight=layer.weight, rows=array.rows, cols=array.cols, dataflow=dataflow, batch=batch,
        in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype, bias=layer.bias,
        in_beat=in_beat, dsp_cells=array.dsp_cells, **stage_kwargs(layer))


def _images(params):
    """Inferences per batch: images of a convolution, vectors of a matrix layer."""
    return params.images if isinstance(params, SystolicConvParams) else params.batch


def per_inference(params):
    """Steady-state cycles per inference of a systolic layer: a batch's cycles over B."""
    return params.steady_cycles / _images(params)


def _pow2_upto(n):
    """Powers of two up to ``n`` rounded up to a power of two, and at most MAX_ARRAY_SIDE."""
    top = min(MAX_ARRAY_SIDE, 1 << max(n - 1, 0).bit_length())
    return [1 << i for i in range(top.bit_length())]


def _best_dataflow(layer, array, batch, in_beat, prev_beat=None):
    """The dataflow with the fewer steady cycles (weight-stationary on a tie), and its params."""
    best = None
    for df in (Dataflow.WS, Dataflow.OS):
        beat = in_beat
        if df is Dataflow.WS and beat is not None and beat % array.rows and array.rows % beat:
            continue
        p = systolic_params(layer, array, batch, beat, df, prev_beat)
        if best is None or p.steady_cycles < best.steady_cycles:
            best = p
    return best


class SystolicAdapter(EngineAdapter):
    engine = Engine.SYSTOLIC
    option, flag = "arrays", "--array"
    batched = True

    def accepts(self, layer):
        if (is_matrix_layer(layer) or _is_conv(layer)) and is_bipolar(layer):
            return False, ("a bipolar layer cannot run on the systolic engine (only mvu has "
                           "XNOR-popcount lanes)")
        if _is_conv(layer):
            if layer.groups != 1:
                return False, (f"the systolic engine runs conv2d with groups = 1; groups = "
                               f"{layer.groups} (grouped or depthwise) runs on the vvau")
            return True, ""
        return super().accepts(layer)

    def claims(self, layer, batch):
        if batch == 1:
            return None
        if _is_conv(layer):
            return (f"convolution in a design for batches of {batch} (im2col patches from the "
                    "window unit on the array)")
        return f"dense layer in a design for batches of {batch}"

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
        if _is_conv(lp.layer) and lp.layer.out_channels % choice.cols:
            raise UsageError(f"layer {lp.layer.name!r}: --array {choice.rows}x{choice.cols}: a "
                             f"convolution needs cols dividing its {lp.layer.out_channels} "
                             "output channels (an output pixel fills whole beats)")

    def _choose(self, layer, batch, share, target, prev_beat=None):
        if _is_conv(layer):
            m, k = layer.out_channels, layer.patch_size
            col_options = [d for d in divisors(m) if d <= MAX_ARRAY_SIDE]
        else:
            m, k = layer.weight.shape
            col_options = _pow2_upto(m)
        cands = []
        for rows in _pow2_upto(k):
            for cols in col_options:
                p = _best_dataflow(layer, ArrayChoice(rows, cols), batch, None, prev_beat)
                cands.append((rows * cols, per_inference(p), ArrayChoice(rows, cols)))
        (_, cycles, array), ok = pick(cands, share, target)
        return array, ok, cycles

    def configure(self, lp, *, share, prev_beat, options):
        layer, batch = lp.layer, options.batch
        warn = ()
        array = options.forced(self.option, layer.name)
        if array is None:
            array, ok, cycles = self._choose(layer, batch, share, options.target_cycles,
                                             prev_beat)
            if not ok:
                warn = (f"--target-cycles {options.target_cycles} not met: the fastest "
                        f"systolic configuration needs {cycles:g} cycles",)
        if _is_conv(layer):
            dataflow = array.dataflow or _best_dataflow(layer, array, batch, None,
                                                        prev_beat).dataflow
            params = systolic_params(layer, array, batch, dataflow=dataflow,
                                     prev_beat=prev_beat)
            lp = lp.but(params=params, fold=Fold(array.cols, params.in_beat),
                        warnings=lp.warnings + warn)
            return lp, array.cols
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
        if isinstance(lp.params, SystolicConvParams):
            win = lp.params.window
            patches = np.stack([patch_stream(from_hwc(v, *layer.in_shape), win)
                                for v in np.asarray(x)]).reshape(-1, win.patch_elems)
            acc = systolic_ref.gemm(patch_weights(layer.weight), patches) + bias
            return acc.reshape(len(x), -1)
        return systolic_ref.gemm(layer.weight, x) + bias

    def build(self, lp):
        if isinstance(lp.params, SystolicConvParams):
            return SystolicConv(lp.params, weight=lp.layer.weight)
        return SystolicEngine(lp.params, weight=lp.layer.weight)

    def manifest(self, lp):
        p = lp.params
        if isinstance(p, SystolicConvParams):
            return {
                "lanes": p.lanes, "batch": p.images, "in_beat": p.in_beat, "out_beat": p.cols,
                "acc_width": p.acc_width, **p.summary(),
                "expected_cycles": number(p.steady_cycles / p.images),
                "expected_cycles_per_batch": p.steady_cycles,
                "expected_cycles_first_batch": p.expected_cycles,
                "ideal": number(p.ideal_cycles / p.images),
            }
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

    def resources(self, lp):
        from ..resources import stage_bill, systolic_bill, window_bill

        p = lp.params
        conv = isinstance(p, SystolicConvParams)
        array = p.array if conv else p
        bill = systolic_bill(array, array.acc_shape.width).plus(stage_bill(array.output))
        return bill.plus(window_bill(p.window)) if conv else bill

    def dump(self, lp):
        p = lp.params
        return {"rows": p.rows, "cols": p.cols, "dataflow": p.dataflow.value}
