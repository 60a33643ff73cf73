"""A convolution (groups = 1) on the matrix-vector unit, fed by the sliding-window unit.

:class:`ConvParams` (shared by the hardware and the generator) and :class:`ConvUnit`. The window
unit emits each output pixel's patch ordered ``(i, j, c)``
(:func:`~nnaccel.hw.window.reference.im2col`); the MVU multiplies it by the weight reordered to
that order, ``W'[m, (i*KW + j)*C + c] = W[m, c, i, j]``
(:func:`~nnaccel.hw.window.reference.patch_weights`); the output map travels in HWC order.
"""

from dataclasses import dataclass

import numpy as np

from ..common.dtype import DType
from ..window.params import WindowParams
from ..window.patches import PatchFed, PatchGeometry
from ..window.reference import patch_weights
from .engine import MatrixVectorUnit, check_weight
from .params import MVUParams

__all__ = ["ConvParams", "ConvUnit", "conv_cycles"]


def _word(channels, simd):
    """The window unit's line-buffer word for an MVU reading ``simd`` elements per beat."""
    return simd if channels % simd == 0 else channels


@dataclass(frozen=True, kw_only=True)
class ConvParams(PatchGeometry):
    """A SPEC ``conv2d`` layer with ``groups = 1``: a :class:`WindowUnit` emitting patches of
    ``K = KH*KW*C`` elements ordered ``(i, j, c)``, ``simd`` per beat, into a
    :class:`MatrixVectorUnit` of the reordered weight ``(M, K)`` folded ``pe`` x ``simd``.

    The output is the map ``(M, OH, OW)`` in HWC order, ``pe`` elements per beat (``pe``
    divides ``M``, so no beat straddles two pixels).

    Parameters
    ----------
    window : WindowParams
        ``n_out == mvu.simd``; ``n_in`` is its line-buffer word (:attr:`in_beat`).
    mvu : MVUParams
        ``in_features == window.patch_elems``, ``in_dtype == window.dtype``; ``pe`` divides
        ``out_features``.
    """

    window: WindowParams
    mvu: MVUParams

    def __post_init__(self):
        if not isinstance(self.window, WindowParams):
            raise TypeError(f"window must be a WindowParams, not {self.window!r}")
        if not isinstance(self.mvu, MVUParams):
            raise TypeError(f"mvu must be an MVUParams, not {self.mvu!r}")
        w, v = self.window, self.mvu
        if v.in_features != w.patch_elems or v.simd != w.n_out or v.in_dtype != w.dtype:
            raise ValueError(f"the MVU must read the window's patches: in_features "
                             f"{v.in_features} vs {w.patch_elems}, simd {v.simd} vs n_out "
                             f"{w.n_out}, in_dtype {v.in_dtype} vs {w.dtype}")
        if v.out_features % v.pe:
            raise ValueError(f"pe ({v.pe}) must divide the output channels ({v.out_features})")

    @classmethod
    def for_layer(cls, *, weight, in_shape, stride=(1, 1),
                  dilation=(1, 1), padding=(0, 0, 0, 0), pad_value=0, pe, simd, in_dtype,
                  weight_dtype, bias=None, weight_storage="auto", **stage):
        """The parameters of the convolution ``weight`` (M, C, KH, KW) on maps ``in_shape``
        (C, H, W) of ``in_dtype``, folded ``pe`` x ``simd``, its output stage as
        :meth:`MVUParams.for_layer` takes it (``output_kind``, ``out_dtype``, ...)."""
        w = np.asarray(weight)
        if w.ndim != 4:
            raise ValueError(f"weight must be (M, C, KH, KW), not of shape {w.shape}")
        c, h, wd = (int(v) for v in in_shape)
        if w.shape[1] != c:
            raise ValueError(f"weight has {w.shape[1]} input channels, the map {c}")
        if not isinstance(in_dtype, DType):
            raise TypeError(f"in_dtype must be a DType, not {in_dtype!r}")
        window = WindowParams(channels=c, height=h, width=wd, kernel=tuple(w.shape[2:]),
                              stride=stride, dilation=dilation, padding=padding,
                              pad_value=pad_value, dtype=in_dtype, n_in=_word(c, simd),
                              n_out=simd)
        mvu = MVUParams.for_layer(weight=patch_weights(w), bias=bias, pe=pe, simd=simd,
                                  in_dtype=in_dtype, weight_dtype=weight_dtype,
                                  weight_storage=weight_storage, **stage)
        return cls(window=window, mvu=mvu)

    @property
    def out_beat(self):
        return self.mvu.pe

    @property
    def lanes(self):
        return self.mvu.lanes

    @property
    def acc_width(self):
        return self.mvu.acc_width

    @property
    def mvu_cycles(self):
        """``OH*OW * ceil(M/pe) * ceil(K/simd)``: the MVU's cycles per image."""
        return self.pixels * self.mvu.expected_cycles

    @property
    def expected_cycles(self):
        """Steady-state cycles per image, images back to back (:func:`conv_cycles`)."""
        return conv_cycles(self.window, self.pixels, self.mvu.neuron_folds,
                           self.mvu.synapse_folds)


def conv_cycles(window, pixels, neuron_folds, synapse_folds):
    """Steady-state cycles per image of a window unit feeding an MVU.

    The MVU's ``pixels * NF * SF``, plus the part of the window unit's wait at the start of
    each image (:attr:`WindowParams.boundary_stall`: it waits for the next image's first rows)
    that the MVU's other ``NF - 1`` neuron folds of the last pixel do not hide; or the window
    unit's own cycles when larger (it reads one input word per cycle, e.g. a strided 1x1
    convolution)."""
    hidden = (neuron_folds - 1) * synapse_folds
    mvu = pixels * neuron_folds * synapse_folds
    return max(window.expected_cycles, mvu + max(0, window.boundary_stall - hidden))


def _check(params, weight):
    if not isinstance(params, ConvParams):
        raise TypeError(f"params must be a ConvParams, not {params!r}")
    w = np.asarray(weight)
    expect = (params.mvu.out_features, params.window.channels, *params.window.kernel)
    if w.shape != expect:
        raise ValueError(f"weight has shape {w.shape}, expected {expect}")
    return check_weight(params.mvu, patch_weights(w), whole_layer=True)


class ConvUnit(PatchFed):
    """One SPEC ``conv2d`` layer (groups = 1), output stage included.

    ``i_data`` takes the map ``(C, H, W)`` in HWC raster order, ``params.in_beat`` elements per
    beat; ``o_data`` emits the map ``(M, OH, OW)`` in HWC order, ``pe`` elements per beat
    (``M/pe`` beats per pixel). A :class:`~nnaccel.hw.window.engine.WindowUnit` (padding with
    ``pad_value``, strides, dilation) feeds its patches to a
    :class:`~nnaccel.hw.mvu.engine.MatrixVectorUnit` holding the weight reordered to the patch
    order (:func:`.reference.patch_weights`), so each pixel is exactly SPEC 2.1b's sum; bipolar
    weights on bipolar maps use XNOR lanes (padding is the bit of ``pad_value``). Steady state:
    :attr:`ConvParams.expected_cycles` cycles per image, images back to back.

    Parameters
    ----------
    params : ConvParams
    weight : (M, C, KH, KW) integer array
    """

    def __new__(cls, params, *, weight):
        _check(params, weight)  # before the component exists
        return super().__new__(cls)

    def __init__(self, params, *, weight):
        self.params = params
        self.mvu = MatrixVectorUnit(params.mvu, weight=_check(params, weight))
        super().__init__(params.window, self.mvu)
