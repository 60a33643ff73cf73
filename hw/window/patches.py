"""Convolutions as matrix products of patches (im2col): the glue between the sliding-window unit
and an engine that multiplies each patch by the layer's reordered weight, independent of the
engine.

:func:`conv_window` is the window unit of a ``conv2d`` layer for a given patch beat;
:class:`PatchFed` feeds its patches, ordered ``(i, j, c)``
(:func:`~nnaccel.hw.window.reference.im2col`), into any engine whose ``i_data`` takes them in
beats of the window's ``n_out`` and whose weight is
:func:`~nnaccel.hw.window.reference.patch_weights` of the layer's.
"""

import numpy as np
from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..common.dtype import DType
from .engine import WindowUnit
from .params import WindowParams
from .reference import patch_weights

__all__ = ["conv_window", "conv_patches", "PatchGeometry", "PatchFed"]


def conv_window(*, in_shape, kernel, stride=(1, 1), dilation=(1, 1), padding=(0, 0, 0, 0),
                pad_value=0, dtype, n_out):
    """The :class:`WindowParams` of a convolution over maps ``in_shape`` (C, H, W) whose patches
    leave in beats of ``n_out`` elements; the input beat is the line-buffer word (``n_out`` when
    it divides C, else C)."""
    c, h, w = (int(v) for v in in_shape)
    return WindowParams(channels=c, height=h, width=w, kernel=tuple(kernel), stride=stride,
                        dilation=dilation, padding=padding, pad_value=pad_value, dtype=dtype,
                        n_in=n_out if c % n_out == 0 else c, n_out=n_out)


def conv_patches(*, weight, in_shape, in_dtype, n_out, stride=(1, 1), dilation=(1, 1),
                 padding=(0, 0, 0, 0), pad_value=0):
    """The window unit (:func:`conv_window`) of the convolution ``weight`` (M, C, KH, KW) on
    maps ``in_shape`` (C, H, W) of ``in_dtype``, and the weight as the (M, C*KH*KW) matrix in
    the window's patch order (:func:`~nnaccel.hw.window.reference.patch_weights`)."""
    w = np.asarray(weight)
    if w.ndim != 4 or w.shape[1] != int(in_shape[0]):
        raise ValueError(f"weight must be (M, C, KH, KW) with C = {in_shape[0]}, not of "
                         f"shape {w.shape}")
    if not isinstance(in_dtype, DType):
        raise TypeError(f"in_dtype must be a DType, not {in_dtype!r}")
    window = conv_window(in_shape=in_shape, kernel=w.shape[2:], stride=stride,
                         dilation=dilation, padding=padding, pad_value=pad_value,
                         dtype=in_dtype, n_out=n_out)
    return window, patch_weights(w)


class PatchGeometry:
    """What a convolution's parameters derive from their ``window`` (:class:`WindowParams`)."""

    @property
    def pixels(self):
        """``OH * OW``: patches (engine vectors) per image."""
        return self.window.out_height * self.window.out_width

    @property
    def in_beat(self):
        """Elements per input beat: the window's line-buffer word."""
        return self.window.n_in


class PatchFed(wiring.Component):
    """A :class:`WindowUnit` on ``window`` feeding ``engine``.

    ``i_data`` is the window unit's (the map in HWC raster order, ``window.n_in`` elements per
    beat), ``o_data`` the engine's. The engine's ``i_data`` must take ``window.n_out``
    elements of ``window.elem_shape`` per beat.

    Parameters
    ----------
    window : WindowParams
    engine : wiring.Component
        With ``i_data`` and ``o_data`` streams; elaborated as a submodule of this component.
    """

    def __init__(self, window, engine):
        self.window = WindowUnit(window)
        self.engine = engine
        super().__init__({
            "i_data": In(self.window.i_data.signature.flip()),
            "o_data": Out(engine.o_data.signature),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        m.submodules.engine = self.engine
        wiring.connect(m, wiring.flipped(self.i_data), self.window.i_data)
        wiring.connect(m, self.window.o_data, self.engine.i_data)
        wiring.connect(m, self.engine.o_data, wiring.flipped(self.o_data))
        return m
