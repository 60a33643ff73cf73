"""Small arithmetic helpers shared by the engines."""

from amaranth import Const, Signal, Value

__all__ = ["cdiv", "delay", "tree_sum", "pipelined_tree_sum", "tree_stages",
           "LEVEL_BUDGET", "pack_words"]

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


def pack_words(fields, width):
    """Pack an iterable of non-negative field values of ``width`` bits, first at bit 0."""
    word = 0
    for n, f in enumerate(fields):
        f = int(f)
        if f < 0 or f >> width:
            raise ValueError(f"field {f} does not fit {width} unsigned bits")
        word |= f << (n * width)
    return word
