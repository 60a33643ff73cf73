"""Placement and routing of a synthesised standard-cell netlist (``--place-route``).

qflow's tools, driven directly in a temporary directory (no qflow project):

1. yosys writes the netlist as BLIF (``.gate`` lines; constants as the nets ``vdd`` and
   ``gnd``, internal nets renamed ``_N_``, ports kept);
2. qflow's ``blif2cel.tcl`` turns the BLIF and the library's LEF into graywolf's cell file
   (``.cel``, with the library's ``.par`` parameter file); ``qrouter -i`` writes the route
   layers (``.info``);
3. ``graywolf`` places the cells in rows (``.pl1``/``.pl2``/``.pin``);
4. qflow's ``place2def.tcl`` writes the placement as DEF (die area, rows, tracks, pins,
   components) and the routing obstructions (``.obs``);
5. ``qrouter`` routes every net (its script: the LEF, the layers, the obstructions, the DEF,
   ``qrouter::standard_route``) and writes the routed DEF.

The die area comes from the routed DEF's ``DIEAREA``, the wire length from its routes
(Manhattan segment lengths, in um), and a net counts as failed when qrouter says so or when it
connects two pins or more and has no route in the routed DEF. No filler cells or power
stripes are added (qflow's addspacers step), and timing is not re-run on the routed wires.
"""

import re
import shutil
from pathlib import Path

from ..gen.errors import ToolError, UsageError

__all__ = ["PLACE_ROUTE_HINT", "find_place_route_tools", "place_route", "read_routed_def",
           "blif_verilog", "wire_loads"]

#: What to install for ``--place-route``.
PLACE_ROUTE_HINT = "sudo apt-get install -y qflow qflow-tech-osu018"

#: qflow's own scripts (Debian package qflow).
QFLOW_SCRIPTS = Path("/usr/lib/qflow/scripts")

#: Library name -> (LEF, graywolf parameter file, filler cell).
LAYOUT = {
    "osu018": ("/usr/share/qflow/tech/osu018/osu018_stdcells.lef",
               "/usr/share/qflow/tech/osu018/osu018.par", "FILL"),
}

#: Routing layers qrouter uses (of the six the osu018 LEF defines; qflow's default is 4 or
#: fewer for its small designs).
ROUTE_LAYERS = 4


def find_place_route_tools(lib):
    """Paths of what placement and routing need: ``{"graywolf", "qrouter", "tclsh",
    "blif2cel", "place2def", "lef", "par", "fill"}``.

    Raises
    ------
    UsageError
        Something is missing: one message naming all of it and the command that installs it
        (``--place-route`` is an option the user chose; without the tools it cannot run).
    """
    found, missing = {}, []
    for tool in ("graywolf", "qrouter", "tclsh", "rc2dly"):
        path = shutil.which(tool) or (
            str(Path("/usr/lib/qflow/bin") / tool)
            if (Path("/usr/lib/qflow/bin") / tool).is_file() else None)
        found[tool] = path
        if path is None:
            missing.append(tool)
    for key, script in (("blif2cel", "blif2cel.tcl"), ("place2def", "place2def.tcl")):
        path = QFLOW_SCRIPTS / script
        found[key] = str(path)
        if not path.is_file():
            missing.append(str(path))
    lef, par, fill = LAYOUT[lib]
    for key, path in (("lef", lef), ("par", par)):
        found[key] = path
        if not Path(path).is_file():
            missing.append(path)
    found["fill"] = fill
    if missing:
        raise UsageError(f"--place-route needs qflow's placement and routing tools, missing "
                         f"here: {', '.join(missing)}; install them with `{PLACE_ROUTE_HINT}`")
    return found


def blif_script(name):
    """yosys commands (after the netlist is read) that write ``<name>.blif`` for graywolf."""
    return [
        "rename -hide w:* c:*",             # ports keep their names; the rest become _N_
        "rename -enumerate",
        f"write_blif -gates -buf BUFX2 A Y -true - vdd -false - gnd {name}.blif",
    ]


def place_route(workdir, name, tools, progress, run):
    """Place and route ``workdir/<name>.blif`` in ``workdir``.

    ``progress`` is a build's step progress (``step(name, tool)`` context, ``last``);
    ``run(argv, cwd, tool, logfile)`` runs one tool. Returns ``(figures, steps)``:
    the figures of :func:`read_routed_def` plus ``routed_def`` (the file's name) and the
    list of steps' timings.
    """
    workdir = Path(workdir)
    steps = []
    tcl = tools["tclsh"]
    shutil.copyfile(tools["par"], workdir / f"{name}.par")
    with progress.step("placement", "graywolf"):
        run([tcl, tools["blif2cel"], "--blif", f"{name}.blif", "--lef", tools["lef"],
             "--cel", f"{name}.cel"], workdir, "blif2cel", workdir / "blif2cel.log")
        (workdir / f"{name}.cfg").write_text(f"read_lef {tools['lef']}\n")
        run([tools["qrouter"], "-i", f"{name}.info", "-c", f"{name}.cfg"], workdir,
            "qrouter", workdir / "qrouter-info.log")
        run([tools["graywolf"], "-n", name], workdir, "graywolf", workdir / "graywolf.log")
        if not (workdir / f"{name}.pl1").is_file():
            raise ToolError("graywolf wrote no placement (.pl1); see graywolf.log")
        run([tcl, tools["place2def"], name, tools["fill"]], workdir, "place2def",
            workdir / "place2def.log")
    steps.append(progress.last)
    obs = workdir / f"{name}.obs"
    (workdir / f"{name}.cfg").write_text("\n".join([
        "verbose 1",
        f"read_lef {tools['lef']}",
        f"catch {{layers {ROUTE_LAYERS}}}",
        "via stack 1",
        "vdd vdd",
        "gnd gnd",
        obs.read_text() if obs.is_file() else "",
        f"read_def {name}.def",
        f"qrouter::standard_route {name}_route.def false",
        f"qrouter::write_delays {name}_route.rc",
        "quit",
        "",
    ]))
    with progress.step("routing", "qrouter"):
        run([tools["qrouter"], "-noc", "-nog", "-s", f"{name}.cfg"], workdir, "qrouter",
            workdir / "qrouter.log")
    steps.append(progress.last)
    routed = workdir / f"{name}_route.def"
    if not routed.is_file():
        raise ToolError(f"qrouter wrote no routed DEF; last lines of qrouter.log:\n"
                        f"{_tail(workdir / 'qrouter.log')}")
    figures = read_routed_def(routed.read_text())
    final = re.findall(r"^Final:\s*(No failed routes|Failed net routes:\s*(\d+))",
                       (workdir / "qrouter.log").read_text(errors="replace"), re.M)
    figures["qrouter_failed"] = int(final[-1][1] or 0) if final else None
    if figures["qrouter_failed"] is None:
        raise ToolError(f"qrouter did not finish routing; last lines of qrouter.log:\n"
                        f"{_tail(workdir / 'qrouter.log')}")
    figures["failed_nets"] = max(figures["qrouter_failed"], len(figures["unrouted_nets"]))
    return figures, steps


def _tail(path, lines=20):
    text = Path(path).read_text(errors="replace") if Path(path).is_file() else ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def read_routed_def(text):
    """Figures of a routed DEF: ``die_width_um``, ``die_height_um``, ``die_area_um2``,
    ``components``, ``nets``, ``wire_length_um`` (regular nets' routes) and
    ``unrouted_nets`` (names of nets with two pins or more and no route)."""
    units = re.search(r"^UNITS\s+DISTANCE\s+MICRONS\s+(\d+)", text, re.M)
    die = re.search(r"^DIEAREA\s*\(\s*(-?\d+)\s+(-?\d+)\s*\)\s*\(\s*(-?\d+)\s+(-?\d+)\s*\)",
                    text, re.M)
    if not (units and die):
        raise ToolError("the routed DEF has no UNITS or DIEAREA")
    scale = int(units.group(1))
    x0, y0, x1, y1 = (int(v) / scale for v in die.groups())
    comps = re.search(r"^COMPONENTS\s+(\d+)", text, re.M)
    section = text.split("\nNETS", 1)[-1].split("\nEND NETS", 1)[0]
    length, nets, unrouted = 0.0, 0, []
    for stmt in re.split(r"(?m)^-\s+", section)[1:]:
        nets += 1
        net, _, rest = stmt.partition("\n")
        head, plus, routes = rest.partition("+ ROUTED")
        pins = len(re.findall(r"\(\s*\S+\s+\S+\s*\)", head))
        if not plus:
            if pins > 1:
                unrouted.append(net.strip())
            continue
        length += _route_length(routes) / scale
    return {"die_width_um": round(x1 - x0, 2), "die_height_um": round(y1 - y0, 2),
            "die_area_um2": round((x1 - x0) * (y1 - y0), 2),
            "components": int(comps.group(1)) if comps else None, "nets": nets,
            "wire_length_um": round(length, 1), "unrouted_nets": unrouted}


def _route_length(routes):
    """Manhattan length of a DEF net's routing (``( x y ) ( * y2 )`` points, ``NEW`` pieces)
    in database units."""
    total = 0
    for piece in re.split(r"\bNEW\b", routes):
        last = None
        for x, y in re.findall(r"\(\s*(\S+)\s+(\S+)(?:\s+\S+)?\s*\)", piece):
            if last is None:
                last = (int(x), int(y))
                continue
            point = (last[0] if x == "*" else int(x), last[1] if y == "*" else int(y))
            total += abs(point[0] - last[0]) + abs(point[1] - last[1])
            last = point
    return total


def blif_verilog(blif, name):
    """The placed netlist as Verilog, its instances named as graywolf and qrouter name them
    (blif2cel: ``<cell>_<n>``, n counting each cell type from 1 in BLIF order), so that
    OpenSTA can read the routed wires' delays (SDF) and loads against it."""
    ports = {"input": [], "output": []}
    gates = []
    for line in blif.replace("\\\n", " ").splitlines():   # joined continuation lines
        words = line.split()
        if not words:
            continue
        if words[0] in (".inputs", ".outputs"):
            ports["input" if words[0] == ".inputs" else "output"] += words[1:]
        elif words[0] == ".gate":
            gates.append((words[1], [w.split("=", 1) for w in words[2:]]))
    buses = {}
    for direction, bits in ports.items():
        for bit in bits:
            m = re.fullmatch(r"(\w+)\[(\d+)\]", bit)
            base, index = (m.group(1), int(m.group(2))) if m else (bit, None)
            buses.setdefault(base, [direction, set()])[1].add(index)

    def ref(net):
        if net in ("vdd", "gnd"):
            return "1'b1" if net == "vdd" else "1'b0"
        m = re.fullmatch(r"(\w+)\[(\d+)\]", net)
        if (m and m.group(1) in buses) or net in buses:
            return net
        return f"\\{net} "

    out = [f"module {name} ({', '.join(buses)});"]
    for base, (direction, indices) in buses.items():
        width = f"[{max(indices)}:0] " if indices != {None} else ""
        out.append(f"  {direction} {width}{base};")
    wires = sorted({net for _, pins in gates for _, net in pins
                    if ref(net).startswith("\\")})
    out += [f"  wire \\{net} ;" for net in wires]
    count = {}
    for cell, pins in gates:
        count[cell] = count.get(cell, 0) + 1
        conns = ", ".join(f".{pin}({ref(net)})" for pin, net in pins)
        out.append(f"  {cell} {cell}_{count[cell]} ({conns});")
    out.append("endmodule")
    return "\n".join(out) + "\n"


def wire_loads(rc):
    """Net name -> routed wire capacitance (the liberty's unit, pF) summed over the RC tree
    of qrouter's delay file (``qrouter::write_delays``: per net, nested ``( R C ...)``)."""
    caps = {}
    for line in rc.splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5:
            caps[parts[0]] = sum(float(c) for c in re.findall(
                r"\(\s*[-0-9.eE+]+\s+([-0-9.eE+]+)", parts[4]))
    return caps
