"""Output directories that are complete or absent (SPEC section 5: nothing is half-written)."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_directory"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a temporary directory beside ``path``; when the block ends without an exception it
    replaces ``path`` (an old directory there is moved aside first, so ``path`` is never
    absent), otherwise it is deleted and ``path`` is left as it was. The new directory gets the
    mode ``mkdir`` would give it under the current umask."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
