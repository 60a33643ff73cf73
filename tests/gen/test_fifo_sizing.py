"""Branch-FIFO depths measured on the graph's own schedule (``Options(fifo_sizing=
"simulation")``, :mod:`nnaccel.gen.fifo_sizing`), checked on the generated design through the
AXI top with random data (not the zeros the sizing ran): bit-exact under the four stall
patterns, no deadlock and the slowest layer's rate (exactly, outer streams at full rate) at the
computed depths, and every FIFO marked critical one entry shorter makes that check fail
(deadlock within the cycle limit, or more cycles per image).
"""

import copy

import numpy as np
import pytest

from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Options

from ..helpers import run_back_to_back
from .cnn_models import tiny_res
from .test_cnn_lowering import inputs
from .test_graph_lowering import check_all_patterns, residual


def steady_rate(design, X, skip):
    """Cycles per image from the end of image ``skip`` to the last, back to back through the
    AXI top (outer streams at full rate), or None if the design stopped (deadlock)."""
    limit = 3 * design.manifest["expected_cycles_per_inference"] * len(X) + 4000
    ends, _ = run_back_to_back(design, X, limit=limit)
    if len(ends) < len(X):
        return None
    return (ends[-1] - ends[skip]) / (len(X) - 1 - skip)


def one_shorter(design, fifo):
    """A copy of ``design`` whose FIFO ``fifo`` (a manifest entry) is one beat shorter (its
    hardware not built yet: built from the copied FIFO plan on first use)."""
    names = [lp.layer.name for lp in design.plan.layers]
    out = copy.copy(design)
    for built in ("network", "top", "_verilog_text"):  # cached on first use: built anew
        out.__dict__.pop(built, None)
    out.fifos = copy.deepcopy(design.fifos)
    out.fifos[names.index(fifo["layer"])][fifo["port"]]["depth"] -= 1
    return out


def check_tight(design, seed):
    """At the computed depths: no deadlock, the slowest layer's cycles per image (exactly);
    each critical FIFO one beat shorter: a deadlock or more cycles per image. Random data, as
    many images as the sizing ran. Returns the critical FIFOs."""
    model = design.plan.model
    sized = [f for f in design.manifest["fifos"] if f.get("sizing") == "simulation"]
    schedule = sized[0]["schedule"]
    X = inputs(np.random.default_rng(seed + 11), model, schedule["images"])
    expected = design.manifest["expected_cycles_per_inference"]
    rate = steady_rate(design, X, schedule["skip"])
    assert rate is not None, "the graph deadlocked at the computed depths"
    assert rate <= expected, f"{rate} cycles per image, slowest layer {expected}"
    critical = [f for f in sized if f["critical"]]
    for fifo in critical:
        shorter = steady_rate(one_shorter(design, fifo), X, schedule["skip"])
        assert shorter is None or shorter > rate, (fifo["layer"], fifo["port"], shorter, rate)
    return critical


def test_tiny_res_tight_skip_fifo():
    """SPEC's tiny_res at 16 lanes: the skip FIFO (r's port 0, from c1) is critical and far
    below the closed-form rule's depth; bit-exact under stalls at the measured depths."""
    model = tiny_res(0)
    design = check_all_patterns(model, Options(max_lanes=16, fifo_sizing="simulation"))
    skip = next(f for f in design.manifest["fifos"] if (f["layer"], f["port"]) == ("r", 0))
    assert skip["sizing"] == "simulation" and skip["depth"] < skip["rule_depth"]
    critical = check_tight(design, 0)
    assert skip in critical
    assert "peak occupancy" in skip["rule"] and f"at {skip['depth'] - 1}" in skip["rule"]
    print(f"tiny_res r.0: {skip['depth']} (rule {skip['rule_depth']}): {skip['rule']}")


@pytest.mark.long
@pytest.mark.parametrize("lanes", [16, 64, 256])
@pytest.mark.parametrize("seed", range(4))
def test_random_residual_graphs_tight_fifos(seed, lanes):
    """Random residual graphs (forks into 2..3 consumers, add or concat joins): at the measured
    depths no deadlock and the slowest layer's rate; every critical FIFO one shorter fails;
    bit-exact under the four stall patterns."""
    design = generate(residual(seed), Options(max_lanes=lanes, fifo_sizing="simulation"))
    branch = [f for f in design.manifest["fifos"] if f.get("sizing") == "simulation"]
    assert branch and all(f["depth"] <= f["rule_depth"] for f in branch)
    check_tight(design, seed)
    check_all_patterns(design.plan.model, None, seed=seed, design=design)
    print(f"res_{seed} at {lanes} lanes: " + "; ".join(
        f"{f['layer']}.{f['port']} {f['depth']} (rule {f['rule_depth']}, peak {f['peak']}"
        + (", critical)" if f["critical"] else ")") for f in branch))


def test_the_rule_where_simulation_does_not_apply():
    """A graph with a sparse layer (its cycles follow the data) keeps the rule's depths; a
    chain has no join FIFO; a misspelt choice is refused."""
    from .test_sparse_conv_lowering import pruned_res

    model = pruned_res(0)
    ruled = generate(model, Options(max_lanes=16))
    sized = generate(model, Options(max_lanes=16, fifo_sizing="simulation"))
    assert sized.manifest["fifos"] == ruled.manifest["fifos"]
    assert not any("sizing" in f for f in sized.manifest["fifos"])
    with pytest.raises(ValueError, match="fifo_sizing"):
        generate(tiny_res(0), Options(fifo_sizing="simulate"))


def test_cli_fifo_sizing_option(capsys):
    """``--fifo-sizing simulation`` reaches Options; another value exits 2 naming the option."""
    from nnaccel import cli

    parser = cli.build_parser()
    model = tiny_res(0)
    args = parser.parse_args(["generate", "m", "-o", "out", "--fifo-sizing", "simulation"])
    assert cli._options(args, model).fifo_sizing == "simulation"
    assert cli._options(parser.parse_args(["generate", "m", "-o", "out"]), model) == Options()
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["generate", "m", "-o", "out", "--fifo-sizing", "exact"])
    assert stop.value.code == 2 and "--fifo-sizing" in capsys.readouterr().err
