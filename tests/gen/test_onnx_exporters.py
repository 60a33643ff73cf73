"""ONNX import against the real exporters and executors.

Brevitas models exported with ``brevitas.export.export_qonnx`` are imported and compared with
qonnx's executor output for output (exact); float torch MLPs quantized with onnxruntime's
``quantize_static`` (QDQ and QOperator) are compared with onnxruntime (within the stated 1 LSB
bound, mismatches counted).
"""

import warnings

import numpy as np
import pytest

from nnaccel.cli import main

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    torch = pytest.importorskip("torch", reason="the 'onnx' extra (torch) is not installed")
    qnn = pytest.importorskip("brevitas.nn", reason="the 'onnx' extra (brevitas) is missing")
    pytest.importorskip("qonnx", reason="the 'onnx' extra (qonnx) is not installed")
    ort = pytest.importorskip("onnxruntime", reason="the 'onnx' extra is not installed")
    from brevitas.export import export_qonnx
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from qonnx.core import onnx_exec
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

from nnaccel.gen.onnx import import_onnx, inline_for_runtime  # noqa: E402

pytestmark = pytest.mark.xdist_group("onnx_exporters")


def _random_bn(n, gen):
    bn = torch.nn.BatchNorm1d(n)
    with torch.no_grad():  # trained statistics: no real value sits on a sign boundary
        bn.weight.uniform_(-1, 1, generator=gen)
        bn.bias.uniform_(-1, 1, generator=gen)
        bn.running_mean.uniform_(-2, 2, generator=gen)
        bn.running_var.uniform_(0.5, 2, generator=gen)
    return bn


def _brevitas_models():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    bipolar = dict(weight_quant=SignedBinaryWeightPerTensorConst, bias=False)
    act = SignedBinaryActPerTensorConst
    return {
        "bipolar_bn": torch.nn.Sequential(
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            qnn.QuantLinear(16, 12, **bipolar), _random_bn(12, gen),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            qnn.QuantLinear(12, 8, **bipolar), _random_bn(8, gen),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            qnn.QuantLinear(8, 4, **bipolar)),
        "lowbit": torch.nn.Sequential(
            qnn.QuantIdentity(bit_width=4, return_quant_tensor=True),
            qnn.QuantLinear(12, 10, bias=True, weight_bit_width=2),
            qnn.QuantReLU(bit_width=3, return_quant_tensor=True),
            qnn.QuantLinear(10, 8, bias=True, weight_bit_width=3), _random_bn(8, gen),
            qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
            qnn.QuantLinear(8, 4, bias=True, weight_bit_width=4)),
        "int8_first": torch.nn.Sequential(
            qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
            qnn.QuantLinear(10, 8, bias=True, weight_bit_width=8),
            qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
            qnn.QuantLinear(8, 5, bias=False, weight_bit_width=3),
            qnn.QuantIdentity(bit_width=8)),
    }


@pytest.fixture(scope="module")
def qonnx_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("qonnx")
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, net in _brevitas_models().items():
            net.eval()
            k = next(m for m in net.modules() if isinstance(m, qnn.QuantLinear)).in_features
            with torch.no_grad():  # calibrate-free: a few forward passes set nothing in eval
                net(torch.randn(4, k))
            files[name] = out / f"{name}.onnx"
            export_qonnx(net, torch.randn(1, k), str(files[name]), dynamo=False)
    return files


@pytest.fixture
def qonnx_exec(monkeypatch):
    """qonnx's executor, with its one-node models at an IR version onnxruntime accepts."""
    make = onnx_exec.qonnx_make_model

    def lowered(graph, **kwargs):
        model = make(graph, **kwargs)
        model.ir_version = min(model.ir_version, 10)
        return model

    monkeypatch.setattr(onnx_exec, "qonnx_make_model", lowered)

    def run(path, X, scale):
        wrapper = ModelWrapper(str(inline_for_runtime(path, path.with_suffix(".rt.onnx"))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wrapper = wrapper.transform(InferShapes())
            iname, oname = wrapper.graph.input[0].name, wrapper.graph.output[0].name
            return np.stack([onnx_exec.execute_onnx(
                wrapper, {iname: (x[None] * scale).astype(np.float32)})[oname].reshape(-1)
                for x in X])
    return run


def _inputs(dtype, n, k, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(dtype.lo, dtype.hi + 1, size=(n, k))
    return np.where(X >= 0, 1, -1) if str(dtype) == "bipolar" else X


@pytest.mark.parametrize("name,kinds", [
    ("bipolar_bn", ["threshold", "threshold", "identity"]),
    ("lowbit", ["threshold", "threshold", "identity"]),
    ("int8_first", ["threshold", "threshold"]),
])
def test_brevitas_qonnx_exact(qonnx_files, qonnx_exec, name, kinds):
    imp = import_onnx(qonnx_files[name])
    model = imp.model
    assert imp.exact and [layer.output.kind.value for layer in model.layers] == kinds
    X = _inputs(model.input_dtype, 40, model.in_features)
    X[0], X[1] = model.input_dtype.lo, model.input_dtype.hi  # the extremes of the input range
    expect = qonnx_exec(qonnx_files[name], X, imp.input_scale)
    got = imp.to_real(model.forward(X))
    # the integer model is exact; only the float32 graph's own rounding of its output
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())
    last = model.layers[-1].output
    if last.kind.value == "threshold":  # quantized output: the integer levels agree exactly
        levels = np.round((expect - imp.output_offset) / imp.output_scale)
        np.testing.assert_array_equal(model.forward(X), levels)


def test_int8_first_layer_shape(qonnx_files):
    model = import_onnx(qonnx_files["int8_first"]).model
    assert str(model.input_dtype) == "int8"
    assert str(model.layers[0].weight_dtype) in ("int8", "int7")
    assert model.layers[-1].output.thresholds.shape[1] == 255


def test_cli_import_and_run(qonnx_files, tmp_path):
    path = qonnx_files["lowbit"]
    imp = import_onnx(path)
    X = _inputs(imp.model.input_dtype, 8, imp.model.in_features, seed=3)
    np.save(tmp_path / "x.npy", X)
    assert main(["import", str(path), "-o", str(tmp_path / "m")]) == 0
    for model in (tmp_path / "m", path):
        out = tmp_path / "y.npy"
        assert main(["run", str(model), "--input", str(tmp_path / "x.npy"),
                     "--output", str(out)]) == 0
        np.testing.assert_array_equal(np.load(out), imp.model.forward(X))


# ------------------------------------------------------------------ onnxruntime int8

class _Reader(CalibrationDataReader):
    def __init__(self, data):
        self.it = iter({"x": row[None]} for row in data)

    def get_next(self):
        return next(self.it, None)


@pytest.fixture(scope="module")
def ort_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("ort")
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(12, 24), torch.nn.ReLU(),
                              torch.nn.Linear(24, 16), torch.nn.ReLU(),
                              torch.nn.Linear(16, 5)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.randn(1, 12), str(out / "float.onnx"), dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
        cal = np.random.default_rng(0).normal(size=(64, 12)).astype(np.float32)
        files = {}
        # reduce_range (7-bit weights), as onnxruntime advises on x86 without VNNI: its fused
        # int8 x int8 QDQ kernels otherwise saturate 16-bit intermediates on full-range inputs
        # and then disagree with the graph's own arithmetic (and with its QOperator kernels)
        for fmt in ("QDQ", "QOperator"):
            files[fmt] = out / f"{fmt}.onnx"
            quantize_static(str(out / "float.onnx"), str(files[fmt]), _Reader(cal),
                            quant_format=getattr(QuantFormat, fmt), per_channel=True,
                            reduce_range=True)
    return files


@pytest.mark.parametrize("fmt", ["QDQ", "QOperator"])
def test_onnxruntime_int8_within_one_lsb(ort_files, fmt):
    imp = import_onnx(ort_files[fmt])
    model = imp.model
    assert not imp.exact
    assert [layer.output.kind.value for layer in model.layers] == ["requant"] * 3
    # the stated bound: before rounding each layer is off by far less than 1/2 LSB
    assert max(imp.max_error_lsb.values()) < 0.05
    X = _inputs(model.input_dtype, 4000, model.in_features, seed=7)
    session = ort.InferenceSession(str(ort_files[fmt]))
    x_real = (imp.input_scale * (X - imp.input_zero_point)).astype(np.float32)
    expect = session.run(None, {"x": x_real})[0]
    got = model.forward(X)
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(got - expect_q)
    # one LSB at most, and rarely: a mismatch needs a value within eps of a rounding boundary
    # in some layer (or an exact tie, or onnxruntime's own float32 rounding there)
    assert diff.max() <= 1, f"{fmt}: {np.count_nonzero(diff)} differ, max {diff.max()}"
    assert np.count_nonzero(diff) / diff.size < 0.02


def measure_ort(files, n=4000):
    """Agreement of the imported int8 models with onnxruntime: ``{fmt: (differing, total,
    max |diff|)}`` (for reports; the test above asserts the bound)."""
    out = {}
    for fmt, path in files.items():
        imp = import_onnx(path)
        X = _inputs(imp.model.input_dtype, n, imp.model.in_features, seed=7)
        x_real = (imp.input_scale * (X - imp.input_zero_point)).astype(np.float32)
        expect = ort.InferenceSession(str(path)).run(None, {"x": x_real})[0]
        q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
        diff = np.abs(imp.model.forward(X) - q)
        out[fmt] = (int(np.count_nonzero(diff)), int(diff.size), int(diff.max()))
    return out


@pytest.mark.verilator
@pytest.mark.parametrize("name", ["bipolar_bn", "lowbit"])
def test_imported_model_bit_exact_under_verilator(qonnx_files, name):
    """The hardware generated from an imported QONNX model equals numpy (which equals qonnx)."""
    from nnaccel.gen.generate import generate
    from nnaccel.gen.plan import Options
    from nnaccel.sim.design import simulate

    model = import_onnx(qonnx_files[name]).model
    X = _inputs(model.input_dtype, 12, model.in_features, seed=5)
    design = generate(model, Options(max_lanes=16))
    outputs, result = simulate(design, X, idle=0.3, stall=0.3, seed=2)  # checks every output
    np.testing.assert_array_equal(np.asarray(outputs, dtype=np.int64), model.forward(X))
    assert result.cycles_total > 0
