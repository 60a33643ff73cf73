"""Window unit -> vector-vector unit (a depthwise or grouped conv2d layer) through generated
Verilog under Verilator and cocotb, behind the AXI4-Stream ports of the generated top level: one
"vector" is one image in and its output map (HWC) out. Several images back to back under every
stall pattern must equal SPEC 2.1b + 2.2 (hw/common/reference)."""

import numpy as np
import pytest
from amaranth.back import verilog

from nnaccel.hw.vvau.engine import VVAUConvolution
from nnaccel.hw.window.reference import to_hwc
from nnaccel.sim.scoreboard import compare
from nnaccel.sim.verilator import run

from ..hw.map_streams import random_map
from ..hw.test_vvau import expected_map, layer_case
from .test_window_verilator import IDS, PATTERNS, AxisWrapper, io_of

LAYERS = {
    # 3x3 depthwise, multiplier 2, int8, stride 2 with asymmetric padding, requant
    "dw-int8-k2": lambda rng: layer_case(
        rng, c=4, groups=4, mg=2, dtype="int8", wdtype="int8", kind="requant",
        geometry=dict(height=7, width=6, kernel=(3, 3), stride=(2, 1), dilation=(1, 1),
                      padding=(1, 1, 0, 2)), pe=2, n_in=4, pad_value=-7),
    # grouped (G = 2 of 3 channels), bipolar XNOR lanes padded with +1, 2x3 dilated, threshold
    "grouped-bipolar": lambda rng: layer_case(
        rng, c=6, groups=2, mg=2, dtype="bipolar", wdtype="bipolar", kind="threshold",
        geometry=dict(height=6, width=7, kernel=(2, 3), stride=(1, 2), dilation=(2, 1),
                      padding=(0, 1, 1, 1)), pe=1, n_in=3, pad_value=1),
    # 3x3 depthwise with a kernel row (3 window positions) per beat, uint4 maps, int4 weights
    "dw-simd3": lambda rng: layer_case(
        rng, c=4, groups=4, mg=1, dtype="uint4", wdtype="int4", kind="requant",
        geometry=dict(height=6, width=5, kernel=(3, 3), stride=(1, 1), dilation=(1, 2),
                      padding=(1, 2, 1, 2)), pe=4, simd=3, n_in=2, pad_value=9),
}


@pytest.fixture(scope="module", params=list(LAYERS))
def vvau_design(request, tmp_path_factory):
    params, weight, bias, stage = LAYERS[request.param](np.random.default_rng(len(request.param)))
    m, oh, ow = params.out_shape
    path = tmp_path_factory.mktemp("vvau") / "vvau_top.v"
    top = AxisWrapper(VVAUConvolution(params, weight=weight), oh * ow * params.blocks)
    path.write_text(verilog.convert(top, name="vvau_top", emit_src=False))
    return params, weight, bias, stage, path


@pytest.mark.verilator
@pytest.mark.parametrize(("idle", "stall"), PATTERNS, ids=IDS)
def test_vvau_convolution_bit_exact(vvau_design, idle, stall):
    p, weight, bias, stage, path = vvau_design
    rng = np.random.default_rng(int(idle * 10 + stall * 100) + 5)
    maps = [random_map(rng, p.in_dtype, *p.in_shape) for _ in range(5)]
    x_bits = np.stack([p.in_dtype.encode(to_hwc(x)) for x in maps])
    out_dt = stage["out_dtype"]
    m, oh, ow = p.out_shape
    io = io_of(p.in_dtype, int(np.prod(p.in_shape)), p.n_in, out_dt, m * oh * ow, p.out_beat)
    result = run(path, "vvau_top", io, x_bits, idle=idle, stall=stall, seed=6)
    expected = np.stack([out_dt.encode(to_hwc(expected_map(p, weight, bias, stage, x)))
                         for x in maps])
    assert compare(expected, result.outputs_bits, "vvau output maps") == expected.size
    if not idle and not stall:
        assert abs(result.cycles_per_inference - p.expected_cycles) <= 0.05 * p.expected_cycles
