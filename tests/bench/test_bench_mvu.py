"""nnaccel/bench/mvu.py: the arithmetic, the fold search and the tables quickly; one tiny network
end to end under Verilator (no synthesis)."""

import json

import numpy as np
import pytest

from nnaccel.bench.mvu import (
    BENCHMARKS,
    NNGEN_REFERENCE,
    Benchmark,
    capped_folds,
    cycle_budget,
    dtype_chain,
    ideal_cycles,
    markdown_table,
    ratio_ok,
    reference_table,
    run_bench,
    search_fold,
    utilisation,
)
from nnaccel.gen.zoo.random_mlp import prime_int4_model, random_inputs, sfc_model


def test_ideal_and_utilisation():
    assert ideal_cycles(2368, 15) == 158          # ceil
    assert ideal_cycles(334336, 3419) == 98
    assert ideal_cycles(100, 10) == 10
    assert utilisation(2368, 16, 1266) == pytest.approx(0.1169, abs=1e-4)  # NNgen's ~12 %
    assert utilisation(100, 10, 10) == 1.0
    with pytest.raises(ValueError):
        ideal_cycles(10, 0)
    with pytest.raises(ValueError):
        utilisation(10, 1, 0)


def test_ratio_tolerance():
    assert ratio_ok(105, 100) and ratio_ok(95, 100) and ratio_ok(160.0, 160)
    assert not ratio_ok(105.5, 100) and not ratio_ok(94, 100)


def test_cycle_budget():
    assert cycle_budget(100.0, 1e6) == 100
    assert cycle_budget(100.0, 1e6, margin=0.05) == 95
    assert cycle_budget(72.75, 1e6) == 72
    assert cycle_budget(0.5, 1e6) == 1
    with pytest.raises(ValueError):
        cycle_budget(100.0, 0)


def _fake_measure(fmax_of, fits_of=lambda t: True, log=None):
    def measure(target):
        if log is not None:
            log.append(target)
        return {"cycles": target, "fmax_mhz": fmax_of(target), "fits": fits_of(target)}
    return measure


def test_search_fold_meets_at_the_guess():
    target, tried = search_fold(_fake_measure(lambda t: 100.0), 1e6, fmax_guess_mhz=100.0)
    assert target == 95 and len(tried) == 1 and tried[0]["met"]
    assert tried[0]["rate"] == pytest.approx(100e6 / 95)


def test_search_fold_corrects_with_the_measured_fmax():
    # more lanes (fewer cycles) cost a little Fmax, as in real designs
    seen = []
    target, tried = search_fold(_fake_measure(lambda t: 70.0 + t / 10, log=seen), 1e6,
                                fmax_guess_mhz=100.0)
    assert seen[0] == 95                       # 100 MHz guess, 5 % margin
    assert seen[1] == cycle_budget(79.5, 1e6, 0.05) == 75
    assert tried[-1]["met"] and target == seen[-1]
    targets = [a["target_cycles"] for a in tried]
    assert targets == sorted(targets, reverse=True) and len(set(targets)) == len(targets)
    assert (70.0 + target / 10) * 1e6 / target >= 1e6


def test_search_fold_stops():
    # no synthesis: the guess decides
    target, tried = search_fold(_fake_measure(lambda t: None), 1e6, fmax_guess_mhz=80.0)
    assert target == 76 and len(tried) == 1 and not tried[0]["met"]
    # a design that does not fit ends the search (fewer cycles would need more lanes)
    target, tried = search_fold(_fake_measure(lambda t: 50.0, lambda t: False), 1e6,
                                fmax_guess_mhz=100.0)
    assert len(tried) == 1 and not tried[0]["met"]
    # the number of attempts is bounded even when the rate is never met
    target, tried = search_fold(_fake_measure(lambda t: t / 2), 1e6,
                                fmax_guess_mhz=100.0, attempts=3)
    assert len(tried) == 3 and not any(a["met"] for a in tried)


def test_capped_folds():
    from nnaccel.gen.folding import Fold, choose_folds, fold_cycles

    shapes = [(256, 784), (256, 256), (256, 256), (10, 256)]
    for target in (60, 100):
        folds = capped_folds(shapes, target, 16)
        assert all(f.simd <= 16 for f in folds)
        assert max(fold_cycles(m, k, f) for (m, k), f in zip(shapes, folds, strict=True)) \
            <= target
        for a, b in zip(folds, folds[1:], strict=False):
            assert a.pe % b.simd == 0 or b.simd % a.pe == 0
    # the cap costs few lanes against the generator's uncapped search
    lanes = sum(f.lanes for f in capped_folds(shapes, 100, 16))
    assert lanes <= 1.05 * sum(f.lanes for f in choose_folds(shapes, 100))
    assert capped_folds([(4, 64)], 3, 16) is None       # 64 / 16 = 4 synapse folds > 3
    assert capped_folds([(4, 64), (3, 4)], 8, 8) == [Fold(4, 8), Fold(1, 2)]


def test_models_have_the_benchmark_shapes():
    sfc = sfc_model()
    assert [layer.weight.shape for layer in sfc.layers] == [(256, 784), (256, 256),
                                                           (256, 256), (10, 256)]
    assert str(sfc.input_dtype) == "bipolar"
    assert all(str(layer.weight_dtype) == "bipolar" for layer in sfc.layers)
    x = random_inputs(sfc, 4)
    assert set(np.unique(x)) == {-1, 1}
    h = sfc.forward(x, upto=1)
    assert set(np.unique(h)) <= {-1, 1}
    prime = prime_int4_model()
    assert [layer.weight.shape for layer in prime.layers] == [(61, 97), (13, 61)]
    assert all(layer.density == 1.0 for layer in prime.layers)
    hidden = prime.forward(random_inputs(prime, 64), upto=1)
    assert hidden.min() >= -8 and hidden.max() <= 7 and len(np.unique(hidden)) > 8
    assert {b.name for b in BENCHMARKS} == {"mlp_int8", "sfc_bnn", "digits_bnn", "prime_int4"}
    with pytest.raises(ValueError):
        Benchmark("x", "x", None)


def _row(**changes):
    row = {
        "name": "mlp_int8", "what": "int8 MLP", "provenance": "random", "shape": "64-32-10",
        "dtypes": "uint4 -int8-> uint8 -int8-> int32", "folds": ["1x13", "1x2"], "lanes": 15,
        "macs": 2368, "cycles_per_inference": 160.0, "expected_cycles": 160, "ratio": 1.0,
        "ratio_ok": True, "ideal_cycles": 158, "utilisation": 2368 / 15 / 160,
        "synthesis": {"resources": {"lut4": {"used": 1624, "available": 83640},
                                    "ff": {"used": 900, "available": 83640},
                                    "bram": {"used": 2, "available": 208},
                                    "mult": {"used": 15, "available": 156}}},
        "fmax_mhz": 72.75, "inferences_per_second": 72.75e6 / 160,
    }
    row.update(changes)
    return row


def test_tables():
    layers = [{"in_dtype": "uint4", "weight_dtype": "int8", "out_dtype": "uint8"},
              {"in_dtype": "uint8", "weight_dtype": "bipolar", "out_dtype": "int32"}]
    assert dtype_chain(layers) == "uint4 -int8-> uint8 -±1-> int32"
    text = markdown_table([_row(), _row(name="tiny", synthesis=None, fmax_mhz=None,
                                        inferences_per_second=None, ratio=1.08,
                                        ratio_ok=False)])
    lines = text.splitlines()
    assert len(lines) == 4 and all(line.count("|") == lines[0].count("|") for line in lines)
    assert "| mlp_int8 | 64-32-10 | uint4 -int8-> uint8 -int8-> int32 | 1x13, 1x2 | 15 | " \
           "160.0 | 160 | 1.000 | 158 | 98.7 % | 1,624 | 900 | 2 | 15 | 72.8 | 454,688 |" \
           in text
    assert "1.080 **(off by more than 5 %)**" in lines[3] and "| - | - |" in lines[3]
    ref = reference_table(_row(), NNGEN_REFERENCE)
    assert "| cycles per inference | 1,266 | 160.0 |" in ref
    assert "| LUT4 | ~9,100 | 1,624 |" in ref
    assert "NNgen (published, cited)" in ref and "nnaccel (measured here)" in ref


@pytest.mark.verilator
def test_run_bench_on_a_tiny_network(tmp_path):
    tiny = Benchmark(
        "tiny", "int4 MLP 11-7-3", max_lanes=6,
        make=lambda seed, n: (prime_int4_model(seed, widths=(11, 7, 3), name="tiny"),
                              random_inputs(prime_int4_model(seed, widths=(11, 7, 3)), n),
                              "random weights"))
    lines = []
    assert run_bench(tmp_path, synthesis=False, benchmarks=[tiny], vectors=12,
                     log=lines.append) == 0
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["format"] == "nnaccel-bench/1" and result["problems"] == []
    (row,) = result["benchmarks"]
    assert row["name"] == "tiny" and row["vectors"] == 12 and row["outputs_equal"]
    assert row["outputs_checked"] == 12 * 3 and row["lanes"] <= 6
    assert abs(row["cycles_per_inference"] / row["expected_cycles"] - 1) <= 0.05
    assert row["ideal_cycles"] == -(-row["macs"] // row["lanes"]) <= row["expected_cycles"]
    assert row["utilisation"] == pytest.approx(
        row["macs"] / row["lanes"] / row["cycles_per_inference"])
    assert row["synthesis"] is None and row["shape"] == "11-7-3"
    assert "| tiny | 11-7-3 |" in (tmp_path / "bench.md").read_text()
    assert (tmp_path / "bench.png").stat().st_size > 0
    assert (tmp_path / "tiny" / "manifest.json").is_file()
    assert any("tiny: simulate 12 vectors" in line and "done in" in line for line in lines)


@pytest.mark.parametrize("pattern", [0, 3])
def test_sfc_shape_at_the_command_lines_fold(pattern):
    """The SFC network's kind of fold (``--target-cycles``: two PEs over whole input vectors,
    one input beat per vector kept for every neuron fold, 2-bit beats gathered into whole
    vectors), on a smaller SFC-like chain in amaranth.sim under stalls, equal to numpy."""
    from nnaccel.gen.generate import generate
    from nnaccel.gen.plan import Options
    from nnaccel.sim.amsim import STALL_PATTERNS, from_beats, run_stream_test, to_beats

    model = sfc_model(3, widths=(96, 32, 32, 32, 10), name="sfc_small")
    design = generate(model, Options(target_cycles=16))
    folds = [(e["pe"], e["simd"]) for e in design.manifest["layers"]]
    assert folds == [(2, 96), (2, 32), (2, 32), (5, 4)]
    x = random_inputs(model, 3, seed=pattern)
    io = design.manifest["io"]
    beat_in, beat_out = io["input"]["elements_per_beat"], io["output"]["elements_per_beat"]
    net = design.network
    (got,) = run_stream_test(net, [(net.i_data, to_beats(model.input_dtype.encode(x), beat_in))],
                             [(net.o_data, 3 * -(-10 // beat_out))],
                             pattern=STALL_PATTERNS[pattern], seed=pattern)
    out = np.array(from_beats(got, 10, beat_out), dtype=np.int64)
    out = np.where(out >= 1 << 31, out - (1 << 32), out)
    assert out.tolist() == np.asarray(model.forward(x)).tolist()
