"""``make bench``: cycles, utilisation, resources and throughput of benchmark networks, measured.

For every benchmark network, :func:`run_bench`

1. builds the model (trained on scikit-learn's digits, or random weights of a given shape: random
   weights change neither the cycles nor, to first order, the resources of a dense design);
2. generates it with a lane budget (``Options(max_lanes=...)``), with the folds the resource
   model chooses within a fraction of the board (``Options(board=..., fill=...)``, the command
   line's ``--board NAME --fill F``), with the command line's fold for a cycle target
   (``--target-cycles N``, the SFC network), or, for a throughput target, with the fold found
   by :func:`search_fold` (``Options(target_cycles=...)``);
3. simulates a batch of vectors *back to back* under Verilator through cocotb, every output
   compared bit for bit with the numpy reference, and takes the steady-state cycles per inference
   from the simulation;
4. compares them with the manifest's expected cycles (``max`` over layers of
   ``ceil(M/PE) * ceil(K/SIMD)``; the measured/expected ratio must be within
   :data:`RATIO_TOLERANCE`) and with the ideal (total MACs / lanes instantiated); utilisation is
   ``MACs / lanes / measured cycles``;
5. synthesises, places and routes the network for the ULX3S ECP5-85F board (yosys, nextpnr) and
   reads LUT4s, flip-flops, block RAMs, multipliers and Fmax from the tools' reports; throughput
   is ``Fmax / measured cycles`` inferences per second.

Every number comes from the tools, except :data:`NNGEN_REFERENCE`, NNgen's published figures for
the same int8 MLP, which the tables print beside ours and label as cited.

Outputs in ``outdir``: ``bench.json`` (all numbers, manifests and synthesis reports),
``bench.md`` (tables ready for the README), ``bench.png`` (cycles and utilisation per network),
one directory per network with its Verilog and manifest, and one build directory per synthesis.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gen.zoo.random_mlp import prime_int4_model, random_inputs, sfc_model
from ..hw.common.arith import cdiv
from .report import fits, fmt_int, pyplot, write_results

__all__ = [
    "Benchmark", "BENCHMARKS", "NNGEN_REFERENCE", "RATIO_TOLERANCE", "UTILISATION_TARGET",
    "BOARD", "DEFAULT_VECTORS", "QUICK_VECTORS", "SFC_FMAX_GUESS_MHZ", "SFC_MAX_SIMD",
    "SFC_TARGET_CYCLES", "SEARCH_MARGIN",
    "BENCH_FORMAT", "ideal_cycles", "utilisation", "ratio_ok", "cycle_budget", "search_fold",
    "capped_folds", "dtype_chain", "markdown_table", "reference_table", "run_bench",
]

#: Value of ``bench.json``'s ``format`` field.
BENCH_FORMAT = "nnaccel-bench/1"
#: Board of the synthesis reports.
BOARD = "ulx3s-85f"
#: Vectors simulated back to back per network (``quick``: :data:`QUICK_VECTORS`).
DEFAULT_VECTORS = 128
QUICK_VECTORS = 16
#: Largest allowed deviation of measured from expected cycles per inference (5 %).
RATIO_TOLERANCE = 0.05
#: Utilisation the int8 MLP must reach (the issue's target; NNgen reaches about 12 %).
UTILISATION_TARGET = 0.90
#: First guess of the SFC network's Fmax, only to choose the first fold to synthesise; the fold
#: is then corrected with the Fmax nextpnr reports (see :func:`search_fold`).
SFC_FMAX_GUESS_MHZ = 85.0
#: SIMD cap of the SFC network's folds: popcounts of at most 16 bits keep the adder trees shallow
#: (the uncapped fold of 3,419 lanes has 157-wide popcounts and a pre-route Fmax near 55 MHz).
SFC_MAX_SIMD = 16
#: Cycles per inference of the SFC network's fold: the fold is the command line's
#: (``nnaccel generate --target-cycles SFC_TARGET_CYCLES``: the fewest lanes meeting it), no
#: search and no SIMD cap of the bench's own; at 128 cycles, 1M inferences/s needs 128 MHz.
SFC_TARGET_CYCLES = 128
#: Headroom kept below the cycle budget, so the measured cycles and Fmax may vary a little.
SEARCH_MARGIN = 0.05
#: Most folds synthesised while searching for a throughput target.
SEARCH_ATTEMPTS = 4

#: NNgen's published figures for the int8 MLP 64-32-10 with 16 multipliers on an ECP5-85F, as
#: cited in the issue. Not measured here.
NNGEN_REFERENCE = {
    "name": "NNgen",
    "source": "NNgen, published figures cited in the issue (not measured here)",
    "multipliers": 16,
    "cycles_per_inference": 1266,
    "utilisation": 0.12,
    "fmax_mhz": 64.0,
    "lut4": 9100,
    "device": "ECP5-85F",
}


# -- arithmetic ----------------------------------------------------------------------------------

def ideal_cycles(macs, lanes):
    """Cycles per inference if every lane did useful work every cycle: ``ceil(macs / lanes)``."""
    if lanes < 1:
        raise ValueError(f"lanes must be a positive integer, not {lanes!r}")
    return cdiv(int(macs), int(lanes))


def utilisation(macs, lanes, cycles):
    """Fraction of lane-cycles doing a useful MAC: ``macs / lanes / cycles`` (0..1)."""
    if lanes < 1 or cycles <= 0:
        raise ValueError(f"lanes and cycles must be positive, not {lanes!r}, {cycles!r}")
    return macs / lanes / cycles


def ratio_ok(measured, expected, tolerance=RATIO_TOLERANCE):
    """Whether ``measured / expected`` lies within ``1 +- tolerance``."""
    return abs(measured - expected) <= tolerance * expected * (1 + 1e-12)


def cycle_budget(fmax_mhz, rate, margin=0.0):
    """Most cycles per inference that still give ``rate`` inferences/s at ``fmax_mhz``, keeping
    ``margin`` (a fraction) of headroom: ``floor(fmax * (1 - margin) / rate)``, at least 1."""
    if fmax_mhz <= 0 or rate <= 0 or not 0 <= margin < 1:
        raise ValueError(f"need fmax > 0, rate > 0, 0 <= margin < 1, not {fmax_mhz!r}, "
                         f"{rate!r}, {margin!r}")
    return max(1, math.floor(fmax_mhz * 1e6 * (1 - margin) / rate + 1e-9))


def search_fold(measure, rate, *, fmax_guess_mhz, margin=SEARCH_MARGIN,
                attempts=SEARCH_ATTEMPTS, log=None):
    """Find a cycle target whose design reaches ``rate`` inferences/s at its own Fmax.

    Starts at ``cycle_budget(fmax_guess_mhz, rate, margin)``; after each measurement the target
    becomes the budget at the measured Fmax (always lower than the last target when the rate was
    missed), until the rate is met by a design that fits, or ``attempts`` designs were tried.

    Parameters
    ----------
    measure : callable
        ``measure(target_cycles) -> dict`` with ``cycles`` (the design's cycles per inference),
        ``fmax_mhz`` (None when nothing was synthesised: the search then stops at the guess) and
        ``fits`` (resources within the device).
    rate : float
        Inferences per second wanted at Fmax.

    Returns
    -------
    (int, list of dict)
        The chosen target (the last one tried) and every attempt: ``target_cycles``, the
        measured fields, ``rate`` (``fmax / cycles``, or None) and ``met``.
    """
    target = cycle_budget(fmax_guess_mhz, rate, margin)
    tried = []
    for _ in range(attempts):
        got = dict(measure(target))
        fmax = got.get("fmax_mhz")
        achieved = fmax * 1e6 / got["cycles"] if fmax else None
        met = achieved is not None and achieved >= rate and bool(got.get("fits", True))
        tried.append({"target_cycles": target, **got, "rate": achieved, "met": met})
        if log is not None and achieved is not None:
            log(f"target {target} cycles: {got['cycles']} cycles at {fmax:.1f} MHz = "
                f"{achieved:,.0f} inferences/s ({'meets' if met else 'misses'} {rate:,.0f})")
        if fmax is None or met:
            break
        if not got.get("fits", True):
            break  # fewer cycles need more lanes: a design that does not fit cannot be helped
        target = min(target - 1, cycle_budget(fmax, rate, margin))
        if target < 1:
            break
    return tried[-1]["target_cycles"], tried


def capped_folds(shapes, target, max_simd):
    """Fewest-lane folds of a chain of ``(M, K)`` layers meeting ``target`` cycles per
    inference with every ``simd <= max_simd``, or None.

    The generator's balanced search (:func:`nnaccel.gen.folding.choose_folds`: every layer within
    ``target`` cycles, a producer's ``pe`` and its consumer's ``simd`` dividing one another) plus
    a cap on SIMD. An XNOR-popcount or multiply lane's sum is an adder tree over SIMD inputs in
    one cycle, so the cap bounds the logic depth, hence Fmax; the cap costs few lanes because
    the PEs take over the parallelism.
    """
    from ..gen.folding import Fold, cheapest_chain

    candidates = []
    for m, k in shapes:
        cands = set()
        for simd in range(1, min(k, max_simd) + 1):
            neuron_folds = target // cdiv(k, simd)
            if neuron_folds < 1:
                continue
            pe_min = cdiv(m, neuron_folds)
            # the least pe, and a few more so that a neighbour's width can divide it
            cands.update(Fold(pe, simd) for pe in range(pe_min, min(m, 2 * pe_min + 8) + 1))
        candidates.append(sorted(cands, key=lambda f: (f.lanes, f.pe, f.simd)))
    return cheapest_chain(shapes, candidates, target)


# -- models --------------------------------------------------------------------------------------

def _digits(which):
    def make(seed, vectors):
        from ..gen.zoo.digits import binarized_mlp, int8_mlp

        res = (int8_mlp if which == "int8" else binarized_mlp)(seed)
        if vectors > len(res.x_test):
            raise ValueError(f"the digits test split has {len(res.x_test)} images, not "
                             f"{vectors}")
        provenance = (f"trained on scikit-learn digits (seed {seed}): float test accuracy "
                      f"{100 * res.float_accuracy:.2f} %, integer {100 * res.int_accuracy:.2f} %;"
                      f" inputs are the first {vectors} held-out test images")
        return res.model, np.asarray(res.x_test)[:vectors], provenance
    return make


def _random(factory):
    def make(seed, vectors):
        model = factory(seed)
        return (model, random_inputs(model, vectors, seed),
                f"random weights (seed {seed}); random inputs over the whole input dtype")
    return make


@dataclass(frozen=True)
class Benchmark:
    """One benchmark network.

    Attributes
    ----------
    name : str
        Identifier (also the model, module and directory name).
    what : str
        One line for the tables.
    make : callable
        ``make(seed, vectors) -> (model, inputs, provenance)``: the SPEC model, ``vectors``
        input vectors, and a line saying where the weights and inputs come from.
    max_lanes : int or None
        Lane budget (``Options(max_lanes=...)``); exclusive with ``target_rate``.
    target_rate : float or None
        Inferences per second wanted at Fmax; the fold is searched (:func:`search_fold`), or
        with ``fill`` only checked.
    fill : float or None
        With ``target_rate``: the folds are those ``--board BOARD --fill FILL`` chooses (the
        resource model), not searched.
    target_cycles : int or None
        With ``target_rate``: the folds are those ``--target-cycles N`` chooses, not searched.
    max_simd : int or None
        With ``target_rate``: cap on every layer's SIMD (:func:`capped_folds`), for Fmax.
    fmax_guess_mhz : float
        First Fmax guess of the search.
    large : bool
        Skipped by the synthesis of a ``quick`` run (its fold then rests on the guess).
    reference : dict or None
        Published figures to print beside ours.
    """

    name: str
    what: str
    make: Callable
    max_lanes: int | None = None
    target_rate: float | None = None
    max_simd: int | None = None
    fill: float | None = None
    target_cycles: int | None = None
    fmax_guess_mhz: float = SFC_FMAX_GUESS_MHZ
    large: bool = False
    reference: dict | None = None

    def __post_init__(self):
        if (self.max_lanes is None) == (self.target_rate is None):
            raise ValueError(f"benchmark {self.name!r}: give exactly one of max_lanes and "
                             "target_rate")


#: The benchmark networks of ``make bench``.
BENCHMARKS = (
    Benchmark("mlp_int8", "(a) int8 MLP 64-32-10, at most 16 multipliers (NNgen's benchmark)",
              _digits("int8"), max_lanes=16, reference=NNGEN_REFERENCE),
    Benchmark("sfc_bnn", "(b) SFC-like binarized MLP 784-256-256-256-10, folded for "
              ">= 1,000,000 inferences/s at Fmax", _random(sfc_model), target_rate=1e6,
              target_cycles=SFC_TARGET_CYCLES, large=True),
    Benchmark("digits_bnn", "(c) binarized MLP 64-128-128-10, uint4 input, at most 128 XNOR "
              "lanes", _digits("bnn"), max_lanes=128),
    Benchmark("prime_int4", "(c) int4 MLP 97-61-13 (prime widths), at most 32 multipliers",
              _random(prime_int4_model), max_lanes=32),
)


# -- tables --------------------------------------------------------------------------------------

def dtype_chain(layers):
    """``uint4 -int8-> uint8 -int8-> int32``: activations, with each layer's weight dtype on its
    arrow; ``bipolar`` is written ``±1``."""
    def short(text):
        return "±1" if text == "bipolar" else text

    parts = [short(layers[0]["in_dtype"])]
    for layer in layers:
        parts.append(f"-{short(layer['weight_dtype'])}-> {short(layer['out_dtype'])}")
    return " ".join(parts)


def _resource(row, key):
    res = (row.get("synthesis") or {}).get("resources", {})
    return res[key]["used"] if key in res else None


def markdown_table(rows):
    """The main results table (markdown), one line per benchmark row of ``bench.json``."""
    head = ["network", "layers", "dtypes", "folds PE×SIMD", "lanes", "cycles/inf. measured",
            "expected", "measured/expected", "ideal (MACs/lanes)", "utilisation", "LUT4", "FF",
            "BRAM", "MULT", "Fmax MHz", "inferences/s at Fmax"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        fmax = r.get("fmax_mhz")
        rate = r.get("inferences_per_second")
        flag = "" if r["ratio_ok"] else " **(off by more than 5 %)**"
        lines.append("| " + " | ".join([
            r["name"], r["shape"], r["dtypes"], ", ".join(r["folds"]), str(r["lanes"]),
            f"{r['cycles_per_inference']:.1f}", str(r["expected_cycles"]),
            f"{r['ratio']:.3f}{flag}", str(r["ideal_cycles"]),
            f"{100 * r['utilisation']:.1f} %",
            fmt_int(_resource(r, "lut4")), fmt_int(_resource(r, "ff")),
            fmt_int(_resource(r, "bram")), fmt_int(_resource(r, "mult")),
            "-" if fmax is None else f"{fmax:.1f}",
            "-" if rate is None else f"{rate:,.0f}",
        ]) + " |")
    return "\n".join(lines)


def reference_table(row, ref):
    """Ours beside a published reference (markdown), for the same network and lane budget."""
    lut4 = _resource(row, "lut4")
    fmax = row.get("fmax_mhz")
    ref_rate = ref["fmax_mhz"] * 1e6 / ref["cycles_per_inference"]
    rate = row.get("inferences_per_second")
    lines = [
        f"| {row['shape']} int8, ECP5-85F | {ref['name']} (published, cited) "
        "| nnaccel (measured here) |",
        "| --- | --- | --- |",
        f"| multipliers | {ref['multipliers']} | {row['lanes']} |",
        f"| cycles per inference | {ref['cycles_per_inference']:,} | "
        f"{row['cycles_per_inference']:.1f} |",
        f"| utilisation | ~{100 * ref['utilisation']:.0f} % | {100 * row['utilisation']:.1f} % |",
        f"| LUT4 | ~{ref['lut4']:,} | {fmt_int(lut4)} |",
        f"| Fmax MHz | {ref['fmax_mhz']:.0f} | {'-' if fmax is None else f'{fmax:.1f}'} |",
        f"| inferences/s at Fmax | {ref_rate:,.0f} | {'-' if rate is None else f'{rate:,.0f}'} |",
    ]
    return "\n".join(lines)


def _markdown(result):
    rows = result["benchmarks"]
    parts = [f"Benchmarks on {result['board']} ({result['device']}); cycles measured under "
             f"Verilator with inputs back to back ({result['vectors_note']}), every output "
             "bit-exact against numpy; resources and Fmax from yosys + nextpnr (whole design: "
             "network plus UART link).", "", markdown_table(rows), ""]
    for r in rows:
        parts.append(f"* **{r['name']}**: {r['what']}; {r['provenance']}.")
        if r.get("fold_search"):
            tried = "; ".join(
                f"target {a['target_cycles']} -> {a['cycles']} cycles"
                + (f" at {a['fmax_mhz']:.1f} MHz = {a['rate']:,.0f}/s" if a.get("rate") else "")
                for a in r["fold_search"])
            parts.append(f"  Fold search: {tried}.")
    for r in rows:
        if r.get("reference"):
            parts += ["", reference_table(r, r["reference"])]
    if result["problems"]:
        parts += ["", "Problems:", *[f"* {p}" for p in result["problems"]]]
    return "\n".join(parts) + "\n"


def _plot(rows, path):
    plt = pyplot()

    names = [r["name"] for r in rows]
    x = np.arange(len(rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.26
    ax1.bar(x - width, [r["cycles_per_inference"] for r in rows], width, label="measured",
            color="#c44e52")
    ax1.bar(x, [r["expected_cycles"] for r in rows], width, label="expected (manifest)",
            color="#4c72b0")
    ax1.bar(x + width, [r["ideal_cycles"] for r in rows], width, label="ideal (MACs / lanes)",
            color="#55a868")
    for i, r in enumerate(rows):
        ref = r.get("reference")
        if ref:
            ax1.bar(i + 2 * width, ref["cycles_per_inference"], width, hatch="//",
                    color="white", edgecolor="#888888", label="NNgen (published)")
            ax1.annotate(f"{ref['cycles_per_inference']}", (i + 2 * width,
                         ref["cycles_per_inference"]), ha="center", va="bottom", fontsize=7)
    for i, r in enumerate(rows):
        ax1.annotate(f"{r['cycles_per_inference']:.0f}", (i - width, r["cycles_per_inference"]),
                     ha="center", va="bottom", fontsize=7)
    ax1.set_yscale("log")
    ax1.set_ylim(bottom=min(r["ideal_cycles"] for r in rows) / 4)
    ax1.set_xticks(x, names)
    ax1.set_ylabel("cycles per inference")
    ax1.legend(fontsize=7)
    ax1.set_title("cycles per inference")
    ax2.bar(x, [100 * r["utilisation"] for r in rows], 0.5, color="#4c72b0",
            label="nnaccel (measured)")
    for i, r in enumerate(rows):
        ref = r.get("reference")
        if ref:
            ax2.bar(i + 0.3, 100 * ref["utilisation"], 0.2, hatch="//", color="white",
                    edgecolor="#888888", label="NNgen (published)")
        ax2.annotate(f"{100 * r['utilisation']:.0f}%\n{r['lanes']} lanes",
                     (i, 100 * r["utilisation"]), ha="center", va="bottom", fontsize=7)
    ax2.axhline(100 * UTILISATION_TARGET, color="#c44e52", linestyle=":",
                label=f"target {100 * UTILISATION_TARGET:.0f} %")
    ax2.set_ylim(0, 115)
    ax2.set_xticks(x, names)
    ax2.set_ylabel("utilisation, % (MACs / lanes / measured cycles)")
    ax2.legend(fontsize=7, loc="lower right")
    ax2.set_title("lane utilisation")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- running -------------------------------------------------------------------------------------

class _Steps:
    """Progress lines ``[bench] ...`` with the time each step took."""

    def __init__(self, log):
        self.log = log
        self.start = time.monotonic()

    def run(self, what, fn, *args, **kwargs):
        t0 = time.monotonic()
        self.log(f"[bench] {what} ...")
        out = fn(*args, **kwargs)
        self.log(f"[bench]   {what}: done in {time.monotonic() - t0:.1f} s "
                 f"(total {time.monotonic() - self.start:.0f} s)")
        return out

    def note(self, text):
        self.log(f"[bench]   {text}")


def _synthesise(steps, design, board, outdir, label):
    from ..boards.build import build, format_report

    report = steps.run(f"{label}: synthesis, place and route for {board}", build,
                       design.network, board, outdir, name=design.name,
                       log=lambda m: steps.note(m))
    for line in format_report(report).splitlines():
        steps.note(line)
    return report


def _layers(man):
    keep = ("name", "in_features", "out_features", "in_dtype", "weight_dtype", "out_dtype",
            "output", "engine", "lane_kind", "pe", "simd", "lanes", "neuron_folds",
            "synapse_folds", "acc_width", "weight_storage", "macs", "expected_cycles")
    return [{key: entry[key] for key in keep if key in entry} for entry in man["layers"]]


def _run_one(bench, outdir, steps, *, vectors, quick, synthesis, board, seed, problems):
    from ..gen.generate import generate
    from ..gen.plan import Options
    from ..sim.design import simulate

    label = bench.name
    model, X, provenance = steps.run(f"{label}: model", bench.make, seed, vectors)
    X = np.asarray(X)
    if len(X) != vectors:
        raise ValueError(f"benchmark {label!r} gives {len(X)} input vectors, not {vectors}")
    synth_here = synthesis and not (bench.large and quick)
    reports = {}
    search = None
    if bench.max_lanes is not None:
        design = steps.run(f"{label}: generate for at most {bench.max_lanes} lanes", generate,
                           model, Options(max_lanes=bench.max_lanes))
    elif bench.target_cycles is not None:
        design = steps.run(f"{label}: generate with --target-cycles {bench.target_cycles}",
                           generate, model, Options(target_cycles=bench.target_cycles))
    elif bench.fill is not None:
        from ..boards.platforms import get_board
        from ..gen.resources import device_for

        device = device_for(get_board(board).device)
        design = steps.run(f"{label}: generate with --board {board} --fill {bench.fill}",
                           generate, model, Options(board=device, fill=bench.fill))
    else:
        designs = {}

        def measure(target):
            options, what = Options(target_cycles=target), f"at most {target} cycles"
            if bench.max_simd is not None:
                shapes = [layer.weight.shape for layer in model.layers]
                folds = capped_folds(shapes, target, bench.max_simd)
                if folds is None:
                    raise ValueError(f"benchmark {label!r}: no fold meets {target} cycles with "
                                     f"SIMD <= {bench.max_simd}")
                options = Options(target_cycles=target, folds=tuple(
                    (layer.name, fold) for layer, fold in zip(model.layers, folds, strict=True)))
                what += f", SIMD <= {bench.max_simd}"
            design = steps.run(f"{label}: generate for {what}", generate, model, options)
            designs[target] = design
            cycles = design.manifest["expected_cycles_per_inference"]
            steps.note(f"{design.manifest['lanes']} lanes, {cycles} cycles expected")
            if not synth_here:
                return {"cycles": cycles, "lanes": design.manifest["lanes"], "fmax_mhz": None,
                        "fits": None}
            report = _synthesise(steps, design, board,
                                 outdir / f"{label}-t{target}-{board}", label)
            reports[target] = report
            return {"cycles": cycles, "lanes": design.manifest["lanes"],
                    "fmax_mhz": report["fmax_mhz"], "lut4": report["resources"]["lut4"]["used"],
                    "fits": fits(report)}

        target, search = search_fold(measure, bench.target_rate,
                                     fmax_guess_mhz=bench.fmax_guess_mhz, log=steps.note)
        design = designs[target]
        if not synth_here:
            steps.note(f"fold chosen from the Fmax guess of {bench.fmax_guess_mhz:.0f} MHz "
                       "(no synthesis)")
        elif not search[-1]["met"]:
            problems.append(f"{label}: no fold tried reached {bench.target_rate:,.0f} "
                            f"inferences/s at Fmax (attempts: {len(search)})")
    man = design.manifest
    folds = [f"{e['pe']}x{e['simd']}" for e in man["layers"]]
    steps.note(f"folds {', '.join(folds)}; {man['lanes']} lanes; expected "
               f"{man['expected_cycles_per_inference']} cycles")
    design.write(outdir / label)
    hw_out, sim = steps.run(f"{label}: simulate {len(X)} vectors back to back under Verilator",
                            simulate, design, X)
    ref_out = model.forward(X)
    equal = bool(np.array_equal(np.asarray(hw_out, dtype=object),
                                np.asarray(ref_out, dtype=object)))
    measured = float(sim.cycles_per_inference)
    expected = int(man["expected_cycles_per_inference"])
    row = {
        "name": label, "what": bench.what, "provenance": provenance,
        "shape": "-".join(str(n) for n in [model.in_features]
                          + [layer.out_features for layer in model.layers]),
        "dtypes": dtype_chain(_layers(man)),
        "folds": folds,
        "layers": _layers(man),
        "options": {"max_lanes": bench.max_lanes, "target_rate": bench.target_rate,
                    "fill": bench.fill,
                    "target_cycles": man["options"]["target_cycles"]},
        "lanes": int(man["lanes"]), "macs": int(man["macs"]),
        "vectors": int(len(X)), "outputs_checked": int(np.asarray(hw_out).size),
        "outputs_equal": equal,
        "cycles_per_inference": measured, "latency_cycles": int(sim.latency_cycles),
        "cycles_total": int(sim.cycles_total),
        "expected_cycles": expected,
        "manifest_ideal_cycles": int(man["ideal_cycles_per_inference"]),
        "ideal_cycles": ideal_cycles(man["macs"], man["lanes"]),
        "ratio": measured / expected, "ratio_ok": ratio_ok(measured, expected),
        "utilisation": utilisation(man["macs"], man["lanes"], measured),
        "reference": bench.reference, "fold_search": search,
        "synthesis": None, "fmax_mhz": None, "inferences_per_second": None,
    }
    steps.note(f"measured {measured:.2f} cycles per inference (expected {expected}, ratio "
               f"{row['ratio']:.3f}; ideal {row['ideal_cycles']}; utilisation "
               f"{100 * row['utilisation']:.1f} %); {row['outputs_checked']} outputs equal to "
               "numpy")
    if not equal:
        problems.append(f"{label}: hardware outputs differ from numpy")
    if not row["ratio_ok"]:
        problems.append(f"{label}: measured {measured:.2f} cycles per inference is "
                        f"{100 * (row['ratio'] - 1):+.1f} % off the expected {expected}")
    if bench.reference and row["utilisation"] < UTILISATION_TARGET:
        problems.append(f"{label}: utilisation {100 * row['utilisation']:.1f} % is below the "
                        f"{100 * UTILISATION_TARGET:.0f} % target")
    if synth_here:
        target = man["options"]["target_cycles"]
        report = reports.get(target) or _synthesise(steps, design, board,
                                                    outdir / f"{label}-{board}", label)
        fmax = float(report["fmax_mhz"])
        row.update(synthesis=report, fmax_mhz=fmax, inferences_per_second=fmax * 1e6 / measured,
                   fits=fits(report))
        if not row["fits"]:
            problems.append(f"{label}: does not fit {board}")
        if bench.target_rate and row["inferences_per_second"] < bench.target_rate:
            problems.append(f"{label}: {row['inferences_per_second']:,.0f} inferences/s at "
                            f"Fmax with the measured cycles, below {bench.target_rate:,.0f}")
    elif synthesis:
        steps.note("synthesis skipped (quick run, large network)")
    return row


def run_bench(outdir, *, quick=False, synthesis=True, log=print, benchmarks=None, vectors=None,
              board=BOARD, seed=0):
    """Measure the benchmark networks into ``outdir``; returns 0, or 1 when a check failed.

    Parameters
    ----------
    outdir : path-like
        Receives ``bench.json``, ``bench.md``, ``bench.png``, one directory per network
        (Verilog and manifest) and one build directory per synthesis.
    quick : bool
        Simulate :data:`QUICK_VECTORS` vectors instead of :data:`DEFAULT_VECTORS`, and skip the
        synthesis of the large network (the SFC one, whose fold then rests on the Fmax guess
        :data:`SFC_FMAX_GUESS_MHZ` and whose throughput is not reported).
    synthesis : bool
        Run yosys and nextpnr (resources, Fmax, inferences/s at Fmax); without it the
        throughput-targeted fold rests on its Fmax guess.
    log : callable
        Receives progress lines (each step with its time).
    benchmarks : sequence of Benchmark or str, optional
        The networks to run (objects, or names from :data:`BENCHMARKS`); all of
        :data:`BENCHMARKS` by default.
    vectors : int, optional
        Vectors per network, overriding ``quick``'s choice.
    board : str
        Board of the synthesis reports.
    seed : int
        Seed of the trained and random models and of the random inputs.

    Returns
    -------
    int
        0 when every check held: outputs bit-exact (a mismatch raises), measured cycles within
        :data:`RATIO_TOLERANCE` of expected, the utilisation target of a benchmark with a
        reference, a throughput target at Fmax, every design fitting the device. 1 otherwise
        (the problems are listed in the outputs and on ``log``).
    """
    from ..boards.platforms import get_board

    spec = get_board(board)
    if benchmarks is None:
        benchmarks = BENCHMARKS
    by_name = {b.name: b for b in BENCHMARKS}
    chosen = []
    for b in benchmarks:
        if isinstance(b, str):
            if b not in by_name:
                raise ValueError(f"unknown benchmark {b!r} (known: {', '.join(by_name)})")
            b = by_name[b]
        chosen.append(b)
    vectors = vectors or (QUICK_VECTORS if quick else DEFAULT_VECTORS)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    steps = _Steps(log)
    problems, rows = [], []
    log(f"[bench] {len(chosen)} networks, {vectors} vectors each, synthesis "
        f"{'on ' + board if synthesis else 'off'}{' (quick)' if quick else ''} -> {outdir}")
    for n, bench in enumerate(chosen, 1):
        log(f"[bench] == {n}/{len(chosen)} {bench.name}: {bench.what}")
        rows.append(_run_one(bench, outdir, steps, vectors=vectors, synthesis=synthesis,
                             quick=quick, board=board, seed=seed, problems=problems))
    seconds = time.monotonic() - steps.start
    result = {
        "format": BENCH_FORMAT, "board": board, "device": spec.device, "quick": quick,
        "synthesis": synthesis, "vectors": vectors, "seed": seed,
        "vectors_note": f"{vectors} vectors per network",
        "ratio_tolerance": RATIO_TOLERANCE, "utilisation_target": UTILISATION_TARGET,
        "seconds_total": round(seconds, 1), "problems": problems, "benchmarks": rows,
    }
    write_results(outdir, "bench", result, _markdown(result))
    steps.run("plot", _plot, rows, outdir / "bench.png")
    print()
    print(markdown_table(rows))
    for r in rows:
        if r.get("reference"):
            print()
            print(reference_table(r, r["reference"]))
    print()
    for p in problems:
        log(f"[bench] PROBLEM: {p}")
    print(f"bench.json, bench.md, bench.png in {outdir.resolve()}  [{seconds:.0f} s]")
    return 1 if problems else 0
