"""The engines' resource bills (gen/resources.py ``window_bill``, ``sparse_bill``,
``systolic_bill``, the adapters' ``resources``): block RAM and DSP counts checked by hand on
small configurations, and every kind of design's estimate against yosys ``synth_ecp5``
(``python -m nnaccel.bench.fit``, :mod:`nnaccel.bench.fit`): fast against the figures recorded
from a yosys run, slow (``-m slow``) against a fresh run.
"""

import numpy as np
import pytest

from nnaccel.bench import fit
from nnaccel.gen.generate import generate
from nnaccel.gen.resources import (
    DEVICES,
    Memory,
    dsp_blocks,
    estimate,
    estimate_plan,
    memory_map,
    window_bill,
)
from nnaccel.hw.common.dtype import DType
from nnaccel.hw.common.reference import bits_for_range
from nnaccel.hw.window.params import WindowParams

ECP5_85 = DEVICES["LFE5U-85F"]
TOLERANCE = 0.15


def _layer(design, engine):
    return next(lp for lp in design.plan.layers if lp.engine.value == engine)


def _stage_dsps(out):
    """The requantising multipliers' DSP blocks of an output stage (``pe`` of them)."""
    return out.pe * dsp_blocks(out.acc_shape.width, max(max(out.mult).bit_length(), 1))


def test_window_line_buffer_one_copy_per_read_port():
    # 3x3 window over 8 x 8 x 4 int8, 4 elements a beat: one read port, words of 32 bits,
    # buffer_rows rows of 8 words; with 8 elements a beat two positions share a beat: two ports
    one = WindowParams(channels=4, height=8, width=8, kernel=(3, 3), dtype=DType.parse("int8"),
                       n_in=4, n_out=4)
    two = WindowParams(channels=4, height=8, width=8, kernel=(3, 3), dtype=DType.parse("int8"),
                       n_in=4, n_out=12)
    assert one.read_ports == 1 and two.read_ports == 3
    for win in (one, two):
        (mem,) = window_bill(win).memories
        assert (mem.depth, mem.width, mem.copies, mem.rom) == (
            win.buffer_rows * 8, 32, win.read_ports, False)
        assert window_bill(win).quantities["window"] == 1
    # 32 words: 5-bit addresses, 7 adders of the unit's, 4 per row of a beat's positions (one
    # row here: the three positions of `two` lie side by side) and 1 per read port
    assert two.beat_shape == (1, 3)
    assert window_bill(one).quantities["window_addr"] == 12 * 5
    assert window_bill(two).quantities["window_addr"] == 14 * 5


def test_window_address_adders_as_wide_as_the_line_buffer_address():
    """A 2x2 pool over 8 x 8 x 32 values, one a beat (the binarized digits CNN's): its line
    buffer holds 5 rows of 256 words, so its address adders are 11 bits wide, twice a 3x3
    convolution's over a 32-word buffer (what yosys' window logic grows with: 358 LUT4
    against 244, nnaccel.bench.fit at 90b8fed)."""
    pool = WindowParams(channels=32, height=8, width=8, kernel=(2, 2), stride=(2, 2),
                        dtype=DType.parse("uint1"), n_in=1, n_out=1)
    assert pool.buffer_depth == 1280 and pool.read_ports == 1
    assert window_bill(pool).quantities["window_addr"] == 12 * 11


def test_block_ram_by_depth_and_width_as_dp16kd():
    # DP16KD: 16K x 1, 8K x 2, 4K x 4, 2K x 9, 1K x 18, 512 x 36
    assert memory_map(Memory(1024, 18, force="bram"))["bram"] == 1
    assert memory_map(Memory(1025, 18, force="bram"))["bram"] == 2
    assert memory_map(Memory(2048, 9, force="bram"))["bram"] == 1
    assert memory_map(Memory(2048, 10, force="bram"))["bram"] == 2
    assert memory_map(Memory(16, 30, rom=False, force="bram"))["bram"] == 1
    assert memory_map(Memory(300, 40, rom=False, copies=3, force="bram"))["bram"] == 6


def test_sparse_bill_block_rams_and_multipliers_per_pe():
    """Each PE: its pointer+entry memory (one DP16KD when K + entries <= 1024 words of 18 bits),
    its queue and two accumulator banks, all block RAM; one multiplier per PE plus the output
    stage's."""
    design = generate(*fit.by_name("sparse_small").make())
    lp = _layer(design, "sparse")
    p = lp.params
    est = estimate(lp.adapter.resources(lp), ECP5_85)
    from nnaccel.gen.engines.sparse import encoded_matrix

    entries = max(len(z) for z in encoded_matrix(lp).z)
    assert p.in_features + entries <= 1024
    assert est.bram == 4 * p.pe
    # the requantiser multiplies by one constant power of two: a shift, no DSP block
    assert set(p.output.mult) == {1024}
    assert est.dsp == p.pe


def _pe_flip_flops(pe):
    """Flip-flop bits of a sparse PE as Amaranth converts it (every ``$dff`` cell's width), less
    what yosys does not keep as flip-flops of the PE: the token stages T, P, L (equal in every PE,
    merged) and the registered reads of the queue and the banks (block RAM); plus the codebook
    ROM's synchronous read (a memory read port here, flip-flops after yosys)."""
    import re

    from amaranth.back import rtlil

    merged = {f"{s}_{k}" for s in "tpl" for k in ("valid", "value", "work", "last")}
    skip = merged | {"queue_rd", "acc0_rd", "acc1_rd"}
    bits = 0
    for cell in re.finditer(r"cell \$dff \S+\n(.*?)\n  end", rtlil.convert(pe), re.S):
        name = re.search(r"connect \\Q \\?(\S+)", cell.group(1)).group(1)
        if name not in skip:
            bits += int(re.search(r"WIDTH (\d+)", cell.group(1)).group(1))
    book = pe._codebook
    if book is not None:
        bits += bits_for_range(min(book), max(book))[0]
    return bits


@pytest.mark.parametrize("k,xdt,wdt,book,index_bits", [
    (19, "uint4", "int8", True, 4),      # a 16-entry codebook, pointers and entries in one RAM
    (12, "int5", "int4", False, 4),      # the weights themselves
    (9, "bipolar", "int4", False, 2),    # +-1 activations
    (2000, "uint8", "int8", True, 4),    # pointers and entries in two block RAMs
])
def test_sparse_bill_counts_each_pe_flip_flop(k, xdt, wdt, book, index_bits):
    """``sparse_pe_registers`` (the bill's ``pe_bits``) is the flip-flop count of the PE as
    built, on every kind of PE."""
    from nnaccel.gen.resources import sparse_pe_registers
    from nnaccel.hw.sparse.engine import ProcessingElement
    from nnaccel.hw.sparse.format import encode
    from nnaccel.hw.sparse.params import SparseParams
    from nnaccel.hw.sparse.reference import IN_FLIGHT

    rng = np.random.default_rng(k)
    codebook = np.array([0, -128, -77, -40, -9, -3, -1, 1, 2, 5, 11, 30, 64, 90, 127, 100])
    values = rng.choice(codebook[1:], (24, k)) if book else rng.integers(-7, 8, (24, k))
    w = values * (rng.random((24, k)) < 0.3)
    p = SparseParams.for_layer(weight=w, pe=3, queue_depth=3, in_beat=4,
                               in_dtype=DType.parse(xdt), weight_dtype=DType.parse(wdt),
                               index_bits=index_bits, output_kind="identity",
                               out_dtype=DType.parse("int32"))
    matrix = encode(w, 3, index_bits=index_bits, codebook=codebook if book else None)
    pe = ProcessingElement(p, matrix, 1, p.raw_shape)
    assert pe._shared == (k < 1000)
    assert sparse_pe_registers(p, matrix, IN_FLIGHT, pe._abits) == _pe_flip_flops(pe)


@pytest.fixture(scope="module")
def every_feature_design():
    """A graph with joins of two and three inputs, gearboxes that collect and split, and FIFOs
    in distributed and block RAM; its network elaborated (its Verilog converted)."""
    from nnaccel.gen.plan import Options

    from .cnn_models import every_feature

    design = generate(every_feature(0), Options(max_lanes=16))
    design.verilog()
    return design


def test_every_fifo_billed_as_built(every_feature_design):
    """Every port's FIFO of a graph (a join's too) is billed at the memory the StreamFifo
    builds: ``capacity - stages`` words, in block RAM exactly where it takes two stages."""
    from nnaccel.gen.resources import edge_bills

    design = every_feature_design
    edges = edge_bills(design.plan, design.fifos)
    built = design.network.fifos
    assert len(built) == sum(len(ports) for ports in design.fifos) > len(design.plan.layers)
    assert any(f.stages == 2 for f in built.values())
    for lp, bill, ports in zip(design.plan.layers, edges, design.fifos, strict=True):
        fifos = [built[(lp.layer.name, n)] for n in range(len(ports))]
        assert bill.quantities["fifo"] == len(fifos)
        mems = [m for m in bill.memories if not m.rom]
        assert [(m.depth, m.force == "bram") for m in mems] == [
            (f.capacity - f.stages, f.stages == 2) for f in fifos]
        assert bill.quantities["fifo_bits"] == sum(
            f.i_data.payload.shape().size for f in fifos)


def test_gearboxes_billed_on_every_edge(every_feature_design):
    """A chain's gearbox and a graph edge's: collecting from 1 to 2 int8 elements a beat holds
    one element (8 bits); splitting 4 into 1 selects among 4 elements (32 bits); a graph edge
    between beats that do not divide one another collects to their lcm, then splits."""
    from nnaccel.gen.resources import edge_bills, gearbox_bill

    assert gearbox_bill(8, 1, 2).quantities == {"gear_held": 8}
    assert gearbox_bill(8, 4, 1).quantities == {"gear_mux": 32}
    assert gearbox_bill(8, 4, 4).quantities == {}
    design = every_feature_design
    edges = dict(zip((lp.layer.name for lp in design.plan.layers),
                     edge_bills(design.plan, design.fifos), strict=True))
    # g reads a (1 a beat) 2 a beat; cat reads g (4 a beat) twice and a once, 1 a beat
    bits = {lp.layer.name: lp.layer.in_dtype.bits for lp in design.plan.layers}
    assert edges["g"].quantities["gear_held"] == bits["g"]
    assert edges["cat"].quantities["gear_mux"] == 2 * 4 * bits["cat"]
    assert "gear_held" not in edges["f"].quantities and "gear_mux" not in edges["f"].quantities


def test_graph_modules_named_by_layer_index(every_feature_design, tmp_path):
    """Synthesis figures go to a graph's layers by module name (``layer<N>_``, ``fifo<N>_``,
    ``gear<N>_``; :func:`nnaccel.boards.build.layer_cells`): every layer's engine and every
    port's FIFO carries its layer's index."""
    import re

    from nnaccel.boards.build import layer_cells

    design = every_feature_design
    tops = {name.split(".")[0] for name in re.findall(
        r"^module \\\S+?\.network\.(\S+)", design.verilog(), re.M)}
    # one cell per FIFO module as a LUT4, one per engine module as a flip-flop
    for cell, kind in (("LUT4", "fifo"), ("TRELLIS_FF", "layer")):
        (tmp_path / f"c.{cell}.txt").write_text("".join(
            f"top/network.{t}.x\n" for t in sorted(tops) if t.startswith(kind)))
    cells = layer_cells(tmp_path, "c")
    assert sorted(cells) == list(range(len(design.plan.layers)))
    for n, ports in enumerate(design.fifos):
        assert cells[n] == {"LUT4": len(ports), "TRELLIS_FF": 1}


def test_systolic_bill_cells_in_dsp_blocks_or_logic():
    """An R x C array: ``dsp_cells`` multipliers in DSP blocks, the rest in logic (LUT4 grow),
    plus the output stage's; the collector's C accumulator memories."""
    from dataclasses import replace

    design = generate(*fit.by_name("systolic_small").make())
    lp = _layer(design, "systolic")
    p = lp.params
    full = estimate(lp.adapter.resources(lp), ECP5_85)
    assert full.dsp == p.rows * p.cols + _stage_dsps(p.output)
    half = lp.but(params=replace(p, dsp_cells=p.rows * p.cols // 2))
    split = estimate(lp.adapter.resources(half), ECP5_85)
    assert split.dsp == full.dsp - p.rows * p.cols // 2
    assert split.lut4 > full.lut4
    cells = [m for m in lp.adapter.resources(lp).memories if m.copies == 2 * p.cols]
    assert len(cells) == 1 and cells[0].width == p.acc_shape.width


def test_every_engine_has_a_bill_of_its_own():
    """The CNN units and the sparse and systolic engines bill their own parts (the default bill
    has no window, PE or cell terms)."""
    seen = {}
    for name in ("res_small", "mobile_small", "sparse_conv", "sparse_small",
                 "systolic_small"):
        design = generate(*fit.by_name(name).make())
        for lp in design.plan.layers:
            q = lp.adapter.resources(lp).quantities
            seen.setdefault(lp.engine.value, set()).update(k for k, v in q.items() if v)
    assert {"window", "window_addr", "window_bits"} <= seen["vvau"]
    assert {"window", "pe"} <= seen["sparse"]
    assert "cell" in seen["systolic"]
    assert "stage" in seen["pool"]
    assert "stage" in seen["join"]


#: yosys ``synth_ecp5`` figures (LUT4 as nextpnr counts them, FF, DP16KD, MULT18X18D), whole
#: design, of bench designs quick to generate: ``python -m nnaccel.bench.fit --only NAME
#: --no-write`` on 2026-12-01 (08:38-08:40 UTC, at 1f73c10..cb5f324; the hardware moves on, so
#: these check the bills against a past synthesis, and the slow test below against a fresh one).
MEASURED = {
    "mlp_int8": {"lut4": 1268, "ff": 1488, "bram": 4, "dsp": 16},
    "prime_int4": {"lut4": 1540, "ff": 1774, "bram": 5, "dsp": 20},
    "sparse_small": {"lut4": 2047, "ff": 2529, "bram": 16, "dsp": 4},
    "systolic": {"lut4": 2285, "ff": 9702, "bram": 20, "dsp": 80},
}
#: Recorded designs whose estimate misses +-15%: expected failures until their bills follow
#: (prime_int4's packed-product lanes were, at -17% of its LUT4, until they were billed).
RECORDED_MISSES = {}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=RECORDED_MISSES[n]))
    if n in RECORDED_MISSES else n for n in sorted(MEASURED)])
def test_estimate_within_tolerance_of_recorded_yosys(name):
    design = generate(*fit.by_name(name).make())
    total = None
    for _, _, est in estimate_plan(design.plan, ECP5_85, design.fifos):
        total = est if total is None else total.plus(est)
    _check(name, total.as_dict(), MEASURED[name])


def _check(name, est, measured):
    for k in fit.FIGURES:
        assert abs(est[k] - measured[k]) <= TOLERANCE * measured[k], (name, k, est, measured)


#: Small designs whose estimate misses +-15% of a fresh yosys run (``python -m
#: nnaccel.bench.fit --only NAME --no-write``): expected failures until their bills follow.
#: These, the packed-product MVU (prime_int4), the window units (digits_cnn_bin) and the graph
#: designs (res_small with joins and FIFOs, sparse_conv, mobile_small; 30-110 s each) run only
#: with ``-m long``; make test keeps the MVU.
KNOWN_MISSES = {}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp_int8"] + [
    pytest.param(n, marks=pytest.mark.long) for n in ("prime_int4", "digits_cnn_bin",
                                                      "res_small", "sparse_conv",
                                                      "mobile_small", "sparse_small",
                                                      "systolic_small")] + [
    pytest.param(n, marks=[pytest.mark.long, pytest.mark.xfail(strict=True, reason=why)])
    for n, why in KNOWN_MISSES.items()])
def test_estimate_within_tolerance_of_yosys(name, tmp_path):
    """A fresh yosys run on a small design of each kind (MVU, sparse, systolic, CNN units with
    joins and FIFOs, VVAU, sparse convolution): every figure within +-15%."""
    design, layers = fit.measure_design(fit.by_name(name), tmp_path, log=lambda *_: None)
    s = fit.summarise(name, design, layers)
    _check(name, s["estimate"], s["yosys"])
    assert np.isfinite(list(s["estimate"].values())).all()


def test_stage_constant_lanes_need_no_table_and_powers_of_two_no_multiplier():
    """Output stage of 2 lanes x 2 folds (channels 0, 2 on lane 0; 1, 3 on lane 1): a lane whose
    parameters are equal in every fold gets constants (no ROM bits), and one that multiplies by
    a constant power of two a shift (no multiplier)."""
    from amaranth.hdl import Shape

    from nnaccel.gen.resources import stage_bill
    from nnaccel.hw.common.outstage import OutputStageParams

    def bill(mult, offset):
        return stage_bill(OutputStageParams.for_dtype(
            "requant", DType.parse("int8"), pe=2, channels=4, raw_shape=Shape(16, True),
            offset=offset, mult=mult, shift=[8] * 4))

    varying = bill([3, 5, 7, 9], [1, 2, 3, 4])
    assert [m[2] for m in varying.multipliers] == [2]
    (table,) = varying.memories
    assert table.depth == 2 and table.width > 0
    const = bill([3, 64, 3, 64], [1, 2, 1, 2])   # lane 1 multiplies by 64
    assert [m[2] for m in const.multipliers] == [1]
    assert const.memories == ()
    assert bill([1, 64, 1, 64], [0] * 4).multipliers == ()


def test_stage_table_keeps_only_the_bits_that_differ_between_folds():
    """yosys keeps a read-only memory's bits that differ between its words: the stage's table
    of offsets 16..19 (4 folds of one lane) is 2 bits wide, one of thresholds (clamped to the
    raw range) as wide as the bits in which its rows differ."""
    from amaranth.hdl import Shape

    from nnaccel.gen.resources import stage_bill
    from nnaccel.hw.common.outstage import OutputStageParams

    offsets = stage_bill(OutputStageParams.for_dtype(
        "identity", DType.parse("int16"), pe=1, channels=4, raw_shape=Shape(8, True),
        offset=[16, 17, 18, 19]))
    assert [(m.depth, m.width) for m in offsets.memories] == [(4, 2)]
    # thresholds 1000 and 1001 (12 bits) on a 6-bit raw sum clamp to 32: equal, no table
    clamped = stage_bill(OutputStageParams.for_dtype(
        "threshold", DType.parse("uint1"), pe=1, channels=2, raw_shape=Shape(6, False),
        thresholds=[[1000], [1001]]))
    assert clamped.memories == ()
    apart = stage_bill(OutputStageParams.for_dtype(
        "threshold", DType.parse("uint1"), pe=1, channels=2, raw_shape=Shape(6, False),
        thresholds=[[4], [7]]))
    assert [(m.depth, m.width) for m in apart.memories] == [(2, 2)]
