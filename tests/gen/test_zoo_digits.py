"""The digits zoo: training, quantization, exact batch-norm folding, model files."""

import math
from fractions import Fraction

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from nnaccel.gen.ir import DType, OutputKind
from nnaccel.gen.model_io import read_model
from nnaccel.gen.zoo import digits

#: Measured with seed 0: 96.7 % (seeds 0..3 gave 96.2..96.9 %); the floor leaves 3.7 points.
BNN_FLOOR = 0.93
#: Measured with seed 0: 97.1 % (seeds 0..4 gave 97.1..98.2 %).
MLP_FLOAT_FLOOR = 0.95


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Both models trained once by train_all, with the directory and the log lines."""
    outdir = tmp_path_factory.mktemp("zoo")
    lines = []
    results = digits.train_all(outdir, seed=0, log=lines.append)
    return results, outdir, lines


@pytest.fixture(scope="module")
def mlp(trained):
    return trained[0]["digits_int8"]


@pytest.fixture(scope="module")
def bnn(trained):
    return trained[0]["digits_bnn"]


def _sign(w):
    return np.where(np.asarray(w) >= 0, 1, -1)


def _float_bnn(params, x):
    """The float BN + sign network in inference mode, written out independently."""
    eps = float(params["eps"])

    def bn_sign(a, i):
        g, b = params[f"gamma{i}"], params[f"beta{i}"]
        m, v = params[f"mean{i}"], params[f"var{i}"]
        return np.where(g * (a - m) / np.sqrt(v + eps) + b >= 0, 1, -1)

    x = np.asarray(x, dtype=np.float64)
    h1 = bn_sign(x @ _sign(params["w1"]).T, 1)
    h2 = bn_sign(h1 @ _sign(params["w2"]).T, 2)
    return h1, h2, h2 @ _sign(params["w3"]).T


# --- data ---------------------------------------------------------------------------------------

def test_pixel_quantization_rounds_half_up():
    expected = [math.floor(Fraction(15 * p, 16) + Fraction(1, 2)) for p in range(17)]
    assert digits.quantize_pixels(np.arange(17)).tolist() == expected
    assert expected[8] == 8 and expected[16] == 15
    with pytest.raises(ValueError):
        digits.quantize_pixels([17])
    with pytest.raises(ValueError):
        digits.quantize_pixels([0.5])


def test_split_is_the_documented_one(mlp, bnn):
    data = load_digits()
    _, x_test, _, y_test = train_test_split(data.data, data.target, test_size=0.25,
                                            random_state=0, stratify=data.target)
    x_q = np.floor(x_test * 15 / 16 + 0.5).astype(np.int64)
    for result in (mlp, bnn):
        assert result.x_test.shape == (450, 64)
        assert np.array_equal(result.x_test, x_q)
        assert np.array_equal(result.y_test, y_test)
        assert result.model.input_dtype == DType.parse("uint4")
        assert result.model.input_shape == (64,)


# --- model files --------------------------------------------------------------------------------

def test_train_all_writes_models_that_read_back_identically(trained):
    results, outdir, lines = trained
    assert sorted(results) == ["digits_bnn", "digits_int8"]
    x = np.concatenate([results["digits_int8"].x_test, digits.load_split()[0]])
    for name, result in results.items():
        assert sorted(p.name for p in (outdir / name).iterdir()) == [
            ".nnaccel-output.json", "model.json", "weights.npz"]
        back = read_model(outdir / name)
        assert back.name == result.model.name == name
        for a, b in zip(back.layers, result.model.layers, strict=True):
            assert a.name == b.name
            assert a.weight_dtype == b.weight_dtype and a.output.dtype == b.output.dtype
            assert np.array_equal(a.weight, b.weight)
        assert np.array_equal(back.forward(x), result.model.forward(x))
        for upto in range(1, len(back.layers)):
            assert np.array_equal(back.forward(x, upto=upto), result.model.forward(x, upto=upto))
    assert any("digits_int8: epoch" in line for line in lines)
    assert any("digits_bnn: epoch" in line for line in lines)
    assert sum("written to" in line for line in lines) == 2


# --- int8 MLP -----------------------------------------------------------------------------------

def test_int8_model_structure(mlp):
    fc1, fc2 = mlp.model.layers
    assert mlp.model.name == "digits_int8"
    assert (fc1.name, fc2.name) == ("fc1", "fc2")
    assert fc1.weight.shape == (32, 64) and fc2.weight.shape == (10, 32)
    assert str(fc1.weight_dtype) == str(fc2.weight_dtype) == "int8"
    assert fc1.output.kind is OutputKind.REQUANT and fc1.output.relu
    assert str(fc1.output.dtype) == "uint8"
    assert fc2.output.kind is OutputKind.IDENTITY and str(fc2.output.dtype) == "int32"
    assert fc1.bias is not None and fc2.bias is not None
    # Symmetric quantization: every weight is within half a step of the float weight.
    p = mlp.params
    assert np.all(np.abs(fc1.weight * p["w1_scale"][:, None] - p["w1"])
                  <= p["w1_scale"][:, None] / 2 + 1e-12)
    assert np.all(np.abs(fc2.weight * p["w2_scale"] - p["w2"]) <= p["w2_scale"] / 2 + 1e-12)
    assert int(np.abs(fc1.weight).max()) == 127


def test_int8_accuracy(mlp):
    p = mlp.params
    h = np.maximum(mlp.x_test / 15 @ p["w1"].T + p["b1"], 0.0)
    float_acc = np.mean(np.argmax(h @ p["w2"].T + p["b2"], axis=1) == mlp.y_test)
    int_acc = np.mean(np.argmax(mlp.model.forward(mlp.x_test), axis=1) == mlp.y_test)
    assert float_acc == pytest.approx(mlp.float_accuracy)
    assert int_acc == pytest.approx(mlp.int_accuracy)
    assert mlp.float_accuracy >= MLP_FLOAT_FLOOR
    assert abs(mlp.int_accuracy - mlp.float_accuracy) <= 0.015


def test_int8_requant_approximates_the_float_scale(mlp):
    p = mlp.params
    out = mlp.model.layers[0].output
    ratio = float(p["in_scale"]) * p["w1_scale"] / float(p["act_scale"])
    mult, shift = out.mult.astype(np.float64), out.shift
    assert np.all((out.mult > 0) & (out.mult < 2**digits.REQUANT_MULT_BITS))
    assert np.all((shift >= 0) & (shift <= 31))
    approx = mult * 2.0 ** -shift
    assert np.all(np.abs(approx - ratio) <= 2.0 ** -(shift + 1))
    assert np.all(np.abs(approx / ratio - 1) < 2.0 ** (1 - digits.REQUANT_MULT_BITS))


def test_int8_hidden_activations_track_the_float_ones(mlp):
    p = mlp.params
    h = np.maximum(mlp.x_test / 15 @ p["w1"].T + p["b1"], 0.0) / p["act_scale"]
    err = np.abs(mlp.model.forward(mlp.x_test, upto=1) - np.clip(h, 0, 255))
    # Measured: mean 0.30, max 1.40 output steps (weight and bias rounding plus the requant).
    assert err.mean() < 0.5
    assert err.max() < 2.0


def test_fixed_point():
    mult, shift = digits.fixed_point([0.5, 1.0, 3.0], mult_bits=16)
    assert mult.tolist() == [32768, 32768, 49152]
    assert shift.tolist() == [16, 15, 14]
    rng = np.random.default_rng(1)
    for bits, smallest in ((8, 1e-6), (16, 1e-4), (31, 0.5)):
        ratio = np.exp(rng.uniform(np.log(smallest), np.log(100.0), 1000))
        mult, shift = digits.fixed_point(ratio, mult_bits=bits)
        assert np.all((mult > 0) & (mult < 2**bits) & (shift >= 0) & (shift <= 31))
        approx = mult.astype(np.float64) * 2.0 ** -shift
        assert np.all(np.abs(approx - ratio) <= 2.0 ** -(shift + 1))
        assert np.all(np.abs(approx / ratio - 1) < 2.0 ** (1 - bits))
    for bad in (0.0, -1.0, float("nan"), 1e6, 1e-12):
        with pytest.raises(ValueError):
            digits.fixed_point([bad], mult_bits=16)


# --- binarized MLP ------------------------------------------------------------------------------

def test_bnn_model_structure(bnn):
    h = digits.BNN_HIDDEN
    assert bnn.model.name == "digits_bnn"
    assert [layer.name for layer in bnn.model.layers] == ["fc1", "fc2", "fc3"]
    shapes = [layer.weight.shape for layer in bnn.model.layers]
    assert shapes == [(h, 64), (h, h), (10, h)]
    for layer in bnn.model.layers:
        assert str(layer.weight_dtype) == "bipolar" and layer.bias is None
        assert np.all(np.abs(layer.weight) == 1)
    for layer in bnn.model.layers[:2]:
        assert layer.output.kind is OutputKind.THRESHOLD
        assert str(layer.output.dtype) == "bipolar"
        assert layer.output.thresholds.shape == (h, 1)
    assert str(bnn.model.layers[0].in_dtype) == "uint4"
    fc3 = bnn.model.layers[2]
    assert fc3.output.kind is OutputKind.IDENTITY and str(fc3.output.dtype) == "int32"
    assert float(bnn.params["logit_scale"]) > 0


def test_bnn_accuracy(bnn):
    int_acc = np.mean(np.argmax(bnn.model.forward(bnn.x_test), axis=1) == bnn.y_test)
    assert int_acc == pytest.approx(bnn.int_accuracy)
    assert bnn.int_accuracy >= BNN_FLOOR
    assert bnn.float_accuracy == bnn.int_accuracy


def test_bnn_threshold_folding_is_exact(bnn):
    """Hidden activations of the integer model equal those of the float BN + sign network."""
    p = bnn.params
    for x in (bnn.x_test, digits.load_split()[0]):
        h1, h2, acc3 = _float_bnn(p, x)
        assert np.array_equal(bnn.model.forward(x, upto=1), h1)
        assert np.array_equal(bnn.model.forward(x, upto=2), h2)
        # The last layer is the plain bipolar product, its argmax the float network's.
        assert np.array_equal(bnn.model.forward(x), acc3)
        for h in (h1, h2):
            assert 0.1 < np.mean(h == 1) < 0.9
    logits = p["logit_scale"] * _float_bnn(p, bnn.x_test)[2]
    assert np.mean(np.argmax(logits, axis=1) == bnn.y_test) == pytest.approx(bnn.float_accuracy)


def _check_fold_exhaustively(weight, in_lo, in_hi, gamma, beta, mean, var, eps):
    """Every reachable integer accumulator of every row gives the float network's sign."""
    w_f, b_f, t = digits.fold_bn_sign(weight, in_lo, in_hi, gamma, beta, mean, var, eps)
    assert b_f is None
    assert t.shape == (len(gamma), 1) and t.dtype == np.int64
    for m in range(len(gamma)):
        lo = int(np.minimum(weight[m] * in_lo, weight[m] * in_hi).sum())
        hi = int(np.maximum(weight[m] * in_lo, weight[m] * in_hi).sum())
        acc = np.arange(lo, hi + 1)
        sgn = -1 if gamma[m] < 0 else 1
        assert np.array_equal(w_f[m], sgn * weight[m])
        want = np.where(gamma[m] * (acc - mean[m]) / np.sqrt(var[m] + eps) + beta[m] >= 0, 1, -1)
        got = np.where(sgn * acc >= t[m, 0], 1, -1)
        assert np.array_equal(got, want), m


def test_fold_bn_sign_is_exact_on_every_accumulator():
    rng = np.random.default_rng(7)
    m, k = 200, 12
    weight = np.where(rng.random((m, k)) < 0.5, -1, 1)
    gamma = rng.normal(0, 1, m)
    gamma[:10] = 0.0
    gamma[10:20] = 1e-9 * np.sign(gamma[10:20])
    beta = rng.normal(0, 1, m)
    mean = rng.normal(0, 3, m)
    var = rng.uniform(0, 20, m)
    _check_fold_exhaustively(weight, -1, 1, gamma, beta, mean, var, 1e-5)
    # uint4 inputs and boundaries exactly on an integer: gamma * (a - 3) >= 0.
    w4 = np.ones((4, 3), dtype=np.int64)
    g = np.array([1.0, -1.0, 2.5, -0.5])
    z = np.zeros(4)
    _check_fold_exhaustively(w4, 0, 15, g, z, np.full(4, 3.0), np.ones(4), 0.0)
    _, _, t = digits.fold_bn_sign(w4, 0, 15, g, z, np.full(4, 3.0), np.ones(4), 0.0)
    assert t[:, 0].tolist() == [3, -3, 3, -3]
    assert any(gamma < 0) and any(gamma > 0)


def test_fold_bn_sign_negates_the_bias_with_the_row():
    w = np.array([[1, -1], [1, 1]])
    bias = np.array([5, -2])
    w_f, b_f, t = digits.fold_bn_sign(w, -1, 1, np.array([-1.0, 1.0]), np.zeros(2),
                                      np.zeros(2), np.ones(2), 0.0, bias=bias)
    assert w_f.tolist() == [[-1, 1], [1, 1]] and b_f.tolist() == [-5, -2]
    x = np.array([[a, b] for a in (-1, 1) for b in (-1, 1)])
    acc = x @ w.T + bias
    want = np.where(np.array([-1.0, 1.0]) * acc >= 0, 1, -1)
    assert np.array_equal(np.where(x @ w_f.T + b_f >= t[:, 0], 1, -1), want)


def test_training_is_deterministic_and_seeded():
    a = digits.binarized_mlp(3, epochs=2)
    b = digits.binarized_mlp(3, epochs=2)
    c = digits.binarized_mlp(4, epochs=2)
    for la, lb in zip(a.model.layers, b.model.layers, strict=True):
        assert np.array_equal(la.weight, lb.weight)
    for la, lb in zip(a.model.layers[:2], b.model.layers[:2], strict=True):
        assert np.array_equal(la.output.thresholds, lb.output.thresholds)
    assert not np.array_equal(a.model.layers[0].weight, c.model.layers[0].weight)
    d = digits.int8_mlp(3, epochs=2)
    e = digits.int8_mlp(3, epochs=2)
    assert np.array_equal(d.model.layers[0].weight, e.model.layers[0].weight)
    assert np.array_equal(d.model.layers[0].output.mult, e.model.layers[0].output.mult)
