"""cynn: a CPU deep-learning framework for small convolutional networks.

Hot layers (Conv2d, BatchNormalization, MaxPool2d) run on Cython kernels; everything
else is plain Python around one small `Module` contract.
"""
from ._random import manual_seed
from ._threads import get_num_threads, set_num_threads
from .gradcheck import GradcheckError, check_criterion, gradcheck
from .criterions import (ClassNLLCriterion, ClassNLLCriterionUnstable, Criterion,
                         CrossEntropyCriterion, MSECriterion)
from .layers import (ELU, AvgPool2d, BatchNormalization, ChannelwiseScaling, Conv2d, Dropout,
                     Flatten, LeakyReLU, Linear, LogSoftMax, MaxPool2d, ReLU, Sigmoid, SoftMax,
                     SoftPlus, Tanh)
from .module import Module, Sequential
from .optim import (SGD, Adam, AdamW, CosineAnnealingLR, ExponentialLR, LRScheduler, Optimizer,
                    ReduceLROnPlateau, StepLR)
from .serialization import load, save

__version__ = "0.1.0"

__all__ = [
    "Module",
    "Sequential",
    "manual_seed",
    "set_num_threads",
    "get_num_threads",
    "gradcheck",
    "check_criterion",
    "GradcheckError",
    "save",
    "load",
    "Conv2d",
    "Dropout",
    "Linear",
    "BatchNormalization",
    "ChannelwiseScaling",
    "AvgPool2d",
    "MaxPool2d",
    "Flatten",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "SoftPlus",
    "Sigmoid",
    "Tanh",
    "SoftMax",
    "LogSoftMax",
    "Criterion",
    "MSECriterion",
    "ClassNLLCriterionUnstable",
    "ClassNLLCriterion",
    "CrossEntropyCriterion",
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "LRScheduler",
    "StepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "ReduceLROnPlateau",
]
