"""cocotb testbench of a generated top level: one batch of vectors through its AXI4-Stream ports.

Not collected by pytest (``tb_`` prefix); run by :func:`nnaccel.sim.verilator.run` through
:mod:`nnaccel.sim.runner`. The job is a JSON file whose path is in the environment variable
``NNACCEL_SIM_JOB``::

    {"input_beats": ["<decimal>", ...],   # every input beat, vectors back to back
     "in_beats_per_vector": int,          # s_axis_tlast is driven high on each vector's last beat
     "output_beats": int,                 # number of output beats expected in total
     "out_beats_per_vector": int,
     "idle": float, "stall": float,       # source idle / sink backpressure probabilities
     "seed": int,
     "timeout_cycles": int,               # fail after this many cycles with no beat accepted
     "results": "<path>",
     "progress": "<path>" or null}      # optional: vectors received so far, as they arrive

The testbench resets the DUT (``rst`` high for a few cycles), sends the input beats while
collecting output beats, fails on a framing error (``m_axis_tlast`` not high exactly on the last
beat of each output vector), on an extra output beat, or when no beat is accepted on either side
for ``timeout_cycles`` cycles. On success it writes the results file::

    {"output_beats": ["<decimal>", ...], "input_cycles": [int, ...], "output_cycles": [int, ...],
     "total_cycles": int}

where cycles are numbered from time 0 (:func:`nnaccel.sim.axis.cycle_now`) and ``total_cycles``
is the cycle of the last output transfer minus that of the first input transfer. The comparison
of the values against the reference is the caller's (:mod:`nnaccel.sim.scoreboard`).
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, gather, select

from .axis import AxisSink, AxisSource, random_pauses

JOB_VARIABLE = "NNACCEL_SIM_JOB"
RESET_CYCLES = 4
QUIET_CYCLES = 16
_WATCH_EVERY = 32


def _framing_errors(lasts, beats_per_vector, limit=5):
    errors = []
    for index, last in enumerate(lasts):
        want = (index + 1) % beats_per_vector == 0
        if bool(last) != want:
            errors.append(f"output beat {index} (vector {index // beats_per_vector}, beat "
                          f"{index % beats_per_vector} of {beats_per_vector}): m_axis_tlast is "
                          f"{int(last)}, expected {int(want)}")
            if len(errors) == limit:
                break
    return errors


async def _watchdog(clk, source, sink, job):
    limit = int(job["timeout_cycles"])
    # vectors received so far, for the caller's progress bar (only when it draws one)
    progress = Path(job["progress"]) if job.get("progress") else None
    out_bpv = int(job["out_beats_per_vector"])
    seen, quiet, vectors = None, 0, 0
    while True:
        await ClockCycles(clk, _WATCH_EVERY)
        now = (len(source.cycles), len(sink.cycles))
        if progress is not None and now[1] // out_bpv != vectors:
            vectors = now[1] // out_bpv
            progress.write_text(str(vectors))
        quiet = 0 if now != seen else quiet + _WATCH_EVERY
        seen = now
        if quiet >= limit:
            raise AssertionError(
                f"timeout: no beat accepted for {quiet} cycles; sent {now[0]} of "
                f"{len(job['input_beats'])} input beats, received {now[1]} of "
                f"{job['output_beats']} output beats")


@cocotb.test()
async def network(dut):
    """Drive the job's input beats, collect the output beats, check framing, write results."""
    job = json.loads(Path(os.environ[JOB_VARIABLE]).read_text())
    beats = [int(b) for b in job["input_beats"]]
    in_bpv, out_bpv = int(job["in_beats_per_vector"]), int(job["out_beats_per_vector"])
    n_out = int(job["output_beats"])
    seed = int(job["seed"])

    clock = Clock(dut.clk, 10, unit="ns")
    clock.start(start_high=False)
    source = AxisSource(dut, "s_axis", clock, random_pauses(float(job["idle"]), seed))
    sink = AxisSink(dut, "m_axis", clock, random_pauses(float(job["stall"]), seed + 1))
    dut.s_axis_tdata.value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, RESET_CYCLES)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    lasts = [(i + 1) % in_bpv == 0 for i in range(len(beats))]
    await select(gather(source.send(beats, lasts), sink.receive(n_out)),
                 _watchdog(dut.clk, source, sink, job))
    if job.get("progress"):  # the last vectors, received after the watchdog's last look
        Path(job["progress"]).write_text(str(len(sink.cycles) // out_bpv))

    errors = _framing_errors(sink.lasts, out_bpv)
    assert not errors, "framing error: " + "; ".join(errors)
    await sink.expect_quiet(QUIET_CYCLES)

    total = sink.cycles[-1] - source.cycles[0] if beats and sink.cycles else 0
    results = {"output_beats": [str(b) for b in sink.beats], "input_cycles": source.cycles,
               "output_cycles": sink.cycles, "total_cycles": total,
               "source_idle_cycles": source.idle_cycles,
               "sink_refused_cycles": sink.refused_cycles}
    Path(job["results"]).write_text(json.dumps(results))
