"""Lowering a plan to hardware, and emission of the Verilog and the manifest."""

import json
import logging
import math
from pathlib import Path

from amaranth.back import verilog

from ..hw.common.arith import cdiv
from ..hw.common.pipeline import AxisTop, Pipeline, Stage
from ..hw.mvu.engine import MatrixVectorUnit
from ..hw.sparse.engine import SparseEngine
from ..hw.sparse.params import SparseParams
from ..hw.systolic.engine import SystolicEngine
from .atomic import atomic_directory
from .errors import ModelError
from .names import VERILOG_KEYWORDS, name_problem
from .passes.check import mvu_params
from .passes.configure import output_kwargs, systolic_params
from .pipeline import compile_plan
from .plan import Engine

__all__ = ["Design", "generate", "VERILOG_KEYWORDS", "MANIFEST_FORMAT"]

MANIFEST_FORMAT = "nnaccel-manifest/1"


#: Cycles a layer adds to the latency besides its folds (FIFO, skid, core and output stage).
_LAYER_OVERHEAD = 12

log = logging.getLogger("nnaccel")


def _layer_engine(lp, batch):
    layer = lp.layer
    if lp.engine is Engine.SYSTOLIC:
        params = systolic_params(layer, lp.array, batch, in_beat=lp.fold.simd)
        return SystolicEngine(params, layer.weight)
    if lp.engine is Engine.SPARSE:
        m, k = layer.weight.shape
        params = SparseParams(in_features=k, out_features=m, pe=lp.sparse.pe,
                              queue_depth=lp.sparse.queue_depth, in_beat=lp.fold.simd,
                              in_dtype=layer.in_dtype, weight_dtype=layer.weight_dtype,
                              index_bits=lp.sparse.index_bits)
        return SparseEngine(params, weight=layer.weight, codebook=layer.codebook,
                            bias=layer.bias, **output_kwargs(layer))
    return MatrixVectorUnit(mvu_params(lp), weight=layer.weight, bias=layer.bias,
                            **output_kwargs(layer))


def _number(x):
    """An int when ``x`` is integral, else ``x`` rounded to 3 decimals (JSON-friendly)."""
    return int(x) if float(x).is_integer() else round(float(x), 3)


def _mvu_entry(lp, engine):
    p = engine.params
    return {
        "lanes": p.lanes, "lane_kind": p.lane_kind.value, "pe": p.pe, "simd": p.simd,
        "neuron_folds": p.neuron_folds, "synapse_folds": p.synapse_folds,
        "acc_width": engine.acc_width, "raw_width": engine.core.raw_shape.width,
        "weight_storage": lp.storage.value,
        "weight_bits": p.lanes * lp.layer.weight_dtype.bits * p.expected_cycles,
        "expected_cycles": p.expected_cycles,
    }


def _systolic_entry(lp, engine):
    p = engine.params
    return {
        "lanes": p.lanes, "rows": p.rows, "cols": p.cols, "dataflow": p.dataflow.value,
        "batch": p.batch, "in_beat": p.in_beat, "out_beat": p.cols,
        "tiles": f"{p.m_tiles}x{p.k_tiles}", "m_tiles": p.m_tiles, "k_tiles": p.k_tiles,
        "acc_width": p.acc_width,
        "expected_cycles": _number(p.steady_cycles / p.batch),
        "expected_cycles_per_batch": p.steady_cycles,
        "expected_cycles_first_batch": p.expected_cycles,
        "ideal": _number(p.ideal_cycles / p.batch),
    }


def _sparse_entry(lp, engine):
    p, matrix = engine.params, engine.matrix
    nonzeros = int(matrix.nonzeros)
    return {
        "lanes": p.lanes, "pe": p.pe, "queue_depth": p.queue_depth,
        "index_bits": p.index_bits, "in_beat": p.in_beat, "out_beat": p.pe,
        "acc_width": engine.acc_width, "nonzeros": nonzeros,
        "nonzeros_per_pe_per_column": round(nonzeros / (p.pe * p.in_features), 4),
        "bits_per_nonzero": round(float(matrix.bits_per_nonzero), 3),
        "stored_bits": int(matrix.storage_bits),
        "codebook": lp.layer.codebook is not None,
        "expected_cycles": _number(engine.expected_cycles),
        "expected_cycles_assumes": "dense activations (every activation non-zero); zero "
                                   "activations are skipped, so real inputs only run faster",
        "dense_cycles": p.dense_cycles,
    }


_ENTRY = {Engine.MVU: _mvu_entry, Engine.SYSTOLIC: _systolic_entry, Engine.SPARSE: _sparse_entry}


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
        stages, self.engines = [], []
        for lp in plan.layers:
            engine = _layer_engine(lp, self.batch)
            self.engines.append(engine)
            stages.append(Stage(name=lp.layer.name, engine=engine,
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
        return self.batch if any(lp.engine is Engine.SYSTOLIC for lp in self.plan.layers) else 1

    def _io(self, dtype, elements, per_beat):
        return {"dtype": str(dtype), "elements": elements, "elements_per_beat": per_beat,
                "bits_per_element": dtype.bits, "beats": cdiv(elements, per_beat)}

    def _manifest(self):
        model, plan = self.plan.model, self.plan
        layers = []
        latency = 0
        for lp, engine in zip(plan.layers, self.engines, strict=True):
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
            entry.update(_ENTRY[lp.engine](lp, engine))
            entry["warnings"] = list(lp.warnings)
            layers.append(entry)
            latency += math.ceil(entry.get("expected_cycles_first_batch",
                                           entry["expected_cycles"])) + _LAYER_OVERHEAD
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
