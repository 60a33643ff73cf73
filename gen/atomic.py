"""Output directories that are complete or absent, and never a user's files replaced (SPEC 5).

Every output directory nnaccel writes (``generate``, ``import``, ``compress``, ``build``,
``demo``, and the library functions behind them) goes through :func:`atomic_directory`:

* The path may be **absent**, an **empty directory**, or a **complete earlier output of the
  same command**: a directory holding the marker file :data:`MARKER`, which names the command
  and lists every file (and directory and link) it wrote with its size and SHA-256, and nothing
  else. Anything else -- a directory with other files, an earlier output that was changed or
  added to, another command's output, a regular file, a symbolic link, the current directory or
  one of its parents, or a path that is or contains one of the command's input files -- is
  refused with a :class:`~nnaccel.gen.errors.UsageError` (exit status 2) and left untouched.
* Replacing an earlier output needs ``force`` (the CLI's ``--force``); library callers that do
  not say otherwise replace their own earlier outputs (see :func:`output_policy`).
* The new contents are written into a staging directory beside the path, named
  ``.<name>.nnaccel-stage-<pid>-<random>``, and renamed into place; an earlier output is first
  renamed to ``.<name>.nnaccel-old-<pid>-<random>`` and removed after the swap. The staging
  directory is removed on every error (an exception, Ctrl-C, SIGTERM turned into an exception by
  the CLI). Only SIGKILL or a power cut can leave one behind; the next write beside it removes
  every staging directory of this naming whose owning process ``<pid>`` is no longer running
  (on this machine), and renames an old one back to its name if that is still absent
  (:func:`remove_stale_staging`).
"""

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import UsageError

__all__ = ["MARKER", "atomic_directory", "output_policy", "check_output", "output_problem",
           "publish", "remove_stale_staging"]

#: The marker file of a complete output, written last into the staging directory.
MARKER = ".nnaccel-output.json"
_MARKER_FORMAT = "nnaccel-output/1"
_MARKER_MAX_BYTES = 16 << 20
_STAGING = re.compile(r"\.(.+)\.nnaccel-(stage|old)-([0-9]+)-[0-9a-z_]+\Z")


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Policy:
    command: str = "nnaccel"
    force: bool = True
    inputs: tuple = ()
    field: str = "output"


_DEFAULT = _Policy()
_POLICY = contextvars.ContextVar("nnaccel_output_policy", default=None)


def _current():
    return _POLICY.get() or _DEFAULT


@contextlib.contextmanager
def output_policy(*, command, force, inputs=(), field="--output"):
    """Within the block, :func:`atomic_directory` calls that do not say otherwise write outputs
    of ``command`` (the name recorded in the marker), replace an earlier output only with
    ``force``, refuse a path that is or contains one of ``inputs``, and name ``field`` in their
    errors. The CLI wraps each command in one; outside any, the policy is command ``nnaccel``,
    ``force=True``, no inputs."""
    token = _POLICY.set(_Policy(command=command, force=bool(force),
                                inputs=tuple(str(i) for i in inputs), field=field))
    try:
        yield
    finally:
        _POLICY.reset(token)


def _policy(command, force, inputs, field):
    p = _current()
    return _Policy(command=p.command if command is None else command,
                   force=p.force if force is None else bool(force),
                   inputs=p.inputs if inputs is None else tuple(str(i) for i in inputs),
                   field=p.field if field is None else field)


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _listing(root):
    """``{relative path: (size, digest)}`` of everything below ``root`` (the marker excluded):
    a regular file's size and SHA-256, ``(-1, "symlink:" + target)`` for a symbolic link (never
    followed), ``(-2, "directory")`` for a directory; or a string naming the first entry of
    another kind (a FIFO, a socket, a device), which nnaccel never writes."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            mode = os.lstat(full).st_mode
            rel = os.path.relpath(full, root)
            if stat.S_ISDIR(mode):
                entries[rel] = (-2, "directory")
            elif stat.S_ISLNK(mode):
                entries[rel] = (-1, "symlink:" + os.readlink(full))
            elif not stat.S_ISREG(mode):
                return rel
            elif rel != MARKER:
                entries[rel] = (os.lstat(full).st_size, _sha256(full))
    return entries


def _write_marker(root, command):
    files = _listing(root)
    if isinstance(files, str):
        raise UsageError(f"output {str(root)!r}: {files!r} is not a regular file")
    doc = {"format": _MARKER_FORMAT, "command": command,
           "files": {rel: {"size": size, "sha256": digest}
                     for rel, (size, digest) in sorted(files.items())}}
    (Path(root) / MARKER).write_text(json.dumps(doc, indent=1) + "\n")


def _earlier_output(path, command):
    """None when ``path`` (a non-empty directory) is a complete earlier output of ``command``,
    else why it is not."""
    marker = path / MARKER
    try:
        st = os.lstat(marker)
    except FileNotFoundError:
        first = min(p.name for p in path.iterdir())
        return (f"is not empty (it holds {first!r}) and is not an earlier output of `nnaccel "
                f"{command}` (no {MARKER})")
    if not stat.S_ISREG(st.st_mode) or st.st_size > _MARKER_MAX_BYTES:
        return f"holds a {MARKER} that nnaccel did not write"
    try:
        doc = json.loads(marker.read_text())
        written = {rel: (int(e["size"]), str(e["sha256"])) for rel, e in doc["files"].items()}
        was = doc["command"]
        if doc["format"] != _MARKER_FORMAT:
            raise ValueError(doc["format"])
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError,
            RecursionError):
        return f"holds a {MARKER} that nnaccel did not write"
    if was != command:
        return f"holds the output of `nnaccel {was}`, not of `nnaccel {command}`"
    found = _listing(path)
    if isinstance(found, str):
        return f"holds {found!r}, which nnaccel did not write"
    extra = sorted(set(found) - set(written))
    if extra:
        return f"holds {extra[0]!r}, which nnaccel did not write"
    for rel, entry in sorted(written.items()):
        if found.get(rel) != entry:
            return f"was changed since nnaccel wrote it ({rel!r})"
    return None


def output_problem(path, *, command=None, force=None, inputs=None):
    """Why ``path`` may not be written as an output of ``command``, or None when it may (the
    rules are in the module's docstring; arguments left None come from :func:`output_policy`).
    """
    pol = _policy(command, force, inputs, None)
    path = Path(path)
    if os.path.islink(path):
        return "is a symbolic link; refusing to replace it"
    real = path.resolve()
    if real == real.parent or real == Path.cwd().resolve() or real in Path.cwd().resolve().parents:
        return "is the current directory or contains it; name a new directory"
    for given in pol.inputs:
        inp = Path(given).resolve()
        if inp == real or real in inp.parents:
            return f"is or contains the input {given!r}; refusing to overwrite it"
    above = real.parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        return f"lies below {str(above)!r}, which is not a directory"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(mode):
        return "exists and is not a directory; refusing to replace it"
    if not any(path.iterdir()):
        return None
    why = _earlier_output(path, pol.command)
    if why is not None:
        return why + "; refusing to touch it"
    if not pol.force:
        return f"holds an earlier output of `nnaccel {pol.command}`; pass --force to replace it"
    return None


def check_output(path, *, command=None, force=None, inputs=None):
    """Raise :class:`UsageError` naming the output field unless ``path`` may be written; first
    clean up beside it after a killed process (:func:`remove_stale_staging`)."""
    if Path(path).parent.is_dir():
        remove_stale_staging(Path(path).parent)
    why = output_problem(path, command=command, force=force, inputs=inputs)
    if why is not None:
        raise UsageError(f"{_current().field} {str(path)!r} {why}")


def _pid_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def remove_stale_staging(directory):
    """Clean up after a process killed while writing in ``directory``: its staging directories
    are removed, and an earlier output it had renamed aside (``.NAME.nnaccel-old-...``) goes
    back to ``NAME`` if that is still absent (else it is removed). Only entries of this naming
    whose process ``PID`` is no longer running are touched. Returns the names handled."""
    handled = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return handled
    for entry in entries:
        m = _STAGING.match(entry.name)
        if not m or not entry.is_dir(follow_symlinks=False) or _pid_running(int(m.group(3))):
            continue
        home = Path(directory) / m.group(1)
        if m.group(2) == "old" and not os.path.lexists(home):
            os.rename(entry.path, home)
        else:
            shutil.rmtree(entry.path, ignore_errors=True)
        handled.append(entry.name)
    return handled


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(staging, path, *, command=None, force=None, inputs=None):
    """Write the marker into the finished directory ``staging`` and rename it to ``path``,
    checking ``path`` again first (it may have changed while the command ran). An earlier
    output at ``path`` is renamed aside, then removed; ``path`` is absent only between the two
    renames. The directory gets the mode ``mkdir`` would give it under the current umask
    (``tempfile.mkdtemp`` makes it 0700)."""
    pol = _policy(command, force, inputs, None)
    path = Path(path)
    os.chmod(staging, 0o777 & ~_umask())
    _write_marker(staging, pol.command)
    check_output(path, command=pol.command, force=pol.force, inputs=pol.inputs)
    old = None
    if path.is_dir() and any(path.iterdir()):
        old = path.parent / f".{path.name}.nnaccel-old-{os.getpid()}-{secrets.token_hex(4)}"
        os.rename(path, old)
        why = _earlier_output(old, pol.command)  # a file written in the meantime stays
        if why is not None:
            os.rename(old, path)
            raise UsageError(f"{pol.field} {str(path)!r} changed while nnaccel ran ({why}); "
                             "refusing to touch it")
    try:
        os.rename(staging, path)  # onto an empty directory, or none
    except OSError as e:
        if old is not None:
            os.rename(old, path)
        raise UsageError(f"{pol.field} {str(path)!r} changed while nnaccel ran "
                         f"({e.strerror}); refusing to touch it") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path, *, command=None, force=None, inputs=None):
    """Yield a new staging directory beside ``path``; when the block ends without an exception
    it becomes ``path`` (see :func:`publish`), otherwise it is removed and ``path`` is left as
    it was.

    ``path`` is checked before anything is created (:func:`check_output`), and again before the
    swap. ``command``, ``force`` and ``inputs`` default to the current :func:`output_policy`.

    Raises
    ------
    UsageError
        ``path`` may not be written (see the module docstring); nothing was touched.
    """
    pol = _policy(command, force, inputs, None)
    path = Path(path)
    check_output(path, command=pol.command, force=pol.force, inputs=pol.inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.nnaccel-stage-{os.getpid()}-",
                                dir=path.parent))
    try:
        yield tmp
        publish(tmp, path, command=pol.command, force=pol.force, inputs=pol.inputs)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
