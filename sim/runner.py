"""Build Verilog with Verilator and run cocotb test modules on it, with a build cache.

The only module that imports :mod:`cocotb_tools.runner` (STYLE.md point 11).

Builds are cached: one directory per configuration, ``<cache>/verilator/<key>``, where
``<cache>`` is ``$NNACCEL_CACHE`` (default ``~/.cache/nnaccel``) and ``<key>`` is the SHA-256
of the Verilog text, the top module name, the Verilator arguments, the Verilator version and
the cocotb installation. A second build of the same design returns at once. Concurrent builds
of the same configuration (pytest-xdist workers, parallel CLI runs) are serialised by a file
lock, and a build happens in a temporary directory renamed into place only when complete, so a
cache directory is always either complete or absent. Verilator's run-time library (the
``verilated*.o`` objects, the same for every design) is compiled once per Verilator, compiler and
argument list, kept in ``<cache>/verilator/runtime-<key>`` and copied into later builds, so a new
design compiles only its own model and cocotb's small main file.

The cache is bounded. A finished build keeps only what the simulation needs: the simulator
executable, ``build.log`` and a ``last-used`` marker (the sources, objects and precompiled
headers, about 99% of a build, are removed before it enters the cache, and from the builds of
older versions by the next eviction). Every use of a build touches its marker; after each new
build, when the cache holds more than :func:`cache_max` bytes (``$NNACCEL_CACHE_MAX``, default
5 GiB), the least recently used builds are removed until it fits. Never removed: a build used
in the last hour (a caller may be about to run it), a build another process is building or
simulating (both hold its lock; a simulation holds it shared), and the run-time objects in use.
Temporary directories older than a day, left by builds that were killed, are removed at the same
time.

Progress goes to stderr; the output of Verilator, the C++ compiler and the simulator goes to log
files (``build.log`` in the build directory, ``sim.log`` in the test directory), never to
stdout, whose use is the caller's (``nnaccel run --json``).
"""

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from xml.etree import ElementTree

import cocotb
import cocotb_tools.config
from cocotb_tools.runner import get_runner

from ..gen.errors import ToolError
from ..gen.tools import check_simulation_tools

__all__ = ["SimulationError", "DEFAULT_BUILD_ARGS", "DEFAULT_CACHE_MAX", "cache_dir",
           "cache_max", "evict", "progress", "build", "test"]

#: Verilator arguments for amaranth's output, which has width warnings by design. cocotb's
#: runner passes ``--public-flat-rw``, which keeps every net of the design as a public variable:
#: a binarized layer's popcount tree (tens of thousands of one-bit nets) then becomes 21 MB of
#: C++ and a two-minute compile. The testbenches touch only the top module's ports, so it is
#: turned off and the top level alone is made public (13 s for the same build).
DEFAULT_BUILD_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC",
                      "--no-public-flat-rw", "--public-depth", "1")

_LOG_TAIL = 40

#: Bound of the build cache in bytes unless ``$NNACCEL_CACHE_MAX`` gives another (5 GiB).
DEFAULT_CACHE_MAX = 5 << 30
#: Touched on every use of a cached build: its modification time orders the eviction.
_MARKER = "last-used"
#: A build used within this many seconds is never evicted (its caller may be about to run it).
_RECENT = 3600
#: Temporary directories of killed builds older than this many seconds are removed.
_STALE = 86400


class SimulationError(ToolError):
    """A simulation ran but a cocotb test failed (framing error, timeout) or the simulator
    crashed. The message holds the test's failure and the path of the full log."""


def progress(message):
    """Print one progress line on stderr."""
    print(message, file=sys.stderr, flush=True)


def cache_dir():
    """Directory holding the cached Verilator builds: ``$NNACCEL_CACHE/verilator``."""
    root = os.environ.get("NNACCEL_CACHE") or os.path.join("~", ".cache", "nnaccel")
    return Path(root).expanduser() / "verilator"


def cache_max():
    """Bound of the build cache in bytes: ``$NNACCEL_CACHE_MAX`` or :data:`DEFAULT_CACHE_MAX`.
    A value that is not a positive integer is ignored (the default applies)."""
    try:
        value = int(os.environ.get("NNACCEL_CACHE_MAX", ""))
    except ValueError:
        return DEFAULT_CACHE_MAX
    return value if value > 0 else DEFAULT_CACHE_MAX


def _tail(path, lines=_LOG_TAIL):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def _environ(env):
    """Temporarily replace ``os.environ`` by ``env`` (cocotb's runner reads it directly).

    Not thread-safe: builds run one at a time per process."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _locked(path, *, shared=False, wait=True):
    """Hold the lock file ``path`` (exclusive, or ``shared``); yield True, or False at once when
    ``wait`` is False and another process holds it. Eviction deletes lock files while holding
    them, so a lock taken on a file that was deleted meanwhile is taken again on the new one."""
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    while True:
        with open(path, "a") as handle:
            try:
                fcntl.flock(handle, mode)
            except BlockingIOError:
                yield False
                return
            try:
                current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                try:
                    yield True
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                return
            fcntl.flock(handle, fcntl.LOCK_UN)


def _touch(directory):
    with contextlib.suppress(OSError):
        (directory / _MARKER).touch()


def _last_used(directory):
    for path in (directory / _MARKER, directory):
        with contextlib.suppress(OSError):
            return path.stat().st_mtime
    return None


def _size(directory):
    total = 0
    for path in directory.iterdir():
        with contextlib.suppress(OSError):
            total += path.lstat().st_size
    return total


def _remove_compile_files(build_dir):
    """Remove from a finished build what only the compile needed (sources, objects, libraries,
    precompiled headers, makefiles): the simulator runs from its executable alone, which is
    kept, with ``build.log`` and the marker."""
    for path in build_dir.iterdir():
        executable = path.is_file() and not path.is_symlink() and os.access(path, os.X_OK)
        if path.name not in ("build.log", _MARKER) and not executable:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    path.unlink()


def _prune_old_layout(build_dir):
    """A build made before the cache was bounded still holds its compile files (no marker):
    remove them under its lock (not while another process holds it), its last change as its
    last use."""
    with _locked(build_dir.parent / f"{build_dir.name}.lock", wait=False) as held:
        if held and build_dir.is_dir() and not (build_dir / _MARKER).exists():
            used = build_dir.stat().st_mtime
            _remove_compile_files(build_dir)
            (build_dir / _MARKER).touch()
            os.utime(build_dir / _MARKER, (used, used))


def evict(limit=None, *, now=None, keep=()):
    """Bound the build cache: remove the least recently used builds while it holds more than
    ``limit`` bytes (default :func:`cache_max`), and temporary directories of killed builds.

    A build used within the last hour, one whose lock another process holds (it is being built
    or simulated) and the directories named in ``keep`` are never removed, so the cache may stay
    above ``limit`` while they hold it. Returns the removed directories, oldest first."""
    root = cache_dir()
    limit = cache_max() if limit is None else limit
    now = time.time() if now is None else now
    try:
        entries = list(root.iterdir())
    except OSError:
        return []
    keep = {Path(k).name for k in keep}
    removed, builds, total = [], [], 0
    for path in entries:
        if not path.is_dir() or path.is_symlink():
            continue
        if ".tmp-" in path.name:
            used = _last_used(path)
            if used is not None and now - used > _STALE:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
            continue
        if not path.name.startswith("runtime-") and not (path / _MARKER).exists():
            with contextlib.suppress(OSError):
                _prune_old_layout(path)
        used = _last_used(path)
        size = _size(path)
        total += size
        if used is not None and path.name not in keep:
            builds.append((used, path, size))
    for used, path, size in sorted(builds, key=lambda entry: entry[0]):
        if total <= limit or now - used < _RECENT:
            break
        lock = root / f"{path.name}.lock"
        with _locked(lock, wait=False) as held:
            # re-read under the lock: a user may have touched it since the listing
            if not held or not path.is_dir() or now - (_last_used(path) or now) < _RECENT:
                continue
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                lock.unlink()
        removed.append(path)
        total -= size
    return removed


def _build_key(verilog, top, args, verilator):
    config = {
        "verilog": hashlib.sha256(verilog).hexdigest(),
        "top": top,
        "args": list(args),
        "verilator": [verilator.version_text, verilator.executable],
        "cocotb": [cocotb.__version__, str(cocotb_tools.config.libs_dir)],
    }
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def build(verilog_path, top, *, build_args=()):
    """Build ``verilog_path`` (top module ``top``) into a cocotb-ready Verilator simulator.

    Parameters
    ----------
    verilog_path : path-like
        One self-contained Verilog file.
    top : str
        Name of the top module.
    build_args : sequence of str
        Extra Verilator arguments, after :data:`DEFAULT_BUILD_ARGS`.

    Returns
    -------
    pathlib.Path
        The build directory (cached; shared between callers: do not write into it).

    Raises
    ------
    ToolError
        A tool is missing, or Verilator or the C++ build failed (the message ends with the tail
        of the build log).
    """
    verilator = check_simulation_tools()
    verilog = Path(verilog_path).read_bytes()
    args = [*DEFAULT_BUILD_ARGS, *build_args]
    key = _build_key(verilog, top, args, verilator)
    root = cache_dir()
    final = root / key
    root.mkdir(parents=True, exist_ok=True)
    lock = root / f"{key}.lock"
    with _locked(lock, shared=True):  # eviction cannot remove it between the check and the touch
        if (final / top).is_file():
            _touch(final)
            progress(f"using cached Verilator build of {top} ({final})")
            return final
    with _locked(lock):
        if (final / top).is_file():  # another process built it while we waited
            _touch(final)
            progress(f"using cached Verilator build of {top} ({final})")
            return final
        if final.exists():  # incomplete leftover of an older layout: start again
            shutil.rmtree(final)
        progress(f"building {top} with Verilator {verilator.version_text} ...")
        start = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f"{key[:12]}.tmp-", dir=root))
        try:
            source = tmp / f"{top}.v"
            source.write_bytes(verilog)
            log = tmp / "build.log"
            env = verilator.env()
            runtime = _runtime_dir(args, env, verilator)
            _copy_runtime(runtime, tmp, env)
            try:
                with _environ(env):
                    get_runner("verilator").build(
                        sources=[source], hdl_toplevel=top, build_args=args, build_dir=tmp,
                        always=True, log_file=log)
            except (RuntimeError, SystemExit) as exc:
                raise ToolError(f"Verilator build of {top} failed ({exc}); last lines of the "
                                f"log {_keep(log)}:\n{_tail(log)}") from None
            if not (tmp / top).is_file():
                raise ToolError(f"Verilator build of {top} produced no simulator; see the log "
                                f"{_keep(log)}")
            _save_runtime(tmp, runtime)
            _remove_compile_files(tmp)
            _touch(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is not
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    progress(f"built {top} in {time.monotonic() - start:.1f} s ({final})")
    removed = evict(keep=(final, runtime))
    if removed:
        progress(f"removed {len(removed)} least recently used or stale director"
                 f"{'y' if len(removed) == 1 else 'ies'} from the cache {root} (bound "
                 f"{cache_max()} bytes, NNACCEL_CACHE_MAX)")
    return final


#: Verilator's run-time library, compiled into every build directory alike (about two thirds of
#: the C++ compile of a small design): compiled once per configuration and copied into later
#: builds, where make finds them up to date.
_RUNTIME_OBJECTS = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")


def _runtime_dir(args, env, verilator):
    """Cache directory of the run-time objects for this Verilator, compiler and arguments."""
    try:
        compiler = subprocess.run([env.get("CXX", "c++"), "--version"], capture_output=True,
                                  text=True, check=False, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        compiler = ""
    config = {"verilator": [verilator.version_text, verilator.executable], "args": list(args),
              "compiler": [env.get("CXX", "c++"), compiler],
              "flags": [env.get(k, "") for k in ("MAKEFLAGS", "CXXFLAGS", "CPPFLAGS")]}
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
    return cache_dir() / f"runtime-{key}"


def _copy_runtime(runtime, build_dir, env):
    """Copy the cached run-time objects into ``build_dir`` and have make link them as they are.

    Verilator's makefile would compile them again (they depend on its generated makefile), so
    the run-time list is emptied and the objects are given to the linker instead, both as
    command-line variables in ``MAKEFLAGS`` (they override the makefile's)."""
    if not all((runtime / f"{name}.o").is_file() for name in _RUNTIME_OBJECTS):
        return
    _touch(runtime)
    try:
        for name in _RUNTIME_OBJECTS:
            shutil.copyfile(runtime / f"{name}.o", build_dir / f"{name}.o")
    except OSError:
        return
    objects = "\\ ".join(f"{name}.o" for name in _RUNTIME_OBJECTS)
    flags = f"VM_GLOBAL_FAST= VM_GLOBAL_SLOW= USER_LDLIBS={objects}"
    env["MAKEFLAGS"] = f"{env.get('MAKEFLAGS', '')} {flags}".strip()


def _save_runtime(build_dir, runtime):
    if runtime.exists() or not all((build_dir / f"{name}.o").is_file()
                                   for name in _RUNTIME_OBJECTS):
        return
    tmp = Path(tempfile.mkdtemp(prefix="runtime.tmp-", dir=runtime.parent))
    try:
        for name in _RUNTIME_OBJECTS:
            shutil.copyfile(build_dir / f"{name}.o", tmp / f"{name}.o")
        tmp.chmod(0o755)
        os.rename(tmp, runtime)
    except OSError:  # another build saved them first
        shutil.rmtree(tmp, ignore_errors=True)


def _keep(log):
    """Copy ``log`` out of a test directory that is about to be removed; return the copy."""
    fd, path = tempfile.mkstemp(prefix="nnaccel-sim-", suffix=".log")
    with os.fdopen(fd, "wb") as out, contextlib.suppress(OSError), open(log, "rb") as src:
        shutil.copyfileobj(src, out)
    return path


def _failures(results_xml):
    messages = []
    with contextlib.suppress(OSError, ElementTree.ParseError):
        for case in ElementTree.parse(results_xml).getroot().iter("testcase"):
            for tag in ("failure", "error"):
                for node in case.iter(tag):
                    text = (node.get("message") or node.text or "").strip()
                    messages.append(f"{case.get('name')}: {text.splitlines()[0] if text else tag}")
    return messages


def _counts(results_xml):
    tests = failed = 0
    for suite in ElementTree.parse(results_xml).getroot().iter("testsuite"):
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
    return tests, failed


def test(build_dir, top, test_module, *, extra_env=None, test_dir=None, seed=0):
    """Run the cocotb test module ``test_module`` on the simulator built in ``build_dir``.

    Parameters
    ----------
    build_dir : path-like
        A directory returned by :func:`build`.
    top : str
        The top module name given to :func:`build`.
    test_module : str
        Importable name of the cocotb module, e.g. ``"nnaccel.sim.tb_network"``.
    extra_env : mapping, optional
        Environment variables for the simulation (the test module's inputs).
    test_dir : path-like, optional
        Where the simulator runs and writes ``results.xml`` and ``sim.log``; a fresh temporary
        directory (removed afterwards) when None. Never the shared build directory.
    seed : int
        cocotb's random seed.

    Returns
    -------
    int
        Number of cocotb tests that ran (all passed).

    Raises
    ------
    SimulationError
        A test failed or the simulator did not finish; the message names the failure and ends
        with the tail of the simulation log.
    """
    if test_dir is None:
        with tempfile.TemporaryDirectory(prefix="nnaccel-sim-") as tmp:
            return test(build_dir, top, test_module, extra_env=extra_env, test_dir=tmp,
                        seed=seed)
    build_dir = Path(build_dir)
    with contextlib.ExitStack() as stack:
        if build_dir.parent == cache_dir():  # hold it shared: eviction must not remove it
            stack.enter_context(_locked(build_dir.parent / f"{build_dir.name}.lock",
                                        shared=True))
            _touch(build_dir)
        if not (build_dir / top).is_file():
            raise ToolError(f"no simulator {top} in {build_dir}: build it again with build()")
        return _test(build_dir, top, test_module, extra_env, Path(test_dir), seed)


def _test(build_dir, top, test_module, extra_env, test_dir, seed):
    test_dir.mkdir(parents=True, exist_ok=True)
    results = test_dir / "results.xml"
    log = test_dir / "sim.log"
    crash = None
    try:
        get_runner("verilator").test(
            test_module=test_module, hdl_toplevel=top, hdl_toplevel_lang="verilog",
            build_dir=build_dir, test_dir=test_dir, extra_env=dict(extra_env or {}),
            results_xml=str(results.resolve()), log_file=log, seed=seed)
    except (RuntimeError, SystemExit) as exc:  # under pytest, cocotb exits when a test fails
        crash = exc
    try:
        tests, failed = _counts(results)
    except (OSError, ElementTree.ParseError):
        raise SimulationError(f"simulation of {top} stopped abnormally ({crash or 'no results'})"
                              f"; last lines of the log {_keep(log)}:\n{_tail(log)}") from None
    if failed or not tests:
        why = "; ".join(_failures(results)) or "no test ran"
        raise SimulationError(f"simulation of {top} failed: {why} (log: {_keep(log)})")
    return tests
