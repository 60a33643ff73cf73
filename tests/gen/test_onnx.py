"""ONNX import: SPEC section 5 treatment of bad files, on small hand-built graphs."""

import numpy as np
import pytest

from nnaccel.cli import main

onnx = pytest.importorskip("onnx", reason="the 'onnx' extra is not installed")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from nnaccel.gen.onnx import OnnxError, import_onnx  # noqa: E402

Q = "qonnx.custom_op.general"


def _const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _save(tmp_path, nodes, inits, in_shape=(1, 4), out_shape=(1, 3), name="m.onnx"):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                     helper.make_opsetid(Q, 1)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _mlp(tmp_path, after=(), weights=None, in_shape=(1, 4), **kw):
    """x -> Quant(uint4) -> MatMul(int weights) -> Mul 0.5 -> Add -> [after] -> y."""
    rng = np.random.default_rng(1)
    w = rng.integers(-3, 4, size=(4, 3)) if weights is None else weights
    inits = [_const("s", 1.0), _const("z", 0.0), _const("b4", 4.0), _const("w", w),
             _const("k", 0.5), _const("c", [0.25, -1.75, 3.0])]
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b4"], ["xq"], domain=Q, signed=0,
                              narrow=0, rounding_mode="ROUND"),
             helper.make_node("MatMul", ["xq", "w"], ["acc"], name="fc"),
             helper.make_node("Mul", ["acc", "k"], ["sc"], name="scale"),
             helper.make_node("Add", ["sc", "c"], ["h" if after else "y"], name="bias")]
    prev = "h"
    for i, (op, extra_inputs, extra_inits, attrs) in enumerate(after):
        out = "y" if i == len(after) - 1 else f"a{i}"
        nodes.append(helper.make_node(op, [prev, *extra_inputs], [out], name=f"n{i}",
                                      domain=Q if op in ("Quant", "MultiThreshold",
                                                         "BipolarQuant") else "", **attrs))
        inits += extra_inits
        prev = out
    return _save(tmp_path, nodes, inits, in_shape=in_shape, **kw)


def _expect_error(tmp_path, path, *needles):
    out = tmp_path / "out"
    with pytest.raises(OnnxError) as info:
        import_onnx(path)
    for needle in needles:
        assert needle in str(info.value)
    assert main(["import", str(path), "-o", str(out)]) == 2
    assert not out.exists()
    return str(info.value)


def test_identity_output_exact(tmp_path):
    path = _mlp(tmp_path)
    imp = import_onnx(path)
    x = np.arange(16 * 4).reshape(16, 4) % 16
    w = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[3])
    expect = (x @ w) * 0.5 + np.array([0.25, -1.75, 3.0])
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(x)), expect)
    assert imp.exact


def test_multithreshold_and_quant_fold_exactly(tmp_path):
    t = np.array([[-2.0, 0.5, 3.0], [-1.0, 1.0, 2.5], [0.0, 0.25, 4.75]])
    path = _mlp(tmp_path, after=[
        ("Relu", [], [], {}),
        ("MultiThreshold", ["t"], [_const("t", t)], {"out_scale": 1.0, "out_bias": 0.0})])
    imp = import_onnx(path)
    x = np.array(np.meshgrid(*[range(0, 16, 3)] * 4)).reshape(4, -1).T
    w = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[3])
    z = np.maximum((x @ w) * 0.5 + np.array([0.25, -1.75, 3.0]), 0)
    expect = (z[:, :, None] >= t[None]).sum(-1)
    np.testing.assert_array_equal(imp.model.forward(x), expect)
    assert imp.model.layers[0].output.kind.value == "threshold"


def test_negative_scale_flips_rows(tmp_path):
    path = _mlp(tmp_path, after=[
        ("Mul", ["neg"], [_const("neg", [-1.0, 2.0, -0.5])], {}),
        ("Quant", ["qs", "qz", "qb"], [_const("qs", 0.75), _const("qz", 0.0),
                                       _const("qb", 3.0)],
         {"signed": 1, "narrow": 0, "rounding_mode": "ROUND"})])
    imp = import_onnx(path)
    x = np.array(np.meshgrid(*[range(0, 16, 5)] * 4)).reshape(4, -1).T
    w = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[3])
    z = ((x @ w) * 0.5 + np.array([0.25, -1.75, 3.0])) * np.array([-1.0, 2.0, -0.5])
    q = np.clip(np.round(z / 0.75), -4, 3)
    np.testing.assert_array_equal(imp.to_real(imp.model.forward(x)), q * 0.75)


def test_not_onnx(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_text("this is not a protobuf\n")
    _expect_error(tmp_path, path, "field 'file'", "not an ONNX model")


def test_unsupported_op(tmp_path):
    path = _mlp(tmp_path, after=[("Softmax", [], [], {})])
    _expect_error(tmp_path, path, "'n0' (Softmax)", "unsupported op")


def test_missing_initializer(tmp_path):
    path = _mlp(tmp_path)
    model = onnx.load(str(path))
    keep = [i for i in model.graph.initializer if i.name != "w"]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)
    onnx.save(model, str(path))
    _expect_error(tmp_path, path, "'fc' (MatMul)", "input 1", "'w'", "missing initializer")


def test_dynamic_shape(tmp_path):
    path = _mlp(tmp_path, in_shape=("N", "K"))
    _expect_error(tmp_path, path, "graph.input", "dimension 1 is dynamic")


def test_non_vector_input(tmp_path):
    path = _mlp(tmp_path, in_shape=(1, 2, 2))
    _expect_error(tmp_path, path, "graph.input", "neither a vector")


def test_feature_map_into_matmul(tmp_path):
    path = _mlp(tmp_path, in_shape=(1, 1, 2, 2))
    _expect_error(tmp_path, path, "'fc' (MatMul)", "feature map", "Flatten")


def test_float_weights(tmp_path):
    path = _mlp(tmp_path, weights=np.full((4, 3), 0.3))
    _expect_error(tmp_path, path, "'fc' (MatMul)", "float weights")


def test_sign_reaching_zero(tmp_path):
    # 0.5 * acc + c with c = 0.25, -1.75, 3.0 never hits 0 on odd multiples... make it hit 0
    path = _mlp(tmp_path, weights=np.ones((4, 3)),
                after=[("Add", ["off"], [_const("off", [-0.25, 1.75, -3.0])], {}),
                       ("Sign", [], [], {})])
    _expect_error(tmp_path, path, "(Sign)", "reaches exactly 0")


def test_float_output_relu(tmp_path):
    path = _mlp(tmp_path, after=[("Relu", [], [], {})])
    _expect_error(tmp_path, path, "graph.output", "ReLU of float values")


def test_damaged_files_are_bad_input_not_bugs(tmp_path, capsys):
    """Bytes of a valid QONNX file overwritten at random (seeded): every damaged file imports
    or is refused with exit 2; none ends in an internal error (names that are not UTF-8,
    outputs nothing produces, missing quantizer inputs, absurd zero points)."""
    import random

    base = _mlp(tmp_path).read_bytes()
    rng = random.Random(11)
    refused = 0
    for trial in range(150):
        data = bytearray(base)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / f"d{trial}.onnx"
        path.write_bytes(bytes(data))
        status = main(["import", str(path), "-o", str(tmp_path / f"o{trial}")])
        err = capsys.readouterr().err
        assert status in (0, 2), err
        assert "internal error" not in err and "Traceback" not in err
        refused += status == 2
    assert refused > 50          # the damage mostly matters


def test_missing_quantizer_input_named(tmp_path):
    path = _save(tmp_path, [helper.make_node("Quant", ["x", "s", "z"], ["xq"], domain=Q,
                                             signed=0, narrow=0, rounding_mode="ROUND"),
                            helper.make_node("MatMul", ["xq", "w"], ["y"], name="fc")],
                 [_const("s", 1.0), _const("z", 0.0), _const("w", np.ones((4, 3)))])
    _expect_error(tmp_path, path, "input 3", "bit width is missing")
