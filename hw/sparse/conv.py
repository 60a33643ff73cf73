"""A pruned convolution (groups = 1) on the EIE-like sparse engine: im2col patches from the
sliding-window unit, each one a sparse activation vector.

The window unit (:mod:`nnaccel.hw.window`) emits every output pixel's patch of
``K = KH*KW*C`` elements ordered ``(i, j, c)`` (padding included, as ``pad_value``); the
:class:`SparseEngine` treats each patch as one input vector of the weight reordered to that
order, ``W'[m, (i*KW + j)*C + c] = W[m, c, i, j]``
(:func:`~nnaccel.hw.window.reference.patch_weights`): zero weights are not stored and zero
activations (padding of value 0 among them) are skipped. Its output, ``M/pe`` beats of ``pe``
per patch, is the output map in HWC order (``pe`` divides ``M``, so no beat straddles two
pixels and no beat carries padding).

Groups other than 1 (grouped and depthwise convolutions) are refused: their patches are not one
vector of one matrix; they run on the vector-vector unit.

Timing (:meth:`SparseConvParams.cycle_report`): the engine's own cycle model
(:meth:`SparseParams.cycle_report`) run on the image's patches, one vector per output pixel, in
raster order, bounded below by the window unit's rate. The window emits a patch beat per cycle
but the engine broadcasts at most one non-zero activation per cycle, so the engine binds unless
nearly every patch beat is empty. At each image's start the window waits for that image's first
rows (:attr:`WindowParams.boundary_stall`); the engine hides that only as far as it still has
work queued, so the cycles per image for the generator (dense activations, no images known)
add it, an upper bound.
"""

import math
from dataclasses import dataclass

import numpy as np

from ..window.params import WindowParams
from ..window.patches import PatchFed, PatchGeometry, conv_patches
from ..window.reference import im2col, patch_weights
from .engine import SparseEngine
from .params import SparseParams

__all__ = ["SparseConvParams", "SparseConv", "patch_activity"]

#: Patches of warm-up, then of averaging, for the dense cycles per patch.
_PERIOD = 4


def patch_activity(x, window):
    """Which activations of every patch are non-zero: ``x`` is a batch of maps (B, C, H, W);
    returns ``(B*OH*OW, K)`` booleans, patches in raster order image after image, padding of
    ``window.pad_value`` included (what the engine skips)."""
    return np.concatenate([
        im2col(v, window.kernel, window.stride, window.dilation, window.padding,
               window.pad_value) != 0 for v in np.asarray(x)])


@dataclass(frozen=True, kw_only=True)
class SparseConvParams(PatchGeometry):
    """A SPEC ``conv2d`` layer with ``groups = 1`` on the sparse engine.

    Parameters
    ----------
    window : WindowParams
        Patches ordered ``(i, j, c)``; ``n_out`` is the engine's input beat.
    sparse : SparseParams
        ``in_features == window.patch_elems``, ``in_beat == window.n_out``,
        ``in_dtype == window.dtype``; ``pe`` divides ``out_features``.
    """

    window: WindowParams
    sparse: SparseParams

    def __post_init__(self):
        if not isinstance(self.window, WindowParams):
            raise TypeError(f"window must be a WindowParams, not {self.window!r}")
        if not isinstance(self.sparse, SparseParams):
            raise TypeError(f"sparse must be a SparseParams, not {self.sparse!r}")
        w, s = self.window, self.sparse
        if s.in_features != w.patch_elems or s.in_beat != w.n_out or s.in_dtype != w.dtype:
            raise ValueError(f"the sparse engine must read the window's patches: in_features "
                             f"{s.in_features} vs {w.patch_elems}, in_beat {s.in_beat} vs n_out "
                             f"{w.n_out}, in_dtype {s.in_dtype} vs {w.dtype}")
        if s.out_features % s.pe:
            raise ValueError(f"pe ({s.pe}) must divide the output channels ({s.out_features}), "
                             "so that no output beat straddles two pixels")

    @classmethod
    def for_layer(cls, *, weight, in_shape, pe, queue_depth, n_out, in_dtype, weight_dtype,
                  index_bits=4, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0),
                  pad_value=0, bias=None, **stage):
        """The parameters of the convolution ``weight`` (M, C, KH, KW) on maps ``in_shape``
        (C, H, W) of ``in_dtype`` on ``pe`` PEs, the window emitting ``n_out`` elements per
        beat; the output stage as :meth:`SparseParams.for_layer` takes it."""
        window, patch_weight = conv_patches(
            weight=weight, in_shape=in_shape, in_dtype=in_dtype, n_out=n_out, stride=stride,
            dilation=dilation, padding=padding, pad_value=pad_value)
        sparse = SparseParams.for_layer(
            weight=patch_weight, pe=pe, queue_depth=queue_depth, in_beat=n_out,
            in_dtype=in_dtype, weight_dtype=weight_dtype, index_bits=index_bits, bias=bias,
            **stage)
        return cls(window=window, sparse=sparse)

    @property
    def out_beat(self):
        return self.sparse.pe

    @property
    def pe(self):
        return self.sparse.pe

    @property
    def lanes(self):
        return self.sparse.lanes

    @property
    def acc_width(self):
        return self.sparse.acc_width

    @property
    def raw_shape(self):
        return self.sparse.raw_shape

    @property
    def output(self):
        return self.sparse.output

    def cycle_report(self, column_counts, active):
        """The engine's cycle model on the patches whose non-zero activations are ``active``
        (:func:`patch_activity`), back to back as if the window never made it wait."""
        return self.sparse.cycle_report(column_counts, active)

    def image_cycles(self, column_counts, active):
        """Steady-state cycles of the last of images whose patches are ``active``
        (``(images * pixels, K)``, at least two images), no stalls: the engine's cycles from
        the previous image's last output beat to its own, or the window unit's cycles per image
        when larger. Equal to simulation in the tests, including a geometry whose window waits
        at each image's start (:attr:`WindowParams.boundary_stall`): there the window bound;
        where the engine binds, its queued work covered the wait."""
        active = np.asarray(active, dtype=bool)
        images = len(active) // self.pixels
        if images < 2 or images * self.pixels != len(active):
            raise ValueError(f"active must hold the patches of at least two whole images "
                             f"({self.pixels} patches each), not {len(active)}")
        ends = self.cycle_report(column_counts, active).vector_end
        engine = int(ends[-1] - ends[-1 - self.pixels])
        window = self.window.expected_cycles
        return max(engine, window)

    def patch_cycles(self, column_counts):
        """The engine's steady-state cycles per patch with every activation non-zero: the
        model's mean over :data:`_PERIOD` patches after as many of warm-up (its two
        accumulator banks may alternate, so two vectors in a row can differ)."""
        return float(np.sum(self._patch_spans(column_counts))) / _PERIOD

    def _patch_spans(self, column_counts):
        """Cycles between the ends of consecutive dense patches, :data:`_PERIOD` of them after
        as many of warm-up."""
        active = np.ones((2 * _PERIOD, self.window.patch_elems), dtype=bool)
        ends = self.cycle_report(column_counts, active).vector_end
        return np.diff(ends[_PERIOD - 1:])

    def expected_cycles(self, column_counts):
        """Steady-state cycles per image with every activation non-zero (the worst case: zero
        activations and zero padding are skipped, so real images only run faster): the
        engine's cycles for the image's patches (pairs of patches at the mean of
        :meth:`patch_cycles`, an odd one at the longer of a pair), plus the window's wait at
        each image's start (an upper bound: see the module), or the window unit's cycles when
        larger.
        Within two cycles of the model run on a whole image (the tests' tolerance)."""
        spans = self._patch_spans(column_counts)
        pair = float(np.sum(spans)) / (_PERIOD // 2)
        engine = math.ceil(self.pixels // 2 * pair + self.pixels % 2 * int(spans.max()))
        return max(engine + self.window.boundary_stall, self.window.expected_cycles)

    @property
    def dense_cycles(self):
        """Cycles per image of a dense engine with as many multipliers."""
        return self.pixels * self.sparse.dense_cycles

    def summary(self):
        """The figures a manifest shows: patches and the window unit."""
        w = self.window
        return {"patch_elems": w.patch_elems, "pixels": self.pixels,
                "patches_per_image": self.pixels,
                "window": {"in_beat": w.n_in, "out_beat": w.n_out,
                           "buffer_rows": w.buffer_rows, "buffer_words": w.buffer_depth,
                           "buffer_bits": w.buffer_bits, "expected_cycles": w.expected_cycles,
                           "boundary_stall": w.boundary_stall, "latency": w.latency}}


class SparseConv(PatchFed):
    """One SPEC ``conv2d`` layer (groups = 1) with its output stage, on the sparse engine.

    ``i_data`` takes maps ``(C, H, W)`` in HWC raster order, ``params.in_beat`` elements per
    beat; ``o_data`` emits the maps ``(M, OH, OW)`` in HWC order, ``pe`` elements per beat
    (``M/pe`` beats per pixel); images follow each other without a pause. Bit-exact with SPEC
    2.1b and 2.2 (every patch is SPEC 2.1b's window, padding included, and the engine is
    exact).

    Parameters
    ----------
    params : SparseConvParams
    weight : (M, C, KH, KW) integer array
    codebook : 1-D integer array, optional
        As :class:`SparseEngine` takes it.
    """

    def __new__(cls, params, *, weight, codebook=None):
        if not isinstance(params, SparseConvParams):
            raise TypeError(f"params must be a SparseConvParams, not {params!r}")
        w = np.asarray(weight)
        expect = (params.sparse.out_features, params.window.channels, *params.window.kernel)
        if w.shape != expect:
            raise ValueError(f"weight has shape {w.shape}, expected {expect}")
        return super().__new__(cls)

    def __init__(self, params, *, weight, codebook=None):
        self.params = params
        super().__init__(params.window, SparseEngine(params.sparse, weight=patch_weights(weight),
                                                     codebook=codebook))

    @property
    def matrix(self):
        """The encoded patch-order weights (:class:`~nnaccel.hw.sparse.format.SparseMatrix`)."""
        return self.engine.matrix
