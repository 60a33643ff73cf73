"""Mutation harness: apply each mutation of :mod:`mutations` to a copy of the repository and
check that the tests named for it fail.

The repository's own files are never touched (other work may be going on in them): the tracked
files of ``HEAD`` (or of the working tree, ``--worktree``) are copied to a temporary directory,
laid out as an importable ``nnaccel`` package (``nnaccel/hw`` -> ``hw`` and so on, as the
editable install maps them), and pytest runs there with that directory first on the import path.
Before any mutation the harness checks that ``nnaccel`` and its subpackages are imported from
the copy, and that the named tests pass on the unmutated copy (a baseline). Then, one mutation
at a time: replace the original text (which must occur exactly once), run the tests, restore
the file.

Usage::

    python tests/mutation/harness.py [--worktree] [--keep] [NAME ...]

prints one line per mutation and exits 1 when a mutation survives or the baseline fails.
"""

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Copy", "Outcome", "make_copy", "run_mutation", "main", "MUTATIONS", "Mutation",
           "by_name"]


def _load_list():
    """The sibling module ``mutations.py``, loaded by path under a name of its own (this file
    runs as a script, and ``tests`` is not a package)."""
    name = "nnaccel_mutation_list"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).resolve().parent / "mutations.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    return sys.modules[name]


MUTATIONS, Mutation, by_name = _load_list().MUTATIONS, _load_list().Mutation, _load_list().by_name

REPO = Path(__file__).resolve().parents[2]
#: Subpackages of ``nnaccel`` that live at the repository's top level (pyproject package-dir).
SUBPACKAGES = ("hw", "gen", "sim", "boards")
PYTEST = ("-q", "-x", "-n", "0", "-p", "no:cacheprovider", "-m", "not slow and not verilator")
TIMEOUT = 900


@dataclass
class Copy:
    """A copy of the repository (``root``) whose ``nnaccel`` package is importable from it."""

    root: Path

    def env(self):
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.root)
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def pytest(self, args, *, timeout=TIMEOUT):
        """Run pytest with ``args`` in the copy; returns ``(returncode, output)``, returncode
        None on a timeout."""
        cmd = [sys.executable, "-m", "pytest", *PYTEST, *args]
        try:
            done = subprocess.run(cmd, cwd=self.root, env=self.env(), capture_output=True,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return None, str(exc.stdout or "")
        return done.returncode, done.stdout + done.stderr

    def imported_from(self):
        """Files that ``nnaccel`` and its subpackages are imported from, in the copy's
        environment (the same interpreter, directory and path as :meth:`pytest`)."""
        names = ["nnaccel"] + [f"nnaccel.{s}" for s in SUBPACKAGES]
        code = ("import importlib, sys\n"
                f"for n in {names!r}:\n"
                "    print(importlib.import_module(n).__file__)\n")
        done = subprocess.run([sys.executable, "-c", code], cwd=self.root, env=self.env(),
                              capture_output=True, text=True, check=True)
        return [Path(line) for line in done.stdout.split()]

    def check_imports(self):
        """Raise RuntimeError unless every ``nnaccel`` package is imported from the copy."""
        for path in self.imported_from():
            if not path.absolute().is_relative_to(self.root):
                raise RuntimeError(f"{path} is imported from outside the copy {self.root}")


def make_copy(dest, *, repo=REPO, worktree=False):
    """Copy the tracked files of ``repo`` (its ``HEAD``, or the working tree's current files)
    into ``dest`` and link ``nnaccel/<sub>`` to ``<sub>`` for each top-level subpackage."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if worktree:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=repo, check=True,
                                 capture_output=True).stdout.decode().split("\0")
        for name in filter(None, listing):
            src = repo / name
            if src.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)
    else:
        with tempfile.TemporaryFile() as archive:
            subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=repo, check=True,
                           stdout=archive)
            archive.seek(0)
            with tarfile.open(fileobj=archive) as tar:
                tar.extractall(dest, filter="data")
    for sub in SUBPACKAGES:
        link = dest / "nnaccel" / sub
        if not link.exists():
            link.symlink_to(Path("..") / sub, target_is_directory=True)
    return Copy(dest.absolute())


@dataclass(frozen=True)
class Outcome:
    """What became of one mutation: ``caught`` (the tests failed), ``timeout`` (they hung,
    which also counts as caught) or ``survived``; with the seconds spent and the output's
    tail."""

    mutation: Mutation
    status: str
    seconds: float
    tail: str

    @property
    def caught(self):
        return self.status in ("caught", "timeout")


def apply(copy, mutation):
    """Apply ``mutation`` to ``copy``; returns the original text of the file."""
    path = copy.root / mutation.path
    text = path.read_text()
    count = text.count(mutation.original)
    if count != 1:
        raise ValueError(f"{mutation.name}: the original text occurs {count} times in "
                         f"{mutation.path}, not once")
    path.write_text(text.replace(mutation.original, mutation.replacement))
    return text


def run_mutation(copy, mutation, *, timeout=TIMEOUT):
    """Apply ``mutation`` to ``copy``, run its tests, restore the file; returns an Outcome."""
    original = apply(copy, mutation)
    start = time.monotonic()
    try:
        code, output = copy.pytest(mutation.tests, timeout=timeout)
    finally:
        (copy.root / mutation.path).write_text(original)
    status = "timeout" if code is None else "survived" if code == 0 else "caught"
    tail = "\n".join(output.strip().splitlines()[-3:])
    return Outcome(mutation, status, time.monotonic() - start, tail)


def baseline(copy, mutations, *, timeout=TIMEOUT):
    """Run every test the mutations name on the unmutated copy; returns (ok, output)."""
    tests = list(dict.fromkeys(t for m in mutations for t in m.tests))
    code, output = copy.pytest(tests, timeout=timeout)
    return code == 0, output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutations to run (default: all)")
    parser.add_argument("--worktree", action="store_true",
                        help="copy the working tree's tracked files instead of HEAD")
    parser.add_argument("--keep", action="store_true", help="keep the copy (prints its path)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = parser.parse_args(argv)
    try:
        chosen = by_name(args.names)
    except KeyError as exc:
        parser.error(exc.args[0])
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:40s} {m.path}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="nnaccel-mutate-"))
    try:
        copy = make_copy(tmp / "tree", worktree=args.worktree)
        copy.check_imports()
        print(f"copy: {copy.root} (nnaccel imported from it)", flush=True)
        ok, output = baseline(copy, chosen)
        if not ok:
            print("baseline FAILED: the named tests fail on the unmutated copy")
            print(output[-3000:])
            return 1
        print("baseline: the named tests pass on the unmutated copy", flush=True)
        outcomes = []
        for m in chosen:
            out = run_mutation(copy, m)
            outcomes.append(out)
            print(f"{out.status:9s} {out.seconds:6.1f}s  {m.name}  ({m.path})", flush=True)
            if not out.caught:
                print("    " + out.tail.replace("\n", "\n    "))
        caught = sum(o.caught for o in outcomes)
        print(f"{caught} of {len(outcomes)} mutations caught")
        return 0 if caught == len(outcomes) else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
