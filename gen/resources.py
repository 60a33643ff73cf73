"""A resource and timing model of generated designs: LUT4, FF, block RAM, DSP and Fmax per layer.

Each engine adapter describes what a layer instantiates as a :class:`Bill`
(:meth:`~nnaccel.gen.engines.base.EngineAdapter.resources`), computed from its Params alone:
counts of lane bits, adder-tree and accumulator bits, output-stage bits, its memories (depth,
width, read-only or not) and its multipliers (operand widths). :func:`estimate` maps a bill onto a
:class:`Device`:

* memories go where yosys' ``memory_libmap`` puts them, by the same cost rule: a read-only
  memory becomes logic when ``bits/16 <= 128 * blocks`` (its logic cost per bit against the block
  RAM's cost per block), else block RAM; a writable one becomes distributed RAM
  (``TRELLIS_DPR16X4``, 16 x 4 bits, 6 LUT4 each as nextpnr counts them) when cheaper than block
  RAM. Block counts are those of the best DP16KD (ECP5) or SB_RAM40_4K (iCE40) aspect ratio.
* multipliers whose operands are both at least 2 bits wide go to MULT18X18D / SB_MAC16 blocks
  (``ceil(a/18) * ceil(b/18)`` of them on ECP5, as yosys' ``mul2dsp`` splits them); narrower ones
  are logic, and so are those a layer builds in logic when the device runs out of DSP blocks
  (the MVU's ``dsp_multipliers``: lane bits, ``a * b`` per multiplier).
* LUT4 and FF are linear in the bill's quantities, with coefficients fitted to yosys'
  ``synth_ecp5`` on the bench designs (:mod:`nnaccel.bench.fit`, written to
  :mod:`nnaccel.gen.resource_fit`).

The Fmax model is deliberately simple: a base frequency per family lowered by the logic depth of
the widest adder or popcount tree and of the widest carry chain, both fitted to nextpnr figures
(:data:`FMAX`). It gives the SIMD cap of the fold chooser (:func:`simd_cap`).
"""

import math
from dataclasses import dataclass, field

from ..hw.common.arith import cdiv
from ..hw.common.graph import edge_beats
from ..hw.common.stream import fifo_geometry
from .errors import UsageError

__all__ = ["Device", "DEVICES", "device_for", "Bill", "Memory", "Estimate", "FEATURES",
           "memory_map", "dsp_blocks", "mapped_quantities", "fixed_costs", "COPY_BITS", "estimate",
           "estimate_plan",
           "fmax_estimate", "simd_cap", "fifo_bill", "gearbox_bill",
           "edge_bills", "fits", "budget",
           "lanes_bill", "packed_bill", "stage_bill", "stream_bill", "window_bill",
           "sparse_bill", "sparse_pe_registers",
           "systolic_bill", "design_report", "format_design_report",
           "format_measured", "LUTRAM_LUT4", "FMAX"]


@dataclass(frozen=True)
class Device:
    """What an FPGA offers: LUT4s, flip-flops, block RAMs and DSP multipliers."""

    name: str
    family: str
    lut4: int
    ff: int
    bram: int
    dsp: int

    @property
    def bram_cell(self):
        return "DP16KD" if self.family == "ecp5" else "SB_RAM40_4K"

    @property
    def dsp_cell(self):
        return "MULT18X18D" if self.family == "ecp5" else "SB_MAC16"


#: Devices by part name (as the boards' platforms name them), from the vendors' data sheets.
DEVICES = {d.name: d for d in [
    Device("LFE5U-12F", "ecp5", 12_096, 12_096, 32, 28),
    Device("LFE5U-25F", "ecp5", 24_288, 24_288, 56, 28),
    Device("LFE5U-45F", "ecp5", 43_848, 43_848, 108, 72),
    Device("LFE5U-85F", "ecp5", 83_640, 83_640, 208, 156),
    Device("iCE40UP5K", "ice40", 5_280, 5_280, 30, 8),
]}


def device_for(part):
    """The :class:`Device` of the part ``part`` (``"LFE5U-85F"``), or UsageError."""
    for name, device in DEVICES.items():
        if part.upper().replace("-", "").startswith(name.upper().replace("-", "")):
            return device
    raise UsageError(f"no resource model for the device {part!r}; known: {', '.join(DEVICES)}")


@dataclass(frozen=True)
class Memory:
    """A memory of ``depth`` words of ``width`` bits; ``rom``: no write port. ``copies``
    identical ones. ``force``: ``"logic"`` or ``"bram"`` when the hardware forces it.
    ``table``: a weight table (:class:`~nnaccel.hw.common.memory.Rom`, read by
    :func:`~nnaccel.hw.common.memory.issue_order_read`): in block RAM, read through output
    registers (one per bank when it is banked, then one after the bank multiplexer); in logic,
    a counter and an address register per copy of its address beyond the first
    (:func:`~nnaccel.hw.common.memory.address_copies`), counted (:data:`ADDRESS_COPY`)."""

    depth: int
    width: int
    rom: bool = True
    copies: int = 1
    force: str | None = None
    table: bool = False


#: The quantities of a bill, each with a fitted LUT4 and FF coefficient.
FEATURES = {
    "layer": "one per layer: control, counters, stream handshakes",
    "xnor": "XNOR lanes (popcount inputs)",
    "lane_bits": "add/subtract lane input bits, LUT multiplier partial-product bits and the "
                 "adders packing two products into one multiplier",
    "tree": "adder-tree input bits after multiplier lanes (their products)",
    "addsub_tree": "adder-tree input bits after add/subtract lanes",
    "acc": "accumulator bits (pe x accumulator width)",
    "stage": "output-stage bits (thresholds: pe x levels x width; requant/identity: pe x width)",
    "requant": "requantising datapath bits per lane after the multiply: the product's width x "
               "(its partial products - 1 adders + the shifter's levels + 2 clamp compares)",
    "stream": "stream payload bits in and out of an engine (skid buffers)",
    "fifo": "one per inter-layer FIFO (StreamFifo): word counters, flags, stage valids",
    "fifo_bits": "inter-layer FIFO beat bits (the fabric register behind its memory)",
    "gear_held": "gearbox bits held while it collects narrow beats into a wide one",
    "gear_mux": "gearbox input bits it selects narrow beats from (splitting a wide beat)",
    "rom": "LUT-mapped read-only memory: width x (ceil(depth / 16) + ceil(depth / 64) - 1)",
    "ram": "flip-flop-mapped or distributed-RAM memory bits (FIFOs, line buffers)",
    "lutram_mux": "distributed-RAM read multiplexer bits: (16-word cells deep - 1) x width",
    "bram_q": "registers behind block RAM reads that yosys keeps as flip-flops (the ECP5 flow "
              "folds most into the DP16KDs): a weight table's per bank and after the bank "
              "multiplexer, an output stage's table and the raw value beside it",
    "bank_mux": "bank multiplexer input bits of a banked weight table: (banks - 1) x width",
    "dsp": "DSP multiplier blocks (glue logic around each)",
    "window": "sliding-window units: counters, row bookkeeping",
    "window_addr": "sliding-window address adder bits: (7 + 4 x read ports) x address bits",
    "window_bits": "window read-port words and output beat bits (multiplexers, padding)",
    "pe": "sparse PEs: token, pointer, entry and accumulate pipeline, iterator, forwarding",
    "pe_bits": "sparse PE pipeline register bits (sparse_pe_registers)",
    "cell": "systolic cell bits (activation, weight and partial-sum registers and adders)",
}


@dataclass(frozen=True)
class Bill:
    """What one layer instantiates, independent of the device (see the module).

    ``quantities`` maps names of :data:`FEATURES` to counts; ``memories`` and ``multipliers``
    (``(a_bits, b_bits, count)``) are mapped onto the device by :func:`estimate`; ``tree_width``
    (the widest adder/popcount tree's inputs) and ``carry`` (the widest carry chain, bits) feed
    the Fmax model."""

    quantities: dict = field(default_factory=dict)
    memories: tuple = ()
    multipliers: tuple = ()
    tree_width: int = 1
    carry: int = 1

    def plus(self, other):
        q = dict(self.quantities)
        for k, v in other.quantities.items():
            q[k] = q.get(k, 0) + v
        return Bill(quantities=q, memories=self.memories + other.memories,
                    multipliers=self.multipliers + other.multipliers,
                    tree_width=max(self.tree_width, other.tree_width),
                    carry=max(self.carry, other.carry))


@dataclass(frozen=True)
class Estimate:
    """Estimated resources and Fmax of a layer (or a design, summed)."""

    lut4: int
    ff: int
    bram: int
    dsp: int
    fmax_mhz: float

    def plus(self, other):
        return Estimate(self.lut4 + other.lut4, self.ff + other.ff, self.bram + other.bram,
                        self.dsp + other.dsp, min(self.fmax_mhz, other.fmax_mhz))

    def as_dict(self):
        return {"lut4": self.lut4, "ff": self.ff, "bram": self.bram, "dsp": self.dsp,
                "fmax_mhz": round(self.fmax_mhz, 1)}


# -- memories and multipliers, as yosys maps them ------------------------------------------------

#: Read aspect ratios (depth, width) of one block RAM.
_BRAM_SHAPES = {"ecp5": ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
                "ice40": ((2048, 2), (1024, 4), (512, 8), (256, 16))}
#: memory_libmap's costs: a block RAM, a distributed RAM cell, a bit of ROM / RAM in logic.
_BRAM_COST, _LUTRAM_COST, _ROM_BIT, _RAM_BIT = 128, 4, 1 / 16, 1.0
#: LUT4s nextpnr counts per TRELLIS_DPR16X4.
LUTRAM_LUT4 = 6
#: LUT4 and FF per bit of each further copy of a logic table's address (counted, not fitted):
#: its counter (a flip-flop, about a LUT4 of increment and wrap) and its address register.
ADDRESS_COPY = {"lut4": 1, "ff": 2}
#: A bill's quantity counted rather than fitted: bits of the further copies of a register
#: copied to split its fan-out (the MVU's input beat, ``input_copies``), a flip-flop each.
COPY_BITS = "copy_bits"


def fixed_costs(lutram, address_bits, copy_bits=0):
    """``(LUT4, FF)`` the model counts rather than fits: ``lutram`` distributed-RAM cells
    (:data:`LUTRAM_LUT4`), ``address_bits`` of tables' address copies
    (:data:`ADDRESS_COPY`) and ``copy_bits`` of copied registers (:data:`COPY_BITS`)."""
    return (LUTRAM_LUT4 * lutram + ADDRESS_COPY["lut4"] * address_bits,
            ADDRESS_COPY["ff"] * address_bits + copy_bits)


def _blocks(depth, width, family):
    return min(cdiv(depth, d) * cdiv(width, w) for d, w in _BRAM_SHAPES[family])


def rom_columns(depth):
    """LUT4s per bit of a ``depth``-word table in logic: one per 16 words (the slice's wide
    multiplexers join four of them, 64 words, for free), then a 2:1 multiplexer LUT4 per
    further 64-word group (yosys: CNV's 72-word, 2,048-bit c3 table took 12,112 LUT4, 5.9 a
    bit, against 6 here)."""
    return cdiv(depth, 16) + max(cdiv(depth, 64) - 1, 0)


def memory_map(mem, family="ecp5"):
    """Where yosys puts ``mem``: ``{"bram": blocks, "lutram": DPR16X4 cells, "rom": LUT-ROM
    quantity, "ram": bits in flip-flops, "lutram_mux": the distributed RAM's read multiplexer
    (``(ceil(depth / 16) - 1) x width``: a 16-word cell per column, one read port each)}`` for
    all its copies."""
    out = {"bram": 0, "lutram": 0, "rom": 0, "ram": 0, "lutram_mux": 0, "bram_q": 0,
           "bank_mux": 0, "address_bits": 0}
    if mem.depth <= 1:
        return out   # a constant (ROM) or a register (RAM) the logic absorbs
    blocks = _blocks(mem.depth, mem.width, family)
    bits = mem.depth * mem.width
    if mem.rom:
        logic = bits * _ROM_BIT <= _BRAM_COST * blocks
        if mem.force == "logic" or (mem.force is None and logic):
            out["rom"] = mem.width * rom_columns(mem.depth) * mem.copies
            if mem.table:   # each further copy of its address: a counter and a register
                from ..hw.common.memory import Storage, address_copies

                extra = address_copies(mem.depth, mem.width, Storage.LOGIC) - 1
                out["address_bits"] = (mem.depth - 1).bit_length() * extra * mem.copies
        else:
            out["bram"] = blocks * mem.copies
            if mem.table and family == "ecp5":
                from ..hw.common.memory import bank_depth

                banks = cdiv(mem.depth, bank_depth(mem.depth, mem.width))
                out["bram_q"] = mem.width * (banks + (banks > 1)) * mem.copies
                out["bank_mux"] = mem.width * (banks - 1) * mem.copies
        return out
    lutram = cdiv(mem.depth, 16) * cdiv(mem.width, 4) if family == "ecp5" else None
    mux = (cdiv(mem.depth, 16) - 1) * mem.width * 0.5
    options = [(bits * _RAM_BIT, "ram"), (_BRAM_COST * blocks, "bram")]
    if lutram is not None:
        options.append((_LUTRAM_COST * lutram + mux, "lutram"))
    where = mem.force or min(options)[1]
    out[where] = {"ram": bits, "bram": blocks, "lutram": lutram}[where] * mem.copies
    if where == "lutram":
        out["lutram_mux"] = (cdiv(mem.depth, 16) - 1) * mem.width * mem.copies
    return out


def dsp_blocks(a_bits, b_bits, family="ecp5"):
    """DSP blocks of one ``a_bits`` x ``b_bits`` multiplier (0: it stays in logic)."""
    if min(a_bits, b_bits) < 2:
        return 0
    size = 18 if family == "ecp5" else 16
    return cdiv(a_bits, size) * cdiv(b_bits, size)


# -- the estimate --------------------------------------------------------------------------------

#: Fmax model (MHz): ``base / (1 + tree * log2(tree inputs) + carry * carry bits)``, per family.
#: ECP5: set by nextpnr's Fmax of the SFC network (about 55 MHz with 157-input popcounts, about
#: 85 MHz with at most 16) and the int8 MLP (73.9 MHz, 13 products into a 17-bit sum), as
#: measured before issue 16's pipelining; iCE40: the same shape, slower.
FMAX = {"ecp5": {"base": 275.0, "tree": 0.536, "carry": 0.01},
        "ice40": {"base": 150.0, "tree": 0.536, "carry": 0.02}}


def _coefficients(family):
    from . import resource_fit

    return resource_fit.COEFFICIENTS.get(family, resource_fit.COEFFICIENTS["ecp5"])


def fmax_estimate(tree_width, carry, family="ecp5"):
    """Estimated Fmax (MHz) of logic whose widest tree has ``tree_width`` inputs and whose
    widest carry chain has ``carry`` bits."""
    f = FMAX.get(family, FMAX["ecp5"])
    return f["base"] / (1 + f["tree"] * math.log2(max(tree_width, 1))
                        + f["carry"] * max(carry, 1))


def simd_cap(target_mhz, family="ecp5"):
    """The widest popcount/adder tree (SIMD) whose estimated Fmax reaches ``target_mhz``, with
    the carry chain of its own sum (``log2(simd) + 1`` bits); at least 1."""
    simd = 1
    while simd < 1 << 16 and fmax_estimate(2 * simd, math.log2(2 * simd) + 1,
                                           family) >= target_mhz:
        simd *= 2
    return simd


def mapped_quantities(bill, family="ecp5"):
    """The bill's quantities once its memories and multipliers are mapped onto ``family``
    (what the fitted coefficients multiply), with ``(bram, dsp, lutram, address_bits,
    copy_bits)`` counts (bits of the further copies of tables' addresses, :data:`ADDRESS_COPY`,
    and of copied registers, :data:`COPY_BITS`)."""
    q = dict(bill.quantities)
    copy_bits = q.pop(COPY_BITS, 0)
    bram = dsp = lutram = address_bits = 0
    for mem in bill.memories:
        mapped = memory_map(mem, family)
        bram += mapped["bram"]
        lutram += mapped["lutram"]
        address_bits += mapped["address_bits"]
        for k in ("rom", "ram", "lutram_mux", "bram_q", "bank_mux"):
            q[k] = q.get(k, 0) + mapped[k]
    for a, b, count in bill.multipliers:
        blocks = dsp_blocks(a, b, family)
        if blocks:
            dsp += blocks * count
        else:
            q["lane_bits"] = q.get("lane_bits", 0) + a * b * count
    q["dsp"] = q.get("dsp", 0) + dsp
    return q, (bram, dsp, lutram, address_bits, copy_bits)


def estimate(bill, device):
    """The :class:`Estimate` of ``bill`` on ``device``."""
    coeff = _coefficients(device.family)
    q, (bram, dsp, lutram, address_bits, copy_bits) = mapped_quantities(bill, device.family)
    lut, ff = fixed_costs(lutram, address_bits, copy_bits)
    lut += sum(coeff["lut4"].get(k, 0.0) * v for k, v in q.items())
    ff += sum(coeff["ff"].get(k, 0.0) * v for k, v in q.items())
    return Estimate(lut4=round(lut), ff=round(ff), bram=bram, dsp=dsp,
                    fmax_mhz=fmax_estimate(bill.tree_width, bill.carry, device.family))


def fifo_bill(depth, width):
    """A :class:`~nnaccel.hw.common.stream.StreamFifo` of ``depth`` beats of ``width`` bits as
    it is built: a memory of ``capacity - stages`` words (block RAM where
    :func:`~nnaccel.hw.common.stream.fifo_in_block_ram` says so, its read register then inside
    the DP16KD), one ``width``-bit register in the fabric behind it (the distributed RAM's
    read register, or the block RAM's output register, which yosys leaves to the fabric and the
    ECP5 flow folds into the DP16KD after synthesis), its counters and flags."""
    stages, capacity = fifo_geometry(depth, width)
    words = capacity - stages
    return Bill(quantities={"fifo": 1, "fifo_bits": width},
                memories=(Memory(words, width, rom=False, force="bram" if stages == 2 else None),),
                carry=max(words, 2).bit_length())


def gearbox_bill(elem_bits, n_in, n_out):
    """A :class:`~nnaccel.hw.common.stream.Gearbox` of ``elem_bits``-bit elements from
    ``n_in`` to ``n_out`` a beat: collecting (``n_out > n_in``), the ``n_out - n_in`` elements
    it holds; splitting, the ``n_in`` elements it selects from (none when the beats are
    equal: wires)."""
    if n_in == n_out:
        return Bill()
    if n_in < n_out:
        return Bill(quantities={"gear_held": (n_out - n_in) * elem_bits})
    return Bill(quantities={"gear_mux": n_in * elem_bits})


def edge_bills(plan, fifos):
    """Per layer of ``plan``, the bill of what the generator builds in front of each of its
    input ports (``fifos``: the generator's FIFO plan, one ``{"depth", "beat", "bits"}`` per
    layer in a chain, a list of them per port in a graph): the FIFO at its depth and width and
    the gearboxes between the producer's beat and the layer's (a chain's one, on the FIFO's
    narrow side; a graph edge's one or two, :func:`~nnaccel.hw.common.graph.edge_beats`)."""
    from .ir import MODEL_INPUT

    beats = {lp.layer.name: lp.fold.pe for lp in plan.layers}
    chain = bool(fifos) and isinstance(fifos[0], dict)
    out = []
    for lp, ports in zip(plan.layers, fifos, strict=True):
        in_beat = lp.adapter.in_beat(lp)
        bill = Bill()
        for src, fifo in zip(lp.layer.inputs, [ports] if chain else ports, strict=True):
            if not fifo.get("depth"):
                continue
            width = fifo["bits"] // fifo["depth"]
            bits = width // fifo["beat"]
            beat = beats.get(src, in_beat) if src != MODEL_INPUT else in_beat
            mid = beat if chain else edge_beats(beat, in_beat)[0]
            bill = bill.plus(fifo_bill(fifo["depth"], width)).plus(
                gearbox_bill(bits, beat, mid)).plus(gearbox_bill(bits, mid, in_beat))
        out.append(bill)
    return out


def estimate_plan(plan, device, fifos=None):
    """``[(layer name, Bill, Estimate)]`` for every layer of ``plan`` (after the folding pass);
    ``fifos`` (the generator's FIFO plan, :attr:`~nnaccel.gen.generate.Design.fifos`) adds
    what stands in front of each layer's input ports (:func:`edge_bills`) to its figures."""
    edges = edge_bills(plan, fifos) if fifos is not None else [Bill()] * len(plan.layers)
    rows = []
    for lp, edge in zip(plan.layers, edges, strict=True):
        bill = lp.adapter.resources(lp).plus(edge)
        rows.append((lp.layer.name, bill, estimate(bill, device)))
    return rows


def budget(device, fill):
    """The usable LUT4, BRAM and DSP of ``device`` at ``fill`` (a fraction in (0, 1])."""
    return {"lut4": device.lut4 * fill, "bram": device.bram * fill, "dsp": device.dsp * fill}


def fits(total, device, fill):
    """Whether an :class:`Estimate` stays within ``fill`` of ``device``'s LUT4, BRAM and DSP."""
    b = budget(device, fill)
    return total.lut4 <= b["lut4"] and total.bram <= b["bram"] and total.dsp <= b["dsp"]


# -- bills of the shared blocks, for the adapters ------------------------------------------------

def lanes_bill(pe, simd, lane_kind, weight_bits, in_bits, raw_width):
    """The lanes and adder tree of ``pe`` x ``simd`` lanes of ``lane_kind`` (a
    :class:`~nnaccel.hw.common.lanes.LaneKind` value: ``xnor``, ``addsub_w``, ``addsub_x``,
    ``mul``) and the ``pe`` raw sums of ``raw_width`` bits they accumulate into."""
    lanes = pe * simd
    kind = getattr(lane_kind, "value", lane_kind)
    q = {"layer": 1, "acc": pe * raw_width}
    mults = ()
    if kind == "xnor":
        q["xnor"] = lanes
    elif kind == "mul":
        mults = ((weight_bits, in_bits, lanes),)
        q["tree"] = lanes * (weight_bits + in_bits)
    else:
        width = in_bits if kind == "addsub_w" else weight_bits
        q["lane_bits"] = lanes * width
        q["addsub_tree"] = lanes * (width + 1)
    return Bill(quantities=q, multipliers=mults, tree_width=simd, carry=raw_width)


def packed_bill(weight_dtype, in_dtype, pairs):
    """What packing two products into one multiplier adds for ``pairs`` multipliers (the
    MVU's ``packed_products``: PEs ``2r`` and ``2r + 1`` share each): per multiplier, the
    packed operand's high weight less the low weight's sign (a ``weight bits + 1`` subtract,
    signed weights) and the high product plus the low product's sign (an adder as wide as a
    product, signed products), add/subtract bits as a lane's (``lane_bits``)."""
    from amaranth import Const, signed, unsigned

    def shape(dt):
        return signed(dt.bits) if dt.signed else unsigned(dt.bits)

    product = (Const(0, shape(weight_dtype)) * Const(0, shape(in_dtype))).shape()
    bits = (weight_dtype.bits + 1 if weight_dtype.signed else 0) + (
        product.width if product.signed else 0)
    return Bill(quantities={"lane_bits": pairs * bits})


def _table_bits(out, padded):
    """Bits of the output stage's per-channel table word that differ between folds: the
    stage's tables as it builds them (thresholds clamped to the raw range, each table as wide
    as its values need, all lanes of a fold in one word); yosys keeps only those bits of a
    read-only memory (a bit equal in every word is a constant)."""
    from ..hw.common.reference import bits_for_range

    if getattr(out.kind, "value", out.kind) == "threshold":
        rmin, rmax = out.raw_range
        rows = [[min(max(-((off - t) // out.scale), rmin), rmax + 1) for t in row]
                for off, row in zip(out.offset, out.thresholds, strict=True)]
        flat = [t for row in rows for t in row]
        tables = [(padded(list(column)), flat) for column in zip(*rows, strict=True)]
    else:
        tables = [(padded(out.offset), out.offset)]
        if getattr(out.kind, "value", out.kind) == "requant":
            tables += [(padded(out.mult), out.mult), (padded(out.shift), out.shift)]
    bits = 0
    for values, every in tables:
        mask = (1 << bits_for_range(min(every), max(every))[0]) - 1
        for q in range(out.pe):
            words = [v & mask for v in values[q::out.pe]]
            same = ~0
            for w in words[1:]:
                same &= ~(w ^ words[0])
            bits += bin(mask & ~same).count("1")
    return bits


def _requant_bits(out, mult, shift):
    """The ``requant`` quantity of a stage (the pipelined stage the engines build): per lane,
    the product's width times the adders summing its partial products (one 18x18 block's
    operands each; none for a lane multiplying by a constant power of two), the levels of its
    variable shifter (none for a shift equal in every fold) and the clamp's two compares."""
    from amaranth import Const, unsigned

    from ..hw.common.outstage import _limbs

    mw = max(max(out.mult).bit_length(), 1)
    blocks = len(_limbs(Const(0, out.acc_shape))) * len(_limbs(Const(0, unsigned(mw))))
    width = max(abs(v) for v in out.acc_range).bit_length() + mw + 2
    bits = 0
    for muls, shifts in zip(mult, shift, strict=True):
        c = next(iter(muls))
        parts = 0 if len(muls) == 1 and c & (c - 1) == 0 else blocks - 1
        levels = max(max(shifts).bit_length(), 1) if len(shifts) > 1 else 0
        bits += width * (parts + levels + 2)
    return bits


def stage_bill(out):
    """The output stage of an :class:`~nnaccel.hw.common.outstage.OutputStageParams`: its
    datapath per lane, its per-channel tables (a read-only memory of ``folds`` words when the
    channels take several beats, :func:`_table_bits` wide) and its requantising multipliers."""
    kind = getattr(out.kind, "value", out.kind)
    acc = out.acc_shape.width
    pe, folds = out.pe, out.folds

    def padded(values):
        """The values over the folds, padding repeating the first, as the stage pads them."""
        values = list(values)
        return values + [values[0]] * (folds * pe - out.channels)

    def lanes(values):
        """Each lane's values over the folds: a lane whose values are all equal gets a
        constant instead of a ROM."""
        values = padded(values)
        return [set(values[q::pe]) for q in range(pe)]

    mults = []
    if kind == "threshold":
        q = {"stage": pe * out.levels * acc}
    else:
        q = {"stage": pe * (acc + out.out_shape.width)}
        if kind == "requant":
            mw = max(max(out.mult).bit_length(), 1)
            mult = lanes(out.mult)
            # a constant power of two is a shift, no multiplier
            real = sum(not (len(v) == 1 and (c := next(iter(v))) & (c - 1) == 0) for v in mult)
            if real:
                mults.append((acc, mw, real))
            q["requant"] = _requant_bits(out, mult, lanes(out.shift))
    rom_bits = _table_bits(out, padded) if folds > 1 else 0
    if rom_bits and out.table_registered:   # the table's output register, the raw value beside
        q["bram_q"] = rom_bits + pe * out.raw_shape.width
    # where the stage puts its table (OutputStageParams.table_in_bram)
    mems = ((Memory(folds, rom_bits, force="bram" if out.table_in_bram else "logic"),)
            if rom_bits else ())
    return Bill(quantities=q, memories=mems, multipliers=tuple(mults), carry=acc)


def stream_bill(in_bits, out_bits):
    """Stream payloads in and out of a block (skid buffers, gearboxes)."""
    return Bill(quantities={"stream": in_bits + out_bits})


def window_bill(win):
    """A sliding-window unit (:class:`~nnaccel.hw.window.params.WindowParams`): its line buffer,
    one copy per read port (yosys duplicates a memory for each), its counters and row
    bookkeeping (``window``), its adders as wide as a line-buffer address (``window_addr``,
    ``7 + 4 x rows of a beat + read ports`` of them: the writer's address; the image's base
    address and the window's first row, each wrapped modulo the buffer by two adders side by
    side, the first row on a new output row and on a new image; per row of a beat's positions
    its two running offsets and their two sums with the first row; per read port its read
    address, the row plus the column), and its per-port output words and padding multiplexers
    (``window_bits``)."""
    width = win.elem_shape.width
    abits = max(win.buffer_depth - 1, 1).bit_length()
    adders = 7 + 4 * win.beat_shape[0] + win.read_ports
    return Bill(quantities={"window": 1, "window_addr": adders * abits,
                            "window_bits": win.read_ports * win.buffer_width + win.n_out * width},
                memories=(Memory(win.buffer_depth, win.buffer_width, rom=False,
                                 copies=win.read_ports),),
                carry=max(win.buffer_depth, 2).bit_length())


def sparse_pe_registers(p, matrix, in_flight, abits):
    """Flip-flop bits of one sparse PE (:class:`~nnaccel.hw.sparse.engine.ProcessingElement`,
    ``abits``-bit entry addresses) that yosys keeps: the pointer word (the block RAM's output
    register and L, with the column's flags decoded from it), the queue's head and pointers, the
    slots held, the iterator, the entry stages (E1, the entry's output register and its copy in
    the fabric, R, F, E2 with its row and weight: the codebook's read or the entry's value),
    the product through E3..E5, the rows of W, H1, H2 and of a clear, the flags (the iterator's
    hold among them), the four forwarded sums,
    both banks' output registers and the row sum, the read-out command (per bank enable, row,
    bank) and its bank through the read, the read-out word. Not counted: the token stages T,
    P, L (equal in every PE: yosys merges them) and the registered reads of the queue and the
    banks (inside their block RAMs)."""
    from amaranth import Const, Shape, signed

    from ..hw.common.dtype import DTypeKind
    from ..hw.common.reference import bits_for_range

    x, raw = p.in_dtype.bits, p.raw_shape.width
    rows = max((p.rows_per_pe - 1).bit_length(), 1)
    slot_bits = (p.queue_depth + in_flight).bit_length()
    if matrix.codebook is not None:
        wshape = Shape(*bits_for_range(min(matrix.codebook), max(matrix.codebook)))
    else:
        wshape = Shape(matrix.value_bits, matrix.value_signed)
    act = signed(2) if p.in_dtype.kind is DTypeKind.BIPOLAR else p.in_dtype.shape
    product = (Const(0, wshape) * Const(0, act)).shape().width
    return (4 * abits + 3                                   # pointers: output register, L
            #                                                 and L's empty, single, useful
            + (x + 2 * abits + 6) + 4 * slot_bits + 5         # queue head (flags: read, head),
            #                                                 pointers, read address, slots
            + 2 * abits + x + 3                             # iterator: address, left, value
            + 3 * (x + 5) + 2 * (matrix.value_bits + p.index_bits)  # E1, R, F, the
            #                                                 entry's two registers
            + rows + (x + 3 + rows) + wshape.width          # previous row, E2, weight
            + 3 * (product + 3 + rows)                      # E3, E4, E5
            + (3 + rows) + 2 * (2 + rows) + rows            # W, H1, H2, the row a clear writes
            + (5 + rows)                                    # read-out command, bank selects
            + 15 + 4 * raw + 3 * (raw + 1)                  # flags, sums, their registers
            + raw)                                          # the read-out word


def sparse_bill(p, matrix, in_flight):
    """The PEs of a sparse engine (:class:`~nnaccel.hw.sparse.params.SparseParams` ``p``, its
    encoded ``matrix``; ``in_flight``: tokens a PE holds beyond its queue), the broadcast and the
    collector, without the output stage. Per PE (``pe`` quantity: the token, pointer and entry
    pipeline, the row iterator, the accumulator forwarding): the pointer and entry memory (one
    block RAM when both fit one DP16KD read on both ports, else two), the activation queue and
    two accumulator banks, all in block RAM (the engine asks for it), the queue's flags in
    distributed RAM, a codebook ROM and one multiplier; ``pe_bits``: the PEs' flip-flops
    (:func:`sparse_pe_registers`)."""
    k, raw = p.in_features, p.raw_shape.width
    xbits = p.in_dtype.bits
    value_bits = matrix.value_bits
    wbits = value_bits
    if matrix.codebook is not None:
        wbits = max(max(abs(int(v)) for v in matrix.codebook).bit_length() + 1, 2)
    mems, mults = [], []
    slots = p.queue_depth + in_flight
    entry_bits = value_bits + p.index_bits
    registers = 0
    for pe in range(p.pe):
        entries = len(matrix.z[pe])
        depth = k + entries
        abits = max(depth.bit_length(), 1)
        width = max(2 * abits, entry_bits)
        if any(depth <= d and width <= w for d, w in ((1024, 18), (2048, 9), (4096, 4))):
            mems.append(Memory(depth, width, force="bram"))
        else:
            abits = max(entries.bit_length(), 1)
            mems += [Memory(k, 2 * abits, force="bram"),
                     Memory(max(entries, 1), entry_bits, force="bram")]
        registers += sparse_pe_registers(p, matrix, in_flight, abits)
        # the activation queue (value, start, left) and its flags beside it
        mems += [Memory(1 << slots.bit_length(), xbits + 2 * abits, rom=False,
                        force="bram"),
                 Memory(1 << slots.bit_length(), 3, rom=False)]
        mems.append(Memory(p.rows_per_pe, raw, rom=False, copies=2, force="bram"))
        if matrix.codebook is not None:
            mems.append(Memory(len(matrix.codebook), wbits))
        mults.append((wbits, xbits, 1))
    # the stream bits in and out, and the skid buffer in front of a narrower output stage
    stream = p.in_beat * xbits + p.pe * raw + (p.out_lanes * raw if p.out_lanes < p.pe else 0)
    q = {"layer": 1, "pe": p.pe, "pe_bits": registers, "acc": 4 * p.pe * raw,
         "stream": stream}
    return Bill(quantities=q, memories=tuple(mems), multipliers=tuple(mults),
                tree_width=p.pe, carry=raw)


def systolic_bill(p, psum_bits):
    """A systolic array engine (:class:`~nnaccel.hw.systolic.params.SystolicParams` ``p``,
    ``psum_bits`` wide partial sums in the array) without its output stage: ``R x C`` cells
    (``cell`` bits: the activation, weight and partial-sum registers and adder of each; the
    ``dsp_cells`` multiply in DSP blocks, the others in logic), the weight ROM, the activation
    buffer (two banks) and the collector's ``C`` accumulator memories (two read ports each
    weight-stationary, which accumulates; one output-stationary, which only writes)."""
    cells = p.rows * p.cols
    xbits, wbits = p.in_dtype.bits, p.weight_dtype.bits
    dsp = cells if p.dsp_cells is None else p.dsp_cells
    words = (p.batch_tile * p.k_tiles if p.dataflow.value == "ws" else p.in_beats)
    low = max((p.batch_tile - 1).bit_length(), 0)
    acc = p.acc_shape.width
    mems = [Memory(p.weight_words, p.cols * wbits, table=True),
            Memory(2 * words, p.rows * xbits, rom=False),
            Memory(2 * p.m_tiles << low, acc, rom=False,
                   copies=(2 if p.dataflow.value == "ws" else 1) * p.cols)]
    q = {"layer": 1, "cell": cells * (xbits + wbits + psum_bits),
         "lane_bits": (cells - dsp) * xbits * wbits, "acc": p.cols * acc,
         "stream": p.in_beat * xbits + p.cols * acc}
    return Bill(quantities=q, memories=tuple(mems), multipliers=((xbits, wbits, dsp),),
                tree_width=p.rows, carry=psum_bits)


def design_report(design, device):
    """The per-layer table of a generated design (a :class:`~nnaccel.gen.generate.Design`) on
    ``device``: one dict per layer (``layer``, ``engine``, ``fold``, ``lanes``, ``cycles`` and
    the estimate's ``lut4``, ``ff``, ``bram``, ``dsp``, ``fmax_mhz``, its input FIFO included),
    and the totals (``cycles`` the pipeline's, ``fmax_mhz`` the slowest layer's,
    ``inferences_per_second`` their quotient, ``device`` and its capacities)."""
    rows, total = [], None
    entries = design.manifest["layers"]
    for entry, (name, _, est) in zip(entries, estimate_plan(design.plan, device, design.fifos),
                                     strict=True):
        rows.append({"layer": name, "engine": entry["engine"],
                     "fold": f"{entry.get('pe', entry['out_beat'])}x"
                             f"{entry.get('simd', entry['in_beat'])}",
                     "lanes": entry["lanes"], "cycles": entry["expected_cycles"],
                     **est.as_dict()})
        total = est if total is None else total.plus(est)
    cycles = design.manifest["expected_cycles_per_inference"]
    return {"device": {"name": device.name, "lut4": device.lut4, "ff": device.ff,
                       "bram": device.bram, "dsp": device.dsp},
            "layers": rows,
            "total": {**total.as_dict(), "lanes": design.manifest["lanes"], "cycles": cycles,
                      "inferences_per_second": round(total.fmax_mhz * 1e6 / cycles, 1)}}


def format_design_report(report):
    """:func:`design_report` as a text table."""
    head = ("layer", "engine", "fold", "lanes", "cycles", "lut4", "ff", "bram", "dsp",
            "fmax_mhz")
    rows = [head] + [tuple(str(r[k]) for k in head) for r in report["layers"]]
    t, d = report["total"], report["device"]
    rows.append(("total", "", "", str(t["lanes"]), str(t["cycles"]), str(t["lut4"]),
                 str(t["ff"]), str(t["bram"]), str(t["dsp"]), str(t["fmax_mhz"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i > 2 else c.ljust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    lines.append(f"estimated on the {d['name']}: {t['lut4'] / d['lut4']:.1%} of its LUT4, "
                 f"{t['bram']}/{d['bram']} block RAMs, {t['dsp']}/{d['dsp']} DSP blocks; "
                 f"{t['inferences_per_second']:,.0f} inferences/s at the estimated Fmax")
    return "\n".join(lines)


def format_measured(measured, report):
    """Per-layer figures measured from synthesis (``nnaccel build``'s ``report["layers"]``)
    beside the estimates of :func:`design_report` ``report``, as a text table."""
    est = {r["layer"]: r for r in report["layers"]}
    head = ("layer", "lut4", "(est.)", "ff", "(est.)", "bram", "(est.)", "dsp", "(est.)")
    rows = [head]
    for m in measured:
        name = m["layer"]   # a layer's name, or its index when the build knew no names
        if isinstance(name, int) and name < len(report["layers"]):
            name = report["layers"][name]["layer"]
        e = est.get(name, {})
        rows.append((str(name), *[str(v) for k in ("lut4", "ff", "bram", "dsp")
                                        for v in (m[k], e.get(k, "-"))]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in rows]
    return "per layer, from yosys (the resource model's estimate beside):\n" + "\n".join(lines)
