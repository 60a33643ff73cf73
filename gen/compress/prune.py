"""Magnitude pruning (Han et al., "Learning both Weights and Connections", NeurIPS 2015).

Each function returns a boolean mask of the weights kept; the pass zeroes the others. Ties
between equal magnitudes go to the weight that comes first in row-major order, so the result is
deterministic. ``candidates`` (a boolean mask) restricts the choice to weights not pruned yet.

Pruning may be iterative (``prune_steps`` rounds, each followed by retraining): round ``j`` of
``n`` prunes to density ``target ** (j / n)``, where ``target`` is the layer's final density,
the last round to ``target`` itself.
"""

import numpy as np

from .batchnorm import fold_bn

__all__ = ["keep_count", "prune_to_density", "prune_by_quality", "prune_balanced",
           "kept_per_pe", "target_density", "prune_pass"]


def keep_count(size, density):
    """Weights kept out of ``size`` at ``density``: ``round(density * size)``, halves up."""
    return int(np.floor(density * size + 0.5))


def _largest(weight, count, candidates=None):
    flat = np.abs(np.asarray(weight, dtype=np.float64)).ravel()
    if candidates is not None:
        flat = np.where(np.asarray(candidates, dtype=bool).ravel(), flat, -1.0)
    mask = np.zeros(flat.size, dtype=bool)
    mask[np.argsort(-flat, kind="stable")[:count]] = True
    return mask.reshape(np.shape(weight))


def prune_to_density(weight, density, candidates=None):
    """Keep exactly :func:`keep_count` ``(weight.size, density)`` weights, the largest
    magnitudes.

    Parameters
    ----------
    weight : (M, K) float array
    density : float in [0, 1]

    Returns
    -------
    (M, K) bool array
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must lie in [0, 1], not {density!r}")
    return _largest(weight, keep_count(np.size(weight), density), candidates)


def prune_by_quality(weight, quality):
    """Deep Compression's rule: keep the weights with ``|w| > quality * std(W)``."""
    if not quality >= 0.0:
        raise ValueError(f"quality must be at least 0, not {quality!r}")
    w = np.asarray(weight, dtype=np.float64)
    return np.abs(w) > quality * float(np.std(w))


def prune_balanced(weight, density, pe, candidates=None):
    """Prune so that each of ``pe`` PEs keeps the same number of weights (EIE's load balance).

    A convolution's weight ``(M, C/G, KH, KW)`` counts as its ``(M, C/G*KH*KW)`` matrix, so
    with ``pe = M`` every output channel keeps the same number of weights. ``pe`` above ``M`` is
    taken as ``M``. Rows are interleaved: row ``i`` belongs to PE ``i mod pe``. Each PE keeps its
    ``c = min(round(density * M * K / pe), k_min)`` largest magnitudes, where ``k_min`` is the
    size of the smallest PE's slice (``floor(M / pe) * K``), so that every PE can keep ``c``.

    Returns
    -------
    bool array of the weight's shape
    """
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must lie in [0, 1], not {density!r}")
    if isinstance(pe, bool) or not isinstance(pe, (int, np.integer)) or pe < 1:
        raise ValueError(f"pe must be a positive integer, not {pe!r}")
    w = np.asarray(weight, dtype=np.float64)
    m, k = w.shape[0], w[0].size
    pe = min(pe, m)
    count = min(keep_count(m * k, density / pe), (m // pe) * k)
    mask = np.zeros(w.shape, dtype=bool)
    for p in range(pe):
        mask[p::pe] = _largest(w[p::pe], count,
                               None if candidates is None else np.asarray(candidates)[p::pe])
    return mask


def kept_per_pe(mask, pe):
    """Weights kept by each PE (rows interleaved): an (pe,) int array."""
    mask = np.asarray(mask)
    return np.array([int(np.count_nonzero(mask[p::pe])) for p in range(pe)], dtype=np.int64)


def target_density(layer, rule):
    """The final density of a float layer under ``rule``, ``("fraction", f)`` (``1 - f``) or
    ``("quality", q)`` (the fraction of weights above ``q * std(W)``)."""
    kind, value = rule
    if kind == "quality":
        return float(np.mean(prune_by_quality(layer.weight, value)))
    return 1.0 - value


def prune_pass(state, config, samples, step=1):
    """Pipeline pass: round ``step`` of ``config.prune_steps`` of pruning every layer that has a
    ``prune`` or ``quality`` option.

    The target density comes from the input model's weights (batch-norm folded); this round
    keeps the largest magnitudes among the weights not yet pruned, balanced over PEs with
    :func:`prune_balanced` when ``config.pe > 1``. In one round, ``quality`` keeps exactly the
    weights with ``|w| > quality * std(W)``.
    """
    layers = []
    for layer, original in zip(state.float_model.layers, state.original.layers, strict=True):
        rule = None if layer.weight is None else config.prune_for(layer.name)
        if rule is None:
            layers.append(layer)
            continue
        density = target_density(fold_bn(original), rule) ** (step / config.prune_steps)
        if config.pe > 1:
            mask = prune_balanced(layer.weight, density, config.pe, layer.mask)
        else:
            mask = prune_to_density(layer.weight, density, layer.mask)
        layers.append(layer.but(weight=layer.weight * mask, mask=mask))
    return state.but(float_model=state.float_model.but(layers=layers))
