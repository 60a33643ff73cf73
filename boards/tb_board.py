"""cocotb testbench of the whole board top (UART pins included) behind a pseudo-terminal.

Not collected by pytest (``tb_`` prefix); run by :mod:`nnaccel.boardsim`. The job is a JSON
file whose path is in the environment variable ``NNACCEL_BOARD_JOB``::

    {"divisor": int,          # clock cycles per serial bit of the design
     "period_ns": int,        # simulated clock period
     "corrupt": float,        # probability that a byte on the wire gets one bit flipped
     "seed": int,
     "ready": "<path>",       # written with {"pty": "<path of the pty>"} once serving
     "stop": "<path>"}        # the testbench stops once this file exists

Bytes written to the pty are sent bit by bit on ``rx`` (8N1, ``divisor`` clock cycles per bit);
bytes the design sends on ``tx`` are sampled in the middle of each bit and written to the pty.
The line's corruption (one random bit flipped in a byte) applies in both directions.
"""

import json
import os
import random
import time
import tty
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

JOB_VARIABLE = "NNACCEL_BOARD_JOB"
_IDLE_BYTES = 4         # bit times x 10 the receiver idles between polls of the pty


def _corrupt(byte, rng, p):
    return byte ^ (1 << rng.randrange(8)) if p and rng.random() < p else byte


async def _transmit_to_host(dut, master, bit_ns, rng, p):
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


@cocotb.test()
async def serve(dut):
    job = json.loads(Path(os.environ[JOB_VARIABLE]).read_text())
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
    cocotb.start_soon(_transmit_to_host(dut, master, bit_ns, rng, p))

    polls = 0
    while True:
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
            continue
        await Timer(10 * bit_ns * _IDLE_BYTES, "ns")
        polls += 1
        time.sleep(0.0002)
        if polls % 256 == 0 and stop.exists():
            break
    os.close(master)
    os.close(slave)
