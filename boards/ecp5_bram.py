"""Fold the fabric register behind an ECP5 block RAM read port into the DP16KD's own.

yosys (``synth_ecp5``) maps every memory to DP16KD with ``REGMODE_A/B = "NOREG"``, so the read
data leaves the block RAM about 5.6 ns after the clock, and a register placed right behind it
(:func:`nnaccel.hw.common.memory.output_register`) stays a row of TRELLIS_FF in the fabric.
The DP16KD has an output register of its own (``REGMODE = "OUTREG"``, about 1 ns clock to
output): :func:`fold_output_registers` rewrites yosys's JSON netlist before nextpnr so that
every read port whose used data bits each drive nothing but the D input of one such flip-flop
gets ``OUTREG``, the flip-flops' enable on its OCE pin, their outputs on its DO pins, and the
flip-flops deleted. The behaviour is the same cycle for cycle.

A port is folded whole or not at all. It is left alone when a read bit drives anything else
(logic, a module port, a second flip-flop), or a flip-flop has a set/reset that can fire, another
clock or edge, a different clock enable than its siblings, an inverted enable, a power-up value
of 1, or when the port's own reset is connected. In the 36-bit pseudo-dual-port mode (yosys's
``$__PDPW16KD_``) one read port uses DOA and DOB, both read-clock registers: both REGMODEs and
both OCEs are set.

:func:`fold_multiplier_registers` does the same for the MULT18X18D (its multiplier alone takes
3.9 ns, and yosys uses none of its registers): reset-less flip-flops that hold its operands A and
B become its input registers, those its used product bits each feed alone its output register.

``python -m nnaccel.boards.ecp5_bram IN.json OUT.json`` does both on a file and prints the counts.
"""

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

__all__ = ["fold_output_registers", "fold_multiplier_registers", "fold_file", "summary",
           "main"]

_BITS = re.compile(r"[01xz]+")
#: Names of the reasons a port is left alone, as counted in the report's ``"refused"``.
REASONS = {
    "logic": "a read bit drives logic or a second sink",
    "port": "a read bit is a module output",
    "reset": "a set/reset that can fire (flip-flop LSR, PRLD, the port's RST, or GSR in use)",
    "clock": "a flip-flop on another clock or edge",
    "enable": "mixed or inverted clock enables",
    "init": "a flip-flop that powers up at 1",
    "mode": "the port is already registered or its OCE is in use",
}


def _param(cell, name, default=None):
    """A cell parameter as yosys's JSON writes it: a binary string is a number, a string that
    would read as binary carries one trailing space."""
    value = cell.get("parameters", {}).get(name)
    if value is None:
        return default
    if isinstance(value, int):
        return value
    if _BITS.fullmatch(value):
        return int(value.replace("x", "0").replace("z", "0"), 2)
    if value.endswith(" ") and _BITS.fullmatch(value[:-1]):
        return value[:-1]
    return value


def _pin(cell, name):
    """The one bit on pin ``name`` (a net number or a constant "0"/"1"/"x"), None unconnected."""
    bits = cell.get("connections", {}).get(name)
    return bits[0] if bits else None


def _read_ports(cell):
    """The DP16KD's read ports: (label, data pins, clock pin, clock mux parameter, OCE pins,
    RST pins, REGMODE parameters). The 36-bit mode reads DOA and DOB on CLKB."""
    pins = {letter: [f"DO{letter}{i}" for i in range(18)] for letter in "AB"}
    if 36 in (_param(cell, "DATA_WIDTH_A", 18), _param(cell, "DATA_WIDTH_B", 18)):
        return [("B", pins["A"] + pins["B"], "CLKB", "CLKBMUX", ("OCEA", "OCEB"),
                 ("RSTA", "RSTB"), ("REGMODE_A", "REGMODE_B"))]
    return [(x, pins[x], f"CLK{x}", f"CLK{x}MUX", (f"OCE{x}",), (f"RST{x}",), (f"REGMODE_{x}",))
            for x in "AB"]


def _inverted(cell, mux, pin):
    """Whether the cell's ``mux`` parameter inverts ``pin``; None when it is not a plain pin."""
    value = _param(cell, mux, pin)
    return True if value == "INV" else False if value == pin else None


def _ff_enable(ff):
    """A flip-flop's clock enable: "1" when always enabled, a net number, or None (inverted or
    never: not foldable)."""
    mux = _param(ff, "CEMUX", "1")
    ce = _pin(ff, "CE")
    if mux == 1 or mux == "1" or (mux == "CE" and ce == "1"):
        return "1"
    return ce if mux == "CE" and isinstance(ce, int) else None


def _ff_refusal(ff, clock, clock_inv, gsr_used):
    """Why flip-flop ``ff`` cannot become the output register of a port on net ``clock`` (with
    edge ``clock_inv``), or None."""
    lsr_inv = _inverted(ff, "LSRMUX", "LSR")
    lsr = _pin(ff, "LSR") or "0"
    if (lsr_inv is None or lsr != ("1" if lsr_inv else "0")
            or _param(ff, "LSRMODE", "LSR") != "LSR"
            or (gsr_used and _param(ff, "GSR", "ENABLED") != "DISABLED")):
        return "reset"
    if _pin(ff, "CLK") != clock or _inverted(ff, "CLKMUX", "CLK") is not clock_inv:
        return "clock"
    if _ff_enable(ff) is None:
        return "enable"
    if _param(ff, "REGSET", "RESET") != "RESET":
        return "init"
    return None


def _sinks(module):
    """Net number -> list of (cell name, pin) that read it; module outputs as (None, port)."""
    sinks = {}
    for name, cell in module["cells"].items():
        directions = cell.get("port_directions", {})
        for pin, bits in cell.get("connections", {}).items():
            if directions.get(pin, "input") != "output":
                for bit in bits:
                    if isinstance(bit, int):
                        sinks.setdefault(bit, []).append((name, pin))
    for port, info in module.get("ports", {}).items():
        if info["direction"] != "input":
            for bit in info["bits"]:
                if isinstance(bit, int):
                    sinks.setdefault(bit, []).append((None, port))
    return sinks


def _used(cell, pins, sinks):
    """{pin: net} of the cell's output ``pins`` whose nets are read."""
    bits = {pin: _pin(cell, pin) for pin in pins}
    return {pin: bit for pin, bit in bits.items() if isinstance(bit, int) and sinks.get(bit)}


def _sink_flip_flops(cells, used, sinks, clock, clock_inv, gsr_used):
    """``(enable, clock, {pin: flip-flop name})`` when every net of ``used`` ({pin: net}) drives
    only the D input of a foldable flip-flop (on ``clock``/``clock_inv``; None: the first
    flip-flop's, on a rising edge) with one clock enable among them; else the refusal
    reason."""
    folds = {}
    for pin, bit in used.items():
        readers = sinks[bit]
        if any(name is None for name, _ in readers):
            return "port"
        name, ff_pin = readers[0]
        if len(readers) > 1 or ff_pin != "DI" or cells[name]["type"] != "TRELLIS_FF":
            return "logic"
        folds[pin] = name
    return _one_register(cells, folds, clock, clock_inv, gsr_used)


def _one_register(cells, folds, clock, clock_inv, gsr_used):
    """``(enable, clock, folds)`` when the flip-flops of ``folds`` ({pin: name}) can all become
    one register on ``clock``/``clock_inv`` (None: the first one's clock), one clock enable
    ("1" for none, or when there is no flip-flop); else the refusal reason."""
    enables = set()
    for name in folds.values():
        if clock is None:
            clock = _pin(cells[name], "CLK")
        reason = _ff_refusal(cells[name], clock, clock_inv, gsr_used)
        if reason:
            return reason
        enables.add(_ff_enable(cells[name]))
    if len(enables) > 1:
        return "enable"
    return (enables.pop() if enables else "1"), clock, folds


def _plan_port(module, bram, port, sinks, gsr_used):
    """The folding of one read port: ``(enable, {DO pin: flip-flop name})``, or the refusal
    reason (a key of :data:`REASONS`), or None when no read bit is used."""
    _, data_pins, clk_pin, clk_mux, oce_pins, rst_pins, regmodes = port
    used = _used(bram, data_pins, sinks)
    if not used:
        return None
    if (any(_param(bram, r, "NOREG") != "NOREG" for r in regmodes)
            or any(isinstance(_pin(bram, p), int) or _inverted(bram, f"{p}MUX", p) is not False
                   for p in oce_pins)):
        return "mode"
    if (any(_pin(bram, p) not in (None, "0") or _inverted(bram, f"{p}MUX", p) is not False
            for p in rst_pins) or (gsr_used and _param(bram, "GSR", "ENABLED") != "DISABLED")):
        return "reset"
    clock, clock_inv = _pin(bram, clk_pin), _inverted(bram, clk_mux, clk_pin)
    if not isinstance(clock, int) or clock_inv is None:
        return "clock"
    plan = _sink_flip_flops(module["cells"], used, sinks, clock, clock_inv, gsr_used)
    return plan if isinstance(plan, str) else (plan[0], plan[2])


def _top(netlist):
    tops = [m for m in netlist["modules"].values()
            if int(str(m.get("attributes", {}).get("top", "0")), 2)]
    if len(tops) != 1:
        raise ValueError(f"the netlist must have one top module, not {len(tops)}")
    return tops[0]


def fold_output_registers(netlist):
    """Fold, in place, the output registers of the top module of ``netlist`` (yosys's JSON,
    flattened) into its DP16KDs; returns the report: ``{"block_rams", "ports", "flip_flops",
    "refused"}`` (DP16KDs in the design, read ports and flip-flops folded, and ports left alone
    counted by reason, :data:`REASONS`)."""
    module = _top(netlist)
    cells = module["cells"]
    gsr_used = any(c["type"] in ("GSR", "SGSR") for c in cells.values())
    sinks = _sinks(module)
    brams = [name for name, c in cells.items() if c["type"] == "DP16KD"]
    ports = flip_flops = 0
    refused = Counter()
    for name in brams:
        bram = cells[name]
        for port in _read_ports(bram):
            plan = _plan_port(module, bram, port, sinks, gsr_used)
            if plan is None:
                continue
            if isinstance(plan, str):
                refused[plan] += 1
                continue
            enable, folds = plan
            for regmode in port[6]:
                bram["parameters"][regmode] = "OUTREG"
            for oce in port[4]:
                bram["connections"][oce] = [enable]
            for pin, ff_name in folds.items():
                bram["connections"][pin] = list(cells.pop(ff_name)["connections"]["Q"])
            ports += 1
            flip_flops += len(folds)
    return {"block_rams": len(brams), "ports": ports, "flip_flops": flip_flops,
            "refused": dict(sorted(refused.items()))}


#: A MULT18X18D's operand and product pins, and its register settings that must be unused.
_OPERANDS = {x: [f"{x}{i}" for i in range(18)] for x in "AB"}
_PRODUCT = [f"P{i}" for i in range(36)]
_MULT_REGS = ("INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT")
_MULT_CONTROL = [f"{kind}{i}" for kind in ("CLK", "CE", "RST") for i in range(4)]


def _drivers(module):
    """Net number -> (cell name, pin) driving it."""
    return {bit: (name, pin) for name, cell in module["cells"].items()
            for pin, bits in cell.get("connections", {}).items()
            if cell.get("port_directions", {}).get(pin) == "output"
            for bit in bits if isinstance(bit, int)}


def _source_flip_flops(cells, mult, pins, drivers, clock, gsr_used, claimed):
    """``(enable, clock, {pin: flip-flop name})`` when every operand pin of ``pins`` is tied to
    0 or driven by a foldable flip-flop (none in ``claimed``), with one clock enable; else the
    refusal reason."""
    folds = {}
    for pin in pins:
        bit = _pin(mult, pin)
        if bit in (None, "0"):
            continue      # a register of constant 0 holds 0, from power-up on
        name, out = drivers.get(bit, (None, None)) if isinstance(bit, int) else (None, None)
        if out != "Q" or cells[name]["type"] != "TRELLIS_FF" or name in claimed:
            return "logic"
        folds[pin] = name
    return _one_register(cells, folds, clock, False, gsr_used)


def _plan_mult(cells, mult, sinks, drivers, gsr_used, claimed):
    """``(output plan, input plan)`` of one MULT18X18D (each a plan or a refusal reason; the
    output plan None when no product bit is used)."""
    if (any(_param(mult, f"REG_{r}_CLK", "NONE") != "NONE" for r in _MULT_REGS)
            or any(isinstance(_pin(mult, p), int) for p in _MULT_CONTROL)
            or any(isinstance(_pin(mult, p), int)
                   for p in ("SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB"))):
        return "mode", "mode"
    if gsr_used and _param(mult, "GSR", "ENABLED") != "DISABLED":
        return "reset", "reset"
    used = _used(mult, _PRODUCT, sinks)
    out = _sink_flip_flops(cells, used, sinks, None, False, gsr_used) if used else None
    clock = out[1] if isinstance(out, tuple) else None
    plans = []
    for x in "AB":
        plan = _source_flip_flops(cells, mult, _OPERANDS[x], drivers, clock, gsr_used, claimed)
        if isinstance(plan, str):
            return out, plan
        clock = plan[1]
        plans.append(plan)
    return out, plans


def _mult_registers(mult, clock, groups):
    """Turn on the MULT18X18D's registers: ``groups`` is [(register, enable)], each register
    (``INPUTA``, ``INPUTB``, ``OUTPUT``) on CLK0 with its enable on a CE pin of its own."""
    params, conn = mult.setdefault("parameters", {}), mult["connections"]
    directions = mult.setdefault("port_directions", {})
    for pin, bit in (("CLK0", clock), ("RST0", "0")):
        conn[pin], directions[pin] = [bit], "input"
    for k, (register, enable) in enumerate(groups):
        params.update({f"REG_{register}_CLK": "CLK0", f"REG_{register}_CE": f"CE{k}",
                       f"REG_{register}_RST": "RST0"})
        conn[f"CE{k}"], directions[f"CE{k}"] = [enable], "input"


def fold_multiplier_registers(netlist):
    """Fold, in place, the flip-flops around the MULT18X18Ds of the top module of ``netlist``
    into the DSP blocks' own registers: a product whose used bits each feed only a reset-less
    flip-flop on one clock gets the output register (the flip-flops deleted); operands A and B
    driven by such flip-flops (or tied to 0) get the input registers, the flip-flops' inputs on
    their pins (a flip-flop is deleted when nothing else reads it). Returns ``{"multipliers",
    "outputs", "inputs", "flip_flops", "refused"}``."""
    module = _top(netlist)
    cells = module["cells"]
    gsr_used = any(c["type"] in ("GSR", "SGSR") for c in cells.values())
    sinks, drivers = _sinks(module), _drivers(module)
    mults = [name for name, c in cells.items() if c["type"] == "MULT18X18D"]
    claimed = {ff for name in mults
               for out in [_plan_mult(cells, cells[name], sinks, drivers, gsr_used, set())[0]]
               if isinstance(out, tuple) for ff in out[2].values()}
    outputs = inputs = 0
    refused, absorbed, deleted = Counter(), Counter(), set()
    for name in mults:
        mult = cells[name]
        out, ins = _plan_mult(cells, mult, sinks, drivers, gsr_used, claimed)
        groups, clock = [], None
        if isinstance(out, tuple):
            enable, clock, folds = out
            for pin, ff_name in folds.items():
                mult["connections"][pin] = list(cells[ff_name]["connections"]["Q"])
                deleted.add(ff_name)
            groups.append(("OUTPUT", enable))
            outputs += 1
        elif out is not None:
            refused[out] += 1
        if isinstance(ins, str):
            refused[ins] += 1
        elif ins[1][1] is not None:     # the operands' clock (the product's, if folded)
            clock = ins[1][1]
            for (enable, _, folds), x in zip(ins, "AB", strict=True):
                for pin, ff_name in folds.items():
                    mult["connections"][pin] = list(cells[ff_name]["connections"]["DI"])
                    absorbed[ff_name] += 1
                groups.append((f"INPUT{x}", enable))
            inputs += 1
        if groups:
            _mult_registers(mult, clock, groups)
    for ff_name, count in absorbed.items():
        if len(sinks[cells[ff_name]["connections"]["Q"][0]]) == count:
            deleted.add(ff_name)
    for ff_name in deleted:
        del cells[ff_name]
    return {"multipliers": len(mults), "outputs": outputs, "inputs": inputs,
            "flip_flops": len(deleted), "refused": dict(sorted(refused.items()))}


def fold_file(source, target):
    """Read yosys's JSON netlist ``source``, fold it (block RAM output registers, then the
    multipliers' registers), write ``target`` (may be the same file); returns the report of
    :func:`fold_output_registers` with that of :func:`fold_multiplier_registers` under
    ``"multipliers"``."""
    netlist = json.loads(Path(source).read_text())
    report = fold_output_registers(netlist)
    report["multipliers"] = fold_multiplier_registers(netlist)
    Path(target).write_text(json.dumps(netlist))
    return report


def summary(report):
    """One line for a build's log or report: what was folded and what was left, and why."""
    line = (f"{report['ports']} block RAM read port(s) of {report['block_rams']} DP16KD "
            f"registered in the block RAM (REGMODE OUTREG), {report['flip_flops']} flip-flops "
            f"folded")
    if report["refused"]:
        left = ", ".join(f"{n} ({REASONS[r]})" for r, n in report["refused"].items())
        line += f"; left alone: {left}"
    mult = report.get("multipliers")
    if mult and mult["multipliers"]:
        line += (f"; of {mult['multipliers']} MULT18X18D, {mult['inputs']} with input and "
                 f"{mult['outputs']} with output registers inside ({mult['flip_flops']} "
                 f"flip-flops folded)")
    return line


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m nnaccel.boards.ecp5_bram",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="yosys's JSON netlist (synth_ecp5 -json)")
    parser.add_argument("target", help="the folded netlist to write (for nextpnr-ecp5 --json)")
    args = parser.parse_args(argv)
    try:
        report = fold_file(args.source, args.target)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"error: {args.source}: not a yosys JSON netlist that can be folded: {error}",
              file=sys.stderr)
        return 2
    print(summary(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
