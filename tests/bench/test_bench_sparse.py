"""nnaccel/bench/sparse.py on small layers: files, fields, targets, and model against Verilator."""

import json

import numpy as np
import pytest

from nnaccel.bench.sparse import TARGETS, make_layer, run_sparse_bench


def test_layer_is_pruned_and_shared():
    weight, codebook, bias, mult, shift = make_layer(128, density=0.1)
    assert weight.shape == (128, 128) and bias.shape == (128,)
    assert np.count_nonzero(weight) == pytest.approx(0.1 * weight.size, rel=0.01)
    assert codebook[0] == 0 and len(codebook) == 16 and len(set(codebook.tolist())) == 16
    assert set(np.unique(weight).tolist()) <= set(codebook.tolist())
    assert np.abs(weight).max() <= 127
    # pruned by magnitude: every kept weight is at least as large as every pruned one
    assert np.abs(weight[weight != 0]).min() >= np.abs(weight[weight == 0]).max()


def test_model_only_bench_writes_results(tmp_path):
    lines = []
    rows = run_sparse_bench(tmp_path, synthesis=False, verilator=False, size=64, pes=(4, 8),
                            depths=(1, 8), log=lines.append)
    assert len(rows) == 2 * 2 * 2
    assert {r["cycles_source"] for r in rows} == {"model"}
    for r in rows:
        assert r["model_error"] == 0
        assert 0 < r["efficiency"] <= 1 and 0 < r["entries_per_pe_cycle"] <= 1
        assert r["speedup"] == pytest.approx(r["dense_cycles"] / r["cycles_per_inference"])
    summary = json.loads((tmp_path / "sparse.json").read_text())
    assert summary["rows"] == rows and len(summary["busy_columns"]) == 2
    assert set(summary["targets"]) and all(
        set(c) == {"target", "value", "where", "met"} for c in summary["targets"].values())
    assert min(r["entries_per_pe_cycle"] for r in summary["busy_columns"]) >= \
        TARGETS["busy_entries_per_pe_cycle"]
    text = (tmp_path / "sparse.md").read_text()
    assert "| 8 | 8 | 35% |" in text and "## Targets" in text
    assert (tmp_path / "sparse.png").stat().st_size > 1000
    # sparse activations are faster than dense ones
    for n in (4, 8):
        dense, sparse = (next(r for r in rows if r["n_pe"] == n and r["queue_depth"] == 8
                              and r["activations"] == a) for a in ("dense", "35%"))
        assert sparse["speedup"] > 2 * dense["speedup"]


@pytest.mark.verilator
def test_verilator_matches_model(tmp_path):
    rows = run_sparse_bench(tmp_path, synthesis=False, size=32, pes=(4,), depths=(2,),
                            log=lambda line: None)
    assert {r["cycles_source"] for r in rows} == {"verilator"}
    for r in rows:
        assert r["outputs_checked"] == 4 * 32
        assert r["model_error"] <= 0.05
        assert r["model_error"] == 0  # exact when the output never stalls


def test_pe_memories_are_block_ram(tmp_path):
    """One PE synthesised alone: pointers, entries, queue and both accumulator banks are block
    RAM; only the queue's three flags are distributed RAM (one 16 x 4 cell: the queue holds 15
    slots); its LUT4 count is nextpnr's (logic + 2 per carry cell + 6 per distributed-RAM
    cell)."""
    from nnaccel.bench.sparse import SparseBenchConfig, pe_resources

    weight, codebook, bias, mult, shift = make_layer(64, density=0.1)
    cfg = SparseBenchConfig(weight, codebook, bias, mult, shift, 4, 8)
    res = pe_resources(cfg.params, cfg.matrix, tmp_path)
    cells = res["cells"]
    assert cells["DP16KD"] == 4 and cells.get("TRELLIS_DPR16X4") == 1
    # 307 measured before issue 16's pipelining for Fmax, 356 after its first commit, 332 with
    # the flags' queue
    assert res["lut4"] == cells["LUT4"] + 2 * cells["CCU2C"] + 6 * cells["TRELLIS_DPR16X4"] <= 400
