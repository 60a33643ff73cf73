"""Parameters of the EIE-like sparse engine, shared by the hardware, its model and the generator."""

from dataclasses import dataclass

from ..common.arith import cdiv
from ..common.dtype import DType, DTypeKind
from ..common.stream import check_positive

__all__ = ["SparseParams"]


@dataclass(frozen=True, kw_only=True)
class SparseParams:
    """Shape and sizing of one sparse engine (SPEC engine ``sparse``).

    An (M, K) layer runs on ``pe`` processing elements (PEs); row ``i`` belongs to PE
    ``i mod pe`` (see :mod:`nnaccel.hw.sparse.format`). The input vector arrives in beats of
    ``in_beat`` elements; zero activations are skipped and each non-zero one is broadcast to every
    PE, which queues up to ``queue_depth`` of them. The output leaves in ``rows_per_pe`` beats of
    ``pe`` elements (beat ``r`` carries rows ``r*pe .. r*pe + pe - 1``).

    Parameters
    ----------
    in_features, out_features : int
        K and M.
    pe : int
        Number of PEs (multipliers), at most M.
    queue_depth : int
        Activation queue depth per PE (D).
    in_beat : int
        Input elements per beat, at most K.
    in_dtype, weight_dtype : DType
        Input and weight dtypes (SPEC section 1); bipolar weights are not sparse.
    index_bits : int
        Width of the relative row index of the sparse format (1..16).
    """

    in_features: int
    out_features: int
    pe: int
    queue_depth: int
    in_beat: int
    in_dtype: DType
    weight_dtype: DType
    index_bits: int = 4

    def __post_init__(self):
        for name in ("in_features", "out_features", "pe", "queue_depth", "in_beat",
                     "index_bits"):
            check_positive(name, getattr(self, name))
        if self.pe > self.out_features:
            raise ValueError(f"pe ({self.pe}) must not exceed out_features "
                             f"({self.out_features})")
        if self.in_beat > self.in_features:
            raise ValueError(f"in_beat ({self.in_beat}) must not exceed in_features "
                             f"({self.in_features})")
        if self.index_bits > 16:
            raise ValueError(f"index_bits must be at most 16, not {self.index_bits}")
        for name in ("in_dtype", "weight_dtype"):
            if not isinstance(getattr(self, name), DType):
                raise TypeError(f"{name} must be a DType, not {getattr(self, name)!r}")
        if self.weight_dtype.kind is DTypeKind.BIPOLAR:
            raise ValueError("weight_dtype must not be bipolar: bipolar weights have no zeros")

    @property
    def rows_per_pe(self):
        """Local rows of the busiest PE, ``ceil(M / pe)``; also the output beats per vector."""
        return cdiv(self.out_features, self.pe)

    @property
    def in_beats(self):
        """Input beats per vector, ``ceil(K / in_beat)``."""
        return cdiv(self.in_features, self.in_beat)

    @property
    def out_beat(self):
        """Output elements per beat: one per PE."""
        return self.pe

    @property
    def lanes(self):
        """Multipliers instantiated: one per PE."""
        return self.pe

    @property
    def dense_cycles(self):
        """Cycles a dense engine with as many multipliers needs: ``ceil(M * K / pe)``."""
        return cdiv(self.out_features * self.in_features, self.pe)
