"""``make demo``: the digits models end to end, from training to simulated hardware and a
synthesis report.

1. Train MLPs on scikit-learn's bundled digits set and derive three SPEC models: int8 with
   per-channel requantization, binarized with batch-norm folded into thresholds, and pruned to
   10% density with 16 shared weight values (Deep Compression), which runs on the sparse
   engine.
2. Generate Verilog for each (folded for a lane budget).
3. Simulate the whole held-out test split under Verilator through cocotb and compare every
   output with the numpy reference.
4. Synthesise, place and route for a board (ULX3S ECP5-85F by default) and read the resources
   and the maximum frequency from yosys and nextpnr.
5. Write everything (models, Verilog, manifests, reports, a plot of per-layer cycles) to one
   directory and print a summary.
"""

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DEMO_DESIGNS", "run_demo"]


@dataclass(frozen=True)
class DemoDesign:
    model: str
    max_lanes: int
    what: str


#: The demo's designs: model name, lane budget, description.
DEMO_DESIGNS = (
    DemoDesign("digits_int8", 16, "int8 MLP 64-32-10, per-channel requantization"),
    DemoDesign("digits_bnn", 256, "binarized MLP 64-128-128-10, thresholds from batch-norm"),
    DemoDesign("digits_sparse", 64, "MLP 64-256-128-10 pruned to 10% density, 16 shared "
                                    "weights (4-bit codes), int8, on the sparse engine"),
)


@dataclass(frozen=True)
class _Compressed:
    model: object
    float_accuracy: float
    x_test: np.ndarray
    y_test: np.ndarray


def _compressed(modeldir, log):
    from .gen.compress.digits import compress_digits
    from .gen.compress.report import format_report
    from .gen.model_io import write_model

    res = compress_digits(seed=0)
    path = write_model(res.model, modeldir / res.model.name)
    for line in format_report(res.report).splitlines():
        log(f"[demo]     {line}")
    log(f"[demo]   digits_sparse: float accuracy {res.float_accuracy:.4f}, compressed "
        f"{res.accuracy:.4f} ({res.seconds:.1f} s); written to {path}")
    return _Compressed(res.model, res.float_accuracy, res.x_test, res.y_test)


def _accuracy(outputs, labels):
    return float(np.mean(np.asarray(outputs).argmax(axis=1) == labels))


def _mapping(entry):
    """How a layer is mapped, in a few characters (for the plot)."""
    if entry["engine"] == "sparse":
        return f"sparse N={entry['pe']} D={entry['queue_depth']}"
    if entry["engine"] == "systolic":
        return f"{entry['rows']}x{entry['cols']} {entry['dataflow']}"
    return f"{entry['pe']}x{entry['simd']}"


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(5 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        layers = row["manifest"]["layers"]
        names = [entry["name"] for entry in layers]
        cycles = [entry["expected_cycles"] for entry in layers]
        bars = ax.bar(names, cycles, color="#4c72b0")
        ax.axhline(row["cycles_per_inference"], color="#c44e52", linestyle="--",
                   label=f"measured {row['cycles_per_inference']:.1f} cycles/inference")
        ax.axhline(row["ideal_cycles"], color="#55a868", linestyle=":",
                   label=f"ideal {row['ideal_cycles']} (MACs / lanes)")
        for bar, entry in zip(bars, layers, strict=True):
            ax.annotate(_mapping(entry), (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{row['model']} ({row['lanes']} lanes)")
        ax.set_ylabel("expected cycles per inference")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(rows):
    head = ("| model | engines | float acc. | numpy acc. | hardware acc. | outputs equal | lanes | "
            "cycles/inf. measured | ideal | utilisation | LUT4 | FF | BRAM | MULT | Fmax MHz | "
            "inferences/s at Fmax |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        syn = r.get("synthesis") or {}
        res = syn.get("resources", {})

        def used(key, res=res):
            return str(res[key]["used"]) if key in res else "-"

        fmax = syn.get("fmax_mhz")
        rate = f"{fmax * 1e6 / r['cycles_per_inference']:,.0f}" if fmax else "-"
        lines.append(
            f"| {r['model']} | {', '.join(r['engines'])} | {100 * r['float_accuracy']:.2f}% | "
            f"{100 * r['numpy_accuracy']:.2f}% | {100 * r['hardware_accuracy']:.2f}% | "
            f"{r['outputs_checked']} of {r['outputs_checked']} | {r['lanes']} | "
            f"{r['cycles_per_inference']:.1f} | {r['ideal_cycles']} | "
            f"{100 * r['utilisation']:.1f}% | {used('lut4')} | {used('ff')} | {used('bram')} | "
            f"{used('mult')} | {f'{fmax:.1f}' if fmax else '-'} | "
            f"{rate} |")
    return "\n".join(lines)


def _work_per_inference(model, manifest, x):
    """Mean MACs per inference the engines really perform on ``x``: every product on a dense
    engine, and on the sparse engine only non-zero weights in columns whose activation is
    non-zero (zero activations are skipped), so the ideal is this over the lanes."""
    from .hw.sparse.reference import performed_macs

    engines = {entry["name"]: entry["engine"] for entry in manifest["layers"]}
    acts = np.asarray(x).reshape(len(x), -1)
    work = 0.0
    for layer in model.layers:
        if engines[layer.name] == "sparse":
            work += performed_macs(layer.weight, acts)
        else:
            work += layer.weight.size
        acts = layer.forward(acts)
    return work


def run_demo(outdir, *, vectors=None, board="ulx3s-85f", synthesis=True, designs=DEMO_DESIGNS,
             log=print):
    """Run the whole demo into ``outdir``; returns 0 (errors raise).

    ``vectors`` limits the test vectors simulated (default: the whole held-out split);
    ``designs`` replaces :data:`DEMO_DESIGNS` (tests use smaller lane budgets).
    """
    from .boards.build import build, format_report
    from .boards.platforms import get_board
    from .gen.atomic import atomic_directory
    from .gen.generate import generate
    from .gen.plan import Options
    from .gen.zoo.digits import train_all
    from .sim.design import simulate

    if synthesis:
        get_board(board)
    final = Path(outdir)
    # written in a staging directory beside ``final`` and put in place when complete; an
    # existing ``final`` must be empty or an earlier demo's complete output (nnaccel.gen.atomic)
    with atomic_directory(final, command="demo") as outdir:
        start = time.monotonic()
        log(f"[demo] 1/4 training on scikit-learn digits -> {outdir / 'models'}")
        trained = train_all(outdir / "models", log=lambda m: log(f"[demo]   {m}"))
        if any(spec.model == "digits_sparse" for spec in designs):
            log("[demo]   digits_sparse: training, pruning, weight sharing and retraining")
            trained["digits_sparse"] = _compressed(outdir / "models", log)
        rows = []
        for spec in designs:
            res = trained[spec.model]
            model = res.model
            x, y = res.x_test, res.y_test
            if vectors:
                x, y = x[:vectors], y[:vectors]
            log(f"[demo] 2/4 {spec.model}: generating for at most {spec.max_lanes} lanes")
            design = generate(model, Options(max_lanes=spec.max_lanes))
            design.write(outdir / spec.model)
            man = design.manifest
            log(f"[demo] 3/4 {spec.model}: simulating {len(x)} test vectors under Verilator")
            hw_out, sim = simulate(design, x)  # raises on the first output that differs
            ref_out = model.forward(x)
            work = _work_per_inference(model, man, x)
            row = {
                "model": spec.model, "what": spec.what, "vectors": int(len(x)),
                "float_accuracy": res.float_accuracy,
                "numpy_accuracy": _accuracy(ref_out, y),
                "hardware_accuracy": _accuracy(hw_out, y),
                "outputs_checked": int(np.asarray(hw_out).size),
                "outputs_equal": bool(np.array_equal(np.asarray(hw_out, dtype=object),
                                                     np.asarray(ref_out, dtype=object))),
                "lanes": man["lanes"], "macs": man["macs"],
                "cycles_per_inference": sim.cycles_per_inference,
                "expected_cycles": man["expected_cycles_per_inference"],
                "ideal_cycles": math.ceil(work / man["lanes"]),
                "utilisation": work / man["lanes"] / sim.cycles_per_inference,
                "engines": sorted({entry["engine"] for entry in man["layers"]}),
                "latency_cycles": sim.latency_cycles, "cycles_total": sim.cycles_total,
                "manifest": man,
            }
            log(f"[demo]   {spec.model}: {row['outputs_checked']} outputs equal to numpy, "
                f"{row['cycles_per_inference']:.1f} cycles per inference "
                f"(expected {row['expected_cycles']}, ideal {row['ideal_cycles']})")
            if synthesis:
                log(f"[demo] 4/4 {spec.model}: synthesis, place and route for {board}")
                report = build(design.network, board, outdir / f"{spec.model}-{board}",
                               name=design.name, log=lambda m: log(f"[demo]   {m}"))
                row["synthesis"] = report
                log(format_report(report))
            rows.append(row)
        _plot(rows, outdir / "cycles.png")
        table = _table(rows)
        (outdir / "summary.md").write_text(table + "\n")
        (outdir / "summary.json").write_text(json.dumps(rows, indent=2, default=str) + "\n")
    print()
    print(table)
    print()
    for r in rows:
        print(f"{r['model']}: {r['what']}; float {100 * r['float_accuracy']:.2f}%, numpy "
              f"{100 * r['numpy_accuracy']:.2f}%, hardware {100 * r['hardware_accuracy']:.2f}% "
              f"(hardware outputs equal numpy: {r['outputs_equal']})")
    print(f"\nartefacts (models, Verilog, manifests, reports, cycles.png) in {final.resolve()}"
          f"  [{time.monotonic() - start:.0f} s]")
    return 0
