"""The cocotb/Verilator tier against a stand-in with the generated top level's AXI ports.

The stand-in takes vectors of K=10 ``int5`` elements in beats of 3 (4 beats per vector) and
returns ``y = 3*x + 1`` as ``int8`` in beats of 4 (3 beats per vector), through a registered
stage, a gather buffer and a 2-vector FIFO. Its steady state is one vector per 4 cycles (the
input beat count). Every Verilator test shares one cached build.
"""

import io
import os
import sys
import time

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from nnaccel.sim import runner
from nnaccel.sim import verilator as verilator_module
from nnaccel.sim.axis import random_pauses
from nnaccel.sim.packing import beats_per_vector, pack
from nnaccel.sim.scoreboard import compare
from nnaccel.sim.verilator import run

K, IN_PER_BEAT, IN_BITS = 10, 3, 5
OUT_PER_BEAT, OUT_BITS = 4, 8
IN_BEATS = beats_per_vector(K, IN_PER_BEAT)
OUT_BEATS = beats_per_vector(K, OUT_PER_BEAT)
TOP = "standin"
IO = {"input": {"dtype": "int5", "elements": K, "elements_per_beat": IN_PER_BEAT,
                "bits_per_element": IN_BITS, "beats": IN_BEATS},
      "output": {"dtype": "int8", "elements": K, "elements_per_beat": OUT_PER_BEAT,
                 "bits_per_element": OUT_BITS, "beats": OUT_BEATS}}

PATTERNS = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.3), (0.3, 0.3)]


class StandIn(wiring.Component):
    """``y = 3*x + 1`` per element, with the AXI4-Stream ports of a generated top level."""

    def __init__(self):
        super().__init__({
            "s_axis_tdata": In(IN_PER_BEAT * IN_BITS), "s_axis_tvalid": In(1),
            "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(OUT_PER_BEAT * OUT_BITS), "m_axis_tvalid": Out(1),
            "m_axis_tready": In(1), "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=K * OUT_BITS, depth=2)

        # Registered stage: y of the 3 elements of one input beat, and the beat's index.
        x = data.ArrayLayout(signed(IN_BITS), IN_PER_BEAT)(self.s_axis_tdata)
        y = Signal(data.ArrayLayout(signed(OUT_BITS), IN_PER_BEAT))
        y_valid, y_index, in_index = Signal(), Signal(range(IN_BEATS)), Signal(range(IN_BEATS))
        y_last = y_index == IN_BEATS - 1
        y_ready = ~y_last | fifo.w_rdy
        m.d.comb += self.s_axis_tready.eq(~y_valid | y_ready)
        with m.If(self.s_axis_tvalid & self.s_axis_tready):
            m.d.sync += [y[j].eq(x[j] * 3 + 1) for j in range(IN_PER_BEAT)]
            m.d.sync += [y_valid.eq(1), y_index.eq(in_index)]
            m.d.sync += in_index.eq(in_index + 1)
            with m.If(in_index == IN_BEATS - 1):
                m.d.sync += in_index.eq(0)
        with m.Elif(y_valid & y_ready):
            m.d.sync += y_valid.eq(0)

        # Gather the beats of a vector; the last one goes to the FIFO with the buffer.
        gather = Signal(data.ArrayLayout(signed(OUT_BITS), IN_BEATS * IN_PER_BEAT))
        with m.If(y_valid & y_ready):
            with m.Switch(y_index):
                for b in range(IN_BEATS - 1):
                    with m.Case(b):
                        m.d.sync += [gather[b * IN_PER_BEAT + j].eq(y[j])
                                     for j in range(IN_PER_BEAT)]
        head = (IN_BEATS - 1) * IN_PER_BEAT
        vector = Cat(*[gather[i] for i in range(head)], *[y[i - head] for i in range(head, K)])
        m.d.comb += [fifo.w_data.eq(vector), fifo.w_en.eq(y_valid & y_last)]

        # Serialise a FIFO vector into output beats.
        out_index = Signal(range(OUT_BEATS))
        elems = data.ArrayLayout(signed(OUT_BITS), K)(fifo.r_data)
        m.d.comb += [self.m_axis_tvalid.eq(fifo.r_rdy),
                     self.m_axis_tlast.eq(out_index == OUT_BEATS - 1)]
        with m.Switch(out_index):
            for b in range(OUT_BEATS):
                with m.Case(b):
                    lanes = range(b * OUT_PER_BEAT, min(K, (b + 1) * OUT_PER_BEAT))
                    m.d.comb += self.m_axis_tdata.eq(Cat(*[elems[i] for i in lanes]))
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += out_index.eq(out_index + 1)
            with m.If(self.m_axis_tlast):
                m.d.sync += out_index.eq(0)
                m.d.comb += fifo.r_en.eq(1)
        return m


class GarbagePadding:
    """Stands in for :func:`nnaccel.sim.packing.pack` in :func:`nnaccel.sim.verilator.run`:
    packs as it does, then fills the padding lanes of each vector's last beat with random bits
    instead of zeros (their contents are undefined by contract, so a design must ignore them).
    Install it with ``monkeypatch.setattr(verilator_module, "pack", GarbagePadding(seed))``;
    ``calls`` counts its uses, so a test can check that the garbage really went in."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.calls = 0

    def __call__(self, bits, elems_per_beat, bits_per_element):
        self.calls += 1
        n, w = int(elems_per_beat), int(bits_per_element)
        beats = pack(bits, n, w)
        k = np.shape(bits)[1]
        per = beats_per_vector(k, n)
        tail = k - (per - 1) * n
        for v in range(len(beats) // per):
            for j in range(tail, n):
                beats[(v + 1) * per - 1] |= int(self.rng.integers(0, 1 << w)) << (j * w)
        return beats


def run_with_garbage(monkeypatch, *args, seed=0, **kwargs):
    """:func:`nnaccel.sim.verilator.run` with garbage in the input padding lanes."""
    garbage = GarbagePadding(seed)
    monkeypatch.setattr(verilator_module, "pack", garbage)
    result = run(*args, seed=seed, **kwargs)
    assert garbage.calls == 1
    return result


def check_stalls(result, idle, stall):
    """The random idle and backpressure of a run took effect (and none when not asked for)."""
    assert (result.idle_cycles > 0) == (idle > 0), result.idle_cycles
    assert (result.backpressure_cycles > 0) == (stall > 0), result.backpressure_cycles


def standin_reference(x_bits):
    """numpy statement of the stand-in: int5 bit patterns in, int8 bit patterns out."""
    x = np.asarray(x_bits, dtype=np.int64)
    values = np.where(x >= 1 << (IN_BITS - 1), x - (1 << IN_BITS), x)
    return ((values * 3 + 1) & ((1 << OUT_BITS) - 1)).astype(np.uint64)


def random_inputs(batch, seed):
    return np.random.default_rng(seed).integers(0, 1 << IN_BITS, size=(batch, K),
                                                dtype=np.uint64)


@pytest.fixture(scope="session")
def standin_verilog(tmp_path_factory):
    path = tmp_path_factory.mktemp("standin") / f"{TOP}.v"
    path.write_text(verilog.convert(StandIn(), name=TOP, emit_src=False))
    return path


@pytest.fixture(scope="session")
def standin_build(standin_verilog):
    return runner.build(standin_verilog, TOP)


def test_garbage_padding_fills_only_padding():
    x = random_inputs(5, seed=9)
    garbage = GarbagePadding(3)
    beats = garbage(x, IN_PER_BEAT, IN_BITS)
    clean = pack(x, IN_PER_BEAT, IN_BITS)
    lanes = (1 << (IN_PER_BEAT * IN_BITS)) - 1
    tail = K - (IN_BEATS - 1) * IN_PER_BEAT
    pad = lanes & ~((1 << (tail * IN_BITS)) - 1)
    for n, (b, c) in enumerate(zip(beats, clean, strict=True)):
        last = n % IN_BEATS == IN_BEATS - 1
        assert (b & ~pad) == c if last else b == c
    assert any(b & pad for b in beats[IN_BEATS - 1::IN_BEATS])


def test_reference_covers_the_int5_range():
    x = np.arange(32, dtype=np.uint64).reshape(1, 32)[:, :K]
    assert standin_reference(x)[0, :3].tolist() == [1, 4, 7]
    assert standin_reference(np.full((1, K), 16, dtype=np.uint64))[0, 0] == (-47) & 0xFF


def test_random_pauses_is_seeded():
    a = [next(g) for g in [random_pauses(0.5, 3)] for _ in range(64)]
    gen = random_pauses(0.5, 3)
    assert a == [next(gen) for _ in range(64)]
    assert any(a) and not all(a)
    gen = random_pauses(0.0, 3)
    assert not any(next(gen) for _ in range(64))
    with pytest.raises(ValueError, match="probability"):
        random_pauses(1.0, 0)


def test_scoreboard_names_first_mismatch():
    expected = np.array([[1, 2, 3], [4, 5, 6]])
    assert compare(expected, expected.astype(np.uint64), "y") == 6
    actual = expected.copy()
    actual[1, 2] = 7
    actual[1, 0] = 9
    with pytest.raises(AssertionError, match=r"y: 2 of 6 .* vector 1, element 0: expected 4, "
                                             r"got 9"):
        compare(expected, actual, "y")
    with pytest.raises(AssertionError, match="shape"):
        compare(expected, actual[:1], "y")


@pytest.mark.verilator
def test_build_is_cached(standin_verilog, standin_build):
    exe = standin_build / TOP
    before = os.stat(exe)
    start = time.monotonic()
    again = runner.build(standin_verilog, TOP)
    assert again == standin_build
    assert time.monotonic() - start < 2.0
    after = os.stat(exe)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert runner.cache_dir() in standin_build.parents


@pytest.mark.verilator
def test_new_design_reuses_the_runtime_objects(monkeypatch, tmp_path, standin_verilog):
    # In an empty cache the first build compiles Verilator's run-time library; the stand-in under
    # another name is a new design with the same library: make must not compile it again.
    monkeypatch.setenv("NNACCEL_CACHE", str(tmp_path / "cache"))
    first = (runner.build(standin_verilog, TOP) / "build.log").read_text()
    assert "verilated.cpp" in first and "verilated_vpi.cpp" in first
    other = standin_verilog.parent / "standin_again.v"
    other.write_text(standin_verilog.read_text().replace(f"module {TOP}", "module standin_again"))
    log = (runner.build(other, "standin_again") / "build.log").read_text()
    assert "verilated.cpp" not in log and "verilated_vpi.cpp" not in log
    assert "Vtop__ALL" in log  # the design itself was compiled here
    x = random_inputs(3, seed=5)
    result = run(other, "standin_again", IO, x, idle=0.3, stall=0.3, seed=2)
    assert compare(standin_reference(x), result.outputs_bits, "stand-in outputs") == 3 * K


@pytest.mark.verilator
@pytest.mark.parametrize(("idle", "stall"), PATTERNS,
                         ids=[f"idle{i:g}-stall{s:g}" for i, s in PATTERNS])
def test_bit_exact_under_stalls(monkeypatch, standin_verilog, standin_build, idle, stall):
    x = random_inputs(12, seed=int(idle * 10 + stall * 100))
    result = run_with_garbage(monkeypatch, standin_verilog, TOP, IO, x, idle=idle, stall=stall,
                              seed=7)
    assert result.outputs_bits.dtype == np.uint64
    assert compare(standin_reference(x), result.outputs_bits, "stand-in outputs") == 12 * K
    assert len(result.input_cycles) == 12 * IN_BEATS
    assert len(result.output_cycles) == 12 * OUT_BEATS
    assert result.cycles_total == result.output_cycles[-1] - result.input_cycles[0]
    assert result.cycles_total >= 12 * IN_BEATS - 1
    check_stalls(result, idle, stall)
    if idle:
        gaps = np.diff(result.input_cycles)
        assert (gaps > 1).any()


@pytest.mark.verilator
def test_cycles_back_to_back(standin_verilog, standin_build):
    batch = 8
    result = run(standin_verilog, TOP, IO, random_inputs(batch, 1))
    # No idle, no stall: one input beat per cycle, one vector per IN_BEATS cycles.
    assert np.all(np.diff(result.input_cycles) == 1)
    assert result.cycles_per_inference == IN_BEATS
    assert result.latency_cycles == result.output_cycles[OUT_BEATS - 1] - result.input_cycles[0]
    assert result.cycles_total == result.latency_cycles + (batch - 1) * IN_BEATS
    single = run(standin_verilog, TOP, IO, random_inputs(1, 2))
    assert single.cycles_per_inference == single.latency_cycles == result.latency_cycles


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.verilator
def test_progress_bar_counts_vectors_on_stderr(monkeypatch, capsys, standin_verilog,
                                               standin_build):
    """On a terminal, a bar follows the vectors the testbench has received (on stderr, never
    stdout), and the outputs stay exact."""
    from nnaccel.gen import progress

    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress.disable(False)
    x = random_inputs(12, 7)
    result = run(standin_verilog, TOP, IO, x, stall=0.3, seed=7)
    compare(standin_reference(x), result.outputs_bits)
    assert f"simulating {TOP}: 100%" in terminal.getvalue() and "12/12" in terminal.getvalue()
    assert capsys.readouterr().out == ""


@pytest.mark.verilator
def test_framing_error_fails(standin_verilog, standin_build):
    # Claim 8 output elements (2 beats per vector): the stand-in's tlast comes every 3 beats.
    io = {"input": IO["input"], "output": dict(IO["output"], elements=8, beats=2)}
    with pytest.raises(runner.SimulationError, match="framing error: output beat 1"):
        run(standin_verilog, TOP, io, random_inputs(3, 3))


@pytest.mark.verilator
def test_timeout_fails(standin_verilog, standin_build):
    # Claim 16 output elements (4 beats per vector): the last beats never come.
    io = {"input": IO["input"], "output": dict(IO["output"], elements=16, beats=4)}
    with pytest.raises(runner.SimulationError, match="timeout: no beat accepted"):
        run(standin_verilog, TOP, io, random_inputs(2, 4), timeout_cycles=256)
