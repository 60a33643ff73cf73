"""Simulate a generated design under Verilator on mathematical values, with a scoreboard."""

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from .scoreboard import compare
from .verilator import run

__all__ = ["simulate", "pad_to_batches", "first_mismatch", "to_stream", "from_stream"]


def pad_to_batches(X, multiple):
    """``X`` (B, K) with its last vector repeated until B is a multiple of ``multiple`` (a
    systolic layer computes whole batches; zeros could be invalid, e.g. for bipolar inputs)."""
    extra = -len(X) % multiple
    return np.concatenate([X, np.repeat(X[-1:], extra, axis=0)]) if extra else X


def first_mismatch(expected, actual):
    """Where the outputs ``actual`` (B, M) first differ from ``expected`` (B, M), as a dict
    ``{"vector", "element", "reference", "hardware", "differing"}`` (Python integers; the
    element is the index into the flattened output vector), or None when they are equal.
    Values are compared as Python integers (no wrap-around); shapes that differ are a mismatch
    at the first vector and element that one side lacks (``None`` for the missing value)."""
    exp = np.asarray(expected, dtype=object).reshape(len(expected), -1)
    act = np.asarray(actual, dtype=object).reshape(len(actual), -1)
    if exp.shape != act.shape:
        rows, cols = min(len(exp), len(act)), min(exp.shape[1], act.shape[1])
        same = np.asarray(exp[:rows, :cols] != act[:rows, :cols], dtype=bool)
        if same.any():
            v, e = (int(i) for i in np.argwhere(same)[0])
        else:
            v, e = (rows, 0) if len(exp) != len(act) else (0, cols)
        return {"vector": v, "element": e, "reference": _at(exp, v, e),
                "hardware": _at(act, v, e), "differing": None}
    differ = np.asarray(exp != act, dtype=bool)
    if not differ.any():
        return None
    v, e = (int(i) for i in np.argwhere(differ)[0])
    return {"vector": v, "element": e, "reference": int(exp[v, e]), "hardware": int(act[v, e]),
            "differing": int(differ.sum())}


def _at(a, v, e):
    return int(a[v, e]) if v < a.shape[0] and e < a.shape[1] else None


def simulate(design, X, *, idle=0.0, stall=0.0, seed=0, check=True):
    """Run the batch ``X`` (B, *input_shape) of mathematical values through ``design``.

    Feature maps are given and returned in (C, H, W) order; the design's streams carry them in
    HWC order (:func:`to_stream`, :func:`from_stream`), as its manifest's ``io`` states.

    Returns ``(outputs, result)``: the outputs as mathematical values (B, *out_shape) and the
    :class:`~nnaccel.sim.verilator.SimResult`. With ``check``, every output is compared with the
    numpy reference (``Model.forward``) and a mismatch raises AssertionError naming the first
    differing vector and element.

    A design with systolic layers generated for batches of ``b = design.vectors_multiple`` > 1
    vectors computes whole batches only: ``X`` is padded to a multiple of ``b`` by repeating its
    last vector, and the extra outputs are dropped. The result then describes the ``B`` real
    vectors only: ``outputs_bits`` has B rows, ``cycles_total`` ends at the last output beat of
    vector B-1, and ``cycles_per_inference`` is ``(c[B-1] - c[b-1]) / (B - b)`` with ``c[i]``
    the cycle of the last output beat of vector ``i`` -- the steady state after the first batch
    has drained (batches leave in bursts, so measuring from vector 0 would flatter the design) --
    or ``cycles_total / B`` when ``B <= b``.
    """
    model = design.plan.model
    X = np.asarray(X).reshape(len(X), *model.input_shape)
    count = len(X)
    multiple = getattr(design, "vectors_multiple", 1)
    padded = pad_to_batches(X, multiple)
    manifest = design.manifest
    timeout = max(100_000, 4 * manifest["expected_latency_cycles"])
    with tempfile.TemporaryDirectory(prefix="nnaccel-sim-") as tmp:
        path = Path(tmp) / f"{design.name}.v"
        path.write_text(design.verilog())
        result = run(path, manifest["top"], manifest["io"],
                     model.input_dtype.encode(to_stream(padded)), idle=idle, stall=stall,
                     seed=seed, timeout_cycles=timeout)
    if multiple > 1:
        result = _real_vectors(result, count, multiple, manifest["io"]["output"]["beats"])
    outputs = from_stream(model.output_dtype.decode(result.outputs_bits), model.out_shape)
    if check:
        compare(model.forward(X), outputs, f"{design.name} outputs")
    return outputs, result


def to_stream(X):
    """A batch ``X`` (B, *shape) as the design's input stream carries it, ``(B, elements)``:
    feature maps (C, H, W) in HWC order (docs/ARCHITECTURE.md), vectors as they are."""
    X = np.asarray(X)
    if X.ndim == 4:
        X = X.transpose(0, 2, 3, 1)
    return X.reshape(len(X), -1)


def from_stream(Y, shape):
    """Inverse of :func:`to_stream` for outputs of ``shape``: ``(B, *shape)``."""
    Y = np.asarray(Y)
    if len(shape) == 3:
        c, h, w = shape
        return Y.reshape(len(Y), h, w, c).transpose(0, 3, 1, 2)
    return Y.reshape(len(Y), *shape)


def _real_vectors(result, count, multiple, out_beats):
    """``result`` restricted to the first ``count`` vectors (see :func:`simulate`)."""
    ends = [result.output_cycles[(i + 1) * out_beats - 1] for i in range(count)]
    start = result.input_cycles[0]
    total = ends[-1] - start
    if count > multiple:
        per = (ends[-1] - ends[multiple - 1]) / (count - multiple)
    else:
        per = total / count
    return dataclasses.replace(
        result, outputs_bits=result.outputs_bits[:count], cycles_total=total,
        cycles_per_inference=per, output_cycles=tuple(result.output_cycles[:count * out_beats]))
