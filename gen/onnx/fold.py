"""Exact folding of what follows an accumulator into SPEC 2.2 output stages.

After a linear layer the float graph applies, per output channel ``m``, a chain of monotone
element-wise steps to the real accumulator (scales, biases, batch-norm, ReLU) and then a
quantizer. The chain is evaluated here in exact rational arithmetic (``fractions.Fraction``;
a batch-norm square root that is not rational is taken to 80 significant digits, far below any
float32 difference), so the thresholds found are exact: for every integer accumulator in the
reachable range the threshold stage yields the quantizer's level of the real-number graph.

The one approximation in nnaccel's importer is :func:`requant_stage`, used for onnxruntime's
int8 ``QuantizeLinear``: see its docstring for the bound.
"""

import decimal
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["Affine", "Relu", "Clip", "Chain", "Quantizer", "thresholds", "requant_stage",
           "fraction", "sqrt_fraction", "round_mode"]


def fraction(x):
    """The exact rational value of a float (or integer)."""
    if isinstance(x, Fraction):
        return x
    if isinstance(x, (int, np.integer)):
        return Fraction(int(x))
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"{x} is not finite")
    return Fraction(x)


def sqrt_fraction(x):
    """Square root of a non-negative Fraction: exact when rational, else to 80 digits."""
    p, q = x.numerator, x.denominator
    rp, rq = math.isqrt(p), math.isqrt(q)
    if rp * rp == p and rq * rq == q:
        return Fraction(rp, rq)
    with decimal.localcontext() as ctx:
        ctx.prec = 80
        return Fraction(decimal.Decimal(p).sqrt(ctx) / decimal.Decimal(q).sqrt(ctx))


def _round_half_even(v):
    return round(v)  # Fraction.__round__ rounds half to even, like numpy and ONNX


def _round_half_up(v):
    return math.floor(v + Fraction(1, 2))


def _round_half_down(v):
    return math.ceil(v - Fraction(1, 2))


def _sym(f):
    return lambda v: f(v) if v >= 0 else -f(-v)


_ROUNDING = {
    "ROUND": _round_half_even, "HALF_EVEN": _round_half_even,
    "FLOOR": math.floor, "CEIL": math.ceil,
    "ROUND_TO_ZERO": _sym(math.floor), "UP": _sym(math.ceil),
    "HALF_UP": _sym(_round_half_up), "HALF_DOWN": _sym(_round_half_down),
}


def round_mode(name):
    """The exact rounding function of a QONNX ``rounding_mode`` (None if unknown)."""
    return _ROUNDING.get(str(name).upper())


@dataclass(frozen=True)
class Affine:
    """``x -> a[m] * x + c[m]`` (tuples of Fractions, one per channel)."""

    a: tuple
    c: tuple

    def __call__(self, m, x):
        return self.a[m] * x + self.c[m]


@dataclass(frozen=True)
class Relu:
    def __call__(self, m, x):
        return x if x > 0 else Fraction(0)


@dataclass(frozen=True)
class Clip:
    """``x -> min(max(x, lo), hi)`` (ONNX ``Clip``, ReLU6); None is no bound."""

    lo: Fraction | None
    hi: Fraction | None

    def __call__(self, m, x):
        if self.lo is not None and x < self.lo:
            return self.lo
        if self.hi is not None and x > self.hi:
            return self.hi
        return x


class Chain:
    """Monotone per-channel steps applied to the integer accumulator, in order."""

    def __init__(self, channels, steps=()):
        self.channels = channels
        self.steps = list(steps)

    def then_affine(self, a, c):
        a = [fraction(v) for v in a]
        c = [fraction(v) for v in c]
        if self.steps and isinstance(self.steps[-1], Affine):
            last = self.steps.pop()
            a, c = ([x * y for x, y in zip(a, last.a, strict=True)],
                    [x * y + z for x, y, z in zip(a, last.c, c, strict=True)])
        self.steps.append(Affine(tuple(a), tuple(c)))

    def then_relu(self):
        self.steps.append(Relu())

    def __call__(self, m, acc):
        x = Fraction(acc)
        for step in self.steps:
            x = step(m, x)
        return x

    def direction(self, m):
        """+1 non-decreasing, -1 non-increasing, 0 constant in the accumulator."""
        sign = 1
        for step in self.steps:
            if isinstance(step, Affine):
                sign *= (step.a[m] > 0) - (step.a[m] < 0)
        return sign

    def affine_only(self):
        """``(a, c)`` when the chain is one affine map (or empty), else None."""
        if not self.steps:
            return [Fraction(1)] * self.channels, [Fraction(0)] * self.channels
        if len(self.steps) == 1 and isinstance(self.steps[0], Affine):
            return list(self.steps[0].a), list(self.steps[0].c)
        return None


@dataclass(frozen=True)
class Quantizer:
    """A non-decreasing map from a real value to an integer level ``0..levels``.

    ``level(m, z)`` is exact; ``levels`` is L of SPEC 2.2.
    """

    levels: int
    level: object  # callable (m, Fraction) -> int in 0..levels
    key: object = None  # callable m -> hashable: channels with one key quantize alike


def thresholds(chain, quantizer, acc_lo, acc_hi, flip, keys=None):
    """Integer thresholds ``T (M, L)`` such that ``#{l : acc >= T[m, l]}`` equals
    ``quantizer.level(m, chain(m, s * acc))`` for every integer accumulator in
    ``acc_lo[m]..acc_hi[m]``, where ``s = -1`` for rows in ``flip`` (whose weights the caller
    negated) and ``+1`` otherwise. ``chain(m, s * .)`` must be non-decreasing.

    ``keys`` (one hashable per channel, describing its chain) and ``quantizer.key`` let rows
    whose chain, quantizer, range and sign are all equal be computed once."""
    M, L = chain.channels, quantizer.levels
    T = np.zeros((M, L), dtype=object)
    done = {}
    for m in range(M):
        sign = -1 if flip[m] else 1
        lo, hi = int(acc_lo[m]), int(acc_hi[m])
        key = None
        if keys is not None and quantizer.key is not None:
            key = (keys[m], quantizer.key(m), lo, hi, sign)
            if key in done:
                T[m] = T[done[key]]
                continue
            done[key] = m

        def level(acc, m=m, sign=sign):
            return quantizer.level(m, chain(m, sign * acc))

        base = level(lo)
        for k in range(1, L + 1):
            if k <= base:
                T[m, k - 1] = lo  # reached by every accumulator
                continue
            a, b = (lo if k == 1 else T[m, k - 2]), hi + 1  # smallest acc with level >= k
            while a < b:
                mid = (a + b) // 2
                if level(mid) >= k:
                    b = mid
                else:
                    a = mid + 1
            T[m, k - 1] = a
    return T


def _mult_shift(M):
    """Fixed point ``mult / 2**shift`` nearest to the positive Fraction M, with the largest
    shift (at most 31) that keeps ``mult <= 2**31 - 1``."""
    limit = (1 << 31) - 1
    for shift in range(31, -1, -1):
        mult = _round_half_up(M * (1 << shift))
        if mult <= limit:
            return mult, shift
    return None, None


@dataclass(frozen=True)
class Requant:
    mult: np.ndarray
    shift: np.ndarray
    bias: list  # integer to add to the accumulator, per channel
    eps: float  # bound on |computed - exact| before rounding, in output LSBs


def requant_stage(a, c, scale, zero_point, acc_absmax):
    """onnxruntime's ``q = clamp(round_half_even((a*acc + c) / scale) + zero_point)`` as SPEC
    requant ``clamp(round_half_up((acc + B) * mult / 2**shift))``.

    With ``M = a / scale``: ``B = round(c / a + zero_point / M)`` and ``mult / 2**shift ~ M``.
    The value before rounding then differs from the exact one by at most
    ``eps = (acc_absmax + |B|) * |mult / 2**shift - M| + |B - c/a - zero_point/M| * M``
    (returned per layer as the maximum over channels). When ``eps < 1/2`` the output equals
    the exact rounding except where the exact value lies within ``eps`` of a rounding boundary
    (or exactly on a tie, which onnxruntime rounds to even and SPEC rounds up), and there it
    differs by exactly one LSB. Returns None for a channel whose ``M`` is not positive or does
    not fit (caller reports it).
    """
    mults, shifts, biases, eps = [], [], [], 0.0
    for m in range(len(a)):
        if a[m] <= 0:
            return m, "the combined scale is not positive"
        M = a[m] / scale
        mult, shift = _mult_shift(M)
        if mult is None:
            return m, f"the combined scale {float(M):.3g} does not fit a 31-bit multiplier"
        if mult == 0:
            return m, (f"the combined scale {float(M):.3g} is below 2**-32 (every output "
                       "would round to the zero point)")
        ideal = c[m] / a[m] + zero_point / M
        B = _round_half_up(ideal)
        err = ((acc_absmax[m] + abs(B)) * abs(Fraction(mult, 1 << shift) - M)
               + abs(B - ideal) * M)
        eps = max(eps, float(err))
        mults.append(mult)
        shifts.append(shift)
        biases.append(B)
    return Requant(np.array(mults, dtype=np.int64), np.array(shifts, dtype=np.int64),
                   biases, eps)
