"""Progress bars (nnaccel.gen.progress, tqdm): on stderr of a terminal only, never on stdout,
off with --json; a build step's ETA from its last run."""

import io
import json
import sys
import time

import pytest

from nnaccel.boards.build import _Progress
from nnaccel.gen import progress


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self):
        return True


@pytest.fixture
def tty(monkeypatch, tmp_path):
    """A terminal, made stderr by each test (capture replaces stderr between setup and the
    test; stdout stays captured by capsys); a private history cache."""
    monkeypatch.setenv("NNACCEL_CACHE", str(tmp_path / "cache"))
    progress.disable(False)
    yield Terminal()
    progress.disable(False)


def test_bars_only_on_a_terminal(tty, monkeypatch):
    monkeypatch.setattr(sys, "stderr", tty)
    assert progress.enabled() and progress.enabled(tty)
    assert not progress.enabled(io.StringIO())
    progress.disable()
    assert not progress.enabled(tty)


def test_file_bar_follows_the_count_on_stderr_never_stdout(tty, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stderr", tty)
    with progress.file_bar(tmp_path / "count", 4, "simulating", unit="vec") as path:
        path.write_text("3")
    assert "3/4" in tty.getvalue() and "simulating" in tty.getvalue()
    assert capsys.readouterr().out == ""


def test_no_bar_and_no_file_when_disabled(tty, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stderr", tty)
    progress.disable()
    with progress.file_bar(tmp_path / "count", 4, "simulating") as path:
        assert path is None
    with progress.Timed("k", "step") as step:
        step.tick()
    assert tty.getvalue() == "" and capsys.readouterr().out == ""


def test_a_step_takes_its_eta_from_its_last_run(tty, tmp_path):
    with progress.Timed("build x route", "route", stream=tty) as step:
        assert step.expected is None        # first time: no ETA
        time.sleep(0.05)
        step.tick()
    history = json.loads((tmp_path / "cache" / "progress.json").read_text())
    assert list(history) == ["build x route"] and 0.05 <= history["build x route"] < 5
    with progress.Timed("build x route", "route", stream=tty) as step:
        assert step.expected == history["build x route"]
        assert step.bar.total == step.expected   # the ETA's basis
    with pytest.raises(RuntimeError), progress.Timed("build x place", "place", stream=tty):
        raise RuntimeError("a failed step is not remembered")
    assert "build x place" not in json.loads((tmp_path / "cache" / "progress.json").read_text())


def test_build_steps_draw_bars_on_a_terminal(tty, capsys):
    steps = _Progress(tty, "tiny for ulx3s-85f")
    with steps.step("place and route", "nextpnr-ecp5"):
        time.sleep(0.05)
        steps.tick()
    assert "no ETA yet" in tty.getvalue()
    with steps.step("place and route", "nextpnr-ecp5"):  # now with an ETA: a bar
        steps.tick()
    text = tty.getvalue()
    assert "place and route (nextpnr-ecp5):   0%|" in text and "elapsed, ETA" in text
    assert "place and route (nextpnr-ecp5) done in" in text
    assert capsys.readouterr().out == ""
    lines = []                                  # a logger callable gets lines, no bar
    plain = _Progress(lines.append, "tiny")
    with plain.step("synthesis", "yosys"):
        plain.tick()
    assert [line.split(" in ")[0] for line in lines] == [
        "nnaccel build tiny: synthesis (yosys) ...", "nnaccel build tiny: synthesis (yosys) done"]


def test_json_turns_bars_off(tty, monkeypatch, capsys):
    from nnaccel import cli

    monkeypatch.setattr(sys, "stderr", tty)
    assert cli.main(["zoo", "--json"]) == 0
    assert not progress.enabled()
    assert cli.main(["zoo"]) == 0
    assert progress.enabled()
