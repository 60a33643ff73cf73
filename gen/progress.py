"""Progress bars of long steps (simulation, place and route), drawn by tqdm on stderr.

A bar is shown only on a terminal and never after :func:`disable` (the command line calls it
for ``--json``); it never writes to stdout. Steps whose length is unknown in advance (a tool
run) get their ETA from the time the same step took last time, kept in
``$NNACCEL_CACHE/progress.json`` (default ``~/.cache/nnaccel``).
"""

import contextlib
import json
import os
import sys
import threading
import time
from pathlib import Path

from tqdm import tqdm

__all__ = ["disable", "enabled", "bar", "file_bar", "Timed"]

_state = {"disabled": False}
#: Seconds between two looks at a progress file.
_POLL = 0.25


def disable(off=True):
    """Turn every bar off (``--json``), or on again."""
    _state["disabled"] = bool(off)


def enabled(stream=None):
    """True when bars are drawn on ``stream`` (stderr by default): a terminal, not disabled."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return not _state["disabled"] and callable(isatty) and bool(isatty())


def bar(total, desc, *, unit="it", stream=None, bar_format=None):
    """A tqdm bar over ``total`` units (None: a count without ETA) on ``stream`` (stderr);
    disabled (draws nothing) off a terminal. Use it as a context manager."""
    stream = sys.stderr if stream is None else stream
    return tqdm(total=total, desc=desc, unit=unit, file=stream, leave=False,
                dynamic_ncols=True, bar_format=bar_format, disable=not enabled(stream))


@contextlib.contextmanager
def file_bar(path, total, desc, *, unit="it"):
    """A bar that follows a count another process writes to the text file ``path`` (as a
    decimal number); yields the path to hand to that process, or None when no bar is drawn
    (then the process need not write it)."""
    if not enabled():
        yield None
        return
    path = Path(path)
    stop = threading.Event()
    with bar(total, desc, unit=unit) as b:
        def look():
            try:
                done = int(path.read_text() or 0)
            except (OSError, ValueError):  # not written yet, or caught mid-write
                return
            b.update(max(0, min(done, total) - b.n))

        def follow():
            while not stop.wait(_POLL):
                look()

        thread = threading.Thread(target=follow, daemon=True)
        thread.start()
        try:
            yield path
        finally:
            stop.set()
            thread.join()
            look()  # the last count, drawn before the bar is cleared
            b.refresh()


def _history_path():
    root = os.environ.get("NNACCEL_CACHE") or os.path.join("~", ".cache", "nnaccel")
    return Path(root).expanduser() / "progress.json"


def _history():
    try:
        doc = json.loads(_history_path().read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


class Timed:
    """A bar over the seconds of one step whose previous run (same ``key``) took
    ``expected`` seconds: its ETA; a plain elapsed-time count the first time. Call
    :meth:`tick` now and then; on a clean exit the step's time is remembered."""

    def __init__(self, key, desc, *, stream=None):
        self.key = key
        expected = _history().get(key)
        self.expected = expected if isinstance(expected, (int, float)) and expected > 0 else None
        # seconds elapsed of the expected; the ETA is the rest (first time: elapsed only)
        form = ("{desc}: {percentage:3.0f}%|{bar}| {elapsed} elapsed, ETA {remaining}"
                if self.expected is not None else "{desc}: {elapsed} elapsed (no ETA yet)")
        self.bar = bar(self.expected, desc, unit="s", stream=stream, bar_format=form)
        self.start = time.monotonic()

    def tick(self):
        elapsed = time.monotonic() - self.start
        if self.expected is not None:
            elapsed = min(elapsed, self.expected)  # late: the bar waits full
        self.bar.update(elapsed - self.bar.n)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.bar.close()
        if kind is None:
            self._remember(round(time.monotonic() - self.start, 2))
        return False

    def _remember(self, seconds):
        path = _history_path()
        doc = _history()
        doc[self.key] = seconds
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
            os.replace(tmp, path)
