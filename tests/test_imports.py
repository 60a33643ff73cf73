"""Package boundaries: every module's imports, read with ``ast``, follow the allowed edges.

Imports run one way (docs/ARCHITECTURE.md, "Packages and their imports"):

* ``hw`` imports only amaranth, numpy, the standard library and the shared blocks: ``hw/common``
  and the sliding-window block ``hw/window`` (which engines for convolution and pooling share,
  and which imports only ``hw/common``); an engine folder ``hw/<engine>`` may import itself too,
  ``hw/common`` no other folder; a ``reference.py`` imports only numpy, the standard library and
  the reference models of the folders it may import;
* ``gen`` imports ``hw``; ``sim`` and ``boards`` import ``gen`` and ``hw``;
* nothing under ``hw``, ``gen``, ``sim`` or ``boards`` imports the command-line package
  (``nnaccel.cli``, ``nnaccel.demo``, ``nnaccel.bench``).

Imports inside functions count as much as those at the top of a file.
"""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: Folders of the package and their dotted names (pyproject.toml's package-dir).
PACKAGES = {"hw": "nnaccel.hw", "gen": "nnaccel.gen", "sim": "nnaccel.sim",
            "boards": "nnaccel.boards", "nnaccel": "nnaccel"}
#: Which top-level parts each part may import (itself always).
ALLOWED = {"hw": set(), "gen": {"hw"}, "sim": {"gen", "hw"}, "boards": {"gen", "hw"},
           "cli": {"gen", "hw", "sim", "boards", "bench"},
           "bench": {"gen", "hw", "sim", "boards"}}
HW_THIRD_PARTY = {"amaranth", "numpy"}
#: Shared hardware blocks under hw/ and the hw folders each may import (besides itself).
HW_SHARED = {"common": set(), "window": {"common"}}


def module_name(path):
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    parts[0] = PACKAGES[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module):
    """``hw``, ``gen``, ``sim``, ``boards``, ``bench`` or ``cli`` (the rest of nnaccel/)."""
    parts = module.split(".")
    if parts[0] != "nnaccel":
        return None
    if len(parts) > 1 and parts[1] in ("hw", "gen", "sim", "boards"):
        return parts[1]
    if len(parts) > 1 and parts[1].startswith("bench"):
        return "bench"
    return "cli"


def imports_of(path):
    """Absolute names of every module ``path`` imports (``from x import y``: ``x`` and
    ``x.y``, since ``y`` may be a module)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            names.append(stem)
            names += [f"{stem}.{alias.name}" for alias in node.names if alias.name != "*"]
    return me, names


def forbidden(me, name):
    """Why importing ``name`` from module ``me`` crosses a boundary (None: it does not)."""
    src, dst = part_of(me), part_of(name)
    top = name.split(".")[0]
    if src == "hw":
        if dst is None:
            if top in HW_THIRD_PARTY or top in sys.stdlib_module_names:
                if me.endswith(".reference") and top not in ("numpy",) \
                        and top not in sys.stdlib_module_names:
                    return "a reference model imports only numpy"
                return None
            return f"hw imports only amaranth, numpy and the standard library, not {top}"
        if dst != "hw":
            return f"hw must not import {dst}"
        engine, target = me.split(".")[2], name.split(".")[2] if name.count(".") >= 2 else None
        if target is None:
            return None
        allowed = {engine} | HW_SHARED.get(engine, set(HW_SHARED))
        if target not in allowed:
            what = "a shared block" if engine in HW_SHARED else "an engine"
            return f"hw/{engine} ({what}) must not import hw/{target}"
        if me.endswith(".reference") and not name.startswith(f"nnaccel.hw.{target}.reference"):
            return "a reference model imports only numpy (and other reference models)"
        return None
    if dst is None or src in (None, dst):
        return None
    if dst not in ALLOWED[src]:
        return f"{src} must not import {dst}"
    return None


def python_files():
    for folder in PACKAGES:
        yield from sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", list(python_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_boundaries(path):
    me, names = imports_of(path)
    problems = [f"{name}: {why}" for name in names if (why := forbidden(me, name))]
    assert not problems, f"{me} crosses a package boundary:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("me, name, bad", [
    ("nnaccel.hw.sparse.engine", "nnaccel.gen.sparse_format", True),
    ("nnaccel.hw.common.pipeline", "nnaccel.hw.mvu.engine", True),
    ("nnaccel.hw.mvu.engine", "nnaccel.hw.systolic.params", True),
    ("nnaccel.hw.mvu.engine", "scipy", True),
    ("nnaccel.hw.mvu.reference", "amaranth", True),
    ("nnaccel.hw.mvu.engine", "nnaccel.hw.common.arith", False),
    ("nnaccel.hw.pool.engine", "nnaccel.hw.window.engine", False),
    ("nnaccel.hw.window.engine", "nnaccel.hw.pool.engine", True),
    ("nnaccel.hw.common.stream", "nnaccel.hw.window.engine", True),
    ("nnaccel.hw.pool.reference", "nnaccel.hw.common.reference.output_stage", False),
    ("nnaccel.hw.pool.reference", "nnaccel.hw.common.dtype", True),
    ("nnaccel.hw.mvu.engine", "amaranth.lib.stream", False),
    ("nnaccel.sim.runner", "nnaccel.tools", True),
    ("nnaccel.sim.runner", "nnaccel.cli", True),
    ("nnaccel.boards.build", "nnaccel.bench.report", True),
    ("nnaccel.gen.generate", "nnaccel.sim.verilator", True),
    ("nnaccel.gen.generate", "nnaccel.demo", True),
    ("nnaccel.sim.verilator", "nnaccel.gen.tools", False),
    ("nnaccel.bench.mvu", "nnaccel.sim.design", False),
    ("nnaccel.cli", "nnaccel.bench", False),
])
def test_the_rules_themselves(me, name, bad):
    assert (forbidden(me, name) is not None) is bad


def test_relative_imports_resolve(tmp_path):
    me, names = imports_of(ROOT / "hw" / "mvu" / "engine.py")
    assert me == "nnaccel.hw.mvu.engine"
    assert "nnaccel.hw.common.arith" in names and "nnaccel.hw.mvu.params" in names


def test_the_command_line_does_not_import_heavy_libraries_it_does_not_need():
    """Building the parser (every command does) imports neither scikit-learn (seconds to import;
    only the zoo's training needs it) nor torch, onnx or ray (the ONNX front end, sweeps)."""
    import subprocess

    code = ("import sys\n"
            "from nnaccel import cli\n"
            "cli.build_parser()\n"
            "print(' '.join(m for m in ('sklearn', 'torch', 'onnx', 'ray') if m in sys.modules))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert run.stdout.strip() == ""
