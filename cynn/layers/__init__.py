"""cynn's layers, one file per family."""
from .activation import ELU, LeakyReLU, LogSoftMax, ReLU, Sigmoid, SoftMax, SoftPlus, Tanh
from .conv import Conv2d
from .dropout import Dropout
from .linear import Linear
from .normalization import BatchNormalization, ChannelwiseScaling
from .pooling import AvgPool2d, MaxPool2d
from .reshape import Flatten

__all__ = [
    "ReLU",
    "LeakyReLU",
    "ELU",
    "SoftPlus",
    "Sigmoid",
    "Tanh",
    "SoftMax",
    "LogSoftMax",
    "Conv2d",
    "Dropout",
    "Linear",
    "BatchNormalization",
    "ChannelwiseScaling",
    "AvgPool2d",
    "MaxPool2d",
    "Flatten",
]
