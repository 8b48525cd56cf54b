"""Model builders that compose layers: the small CNN of the command line and an MLP
for flat features.

A builder takes ``random_state`` (None, an int or a Generator) and draws every
layer's initial weights from one generator made from it, in layer order.
"""
import numpy as np

from ._random import check_random_state
from .layers import BatchNormalization, ChannelwiseScaling, Conv2d, Dropout, Flatten, Linear, \
    MaxPool2d, ReLU
from .module import Sequential

__all__ = ["small_cnn", "mlp"]


def small_cnn(image_shape, n_outputs, channels=(16, 32), hidden=64, dropout=0.25,
              dtype=np.float32, random_state=None):
    """Conv-BN-ReLU x2, MaxPool, Linear-ReLU-Dropout, Linear.

    Parameters
    ----------
    image_shape : (C, H, W)
    n_outputs : int
        Logits per sample (use with `cynn.CrossEntropyCriterion`).
    """
    c, h, w = image_shape
    rng = check_random_state(random_state)
    c1, c2 = channels
    model = Sequential(
        Conv2d(c, c1, 3, dtype=dtype, random_state=rng),
        BatchNormalization(alpha=0.9, n_features=c1, dtype=dtype),
        ChannelwiseScaling(c1, dtype=dtype, random_state=rng),
        ReLU(),
        Conv2d(c1, c2, 3, dtype=dtype, random_state=rng),
        BatchNormalization(alpha=0.9, n_features=c2, dtype=dtype),
        ChannelwiseScaling(c2, dtype=dtype, random_state=rng),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(c2 * (h // 2) * (w // 2), hidden, dtype=dtype, random_state=rng),
        ReLU(),
        Dropout(dropout, random_state=rng),
        Linear(hidden, n_outputs, dtype=dtype, random_state=rng),
    )
    # The seed draws ChannelwiseScaling's gamma and beta at random, which can start a
    # channel with a tiny or negative gain; a network built to be trained starts the
    # scaling at the identity, as batch-norm layers usually do.
    for layer in model:
        if isinstance(layer, ChannelwiseScaling):
            layer.gamma[...] = 1
            layer.beta[...] = 0
    return model


def mlp(n_features, n_outputs, hidden=(100,), dtype=np.float32, random_state=None):
    """Linear-ReLU blocks then a Linear output layer."""
    rng = check_random_state(random_state)
    layers = []
    width = n_features
    for size in hidden:
        layers += [Linear(width, size, dtype=dtype, random_state=rng), ReLU()]
        width = size
    layers.append(Linear(width, n_outputs, dtype=dtype, random_state=rng))
    return Sequential(*layers)
