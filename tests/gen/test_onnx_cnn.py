"""ONNX import of convolutional networks and graphs against the real exporters and executors.

Brevitas networks (a CNV-like chain in 1 bit and in 2..4 bits, a residual block, a
depthwise-separable block) exported with ``export_qonnx`` are imported and compared with
qonnx's executor on random inputs: the integer levels agree exactly. Small torch CNNs quantized
by onnxruntime's ``quantize_static`` (QDQ and QOperator) are compared with onnxruntime within
one LSB. Hand-built graphs check the refusals (exit status 2, the node and the field named).
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
    import onnx
    from brevitas.export import export_qonnx
    from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
    from qonnx.core import onnx_exec
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

from nnaccel.gen.onnx import OnnxError, import_onnx, inline_for_runtime  # noqa: E402

pytestmark = pytest.mark.xdist_group("onnx_exporters")

Q = "qonnx.custom_op.general"


def _bn(n, gen):
    bn = torch.nn.BatchNorm2d(n) if n > 0 else None
    with torch.no_grad():  # trained-looking statistics
        bn.weight.uniform_(0.2, 1.5, generator=gen)
        bn.bias.uniform_(-1, 1, generator=gen)
        bn.running_mean.uniform_(-2, 2, generator=gen)
        bn.running_var.uniform_(0.5, 2, generator=gen)
    return bn


def _bn1d(n, gen):
    bn = torch.nn.BatchNorm1d(n)
    with torch.no_grad():
        bn.weight.uniform_(-1, 1, generator=gen)
        bn.bias.uniform_(-1, 1, generator=gen)
        bn.running_mean.uniform_(-2, 2, generator=gen)
        bn.running_var.uniform_(0.5, 2, generator=gen)
    return bn


class _Residual(torch.nn.Module):
    """x -> conv-bn-int4 -> conv-bn -> shared quantizer, plus the shared quantizer of x."""

    def __init__(self, gen):
        super().__init__()
        self.inp = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)
        self.c1 = qnn.QuantConv2d(4, 4, 3, padding=1, weight_bit_width=4, bias=False)
        self.b1 = _bn(4, gen)
        self.r1 = qnn.QuantIdentity(bit_width=4, return_quant_tensor=True)  # signed
        self.c2 = qnn.QuantConv2d(4, 4, 3, padding=1, weight_bit_width=4, bias=False)
        self.b2 = _bn(4, gen)
        self.shared = qnn.QuantIdentity(bit_width=5, return_quant_tensor=True)
        self.out = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
        self.pool = torch.nn.MaxPool2d(2)
        self.flat = torch.nn.Flatten()
        self.fc = qnn.QuantLinear(4 * 4 * 4, 5, bias=True, weight_bit_width=4)

    def forward(self, x):
        x = self.inp(x)
        y = self.b2(self.c2(self.r1(self.b1(self.c1(x)))))
        z = self.out(self.shared(y) + self.shared(x))
        return self.fc(self.flat(self.pool(z)))


def _brevitas_nets():
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    bip = dict(weight_quant=SignedBinaryWeightPerTensorConst, bias=False)
    act = SignedBinaryActPerTensorConst
    return {
        # CNV-W1A1 style: 8-bit input, bipolar weights and activations, BN folded into
        # thresholds, a max pool on bipolar maps, bipolar dense layers
        "cnv_w1a1": ((3, 12, 12), torch.nn.Sequential(
            qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
            qnn.QuantConv2d(3, 8, 3, **bip), _bn(8, gen),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            qnn.QuantConv2d(8, 8, 3, **bip), _bn(8, gen),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            torch.nn.MaxPool2d(2),
            qnn.QuantConv2d(8, 16, 3, **bip), _bn(16, gen),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            torch.nn.Flatten(),
            qnn.QuantLinear(16 * 2 * 2, 16, **bip), _bn1d(16, gen),
            qnn.QuantIdentity(act_quant=act, return_quant_tensor=True),
            qnn.QuantLinear(16, 10, **bip))),
        # 2..4 bits: padding of an unsigned map, strides, dilation, an average pool
        "cnv_w4a2": ((3, 16, 16), torch.nn.Sequential(
            qnn.QuantIdentity(bit_width=4, return_quant_tensor=True),
            qnn.QuantConv2d(3, 8, 3, padding=1, weight_bit_width=3, bias=False), _bn(8, gen),
            qnn.QuantReLU(bit_width=2, return_quant_tensor=True),
            torch.nn.MaxPool2d(2),
            qnn.QuantConv2d(8, 8, 3, padding=2, dilation=2, weight_bit_width=4, bias=True),
            qnn.QuantReLU(bit_width=3, return_quant_tensor=True),
            qnn.QuantConv2d(8, 8, 3, stride=2, padding=(1, 0), weight_bit_width=2,
                            bias=False), _bn(8, gen),
            qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
            qnn.TruncAvgPool2d(2, bit_width=4),
            torch.nn.Flatten(),
            qnn.QuantLinear(8 * 2 * 1, 10, bias=True, weight_bit_width=4))),
        "residual": ((4, 8, 8), _Residual(gen)),
        # depthwise-separable: a depthwise 3x3 with multiplier 2 and stride 2, a pointwise
        # 1x1, global average pooling, a dense head
        "dw_sep": ((4, 9, 9), torch.nn.Sequential(
            qnn.QuantIdentity(bit_width=8, return_quant_tensor=True),
            qnn.QuantConv2d(4, 8, 3, groups=4, stride=2, padding=1, weight_bit_width=4,
                            bias=False), _bn(8, gen),
            qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
            qnn.QuantConv2d(8, 6, 1, weight_bit_width=4, bias=True), _bn(6, gen),
            qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
            torch.nn.AdaptiveAvgPool2d(1),
            qnn.QuantIdentity(bit_width=6, return_quant_tensor=True),
            torch.nn.Flatten(),
            qnn.QuantLinear(6, 4, bias=True, weight_bit_width=4))),
    }


@pytest.fixture(scope="module")
def qonnx_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("qonnx_cnn")
    files = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (shape, net) in _brevitas_nets().items():
            net.train()
            with torch.no_grad():  # a few passes in training mode set the activation scales
                for _ in range(3):
                    net(torch.randn(16, *shape) * 2)
            net.eval()
            files[name] = out / f"{name}.onnx"
            export_qonnx(net, torch.randn(1, *shape), str(files[name]), dynamo=False)
    return files


def _qonnx_run(path, X_real):
    """qonnx's executor, its one-node models at an IR version onnxruntime accepts."""
    make = onnx_exec.qonnx_make_model

    def lowered(graph, **kwargs):
        model = make(graph, **kwargs)
        model.ir_version = min(model.ir_version, 10)
        return model

    wrapper = ModelWrapper(str(inline_for_runtime(path, path.with_suffix(".rt.onnx"))))
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(onnx_exec, "qonnx_make_model", lowered)
        wrapper = wrapper.transform(InferShapes())
        iname, oname = wrapper.graph.input[0].name, wrapper.graph.output[0].name
        return np.stack([onnx_exec.execute_onnx(
            wrapper, {iname: x[None].astype(np.float32)})[oname][0] for x in X_real])


def _int_inputs(model, n, seed=0):
    dt = model.input_dtype
    X = np.random.default_rng(seed).integers(dt.lo, dt.hi + 1, size=(n, *model.input_shape))
    X[0], X[1] = dt.lo, dt.hi
    return X


@pytest.mark.parametrize("name,ops", [
    ("cnv_w1a1", ["conv2d", "conv2d", "maxpool2d", "conv2d", "linear", "linear"]),
    ("cnv_w4a2", ["conv2d", "maxpool2d", "conv2d", "conv2d", "sumpool2d", "linear"]),
    ("residual", ["conv2d", "conv2d", "sumpool2d", "add", "maxpool2d", "linear"]),
    ("dw_sep", ["conv2d", "conv2d", "sumpool2d", "linear"]),
])
def test_brevitas_cnn_equals_qonnx(qonnx_files, name, ops):
    imp = import_onnx(qonnx_files[name])
    model = imp.model
    assert imp.exact and [layer.op.value for layer in model.layers] == ops
    X = _int_inputs(model, 12)
    expect = _qonnx_run(qonnx_files[name], imp.input_scale * (X - imp.input_zero_point))
    got = imp.to_real(model.forward(X))
    assert got.shape == expect.shape
    # the last layer is a float Gemm in both: equal up to float32's own rounding
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-5 * np.abs(expect).max())
    # and every quantized level before it agrees exactly: the integer logits are the float
    # ones on the grid of the last layer's inputs
    levels = (expect - imp.output_offset) / imp.output_scale
    np.testing.assert_array_equal(np.round(levels).astype(np.int64), model.forward(X))


def test_cnv_w1a1_structure(qonnx_files):
    model = import_onnx(qonnx_files["cnv_w1a1"]).model
    conv1, conv2 = model.layers[0], model.layers[1]
    assert str(model.input_dtype) == "int8" and model.input_shape == (3, 12, 12)
    assert str(conv2.weight_dtype) == "bipolar" and str(conv2.in_dtype) == "bipolar"
    assert str(conv1.out_dtype) == "bipolar" and conv1.output.kind.value == "threshold"
    fc = model.layers[4]
    assert fc.in_shape == (16, 2, 2)  # reads the (C, H, W) flatten of the feature map


def test_residual_graph_form(qonnx_files):
    model = import_onnx(qonnx_files["residual"]).model
    add = next(layer for layer in model.layers if layer.op.value == "add")
    assert len(add.inputs) == 2 and not model.is_chain
    assert set(add.scales) == {1}  # one shared quantizer: equal scales
    # the second conv pads the signed int4 activation, whose levels 0..15 put real 0 at 8
    assert model.layers[0].pad_value == 0 and model.layers[1].pad_value == 8


def test_depthwise_fields(qonnx_files):
    dw = import_onnx(qonnx_files["dw_sep"]).model.layers[0]
    assert dw.groups == 4 and dw.weight.shape == (8, 1, 3, 3)
    assert dw.stride == (2, 2) and dw.padding == (1, 1, 1, 1)


def test_cli_import_and_run_cnn(qonnx_files, tmp_path):
    path = qonnx_files["cnv_w4a2"]
    imp = import_onnx(path)
    X = _int_inputs(imp.model, 3, seed=4)
    np.save(tmp_path / "x.npy", X)
    assert main(["import", str(path), "-o", str(tmp_path / "m")]) == 0
    out = tmp_path / "y.npy"
    assert main(["run", str(tmp_path / "m"), "--backend", "numpy", "--input",
                 str(tmp_path / "x.npy"), "--output", str(out)]) == 0
    np.testing.assert_array_equal(np.load(out), imp.model.forward(X))
    # the .onnx file itself, imported in memory
    assert main(["run", str(path), "--input", str(tmp_path / "x.npy"), "--output",
                 str(tmp_path / "y2.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y2.npy"), imp.model.forward(X))


@pytest.mark.verilator
@pytest.mark.parametrize("name", ["cnv_w1a1", "cnv_w4a2", "dw_sep"])
def test_imported_cnn_bit_exact_under_verilator(qonnx_files, name):
    """The hardware generated from Brevitas' exports (CNV-like chains, a depthwise block)
    equals numpy (which equals qonnx's executor) under random idle and back-pressure."""
    from nnaccel.gen.generate import generate
    from nnaccel.gen.plan import Options
    from nnaccel.sim.design import simulate

    model = import_onnx(qonnx_files[name]).model
    X = _int_inputs(model, 3, seed=5)
    design = generate(model, Options(max_lanes=16))
    outputs, result = simulate(design, X, idle=0.3, stall=0.3, seed=2)  # checks every output
    np.testing.assert_array_equal(np.asarray(outputs, dtype=np.int64).reshape(len(X), -1),
                                  model.forward(X).reshape(len(X), -1))
    assert result.cycles_total > 0


# ------------------------------------------------------------------ onnxruntime int8

class _Reader(CalibrationDataReader):
    def __init__(self, data):
        self.it = iter({"x": row[None]} for row in data)

    def get_next(self):
        return next(self.it, None)


class _TorchCnn(torch.nn.Module):
    def __init__(self, residual=False):
        super().__init__()
        self.residual = residual
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = torch.nn.Conv2d(8, 8, 1)
        self.fc = torch.nn.Linear(8 * 4 * 4, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
        y = torch.relu(self.c2(x))
        if self.residual:
            y = y + x
        y = torch.nn.functional.avg_pool2d(torch.relu(self.c3(y)), 2)
        return self.fc(torch.flatten(y, 1))


class _TorchBranches(torch.nn.Module):
    """Two convolutions concatenated, a depthwise convolution, global average pooling."""

    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(3, 6, 1)
        self.dw = torch.nn.Conv2d(10, 10, 3, groups=10, padding=1)
        self.fc = torch.nn.Linear(10, 5)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1)
        y = torch.nn.functional.adaptive_avg_pool2d(torch.relu(self.dw(y)), 1)
        return self.fc(torch.flatten(y, 1))


class _Block(torch.nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.c1 = torch.nn.Conv2d(cin, cout, 3, stride, 1)
        self.b1 = torch.nn.BatchNorm2d(cout)
        self.c2 = torch.nn.Conv2d(cout, cout, 3, 1, 1)
        self.b2 = torch.nn.BatchNorm2d(cout)
        self.sc = torch.nn.Conv2d(cin, cout, 1, stride) if stride != 1 else None

    def forward(self, x):
        y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
        return torch.relu(y + (x if self.sc is None else self.sc(x)))


class _ResNet8(torch.nn.Module):
    """MLPerf Tiny's image-classification ResNet-8: three residual stacks of 16/32/64
    filters, the last two with a strided 1x1 shortcut, global average pooling, dense."""

    def __init__(self):
        super().__init__()
        self.c = torch.nn.Conv2d(3, 16, 3, 1, 1)
        self.b = torch.nn.BatchNorm2d(16)
        self.stacks = torch.nn.Sequential(_Block(16, 16, 1), _Block(16, 32, 2),
                                          _Block(32, 64, 2))
        self.fc = torch.nn.Linear(64, 10)

    def forward(self, x):
        x = self.stacks(torch.relu(self.b(self.c(x))))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def ort_files(tmp_path_factory):
    out = tmp_path_factory.mktemp("ort_cnn")
    torch.manual_seed(3)
    files = {}
    cal = np.random.default_rng(0).normal(size=(32, 3, 16, 16)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for res, net in ((False, _TorchCnn(False)), (True, _TorchCnn(True)),
                         ("br", _TorchBranches()), ("r8", _ResNet8())):
            net.eval()
            src = out / f"float_{res}.onnx"
            torch.onnx.export(net, torch.randn(1, 3, 16, 16), str(src), dynamo=False,
                              input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
            for fmt in ("QDQ", "QOperator"):
                key = fmt + {False: "", True: "_res", "br": "_br", "r8": "_r8"}[res]
                files[key] = out / f"{key}.onnx"
                quantize_static(str(src), str(files[key]), _Reader(cal),
                                quant_format=getattr(QuantFormat, fmt), per_channel=True,
                                reduce_range=True)
    return files


@pytest.mark.parametrize("fmt,ops", [
    ("QDQ", ["conv2d", "maxpool2d", "conv2d", "conv2d", "sumpool2d", "linear"]),
    ("QOperator", ["conv2d", "maxpool2d", "conv2d", "conv2d", "sumpool2d", "linear"]),
    # the Concat's inputs have their own scales: QDQ requantizes the joined map, QOperator's
    # QLinearConcat each input not on the output's grid (1x1 sum pools with thresholds)
    ("QDQ_br", ["conv2d", "conv2d", "concat", "sumpool2d", "conv2d", "sumpool2d", "linear"]),
    ("QOperator_br", ["conv2d", "conv2d", "sumpool2d", "concat", "conv2d", "sumpool2d",
                      "linear"]),
])
def test_onnxruntime_cnn_within_one_lsb(ort_files, fmt, ops):
    imp = import_onnx(ort_files[fmt])
    model = imp.model
    assert [layer.op.value for layer in model.layers] == ops
    assert max(imp.max_error_lsb.values()) < 0.05
    X = _int_inputs(model, 200, seed=7)
    session = ort.InferenceSession(str(ort_files[fmt]))
    x_real = (imp.input_scale * (X - imp.input_zero_point)).astype(np.float32)
    expect = session.run(None, {"x": x_real})[0]
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(model.forward(X) - expect_q)
    assert diff.max() <= 1, f"{fmt}: {np.count_nonzero(diff)} differ, max {diff.max()}"
    # QDQ runs the average pool in float32: a window sum on an exact tie (1 in 8 here)
    # rounds by float32 noise, about 5% of them off the exact half-to-even; those (and on
    # the all-low and all-high inputs many windows tie) and requant's rare ones reach the
    # logits through the dense layer
    assert np.count_nonzero(diff) / diff.size < (0.08 if fmt.startswith("QDQ") else 0.02)


@pytest.mark.parametrize("fmt", ["QDQ_r8", "QOperator_r8"])
def test_onnxruntime_resnet8_within_one_lsb(ort_files, fmt):
    imp = import_onnx(ort_files[fmt])
    model = imp.model
    ops = [layer.op.value for layer in model.layers]
    assert ops.count("add") == 3 and ops.count("conv2d") == 9 and ops[-2:] == ["sumpool2d",
                                                                                "linear"]
    assert max(imp.max_error_lsb.values()) < 0.01
    X = _int_inputs(model, 100, seed=7)
    session = ort.InferenceSession(str(ort_files[fmt]))
    x_real = (imp.input_scale * (X - imp.input_zero_point)).astype(np.float32)
    expect = session.run(None, {"x": x_real})[0]
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(model.forward(X) - expect_q)
    assert diff.max() <= 1, f"{fmt}: {np.count_nonzero(diff)} differ, max {diff.max()}"
    assert np.count_nonzero(diff) / diff.size < 0.1


@pytest.mark.verilator
def test_onnxruntime_cnn_bit_exact_under_verilator(ort_files):
    """The int8 CNN (conv, max pool, average pool, dense) from onnxruntime, imported and
    generated, equals numpy under random idle and back-pressure."""
    from nnaccel.gen.generate import generate
    from nnaccel.gen.plan import Options
    from nnaccel.sim.design import simulate

    model = import_onnx(ort_files["QOperator"]).model
    X = _int_inputs(model, 3, seed=5)
    design = generate(model, Options(max_lanes=16))
    outputs, _ = simulate(design, X, idle=0.3, stall=0.3, seed=2)  # checks every output
    np.testing.assert_array_equal(np.asarray(outputs, dtype=np.int64), model.forward(X))


@pytest.mark.parametrize("fmt", ["QDQ_res", "QOperator_res"])
def test_onnxruntime_residual_within_one_lsb(ort_files, fmt):
    """onnxruntime quantizes the two branches of an add with unrelated float scales: the add
    layer's integer scales below 2^16 approximate their ratio (bound in max_error_lsb), and
    its threshold stage rounds once more, as onnxruntime does."""
    imp = import_onnx(ort_files[fmt])
    model = imp.model
    add = next(layer for layer in model.layers if layer.op.value == "add")
    assert max(add.scales) < 1 << 16 and not imp.exact
    assert imp.max_error_lsb[add.name] < 0.01
    X = _int_inputs(model, 200, seed=7)
    session = ort.InferenceSession(str(ort_files[fmt]))
    x_real = (imp.input_scale * (X - imp.input_zero_point)).astype(np.float32)
    expect = session.run(None, {"x": x_real})[0]
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(model.forward(X) - expect_q)
    assert diff.max() <= 1, f"{fmt}: {np.count_nonzero(diff)} differ, max {diff.max()}"
    # the residual net's average pool meets more ties (513 of 25600 outputs differ there)
    assert np.count_nonzero(diff) / diff.size < (0.25 if fmt.startswith("QDQ") else 0.02)


# ------------------------------------------------------------------ hand-built graphs

def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _graph(path, nodes, inits, in_shape, out_shape):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                     helper.make_opsetid(Q, 1)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _quant(x, y, s, z, b, signed=0, name=None):
    return helper.make_node("Quant", [x, s, z, b], [y], domain=Q, signed=signed, narrow=0,
                            rounding_mode="ROUND", name=name or y)


_QINITS = [_const("s", 0.5), _const("z", 0.0), _const("b4", 4.0), _const("s2", 0.25),
           _const("s3", 0.3)]


def _conv_graph(tmp_path, conv_attrs, weight_shape=(2, 2, 3, 3), in_shape=(1, 2, 6, 6),
                out_shape=(1, 2, 6, 6), after=()):
    """x -> Quant(uint4) -> Conv(int weights) -> Quant(uint4) [-> after] -> y."""
    w = np.random.default_rng(1).integers(-3, 4, weight_shape)
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             helper.make_node("Conv", ["xq", "w"], ["acc"], name="conv", **conv_attrs),
             _quant("acc", "y" if not after else "q1", "s", "z", "b4", name="q1"), *after]
    return _graph(tmp_path / "m.onnx", nodes, [*_QINITS, _const("w", w)], list(in_shape),
                  list(out_shape))


def _refused(path, *needles, tmp_path=None):
    with pytest.raises(OnnxError) as info:
        import_onnx(path)
    for needle in needles:
        assert needle in str(info.value), str(info.value)
    if tmp_path is not None:  # the CLI: exit status 2, nothing written
        out = tmp_path / "out"
        assert main(["import", str(path), "-o", str(out)]) == 2
        assert not out.exists()


def test_hand_built_conv_exact(tmp_path):
    """A padded, strided conv with SAME_UPPER padding against qonnx's executor."""
    path = _conv_graph(tmp_path, {"auto_pad": "SAME_UPPER", "strides": [2, 1]},
                       out_shape=(1, 2, 3, 6))
    imp = import_onnx(path)
    conv = imp.model.layers[0]
    assert conv.padding == (0, 1, 1, 1) and conv.stride == (2, 1)  # the extra row at the end
    X = _int_inputs(imp.model, 30, seed=2)
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(X)), expect)


@pytest.mark.parametrize("scale", ["s", "s2"])
def test_quantizer_after_flatten(tmp_path, scale):
    """A quantizer on the flattened map: a no-op on the same grid, else a 1x1 sum pool on the
    map before it (element-wise, so the flatten order is kept)."""
    after = [helper.make_node("Flatten", ["q1"], ["f"], name="flat"),
             _quant("f", "fq", scale, "z", "b4", name="q2"),
             helper.make_node("MatMul", ["fq", "w2"], ["y"], name="fc")]
    path = _conv_graph(tmp_path, {"pads": [1, 1, 1, 1]}, out_shape=(1, 3), after=after)
    model = onnx.load(str(path))
    w2 = np.random.default_rng(6).integers(-4, 5, (72, 3)).astype(np.float32)
    model.graph.initializer.append(_const("w2", w2))
    onnx.save(model, str(path))
    imp = import_onnx(path)
    ops = [layer.op.value for layer in imp.model.layers]
    assert ops == (["conv2d", "linear"] if scale == "s" else ["conv2d", "sumpool2d", "linear"])
    X = _int_inputs(imp.model, 30, seed=12)
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_allclose(imp.to_real(imp.model.forward(X)), expect, rtol=1e-6)


def test_unknown_auto_pad(tmp_path):
    path = _conv_graph(tmp_path, {"auto_pad": "SAME_MIDDLE"})
    _refused(path, "'conv' (Conv)", "'auto_pad'", tmp_path=tmp_path)


def test_groups_not_dividing(tmp_path):
    path = _conv_graph(tmp_path, {"group": 3}, weight_shape=(3, 1, 3, 3), in_shape=(1, 2, 6, 6),
                       out_shape=(1, 3, 4, 4))
    _refused(path, "'conv' (Conv)", "'group'", "do not divide", tmp_path=tmp_path)


def test_maxpool_before_quantizer(tmp_path):
    w = np.ones((2, 2, 1, 1))
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             helper.make_node("Conv", ["xq", "w"], ["acc"], name="conv"),
             helper.make_node("MaxPool", ["acc"], ["p"], name="pool", kernel_shape=[2, 2]),
             _quant("p", "y", "s", "z", "b4")]
    path = _graph(tmp_path / "m.onnx", nodes, [*_QINITS, _const("w", w)], [1, 2, 4, 4],
                  [1, 2, 2, 2])
    _refused(path, "'pool' (MaxPool)", "'input 0'", "quantize", tmp_path=tmp_path)


def test_unquantized_fork_refused(tmp_path):
    w = np.ones((2, 2, 1, 1))
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             helper.make_node("Conv", ["xq", "w"], ["acc"], name="conv"),
             _quant("acc", "a", "s", "z", "b4", name="qa"),
             _quant("acc", "b", "s2", "z", "b4", name="qb"),
             helper.make_node("Concat", ["a", "b"], ["y"], name="cat", axis=1)]
    path = _graph(tmp_path / "m.onnx", nodes, [*_QINITS, _const("w", w)], [1, 2, 4, 4],
                  [1, 4, 4, 4])
    _refused(path, "'qa' (Quant)", "read by several nodes", tmp_path=tmp_path)


def test_partial_pool_window(tmp_path):
    after = [helper.make_node("MaxPool", ["q1"], ["y"], name="pool", kernel_shape=[4, 4],
                              strides=[4, 4], ceil_mode=1)]
    path = _conv_graph(tmp_path, {"pads": [1, 1, 1, 1]}, out_shape=(1, 2, 2, 2), after=after)
    _refused(path, "'pool' (MaxPool)", "'ceil_mode'", tmp_path=tmp_path)


def test_bipolar_padding_refused(tmp_path):
    w = np.ones((2, 2, 3, 3))
    nodes = [helper.make_node("BipolarQuant", ["x", "s"], ["xq"], domain=Q, name="bq"),
             helper.make_node("Conv", ["xq", "w"], ["acc"], name="conv", pads=[1, 1, 1, 1]),
             _quant("acc", "y", "s", "z", "b4")]
    path = _graph(tmp_path / "m.onnx", nodes, [*_QINITS, _const("w", w)], [1, 2, 4, 4],
                  [1, 2, 4, 4])
    _refused(path, "'conv' (Conv)", "'pads'", "bipolar", tmp_path=tmp_path)


def _add_graph(tmp_path, s_a, s_b):
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             _quant("xq", "a", s_a, "z", "b4", name="qa"),
             _quant("xq", "b", s_b, "z", "b4", name="qb"),
             helper.make_node("Add", ["a", "b"], ["sum"], name="join"),
             _quant("sum", "y", "s", "z", "b4", name="qy")]
    return _graph(tmp_path / "m.onnx", nodes, _QINITS, [1, 2, 3, 3], [1, 2, 3, 3])


def test_add_integer_ratio_exact(tmp_path):
    path = _add_graph(tmp_path, "s", "s2")  # 0.5 : 0.25 = 2 : 1
    imp = import_onnx(path)
    add = next(layer for layer in imp.model.layers if layer.op.value == "add")
    assert add.scales == (2, 1)
    X = _int_inputs(imp.model, 40, seed=3)
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(X)), expect)


def test_sum_into_conv_without_quantizer(tmp_path):
    """Brevitas may feed the sum of two branches of one scale straight to a convolution: the
    add outputs its exact integer sum (an identity stage) and the padded conv reads it."""
    w = np.random.default_rng(3).integers(-3, 4, (2, 2, 3, 3))
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             _quant("xq", "a", "s2", "z", "b4", signed=1, name="qa"),  # levels 0..15, zero 8
             helper.make_node("Add", ["a", "xq"], ["sum"], name="join"),
             helper.make_node("Conv", ["sum", "w"], ["acc"], name="conv", pads=[1, 1, 1, 1]),
             _quant("acc", "y", "s", "z", "b4", name="qy")]
    path = _graph(tmp_path / "m.onnx", nodes, [*_QINITS, _const("w", w)], [1, 2, 4, 4],
                  [1, 2, 4, 4])
    imp = import_onnx(path)
    add = next(layer for layer in imp.model.layers if layer.op.value == "add")
    assert add.output.kind.value == "identity" and add.scales == (1, 2)
    assert imp.model.layers[-1].pad_value == 8  # the sum's real zero: 1 * 8 + 2 * 0
    X = _int_inputs(imp.model, 40, seed=11)
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(X)), expect)


def test_add_non_integer_ratio_refused(tmp_path):
    path = _add_graph(tmp_path, "s", "s3")  # 0.5 : 0.3 in float32: no small integer ratio
    _refused(path, "'join' (Add)", "ratio of integers", tmp_path=tmp_path)


def _concat_graph(tmp_path, after):
    """Two requantizations of the input, scales 0.5 and 0.25, concatenated, then ``after``."""
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             _quant("xq", "a", "s2", "z", "b4", name="qa"),
             helper.make_node("Relu", ["xq"], ["r"], name="relu"),
             _quant("r", "b", "s", "z", "b4", name="qb"),
             helper.make_node("Concat", ["a", "b"], ["c"], name="cat", axis=1), *after]
    inits = [*_QINITS, _const("w", np.ones((2, 4, 1, 1)))]
    return _graph(tmp_path / "m.onnx", nodes, inits, [1, 2, 3, 3],
                  [1, 2 if len(after) > 1 else 4, 3, 3])


def test_concat_unequal_scales_into_conv_refused(tmp_path):
    after = [helper.make_node("Conv", ["c", "w"], ["acc"], name="conv"),
             _quant("acc", "y", "s", "z", "b4", name="qy")]
    path = _concat_graph(tmp_path, after)
    _refused(path, "'conv' (Conv)", "per-channel activation scales", tmp_path=tmp_path)


def test_concat_unequal_scales_requantized(tmp_path):
    """Channels of two scales concatenated, then one quantizer: exact, per channel."""
    path = _concat_graph(tmp_path, [_quant("c", "y", "s", "z", "b4", name="qy")])
    imp = import_onnx(path)
    ops = [layer.op.value for layer in imp.model.layers]
    assert ops == ["sumpool2d", "concat", "sumpool2d"]  # qa requantizes; qb is a no-op
    X = _int_inputs(imp.model, 40, seed=6)
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(X)), expect)


def test_concat_equal_scales(tmp_path):
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             helper.make_node("MaxPool", ["xq"], ["a"], name="pool", kernel_shape=[1, 1]),
             helper.make_node("Concat", ["xq", "a", "xq"], ["y"], name="cat", axis=1)]
    path = _graph(tmp_path / "m.onnx", nodes, _QINITS, [1, 2, 3, 3], [1, 6, 3, 3])
    imp = import_onnx(path)
    assert [layer.op.value for layer in imp.model.layers] == ["maxpool2d", "concat"]
    X = _int_inputs(imp.model, 10, seed=5)
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(X)), expect)


def test_conv_integer_pads_with_the_zero_point(tmp_path):
    """QuantizeLinear (zero point 100) -> ConvInteger padded -> rescale -> QuantizeLinear,
    against onnxruntime: the padding is the input's zero point (pad_value 100)."""
    w = np.random.default_rng(4).integers(-60, 61, (3, 2, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
             helper.make_node("ConvInteger", ["xq", "w", "xz"], ["acc"], name="conv",
                              pads=[1, 2, 1, 0]),
             helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["accf", "k"], ["real"], name="rescale"),
             helper.make_node("QuantizeLinear", ["real", "ys", "yz"], ["yq"], name="qy"),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dqy")]
    inits = [_const("xs", 0.05), _const("xz", 100, np.uint8), _const("w", w, np.int8),
             _const("k", 0.05 * 0.01), _const("ys", 0.02), _const("yz", 128, np.uint8)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "ci.onnx"
    onnx.save(model, str(path))
    imp = import_onnx(path)
    conv = imp.model.layers[0]
    assert conv.pad_value == 100 and conv.padding == (1, 2, 1, 0)
    X = _int_inputs(imp.model, 60, seed=8)
    session = ort.InferenceSession(str(path))
    expect = np.concatenate([session.run(None, {"x": (imp.input_scale * (x[None] - 100))
                                                .astype(np.float32)})[0] for x in X])
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(imp.model.forward(X) - expect_q)
    assert diff.max() <= 1 and np.count_nonzero(diff) / diff.size < 0.01


def _qlinear_add_graph(tmp_path, b_scale, x_scale=0.05, y_scale=0.1):
    """xq (scale ``x_scale``) + QLinearConv(xq) (scale ``b_scale``) with QLinearAdd,
    onnxruntime's contrib op, then DequantizeLinear (scale ``y_scale``)."""
    w = np.random.default_rng(5).integers(-50, 51, (2, 2, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
             helper.make_node("QLinearConv", ["xq", "xs", "xz", "w", "ws", "wz", "bs", "bz"],
                              ["b"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("QLinearAdd", ["xq", "xs", "xz", "b", "bs", "bz", "ys", "yz"],
                              ["yq"], name="join", domain="com.microsoft"),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dqy")]
    inits = [_const("xs", x_scale), _const("xz", 10, np.uint8), _const("w", w, np.int8),
             _const("ws", 0.004), _const("wz", 0, np.int8), _const("bs", b_scale),
             _const("bz", 0, np.uint8), _const("ys", y_scale), _const("yz", 5, np.uint8)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                     helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    path = tmp_path / "qadd.onnx"
    onnx.save(model, str(path))
    return path


def test_qlinear_add_integer_ratio(tmp_path):
    path = _qlinear_add_graph(tmp_path, 0.1)  # 0.05 : 0.1 = 1 : 2
    imp = import_onnx(path)
    add = imp.model.layers[-1]
    assert add.op.value == "add" and add.scales == (1, 2)
    X = _int_inputs(imp.model, 60, seed=9)
    session = ort.InferenceSession(str(path))
    expect = np.concatenate([session.run(None, {"x": (imp.input_scale * (x[None] - 10))
                                                .astype(np.float32)})[0] for x in X])
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(imp.model.forward(X) - expect_q)
    assert diff.max() <= 1 and np.count_nonzero(diff) / diff.size < 0.01


def test_scale_ratio_fractions():
    from fractions import Fraction

    from nnaccel.gen.onnx.state import _ratio

    f32 = [Fraction(float(np.float32(v))) for v in (0.05, 0.07, 0.0123456, 0.0333331)]
    assert _ratio(f32[0] / f32[1], 65535) == (5, 7)  # the simplest within float32 precision
    r = f32[2] / f32[3]
    p, q = _ratio(r, 65535)
    assert max(p, q) <= 65535 and abs(Fraction(p, q) - r) <= abs(r.limit_denominator(65535) - r)
    assert _ratio(Fraction(1, 10**9), 65535) == (1, 65535)
    assert _ratio(Fraction(10**9), 65535) == (65535, 1)


def test_qlinear_add_other_ratio_approximated(tmp_path):
    # scales without small ratios to the output's (0.05 : 0.1 makes every other sum a tie,
    # which onnxruntime's float32 formula and the integer stage may break differently)
    path = _qlinear_add_graph(tmp_path, 0.0713, x_scale=0.0517, y_scale=0.1093)
    imp = import_onnx(path)
    add = imp.model.layers[-1]
    assert max(add.scales) < 1 << 16 and imp.max_error_lsb[add.name] < 1e-3 and not imp.exact
    X = _int_inputs(imp.model, 60, seed=9)
    session = ort.InferenceSession(str(path))
    expect = np.concatenate([session.run(None, {"x": (imp.input_scale * (x[None] - 10))
                                                .astype(np.float32)})[0] for x in X])
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(imp.model.forward(X) - expect_q)
    assert diff.max() <= 1 and np.count_nonzero(diff) / diff.size < 0.02


def test_clip_folds_into_thresholds(tmp_path):
    """ReLU6-like Clip(0, 1.5) before a uint4 quantizer of range 0..7.5: the clip binds, and
    the threshold stage holds it exactly."""
    after_clip = [helper.make_node("Clip", ["acc", "lo", "hi"], ["c"], name="clip"),
                  _quant("c", "y", "s", "z", "b4", name="qy")]
    w = np.random.default_rng(7).integers(-3, 4, (2, 2, 3, 3))
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             helper.make_node("Conv", ["xq", "w"], ["acc"], name="conv", pads=[1, 1, 1, 1]),
             *after_clip]
    inits = [*_QINITS, _const("w", w), _const("lo", 0.0), _const("hi", 1.5)]
    path = _graph(tmp_path / "m.onnx", nodes, inits, [1, 2, 4, 4], [1, 2, 4, 4])
    imp = import_onnx(path)
    X = _int_inputs(imp.model, 30, seed=13)
    got = imp.to_real(imp.model.forward(X))
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_array_equal(got, expect)
    assert got.max() == 1.5


def _qdq_clip_graph(tmp_path, hi):
    w = np.random.default_rng(8).integers(-60, 61, (3, 2, 3, 3)).astype(np.int8)
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="qx"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dqx"),
             helper.make_node("DequantizeLinear", ["w", "ws"], ["wd"], name="dqw"),
             helper.make_node("Conv", ["xd", "wd"], ["acc"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["acc", "lo", "hi"], ["c"], name="clip"),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["yq"], name="qy"),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"], name="dqy")]
    inits = [_const("xs", 0.05), _const("xz", 128, np.uint8), _const("w", w, np.int8),
             _const("ws", 0.01), _const("lo", 0.0), _const("hi", hi), _const("ys", 0.02),
             _const("yz", 0, np.uint8)]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 5, 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "clip.onnx"))
    return tmp_path / "clip.onnx"


def test_relu6_before_quantize_linear(tmp_path):
    """Clip(0, 6) before a uint8 QuantizeLinear whose range ends at 5.1: a ReLU; onnxruntime
    agrees within one LSB."""
    path = _qdq_clip_graph(tmp_path, 6.0)
    imp = import_onnx(path)
    X = _int_inputs(imp.model, 40, seed=14)
    session = ort.InferenceSession(str(path))
    expect = np.concatenate([session.run(None, {"x": (imp.input_scale * (x[None] - 128))
                                                .astype(np.float32)})[0] for x in X])
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    diff = np.abs(imp.model.forward(X) - expect_q)
    assert diff.max() <= 1 and np.count_nonzero(diff) / diff.size < 0.01


def test_clip_inside_the_range_refused(tmp_path):
    path = _qdq_clip_graph(tmp_path, 2.0)  # clips at 2.0 inside the range 0..5.1
    _refused(path, "'qy' (QuantizeLinear)", "Clip", tmp_path=tmp_path)


def _multithreshold_graph(tmp_path, layout):
    w = np.random.default_rng(9).integers(-3, 4, (3, 2, 3, 3))
    t = np.sort(np.random.default_rng(10).integers(-20, 21, (3, 3)), axis=1).astype(np.float32)
    nodes = [_quant("x", "xq", "s", "z", "b4"),
             helper.make_node("Conv", ["xq", "w"], ["acc"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("MultiThreshold", ["acc", "t"], ["y"], name="mt", domain=Q,
                              out_dtype="UINT2", data_layout=layout)]
    inits = [*_QINITS, _const("w", w), _const("t", t)]
    return _graph(tmp_path / "m.onnx", nodes, inits, [1, 2, 4, 4], [1, 3, 4, 4])


def test_multithreshold_on_conv(tmp_path):
    """FINN's MultiThreshold after a convolution: per output channel (NCHW), as qonnx."""
    path = _multithreshold_graph(tmp_path, "NCHW")
    imp = import_onnx(path)
    assert imp.model.layers[0].output.kind.value == "threshold"
    X = _int_inputs(imp.model, 30, seed=15)
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(X)), expect)


def test_multithreshold_channels_last_refused(tmp_path):
    _refused(_multithreshold_graph(tmp_path, "NHWC"), "'mt' (MultiThreshold)", "'data_layout'",
             tmp_path=tmp_path)


@pytest.mark.parametrize("op,attrs,field", [
    ("Conv", {"strides": [0, 1]}, "'strides'"),
    ("Conv", {"pads": [-1, 0, 0, 0]}, "'pads'"),
    ("Conv", {"dilations": [5, 5]}, "'kernel_shape'"),  # the dilated window exceeds the map
    ("AveragePool", {"kernel_shape": [0, 1]}, "'kernel_shape'"),
    ("AveragePool", {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]}, "'pads'"),  # 1..4 elements
    ("MaxPool", {"kernel_shape": [2, 2], "dilations": [2, 2]}, "'dilations'"),
])
def test_bad_window_attributes(tmp_path, op, attrs, field):
    if op == "Conv":
        path = _conv_graph(tmp_path, attrs)
    else:
        after = [helper.make_node(op, ["q1"], ["y"], name="win", **attrs)]
        path = _conv_graph(tmp_path, {"pads": [1, 1, 1, 1]}, after=after, out_shape=(1, 2, 3, 3))
    _refused(path, f"({op})", field, tmp_path=tmp_path)


def _pad_graph(tmp_path, consumer, pads=(0, 0, 1, 2, 0, 0, 1, 0), value=0.0):
    w = np.random.default_rng(11).integers(-3, 4, (2, 2, 3, 3))
    nodes = [_quant("x", "xq", "s", "z", "b4", signed=1),  # int4: real 0 is level 0
             helper.make_node("Pad", ["xq", "pads", "cv"], ["xp"], name="pad")]
    if consumer == "Conv":
        nodes += [helper.make_node("Conv", ["xp", "w"], ["acc"], name="conv",
                                   pads=[0, 1, 0, 1]),
                  _quant("acc", "y", "s", "z", "b4", name="qy")]
        out = [1, 2, 4, 6]
    else:
        nodes += [helper.make_node("MaxPool", ["xp"], ["y"], name="pool", kernel_shape=[2, 2])]
        out = [1, 2, 2, 2]
    inits = [*_QINITS, _const("w", w), _const("pads", list(pads), np.int64),
             _const("cv", value)]
    return _graph(tmp_path / "m.onnx", nodes, inits, [1, 2, 4, 4], out)


def test_pad_taken_over_by_conv(tmp_path):
    path = _pad_graph(tmp_path, "Conv")
    imp = import_onnx(path)
    conv = imp.model.layers[0]
    assert conv.padding == (1, 3, 1, 1) and conv.pad_value == 0  # Pad's plus the Conv's
    X = _int_inputs(imp.model, 30, seed=16)
    expect = _qonnx_run(path, imp.input_scale * (X - imp.input_zero_point))
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(X)), expect)


@pytest.mark.parametrize("consumer,kwargs,needle", [
    ("MaxPool", {}, "only right before a convolution"),
    ("Conv", {"value": 0.25}, "no level"),  # half a step of the 0.5 grid
    ("Conv", {"pads": (0, 1, 0, 0, 0, 0, 0, 0)}, "only non-negative padding of H and W"),
])
def test_pad_refused(tmp_path, consumer, kwargs, needle):
    _refused(_pad_graph(tmp_path, consumer, **kwargs), needle, tmp_path=tmp_path)
