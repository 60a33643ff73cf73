"""``nnaccel bench --suite resnet8`` / ``--suite mobilenet``: the ResNet-8 and MobileNet
factories (topology by hand), their calibration, and scaled-down bench runs under Verilator
(no place and route here)."""

import json

import numpy as np
import pytest

from nnaccel.bench import resnet as bench_resnet
from nnaccel.gen.engines.base import layer_macs
from nnaccel.gen.ir import Op
from nnaccel.gen.model_io import model_from_arrays
from nnaccel.gen.zoo import resnet8 as zoo

# ResNet-8's multiply-accumulates per image, by hand: M * OH * OW * C * KH * KW per convolution
R8_MACS = (16 * 32 * 32 * 3 * 9                                 # c0
           + 2 * 16 * 32 * 32 * 16 * 9                          # stack 1
           + 32 * 16 * 16 * 16 * 9 + 32 * 16 * 16 * 32 * 9 + 32 * 16 * 16 * 16  # stack 2
           + 64 * 8 * 8 * 32 * 9 + 64 * 8 * 8 * 64 * 9 + 64 * 8 * 8 * 32        # stack 3
           + 10 * 64)                                            # dense (pools: no MACs)
TINY = {"stacks": (2, 4, 4), "input_shape": (3, 8, 8), "calibration": 4}


@pytest.fixture(scope="module")
def r8():
    return zoo.resnet8_model()


def test_resnet8_topology(r8):
    assert r8.input_shape == (3, 32, 32) and str(r8.input_dtype) == "int8"
    shapes = {layer.name: layer.out_shape for layer in r8.layers}
    assert shapes == {"c0": (16, 32, 32), "s1a": (16, 32, 32), "s1b": (16, 32, 32),
                      "s1r": (16, 32, 32), "s2a": (32, 16, 16), "s2b": (32, 16, 16),
                      "s2p": (32, 16, 16), "s2r": (32, 16, 16), "s3a": (64, 8, 8),
                      "s3b": (64, 8, 8), "s3p": (64, 8, 8), "s3r": (64, 8, 8),
                      "gap": (64, 1, 1), "fc": (10,)}
    by = {layer.name: layer for layer in r8.layers}
    # identity shortcut in stack 1, strided 1x1 projections in stacks 2 and 3
    assert by["s1r"].inputs == ("s1b", "c0")
    for s, src in (("s2", "s1r"), ("s3", "s2r")):
        assert by[f"{s}r"].inputs == (f"{s}b", f"{s}p")
        assert by[f"{s}p"].inputs == (src,) and by[f"{s}p"].weight.shape[2:] == (1, 1)
        assert by[f"{s}p"].stride == (2, 2) and by[f"{s}a"].stride == (2, 2)
    assert by["gap"].op is Op.SUMPOOL2D and by["fc"].op is Op.LINEAR
    assert all(str(by[n].weight_dtype) == "int8" for n in by if hasattr(by[n], "weight_dtype")
               and by[n].op in (Op.CONV2D, Op.LINEAR))
    assert sum(layer_macs(layer) for layer in r8.layers) == R8_MACS


def test_calibrated_maps_are_neither_constant_nor_saturated():
    """Every requant stage of a scaled-down ResNet-8 and of MobileNet leaves most outputs
    unsaturated, and the class scores differ between images."""
    doc, arrays = zoo.resnet8_doc(**TINY)
    X = zoo.zoo_inputs(tuple(TINY["input_shape"]), 6, seed=9)
    for spec in doc["layers"][:-2]:
        # the network cut after this layer: its int8 outputs
        cut = zoo.doc_until(doc, spec["name"])
        y = np.asarray(model_from_arrays(cut, arrays).forward(X))
        assert np.mean(np.abs(y) >= 127) < 0.2, spec["name"]
        assert len(np.unique(y)) > 8, spec["name"]
    scores = np.asarray(model_from_arrays(doc, arrays).forward(X))
    assert len({tuple(s) for s in scores}) == len(X)
    mb = zoo.mobilenet_model(input_shape=(3, 8, 8), blocks=((4, 1), (8, 2)), stem=4)
    assert len({tuple(s) for s in np.asarray(mb.forward(X))}) == len(X)


@pytest.mark.verilator
def test_scaled_down_bench_under_verilator(tmp_path):
    """The bench on a scaled-down ResNet-8: bit-exact under Verilator, measured cycles per
    image within 5 % of the slowest layer's, and the results written (the MobileNet suite runs
    the same code on another model)."""
    suite = "resnet8"
    model = zoo.resnet8_model(**TINY, name="r8_tiny")
    status = bench_resnet.run_graph_bench(tmp_path, suite, quick=True, model=model,
                                          target_cycles=300, log=lambda *_: None)
    result = json.loads((tmp_path / f"{suite}.json").read_text())
    fold = result["fold"]
    assert fold["outputs_equal"] and fold["outputs_checked"] > 0
    assert abs(fold["ratio"] - 1) <= 0.05, fold
    assert status == 0
    assert result["weight_bits"] > 0 and (tmp_path / f"{suite}.md").exists()



@pytest.mark.verilator
def test_bench_places_the_network_out_of_context(tmp_path, monkeypatch):
    """With synthesis, the suite hands the network itself to ``network_build`` (out of context,
    the suite's constraint and router) and judges the rate at its Fmax: a stand-in for the place
    and route reports a Fmax that misses the 1,000 inferences/s target at the scaled-down
    model's measured cycles, and one more LUT4 than the device has."""
    from nnaccel.bench import network as bench_network

    calls = []

    def stand_in(network, outdir, *, freq_mhz, router):
        calls.append((type(network).__name__, freq_mhz, router))
        return {"fmax_mhz": 0.25, "lut4": 83_641, "ff": 10, "lutram": 0, "bram": 2, "mult": 3,
                "synthesiser": "stand-in", "seconds": 0.0}

    monkeypatch.setattr(bench_network, "network_build", stand_in)
    model = zoo.resnet8_model(**TINY, name="r8_tiny")
    status = bench_resnet.run_graph_bench(tmp_path, "resnet8", images=2, model=model,
                                          target_cycles=300, log=lambda *_: None)
    cfg = bench_resnet.SUITES["resnet8"]
    assert calls == [("GraphNetwork", cfg["freq_mhz"], cfg["router"])]
    result = json.loads((tmp_path / "resnet8.json").read_text())
    syn, targets = result["synthesis"], result["targets"]
    assert syn["out_of_context"] and (syn["lut4"], syn["bram"], syn["mult"]) == (83_641, 2, 3)
    assert syn["inferences_per_second"] == pytest.approx(250_000 / syn["cycles"])
    assert syn["cycles"] == result["fold"]["cycles_per_image"] > 250
    assert not targets["inferences_per_second"]["met"] and not targets["fits"]["met"]
    assert status == 1
