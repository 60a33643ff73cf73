"""A mixed network (mvu -> sparse -> systolic) through ``nnaccel run --backend verilator``.

One small design, generated for batches of 3 (one Verilator build, cached): 7 vectors with
random idle and backpressure (padded to 9 by the simulator, the extra outputs dropped) must
equal ``Model.forward``; 12 vectors back to back must reach the manifest's cycles per inference
within 15 %.
"""

import json

import numpy as np
import pytest

from nnaccel.cli import main
from nnaccel.gen.model_io import write_model

from ..gen.random_models import random_inputs
from ..gen.test_engine_mapping import mixed_model

BATCH = 3


@pytest.mark.verilator
def test_mixed_engines_under_verilator(tmp_path, capsys):
    model = mixed_model(21, [10, 8, 12, 6], [1.0, 0.3, 1.0], name="vmixed")
    path = write_model(model, tmp_path / "m")
    rng = np.random.default_rng(21)
    options = ["--batch", str(BATCH), "--engine", "fc0=mvu", "--max-lanes", "32"]

    def run(X, *extra):
        np.save(tmp_path / "x.npy", X)
        status = main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--backend",
                       "verilator", "--json", *options, *extra])
        assert status == 0
        return json.loads(capsys.readouterr().out)

    X = random_inputs(rng, model.input_dtype, (7, model.in_features))
    result = run(X, "--idle", "0.3", "--stall", "0.3", "--seed", "5")
    assert result["outputs"] == model.forward(X).tolist()

    X = random_inputs(rng, model.input_dtype, (4 * BATCH, model.in_features))
    result = run(X)
    assert result["outputs"] == model.forward(X).tolist()
    expected = result["expected_cycles_per_inference"]
    assert result["cycles_per_inference"] == pytest.approx(expected, rel=0.15)
