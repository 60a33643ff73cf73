"""The logic multiplier (:func:`nnaccel.hw.common.lanes.logic_product`), bit-exact with numpy
over every pair of operands of each dtype pair, at each pipeline depth it offers, one product
a cycle."""

import numpy as np
import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from nnaccel.hw.common.dtype import DType
from nnaccel.hw.common.lanes import logic_product, logic_product_stages

#: Multipliers side by side, each fed its share of the operand pairs, one pair a cycle.
COPIES = 32


def _shape(dtype):
    return signed(dtype.bits) if dtype.signed else unsigned(dtype.bits)


def _exhaustive(adt, bdt, stages):
    """Every ``a * b`` of ``adt`` x ``bdt`` through ``logic_product`` with ``stages``, the
    caller's register behind it; returns ``(pairs, products)``."""
    a_all = np.arange(adt.lo, adt.hi + 1)
    b_all = np.arange(bdt.lo, bdt.hi + 1)
    pairs = np.array([(a, b) for a in a_all for b in b_all])
    steps = -(-len(pairs) // COPIES)
    pairs = np.concatenate([pairs, np.zeros((steps * COPIES - len(pairs), 2), dtype=int)])
    m = Module()
    ins, outs = [], []
    for n in range(COPIES):
        a, b = Signal(_shape(adt), name=f"a{n}"), Signal(_shape(bdt), name=f"b{n}")
        p = logic_product(m, a, b, f"p{n}", stages=stages)
        assert p.shape().width >= (a * b).shape().width
        out = Signal(p.shape(), name=f"out{n}")
        m.d.sync += out.eq(p)
        ins.append((a, b))
        outs.append(out)
    latency = logic_product_stages(stages) + 1
    got = np.zeros(len(pairs), dtype=object)
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for t in range(steps + latency - 1):
            if t < steps:
                for n, (a, b) in enumerate(ins):
                    ctx.set(a, int(pairs[n * steps + t, 0]))
                    ctx.set(b, int(pairs[n * steps + t, 1]))
            await ctx.tick()
            if t + 1 >= latency:
                for n, out in enumerate(outs):
                    got[n * steps + t + 1 - latency] = ctx.get(out)

    sim.add_testbench(bench)
    sim.run()
    return pairs, got


@pytest.mark.parametrize("adt,bdt,stages", [
    ("int8", "int8", 1), ("int8", "int8", 2),       # ResNet-8's lanes, both depths the MVU uses
    ("uint8", "int8", 2), ("int8", "uint8", 1),     # unsigned inputs, unsigned weights
    ("int5", "int3", 3),                            # an odd count of partial products
    ("uint3", "uint7", 3), ("int4", "uint1", 2),    # more stages than adder levels
    ("int3", "int2", 1),                            # one pair, negative last partial product
])
def test_logic_product_over_every_operand_pair(adt, bdt, stages):
    adt, bdt = DType.parse(adt), DType.parse(bdt)
    pairs, got = _exhaustive(adt, bdt, stages)
    assert got.tolist() == (pairs[:, 0] * pairs[:, 1]).tolist()


def test_logic_product_stages():
    assert logic_product_stages() == 1
    assert [logic_product_stages(s) for s in (1, 2, 3)] == [1, 2, 3]
    for bad in (0, -1, 1.5, True):
        with pytest.raises((TypeError, ValueError)):
            logic_product_stages(bad)
