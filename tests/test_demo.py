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


def _fake_demo(monkeypatch, build):
    """run_demo's orchestration alone: training, generation/simulation, the plot and the table
    replaced by instant fakes, board builds by ``build``."""
    import nnaccel.demo as demo
    import nnaccel.gen.zoo.digits as digits

    monkeypatch.setattr(digits, "train_all", lambda path, log: {})
    monkeypatch.setattr(demo, "_cnns", lambda path, names, log: {n: None for n in names})
    monkeypatch.setattr(demo, "_run_design",
                        lambda spec, res, outdir, count, log: (spec.model, {
                            "model": spec.model, "seconds": {}, "what": "", "float_accuracy": 0,
                            "numpy_accuracy": 0, "numpy_vectors": 0, "hardware_accuracy": 0,
                            "vectors": 0, "outputs_equal": True}))
    monkeypatch.setattr(demo, "_plot", lambda rows, path: None)
    monkeypatch.setattr(demo, "_table", lambda rows: "")
    monkeypatch.setattr(demo, "_build", build)
    return tuple(DemoDesign(f"digits_cnn_{k}", 8, k) for k in ("int8", "binarized"))


def test_demo_builds_run_beside_each_other(tmp_path, monkeypatch):
    """Board builds run in the background: the second design's build starts while the first's
    is still running, and run_demo waits for both before it writes the summary."""
    import threading

    started, release, finished = threading.Barrier(2, timeout=10), threading.Event(), []

    def build(design, board, outdir, row, log):
        started.wait()  # both builds must be running at once, or this times out
        release.wait(10)
        row["synthesis"] = {"fmax_mhz": 1.0}
        finished.append(design)

    designs = _fake_demo(monkeypatch, build)
    threading.Timer(0.2, release.set).start()
    assert run_demo(tmp_path / "out", designs=designs, log=lambda m: None) == 0
    assert sorted(finished) == sorted(d.model for d in designs)
    rows = json.loads((tmp_path / "out" / "summary.json").read_text())["rows"]
    assert [r["synthesis"] for r in rows] == [{"fmax_mhz": 1.0}] * 2


def test_demo_failed_build_raises_and_leaves_no_output(tmp_path, monkeypatch):
    """A failed board build raises before the next design starts, no further build starts,
    and the output directory is not left behind."""
    import time

    import nnaccel.demo as demo
    from nnaccel.gen.errors import ToolError

    started = []

    def build(design, board, outdir, row, log):
        started.append(design)
        raise ToolError(f"nextpnr failed on {design}")

    designs = _fake_demo(monkeypatch, build)
    designs = designs + (DemoDesign("digits_int8", 8, "int8"),)
    run_design = demo._run_design

    def slow(spec, *args):   # the next design's simulation outlasts the failing build
        time.sleep(0.3)
        return run_design(spec, *args)

    monkeypatch.setattr(demo, "_run_design", slow)
    with pytest.raises(ToolError, match="nextpnr failed on digits_cnn_int8"):
        run_demo(tmp_path / "out", designs=designs, log=lambda m: None)
    assert started == ["digits_cnn_int8"]
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == []
