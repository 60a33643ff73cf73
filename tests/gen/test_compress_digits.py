"""The compression demo's targets on scikit-learn's digits (issue 5): within 1 point of the
float accuracy at <= 10 % density with 4-bit shared weights and int8 activations; within 3
points for the binarized model."""

import json

import numpy as np
import pytest

from nnaccel.gen.compress import write_compressed
from nnaccel.gen.compress.digits import compress_digits, digits_float_model
from nnaccel.gen.model_io import read_model


@pytest.fixture(scope="module")
def trained():
    return digits_float_model(0)


@pytest.fixture(scope="module")
def sparse(trained):
    return compress_digits(0, trained=trained)


def test_float_network(trained):
    fm, data = trained
    assert [layer.weight.shape for layer in fm.layers] == [(256, 64), (128, 256), (10, 128)]
    acc = np.mean(np.argmax(fm.forward(data.x_test), axis=1) == data.y_test)
    assert acc >= 0.97


def test_sparse_shared_int8_targets(sparse):
    model = sparse.model
    for layer in model.layers:
        assert layer.density <= 0.10
        assert layer.codebook is not None and len(layer.codebook) <= 16 and layer.codebook[0] == 0
        assert str(layer.weight_dtype) == "int8"
    assert [str(layer.output.dtype) for layer in model.layers] == ["uint8", "uint8", "int32"]
    acc = np.mean(np.argmax(model.forward(sparse.x_test), axis=1) == sparse.y_test)
    assert acc == pytest.approx(sparse.accuracy)
    assert sparse.float_accuracy >= 0.97
    assert sparse.accuracy >= sparse.float_accuracy - 0.01
    report = sparse.report
    assert report["total"]["density"] <= 0.10
    assert report["total"]["compression_ratio"] > 25
    assert all(s["format"] == "sparse" and s["value_bits"] == 4 for s in report["layers"])
    history = {p["pass"]: p["accuracy"] for p in report["passes"]}
    assert history["prune_2"] < history["retrain_pruned_2"]  # retraining recovers


def test_sparse_model_written_and_read_back(sparse, tmp_path):
    out = write_compressed(sparse.compression, tmp_path / "digits_sparse")
    back = read_model(out)
    assert np.array_equal(back.forward(sparse.x_test), sparse.model.forward(sparse.x_test))
    assert json.loads((out / "report.json").read_text())["accuracy"] == sparse.accuracy


def test_binarized_target(trained):
    result = compress_digits(0, trained=trained, binarize=True)
    assert result.model.name == "digits_binarized"
    assert all(str(layer.weight_dtype) == "bipolar" for layer in result.model.layers)
    assert result.accuracy >= result.float_accuracy - 0.03
