"""The sparse mapper's PE count: more PEs only while a step pays (cost against benefit)."""

import gc
import warnings

import pytest

from nnaccel.gen.engines import SparseChoice
from nnaccel.gen.engines.sparse import MIN_PE_GAIN, pe_steps
from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Options

from .test_engine_mapping import mixed_model


@pytest.fixture(autouse=True)
def _collect_unused_designs():
    with warnings.catch_warnings():
        yield
        gc.collect()


def _gain_rule(steps):
    """Index of the step the gain rule alone stops at."""
    chosen = 0
    while chosen + 1 < len(steps) and steps[chosen + 1][2] >= MIN_PE_GAIN:
        chosen += 1
    return chosen


def test_stops_adding_pes_when_the_gain_falls():
    # 64-256-128 at 10%: with a budget of 256 lanes the fastest choice would take every PE
    model = mixed_model(7, [64, 256, 128], [0.1, 0.1])
    plan = generate(model, Options(max_lanes=256), stop_after="configure")
    steps = [pe_steps(lp.layer, 8, lp.layer.out_features) for lp in plan.layers]
    gain = [s[_gain_rule(s)] for s in steps]
    pace = max(cycles for _, cycles, _ in gain)
    for lp, layer_steps, (gain_pe, _, _) in zip(plan.layers, steps, gain, strict=True):
        chosen = [s[0] for s in layer_steps].index(lp.params.pe)
        assert all(r >= MIN_PE_GAIN for _, _, r in layer_steps[1:chosen + 1])
        # the fewest PEs that keep pace with the slowest layer, never more than the gain rule's
        assert lp.params.pe <= gain_pe
        assert layer_steps[chosen][1] <= pace
        assert chosen == 0 or layer_steps[chosen - 1][1] > pace
        assert not lp.warnings
    assert sum(lp.params.pe for lp in plan.layers) < 256 // 2


def test_balance_saves_pes_and_no_cycles():
    # the first layer (64 inputs) alone would take twice the PEs it needs to keep pace with the
    # second (256 inputs: at least 256 cycles, one broadcast per input)
    model = mixed_model(7, [64, 256, 128], [0.1, 0.1])
    plan = generate(model, Options(max_lanes=256), stop_after="configure")
    steps = [pe_steps(lp.layer, 8, lp.layer.out_features) for lp in plan.layers]
    gain = [s[_gain_rule(s)] for s in steps]
    assert plan.layers[0].params.pe < gain[0][0]
    cycles = [s[[c[0] for c in s].index(lp.params.pe)][1]
              for lp, s in zip(plan.layers, steps, strict=True)]
    assert max(cycles) == max(c for _, c, _ in gain)
    # a target or a forced count is not balanced away
    forced = generate(model, Options(max_lanes=256, sparse=(("fc0", SparseChoice(gain[0][0])),)),
                      stop_after="configure")
    assert forced.layers[0].params.pe == gain[0][0]


def test_manifest_shows_the_steps_and_a_forced_count_is_warned_about():
    model = mixed_model(7, [64, 256, 128], [0.1, 0.1])
    design = generate(model, Options(max_lanes=256))
    entry = design.manifest["layers"][1]
    assert str(MIN_PE_GAIN) in entry["pe_rule"]
    steps = entry["pe_steps"]
    assert steps[0]["realised"] is None and steps[-1]["pe"] == 2 * entry["pe"]
    assert steps[-1]["realised"] < MIN_PE_GAIN <= steps[-2]["realised"]
    assert not design.manifest["warnings"]
    forced = generate(model, Options(sparse=(("fc1", SparseChoice(64)),)))
    assert any("per PE per input column" in w for w in forced.manifest["warnings"])


def test_budget_still_bounds_the_count():
    model = mixed_model(7, [64, 256, 128], [0.1, 0.1])
    plan = generate(model, Options(max_lanes=8), stop_after="configure")
    assert sum(lp.params.pe for lp in plan.layers) <= 8


def test_output_stage_as_narrow_as_the_read_out_allows():
    """Each layer's output stage gets the fewest lanes (a divisor of its PEs) with which its
    cycles, with dense activations and with READOUT_DENSITY of them, stay those of one lane
    per PE; the next fewer would slow one of them. The 64-256-128 layers at 10 % take a few
    hundred cycles a vector and read out 256 / N rows: several lanes fewer than PEs."""
    from dataclasses import replace

    import numpy as np

    from nnaccel.gen.engines.base import divisors
    from nnaccel.gen.engines.sparse import READOUT_DENSITY, encoded_matrix

    model = mixed_model(7, [64, 256, 128], [0.1, 0.1])
    plan = generate(model, Options(max_lanes=64), stop_after="configure")
    narrowed = 0
    for lp in plan.layers:
        p = lp.params
        counts = encoded_matrix(lp).column_counts()
        k = p.in_features
        spread = np.diff(np.floor(np.arange(k + 1) * READOUT_DENSITY)) > 0
        inputs = [np.ones((2, k), dtype=bool), np.tile(spread, (2, 1))]

        def cycles(q, counts=counts, inputs=inputs):
            return [q.cycle_report(counts, a).cycles_per_inference for a in inputs]

        full = cycles(replace(p, out_lanes=p.pe))
        assert cycles(p) == full
        fewer = [d for d in divisors(p.pe) if d < p.out_lanes]
        if fewer:
            assert any(c > f for c, f in zip(cycles(replace(p, out_lanes=fewer[-1])), full,
                                             strict=True))
        narrowed += p.out_lanes < p.pe
        assert lp.adapter.manifest(lp)["out_lanes"] == p.out_lanes
    assert narrowed == len(plan.layers)
