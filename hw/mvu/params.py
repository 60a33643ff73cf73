"""Parameters of the FINN-like matrix-vector unit, shared by hardware, reference and generator."""

import enum
from dataclasses import dataclass

from ..common.arith import cdiv
from ..common.dtype import DType, DTypeKind
from ..common.memory import Storage
from ..common.stream import check_positive

__all__ = ["LaneKind", "MVUParams"]


class LaneKind(enum.Enum):
    """What one SIMD lane computes."""

    #: bipolar weights and bipolar inputs: XNOR, then popcount (acc = 2*popcount - K + bias)
    XNOR = "xnor"
    #: bipolar weights, integer inputs: add or subtract the input
    ADDSUB_W = "addsub_w"
    #: integer weights, bipolar inputs: add or subtract the weight
    ADDSUB_X = "addsub_x"
    #: integer weights and inputs: a multiplier (DSP block where it fits)
    MUL = "mul"


@dataclass(frozen=True, kw_only=True)
class MVUParams:
    """Shape and folding of one matrix-vector unit.

    An (M, K) layer is folded into ``neuron_folds = ceil(M/pe)`` groups of ``pe`` output rows
    computed in parallel, each in ``synapse_folds = ceil(K/simd)`` beats of ``simd`` inputs; one
    beat per cycle, so a vector takes ``neuron_folds * synapse_folds`` cycles in steady state.
    Folds that do not divide the layer are padded; the padding contributes nothing.
    """

    in_features: int
    out_features: int
    pe: int
    simd: int
    in_dtype: DType
    weight_dtype: DType
    weight_storage: Storage = Storage.AUTO

    def __post_init__(self):
        check_positive("in_features", self.in_features)
        check_positive("out_features", self.out_features)
        check_positive("pe", self.pe)
        check_positive("simd", self.simd)
        if self.pe > self.out_features:
            raise ValueError(f"pe ({self.pe}) must not exceed out_features ({self.out_features})")
        if self.simd > self.in_features:
            raise ValueError(f"simd ({self.simd}) must not exceed in_features "
                             f"({self.in_features})")
        for name in ("in_dtype", "weight_dtype"):
            if not isinstance(getattr(self, name), DType):
                raise TypeError(f"{name} must be a DType, not {getattr(self, name)!r}")
        object.__setattr__(self, "weight_storage", Storage(self.weight_storage))

    @property
    def neuron_folds(self):
        return cdiv(self.out_features, self.pe)

    @property
    def synapse_folds(self):
        return cdiv(self.in_features, self.simd)

    @property
    def lanes(self):
        """Multipliers (or XNOR / add-subtract lanes) instantiated."""
        return self.pe * self.simd

    @property
    def lane_kind(self):
        wb = self.weight_dtype.kind is DTypeKind.BIPOLAR
        xb = self.in_dtype.kind is DTypeKind.BIPOLAR
        if wb and xb:
            return LaneKind.XNOR
        if wb:
            return LaneKind.ADDSUB_W
        if xb:
            return LaneKind.ADDSUB_X
        return LaneKind.MUL

    @property
    def expected_cycles(self):
        """Steady-state cycles per vector (FINN's folding formula)."""
        return self.neuron_folds * self.synapse_folds
