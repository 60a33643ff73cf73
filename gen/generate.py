"""Lowering a plan to hardware, and emission of the Verilog and the manifest."""

import json
import logging
import math
from pathlib import Path

from amaranth.back import verilog

from ..hw.common.arith import cdiv
from ..hw.common.pipeline import AxisTop, Pipeline, Stage
from ..hw.mvu.params import MVUParams
from .atomic import atomic_directory
from .engines.base import is_map, layer_macs, stream_order
from .errors import ModelError
from .names import VERILOG_KEYWORDS, name_problem
from .pipeline import compile_plan

__all__ = ["Design", "generate", "VERILOG_KEYWORDS", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "nnaccel-manifest/1"


#: Cycles a layer adds to the latency besides its folds (FIFO, skid, core and output stage).
_LAYER_OVERHEAD = 12

log = logging.getLogger("nnaccel")


class Design:
    """A generated accelerator: the plan, the hardware components and the manifest."""

    def __init__(self, plan):
        self.plan = plan
        model = plan.model
        problem = name_problem(model.name)
        if problem is not None:
            raise ModelError(None, "name", f"{problem}: it cannot name the generated module")
        self.name = model.name
        self.batch = plan.options.batch
        self.fifos = fifo_plan(plan)
        stages = []
        for lp, fifo in zip(plan.layers, self.fifos, strict=True):
            shape = model.layer(lp.layer.name).in_shape
            in_beat = lp.adapter.in_beat(lp)
            # every beat on a map divides C, unless the consumer reads it as one vector
            group = shape[0] if is_map(shape) and shape[0] % in_beat == 0 else None
            stages.append(Stage(name=lp.layer.name, engine=lp.adapter.build(lp),
                                in_count=_elements(shape), in_beat=in_beat,
                                out_count=_elements(lp.layer.out_shape), out_beat=lp.fold.pe,
                                fifo_depth=fifo["depth"], in_group=group))
        first, last = plan.layers[0], plan.layers[-1]
        self.network = Pipeline(stages, in_shape=model.input_dtype.shape,
                                in_beat=first.adapter.in_beat(first),
                                out_shape=model.output_dtype.shape)
        out_beats = cdiv(_elements(last.layer.out_shape), last.fold.pe)
        self.top = AxisTop(self.network, out_vector_beats=out_beats)
        self.manifest = self._manifest()
        for entry in self.manifest["layers"]:
            for text in entry["warnings"]:
                log.warning("layer %s: %s", entry["name"], text)

    @property
    def vectors_multiple(self):
        """Inputs must come in multiples of this many vectors (the batch of systolic layers)."""
        return self.batch if any(lp.adapter.batched for lp in self.plan.layers) else 1

    def _io(self, dtype, shape, per_beat):
        elements = _elements(shape)
        return {"dtype": str(dtype), "elements": elements, "elements_per_beat": per_beat,
                "bits_per_element": dtype.bits, "beats": cdiv(elements, per_beat),
                "shape": [int(v) for v in shape], "order": stream_order(shape)}

    def _manifest(self):
        model, plan = self.plan.model, self.plan
        layers = []
        latency = 0
        for lp, fifo in zip(plan.layers, self.fifos, strict=True):
            layer = model.layer(lp.layer.name)
            weight_dtype = getattr(layer, "weight_dtype", None)
            entry = {
                "name": layer.name, "engine": lp.engine.value, "op": layer.op.value,
                "requested_engine": lp.requested_engine.value,
                "engine_reason": lp.engine_reason,
                "in_features": _elements(layer.in_shape),
                "out_features": _elements(layer.out_shape),
                "in_shape": list(layer.in_shape), "out_shape": list(layer.out_shape),
                "in_order": stream_order(layer.in_shape),
                "out_order": stream_order(layer.out_shape),
                "in_beat": lp.adapter.in_beat(lp), "out_beat": lp.fold.pe,
                "weight_dtype": None if weight_dtype is None else str(weight_dtype),
                "in_dtype": str(layer.in_dtype), "out_dtype": str(layer.out_dtype),
                "output": None if layer.output is None else layer.output.kind.value,
                "density": (round(layer.density, 4) if hasattr(layer, "density") else None),
                "macs": layer_macs(layer),
                "fifo": fifo,
            }
            entry.update(lp.adapter.manifest(lp))
            entry["warnings"] = list(lp.warnings)
            layers.append(entry)
            latency += math.ceil(lp.adapter.first_cycles(entry)) + _LAYER_OVERHEAD
        cycles = max(entry["expected_cycles"] for entry in layers)
        macs = sum(entry["macs"] for entry in layers)
        # The work a sparse layer really does is one MAC per stored non-zero weight.
        work = sum(entry.get("nonzeros", entry["macs"]) for entry in layers)
        lanes = sum(entry["lanes"] for entry in layers)
        first, last = plan.layers[0], plan.layers[-1]
        return {
            "format": MANIFEST_FORMAT, "name": model.name, "top": model.name,
            "io": {"input": self._io(model.input_dtype, model.input_shape,
                                     first.adapter.in_beat(first)),
                   "output": self._io(model.output_dtype, last.layer.out_shape,
                                      last.fold.pe)},
            "batch": self.batch, "vectors_multiple": self.vectors_multiple,
            "expected_cycles_per_inference": cycles,
            "expected_latency_cycles": latency,
            "lanes": lanes, "macs": macs, "nonzero_macs": work,
            "ideal_cycles_per_inference": cdiv(work, max(lanes, 1)),
            "options": {"target_cycles": plan.options.target_cycles,
                        "max_lanes": plan.options.max_lanes, "batch": plan.options.batch},
            "warnings": [f"layer {e['name']}: {w}" for e in layers for w in e["warnings"]],
            "layers": layers,
        }

    def verilog(self):
        """The self-contained Verilog text of the AXI4-Stream top level."""
        return verilog.convert(self.top, name=self.name, emit_src=False)

    def write(self, outdir, *, extra=None):
        """Write ``<name>.v`` and ``manifest.json`` (and ``extra`` {filename: text}) to
        ``outdir``, atomically: the directory is complete or absent."""
        outdir = Path(outdir)
        text = self.verilog()
        with atomic_directory(outdir) as tmp:
            (tmp / f"{self.name}.v").write_text(text)
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2) + "\n")
            for fname, content in (extra or {}).items():
                (tmp / fname).write_text(content)
        return outdir


def _elements(shape):
    return math.prod(int(v) for v in shape)


#: Beats a FIFO adds to its stated need, for the handshakes of its two sides.
FIFO_SLACK = 2


def _window_of(params):
    """The window unit's WindowParams of a layer's Params (None: no line buffer)."""
    window = getattr(params, "window", None)
    if window is None and hasattr(params, "window_params") and not params.is_global:
        window = params.window_params
    return window


def fifo_plan(plan):
    """The FIFO in front of every layer: ``{"depth", "beat", "rule"}``, one per layer.

    ``beat`` is its width in elements (the wider of the producer's and the consumer's beats,
    ``wide``); ``depth`` in beats of ``wide``, by the consumer:

    * a window unit (``conv2d``, pooling) after a layer: its line buffer absorbs rows within
      an image, but while it emits an image's last output row it has room for only about one
      row of the next image, and its first window of that image needs ``R = span_rows - top``
      rows; a producer running at the network's rate would stall for them (both layers lose
      that time every image). So the FIFO holds those rows and a pixel:
      ``(R * W + 1) * ceil(C / wide) + FIFO_SLACK`` -- a few rows, never a whole map;
    * a window unit reading the design's input, or global pooling (reads one beat per
      cycle): one pixel, ``ceil(C / wide) + FIFO_SLACK``;
    * an MVU on a vector read from a feature map: it reads its input in its first neuron fold
      and holds it, so while it computes the other ``NF - 1`` folds (``(NF - 1) * SF``
      cycles, at most one producer beat each) the FIFO keeps what arrives:
      ``min(ceil(K / wide), (NF - 1) * SF) + FIFO_SLACK``;
    * any other vector layer: the whole input vector, ``ceil(K / wide) + FIFO_SLACK`` (FINN).
    """
    model = plan.model
    out, beat = [], None
    for n, lp in enumerate(plan.layers):
        shape = model.layer(lp.layer.name).in_shape
        in_beat = lp.adapter.in_beat(lp)
        wide = max(beat or in_beat, in_beat)
        whole = cdiv(_elements(shape), wide)
        produced_map = is_map(shape)
        window = _window_of(lp.params)
        if is_map(shape) and window is not None and n > 0:
            rows = max(1, window.span_rows - window.padding[0])
            depth = (rows * shape[2] + 1) * cdiv(shape[0], wide) + FIFO_SLACK
            rule = (f"window consumer: the {rows} first rows of an image (written while the "
                    "window finishes the previous one) + one pixel + slack")
        elif is_map(shape) and not isinstance(lp.params, MVUParams):
            depth = cdiv(shape[0], wide) + FIFO_SLACK
            rule = "window/pool consumer: one producer pixel + slack"
        elif produced_map and isinstance(lp.params, MVUParams) and n > 0:
            p = lp.params
            depth = min(whole, (p.neuron_folds - 1) * p.synapse_folds) + FIFO_SLACK
            rule = "MVU after a map: beats arriving during its other neuron folds + slack"
        else:
            depth = whole + FIFO_SLACK
            rule = "vector consumer: whole input vector + slack"
        out.append({"depth": depth, "beat": wide, "rule": rule,
                    "bits": depth * wide * model.dtype_of(lp.layer.inputs[0]).bits})
        beat = lp.fold.pe
    return out


def generate(model, options, stop_after=None):
    """Compile ``model`` with ``options`` into a :class:`Design` (or a plan, if stopped early)."""
    plan = compile_plan(model, options, stop_after)
    if stop_after is not None and stop_after != "check":
        return plan
    return Design(plan)
