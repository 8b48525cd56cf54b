"""cynn: a CPU deep-learning framework for small convolutional networks.

The hot layers (Conv2d, BatchNormalization, MaxPool2d and AvgPool2d, Linear, ReLU) run
on Cython kernels; everything else is plain Python around one small `Module` contract.
"""
from . import containers, criterions, functional, layers, lr_scheduler, models, optim  # noqa: F401
from ._plan import release_inference_buffers, set_inference_plans, set_training_fusion
from ._random import manual_seed
from ._threads import get_num_threads, set_num_threads
from .criterions import *  # noqa: F401,F403
from .gradcheck import GradcheckError, check_criterion, gradcheck
from .containers import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .lr_scheduler import *  # noqa: F401,F403
from .module import Module, Sequential, inference_mode
from .onnx_export import export_onnx
from .optim import *  # noqa: F401,F403
from .serialization import load, model_info, register, save

__version__ = "0.1.0"

# The subpackages list their public names once; this list is derived from theirs.
__all__ = [
    "Module",
    "Sequential",
    "inference_mode",
    "set_inference_plans",
    "release_inference_buffers",
    "set_training_fusion",
    "manual_seed",
    "set_num_threads",
    "get_num_threads",
    "gradcheck",
    "check_criterion",
    "GradcheckError",
    "save",
    "load",
    "export_onnx",
    "register",
    "model_info",
    *containers.__all__,
    *layers.__all__,
    *criterions.__all__,
    *optim.__all__,
    *lr_scheduler.__all__,
]
