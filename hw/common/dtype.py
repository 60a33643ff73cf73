"""SPEC section 1 data types, shared by the hardware, the references and the compiler."""

import enum
import re
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import signed, unsigned

from . import reference as ref

__all__ = ["DType", "DTypeKind"]


class DTypeKind(enum.Enum):
    INT = "int"
    UINT = "uint"
    BIPOLAR = "bipolar"


@dataclass(frozen=True)
class DType:
    """A SPEC section 1 data type: ``intN``, ``uintN`` or ``bipolar``."""

    kind: DTypeKind
    bits: int

    _PATTERN = re.compile(r"(int|uint)([0-9]+)\Z")

    @classmethod
    def parse(cls, text):
        """Parse ``"int8"``, ``"uint4"``, ``"bipolar"``; raise ValueError with the reason."""
        if not isinstance(text, str):
            raise ValueError(f"a dtype is a string such as 'int8', not {text!r}")
        if text == "bipolar":
            return cls(DTypeKind.BIPOLAR, 1)
        m = cls._PATTERN.match(text)
        if not m:
            raise ValueError(f"unknown dtype {text!r} (intN, uintN or bipolar)")
        kind, bits = DTypeKind(m.group(1)), int(m.group(2))
        lo = 2 if kind is DTypeKind.INT else 1
        if not lo <= bits <= 32:
            raise ValueError(f"{text!r}: {kind.value}N needs N in {lo}..32")
        return cls(kind, bits)

    def __str__(self):
        return "bipolar" if self.kind is DTypeKind.BIPOLAR else f"{self.kind.value}{self.bits}"

    @property
    def signed(self):
        """True when the hardware encoding is two's complement."""
        return self.kind is DTypeKind.INT

    @property
    def lo(self):
        return ref.dtype_limits(self.kind.value, self.bits)[0]

    @property
    def hi(self):
        return ref.dtype_limits(self.kind.value, self.bits)[1]

    def contains(self, values):
        """True when every value of the array is a legal value of this dtype."""
        v = np.asarray(values)
        if v.size == 0:
            return True
        if self.kind is DTypeKind.BIPOLAR:
            return bool(np.all((v == 1) | (v == -1)))
        return int(v.min()) >= self.lo and int(v.max()) <= self.hi

    @property
    def shape(self):
        """Amaranth shape of one element in hardware (bipolar: one bit, 1 means +1)."""
        return signed(self.bits) if self.signed else unsigned(self.bits)

    def encode(self, values):
        """Mathematical values to hardware bit patterns (uint64)."""
        return ref.encode(values, self.kind.value, self.bits)

    def decode(self, bits):
        """Hardware bit patterns to mathematical values (int64)."""
        return ref.decode(bits, self.kind.value, self.bits)
