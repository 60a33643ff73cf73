"""The float boundary of imported models (input quantizer, output scale) against the real
exporters: float inputs to an imported Brevitas model give qonnx's executor's outputs; float
inputs to onnxruntime's int8 models are within one LSB of onnxruntime. The fields survive
``import`` (model.json) and drive ``run --float``."""

import json
import warnings

import numpy as np
import pytest

from nnaccel.cli import main
from nnaccel.gen.boundary import FloatIO, InputQuantizer, from_json
from nnaccel.gen.errors import ModelError, UsageError
from nnaccel.gen.model_io import read_model
from nnaccel.gen.onnx import import_onnx

# the exporters and executors as test_onnx_cnn imports them (that module skips without them)
from .test_onnx_cnn import (
    QuantFormat,
    _brevitas_nets,
    _qonnx_run,
    _Reader,
    _TorchCnn,
    export_qonnx,
    ort,
    qnn,
    quantize_static,
    torch,
)

pytestmark = pytest.mark.xdist_group("onnx_exporters")


def _narrow_mlp():
    """A signed narrow-range 6-bit input quantizer with a zero point of 0 and HALF_UP-free
    defaults, a 4-bit hidden layer, float logits."""
    torch.manual_seed(1)
    return torch.nn.Sequential(
        qnn.QuantIdentity(bit_width=6, narrow_range=True, return_quant_tensor=True),
        qnn.QuantLinear(10, 8, bias=True, weight_bit_width=4),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(8, 3, bias=True, weight_bit_width=4))


@pytest.fixture(scope="module")
def brevitas_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("float_boundary")
    nets = {k: v for k, v in _brevitas_nets().items() if k in ("cnv_w4a2", "residual")}
    nets["narrow_mlp"] = ((10,), _narrow_mlp())
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (shape, net) in nets.items():
            net.train()
            with torch.no_grad():
                for _ in range(3):
                    net(torch.randn(16, *shape) * 2)
            net.eval()
            files[name] = (out / f"{name}.onnx", shape)
            export_qonnx(net, torch.randn(1, *shape), str(files[name][0]), dynamo=False)
    return files


def _floats(shape, n, seed):
    """Real inputs that reach both clamps and land on rounding ties of common scales."""
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, *shape)) * 2).astype(np.float32)
    x.reshape(n, -1)[:, :4] = np.float32([0.5, -0.5, 1e9, -1e9])
    return x


@pytest.mark.parametrize("name", ["cnv_w4a2", "residual", "narrow_mlp"])
def test_brevitas_float_inputs_equal_qonnx(brevitas_files, name, tmp_path):
    path, shape = brevitas_files[name]
    imp = import_onnx(path)
    fio = imp.model.float_io
    assert fio is not None and fio.input is not None and fio.input.kind == "quant"
    X = _floats(shape, 24, seed=3)
    expect = _qonnx_run(path, X)
    q = fio.quantize(X, imp.model)
    got = fio.dequantize(imp.model.forward(q), imp.model)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())
    # the integer levels agree exactly, and the quantizer is the source graph's: rounding the
    # inputs otherwise (half up, no clamp) changes them
    levels = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    np.testing.assert_array_equal(levels, imp.model.forward(q))
    # the fields survive import: model.json carries them and reading it gives the same
    assert main(["import", str(path), "-o", str(tmp_path / "m")]) == 0
    doc = json.loads((tmp_path / "m" / "model.json").read_text())
    assert doc["input"]["quantizer"]["kind"] == "quant" and "scale" in doc["output"]
    again = read_model(tmp_path / "m").float_io
    assert again == fio


def test_narrow_range_clamp_recorded(brevitas_files):
    fio = import_onnx(brevitas_files["narrow_mlp"][0]).model.float_io
    assert (fio.input.lo, fio.input.hi) == (-31, None)   # int6 narrow: -31..31


def test_quantizer_would_fail_if_wrong(brevitas_files):
    """A boundary that rounds or clamps differently from the graph's gives other levels (the
    comparison above can fail)."""
    path, shape = brevitas_files["narrow_mlp"]
    imp = import_onnx(path)
    fio = imp.model.float_io
    X = _floats(shape, 24, seed=3)
    wrong = FloatIO(input=InputQuantizer(kind="quant", scale=fio.input.scale,
                                         zero_point=fio.input.zero_point, rounding="FLOOR"),
                    output_scale=fio.output_scale, output_offset=fio.output_offset)
    assert not np.array_equal(wrong.quantize(X, imp.model), fio.quantize(X, imp.model))


@pytest.fixture(scope="module")
def ort_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("float_boundary_ort")
    torch.manual_seed(3)
    cal = np.random.default_rng(0).normal(size=(32, 3, 16, 16)).astype(np.float32)
    net = _TorchCnn(False).eval()
    src = out / "float.onnx"
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 3, 16, 16), str(src), dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
        for fmt in ("QDQ", "QOperator"):
            files[fmt] = out / f"{fmt}.onnx"
            quantize_static(str(src), str(files[fmt]), _Reader(cal),
                            quant_format=getattr(QuantFormat, fmt), per_channel=True,
                            reduce_range=True)
    return files


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_onnxruntime_float_inputs_within_one_lsb(ort_files, fmt):
    imp = import_onnx(ort_files[fmt])
    fio = imp.model.float_io
    assert fio.input.kind == "quantize_linear"
    X = _floats((3, 16, 16), 64, seed=5)
    expect = ort.InferenceSession(str(ort_files[fmt])).run(None, {"x": X})[0]
    y = imp.model.forward(fio.quantize(X, imp.model))
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(y - expect_q)
    assert diff.max() <= 1 and np.count_nonzero(diff) / diff.size < 0.08
    # the real outputs are those levels on onnxruntime's grid
    np.testing.assert_allclose(fio.dequantize(y, imp.model), y * imp.output_scale
                               + imp.output_offset)


def test_run_float_cli(brevitas_files, tmp_path, capsys):
    """``run --float``: real inputs in, real outputs out, equal to qonnx's executor."""
    path, shape = brevitas_files["cnv_w4a2"]
    X = _floats(shape, 4, seed=9)
    np.save(tmp_path / "x.npy", X)
    assert main(["import", str(path), "-o", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert main(["run", str(tmp_path / "m"), "--input", str(tmp_path / "x.npy"), "--float",
                 "--json", "--output", str(tmp_path / "y.npy")]) == 0
    result = json.loads(capsys.readouterr().out)
    expect = _qonnx_run(path, X)
    got = np.load(tmp_path / "y.npy")
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())
    np.testing.assert_allclose(np.array(result["outputs"]), expect.reshape(4, -1), rtol=1e-5,
                               atol=1e-5 * np.abs(expect).max())
    # the Python API: the same real outputs from the model and from a design of it
    import nnaccel

    model = nnaccel.load(tmp_path / "m")
    np.testing.assert_array_equal(model.predict(X, float_io=True), got)
    np.testing.assert_array_equal(model.generate().predict(X, float_io=True), got)
    np.testing.assert_array_equal(result["outputs_int"],
                                  model.predict(model.quantize(X)).reshape(4, -1))


def test_run_float_without_quantizer(tmp_path, capsys):
    from nnaccel.gen.model_io import write_model

    from .random_models import random_model

    model = random_model(np.random.default_rng(0))
    write_model(model, tmp_path / "m")
    np.save(tmp_path / "x.npy", np.zeros((1, *model.input_shape), dtype=np.float32))
    assert main(["run", str(tmp_path / "m"), "--input", str(tmp_path / "x.npy"),
                 "--float"]) == 2
    assert "input.quantizer" in capsys.readouterr().err


@pytest.mark.parametrize("inp,out,field", [
    ({"kind": "quant"}, None, "input.quantizer.scale"),
    ({"kind": "quant", "scale": -1.0}, None, "input.quantizer.scale"),
    ({"kind": "round", "scale": 1.0}, None, "input.quantizer.kind"),
    ({"kind": "quant", "scale": 1.0, "zero_point": [1, 2]}, None,
     "input.quantizer.zero_point"),
    ({"kind": "quant", "scale": 1.0, "rounding": "NEAREST"}, None, "input.quantizer.rounding"),
    ({"kind": "quant", "scale": 1.0, "min": -200}, None, "input.quantizer.min"),
    ({"kind": "quant", "scale": 1.0, "bits": 8}, None, "input.quantizer.bits"),
    (None, {"offset": 1.0}, "output.scale"),
    (None, {"scale": [1.0, 2.0]}, "output.scale"),
])
def test_bad_boundary_fields(inp, out, field):
    from nnaccel.gen.ir import DType

    with pytest.raises(ModelError, match=field.replace(".", r"\.")):
        from_json(inp, out, (3,), DType.parse("int8"), (4,))


def test_quantize_refuses_bad_inputs():
    from nnaccel.gen.ir import DType

    fio = from_json({"kind": "quant", "scale": 0.5}, None, (3,), DType.parse("int8"), (4,))

    class M:
        input_shape, input_dtype = (3,), DType.parse("int8")

    with pytest.raises(UsageError, match="shape"):
        fio.quantize(np.zeros((2, 4)), M)
    with pytest.raises(UsageError, match="finite"):
        fio.quantize(np.array([[0.0, np.nan, 1.0]]), M)
    np.testing.assert_array_equal(fio.quantize(np.array([[0.25, 100.0, -0.75]]), M),
                                  [[0, 127, -2]])
