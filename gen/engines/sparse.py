"""Adapter of the EIE-like sparse engine (:mod:`nnaccel.hw.sparse`).

SPEC 2.3 gives it the layers of density <= :data:`SPARSE_DENSITY` (bipolar ones excepted: they
have no zeros). Sizing: ``pe`` N <= M, queue depth D = 8 (EIE: no gain beyond 8); N is judged by
the cycle model (:func:`nnaccel.hw.sparse.reference.cycle_model`) with every activation non-zero,
the worst case. N is chosen by cost against benefit: starting from one PE, the next candidate
(powers of two, then M) is taken only while it stays within the lane budget and realises at
least :data:`MIN_PE_GAIN` of its ideal speedup (doubling N must cut the cycles by at least a
third); the manifest lists the steps (``pe_steps``). With ``--target-cycles``, the fewest PEs
that meet it. Only a PE count the user forces is warned about when it leaves fewer than one
non-zero weight per PE per input column. Input beat: the previous layer's output beat when
fixed, else a power of two up to 8.

A pruned ``conv2d`` with ``groups = 1`` runs on it too (SPEC 2.3: the same density rule; the
engine reaches it through its patches, :mod:`nnaccel.hw.sparse.conv`): the sliding-window unit's
im2col patches of ``K = KH*KW*C`` elements, ordered ``(i, j, c)``, are its input vectors, one per
output pixel, against the weight reordered to that order, so zero activations and zero padding
are skipped. The PEs divide M (an output pixel's channels fill whole beats) and are chosen by
the same rule on the cycles per image (:meth:`SparseConvParams.expected_cycles`); the window's
patch beat is the widest it can emit (:func:`~nnaccel.gen.engines.mvu.conv_simds`) up to 8 whose
line-buffer word divides the previous layer's output beat or is divided by it. Grouped and
depthwise convolutions are refused (they run on the vvau).
"""

from dataclasses import dataclass, replace

import numpy as np

from ...hw.common.arith import cdiv
from ...hw.sparse import reference as sparse_ref
from ...hw.sparse.conv import SparseConv, SparseConvParams
from ...hw.sparse.engine import SparseEngine
from ...hw.sparse.format import choose_index_bits, decode, encode
from ...hw.sparse.params import SparseParams
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
    stage_kwargs,
)
from .mvu import conv_simds

__all__ = ["SparseAdapter", "SparseChoice", "encoded_matrix", "pe_steps", "SPARSE_DENSITY",
           "QUEUE_DEPTH", "MIN_PE_GAIN"]

#: SPEC 2.3: layers at most this dense run on the sparse engine by default.
SPARSE_DENSITY = 0.35
QUEUE_DEPTH = 8
#: A step to more PEs is taken only when it realises at least this fraction of its ideal
#: speedup (N -> N' ideally divides the cycles by N'/N).
MIN_PE_GAIN = 0.5
#: Cycles from a row's read-out to its output beat, for judging PE counts (steady state does
#: not depend on it).
_OUT_LATENCY = 6


@dataclass(frozen=True)
class SparseChoice:
    """The user's choice for a sparse layer (``--sparse LAYER=N[,D]``): PEs, activation queue
    depth, and the relative index width (None: the one that stores the fewest bits)."""

    pe: int
    queue_depth: int = QUEUE_DEPTH
    index_bits: int | None = None


def _is_conv(layer):
    return layer.op is Op.CONV2D


def _matrix(layer):
    """The (M, K) matrix the engine stores: a convolution's weight in patch order."""
    return patch_weights(layer.weight) if _is_conv(layer) else layer.weight


def _out_features(layer):
    return layer.out_channels if _is_conv(layer) else layer.out_features


def _patch_beat(layer, prev_beat):
    """The window's patch beat for a convolution (see the module)."""
    c = layer.in_shape[0]

    def fits(n):
        word = n if c % n == 0 else c
        return prev_beat is None or prev_beat % word == 0 or word % prev_beat == 0

    return max((n for n in conv_simds(c, layer.kernel) if n <= 8 and fits(n)), default=1)


def conv_params(layer, pe, n_out, queue_depth=QUEUE_DEPTH, index_bits=4):
    """The :class:`SparseConvParams` of the convolution ``layer`` on ``pe`` PEs."""
    return SparseConvParams.for_layer(
        weight=layer.weight, in_shape=layer.in_shape, pe=pe, queue_depth=queue_depth,
        n_out=n_out, in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype,
        index_bits=index_bits, stride=layer.stride, dilation=layer.dilation,
        padding=layer.padding, pad_value=layer.pad_value, bias=layer.bias,
        **stage_kwargs(layer))


def sparse_cycles(layer, pe, in_beat, queue_depth=QUEUE_DEPTH, index_bits=None):
    """Steady-state cycles per inference with every activation non-zero (a convolution's
    ``in_beat`` is its patch beat); ``index_bits`` None: the width :meth:`SparseAdapter.configure`
    picks for ``pe`` (the one storing the fewest bits), whose padding entries cost cycles."""
    if index_bits is None:
        index_bits = choose_index_bits(_matrix(layer), pe, codebook=layer.codebook).index_bits
    if _is_conv(layer):
        counts = encode(_matrix(layer), pe, index_bits=index_bits,
                        codebook=layer.codebook).column_counts()
        return conv_params(layer, pe, in_beat, queue_depth, index_bits).expected_cycles(counts)
    counts = encode(layer.weight, pe, index_bits=index_bits,
                    codebook=layer.codebook).column_counts()
    active = np.ones((2, layer.in_features), dtype=bool)
    return sparse_ref.cycle_model(counts, active, in_beat=in_beat, queue_depth=queue_depth,
                                  rows_per_pe=cdiv(layer.out_features, pe),
                                  out_latency=_OUT_LATENCY).cycles_per_inference


def _candidates(layer):
    """PE counts to try: powers of two and M; for a convolution, the divisors of M."""
    m = _out_features(layer)
    if _is_conv(layer):
        return divisors(m)
    return sorted({1 << i for i in range(m.bit_length()) if 1 << i <= m} | {m})


def pe_steps(layer, in_beat, upto):
    """The PE candidates up to ``upto``: ``(pe, cycles, realised)``, ``realised`` being the
    fraction of the ideal speedup the step from the previous candidate achieves (None for the
    first)."""
    steps = []
    for pe in (pe for pe in _candidates(layer) if pe <= upto):
        cycles = sparse_cycles(layer, pe, in_beat)
        realised = None
        if steps:
            prev_pe, prev_cycles, _ = steps[-1]
            realised = (prev_cycles / cycles - 1) / (pe / prev_pe - 1)
        steps.append((pe, cycles, realised))
    return steps


def _sparse_beat(k):
    return 1 << (min(k, 8).bit_length() - 1)


#: The sparsest input a narrower output stage keeps up with: a fraction of non-zero activations,
#: the same as SPEC 2.3's threshold for sparse weights (at 35 % non-zero the PEs take about a
#: third of the dense time, and the read-out must not become the bound).
READOUT_DENSITY = 0.35


def narrowest_stage(params, counts):
    """``params`` with the fewest output-stage lanes (:attr:`SparseParams.out_lanes`, a divisor
    of its PEs) that leave the layer's cycles per inference (matrix ``counts``) as they are with
    one lane per PE, both with every activation non-zero and with :data:`READOUT_DENSITY` of
    them (spread evenly over the columns): the read-out, a row every ``pe / out_lanes``
    cycles, stays within the time the PEs take for such a vector. Fewer lanes, fewer
    requantising multipliers and parameter tables."""
    k = params.in_features
    spread = np.diff(np.floor(np.arange(k + 1) * READOUT_DENSITY)) > 0
    inputs = [np.ones((2, k), dtype=bool), np.tile(spread, (2, 1))]

    def cycles(p):
        return [p.cycle_report(counts, active).cycles_per_inference for active in inputs]

    full = cycles(params)
    for lanes in divisors(params.pe)[:-1]:
        narrow = replace(params, out_lanes=lanes)
        if all(c <= f for c, f in zip(cycles(narrow), full, strict=True)):
            return narrow
    return params


def encoded_matrix(lp):
    """The sparse encoding of ``lp``'s weights with its Params' PEs and index width."""
    p = getattr(lp.params, "sparse", lp.params)
    return encode(_matrix(lp.layer), p.pe, index_bits=p.index_bits, codebook=lp.layer.codebook)


class SparseAdapter(EngineAdapter):
    engine = Engine.SPARSE
    option, flag = "sparse", "--sparse"

    def accepts(self, layer):
        if (is_matrix_layer(layer) or _is_conv(layer)) and is_bipolar(layer):
            return False, ("a bipolar layer cannot run on the sparse engine (only mvu has "
                           "XNOR-popcount lanes)")
        if _is_conv(layer):
            if layer.groups != 1:
                return False, (f"the sparse engine runs conv2d with groups = 1; groups = "
                               f"{layer.groups} (grouped or depthwise) runs on the vvau")
            return True, ""
        return super().accepts(layer)

    def claims(self, layer, batch):
        if layer.density <= SPARSE_DENSITY:
            return f"density {layer.density:.2f} <= {SPARSE_DENSITY}"
        return None

    def check_choice(self, lp, choice):
        name, m = lp.layer.name, _out_features(lp.layer)
        if not 1 <= choice.pe <= m:
            raise UsageError(f"layer {name!r}: --sparse {choice.pe}: the PEs must be between 1 "
                             f"and the layer's {m} outputs")
        if _is_conv(lp.layer) and m % choice.pe:
            raise UsageError(f"layer {name!r}: --sparse {choice.pe}: a convolution needs PEs "
                             f"dividing its {m} output channels (an output pixel fills whole "
                             "beats)")
        if choice.queue_depth < 1:
            raise UsageError(f"layer {name!r}: --sparse queue depth must be positive, not "
                             f"{choice.queue_depth}")

    def _choose(self, layer, share, target, in_beat):
        m = _out_features(layer)
        if target is not None:
            steps = pe_steps(layer, in_beat, m)
            meets = [(pe, c) for pe, c, _ in steps if c <= target]
            if meets:
                return SparseChoice(meets[0][0]), True, meets[0][1]
        steps = pe_steps(layer, in_beat, m if target is not None else max(share, 1))
        pe, cycles, _ = steps[0]
        for step_pe, step_cycles, realised in steps[1:]:
            if realised < MIN_PE_GAIN:
                break
            pe, cycles = step_pe, step_cycles
        return SparseChoice(pe), target is None, cycles

    def configure(self, lp, *, share, prev_beat, options):
        layer = lp.layer
        warn = []
        conv = _is_conv(layer)
        if conv:
            in_beat = _patch_beat(layer, prev_beat)
        else:
            k = layer.in_features
            in_beat = prev_beat if prev_beat is not None else _sparse_beat(k)
        choice = options.forced(self.option, layer.name)
        if choice is None:
            choice, ok, cycles = self._choose(
                layer, share, options.target_cycles, in_beat if conv else _sparse_beat(k))
            if not ok:
                warn.append(f"--target-cycles {options.target_cycles} not met: no PE count "
                            f"does; {choice.pe} PEs (more gain less than {MIN_PE_GAIN:g} of "
                            f"their ideal speedup) need {cycles:g} cycles")
        else:
            matrix = _matrix(layer)
            per = int(np.count_nonzero(matrix)) / (choice.pe * matrix.shape[1])
            if per < 1:
                warn.append(f"{per:.2f} non-zero weights per PE per input column (< 1): PEs "
                            f"idle part of every column; fewer PEs would cost little")
        index_bits = choice.index_bits or choose_index_bits(
            _matrix(layer), choice.pe, codebook=layer.codebook).index_bits
        if conv:
            params = conv_params(layer, choice.pe, in_beat, choice.queue_depth, index_bits)
            lp = lp.but(params=params, fold=Fold(choice.pe, params.in_beat),
                        warnings=lp.warnings + tuple(warn))
            return lp, choice.pe
        params = narrowest_stage(SparseParams.for_layer(
            weight=layer.weight, bias=layer.bias, pe=choice.pe, queue_depth=choice.queue_depth,
            in_beat=in_beat, in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype,
            index_bits=index_bits, **stage_kwargs(layer)), encode(
                layer.weight, choice.pe, index_bits=index_bits,
                codebook=layer.codebook).column_counts())
        lp = lp.but(params=params, fold=Fold(choice.pe, in_beat),
                    warnings=lp.warnings + tuple(warn))
        return lp, choice.pe

    def model_acc(self, lp, x):
        layer = lp.layer
        bias = 0 if layer.bias is None else np.asarray(layer.bias).astype(object)
        weight = decode(encoded_matrix(lp))
        if isinstance(lp.params, SparseConvParams):
            win = lp.params.window
            patches = np.stack([patch_stream(from_hwc(v, *layer.in_shape), win)
                                for v in np.asarray(x)]).reshape(-1, win.patch_elems)
            return (sparse_ref.raw_sums(weight, patches) + bias).reshape(len(x), -1)
        return sparse_ref.raw_sums(weight, x) + bias

    def resources(self, lp):
        from ..resources import gearbox_bill, sparse_bill, stage_bill, stream_bill, window_bill

        p = lp.params
        sp = getattr(p, "sparse", p)
        bill = sparse_bill(sp, encoded_matrix(lp), sparse_ref.IN_FLIGHT).plus(
            stage_bill(sp.stage)).plus(stream_bill(0, sp.pe * sp.output.out_shape.width))
        if sp.out_lanes < sp.pe:   # the gearboxes around a narrower stage
            bill = bill.plus(gearbox_bill(sp.raw_shape.width, sp.pe, sp.out_lanes)).plus(
                gearbox_bill(sp.output.out_shape.width, sp.out_lanes, sp.pe))
        return bill.plus(window_bill(p.window)) if _is_conv(lp.layer) else bill

    def build(self, lp):
        if isinstance(lp.params, SparseConvParams):
            return SparseConv(lp.params, weight=lp.layer.weight, codebook=lp.layer.codebook)
        return SparseEngine(lp.params, weight=lp.layer.weight, codebook=lp.layer.codebook)

    def manifest(self, lp):
        cp, matrix = lp.params, encoded_matrix(lp)
        conv = isinstance(cp, SparseConvParams)
        p = cp.sparse if conv else cp
        nonzeros, counts = int(matrix.nonzeros), matrix.column_counts()
        skipped = "zero activations and zero padding are" if conv else "zero activations are"
        entry = {
            "lanes": p.lanes, "pe": p.pe, "out_lanes": p.out_lanes, "queue_depth": p.queue_depth,
            "index_bits": p.index_bits, "in_beat": cp.in_beat, "out_beat": p.pe,
            "acc_width": p.acc_width, "nonzeros": nonzeros,
            "nonzeros_per_pe_per_column": round(nonzeros / (p.pe * p.in_features), 4),
            "bits_per_nonzero": round(float(matrix.bits_per_nonzero), 3),
            "stored_bits": int(matrix.storage_bits),
            "codebook": lp.layer.codebook is not None,
            "expected_cycles": number(cp.expected_cycles(counts)),
            "expected_cycles_assumes": f"dense activations (every activation non-zero); "
                                       f"{skipped} skipped, so real inputs only run faster",
            "dense_cycles": cp.dense_cycles,
            "pe_rule": f"{'PEs dividing M; ' if conv else ''}more PEs only while a step "
                       f"realises >= {MIN_PE_GAIN:g} of its ideal speedup (and fits the lane "
                       "budget)",
            "pe_steps": [{"pe": pe, "expected_cycles": number(c),
                          "realised": None if r is None else round(r, 3)}
                         for pe, c, r in pe_steps(
                             lp.layer, p.in_beat if conv else _sparse_beat(p.in_features),
                             min(2 * p.pe, p.out_features))],
        }
        if conv:
            entry.update(cp.summary(), nonzero_macs=nonzeros * cp.pixels,
                         expected_cycles_per_patch=number(cp.patch_cycles(counts)))
        return entry

    def dump(self, lp):
        p = getattr(lp.params, "sparse", lp.params)
        return {"sparse_pe": p.pe, "queue_depth": p.queue_depth}
