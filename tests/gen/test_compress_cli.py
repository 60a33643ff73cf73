"""``nnaccel compress`` end to end: a float model .npz in, a model directory and report out;
bad input stops with exit status 2, a message naming the layer and the field, nothing written."""

import json
import subprocess
import sys

import numpy as np
import pytest

from nnaccel import cli
from nnaccel.gen.model_io import read_model


def float_npz(path, **changes):
    """A 12-16-4 float MLP on int4 inputs, labelled by itself, as a float model file."""
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(0, 0.5, (16, 12)), rng.normal(0, 0.1, 16)
    w2, b2 = rng.normal(0, 0.5, (4, 16)), np.zeros(4)
    x = rng.integers(-8, 8, (240, 12))
    y = np.argmax(np.maximum(x / 8 @ w1.T + b1, 0) @ w2.T + b2, axis=1)
    arrays = {"layers": np.array(["fc1", "fc2"]), "input_dtype": np.array("int4"),
              "input_scale": np.array(1 / 8), "name": np.array("tiny"),
              "fc1.w": w1, "fc1.b": b1, "fc2.w": w2, "fc2.b": b2,
              "calib_x": x[:160], "calib_y": y[:160], "test_x": x[160:], "test_y": y[160:]}
    arrays.update(changes)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_compress_end_to_end(tmp_path, capsys):
    src = float_npz(tmp_path / "tiny.npz")
    out = tmp_path / "models" / "tiny_c"
    status = cli.main(["compress", str(src), "-o", str(out), "--prune", "0.5",
                       "--prune", "fc2=0.25", "--share", "fc1=3", "--pe", "2", "--bits", "6",
                       "--retrain-epochs", "4"])
    captured = capsys.readouterr()
    assert status == 0
    assert sorted(p.name for p in out.iterdir()) == [".nnaccel-output.json", "model.json",
                                                     "report.json", "weights.npz"]
    model = read_model(out)
    fc1, fc2 = model.layers
    assert model.name == "tiny" and str(model.input_dtype) == "int4"
    assert fc1.weight.shape == (16, 12) and fc2.weight.shape == (4, 16)
    assert fc1.density <= 0.5 and fc2.density <= 0.75
    kept = [int(np.count_nonzero(fc1.weight[p::2])) for p in range(2)]
    assert max(kept) <= 48  # balanced over two PEs: each keeps at most its half of 96
    assert fc1.codebook is not None and len(fc1.codebook) == 8 and fc1.codebook[0] == 0
    assert fc2.codebook is None
    assert str(fc1.weight_dtype) == "int6" and str(fc1.output.dtype) == "uint8"
    report = json.loads((out / "report.json").read_text())
    assert [p["pass"] for p in report["passes"]] == [
        "float", "prune", "retrain_pruned", "share", "retrain_shared", "quantize"]
    assert report["accuracy_measure"] == "accuracy against the labels"
    assert report["samples"] == 80
    x = np.load(src)["test_x"]
    y = np.load(src)["test_y"]
    assert report["accuracy"] == pytest.approx(np.mean(np.argmax(model.forward(x), 1) == y))
    assert [s["name"] for s in report["layers"]] == ["fc1", "fc2"]
    assert report["layers"][0]["density"] == fc1.density
    assert report["total"]["compression_ratio"] > 1
    # the table on stdout, progress on stderr
    assert "retrain_shared" in captured.out and "vs float32" in captured.out
    assert "wrote" in captured.err
    # and the model runs through the rest of the command line
    np.save(tmp_path / "x.npy", x[:3])
    assert cli.main(["run", str(out), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == model.forward(x[:3]).tolist()


def test_compress_json_and_binarize(tmp_path, capsys):
    src = float_npz(tmp_path / "tiny.npz", calib_y=None, test_x=None, test_y=None)
    out = tmp_path / "bin"
    assert cli.main(["compress", str(src), "-o", str(out), "--binarize",
                     "--binarize-epochs", "3", "--name", "tiny_bnn", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny_bnn"
    assert report["accuracy_measure"] == "agreement with the float model's argmax"
    model = read_model(out)
    assert [str(layer.weight_dtype) for layer in model.layers] == ["bipolar", "bipolar"]
    assert model.layers[0].output.kind.value == "threshold"


@pytest.mark.parametrize("changes, argv, needle", [
    ({"fc2.w": np.ones((4, 15))}, [], "layer 'fc2', field 'fc2.w'"),
    ({"fc1.b": np.ones(3)}, [], "layer 'fc1', field 'fc1.b'"),
    ({"calib_x": np.full((5, 12), 9)}, [], "field 'calib_x': value 9 is outside int4"),
    ({"fc2.bn_gamma": np.ones(4)}, [], "layer 'fc2', field 'fc2.bn_gamma'"),
    ({}, ["--prune", "fc9=0.5"], "fc9"),
    ({}, ["--prune", "1.5"], "prune must be"),
    ({}, ["--share", "fc1=x"], "--share 'fc1=x'"),
    ({}, ["--bits", "1"], "weight_bits"),
    ({}, ["--name", "9lives"], "--name"),
])
def test_compress_bad_input(tmp_path, capsys, changes, argv, needle):
    src = float_npz(tmp_path / "tiny.npz", **changes)
    out = tmp_path / "out"
    status = cli.main(["compress", str(src), "-o", str(out), "--retrain-epochs", "1", *argv])
    err = capsys.readouterr().err
    assert status == 2
    assert needle in err
    assert "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.npz"]


def test_compress_bad_input_as_a_process(tmp_path):
    src = float_npz(tmp_path / "tiny.npz", **{"fc2.w": np.ones((4, 15))})
    proc = subprocess.run([sys.executable, "-m", "nnaccel", "compress", str(src), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "nnaccel: error: layer 'fc2', field 'fc2.w': shape (4, 15) does not chain: the input "
        "has 16 values"]
    assert not (tmp_path / "out").exists()
