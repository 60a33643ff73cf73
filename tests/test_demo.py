"""nnaccel/demo.py end to end on a few images, without synthesis (``make demo`` builds boards)."""

import json

import numpy as np
import pytest

from nnaccel.demo import DEMO_DESIGNS, FULL_DESIGNS, DemoDesign, run_demo
from nnaccel.gen.model_io import read_model
from nnaccel.gen.zoo.digits import load_split

VECTORS = 6


def test_demo_designs():
    """``make demo`` has the four digits designs, CNNs included; ``make demo-full`` adds the
    sparse one."""
    quick = [spec.model for spec in DEMO_DESIGNS]
    assert quick == ["digits_int8", "digits_bnn", "digits_cnn_int8", "digits_cnn_binarized"]
    assert [spec.model for spec in FULL_DESIGNS] == quick + ["digits_sparse"]


@pytest.mark.verilator
def test_demo_reports_hardware_equal_to_numpy(tmp_path):
    # the binarized CNN at 64 lanes, not make demo's 256: its Verilog is 0.7 MB instead of 1.9,
    # a Verilator build of minutes, not a quarter of an hour (the wide fold's bipolar chain is
    # tests/sim/test_cnn_verilator.py's digits_bipolar)
    budgets = {"digits_int8": 16, "digits_cnn_int8": 64, "digits_cnn_binarized": 64,
               "digits_sparse": 24}
    designs = tuple(DemoDesign(name, lanes, name) for name, lanes in budgets.items())
    lines = []
    assert run_demo(tmp_path, vectors=VECTORS, synthesis=False, designs=designs,
                    log=lines.append) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = summary["rows"]
    assert [r["model"] for r in rows] == list(budgets)
    _, x_test, _, y_test = load_split()
    for row in rows:
        name = row["model"]
        # Every hardware output, read back from disk, equals the numpy reference of the model
        # re-read from disk, computed here.
        model = read_model(tmp_path / "models" / name)
        x = x_test[:VECTORS].reshape(VECTORS, *model.input_shape)
        hw = np.load(tmp_path / "outputs" / f"{name}.npy")
        assert hw.shape == (VECTORS, 10)
        np.testing.assert_array_equal(hw, model.forward(x))
        assert row["vectors"] == VECTORS and row["numpy_vectors"] == len(y_test) == 450
        assert row["outputs_equal"] and row["outputs_equal_count"] == row["outputs_checked"]
        assert row["outputs_checked"] == VECTORS * 10
        assert row["hardware_accuracy"] == np.mean(hw.argmax(axis=1) == y_test[:VECTORS])
        assert row["numpy_accuracy"] == np.mean(model.forward(
            x_test.reshape(-1, *model.input_shape)).argmax(axis=1) == y_test)
        assert row["lanes"] <= budgets[name]
        assert row["ideal_cycles"] <= row["expected_cycles"]
        assert 0 < row["utilisation"] <= 1
        assert (tmp_path / name / "manifest.json").is_file()
        engines = {layer["engine"] for layer in row["manifest"]["layers"]}
        if name == "digits_sparse":
            # Zero activations are skipped: never slower than the dense-activation model.
            assert engines == {"sparse"}
            assert row["cycles_per_inference"] <= row["expected_cycles"] * 1.05
        else:
            assert engines == ({"mvu", "pool"} if name.startswith("digits_cnn") else {"mvu"})
            assert abs(row["cycles_per_inference"] / row["expected_cycles"] - 1) <= 0.05
    cnn = {r["model"]: r for r in rows}
    # issue 10: int8 within 1 point of float, binarized within 3 (numpy, whole test split)
    assert cnn["digits_cnn_int8"]["float_accuracy"] - cnn["digits_cnn_int8"][
        "numpy_accuracy"] <= 0.01
    assert cnn["digits_cnn_binarized"]["float_accuracy"] - cnn["digits_cnn_binarized"][
        "numpy_accuracy"] <= 0.03
    table = (tmp_path / "summary.md").read_text()
    for name in budgets:
        assert f"| {name} |" in table
    assert (tmp_path / "cycles.png").stat().st_size > 0
    assert any("3/4 digits_cnn_binarized" in line for line in lines)
