"""Pruned convolutions lowered onto the sparse engine: SPEC 2.3's density rule puts them there,
``--engine``/``--sparse`` force them, the manifest shows the patches and the window unit, and a
residual block (a sparse convolution on the long branch, an add with its identity skip) is
bit-exact under stalls and runs at its slowest layer's rate within its computed FIFO depths."""

import json

import numpy as np
import pytest

import nnaccel.gen.generate as generate_mod
from nnaccel.gen.engines import Engine, SparseChoice
from nnaccel.gen.errors import ModelError, UsageError
from nnaccel.gen.generate import generate
from nnaccel.gen.model_io import model_from_arrays
from nnaccel.gen.plan import Options
from nnaccel.sim.amsim import STALL_PATTERNS

from .cnn_models import _mult, every_feature, tiny_res_doc
from .test_cnn_lowering import check, inputs
from .test_graph_lowering import assert_runs_at_rate, run_back_to_back


def pruned_res(seed=0, channels=4, size=6, density=0.25):
    """SPEC's ``tiny_res`` with c2 (the long branch of the residual add) pruned to about
    ``density`` of its weights."""
    doc, arrays = tiny_res_doc(seed, channels=channels, size=size)
    rng = np.random.default_rng(seed + 100)
    w = arrays["c2.w"]
    arrays["c2.w"] = np.where(rng.random(w.shape) < density, w, 0)
    return model_from_arrays(doc, arrays)


def pruned_geometries(seed=0, density=0.3):
    """A graph of pruned convolutions covering the window's geometry: C = 1 on an odd 7x9 map
    padded with 3 (``a``), a non-square strided and dilated kernel with asymmetric zero padding
    (``b``), a 1x1 with a codebook (``c``), and a residual block (``d`` on the long branch,
    ``r`` adding its identity skip ``c``)."""
    rng = np.random.default_rng(seed)

    def prune(shape):
        w = rng.integers(-8, 8, size=shape)
        return np.where(rng.random(shape) < density, w, 0)

    arrays = {"a.w": prune((4, 1, 3, 3)), "b.w": prune((6, 4, 3, 2)), "b.b": rng.integers(
        -20, 20, size=6), "d.w": prune((4, 4, 3, 3)), "c.cb": np.array([-5, -2, 0, 3, 7]),
        "c.idx": np.where(rng.random((4, 6, 1, 1)) < density,
                          rng.choice([0, 1, 3, 4], size=(4, 6, 1, 1)), 2)}

    def requant(name, typical):
        arrays[f"{name}.mult"] = _mult(rng, 4 if name != "b" else 6, typical, 15, 12)
        return {"kind": "requant", "mult": f"{name}.mult", "shift": 12, "dtype": "uint4",
                "relu": True}

    doc = {
        "format": "nnaccel-model/1", "name": "pruned_geometries",
        "input": {"shape": [1, 7, 9], "dtype": "uint4"},
        "layers": [
            {"name": "a", "op": "conv2d", "weight": "a.w", "weight_dtype": "int4",
             "padding": [1, 1, 1, 1], "pad_value": 3, "output": requant("a", 9 * 8 * 8 // 3)},
            {"name": "b", "op": "conv2d", "weight": "b.w", "weight_dtype": "int4", "bias": "b.b",
             "stride": [2, 1], "dilation": [1, 2], "padding": [0, 1, 1, 0],
             "output": requant("b", 24 * 8 * 8 // 3)},
            {"name": "c", "op": "conv2d", "codebook": "c.cb", "indices": "c.idx",
             "weight_dtype": "int4",
             "output": requant("c", 6 * 8 * 8 // 3)},
            {"name": "d", "op": "conv2d", "weight": "d.w", "weight_dtype": "int4",
             "padding": [1, 1, 1, 1], "output": requant("d", 36 * 8 * 8 // 3)},
            {"name": "r", "op": "add", "inputs": ["c", "d"],
             "output": {"kind": "requant", "mult": 1, "shift": 1, "dtype": "uint4"}},
        ],
    }
    return model_from_arrays(doc, arrays)


def entry_of(design, name):
    return next(e for e in design.manifest["layers"] if e["name"] == name)


def test_pruned_convolution_goes_to_the_sparse_engine():
    """SPEC 2.3: density <= 0.35 -> sparse (the dense c1 stays on the MVU); the manifest shows
    the patches, the window unit and the cycles; the design is bit-exact with and without
    stalls on every stream."""
    model = pruned_res(0)
    design = generate(model, Options())
    engines = {lp.layer.name: lp.engine for lp in design.plan.layers}
    assert engines["c2"] is Engine.SPARSE and engines["c1"] is Engine.MVU
    e = entry_of(design, "c2")
    assert e["engine_reason"].startswith("density 0.")
    assert (e["patch_elems"], e["pixels"], e["patches_per_image"]) == (36, 36, 36)
    assert e["window"]["out_beat"] == e["in_beat"] == 4      # one pixel of 4 channels a beat
    assert e["out_beat"] == e["pe"] and 4 % e["pe"] == 0
    assert e["nonzero_macs"] == e["nonzeros"] * 36
    assert e["expected_cycles"] >= e["expected_cycles_per_patch"] * 36
    rng = np.random.default_rng(1)
    for n, pattern in enumerate((STALL_PATTERNS[0], STALL_PATTERNS[3])):
        check(design, inputs(rng, model, 2), pattern, seed=n)


def test_every_geometry_on_the_sparse_engine():
    """Every convolution of :func:`pruned_geometries` on the sparse engine by default, bit-exact
    without and with stalls on every stream."""
    model = pruned_geometries(0)
    design = generate(model, Options())
    convs = [lp for lp in design.plan.layers if lp.layer.op.value == "conv2d"]
    assert [lp.engine for lp in convs] == [Engine.SPARSE] * 4
    assert entry_of(design, "c")["codebook"] and entry_of(design, "a")["patch_elems"] == 9
    rng = np.random.default_rng(4)
    for n, pattern in enumerate((STALL_PATTERNS[0], STALL_PATTERNS[3])):
        check(design, inputs(rng, model, 2), pattern, seed=10 + n)


def test_residual_block_runs_at_rate_within_its_fifos():
    """Three images back to back: no deadlock, within 5 % of the slowest layer's cycles (the
    sparse convolution's ``expected_cycles``, dense activations, an upper bound), no FIFO above
    its computed depth."""
    model = pruned_res(1)
    X = inputs(np.random.default_rng(3), model, 4)
    rate, expected, peak, depth = assert_runs_at_rate(model, Options(max_lanes=16), X, 1)
    print(f"pruned tiny_res: {rate} cycles/image (slowest layer {expected}); FIFO peak/depth "
          + ", ".join(f"{k[0]}.{k[1]} {peak[k]}/{depth[k]}" for k in peak))


def test_skip_fifo_at_half_its_computed_depth_deadlocks(monkeypatch):
    """The same block with the skip FIFO (r's port 0) at half the depth computed from the
    sparse convolution's timing: the fork stalls on the full skip branch before the sparse
    branch emits its first pixel, and the graph stops (at three quarters it ran at rate)."""
    computed = generate_mod.graph_fifo_plan

    def halved(plan):
        out = computed(plan)
        r = [lp.layer.name for lp in plan.layers].index("r")
        out[r][0] = dict(out[r][0], depth=out[r][0]["depth"] // 2)
        return out

    monkeypatch.setattr(generate_mod, "graph_fifo_plan", halved)
    model = pruned_res(1)
    design = generate(model, Options(max_lanes=16))
    ends, _ = run_back_to_back(design, inputs(np.random.default_rng(3), model, 2), limit=20_000)
    assert len(ends) < 2


def test_pe_count_by_the_rule_and_by_a_target():
    """16 output channels, about 5 non-zero weights per patch column: more PEs pay until the
    broadcast (one non-zero activation a cycle) binds. By default the PEs (dividing M) grow while
    a step realises half its ideal speedup; under ``--target-cycles`` the fewest that meet it,
    and the manifest's cycles then meet it (the steps use the index width the layer gets)."""
    model = pruned_res(0, channels=16, size=4, density=0.3)
    e = entry_of(generate(model, Options()), "c2")
    steps = e["pe_steps"]
    assert [s["pe"] for s in steps] == [1, 2, 4, 8] and e["pe"] == 4
    assert steps[2]["realised"] >= 0.5 > steps[3]["realised"]
    assert e["expected_cycles"] == steps[2]["expected_cycles"]
    target = steps[1]["expected_cycles"]
    t = entry_of(generate(model, Options(target_cycles=target)), "c2")
    assert t["pe"] == 2 and t["expected_cycles"] <= target
    assert not t["warnings"]


def test_sparse_forced_on_a_convolution():
    """``--engine`` puts a dense convolution on the sparse engine, ``--sparse`` forces its PEs
    (shown in the manifest); PEs that do not divide M are refused; grouped and bipolar
    convolutions cannot run on it."""
    model = pruned_res(2)
    forced = Options(engines=(("c1", Engine.SPARSE),), sparse=(("c2", SparseChoice(2, 4)),))
    design = generate(model, forced)
    c1, c2 = entry_of(design, "c1"), entry_of(design, "c2")
    assert c1["engine"] == "sparse" and c1["engine_reason"].startswith("forced by --engine")
    assert (c2["pe"], c2["queue_depth"], c2["lanes"], c2["out_beat"]) == (2, 4, 2, 2)
    check(design, inputs(np.random.default_rng(2), model, 2), STALL_PATTERNS[3], seed=2)
    with pytest.raises(UsageError, match="PEs dividing its 4 output channels"):
        generate(model, Options(sparse=(("c2", SparseChoice(3)),)))
    feature = every_feature()
    grouped = next(lay.name for lay in feature.layers
                   if lay.op.value == "conv2d" and lay.groups > 1)
    with pytest.raises(ModelError, match="sparse engine runs conv2d with groups = 1"):
        generate(feature, Options(engines=((grouped, Engine.SPARSE),)))
    bipolar = next(lay.name for lay in feature.layers
                   if lay.op.value == "conv2d" and lay.weight_dtype.kind.value == "bipolar")
    with pytest.raises(ModelError, match="bipolar layer cannot run on the sparse engine"):
        generate(feature, Options(engines=((bipolar, Engine.SPARSE),)))


def test_cli_forces_and_refuses(tmp_path, capsys):
    """From the command line: ``--engine``/``--sparse`` force a convolution's engine and PEs
    (the manifest says so); PEs not dividing M are one message naming the layer, exit 2,
    nothing written."""
    from nnaccel import cli
    from nnaccel.gen.model_io import write_model

    model = write_model(pruned_res(2), tmp_path / "m")
    out = tmp_path / "out"
    assert cli.main(["generate", str(model), "-o", str(out), "--engine", "c1=sparse",
                     "--sparse", "c2=2,4"]) == 0
    entries = {e["name"]: e for e in json.loads((out / "manifest.json").read_text())["layers"]}
    assert entries["c1"]["engine"] == "sparse" and entries["c1"]["window"]["out_beat"] == 3
    assert (entries["c2"]["pe"], entries["c2"]["queue_depth"]) == (2, 4)
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert cli.main(["generate", str(model), "-o", str(bad), "--sparse", "c2=3"]) == 2
    err = capsys.readouterr().err
    assert "layer 'c2'" in err and "PEs dividing its 4 output channels" in err
    assert "Traceback" not in err and not bad.exists()


@pytest.mark.verilator
@pytest.mark.parametrize("make", [pruned_res, pruned_geometries], ids=lambda f: f.__name__)
def test_verilator_sparse_convolutions(make):
    """The residual block's and the geometries' Verilog under Verilator, random idle and
    back-pressure (checked to take effect), every output equal to numpy."""
    from nnaccel.sim.design import simulate

    from ..sim.test_verilator_axis import check_stalls

    model = make(0)
    design = generate(model, Options())
    assert any(lp.engine is Engine.SPARSE for lp in design.plan.layers)
    x = inputs(np.random.default_rng(8), model, 4)
    _, result = simulate(design, x, idle=0.3, stall=0.3, seed=5)
    check_stalls(result, 0.3, 0.3)
