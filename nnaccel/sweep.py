"""Design-space sweeps: every point of a grid of generation options generated, measured under
Verilator and built, each point one Ray task, cached by design hash (``nnaccel sweep``).

A **grid** maps keys to lists of values; the sweep runs their cartesian product, in the order
the keys were given. The keys are the generation options of ``nnaccel generate``:

==================  =========================================  ==============================
key                 the option it sets                         example values
==================  =========================================  ==============================
``max-lanes``       ``--max-lanes N``                          ``8,16,32``
``target-cycles``   ``--target-cycles N``                      ``100,1000``
``batch``           ``--batch B``                              ``1,4``
``fold.LAYER``      ``--fold LAYER=PExSIMD``                   ``fold.fc1=2x4,4x4``
``engine.LAYER``    ``--engine LAYER=ENGINE``                  ``engine.fc1=mvu,sparse``
``storage[.LAYER]`` ``--weight-storage [LAYER=]WHERE``         ``storage=bram,logic``
``array.LAYER``     ``--array LAYER=RxC[,ws|os]``              ``array.fc1=4x4:ws,8x8:os``
``sparse.LAYER``    ``--sparse LAYER=N[,D]``                   ``sparse.fc1=4,8:16``
==================  =========================================  ==============================

On the command line values are separated by commas, so where an option itself takes a comma
(``array``, ``sparse``) a value writes it as ``:``.

Each point is one Ray task (:func:`measure_point`): generate, simulate ``vectors`` random input
vectors under Verilator (checked bit-exact against the numpy reference; the measured
``cycles_per_inference``), then unless ``build=False`` build it -- for an FPGA board with
yosys and nextpnr (:func:`nnaccel.boards.build.build`: LUT4s, flip-flops, block RAMs, Fmax), or
for standard cells (:func:`nnaccel.boards.asic.build_asic`: area, Fmax). Ray runs on this
machine by default (``ray.init()``); ``address`` joins an existing cluster, whose nodes must
have nnaccel and its tools installed. Tasks are spread over the nodes, one CPU each; a task
whose worker dies is retried (``retries``); a point that fails is recorded with its error and
the sweep goes on.

**Caching.** A point's *design hash* is the SHA-256 of the model's files, the point's options,
the design's manifest (so a change of the generator that changes the design changes it), the
measurement (vectors, seed) and the build settings. Every finished point is written to
``<cache>/<hash>.json`` as soon as it arrives, so a rerun, or a sweep resumed after being
stopped, runs only the points not finished yet. Failed points are not cached: a rerun tries
them again.
"""

import argparse
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import socket
import tempfile
import time
from pathlib import Path

from .gen.errors import NnaccelError, UsageError

__all__ = ["SweepResult", "parse_grid", "grid_points", "sweep", "measure_point",
           "pareto_front", "write_outputs", "format_table", "default_cache"]

#: Format of a cache entry and of results.json's points.
POINT_FORMAT = "nnaccel-sweep-point/1"
#: Random input vectors simulated per point.
DEFAULT_VECTORS = 8
#: Retries of a task whose worker died (Ray's ``max_retries``).
DEFAULT_RETRIES = 2

_KEY = re.compile(r"(max-lanes|target-cycles|batch|fold|engine|storage|array|sparse)"
                  r"(?:\.([A-Za-z_][A-Za-z0-9_]*))?\Z")
_GLOBAL = {"max-lanes": "--max-lanes", "target-cycles": "--target-cycles", "batch": "--batch"}
_PER_LAYER = {"fold": "--fold", "engine": "--engine", "storage": "--weight-storage",
              "array": "--array", "sparse": "--sparse"}
_CSV_FIELDS = ("status", "cycles_per_inference", "expected_cycles_per_inference", "lanes",
               "lut4", "ff", "bram", "mult", "area_um2", "fmax_mhz", "inferences_per_second",
               "cached", "node_id", "host", "seconds", "design_hash", "error")


def default_cache():
    """``$NNACCEL_CACHE/sweep`` (default ``~/.cache/nnaccel/sweep``), beside the Verilator
    builds."""
    root = os.environ.get("NNACCEL_CACHE") or os.path.join("~", ".cache", "nnaccel")
    return Path(root).expanduser() / "sweep"


# -- the grid ------------------------------------------------------------------------------------

def parse_grid(texts):
    """``--grid KEY=V1,V2,...`` texts as ``{key: [values]}`` (values as strings, ``:`` standing
    for the option's own comma). Raises :class:`UsageError` naming the field."""
    grid = {}
    for text in texts:
        key, sep, values = text.partition("=")
        if not sep or not values:
            raise UsageError(f"--grid {text!r}: expected KEY=V1,V2,..., e.g. max-lanes=8,16")
        if key in grid:
            raise UsageError(f"--grid {text!r}: {key!r} is given twice")
        grid[key] = values.split(",")
    return grid


def _check_key(key, layers):
    m = _KEY.match(str(key))
    if not m or (m.group(1) in _GLOBAL and m.group(2)) or (
            m.group(1) in ("fold", "engine", "array", "sparse") and not m.group(2)):
        raise UsageError(
            f"grid key {key!r}: expected one of max-lanes, target-cycles, batch, storage, or "
            "fold.LAYER, engine.LAYER, storage.LAYER, array.LAYER, sparse.LAYER")
    if m.group(2) and m.group(2) not in layers:
        raise UsageError(f"grid key {key!r} names layer {m.group(2)!r}, which the model does "
                         f"not have (layers: {', '.join(layers)})")
    return m.group(1), m.group(2)


def _argv(point, layers):
    """The generation options of ``point`` (``{key: value}``) as command-line arguments."""
    argv = []
    for key, value in point.items():
        kind, layer = _check_key(key, layers)
        value = str(value).replace(":", ",")
        if kind in _GLOBAL:
            argv += [_GLOBAL[kind], value]
        else:
            argv += [_PER_LAYER[kind], f"{layer}={value}" if layer else value]
    return argv


def grid_points(grid, layers):
    """The cartesian product of ``grid`` (``{key: [values]}``, in its order) as a list of
    ``{key: value}``; every key is checked against the model's ``layers`` first."""
    if not isinstance(grid, dict) or not grid:
        raise UsageError("grid: expected at least one KEY=V1,V2,... (e.g. max-lanes=8,16)")
    for key, values in grid.items():
        _check_key(key, layers)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__") or not list(
                values):
            raise UsageError(f"grid key {key!r}: expected a non-empty list of values")
    keys = list(grid)
    points = [dict(zip(keys, combo, strict=True))
              for combo in itertools.product(*(list(grid[k]) for k in keys))]
    return [{k: _plain(v) for k, v in p.items()} for p in points]


def _plain(value):
    """Grid values as JSON: whole numbers as ints, the rest as strings."""
    text = str(value)
    return int(text) if text.isdigit() and len(text) < 10 else text


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _point_options(model, point, layers):
    """The validated :class:`~nnaccel.gen.plan.Options` of one point (the CLI's own parser and
    checks)."""
    from . import cli

    parser = _Parser(prog="nnaccel sweep", add_help=False)
    cli._add_generate_options(parser)
    return cli._options(parser.parse_args(_argv(point, layers)), model)


# -- one point -----------------------------------------------------------------------------------

def _random_inputs(model, n, seed):
    from .gen.zoo.random_mlp import random_inputs

    return random_inputs(model, n, seed).reshape(n, *model.input_shape)


def _node():
    try:
        import ray

        if ray.is_initialized():
            return ray.get_runtime_context().get_node_id()
    except ImportError:
        pass
    return None


def measure_point(model, options, spec):
    """One sweep point, as a Ray task runs it (also callable directly): generate ``model``
    (IR) with ``options``, simulate ``spec["vectors"]`` random vectors (seed ``spec["seed"]``)
    under Verilator, checked bit-exact against the numpy reference, then build it when
    ``spec["build"]`` is ``{"target": "fpga", "board": ...}`` or ``{"target": "asic", "lib":
    ..., "period_ns": ...}``.

    Returns
    -------
    dict
        ``cycles_per_inference`` (measured), ``expected_cycles_per_inference``, ``lanes``; when
        built ``fmax_mhz``, ``timing_met``, ``inferences_per_second`` (at Fmax) and
        ``resources`` (FPGA: the build report's rows) or ``area_um2`` and ``cell_count``
        (ASIC); and where it ran: ``node_id`` (Ray's), ``host``, ``pid``, ``seconds``.

    Raises
    ------
    NnaccelError, AssertionError
        The point cannot be generated or built, or the hardware differs from the reference.
    """
    from .gen.generate import generate
    from .sim.design import simulate

    start = time.monotonic()
    design = generate(model, options)
    _outputs, sim = simulate(design, _random_inputs(model, spec["vectors"], spec["seed"]),
                             check=True)
    manifest = design.manifest
    result = {"cycles_per_inference": float(sim.cycles_per_inference),
              "expected_cycles_per_inference": manifest["expected_cycles_per_inference"],
              "lanes": manifest["lanes"]}
    build = spec.get("build")
    if build:
        quiet = io.StringIO()
        with tempfile.TemporaryDirectory(prefix="nnaccel-sweep-") as tmp:
            outdir = Path(tmp) / "build"
            if build["target"] == "asic":
                from .boards.asic import build_asic

                report = build_asic(design.verilog(), outdir, name=design.name,
                                    lib=build["lib"], period_ns=build["period_ns"], log=quiet)
                result.update(area_um2=report["area_um2"], cell_count=report["cell_count"])
            else:
                from .boards.build import build as build_fpga

                report = build_fpga(design.network, build["board"], outdir, name=design.name,
                                    log=quiet)
                result["resources"] = report["resources"]
        result.update(fmax_mhz=report["fmax_mhz"], timing_met=report["timing_met"],
                      inferences_per_second=report["fmax_mhz"] * 1e6 /
                      result["cycles_per_inference"])
    result.update(node_id=_node(), host=socket.gethostname(), pid=os.getpid(),
                  seconds=round(time.monotonic() - start, 2))
    return result


# -- hashing and the cache -----------------------------------------------------------------------

def _model_digest(path):
    """SHA-256 of a model directory's files (names and contents) or of an .onnx file."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(path) if path.is_dir() else f.name).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _design_hash(model_digest, point, manifest, spec):
    doc = {"format": POINT_FORMAT, "model": model_digest, "options": point,
           "manifest": manifest, "measure": {"vectors": spec["vectors"], "seed": spec["seed"]},
           "build": spec.get("build")}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def _cached(cache, key):
    try:
        entry = json.loads((cache / f"{key}.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != POINT_FORMAT or entry.get(
            "design_hash") != key or entry.get("status") != "ok":
        return None
    return entry


def _store(cache, entry):
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".entry-", dir=cache)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(entry, indent=1) + "\n")
    os.replace(tmp, cache / f"{entry['design_hash']}.json")


# -- the sweep -----------------------------------------------------------------------------------

@dataclasses.dataclass
class SweepResult:
    """What :func:`sweep` returns.

    Attributes
    ----------
    points : list of dict
        One per grid point, in grid order (see :func:`sweep`).
    computed, cached, failed : int
        Points run by a task in this sweep, taken from the cache, and failed.
    output : Path or None
        The ``-o`` directory written.
    """

    points: list
    computed: int
    cached: int
    failed: int
    output: Path | None = None


def _label(point):
    return " ".join(f"{k}={v}" for k, v in point.items())


def _summary(entry):
    if entry["status"] != "ok":
        return f"FAILED: {entry['error']}"
    parts = [f"{entry['cycles_per_inference']:g} cycles/inference"]
    if entry.get("resources"):
        parts.append(f"{entry['resources']['lut4']['used']:,} LUT4")
    if entry.get("area_um2") is not None:
        parts.append(f"{entry['area_um2'] / 1e6:.4f} mm^2")
    if entry.get("fmax_mhz") is not None:
        parts.append(f"{entry['fmax_mhz']:.1f} MHz")
    return ", ".join(parts)


def _error_text(e):
    cause = getattr(e, "cause", None)
    err = cause if isinstance(cause, BaseException) else e
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text[:400]}"


def sweep(model_path, grid, *, board=None, target="fpga", lib="osu018", period_ns=10.0,
          build=True, vectors=DEFAULT_VECTORS, seed=0, address=None, cpus=None, cache=None,
          retries=DEFAULT_RETRIES, output=None, force=False, log=None):
    """Run the design points of ``grid`` on Ray; see the module docstring.

    Parameters
    ----------
    model_path : path-like
        A model directory or .onnx file.
    grid : dict
        ``{key: [values]}`` (keys in the module docstring), or a list of ``KEY=V1,V2`` texts.
    board : str, optional
        FPGA board of the builds (``target="fpga"``; required unless ``build=False``).
    target : {"fpga", "asic"}
        What to build: the board's bitstream, or ``lib``'s standard cells at ``period_ns``.
    build : bool
        False: generate and measure cycles only (``--no-build``).
    vectors, seed : int
        Random input vectors simulated per point, and their seed.
    address : str, optional
        A Ray cluster to join (``ray.init(address)``); default a local Ray on this machine.
    cpus : int, optional
        CPUs of the local Ray (default all): points run at most this many at a time.
    cache : path-like, optional
        Directory of finished points (default :func:`default_cache`).
    retries : int
        Ray's ``max_retries`` of a task whose worker died.
    output : path-like, optional
        Write ``results.json``, ``results.csv`` and the Pareto plot ``pareto.png`` /
        ``pareto.svg`` there (:func:`write_outputs`), complete or not at all; an earlier
        sweep's output is replaced only with ``force``.
    log : callable, optional
        Progress lines (default: stderr).

    Returns
    -------
    SweepResult
        ``points``: one dict per grid point with ``point`` (its index), ``options``,
        ``status`` (``ok`` or ``failed``), ``error``, ``design_hash``, ``cached`` and the
        fields of :func:`measure_point`.

    Raises
    ------
    UsageError, ModelError
        A bad model, grid key, board or output directory (before anything runs). A point whose
        options are refused, or which fails to build or simulate, is recorded as failed.
    """
    from . import cli
    from .gen.atomic import check_output, output_policy

    log = log or cli.log
    if target not in ("fpga", "asic"):
        raise UsageError(f"target: expected 'fpga' or 'asic', not {target!r}")
    if isinstance(grid, (list, tuple)):
        grid = parse_grid(grid)
    if cpus is not None and address is not None:
        raise UsageError("cpus: applies to a local Ray only, not with an address")
    for name, value, largest in (("vectors", vectors, 1 << 16), ("retries", retries, 100),
                                 ("cpus", 1 if cpus is None else cpus, 1 << 10)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= largest:
            raise UsageError(f"{name}: expected an integer in 0..{largest}, not {value!r}")
    if vectors < 1:
        raise UsageError("vectors: expected at least 1")
    spec = {"vectors": vectors, "seed": int(seed), "build": None}
    if build and target == "fpga":
        from .boards.platforms import get_board

        if board is None:
            raise UsageError("--board: required to build for an FPGA (or --no-build, or "
                             "--target asic)")
        get_board(board)
        spec["build"] = {"target": "fpga", "board": board}
    elif build:
        from .boards.asic import find_liberty

        find_liberty(lib)
        spec["build"] = {"target": "asic", "lib": lib, "period_ns": float(period_ns)}
    model = cli._read(model_path)
    layers = [layer.name for layer in model.layers]
    points = grid_points(grid, layers)
    if output is not None:
        with output_policy(command="sweep", force=force, inputs=(model_path,)):
            check_output(output)
    cache = Path(cache) if cache is not None else default_cache()
    digest = _model_digest(model_path)

    results, todo = [], []
    for i, point in enumerate(points):
        entry = {"format": POINT_FORMAT, "point": i, "options": point, "status": "ok",
                 "error": None, "design_hash": None, "cached": False}
        try:
            options = _point_options(model, point, layers)
            from .gen.generate import generate

            manifest = generate(model, options).manifest
        except NnaccelError as e:
            entry.update(status="failed", error=str(e))
            results.append(entry)
            continue
        key = _design_hash(digest, point, manifest, spec)
        hit = _cached(cache, key)
        if hit is not None:
            entry.update({k: v for k, v in hit.items() if k not in ("point", "options")})
            entry.update(cached=True, design_hash=key)
        else:
            entry["design_hash"] = key
            todo.append((entry, options))
        results.append(entry)
    hits = sum(e["cached"] for e in results)
    log(f"sweep of {len(points)} points on {model.name}: {hits} cached, {len(todo)} to run, "
        f"{sum(e['status'] == 'failed' for e in results)} refused")
    for e in results:
        if e["cached"] or e["status"] == "failed":
            log(f"  [{e['point'] + 1}/{len(points)}] {_label(e['options'])}: "
                f"{'cached, ' if e['cached'] else ''}{_summary(e)}")
    if todo:
        _run_on_ray(model, todo, spec, len(points), cache=cache, address=address, cpus=cpus,
                    retries=retries, log=log)
    failed = sum(e["status"] == "failed" for e in results)
    log(f"sweep done: {len(todo)} computed, {hits} cached, {failed} failed")
    result = SweepResult(points=results, computed=len(todo), cached=hits, failed=failed)
    if output is not None:
        with output_policy(command="sweep", force=force, inputs=(model_path,)):
            result.output = write_outputs(output, results, spec=spec, model=model.name,
                                          grid=list(grid))
        log(f"wrote {result.output / 'results.json'}, results.csv and pareto.png/.svg")
    return result


def _run_on_ray(model, todo, spec, total, *, cache, address, cpus, retries, log):
    """Submit the points of ``todo`` as Ray tasks and fill in their entries as they finish;
    each finished point is cached at once."""
    import logging

    from .gen.errors import ToolError

    try:
        import ray
    except ImportError:
        raise ToolError("nnaccel sweep runs its points on Ray, which is not installed: "
                        "pip install -e '.[sweep]' (make install includes it)") from None
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address, num_cpus=cpus, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
        except Exception as e:  # ConnectionError, a timeout: Ray's own, of several kinds
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise ToolError(f"{where} did not start or answer: {_error_text(e)}") from None
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = ray.cluster_resources().get("CPU", 0)
        log(f"Ray: {len(nodes)} node(s), {cpus:g} CPUs"
            f"{' at ' + address if address else ' (local)'}")
        task = ray.remote(measure_point).options(
            num_cpus=1, max_retries=retries, retry_exceptions=False,
            scheduling_strategy="SPREAD")
        model_ref = ray.put(model)
        pending = {task.remote(model_ref, options, spec): entry for entry, options in todo}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            entry = pending.pop(done[0])
            try:
                entry.update(ray.get(done[0]))
            except ray.exceptions.RayError as e:
                entry.update(status="failed", error=_error_text(e))
            if entry["status"] == "ok":
                _store(cache, entry)
            where = f" (node {entry['node_id'][:8]}, {entry['seconds']:.1f} s)" if entry.get(
                "node_id") else ""
            log(f"  [{entry['point'] + 1}/{total}] {_label(entry['options'])}: "
                f"{_summary(entry)}{where}")
    finally:
        if started:
            ray.shutdown()


# -- outputs -------------------------------------------------------------------------------------

def _cost(entry):
    """``(cost, label)`` of a point for the Pareto plot: LUT4s when built for an FPGA, mm^2
    for standard cells, lanes when not built."""
    if entry.get("resources"):
        return entry["resources"]["lut4"]["used"], "LUT4"
    if entry.get("area_um2") is not None:
        return entry["area_um2"] / 1e6, "area (mm^2)"
    return entry["lanes"], "lanes"


def _throughput(entry):
    """Inferences per second at Fmax when built, else inferences per 1000 cycles."""
    if entry.get("inferences_per_second") is not None:
        return entry["inferences_per_second"], "inferences/s at Fmax"
    return 1000.0 / entry["cycles_per_inference"], "inferences per 1000 cycles"


def pareto_front(costs, gains):
    """Indices of the points no other point dominates (cost no higher and gain no lower, one
    of them strictly), in increasing cost."""
    front = []
    for i, (c, g) in enumerate(zip(costs, gains, strict=True)):
        if not any((c2 <= c and g2 >= g) and (c2 < c or g2 > g)
                   for c2, g2 in zip(costs, gains, strict=True)):
            front.append(i)
    return sorted(front, key=lambda i: (costs[i], -gains[i]))


def _csv_row(entry):
    res = entry.get("resources") or {}
    row = {"point": entry["point"], **{f"grid.{k}": v for k, v in entry["options"].items()}}
    for field in _CSV_FIELDS:
        if field in ("lut4", "ff", "bram", "mult"):
            row[field] = res.get(field, {}).get("used", "")
        else:
            value = entry.get(field)
            row[field] = "" if value is None else value
    return row


def format_table(points):
    """The results as aligned text, one line per point."""
    ok = [e for e in points if e["status"] == "ok"]
    built = any(e.get("fmax_mhz") is not None for e in ok)
    head = ["point", "options", "cycles", "lanes"] + (
        ["cost", "Fmax MHz", "inf/s"] if built else []) + ["status"]
    rows = [head]
    for e in points:
        row = [str(e["point"]), _label(e["options"])]
        if e["status"] == "ok":
            row += [f"{e['cycles_per_inference']:g}", str(e["lanes"])]
            if built:
                cost, unit = _cost(e)
                row += [f"{cost:,.4g} {unit.split()[0]}", f"{e.get('fmax_mhz') or 0:.1f}",
                        f"{e.get('inferences_per_second') or 0:,.0f}"]
            row.append("cached" if e["cached"] else "ok")
        else:
            row += ["-", "-"] + (["-", "-", "-"] if built else []) + ["FAILED"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def _plot(points, path_png, path_svg, title):
    from .bench.report import pyplot

    ok = [e for e in points if e["status"] == "ok"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if ok:
        costs = [_cost(e)[0] for e in ok]
        gains = [_throughput(e)[0] for e in ok]
        front = pareto_front(costs, gains)
        ax.scatter(costs, gains, color="#8c8c8c", label="design points", zorder=2)
        ax.step([costs[i] for i in front], [gains[i] for i in front], where="post",
                color="#c44e52", zorder=1)
        ax.scatter([costs[i] for i in front], [gains[i] for i in front], color="#c44e52",
                   label="Pareto front", zorder=3)
        for i, e in enumerate(ok):
            ax.annotate(_label(e["options"]), (costs[i], gains[i]), fontsize=6,
                        textcoords="offset points", xytext=(3, 3))
        ax.set_xlabel(_cost(ok[0])[1])
        ax.set_ylabel(_throughput(ok[0])[1])
        ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path_png, dpi=110)
    fig.savefig(path_svg)
    plt.close(fig)


def write_outputs(outdir, points, *, spec, model, grid):
    """``results.json`` (the points), ``results.csv`` (one row per point) and the Pareto plot
    ``pareto.png``/``pareto.svg`` in the directory ``outdir``, written complete or not at all
    (:func:`nnaccel.gen.atomic.atomic_directory`). Returns ``outdir`` as a Path."""
    from .gen.atomic import atomic_directory

    outdir = Path(outdir)
    with atomic_directory(outdir) as tmp:
        (tmp / "results.json").write_text(json.dumps(points, indent=2) + "\n")
        rows = [_csv_row(e) for e in points]
        fields = ["point"] + [f"grid.{k}" for k in grid] + list(_CSV_FIELDS)
        with open(tmp / "results.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        build = spec.get("build") or {}
        where = build.get("board") or build.get("lib") or "not built"
        _plot(points, tmp / "pareto.png", tmp / "pareto.svg",
              f"{model}: sweep of {' x '.join(grid)} ({where})")
    return outdir
