"""``nnaccel.from_torch``: a Brevitas module in, a model whose float boundary gives the module's
own outputs (and qonnx's), through generate, save and open."""

import warnings

import numpy as np
import pytest

import nnaccel
from nnaccel.gen.errors import NnaccelError, UsageError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch = pytest.importorskip("torch", reason="the 'onnx' extra (torch) is not installed")
    qnn = pytest.importorskip("brevitas.nn", reason="the 'onnx' extra (brevitas) is missing")

pytestmark = pytest.mark.xdist_group("onnx_exporters")


def _net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
        qnn.QuantConv2d(2, 4, 3, padding=1, weight_bit_width=4, bias=False),
        torch.nn.BatchNorm2d(4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        qnn.QuantLinear(4 * 3 * 3, 5, bias=True, weight_bit_width=4))
    net.train()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        for _ in range(3):
            net(torch.randn(16, 2, 6, 6) * 2)
    return net.eval()


@pytest.fixture(scope="module")
def net():
    return _net()


def test_from_torch_equals_the_module(net, tmp_path):
    model = nnaccel.from_torch(net, torch.randn(1, 2, 6, 6), name="small_cnn")
    assert model.name == "small_cnn" and model.input_shape == (2, 6, 6)
    assert not net.training
    x = (np.random.default_rng(2).normal(size=(16, 2, 6, 6)) * 2).astype(np.float32)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        expect = net(torch.from_numpy(x)).numpy()
    got = model.predict(x, float_io=True)
    scale = np.asarray(model.ir.float_io.output_scale)
    # the float dense layer: equal up to float32 rounding; its integer levels exactly
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())
    offset = np.asarray(model.ir.float_io.output_offset)
    np.testing.assert_array_equal(np.round((expect - offset) / scale).astype(np.int64),
                                  model.predict(model.quantize(x)))
    # a design of it saves (the model has no path: the directory keeps a copy) and re-opens
    out = model.generate(max_lanes=8).save(tmp_path / "d")
    again = nnaccel.open(out)
    np.testing.assert_array_equal(again.predict(x, float_io=True), got)


def test_from_torch_keeps_the_training_mode(net):
    net.train()
    try:
        nnaccel.from_torch(net, np.zeros((1, 2, 6, 6)))
        assert net.training
    finally:
        net.eval()


def test_from_torch_refuses_an_unquantized_module():
    plain = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(NnaccelError, match="float weights"):   # exit status 2 on the CLI
        nnaccel.from_torch(plain, torch.randn(1, 4))
    with pytest.raises(UsageError, match="name"):
        nnaccel.from_torch(plain, torch.randn(1, 4), name="1bad")
