"""``nnaccel bench --suite resnet8`` / ``--suite mobilenet``: residual and depthwise-separable
CNNs on the ECP5-85F (issue 11).

The models are :func:`nnaccel.gen.zoo.resnet8.resnet8_model` (MLPerf Tiny's ResNet-8: 3x32x32
int8, three residual stacks of 16/32/64 filters with 1x1 stride-2 projection shortcuts, global
average pooling, dense 10) and :func:`~nnaccel.gen.zoo.resnet8.mobilenet_model`
(MobileNet-v1-style depthwise-separable blocks), int8 with random weights (random weights
change neither the cycles nor, to first order, the resources).

One fold per suite, ``generate(model, Options(...))`` with the cycle target or device share
of :data:`SUITES`; a few random images simulated back to back under Verilator
(:func:`nnaccel.sim.design.simulate`), every output compared bit for bit with
``Model.forward``, the measured cycles per image against the folding formula (the manifest's
expected cycles, the slowest layer's); then the network alone synthesised, placed and routed
out of context on the ULX3S's ECP5-85F (:func:`nnaccel.bench.network.network_build`: yosys,
the block RAM and DSP register fold, nextpnr): LUT4, FF, DP16KD, MULT18X18D, Fmax, and
inferences/s at Fmax (``Fmax / measured cycles``). Out of context because the network's own
Fmax is the figure: the board top's UART link is not what limits it, and with it ResNet-8's
routing (router2, 73 % of the logic cells) had not converged after 39 passes (about 1,800
wires still overused). Every weight sits in the design (ROMs or block RAM): there is
no external memory, so the figures are "all weights on chip".

The published figures of :data:`ANCHORS` are printed beside ours and labelled as cited.

Outputs in ``outdir``: ``<suite>.json``, ``<suite>.md``, the fold's manifest and the build
directory.
"""

import time
from pathlib import Path

from ..gen.zoo.resnet8 import mobilenet_model, resnet8_model, zoo_inputs
from .cnv import RATIO_TOLERANCE, Steps, measure_fold
from .report import fits, write_results

__all__ = ["BOARD", "SUITES", "ANCHORS", "DEFAULT_IMAGES", "QUICK_IMAGES", "weight_bits",
           "run_graph_bench", "layer_proxy"]

BOARD = "ulx3s-85f"
#: Images simulated back to back (``quick``: :data:`QUICK_IMAGES`).
DEFAULT_IMAGES = 4
QUICK_IMAGES = 3

#: Per suite: the model factory, its description, the fold (a cycle target, or ``fill``: the
#: folds of most throughput within that share of the board's device by the resource model,
#: ``--board ulx3s-85f --fill F``) and the inferences/s wanted at Fmax. Either way the board's
#: DSP blocks bound the design's: lane multipliers past them are built in logic (the MVU's
#: ``dsp_multipliers``). ResNet-8: ``target_cycles=49152`` (306 int8 lanes; the window unit
#: feeds stack 1's convolutions 16 or 48 inputs a beat, so the step below is 73,728 cycles),
#: which needs 49.2 MHz for 1,000 inferences/s; about 150 of its multipliers go to the
#: ECP5-85F's 156 MULT18X18D (the requantisers take the rest), the others to logic.
#: ``freq_mhz``: nextpnr's clock constraint (it places for it; the figure reported is the Fmax
#: reached either way). ``router``: nextpnr's (router2 routes ResNet-8 in a quarter of an hour,
#: where router1 had not finished in hours).
SUITES = {
    "resnet8": {"model": resnet8_model, "target_cycles": 49_152, "fill": None, "rate": 1_000,
                "freq_mhz": 70.0, "router": "router2",
                "what": "MLPerf Tiny ResNet-8 (3x32x32 int8; stacks of 16/32/64 filters, 1x1 "
                        "stride-2 projections; global average pool; dense 10), random int8 "
                        "weights, requant multipliers calibrated on random images"},
    "mobilenet": {"model": mobilenet_model, "target_cycles": 5_000, "fill": None,
                  "rate": None, "freq_mhz": 80.0, "router": "router2",
                  "what": "MobileNet-v1-style blocks (3x32x32 int8; 3x3 stride-2 stem to 16; "
                          "four depthwise 3x3 + pointwise 1x1 blocks to 32/64/64/128, stride 2 "
                          "in the second and fourth; global average pool; dense 10), random "
                          "int8 weights"},
}

#: Published ResNet-8 figures (cited in issue 11, not measured here).
ANCHORS = (
    {"name": "fpgaConvNet, ResNet-8 int8 on a ZedBoard (Zynq-7020: 47K LUT, 211 DSP, 143 MHz)",
     "inferences_per_second": 2431},
    {"name": "hls4ml RN08 on a PYNQ-Z2", "inferences_per_second": 130.8},
)


def weight_bits(manifest):
    """Bits of every weight the design holds (the manifest's ``weight_bits`` per layer)."""
    return sum(int(e.get("weight_bits") or 0) for e in manifest["layers"])


def _markdown(result):
    r, syn = result["fold"], result.get("synthesis")
    meas = r.get("cycles_per_image")
    lines = [f"## {result['suite']} on the {result['board']} ({result['device']})", "",
             f"Model: {result['model']}; {r['macs']:,} MACs per image; "
             f"{result['weight_bits']:,} weight bits, all on chip.", "",
             "| fold | lanes | expected cycles | measured cycles/image | ratio | "
             "bit-exact |", "|---|---:|---:|---:|---:|---|",
             f"| {r['name']} | {r['lanes']:,} | {r['expected_cycles']:,} | "
             f"{'-' if meas is None else f'{meas:,.1f}'} | "
             f"{'-' if meas is None else format(r['ratio'], '.4f')} | "
             f"{'-' if meas is None else ('yes' if r['outputs_equal'] else 'NO')} |", "",
             "Folds (PExSIMD): " + ", ".join(f"{k} {v}" for k, v in r["folds"].items()) + "."]
    if syn:
        lines += ["", "| LUT4 | FF | DP16KD | MULT18X18D | Fmax MHz | cycles/image | "
                  "inferences/s |", "|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {syn['lut4']:,} | {syn['ff']:,} | {syn['bram']} | {syn['mult']} | "
                  f"{syn['fmax_mhz']:.1f} | {syn['cycles']:,.1f} | "
                  f"{syn['inferences_per_second']:,.0f} |"]
    if result["suite"] == "resnet8":
        lines += ["", "Anchors (published, cited in issue 11, not measured here):", ""]
        lines += [f"* {a['name']}: {a['inferences_per_second']:,} inferences/s."
                  for a in ANCHORS]
    lines += ["", "Targets:", ""]
    for key, t in result["targets"].items():
        lines.append(f"* {key}: {t['value']} (want {t['want']}): "
                     f"{'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines) + "\n"


def run_graph_bench(outdir, suite, *, quick=False, synthesis=True, log=print, images=None,
                    board=BOARD, seed=0, model=None, target_cycles=None):
    """Measure ``suite`` (a key of :data:`SUITES`) into ``outdir``; returns 0, or 1 when a
    target was missed.

    Parameters
    ----------
    quick : bool
        :data:`QUICK_IMAGES` images, no synthesis.
    synthesis : bool
        Place and route the fold (LUT4, Fmax, inferences/s).
    model : nnaccel.gen.ir.Model, optional
        Another model (a scaled-down one in the tests); the default is the suite's.
    target_cycles : int, optional
        The fold's cycle target (default: the suite's).
    """
    from ..boards.platforms import get_board

    cfg = SUITES[suite]
    spec = get_board(board)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    steps = Steps(log, suite)
    what = cfg["what"] if model is None else f"{model.name}, given by the caller"
    if model is None:
        model = steps.run("model", cfg["model"], seed)
    images = images or (QUICK_IMAGES if quick else DEFAULT_IMAGES)
    X = zoo_inputs(model.input_shape, images, seed)
    target = target_cycles or cfg["target_cycles"]
    from ..gen.plan import Options
    from ..gen.resources import device_for

    # the board's DSP blocks bound the fold's: multipliers past them are built in logic
    options = (Options(board=device_for(spec.device), fill=cfg["fill"]) if target is None
               else Options(target_cycles=target, board=device_for(spec.device)))
    label = f"{model.name}_t{target}" if target else f"{model.name}_fill{cfg['fill']}"
    fold = measure_fold(model, target, X, outdir=outdir, label=label, log=steps,
                        options=options)
    design = fold.pop("design")
    targets = {"bit_exact": {"value": fold["outputs_equal"], "want": True,
                             "met": fold["outputs_equal"]},
               "cycles_within_5pct": {"value": round(fold["ratio"], 4),
                                      "want": f"1 +- {RATIO_TOLERANCE}",
                                      "met": fold["ratio_ok"]}}
    syn = None
    if synthesis and not quick:
        from .network import network_build, network_row

        figures = steps.run(f"{fold['name']}: synthesis, place and route out of context on "
                            f"the {spec.device}", network_build, design.network,
                            outdir / f"{fold['name']}-{board}", freq_mhz=cfg["freq_mhz"],
                            router=cfg["router"])
        syn = network_row(figures, device_for(spec.device), board=board, fold=fold["name"],
                          constraint_mhz=cfg["freq_mhz"])
        steps.note(f"{syn['lut4']:,} LUT4, {syn['ff']:,} FF, {syn['bram']} DP16KD, "
                   f"{syn['mult']} MULT18X18D; Fmax {syn['fmax_mhz']:.2f} MHz "
                   f"(constraint {cfg['freq_mhz']} MHz; {figures['synthesiser']})")
        syn["cycles"] = fold["cycles_per_image"]
        syn["inferences_per_second"] = syn["fmax_mhz"] * 1e6 / syn["cycles"]
        syn["fits"] = fits(syn)
        targets["fits"] = {"value": syn["fits"], "want": True, "met": syn["fits"]}
        if cfg["rate"]:
            rate = syn["inferences_per_second"]
            targets["inferences_per_second"] = {"value": round(rate), "want": f">= {cfg['rate']}",
                                                "met": rate >= cfg["rate"]}
    result = {"format": "nnaccel-bench-graph/1", "suite": suite, "board": board,
              "device": spec.device, "model": what, "seed": seed, "images": images,
              "quick": quick, "weight_bits": weight_bits(design.manifest), "fold": fold,
              "synthesis": syn, "anchors": list(ANCHORS) if suite == "resnet8" else [],
              "targets": targets, "seconds_total": round(time.monotonic() - steps.start, 1)}
    write_results(outdir, suite, result, _markdown(result))
    missed = [k for k, t in targets.items() if not t["met"]]
    for k in missed:
        log(f"[{suite}] PROBLEM: target {k} missed: {targets[k]['value']} "
            f"(want {targets[k]['want']})")
    log(f"[{suite}] {suite}.json, {suite}.md in {outdir.resolve()}")
    return 1 if missed else 0


def layer_proxy(layer, outdir, *, suite="resnet8", core=False, board=BOARD, seed=0):
    """Place and route one layer of ``suite``'s fold out of context
    (:func:`nnaccel.bench.network.network_build`, minutes where the whole network takes
    hours): the layer's engine as the generator builds it for the suite's fold on ``board``
    (its multipliers split between DSP blocks and logic as in the whole design); ``core``:
    only a convolution's matrix-vector unit (with its output stage), without the window unit.
    Returns network_build's figures with the layer's fold and multiplier split."""
    from ..boards.platforms import get_board
    from ..gen.generate import generate
    from ..gen.plan import Options
    from ..gen.resources import device_for
    from .network import network_build

    cfg = SUITES[suite]
    device = device_for(get_board(board).device)
    design = generate(cfg["model"](seed), Options(target_cycles=cfg["target_cycles"],
                                                  board=device))
    lp = next((lp for lp in design.plan.layers if lp.layer.name == layer), None)
    if lp is None:
        names = ", ".join(lp.layer.name for lp in design.plan.layers)
        raise ValueError(f"no layer {layer!r} in {suite} (layers: {names})")
    mvu = getattr(lp.params, "mvu", lp.params)
    if core:
        from ..hw.mvu.engine import MatrixVectorUnit
        from ..hw.window.reference import patch_weights

        if mvu is lp.params:
            raise ValueError(f"layer {layer!r} is not a convolution on the MVU")
        engine = MatrixVectorUnit(mvu, weight=patch_weights(lp.layer.weight))
    else:
        engine = lp.adapter.build(lp)
    result = network_build(engine, outdir)
    result.update(layer=layer, fold=f"{lp.fold.pe}x{lp.fold.simd}", core=core,
                  dsp_multipliers=getattr(mvu, "dsp_multipliers", None),
                  logic_multipliers=getattr(mvu, "logic_multipliers", None))
    return result


def main(argv=None):
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m nnaccel.bench.resnet",
        description="Place and route one layer of a suite's fold out of context (a proxy of "
                    "the whole network's timing); the suites themselves run with "
                    "`nnaccel bench --suite resnet8`.")
    parser.add_argument("layer", help="a layer name of the suite's model, e.g. s3b")
    parser.add_argument("-o", "--output", default="out/resnet-proxy", help="build directory")
    parser.add_argument("--suite", default="resnet8", choices=sorted(SUITES))
    parser.add_argument("--core", action="store_true",
                        help="only a convolution's matrix-vector unit, no window unit")
    args = parser.parse_args(argv)
    result = layer_proxy(args.layer, Path(args.output), suite=args.suite, core=args.core)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
