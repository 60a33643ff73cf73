"""Lowering a plan to hardware, and emission of the Verilog and the manifest."""

import json
import logging
import math
from pathlib import Path

from amaranth.back import verilog

from ..hw.common.arith import cdiv
from ..hw.common.pipeline import AxisTop, Pipeline, Stage
from .atomic import atomic_directory
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
        stages = []
        for lp in plan.layers:
            stages.append(Stage(name=lp.layer.name, engine=lp.adapter.build(lp),
                                in_count=lp.layer.in_features, in_beat=lp.fold.simd,
                                out_count=lp.layer.out_features, out_beat=lp.fold.pe))
        first, last = plan.layers[0], plan.layers[-1]
        self.network = Pipeline(stages, in_shape=model.input_dtype.shape,
                                in_beat=first.fold.simd, out_shape=model.output_dtype.shape)
        out_beats = cdiv(last.layer.out_features, last.fold.pe)
        self.top = AxisTop(self.network, out_vector_beats=out_beats)
        self.manifest = self._manifest()
        for entry in self.manifest["layers"]:
            for text in entry["warnings"]:
                log.warning("layer %s: %s", entry["name"], text)

    @property
    def vectors_multiple(self):
        """Inputs must come in multiples of this many vectors (the batch of systolic layers)."""
        return self.batch if any(lp.adapter.batched for lp in self.plan.layers) else 1

    def _io(self, dtype, elements, per_beat):
        return {"dtype": str(dtype), "elements": elements, "elements_per_beat": per_beat,
                "bits_per_element": dtype.bits, "beats": cdiv(elements, per_beat)}

    def _manifest(self):
        model, plan = self.plan.model, self.plan
        layers = []
        latency = 0
        for lp in plan.layers:
            entry = {
                "name": lp.layer.name, "engine": lp.engine.value,
                "requested_engine": lp.requested_engine.value,
                "engine_reason": lp.engine_reason,
                "in_features": lp.layer.in_features, "out_features": lp.layer.out_features,
                "weight_dtype": str(lp.layer.weight_dtype), "in_dtype": str(lp.layer.in_dtype),
                "out_dtype": str(lp.layer.output.dtype), "output": lp.layer.output.kind.value,
                "density": round(lp.layer.density, 4),
                "macs": lp.layer.in_features * lp.layer.out_features,
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
            "io": {"input": self._io(model.input_dtype, model.in_features, first.fold.simd),
                   "output": self._io(model.output_dtype, last.layer.out_features,
                                      last.fold.pe)},
            "batch": self.batch, "vectors_multiple": self.vectors_multiple,
            "expected_cycles_per_inference": cycles,
            "expected_latency_cycles": latency,
            "lanes": lanes, "macs": macs, "nonzero_macs": work,
            "ideal_cycles_per_inference": cdiv(work, lanes),
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


def generate(model, options, stop_after=None):
    """Compile ``model`` with ``options`` into a :class:`Design` (or a plan, if stopped early)."""
    plan = compile_plan(model, options, stop_after)
    if stop_after is not None and stop_after != "check":
        return plan
    return Design(plan)
