"""Reading untrusted files within documented limits, before anything large is allocated.

Every file a user hands to nnaccel (``model.json``, the members of ``weights.npz``, ``--input
X.npy``, an ONNX file) is checked here against :func:`max_bytes` *before* it is read or an array
is allocated: sizes come from the file system and from headers (the zip directory, the ``.npy``
header), and a header that lies is caught while reading, which never reads past the size
checked. The limits:

* an array, counted as nnaccel holds it -- 8 bytes per element (int64) -- at most
  :func:`max_bytes` bytes;
* ``model.json`` and other JSON at most ``max_bytes() // 16`` bytes, integers of at most
  :data:`MAX_INT_DIGITS` digits (nesting is bounded by Python's recursion limit);
* only regular files are read (a FIFO, a device such as ``/dev/zero``, or a symbolic link to one
  is refused without blocking).

:func:`max_bytes` is 1 GiB unless the environment variable ``NNACCEL_MAX_BYTES`` gives another
number of bytes (e.g. ``NNACCEL_MAX_BYTES=8000000000``). Every failure is a
:class:`~nnaccel.gen.errors.NnaccelError` made by the caller's ``fail(message)``, so the message
names the caller's layer and field.
"""

import json
import math
import os
import stat
import zipfile
import zlib

import numpy as np

__all__ = ["DEFAULT_MAX_BYTES", "MAX_INT_DIGITS", "max_bytes",
           "check_elements", "open_regular", "read_capped", "load_json", "read_npy",
           "npz_member"]

DEFAULT_MAX_BYTES = 1 << 30
MAX_INT_DIGITS = 64
_ENV = "NNACCEL_MAX_BYTES"
_HEADER_MAX = 1 << 16


def max_bytes():
    """The largest array (8 bytes an element) nnaccel loads: ``$NNACCEL_MAX_BYTES`` or 1 GiB.
    A value that is not a positive integer is ignored (the default applies)."""
    text = os.environ.get(_ENV, "")
    try:
        value = int(text)
    except ValueError:
        return DEFAULT_MAX_BYTES
    return value if value > 0 else DEFAULT_MAX_BYTES


def check_elements(shape, fail, what="array", itemsize=8):
    """Exact element count of ``shape`` (Python integers: no wrap-around), or ``fail`` when the
    array would exceed :func:`max_bytes` as int64 (or with ``itemsize`` bytes an element, if
    that is more)."""
    count = math.prod(int(s) for s in shape)
    limit = max_bytes()
    if count * max(8, itemsize) > limit:
        raise fail(f"{what} of shape {tuple(int(s) for s in shape)} has {count} elements, "
                   f"over the limit of {limit // 8} ({_ENV}={limit} bytes; raise it to load it)")
    return count


def open_regular(path, fail):
    """A binary file object for ``path`` if it is a regular file (a symbolic link to one is
    fine); FIFOs and devices are refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise fail(f"no such file: {path}") from None
    except OSError as e:
        raise fail(f"cannot open {path}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise fail(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path, limit, fail):
    """The bytes of the regular file ``path``, refused when over ``limit`` bytes (counted while
    reading too, in case the file grows)."""
    with open_regular(path, fail) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise fail(f"{path} has {size} bytes, over the limit of {limit} "
                       f"({_ENV}={max_bytes()}; JSON may have 1/16 of it)")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise fail(f"{path} has over {limit} bytes")
    return data


def _parse_int(text):
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _TooLong(digits)
    return int(text)


class _TooLong(ValueError):
    pass


def load_json(path, fail):
    """Parse the JSON file ``path`` within the limits of the module docstring."""
    data = read_capped(path, max(max_bytes() // 16, 1), fail)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"not valid JSON: not UTF-8 ({e.reason} at byte {e.start})") from None
    try:
        return json.loads(text, parse_int=_parse_int)
    except _TooLong as e:
        raise fail(f"an integer of {e.args[0]} digits (at most {MAX_INT_DIGITS})") from None
    except RecursionError:
        raise fail("not valid JSON: nested too deeply") from None
    except ValueError as e:
        raise fail(f"not valid JSON: {e}") from None


def _read_header(f, fail, kinds="biuf"):
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header at the position of ``f``."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(f, max_header_size=_HEADER_MAX)
        elif version in ((2, 0), (3, 0)):
            header = np.lib.format.read_array_header_2_0(f, max_header_size=_HEADER_MAX)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as e:  # numpy parses the header with tokenize and literal_eval
        raise fail(f"not a numpy .npy array: {type(e).__name__}: {e}") from None
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise fail("holds Python objects (pickles are not loaded), not integers")
    if dtype.kind not in kinds or dtype.shape or dtype.names:
        raise fail(f"holds {dtype}, not integers" if kinds == "biuf" else f"holds {dtype}")
    return shape, fortran, dtype


def _read_body(f, shape, fortran, dtype, fail):
    """The array of the header just read, never reading more than the header's size."""
    check_elements(shape, fail, itemsize=dtype.itemsize)
    nbytes = math.prod(shape) * dtype.itemsize
    try:
        data = f.read(nbytes) if nbytes else b""
        if len(data) != nbytes:
            raise fail(f"its header promises {nbytes} bytes of data, the file holds "
                       f"{len(data)}")
        arr = np.frombuffer(data, dtype=dtype)
        return arr.reshape(shape[::-1]).transpose() if fortran else arr.reshape(shape)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError) as e:
        raise fail(f"cannot be read: {e}") from None
    except MemoryError:
        raise fail(f"an array of shape {tuple(shape)} does not fit in memory") from None


def read_npy(path, fail):
    """The array in the ``.npy`` file ``path``: regular file, header checked, size capped."""
    with open_regular(path, fail) as f:
        if f.read(2) == b"PK":
            raise fail(f"{path} is a .npz archive, not a .npy array")
        f.seek(0)
        shape, fortran, dtype = _read_header(f, fail)
        return _read_body(f, shape, fortran, dtype, fail)


def npz_member(zf, name, fail, kinds="biuf"):
    """The array ``name`` of the open :class:`zipfile.ZipFile` of a ``.npz`` file: the member's
    uncompressed size from the zip directory and its ``.npy`` header are checked first. Its
    dtype must be of one of the numpy ``kinds`` (booleans and numbers unless told)."""
    member = name + ".npy"
    try:
        info = zf.getinfo(member)
    except KeyError:
        raise fail(f"array {name!r} is not in the archive") from None
    limit = max_bytes()
    if info.file_size > limit + _HEADER_MAX:
        raise fail(f"array {name!r} inflates to {info.file_size} bytes, over the limit of "
                   f"{limit} ({_ENV})")
    try:
        with zf.open(info) as f:
            shape, fortran, dtype = _read_header(f, fail, kinds)
            return _read_body(f, shape, fortran, dtype, fail)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, NotImplementedError,
            RuntimeError) as e:
        raise fail(f"array {name!r} cannot be read: {e}") from None
