"""A convolution (groups = 1) on the systolic array: im2col patches from the sliding-window unit
multiplied by weight-stationary (or output-stationary) tiles over ``(C*KH*KW) x M``.

The window unit (:mod:`nnaccel.hw.window`) turns each image of a batch into its ``OH*OW``
patches of ``K = KH*KW*C`` elements ordered ``(i, j, c)``; the :class:`SystolicEngine` treats
them as the vectors of one GEMM against the weight reordered to that order,
``W'[m, (i*KW + j)*C + c] = W[m, c, i, j]`` (:func:`~nnaccel.hw.window.reference.
patch_weights`). A batch of B images is one engine batch of ``B*OH*OW`` patch vectors; the
engine's output, vector after vector in ``ceil(M/C)`` beats of C, is the output map in HWC
order when C divides M (no beat straddles two pixels).
"""

from dataclasses import dataclass

import numpy as np

from ..common.arith import cdiv
from ..window.params import WindowParams
from ..window.patches import PatchFed, PatchGeometry, conv_patches
from ..window.reference import patch_weights
from .engine import SystolicEngine
from .params import SystolicParams

__all__ = ["SystolicConvParams", "SystolicConv"]


@dataclass(frozen=True, kw_only=True)
class SystolicConvParams(PatchGeometry):
    """A SPEC ``conv2d`` layer with ``groups = 1`` on batches of ``images`` feature maps.

    Parameters
    ----------
    window : WindowParams
        Patches ordered ``(i, j, c)``; ``n_out`` is the engine's input beat.
    array : SystolicParams
        ``in_features == window.patch_elems``, ``in_beat == window.n_out``,
        ``in_dtype == window.dtype``, ``batch == images * OH * OW``; ``cols`` divides
        ``out_features``.
    images : int
        B, the images of a batch.
    """

    window: WindowParams
    array: SystolicParams
    images: int

    def __post_init__(self):
        if not isinstance(self.window, WindowParams):
            raise TypeError(f"window must be a WindowParams, not {self.window!r}")
        if not isinstance(self.array, SystolicParams):
            raise TypeError(f"array must be a SystolicParams, not {self.array!r}")
        w, a = self.window, self.array
        if (a.in_features != w.patch_elems or a.in_beat != w.n_out or a.in_dtype != w.dtype
                or a.batch != self.images * self.pixels):
            raise ValueError(f"the array must read the window's patches: in_features "
                             f"{a.in_features} vs {w.patch_elems}, in_beat {a.in_beat} vs n_out "
                             f"{w.n_out}, in_dtype {a.in_dtype} vs {w.dtype}, batch {a.batch} vs "
                             f"{self.images} images of {self.pixels} pixels")
        if a.out_features % a.cols:
            raise ValueError(f"cols ({a.cols}) must divide the output channels "
                             f"({a.out_features}), so that no output beat straddles two pixels")

    @classmethod
    def for_layer(cls, *, weight, in_shape, images, rows, cols, dataflow, n_out, in_dtype,
                  weight_dtype, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0),
                  pad_value=0, bias=None, batch_tile=None, dsp_cells=None, **stage):
        """The parameters of the convolution ``weight`` (M, C, KH, KW) on batches of
        ``images`` maps ``in_shape`` (C, H, W) of ``in_dtype``, on an R x C array, the window
        emitting ``n_out`` elements per beat; the output stage as
        :meth:`SystolicParams.for_layer` takes it (``output_kind``, ``out_dtype``, ...)."""
        window, patch_weight = conv_patches(
            weight=weight, in_shape=in_shape, in_dtype=in_dtype, n_out=n_out, stride=stride,
            dilation=dilation, padding=padding, pad_value=pad_value)
        pixels = window.out_height * window.out_width
        array = SystolicParams.for_layer(
            weight=patch_weight, rows=rows, cols=cols, dataflow=dataflow,
            batch=images * pixels, in_dtype=in_dtype, weight_dtype=weight_dtype, bias=bias,
            in_beat=n_out, batch_tile=batch_tile, dsp_cells=dsp_cells, **stage)
        return cls(window=window, array=array, images=images)

    @property
    def out_beat(self):
        return self.array.cols

    @property
    def rows(self):
        return self.array.rows

    @property
    def cols(self):
        return self.array.cols

    @property
    def dataflow(self):
        return self.array.dataflow

    @property
    def lanes(self):
        return self.array.lanes

    @property
    def acc_width(self):
        return self.array.acc_width

    @property
    def window_cycles(self):
        """Cycles the window unit needs for a batch (one output beat per cycle, its waits at
        image boundaries included)."""
        return self.images * self.window.expected_cycles

    @property
    def steady_cycles(self):
        """Cycles per batch of images back to back: the array's steady state, or the window
        unit's when it is the slower (it emits ``ceil(K/n_out)`` beats per patch, the array
        takes ``ceil(M/C) * ceil(K/R)`` steps per patch, weight-stationary). Exact when the
        array binds; when the window unit binds, a cycle or so may be lost per batch where the
        two meet at an image boundary (measured in the tests)."""
        return max(self.array.steady_cycles, self.window_cycles)

    @property
    def expected_cycles(self):
        """Cycles for the first batch after a reset, estimated (for the design's latency
        figure; measured a few percent more): the array's, plus the window unit's latency, or
        the window unit's whole batch and the array's drain when the window is the slower."""
        a = self.array
        window = self.window_cycles + self.window.latency
        return max(a.expected_cycles + self.window.latency,
                   window + a.m_tiles * a.chunk_sizes[-1])

    @property
    def ideal_cycles(self):
        """``B*OH*OW*M*K / (R*C)``: every multiplier busy every cycle."""
        return self.array.ideal_cycles

    def summary(self):
        """The figures a manifest shows: array, tiles, window unit."""
        a, w = self.array, self.window
        return {"rows": a.rows, "cols": a.cols, "dataflow": a.dataflow.value,
                "patch_elems": a.in_features, "pixels": self.pixels,
                "patches_per_batch": a.batch, "tiles": f"{a.m_tiles}x{a.k_tiles}",
                "m_tiles": a.m_tiles, "k_tiles": a.k_tiles, "batch_tile": a.batch_tile,
                "window": {"in_beat": w.n_in, "out_beat": w.n_out,
                           "buffer_rows": w.buffer_rows, "buffer_words": w.buffer_depth,
                           "buffer_bits": w.buffer_bits, "expected_cycles": w.expected_cycles,
                           "latency": w.latency},
                "window_cycles_per_batch": self.window_cycles,
                "array_cycles_per_batch": a.steady_cycles,
                "bound": "window" if self.window_cycles > a.steady_cycles else "array",
                "ideal_cycles_per_batch": cdiv(int(a.ideal_cycles * 1000), 1000)}


class SystolicConv(PatchFed):
    """One SPEC ``conv2d`` layer (groups = 1) with its output stage, on the systolic array.

    ``i_data`` takes the B maps ``(C, H, W)`` of a batch in HWC raster order,
    ``params.in_beat`` elements per beat; ``o_data`` emits the B maps ``(M, OH, OW)`` in HWC
    order, C elements per beat (``M/C`` beats per pixel). Batches follow each other without a
    pause. Bit-exact with SPEC 2.1b and 2.2 (every patch is SPEC 2.1b's window, padding
    included, and the array is exact).

    Parameters
    ----------
    params : SystolicConvParams
    weight : (M, C, KH, KW) integer array
    """

    def __new__(cls, params, *, weight):
        if not isinstance(params, SystolicConvParams):
            raise TypeError(f"params must be a SystolicConvParams, not {params!r}")
        w = np.asarray(weight)
        expect = (params.array.out_features, params.window.channels, *params.window.kernel)
        if w.shape != expect:
            raise ValueError(f"weight has shape {w.shape}, expected {expect}")
        return super().__new__(cls)

    def __init__(self, params, *, weight):
        self.params = params
        super().__init__(params.window,
                         SystolicEngine(params.array, weight=patch_weights(weight)))
