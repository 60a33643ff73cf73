"""The systolic benchmark: SCALE-Sim's closed forms, the cycle model on the issue's GEMMs, and a
tiny run of the whole bench (Verilator)."""

import json

import pytest

from nnaccel.bench.systolic import (
    ARRAYS,
    BACK_TO_BACK,
    BOUND_MARGIN,
    GEMMS,
    SCALESIM_TABLE,
    SystolicBenchConfig,
    cycle_row,
    double_buffered_bound,
    run_systolic_bench,
    scalesim_cycles,
)


def test_closed_forms_reproduce_the_issue_table():
    for (rows, cols, dataflow, m, k, n), cycles in SCALESIM_TABLE.items():
        assert scalesim_cycles(dataflow, rows, cols, m, k, n) == cycles
    assert scalesim_cycles("ws", 8, 8, 64, 64, 64) == 5503
    assert scalesim_cycles("os", 8, 8, 64, 64, 64) == 4991
    assert scalesim_cycles("ws", 16, 16, 256, 784, 256) == 236767
    assert scalesim_cycles("os", 16, 16, 256, 784, 256) == 208383
    with pytest.raises(ValueError, match="dataflow"):
        scalesim_cycles("rs", 8, 8, 1, 1, 1)


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a[0]}x{a[1]}")
def test_model_meets_the_targets(array):
    for gemm in GEMMS:
        for dataflow in ("ws", "os"):
            cfg = SystolicBenchConfig(*array, dataflow, *gemm)
            row = cycle_row(cfg, None)
            assert row["cycles"] < row["scalesim_best"], row
            if gemm == (256, 784, 256):
                assert row["utilisation"] >= 0.95


def test_double_buffered_bound():
    # weight-stationary: 8x8 tiles each stream the 64 vectors; 16 rows > 1 vector: 16 a tile
    assert double_buffered_bound("ws", 8, 8, 64, 64, 64, 8) == 8 * 8 * 64
    assert double_buffered_bound("ws", 16, 16, 1, 784, 256, 16) == 16 * 49 * 16
    # output-stationary: ceil(5/2) tiles of 2 vectors x 2 output tiles, 7 steps each
    assert double_buffered_bound("os", 2, 3, 5, 7, 4, 2) == 3 * 2 * 7
    # one input beat per cycle binds: 9 vectors of ceil(100/1) beats
    assert double_buffered_bound("os", 4, 4, 9, 100, 4, 1) == 900
    # one output beat per cycle binds: M = 1, N = 64 outputs on 1 column
    assert double_buffered_bound("ws", 1, 1, 3, 1, 64, 1) == 3 * 64
    with pytest.raises(ValueError, match="dataflow"):
        double_buffered_bound("rs", 8, 8, 1, 1, 1, 1)


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a[0]}x{a[1]}")
def test_model_back_to_back_within_the_bound(array):
    """Issue 16 part 6: GEMMs back to back come within 2% of the double-buffered bound."""
    for gemm in GEMMS:
        for dataflow in ("ws", "os"):
            row = cycle_row(SystolicBenchConfig(*array, dataflow, *gemm), None)
            assert row["bound_cycles"] <= row["steady_cycles"], row
            assert row["steady_vs_bound"] <= 1 + BOUND_MARGIN, row


def test_model_only_run_writes_the_results(tmp_path):
    rows = run_systolic_bench(tmp_path, synthesis=False, verilator=False, arrays=((2, 2),),
                              gemms=((3, 5, 4), (8, 8, 8)), log=lambda line: None)
    assert len(rows) == 4 and all(r["cycles_source"] == "model" for r in rows)
    summary = json.loads((tmp_path / "systolic.json").read_text())
    assert summary["rows"] == rows
    assert "SCALE-Sim" in (tmp_path / "systolic.md").read_text()
    assert (tmp_path / "systolic.png").stat().st_size > 0


@pytest.mark.verilator
def test_tiny_verilator_run(tmp_path):
    lines = []
    rows = run_systolic_bench(tmp_path, synthesis=False, arrays=((2, 2),), gemms=((3, 5, 4),),
                              log=lines.append)
    assert [r["dataflow"] for r in rows] == ["ws", "os"]
    for row in rows:
        assert row["cycles_source"] == "verilator"
        assert row["cycles"] == row["model_cycles"]
        assert row["steady_cycles"] == row["model_steady_cycles"]
        assert row["gemms_simulated"] == BACK_TO_BACK
        assert row["outputs_checked"] == BACK_TO_BACK * 3 * 4
        assert row["ideal_cycles"] == 3 * 5 * 4 / 4
    assert any("2x2 WS" in line for line in lines)
