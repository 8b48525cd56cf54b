"""Training loop, callbacks, histories and scikit-learn estimators (installed as cynn.trainers)."""
from .callbacks import (Callback, Checkpoint, CSVLogger, EarlyStopping, LRScheduler,
                        ProgressBar)
from .estimators import NeuralNetClassifier, NeuralNetRegressor
from .history import History
from .models import mlp, small_cnn
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
    "LRScheduler",
    "CSVLogger",
    "NeuralNetClassifier",
    "NeuralNetRegressor",
    "small_cnn",
    "mlp",
]
