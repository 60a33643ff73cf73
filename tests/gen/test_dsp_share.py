"""The generator's DSP share (``--board``): lane multipliers past the board's DSP blocks are
built in logic, shown in the manifest, modelled by the resource estimate, and the design stays
bit-exact."""

import numpy as np
import pytest

from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Options
from nnaccel.gen.resources import DEVICES, Device, estimate_plan
from nnaccel.gen.zoo import resnet8 as zoo

TINY = {"stacks": (2, 4, 4), "input_shape": (3, 8, 8), "calibration": 4}
#: An ECP5 with 40 DSP blocks: the tiny ResNet's requantisers need 22 (a lane whose multiplier
#: is a constant power of two, such as the joins' 1, is a shift), its lanes 61 more.
SMALL = Device("LFE5U-test", "ecp5", 83_640, 83_640, 208, 40)


@pytest.fixture(scope="module")
def tiny():
    return zoo.resnet8_model(**TINY, name="r8_dsp")


def _mvu_entries(design):
    return [e for e in design.manifest["layers"] if "logic_multipliers" in e]


def test_multipliers_past_the_budget_go_to_logic(tiny):
    free = generate(tiny, Options(target_cycles=300, board=DEVICES["LFE5U-85F"]))
    small = generate(tiny, Options(target_cycles=300, board=SMALL))
    before, after = _mvu_entries(free), _mvu_entries(small)
    # the same folds; with room for all, nothing is in logic
    assert [e["lanes"] for e in before] == [e["lanes"] for e in after]
    assert all(e["logic_multipliers"] == 0 for e in before)
    assert sum(e["logic_multipliers"] for e in after) > 0
    for e in after:
        assert e["dsp_multipliers"] + e["logic_multipliers"] == e["lanes"], e["name"]
    # the estimate counts the DSP blocks left (requantisers included) within the device's
    used = sum(est.dsp for _, _, est in estimate_plan(small.plan, SMALL))
    full = sum(est.dsp for _, _, est in estimate_plan(free.plan, SMALL))
    assert used == SMALL.dsp < full
    # every DSP block the requantisers leave goes to a lane: 40 - 22
    assert full - sum(e["lanes"] for e in before) == 22
    assert sum(e["dsp_multipliers"] for e in after) == 18
    # the multipliers moved to logic cost LUT4s instead
    lut = sum(est.lut4 for _, _, est in estimate_plan(small.plan, SMALL))
    assert lut > sum(est.lut4 for _, _, est in estimate_plan(free.plan, SMALL))


@pytest.mark.verilator
def test_split_graph_bit_exact_under_stalls(tiny):
    """The tiny ResNet with most multipliers in logic, four images under random stalls on the
    streams, equal to ``Model.forward``."""
    from nnaccel.sim.design import simulate

    design = generate(tiny, Options(target_cycles=300, board=SMALL))
    assert sum(e["logic_multipliers"] for e in _mvu_entries(design)) > 0
    X = zoo.zoo_inputs(TINY["input_shape"], 4, seed=3)
    out, _ = simulate(design, X, idle=0.3, stall=0.3, seed=5)
    assert np.array_equal(np.asarray(out), np.asarray(tiny.forward(X)))
