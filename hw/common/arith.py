"""Small arithmetic helpers shared by the engines."""

from amaranth import Cat, Const, Signal, Value

__all__ = ["cdiv", "delay", "tree_sum", "pipelined_tree_sum", "tree_stages",
           "pipelined_popcount", "popcount_stages", "LEVEL_BUDGET", "pack_words",
           "check_positive", "KEEP"]

#: Attributes of a register copied on purpose to split its fan-out (e.g. the MVU's input beat,
#: :data:`nnaccel.hw.mvu.engine.INPUT_COPY_PES`): yosys's ``opt_merge`` folds flip-flops of
#: equal inputs back into one unless the flip-flop itself is marked ``keep``. The Verilog marks
#: the register's wire; the synthesis scripts of nnaccel's flows move the mark onto the
#: flip-flop (:data:`nnaccel.boards.build.KEEP_COPIES`); Vivado and Quartus read ``keep`` on
#: the register itself.
KEEP = {"keep": 1}

#: Delay budget of one pipeline stage of an adder tree, in units of one LUT level (an adder
#: level of output width ``w`` costs ``1 + w/16``: a LUT and routing, then the carry chain);
#: one level of 17-bit adders, two of a popcount's narrow first levels (measured on the
#: ECP5: three such levels plus routing took 8.1 ns).
LEVEL_BUDGET = 3.5


def cdiv(a, b):
    """``ceil(a / b)`` of integers, exactly (no floating point)."""
    return -(-a // b)


def delay(m, value, cycles, name):
    """``value`` delayed by ``cycles`` registers of the ``sync`` domain of module ``m``."""
    for n in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_d{n}")
        m.d.sync += reg.eq(value)
        value = reg
    return value


def tree_sum(values):
    """Sum ``values`` as a balanced adder tree (depth ceil(log2(n)), widths grow as needed)."""
    values = [Value.cast(v) for v in values]
    if not values:
        raise ValueError("tree_sum needs at least one value")
    while len(values) > 1:
        paired = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        if len(values) % 2:
            paired.append(values[-1])
        values = paired
    return values[0]


def _level_cost(values):
    return 1 + max(Value.cast(v).shape().width for v in values) / 16


def _tree(values, budget, register):
    """The balanced adder tree of ``values``, ``register(values, n)`` (stage ``n``) applied
    after every group of levels whose cost fits ``budget`` and after the last level; returns
    ``(sum, stages)``."""
    values = [Value.cast(v) for v in values]
    if not values:
        raise ValueError("an adder tree needs at least one value")
    stages, spent = 0, 0.0
    while True:
        if len(values) > 1:
            paired = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
            if len(values) % 2:
                paired.append(values[-1])
            cost = _level_cost(paired)
        if len(values) == 1 or (spent > 0 and spent + cost > budget):
            values, stages, spent = register(values, stages), stages + 1, 0.0
            if len(values) == 1:
                return values[0], stages
            continue
        values, spent = paired, spent + cost


def pipelined_tree_sum(m, values, name, *, budget=LEVEL_BUDGET, enable=None):
    """Sum ``values`` as a balanced adder tree with a register of ``m``'s ``sync`` domain
    after every group of levels whose cost (see :data:`LEVEL_BUDGET`) fits ``budget``, and after
    the last level. Returns ``(sum, stages)``: the registered sum, :func:`tree_stages` cycles
    after the operands (with one value, that value registered). ``enable``: the registers load
    only while it is high (a pipeline that stalls), else every cycle."""
    def register(values, n):
        regs = [Signal(v.shape(), name=f"{name}_s{n}_{k}") for k, v in enumerate(values)]
        with m.If(1 if enable is None else enable):
            m.d.sync += [r.eq(v) for r, v in zip(regs, values, strict=True)]
        return regs
    return _tree(values, budget, register)


def tree_stages(shapes, *, budget=LEVEL_BUDGET):
    """Register stages of :func:`pipelined_tree_sum` over operands of ``shapes``."""
    return _tree([Const(0, s) for s in shapes], budget, lambda values, n: values)[1]


def _logic_add(a, b):
    """``a + b`` of two unsigned values as gates (a ripple of XOR/AND/OR, no ``+``), so that
    synthesis maps it into look-up tables with the logic around it instead of a carry chain."""
    a, b = Value.cast(a), Value.cast(b)
    width = max(len(a), len(b))
    bits, carry = [], Const(0, 1)
    for i in range(width):
        ai = a[i] if i < len(a) else Const(0, 1)
        bi = b[i] if i < len(b) else Const(0, 1)
        bits.append(ai ^ bi ^ carry)
        carry = (ai & bi) | (carry & (ai ^ bi))
    return Cat(*bits, carry)


def _pairs(values, add):
    """One level of a tree: neighbours summed with ``add``, an odd last value passed on."""
    out = [add(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
    return out + values[len(values) - len(values) % 2:]


#: Tree levels of a popcount built as look-up-table logic before its first register: two,
#: so every output bit of a level depends on four bits of the level before (1+1 -> 2 bits and
#: 2+2 -> 3 bits), one LUT4 each on the ECP5.
POPCOUNT_LUT_LEVELS = 2


def _lut_levels(bits):
    values = [Value.cast(b) for b in bits]
    if not values:
        raise ValueError("a popcount needs at least one bit")
    for _ in range(POPCOUNT_LUT_LEVELS):
        values = _pairs(values, _logic_add)
    return values


def pipelined_popcount(m, bits, name, *, budget=LEVEL_BUDGET):
    """The number of ones among the 1-bit values ``bits``, for four-input LUTs: the first
    :data:`POPCOUNT_LUT_LEVELS` tree levels are gates (:func:`_logic_add`), so synthesis packs
    each lane's own logic (an XNOR) with the pair sum into one LUT4 per output bit and spends
    no carry chain on 1- and 2-bit sums; their results are registered, then summed by
    :func:`pipelined_tree_sum` on carry chains. Returns ``(sum, stages)``: the registered
    count, :func:`popcount_stages` cycles after ``bits``."""
    values = _lut_levels(bits)
    regs = [Signal(len(v), name=f"{name}_l{k}") for k, v in enumerate(values)]
    m.d.sync += [r.eq(v) for r, v in zip(regs, values, strict=True)]
    total, stages = pipelined_tree_sum(m, regs, name, budget=budget)
    return total, 1 + stages


def popcount_stages(n, *, budget=LEVEL_BUDGET):
    """Register stages of :func:`pipelined_popcount` over ``n`` bits."""
    values = _lut_levels([Const(0, 1)] * n)
    return 1 + tree_stages([len(v) for v in values], budget=budget)


def pack_words(fields, width):
    """Pack an iterable of non-negative field values of ``width`` bits, first at bit 0."""
    word = 0
    for n, f in enumerate(fields):
        f = int(f)
        if f < 0 or f >> width:
            raise ValueError(f"field {f} does not fit {width} unsigned bits")
        word |= f << (n * width)
    return word


def check_positive(name, value, *, zero=False):
    """Raise TypeError/ValueError unless ``value`` is a (positive, or non-negative) integer."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < (0 if zero else 1):
        kind = "a non-negative" if zero else "a positive"
        raise ValueError(f"{name} must be {kind} integer, not {value!r}")
    return value
