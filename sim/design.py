"""Simulate a generated design under Verilator on mathematical values, with a scoreboard."""

import tempfile
from pathlib import Path

import numpy as np

from .scoreboard import compare
from .verilator import run

__all__ = ["simulate"]


def simulate(design, X, *, idle=0.0, stall=0.0, seed=0, check=True):
    """Run the batch ``X`` (B, *input_shape) of mathematical values through ``design``.

    Returns ``(outputs, result)``: the outputs as mathematical values (B, M) and the
    :class:`~nnaccel.sim.verilator.SimResult`. With ``check``, every output is compared with the
    numpy reference (``Model.forward``) and a mismatch raises AssertionError naming the first
    differing vector and element.
    """
    model = design.plan.model
    X = np.asarray(X).reshape(len(X), -1)
    manifest = design.manifest
    timeout = max(100_000, 4 * manifest["expected_latency_cycles"])
    with tempfile.TemporaryDirectory(prefix="nnaccel-sim-") as tmp:
        path = Path(tmp) / f"{design.name}.v"
        path.write_text(design.verilog())
        result = run(path, manifest["top"], manifest["io"], model.input_dtype.encode(X),
                     idle=idle, stall=stall, seed=seed, timeout_cycles=timeout)
    outputs = model.output_dtype.decode(result.outputs_bits)
    if check:
        compare(model.forward(X), outputs, f"{design.name} outputs")
    return outputs, result
