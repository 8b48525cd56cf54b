"""Training loop, callbacks, histories and scikit-learn estimators (installed as cynn.trainers)."""
from .callbacks import (Callback, Checkpoint, CSVLogger, EarlyStopping, GradientClipping,
                        LRScheduler, LRSchedulerCallback, ProgressBar, TensorBoard)
from .estimators import NeuralNetClassifier, NeuralNetRegressor
from .history import History
from cynn.models import mlp, small_cnn
from .plotting import plot_histories
from .trainer import NonFiniteLossError, Trainer

__all__ = [
    "Trainer",
    "NonFiniteLossError",
    "History",
    "plot_histories",
    "Callback",
    "ProgressBar",
    "EarlyStopping",
    "Checkpoint",
    "GradientClipping",
    "LRSchedulerCallback",
    "LRScheduler",  # deprecated alias of LRSchedulerCallback
    "CSVLogger",
    "TensorBoard",
    "NeuralNetClassifier",
    "NeuralNetRegressor",
    "small_cnn",
    "mlp",
]
