"""Lowering a plan to hardware, and emission of the Verilog and the manifest."""

import functools
import json
import logging
import math
from pathlib import Path

from amaranth.back import verilog

from ..hw.common.arith import cdiv
from ..hw.common.graph import GraphNetwork, Node, Port, edge_beats
from ..hw.common.pipeline import AxisTop, Pipeline, Stage
from ..hw.mvu.params import MVUParams
from .atomic import atomic_directory
from .engines.base import is_map, layer_macs, stream_order
from .errors import ModelError
from .fifo_sizing import sizable, size_branch_fifos
from .ir import MODEL_INPUT, Op
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
        self.chain = model.is_chain
        if self.chain:
            self.fifos = fifo_plan(plan)
        else:
            self.fifos = graph_fifo_plan(plan)
            if plan.options.fifo_sizing not in ("rule", "simulation"):
                raise ValueError(f"fifo_sizing must be 'rule' or 'simulation', not "
                                 f"{plan.options.fifo_sizing!r}")
            if plan.options.fifo_sizing == "simulation" and sizable(plan):
                self.fifos = size_branch_fifos(
                    plan, self.fifos, functools.partial(graph_network, plan))
        self.manifest = self._manifest()
        for entry in self.manifest["layers"]:
            for text in entry["warnings"]:
                log.warning("layer %s: %s", entry["name"], text)

    @functools.cached_property
    def network(self):
        """The stream-level network Component (``i_data``/``o_data``), built on first use:
        the manifest, the report and numpy runs need none of the hardware."""
        return self._pipeline() if self.chain else self._graph()

    @functools.cached_property
    def top(self):
        """The AXI4-Stream top level around :attr:`network`, built on first use."""
        last = self.plan.layers[-1]
        out_beats = cdiv(_elements(last.layer.out_shape), last.fold.pe)
        return AxisTop(self.network, out_vector_beats=out_beats)

    def _pipeline(self):
        plan, model = self.plan, self.plan.model
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
        first = plan.layers[0]
        return Pipeline(stages, in_shape=model.input_dtype.shape,
                        in_beat=first.adapter.in_beat(first), out_shape=model.output_dtype.shape)

    def _graph(self):
        return graph_network(self.plan, self.fifos)

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
        arrival = {MODEL_INPUT: 0}
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
                "fifo": fifo if self.chain else fifo[0],
            }
            if not self.chain:
                entry["fifos"] = fifo
            entry.update(lp.adapter.manifest(lp))
            entry["warnings"] = list(lp.warnings)
            layers.append(entry)
            arrival[layer.name] = (max(arrival[src] for src in lp.layer.inputs)
                                   + math.ceil(lp.adapter.first_cycles(entry)) + _LAYER_OVERHEAD)
        latency = arrival[plan.layers[-1].layer.name]
        cycles = max(entry["expected_cycles"] for entry in layers)
        macs = sum(entry["macs"] for entry in layers)
        # The work a sparse layer really does is one MAC per stored non-zero weight (per
        # patch for a convolution).
        work = sum(entry.get("nonzero_macs", entry.get("nonzeros", entry["macs"]))
                   for entry in layers)
        lanes = sum(entry["lanes"] for entry in layers)
        last = plan.layers[-1]
        return {
            "format": MANIFEST_FORMAT, "name": model.name, "top": model.name,
            "io": {"input": self._io(model.input_dtype, model.input_shape,
                                     _input_beat(plan)),
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
            "fifos": self._fifo_list(),
            "layers": layers,
        }

    def _fifo_list(self):
        """Every FIFO: the layer and input port it feeds, the tensor it carries, depth, beat,
        bits and the rule that sized it."""
        out = []
        for lp, fifos in zip(self.plan.layers, self.fifos, strict=True):
            for n, fifo in enumerate([fifos] if self.chain else fifos):
                out.append({"layer": lp.layer.name, "port": n, "source": lp.layer.inputs[n],
                            **fifo})
        return out

    def verilog(self):
        """The self-contained Verilog text of the AXI4-Stream top level (converted once: a run
        of a generated directory compares it with the file, then simulates it)."""
        if getattr(self, "_verilog_text", None) is None:
            self._verilog_text = verilog.convert(self.top, name=self.name, emit_src=False)
        return self._verilog_text

    def write(self, outdir, *, extra=None):
        """Write ``<name>.v`` and ``manifest.json`` (and ``extra`` {relative path: text or
        bytes}) to ``outdir``, atomically: the directory is complete or absent."""
        outdir = Path(outdir)
        text = self.verilog()
        with atomic_directory(outdir) as tmp:
            (tmp / f"{self.name}.v").write_text(text)
            (tmp / "manifest.json").write_text(json.dumps(self.manifest, indent=2) + "\n")
            for fname, content in (extra or {}).items():
                (tmp / fname).parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    (tmp / fname).write_bytes(content)
                else:
                    (tmp / fname).write_text(content)
        return outdir


def _elements(shape):
    return math.prod(int(v) for v in shape)


def graph_network(plan, fifos):
    """A fresh :class:`GraphNetwork` of a graph's plan with the FIFO plan ``fifos`` (per layer,
    one dict per port, each with its ``depth``)."""
    model = plan.model
    nodes = []
    for lp, ports_fifos in zip(plan.layers, fifos, strict=True):
        in_beat = lp.adapter.in_beat(lp)
        ports = []
        for src, fifo in zip(lp.layer.inputs, ports_fifos, strict=True):
            shape = model.shape_of(src)
            group = shape[0] if is_map(shape) and shape[0] % in_beat == 0 else None
            ports.append(Port(source=src, fifo_depth=fifo["depth"], count=_elements(shape),
                              group=group))
        nodes.append(Node(name=lp.layer.name, engine=lp.adapter.build(lp), ports=tuple(ports),
                          in_beat=in_beat, out_beat=lp.fold.pe))
    return GraphNetwork(nodes, in_shape=model.input_dtype.shape,
                        in_beat=_input_beat(plan), out_shape=model.output_dtype.shape)


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
        in_beat = lp.adapter.in_beat(lp)
        wide = max(beat or in_beat, in_beat)
        depth, rule = _consumer_fifo(plan, lp, wide, from_layer=n > 0, gap=0)
        out.append({"depth": depth, "beat": wide, "rule": rule,
                    "bits": depth * wide * model.dtype_of(lp.layer.inputs[0]).bits})
        beat = lp.fold.pe
    return out


def _consumer_fifo(plan, lp, wide, *, from_layer, gap):
    """``(depth, rule)`` of the FIFO in front of a one-input layer, ``wide`` elements a beat,
    by the consumer kind (the rules listed in :func:`fifo_plan`); ``from_layer``: it reads a
    layer (not the design's input); ``gap``: beats an MVU after a map holds at least (the
    graph's :data:`_VECTOR_GAP`; 0 in a chain)."""
    shape = plan.model.layer(lp.layer.name).in_shape
    window = _window_of(lp.params)
    if is_map(shape) and window is not None and from_layer:
        rows = max(1, window.span_rows - window.padding[0])
        depth = (rows * shape[2] + 1) * cdiv(shape[0], wide) + FIFO_SLACK
        rule = (f"window consumer: the {rows} first rows of an image (written while the "
                "window finishes the previous one) + one pixel + slack")
    elif is_map(shape) and not isinstance(lp.params, MVUParams):
        depth = cdiv(shape[0], wide) + FIFO_SLACK
        rule = "window/pool consumer: one producer pixel + slack"
    elif is_map(shape) and isinstance(lp.params, MVUParams) and from_layer:
        p = lp.params
        whole = cdiv(_elements(shape), wide)
        depth = min(whole, max((p.neuron_folds - 1) * p.synapse_folds, gap)) + FIFO_SLACK
        rule = "MVU after a map: beats arriving during its other neuron folds"
        if gap:
            rule += f" (at least {gap}, its pause between vectors)"
        rule += " + slack"
    else:
        depth = cdiv(_elements(shape), wide) + FIFO_SLACK
        rule = "vector consumer: whole input vector + slack"
    return depth, rule


def _input_beat(plan):
    """Elements per beat of the design's input: the in-beat of its first reader."""
    for lp in plan.layers:
        if MODEL_INPUT in lp.layer.inputs:
            return lp.adapter.in_beat(lp)
    raise AssertionError("no layer reads the model input")


#: Cycles of pipeline a layer adds on a branch, for the graph FIFOs' rate term: the MVU's
#: registered operands, adder-tree stages and pipelined output stage (measured: at 12 a random
#: residual graph at 64 lanes ran 15 % below its slowest layer's rate, at 24 at it).
_PIPELINE_CYCLES = 24

#: Beats an MVU on a vector leaves unread between two vectors (measured: a graph's dense head
#: behind a 2-beat FIFO ran at half its rate at 64 lanes).
_VECTOR_GAP = 2


def _single_port(plan, lp, beat):
    """``(depth, wide, rule)`` of the FIFO in front of a one-input layer whose producer's beat
    is ``beat``: :func:`_consumer_fifo` at the graph gearbox's width, MVUs after a map holding
    at least :data:`_VECTOR_GAP` beats."""
    wide = edge_beats(beat, lp.adapter.in_beat(lp))[1]
    depth, rule = _consumer_fifo(plan, lp, wide, from_layer=lp.layer.inputs[0] != MODEL_INPUT,
                                 gap=_VECTOR_GAP)
    return depth, wide, rule


def _pixels(shape):
    """Pixels of a map (H*W); 1 for a vector."""
    return _elements(shape[1:]) if is_map(shape) else 1


def _lead_pixels(lp):
    """Input pixels a layer reads past an output pixel's own position (on the input's grid)
    before it can emit that pixel: a window's reach below and right of its anchor plus one row
    for the window unit's row-wise emission; the whole input for a layer that needs all of it
    (a dense layer, global pooling); none for an element-wise layer or an MVU on pixels."""
    layer = lp.layer
    if not (is_map(layer.in_shape) and is_map(layer.out_shape)):
        return _pixels(layer.in_shape)
    if getattr(lp.params, "is_global", False):
        return _pixels(layer.in_shape)
    window = _window_of(lp.params)
    if window is None:
        return 0
    (kh, kw), (dh, dw) = window.kernel, window.dilation
    top, left = window.padding[0], window.padding[1]
    width = layer.in_shape[2]
    return max(0, (kh - 1) * dh - top) * width + max(0, (kw - 1) * dw - left) + width


def _layer_lag(lp, pace):
    """Cycles from a pixel's arrival at a layer to the layer's output at that position, when
    the graph runs at ``pace`` cycles per image: the time its :func:`_lead_pixels` take to
    arrive at that pace, the layer's own cycles for one output pixel (engines with lanes; a
    pool or a join only passes data on) and :data:`_PIPELINE_CYCLES`."""
    layer = lp.layer
    own = lp.adapter.manifest(lp)
    compute = own["expected_cycles"] / _pixels(layer.out_shape) if own["lanes"] else 0
    return (_lead_pixels(lp) * pace / _pixels(layer.in_shape) + compute + _PIPELINE_CYCLES)


def _ancestors(model, name):
    seen, todo = {name}, [name]
    while todo:
        cur = todo.pop()
        if cur == MODEL_INPUT:
            continue
        for src in model.layer(cur).inputs:
            if src not in seen:
                seen.add(src)
                todo.append(src)
    return seen


def _branch_delays(plan, join, pace):
    """``(fork, {input: (lag cycles, layers)})`` of a join: ``fork`` is the latest tensor every
    input derives from; each input's lag is the longest sum of :func:`_layer_lag` on a path from
    the fork to it, with the number of layers on that path."""
    model = plan.model
    common = set.intersection(*(_ancestors(model, src) for src in join.inputs))
    order = [MODEL_INPUT] + [lp.layer.name for lp in plan.layers]
    fork = max(common, key=order.index)
    plans = {lp.layer.name: lp for lp in plan.layers}
    memo = {fork: (0.0, 0)}

    def delay(name):
        if name not in memo:
            ups = [delay(src) for src in model.layer(name).inputs
                   if src == fork or fork in _ancestors(model, src)]
            lag, depth = max(ups)
            memo[name] = (lag + _layer_lag(plans[name], pace), depth + 1)
        return memo[name]

    return fork, {src: delay(src) for src in join.inputs}


def _pace(plan):
    """Cycles per image of the slowest layer: the rate every layer runs at in a graph."""
    return max(lp.adapter.manifest(lp)["expected_cycles"] for lp in plan.layers)


def _join_ports(plan, lp):
    """FIFOs in front of a join's inputs, from the branches' timing (see :func:`graph_fifo_plan`).
    """
    model, layer = plan.model, lp.layer
    in_beat = lp.adapter.in_beat(lp)
    pace = _pace(plan)
    fork, delays = _branch_delays(plan, layer, pace)
    longest = max(d[0] for d in delays.values())
    out = []
    for src in layer.inputs:
        producer = next((p for p in plan.layers if p.layer.name == src), None)
        beat = producer.fold.pe if producer is not None else _input_beat(plan)
        wide = edge_beats(beat, in_beat)[1]
        shape = model.shape_of(src)
        pixel = cdiv(shape[0], wide) if is_map(shape) else cdiv(_elements(shape), wide)
        row = shape[2] * pixel if is_map(shape) else 0
        whole = cdiv(_elements(shape), wide)
        lag = longest - delays[src][0]
        held = math.ceil(lag * whole / pace)
        depth = held + row + pixel + FIFO_SLACK
        rule = (f"join branch from {fork}: {round(lag)} cycles behind the longest branch "
                f"(window reach and rows at the pace of {pace} cycles per image, per-pixel "
                f"compute, {_PIPELINE_CYCLES} cycles a layer) x {whole} beats per image / {pace}"
                f" = {held} beats, + one row and a pixel of burst + slack")
        out.append((depth, wide, rule, src))
    return out


def graph_fifo_plan(plan):
    """The FIFOs of a graph: for every layer, one ``{"depth", "beat", "bits", "rule"}`` per
    input port, in port order.

    A one-input layer gets :func:`fifo_plan`'s rule for its consumer kind, with its producer's
    beat (an MVU on a vector holds at least :data:`_VECTOR_GAP` beats, its pause between
    vectors). A join's input ``i`` sits on a branch from the fork ``F`` (the latest tensor all
    its inputs derive from). The graph runs at the pace ``T`` of its slowest layer (cycles per
    image); a beat that leaves the fork reaches the join through input ``j`` ``D_j`` cycles
    later, the sum over the layers on the longest path from ``F`` to input ``j`` of

    ``lag = lead * T / in_pixels + own_cycles / out_pixels + PIPELINE_CYCLES``

    where ``lead`` is the pixels the layer reads past an output's position (a window's reach
    below and right of its anchor, ``((KH-1)*DH - top) * W + (KW-1)*DW - left``, plus one row
    for the window unit's row-wise emission; the whole input for a dense layer or global
    pooling), arriving at the pace ``T / in_pixels`` per pixel; ``own_cycles / out_pixels``
    the layer's own compute per output pixel (engines with lanes). Input ``i`` waits
    ``max_j D_j - D_i`` cycles for the slowest branch, while its producer keeps delivering
    ``beats_i / T`` beats a cycle (``beats_i`` per image at the FIFO's width), so its FIFO holds

    ``ceil((max_j D_j - D_i) * beats_i / T) + (W_i + 1) * ceil(C_i / wide) + FIFO_SLACK``

    beats: the rate term, then one row and a pixel for the row-wise bursts of window units, and
    the handshakes. It also covers the long branch's data dependency (the pixels it must read
    before its first output), so the graph cannot deadlock; a branch that changes resolution
    is timed the same way (its lead is a fraction of an image at every resolution).
    """
    model = plan.model
    out = []
    pes = {lp.layer.name: lp.fold.pe for lp in plan.layers}
    pes[MODEL_INPUT] = _input_beat(plan)
    for lp in plan.layers:
        if lp.layer.op in (Op.ADD, Op.CONCAT):
            ports = _join_ports(plan, lp)
        else:
            src = lp.layer.inputs[0]
            ports = [(*_single_port(plan, lp, pes[src]), src)]
        out.append([{"depth": depth, "beat": wide, "rule": rule,
                     "bits": depth * wide * model.dtype_of(src).bits}
                    for depth, wide, rule, src in ports])
    return out


def generate(model, options, stop_after=None):
    """Compile ``model`` with ``options`` into a :class:`Design` (or a plan, if stopped early)."""
    plan = compile_plan(model, options, stop_after)
    if stop_after is not None and stop_after != "check":
        return plan
    return Design(plan)
