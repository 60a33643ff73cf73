"""Helpers shared by several test modules (not collected: no ``test_`` prefix): the tiny
two-layer model of the API, CLI and reliability tests (its files, its ONNX form and its outputs
by hand), and a back-to-back run of a generated design in amaranth.sim."""

import json
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from nnaccel.gen.engines.base import to_stream
from nnaccel.gen.fifo_sizing import Occupancy
from nnaccel.sim.packing import pack

W1 = np.array([[1, -2, 3, -4], [5, 6, -7, 8], [-9, 10, 11, -12]])
B1 = np.array([1, -2, 3])
W2 = np.array([[1, -2, 3], [0, 1, 1]])


def model_doc(**changes):
    """The tiny model: fc1 requant (uint4, relu) -> fc2 identity (int32 logits); ``changes``
    replace top-level fields."""
    doc = {
        "format": "nnaccel-model/1", "name": "tiny",
        "input": {"shape": [4], "dtype": "int4"},
        "layers": [
            {"name": "fc1", "op": "linear", "weight": "fc1.w", "weight_dtype": "int8",
             "bias": "fc1.b",
             "output": {"kind": "requant", "mult": 3, "shift": 4, "dtype": "uint4",
                        "relu": True}},
            {"name": "fc2", "op": "linear", "weight": "fc2.w", "weight_dtype": "int4",
             "output": {"kind": "identity"}},
        ],
    }
    doc.update(changes)
    return doc


def model_arrays():
    return {"fc1.w": W1, "fc1.b": B1, "fc2.w": W2}


def write_model_dir(path, doc=None, arrays=None, text=None):
    """A model directory at ``path`` (the tiny model unless ``doc``/``arrays`` are given;
    ``text``: model.json's exact text)."""
    path = Path(path)
    path.mkdir(parents=True)
    (path / "model.json").write_text(text if text is not None else json.dumps(doc or model_doc()))
    np.savez(path / "weights.npz", **(model_arrays() if arrays is None else arrays))
    return path


def spec_forward(x, bias=B1):
    """The tiny model by hand: SPEC 2.1 and 2.2 in Python integers."""
    out = []
    for row in np.asarray(x).tolist():
        acc = [sum(w * v for w, v in zip(wr, row, strict=True)) + b
               for wr, b in zip(W1.tolist(), np.asarray(bias).tolist(), strict=True)]
        h = [min(max((a * 3 + 8) >> 4, 0), 15) for a in acc]
        out.append([sum(w * v for w, v in zip(wr, h, strict=True)) for wr in W2.tolist()])
    return out


def tiny_onnx(path):
    """x -> Quant(uint4) -> MatMul(W1) -> y: an exact one-layer QONNX import, saved at ``path``
    (skips the test without the 'onnx' extra)."""
    onnx = pytest.importorskip("onnx", reason="the 'onnx' extra is not installed")
    from onnx import TensorProto, helper, numpy_helper

    q = "qonnx.custom_op.general"
    inits = [numpy_helper.from_array(np.asarray(v, dtype=np.float32), n) for n, v in
             (("s", 1.0), ("z", 0.0), ("b", 4.0), ("w", W1.T))]
    nodes = [helper.make_node("Quant", ["x", "s", "z", "b"], ["xq"], domain=q, signed=0,
                              narrow=0, rounding_mode="ROUND"),
             helper.make_node("MatMul", ["xq", "w"], ["y"], name="fc")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                     helper.make_opsetid(q, 1)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def run_back_to_back(design, X, limit=None):
    """Run the batch ``X`` through a generated design in amaranth.sim, inputs back to back, no
    backpressure: ``(cycle of each image's last output beat, peak occupancy of every FIFO)``.

    The peaks are a dict keyed as ``design.network.fifos`` (a graph's ``(layer, port)``, a
    chain's FIFO index). Stops after ``limit`` cycles (default: 40 times the manifest's cycles
    for the batch, plus 2,000), so a deadlocked design returns fewer ends than images: callers
    check the count.
    """
    from .gen.test_network import axis_ports

    model = design.plan.model
    ins = design.manifest["io"]["input"]
    out_beats = design.manifest["io"]["output"]["beats"]
    bits = model.input_dtype.encode(to_stream(X, model.input_shape))
    beats = pack(bits, ins["elements_per_beat"], ins["bits_per_element"])
    src, sink = axis_ports(design.top)
    top = Module()
    top.submodules.dut = design.top
    sim = Simulator(top)  # elaborates: design.network.fifos exists from here
    sim.add_clock(1e-6)
    fifos = design.network.fifos
    keys = list(fifos) if isinstance(fifos, dict) else list(range(len(fifos)))
    occupancy = Occupancy([fifos[k] for k in keys])
    cycles = []
    limit = limit or 40 * design.manifest["expected_cycles_per_inference"] * len(X) + 2000

    stop = []

    async def source(ctx):  # ends when the monitor does (a deadlocked design stops taking)
        for beat in beats:
            ctx.set(src.valid, 1)
            ctx.set(src.payload, beat)
            taken = False
            while not (taken or stop):
                _, _, taken = await ctx.tick().sample(src.ready)
            if stop:
                break
        ctx.set(src.valid, 0)

    async def monitor(ctx):
        ctx.set(sink.ready, 1)
        now = 0
        while len(cycles) < len(X) * out_beats and now < limit:
            _, _, valid, *flags = await ctx.tick().sample(sink.valid, *occupancy.signals)
            now += 1
            if valid:
                cycles.append(now)
            occupancy.update(flags)
        stop.append(True)

    sim.add_testbench(source)
    sim.add_testbench(monitor)
    sim.run()
    return cycles[out_beats - 1::out_beats], dict(zip(keys, occupancy.peak, strict=True))
