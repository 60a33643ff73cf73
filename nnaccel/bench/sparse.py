"""Benchmark of the EIE-like sparse engine (issue 4).

A 512x512 layer with int8 weights, pruned to 10 % density by magnitude and weight-shared with a
16-entry codebook (zero and 15 centroids, so 4-bit codes), uint8 inputs, a requantizing output
stage. For N = 4, 8, 16 PEs and activation queue depths D = 1, 2, 4, 8, 16 the bench measures:

* cycles per inference, steady state (vectors back to back, no backpressure), **measured** by
  simulating under Verilator (:func:`nnaccel.sim.design.simulate`) the Verilog of the one-layer
  design that ``generate()`` makes of the layer (:func:`nnaccel.gen.zoo.sparse_layer.sparse_model`,
  forced onto the sparse engine with N and D through ``Options``), and predicted by the cycle
  model (:func:`nnaccel.hw.sparse.reference.cycle_model`); every simulated output is compared
  with the SPEC reference; total and first-vector cycles are counted from the engine's first
  input beat (the design's input FIFO adds
  :data:`~nnaccel.hw.common.pipeline.INPUT_LATENCY` cycles in front of it);
* load-balance efficiency, ``1 - idle PE-cycles / total PE-cycles`` (from the cycle model, whose
  per-PE busy cycles are exact; and from the measured cycles per inference);
* entries (non-zeros and padding) per PE per cycle;
* speedup over a dense engine with the same number of multipliers (``ceil(M*K/N)`` cycles),
  with dense activations and with 35 % non-zero activations;
* throughput on busy columns: a 512x64 layer whose every column holds 8 to 16 entries per PE;
* optionally, synthesis for the ULX3S (ECP5-85F) for N = 4, 8, 16 at D = 8.

Results go to ``sparse.json``, ``sparse.md`` and ``sparse.png`` in the output directory. Each
row says where its cycles come from (``"cycles_source"``: ``"verilator"`` or ``"model"``).
"""

import time
from pathlib import Path

import numpy as np

from ..gen.engines import Engine, SparseChoice
from ..gen.engines.sparse import encoded_matrix
from ..gen.generate import Design
from ..gen.pipeline import compile_plan
from ..gen.plan import Options
from ..gen.zoo import sparse_layer
from ..hw.common.pipeline import INPUT_LATENCY
from ..hw.sparse.format import choose_index_bits
from ..hw.sparse.reference import performed_macs
from .report import pyplot, write_results

__all__ = ["TARGETS", "make_layer", "sparse_options", "SparseBenchConfig", "run_sparse_bench",
           "pe_resources"]

SIZE = 512
DENSITY = 0.10
CODEBOOK_SIZE = 16
ACTIVE = 0.35
IN_BEAT = 8
PES = (4, 8, 16)
DEPTHS = (1, 2, 4, 8, 16)
BATCH = 4
BOARD = "ulx3s-85f"

#: Issue 4's targets.
TARGETS = {"efficiency_at_d8": 0.90, "busy_entries_per_pe_cycle": 0.90,
           "speedup_dense_activations": 7.0, "speedup_sparse_activations": 20.0}


def make_layer(size=SIZE, in_features=None, *, density=DENSITY, codebook_size=CODEBOOK_SIZE,
               seed=0):
    """The benchmark layer: ``(weight, codebook, bias, mult, shift)``
    (:func:`nnaccel.gen.zoo.sparse_layer.make_layer`)."""
    return sparse_layer.make_layer(size, in_features, density=density,
                                   codebook_size=codebook_size, seed=seed)


def _activations(rng, batch, k, active):
    x = rng.integers(1, 256, size=(batch, k))
    if active < 1:
        mask = np.zeros((batch, k), dtype=bool)
        for row in mask:
            row[rng.choice(k, size=int(round(active * k)), replace=False)] = True
        x = x * mask
    return x


#: The layer's name in the benchmark models.
LAYER = "fc"


def sparse_options(n_pe, depth):
    """``Options`` that put the layer on the sparse engine with ``n_pe`` PEs and queue depth
    ``depth``."""
    return Options(engines=((LAYER, Engine.SPARSE),),
                   sparse=((LAYER, SparseChoice(n_pe, depth)),))


class SparseBenchConfig:
    """One configuration: the layer's model, its compiled plan, parameters and encoding."""

    def __init__(self, weight, codebook, bias, mult, shift, n_pe, depth, *, name=None):
        self.weight = np.asarray(weight)
        name = name or f"sparse_n{n_pe}_d{depth}"
        self.model = sparse_layer.sparse_model(weight, codebook, bias, mult, shift, name=name,
                                               layer=LAYER)
        self.plan = compile_plan(self.model, sparse_options(n_pe, depth))
        self.params = self.plan.layers[0].params
        self.matrix = encoded_matrix(self.plan.layers[0])
        self.index = choose_index_bits(self.weight, n_pe, codebook=codebook)

    def design(self):
        """The generated design (built only when it is simulated or synthesised: amaranth
        warns about components that are built and never used)."""
        return Design(self.plan)

    def model_report(self, x):
        """The cycle model on the batch ``x`` (its non-zero activations), back to back."""
        return self.params.cycle_report(self.matrix.column_counts(), x != 0)

    def simulate(self, x):
        """Simulate ``x`` under Verilator, every output checked; returns the SimResult."""
        from ..sim.design import simulate

        _, result = simulate(self.design(), x)
        return result


def _row(cfg, x, label, result, dense_cycles):
    """One result row from the model (and the Verilator result, when there is one)."""
    rep = cfg.model_report(x)
    p = cfg.params
    measured = result is not None
    cpi = result.cycles_per_inference if measured else rep.cycles_per_inference
    entries = float(rep.entries.sum()) / len(x)
    busy = float(rep.busy.sum()) / len(x)
    nonzero_macs = performed_macs(cfg.weight, x)
    return {
        "n_pe": p.pe, "queue_depth": p.queue_depth, "activations": label,
        "index_bits": p.index_bits, "bits_per_nonzero": round(cfg.index.bits_per_nonzero, 3),
        "padding_entries": cfg.matrix.padding,
        "cycles_source": "verilator" if measured else "model",
        "cycles_per_inference": cpi,
        "model_cycles_per_inference": rep.cycles_per_inference,
        "model_error": abs(cpi - rep.cycles_per_inference) / rep.cycles_per_inference,
        "cycles_total": (int(result.cycles_total) - INPUT_LATENCY if measured
                         else rep.cycles_total),
        "model_cycles_total": rep.cycles_total,
        "latency_cycles": (int(result.latency_cycles) - INPUT_LATENCY if measured
                           else int(rep.vector_end[0])),
        "efficiency": rep.efficiency,
        "efficiency_measured": busy / (p.pe * cpi),
        "entries_per_pe_cycle": entries / (p.pe * cpi),
        "macs_per_pe_cycle": nonzero_macs / (p.pe * cpi),
        "broadcast_stalls": rep.broadcast_stalls,
        "dense_cycles": dense_cycles,
        "speedup": dense_cycles / cpi,
        "outputs_checked": int(result.outputs_bits.size) if measured else 0,
    }


def _plot(rows, busy_rows, path):
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = {4: "#4c72b0", 8: "#55a868", 16: "#c44e52"}
    for n in PES:
        for label, style in (("dense", "-"), ("35%", "--")):
            sel = [r for r in rows if r["n_pe"] == n and r["activations"] == label]
            if not sel:
                continue
            d = [r["queue_depth"] for r in sel]
            axes[0].plot(d, [r["speedup"] for r in sel], style, marker="o", color=colors[n],
                         label=f"N={n}, {label} activations")
            if label == "dense":
                axes[1].plot(d, [100 * r["efficiency"] for r in sel], style, marker="o",
                             color=colors[n], label=f"N={n}")
    axes[0].axhline(TARGETS["speedup_dense_activations"], color="grey", linestyle=":")
    axes[0].axhline(TARGETS["speedup_sparse_activations"], color="grey", linestyle=":")
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("activation queue depth D")
    axes[0].set_ylabel("speedup over dense engine, same multipliers")
    axes[0].legend(fontsize=7)
    axes[1].axhline(100 * TARGETS["efficiency_at_d8"], color="grey", linestyle=":")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("activation queue depth D")
    axes[1].set_ylabel("load-balance efficiency, % (dense activations)")
    axes[1].legend(fontsize=7)
    title = f"sparse engine, {SIZE}x{SIZE} at {100 * DENSITY:.0f}% density, 16-entry codebook"
    if busy_rows:
        busy = ", ".join(f"N={r['n_pe']} {r['entries_per_pe_cycle']:.3f}" for r in busy_rows)
        title += f" | busy columns: {busy} entries/PE/cycle"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(summary):
    rows, busy, synth = summary["rows"], summary["busy_columns"], summary["synthesis"]
    lines = [f"# Sparse engine benchmark ({summary['layer']})", "",
             "Cycles per inference are steady state (vectors back to back). `source` says "
             "whether they were measured under Verilator or taken from the cycle model. "
             "Efficiency: load balance from the cycle model (`model`) and from the measured "
             "cycles (`meas.`). Speedup: over a dense engine with as many multipliers, "
             "`ceil(M*K/N)` cycles.", "",
             "| N | D | activations | index bits | source | cycles/inf. | model | error | "
             "efficiency model | efficiency meas. | entries/PE/cycle | speedup |",
             "|" + " --- |" * 12]
    for r in rows:
        lines.append(
            f"| {r['n_pe']} | {r['queue_depth']} | {r['activations']} | {r['index_bits']} | "
            f"{r['cycles_source']} | {r['cycles_per_inference']:.1f} | "
            f"{r['model_cycles_per_inference']:.1f} | {100 * r['model_error']:.2f}% | "
            f"{100 * r['efficiency']:.1f}% | {100 * r['efficiency_measured']:.1f}% | "
            f"{r['entries_per_pe_cycle']:.3f} | {r['speedup']:.2f}x |")
    lines += ["", "## Busy columns (8 to 16 entries per PE in every column, D = 8)", "",
              "| N | source | cycles/inf. | model | entries/PE/cycle |", "|" + " --- |" * 5]
    for r in busy:
        lines.append(f"| {r['n_pe']} | {r['cycles_source']} | {r['cycles_per_inference']:.1f} "
                     f"| {r['model_cycles_per_inference']:.1f} | "
                     f"{r['entries_per_pe_cycle']:.3f} |")
    lines += ["", "## Targets", ""]
    for name, check in summary["targets"].items():
        lines.append(f"- {name}: target {check['target']}, got {check['value']:.3f} "
                     f"({'met' if check['met'] else 'NOT met'}; {check['where']})")
    if synth:
        lines += ["", f"## Synthesis on {BOARD} (D = 8)", "",
                  "| N | LUT4 | FF | BRAM | MULT | Fmax MHz | inferences/s (dense act.) |",
                  "|" + " --- |" * 7]
        for s in synth:
            if "error" in s:
                lines.append(f"| {s['n_pe']} | failed: {s['error'][:80]} | | | | | |")
                continue
            res = s["resources"]

            def used(key, res=res):
                return str(res[key]["used"]) if key in res else "-"

            rate = s["fmax_mhz"] * 1e6 / s["cycles_per_inference"]
            lines.append(f"| {s['n_pe']} | {used('lut4')} | {used('ff')} | {used('bram')} | "
                         f"{used('mult')} | {s['fmax_mhz']:.1f} | {rate:,.0f} |")
    return "\n".join(lines) + "\n"


def _targets(rows, busy):
    def pick(**kw):
        return [r for r in rows if all(r[k] == v for k, v in kw.items())]

    d8 = pick(queue_depth=8, activations="dense")
    dense = pick(activations="dense")
    sparse = pick(activations="35%")
    checks = {}
    if d8:
        worst = min(d8, key=lambda r: r["efficiency"])
        checks["load-balance efficiency at D=8 (worst N, dense activations)"] = {
            "target": TARGETS["efficiency_at_d8"], "value": worst["efficiency"],
            "where": f"N={worst['n_pe']}"}
    if busy:
        worst = min(busy, key=lambda r: r["entries_per_pe_cycle"])
        checks["entries/PE/cycle on columns with >= 8 entries per PE (worst N)"] = {
            "target": TARGETS["busy_entries_per_pe_cycle"], "value": worst["entries_per_pe_cycle"],
            "where": f"N={worst['n_pe']}, {worst['cycles_source']}"}
    for name, sel, key in (("speedup, dense activations (best D, worst N)", dense,
                            "speedup_dense_activations"),
                           ("speedup, 35% activations (best D, worst N)", sparse,
                            "speedup_sparse_activations")):
        if sel:
            best = {n: max(r["speedup"] for r in sel if r["n_pe"] == n)
                    for n in {r["n_pe"] for r in sel}}
            n = min(best, key=best.get)
            checks[name] = {"target": TARGETS[key], "value": best[n], "where": f"N={n}"}
    for check in checks.values():
        check["met"] = bool(check["value"] >= check["target"])
    return checks


def run_sparse_bench(outdir, *, quick=False, synthesis=True, log=print, size=SIZE,
                     verilator=True, pes=PES, depths=DEPTHS, board=BOARD):
    """Run the benchmark; write ``sparse.json``, ``sparse.md``, ``sparse.png`` in ``outdir``.

    Parameters
    ----------
    outdir : path-like
    quick : bool
        Simulate only N=16, D=8 under Verilator; every other configuration from the cycle model.
    synthesis : bool
        Synthesise N = 4, 8, 16 at D = 8 for ``board`` (slow).
    log : callable
        Progress lines.
    size : int
        M = K of the layer (512 in the issue; smaller for tests).
    verilator : bool
        Simulate under Verilator at all (False: cycle model only, for tests and quick looks).
    pes, depths : sequences of int
        Configurations.

    Returns
    -------
    list of dict
        One row per configuration and activation density (see ``sparse.json``).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    weight, codebook, bias, mult, shift = make_layer(size)
    rng = np.random.default_rng(1)
    inputs = {"dense": _activations(rng, BATCH, size, 1.0),
              "35%": _activations(rng, BATCH, size, ACTIVE)}
    layer = (f"{size}x{size}, {100 * np.count_nonzero(weight) / weight.size:.1f}% non-zero, "
             f"{len(codebook)}-entry codebook")
    log(f"sparse bench: {layer}")
    rows, busy_rows, synth = [], [], []
    started = time.monotonic()

    def simulate_here(n, d):
        return verilator and (not quick or (n, d) == (max(pes), 8))

    def save():
        summary = {"format": "nnaccel-sparse-bench/1", "layer": layer, "size": size,
                   "density": float(np.count_nonzero(weight) / weight.size),
                   "codebook": [int(v) for v in codebook], "in_beat": IN_BEAT,
                   "batch": BATCH, "rows": rows, "busy_columns": busy_rows,
                   "synthesis": synth, "targets": _targets(rows, busy_rows),
                   "seconds": round(time.monotonic() - started, 1)}
        write_results(outdir, "sparse", summary, _markdown(summary))
        return summary

    for n in pes:
        for d in depths:
            cfg = SparseBenchConfig(weight, codebook, bias, mult, shift, n, d)
            dense_cycles = cfg.params.dense_cycles
            for label, x in inputs.items():
                result = cfg.simulate(x) if simulate_here(n, d) else None
                row = _row(cfg, x, label, result, dense_cycles)
                rows.append(row)
                log(f"  N={n:2} D={d:2} {label:5} {row['cycles_source']:9} "
                    f"{row['cycles_per_inference']:8.1f} cycles/inf. (model "
                    f"{row['model_cycles_per_inference']:.1f}), efficiency "
                    f"{100 * row['efficiency']:.1f}%, speedup {row['speedup']:.2f}x")
            save()
    for n in pes:
        w = sparse_layer.busy_layer(n, size, max(size // 8, 8), codebook, seed=n)
        cfg = SparseBenchConfig(w, codebook, np.zeros(size, dtype=np.int64), mult, shift, n, 8,
                                name=f"sparse_busy_n{n}")
        x = _activations(rng, BATCH, w.shape[1], 1.0)
        result = cfg.simulate(x) if simulate_here(n, 8) else None
        row = _row(cfg, x, "dense", result, cfg.params.dense_cycles)
        busy_rows.append(row)
        log(f"  busy columns N={n:2}: {row['entries_per_pe_cycle']:.3f} entries/PE/cycle "
            f"({row['cycles_source']})")
    save()

    if synthesis:
        from ..boards.build import build

        for n in pes:
            cfg = SparseBenchConfig(weight, codebook, bias, mult, shift, n, 8)
            cpi = next(r["cycles_per_inference"] for r in rows
                       if r["n_pe"] == n and r["queue_depth"] == 8
                       and r["activations"] == "dense")
            name = f"sparse_n{n}"
            log(f"  synthesis of {name} for {board} ...")
            try:
                report = build(cfg.design().network, board, outdir / f"{name}-{board}",
                               name=name, log=log)
            except Exception as exc:  # a failed build is a result too
                synth.append({"n_pe": n, "error": str(exc).splitlines()[0]})
            else:
                synth.append({"n_pe": n, "resources": report["resources"],
                              "fmax_mhz": report["fmax_mhz"],
                              "timing_met": report["timing_met"], "cycles_per_inference": cpi})
            save()

    summary = save()
    _plot(rows, busy_rows, outdir / "sparse.png")
    for name, check in summary["targets"].items():
        log(f"  {name}: {check['value']:.3f} (target {check['target']}, "
            f"{'met' if check['met'] else 'NOT met'})")
    return rows


def pe_resources(params, matrix, workdir, *, index=0):
    """One processing element (PE ``index`` of ``matrix`` on ``params``) synthesised alone by
    yosys for the ECP5 (``synth_ecp5``): its cells, and the LUT4s nextpnr will count for them
    (``lut4``: logic LUT4s, two per carry cell CCU2C, six per distributed-RAM cell
    TRELLIS_DPR16X4, as in nextpnr's "Total LUT4s")."""
    import json
    import subprocess

    from amaranth.back import rtlil

    from ..gen.tools import find_yowasp
    from ..hw.sparse.engine import ProcessingElement

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pe = ProcessingElement(params, matrix, index, params.raw_shape)
    (workdir / "pe.il").write_text(rtlil.convert(pe, name="pe"))
    subprocess.run([find_yowasp("yosys"), "-q", "-l", "pe.log", "-p",
                    "read_rtlil pe.il; synth_ecp5 -top pe; tee -q -o pe.stat.json stat -json"],
                   cwd=workdir, check=True, stdin=subprocess.DEVNULL, capture_output=True)
    stat = json.loads((workdir / "pe.stat.json").read_text())
    cells = {k: v for k, v in stat["design"]["num_cells_by_type"].items()
             if not k.startswith("$")}
    lut4 = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0) + 6 * cells.get("TRELLIS_DPR16X4", 0)
    return {"cells": cells, "lut4": lut4}
