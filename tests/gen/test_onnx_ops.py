"""ONNX import of single operators against the reference executors, on hand-built graphs.

QONNX ``Trunc`` (versions 1 and 2) is compared with qonnx's own executor, and the static
``MatMulInteger`` form with onnxruntime, exhaustively or over many inputs: the integer model
must reproduce the float graph on its integer grid.
"""

import warnings

import numpy as np
import pytest

from nnaccel.cli import main

onnx = pytest.importorskip("onnx", reason="the 'onnx' extra is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from nnaccel.gen.onnx import OnnxError, import_onnx  # noqa: E402

Q = "qonnx.custom_op.general"


def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _save(path, nodes, inits, k, m, qonnx_version=1):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                     helper.make_opsetid(Q, qonnx_version)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _qonnx_run(path, X):
    """qonnx's executor on each row of X (its one-node models at an IR onnxruntime accepts)."""
    pytest.importorskip("qonnx", reason="the 'onnx' extra (qonnx) is not installed")
    pytest.importorskip("onnxruntime", reason="the 'onnx' extra is not installed")
    from qonnx.core import onnx_exec
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    make = onnx_exec.qonnx_make_model

    def lowered(graph, **kwargs):
        model = make(graph, **kwargs)
        model.ir_version = min(model.ir_version, 10)
        return model

    wrapper = ModelWrapper(str(path))
    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as mp:
        warnings.simplefilter("ignore")
        mp.setattr(onnx_exec, "qonnx_make_model", lowered)
        wrapper = wrapper.transform(InferShapes())
        return np.stack([onnx_exec.execute_onnx(
            wrapper, {"x": x[None].astype(np.float32)})["y"].reshape(-1) for x in X])


def _inputs(w, n=300, top=7):
    """Random uint3 inputs with, for every output, the two that reach its extremes."""
    X = np.random.default_rng(2).integers(0, top + 1, size=(n, w.shape[1]))
    extremes = [np.where(w[j] > 0, top, 0) for j in range(w.shape[0])]
    extremes += [np.where(w[j] < 0, top, 0) for j in range(w.shape[0])]
    return np.concatenate([X, extremes])


def _trunc_model(tmp_path, trunc_inputs, trunc_inits, version, *, scale=0.5, **attrs):
    """x -> Quant(uint3) -> MatMul(int4 weights) -> Mul scale -> Trunc -> y."""
    w = np.array([[3, -8, 7], [-5, 2, 0], [7, 7, -8], [1, -3, 4]])
    inits = [_const("s", 1.0), _const("z", 0.0), _const("b3", 3.0), _const("w", w),
             _const("k", scale), *trunc_inits]
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b3"], ["xq"], domain=Q, signed=0,
                              narrow=0, rounding_mode="ROUND"),
             helper.make_node("MatMul", ["xq", "w"], ["acc"], name="fc"),
             helper.make_node("Mul", ["acc", "k"], ["sc"], name="scale"),
             helper.make_node("Trunc", ["sc", *trunc_inputs], ["y"], name="trunc", domain=Q,
                              **attrs)]
    return _save(tmp_path / f"trunc_v{version}.onnx", nodes, inits, 4, 3, version)


def _check_against_qonnx(path):
    imp = import_onnx(path)
    assert imp.exact
    model = imp.model
    assert [layer.output.kind.value for layer in model.layers] == ["threshold"]
    X = _inputs(imp.model.layers[0].weight)
    expect = _qonnx_run(path, X)
    np.testing.assert_array_equal(imp.to_real(model.forward(X)), expect)
    return imp, expect


@pytest.mark.parametrize("mode", ["FLOOR", "ROUND", "CEIL"])
def test_trunc_v1_equals_qonnx(tmp_path, mode):
    # v1: q = mode(round(x / s + zp) / 2**(in - out)), output (q - zp) * s, no clamp
    path = _trunc_model(tmp_path, ["ts", "tz", "tin", "tout"],
                        [_const("ts", 0.5), _const("tz", 0.0), _const("tin", 8.0),
                         _const("tout", 4.0)], 1, rounding_mode=mode)
    imp, expect = _check_against_qonnx(path)
    # 16 = 2**(8 - 4): the levels really are the accumulator truncated by four bits
    assert len(np.unique(expect)) > 8


@pytest.mark.parametrize("signed,narrow,mode", [(1, 0, "FLOOR"), (1, 1, "ROUND"),
                                                (0, 0, "FLOOR"), (1, 0, "CEIL")])
def test_trunc_v2_equals_qonnx(tmp_path, signed, narrow, mode):
    # v2: divides by the power of two nearest out_scale / scale and clamps to the output bits
    path = _trunc_model(tmp_path, ["ts", "tz", "tin", "tos", "tout"],
                        [_const("ts", [0.5, 0.5, 0.25]), _const("tz", 0.0),
                         _const("tin", 8.0), _const("tos", [4.0, 2.0, 2.0]),
                         _const("tout", 3.0)], 2, rounding_mode=mode, signed=signed,
                        narrow=narrow)
    imp, expect = _check_against_qonnx(path)
    lo = -4 + narrow if signed else 0
    hi = 3 if signed else 7
    scale = np.array([4.0, 2.0, 2.0])
    assert (expect / scale).min() >= lo and (expect / scale).max() <= hi
    # the clamp is reached at both ends on this data (signed) or at the top (unsigned)
    assert (expect / scale).max() == hi and (not signed or (expect / scale).min() == lo)


def test_trunc_v2_fractional_zero_point_refused(tmp_path):
    path = _trunc_model(tmp_path, ["ts", "tz", "tin", "tos", "tout"],
                        [_const("ts", 0.5), _const("tz", 3.0), _const("tin", 8.0),
                         _const("tos", 2.0), _const("tout", 3.0)], 2, rounding_mode="FLOOR")
    out = tmp_path / "out"
    with pytest.raises(OnnxError) as info:
        import_onnx(path)
    assert "trunc" in str(info.value) and "input 2" in str(info.value)
    assert main(["import", str(path), "-o", str(out)]) == 2
    assert not out.exists()


def test_trunc_without_output_width_refused(tmp_path):
    path = _trunc_model(tmp_path, ["ts", "tz", "tin"],
                        [_const("ts", 0.5), _const("tz", 0.0), _const("tin", 8.0)], 1,
                        rounding_mode="FLOOR")
    with pytest.raises(OnnxError, match="input 4"):
        import_onnx(path)


# ------------------------------------------------------------------ MatMulInteger


def _matmulinteger_model(tmp_path, w_zero_point):
    """The static integer form: QuantizeLinear -> MatMulInteger -> Cast -> Mul -> Add ->
    QuantizeLinear -> DequantizeLinear."""
    rng = np.random.default_rng(4)
    k, m = 12, 5
    # 7-bit weights, as onnxruntime's quantizer makes them with reduce_range: its x86 u8 x s8
    # kernel adds pairs of products in saturating 16-bit lanes, wrong beyond |w| = 64
    wq = rng.integers(-60, 61, size=(k, m)) + w_zero_point
    inits = [_const("xs", 0.05), _const("xz", 7, np.uint8), _const("wq", wq, np.int8),
             _const("wz", w_zero_point, np.int8), _const("deq", 0.05 * 0.004),
             _const("b", rng.normal(size=m)), _const("ys", 0.03), _const("yz", 0, np.int8)]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("MatMulInteger", ["xq", "wq", "xz", "wz"], ["acc"], name="fc"),
             helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["accf", "deq"], ["real"]),
             helper.make_node("Add", ["real", "b"], ["pre"]),
             helper.make_node("QuantizeLinear", ["pre", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["y"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, m])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / "mmi.onnx"
    onnx.save(model, str(path))
    return path, k


@pytest.mark.parametrize("w_zero_point", [0, 3])
def test_matmulinteger_within_one_lsb_of_onnxruntime(tmp_path, w_zero_point):
    ort = pytest.importorskip("onnxruntime", reason="the 'onnx' extra is not installed")
    path, k = _matmulinteger_model(tmp_path, w_zero_point)
    imp = import_onnx(path)
    model = imp.model
    assert str(model.input_dtype) == "uint8"
    assert [layer.output.kind.value for layer in model.layers] == ["requant"]
    assert max(imp.max_error_lsb.values()) < 0.05  # the stated bound of the conversion
    X = np.random.default_rng(5).integers(0, 256, size=(3000, k))
    X[0], X[1] = 0, 255
    x_real = (imp.input_scale * (X - imp.input_zero_point)).astype(np.float32)
    session = ort.InferenceSession(str(path))
    expect = np.concatenate([session.run(None, {"x": row[None]})[0] for row in x_real])
    expect_q = np.round((expect - imp.output_offset) / imp.output_scale).astype(np.int64)
    got = model.forward(X)
    diff = np.abs(got - expect_q)
    assert diff.max() <= 1, f"{np.count_nonzero(diff)} differ, max {diff.max()}"
    assert np.count_nonzero(diff) / diff.size < 0.02
    # and the weights are the zero-point-corrected integers of the file
    wq = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[2]).astype(np.int64)
    np.testing.assert_array_equal(model.layers[0].weight, (wq - w_zero_point).T)
