"""Adapter of the FINN-like matrix-vector unit (:mod:`nnaccel.hw.mvu`).

Every linear layer can run on it; SPEC 2.3 gives it bipolar layers (XNOR-popcount lanes) and
dense layers at batch 1. Its PE x SIMD come from the pipeline-wide fold chooser
(:mod:`nnaccel.gen.passes.folding`, ``--fold`` forces one); cycles per inference are FINN's
``ceil(M/pe) * ceil(K/simd)``.

A ``conv2d`` with ``groups = 1`` runs on it too, fed by the sliding-window unit
(:mod:`nnaccel.hw.mvu.conv`): the weight is reordered to the window's patch order
``(i, j, c)``, K is ``KH*KW*C``, PE divides M (an output pixel's channels fill whole beats) and
SIMD divides C, or is ``q*C`` with ``q`` dividing KW or ``q = r*KW`` with ``r`` dividing KH
(several window positions per beat). Cycles per image: ``OH*OW * ceil(M/pe) * ceil(K/simd)``
plus the window unit's wait at an image boundary that the MVU does not hide, or the window
unit's own cycles when larger (:func:`~nnaccel.hw.mvu.conv.conv_cycles`). Grouped and depthwise
convolutions are refused (they belong on a vector-vector unit, which wastes no lanes on the
zeros of a grouped weight).
"""

from dataclasses import replace

import numpy as np

from ...hw.common.arith import cdiv
from ...hw.mvu.conv import ConvParams, ConvUnit, conv_cycles
from ...hw.mvu.engine import MatrixVectorUnit, input_copies, weight_words
from ...hw.mvu.params import LaneKind, MVUParams
from ...hw.mvu.reference import affine
from ...hw.window.params import WindowParams
from ...hw.window.reference import from_hwc, im2col, patch_weights
from ..errors import UsageError
from ..folding import FoldSpace
from ..ir import Op
from ..resources import (
    COPY_BITS,
    Bill,
    Memory,
    dsp_blocks,
    lanes_bill,
    packed_bill,
    stage_bill,
    stream_bill,
    window_bill,
)
from .base import Engine, EngineAdapter, divisors, is_bipolar, stage_kwargs

__all__ = ["MVUAdapter", "conv_simds"]


def conv_simds(channels, kernel):
    """SIMD widths the window unit can feed: divisors of C, and ``q*C`` for ``q`` dividing KW
    or ``q = r*KW`` with ``r`` dividing KH."""
    kh, kw = kernel
    qs = set(divisors(kw)) | {r * kw for r in divisors(kh)}
    return tuple(sorted(set(divisors(channels)) | {q * channels for q in qs}))


def _window(layer, simd):
    c, h, w = layer.in_shape
    return WindowParams(channels=c, height=h, width=w, kernel=layer.kernel, stride=layer.stride,
                        dilation=layer.dilation, padding=layer.padding,
                        pad_value=layer.pad_value, dtype=layer.in_dtype,
                        n_in=simd if c % simd == 0 else c, n_out=simd)


def _matrix_acc(weight, bias, p, x):
    """The SPEC accumulator computed from the MVU's weight memory words as the unit stores
    them (:func:`~nnaccel.hw.mvu.engine.weight_words`), beat by beat: the input in beats of
    SIMD elements with garbage in the padding lanes of the last beat, which the unit masks, then
    the affine hand-over to the output stage. Read back independently of the folding code, so a
    layout fault in the words shows up here, before any hardware is built."""
    xnor = p.lane_kind is LaneKind.XNOR
    m, k = weight.shape
    x = np.asarray(x)
    bits, wd = p.weight_dtype.bits, p.weight_dtype
    words = weight_words(p, weight)
    sf_n, pe, simd = p.synapse_folds, p.pe, p.simd
    garbage = np.random.default_rng(0).choice(x.reshape(-1), size=(len(x), sf_n * simd - k))
    beats = np.concatenate([x, garbage], axis=1).reshape(len(x), sf_n, simd)
    raw = np.zeros((len(x), p.neuron_folds * pe), dtype=object)
    mask = (1 << bits) - 1
    for address, word in enumerate(words):
        nf, sf = divmod(address, sf_n)
        fields = [(word >> (f * bits)) & mask for f in range(pe * simd)]
        w = wd.decode(np.array(fields, dtype=np.uint64)).reshape(pe, simd)
        real = (sf * simd + np.arange(simd)) < k          # the unit's padding mask
        xs = beats[:, sf, :]
        if xnor:
            part = ((w[None, :, :] == xs[:, None, :]) & real).sum(axis=2)
        else:
            part = (xs[:, None, :].astype(object) * w[None, :, :].astype(object)
                    * real).sum(axis=2)
        raw[:, nf * pe:(nf + 1) * pe] += part
    scale, offset = affine(m, k, bias, xnor)
    return scale * raw[:, :m] + offset


class MVUAdapter(EngineAdapter):
    engine = Engine.MVU
    option, flag = "folds", "--fold"
    free_fold = True

    def accepts(self, layer):
        if layer.op is Op.CONV2D:
            if layer.groups != 1:
                return False, (f"the mvu engine runs conv2d with groups = 1; groups = "
                               f"{layer.groups} (grouped or depthwise) needs a vector-vector "
                               "unit, which this version does not have yet")
            return True, ""
        return super().accepts(layer)

    def claims(self, layer, batch):
        if layer.op is Op.CONV2D:
            return "bipolar convolution (window unit + XNOR-popcount lanes)" if \
                is_bipolar(layer) else "convolution (window unit + MVU)"
        return "bipolar layer (XNOR-popcount lanes)" if is_bipolar(layer) else \
            "dense layer, batch 1"

    def wrong_engine(self, lp):
        from . import ADAPTERS

        others = " / ".join(a.flag for a in ADAPTERS.values() if a is not self)
        return UsageError(f"layer {lp.layer.name!r}: --fold applies to mvu layers; this one "
                          f"runs on the {lp.engine.value} engine (see {others})")

    def check_choice(self, lp, choice):
        layer = lp.layer
        if layer.op is not Op.CONV2D:
            return
        m, c = layer.out_channels, layer.in_shape[0]
        simds = conv_simds(c, layer.kernel)
        if m % choice.pe or choice.simd not in simds:
            raise UsageError(f"layer {layer.name!r}: --fold {choice.pe}x{choice.simd}: a "
                             f"convolution needs pe dividing its {m} output channels and simd "
                             f"one of {', '.join(map(str, simds))}")

    def configure(self, lp, *, share, prev_beat, options):
        forced = options.forced(self.option, lp.layer.name)
        return lp, (forced.pe if forced is not None else None)

    def fold_space(self, lp):
        layer = lp.layer
        if layer.op is not Op.CONV2D:
            return None
        m, oh, ow = layer.out_shape
        c, k = layer.in_shape[0], layer.patch_size
        windows = {}

        def cycles(fold):
            if fold.simd not in windows:
                windows[fold.simd] = _window(layer, fold.simd)
            return conv_cycles(windows[fold.simd], oh * ow, cdiv(m, fold.pe),
                               cdiv(k, fold.simd))

        return FoldSpace(m=m, k=k, repeat=oh * ow, pes=tuple(divisors(m)),
                         simds=conv_simds(c, layer.kernel), floor=cycles,
                         in_beat=lambda f: f.simd if c % f.simd == 0 else c)

    def in_beat(self, lp):
        return lp.params.in_beat if isinstance(lp.params, ConvParams) else lp.fold.simd

    def with_fold(self, lp, fold, options, dsp=None):
        """``lp`` folded ``fold``; ``dsp``: how many of its multipliers go to DSP blocks
        (default all; see :meth:`with_dsps`)."""
        layer = lp.layer
        if layer.op is Op.CONV2D:
            params = ConvParams.for_layer(
                weight=layer.weight, in_shape=layer.in_shape, stride=layer.stride,
                dilation=layer.dilation, padding=layer.padding, pad_value=layer.pad_value,
                bias=layer.bias, pe=fold.pe, simd=fold.simd, in_dtype=layer.in_dtype,
                weight_dtype=layer.weight_dtype, weight_storage=lp.storage,
                dsp_multipliers=dsp, **stage_kwargs(layer))
            return lp.but(fold=fold, params=params)
        params = MVUParams.for_layer(weight=layer.weight, bias=layer.bias, pe=fold.pe,
                                     simd=fold.simd, in_dtype=layer.in_dtype,
                                     weight_dtype=layer.weight_dtype, weight_storage=lp.storage,
                                     dsp_multipliers=dsp, **stage_kwargs(layer))
        return lp.but(fold=fold, params=params)

    def splittable_multipliers(self, lp):
        """``(count, weight bits, input bits)``: the lane multipliers of ``lp`` that may go to
        logic instead of one DSP block each (multiply lanes, one product per multiplier, which
        synthesis maps to one block: operands of 2 to 16 bits) and their operands' widths."""
        v = lp.params.mvu if isinstance(lp.params, ConvParams) else lp.params
        wbits, xbits = v.weight_dtype.bits, v.in_dtype.bits
        if v.packed_products or dsp_blocks(wbits, xbits, "ice40") != 1:
            return 0, wbits, xbits
        return v.multipliers, wbits, xbits

    def with_dsps(self, lp, dsp, options):
        """``lp`` with ``dsp`` of its :meth:`splittable_multipliers` in DSP blocks, the rest in
        logic."""
        return self.with_fold(lp, lp.fold, options, dsp=dsp)

    def model_acc(self, lp, x):
        layer, p = lp.layer, lp.params
        if isinstance(p, ConvParams):
            c, h, w = layer.in_shape
            win = p.window
            patches = np.concatenate([
                im2col(from_hwc(v, c, h, w), win.kernel, win.stride, win.dilation, win.padding,
                       win.pad_value) for v in np.asarray(x)])
            acc = _matrix_acc(patch_weights(layer.weight), layer.bias, p.mvu, patches)
            return acc.reshape(len(x), -1)
        return _matrix_acc(layer.weight, layer.bias, p, x)

    def build(self, lp):
        if isinstance(lp.params, ConvParams):
            return ConvUnit(lp.params, weight=lp.layer.weight)
        return MatrixVectorUnit(lp.params, weight=lp.layer.weight)

    def manifest(self, lp):
        p = lp.params
        conv = isinstance(p, ConvParams)
        v = p.mvu if conv else p
        weights = v.lanes * lp.layer.weight_dtype.bits * v.expected_cycles
        out = {
            "lanes": v.lanes, "lane_kind": v.lane_kind.value, "pe": v.pe, "simd": v.simd,
            "neuron_folds": v.neuron_folds, "synapse_folds": v.synapse_folds,
            "acc_width": v.acc_width, "raw_width": v.raw_shape.width,
            "weight_storage": v.weight_storage.value, "weight_bits": weights,
            "dsp_multipliers": v.multipliers - v.logic_multipliers,
            "logic_multipliers": v.logic_multipliers,
            "expected_cycles": p.expected_cycles,
        }
        if conv:
            win = p.window
            out.update({
                "patch_elems": v.in_features, "pixels": p.pixels, "mvu_cycles": p.mvu_cycles,
                "window": {"in_beat": win.n_in, "out_beat": win.n_out,
                           "buffer_rows": win.buffer_rows, "buffer_words": win.buffer_depth,
                           "buffer_bits": win.buffer_bits, "read_ports": win.read_ports,
                           "expected_cycles": win.expected_cycles, "latency": win.latency},
            })
        return out

    def resources(self, lp):
        p = lp.params
        conv = isinstance(p, ConvParams)
        v = p.mvu if conv else p
        wbits, xbits = v.weight_dtype.bits, v.in_dtype.bits
        raw = v.raw_shape.width
        force = v.weight_memory.value   # "bram" or "logic": AUTO resolved by the Params
        sf, nf = v.synapse_folds, v.neuron_folds
        mems = [Memory(nf * sf, v.pe * v.simd * wbits, force=force, table=True),
                # the output FIFO of raw sums, a few deep
                Memory(cdiv(8 + v.simd.bit_length(), sf) + 1, v.pe * raw, rom=False)]
        if nf > 1:   # the input buffer replays a vector for every neuron fold
            mems.append(Memory(sf, v.simd * xbits, rom=False))
        bill = lanes_bill(v.pe, v.simd, v.lane_kind, wbits, xbits, raw)
        # the input beat's register copied per group of PEs (XNOR lanes), a flip-flop a bit
        if input_copies(v) > 1:
            bill = bill.plus(Bill(quantities={COPY_BITS: (input_copies(v) - 1) * v.simd
                                              * xbits}))
        if v.packed_products:   # two weights a product apart in one multiplier per PE pair
            bill = replace(bill, multipliers=((2 * wbits + xbits + 2, xbits, v.multipliers),))
            bill = bill.plus(packed_bill(v.weight_dtype, v.in_dtype, v.pe // 2 * v.simd))
        elif v.logic_multipliers:   # shift-and-add multipliers: lane bits, one stage more
            bill = replace(bill, multipliers=((wbits, xbits, v.multipliers
                                               - v.logic_multipliers),))
            bill = bill.plus(Bill(quantities={"lane_bits": wbits * xbits
                                              * v.logic_multipliers}))
        bill = bill.plus(stage_bill(v.output))
        if conv:   # the window unit and its line buffer
            bill = bill.plus(window_bill(p.window))
        bill = bill.plus(stream_bill(self.in_beat(lp) * xbits, v.pe * lp.layer.out_dtype.bits))
        return replace(bill, memories=bill.memories + tuple(mems))
