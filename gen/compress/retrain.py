"""Retraining of a pruned or weight-shared network, so that its accuracy comes back.

Pruned weights stay zero (masked gradients); shared layers move their centroids only, each by
the summed gradient of its weights, with code 0 fixed at zero (see :mod:`.train`). Labels are
the sample labels, or the float model's own predictions when the data has none. An MLP trains
with :mod:`.train`, a network with convolutions or pooling with :mod:`.nettrain`.
"""

import numpy as np

from .nettrain import net_params, net_with_params, train_net
from .train import train_mlp

__all__ = ["retrain_pass", "RETRAIN_BATCH"]

#: Minibatch size of retraining.
RETRAIN_BATCH = 32


def retrain_pass(state, config, samples):
    """Pipeline pass: ``config.retrain_epochs`` epochs of masked / centroid retraining.

    The float model must have no batch-norm left (the ``fold_bn`` pass runs first).
    """
    fm = state.float_model
    if not fm.is_mlp:
        params, masks, codes = net_params(fm)
        rng = np.random.default_rng([config.seed, len(state.history)])
        train_net(fm, params, samples.x_train * fm.input_scale, samples.y_train, rng,
                  epochs=config.retrain_epochs, batch=RETRAIN_BATCH, lr=config.retrain_lr,
                  masks=masks, codes=codes, log=config.log, name=f"{fm.name}: retrain")
        return state.but(float_model=net_with_params(fm, params, codes))
    params, masks, codes = {}, {}, {}
    for i, layer in enumerate(fm.layers, 1):
        if layer.bn is not None:
            raise ValueError(f"{layer.name}: fold batch-norm before retraining")
        if layer.codes is not None:
            params[f"c{i}"] = np.array(layer.codebook)
            codes[i] = np.asarray(layer.codes)
        else:
            params[f"w{i}"] = np.array(layer.weight)
            if layer.mask is not None:
                masks[i] = np.asarray(layer.mask)
        params[f"b{i}"] = (np.zeros(layer.out_features) if layer.bias is None
                           else np.array(layer.bias))
    rng = np.random.default_rng([config.seed, len(state.history)])
    x = samples.x_train * fm.input_scale
    train_mlp(params, x, samples.y_train, rng, epochs=config.retrain_epochs,
              batch=RETRAIN_BATCH, lr=config.retrain_lr, masks=masks, codes=codes,
              log=config.log, name=f"{fm.name}: retrain", every=10)
    layers = []
    for i, layer in enumerate(fm.layers, 1):
        if i in codes:
            cb = params[f"c{i}"]
            layer = layer.but(codebook=cb, weight=cb[codes[i]])
        else:
            layer = layer.but(weight=params[f"w{i}"])
        layers.append(layer.but(bias=params[f"b{i}"]))
    return state.but(float_model=fm.but(layers=layers))
