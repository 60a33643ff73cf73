"""``nnaccel bench --suite asic``: the bench designs on OSU 0.18 um standard cells (area, Fmax,
MACs per second per mm^2), beside published ASIC accelerators scaled to 0.18 um.

Each design is generated through the same API as a user's, its cycles per inference measured
under Verilator (outputs checked bit-exact against numpy), then synthesised and timed with
:func:`nnaccel.boards.asic.build_asic` (yosys on the liberty, OpenSTA; memories as flip-flop
arrays, no SRAM macro; pre-layout timing without a wire-load model). The throughput is
``MACs per inference * Fmax / measured cycles per inference``, the MACs being the model's dense
multiply-accumulates (``manifest["macs"]``).

**Scaling rule** (classical constant-field scaling, first order): a design moved from feature
size ``L`` to ``L'`` has area times ``(L'/L)^2`` and gate delay times ``L'/L`` (clock frequency
times ``L/L'``); so MACs/s per mm^2 scales by ``(L/L')^3``. It ignores everything that stopped
scaling that way (voltage, wires, FinFETs, SRAM density), so the scaled figures say only which
order of magnitude a design is in.
"""

import json
import os
import shutil
import time
from pathlib import Path

from .report import fmt, write_results

__all__ = ["ASIC_DESIGNS", "REFERENCES", "scale", "run_asic_bench"]

ASIC_FORMAT = "nnaccel-bench-asic/1"
#: Feature size of the library, in nm.
FEATURE_NM = {"osu018": 180}
#: Vectors simulated per design (a systolic design gets two of its batches).
VECTORS = 16

#: Published accelerators. MACs/s are one MAC per PE (or cell) per cycle at the clock given.
REFERENCES = (
    {"name": "EIE (Han et al., ISCA 2016)", "feature_nm": 45, "area_mm2": 40.8,
     "fmax_mhz": 800.0, "macs_per_cycle": 64,
     "note": "64 PEs, one MAC each per cycle (its 102 GOP/s = 2 x 64 x 800 MHz) on the "
             "compressed network; the area holds the weights in SRAM"},
    {"name": "Gemmini 16x16 mesh (openroad-demo, ASAP7)", "feature_nm": 7,
     "area_mm2": 0.103705, "fmax_mhz": 631.0, "macs_per_cycle": 256,
     "note": "Gemmini's MeshWithDelays, 16x16 int8 MACs, design area and Fmax after global "
             "routing as published by the openroad-demo project (SRAMs mocked: no scratchpad)"},
)


def scale(area_mm2, fmax_mhz, from_nm, to_nm):
    """``(area_mm2, fmax_mhz)`` moved from ``from_nm`` to ``to_nm`` by the scaling rule of the
    module docstring."""
    k = to_nm / from_nm
    return area_mm2 * k * k, fmax_mhz / k


def _mvu(name):
    def make(seed):
        from ..gen.plan import Options
        from .mvu import BENCHMARKS

        (bench,) = [b for b in BENCHMARKS if b.name == name]
        model, _x, _provenance = bench.make(seed, 1)
        return model, Options(max_lanes=bench.max_lanes), 1
    return make


def _systolic(rows, cols, gemm):
    def make(seed):
        from ..gen.zoo.gemm import gemm_model, make_gemm
        from .systolic import LAYER, gemm_options

        m, k, n = gemm
        _x, w, bias, mult, shift = make_gemm(m, k, n, seed)
        model = gemm_model(w, bias, mult=mult, shift=shift, name=f"systolic_{rows}x{cols}",
                           layer=LAYER)
        return model, gemm_options(rows, cols, "ws", m), m
    return make


#: ``(name, what, make)``: ``make(seed) -> (model, options, vectors per batch)``.
ASIC_DESIGNS = (
    ("mlp_int8", "int8 MLP 64-32-10, 16 multipliers (make bench's (a))", _mvu("mlp_int8")),
    ("prime_int4", "int4 MLP 97-61-13, 32 multipliers", _mvu("prime_int4")),
    ("digits_bnn", "binarized MLP 64-128-128-10, 128 XNOR lanes", _mvu("digits_bnn")),
    ("systolic_8x8", "8x8 weight-stationary array, int8 GEMM 64x64x64",
     _systolic(8, 8, (64, 64, 64))),
)
#: Designs the bench also places and routes (when qflow's tools are installed): none by
#: default, as graywolf and qrouter were not timed on a bench design yet; the command line's
#: ``--place-route`` chooses some.
PLACE_ROUTE = ()
#: Left out, with the reason.
SKIPPED = {"sfc_bnn": "784-256-256-256-10: its 0.33 Mbit of read-only weights would become "
                      "logic (no SRAM macro in the library), beyond what yosys maps here in "
                      "reasonable time"}


def _one(name, what, make, outdir, *, lib, period_ns, seed, log, place_route=False):
    from ..boards.asic import build_asic
    from ..gen.generate import generate
    from ..gen.zoo.random_mlp import random_inputs
    from ..sim.design import simulate

    model, options, batch = make(seed)
    design = generate(model, options)
    man = design.manifest
    n = max(VECTORS, 2 * batch) if batch > 1 else VECTORS
    x = random_inputs(model, n, seed).reshape(n, *model.input_shape)
    start = time.monotonic()
    _out, sim = simulate(design, x, check=True)
    log(f"[asic] {name}: {sim.cycles_per_inference:g} cycles per inference measured "
        f"({time.monotonic() - start:.0f} s)")
    report = build_asic(design.verilog(), outdir / f"{name}-{lib}", name=design.name, lib=lib,
                        period_ns=period_ns, place_route=place_route, log=log)
    area_mm2 = report["area_um2"] / 1e6
    macs_per_s = man["macs"] * report["fmax_mhz"] * 1e6 / sim.cycles_per_inference
    return {"name": name, "what": what, "lanes": man["lanes"], "macs": man["macs"],
            "cycles_per_inference": float(sim.cycles_per_inference),
            "expected_cycles": man["expected_cycles_per_inference"],
            "area_um2": report["area_um2"], "area_mm2": area_mm2,
            "cells": report["cell_count"], "flip_flops": report["flip_flops"],
            "fmax_mhz": report["fmax_mhz"], "critical_path": report["critical_path"],
            "power_w": report.get("power_w"), "macs_per_s": macs_per_s,
            "macs_per_s_per_mm2": macs_per_s / area_mm2,
            "place_route": _layout_row(report.get("place_route"), macs_per_s),
            "seconds": report["seconds_total"]}


def _layout_row(layout, macs_per_s):
    if layout is None:
        return None
    keep = ("die_width_um", "die_height_um", "die_area_mm2", "utilization", "nets",
            "wire_length_um", "failed_nets")
    return {**{k: layout[k] for k in keep},
            "macs_per_s_per_die_mm2": macs_per_s / layout["die_area_mm2"]}


def _reference_rows(to_nm):
    rows = []
    for ref in REFERENCES:
        area, fmax = scale(ref["area_mm2"], ref["fmax_mhz"], ref["feature_nm"], to_nm)
        macs_per_s = ref["macs_per_cycle"] * ref["fmax_mhz"] * 1e6
        scaled = ref["macs_per_cycle"] * fmax * 1e6
        rows.append({**ref, "macs_per_s": macs_per_s,
                     "macs_per_s_per_mm2": macs_per_s / ref["area_mm2"],
                     "scaled_area_mm2": area, "scaled_fmax_mhz": fmax,
                     "scaled_macs_per_s_per_mm2": scaled / area})
    return rows


def _markdown(summary):
    lib = summary["library"]
    lines = [f"# ASIC bench: {lib} ({summary['feature_nm']} nm standard cells)", "",
             f"Clock constraint {summary['period_ns']} ns; Fmax = 1 / (period - worst slack) "
             "from OpenSTA, pre-layout, no wire-load model. Memories are flip-flop arrays.", "",
             "| design | lanes | cycles/inference | area mm^2 | cells | flip-flops | Fmax MHz "
             "| GMAC/s | GMAC/s per mm^2 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["designs"]:
        lines.append(f"| {r['name']} ({r['what']}) | {r['lanes']} | "
                     f"{fmt(r['cycles_per_inference'])} | {r['area_mm2']:.3f} | "
                     f"{fmt(r['cells'])} | {fmt(r['flip_flops'])} | {r['fmax_mhz']:.1f} | "
                     f"{r['macs_per_s'] / 1e9:.3f} | {r['macs_per_s_per_mm2'] / 1e9:.4f} |")
    for name, why in summary["skipped"].items():
        lines.append(f"| {name}: not built ({why}) | | | | | | | | |")
    placed = [r for r in summary["designs"] if r.get("place_route")]
    if placed:
        lines += ["", "Placed (graywolf) and routed (qrouter), 4 metal layers, no fillers or "
                  "power stripes:", "",
                  "| design | die um | die mm^2 | cells / die | nets | wire mm | failed nets "
                  "| GMAC/s per die mm^2 |", "|---|---|---|---|---|---|---|---|"]
        for r in placed:
            pr = r["place_route"]
            lines.append(f"| {r['name']} | {pr['die_width_um']:,.0f} x "
                         f"{pr['die_height_um']:,.0f} | {pr['die_area_mm2']:.3f} | "
                         f"{pr['utilization']:.0%} | {fmt(pr['nets'])} | "
                         f"{pr['wire_length_um'] / 1e3:,.1f} | {pr['failed_nets']} | "
                         f"{pr['macs_per_s_per_die_mm2'] / 1e9:.4f} |")
    lines += ["", f"Published accelerators, and scaled to {summary['feature_nm']} nm (area x "
              "(L'/L)^2, Fmax x L/L'):", "",
              "| accelerator | node | area mm^2 | Fmax MHz | GMAC/s per mm^2 | scaled area mm^2 "
              "| scaled Fmax MHz | scaled GMAC/s per mm^2 |", "|---|---|---|---|---|---|---|---|"]
    for r in summary["references"]:
        lines.append(f"| {r['name']} | {r['feature_nm']} nm | {r['area_mm2']:g} | "
                     f"{r['fmax_mhz']:g} | {r['macs_per_s_per_mm2'] / 1e9:.2f} | "
                     f"{r['scaled_area_mm2']:.1f} | {r['scaled_fmax_mhz']:.1f} | "
                     f"{r['scaled_macs_per_s_per_mm2'] / 1e9:.4f} |")
    lines += ["", *[f"- {r['name']}: {r['note']}." for r in summary["references"]], ""]
    return "\n".join(lines)


def run_asic_bench(outdir, *, lib="osu018", period_ns=10.0, designs=None, seed=0, log=print,
                   place_route=PLACE_ROUTE):
    """Synthesise and time the designs of :data:`ASIC_DESIGNS` into ``outdir``: ``asic.json``,
    ``asic.md`` and one build directory each. ``designs`` chooses some: names from
    :data:`ASIC_DESIGNS`, or ``(name, what, make)`` tuples of one's own; the designs named in
    ``place_route`` are also placed and routed when qflow's tools are installed. Returns 0,
    or 1 when a design failed (its error is listed)."""
    from ..boards.asic import INSTALL_HINT, find_liberty
    from ..boards.asic_place import find_place_route_tools
    from ..gen.errors import ToolError, UsageError

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    try:
        find_liberty(lib)
        if not shutil.which(os.environ.get("STA", "sta")):
            raise ToolError(f"OpenSTA (sta) is missing: `{INSTALL_HINT}`")
    except ToolError as e:  # make bench goes on without this table, saying why
        (outdir / "asic.md").write_text(f"# ASIC bench: not run\n\n{e}\n")
        log(f"[asic] skipped: {e}")
        return 0
    if place_route:
        try:
            find_place_route_tools(lib)
        except UsageError as e:
            log(f"[asic] no placement and routing: {e}")
            place_route = ()
    by_name = {d[0]: d for d in ASIC_DESIGNS}
    chosen = list(ASIC_DESIGNS) if designs is None else [
        by_name[d] if isinstance(d, str) else d for d in designs]
    rows, failures = [], {}
    for name, what, make in chosen:
        log(f"[asic] == {name}: {what}")
        try:
            rows.append(_one(name, what, make, outdir, lib=lib, period_ns=period_ns,
                             seed=seed, log=log, place_route=name in place_route))
        except Exception as e:  # noqa: BLE001 - recorded; the other designs go on
            failures[name] = f"{type(e).__name__}: {e}"
            log(f"[asic] {name} FAILED: {failures[name]}")
    summary = {"format": ASIC_FORMAT, "library": lib, "feature_nm": FEATURE_NM[lib],
               "period_ns": period_ns, "designs": rows, "failures": failures,
               "skipped": SKIPPED, "references": _reference_rows(FEATURE_NM[lib]),
               "scaling_rule": "area x (L'/L)^2, delay x L'/L (Fmax x L/L')"}
    write_results(outdir, "asic", json.loads(json.dumps(summary, default=float)),
                  _markdown(summary))
    log(f"[asic] wrote {outdir / 'asic.md'}")
    return int(bool(failures))


def main(argv=None):
    """``python -m nnaccel.bench.asic OUTDIR [DESIGN ...] [--place-route]``."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m nnaccel.bench.asic",
        description="ASIC bench: the bench designs on the OSU 0.18 um cells (area, Fmax, "
                    "MACs/s per mm^2)")
    parser.add_argument("outdir", help="directory for asic.md and asic.json")
    parser.add_argument("designs", nargs="*", metavar="DESIGN",
                        help=f"designs to build (default: all of "
                             f"{', '.join(d[0] for d in ASIC_DESIGNS)})")
    parser.add_argument("--place-route", action="store_true",
                        help="also place and route the designs named (all without names)")
    args = parser.parse_args(argv)
    names = tuple(args.designs)
    place_route = ((names or tuple(d[0] for d in ASIC_DESIGNS)) if args.place_route
                   else PLACE_ROUTE)
    return run_asic_bench(args.outdir, designs=list(names) or None, place_route=place_route)


if __name__ == "__main__":
    raise SystemExit(main())
