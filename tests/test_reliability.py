"""Issue 17, defects 1-7: a user's files are never removed or overwritten, hostile inputs end in
exit status 2 with one message naming the field (no traceback, nothing allocated beyond the
documented limits, nothing written), SIGTERM cleans up like Ctrl-C, and ``run --backend
verilator`` reports a mismatch with the reference instead of a traceback.

Every case checks the exit status, the message, the absence of "Traceback", and that the files
around it are byte for byte what they were (hashed before and after).
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnaccel import cli
from nnaccel.gen import atomic, safeio
from nnaccel.gen.atomic import MARKER
from nnaccel.gen.model_io import read_model

from .helpers import B1, W2, model_doc, tiny_onnx, write_model_dir


@pytest.fixture
def good(tmp_path):
    return write_model_dir(tmp_path / "good")


def tree(root):
    """Every path below ``root`` (itself included) with the SHA-256 of each file's bytes, or
    the target of each symbolic link: what a refused command must leave exactly as it was."""
    root = Path(root)
    out = {}
    for p in sorted([root, *root.rglob("*")]):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def assert_one_error(err, *needles):
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nnaccel: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def refused(capsys, argv, *needles, status=2):
    assert cli.main([str(a) for a in argv]) == status
    captured = capsys.readouterr()
    assert_one_error(captured.err, *needles)
    return captured


def nnaccel(*args, cwd=None, env=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "nnaccel", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env={**os.environ, "PYTHONWARNINGS": "error", **(env or {})})


# --- 1. -o never destroys what is there ----------------------------------------------------------

def test_generate_refuses_a_directory_of_the_users(good, tmp_path, capsys):
    w = tmp_path / "w"
    w.mkdir()
    (w / "thesis.tex").write_text("keep\n")
    before = tree(tmp_path)
    refused(capsys, ["generate", good, "-o", w], "--output", "thesis.tex")
    refused(capsys, ["generate", good, "-o", w, "--force"], "--output", "thesis.tex")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("command", ["generate", "import", "compress", "build", "demo"])
def test_every_command_refuses_a_regular_file(good, tmp_path, capsys, command):
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not read: the output is checked first")
    argv = {"generate": ["generate", good], "import": ["import", junk],
            "compress": ["compress", junk], "build": ["build", good, "--board", "icebreaker"],
            "demo": ["demo"]}[command]
    before = tree(tmp_path)
    refused(capsys, [*argv, "-o", target], "--output", "not a directory")
    refused(capsys, [*argv, "-o", target, "--force"], "--output", "not a directory")
    assert tree(tmp_path) == before


def test_generate_onto_its_own_model(good, tmp_path, capsys):
    before = tree(tmp_path)
    refused(capsys, ["generate", good, "-o", good], "--output", "input")
    refused(capsys, ["generate", good, "-o", good, "--force"], "--output", "input")
    refused(capsys, ["run", good, "--input", good / "weights.npz", "--output",
                     good / "weights.npz"], "--output", "input")
    assert tree(tmp_path) == before


def test_import_into_the_directory_of_its_file(tmp_path, capsys):
    d = tmp_path / "d"
    d.mkdir()
    (d / "m.onnx").write_bytes(b"the user's only copy")
    before = tree(tmp_path)
    refused(capsys, ["import", d / "m.onnx", "-o", d], "--output", "input")
    refused(capsys, ["import", d / "m.onnx", "-o", d, "--force"], "--output", "input")
    refused(capsys, ["compress", d / "m.onnx", "-o", d], "--output", "input")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("where", [".", "..", "sub/.."])
def test_output_dot_is_refused_and_leaves_nothing(good, tmp_path, capsys, monkeypatch, where):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "keep.txt").write_text("mine\n")
    monkeypatch.chdir(work)
    before = tree(tmp_path)
    refused(capsys, ["generate", good, "-o", where], "--output", "current directory")
    assert tree(tmp_path) == before


def test_symlink_output_is_refused(good, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    before = tree(tmp_path)
    refused(capsys, ["generate", good, "-o", tmp_path / "link", "--force"], "symbolic link")
    assert tree(tmp_path) == before


def test_output_below_a_file_is_refused_before_work(good, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    before = tree(tmp_path)
    refused(capsys, ["import", tmp_path / "absent.onnx", "-o", tmp_path / "file" / "out"],
            "--output", "not a directory")
    assert tree(tmp_path) == before


def _earlier_output(tmp_path, command="generate"):
    """A complete earlier output of ``command``, as the atomic writer leaves it."""
    out = tmp_path / "out"
    with atomic.atomic_directory(out, command=command, force=False) as tmp:
        (tmp / "a.v").write_text("module a; endmodule\n")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.json").write_text("{}\n")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.v", "sub"]
    return out


def test_earlier_output_is_replaced_only_with_force(tmp_path):
    out = _earlier_output(tmp_path)
    before = tree(tmp_path)
    with pytest.raises(cli.UsageError, match="--force"):
        atomic.check_output(out, command="generate", force=False)
    assert atomic.output_problem(out, command="generate", force=True) is None
    with atomic.atomic_directory(out, command="generate", force=True) as tmp:
        (tmp / "c.v").write_text("new\n")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "c.v"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert tree(tmp_path) != before


@pytest.mark.parametrize("change", ["added", "edited", "removed", "other-command", "marker",
                                    "symlink", "empty-directory"])
def test_an_altered_earlier_output_is_never_replaced(tmp_path, change):
    out = _earlier_output(tmp_path)
    if change == "added":
        (out / "sub" / "notes.txt").write_text("mine")
    elif change == "edited":
        (out / "a.v").write_text("module a; // my fix\nendmodule\n")
    elif change == "removed":
        (out / "sub" / "b.json").unlink()
    elif change == "other-command":
        out = _earlier_output(tmp_path / "x", command="import")
    elif change == "marker":
        (out / MARKER).write_text("{" * 5000)
    elif change == "symlink":
        (out / "sub" / "link").symlink_to(tmp_path)
    else:
        (out / "sub" / "mine").mkdir()
    before = tree(tmp_path)
    for command in ("generate", "build") if change == "other-command" else ("generate", "import"):
        why = atomic.output_problem(out, command=command, force=True)
        assert why is not None and "refusing" in why, why
        with pytest.raises(cli.UsageError, match="refusing"):
            with atomic.atomic_directory(out, command=command, force=True):
                raise AssertionError("not reached: the path is checked first")
    assert tree(tmp_path) == before


def test_links_the_command_wrote_are_part_of_its_output(tmp_path):
    out = tmp_path / "out"
    for _ in range(2):
        with atomic.atomic_directory(out, command="build", force=True) as tmp:
            (tmp / "top.v").write_text("module top; endmodule\n")
            (tmp / "latest.v").symlink_to("top.v")
    assert os.readlink(out / "latest.v") == "top.v"
    (out / "latest.v").unlink()
    (out / "latest.v").symlink_to(tmp_path)
    assert "changed" in atomic.output_problem(out, command="build", force=True)


def test_a_path_that_changes_while_the_command_runs_is_not_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(cli.UsageError, match="notes.txt"):
        with atomic.atomic_directory(out, command="generate", force=True) as tmp:
            (tmp / "a.v").write_text("new")
            (out / "notes.txt").write_text("written meanwhile")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_generate_replaces_only_its_own_unchanged_output(good, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["generate", str(good), "-o", str(out)]) == 0
    assert json.loads((out / MARKER).read_text())["command"] == "generate"
    capsys.readouterr()
    before = tree(tmp_path)
    refused(capsys, ["generate", good, "-o", out], "--output", "--force")
    refused(capsys, ["import", tmp_path / "x.onnx", "-o", out, "--force"], "--output",
            "`nnaccel generate`")
    assert tree(tmp_path) == before
    assert cli.main(["generate", str(good), "-o", str(out), "--force", "--dump-ir"]) == 0
    capsys.readouterr()
    assert (out / "ir.json").is_file()
    (out / "my_testbench.v").write_text("// mine\n")
    before = tree(tmp_path)
    refused(capsys, ["generate", good, "-o", out, "--force"], "my_testbench.v")
    assert tree(tmp_path) == before


def test_output_dot_in_a_real_process_leaves_nothing(good, tmp_path):
    (tmp_path / "keep.txt").write_text("mine\n")
    before = tree(tmp_path)
    result = nnaccel("generate", good, "-o", ".", "--force", cwd=tmp_path)
    assert result.returncode == 2
    assert_one_error(result.stderr, "--output '.'", "current directory")
    assert tree(tmp_path) == before


def test_run_output_never_overwrites_a_non_npy_or_the_input(good, tmp_path, capsys):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 4), dtype=np.int64))
    (tmp_path / "notes.txt").write_text("mine")
    before = tree(tmp_path)
    refused(capsys, ["run", good, "--input", x, "--output", tmp_path / "notes.txt"],
            "--output", "not a .npy")
    refused(capsys, ["run", good, "--input", x, "--output", x], "--output", "input")
    refused(capsys, ["run", good, "--input", x, "--output", good], "--output")
    assert tree(tmp_path) == before


def test_import_writes_a_marker_and_refuses_a_second_time_without_force(tmp_path, capsys):
    onnx_path = tiny_onnx(tmp_path / "mlp.onnx")
    out = tmp_path / "model"
    assert cli.main(["import", str(onnx_path), "-o", str(out)]) == 0
    capsys.readouterr()
    assert (out / MARKER).is_file()
    assert json.loads((out / MARKER).read_text())["command"] == "import"
    before = tree(tmp_path)
    refused(capsys, ["import", onnx_path, "-o", out], "--force")
    refused(capsys, ["generate", out, "-o", out, "--force"], "input")
    assert tree(tmp_path) == before
    assert cli.main(["import", str(onnx_path), "-o", str(out), "--force"]) == 0
    assert read_model(out).name == "mlp"


# --- 2, 3, 5. limits and hostile files -----------------------------------------------------------

def _header_npy(path, shape, descr="<i8", data=b""):
    """A .npy file whose header claims ``shape``, followed by ``data`` (a lying header)."""
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(
            f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(data)
    return path


def test_input_npy_header_claiming_559_gib(good, tmp_path, capsys):
    x = _header_npy(tmp_path / "x.npy", (1, 75_000_000_000), data=b"\0" * 64)
    before = tree(tmp_path)
    refused(capsys, ["run", good, "--input", x, "--output", tmp_path / "y.npy"],
            "field 'input'", "NNACCEL_MAX_BYTES")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_input_that_is_not_a_regular_file(good, tmp_path, kind):
    x = tmp_path / "x.npy"
    if kind == "dev-zero":
        x.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(x)
    else:
        x.mkdir()
    result = nnaccel("run", good, "--input", x, timeout=60)
    assert result.returncode == 2, result.stderr
    assert_one_error(result.stderr, "field 'input'", "not a regular file")


@pytest.mark.parametrize("header", [
    "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 4",     # tokenize: EOF
    "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 4), }" + "(" * 200,
    "{'descr': 'O', 'fortran_order': False, 'shape': (1, 4), }",
    "{'descr': '<c16', 'fortran_order': False, 'shape': (1, 4), }",
    "__import__('os')",
])
def test_input_npy_damaged_header(good, tmp_path, capsys, header):
    """Byte-flipped headers found by fuzzing (one raised tokenize.TokenError from numpy)."""
    text = (header + " " * 64)[:((len(header) + 10) // 64 + 1) * 64 - 10] + "\n"
    x = tmp_path / "x.npy"
    x.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode()
                  + b"\0" * 32)
    refused(capsys, ["run", good, "--input", x], "field 'input'")


def test_input_npy_header_promising_more_data_than_there_is(good, tmp_path, capsys):
    x = _header_npy(tmp_path / "x.npy", (1, 4), data=b"\0" * 8)
    refused(capsys, ["run", good, "--input", x], "field 'input'", "promises 32 bytes")


def test_npz_member_that_inflates_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    big = np.zeros((3, 1 << 20), dtype=np.int8)  # 3 MiB of zeros: a few KiB compressed
    model = tmp_path / "m"
    model.mkdir()
    doc = model_doc(input={"shape": [1 << 20], "dtype": "int4"})
    (model / "model.json").write_text(json.dumps(doc))
    np.savez_compressed(model / "weights.npz", **{"fc1.w": big, "fc1.b": B1, "fc2.w": W2})
    assert (model / "weights.npz").stat().st_size < 100_000
    monkeypatch.setenv("NNACCEL_MAX_BYTES", str(8 << 20))  # 1 Mi elements
    refused(capsys, ["run", model, "--input", tmp_path / "x.npy"], "'fc1'", "'weight'",
            "NNACCEL_MAX_BYTES")


def test_compress_float_model_member_over_the_limit(tmp_path, capsys, monkeypatch):
    src = tmp_path / "f.npz"
    np.savez_compressed(src, layers=np.array(["fc1"]), **{"fc1.w": np.zeros((4, 1 << 18))})
    monkeypatch.setenv("NNACCEL_MAX_BYTES", str(1 << 20))
    before = tree(tmp_path)
    refused(capsys, ["compress", src, "-o", tmp_path / "out"], "'fc1'", "'fc1.w'",
            "over the limit")
    assert tree(tmp_path) == before


def test_npz_member_with_a_lying_npy_header(tmp_path, capsys):
    import zipfile

    model = write_model_dir(tmp_path / "m")
    with zipfile.ZipFile(model / "weights.npz", "w") as zf:
        zf.writestr("fc1.w.npy", _header_npy(tmp_path / "h.npy", (3, 10**12)).read_bytes())
        zf.writestr("fc1.b.npy", _header_npy(tmp_path / "b.npy", (3,), data=b"\0" * 8)
                    .read_bytes())
        zf.writestr("fc2.w.npy", _header_npy(tmp_path / "w.npy", (2, 3)).read_bytes())
    refused(capsys, ["generate", model, "-o", tmp_path / "out"], "'fc1'", "'weight'",
            "over the limit")
    doc = model_doc()
    doc["layers"][0]["weight"] = [[1, 2, 3, 4]] * 3
    (model / "model.json").write_text(json.dumps(doc))
    refused(capsys, ["generate", model, "-o", tmp_path / "out"], "'fc1'", "'bias'",
            "promises 24 bytes")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_model_json_that_is_not_a_regular_file(tmp_path, kind):
    model = write_model_dir(tmp_path / "m")
    (model / "model.json").unlink()
    if kind == "dev-zero":
        (model / "model.json").symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(model / "model.json")
    else:
        (model / "model.json").mkdir()
    result = nnaccel("generate", model, "-o", tmp_path / "out", timeout=60)
    assert result.returncode == 2, result.stderr
    assert_one_error(result.stderr, "'model.json'")
    assert not (tmp_path / "out").exists()


def test_model_json_over_the_limit(tmp_path, capsys, monkeypatch):
    model = write_model_dir(tmp_path / "m", doc=model_doc(description="x" * 100_000))
    monkeypatch.setenv("NNACCEL_MAX_BYTES", str(16 * 50_000))
    refused(capsys, ["run", model, "--input", "x.npy"], "'model.json'", "over the limit")


@pytest.mark.parametrize(("text", "needle"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    (json.dumps(model_doc()).replace('"shape": [4]', '"shape": [' + "9" * 5000 + "]"),
     "5000 digits"),
    (json.dumps(model_doc()).replace('"shift": 4', '"shift": ' + "1" * 4000), "4000 digits"),
    (b"\xff\xfe{", "UTF-8"),
])
def test_model_json_hostile_text(tmp_path, capsys, text, needle):
    model = write_model_dir(tmp_path / "m")
    path = model / "model.json"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    before = tree(tmp_path)
    refused(capsys, ["generate", model, "-o", tmp_path / "out"], "'model.json'", needle)
    assert tree(tmp_path) == before


def test_input_shape_is_multiplied_exactly(tmp_path, capsys):
    doc = model_doc(input={"shape": [2, 4, 4611686018427387905], "dtype": "int4"})
    model = write_model_dir(tmp_path / "m", doc=doc)
    refused(capsys, ["run", model, "--input", "x.npy"], "'input.shape'", "36893488147419103240")


@pytest.mark.parametrize(("option", "needle"), [
    (["--fold", "fc1=" + "9" * 5000 + "x1"], "--fold"),
    (["--array", "fc1=" + "9" * 5000 + "x1"], "--array"),
    (["--sparse", "fc1=" + "9" * 5000], "--sparse"),
    (["--target-cycles", "9" * 5000], "--target-cycles"),
    (["--batch", str(2**31 - 1)], "--batch"),   # generation time grows with B: bounded
    (["--max-lanes", "9" * 30], "--max-lanes"),
])
def test_huge_numbers_in_options(good, tmp_path, capsys, option, needle):
    with pytest.raises(SystemExit) as info:
        if cli.main(["generate", str(good), "-o", str(tmp_path / "out"), *option]) == 2:
            raise SystemExit(2)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err and needle in err
    assert not (tmp_path / "out").exists()


def test_memory_error_names_the_field(tmp_path, capsys, monkeypatch, good):
    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(safeio.np, "frombuffer", no_memory)
    refused(capsys, ["generate", good, "-o", tmp_path / "out"], "'fc1'", "'weight'",
            "memory")
    assert not (tmp_path / "out").exists()


def test_memory_error_while_running_names_the_input(good, tmp_path, capsys, monkeypatch):
    from nnaccel.gen.ir import Model

    def no_memory(self, X):
        raise MemoryError

    monkeypatch.setattr(Model, "forward", no_memory)
    np.save(tmp_path / "x.npy", np.zeros((3, 4), dtype=np.int8))
    refused(capsys, ["run", good, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"],
            "field 'input'", "3 vectors", "memory")
    assert not (tmp_path / "y.npy").exists()


def test_shared_thresholds_stay_one_row(tmp_path):
    """(1, L) thresholds over M channels are a broadcast view, and the reference never builds
    an (M, L) array: 200,000 x 4,000 would be 6.4 GB as int64, 3.2 GB as booleans for four
    vectors; the run is limited to 1.5 GB of address space."""
    m, levels = 200_000, 4_000
    doc = {"format": "nnaccel-model/1", "name": "wide", "input": {"shape": [1], "dtype": "uint1"},
           "layers": [{"name": "fc", "op": "linear", "weight": "w", "weight_dtype": "int2",
                       "output": {"kind": "threshold", "thresholds": "t",
                                  "dtype": "uint12"}}]}
    model = write_model_dir(tmp_path / "m", doc=doc, arrays={
        "w": np.resize(np.array([[1], [0], [-1]], dtype=np.int8), (m, 1)),
        "t": np.arange(levels, dtype=np.int64)[None, :] - 1})
    t = read_model(model).layers[0].output.thresholds
    assert t.shape == (m, levels) and t.strides[0] == 0 and not t.flags.writeable
    np.save(tmp_path / "x.npy", np.array([[1], [0], [1], [1]]))
    script = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 29, 3 << 29));"
              "from nnaccel import cli; sys.exit(cli.main(sys.argv[1:]))")
    result = subprocess.run(
        [sys.executable, "-c", script, "run", str(model), "--input", str(tmp_path / "x.npy"),
         "--output", str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=300,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    y = np.load(tmp_path / "y.npy")
    # acc = w * x; count = #{l : acc >= l - 1} = acc + 2 for acc in -1..1
    assert np.array_equal(y[0], np.resize([3, 2, 1], m))
    assert np.array_equal(y[1], np.full(m, 2))


# --- 4. names from file stems ---------------------------------------------------------------------

@pytest.mark.parametrize(("stem", "name"), [("module", "module_"), ("3-layer mlp", "_3_layer_mlp"),
                                            ("clk", "clk_")])
def test_generate_onnx_file_with_an_unusable_stem(tmp_path, capsys, stem, name):
    path = tiny_onnx(tmp_path / f"{stem}.onnx")
    out = tmp_path / "out"
    assert cli.main(["generate", str(path), "-o", str(out), "--stop-after", "engines"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"named {name!r}" in captured.err and repr(stem) in captured.err
    assert json.loads(captured.out)["model"] == name
    assert cli.main(["import", str(path), "-o", str(out)]) == 0
    assert f"named {name!r}" in capsys.readouterr().err
    assert read_model(out).name == name


def test_onnx_input_dimension_of_a_trillion(tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="the 'onnx' extra is not installed")
    path = tiny_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    proto.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 10**12
    onnx.save(proto, str(path))
    before = tree(tmp_path)
    refused(capsys, ["import", path, "-o", tmp_path / "out"], "graph.input", "over the limit")
    assert tree(tmp_path) == before


def test_onnx_initializer_claiming_a_huge_shape(tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="the 'onnx' extra is not installed")
    path = tiny_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    init = proto.graph.initializer[3]
    del init.dims[:]
    init.dims.extend([4, 10**12])
    onnx.save(proto, str(path))
    refused(capsys, ["import", path, "-o", tmp_path / "out"], "initializer 'w'", "over the limit")


def test_onnx_external_data_is_read_only_after_its_shape_is_checked(tmp_path, capsys):
    onnx = pytest.importorskip("onnx", reason="the 'onnx' extra is not installed")
    path = tiny_onnx(tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.data", size_threshold=0)
    assert (tmp_path / "m.data").is_file()
    assert cli.main(["import", str(path), "-o", str(tmp_path / "ok")]) == 0
    capsys.readouterr()
    proto = onnx.load(str(path), load_external_data=False)
    init = proto.graph.initializer[3]
    del init.dims[:]
    init.dims.extend([4, 10**12])
    onnx.save_model(proto, str(path))
    (tmp_path / "m.data").unlink()
    os.mkfifo(tmp_path / "m.data")  # reading it would block: it must not be opened at all
    result = nnaccel("import", path, "-o", tmp_path / "out", timeout=60)
    assert result.returncode == 2, result.stderr
    assert_one_error(result.stderr, "initializer 'w'", "over the limit")
    assert not (tmp_path / "out").exists()


# --- 3. internal errors stay distinguishable ------------------------------------------------------

def test_an_internal_error_is_reported_as_a_bug(good, tmp_path, capsys, monkeypatch):
    from nnaccel.gen import model_io

    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(model_io, "model_from_json", broken)
    assert cli.main(["generate", str(good), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "internal error" in err and "TypeError: a bug" in err and "NNACCEL_DEBUG" in err


# --- 6. SIGTERM, staging directories ------------------------------------------------------------

#: ``nnaccel import`` whose body writes the model directory argv[1] to argv[2] with the library
#: writer, whose final swap (publish) never comes: SIGTERM arrives with the staging half-done.
_SLOW_WRITE = """
import sys, time
from nnaccel.gen import atomic
def slow(staging, *args, **kwargs):
    print("staging", staging, flush=True)
    time.sleep(120)
atomic.publish = slow
from nnaccel import cli
from nnaccel.gen.model_io import read_model, write_model
cli.cmd_import = lambda args: write_model(read_model(sys.argv[1]), args.output)
sys.exit(cli.main(["import", "unused.onnx", "-o", sys.argv[2]]))
"""


def test_sigterm_while_writing_cleans_the_staging_directory(good, tmp_path):
    parent = tmp_path / "outs"
    parent.mkdir()
    (parent / "keep.txt").write_text("mine")
    before = tree(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITE, str(good), str(parent / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert line.startswith("staging "), proc.stderr.read()
    staging = Path(line.split(" ", 1)[1].strip())
    assert staging.is_dir() and staging.parent == parent
    assert (staging / "model.json").is_file()                  # partly written
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.strip() == "nnaccel: terminated"
    assert tree(tmp_path) == before                            # no staging directory left


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_staging_directories_are_removed_by_the_next_run(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / "gone").mkdir()
    stale = {f".out.nnaccel-stage-{dead}-abc123", f".gone.nnaccel-old-{dead}-0f1e"}
    kept = {f".out.nnaccel-stage-{alive}-xyz", ".out.other-stage-1-abc",
            f".notes.nnaccel-stage-{dead}", "gone"}
    for name in stale | kept | {f".prev.nnaccel-old-{dead}-77"}:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "f").write_text(name)
    with atomic.atomic_directory(tmp_path / "out", command="generate", force=False) as tmp:
        (tmp / "a.v").write_text("new")
    assert {p.name for p in tmp_path.iterdir()} == {"out", "prev"} | kept
    # an earlier output renamed aside by a killed swap goes back where it was
    assert (tmp_path / "prev" / "f").read_text() == f".prev.nnaccel-old-{dead}-77"


# --- 7. verilator mismatches ----------------------------------------------------------------------

def test_first_mismatch():
    from nnaccel.sim.design import first_mismatch

    a = np.array([[1, 2, 3], [4, 5, 6]])
    assert first_mismatch(a, a.copy()) is None
    b = a.copy()
    b[1, 2] = -6
    b[1, 1] = 2**40
    assert first_mismatch(a, b) == {"vector": 1, "element": 1, "reference": 5,
                                    "hardware": 2**40, "differing": 2}
    assert first_mismatch(a, a[:1])["vector"] == 1


def _fake_simulation(monkeypatch, wrong):
    """Generation and simulate() replaced: the "hardware" returns the reference's outputs, one
    element changed if ``wrong``."""
    from types import SimpleNamespace

    from nnaccel.sim import design as sim_design

    def fake_design(args, model):
        return SimpleNamespace(name=model.name, plan=SimpleNamespace(model=model),
                               manifest={"lanes": 4, "expected_cycles_per_inference": 8})

    def fake_simulate(design, X, **kwargs):
        assert kwargs["check"] is False
        assert (kwargs["idle"], kwargs["stall"]) == ((cli.STRESS,) * 2 if wrong else (0.0, 0.0))
        out = np.array(design.plan.model.forward(X), dtype=np.int64)
        if wrong:
            out[1, 0] += 1
        sim = SimpleNamespace(cycles_total=40, cycles_per_inference=8.0, latency_cycles=12)
        return out, sim

    monkeypatch.setattr(cli, "_design", fake_design)
    monkeypatch.setattr(sim_design, "simulate", fake_simulate)


@pytest.mark.parametrize("wrong", [False, True])
def test_run_verilator_reports_whether_outputs_match(good, tmp_path, capsys, monkeypatch, wrong):
    _fake_simulation(monkeypatch, wrong)
    x = tmp_path / "x.npy"
    np.save(x, np.array([[1, 2, 3, 4], [-8, 7, 0, 1], [0, 0, 0, 0]]))
    status = cli.main(["run", str(good), "--input", str(x), "--backend", "verilator",
                       "--json", *(["--stress"] if wrong else [])])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    result = json.loads(captured.out)
    assert result["matches_reference"] is (not wrong)
    assert result["idle"] == result["stall"] == (cli.STRESS if wrong else 0.0)
    if wrong:
        assert status == 1
        assert result["first_mismatch"]["vector"] == 1
        assert result["first_mismatch"]["element"] == 0
        errors = [line for line in captured.err.splitlines() if "error" in line]
        assert len(errors) == 1 and "vector 1, element 0" in errors[0]
    else:
        assert status == 0 and "first_mismatch" not in result


@pytest.mark.verilator
def test_run_verilator_against_a_wrong_reference(good, tmp_path, capsys, monkeypatch):
    """The real simulation, with the numpy reference changed at vector 2, element 1."""
    from nnaccel.gen.ir import Model

    forward = Model.forward

    def wrong_forward(self, X):
        out = np.array(forward(self, X), dtype=np.int64)
        out[2, 1] -= 3
        return out

    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(5).integers(-8, 8, size=(4, 4)))
    monkeypatch.setattr(Model, "forward", wrong_forward)
    status = cli.main(["run", str(good), "--input", str(x), "--backend", "verilator",
                       "--json", "--stress"])
    captured = capsys.readouterr()
    assert status == 1, captured.err
    assert "Traceback" not in captured.err
    result = json.loads(captured.out)
    assert result["matches_reference"] is False
    assert result["first_mismatch"]["vector"] == 2 and result["first_mismatch"]["element"] == 1
    assert result["first_mismatch"]["reference"] == result["outputs"][2][1] - 3
    assert "vector 2, element 1" in captured.err


def test_limits_and_marker_are_documented():
    text = (Path(__file__).parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    assert "NNACCEL_MAX_BYTES" in text and MARKER in text
