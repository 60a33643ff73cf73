"""Random valid SPEC models, inputs and folds for randomized end-to-end tests.

Everything is drawn from a ``numpy.random.Generator``, so a seed names a case. A model has 1 to
3 ``linear`` layers whose sizes include primes and 1; input dtypes ``intN``, ``uintN`` and
``bipolar``; weight dtypes ``int2..int8``, ``uintN`` and ``bipolar``, sometimes as a codebook,
sometimes pruned; biases sometimes; output stages ``identity``, ``requant`` (with or without
ReLU) and ``threshold``, each with the dtype the next layer reads. Requant scales and threshold
levels are taken from the accumulators of random inputs, so the outputs vary instead of all
clamping to one value. Every model goes through the SPEC reader (write, then read back), so it
is valid by the reader's rules, not by this file's.
"""

import tempfile
from pathlib import Path

import numpy as np

from nnaccel.gen.folding import Fold
from nnaccel.gen.ir import DType, DTypeKind, Layer, Model, Op, OutputKind, OutputStage, readonly
from nnaccel.gen.model_io import read_model, write_model
from nnaccel.hw.common import reference as ref

__all__ = ["SIZES", "random_model", "random_inputs", "random_folds", "validated"]

#: Layer widths: 1, primes, powers of two and composites.
SIZES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17)
INPUT_DTYPES = ("int2", "int3", "int4", "int8", "int16", "uint1", "uint2", "uint4", "uint8",
                "uint12", "bipolar")
WEIGHT_DTYPES = ("int2", "int3", "int4", "int5", "int8", "uint1", "uint2", "uint4", "bipolar")
#: dtypes a hidden layer may hand to the next one (besides an identity's exact width)
HIDDEN_DTYPES = ("bipolar", "uint1", "uint2", "uint3", "uint4", "int2", "int3", "int4", "int8")
INT32 = DType.parse("int32")
MULT_MAX = (1 << 31) - 1


def _dtype(rng, names):
    return DType.parse(str(rng.choice(names)))


def random_inputs(rng, dtype, shape, *, extremes=True):
    """Values of ``dtype`` of the given shape (batch first); with ``extremes``, the first two
    rows are the dtype's limits, the third alternates them (worst cases of the accumulator)."""
    if dtype.kind is DTypeKind.BIPOLAR:
        x = rng.choice([-1, 1], size=shape)
    else:
        x = rng.integers(dtype.lo, dtype.hi, size=shape, endpoint=True)
    if extremes and shape[0] >= 3:
        x[0], x[1] = dtype.lo, dtype.hi
        x[2] = np.where(np.arange(x[2].size).reshape(x[2].shape) % 2, dtype.lo, dtype.hi)
    return x.astype(np.int64)


def _size(rng):
    # 1 (K = 1 or M = 1) about one time in six
    return 1 if rng.random() < 0.1 else int(rng.choice(SIZES))


def _weights(rng, wdt, m, k):
    """(weight, codebook, indices) of a random layer."""
    if rng.random() < 0.25:
        values = np.arange(wdt.lo, wdt.hi + 1)
        if wdt.kind is DTypeKind.BIPOLAR:
            values = np.array([-1, 1])
        size = int(rng.integers(1, min(len(values), 16), endpoint=True))
        codebook = rng.choice(values, size=size, replace=False).astype(np.int64)
        indices = rng.integers(0, size, size=(m, k))
        return codebook[indices], codebook, indices
    w = random_inputs(rng, wdt, (m, k), extremes=False)
    if wdt.kind is not DTypeKind.BIPOLAR and rng.random() < 0.25:
        w = w * (rng.random((m, k)) < rng.uniform(0.1, 0.6))  # pruned
    return w, None, None


def _bias(rng, m):
    if rng.random() < 0.5:
        return None
    scale = int(rng.choice([4, 64, 1 << 12, 1 << 20, 1 << 31]))
    return rng.integers(-scale, min(scale, (1 << 31) - 1), size=m, endpoint=True)


def _identity_dtype(rng, lo, hi, last):
    """The dtype of an identity stage over ``lo..hi``: int32 (last layer), or an exact width."""
    bits, is_signed = ref.bits_for_range(lo, hi)
    if last and rng.random() < 0.6:
        return INT32 if bits <= 32 and (is_signed or bits <= 31) else None
    if is_signed:
        return DType(DTypeKind.INT, max(bits, 2)) if bits <= 32 else None
    if rng.random() < 0.5 and bits <= 32:
        return DType(DTypeKind.UINT, bits)
    return DType(DTypeKind.INT, bits + 1) if bits < 32 else None


def _requant(rng, dtype, accs, m):
    relu = bool(rng.random() < 0.4)
    lo, hi = dtype.lo, dtype.hi
    span = max(float(np.std(accs)) * 4, float(np.ptp(accs)), 1.0)
    shift = rng.integers(0, 24, size=m)
    mult = np.array([min(MULT_MAX, max(0, int((hi - lo) * 2.0**s / span
                                               * rng.uniform(0.5, 2.0))))
                     for s in shift])
    if rng.random() < 0.3:  # one scalar pair for every channel
        mult[:], shift[:] = mult[0], shift[0]
    if rng.random() < 0.1:
        mult[0], shift[0] = 0, 0  # a dead channel
    if rng.random() < 0.1:
        mult[-1], shift[-1] = MULT_MAX, 31  # the widest product
    return OutputStage(OutputKind.REQUANT, dtype, mult=readonly(mult), shift=readonly(shift),
                       relu=relu)


def _threshold(rng, dtype, accs, acc_lo, acc_hi, m):
    if dtype.kind is DTypeKind.BIPOLAR:
        levels = 1
    else:
        levels = int(rng.integers(1, dtype.hi, endpoint=True))
    rows = 1 if rng.random() < 0.3 else m
    t = np.empty((rows, levels), dtype=np.int64)
    for r in range(rows):
        # levels among the observed accumulators, a few at or past the worst cases
        pool = np.concatenate([accs[:, r % m], [acc_lo[r % m] - 1, acc_hi[r % m] + 1,
                                                acc_lo[r % m], acc_hi[r % m]]])
        if rng.random() < 0.1:  # levels far past any accumulator
            pool = np.concatenate([pool, [-(1 << 40), 1 << 40]])
        t[r] = np.sort(rng.choice(pool, size=levels) + rng.integers(-1, 1, size=levels,
                                                                    endpoint=True))
    return OutputStage(OutputKind.THRESHOLD, dtype,
                       thresholds=readonly(np.broadcast_to(t, (m, levels))))


def _output(rng, in_dtype, weight, bias, next_dtype, last):
    """An output stage producing ``next_dtype`` (any dtype when ``last``)."""
    m = weight.shape[0]
    acc_lo, acc_hi = ref.acc_bounds(weight, in_dtype.lo, in_dtype.hi, bias)
    accs = np.asarray(ref.linear_acc(weight, random_inputs(rng, in_dtype, (64, weight.shape[1])),
                                     bias, in_dtype.lo, in_dtype.hi), dtype=np.int64)
    kinds = ["requant", "threshold", "identity"]
    if next_dtype is not None:
        if next_dtype.kind is DTypeKind.BIPOLAR:
            kinds = ["threshold"]
        elif next_dtype.kind is DTypeKind.INT:
            kinds = ["requant"]
        elif next_dtype.bits > 4:
            kinds = ["requant"]
    kind = str(rng.choice(kinds))
    if kind == "identity":
        dtype = _identity_dtype(rng, min(acc_lo), max(acc_hi), last)
        if dtype is not None:
            return OutputStage(OutputKind.IDENTITY, dtype)
        kind = "requant"
    if kind == "requant":
        dtype = next_dtype
        if dtype is None or dtype.kind is DTypeKind.BIPOLAR:
            dtype = _dtype(rng, ("int2", "int4", "int8", "int16", "uint1", "uint3", "uint8"))
        return _requant(rng, dtype, accs, m)
    dtype = next_dtype or _dtype(rng, ("bipolar", "uint1", "uint2", "uint3"))
    return _threshold(rng, dtype, accs, acc_lo, acc_hi, m)


def random_model(rng, *, name="rnd", layers=None, sizes=None):
    """A random valid model. ``layers`` (1..3 when None) fixes the depth; ``sizes``, a list of
    ``depth + 1`` widths (input first), fixes the shapes."""
    depth = int(rng.integers(1, 3, endpoint=True)) if layers is None else layers
    sizes = list(sizes) if sizes is not None else [_size(rng) for _ in range(depth + 1)]
    if len(sizes) != depth + 1:
        raise ValueError(f"{depth} layers need {depth + 1} sizes, not {sizes}")
    in_dtype = input_dtype = _dtype(rng, INPUT_DTYPES)
    out = []
    for n in range(depth):
        k, m = sizes[n], sizes[n + 1]
        last = n == depth - 1
        wdt = _dtype(rng, WEIGHT_DTYPES)
        weight, codebook, indices = _weights(rng, wdt, m, k)
        bias = _bias(rng, m)
        next_dtype = None if last else _dtype(rng, HIDDEN_DTYPES)
        output = _output(rng, in_dtype, weight, bias, next_dtype, last)
        out.append(Layer(name=f"fc{n}", op=Op.LINEAR, in_dtype=in_dtype, weight=readonly(weight),
                         weight_dtype=wdt, output=output,
                         bias=None if bias is None else readonly(bias),
                         codebook=None if codebook is None else readonly(codebook),
                         indices=None if indices is None else readonly(indices)))
        in_dtype = output.dtype
    model = Model(name=name, input_shape=(sizes[0],), input_dtype=input_dtype, layers=tuple(out))
    return validated(model)


def validated(model):
    """``model`` written as a SPEC model directory and read back (the reader validates)."""
    with tempfile.TemporaryDirectory(prefix="nnaccel-rnd-") as tmp:
        path = write_model(model, Path(tmp) / model.name)
        return read_model(path)


def random_folds(rng, model, *, layers=None):
    """Random legal folds ``((layer name, Fold), ...)``: any ``pe <= M``, ``simd <= K`` (often
    not dividing them), each ``simd`` dividing or divided by the previous layer's ``pe``.
    ``layers`` (all when None) picks which layers get a fold."""
    chosen = []
    prev_pe = None
    for n, layer in enumerate(model.layers):
        m, k = layer.weight.shape
        pe = int(rng.integers(1, m, endpoint=True))
        simds = [s for s in range(1, k + 1)
                 if prev_pe is None or s % prev_pe == 0 or prev_pe % s == 0]
        simd = int(rng.choice(simds))
        if layers is None or n in layers:
            chosen.append((layer.name, Fold(pe, simd)))
        prev_pe = pe
    return tuple(chosen)
