"""Model builders that compose layers: the small CNN of the command line, an MLP for
flat features and the CIFAR family of residual networks; `build` names them.

A builder takes ``random_state`` (None, an int or a Generator) and draws every
layer's initial weights from one generator made from it, in layer order.
"""
import numpy as np

from ._random import check_random_state
from ._validation import positive_int
from .containers import Residual
from .layers import BatchNormalization, ChannelwiseScaling, Conv2d, Dropout, Flatten, \
    GlobalAvgPool2d, Linear, MaxPool2d, ReLU
from .module import Sequential

__all__ = ["small_cnn", "mlp", "resnet", "plain_cnn", "build", "MODEL_NAMES"]


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
    return Sequential(
        Conv2d(c, c1, 3, dtype=dtype, random_state=rng),
        BatchNormalization(alpha=0.9, n_features=c1, dtype=dtype),
        _identity_scaling(c1, dtype, rng),
        ReLU(),
        Conv2d(c1, c2, 3, dtype=dtype, random_state=rng),
        BatchNormalization(alpha=0.9, n_features=c2, dtype=dtype),
        _identity_scaling(c2, dtype, rng),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Linear(c2 * (h // 2) * (w // 2), hidden, dtype=dtype, random_state=rng),
        ReLU(),
        Dropout(dropout, random_state=rng),
        Linear(hidden, n_outputs, dtype=dtype, random_state=rng),
    )


def _identity_scaling(channels, dtype, rng):
    """A ChannelwiseScaling that starts as the identity.

    The seed draws gamma and beta at random, which can start a channel with a tiny or
    negative gain; a network built to be trained starts the scaling at the identity,
    as batch-norm layers usually do.  The draws still happen, so the layers after it
    get the same weights from the same seed as before.
    """
    scaling = ChannelwiseScaling(channels, dtype=dtype, random_state=rng)
    scaling.gamma[...] = 1
    scaling.beta[...] = 0
    return scaling


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


def _conv_bn(c_in, c_out, kernel, stride, dtype, rng):
    """Conv (no bias: the batch norm after it removes any constant) + BN + scaling,
    PyTorch's ``Conv2d(bias=False), BatchNorm2d`` pair; the scaling starts as the
    identity, as BatchNorm2d's affine parameters do.  The scaling's (unused) draws come
    before the convolution's."""
    scaling = _identity_scaling(c_out, dtype, rng)
    return [Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False,
                   dtype=dtype, random_state=rng, init="fan_in"),
            BatchNormalization(alpha=0.9, eps=1e-5, n_features=c_out, dtype=dtype),
            scaling]


def _check_depth(depth, owner):
    depth = positive_int(depth, "depth", owner)
    if depth < 8 or (depth - 2) % 6:
        valid = ", ".join(str(6 * n + 2) for n in range(1, 10))
        raise ValueError(f"{owner}: depth must be 6n + 2 ({valid}, ...), got {depth}")
    return (depth - 2) // 6


def _stages(depth, in_channels, n_classes, width, dtype, random_state, residual):
    owner = "resnet" if residual else "plain_cnn"
    n = _check_depth(depth, owner)
    width = positive_int(width, "width", owner)
    in_channels = positive_int(in_channels, "in_channels", owner)
    n_classes = positive_int(n_classes, "n_classes", owner)
    rng = check_random_state(random_state)
    layers = _conv_bn(in_channels, width, 3, 1, dtype, rng) + [ReLU()]
    c_in = width
    for stage in range(3):
        c_out = width * 2 ** stage
        for block in range(n):
            stride = 2 if stage > 0 and block == 0 else 1
            body = Sequential(*_conv_bn(c_in, c_out, 3, stride, dtype, rng), ReLU(),
                              *_conv_bn(c_out, c_out, 3, 1, dtype, rng))
            if not residual:
                layers += [*body, ReLU()]
            else:
                shortcut = None
                if stride != 1 or c_in != c_out:
                    shortcut = Sequential(*_conv_bn(c_in, c_out, 1, stride, dtype, rng))
                layers += [Residual(body, shortcut), ReLU()]
            c_in = c_out
    layers += [GlobalAvgPool2d(),
               Linear(c_in, n_classes, dtype=dtype, random_state=rng)]
    return Sequential(*layers)


def resnet(depth=20, in_channels=3, n_classes=10, width=16, dtype=np.float32,
           random_state=None):
    """The CIFAR residual networks of He et al. (2016, section 4.2).

    A 3x3 convolution, then three stages of ``n = (depth - 2) / 6`` residual blocks
    (two 3x3 conv-BN layers each, the first ReLU inside the block and one after the
    sum) with ``width``, ``2 * width`` and ``4 * width`` channels; the first block of
    the second and third stage halves the image with stride 2 and takes a projection
    shortcut (1x1 convolution, stride 2, and batch norm).  Global average pooling and
    a Linear layer make the head.  Convolutions have no bias and PyTorch's fan-in
    initialization; batch norm has PyTorch's momentum 0.1 and eps 1e-5 (its moving
    variance is the seed's biased one).

    Parameter counts at ``width=16`` with 3 input channels and 10 classes (projection
    shortcuts; the paper's 0.27 M for ResNet-20 uses parameter-free shortcuts):

    ======  ==========
    depth   parameters
    ======  ==========
    8       78,042
    14      175,258
    20      272,474
    32      466,906
    ======  ==========

    Parameters
    ----------
    depth : int, 6n + 2 (8, 14, 20, 32, 44, 56, 110, ...)
    in_channels : int, default 3
    n_classes : int, default 10
        Logits per sample (use with `cynn.CrossEntropyCriterion`).
    width : int, default 16
        Channels of the first stage.
    dtype, random_state : as for the layers.
    """
    return _stages(depth, in_channels, n_classes, width, dtype, random_state, residual=True)


def plain_cnn(depth=20, in_channels=3, n_classes=10, width=16, dtype=np.float32,
              random_state=None):
    """`resnet` without its shortcuts: the same layers in a straight chain, the
    "plain" network of He et al. that degrades as it gets deeper.  It lacks the two
    projection shortcuts, so from the first stage transition on its initial weights
    are other draws than the residual network's of the same seed."""
    return _stages(depth, in_channels, n_classes, width, dtype, random_state, residual=False)


MODEL_NAMES = ("small_cnn", "mlp", "resnet8", "resnet14", "resnet20", "resnet32")


def build(name, input_shape, n_outputs, dtype=np.float32, random_state=None):
    """A model by name, for the command line and the estimators.

    Parameters
    ----------
    name : 'small_cnn', 'mlp', 'resnetN' or 'plainN' (N = 6n + 2: 8, 14, 20, 32, ...)
    input_shape : tuple
        One sample's shape: ``(C, H, W)`` for the CNNs, ``(n_features,)`` (or any shape,
        flattened) for 'mlp'.
    n_outputs : int
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    shape = tuple(int(d) for d in input_shape)
    if name == "mlp":
        net = mlp(int(np.prod(shape)), n_outputs, dtype=dtype, random_state=random_state)
        return Sequential(Flatten(), *net) if len(shape) > 1 else net
    if name == "small_cnn":
        _need_image(name, shape)
        return small_cnn(shape, n_outputs, dtype=dtype, random_state=random_state)
    for prefix, make in (("resnet", resnet), ("plain", plain_cnn)):
        depth = name[len(prefix):]
        if name.startswith(prefix) and depth.isdigit():
            _need_image(name, shape)
            return make(int(depth), in_channels=shape[0], n_classes=n_outputs, dtype=dtype,
                        random_state=random_state)
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}, ... "
                     "(resnetN and plainN for any N = 6n + 2)")


def _need_image(name, shape):
    if len(shape) != 3:
        raise ValueError(f"model {name!r} needs images (C, H, W), got input shape {shape}")
