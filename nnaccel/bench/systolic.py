"""Benchmark of the systolic-array engine (issue 3).

For R x C = 8x8 and 16x16 arrays, weight-stationary (WS) and output-stationary (OS), on the
GEMMs ``(M, K, N)`` = (64, 64, 64), (128, 256, 64), (1, 784, 256), (256, 784, 256) -- ``M`` is
the batch B of input vectors, ``K`` their length and ``N`` the layer's outputs -- the bench
reports:

* cycles for the whole GEMM, **measured** by simulating the Verilog of the one-layer design that
  ``generate()`` makes of the GEMM (:func:`nnaccel.gen.zoo.gemm.gemm_model`, the layer forced
  onto the systolic engine with the array and dataflow through ``Options``) under Verilator
  (:func:`nnaccel.sim.design.simulate`) on random int8 weights and inputs, from the cycle the
  engine accepts the first input beat to the cycle the last output beat is accepted (both
  counted; the design's input FIFO adds :data:`~nnaccel.hw.common.pipeline.INPUT_LATENCY`
  cycles in front of the engine, not counted), inputs back to back, no backpressure; every
  output is compared with the numpy reference (``X @ W.T + bias``, then a requantising output
  stage);
* the engine's cycle model (:attr:`~nnaccel.hw.systolic.params.SystolicParams.expected_cycles`);
* cycles per GEMM with GEMMs back to back (:data:`BACK_TO_BACK` of them, each on its own random
  inputs, in one simulation): the cycles between the last output beats of the last two, against
  the model's :attr:`~nnaccel.hw.systolic.params.SystolicParams.steady_cycles` and against the
  double-buffered bound (:func:`double_buffered_bound`), the fewest cycles per GEMM of any
  engine on this array with one input beat and one output beat per cycle whose buffers overlap
  loading the next GEMM and draining the last one with the compute;
* the ideal ``M*K*N / (R*C)`` and the utilisation ``ideal / measured``;
* SCALE-Sim 3.0's cycle count for the same array and GEMM, from its closed forms
  (:func:`scalesim_cycles`; they are SCALE-Sim's analytical numbers, not a SCALE-Sim run);
* optionally, synthesis (yosys + nextpnr, the engine behind the board's UART link) for the ULX3S
  (ECP5-85F) of 4x4, 8x8 and 16x16 int8 weight-stationary arrays on the (64, 64, 64) layer with a
  thresholding output stage (the 16x16 array has more cells than the device's 156 DSP blocks:
  144 multiply in DSP blocks, the rest in logic), of the 8x8 array with a requantising output
  stage (whose own multipliers take DSP blocks too), and for the iCEBreaker (iCE40UP5K: eight
  SB_MAC16 blocks, the other cells multiply in logic) of the largest array that fits, on a
  (8, 32, 16) layer.

Results go to ``systolic.json``, ``systolic.md`` and ``systolic.png`` in the output directory.
"""

import time
from pathlib import Path

import numpy as np

from ..gen.engines import ArrayChoice, Engine
from ..gen.generate import Design, generate
from ..gen.pipeline import compile_plan
from ..gen.plan import Options
from ..gen.zoo.gemm import gemm_model, make_gemm
from ..hw.common.arith import cdiv
from ..hw.common.pipeline import INPUT_LATENCY
from ..hw.systolic.params import Dataflow
from .report import critical_path, fits, fmt, pyplot, synthesis_row, write_results

__all__ = ["ARRAYS", "GEMMS", "SCALESIM_TABLE", "scalesim_cycles", "double_buffered_bound",
           "BOUND_MARGIN", "BACK_TO_BACK", "make_gemm",
           "gemm_options", "SystolicBenchConfig", "cycle_row", "run_systolic_bench"]

#: Array sizes (rows, cols) of the cycle benchmark.
ARRAYS = ((8, 8), (16, 16))
#: GEMMs (M, K, N): M input vectors (the batch) of K elements, N outputs.
GEMMS = ((64, 64, 64), (128, 256, 64), (1, 784, 256), (256, 784, 256))
DATAFLOWS = ("ws", "os")
#: Issue 3's table of SCALE-Sim 3.0 cycles: (rows, cols, dataflow, M, K, N) -> cycles.
SCALESIM_TABLE = {(8, 8, "ws", 64, 64, 64): 5503, (8, 8, "os", 64, 64, 64): 4991,
                  (16, 16, "ws", 256, 784, 256): 236767, (16, 16, "os", 256, 784, 256): 208383}
#: Utilisation target on the largest GEMM.
TARGET_UTILISATION = 0.95
#: Target: GEMMs back to back take at most this much more than the double-buffered bound.
BOUND_MARGIN = 0.02
#: GEMMs simulated back to back per row (the steady state is measured between the last two).
BACK_TO_BACK = 3
BOARD = "ulx3s-85f"
SMALL_BOARD = "icebreaker"
SYNTH_ARRAYS = (4, 8, 16)
SYNTH_GEMM = (64, 64, 64)
SMALL_GEMM = (8, 32, 16)
#: Arrays tried on the iCE40UP5K, most cells first (the first that fits is the largest).
SMALL_ARRAYS = ((8, 8), (6, 6), (4, 8), (4, 4), (3, 4), (2, 6), (2, 4), (2, 2))
#: SB_MAC16 blocks of the iCE40UP5K.
UP5K_DSPS = 8



def scalesim_cycles(dataflow, rows, cols, m, k, n):
    """SCALE-Sim 3.0's compute cycles for the GEMM ``(M, K, N)`` on an R x C array (its
    closed forms: WS ``ceil(K/R) * ceil(N/C) * (2R + C + M - 2) - 1``, OS ``ceil(M/R) *
    ceil(N/C) * (R + C + K - 2) - 1``)."""
    if dataflow == "ws":
        return cdiv(k, rows) * cdiv(n, cols) * (2 * rows + cols + m - 2) - 1
    if dataflow == "os":
        return cdiv(m, rows) * cdiv(n, cols) * (rows + cols + k - 2) - 1
    raise ValueError(f"dataflow must be 'ws' or 'os', not {dataflow!r}")


def double_buffered_bound(dataflow, rows, cols, m, k, n, in_beat):
    """The fewest cycles per GEMM ``(M, K, N)``, GEMMs back to back, on an R x C array with
    double buffers that hide loading the next GEMM's inputs and draining the last GEMM's outputs
    behind the compute: the largest of

    * ``M * ceil(K/in_beat)`` input beats and ``M * ceil(N/C)`` output beats (one per cycle);
    * the array's steps: weight-stationary ``ceil(N/C) * ceil(K/R) * max(M, R)`` -- every weight
      tile streams the M vectors through once, and its R weight rows enter the cells one per
      cycle; output-stationary ``ceil(N/C) * ceil(M/R) * K`` -- every output tile of R vectors
      takes K steps.

    The array's fill and drain latency, and the whole of one GEMM's input and output streaming,
    are hidden in this steady state; they count once, in a GEMM that starts after reset (the
    ``cycles`` column)."""
    if dataflow == "ws":
        steps = cdiv(n, cols) * cdiv(k, rows) * max(m, rows)
    elif dataflow == "os":
        steps = cdiv(n, cols) * cdiv(m, rows) * k
    else:
        raise ValueError(f"dataflow must be 'ws' or 'os', not {dataflow!r}")
    return max(steps, m * cdiv(k, in_beat), m * cdiv(n, cols))


#: The layer's name in the GEMM models.
LAYER = "fc"


def gemm_options(rows, cols, dataflow, batch, dsp_cells=None):
    """``Options`` that put the GEMM's layer on an R x C systolic array with ``dataflow``."""
    array = ArrayChoice(rows, cols, Dataflow(dataflow), dsp_cells=dsp_cells)
    return Options(batch=batch, engines=((LAYER, Engine.SYSTOLIC),), arrays=((LAYER, array),))


class SystolicBenchConfig:
    """One engine (array, dataflow, GEMM): its data, the compiled plan and its parameters."""

    def __init__(self, rows, cols, dataflow, m, k, n, *, seed=0):
        self.shape = (rows, cols, dataflow, m, k, n)
        self.x, self.w, self.bias, self.mult, self.shift = make_gemm(m, k, n, seed)
        self.name = f"systolic_{rows}x{cols}_{dataflow}_{m}_{k}_{n}"
        self.model = gemm_model(self.w, self.bias, mult=self.mult, shift=self.shift,
                                name=self.name, layer=LAYER)
        self.plan = compile_plan(self.model, gemm_options(rows, cols, dataflow, m))
        self.params = self.plan.layers[0].params

    def reference(self):
        """The SPEC outputs (mathematical int8 values), (M, N)."""
        return self.model.forward(self.x)

    def design(self):
        """The generated design (built only to be simulated: amaranth warns about components
        that are built and never used)."""
        return Design(self.plan)

    def inputs(self, gemms=1):
        """The inputs of ``gemms`` GEMMs back to back: ``x``, then other random int8 vectors."""
        rows, cols, dataflow, m, k, n = self.shape
        more = [make_gemm(m, k, n, seed=1000 + g)[0] for g in range(1, gemms)]
        return np.concatenate([self.x, *more]) if more else self.x

    def simulate(self, *, gemms=BACK_TO_BACK, idle=0.0, stall=0.0, seed=0):
        """Simulate ``gemms`` GEMMs back to back under Verilator, every output checked; returns
        the SimResult."""
        from ..sim.design import simulate

        _, result = simulate(self.design(), self.inputs(gemms), idle=idle, stall=stall,
                             seed=seed)
        return result


def gemm_ends(result, batch):
    """Cycle of the last output beat of each GEMM (``batch`` vectors) of a simulation."""
    per_gemm = len(result.output_cycles) // (len(result.outputs_bits) // batch)
    return [int(c) for c in result.output_cycles[per_gemm - 1::per_gemm]]


def measured_cycles(result, batch=None):
    """Cycles spanned by the first simulated GEMM (``batch`` vectors; None: the whole run) at
    the engine: from the engine's first input beat (:data:`INPUT_LATENCY` cycles after the
    design accepted it) to its last output beat, inclusive."""
    end = result.output_cycles[-1] if batch is None else gemm_ends(result, batch)[0]
    return int(end - result.input_cycles[0] + 1) - INPUT_LATENCY


def cycle_row(cfg, result):
    """One result row of the cycle benchmark (``result`` None: cycle model only)."""
    rows, cols, dataflow, m, k, n = cfg.shape
    p = cfg.params
    model = p.expected_cycles
    cycles = model if result is None else measured_cycles(result, m)
    steady = p.steady_cycles
    if result is not None:
        ends = gemm_ends(result, m)
        steady = ends[-1] - ends[-2] if len(ends) > 1 else None
    bound = double_buffered_bound(dataflow, rows, cols, m, k, n, p.in_beat)
    scalesim = {df: scalesim_cycles(df, rows, cols, m, k, n) for df in DATAFLOWS}
    best = min(scalesim.values())
    return {
        "array": f"{rows}x{cols}", "rows": rows, "cols": cols, "dataflow": dataflow,
        "M": m, "K": k, "N": n,
        "cycles_source": "model" if result is None else "verilator",
        "cycles": cycles, "model_cycles": model,
        "model_error": abs(cycles - model) / model,
        "steady_cycles": steady, "model_steady_cycles": p.steady_cycles,
        "bound_cycles": bound, "steady_vs_bound": None if steady is None else steady / bound,
        "first_vs_bound": cycles / bound,
        "ideal_cycles": p.ideal_cycles, "utilisation": p.ideal_cycles / cycles,
        "scalesim_cycles": scalesim[dataflow], "scalesim_ws": scalesim["ws"],
        "scalesim_os": scalesim["os"], "scalesim_best": best,
        "vs_scalesim_best": cycles / best, "beats_scalesim_best": cycles < best,
        "outputs_checked": 0 if result is None else int(result.outputs_bits.size),
        "gemms_simulated": 0 if result is None else len(result.outputs_bits) // m,
        "batch_tile": p.batch_tile, "in_beat": p.in_beat, "acc_width": p.acc_width,
    }


#: DSP blocks (MULT18X18D) of the LFE5U-85F; larger arrays put the rest of their multipliers in
#: logic (``dsp_cells``).
ECP5_85F_DSPS = 156


def _synth_design(rows, cols, gemm, *, dataflow="ws", output="threshold", dsp_cells=None):
    """The design synthesised: the GEMM's layer with int8 weights and inputs and a ``threshold``
    (15 levels to uint4) or ``requant`` (to int8) output stage, generated like any model."""
    m, k, n = gemm
    x, w, bias, mult, shift = make_gemm(m, k, n)
    name = f"systolic_{rows}x{cols}_{output}"
    if output == "requant":
        model = gemm_model(w, bias, mult=mult, shift=shift, name=name, layer=LAYER)
    elif output == "threshold":
        levels = np.sort(np.random.default_rng(1).integers(-20000, 20000, size=(n, 15)), axis=1)
        model = gemm_model(w, bias, thresholds=levels, name=name, layer=LAYER)
    else:
        raise ValueError(f"output must be 'requant' or 'threshold', not {output!r}")
    return generate(model, gemm_options(rows, cols, dataflow, m, dsp_cells))


def _markdown(summary):
    lines = ["# Systolic-array engine benchmark", "",
             "Cycles for the whole GEMM `(M, K, N)` (M vectors of K int8 elements, N outputs, "
             "requantised to int8): first input beat to last output beat, both counted, inputs "
             "back to back, no backpressure. `source`: measured under Verilator (every output "
             "checked against numpy) or from the cycle model. Ideal: `M*K*N/(R*C)`. SCALE-Sim: "
             "SCALE-Sim 3.0's closed-form cycle counts (WS `ceil(K/R)*ceil(N/C)*(2R+C+M-2)-1`, "
             "OS `ceil(M/R)*ceil(N/C)*(R+C+K-2)-1`), not a SCALE-Sim run; `vs best` is our "
             "cycles over the better of its two dataflows. `back to back`: cycles per GEMM "
             f"with {BACK_TO_BACK} GEMMs back to back (between the last output beats of the "
             "last two), against the double-buffered bound `max(M*ceil(K/in_beat), "
             "M*ceil(N/C), steps)` with steps WS `ceil(N/C)*ceil(K/R)*max(M,R)`, OS "
             "`ceil(N/C)*ceil(M/R)*K`.", "",
             "| array | dataflow | M, K, N | cycles | source | model | ideal | utilisation | "
             "SCALE-Sim (same dataflow) | SCALE-Sim best | vs best | back to back | model | "
             "bound | vs bound |",
             "| --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
             "---: | ---: | ---: |"]
    for r in summary["rows"]:
        steady = "" if r["steady_cycles"] is None else f"{r['steady_cycles']:,}"
        ratio = "" if r["steady_vs_bound"] is None else f"{r['steady_vs_bound']:.4f}"
        lines.append(f"| {r['array']} | {r['dataflow'].upper()} | {r['M']}, {r['K']}, {r['N']} "
                     f"| {r['cycles']:,} | {r['cycles_source']} | {r['model_cycles']:,} | "
                     f"{r['ideal_cycles']:,.0f} | {100 * r['utilisation']:.1f} % | "
                     f"{r['scalesim_cycles']:,} | {r['scalesim_best']:,} | "
                     f"{r['vs_scalesim_best']:.3f} | {steady} | {r['model_steady_cycles']:,} | "
                     f"{r['bound_cycles']:,} | {ratio} |")
    lines += ["", "Targets: " + "; ".join(
        f"{name}: {'met' if c['met'] else 'NOT met'} ({c['detail']})"
        for name, c in summary["targets"].items()), ""]
    if summary["synthesis"]:
        lines += ["## Synthesis", "",
                  "Weight-stationary engine with the board's UART link (BoardTop), yosys + "
                  "nextpnr. Layer: M (batch), K, N, int8 weights and inputs. DSP cells: cells "
                  "whose multiplier is a DSP block (the others use logic).", "",
                  "| board | array | output stage | layer | DSP cells | LUT4 | FF | BRAM | DSP | "
                  "Fmax MHz | critical path |",
                  "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for s in summary["synthesis"]:
            head = (f"| {s['board']} | {s['array']} | {s['output']} | "
                    f"{', '.join(map(str, s['layer']))} | {s['dsp_cells']} |")
            if "error" in s:
                lines.append(f"{head} failed: {s['error']} | | | | | |")
                continue
            lines.append(f"{head} {fmt(s['lut4'])} | {fmt(s['ff'])} | {fmt(s['bram'])} | "
                         f"{fmt(s['mult'])} | {s['fmax_mhz']:.1f} | "
                         f"{s.get('critical_path') or ''} |")
        lines.append("")
    return "\n".join(lines)


def _targets(rows):
    checks = {}
    if rows:
        losing = [r for r in rows if not r["beats_scalesim_best"]]
        checks["fewer cycles than SCALE-Sim's better dataflow on every row"] = {
            "met": not losing,
            "detail": "all rows" if not losing else ", ".join(
                f"{r['array']} {r['dataflow']} {r['M']},{r['K']},{r['N']}" for r in losing)}
    if rows:
        over = [r for r in rows if r["steady_vs_bound"] is None
                or r["steady_vs_bound"] > 1 + BOUND_MARGIN]
        worst = max((r["steady_vs_bound"] or float("inf")) for r in rows)
        checks[f"back to back within {100 * BOUND_MARGIN:.0f} % of the double-buffered bound "
               "on every row"] = {
            "met": not over,
            "detail": f"worst {worst:.4f}" + ("" if not over else ", over: " + ", ".join(
                f"{r['array']} {r['dataflow']} {r['M']},{r['K']},{r['N']}" for r in over))}
    big = [r for r in rows if (r["M"], r["K"], r["N"]) == (256, 784, 256)]
    if big:
        worst = min(r["utilisation"] for r in big)
        checks[f">= {100 * TARGET_UTILISATION:.0f} % of ideal on (256, 784, 256)"] = {
            "met": worst >= TARGET_UTILISATION, "detail": f"worst {100 * worst:.2f} %"}
    return checks


def _plot(rows, path):
    plt = pyplot()

    gemms = sorted({(r["M"], r["K"], r["N"]) for r in rows}, key=lambda g: g[0] * g[1] * g[2])
    arrays = sorted({(r["rows"], r["cols"]) for r in rows})
    fig, axes = plt.subplots(1, len(arrays), figsize=(6 * len(arrays), 4), squeeze=False)
    width = 0.2
    for ax, (r_, c_) in zip(axes[0], arrays, strict=True):
        xs = np.arange(len(gemms))
        series = [("ours WS", "ws", "cycles", "#4c72b0"), ("ours OS", "os", "cycles", "#55a868"),
                  ("SCALE-Sim WS", "ws", "scalesim_cycles", "#c8c8c8"),
                  ("SCALE-Sim OS", "os", "scalesim_cycles", "#8c8c8c")]
        for n, (label, df, key, color) in enumerate(series):
            values = []
            for g in gemms:
                hit = [r for r in rows if (r["rows"], r["cols"], r["dataflow"]) == (r_, c_, df)
                       and (r["M"], r["K"], r["N"]) == g]
                values.append(hit[0][key] / hit[0]["ideal_cycles"] if hit else np.nan)
            ax.bar(xs + (n - 1.5) * width, values, width, label=label, color=color)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.axhline(1 / TARGET_UTILISATION, color="grey", linestyle=":", linewidth=0.8)
        ax.set_xticks(xs, [f"{m},{k},{n}" for m, k, n in gemms], fontsize=8)
        ax.set_yscale("log")
        ax.set_xlabel("GEMM (M, K, N)")
        ax.set_ylabel("cycles / ideal (M*K*N / (R*C))")
        ax.set_title(f"{r_}x{c_} array")
        ax.legend(fontsize=7)
    fig.suptitle("systolic engine: measured cycles vs SCALE-Sim 3.0 closed forms", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _synthesise(outdir, log, board, rows, cols, gemm, *, output="threshold", dsp_cells=None):
    from ..boards.build import build

    design = _synth_design(rows, cols, gemm, output=output, dsp_cells=dsp_cells)
    name, params = design.name, design.plan.layers[0].params
    facts = {"board": board, "array": f"{rows}x{cols}", "rows": rows, "cols": cols,
             "dataflow": "ws", "layer": list(gemm), "output": output,
             "dsp_cells": params.dsp_cells}
    log(f"  synthesis of {name} (layer M, K, N = {gemm}, {params.dsp_cells} DSP cells) "
        f"for {board} ...")
    try:
        report = build(design.network, board, Path(outdir) / f"{name}-{board}", name=name,
                       log=log)
    except Exception as exc:  # a failed build is a result too
        return {**facts, "error": str(exc).splitlines()[0]}
    tim = Path(report["outdir"]) / f"{name}.tim"
    report["critical_path"] = critical_path(tim) if tim.is_file() else None
    row = synthesis_row(report, **facts)
    log(f"    LUT4 {row['lut4']}, FF {row['ff']}, BRAM {row['bram']}, DSP {row['mult']}, "
        f"Fmax {row['fmax_mhz']:.1f} MHz (critical path {row['critical_path']})")
    return row


def run_systolic_bench(outdir, *, quick=False, synthesis=True, log=print, arrays=ARRAYS,
                       gemms=GEMMS, dataflows=DATAFLOWS, verilator=True,
                       synth_arrays=SYNTH_ARRAYS, small_arrays=SMALL_ARRAYS):
    """Run the benchmark; write ``systolic.json``, ``systolic.md``, ``systolic.png``.

    Parameters
    ----------
    outdir : path-like
    quick : bool
        Simulate only the smallest GEMM of each configuration under Verilator; the others come
        from the cycle model (each row says which).
    synthesis : bool
        Synthesise for the ULX3S (``synth_arrays``, weight-stationary) and the iCEBreaker (the
        first of ``small_arrays`` that fits, largest first). Slow.
    log : callable
        Progress lines.
    arrays, gemms, dataflows : sequences
        The configurations of the cycle benchmark.
    verilator : bool
        Simulate at all (False: cycle model only).

    Returns
    -------
    list of dict
        The cycle rows, then the synthesis rows (``"board"`` key).
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows, synth = [], []
    started = time.monotonic()
    smallest = min(gemms, key=lambda g: g[0] * g[1] * g[2])

    def save():
        summary = {"format": "nnaccel-systolic-bench/1", "rows": rows, "synthesis": synth,
                   "targets": _targets(rows), "seconds": round(time.monotonic() - started, 1)}
        write_results(outdir, "systolic", summary, _markdown(summary))
        return summary

    log(f"systolic bench: arrays {list(arrays)}, dataflows {list(dataflows)}, GEMMs "
        f"{list(gemms)}")
    for r_, c_ in arrays:
        for gemm in gemms:
            for df in dataflows:
                cfg = SystolicBenchConfig(r_, c_, df, *gemm)
                simulate = verilator and (not quick or gemm == smallest)
                t0 = time.monotonic()
                result = cfg.simulate() if simulate else None
                row = cycle_row(cfg, result)
                rows.append(row)
                log(f"  {row['array']} {df.upper()} {gemm}: {row['cycles']:,} cycles "
                    f"({row['cycles_source']}; model {row['model_cycles']:,}), "
                    f"utilisation {100 * row['utilisation']:.1f} %, SCALE-Sim "
                    f"{row['scalesim_cycles']:,} (best {row['scalesim_best']:,}); back to "
                    f"back {row['steady_cycles']} per GEMM (model {row['model_steady_cycles']})"
                    f", bound {row['bound_cycles']:,} [{time.monotonic() - t0:.0f} s]")
                save()
    if rows:
        _plot(rows, outdir / "systolic.png")

    if synthesis:
        for size in synth_arrays:
            dsps = min(size * size, ECP5_85F_DSPS - 12)
            synth.append(_synthesise(outdir, log, BOARD, size, size, SYNTH_GEMM, dsp_cells=dsps))
            save()
        # the requantising output stage has multipliers of its own (two DSP blocks per lane)
        synth.append(_synthesise(outdir, log, BOARD, 8, 8, SYNTH_GEMM, output="requant"))
        save()
        for rows_, cols_ in small_arrays:  # largest first: keep the first that fits
            row = _synthesise(outdir, log, SMALL_BOARD, rows_, cols_, SMALL_GEMM,
                              dsp_cells=min(rows_ * cols_, UP5K_DSPS))
            synth.append(row)
            save()
            if fits(row):
                row["largest_fitting"] = True
                break
    summary = save()
    for name, check in summary["targets"].items():
        log(f"  {name}: {'met' if check['met'] else 'NOT met'} ({check['detail']})")
    return rows + synth
