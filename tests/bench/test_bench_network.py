"""The network alone out of context (nnaccel.bench.network): two int4 products per DSP block."""

import numpy as np
import pytest

from nnaccel.bench.network import network_build
from nnaccel.hw.common.dtype import DType
from nnaccel.hw.mvu.engine import MatrixVectorUnit
from nnaccel.hw.mvu.params import MVUParams


@pytest.mark.slow  # yosys and nextpnr, about a minute
@pytest.mark.parametrize("wdt,pairs", [("int4", True), ("int5", False)])
def test_int4_weights_use_half_the_dsp_blocks(tmp_path, wdt, pairs):
    """An MVU of 4 PEs x 3 SIMD on int8 inputs, identity output stage: int4 weights take 6
    MULT18X18D (two products each), int5 weights 12."""
    wd = DType.parse(wdt)
    w = np.random.default_rng(3).integers(wd.lo, wd.hi + 1, size=(8, 6))
    params = MVUParams.for_layer(weight=w, pe=4, simd=3, in_dtype=DType.parse("int8"),
                                 weight_dtype=wd)
    assert params.packed_products is pairs
    result = network_build(MatrixVectorUnit(params, weight=w), tmp_path)
    assert result["mult"] == params.multipliers == (6 if pairs else 12)
    assert result["fmax_mhz"] > 0 and result["lut4"] > 0
