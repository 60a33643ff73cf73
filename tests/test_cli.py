"""SPEC sections 4 and 5 through the command line: good paths, and bad input that stops with
exit status 2, one message naming the layer and the field, no traceback, nothing half-written.

A few cases run ``python -m nnaccel`` as a real subprocess; the many others call
``nnaccel.cli.main`` in-process (each Python start costs about a second).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnaccel import cli
from nnaccel.gen.model_io import read_model

from .helpers import B1, W1, model_arrays, model_doc, spec_forward, tiny_onnx, write_model_dir


@pytest.fixture
def good(tmp_path):
    return write_model_dir(tmp_path / "good")


def nnaccel(*args, cwd=None):
    """Run ``python -m nnaccel`` as a subprocess."""
    return subprocess.run([sys.executable, "-m", "nnaccel", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "error"})


def assert_one_error(stderr, *needles):
    """Exactly one line, the error, naming what it must name; no traceback."""
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("nnaccel: error: "), stderr
    for needle in needles:
        assert needle in lines[0], (needle, stderr)


def siblings(path):
    """Everything in the directory that would hold ``path`` (temporary leftovers included)."""
    return sorted(p.name for p in Path(path).parent.iterdir())


# --- good paths, as real subprocesses -----------------------------------------------------------

def test_generate_subprocess(good, tmp_path):
    out = tmp_path / "out" / "design"
    result = nnaccel("generate", good, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == [".nnaccel-output.json", "manifest.json",
                                                     "model", "nnaccel-source.json", "tiny.v"]
    assert read_model(out / "model").name == "tiny"     # the copy run and build use
    verilog = (out / "tiny.v").read_text()
    assert "module tiny(" in verilog.replace(" (", "(")
    assert "endmodule" in verilog
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["name"] == "tiny"
    assert isinstance(manifest["expected_cycles_per_inference"], int)
    assert manifest["expected_cycles_per_inference"] >= 1
    assert [entry["name"] for entry in manifest["layers"]] == ["fc1", "fc2"]
    for entry in manifest["layers"]:
        assert entry["engine"] in ("mvu", "sparse", "systolic")
        for key in ("lanes", "acc_width", "expected_cycles"):
            assert isinstance(entry[key], int) and entry[key] >= 1, key
    assert siblings(out) == ["design"]                     # no temporary directory left
    assert out.stat().st_mode & 0o777 == 0o777 & ~_umask()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_run_numpy_json_subprocess(good, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(-8, 8, size=(9, 4))
    x[0], x[1] = -8, 7
    np.save(tmp_path / "x.npy", x)
    result = nnaccel("run", good, "--backend", "numpy", "--input", tmp_path / "x.npy", "--json",
                     "--output", tmp_path / "y" / "y.npy")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1                                  # one JSON object on stdout
    doc = json.loads(lines[0])
    assert doc["backend"] == "numpy"
    model = read_model(good)
    assert doc["outputs"] == model.forward(x).tolist() == spec_forward(x)
    assert len({tuple(r) for r in doc["outputs"]}) > 3      # the outputs vary
    assert np.load(tmp_path / "y" / "y.npy").tolist() == doc["outputs"]


# --- bad input, as real subprocesses ------------------------------------------------------------

def test_bad_model_subprocess(tmp_path):
    arrays = {**model_arrays(), "fc2.w": np.array([[1, -2, 3], [0, 8, 1]])}   # 8 > int4
    model = write_model_dir(tmp_path / "bad", arrays=arrays)
    out = tmp_path / "out"
    result = nnaccel("generate", model, "-o", out)
    assert result.returncode == 2
    assert_one_error(result.stderr, "'fc2'", "'weight'", "8")
    assert result.stdout == ""
    assert not out.exists()
    assert siblings(out) == ["bad"]


def test_chain_mismatch_subprocess(tmp_path):
    arrays = {**model_arrays(), "fc2.w": np.ones((2, 4), dtype=np.int64)}
    model = write_model_dir(tmp_path / "bad", arrays=arrays)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4), dtype=np.int64))
    result = nnaccel("run", model, "--input", x, "--json", "--output", tmp_path / "y.npy")
    assert result.returncode == 2
    assert_one_error(result.stderr, "'fc2'", "'weight'")
    assert result.stdout == ""
    assert not (tmp_path / "y.npy").exists()


def test_unknown_board_subprocess(good, tmp_path):
    out = tmp_path / "out"
    result = nnaccel("generate", good, "-o", out, "--board", "no_such_board")
    assert result.returncode == 2
    assert_one_error(result.stderr, "no_such_board")
    assert not out.exists()


def test_bad_fold_subprocess(good, tmp_path):
    out = tmp_path / "out"
    result = nnaccel("generate", good, "-o", out, "--fold", "fc1=4by8")
    assert result.returncode == 2
    assert_one_error(result.stderr, "--fold", "fc1=4by8")
    assert not out.exists()


def test_run_bad_input_subprocess(good, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((3, 5), dtype=np.int64))
    result = nnaccel("run", good, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy")
    assert result.returncode == 2
    assert_one_error(result.stderr, "'input'", "(3, 5)")
    assert not (tmp_path / "y.npy").exists()


def test_usage_error_subprocess(good, tmp_path):
    result = nnaccel("generate", good)                      # no -o
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("error:") == 1 and "-o" in result.stderr


# --- bad models, in-process ---------------------------------------------------------------------

def _mutated(mutate):
    doc, arrays = model_doc(), model_arrays()
    mutate(doc, arrays)
    return doc, arrays


def _fc(doc, i):
    return doc["layers"][i]


BAD_MODELS = [
    ("format", lambda d, a: d.update(format="nnaccel-model/9"), None, "format"),
    ("model-name", lambda d, a: d.update(name="tiny-net"), None, "name"),
    ("input-dtype", lambda d, a: d["input"].update(dtype="int64"), None, "input.dtype"),
    ("input-shape", lambda d, a: d["input"].update(shape=[0]), None, "input.shape"),
    ("layers-empty", lambda d, a: d.update(layers=[]), None, "layers"),
    ("layer-name", lambda d, a: _fc(d, 1).update(name="fc 2"), "#1", "name"),
    ("duplicate", lambda d, a: _fc(d, 1).update(name="fc1"), "fc1", "name"),
    ("conv2d", lambda d, a: _fc(d, 0).update(op="conv2d"), "fc1", "op"),
    ("maxpool2d", lambda d, a: _fc(d, 1).update(op="maxpool2d"), "fc2", "op"),
    ("unknown-op", lambda d, a: _fc(d, 1).update(op="softmax"), "fc2", "op"),
    ("unknown-field", lambda d, a: _fc(d, 0).update(weigth="fc1.w"), "fc1", "weigth"),
    ("missing-array", lambda d, a: a.pop("fc1.b"), "fc1", "bias"),
    ("weight-range", lambda d, a: a.update({"fc1.w": W1 * 20}), "fc1", "weight"),
    ("weight-float", lambda d, a: a.update({"fc1.w": W1 + 0.25}), "fc1", "weight"),
    ("bias-range", lambda d, a: a.update({"fc1.b": B1 * 2 ** 30}), "fc1", "bias"),
    ("chain", lambda d, a: a.update({"fc2.w": np.ones((2, 2), dtype=np.int64)}), "fc2",
     "weight"),
    ("mult", lambda d, a: _fc(d, 0)["output"].update(mult=2 ** 31), "fc1", "output.mult"),
    ("shift", lambda d, a: _fc(d, 0)["output"].update(shift=32), "fc1", "output.shift"),
    ("identity-narrow", lambda d, a: _fc(d, 1)["output"].update(dtype="int4"), "fc2",
     "output.dtype"),
    ("thresholds", lambda d, a: _fc(d, 1).update(output={"kind": "threshold", "dtype": "uint1",
                                                          "thresholds": [[2, 1]]}),
     "fc2", "output.thresholds"),
    ("codebook", lambda d, a: _fc(d, 1).update(codebook=[1, 2]), "fc2", "indices"),
]


@pytest.mark.parametrize("command", ["generate", "run"])
@pytest.mark.parametrize(("mutate", "layer", "field"),
                         [pytest.param(m, la, f, id=i) for i, m, la, f in BAD_MODELS])
def test_bad_model_in_process(tmp_path, capsys, command, mutate, layer, field):
    model = write_model_dir(tmp_path / "model", *_mutated(mutate))
    out = tmp_path / "out"
    if command == "generate":
        argv = ["generate", str(model), "-o", str(out)]
    else:
        np.save(tmp_path / "x.npy", np.zeros((2, 4), dtype=np.int64))
        argv = ["run", str(model), "--input", str(tmp_path / "x.npy"), "--json",
                "--output", str(out)]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    needles = [f"field {field!r}"] + ([f"layer {layer!r}"] if layer else [])
    assert_one_error(captured.err, *needles)
    assert captured.out == ""
    assert not out.exists()
    assert siblings(out) == ["model"] + (["x.npy"] if command == "run" else [])


def test_missing_weights_npz(tmp_path, capsys):
    model = write_model_dir(tmp_path / "model")
    (model / "weights.npz").unlink()
    assert cli.main(["generate", str(model), "-o", str(tmp_path / "out")]) == 2
    assert_one_error(capsys.readouterr().err, "'fc1'", "'weight'", "weights.npz")
    assert not (tmp_path / "out").exists()


def test_corrupt_weights_npz(tmp_path, capsys):
    model = write_model_dir(tmp_path / "model")
    (model / "weights.npz").write_bytes(b"PK\x03\x04 this is not really a zip")
    assert cli.main(["generate", str(model), "-o", str(tmp_path / "out")]) == 2
    assert_one_error(capsys.readouterr().err, "'fc1'", "'weight'")
    assert not (tmp_path / "out").exists()


def test_missing_model(tmp_path, capsys):
    assert cli.main(["generate", str(tmp_path / "absent"), "-o", str(tmp_path / "out")]) == 2
    assert_one_error(capsys.readouterr().err, "absent")
    assert not (tmp_path / "out").exists()


def test_verilog_keyword_name_is_caught_at_generate(tmp_path, capsys):
    doc = model_doc()
    doc["name"] = "module"
    model = write_model_dir(tmp_path / "model", doc)
    out = tmp_path / "out"
    assert cli.main(["generate", str(model), "-o", str(out)]) == 2
    assert_one_error(capsys.readouterr().err, "field 'name'", "'module'", "Verilog")
    assert not out.exists()
    assert siblings(out) == ["model"]


def test_failed_generate_keeps_the_previous_output(good, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["generate", str(good), "-o", str(out)]) == 0
    def files():
        return {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    before = files()
    capsys.readouterr()
    bad = write_model_dir(tmp_path / "bad", arrays={**model_arrays(), "fc1.b": B1[:2]})
    assert cli.main(["generate", str(bad), "-o", str(out), "--force"]) == 2
    assert_one_error(capsys.readouterr().err, "'fc1'", "'bias'")
    assert files() == before
    assert cli.main(["generate", str(good), "-o", str(out), "--fold", "fc1=9x9", "--force"]) == 2
    assert files() == before
    capsys.readouterr()
    assert cli.main(["generate", str(good), "-o", str(out)]) == 2   # no --force: refused
    assert_one_error(capsys.readouterr().err, "--output", "--force")
    assert files() == before
    assert cli.main(["generate", str(good), "-o", str(out), "--force", "--dump-ir"]) == 0
    assert "ir.json" in {p.name for p in out.iterdir()}
    assert siblings(out) == ["bad", "good", "out"]


# --- bad command lines, in-process --------------------------------------------------------------

@pytest.mark.parametrize("fold", ["fc1", "fc1=", "fc1=4", "fc1=4x", "fc1=x4", "fc1=0x1",
                                  "fc1=1x0", "fc1=2x2x2", "=1x1", "1fc=1x1", "fc1=-1x1",
                                  "fc1=ax1", "fc1=1X1", "fc1=1.5x1", "fc1 = 1x1", ""])
def test_bad_fold_syntax(good, tmp_path, capsys, fold):
    out = tmp_path / "out"
    assert cli.main(["generate", str(good), "-o", str(out), "--fold", fold]) == 2
    assert_one_error(capsys.readouterr().err, "--fold", repr(fold), "LAYER=PExSIMD")
    assert not out.exists()


def test_fold_for_a_missing_layer(good, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["generate", str(good), "-o", str(out), "--fold", "fc9=1x1"]) == 2
    assert_one_error(capsys.readouterr().err, "--fold", "'fc9'", "fc1, fc2")
    assert not out.exists()


def test_fold_larger_than_the_layer(good, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["generate", str(good), "-o", str(out), "--fold", "fc1=4x4"]) == 2
    assert_one_error(capsys.readouterr().err, "'fc1'", "4x4")
    assert not out.exists()


@pytest.mark.parametrize(("option", "value", "needle"), [
    ("--engine", "fc1=gpu", "'gpu'"),
    ("--engine", "fc9=mvu", "'fc9'"),
    ("--engine", "mvu", "LAYER=ENGINE"),
    ("--weight-storage", "fc1=flash", "--weight-storage"),
    ("--weight-storage", "fc9=bram", "'fc9'"),
    ("--board", "no_such_board", "no_such_board"),
    ("--board", "", "known boards"),
])
def test_bad_generate_option(good, tmp_path, capsys, option, value, needle):
    out = tmp_path / "out"
    assert cli.main(["generate", str(good), "-o", str(out), option, value]) == 2
    assert_one_error(capsys.readouterr().err, needle)
    assert not out.exists()


def test_output_below_a_file(good, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli.main(["generate", str(good), "-o", str(tmp_path / "file" / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("nnaccel: error:") == 1 and "file" in err
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4), dtype=np.int64))
    assert cli.main(["run", str(good), "--input", str(x),
                     "--output", str(tmp_path / "file" / "y.npy")]) == 2
    assert_one_error(capsys.readouterr().err, "file")


@pytest.mark.parametrize("argv", [
    ["generate", "MODEL"],                                  # no -o
    ["generate", "MODEL", "-o", "OUT", "--batch", "0"],
    ["generate", "MODEL", "-o", "OUT", "--max-lanes", "-3"],
    ["generate", "MODEL", "-o", "OUT", "--target-cycles", "x"],
    ["generate", "MODEL", "-o", "OUT", "--target-cycles", "4", "--max-lanes", "4"],
    ["generate", "MODEL", "-o", "OUT", "--stop-after", "emit"],
    ["run", "MODEL"],                                       # no --input
    ["run", "MODEL", "--input", "X", "--backend", "gpu"],
    ["run", "MODEL", "--input", "X", "--idle", "1.5"],
    ["frobnicate"],
    [],
])
def test_bad_command_line(good, tmp_path, capsys, argv):
    argv = [str(good) if a == "MODEL" else str(tmp_path / "out") if a == "OUT" else a
            for a in argv]
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1
    assert not (tmp_path / "out").exists()


# --- bad input files for run, in-process --------------------------------------------------------

BAD_INPUTS = [
    ("wrong-width", np.zeros((2, 5), dtype=np.int64), "(2, 5)"),
    ("no-batch-axis", np.zeros(4, dtype=np.int64), "(4,)"),
    ("extra-axis", np.zeros((2, 4, 1), dtype=np.int64), "(2, 4, 1)"),
    ("empty-batch", np.zeros((0, 4), dtype=np.int64), "(0, 4)"),
    ("above-int4", np.array([[0, 8, 0, 0]]), "8"),
    ("below-int4", np.array([[0, 0, -9, 0]]), "-9"),
    ("uint64-would-wrap", np.array([[0, 2 ** 64 - 1, 0, 0]], dtype=np.uint64),
     str(2 ** 64 - 1)),
    ("float-fraction", np.array([[0.5, 0, 0, 0]]), "non-integer"),
    ("float-nan", np.array([[np.nan, 0, 0, 0]]), "non-integer"),
    ("float-huge", np.array([[1e20, 0, 0, 0]]), "outside"),
    ("strings", np.array([["1", "2", "3", "4"]]), "<U1"),
    ("complex", np.zeros((1, 4), dtype=complex), "complex"),
]


@pytest.mark.parametrize(("x", "needle"), [pytest.param(x, n, id=i) for i, x, n in BAD_INPUTS])
def test_run_bad_input(good, tmp_path, capsys, x, needle):
    np.save(tmp_path / "x.npy", x)
    y = tmp_path / "y.npy"
    assert cli.main(["run", str(good), "--input", str(tmp_path / "x.npy"), "--json",
                     "--output", str(y)]) == 2
    captured = capsys.readouterr()
    assert_one_error(captured.err, "field 'input'", needle)
    assert captured.out == ""
    assert not y.exists()
    assert siblings(y) == ["good", "x.npy"]


@pytest.mark.parametrize("content", [b"", b"garbage", None], ids=["empty", "garbage", "absent"])
def test_run_unreadable_input(good, tmp_path, capsys, content):
    x = tmp_path / "x.npy"
    if content is not None:
        x.write_bytes(content)
    assert cli.main(["run", str(good), "--input", str(x), "--output",
                     str(tmp_path / "y.npy")]) == 2
    assert_one_error(capsys.readouterr().err, "field 'input'")
    assert not (tmp_path / "y.npy").exists()


def test_run_npz_input(good, tmp_path, capsys):
    np.savez(tmp_path / "x.npz", x=np.zeros((1, 4), dtype=np.int64))
    assert cli.main(["run", str(good), "--input", str(tmp_path / "x.npz")]) == 2
    assert_one_error(capsys.readouterr().err, "field 'input'", ".npz")


def test_run_pickled_input(good, tmp_path, capsys):
    np.save(tmp_path / "x.npy", np.array([[1, 2, 3, 4]], dtype=object), allow_pickle=True)
    assert cli.main(["run", str(good), "--input", str(tmp_path / "x.npy")]) == 2
    assert_one_error(capsys.readouterr().err, "field 'input'")


def test_run_bipolar_input_zero(tmp_path, capsys):
    doc = model_doc()
    doc["input"]["dtype"] = "bipolar"
    model = write_model_dir(tmp_path / "model", doc)
    np.save(tmp_path / "x.npy", np.array([[1, -1, 0, 1]]))
    assert cli.main(["run", str(model), "--input", str(tmp_path / "x.npy")]) == 2
    assert_one_error(capsys.readouterr().err, "field 'input'", "bipolar")
    np.save(tmp_path / "x.npy", np.array([[1, -1, -1, 1]]))
    assert cli.main(["run", str(model), "--input", str(tmp_path / "x.npy"), "--json"]) == 0


# --- good paths, in-process ---------------------------------------------------------------------

def test_run_in_process_matches_spec(good, tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 8, size=(20, 4))
    np.save(tmp_path / "x.npy", x.astype(np.int8))          # any integer dtype is fine
    assert cli.main(["run", str(good), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["outputs"] == spec_forward(x)
    assert doc["backend"] == "numpy"


def test_run_integral_float_input(good, tmp_path, capsys):
    x = np.array([[7.0, -8.0, 0.0, 3.0]])
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["run", str(good), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == spec_forward(x.astype(np.int64))


def test_run_plain_text(good, tmp_path, capsys):
    x = np.array([[7, -8, 0, 3], [1, 1, 1, 1]])
    np.save(tmp_path / "x.npy", x)
    assert cli.main(["run", str(good), "--input", str(tmp_path / "x.npy")]) == 0
    out = capsys.readouterr().out
    for row in spec_forward(x):
        assert " ".join(map(str, row)) in out


def test_keyword_model_refused_by_every_command(tmp_path, capsys):
    """A model named by a Verilog keyword cannot name a module: the reader refuses it (SPEC 5),
    so no command half-works on it; a case variant such as ``Module`` is fine."""
    doc = model_doc()
    doc["name"] = "module"
    model = write_model_dir(tmp_path / "model", doc)
    np.save(tmp_path / "x.npy", np.zeros((1, 4), dtype=np.int64))
    assert cli.main(["run", str(model), "--input", str(tmp_path / "x.npy"), "--json"]) == 2
    err = capsys.readouterr().err
    assert "field 'name'" in err and "keyword" in err and "Traceback" not in err
    doc["name"] = "Module"
    model = write_model_dir(tmp_path / "model2", doc)
    assert cli.main(["run", str(model), "--input", str(tmp_path / "x.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == spec_forward(np.zeros((1, 4),
                                                                                   dtype=int))


@pytest.mark.parametrize("met,status", [((True, True), 0), ((True, False), 1)])
def test_bench_exit_status_follows_the_suites_targets(tmp_path, monkeypatch, met, status):
    """`nnaccel bench --suite systolic` exits 1 when its summary lists a target not met."""
    import nnaccel.bench.systolic as bench_systolic

    def fake(outdir, **kwargs):
        outdir.mkdir(parents=True)
        targets = {f"t{n}": {"met": m, "detail": ""} for n, m in enumerate(met)}
        (outdir / "systolic.json").write_text(json.dumps({"targets": targets}))
        return []

    monkeypatch.setattr(bench_systolic, "run_systolic_bench", fake)
    assert cli.main(["bench", "--suite", "systolic", "-o", str(tmp_path / "b")]) == status


# --- polish: --version, help texts, the numpy backend validating generation options -------------

def test_version_is_the_package_metadata(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"nnaccel {version('nnaccel')}"


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_every_option_of_every_command_has_help_with_its_default():
    parser = cli.build_parser()
    commands = dict(_subparsers(parser))
    assert {"generate", "run", "build", "compress", "import", "demo", "bench"} <= set(commands)
    for name, sub in [("nnaccel", parser), *commands.items()]:
        text = sub.format_help()
        for action in sub._actions:
            assert action.help, (name, action.dest)
            default = action.default
            if (action.option_strings and default not in (None, [], "==SUPPRESS==")
                    and not isinstance(default, bool)):
                # the default is shown in the help, by the text or the formatter
                assert "default" in sub._get_formatter()._get_help_string(action), (
                    name, action.dest)
        assert "(default: 0)" in text or name != "run", text


@pytest.mark.parametrize(("fold", "needle"), [("fc9=2x2", "'fc9'"), ("fc1=4x4", "'fc1'")])
def test_run_numpy_refuses_options_generate_refuses(good, tmp_path, capsys, fold, needle):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 4), dtype=np.int64))
    assert cli.main(["generate", str(good), "-o", str(tmp_path / "g"), "--fold", fold]) == 2
    generate_err = capsys.readouterr().err
    assert cli.main(["run", str(good), "--input", str(x), "--fold", fold]) == 2
    run_err = capsys.readouterr().err
    assert_one_error(run_err, needle)
    assert run_err == generate_err
    # a valid fold is accepted by the numpy backend
    assert cli.main(["run", str(good), "--input", str(x), "--fold", "fc1=3x4"]) == 0


def test_generate_json(good, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["generate", str(good), "-o", str(out), "--json", "--fold", "fc1=3x2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["output"] == str(out) and doc["verilog"] == str(out / "tiny.v")
    assert doc["manifest"] == json.loads((out / "manifest.json").read_text())
    assert [(e["name"], e["pe"], e["simd"]) for e in doc["manifest"]["layers"]][0] == (
        "fc1", 3, 2)


def test_import_json(tmp_path, capsys):
    path = tiny_onnx(tmp_path / "one.onnx")
    out = tmp_path / "m"
    assert cli.main(["import", str(path), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "one" and doc["output"] == str(out) and doc["exact"] is True
    assert doc["input"] == {"shape": [4], "dtype": "uint4"}
    (layer,) = doc["layers"]
    assert (layer["op"], layer["in_shapes"], layer["out_shape"]) == ("linear", [[4]], [3])
    assert read_model(out).layers[0].name == layer["name"]


# --- runs and builds of a generated directory ---------------------------------------------------

@pytest.fixture
def generated(good, tmp_path):
    out = tmp_path / "gen"
    assert cli.main(["generate", str(good), "-o", str(out), "--fold", "fc1=3x2",
                     "--board", "icebreaker"]) == 0
    return out


def test_generated_dir_keeps_its_model_and_options(generated, good, tmp_path, capsys):
    record = json.loads((generated / cli.SOURCE).read_text())
    assert record["options"]["fold"] == ["fc1=3x2"]
    # the model is a copy: the original may change or vanish
    for f in good.iterdir():
        f.unlink()
    good.rmdir()
    x = tmp_path / "x.npy"
    X = np.random.default_rng(4).integers(-8, 8, size=(5, 4))
    np.save(x, X)
    capsys.readouterr()
    assert cli.main(["run", str(generated), "--input", str(x), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == spec_forward(X)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--fold", "fc1=1x1"], "--fold"),
    (["--max-lanes", "2"], "--max-lanes"),
    (["--batch", "2"], "--batch"),
])
def test_generated_dir_refuses_other_generation_options(generated, tmp_path, capsys, argv,
                                                        needle):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 4), dtype=np.int64))
    for command in (["run", str(generated), "--input", str(x)],
                    ["build", str(generated), "-o", str(tmp_path / "b")]):
        assert cli.main(command + argv) == 2
        assert_one_error(capsys.readouterr().err, needle, "generated")
    assert not (tmp_path / "b").exists()
    # the recorded options themselves are no conflict
    assert cli.main(["run", str(generated), "--input", str(x), "--fold", "fc1=3x2"]) == 0


def _fake_board_flow(monkeypatch):
    """The board flow (with or without the PLL's clock passes) replaced by a stand-in that
    elaborates the network and records the board and the files it would write."""
    import nnaccel.boards.build as board_build
    import nnaccel.boards.clocking as clocking

    calls = []

    def fake(network, board, outdir, *, name, log=None, finish=None, **kwargs):
        from amaranth.hdl import Fragment

        Fragment.get(network, None)
        report = {"fmax_mhz": 50.0}
        calls.append((board, finish(report)))
        return report

    monkeypatch.setattr(board_build, "build", fake)
    monkeypatch.setattr(clocking, "build_clocked", fake)
    monkeypatch.setattr(board_build, "format_report", lambda report: "report")
    return calls


def test_build_generated_dir_is_the_generated_design(generated, tmp_path, capsys,
                                                     monkeypatch):
    calls = _fake_board_flow(monkeypatch)
    saved = json.loads((generated / "manifest.json").read_text())
    assert cli.main(["build", str(generated), "-o", str(tmp_path / "b")]) == 0
    capsys.readouterr()
    (board, files), = calls
    assert board == "icebreaker"                     # the board it was generated for
    assert json.loads(files["manifest.json"]) == saved
    assert [(e["pe"], e["simd"]) for e in saved["layers"]][0] == (3, 2)
    # another board than the recorded one is a conflict
    assert cli.main(["build", str(generated), "--board", "ulx3s-85f", "-o",
                     str(tmp_path / "c")]) == 2
    assert_one_error(capsys.readouterr().err, "--board", "icebreaker")
    # so is an edited Verilog file (run and build would not use it)
    verilog = generated / "tiny.v"
    text = verilog.read_text()
    verilog.write_text(text + "// edited\n")
    assert cli.main(["build", str(generated), "-o", str(tmp_path / "d")]) == 2
    assert_one_error(capsys.readouterr().err, "different design")
    verilog.write_text(text)
    # a model copy edited after generation is another design: refused, nothing built
    arrays = model_arrays()
    arrays["fc2.w"] = np.full((2, 3), 7)
    np.savez(generated / "model" / "weights.npz", **arrays)
    assert cli.main(["build", str(generated), "-o", str(tmp_path / "d")]) == 2
    assert_one_error(capsys.readouterr().err, "different design")
    assert len(calls) == 1 and not (tmp_path / "d").exists()


def test_not_a_generated_dir(generated, tmp_path, capsys):
    (generated / cli.SOURCE).write_text("{}")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 4), dtype=np.int64))
    assert cli.main(["run", str(generated), "--input", str(x)]) == 2
    assert_one_error(capsys.readouterr().err, cli.SOURCE)


@pytest.mark.verilator
def test_run_generated_dir_on_verilator(generated, tmp_path, capsys):
    x = tmp_path / "x.npy"
    X = np.random.default_rng(5).integers(-8, 8, size=(4, 4))
    np.save(x, X)
    capsys.readouterr()
    assert cli.main(["run", str(generated), "--input", str(x), "--backend", "verilator",
                     "--stress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["outputs"] == spec_forward(X) and result["matches_reference"]
    saved = json.loads((generated / "manifest.json").read_text())
    assert result["expected_cycles_per_inference"] == saved["expected_cycles_per_inference"]


# --- the zoo ------------------------------------------------------------------------------------

def test_zoo_lists_and_writes_a_model_with_inputs(tmp_path, capsys):
    from nnaccel.gen.zoo.catalog import ZOO

    assert cli.main(["zoo", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(ZOO) >= {"digits_int8", "resnet8"}
    out, x = tmp_path / "m", tmp_path / "x.npy"
    assert cli.main(["zoo", "prime_int4", "-o", str(out), "--inputs", str(x), "--count", "3",
                     "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    model = read_model(out)
    assert summary["name"] == model.name == "prime_int4" and summary["inputs"] == str(x)
    X = np.load(x)
    assert X.shape == (3, *model.input_shape)
    assert X.min() >= model.input_dtype.lo and X.max() <= model.input_dtype.hi
    assert cli.main(["run", str(out), "--input", str(x), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["outputs"] == model.forward(X).tolist()
    # the same seed gives the same model; an existing output needs --force
    assert cli.main(["zoo", "prime_int4", "-o", str(out)]) == 2
    assert_one_error(capsys.readouterr().err, "--force")
    assert cli.main(["zoo", "prime_int4", "-o", str(tmp_path / "again")]) == 0
    assert read_model(tmp_path / "again").layers[0].weight.tolist() == \
        model.layers[0].weight.tolist()


def test_zoo_needs_an_output(capsys):
    assert cli.main(["zoo", "digits_int8"]) == 2
    assert_one_error(capsys.readouterr().err, "--output")


# --- --json everywhere --------------------------------------------------------------------------

def test_every_command_has_json():
    parser = cli.build_parser()
    missing = set()
    for name, sub in _subparsers(parser):
        if not any("--json" in a.option_strings for a in sub._actions):
            missing.add(name)
    assert not missing, missing


def test_board_sim_json(good, capsys, monkeypatch):
    """board-sim --json: one JSON object (the port to connect to) on stdout, the notes on
    stderr; the simulator itself is replaced (it needs Verilator)."""
    import nnaccel.board as board

    class FakeBoardSim:
        baud, clock_hz, port = 3_000_000, 25e6, "/dev/pts/99"

        def __init__(self, design, **kwargs):
            self.kwargs = kwargs

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def wait(self, seconds=None):
            pass

    monkeypatch.setattr(board, "BoardSim", FakeBoardSim)
    assert cli.main(["board-sim", str(good), "--board", "ulx3s-85f", "--seconds", "1",
                     "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc == {"design": "tiny", "board": "ulx3s-85f", "baud": 3_000_000,
                   "clock_hz": 25e6, "port": "/dev/pts/99", "self_test": 0}
    assert "serial port /dev/pts/99" in captured.err and "try: nnaccel run" in captured.err


def test_build_json(generated, tmp_path, capsys, monkeypatch):
    _fake_board_flow(monkeypatch)
    assert cli.main(["build", str(generated), "-o", str(tmp_path / "b"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)      # stdout is the one JSON object
    assert report["fmax_mhz"] == 50.0 and report["manifest"]["name"] == "tiny"
    assert report["inferences_per_second_at_fmax"] == 50e6 / report["manifest"][
        "expected_cycles_per_inference"]


def test_demo_and_bench_json(tmp_path, capsys, monkeypatch):
    import nnaccel.bench.mvu as mvu
    import nnaccel.demo as demo

    def fake_demo(outdir, **kwargs):
        print("a table on stdout")
        Path(outdir).mkdir(parents=True)
        (Path(outdir) / "summary.json").write_text(json.dumps({"rows": [1, 2]}))
        return 0

    def fake_bench(out, **kwargs):
        print("another table")
        out.mkdir(parents=True)
        (out / "bench.json").write_text(json.dumps({"networks": 3}))
        return 1

    monkeypatch.setattr(demo, "run_demo", fake_demo)
    monkeypatch.setattr(mvu, "run_bench", fake_bench)
    assert cli.main(["demo", "-o", str(tmp_path / "d"), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["summary"] == {"rows": [1, 2]}
    assert "a table on stdout" in captured.err
    assert cli.main(["bench", "-o", str(tmp_path / "b"), "--suite", "mvu", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result == {"status": 1, "output": str(tmp_path / "b"),
                      "suites": {"mvu": {"networks": 3}}}


# --- pictures -----------------------------------------------------------------------------------

def _fork_join_dir(path):
    """input -> a, input -> b, add(a, b) -> out: a fork of the input and a join."""
    doc = {"format": "nnaccel-model/1", "name": "fj", "input": {"shape": [4], "dtype": "int4"},
           "layers": [
               {"name": "a", "op": "linear", "weight": "w1", "weight_dtype": "int8",
                "output": {"kind": "requant", "mult": 1, "shift": 4, "dtype": "int4"}},
               {"name": "b", "op": "linear", "inputs": ["input"], "weight": "w2",
                "weight_dtype": "int8",
                "output": {"kind": "requant", "mult": 1, "shift": 4, "dtype": "int4"}},
               {"name": "j", "op": "add", "inputs": ["a", "b"],
                "output": {"kind": "requant", "mult": 1, "shift": 1, "dtype": "int4"}},
               {"name": "out", "op": "linear", "weight": "w3", "weight_dtype": "int4",
                "output": {"kind": "identity"}}]}
    rng = np.random.default_rng(0)
    return write_model_dir(path, doc, {"w1": rng.integers(-9, 9, (3, 4)),
                                       "w2": rng.integers(-9, 9, (3, 4)),
                                       "w3": rng.integers(-8, 8, (2, 3))})


def test_generate_diagram_and_plot(tmp_path, capsys):
    from nnaccel.plots import layout

    model_dir = _fork_join_dir(tmp_path / "fj")
    assert layout(read_model(model_dir)) == {"input": (0, 0), "a": (1, 0), "b": (1, 1),
                                             "j": (2, 0), "out": (3, 0)}
    assert cli.main(["generate", str(model_dir), "-o", str(tmp_path / "g"), "--diagram",
                     str(tmp_path / "d.svg"), "--plot", str(tmp_path / "p.png")]) == 0
    svg = (tmp_path / "d.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    # a figure format matplotlib would guess from another suffix is refused before any work
    capsys.readouterr()
    assert cli.main(["generate", str(model_dir), "-o", str(tmp_path / "h"), "--diagram",
                     str(tmp_path / "d.pdf")]) == 2
    assert_one_error(capsys.readouterr().err, "--diagram", ".svg or .png")
    assert not (tmp_path / "h").exists()
