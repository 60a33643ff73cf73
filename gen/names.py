"""Names that become Verilog identifiers: one check for models, layers, designs and builds.

A model name becomes the generated module's name and a layer name part of a submodule's; both
must be identifiers ``[A-Za-z_][A-Za-z0-9_]*`` of at most :data:`MAX_NAME_LENGTH` characters,
must not be a Verilog or SystemVerilog keyword (compared case-sensitively: the keywords are lower
case and Verilog is case-sensitive, so ``Module`` is a fine name), and must not collide with a
port of the generated top level.
"""

import re

__all__ = ["IDENTIFIER", "MAX_NAME_LENGTH", "VERILOG_KEYWORDS", "RESERVED_NAMES", "name_problem",
           "safe_name"]

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

#: Longer names would make file names and Verilog identifiers unwieldy (and some file systems
#: refuse names over 255 bytes, with the design's suffixes added).
MAX_NAME_LENGTH = 64

#: Verilog-2005 / SystemVerilog keywords: a name that is one cannot name a module.
VERILOG_KEYWORDS = frozenset("""
always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config deassign
default defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule
endprimitive endspecify endtable endtask event for force forever fork function generate genvar
highz0 highz1 if ifnone incdir include initial inout input instance integer join large liblist
library localparam macromodule medium module nand negedge nmos nor noshowcancelled not notif0
notif1 or output parameter pmos posedge primitive pull0 pull1 pulldown pullup
pulsestyle_onevent pulsestyle_ondetect rcmos real realtime reg release repeat rnmos rpmos rtran
rtranif0 rtranif1 scalared showcancelled signed small specify specparam strong0 strong1 supply0
supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand trior trireg unsigned use uwire
vectored wait wand weak0 weak1 while wire wor xnor xor logic bit byte int shortint longint
struct union enum typedef class interface package program property sequence string void
""".split())

#: Port names of the generated top level (and their prefixes), which no model or layer may take.
RESERVED_NAMES = frozenset({"clk", "rst"})
RESERVED_PREFIXES = ("s_axis_", "m_axis_")


def name_problem(name):
    """Why ``name`` cannot name a model or layer, or None when it can."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        return f"{name!r} is not an identifier [A-Za-z_][A-Za-z0-9_]*"
    if len(name) > MAX_NAME_LENGTH:
        return f"a name has at most {MAX_NAME_LENGTH} characters, not {len(name)}"
    if name in VERILOG_KEYWORDS:
        return f"{name!r} is a Verilog keyword"
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        return f"{name!r} is taken by a port of the generated top level"
    return None


def safe_name(text):
    """An acceptable name made from ``text`` (a file stem, say): other characters become
    ``_``, a leading digit gets a ``_`` before it, a keyword or reserved name gets a ``_``
    after it, and the result is cut to :data:`MAX_NAME_LENGTH`."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(text))[:MAX_NAME_LENGTH] or "model"
    if not IDENTIFIER.match(name):
        name = ("_" + name)[:MAX_NAME_LENGTH]
    while name_problem(name) is not None:
        name = name[:MAX_NAME_LENGTH - 1] + "_"
    return name
