"""Run a batch of vectors through a generated top level under Verilator and cocotb.

The design is the Verilog of docs/ARCHITECTURE.md's generated top level (``s_axis_*`` in,
``m_axis_*`` out, ``clk``, ``rst``); its ``io`` description is the manifest's ``io`` field. The
build is cached per configuration (:func:`nnaccel.sim.runner.build`), so simulating the same
design again costs only the simulation.
"""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..gen.progress import file_bar
from . import runner
from .packing import beats_per_vector, pack, unpack
from .tb_network import JOB_VARIABLE

__all__ = ["SimResult", "TEST_MODULE", "DEFAULT_TIMEOUT_CYCLES", "run"]

#: The cocotb module that drives the top level.
TEST_MODULE = "nnaccel.sim.tb_network"

#: Cycles without any accepted beat (input or output) after which the testbench gives up.
DEFAULT_TIMEOUT_CYCLES = 100_000


@dataclass(frozen=True, eq=False)
class SimResult:
    """What one simulated batch produced.

    Cycle numbers are those of the accepted AXI4-Stream transfers (rising clock edges).

    Attributes
    ----------
    outputs_bits : numpy.ndarray, shape (B, M), uint64, read-only
        Output element bit patterns (decode them with the output dtype).
    cycles_total : int
        From the first input beat accepted to the last output beat accepted.
    cycles_per_inference : float
        ``(c[B-1] - c[0]) / (B - 1)`` where ``c[i]`` is the cycle of the last output beat of
        vector ``i``; the latency when B == 1. With ``idle == stall == 0`` (inputs back to back,
        no backpressure) this is the steady-state initiation interval.
    latency_cycles : int
        From the first input beat accepted to the last output beat of vector 0.
    input_cycles, output_cycles : tuple of int
        Cycle of every accepted input and output beat.
    idle_cycles : int
        Cycles the source held ``tvalid`` low before a beat (random idle that took effect).
    backpressure_cycles : int
        Cycles the sink held ``tready`` low while ``tvalid`` was high (backpressure that took
        effect).
    """

    outputs_bits: np.ndarray
    cycles_total: int
    cycles_per_inference: float
    latency_cycles: int
    input_cycles: tuple
    output_cycles: tuple
    idle_cycles: int = 0
    backpressure_cycles: int = 0


def _stream_io(io, side):
    try:
        desc = io[side]
        fields = {name: int(desc[name]) for name in
                  ("elements", "elements_per_beat", "bits_per_element")}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"io[{side!r}] must give elements, elements_per_beat and "
                         f"bits_per_element as integers ({exc!r})") from None
    if min(fields.values()) < 1:
        raise ValueError(f"io[{side!r}]: every size must be positive, not {fields}")
    beats = beats_per_vector(fields["elements"], fields["elements_per_beat"])
    if "beats" in desc and int(desc["beats"]) != beats:
        raise ValueError(f"io[{side!r}]: beats is {desc['beats']}, but {fields['elements']} "
                         f"elements in beats of {fields['elements_per_beat']} take {beats}")
    return fields["elements"], fields["elements_per_beat"], fields["bits_per_element"], beats


def run(verilog_path, top, io, X_bits, *, idle=0.0, stall=0.0, seed=0,
        timeout_cycles=DEFAULT_TIMEOUT_CYCLES, build_args=()):
    """Simulate the batch ``X_bits`` through the top level ``top`` of ``verilog_path``.

    Parameters
    ----------
    verilog_path : path-like
        The generated Verilog file.
    top : str
        Its top module (the manifest's ``top``).
    io : dict
        The manifest's ``io`` field: ``{"input": {...}, "output": {...}}``, each with
        ``elements``, ``elements_per_beat``, ``bits_per_element`` (and optionally ``beats``).
    X_bits : array_like, shape (B, K)
        Input element bit patterns (``DType.encode`` of the values), B >= 1.
    idle : float
        Probability that the source idles a cycle before a beat (0 sends back to back).
    stall : float
        Probability that the sink refuses a cycle (0 means no backpressure).
    seed : int
        Seed of the idle and backpressure patterns.
    timeout_cycles : int
        The testbench fails when no beat is accepted on either side for this many cycles; raise
        it for designs whose latency per vector is longer.
    build_args : sequence of str
        Extra Verilator arguments (part of the build's cache key).

    Returns
    -------
    SimResult

    Raises
    ------
    ValueError
        ``io`` or the shape of ``X_bits`` is wrong.
    ToolError
        A tool is missing or the build failed.
    SimulationError
        The testbench failed: an output framing error (``m_axis_tlast``), an extra output beat,
        or a timeout.
    """
    k, n_in, w_in, in_bpv = _stream_io(io, "input")
    m, n_out, w_out, out_bpv = _stream_io(io, "output")
    x = np.asarray(X_bits)
    if x.ndim != 2 or x.shape[1] != k or x.shape[0] < 1:
        raise ValueError(f"X_bits must have shape (B, {k}) with B >= 1, not {x.shape}")
    batch = x.shape[0]
    beats = pack(x, n_in, w_in)

    build_dir = runner.build(verilog_path, top, build_args=build_args)
    runner.progress(f"simulating {batch} vectors ...")
    with tempfile.TemporaryDirectory(prefix="nnaccel-sim-") as tmp, \
            file_bar(Path(tmp) / "progress", batch, f"simulating {top}", unit="vec") as bar:
        job_path, results_path = Path(tmp) / "job.json", Path(tmp) / "results.json"
        job = {"input_beats": [str(b) for b in beats], "in_beats_per_vector": in_bpv,
               "output_beats": batch * out_bpv, "out_beats_per_vector": out_bpv,
               "idle": float(idle), "stall": float(stall), "seed": int(seed),
               "timeout_cycles": int(timeout_cycles), "results": str(results_path),
               "progress": None if bar is None else str(bar)}
        job_path.write_text(json.dumps(job))
        runner.test(build_dir, top, TEST_MODULE, extra_env={JOB_VARIABLE: str(job_path)},
                    test_dir=Path(tmp) / "run", seed=seed)
        results = json.loads(results_path.read_text())

    outputs = unpack([int(b) for b in results["output_beats"]], batch, m, n_out, w_out)
    outputs.setflags(write=False)
    in_cycles = tuple(results["input_cycles"])
    out_cycles = tuple(results["output_cycles"])
    ends = out_cycles[out_bpv - 1::out_bpv]
    latency = ends[0] - in_cycles[0]
    per_inference = (ends[-1] - ends[0]) / (batch - 1) if batch > 1 else float(latency)
    return SimResult(outputs_bits=outputs, cycles_total=int(results["total_cycles"]),
                     cycles_per_inference=float(per_inference), latency_cycles=int(latency),
                     input_cycles=in_cycles, output_cycles=out_cycles,
                     idle_cycles=int(results["source_idle_cycles"]),
                     backpressure_cycles=int(results["sink_refused_cycles"]))
