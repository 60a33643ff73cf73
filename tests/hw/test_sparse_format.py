"""hw/sparse/format.py: EIE's interleaved CSC format, against the paper's golden vectors."""

import numpy as np
import pytest

from nnaccel.hw.sparse.format import (
    SparseMatrix,
    choose_index_bits,
    decode,
    encode,
    stored_codebook,
)

# EIE (Han et al., ISCA 2016), figure 3: PE0's virtual weights of a 16x8 matrix on 4 PEs, in
# storage order, as (row, column).
FIG3_PE0 = [(0, 0), (8, 0), (12, 0), (4, 1), (0, 2), (12, 2), (0, 4), (4, 4), (0, 5), (12, 5),
            (0, 6), (8, 7), (12, 7)]
FIG3_Z = [0, 1, 0, 1, 0, 2, 0, 0, 0, 2, 0, 2, 0]
FIG3_POINTERS = [0, 3, 4, 6, 6, 8, 10, 11, 13]


def fig3_matrix(seed=0):
    """A 16x8 matrix whose PE0 non-zeros are exactly those of figure 3 (weights 1..13 in
    storage order); the other PEs' rows are random and sparse."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-7, 8, size=(16, 8)) * (rng.random((16, 8)) < 0.4)
    w[0::4] = 0
    for n, (row, col) in enumerate(FIG3_PE0):
        w[row, col] = n + 1
    return w


def test_eie_figure3_pe0():
    w = fig3_matrix()
    sm = encode(w, 4, index_bits=4)
    assert sm.values[0].tolist() == list(range(1, 14))
    assert sm.z[0].tolist() == FIG3_Z
    assert sm.pointers[0].tolist() == FIG3_POINTERS
    assert sm.rows(0) == 4 and sm.padding == 0
    assert decode(sm).tolist() == w.tolist()


def test_eie_figure3_with_a_codebook():
    w = fig3_matrix()
    w[w != 0] = np.where(w[w != 0] > 0, 3, -2)  # two shared values
    sm = encode(w, 4, index_bits=4, codebook=[-2, 0, 3])
    assert sm.codebook == (0, -2, 3) and sm.value_bits == 2
    assert sm.z[0].tolist() == FIG3_Z
    assert sm.pointers[0].tolist() == FIG3_POINTERS
    assert sm.values[0].tolist() == [2] * 13
    assert decode(sm).tolist() == w.tolist()


def test_eie_padding_example():
    # Section III.C: [0,0,1,2, eighteen zeros, 3] with a 4-bit index: v=[1,2,0,3], z=[2,0,15,2].
    column = [0, 0, 1, 2] + [0] * 18 + [3]
    sm = encode(np.array(column).reshape(-1, 1), 1, index_bits=4)
    assert sm.values[0].tolist() == [1, 2, 0, 3]
    assert sm.z[0].tolist() == [2, 0, 15, 2]
    assert sm.pointers[0].tolist() == [0, 4]
    assert sm.padding == 1 and sm.nonzeros == 3
    assert decode(sm).tolist() == np.array(column).reshape(-1, 1).tolist()


@pytest.mark.parametrize("run,z", [(15, [15, 0]), (16, [15, 0, 0]), (17, [15, 1, 0]),
                                   (31, [15, 15, 0]), (32, [15, 15, 0, 0])])
def test_runs_around_the_index_limit(run, z):
    # A run of `run` zeros, a non-zero, then one more non-zero right after it.
    column = np.array([0] * run + [5, 6])
    sm = encode(column.reshape(-1, 1), 1, index_bits=4)
    assert sm.z[0].tolist() == z
    assert sm.values[0].tolist() == [0] * (len(z) - 2) + [5, 6]
    assert decode(sm)[:, 0].tolist() == column.tolist()


def random_sparse(rng, m, k, density, lo=-8, hi=8):
    values = rng.integers(lo, hi, size=(m, k))
    values[values == 0] = 1
    return values * (rng.random((m, k)) < density)


@pytest.mark.parametrize("seed", range(6))
def test_round_trips(seed):
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(1, 70)), int(rng.integers(1, 30))
    n = int(rng.integers(1, 9))
    w = random_sparse(rng, m, k, float(rng.choice([0.02, 0.1, 0.5, 0.95])))
    if k > 3:
        w[:, 1] = 0                      # an empty column
        w[:, 2] = rng.integers(1, 5, m)  # a full column
    if m > 3:
        w[m // 2] = 0                    # an empty row
    # runs of exactly 15, 16 and 17 zeros in one PE's column (PE 0, index_bits 4)
    if m >= 18 * n + 1 and k > 4:
        for col, run in ((3, 15), (4, 16), (0, 17)):
            w[0::n, col] = 0
            w[run * n, col] = 7
    for bits in (1, 2, 4, 7):
        sm = encode(w, n, index_bits=bits)
        assert decode(sm).tolist() == w.tolist()
        assert int(sm.entries.sum()) == sm.nonzeros + sm.padding
        assert sm.nonzeros == np.count_nonzero(w)
        assert sm.column_counts().shape == (n, k)
        assert np.all(np.concatenate(sm.z) <= sm.max_run)


def test_exact_runs_of_15_16_17_on_several_pes():
    n, m = 3, 3 * 20
    w = np.zeros((m, 3), dtype=np.int64)
    for col, run in enumerate((15, 16, 17)):
        w[run * n + 1, col] = -3  # PE 1, local row `run`
    sm = encode(w, n, index_bits=4)
    assert sm.z[1].tolist() == [15, 15, 0, 15, 1]
    assert sm.values[1].tolist() == [-3, 0, -3, 0, -3]
    assert sm.pointers[1].tolist() == [0, 1, 3, 5]
    assert sm.entries.tolist() == [0, 5, 0]
    assert decode(sm).tolist() == w.tolist()


def test_adversarial_shapes():
    rng = np.random.default_rng(7)
    cases = [np.zeros((5, 4), dtype=np.int64),           # nothing at all
             np.ones((1, 1), dtype=np.int64),            # one weight
             random_sparse(rng, 3, 6, 0.5),              # fewer rows than PEs
             np.eye(40, dtype=np.int64)[:, :9] * 3]      # long runs everywhere
    for w in cases:
        for n in (1, 4, 8):
            sm = encode(w, n, index_bits=2)
            assert decode(sm).tolist() == w.tolist()
    one_pe_busy = np.zeros((16, 6), dtype=np.int64)
    one_pe_busy[::4] = 1  # every non-zero in PE 0
    sm = encode(one_pe_busy, 4, index_bits=4)
    assert sm.entries.tolist() == [24, 0, 0, 0]
    assert decode(sm).tolist() == one_pe_busy.tolist()


def test_codebook_round_trip_and_widths():
    rng = np.random.default_rng(3)
    book = np.array([-40, -3, 0, 5, 17, 99])
    idx = rng.integers(0, len(book), size=(30, 20))
    w = book[idx] * (rng.random((30, 20)) < 0.3)
    sm = encode(w, 4, index_bits=3, codebook=book)
    assert sm.codebook == stored_codebook(book) == (0, -40, -3, 5, 17, 99)
    assert sm.value_bits == 3 and not sm.value_signed
    assert decode(sm).tolist() == w.tolist()
    assert encode(w, 4, codebook=book, code_bits=8).value_bits == 8
    with pytest.raises(ValueError, match="code_bits must be at least 3"):
        encode(w, 4, codebook=book, code_bits=2)
    with pytest.raises(ValueError, match="weight value 4 is not in the codebook"):
        encode(np.array([[4, 5]]), 1, codebook=book)


def test_value_bits_without_codebook():
    w = np.array([[0, -8], [7, 0]])
    sm = encode(w, 2)
    assert sm.value_bits == 4 and sm.value_signed
    assert encode(np.array([[0, 15]]), 1).value_bits == 4
    assert not encode(np.array([[0, 15]]), 1).value_signed
    with pytest.raises(ValueError, match="value_bits must be at least 4"):
        encode(w, 2, value_bits=3)


def test_bad_arguments():
    with pytest.raises(ValueError, match="pe must be a positive integer"):
        encode(np.ones((2, 2)), 0)
    with pytest.raises(TypeError, match="index_bits must be a positive integer"):
        encode(np.ones((2, 2), dtype=int), 1, index_bits=2.5)
    with pytest.raises(ValueError, match="2-D"):
        encode(np.ones(3, dtype=int), 1)
    with pytest.raises(TypeError, match="SparseMatrix"):
        decode(np.ones((2, 2)))


def test_decode_rejects_inconsistent_encodings():
    sm = encode(np.array([[1], [0], [2]]), 1, index_bits=2)
    bad = SparseMatrix(**{**sm.__dict__, "z": (np.array([0, 2]),)})
    with pytest.raises(ValueError, match="past its 3 rows"):
        decode(bad)
    bad = SparseMatrix(**{**sm.__dict__, "pointers": (np.array([0, 1]),)})
    with pytest.raises(ValueError, match="pointers"):
        decode(bad)


def test_choose_index_bits_minimises_storage():
    rng = np.random.default_rng(11)
    w = random_sparse(rng, 256, 64, 0.1)
    choice = choose_index_bits(w, 4)
    assert set(choice.candidates) == set(range(1, 7))  # 64 local rows: 6 bits skip them all
    assert choice.storage_bits == min(choice.candidates.values())
    sm = encode(w, 4, index_bits=choice.index_bits)
    assert sm.storage_bits == choice.storage_bits
    assert choice.bits_per_nonzero == pytest.approx(sm.storage_bits / np.count_nonzero(w))
    assert choice.entry_bits_per_nonzero == pytest.approx(
        sm.entries.sum() * (sm.value_bits + sm.index_bits) / np.count_nonzero(w))
    # ~10 % density: runs average 9 zeros, so 1-bit indices pad a lot and 6 bits waste bits
    assert 3 <= choice.index_bits <= 5
    # a dense matrix never pads: the narrowest index wins
    assert choose_index_bits(np.ones((32, 8), dtype=int), 4).index_bits == 1
