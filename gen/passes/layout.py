"""Lowering of stream layouts: what travels between the layers of a feature-map network.

Feature maps travel in HWC raster order (a pixel's channels together, pixels in raster order),
vectors in their own order. A ``linear`` layer reading a feature map ``(C, H, W)`` computes
SPEC's flatten in (C, H, W) order; its engine sees the map in HWC order, so the plan's layer gets
the weight (and codebook indices) with its columns permuted: column ``(h*W + w)*C + c`` of the
plan's weight is column ``c*H*W + h*W + w`` of the model's. Every engine then runs it as a plain
vector layer; the check pass compares it with the model's layer on the same maps.
"""

from dataclasses import replace

import numpy as np

from ..ir import Op, readonly

__all__ = ["lower_layouts", "hwc_columns"]


def hwc_columns(shape):
    """``perm`` with ``perm[p]`` the (C, H, W) flatten index of HWC stream position ``p``."""
    c, h, w = shape
    return np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)


def _lower(layer):
    if layer.op is not Op.LINEAR or len(layer.in_shape) != 3:
        return layer
    perm = hwc_columns(layer.in_shape)
    changes = dict(weight=readonly(layer.weight[:, perm]), in_shape=(layer.in_features,))
    if layer.indices is not None:
        changes["indices"] = readonly(layer.indices[:, perm])
    return replace(layer, **changes)


def lower_layouts(plan):
    """The plan with every ``linear`` layer on a feature map reading it in HWC order."""
    return plan.but(layers=tuple(lp.but(layer=_lower(lp.layer)) for lp in plan.layers))
