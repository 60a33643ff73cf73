"""The resource and timing model (gen/resources.py): its arithmetic on hand-checked cases, the
device-budget fold chooser (never over the budget), and the CLI's --report / --board --fill.

Accuracy against yosys is measured by ``python -m nnaccel.bench.fit`` (the bench), not here.
"""

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from nnaccel import cli
from nnaccel.gen import resources
from nnaccel.gen.errors import UsageError
from nnaccel.gen.generate import generate
from nnaccel.gen.plan import Options
from nnaccel.gen.resources import (
    DEVICES,
    Bill,
    Memory,
    dsp_blocks,
    estimate,
    estimate_plan,
    lanes_bill,
    memory_map,
    packed_bill,
)

from .random_models import random_model

ECP5_85 = DEVICES["LFE5U-85F"]


# -- arithmetic ----------------------------------------------------------------------------------

#: memory_map's keys of a weight table's registers and bank multiplexer, none elsewhere.
NO_TABLE = {"bram_q": 0, "bank_mux": 0, "address_bits": 0}


def test_weight_table_bills_its_bank_registers_and_multiplexer():
    """A weight table of 4,608 words of 128 bits (CNV's c5 at 4x32): nine banks of 512 x 36
    blocks, each bank's output register and one after the bank multiplexer (flip-flops in
    yosys), a 9:1 multiplexer per bit; one bank: its output register alone."""
    deep = memory_map(Memory(4608, 128, table=True))
    assert deep["bram"] == 36
    assert (deep["bram_q"], deep["bank_mux"]) == (128 * 10, 128 * 8)
    one = memory_map(Memory(512, 128, table=True))
    assert (one["bram"], one["bram_q"], one["bank_mux"]) == (4, 128, 0)
    assert memory_map(Memory(4608, 128, table=True, force="logic"))["bram_q"] == 0


def test_a_logic_table_counts_the_copies_of_its_address():
    """CNV's c3 weights in logic (72 x 2,048 bits, 5 LUT4s a bit: 10,240 / 128 = 80 copies of
    its 7-bit address), 79 beyond the first: a counter and a register each."""
    mapped = memory_map(Memory(72, 2048, table=True, force="logic"))
    assert mapped["address_bits"] == 79 * 7
    assert memory_map(Memory(72, 2048, force="logic"))["address_bits"] == 0   # not a table
    with_copies = estimate(Bill(memories=(Memory(72, 2048, table=True, force="logic"),)), ECP5_85)
    without = estimate(Bill(memories=(Memory(72, 2048, force="logic"),)), ECP5_85)
    assert (with_copies.lut4 - without.lut4, with_copies.ff - without.ff) == (553, 1106)


def test_rom_goes_to_block_ram_when_logic_costs_more():
    # 160 x 104 bits: 16,640 / 16 = 1,040 > 128 * 3 blocks of 512 x 36
    assert memory_map(Memory(160, 104)) == {"bram": 3, "lutram": 0, "rom": 0, "ram": 0,
                                            "lutram_mux": 0, **NO_TABLE}
    # 32 x 17 bits: 544 / 16 = 34 <= 128 * 1: LUTs, 17 bits x 2 slices of 16 words
    assert memory_map(Memory(32, 17)) == {"bram": 0, "lutram": 0, "rom": 34, "ram": 0,
                                          "lutram_mux": 0, **NO_TABLE}
    # a shallow very wide ROM (a fast fold's weights): 8 x 4,096 bits -> logic, not 114 blocks
    assert memory_map(Memory(8, 4096))["rom"] == 4096
    # the hardware may force either place
    assert memory_map(Memory(8, 4096, force="bram"))["bram"] == 114
    # 160 words: 10 LUT4s of 16 words a bit, and 2 multiplexers joining three 64-word groups
    assert memory_map(Memory(160, 104, force="logic"))["rom"] == 104 * (10 + 2)
    assert memory_map(Memory(64, 8, force="logic"))["rom"] == 8 * 4
    assert memory_map(Memory(65, 8, force="logic"))["rom"] == 8 * (5 + 1)


def test_ram_goes_where_it_is_cheapest():
    # a FIFO of 16 x 16: 4 DPR16X4 (cost 16) beat 256 flip-flops and a block (128)
    assert memory_map(Memory(16, 16, rom=False)) == {"bram": 0, "lutram": 4, "rom": 0, "ram": 0,
                                                     "lutram_mux": 0, **NO_TABLE}
    # 40 x 10: 3 cells deep, 3 wide, and a 3:1 read multiplexer on each of the 10 bits
    assert memory_map(Memory(40, 10, rom=False)) == {"bram": 0, "lutram": 9, "rom": 0, "ram": 0,
                                                     "lutram_mux": 2 * 10, **NO_TABLE}
    # a line buffer of 512 x 36: one block
    assert memory_map(Memory(512, 36, rom=False))["bram"] == 1
    # two copies, and a one-word memory is absorbed by the logic
    assert memory_map(Memory(16, 8, rom=False, copies=2))["lutram"] == 4
    assert memory_map(Memory(1, 64)) == {"bram": 0, "lutram": 0, "rom": 0, "ram": 0,
                                         "lutram_mux": 0, **NO_TABLE}


def test_multipliers_in_dsp_blocks():
    assert dsp_blocks(8, 4) == 1
    assert dsp_blocks(18, 18) == 1
    assert dsp_blocks(20, 16) == 2
    assert dsp_blocks(36, 36) == 4
    assert dsp_blocks(1, 8) == 0          # a 1-bit operand stays in logic
    assert dsp_blocks(16, 16, "ice40") == 1 and dsp_blocks(17, 16, "ice40") == 2


def test_estimate_is_the_coefficients_times_the_bill(monkeypatch):
    coeff = {"lut4": {"layer": 10.0, "xnor": 2.0, "acc": 1.0, "rom": 1.0, "lane_bits": 0.5},
             "ff": {"layer": 5.0, "acc": 1.0, "xnor": 0.25}}
    monkeypatch.setattr(resources, "_coefficients", lambda family: coeff)
    bill = Bill(quantities={"layer": 1, "xnor": 32, "acc": 40},
                memories=(Memory(32, 17), Memory(160, 104), Memory(16, 16, rom=False)),
                multipliers=((1, 8, 4), (8, 8, 3)))
    est = estimate(bill, ECP5_85)
    # LUT4: 10 + 2*32 + 40 + ROM 34 + 0.5 * (1*8*4 lane bits) + 6 * 4 DPR16X4
    assert est.lut4 == 10 + 64 + 40 + 34 + 16 + 24
    assert est.ff == 5 + 40 + 8
    assert est.bram == 3 and est.dsp == 3


def test_lanes_bill_by_lane_kind():
    xnor = lanes_bill(4, 8, "xnor", 1, 1, 5)
    assert xnor.quantities == {"layer": 1, "acc": 20, "xnor": 32}
    assert xnor.multipliers == () and xnor.tree_width == 8
    mul = lanes_bill(2, 3, "mul", 8, 4, 16)
    assert mul.multipliers == ((8, 4, 6),) and mul.quantities["tree"] == 6 * 12
    add = lanes_bill(2, 3, "addsub_w", 1, 8, 12)
    assert add.quantities["lane_bits"] == 6 * 8 and add.quantities["addsub_tree"] == 6 * 9
    assert "tree" not in add.quantities and "addsub_tree" not in mul.quantities


def test_packed_products_bill_their_packing_adders():
    """Two products in one multiplier (the MVU's packed_products): per multiplier, the high
    weight less the low one's sign (a 5-bit subtract for int4 weights) and the high product
    plus the low one's sign (as wide as a product: 8 bits for int4 x int4 and for int4 x
    uint4); with unsigned weights and inputs nothing needs correcting. The int4 MLP's fc1 at
    2 PEs x 8: 8 multipliers, each shared by the two PEs."""
    from nnaccel.gen.zoo.random_mlp import prime_int4_model
    from nnaccel.hw.common.dtype import DType

    int4, uint4 = DType.parse("int4"), DType.parse("uint4")
    assert packed_bill(int4, int4, 3).quantities == {"lane_bits": 3 * (5 + 8)}
    assert packed_bill(int4, uint4, 1).quantities == {"lane_bits": 5 + 8}
    assert packed_bill(uint4, uint4, 2).quantities == {"lane_bits": 0}
    model = prime_int4_model(0, widths=(64, 32, 10))
    design = generate(model, Options(folds=(("fc1", _fold(2, 8)), ("fc2", _fold(1, 2)))))
    fc1 = design.plan.layers[0]
    assert fc1.params.packed_products and fc1.params.multipliers == 8
    assert (fc1.params.weight_dtype, fc1.params.in_dtype) == (int4, int4)
    assert fc1.adapter.resources(fc1).quantities["lane_bits"] == 8 * 13


def test_fmax_falls_with_tree_width_and_gives_a_simd_cap():
    f = [resources.fmax_estimate(w, 16) for w in (2, 16, 128)]
    assert f[0] > f[1] > f[2]
    cap = resources.simd_cap(f[1])
    assert resources.fmax_estimate(2 * cap, 16) < resources.fmax_estimate(cap, 16)
    assert resources.simd_cap(1e6) == 1


def test_mvu_layer_bill_matches_its_params():
    """The int8 64-32-10 MLP at 16 lanes: the weight memories (160 x 104 and 160 x 16 bits) go
    to 3 + 1 block RAMs, and every multiply lane plus fc1's requantising multiply is a DSP."""
    from nnaccel.gen.zoo.random_mlp import prime_int4_model

    model = prime_int4_model(0, widths=(64, 32, 10))
    design = generate(model, Options(folds=(("fc1", _fold(1, 13)), ("fc2", _fold(1, 2)))))
    rows = estimate_plan(design.plan, ECP5_85)
    p = [lp.params for lp in design.plan.layers]
    assert p[0].weight_words_shape == (32 * 5, 13 * 4)
    assert rows[0][2].dsp == 13 + rows[0][1].multipliers[-1][2] * (len(rows[0][1].multipliers)
                                                                   - 1)
    assert rows[1][2].dsp == 2 + (len(rows[1][1].multipliers) - 1)


def _fold(pe, simd):
    from nnaccel.gen.folding import Fold

    return Fold(pe, simd)


# -- the device-budget chooser -------------------------------------------------------------------

def _total(design, device):
    total = None
    for _, _, est in estimate_plan(design.plan, device, design.fifos):
        total = est if total is None else total.plus(est)
    return total


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), fill=st.sampled_from([0.02, 0.05, 0.2, 0.8]),
       part=st.sampled_from(["LFE5U-12F", "LFE5U-85F"]))
@example(seed=415, fill=0.2, part="LFE5U-12F")   # gearboxes and logic multipliers once missed
def test_chooser_never_exceeds_the_budget(seed, fill, part):
    rng = np.random.default_rng(seed)
    model = random_model(rng)
    device = DEVICES[part]
    try:
        design = generate(model, Options(board=device, fill=fill))
    except UsageError as e:
        assert "--fill" in str(e) and "no folding fits" in str(e)
        return
    total = _total(design, device)
    assert total.lut4 <= fill * device.lut4
    assert total.bram <= fill * device.bram
    assert total.dsp <= fill * device.dsp


def test_more_fill_never_gives_less_throughput():
    from nnaccel.gen.zoo.random_mlp import sfc_model

    model = sfc_model(0, widths=(196, 64, 64, 10))
    rates = []
    for fill in (0.03, 0.1, 0.4):
        design = generate(model, Options(board=ECP5_85, fill=fill))
        total = _total(design, ECP5_85)
        assert total.lut4 <= fill * ECP5_85.lut4
        rates.append(total.fmax_mhz / design.manifest["expected_cycles_per_inference"])
    assert rates[0] < rates[1] <= rates[2]


def test_no_folding_fits_a_tiny_budget():
    from nnaccel.gen.zoo.random_mlp import sfc_model

    with pytest.raises(UsageError, match="--fill 0.001: no folding fits"):
        generate(sfc_model(0), Options(board=DEVICES["LFE5U-12F"], fill=0.001))


# -- command line --------------------------------------------------------------------------------

@pytest.fixture
def tiny(tmp_path):
    from tests.test_cli import write_model_dir

    return write_model_dir(tmp_path / "tiny")


def test_generate_report_prints_the_table(tiny, tmp_path, capsys):
    assert cli.main(["generate", str(tiny), "-o", str(tmp_path / "o"), "--report"]) == 0
    out = capsys.readouterr().out
    head = out.splitlines()[0].split()
    assert head == ["layer", "engine", "fold", "lanes", "cycles", "lut4", "ff", "bram", "dsp",
                    "fmax_mhz"]
    assert any(line.startswith("fc1 ") for line in out.splitlines())
    assert "estimated on the LFE5U-85F" in out


def test_generate_report_json_and_fill(tiny, tmp_path, capsys):
    argv = ["generate", str(tiny), "-o", str(tmp_path / "o"), "--report", "--json",
            "--board", "ulx3s-12f", "--fill", "0.5"]
    assert cli.main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    report = doc["report"]
    assert [r["layer"] for r in report["layers"]] == ["fc1", "fc2"]
    assert report["device"]["name"] == "LFE5U-12F"
    assert report["total"]["lut4"] <= 0.5 * report["device"]["lut4"]
    assert doc["manifest"]["layers"][0]["lanes"] == report["layers"][0]["lanes"]


@pytest.mark.parametrize("argv, needle", [
    (["--fill", "0"], "--fill"),
    (["--fill", "1.5"], "--fill"),
    (["--fill", "x"], "--fill"),
    (["--fill", "0.5", "--max-lanes", "4"], "--fill"),
])
def test_bad_fill_exits_2(tiny, tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as info:
        cli.main(["generate", str(tiny), "-o", str(tmp_path / "o"), "--board", "ulx3s-85f",
                  *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, needle", [
    (["--fill", "0.5"], "--fill: needs --board"),
    (["--board", "nosuchboard", "--fill", "0.5"], "unknown board 'nosuchboard'"),
])
def test_fill_board_errors_exit_2(tiny, tmp_path, capsys, argv, needle):
    from tests.test_cli import assert_one_error

    assert cli.main(["generate", str(tiny), "-o", str(tmp_path / "o"), *argv]) == 2
    assert_one_error(capsys.readouterr().err, needle)
    assert not (tmp_path / "o").exists()


#: A fill at which the chooser's cheapest folds still need weights in block RAM (at 0.045
#: the fitted coefficients find a fold whose weight memories are logic anyway).
FEW = 0.035


def test_chooser_moves_weights_into_logic_when_block_ram_runs_out():
    """On a device of few block RAMs the fold chooser puts weight memories that the fixed rule
    (``choose_storage``) would give block RAM into logic ROMs, and still keeps the budget;
    forcing every weight memory into block RAM leaves no folding that fits."""
    from dataclasses import replace

    from nnaccel.gen.zoo.random_mlp import sfc_model
    from nnaccel.hw.common.memory import Storage

    model = sfc_model(0, widths=(196, 64, 64, 10))
    device = replace(ECP5_85, name="few-brams", bram=4)
    design = generate(model, Options(board=device, fill=FEW))
    total = _total(design, device)
    assert total.lut4 <= FEW * device.lut4 and total.bram <= FEW * device.bram
    moved = [lp for lp in design.plan.layers if lp.storage is Storage.LOGIC
             and replace(lp.params, weight_storage=Storage.AUTO).weight_memory
             is Storage.BRAM]
    assert moved, [lp.storage for lp in design.plan.layers]
    with pytest.raises(UsageError, match="no folding fits"):
        generate(model, Options(board=device, fill=FEW, storage=(("*", Storage.BRAM),)))
