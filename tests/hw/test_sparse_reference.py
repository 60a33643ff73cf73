"""hw/sparse/reference.py: the broadcast order, the bounds and the cycle model on small cases."""

import numpy as np
import pytest

from nnaccel.hw.sparse.reference import (
    ISSUE_TO_DONE,
    LOOKUP,
    TAKE,
    broadcast_tokens,
    cycle_model,
    performed_macs,
    raw_bounds,
    raw_sums,
)


def test_broadcast_tokens():
    active = np.array([0, 1, 1, 0, 0, 0, 0, 1, 0, 0], dtype=bool)
    beats = broadcast_tokens(active, 4)
    assert beats[0] == [(1, True, False), (2, True, False)]
    assert beats[1] == [(7, True, False)]
    assert beats[2] == [(-1, False, True)]  # the last beat has no non-zero: an end token
    assert broadcast_tokens(np.ones(3, dtype=bool), 2) == [[(0, True, False),
                                                            (1, True, False)],
                                                           [(2, True, True)]]


def test_raw_bounds_and_sums():
    w = np.array([[1, -2, 0], [3, 0, 0]])
    assert raw_bounds(w, 0, 15) == (-30, 45)
    assert raw_bounds(w, -1, 1) == (-3, 3)
    assert raw_bounds(np.zeros((2, 2), dtype=int), -8, 7) == (0, 0)
    assert raw_sums(w, np.array([[1, 2, 3]])).tolist() == [[-3, 3]]


def test_single_pe_timeline():
    # One PE, one column per beat, every column 3 entries, D = 1, 2 rows, output latency 4.
    counts = np.full((1, 4), 3)
    rep = cycle_model(counts, np.ones((1, 4), dtype=bool), in_beat=1, queue_depth=1,
                      rows_per_pe=2, out_latency=4)
    # beat j accepted at j, taken from the input register at 1 + j, its token in the token
    # register at 2 + j, broadcast at 3 + j while the PE holds fewer than D + 5 = 6; written
    # into the queue at 6 + j, popped at 9, 12, 15, 18; the last entry leaves at 20; the
    # collector may read from 20 + 9; read-out at 29, 30; last output beat at 30 + 4.
    assert (TAKE, LOOKUP, ISSUE_TO_DONE) == (1, 3, 9)
    assert rep.vector_end.tolist() == [20 + ISSUE_TO_DONE + 1 + 4]
    assert rep.busy.tolist() == [12] and rep.entries.tolist() == [12]
    assert rep.compute_cycles == 18 and rep.efficiency == pytest.approx(12 / 18)


def test_banks_overlap_read_out_with_compute():
    counts = np.full((2, 6), 4)
    active = np.ones((5, 6), dtype=bool)
    rep = cycle_model(counts, active, in_beat=6, queue_depth=4, rows_per_pe=3, out_latency=3)
    # steady state: 24 iterator cycles per vector, the read-out (3 rows) is hidden
    assert rep.cycles_per_inference == 24
    assert np.all(np.diff(rep.vector_end) == 24)
    many_rows = cycle_model(counts, active, in_beat=6, queue_depth=4, rows_per_pe=40,
                            out_latency=3)
    assert many_rows.cycles_per_inference == 40  # now the read-out is the bottleneck


def test_zero_activations_are_skipped():
    counts = np.full((2, 8), 5)
    dense = cycle_model(counts, np.ones((2, 8), dtype=bool), in_beat=8, queue_depth=2,
                        rows_per_pe=1, out_latency=2)
    sparse_x = np.zeros((2, 8), dtype=bool)
    sparse_x[:, [1, 6]] = True
    sparse = cycle_model(counts, sparse_x, in_beat=8, queue_depth=2, rows_per_pe=1,
                         out_latency=2)
    assert dense.cycles_per_inference == 40
    assert sparse.cycles_per_inference == 10
    none = cycle_model(counts, np.zeros((2, 8), dtype=bool), in_beat=4, queue_depth=2,
                       rows_per_pe=1, out_latency=2)
    assert none.entries.sum() == 0 and none.busy.tolist() == [2, 2]  # one end token each


def test_deeper_queues_balance_better():
    rng = np.random.default_rng(1)
    counts = rng.poisson(3, size=(8, 200))
    active = np.ones((2, 200), dtype=bool)
    effs = [cycle_model(counts, active, in_beat=8, queue_depth=d, rows_per_pe=4,
                        out_latency=3).efficiency for d in (1, 2, 4, 8, 16)]
    assert all(a <= b + 1e-9 for a, b in zip(effs, effs[1:], strict=False))
    # (every PE also holds IN_FLIGHT tokens beyond its queue, so depth 1 is already 0.92)
    assert effs[-1] - effs[0] > 0.01 and effs[-1] > 0.9


def test_unbalanced_pe_bounds_efficiency():
    counts = np.zeros((4, 10), dtype=np.int64)
    counts[0] = 8  # all the work in PE 0
    rep = cycle_model(counts, np.ones((1, 10), dtype=bool), in_beat=10, queue_depth=8,
                      rows_per_pe=1, out_latency=2)
    assert rep.busy.tolist() == [80, 1, 1, 1]
    assert rep.efficiency == pytest.approx(83 / (4 * rep.compute_cycles))
    assert rep.efficiency < 0.27


def test_model_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="columns"):
        cycle_model(np.ones((2, 3)), np.ones((1, 4), dtype=bool), in_beat=1, queue_depth=1,
                    rows_per_pe=1, out_latency=1)


def test_performed_macs_counts_nonzero_weight_times_nonzero_activation():
    rng = np.random.default_rng(3)
    w = rng.integers(-2, 3, size=(7, 11)) * (rng.random((7, 11)) < 0.3)
    x = rng.integers(0, 3, size=(5, 11))
    by_hand = sum(1 for b in range(5) for m in range(7) for k in range(11)
                  if w[m, k] != 0 and x[b, k] != 0) / 5
    assert performed_macs(w, x) == by_hand
