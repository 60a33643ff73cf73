"""EIE's sparse storage format: rows interleaved over PEs, CSC with relative row indices.

Imports only numpy. An ``(M, K)`` weight matrix is spread over ``N`` processing elements (PEs):
row ``i`` belongs to PE ``i mod N``, where it is *local row* ``i // N``. Each PE stores its slice
column by column (compressed sparse columns), one *entry* per non-zero:

* ``value``: the index of the weight in the stored codebook (a *code*), or the integer weight
  itself when the layer has no codebook;
* ``z``: the relative row index, the number of zeros before this entry among the PE's rows of
  the column (counted from the previous entry of the column, or from the top of the column).

``z`` has ``index_bits`` bits, so it counts at most ``2**index_bits - 1`` zeros; a longer run of
zeros is cut by a *padding entry* (``z = 2**index_bits - 1``, value zero: code 0 of the stored
codebook is always the value 0). Each PE also has a pointer array of ``K + 1`` entries: the
entries of column ``j`` are ``pointers[j] .. pointers[j + 1] - 1``.

Decoding walks each column with ``row = previous + z + 1``, starting from ``previous = -1``.

References: S. Han et al., "EIE: Efficient Inference Engine on Compressed Deep Neural Network",
ISCA 2016, section III.C and figure 3.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["SparseMatrix", "IndexChoice", "encode", "decode", "stored_codebook",
           "choose_index_bits", "MAX_INDEX_BITS"]

#: Widest relative row index :func:`choose_index_bits` considers by default.
MAX_INDEX_BITS = 8


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, not {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")
    return int(value)


def _readonly(arr):
    out = np.array(arr, dtype=np.int64, copy=True)
    out.setflags(write=False)
    return out


def _int_matrix(weight):
    w = np.asarray(weight)
    if w.ndim != 2:
        raise ValueError(f"weight must be a 2-D (M, K) array, not shape {w.shape}")
    if w.size and w.dtype.kind not in "iu":
        if w.dtype.kind == "f" and np.all(w == np.round(w)):
            w = w.astype(np.int64)
        else:
            raise TypeError(f"weight must hold integers, not {w.dtype}")
    if w.size and (int(w.min()) < -(1 << 62) or int(w.max()) >= 1 << 62):
        raise ValueError("weight values must fit in 63 bits")
    return w.astype(np.int64)


def _signed_bits(lo, hi):
    """Two's complement width holding lo..hi (at least 1 bit)."""
    lo, hi = min(int(lo), 0), max(int(hi), 0)
    if lo == 0:
        return max(hi.bit_length(), 1), False
    return max((-lo - 1).bit_length(), hi.bit_length()) + 1, True


def stored_codebook(codebook):
    """The codebook as stored: ``0`` first, then the distinct non-zero values in given order.

    Code 0 is the value zero, which padding entries use.
    """
    cb = np.asarray(codebook)
    if cb.ndim != 1 or cb.size == 0:
        raise ValueError(f"codebook must be a non-empty 1-D array, not shape {cb.shape}")
    if cb.dtype.kind not in "iu":
        raise TypeError(f"codebook must hold integers, not {cb.dtype}")
    seen = [0]
    for v in cb.tolist():
        if v not in seen:
            seen.append(int(v))
    return tuple(seen)


@dataclass(frozen=True, eq=False)
class SparseMatrix:
    """An encoded matrix (see the module docstring). Build it with :func:`encode`.

    Attributes
    ----------
    shape : (int, int)
        ``(M, K)`` of the dense matrix.
    pe : int
        Number of PEs ``N``.
    index_bits : int
        Width of ``z``.
    value_bits : int
        Width of the stored value field (code width with a codebook, weight width otherwise).
    codebook : tuple of int or None
        The stored codebook (``codebook[0] == 0``), or None when values are the weights.
    value_signed : bool
        Without a codebook: the value field is two's complement. With one: False.
    values, z, pointers : tuple of N read-only int64 arrays
        Per PE: entry values (codes or weights), entry relative row indices, and the
        ``K + 1`` column pointers.
    """

    shape: tuple
    pe: int
    index_bits: int
    value_bits: int
    codebook: tuple | None
    value_signed: bool
    values: tuple
    z: tuple
    pointers: tuple

    @property
    def max_run(self):
        """Longest run of zeros one entry can skip: ``2**index_bits - 1``."""
        return (1 << self.index_bits) - 1

    def rows(self, p):
        """Number of local rows of PE ``p``: the rows ``i < M`` with ``i mod N == p``."""
        m = self.shape[0]
        return max(0, -(-(m - p) // self.pe))

    @property
    def rows_per_pe(self):
        """Local rows of PE 0, the most any PE has: ``ceil(M / N)``."""
        return self.rows(0)

    @property
    def entries(self):
        """Entries (non-zeros plus padding) of each PE, an (N,) array."""
        return np.array([len(v) for v in self.values], dtype=np.int64)

    def weights(self, p):
        """Weight value of each entry of PE ``p`` (padding entries are 0)."""
        if self.codebook is None:
            return self.values[p]
        return np.asarray(self.codebook, dtype=np.int64)[self.values[p]]

    @property
    def nonzeros(self):
        """Non-zero weights stored (entries with a non-zero weight)."""
        return int(sum(np.count_nonzero(self.weights(p)) for p in range(self.pe)))

    @property
    def padding(self):
        """Padding entries (entries whose weight is zero)."""
        return int(self.entries.sum()) - self.nonzeros

    def column_counts(self):
        """Entries of each PE in each column, an (N, K) array."""
        return np.stack([np.diff(p) for p in self.pointers]) if self.pe else np.zeros((0, 0))

    @property
    def pointer_bits(self):
        """Width of one column pointer of the widest PE: holds ``0 .. entries``."""
        return max(int(self.entries.max()).bit_length(), 1)

    @property
    def storage_bits(self):
        """Bits stored: every entry (value + z) and every pointer (codebook not counted)."""
        n_entries = int(self.entries.sum())
        return (n_entries * (self.value_bits + self.index_bits)
                + self.pe * (self.shape[1] + 1) * self.pointer_bits)

    @property
    def entry_bits_per_nonzero(self):
        """Entry bits (value + z, padding included) per stored non-zero weight."""
        return int(self.entries.sum()) * (self.value_bits + self.index_bits) / max(
            self.nonzeros, 1)

    @property
    def bits_per_nonzero(self):
        """All stored bits (entries and pointers) per non-zero weight."""
        return self.storage_bits / max(self.nonzeros, 1)


def _codes(nz_values, cb):
    """Codes (indices into the stored codebook ``cb``) of the non-zero values."""
    table = np.asarray(cb, dtype=np.int64)
    order = np.argsort(table, kind="stable")
    pos = np.clip(np.searchsorted(table, nz_values, sorter=order), 0, len(table) - 1)
    codes = order[pos]
    missing = table[codes] != nz_values
    if missing.any():
        raise ValueError(f"weight value {int(nz_values[missing][0])} is not in the codebook")
    return codes


def encode(weight, pe, *, index_bits=4, codebook=None, code_bits=None, value_bits=None):
    """Encode ``weight`` for ``pe`` PEs.

    Parameters
    ----------
    weight : (M, K) integer array
        The dense matrix (zeros are pruned weights).
    pe : int
        Number of PEs ``N``; row ``i`` goes to PE ``i mod N``.
    index_bits : int
        Width of the relative row index ``z`` (1..32).
    codebook : 1-D integer array, optional
        The layer's codebook (SPEC 2.1): every non-zero weight must be one of its values.
        Entries then hold codes into :func:`stored_codebook` (zero first).
    code_bits : int, optional
        With a codebook: width of a code (default: the fewest bits holding every code).
    value_bits : int, optional
        Without a codebook: width of the stored weight (default: the fewest two's complement, or
        unsigned if no weight is negative, bits holding every weight).

    Returns
    -------
    SparseMatrix

    Raises
    ------
    TypeError, ValueError
        Bad arguments, a weight missing from the codebook, or a width too small.
    """
    w = _int_matrix(weight)
    n = _positive_int("pe", pe)
    index_bits = _positive_int("index_bits", index_bits)
    if index_bits > 32:
        raise ValueError(f"index_bits must be at most 32, not {index_bits}")
    m, k = w.shape
    if m < 1 or k < 1:
        raise ValueError(f"weight must have at least one row and one column, not {w.shape}")

    if codebook is not None:
        if value_bits is not None:
            raise ValueError("value_bits applies only without a codebook; use code_bits")
        cb = stored_codebook(codebook)
        need = max((len(cb) - 1).bit_length(), 1)
        width = need if code_bits is None else _positive_int("code_bits", code_bits)
        if width < need:
            raise ValueError(f"code_bits must be at least {need} for a stored codebook of "
                             f"{len(cb)} values, not {width}")
        signed = False
    else:
        if code_bits is not None:
            raise ValueError("code_bits applies only with a codebook; use value_bits")
        cb = None
        need, signed = _signed_bits(w.min(), w.max())
        width = need if value_bits is None else _positive_int("value_bits", value_bits)
        if width < need:
            raise ValueError(f"value_bits must be at least {need} to hold weights "
                             f"{int(w.min())}..{int(w.max())}, not {width}")

    span = 1 << index_bits
    values, zs, pointers = [], [], []
    for p in range(n):
        wp = w[p::n]
        cols, rows = np.nonzero(wp.T)  # column-major order: by column, then by row
        first = np.ones(len(cols), dtype=bool)
        first[1:] = cols[1:] != cols[:-1]
        prev = np.where(first, -1, np.concatenate([[-1], rows[:-1]]))
        gap = rows - prev - 1
        pads = gap // span
        nz = wp[rows, cols]
        stored = _codes(nz, cb) if cb is not None else nz
        sizes = pads + 1
        total = int(sizes.sum())
        val = np.zeros(total, dtype=np.int64)
        z = np.full(total, span - 1, dtype=np.int64)
        real = np.cumsum(sizes) - 1  # position of each non-zero's own entry
        val[real] = stored
        z[real] = gap - pads * span
        counts = np.bincount(cols, weights=sizes, minlength=k).astype(np.int64)
        values.append(_readonly(val))
        zs.append(_readonly(z))
        pointers.append(_readonly(np.concatenate([[0], np.cumsum(counts)])))
    return SparseMatrix(shape=(m, k), pe=n, index_bits=index_bits, value_bits=width,
                        codebook=cb, value_signed=signed, values=tuple(values), z=tuple(zs),
                        pointers=tuple(pointers))


def decode(matrix):
    """The dense ``(M, K)`` int64 matrix that ``matrix`` encodes.

    Raises ValueError when the encoding is inconsistent (a row past the PE's rows, pointers
    that do not cover the entries, a code outside the codebook).
    """
    if not isinstance(matrix, SparseMatrix):
        raise TypeError(f"matrix must be a SparseMatrix, not {matrix!r}")
    m, k = matrix.shape
    n = matrix.pe
    w = np.zeros((m, k), dtype=np.int64)
    for p in range(n):
        ptr, z = matrix.pointers[p], matrix.z[p]
        if len(ptr) != k + 1 or ptr[0] != 0 or ptr[-1] != len(z) or np.any(np.diff(ptr) < 0):
            raise ValueError(f"PE {p}: pointers do not describe its {len(z)} entries")
        if matrix.codebook is not None and len(z) and (
                matrix.values[p].min() < 0 or matrix.values[p].max() >= len(matrix.codebook)):
            raise ValueError(f"PE {p}: a code lies outside the codebook")
        weights = matrix.weights(p)
        rows = matrix.rows(p)
        for j in range(k):
            row = -1
            for e in range(int(ptr[j]), int(ptr[j + 1])):
                row += int(z[e]) + 1
                if row >= rows:
                    raise ValueError(f"PE {p}, column {j}: entry {e} lands on local row {row}, "
                                     f"past its {rows} rows")
                w[row * n + p, j] = weights[e]
    return w


@dataclass(frozen=True)
class IndexChoice:
    """What :func:`choose_index_bits` found: the best width and what it costs."""

    index_bits: int
    storage_bits: int
    bits_per_nonzero: float
    entry_bits_per_nonzero: float
    padding: int
    #: ``{index_bits: storage_bits}`` for every candidate tried.
    candidates: dict


def choose_index_bits(weight, pe, *, codebook=None, code_bits=None, value_bits=None,
                      candidates=None):
    """The relative index width that minimises the stored bits, padding included.

    Tries every width of ``candidates`` (default ``1 .. MAX_INDEX_BITS``, but no wider than
    needed to skip every local row, since wider ones only cost bits); ties go to the narrower.
    Stored bits are those of :attr:`SparseMatrix.storage_bits` (entries and pointers).

    Returns
    -------
    IndexChoice
    """
    w = _int_matrix(weight)
    n = _positive_int("pe", pe)
    if candidates is None:
        rows = -(-w.shape[0] // n)
        widest = max(min(MAX_INDEX_BITS, max(rows - 1, 1).bit_length()), 1)
        candidates = range(1, widest + 1)
    candidates = [_positive_int("index_bits", b) for b in candidates]
    if not candidates:
        raise ValueError("candidates must not be empty")
    best, costs = None, {}
    for bits in candidates:
        sm = encode(w, n, index_bits=bits, codebook=codebook, code_bits=code_bits,
                    value_bits=value_bits)
        costs[bits] = sm.storage_bits
        if best is None or sm.storage_bits < best.storage_bits or (
                sm.storage_bits == best.storage_bits and bits < best.index_bits):
            best = sm
    return IndexChoice(index_bits=best.index_bits, storage_bits=best.storage_bits,
                       bits_per_nonzero=best.bits_per_nonzero,
                       entry_bits_per_nonzero=best.entry_bits_per_nonzero,
                       padding=best.padding, candidates=costs)
