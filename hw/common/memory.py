"""Read-only tables for weights and per-channel parameters, with a synchronous read port."""

import enum

from amaranth import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from .arith import cdiv, check_positive

__all__ = ["Storage", "Rom", "BRAM_SHAPES", "LUT4_PER_BRAM", "bram_blocks", "bank_depth",
           "rom_banked", "rom_lut4", "ADDRESS_FANOUT", "address_copies",
           "choose_storage", "output_register", "NO_RW_CHECK", "registered_read",
           "pipelined_read", "issue_order_read"]

#: The (depth, width) configurations of one 18-kbit block RAM (the ECP5's DP16KD in
#: pseudo-dual-port mode: one read port up to 36 bits wide).
BRAM_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))
#: LUT4s a block RAM must save before a table goes into block RAM rather than logic.
LUT4_PER_BRAM = 128


def bram_blocks(depth, width):
    """Block RAMs holding a table of ``depth`` words of ``width`` bits (best configuration)."""
    return min(-(-depth // d) * -(-width // w) for d, w in BRAM_SHAPES)


def bank_depth(depth, width):
    """Words of one bank of a block RAM table of ``depth`` x ``width``: the depth of the
    shallowest configuration of the fewest blocks (:func:`bram_blocks`), so that each bank is
    whole blocks side by side, with no multiplexer on its read data (yosys splits a deeper
    table in depth, or puts its last words in logic, with a multiplexer on the block RAMs'
    read data); ``depth`` itself when one bank holds it all."""
    blocks = bram_blocks(depth, width)
    bank = min(d for d, w in BRAM_SHAPES if -(-depth // d) * -(-width // w) == blocks)
    return min(bank, depth)


def rom_banked(depth, width, storage=None):
    """Whether a :class:`Rom` of ``depth`` words of ``width`` bits in ``storage`` is banked
    (block RAM deeper than one bank: a bank multiplexer after the banks' output registers)."""
    if depth == 1 or (storage is not None and Storage(storage) is Storage.LOGIC):
        return False
    return bank_depth(depth, width) < depth


def rom_lut4(depth, width):
    """LUT4s of the same table as a constant ROM in logic: a LUT4 per output bit and 16 words
    (the wider multiplexers of the ECP5's slices are free); none for a single word."""
    return 0 if depth == 1 else width * -(-depth // 16)


#: LUT4s of a table in logic one copy of its read address drives at most
#: (:func:`address_copies`). At 512, CNV's middle at the refitted chooser's fold (c2 8x192 and
#: c3 16x128, both tables in logic) routed at 59.6 MHz, held by an address copy routed 15.2 ns
#: to the LUTs of its slice; at 128, 85.4 MHz (``python -m nnaccel.bench.network cnv_mid``).
ADDRESS_FANOUT = 128


def address_copies(depth, width, storage):
    """Copies of the read address of a :class:`Rom` of ``depth`` x ``width`` in ``storage``:
    in logic, one per :data:`ADDRESS_FANOUT` of its LUT4s (:func:`rom_lut4`), each reading its
    own slice of the word's columns; else 1. Each address bit of CNV's c3 table (72 words of
    2,048 bits, 12,112 LUT4) would otherwise reach about 10,000 LUT4s spread over the chip,
    nets no router can lay without congestion."""
    if Storage(storage) is not Storage.LOGIC or depth == 1:
        return 1
    return max(1, min(width, cdiv(rom_lut4(depth, width), ADDRESS_FANOUT)))


def choose_storage(depth, width, storage=None):
    """Where a table of ``depth`` x ``width`` goes: ``storage`` unless it is ``AUTO`` (or None);
    else block RAM when that saves at least :data:`LUT4_PER_BRAM` LUT4s per block, else logic
    (the shallow, very wide tables of a wide fold, whose bits are each read every cycle)."""
    storage = Storage.AUTO if storage is None else Storage(storage)
    if storage is not Storage.AUTO:
        return storage
    if rom_lut4(depth, width) >= LUT4_PER_BRAM * bram_blocks(depth, width):
        return Storage.BRAM
    return Storage.LOGIC


def output_register(m, data, *, en=None, name="bram_q"):
    """``data`` (a block RAM's read data) registered once more, with clock enable ``en`` (None:
    always); returns the register.

    It has no reset, so when nothing but this register reads ``data``, the ECP5 flow folds it
    into the DP16KD's own output register (REGMODE ``OUTREG``; ``nnaccel.boards.ecp5_bram``):
    the block RAM's clock-to-output falls from about 5.6 ns to about 1 ns, and the fabric's
    flip-flops are not spent. Anywhere else it is a plain register, one cycle more latency."""
    q = Signal(data.shape(), name=name, reset_less=True)
    if en is None:
        m.d.sync += q.eq(data)
    else:
        with m.If(en):
            m.d.sync += q.eq(data)
    return q


#: yosys attributes of a RAM (``Memory(..., attrs=NO_RW_CHECK)``) read by
#: :func:`registered_read`: a read of the word written in the same cycle may return anything,
#: so synthesis puts no bypass logic between the block RAM's read data and its user.
NO_RW_CHECK = {"no_rw_check": 1}


def registered_read(m, mem, addr, *, en=None, name="bram_rd"):
    """``mem[addr]`` one cycle later, in a register loaded when ``en`` (None: always); returns
    the register.

    For a RAM ``mem`` (a :class:`~amaranth.lib.memory.Memory` with write ports) built with
    ``attrs=NO_RW_CHECK``: the memory's asynchronous read port into a reset-less register,
    which yosys merges into a block RAM read port of the same latency as a synchronous one. A
    synchronous port would make yosys emulate the read of a word written in the same cycle
    (the DP16KD leaves it undefined) with a multiplexer on the read data, which keeps
    :func:`output_register` from folding into the block RAM. The caller must never use such a
    read (simulation returns the old word; hardware anything)."""
    port = mem.read_port(domain="comb")
    m.d.comb += port.addr.eq(addr)
    return output_register(m, port.data, en=en, name=name)


def pipelined_read(m, mem, addr, *, en=None, out_en=None, name="bram_q", read_name="bram_rd"):
    """``mem[addr]`` two cycles later: :func:`registered_read` (loaded when ``en``) and then
    :func:`output_register` (loaded when ``out_en``; None: always), so that nothing but a
    register follows the block RAM read (the second one folds into the DP16KD on the ECP5).
    Returns the output register."""
    read = registered_read(m, mem, addr, en=en, name=read_name)
    return output_register(m, read, en=out_en, name=name)


def issue_order_read(m, rom, issue, *, en=None, extra=False, name="w"):
    """Read the words of ``rom`` (a :class:`Rom`) in order, the next one with each
    cycle of ``issue`` (after the last word, word 0 again), for a pipeline whose stages load
    when ``en`` (None: every cycle). Returns ``(word, stages)``: the word of a beat issued in a
    cycle, ``stages`` loads of ``en`` later (2, or 3 with ``extra`` or a banked ``rom``).

    The address is a register, the count of issues so far: nothing of an issue cycle's
    handshake reaches the memory's address pins (``en`` drives its read enable, so a stalled
    word holds). The memory reads a beat's word in the beat's issue cycle; the word then goes
    through :func:`output_register` (the DP16KD's own output register on the ECP5; a Rom of
    latency 2 has its own, e.g. a banked one, whose bank multiplexer follows them) and, with
    ``extra``, through one more register, e.g. one placed beside the multipliers, which a
    block RAM lies far from. A banked table always gets that register, after its bank
    multiplexer, so the multiplexer lies between registers of its own (its banks' output
    registers are spread over the chip's block RAM columns). A table in logic with copies of
    its address (``Rom(copied=True)``) gets a counter per copy."""
    depth = len(rom.words)
    # a counter per copy of a table's address (Rom's copied), else one
    sinks = [rom.addr] if rom.copies == 1 else [rom.addr_copies[k] for k in range(rom.copies)]
    for k, sink in enumerate(sinks):
        addr = Signal(range(max(depth, 2)), name=f"{name}_addr" + (f"{k}" if k else ""))
        with m.If(issue):
            m.d.sync += addr.eq(Mux(addr == depth - 1, 0, addr + 1))
        m.d.comb += sink.eq(addr)
    m.d.comb += rom.en.eq(1 if en is None else en)
    word = rom.data
    if rom.latency == 1:
        word = output_register(m, word, en=en, name=f"{name}_q")
    extra = bool(extra) or rom.bank_depth < depth
    if extra:
        word = output_register(m, word, en=en, name=f"{name}_late")
    return word, 2 + extra


class Storage(enum.Enum):
    """Where a table lives. ``AUTO``: constants when it has one word, block RAM otherwise."""

    AUTO = "auto"
    BRAM = "bram"
    LOGIC = "logic"


class Rom(wiring.Component):
    """A table of ``len(words)`` unsigned words of ``width`` bits.

    ``data`` shows ``words[addr]`` :attr:`latency` cycles with ``en`` high after a cycle with
    ``en`` high and holds while ``en`` is low (a block RAM read port with its output register,
    both clock-enabled by ``en``), whatever the storage. The latency is 1, or 2 with
    ``registered`` or when a block RAM table is banked. ``Storage.LOGIC`` keeps the table as
    logic (a single word is a constant wire that yosys folds into the logic that uses it; more
    are a memory yosys must build from look-up tables, never block RAM) read at a registered
    address; with ``registered``, the address goes through a second register (cheaper than
    registering the wide word; the look-up stays before the user's own register).

    ``Storage.BRAM`` infers a memory. Its registered read data goes through
    :func:`output_register` (the DP16KD's own output register on the ECP5). A table deeper
    than one block RAM configuration holds (:func:`bank_depth`) is banked: each bank whole
    block RAMs side by side with its own output register, the bank then chosen by the read's
    (delayed) bank number, so a multiplexer follows the registers rather than the block RAMs'
    read data, which yosys's own depth split would leave unregistered (about 5.6 ns on the
    ECP5). A banked table's latency is 2, and ``data`` is that multiplexer's output.

    ``copied``: in logic, the table is :attr:`copies` tables side by side, each a slice of the
    word's columns read at its own address register (:func:`address_copies`), loaded from its
    own element of ``addr_copies`` instead of ``addr``. The reader drives every element with
    the same address, each from registers of its own (:func:`issue_order_read` keeps a counter
    per copy): synthesis merges registers of equal inputs, so copies of one address register
    would end as one again.
    """

    def __init__(self, words, width, *, storage=Storage.AUTO, registered=False, copied=False):
        self.words = [int(w) for w in words]
        check_positive("number of words", len(self.words))
        self.width = check_positive("width", width)
        self.storage = Storage(storage)
        if any(w < 0 or w >> width for w in self.words):
            raise ValueError(f"every word must fit in {width} unsigned bits")
        depth = len(self.words)
        #: Words of a bank (:func:`bank_depth`); ``len(words)`` when the table is one bank.
        self.bank_depth = (bank_depth(depth, width) if rom_banked(depth, width, self.storage)
                           else depth)
        #: Cycles from a read (``en`` high) to its word on ``data``.
        self.latency = 2 if registered or self.bank_depth < depth else 1
        #: Address registers of a table in logic, each reading a slice of the columns (1
        #: unless ``copied``).
        self.copies = address_copies(depth, width, self.storage) if copied else 1
        ports = {"addr": In(range(max(depth, 2))), "en": In(1), "data": Out(width)}
        if self.copies > 1:
            ports["addr_copies"] = In(data.ArrayLayout(range(max(depth, 2)), self.copies))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        depth = len(self.words)
        if depth == 1:
            m.d.comb += self.data.eq(Const(self.words[0], self.width))
        elif self.storage is Storage.LOGIC:
            sources = ([self.addr] if self.copies == 1
                       else [self.addr_copies[k] for k in range(self.copies)])
            columns = []
            for k, source in enumerate(sources):
                lo, hi = k * self.width // self.copies, (k + 1) * self.width // self.copies
                columns.append(self._logic_table(m, source, lo, hi,
                                                 "" if self.copies == 1 else str(k)))
            m.d.comb += self.data.eq(Cat(*columns))
        elif self.bank_depth == depth:
            m.submodules.mem = mem = memory.Memory(shape=unsigned(self.width), depth=depth,
                                                   init=self.words)
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(self.addr), port.en.eq(self.en)]
            data = port.data
            if self.latency == 2:
                data = output_register(m, data, en=self.en)
            m.d.comb += self.data.eq(data)
        else:
            m.d.comb += self.data.eq(self._banked(m))
        return m

    def _logic_table(self, m, source, lo, hi, suffix):
        """Columns ``lo`` to ``hi - 1`` of the table in logic, read at ``source`` once or twice
        registered; returns the read data."""
        addr = Signal.like(self.addr, name=f"addr{suffix}")
        first = Signal.like(self.addr, name=f"first{suffix}") if self.latency == 2 else source
        with m.If(self.en):
            m.d.sync += addr.eq(first)
            if self.latency == 2:
                m.d.sync += first.eq(source)
        # an asynchronous read at a registered address: yosys merges the register into the
        # read port, and the attribute keeps the memory out of block RAM
        mask = (1 << (hi - lo)) - 1
        m.submodules[f"table{suffix}"] = table = memory.Memory(
            shape=unsigned(hi - lo), depth=len(self.words),
            init=[w >> lo & mask for w in self.words], attrs={"rom_style": "logic"})
        port = table.read_port(domain="comb")
        m.d.comb += port.addr.eq(addr)
        return port.data

    def _banked(self, m):
        """The read data of the banked block RAM table (latency 2)."""
        size = self.bank_depth
        bits = (size - 1).bit_length()
        banks = [self.words[k:k + size] for k in range(0, len(self.words), size)]
        select = Signal(range(len(banks)), name="bank")
        with m.If(self.en):
            m.d.sync += select.eq(self.addr[bits:])
        select = output_register(m, select, en=self.en, name="bank_q")
        registers = []
        for k, words in enumerate(banks):
            # block RAM even for a short last bank, whose blocks the count of the table
            # (bram_blocks) includes
            m.submodules[f"bank{k}"] = mem = memory.Memory(
                shape=unsigned(self.width), depth=len(words), init=words,
                attrs={"ram_style": "block"})
            port = mem.read_port(domain="sync")
            m.d.comb += [port.addr.eq(self.addr[:bits]), port.en.eq(self.en)]
            registers.append(output_register(m, port.data, en=self.en, name=f"bank{k}_q"))
        data = Signal(self.width, name="bank_data")
        with m.Switch(select):
            for k, register in enumerate(registers):
                with m.Case(k):
                    m.d.comb += data.eq(register)
        return data
