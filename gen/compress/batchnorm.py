"""Batch-norm folding into the preceding linear or convolutional layer (for ReLU networks).

``BN(W h + b) = W' h + b'`` with ``W' = diag(g) W``, ``b' = g (b - mean) + beta`` and
``g = gamma / sqrt(var + eps)``, per output channel (a convolution's ``W'[m] = g[m] W[m]``
scales the whole ``(C/G, KH, KW)`` kernel of channel ``m``): exact in real arithmetic, so the
folded float network computes the same function up to float rounding.
"""

import numpy as np

__all__ = ["fold_bn", "fold_bn_pass"]


def fold_bn(layer):
    """``layer`` with its batch-norm folded into weight and bias (unchanged without one)."""
    bn = layer.bn
    if bn is None:
        return layer
    g = bn.gamma / np.sqrt(bn.var + bn.eps)
    bias = np.zeros(layer.out_features) if layer.bias is None else layer.bias
    g_w = g.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    return layer.but(weight=layer.weight * g_w, bias=g * (bias - bn.mean) + bn.beta,
                     bn=None)


def fold_bn_pass(state, config, samples):
    """Pipeline pass: fold every layer's batch-norm (runs before pruning)."""
    fm = state.float_model
    return state.but(float_model=fm.but(layers=[fold_bn(layer) for layer in fm.layers]))
