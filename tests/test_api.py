"""The Python API (nnaccel.load/generate/predict/report/save/open), against the numpy reference
and the command line's checks."""

import json
import subprocess
import sys

import numpy as np
import pytest

import nnaccel
from nnaccel.gen.errors import ModelError, UsageError

from .helpers import W1, spec_forward, tiny_onnx, write_model_dir


@pytest.fixture
def tiny(tmp_path):
    return write_model_dir(tmp_path / "m")


X = np.random.default_rng(1).integers(-8, 8, size=(6, 4))


def test_import_loads_neither_torch_nor_cocotb():
    code = "import sys, nnaccel; print('torch' in sys.modules, 'cocotb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


def test_load_and_model_predict(tiny):
    m = nnaccel.load(tiny)
    assert (m.name, m.input_shape, m.output_shape) == ("tiny", (4,), (2,))
    y = m.predict(X)
    assert y.dtype == np.int64 and y.shape == (6, 2)
    np.testing.assert_array_equal(y, spec_forward(X))


def test_reprs_summarise(tiny):
    m = nnaccel.load(tiny)
    assert repr(m) == "<nnaccel.Model 'tiny': input int4 x 4 -> int32 x 2, 2 layers>"
    d = m.generate(max_lanes=4)
    text = repr(d)
    assert text.startswith("<nnaccel.Design 'tiny': 2 layers, ") and "lanes" in text
    assert len(text) < 120


def test_generate_report_and_numpy_predict(tiny):
    d = nnaccel.load(tiny).generate(folds={"fc1": (3, 4), "fc2": "1x1"})
    rows = d.report(as_text=False)
    assert [r["layer"] for r in rows] == ["fc1", "fc2"]
    assert [r["fold"] for r in rows] == ["3x4", "1x1"]
    assert [r["engine"] for r in rows] == ["mvu", "mvu"]
    # fc1 is fully unfolded: one cycle; fc2 folded 1x1 over 2x3 weights: six
    assert [r["expected_cycles"] for r in rows] == [1, 6]
    assert [r["lanes"] for r in rows] == [12, 1]
    text = d.report()
    assert text.splitlines()[0].split() == ["layer", "engine", "fold", "lanes", "cycles",
                                            "lut4", "ff", "bram", "dsp", "fmax_mhz"]
    total = text.splitlines()[3].split()
    assert total[:3] == ["total", "13", "6"]
    assert int(total[3]) == sum(r["lut4"] for r in rows) > 0
    assert "module tiny" in d.verilog
    assert d.manifest["name"] == "tiny"
    np.testing.assert_array_equal(d.predict(X), spec_forward(X))


@pytest.mark.parametrize(("kwargs", "error", "needle"), [
    ({"folds": {"fc9": (2, 2)}}, UsageError, "'fc9'"),
    ({"folds": {"fc1": (4, 4)}}, UsageError, "'fc1'"),
    ({"engines": {"fc1": "gpu"}}, UsageError, "'gpu'"),
    ({"storage": {"fc1": "flash"}}, UsageError, "weight-storage"),
    ({"max_lanes": 0}, UsageError, "max_lanes"),
    ({"batch": 1 << 20}, UsageError, "batch"),
    ({"max_lanes": 4, "target_cycles": 3}, UsageError, "at most one"),
])
def test_generate_refuses_what_the_cli_refuses(tiny, tmp_path, capsys, kwargs, error, needle):
    from nnaccel import cli

    with pytest.raises(error) as e:
        nnaccel.load(tiny).generate(**kwargs)
    assert needle in str(e.value)
    if "folds" in kwargs or "engines" in kwargs:  # the CLI: the same message, exit 2
        flag, table = ("--fold", kwargs["folds"]) if "folds" in kwargs else (
            "--engine", kwargs["engines"])
        (layer, value), = table.items()
        value = "x".join(map(str, value)) if isinstance(value, tuple) else value
        status = cli.main(["generate", str(tiny), "-o", str(tmp_path / "o"), flag,
                           f"{layer}={value}"])
        assert status == 2
        assert capsys.readouterr().err.strip() == f"nnaccel: error: {e.value}"


def test_predict_refuses_bad_inputs(tiny):
    m = nnaccel.load(tiny)
    d = m.generate()
    for bad, needle in ((np.zeros((2, 5)), "shape"), (np.full((1, 4), 8), "outside"),
                        (np.full((1, 4), 0.5), "non-integer")):
        with pytest.raises(UsageError, match=needle):
            d.predict(bad)
        with pytest.raises(UsageError, match=needle):
            m.predict(bad)
    with pytest.raises(UsageError, match="backend"):
        d.predict(X, backend="fpga")


def test_load_refuses_a_bad_model(tmp_path):
    with pytest.raises(ModelError, match="not a model directory"):
        nnaccel.load(tmp_path / "absent")
    with pytest.raises(UsageError, match="onnx"):
        nnaccel.from_onnx(tmp_path / "model.json")


def test_save_and_open(tiny, tmp_path):
    d = nnaccel.load(tiny).generate(max_lanes=4, folds={"fc2": (1, 3)})
    out = d.save(tmp_path / "design")
    assert (out / "tiny.v").read_text() == d.verilog
    assert json.loads((out / "manifest.json").read_text()) == d.manifest
    again = nnaccel.open(out)
    assert again.manifest == d.manifest and again.options == d.options
    np.testing.assert_array_equal(again.predict(X), spec_forward(X))
    # an earlier output is replaced only with force; a user's directory never
    with pytest.raises(UsageError):
        d.save(out)
    d.save(out, force=True)
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep")
    with pytest.raises(UsageError):
        d.save(user, force=True)
    assert (user / "notes.txt").read_text() == "keep" and len(list(user.iterdir())) == 1


def test_open_refuses_a_changed_model(tiny, tmp_path):
    out = nnaccel.load(tiny).generate(max_lanes=4).save(tmp_path / "design")
    # the design keeps its own copy of the model: changing the original changes nothing
    data = dict(np.load(tiny / "weights.npz"))
    data["fc2.w"] = np.full((2, 3), 7)
    np.savez(tiny / "weights.npz", **data)
    np.testing.assert_array_equal(nnaccel.open(out).predict(X), spec_forward(X))
    # an edited copy gives another design, refused
    np.savez(out / "model" / "weights.npz", **data)
    with pytest.raises(UsageError, match="different design"):
        nnaccel.open(out)
    with pytest.raises(UsageError, match="not a design"):
        nnaccel.open(tmp_path)


@pytest.mark.verilator
def test_load_generate_predict_on_verilator(tiny):
    d = nnaccel.load(tiny).generate(max_lanes=16)
    assert d.last_simulation is None
    np.testing.assert_array_equal(d.predict(X, backend="verilator"), spec_forward(X))
    calm = d.last_simulation
    assert calm.idle_cycles == 0 and calm.backpressure_cycles == 0
    assert len(calm.outputs_bits) == len(X)
    np.testing.assert_array_equal(d.predict(X, backend="verilator", stress=True), spec_forward(X))
    stressed = d.last_simulation
    assert stressed.idle_cycles > 0 and stressed.backpressure_cycles > 0  # stalls took effect
    assert stressed.cycles_total > calm.cycles_total


def _readme_example():
    """The Python block of README.md's "Python API" section and the text block it prints."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    printed = section.split("```text\n", 1)[1].split("```", 1)[0]
    return code, printed


@pytest.mark.verilator
def test_readme_python_api_example(tmp_path):
    code, printed = _readme_example()
    (tmp_path / "example.py").write_text(code)
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    assert run.stdout == printed
    # the example's model is the one of these tests without fc1's bias: its outputs are the
    # hand-computed ones
    x = np.array([[1, 2, 3, 4], [-8, 7, -6, 5]])
    assert printed.splitlines()[-3] == str(spec_forward(x, bias=[0, 0, 0]))


def test_from_onnx(tmp_path):
    tiny_onnx(tmp_path / "one.onnx")
    m = nnaccel.from_onnx(tmp_path / "one.onnx")
    assert (m.name, m.input_shape, m.output_shape) == ("one", (4,), (3,))
    x = np.array([[0, 1, 2, 15], [7, 7, 0, 3]])
    np.testing.assert_array_equal(m.predict(x), x @ W1.T)
    np.testing.assert_array_equal(m.generate(max_lanes=3).predict(x), x @ W1.T)


def test_build_passes_the_design_to_the_board_flow(tiny, tmp_path, monkeypatch):
    import nnaccel.boards.build as board_build

    d = nnaccel.load(tiny).generate(max_lanes=4)
    calls = []

    def fake(network, board, outdir, *, name, log=None, finish=None, in_beats=1, out_beats=1):
        from amaranth.hdl import Fragment

        Fragment.get(network, None)      # what a real build does first: elaborate it
        calls.append((network, board, outdir, name))
        report = {"fmax_mhz": 50.0}
        files = finish(report)
        assert json.loads(files["manifest.json"]) == d.manifest
        return report

    monkeypatch.setattr(board_build, "build", fake)
    report = d.build("icebreaker", tmp_path / "b")
    (network, board, outdir, name), = calls
    assert network is d._design.network and (board, outdir, name) == (
        "icebreaker", tmp_path / "b", "tiny")
    cycles = d.manifest["expected_cycles_per_inference"]
    assert report["inferences_per_second_at_fmax"] == 50e6 / cycles
    assert report["manifest"] == d.manifest
    with pytest.raises(UsageError, match="no_such_board"):
        d.build("no_such_board", tmp_path / "c")
    assert len(calls) == 1
