"""The window unit and a pooling unit through generated Verilog under Verilator and cocotb.

Each unit is wrapped in the AXI4-Stream ports of the generated top level
(docs/ARCHITECTURE.md): one "vector" is one image in, and its whole output stream out (patches
for the window unit, the pooled map for the pool), ``m_axis_tlast`` on its last beat. Several
images run back to back under every stall pattern and must equal the numpy references.
"""

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from nnaccel.hw.pool.engine import Pool
from nnaccel.hw.pool.params import PoolParams
from nnaccel.hw.pool.reference import pool
from nnaccel.hw.window.engine import WindowUnit
from nnaccel.hw.window.params import WindowParams
from nnaccel.hw.window.reference import patch_stream, to_hwc
from nnaccel.sim.scoreboard import compare
from nnaccel.sim.verilator import run

from ..hw.map_streams import random_map

PATTERNS = [(0.0, 0.0), (0.3, 0.0), (0.0, 0.3), (0.3, 0.3)]
IDS = [f"idle{i:g}-stall{s:g}" for i, s in PATTERNS]


class AxisWrapper(wiring.Component):
    """``unit`` (``i_data``/``o_data`` streams) behind the generated top level's AXI ports."""

    def __init__(self, unit, out_beats):
        self.unit, self.out_beats = unit, out_beats
        in_width = unit.i_data.payload.shape().size
        out_width = unit.o_data.payload.shape().size
        super().__init__({
            "s_axis_tdata": In(in_width), "s_axis_tvalid": In(1), "s_axis_tready": Out(1),
            "s_axis_tlast": In(1),
            "m_axis_tdata": Out(out_width), "m_axis_tvalid": Out(1), "m_axis_tready": In(1),
            "m_axis_tlast": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = unit = self.unit
        beat = Signal(range(self.out_beats))
        m.d.comb += [
            unit.i_data.payload.eq(self.s_axis_tdata),
            unit.i_data.valid.eq(self.s_axis_tvalid),
            self.s_axis_tready.eq(unit.i_data.ready),
            self.m_axis_tdata.eq(unit.o_data.payload.as_value()),
            self.m_axis_tvalid.eq(unit.o_data.valid),
            unit.o_data.ready.eq(self.m_axis_tready),
            self.m_axis_tlast.eq(beat == self.out_beats - 1),
        ]
        with m.If(self.m_axis_tvalid & self.m_axis_tready):
            m.d.sync += beat.eq(Mux(beat == self.out_beats - 1, 0, beat + 1))
        return m


def io_of(in_dtype, in_elems, n_in, out_dtype, out_elems, n_out):
    def side(dtype, elements, per_beat):
        return {"dtype": str(dtype), "elements": elements, "elements_per_beat": per_beat,
                "bits_per_element": dtype.shape.width}
    return {"input": side(in_dtype, in_elems, n_in), "output": side(out_dtype, out_elems, n_out)}


WINDOWS = {
    "part-of-pixel": WindowParams(channels=4, height=7, width=6, kernel=(3, 2), stride=(2, 1),
                                  dilation=(1, 2), padding=(1, 2, 0, 1), pad_value=-5,
                                  dtype="int4", n_in=4, n_out=2),
    "kernel-row-per-beat": WindowParams(channels=3, height=6, width=7, kernel=3, padding=1,
                                        pad_value=1, dtype="bipolar", n_in=3, n_out=9),
}
POOLS = {
    "sum-requant": PoolParams(kind="sum", channels=4, height=7, width=5, kernel=(3, 2),
                              padding=(1, 0, 1, 1), dtype="uint4", n=2, out_kind="requant",
                              out_dtype="uint4", mult=[7000, 9000, 12000, 30000], shift=15),
    "max-bipolar": PoolParams(kind="max", channels=4, height=5, width=7, kernel=(2, 3),
                              stride=(2, 2), padding=(1, 1, 0, 0), dtype="bipolar", n=4),
}


@pytest.fixture(scope="module", params=list(WINDOWS))
def window_design(request, tmp_path_factory):
    params = WINDOWS[request.param]
    path = tmp_path_factory.mktemp("window") / "window_top.v"
    top = AxisWrapper(WindowUnit(params), params.out_beats)
    path.write_text(verilog.convert(top, name="window_top", emit_src=False))
    return params, path


@pytest.fixture(scope="module", params=list(POOLS))
def pool_design(request, tmp_path_factory):
    params = POOLS[request.param]
    path = tmp_path_factory.mktemp("pool") / "pool_top.v"
    top = AxisWrapper(Pool(params), params.out_beats)
    path.write_text(verilog.convert(top, name="pool_top", emit_src=False))
    return params, path


@pytest.mark.verilator
@pytest.mark.parametrize(("idle", "stall"), PATTERNS, ids=IDS)
def test_window_unit_bit_exact(window_design, idle, stall):
    p, path = window_design
    rng = np.random.default_rng(int(idle * 10 + stall * 100))
    maps = [random_map(rng, p.dtype, p.channels, p.height, p.width) for _ in range(5)]
    x_bits = np.stack([p.dtype.encode(to_hwc(x)) for x in maps])
    io = io_of(p.dtype, p.height * p.width * p.channels, p.n_in, p.dtype,
               p.out_beats * p.n_out, p.n_out)
    result = run(path, "window_top", io, x_bits, idle=idle, stall=stall, seed=3)
    expected = np.stack([p.dtype.encode(patch_stream(x, p)) for x in maps])
    assert compare(expected, result.outputs_bits, "window patches") == expected.size
    if not idle and not stall:
        assert abs(result.cycles_per_inference - p.expected_cycles) <= 0.05 * p.expected_cycles


@pytest.mark.verilator
@pytest.mark.parametrize(("idle", "stall"), PATTERNS, ids=IDS)
def test_pool_unit_bit_exact(pool_design, idle, stall):
    p, path = pool_design
    rng = np.random.default_rng(int(idle * 10 + stall * 100) + 1)
    maps = [random_map(rng, p.dtype, p.channels, p.height, p.width) for _ in range(5)]
    x_bits = np.stack([p.dtype.encode(to_hwc(x)) for x in maps])
    io = io_of(p.dtype, p.height * p.width * p.channels, p.n, p.out_elem_dtype,
               p.out_beats * p.n, p.n)
    result = run(path, "pool_top", io, x_bits, idle=idle, stall=stall, seed=4)
    expected = np.stack([p.out_elem_dtype.encode(to_hwc(pool(x, p))) for x in maps])
    assert compare(expected, result.outputs_bits, "pooled maps") == expected.size
    if not idle and not stall:
        assert abs(result.cycles_per_inference - p.expected_cycles) <= 0.05 * p.expected_cycles
