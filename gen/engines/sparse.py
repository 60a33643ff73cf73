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
"""

from dataclasses import dataclass

import numpy as np

from ...hw.common.arith import cdiv
from ...hw.sparse import reference as sparse_ref
from ...hw.sparse.engine import SparseEngine
from ...hw.sparse.format import choose_index_bits, decode, encode
from ...hw.sparse.params import SparseParams
from ..errors import UsageError
from ..folding import Fold
from .base import Engine, EngineAdapter, is_bipolar, is_matrix_layer, number, stage_kwargs

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


def sparse_cycles(layer, pe, in_beat, queue_depth=QUEUE_DEPTH, index_bits=4):
    """Steady-state cycles per inference with every activation non-zero."""
    counts = encode(layer.weight, pe, index_bits=index_bits,
                    codebook=layer.codebook).column_counts()
    active = np.ones((2, layer.in_features), dtype=bool)
    return sparse_ref.cycle_model(counts, active, in_beat=in_beat, queue_depth=queue_depth,
                                  rows_per_pe=cdiv(layer.out_features, pe),
                                  out_latency=_OUT_LATENCY).cycles_per_inference


def _candidates(m):
    return sorted({1 << i for i in range(m.bit_length()) if 1 << i <= m} | {m})


def pe_steps(layer, in_beat, upto):
    """The PE candidates up to ``upto``: ``(pe, cycles, realised)``, ``realised`` being the
    fraction of the ideal speedup the step from the previous candidate achieves (None for the
    first)."""
    steps = []
    for pe in (pe for pe in _candidates(layer.out_features) if pe <= upto):
        cycles = sparse_cycles(layer, pe, in_beat)
        realised = None
        if steps:
            prev_pe, prev_cycles, _ = steps[-1]
            realised = (prev_cycles / cycles - 1) / (pe / prev_pe - 1)
        steps.append((pe, cycles, realised))
    return steps


def _sparse_beat(k):
    return 1 << (min(k, 8).bit_length() - 1)


def encoded_matrix(lp):
    """The sparse encoding of ``lp``'s weights with its Params' PEs and index width."""
    p = lp.params
    return encode(lp.layer.weight, p.pe, index_bits=p.index_bits, codebook=lp.layer.codebook)


class SparseAdapter(EngineAdapter):
    engine = Engine.SPARSE
    option, flag = "sparse", "--sparse"

    def accepts(self, layer):
        if is_matrix_layer(layer) and is_bipolar(layer):
            return False, ("a bipolar layer cannot run on the sparse engine (only mvu has "
                           "XNOR-popcount lanes)")
        return super().accepts(layer)

    def claims(self, layer, batch):
        if layer.density <= SPARSE_DENSITY:
            return f"density {layer.density:.2f} <= {SPARSE_DENSITY}"
        return None

    def check_choice(self, lp, choice):
        name, m = lp.layer.name, lp.layer.out_features
        if not 1 <= choice.pe <= m:
            raise UsageError(f"layer {name!r}: --sparse {choice.pe}: the PEs must be between 1 "
                             f"and the layer's {m} outputs")
        if choice.queue_depth < 1:
            raise UsageError(f"layer {name!r}: --sparse queue depth must be positive, not "
                             f"{choice.queue_depth}")

    def _choose(self, layer, share, target):
        in_beat = _sparse_beat(layer.in_features)
        if target is not None:
            steps = pe_steps(layer, in_beat, layer.out_features)
            meets = [(pe, c) for pe, c, _ in steps if c <= target]
            if meets:
                return SparseChoice(meets[0][0]), True, meets[0][1]
        steps = pe_steps(layer, in_beat,
                         layer.out_features if target is not None else max(share, 1))
        pe, cycles, _ = steps[0]
        for step_pe, step_cycles, realised in steps[1:]:
            if realised < MIN_PE_GAIN:
                break
            pe, cycles = step_pe, step_cycles
        return SparseChoice(pe), target is None, cycles

    def configure(self, lp, *, share, prev_beat, options):
        layer = lp.layer
        warn = []
        choice = options.forced(self.option, layer.name)
        if choice is None:
            choice, ok, cycles = self._choose(layer, share, options.target_cycles)
            if not ok:
                warn.append(f"--target-cycles {options.target_cycles} not met: no PE count "
                            f"does; {choice.pe} PEs (more gain less than {MIN_PE_GAIN:g} of "
                            f"their ideal speedup) need {cycles:g} cycles")
        else:
            per = int(np.count_nonzero(layer.weight)) / (choice.pe * layer.in_features)
            if per < 1:
                warn.append(f"{per:.2f} non-zero weights per PE per input column (< 1): PEs "
                            f"idle part of every column; fewer PEs would cost little")
        k = layer.in_features
        in_beat = prev_beat if prev_beat is not None else _sparse_beat(k)
        index_bits = choice.index_bits or choose_index_bits(
            layer.weight, choice.pe, codebook=layer.codebook).index_bits
        params = SparseParams.for_layer(
            weight=layer.weight, bias=layer.bias, pe=choice.pe, queue_depth=choice.queue_depth,
            in_beat=in_beat, in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype,
            index_bits=index_bits, **stage_kwargs(layer))
        lp = lp.but(params=params, fold=Fold(choice.pe, in_beat),
                    warnings=lp.warnings + tuple(warn))
        return lp, choice.pe

    def model_acc(self, lp, x):
        bias = 0 if lp.layer.bias is None else np.asarray(lp.layer.bias).astype(object)
        return sparse_ref.raw_sums(decode(encoded_matrix(lp)), x) + bias

    def build(self, lp):
        return SparseEngine(lp.params, weight=lp.layer.weight, codebook=lp.layer.codebook)

    def manifest(self, lp):
        p, matrix = lp.params, encoded_matrix(lp)
        nonzeros = int(matrix.nonzeros)
        return {
            "lanes": p.lanes, "pe": p.pe, "queue_depth": p.queue_depth,
            "index_bits": p.index_bits, "in_beat": p.in_beat, "out_beat": p.pe,
            "acc_width": p.acc_width, "nonzeros": nonzeros,
            "nonzeros_per_pe_per_column": round(nonzeros / (p.pe * p.in_features), 4),
            "bits_per_nonzero": round(float(matrix.bits_per_nonzero), 3),
            "stored_bits": int(matrix.storage_bits),
            "codebook": lp.layer.codebook is not None,
            "expected_cycles": number(p.expected_cycles(matrix.column_counts())),
            "expected_cycles_assumes": "dense activations (every activation non-zero); zero "
                                       "activations are skipped, so real inputs only run faster",
            "dense_cycles": p.dense_cycles,
            "pe_rule": f"more PEs only while a step realises >= {MIN_PE_GAIN:g} of its ideal "
                       f"speedup (and fits the lane budget)",
            "pe_steps": [{"pe": pe, "expected_cycles": number(c),
                          "realised": None if r is None else round(r, 3)}
                         for pe, c, r in pe_steps(lp.layer, _sparse_beat(p.in_features),
                                                  min(2 * p.pe, p.out_features))],
        }

    def dump(self, lp):
        return {"sparse_pe": lp.params.pe, "queue_depth": lp.params.queue_depth}
