"""sim/packing.py: vectors of element bit patterns <-> AXI4-Stream beats."""

import numpy as np
import pytest

from nnaccel.sim.packing import beats_per_vector, pack, unpack


def random_bits(rng, batch, k, w):
    return np.array([[int(v) for v in rng.integers(0, 1 << w, size=k, dtype=np.uint64)]
                     for _ in range(batch)], dtype=np.uint64).reshape(batch, k)


def test_layout_of_one_vector():
    # K=5 elements of 4 bits in beats of 2: [e0|e1], [e2|e3], [e4|pad].
    bits = np.array([[0x1, 0x2, 0x3, 0x4, 0x5]], dtype=np.uint64)
    assert pack(bits, 2, 4) == [0x21, 0x43, 0x05]
    assert unpack([0x21, 0x43, 0x05], 1, 5, 2, 4).tolist() == bits.tolist()


def test_vectors_are_concatenated_and_padding_ignored():
    bits = np.array([[1, 2, 3], [4, 5, 6]])
    beats = pack(bits, 2, 3)
    assert beats == [1 | 2 << 3, 3, 4 | 5 << 3, 6]
    dirty = [b | (0b111 << 3) if i % 2 else b for i, b in enumerate(beats)]
    out = unpack(dirty, 2, 3, 2, 3)
    assert out.dtype == np.uint64 and out.shape == (2, 3)
    assert out.tolist() == bits.tolist()


@pytest.mark.parametrize("seed", range(12))
def test_round_trip_random_widths(seed):
    rng = np.random.default_rng(seed)
    w = int(rng.integers(1, 65))
    n = int(rng.integers(1, 20))
    k = int(rng.integers(1, 50))
    batch = int(rng.integers(1, 6))
    bits = random_bits(rng, batch, k, w)
    beats = pack(bits, n, w)
    assert len(beats) == batch * beats_per_vector(k, n)
    assert all(0 <= b < 1 << (n * w) for b in beats)
    assert np.array_equal(unpack(beats, batch, k, n, w), bits)


def test_wide_beats_beyond_64_bits():
    bits = np.array([[2**64 - 1, 0, 2**63, 1]], dtype=np.uint64)
    beats = pack(bits, 3, 64)
    assert beats == [(2**64 - 1) | (2**63) << 128, 1]
    assert beats[0].bit_length() == 192
    assert unpack(beats, 1, 4, 3, 64).tolist() == bits.tolist()


def test_errors():
    with pytest.raises(ValueError, match="does not fit in 3 unsigned bits"):
        pack(np.array([[8]]), 1, 3)
    with pytest.raises(ValueError, match="does not fit"):
        pack(np.array([[-1]]), 1, 3)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        pack(np.array([1, 2]), 1, 3)
    with pytest.raises(ValueError, match="elems_per_beat must be a positive integer"):
        pack(np.array([[1]]), 0, 3)
    with pytest.raises(ValueError, match="at most 64"):
        unpack([1], 1, 1, 1, 65)
    with pytest.raises(ValueError, match="take 4 beats of 2, not 3"):
        unpack([0, 0, 0], 2, 3, 2, 3)


def test_empty_batch():
    assert pack(np.zeros((0, 4), dtype=np.uint64), 2, 8) == []
    assert unpack([], 0, 4, 2, 8).shape == (0, 4)
