"""cocotb testbench of the whole board top (UART pins included) behind a pseudo-terminal.

Not collected by pytest (``tb_`` prefix); run by :mod:`nnaccel.boardsim`. The job is a JSON
file whose path is in the environment variable ``NNACCEL_BOARD_JOB``::

    {"divisor": int,          # clock cycles per serial bit of the design
     "period_ns": int,        # simulated clock period
     "corrupt": float,        # probability that a byte on the wire gets one bit flipped
     "seed": int,
     "ready": "<path>",       # written with {"pty": "<path of the pty>"} once serving
     "stop": "<path>"}        # the testbench stops once this file exists (or the job file
                              # is gone)

Bytes written to the pty are sent bit by bit on ``rx`` (8N1, ``divisor`` clock cycles per bit);
bytes the design sends on ``tx`` are sampled in the middle of each bit and written to the pty.
The line's corruption (one random bit flipped in a byte) applies in both directions. While the
device is idle (its reply sent, or its receive timeout passed) simulated time stands still until
the host writes again: the device's cycle counters time the link alone, as with a host of no
latency.
"""

import json
import os
import random
import select
import tty
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer
from cocotb.utils import get_sim_time

JOB_VARIABLE = "NNACCEL_BOARD_JOB"
#: After the device's last reply byte, the simulation runs this many byte times more, then
#: stops the clock until the host sends again (so device cycles measure the link, not the
#: host's latency). Without a reply it runs long enough for the receive timeout to fire.
_REPLIED_BYTES = 2
_TIMEOUT_BYTES = 80


def _corrupt(byte, rng, p):
    return byte ^ (1 << rng.randrange(8)) if p and rng.random() < p else byte


async def _transmit_to_host(dut, master, bit_ns, rng, p, line):
    while True:
        await FallingEdge(dut.tx)
        await Timer(bit_ns // 2, "ns")
        if dut.tx.value:
            continue                        # a glitch, not a start bit
        byte = 0
        for n in range(8):
            await Timer(bit_ns, "ns")
            byte |= int(dut.tx.value) << n
        await Timer(bit_ns, "ns")           # the stop bit's middle
        os.write(master, bytes([_corrupt(byte, rng, p)]))
        line["tx_end"] = get_sim_time("ns")


@cocotb.test()
async def serve(dut):
    job_path = Path(os.environ[JOB_VARIABLE])
    job = json.loads(job_path.read_text())
    period = int(job["period_ns"])
    bit_ns = period * int(job["divisor"])
    rng = random.Random(int(job["seed"]))
    p = float(job["corrupt"])
    stop = Path(job["stop"])
    cocotb.start_soon(Clock(dut.clk, period, "ns").start())
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    ready = Path(job["ready"])
    tmp = ready.with_name(ready.name + ".tmp")
    tmp.write_text(json.dumps({"pty": os.ttyname(slave)}))
    os.replace(tmp, ready)
    line = {"tx_end": 0, "rx_end": 0}
    cocotb.start_soon(_transmit_to_host(dut, master, bit_ns, rng, p, line))

    byte_ns = 10 * bit_ns
    while not stop.exists() and job_path.exists():   # the job goes when its owner does
        try:
            data = os.read(master, 4096)
        except BlockingIOError:
            data = b""
        if data:
            for byte in data:
                byte = _corrupt(byte, rng, p)
                for bit in [0, *((byte >> n) & 1 for n in range(8)), 1]:
                    dut.rx.value = bit
                    await Timer(bit_ns, "ns")
            line["rx_end"] = get_sim_time("ns")
            continue
        now = get_sim_time("ns")
        replied = line["tx_end"] > line["rx_end"]
        quiet = _REPLIED_BYTES if replied else _TIMEOUT_BYTES
        if now - max(line["tx_end"], line["rx_end"]) < quiet * byte_ns:
            await Timer(byte_ns, "ns")
        else:   # the device is idle: its clock stops while the host thinks
            select.select([master], [], [], 0.05)
    os.close(master)
    os.close(slave)
