"""Lowering a plan to hardware, and emission of the Verilog and the manifest."""

import json
import os
import shutil
import tempfile
from pathlib import Path

from amaranth.back import verilog

from ..hw.common.pipeline import AxisTop, Pipeline, Stage
from ..hw.mvu.engine import MatrixVectorUnit
from .errors import ModelError
from .ir import OutputKind
from .passes.check import mvu_params
from .pipeline import compile_plan

__all__ = ["Design", "generate", "VERILOG_KEYWORDS", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "nnaccel-manifest/1"

#: Verilog-2005 / SystemVerilog keywords: a model name that is one cannot name a module.
VERILOG_KEYWORDS = frozenset("""
always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign
default defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule
endprimitive endspecify endtable endtask event for force forever fork function generate genvar
highz0 highz1 if ifnone incdir include initial inout input instance integer join large liblist
library localparam macromodule medium module nand negedge nmos nor noshowcancelled not notif0
notif1 or output parameter pmos posedge primitive pull0 pull1 pulldown pullup
pulsestyle_onevent pulsestyle_ondetect rcmos real realtime reg release repeat rnmos rpmos rtran
rtranif0 rtranif1 scalared showcancelled signed small specify specparam strong0 strong1 supply0
supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand trior trireg unsigned use uwire
vectored wait wand weak0 weak1 while wire wor xnor xor logic bit byte int shortint longint
struct union enum typedef class interface package program property sequence string void
""".split())

#: Cycles a layer adds to the latency besides its folds (FIFO, skid, core and output stage).
_LAYER_OVERHEAD = 12


def _layer_engine(lp):
    layer = lp.layer
    out = layer.output
    kw = {}
    if out.kind is OutputKind.REQUANT:
        kw = dict(mult=out.mult, shift=out.shift, relu=out.relu)
    elif out.kind is OutputKind.THRESHOLD:
        kw = dict(thresholds=out.thresholds)
    return MatrixVectorUnit(mvu_params(lp), weight=layer.weight, bias=layer.bias,
                            output_kind=out.kind.value, out_dtype=out.dtype, **kw)


class Design:
    """A generated accelerator: the plan, the hardware components and the manifest."""

    def __init__(self, plan):
        self.plan = plan
        model = plan.model
        if model.name.lower() in VERILOG_KEYWORDS:
            raise ModelError(None, "name", f"{model.name!r} is a Verilog keyword and cannot "
                                           "name the generated module")
        self.name = model.name
        stages, self.engines = [], []
        for lp in plan.layers:
            engine = _layer_engine(lp)
            self.engines.append(engine)
            stages.append(Stage(name=lp.layer.name, engine=engine,
                                in_count=lp.layer.in_features, in_beat=lp.fold.simd,
                                out_count=lp.layer.out_features, out_beat=lp.fold.pe))
        first, last = plan.layers[0], plan.layers[-1]
        self.network = Pipeline(stages, in_shape=model.input_dtype.shape,
                                in_beat=first.fold.simd, out_shape=model.output_dtype.shape)
        out_beats = -(-last.layer.out_features // last.fold.pe)
        self.top = AxisTop(self.network, out_vector_beats=out_beats)
        self.manifest = self._manifest()

    def _io(self, dtype, elements, per_beat):
        return {"dtype": str(dtype), "elements": elements, "elements_per_beat": per_beat,
                "bits_per_element": dtype.bits, "beats": -(-elements // per_beat)}

    def _manifest(self):
        model, plan = self.plan.model, self.plan
        layers = []
        for lp, engine in zip(plan.layers, self.engines, strict=True):
            p = engine.params
            layers.append({
                "name": lp.layer.name, "engine": lp.engine.value,
                "requested_engine": lp.requested_engine.value,
                "engine_reason": lp.engine_reason,
                "in_features": p.in_features, "out_features": p.out_features,
                "weight_dtype": str(lp.layer.weight_dtype), "in_dtype": str(lp.layer.in_dtype),
                "out_dtype": str(lp.layer.output.dtype), "output": lp.layer.output.kind.value,
                "density": round(lp.layer.density, 4),
                "lanes": p.lanes, "lane_kind": p.lane_kind.value,
                "pe": p.pe, "simd": p.simd,
                "neuron_folds": p.neuron_folds, "synapse_folds": p.synapse_folds,
                "acc_width": engine.acc_width,
                "raw_width": engine.core.raw_shape.width,
                "weight_storage": lp.storage.value,
                "weight_bits": p.lanes * lp.layer.weight_dtype.bits * p.expected_cycles,
                "macs": p.in_features * p.out_features,
                "expected_cycles": p.expected_cycles,
            })
        cycles = max(entry["expected_cycles"] for entry in layers)
        macs = sum(entry["macs"] for entry in layers)
        lanes = sum(entry["lanes"] for entry in layers)
        first, last = plan.layers[0], plan.layers[-1]
        return {
            "format": MANIFEST_FORMAT, "name": model.name, "top": model.name,
            "io": {"input": self._io(model.input_dtype, model.in_features, first.fold.simd),
                   "output": self._io(model.output_dtype, last.layer.out_features,
                                      last.fold.pe)},
            "expected_cycles_per_inference": cycles,
            "expected_latency_cycles": sum(entry["expected_cycles"] + _LAYER_OVERHEAD
                                           for entry in layers),
            "lanes": lanes, "macs": macs,
            "ideal_cycles_per_inference": -(-macs // lanes),
            "options": {"target_cycles": plan.options.target_cycles,
                        "max_lanes": plan.options.max_lanes, "batch": plan.options.batch},
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
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
        try:
            os.chmod(tmp, 0o777 & ~_umask())
            (tmp / f"{self.name}.v").write_text(text)
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2) + "\n")
            for fname, content in (extra or {}).items():
                (tmp / fname).write_text(content)
            _replace_dir(tmp, outdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return outdir


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _replace_dir(tmp, outdir):
    if outdir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old.", dir=outdir.parent))
        os.replace(outdir, old / "x")
        os.replace(tmp, outdir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, outdir)


def generate(model, options, stop_after=None):
    """Compile ``model`` with ``options`` into a :class:`Design` (or a plan, if stopped early)."""
    plan = compile_plan(model, options, stop_after)
    if stop_after is not None and stop_after != "check":
        return plan
    return Design(plan)
