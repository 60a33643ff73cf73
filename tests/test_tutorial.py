"""docs/TUTORIAL.md runs as written: its files are written, its commands run in order in an
empty directory, and each command's stdout must be the text shown under it (``...`` stands for
any text within a line)."""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    pytest.importorskip("torch", reason="the 'onnx' extra (torch) is not installed")
    pytest.importorskip("brevitas", reason="the 'onnx' extra (brevitas) is missing")

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "TUTORIAL.md"
_BLOCK = re.compile(r"(?:<!-- file: (\S+) -->\n)?```(\w+)\n(.*?)```", re.S)


def steps(text):
    """``[("file", name, content) | ("run", command, expected stdout lines)]`` in order."""
    out = []
    for m in _BLOCK.finditer(text):
        name, lang, body = m.group(1), m.group(2), m.group(3)
        if name is not None:
            out.append(("file", name, body))
        elif lang == "console":
            for chunk in body.split("$ ")[1:]:
                command, *lines = chunk.rstrip("\n").split("\n")
                out.append(("run", command, lines))
    return out


_REAL = re.compile(r"-?[0-9]*\.[0-9]+(?:e[-+]?[0-9]+)?")


def _matches(expected, line):
    """``line`` is ``expected`` (``...``: any text), or differs from it only in real numbers
    (with a decimal point) within a relative 1e-4: printed to six significant digits, a real
    output moves in its last digit with the machine's float rounding (torch's training, BLAS)."""
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    if re.fullmatch(pattern, line) is not None:
        return True
    want, got = expected.split(), line.split()
    return (len(want) == len(got) and any(_REAL.fullmatch(w) for w in want)
            and all(w == g or (_REAL.fullmatch(w) and _REAL.fullmatch(g)
                               and abs(float(w) - float(g)) <= 1e-4 * abs(float(w)))
                    for w, g in zip(want, got, strict=True)))


def _digits_masked(lines):
    return [re.sub(r"[0-9][0-9,.]*", "#", line) for line in lines]


def run_tutorial(tmp_path, *, build):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = 0
    for kind, what, body in steps(TUTORIAL.read_text()):
        if kind == "file":
            (tmp_path / what).write_text(body)
            continue
        if what.startswith("nnaccel build") and not build:
            continue
        result = subprocess.run(what, shell=True, cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=3600)
        assert result.returncode == 0, (what, result.stderr[-2000:])
        got = result.stdout.rstrip("\n").split("\n") if result.stdout.strip() else []
        if what.startswith("nnaccel build"):
            # place and route's figures move with every change to the hardware and the tools:
            # the report's lines and their order must match, its numbers need not
            got, body = _digits_masked(got), _digits_masked(body)
        assert len(got) == len(body) and all(
            _matches(e, g) for e, g in zip(body, got, strict=True)), (what, got, body)
        ran += 1
    return ran


def test_steps_are_found():
    """The parser sees every command of the tutorial (a renamed block would skip silently)."""
    found = steps(TUTORIAL.read_text())
    assert [w for k, w, _ in found if k == "file"] == ["make_model.py"]
    commands = [w for k, w, _ in found if k == "run"]
    assert commands[0] == "python make_model.py" and len(commands) == 8
    assert sum(c.startswith("nnaccel build") for c in commands) == 1
    assert _matches("built in ... s", "built in 3.5 s") and not _matches("a...b", "ab\nc")
    assert _matches("  -2.24132 0.687373", "  -2.24133 0.687374")
    assert not _matches("  -2.24132 0.687373", "  -2.24132 0.68747")
    assert not _matches("cycles: 816 1.5", "cycles: 817 1.5")


@pytest.mark.verilator
def test_tutorial_up_to_simulation(tmp_path):
    assert run_tutorial(tmp_path, build=False) == 7


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.long  # two place-and-route passes: make test-long, not make test
def test_tutorial_with_bitstream(tmp_path):
    assert run_tutorial(tmp_path, build=True) == 8
    assert (tmp_path / "build" / "digits_mlp" / "report.json").is_file()
