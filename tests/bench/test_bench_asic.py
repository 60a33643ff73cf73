"""``nnaccel bench --suite asic`` (nnaccel/bench/asic.py): the scaling rule and the published
figures by hand, and the table of one small design through the real flow (Verilator cycles,
yosys area, OpenSTA Fmax) with its MACs per second per mm^2 recomputed from the reports."""

import json
import shutil
from pathlib import Path

import pytest

from nnaccel.bench import asic as bench
from nnaccel.boards.asic import INSTALL_HINT, LIBRARIES
from nnaccel.gen.plan import Options
from nnaccel.gen.zoo.random_mlp import prime_int4_model


def test_scaling_rule():
    # area x (L'/L)^2 and Fmax x L/L': EIE from 45 nm to 180 nm
    assert bench.scale(40.8, 800.0, 45, 180) == pytest.approx((652.8, 200.0))
    assert bench.scale(1.0, 100.0, 180, 180) == (1.0, 100.0)


def test_reference_rows():
    eie, gemmini = bench._reference_rows(180)
    assert eie["macs_per_s"] == 64 * 800e6
    assert eie["macs_per_s_per_mm2"] == pytest.approx(64 * 800e6 / 40.8)
    assert eie["scaled_macs_per_s_per_mm2"] == pytest.approx(64 * 200e6 / (40.8 * 16))
    k = 180 / 7
    assert gemmini["scaled_area_mm2"] == pytest.approx(0.103705 * k * k)
    assert gemmini["scaled_macs_per_s_per_mm2"] == pytest.approx(
        256 * 631e6 / k / (0.103705 * k * k))


def _tiny(seed):
    """The 4-3-2 int4 MLP fully unfolded (18 multipliers, one inference per cycle)."""
    return prime_int4_model(seed, widths=(4, 3, 2), name="mlp432"), Options(max_lanes=18), 1


@pytest.mark.verilator
@pytest.mark.xdist_group("asic")
@pytest.mark.skipif(not (shutil.which("sta") and Path(LIBRARIES["osu018"][0]).is_file()),
                    reason=f"OpenSTA or the OSU cells missing: `{INSTALL_HINT}`")
def test_table_of_a_small_design(tmp_path):
    lines = []
    status = bench.run_asic_bench(tmp_path, designs=[("mlp432", "4-3-2 int4 MLP", _tiny)],
                                  log=lines.append)
    assert status == 0, lines
    summary = json.loads((tmp_path / "asic.json").read_text())
    (row,) = summary["designs"]
    report = json.loads((tmp_path / "mlp432-osu018" / "report.json").read_text())
    assert row["area_um2"] == report["area_um2"] > 0
    assert row["fmax_mhz"] == report["fmax_mhz"] > 0
    assert (row["macs"], row["cycles_per_inference"]) == (18, 1.0)
    assert row["macs_per_s_per_mm2"] == pytest.approx(
        18 * report["fmax_mhz"] * 1e6 / (report["area_um2"] / 1e6))
    table = (tmp_path / "asic.md").read_text()
    assert "| mlp432 (4-3-2 int4 MLP) | 18 | 1.0 |" in table
    assert "EIE" in table and "Gemmini" in table and "sfc_bnn: not built" in table
