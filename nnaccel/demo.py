"""``make demo`` and ``make demo-full``: the digits models end to end, from training to
simulated hardware and a synthesis report.

1. Train on scikit-learn's bundled digits set and derive SPEC models: an int8 MLP with
   per-channel requantization, a binarized MLP with batch-norm folded into thresholds, the
   digits CNN (:mod:`nnaccel.gen.zoo.digits_cnn`: two 3x3 convolutions, a max pool, a dense
   head) in int8 and in binarized form, and (``full`` only) an MLP pruned to 10% density with
   16 shared weight values (Deep Compression), which runs on the sparse engine.
2. Generate Verilog for each (folded for a lane budget).
3. Simulate the held-out test split (450 images) under Verilator through cocotb and compare
   every output with the numpy reference.
4. Synthesise, place and route for a board (ULX3S ECP5-85F by default) and read the resources
   and the maximum frequency from yosys and nextpnr. Each build runs in the background
   (:data:`BUILD_WORKERS` at once) while the next design is generated and simulated.
5. Write everything (models, Verilog, manifests, the hardware outputs as
   ``outputs/<model>.npy``, reports, a plot of per-layer cycles) to one directory and print a
   summary.

:data:`DEMO_DESIGNS` is ``make demo`` (about five minutes on two cores, the install aside);
:data:`FULL_DESIGNS` adds the sparse design and simulates every test image (``make demo-full``,
longer: the CNNs' 450 images under Verilator alone take several minutes).
"""

import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["DEMO_DESIGNS", "FULL_DESIGNS", "DemoDesign", "run_demo"]


@dataclass(frozen=True)
class DemoDesign:
    """One design of the demo: the model's name, its lane budget (``--max-lanes``), a
    description, and how many test images ``make demo`` simulates under Verilator (None: all;
    ``make demo-full`` always simulates all)."""

    model: str
    max_lanes: int
    what: str
    quick_vectors: int | None = None


_CNN = "CNN 1x8x8 -> conv 3x3 32 -> conv 3x3 32 -> maxpool 2x2 -> dense 512-10"

#: ``make demo``: the four designs a user meets first. The CNN budgets give the second
#: convolution (the slowest layer) 32 int8 multipliers, or 96 XNOR lanes and two PEs for the
#: binarized CNN, so both fit the ECP5-85F with room to spare and route in a few minutes.
#: The CNNs take 18,432 and 3,072 cycles per image, and the cocotb testbench runs some
#: thousands of cycles per second, so ``make demo`` simulates a prefix of the test split for
#: them (the numpy accuracy is over all 450 images); ``make demo-full`` simulates all.
DEMO_DESIGNS = (
    DemoDesign("digits_int8", 16, "int8 MLP 64-32-10, per-channel requantization"),
    DemoDesign("digits_bnn", 256, "binarized MLP 64-128-128-10, thresholds from batch-norm"),
    DemoDesign("digits_cnn_int8", 64, f"int8 {_CNN}, per-channel requantization", 50),
    DemoDesign("digits_cnn_binarized", 256,
               f"binarized {_CNN}, uint4 pixels into the first convolution, thresholds "
               "from batch-norm, OR max pooling", 150),
)

#: ``make demo-full``: :data:`DEMO_DESIGNS` and the sparse design (its board build not timed
#: since its PE memories moved to block RAM).
FULL_DESIGNS = DEMO_DESIGNS + (
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


def _cnns(modeldir, names, log):
    """Train the digits CNNs among ``names`` and write them under ``modeldir``; returns
    ``{name: DigitsCnn}``."""
    from .gen.model_io import write_model
    from .gen.zoo.digits_cnn import digits_cnn

    results = {}
    for kind in ("int8", "binarized"):
        name = f"digits_cnn_{kind}"
        if name not in names:
            continue
        t0 = time.monotonic()
        log(f"[demo]   {name}: compressing the float CNN to {kind} (the float CNN is trained "
            "once, for both forms)")
        res = digits_cnn(kind, log=None)
        path = write_model(res.model, modeldir / name)
        log(f"[demo]   {name}: float accuracy {res.float_accuracy:.4f}, numpy "
            f"{res.accuracy:.4f}; written to {path} [{time.monotonic() - t0:.0f} s]")
        results[name] = res
    return results


def _mapping(entry):
    """How a layer is mapped, in a few characters (for the plot)."""
    if "pe" not in entry:
        return entry["engine"]
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
        ax.set_yscale("log")
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
        ax.set_ylim(bottom=1)
        ax.set_ylabel("expected cycles per inference (log)")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(rows):
    head = ("| model | engines | float acc. | numpy acc. | hardware acc. | outputs equal | lanes | "
            "cycles/inf. measured | expected | ideal | utilisation | LUT4 | FF | BRAM | MULT | "
            "Fmax MHz | inferences/s at Fmax |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        syn = r.get("synthesis") or {}
        res = syn.get("resources", {})

        def used(key, res=res):
            return str(res[key]["used"]) if key in res else "-"

        fmax = syn.get("fmax_mhz")
        rate = f"{fmax * 1e6 / r['cycles_per_inference']:,.0f}" if fmax else "-"
        hw = f"{100 * r['hardware_accuracy']:.2f}%"
        if r["vectors"] < r["numpy_vectors"]:
            hw += f" ({r['vectors']} images)"
        equal = r["outputs_equal_count"]
        lines.append(
            f"| {r['model']} | {', '.join(r['engines'])} | {100 * r['float_accuracy']:.2f}% | "
            f"{100 * r['numpy_accuracy']:.2f}% | {hw} | "
            f"{equal:,} of {r['outputs_checked']:,} | {r['lanes']} | "
            f"{r['cycles_per_inference']:.1f} | {r['expected_cycles']} | {r['ideal_cycles']} | "
            f"{100 * r['utilisation']:.1f}% | {used('lut4')} | {used('ff')} | {used('bram')} | "
            f"{used('mult')} | {f'{fmax:.1f}' if fmax else '-'} | "
            f"{rate} |")
    return "\n".join(lines)


def _work_per_inference(model, manifest, x):
    """Mean MACs per inference the engines really perform on ``x``: every product on a dense
    engine (the manifest's per-layer ``macs``, a convolution's over every output pixel), and on
    the sparse engine only non-zero weights in columns whose activation is non-zero (zero
    activations are skipped), so the ideal is this over the lanes."""
    from .hw.sparse.reference import performed_macs

    entries = {entry["name"]: entry for entry in manifest["layers"]}
    acts = np.asarray(x).reshape(len(x), *model.input_shape)
    work = 0.0
    for layer in model.layers:
        entry = entries[layer.name]
        if entry["engine"] == "sparse":
            work += performed_macs(layer.weight, acts.reshape(len(acts), -1))
        else:
            work += entry["macs"]
        acts = layer.forward(acts)
    return work


def _raise_failed(builds):
    """Raise the error of a board build that has already failed (none still running is
    waited for)."""
    for future in builds:
        if future.done():
            future.result()


def _run_design(spec, res, outdir, count, log):
    """Generate, write and simulate one design of the demo (``res``: its trained model and test
    split; ``count`` test images, None: all); returns the design and its summary row. Raises
    AssertionError when an output differs from the numpy reference."""
    from .gen.generate import generate
    from .gen.plan import Options
    from .sim.design import simulate

    model = res.model
    x, y = res.x_test, res.y_test
    ref_all = model.forward(x)
    if count:
        x, y = x[:count], y[:count]
    seconds = {}
    t0 = time.monotonic()
    design = generate(model, Options(max_lanes=spec.max_lanes))
    design.write(outdir / spec.model)
    man = design.manifest
    seconds["generate"] = time.monotonic() - t0
    log(f"[demo] 2/4 {spec.model}: generated for at most {spec.max_lanes} lanes: "
        f"{man['lanes']} lanes, {man['expected_cycles_per_inference']} cycles per "
        f"inference expected [{seconds['generate']:.0f} s]")
    log(f"[demo] 3/4 {spec.model}: simulating {len(x)} test images under Verilator")
    t0 = time.monotonic()
    hw_out, sim = simulate(design, x)  # raises on the first output that differs
    seconds["simulate"] = time.monotonic() - t0
    ref_out = ref_all[:len(x)]
    (outdir / "outputs").mkdir(exist_ok=True)
    np.save(outdir / "outputs" / f"{spec.model}.npy", np.asarray(hw_out, dtype=np.int64))
    hw = np.asarray(hw_out, dtype=object).reshape(len(x), -1)
    ref = np.asarray(ref_out, dtype=object).reshape(len(x), -1)
    work = _work_per_inference(model, man, x)
    row = {
        "model": spec.model, "what": spec.what, "vectors": int(len(x)),
        "numpy_vectors": int(len(res.y_test)),
        "float_accuracy": res.float_accuracy,
        "numpy_accuracy": _accuracy(ref_all, res.y_test),
        "numpy_accuracy_simulated": _accuracy(ref_out, y),
        "hardware_accuracy": _accuracy(hw_out, y),
        "outputs_checked": int(ref.size),
        "outputs_equal_count": int(np.sum(hw == ref)) if hw.shape == ref.shape else 0,
        "outputs_equal": hw.shape == ref.shape and bool(np.array_equal(hw, ref)),
        "lanes": man["lanes"], "macs": man["macs"],
        "cycles_per_inference": sim.cycles_per_inference,
        "expected_cycles": man["expected_cycles_per_inference"],
        "ideal_cycles": math.ceil(work / man["lanes"]),
        "utilisation": work / man["lanes"] / sim.cycles_per_inference,
        "engines": sorted({entry["engine"] for entry in man["layers"]}),
        "latency_cycles": sim.latency_cycles, "cycles_total": sim.cycles_total,
        "seconds": seconds, "manifest": man,
    }
    log(f"[demo]   {spec.model}: {row['outputs_equal_count']} of "
        f"{row['outputs_checked']} outputs equal to numpy, "
        f"{row['cycles_per_inference']:.1f} cycles per inference "
        f"(expected {row['expected_cycles']}, ideal {row['ideal_cycles']}) "
        f"[{seconds['simulate']:.0f} s]")
    return design, row


#: Board builds that run at once (yosys and nextpnr are single-threaded): on two cores a build
#: runs beside the next design's generation and simulation, or beside another build.
BUILD_WORKERS = 2


def _build(design, board, outdir, row, log):
    """Synthesise, place and route ``design`` for ``board`` into ``outdir`` (a worker of
    :func:`run_demo`'s pool); puts the report and its time into ``row``."""
    from .boards.build import build, format_report

    t0 = time.monotonic()
    report = build(design.network, board, outdir, name=design.name,
                   log=lambda m: log(f"[demo]   {m}"))
    row["seconds"]["build"] = time.monotonic() - t0
    row["synthesis"] = report
    log(format_report(report))


def run_demo(outdir, *, full=False, vectors=None, board="ulx3s-85f", synthesis=True,
             designs=None, log=print):
    """Run the demo into ``outdir``; returns 0 (errors raise).

    Parameters
    ----------
    outdir : path-like
        Artefact directory, written atomically (:mod:`nnaccel.gen.atomic`).
    full : bool
        :data:`FULL_DESIGNS` (``make demo-full``) instead of :data:`DEMO_DESIGNS`.
    vectors : int or None
        Simulate only the first ``vectors`` test images under Verilator (default: the whole
        held-out split, or a design's ``quick_vectors`` unless ``full``). The numpy accuracy
        is always over the whole split.
    board : str
        Board of the synthesis report.
    synthesis : bool
        Place and route each design (yosys, nextpnr).
    designs : tuple of DemoDesign or None
        Replaces the designs chosen by ``full`` (tests use smaller lane budgets).
    log : callable
        Receives the progress lines, each step with its time.

    Raises
    ------
    AssertionError
        A hardware output differs from the numpy reference.
    ToolError
        A board build failed (raised before the next design starts, or at the end, once the
        builds still running have ended; no build starts after a failure is seen).
    """
    from .boards.platforms import get_board
    from .gen.atomic import atomic_directory
    from .gen.zoo.digits import train_all

    if designs is None:
        designs = FULL_DESIGNS if full else DEMO_DESIGNS
    if synthesis:
        get_board(board)
    final = Path(outdir)
    names = {spec.model for spec in designs}
    # written in a staging directory beside ``final`` and put in place when complete; an
    # existing ``final`` must be empty or an earlier demo's complete output (nnaccel.gen.atomic)
    with (atomic_directory(final, command="demo") as outdir,
          ThreadPoolExecutor(BUILD_WORKERS, thread_name_prefix="demo-build") as pool):
        start = time.monotonic()
        log(f"[demo] 1/4 training on scikit-learn digits -> {outdir / 'models'}")
        trained = train_all(outdir / "models", log=lambda m: log(f"[demo]   {m}"))
        trained.update(_cnns(outdir / "models", names, log))
        if "digits_sparse" in names:
            log("[demo]   digits_sparse: training, pruning, weight sharing and retraining")
            trained["digits_sparse"] = _compressed(outdir / "models", log)
        log(f"[demo]   training done [{time.monotonic() - start:.0f} s]")
        rows, builds = [], []
        try:
            for spec in designs:
                _raise_failed(builds)   # before the next design starts
                count = vectors or (None if full else spec.quick_vectors)
                design, row = _run_design(spec, trained[spec.model], outdir, count, log)
                if synthesis:
                    _raise_failed(builds)   # one may have failed during the simulation
                    log(f"[demo] 4/4 {spec.model}: synthesis, place and route for {board} "
                        f"(in the background)")
                    builds.append(pool.submit(_build, design, board,
                                              outdir / f"{spec.model}-{board}", row, log))
                rows.append(row)
            if builds:
                log(f"[demo]   waiting for {sum(not b.done() for b in builds)} of {len(builds)} "
                    f"board builds")
            for future in builds:
                future.result()  # a build's error raises here
        except BaseException:
            pool.shutdown(cancel_futures=True)  # start no further build; the running finish
            raise
        _plot(rows, outdir / "cycles.png")
        table = _table(rows)
        total = time.monotonic() - start
        (outdir / "summary.md").write_text(table + "\n")
        (outdir / "summary.json").write_text(
            json.dumps({"seconds_total": total, "rows": rows}, indent=2, default=str) + "\n")
    print()
    print(table)
    print()
    for r in rows:
        steps = ", ".join(f"{k} {v:.0f} s" for k, v in r["seconds"].items())
        print(f"{r['model']}: {r['what']}; float {100 * r['float_accuracy']:.2f}%, numpy "
              f"{100 * r['numpy_accuracy']:.2f}% ({r['numpy_vectors']} images), hardware "
              f"{100 * r['hardware_accuracy']:.2f}% ({r['vectors']} images; outputs equal "
              f"numpy: {r['outputs_equal']}); {steps}")
    print(f"\nartefacts (models, Verilog, manifests, reports, cycles.png) in {final.resolve()}"
          f"  [{total:.0f} s]")
    return 0
