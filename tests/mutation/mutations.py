"""Small mutations of the hardware, each with the fast tests that must catch it.

Every entry is one edit a careless change could make (drop a mask, ignore a stall, lose a valid,
an off-by-one in a counter, the wrong rounding): the file (relative to the repository), the exact
original text (it must occur exactly once), its replacement, and the pytest arguments of the fast
tests expected to fail once it is applied. :mod:`harness` applies each to a copy of the tree and
checks that those tests fail. A mutation that survives means a test is missing.
"""

from dataclasses import dataclass

__all__ = ["Mutation", "MUTATIONS", "by_name"]


@dataclass(frozen=True)
class Mutation:
    """One source edit and the tests that must catch it."""

    name: str
    path: str
    original: str
    replacement: str
    tests: tuple


MVU = "hw/mvu/engine.py"
MEMORY = "hw/common/memory.py"
SPARSE = "hw/sparse/engine.py"
SYSTOLIC = "hw/systolic/engine.py"
SYSTOLIC_MODEL = "hw/systolic/params.py"
SYSTOLIC_ARRAY = "hw/systolic/array.py"
STREAM = "hw/common/stream.py"
OUTSTAGE = "hw/common/outstage.py"
FOLDING = "gen/folding.py"

MVU_CORE = ("tests/hw/test_mvu_core.py::test_core_matches_model",)
#: the pipelined core's sum FIFO fills only under long back-pressure
MVU_LONG_STALL = ("tests/hw/test_mvu_core.py::test_core_under_long_backpressure",)
SPARSE_TESTS = ("tests/hw/test_sparse_engine.py::test_engine_matches_reference",
                "tests/hw/test_sparse_engine.py::test_cycles_match_model")
SPARSE_LONG_READ = ("tests/hw/test_sparse_engine.py::test_long_read_out_under_backpressure",)
SYSTOLIC_EXACT = ("tests/hw/test_systolic.py::test_bit_exact_under_stalls",)
SYSTOLIC_CYCLES = ("tests/hw/test_systolic.py::test_cycles_match_the_model",)
STREAM_TESTS = ("tests/hw/test_stream.py",)
OUTSTAGE_TESTS = ("tests/hw/test_outstage.py",)
FOLDING_PASS = ("tests/gen/test_folding.py::test_pass_meets_target_with_fewest_lanes",
                "tests/gen/test_folding.py::test_pass_is_fastest_within_the_budget")

MUTATIONS = (
    # -- matrix-vector unit ------------------------------------------------------------------
    Mutation("mvu-addsub-padding-mask", MVU, "xm = Mux(live, x, 0)", "xm = x", MVU_CORE),
    Mutation("mvu-xnor-padding-mask", MVU, "return ~(w ^ x) & live", "return ~(w ^ x)",
             MVU_CORE),
    Mutation("mvu-input-every-fold", MVU, "take.eq(nf_next == 0)", "take.eq(1)", MVU_CORE),
    Mutation("mvu-ignores-backpressure", MVU,
             "room.eq((sf_next != sf_n - 1) | (pending_next != depth))", "room.eq(1)",
             MVU_LONG_STALL),
    Mutation("mvu-first-fold-off-by-one", MVU, "first_b.eq(sf == 0)",
             "first_b.eq(sf == 1)", MVU_CORE),
    Mutation("mvu-weight-address-wrap", MEMORY,
             "Mux(addr == depth - 1, 0, addr + 1)",
             "Mux(addr == depth, 0, addr + 1)", MVU_CORE),
    # -- sparse engine -----------------------------------------------------------------------
    Mutation("sparse-padding-mask", SPARSE, "& ((j < tail) | ~last_in)", "& 1",
             SPARSE_TESTS),
    Mutation("sparse-drain-loses-first-row", SPARSE, "flight = delay(m, issue,",
             "flight = delay(m, issue & (row != 0),", SPARSE_TESTS),
    Mutation("sparse-drain-ignores-backpressure", SPARSE, "issue = ready & room",
             "issue = ready", SPARSE_LONG_READ),
    Mutation("sparse-accumulator-not-cleared", SPARSE, "m.d.sync += zero.eq(sweep_next | reading)",
             "m.d.sync += zero.eq(sweep_next)", SPARSE_TESTS),
    Mutation("sparse-activation-mask-skips-one", SPARSE, "rest.eq(masks[q] & (masks[q] - 1))",
             "rest.eq(masks[q] & (masks[q] - 2))", SPARSE_TESTS),
    Mutation("sparse-one-entry-column-empty", SPARSE,
             "return top & ~left[1], top & ~(left[1] & left[0])",
             "return top & ~(left[1] & left[0]), top & ~(left[1] & left[0])", SPARSE_TESTS),
    Mutation("sparse-flags-queue-stale-head", SPARSE,
             "q.r_flags = pipelined_read(m, small, addr, out_en=fill,",
             "q.r_flags = pipelined_read(m, small, addr - fill, out_en=fill,", SPARSE_TESTS),
    Mutation("sparse-narrow-read-out-unpaced", SPARSE, "            issue = issue & free\n",
             "            issue = issue\n",
             ("tests/hw/test_sparse_engine.py::test_narrow_output_stage_matches_reference",)),
    Mutation("sparse-narrow-read-out-a-cycle-early", SPARSE,
             "m.d.sync += [wait.eq(step - 2), free.eq(0)]",
             "m.d.sync += [wait.eq(step - 2), free.eq(step == 2)]",
             ("tests/hw/test_sparse_engine.py::test_narrow_output_stage_matches_reference",)),
    # -- systolic array engine ---------------------------------------------------------------
    Mutation("systolic-drain-ignores-backpressure", SYSTOLIC,
             "advance, read = ~o.valid | o.ready, Signal()", "advance, read = 1, Signal()",
             SYSTOLIC_EXACT),
    Mutation("systolic-first-k-tile-off-by-one", SYSTOLIC, "tag.first.eq(kt == 0)",
             "tag.first.eq(kt == 1)", SYSTOLIC_EXACT),
    Mutation("systolic-slot-one-cycle-long", SYSTOLIC, "period.eq(period_of(count) - 1)",
             "period.eq(period_of(count))", SYSTOLIC_CYCLES),
    Mutation("systolic-buffer-overwrites-full-half", SYSTOLIC, "i.ready.eq(~filled[bank])",
             "i.ready.eq(1)", SYSTOLIC_EXACT),
    Mutation("systolic-collector-never-restarts", SYSTOLIC,
             'return Mux(late["first"], late["value"], stored + late["value"])',
             'return stored + late["value"]', SYSTOLIC_EXACT),
    Mutation("systolic-model-forgets-prologue", SYSTOLIC_MODEL,
             "si = max(si, self.prologue - start)", "si = si", SYSTOLIC_CYCLES),
    # -- stream blocks -----------------------------------------------------------------------
    Mutation("skid-always-ready", STREAM, "m.d.comb += i.ready.eq(~skid_valid)",
             "m.d.comb += i.ready.eq(1)", STREAM_TESTS),
    Mutation("skid-drops-held-beat", STREAM,
             "m.d.sync += [o.payload.eq(skid), o.valid.eq(1), skid_valid.eq(0)]",
             "m.d.sync += [o.payload.eq(skid), o.valid.eq(0), skid_valid.eq(0)]", STREAM_TESTS),
    Mutation("gearbox-down-takes-early", STREAM, "i.ready.eq(o.ready & last_sub)",
             "i.ready.eq(o.ready)", STREAM_TESTS),
    Mutation("gearbox-up-valid-every-beat", STREAM, "o.valid.eq(i.valid & final)",
             "o.valid.eq(i.valid)", STREAM_TESTS),
    Mutation("fifo-reads-without-ready", STREAM, "        after = o.ready\n",
             "        after = o.ready | 1\n", ("tests/hw/test_fifo.py",)),
    # -- output stage ------------------------------------------------------------------------
    Mutation("requant-rounds-down", OUTSTAGE, "r = (u[:width + 1] + 1)[1:width + 1]",
             "r = u[1:width + 1]", OUTSTAGE_TESTS),
    Mutation("requant-clamp-off-by-one", OUTSTAGE, "u < 2 * p.lo - 1, u > 2 * p.hi",
             "u < 2 * p.lo - 1, u > 2 * p.hi + 2", OUTSTAGE_TESTS),
    Mutation("threshold-strict", OUTSTAGE, "raw >= thresholds[n]", "raw > thresholds[n]",
             OUTSTAGE_TESTS),
    Mutation("outstage-ignores-backpressure", OUTSTAGE,
             "advance.eq(~valid[-1] | self.o_data.ready)", "advance.eq(1)", OUTSTAGE_TESTS),
    Mutation("outstage-fold-counter-wrap", OUTSTAGE,
             "fold.eq(Mux(fold == p.folds - 1, 0, fold + 1))",
             "fold.eq(Mux(fold == p.folds, 0, fold + 1))", OUTSTAGE_TESTS),
    Mutation("requant-drops-offset", OUTSTAGE,
             "DSP block.\n        acc = st.reg(p.scale * raw + offset, p.acc_shape",
             "DSP block.\n        acc = st.reg(p.scale * raw, p.acc_shape", OUTSTAGE_TESTS),
    # -- more masks, hazards and clamps ------------------------------------------------------
    Mutation("mvu-padding-mask-off-by-one", MVU,
             "live = [(j < tail) | ~last_c for j in range(simd)]",
             "live = [(j <= tail) | ~last_c for j in range(simd)]", MVU_CORE),
    # a two-cycle weight-stationary slot reads an accumulator in the cycle its sum is written
    Mutation("systolic-collector-read-before-write", SYSTOLIC, "        if self.forwards:",
             "        if False:", SYSTOLIC_EXACT),
    # the drain reads a vector per ceil(M/C) cycles, never faster than the last tile's writes
    # (one vector per cycle), so the outputs stay right: only the cycle count can catch it
    Mutation("systolic-chunk-end-flag-early", SYSTOLIC,
             "tag.end.eq(tile_end & (s == st.nb - 1))", "tag.end.eq(tile_end & (s == 0))",
             SYSTOLIC_EXACT + SYSTOLIC_CYCLES),
    Mutation("skid-overwrites-held-beat", STREAM, "with m.Elif(i.valid & ~skid_valid):",
             "with m.Elif(i.valid):", STREAM_TESTS),
    Mutation("threshold-clamp-below-top", OUTSTAGE,
             "min(max(-((off - t) // p.scale), rmin), rmax + 1)",
             "min(max(-((off - t) // p.scale), rmin), rmax)", OUTSTAGE_TESTS),
    Mutation("mvu-takes-input-while-stalled", MVU, "i.ready.eq(room & take),",
             "i.ready.eq(take),", MVU_LONG_STALL),
    Mutation("systolic-os-column-flag-every-step", SYSTOLIC_ARRAY,
             "flag.eq(self.i_valid & (self.i_last if hold else 1))", "flag.eq(self.i_valid)",
             SYSTOLIC_EXACT),
    Mutation("gearbox-down-ignores-vector-end", STREAM,
             "next_last = next_last | (next_beat == beats - 1)", "next_last = next_last",
             STREAM_TESTS),
    Mutation("outstage-parameter-rom-reads-while-stalled", OUTSTAGE,
             "m.d.comb += [port.addr.eq(fold), port.en.eq(enable)]",
             "m.d.comb += [port.addr.eq(fold), port.en.eq(1)]", OUTSTAGE_TESTS),
    # -- fold chooser (caught through the folding pass) ---------------------------------------
    Mutation("folding-keeps-more-lanes", FOLDING,
             "if fold.pe not in new or total < new[fold.pe][0]:",
             "if fold.pe not in new or total > new[fold.pe][0]:", FOLDING_PASS),
    Mutation("folding-budget-one-lane-short", FOLDING, "lanes(folds) <= max_lanes",
             "lanes(folds) < max_lanes", FOLDING_PASS),
)


def by_name(names):
    """The mutations called ``names`` (all when empty); KeyError names an unknown one."""
    table = {m.name: m for m in MUTATIONS}
    if len(table) != len(MUTATIONS):
        raise ValueError("mutation names must be unique")
    if not names:
        return list(MUTATIONS)
    missing = [n for n in names if n not in table]
    if missing:
        raise KeyError(f"unknown mutation(s): {', '.join(missing)}")
    return [table[n] for n in names]
