"""The ASIC flow (``nnaccel build --target asic``): yosys on the OSU 0.18 um cells, OpenSTA.

The flow tests need OpenSTA (``sta``) and the cells (Debian ``opensta qflow-tech-osu018``;
``make test`` installs them when it runs as root); without them they are skipped, saying so.
The area is checked against the liberty's own cell areas times the reported counts, the Fmax
against the slack and the period, and the critical path against OpenSTA's log.
"""

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnaccel import cli
from nnaccel.boards import asic
from nnaccel.boards.asic import LIBRARIES, build_asic, format_asic_report
from nnaccel.gen.errors import ToolError, UsageError

LIBERTY = LIBRARIES["osu018"][0]
MISSING = [what for what, ok in (("OpenSTA (sta)", shutil.which("sta")),
                                 (LIBERTY, Path(LIBERTY).is_file())) if not ok]
needs_tools = pytest.mark.skipif(
    bool(MISSING), reason=f"{' and '.join(MISSING)} missing: `{asic.INSTALL_HINT}` "
                          "(make test installs them as root)")

RNG = np.random.default_rng(14)
ARRAYS = {"fc1.w": RNG.integers(-8, 8, (8, 4)), "fc1.b": RNG.integers(-8, 8, 8),
          "fc2.w": RNG.integers(-8, 8, (4, 8))}


def mlp_dir(path):
    """A 4-8-4 int4 MLP: fc1 requant (int4, relu) -> fc2 identity."""
    doc = {"format": "nnaccel-model/1", "name": "mlp484",
           "input": {"shape": [4], "dtype": "int4"},
           "layers": [
               {"name": "fc1", "op": "linear", "weight": "fc1.w", "weight_dtype": "int4",
                "bias": "fc1.b", "output": {"kind": "requant", "mult": 3, "shift": 4,
                                            "dtype": "int4", "relu": True}},
               {"name": "fc2", "op": "linear", "weight": "fc2.w", "weight_dtype": "int4",
                "output": {"kind": "identity"}}]}
    path.mkdir(parents=True)
    (path / "model.json").write_text(json.dumps(doc))
    np.savez(path / "weights.npz", **ARRAYS)
    return path


def liberty_areas():
    """Cell name -> area, read from the liberty here (not from yosys)."""
    text = Path(LIBERTY).read_text()
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r"cell\s*\(\s*(\w+)\s*\)\s*\{.*?\barea\s*:\s*([0-9.]+)", text, re.S)}


#: One worker runs the module: the synthesis fixture and the gate-level Verilator build
#: (minutes) are made once and reused, not once per xdist worker.
pytestmark = pytest.mark.xdist_group("asic")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """``nnaccel build mlp484 --target asic`` once for the module: (report, outdir, stdout)."""
    root = tmp_path_factory.mktemp("asic")
    model = mlp_dir(root / "mlp484")
    out = root / "out"
    mp = pytest.MonkeyPatch()
    import io
    import sys
    stdout = io.StringIO()
    mp.setattr(sys, "stdout", stdout)
    try:
        status = cli.main(["build", str(model), "--target", "asic", "-o", str(out)])
    finally:
        mp.undo()
    assert status == 0, stdout.getvalue()
    return json.loads((out / "report.json").read_text()), out, stdout.getvalue()


@needs_tools
def test_tiny_mlp_area_cells_and_timing(built):
    report, out, stdout = built
    assert report["format"] == asic.ASIC_REPORT_FORMAT and report["library"]["name"] == "osu018"
    cells = report["cells"]
    assert set(cells) <= set(liberty_areas()), "cells outside the library"
    assert report["cell_count"] == sum(cells.values()) > 100
    # the accumulators and weights are state: flip-flops of the library, counted
    assert cells.get("DFFPOSX1", 0) + cells.get("DFFSR", 0) == report["flip_flops"] > 20
    area = sum(liberty_areas()[c] * n for c, n in cells.items())
    assert report["area_um2"] == pytest.approx(area, rel=1e-6) and area > 1000
    # Fmax from the slack at the constraint period
    assert report["period_ns"] == 10.0
    assert report["fmax_mhz"] == pytest.approx(1e3 / (10.0 - report["slack_ns"]), rel=1e-3)
    assert 5 < report["fmax_mhz"] < 1000
    assert report["timing_met"] == (report["slack_ns"] >= 0)
    path = report["critical_path"]
    assert path["delay_ns"] > 0.2 and path["startpoint"] and path["endpoint"]
    log = (out / "mlp484.sta.rpt").read_text()
    assert f"Startpoint: {path['startpoint']}" in log and f"Endpoint: {path['endpoint']}" in log
    assert report["power_w"] is None or 0 < report["power_w"] < 10
    assert report["manifest"]["name"] == "mlp484"
    assert (out / "mlp484.netlist.v").is_file() and (out / "report.txt").is_file()
    assert "Fmax" in stdout and "um^2" in stdout and "throughput at Fmax" in stdout


def net_loads(netlist):
    """Net -> number of cell inputs it drives in a yosys netlist (named pin connections; the
    library's outputs are Y, Q, YC and YS)."""
    loads = {}
    for pin, net in re.findall(r"\.(\w+)\(([^()]*)\)", netlist):
        if pin not in ("Y", "Q", "YC", "YS"):
            loads[net.strip()] = loads.get(net.strip(), 0) + 1
    return loads


@needs_tools
def test_no_net_but_the_clock_drives_more_than_max_fanout(built):
    """ABC buffers high-fanout nets (flip-flop outputs and inputs too) to MAX_FANOUT loads.
    Outside ABC, an output bit that other output bits copy (the sign extension of an output
    word) feeds one buffer per copy: tens of loads, not the thousands of an unbuffered enable.
    Only the clock, ideal in the timing, drives every flip-flop."""
    report, out, _ = built
    loads = net_loads((out / "mlp484.netlist.v").read_text())
    assert loads.pop("clk") == report["flip_flops"]
    worst = sorted(loads.items(), key=lambda kv: -kv[1])[:5]
    assert max(n for net, n in loads.items() if "m_axis_tdata" not in net) <= asic.MAX_FANOUT, \
        worst
    assert max(loads.values()) <= 4 * asic.MAX_FANOUT, worst
    assert report["cells"].get("BUFX2", 0) + report["cells"].get("BUFX4", 0) > 10


@needs_tools
def test_tighter_clock_lowers_slack_not_fmax(built, tmp_path):
    """The same design at half its Fmax period: timing not met, and the Fmax no lower (ABC
    maps and sizes against the period, so a tighter one gives as fast a netlist or faster)."""
    report, out, _ = built
    verilog = (out / "mlp484.v").read_text()
    period = round(1e3 / report["fmax_mhz"] * 0.5, 3)
    again = build_asic(verilog, tmp_path / "b", name="mlp484", period_ns=period,
                       log=lambda line: None)
    assert again["slack_ns"] < 0 and not again["timing_met"]
    assert again["fmax_mhz"] == pytest.approx(1e3 / (period - again["slack_ns"]), rel=1e-3)
    assert again["fmax_mhz"] >= report["fmax_mhz"] * 0.98
    assert "NOT MET" in format_asic_report(again)


@needs_tools
def test_rebuild_needs_force_and_keeps_other_files(built, tmp_path, capsys):
    _, out, _ = built
    model = mlp_dir(tmp_path / "mlp484")
    assert cli.main(["build", str(model), "--target", "asic", "-o", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "precious.txt").write_text("keep me")
    assert cli.main(["build", str(model), "--target", "asic", "-o", str(busy), "--force"]) == 2
    assert (busy / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("args, words", [
    (["--target", "asic", "--board", "icebreaker"], ["--board", "--target fpga"]),
    (["--target", "asic", "--lib", "nope"], ["--lib", "'nope'", "osu018"]),
    ([], ["--board", "required"]),
])
def test_bad_options_exit_2(tmp_path, capsys, args, words):
    model = mlp_dir(tmp_path / "mlp484")
    out = tmp_path / "out"
    assert cli.main(["build", str(model), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(w in err for w in words), err
    assert not out.exists()


def test_missing_sta_exits_3_with_install_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STA", str(tmp_path / "no-such-sta"))
    monkeypatch.setattr(asic, "find_liberty", lambda lib: (LIBERTY, LIBERTY))
    model = mlp_dir(tmp_path / "mlp484")
    out = tmp_path / "out"
    assert cli.main(["build", str(model), "--target", "asic", "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert asic.INSTALL_HINT in err and "sta" in err
    assert not out.exists()


def test_missing_library_is_a_tool_error(monkeypatch):
    monkeypatch.setitem(LIBRARIES, "osu018", ("/nonexistent/x.lib", "/nonexistent/x.v",
                                              "qflow-tech-osu018", "0.18 um"))
    with pytest.raises(ToolError, match="qflow-tech-osu018"):
        asic.find_liberty("osu018")
    with pytest.raises(UsageError, match="known libraries"):
        asic.find_liberty("tsmc7")


def test_bad_period_and_name(tmp_path):
    with pytest.raises(UsageError, match="period"):
        build_asic("module x; endmodule", tmp_path / "o", name="x", period_ns=0)
    with pytest.raises(UsageError, match="design name"):
        build_asic("module x; endmodule", tmp_path / "o", name="9x")
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def built_folded(tmp_path_factory):
    """The 4-8-4 MLP folded onto 4 multipliers (``--max-lanes 4``), built for the cells once:
    (report, outdir). Folded, its netlist is a fraction of the unfolded one's (whose Verilator
    build takes tens of minutes) and it has weight memories and counters to check."""
    root = tmp_path_factory.mktemp("asic_folded")
    model = mlp_dir(root / "mlp484")
    out = root / "out"
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["build", str(model), "--target", "asic", "--max-lanes", "4",
                         "-o", str(out)]) == 0
    return json.loads((out / "report.json").read_text()), out


@needs_tools
@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.long  # its Verilator build takes minutes; make test checks the one-layer netlist
@pytest.mark.parametrize("idle, stall", [(0.0, 0.0), (0.3, 0.0), (0.0, 0.3), (0.3, 0.3)])
def test_gate_level_netlist_is_bit_exact(built_folded, tmp_path, idle, stall):
    """The synthesised netlist with the OSU Verilog cell models, under Verilator, computes what
    the numpy reference computes, with and without idle input and backpressure (``make
    test-long``; the default suite runs the gate-level check on the one-layer netlist of
    :func:`test_gate_level_check_fails_on_a_flipped_cell`)."""
    from nnaccel.gen.model_io import read_model
    from nnaccel.sim import verilator as vsim

    report, out = built_folded
    assert report["manifest"]["lanes"] <= 4
    source = tmp_path / "gl.v"
    source.write_text(asic.gate_level_verilog((out / "mlp484.netlist.v").read_text()))
    model = read_model(mlp_dir(tmp_path / "mlp484"))
    io = report["manifest"]["io"]
    X = np.random.default_rng(3).integers(-8, 8, (12, 4))
    X[0], X[1] = -8, 7
    result = vsim.run(source, "mlp484", io, np.mod(X, 16), idle=idle, stall=stall, seed=5)
    want = np.mod(model.forward(X), 1 << io["output"]["bits_per_element"])
    np.testing.assert_array_equal(result.outputs_bits, want)


def mutate_one_cell(netlist):
    """``netlist`` with one cell flipped: the first XOR2X1 adding two multiplier products (an
    adder-tree sum bit) becomes an XNOR2X1, inverting that bit for every input."""
    mutated, count = re.subn(r"\bXOR2X1(\s+\S+\s*\(\s*\.A\(\\\S*\.core\.prod_)", r"XNOR2X1\1",
                             netlist, count=1)
    assert count == 1, "no XOR2X1 on a product in the netlist"
    return mutated


def dot_dir(path):
    """The smallest design with an adder of products: y = w . x over two int4 inputs."""
    doc = {"format": "nnaccel-model/1", "name": "dot2",
           "input": {"shape": [2], "dtype": "int4"},
           "layers": [{"name": "fc", "op": "linear", "weight": "fc.w", "weight_dtype": "int4",
                       "output": {"kind": "identity", "dtype": "int10"}}]}
    path.mkdir(parents=True)
    (path / "model.json").write_text(json.dumps(doc))
    np.savez(path / "weights.npz", **{"fc.w": np.array([[5, -3]])})
    return path


@needs_tools
@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("flipped", [False, True])
def test_gate_level_check_fails_on_a_flipped_cell(tmp_path, flipped):
    """The gate-level check can fail: a one-layer dot product's netlist is exact under
    Verilator as synthesised, and differs from numpy once one cell is flipped (XOR -> XNOR in
    the adder of its products)."""
    from nnaccel.gen.model_io import read_model
    from nnaccel.sim import verilator as vsim

    model_dir = dot_dir(tmp_path / "dot2")
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["build", str(model_dir), "--target", "asic", "-o",
                         str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    netlist = (tmp_path / "out" / "dot2.netlist.v").read_text()
    source = tmp_path / "gl.v"
    source.write_text(asic.gate_level_verilog(mutate_one_cell(netlist) if flipped else netlist))
    io_ = report["manifest"]["io"]
    X = np.random.default_rng(3).integers(-8, 8, (16, 2))
    result = vsim.run(source, "dot2", io_, np.mod(X, 16), seed=5)
    want = np.mod(read_model(model_dir).forward(X), 1 << io_["output"]["bits_per_element"])
    assert result.outputs_bits.shape == want.shape
    assert (result.outputs_bits != want).any() == flipped


@needs_tools
def test_systolic_array_has_a_real_fmax(tmp_path):
    """The systolic engine was the design whose Fmax an unbuffered net (thousands of loads)
    held at 0.19 MHz: a 2x2 array now has its nets buffered and a logic-bound Fmax."""
    from nnaccel.bench.asic import _systolic
    from nnaccel.gen.generate import generate

    model, options, _batch = _systolic(2, 2, (4, 8, 8))(0)
    design = generate(model, options)
    report = build_asic(design.verilog(), tmp_path / "b", name=design.name,
                        log=lambda line: None)
    loads = net_loads((tmp_path / "b" / f"{design.name}.netlist.v").read_text())
    assert loads.pop("clk") == report["flip_flops"]
    worst = sorted(loads.items(), key=lambda kv: -kv[1])[:5]
    assert max(n for net, n in loads.items() if "m_axis_tdata" not in net) <= asic.MAX_FANOUT, \
        worst
    assert report["fmax_mhz"] > 50, report["critical_path"]
