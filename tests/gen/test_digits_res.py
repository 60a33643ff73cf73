"""The residual CNN trained on scikit-learn's digits (gen/zoo/digits_res.py): accuracy in float,
in numpy (the int8 model) and on the generated hardware under Verilator, every output equal."""

import numpy as np
import pytest

from nnaccel.gen.compress.train import accuracy
from nnaccel.gen.generate import generate
from nnaccel.gen.ir import Op
from nnaccel.gen.plan import Options
from nnaccel.gen.zoo.digits_res import digits_res, digits_res_data

#: Test images simulated under Verilator.
IMAGES = 60


@pytest.mark.verilator
def test_trained_residual_cnn_float_numpy_and_verilator():
    from nnaccel.sim.design import simulate

    trained = digits_res(0)
    model = trained.model
    add = next(layer for layer in model.layers if layer.op is Op.ADD)
    assert add.inputs == ("c3", "c1") and not model.is_chain
    # int8 within a point of float, both well above chance
    assert trained.float_accuracy >= 0.96
    assert trained.numpy_accuracy >= trained.float_accuracy - 0.01
    _, x_test, _, y_test = digits_res_data()
    X, y = x_test[:IMAGES], y_test[:IMAGES]
    design = generate(model, Options())
    outputs, result = simulate(design, X, idle=0.2, stall=0.2, seed=1)  # checks every output
    reference = np.asarray(model.forward(X))
    np.testing.assert_array_equal(np.asarray(outputs, dtype=np.int64), reference)
    hardware = accuracy(np.asarray(outputs), y)
    assert hardware == accuracy(reference, y)
    print(f"digits_res: float {trained.float_accuracy:.4f}, numpy {trained.numpy_accuracy:.4f} "
          f"(450 images), Verilator {hardware:.4f} on {IMAGES} images, "
          f"{result.cycles_per_inference} cycles per image")
