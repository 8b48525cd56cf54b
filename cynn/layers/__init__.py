"""cynn's layers, one file per family."""
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .normalization import BatchNormalization, ChannelwiseScaling
from .pooling import AvgPool2d, MaxPool2d
from .reshape import Flatten

__all__ = [
    "Conv2d",
    "Dropout",
    "Linear",
    "BatchNormalization",
    "ChannelwiseScaling",
    "AvgPool2d",
    "MaxPool2d",
    "Flatten",
]
