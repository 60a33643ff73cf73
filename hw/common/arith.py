"""Small arithmetic helpers shared by the engines."""

from amaranth import Signal, Value

__all__ = ["cdiv", "delay", "tree_sum", "pack_words"]


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


def pack_words(fields, width):
    """Pack an iterable of non-negative field values of ``width`` bits, first at bit 0."""
    word = 0
    for n, f in enumerate(fields):
        f = int(f)
        if f < 0 or f >> width:
            raise ValueError(f"field {f} does not fit {width} unsigned bits")
        word |= f << (n * width)
    return word
