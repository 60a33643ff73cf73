"""The compression passes of nnaccel.gen.compress, each against an independent check."""

import json

import numpy as np
import pytest

from nnaccel.gen.compress import (
    BatchNorm,
    CompressConfig,
    Data,
    FloatLayer,
    FloatModel,
    compress,
    plan,
    prune,
    quantize,
    read_float_model,
    share,
    train,
    write_compressed,
    write_float_model,
)
from nnaccel.gen.compress import binarize as bz
from nnaccel.gen.compress.batchnorm import fold_bn
from nnaccel.gen.compress.report import layer_storage
from nnaccel.gen.errors import ModelError, UsageError
from nnaccel.gen.ir import DType
from nnaccel.gen.model_io import read_model
from nnaccel.hw.sparse.format import encode

# --- a small teacher problem --------------------------------------------------------------------


def teacher(seed=0, k=16, hidden=(24, 12), m=4, n=300, dtype="uint4", bn=False):
    """A random float MLP and inputs labelled by it (so the float accuracy is 1)."""
    rng = np.random.default_rng(seed)
    sizes = (k, *hidden, m)
    layers = []
    for i in range(1, len(sizes)):
        w = rng.normal(0, 1 / np.sqrt(sizes[i - 1]), (sizes[i], sizes[i - 1]))
        b = rng.normal(0, 0.1, sizes[i])
        norm = None
        if bn and i < len(sizes) - 1:
            norm = BatchNorm(gamma=rng.uniform(0.5, 2, sizes[i]), beta=rng.normal(0, .2, sizes[i]),
                             mean=rng.normal(0, .2, sizes[i]), var=rng.uniform(.5, 2, sizes[i]))
        layers.append(FloatLayer(f"fc{i}", w, b, bn=norm))
    d = DType.parse(dtype)
    fm = FloatModel("teacher", d, 1.0 / max(d.hi, 1), tuple(layers))
    x = rng.integers(d.lo, d.hi, (n, k), endpoint=True)
    y = np.argmax(fm.forward(x), axis=1)
    return fm, Data(x_train=x[: n * 2 // 3], y_train=y[: n * 2 // 3], x_test=x[n * 2 // 3:],
                    y_test=y[n * 2 // 3:])


# --- pruning ------------------------------------------------------------------------------------

@pytest.mark.parametrize("density", [0.0, 0.03, 0.1, 0.37, 0.9, 1.0])
def test_prune_to_density_keeps_exactly_the_largest(density):
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, (40, 25))
    w[:5] = np.round(w[:5])  # many equal magnitudes
    mask = prune.prune_to_density(w, density)
    want = int(np.floor(density * w.size + 0.5))
    assert mask.dtype == bool and mask.shape == w.shape
    assert int(mask.sum()) == want
    if 0 < want < w.size:
        assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()


def test_prune_by_quality_is_the_deep_compression_threshold():
    rng = np.random.default_rng(2)
    w = rng.normal(0, 0.3, (30, 30))
    for q in (0.0, 0.5, 1.0, 2.0):
        mask = prune.prune_by_quality(w, q)
        t = q * np.sqrt(np.mean((w - w.mean()) ** 2))
        assert [bool(v) for v in mask.ravel()] == [abs(v) > t for v in w.ravel()]
    assert prune.prune_by_quality(w, 1.0).mean() == pytest.approx(0.317, abs=0.05)


@pytest.mark.parametrize("m, pe", [(32, 4), (30, 4), (7, 3), (16, 1)])
def test_balanced_pruning_gives_every_pe_the_same_count(m, pe):
    rng = np.random.default_rng(3)
    w = rng.normal(0, 1, (m, 20))
    w[0::pe] *= 10  # PE 0 has all the large weights: unbalanced pruning would favour it
    mask = prune.prune_balanced(w, 0.1, pe)
    counts = [int(mask[[i for i in range(m) if i % pe == p]].sum()) for p in range(pe)]
    assert len(set(counts)) == 1
    assert counts[0] == min(int(np.floor(0.1 * m * 20 / pe + 0.5)), (m // pe) * 20)
    assert np.array_equal(prune.kept_per_pe(mask, pe), counts)
    for p in range(pe):
        rows = w[p::pe]
        kept = mask[p::pe]
        if 0 < kept.sum() < kept.size:
            assert np.abs(rows[kept]).min() >= np.abs(rows[~kept]).max()


def test_pruning_only_chooses_among_candidates():
    rng = np.random.default_rng(4)
    w = rng.normal(0, 1, (12, 10))
    first = prune.prune_to_density(w, 0.5)
    w2 = w * first + rng.normal(0, 0.01, w.shape) * ~first  # pruned ones wander a little
    second = prune.prune_to_density(w2, 0.25, candidates=first)
    assert not np.any(second & ~first) and second.sum() == 30
    balanced = prune.prune_balanced(w2, 0.25, 3, candidates=first)
    assert not np.any(balanced & ~first)


def test_iterative_pruning_pass():
    fm, data = teacher()
    config = CompressConfig(prune=(("*", 0.8), ("fc3", 0.5)), prune_steps=2, retrain_epochs=2)
    names = [name for name, _ in plan(fm, config)]
    assert names == ["prune_1", "retrain_pruned_1", "prune_2", "retrain_pruned_2", "quantize"]
    one = compress(fm, data, config, stop_after="prune_1").state.float_model
    done = compress(fm, data, config, stop_after="retrain_pruned_2").state.float_model
    for a, b, target in zip(one.layers, done.layers, (0.2, 0.2, 0.5), strict=True):
        assert a.mask.sum() == np.floor(np.sqrt(target) * a.weight.size + 0.5)
        assert b.mask.sum() == np.floor(target * b.weight.size + 0.5)
        assert not np.any(b.mask & ~a.mask)
        assert np.all(b.weight[~b.mask] == 0)


# --- weight sharing -----------------------------------------------------------------------------

def test_kmeans_linear_init_and_fixed_point():
    rng = np.random.default_rng(5)
    v = np.concatenate([rng.normal(-1, 0.2, 300), rng.normal(0.5, 0.1, 200), [3.0, -2.5]])
    init = share.linear_init(v, 7)
    assert init[0] == v.min() and init[-1] == v.max()
    assert np.allclose(np.diff(init), (v.max() - v.min()) / 6)
    c, assign, converged = share.kmeans_1d(v, 7)
    assert converged and c.shape == (7,) and assign.shape == v.shape
    # Fixed point, checked by brute force: nearest centroid, and each centroid the mean.
    for value, a in zip(v, assign, strict=True):
        d = [abs(value - cj) for cj in c]
        assert d[a] == min(d)
    for j in range(7):
        if np.any(assign == j):
            assert c[j] == pytest.approx(np.mean(v[assign == j]), rel=1e-12, abs=1e-15)
    assert np.all(np.diff(c) > 0)


def test_share_weights_reserves_code_zero():
    rng = np.random.default_rng(6)
    w = rng.normal(0, 1, (20, 30)) * prune.prune_to_density(rng.normal(0, 1, (20, 30)), 0.3)
    for bits in (1, 2, 4):
        codebook, codes = share.share_weights(w, bits)
        assert codebook.shape == (2**bits,) and codebook[0] == 0.0
        assert np.array_equal(codes == 0, w == 0)
        assert np.all(codebook[1:][np.unique(codes[codes > 0]) - 1] != 0)
        shared = codebook[codes]
        assert len(np.unique(shared[shared != 0])) <= 2**bits - 1
        # each non-zero weight went to its nearest non-zero centroid
        nz = w != 0
        assert np.array_equal(codes[nz] - 1, share.nearest(w[nz], codebook[1:]))
    codebook, codes = share.share_weights(w, 4)
    assert np.sqrt(np.mean((codebook[codes] - w)[w != 0] ** 2)) < 0.1


# --- retraining ---------------------------------------------------------------------------------

def _loss(params, x, y, codes=None):
    return train.softmax_xent(train.mlp_forward(params, x, codes), y)[0]


def test_gradients_match_finite_differences_with_masks_and_codes():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (9, 5))
    y = rng.integers(0, 3, 9)
    p = train.init_mlp((5, 6, 3), rng)
    p["b1"] += 0.3  # keep the ReLUs away from their kink
    mask = rng.random((6, 5)) < 0.5
    p["w1"] *= mask
    codes = {2: rng.integers(0, 4, (3, 6))}
    p["c2"] = np.array([0.0, -0.7, 0.4, 1.1])
    del p["w2"]
    loss, grads = train.mlp_gradients(p, x, y, masks={1: mask}, codes=codes)
    assert loss == pytest.approx(_loss(p, x, y, codes))
    h = 1e-6
    for key in ("w1", "b1", "c2", "b2"):
        num = np.zeros_like(p[key])
        for idx in np.ndindex(p[key].shape):
            plus = {k: v.copy() for k, v in p.items()}
            minus = {k: v.copy() for k, v in p.items()}
            plus[key][idx] += h
            minus[key][idx] -= h
            num[idx] = (_loss(plus, x, y, codes) - _loss(minus, x, y, codes)) / (2 * h)
        if key == "w1":
            num *= mask  # masked: pruned weights get no gradient
        if key == "c2":
            num[0] = 0.0  # code 0 is the fixed zero
        assert np.allclose(grads[key], num, atol=1e-6), key


def test_retraining_keeps_pruned_weights_zero_and_codes_fixed():
    fm, data = teacher(seed=1)
    config = CompressConfig(prune=(("*", 0.8),), share=(("*", 3),), retrain_epochs=8)
    pruned = compress(fm, data, config, stop_after="prune")
    retrained = compress(fm, data, config, stop_after="retrain_pruned")
    shared = compress(fm, data, config, stop_after="share")
    final = compress(fm, data, config, stop_after="retrain_shared")
    for p, r in zip(pruned.state.float_model.layers, retrained.state.float_model.layers,
                    strict=True):
        assert np.array_equal(p.mask, r.mask)
        assert np.all(r.weight[~r.mask] == 0) and np.all(r.weight[r.mask] != 0)
    for s, f in zip(shared.state.float_model.layers, final.state.float_model.layers,
                    strict=True):
        assert np.array_equal(s.codes, f.codes)
        assert f.codebook[0] == 0.0 and not np.array_equal(s.codebook, f.codebook)
        assert np.array_equal(f.weight, f.codebook[f.codes])
    acc = [r.accuracy for r in final.state.history]
    assert acc[0] == 1.0
    assert acc[2] > acc[1] + 0.1  # retraining brings accuracy back after pruning
    assert acc[4] >= acc[3] - 0.02


# --- quantization -------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [2, 4, 8, 12])
def test_weight_quantization_round_trip(bits):
    rng = np.random.default_rng(8)
    w = rng.normal(0, 1, (10, 30))
    w[3] *= 1e-6
    q = 2 ** (bits - 1) - 1
    for per_channel in (True, False):
        s = quantize.weight_scale(w, bits, per_channel)
        wq = quantize.quantize_weight(w, s, bits)
        scol = s[:, None] if per_channel else s
        assert np.all(np.abs(wq) <= q)
        assert np.all(np.abs(wq * scol - w) <= scol / 2 + 1e-15)
        assert np.abs(wq).max() == q
        if per_channel:
            assert np.all(np.abs(wq).max(axis=1)[[0, 1, 2, 4]] == q)
    assert np.all(quantize.weight_scale(np.zeros((2, 3)), 8, True) == 1.0)


def test_integer_model_is_exact_requant_and_the_fake_quantized_float_network():
    fm, data = teacher(seed=2, k=20, hidden=(32, 16), m=5)
    config = CompressConfig(prune=(("fc1", 0.5),), share=(("fc2", 4),), retrain_epochs=3,
                            act_bits=8)
    result = compress(fm, data, config)
    model, scales = result.model, result.state.scales
    assert [str(layer.weight_dtype) for layer in model.layers] == ["int8"] * 3
    assert [str(layer.output.dtype) for layer in model.layers] == ["uint8", "uint8", "int32"]
    fc2 = model.layers[1]
    assert fc2.codebook is not None and fc2.codebook[0] == 0 and fc2.codebook.size == 16
    assert np.array_equal(fc2.codebook[fc2.indices], fc2.weight)
    # per channel where allowed; one scale for the shared layer and for the logits
    assert [np.ndim(s["weight_scale"]) for s in scales] == [1, 0, 0]
    x = np.concatenate([data.x_train, data.x_test])
    h_int = x
    for i, (layer, s) in enumerate(zip(model.layers, scales, strict=True)):
        got = model.forward(x, upto=i + 1)
        # 1. Exact: SPEC requant of the integer accumulators, in float64 (exact at these
        #    magnitudes), an independent statement of the arithmetic.
        acc = h_int.astype(np.float64) @ layer.weight.T + layer.bias
        if layer.output.mult is not None:
            assert np.max(np.abs(acc)) * layer.output.mult.max() < 2.0**52
            want = np.clip(np.floor(acc * layer.output.mult / 2.0**layer.output.shift + 0.5),
                           0, 255)
        else:
            want = acc
        assert np.array_equal(got, want.astype(np.int64))
        # 2. The float layer with fake quantization on the integer grid: dequantized inputs,
        #    weights and bias in float, the output divided by its scale. The requant output
        #    is its rounding (halves up) clipped to uint8, except within the requant ratio's
        #    2**-15 relative error of a rounding boundary.
        sw = np.asarray(s["weight_scale"])
        w = layer.weight * (sw[:, None] if sw.ndim else sw)
        a = (h_int * s["in_scale"]) @ w.T + layer.bias * s["in_scale"] * sw
        if s["out_scale"] is None:
            assert np.allclose(got, a / (s["in_scale"] * sw), rtol=1e-9, atol=1e-6)
        else:
            y = a / s["out_scale"]
            rounded = np.clip(np.floor(y + 0.5), 0, 255)
            near = np.abs(y - np.floor(y) - 0.5) <= 2.0**-15 * np.abs(y) + 1e-9
            assert np.array_equal(got[~near], rounded[~near]), i
            assert np.all(np.abs(got - rounded)[near] <= 1)
            assert near.mean() < 0.01
        h_int = got
    # 3. and the scales chain: each layer's input scale is the previous output scale
    assert scales[0]["in_scale"] == fm.input_scale
    assert [s["in_scale"] for s in scales[1:]] == [s["out_scale"] for s in scales[:-1]]


def test_quantized_model_survives_the_model_files(tmp_path):
    fm, data = teacher(seed=3)
    result = compress(fm, data, CompressConfig(prune=(("*", 0.7),), share=(("fc2", 2),),
                                               retrain_epochs=1, weight_bits=6, act_bits=4,
                                               per_channel=False))
    out = write_compressed(result, tmp_path / "m")
    assert sorted(p.name for p in out.iterdir()) == [".nnaccel-output.json", "model.json",
                                                     "report.json", "weights.npz"]
    back = read_model(out)
    x = data.x_test
    assert np.array_equal(back.forward(x), result.model.forward(x))
    assert back.layers[1].codebook is not None and len(back.layers[1].codebook) == 4
    assert str(back.layers[0].weight_dtype) == "int6" and str(back.layers[0].output.dtype) \
        == "uint4"
    assert json.loads((out / "report.json").read_text())["model"] == "teacher"
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary left behind


def test_batchnorm_folding():
    fm, data = teacher(seed=4, bn=True)
    folded = fm.but(layers=[fold_bn(layer) for layer in fm.layers])
    assert all(layer.bn is None for layer in folded.layers)
    assert np.allclose(folded.forward(data.x_test), fm.forward(data.x_test), atol=1e-9)
    result = compress(fm, data, CompressConfig(retrain_epochs=0))
    assert [r.name for r in result.state.history] == ["float", "fold_bn", "quantize"]
    assert result.state.history[-1].accuracy >= 0.9


# --- binarization -------------------------------------------------------------------------------

def test_binarized_model_equals_the_float_bnn():
    fm, data = teacher(seed=5, k=16, hidden=(32, 32), m=3, n=600)
    result = compress(fm, data, CompressConfig(binarize=True, binarize_epochs=15))
    model, p = result.model, result.state.bnn
    assert [str(layer.weight_dtype) for layer in model.layers] == ["bipolar"] * 3
    assert [layer.output.kind.value for layer in model.layers] == ["threshold", "threshold",
                                                                   "identity"]
    x = np.concatenate([data.x_train, data.x_test])
    hs, acc = bz.bnn_float_forward(p, x.astype(np.float64))
    for i, h in enumerate(hs):
        assert np.array_equal(model.forward(x, upto=i + 1), h)
    assert np.array_equal(model.forward(x), acc)
    assert result.state.history[-1].accuracy >= 0.75


# --- float model files --------------------------------------------------------------------------

def test_float_model_round_trip(tmp_path):
    fm, data = teacher(seed=6, bn=True)
    write_float_model(tmp_path / "f.npz", fm, data)
    back, bdata = read_float_model(tmp_path / "f.npz")
    assert back.name == "teacher" and str(back.input_dtype) == "uint4"
    assert np.array_equal(back.forward(data.x_test), fm.forward(data.x_test))
    assert np.array_equal(bdata.y_test, data.y_test) and np.array_equal(bdata.x_train,
                                                                        data.x_train)


def _bad(tmp_path, change):
    fm, data = teacher(seed=7, bn=True)
    write_float_model(tmp_path / "f.npz", fm, data)
    arrays = dict(np.load(tmp_path / "f.npz"))
    change(arrays)
    np.savez(tmp_path / "g.npz", **arrays)
    with pytest.raises(ModelError) as info:
        read_float_model(tmp_path / "g.npz")
    return info.value


@pytest.mark.parametrize("change, layer, field", [
    (lambda a: a.pop("fc2.w"), "fc2", "fc2.w"),
    (lambda a: a.update({"fc2.w": np.ones((12, 23))}), "fc2", "fc2.w"),
    (lambda a: a.update({"fc1.b": np.ones(3)}), "fc1", "fc1.b"),
    (lambda a: a.update({"fc1.w": np.full((24, 16), np.nan)}), "fc1", "fc1.w"),
    (lambda a: a.update({"fc1.w": np.array([["a"] * 16] * 24)}), "fc1", "fc1.w"),
    (lambda a: a.pop("fc2.bn_var"), "fc2", "fc2.bn_var"),
    (lambda a: a.update({"fc3.bn_gamma": np.ones(4)}), "fc3", "fc3.bn_gamma"),
    (lambda a: a.update({"fc1.bn_var": -np.ones(24)}), "fc1", "fc1.bn_var"),
    (lambda a: a.update({"fc1.wieght": np.ones(2)}), "fc1", "fc1.wieght"),
    (lambda a: a.update({"layers": np.array(["fc1", "fc-2", "fc3"])}), "fc-2", "layers"),
    (lambda a: a.update({"layers": np.array(["fc1", "fc1", "fc3"])}), "fc1", "layers"),
    (lambda a: a.pop("layers"), None, "layers"),
    (lambda a: a.pop("input_dtype"), None, "input_dtype"),
    (lambda a: a.update({"input_dtype": np.array("float8")}), None, "input_dtype"),
    (lambda a: a.update({"input_scale": np.array(-1.0)}), None, "input_scale"),
    (lambda a: a.update({"calib_x": a["calib_x"] + 8}), None, "calib_x"),
    (lambda a: a.update({"calib_x": a["calib_x"][:, :3]}), None, "calib_x"),
    (lambda a: a.update({"calib_y": a["calib_y"] + 4}), None, "calib_y"),
    (lambda a: a.pop("test_x"), None, "test_x"),
])
def test_float_model_errors_name_layer_and_field(tmp_path, change, layer, field):
    err = _bad(tmp_path, change)
    assert (err.layer, err.field) == (layer, field)
    assert str(err).startswith(f"layer {layer!r}, field {field!r}" if layer
                               else f"field {field!r}")


def test_float_model_file_errors(tmp_path):
    with pytest.raises(ModelError, match="no such file"):
        read_float_model(tmp_path / "none.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a numpy .npz"):
        read_float_model(tmp_path / "junk.npz")
    np.save(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(ModelError, match=".npy array"):
        read_float_model(tmp_path / "a.npy")


def test_config_validation():
    for bad in (dict(prune=(("*", 1.0),)), dict(prune=(("*", -0.1),)), dict(share=(("*", 9),)),
                dict(weight_bits=1), dict(act_bits=17), dict(pe=0), dict(prune_steps=0),
                dict(prune=(("fc1", 0.5),), quality=(("fc1", 1.0),)),
                dict(binarize=True, prune=(("*", 0.5),)), dict(retrain_epochs=-1)):
        with pytest.raises((ValueError, TypeError)):
            CompressConfig(**bad)
    fm, data = teacher()
    with pytest.raises(UsageError, match="fc9"):
        compress(fm, data, CompressConfig(share=(("fc9", 4),)))
    with pytest.raises(ValueError, match="unknown pass"):
        compress(fm, data, CompressConfig(), stop_after="nothing")


def test_without_data_calibrates_on_synthetic_inputs_and_measures_agreement():
    fm, _ = teacher(seed=8, dtype="int4")
    result = compress(fm, None, CompressConfig(prune=(("*", 0.5),), retrain_epochs=2))
    assert result.samples.synthetic and not result.samples.labelled
    assert result.report["accuracy_measure"].startswith("agreement")
    assert result.state.history[0].accuracy == 1.0
    assert result.samples.x_train.min() >= -8 and result.samples.x_train.max() <= 7


# --- report -------------------------------------------------------------------------------------

def test_report_counts_sparse_storage_with_the_sparse_format():
    fm, data = teacher(seed=9, k=32, hidden=(48,), m=6)
    result = compress(fm, data, CompressConfig(prune=(("fc1", 0.9),), share=(("fc1", 4),),
                                               pe=4, retrain_epochs=1))
    fc1, fc2 = result.model.layers
    s1 = layer_storage(fc1, 4)
    assert s1["format"] == "sparse" and s1["value_bits"] == 4 and s1["pe"] == 4
    enc = encode(fc1.weight, 4, index_bits=s1["index_bits"], codebook=fc1.codebook)
    assert s1["stored_bits"] == enc.storage_bits + len(enc.codebook) * 8
    assert s1["compression_ratio"] == pytest.approx(32 * fc1.weight.size / s1["stored_bits"])
    assert np.all(prune.kept_per_pe(fc1.weight != 0, 4) <= prune.kept_per_pe(
        result.state.float_model.layers[0].mask, 4))
    s2 = layer_storage(fc2, 4)
    assert s2["format"] == "dense" and s2["stored_bits"] == fc2.weight.size * 8
    total = result.report["total"]
    assert total["stored_bits"] == s1["stored_bits"] + s2["stored_bits"]
    assert [p["pass"] for p in result.report["passes"]] == [
        "float", "prune", "retrain_pruned", "share", "retrain_shared", "quantize"]
