"""nnaccel/demo.py end to end on a few vectors, without synthesis (the slow tier builds boards)."""

import json

import numpy as np
import pytest

from nnaccel.demo import DEMO_DESIGNS, DemoDesign, run_demo


@pytest.mark.verilator
def test_demo_reports_hardware_equal_to_numpy(tmp_path):
    designs = (DEMO_DESIGNS[0], DemoDesign("digits_bnn", 48, "binarized MLP, small lane budget"),
               DemoDesign("digits_sparse", 24, "pruned and shared MLP, small lane budget"))
    lines = []
    assert run_demo(tmp_path, vectors=40, synthesis=False, designs=designs,
                    log=lines.append) == 0
    rows = json.loads((tmp_path / "summary.json").read_text())
    assert [r["model"] for r in rows] == ["digits_int8", "digits_bnn", "digits_sparse"]
    for row in rows:
        assert row["vectors"] == 40 and row["outputs_equal"]
        assert row["hardware_accuracy"] == row["numpy_accuracy"]
        assert row["lanes"] <= {"digits_int8": 16, "digits_bnn": 48,
                                "digits_sparse": 24}[row["model"]]
        assert row["ideal_cycles"] <= row["expected_cycles"]
        assert 0 < row["utilisation"] <= 1
        assert (tmp_path / row["model"] / "manifest.json").is_file()
        engines = {layer["engine"] for layer in row["manifest"]["layers"]}
        if row["model"] == "digits_sparse":
            # Zero activations are skipped: never slower than the dense-activation model.
            assert engines == {"sparse"}
            assert row["cycles_per_inference"] <= row["expected_cycles"] * 1.05
        else:
            assert engines == {"mvu"}
            assert abs(row["cycles_per_inference"] / row["expected_cycles"] - 1) <= 0.05
    # The trained models are re-read from disk by the numpy reference: both agree.
    from nnaccel.gen.model_io import read_model
    model = read_model(tmp_path / "models" / "digits_int8")
    assert model.layers[0].weight.shape == (32, 64)
    assert (tmp_path / "cycles.png").stat().st_size > 0
    assert "| digits_bnn |" in (tmp_path / "summary.md").read_text()
    assert any("3/4 digits_bnn" in line for line in lines)
    assert np.isfinite(rows[0]["float_accuracy"])
