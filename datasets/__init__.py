"""Dataset loaders and minibatching (installed as cynn.datasets).

Needs only NumPy and scikit-learn; the data ship with scikit-learn, so nothing is
downloaded.
"""
from .batching import iterate_minibatches
from .loaders import (Dataset, available_datasets, load_breast_cancer, load_dataset,
                      load_digits, load_iris, load_wine, register, split)

__all__ = [
    "Dataset",
    "available_datasets",
    "load_dataset",
    "load_digits",
    "load_iris",
    "load_wine",
    "load_breast_cancer",
    "register",
    "split",
    "iterate_minibatches",
]
