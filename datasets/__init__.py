"""Dataset loaders and minibatching (installed as cynn.datasets).

Needs only NumPy and scikit-learn.  The small tables and digits ship with
scikit-learn; MNIST and Fashion-MNIST come from OpenML through scikit-learn's cache
(`fetch_mnist`), and so does CIFAR-10 (`fetch_cifar10`); `make_shapes` draws a synthetic
image set, grayscale or colour, that needs nothing.  `RandomCrop`, `RandomHorizontalFlip`
and `Compose` augment batches of images (``Trainer(augment=...)``).
"""
from .augment import Compose, RandomCrop, RandomHorizontalFlip, Transform
from .batching import iterate_minibatches
from .loaders import (Dataset, available_datasets, load_breast_cancer, load_dataset,
                      load_digits, load_iris, load_wine, register, split)
from .openml import (CIFAR10_CLASSES, FASHION_MNIST_CLASSES, MNIST_CLASSES,
                     DatasetUnavailableError, fetch_cifar10, fetch_fashion_mnist, fetch_mnist)
from .shapes import SHAPE_NAMES, load_shapes, make_shapes

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
    "DatasetUnavailableError",
    "fetch_mnist",
    "fetch_fashion_mnist",
    "fetch_cifar10",
    "MNIST_CLASSES",
    "FASHION_MNIST_CLASSES",
    "CIFAR10_CLASSES",
    "make_shapes",
    "load_shapes",
    "SHAPE_NAMES",
    "Transform",
    "RandomCrop",
    "RandomHorizontalFlip",
    "Compose",
]
