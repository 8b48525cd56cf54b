"""Default networks: the small CNN of the command line and an MLP for flat features."""

import numpy as np

import cynn


def _rng(random_state):
    if random_state is None or isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


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
    rng = _rng(random_state)
    c1, c2 = channels
    model = cynn.Sequential(
        cynn.Conv2d(c, c1, 3, dtype=dtype, random_state=rng),
        cynn.BatchNormalization(alpha=0.9, n_features=c1, dtype=dtype),
        cynn.ChannelwiseScaling(c1, dtype=dtype, random_state=rng),
        cynn.ReLU(),
        cynn.Conv2d(c1, c2, 3, dtype=dtype, random_state=rng),
        cynn.BatchNormalization(alpha=0.9, n_features=c2, dtype=dtype),
        cynn.ChannelwiseScaling(c2, dtype=dtype, random_state=rng),
        cynn.ReLU(),
        cynn.MaxPool2d(2),
        cynn.Flatten(),
        cynn.Linear(c2 * (h // 2) * (w // 2), hidden, dtype=dtype, random_state=rng),
        cynn.ReLU(),
        cynn.Dropout(dropout, random_state=rng),
        cynn.Linear(hidden, n_outputs, dtype=dtype, random_state=rng),
    )
    # The seed draws ChannelwiseScaling's gamma and beta at random, which can start a
    # channel with a tiny or negative gain; a network built to be trained starts the
    # scaling at the identity, as batch-norm layers usually do.
    for layer in model:
        if isinstance(layer, cynn.ChannelwiseScaling):
            layer.gamma[...] = 1
            layer.beta[...] = 0
    return model


def mlp(n_features, n_outputs, hidden=(100,), dtype=np.float32, random_state=None):
    """Linear-ReLU blocks then a Linear output layer."""
    rng = _rng(random_state)
    layers = []
    width = n_features
    for size in hidden:
        layers += [cynn.Linear(width, size, dtype=dtype, random_state=rng), cynn.ReLU()]
        width = size
    layers.append(cynn.Linear(width, n_outputs, dtype=dtype, random_state=rng))
    return cynn.Sequential(*layers)
