"""Dataset loaders on top of scikit-learn's bundled data: no network is ever needed.

Every loader returns a `Dataset` with stratified train / validation / test splits drawn
from ``random_state``.  Loaders live in a registry, so `load_dataset` finds them by
name and new ones (larger image sets, synthetic data) plug in with `register`.
"""
import dataclasses

import numpy as np

from cynn._validation import fraction


# eq=False: the fields are arrays, which have no single truth value; two datasets
# compare (and hash) by identity.
@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train / validation / test splits of one dataset.

    Images are ``(N, C, H, W)`` float32, feature tables ``(N, F)`` float32, labels
    int64 in ``0 .. n_classes - 1``; ``class_names[k]`` names label ``k``.  The
    validation split is empty (zero rows, same trailing shape) when ``val_size=0``.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple

    @property
    def n_classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        """Shape of one sample."""
        return tuple(self.X_train.shape[1:])

    @property
    def train(self):
        return self.X_train, self.y_train

    @property
    def val(self):
        return self.X_val, self.y_val

    @property
    def test(self):
        return self.X_test, self.y_test

    def __repr__(self):
        return (f"Dataset({self.name!r}: train {self.X_train.shape}, val {self.X_val.shape}, "
                f"test {self.X_test.shape}, {self.n_classes} classes)")


_REGISTRY = {}


def register(name, loader):
    """Make ``loader(test_size=..., val_size=..., random_state=...)`` available by name."""
    _REGISTRY[name] = loader
    return loader


def available_datasets():
    """Names accepted by `load_dataset`."""
    return sorted(_REGISTRY)


def load_dataset(name, **kwargs):
    """Load a dataset by name (see `available_datasets`)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return _REGISTRY[name](**kwargs)


def _check_sizes(test_size, val_size):
    fraction(test_size, "test_size", include_zero=False)
    fraction(val_size, "val_size")
    if test_size + val_size >= 1:
        raise ValueError(f"test_size + val_size must be below 1, got {test_size} + {val_size}")


def split(name, X, y, class_names, test_size=0.2, val_size=0.1, random_state=0, standardize=False):
    """Stratified train / validation / test split of arrays into a `Dataset`.

    ``test_size`` and ``val_size`` are fractions of the whole.  With
    ``standardize=True`` features are centred and scaled with the statistics of the
    training split only (no information from validation or test leaks in).
    """
    from sklearn.model_selection import train_test_split

    _check_sizes(test_size, val_size)
    y = np.asarray(y).astype(np.int64)
    n_classes = len(np.unique(y))

    def stratified(X, y, size, label, value):
        try:
            return train_test_split(X, y, test_size=size, stratify=y, random_state=random_state)
        except ValueError as exc:
            raise ValueError(
                f"cannot make a stratified split of {name!r} with {label}={value!r} "
                f"({len(y)} samples, {n_classes} classes): {exc}") from None

    X_rest, X_test, y_rest, y_test = stratified(X, y, test_size, "test_size", test_size)
    if val_size > 0:
        X_train, X_val, y_train, y_val = stratified(X_rest, y_rest, val_size / (1 - test_size),
                                                    "val_size", val_size)
    else:
        X_train, y_train = X_rest, y_rest
        X_val, y_val = X_rest[:0], y_rest[:0]
    if standardize:
        mean = X_train.mean(axis=0)
        std = X_train.std(axis=0)
        std[std == 0] = 1.0
        X_train, X_val, X_test = [(X - mean) / std for X in (X_train, X_val, X_test)]
    as32 = [np.ascontiguousarray(a, dtype=np.float32) for a in (X_train, X_val, X_test)]
    return Dataset(name, as32[0], y_train, as32[1], y_val, as32[2], y_test,
                   tuple(str(c) for c in class_names))


def load_digits(test_size=0.2, val_size=0.1, random_state=0):
    """The 1,797 handwritten digits: images ``(N, 1, 8, 8)`` in [0, 1], 10 classes."""
    from sklearn import datasets

    bunch = datasets.load_digits()
    X = (bunch.images / 16.0).reshape(-1, 1, 8, 8)
    return split("digits", X, bunch.target, [str(t) for t in bunch.target_names],
                 test_size, val_size, random_state)


def _table(loader, name):
    def load(test_size=0.2, val_size=0.1, random_state=0):
        bunch = loader()
        return split(name, bunch.data.astype(np.float64), bunch.target, bunch.target_names,
                     test_size, val_size, random_state, standardize=True)

    load.__name__ = f"load_{name}"
    load.__doc__ = (f"scikit-learn's {name} table: features standardized with the training "
                    "split's statistics.")
    return load


def _sk(name):
    def loader():
        from sklearn import datasets

        return getattr(datasets, f"load_{name}")()

    return loader


load_iris = _table(_sk("iris"), "iris")
load_wine = _table(_sk("wine"), "wine")
load_breast_cancer = _table(_sk("breast_cancer"), "breast_cancer")

for _loader in (load_digits, load_iris, load_wine, load_breast_cancer):
    register(_loader.__name__[len("load_"):], _loader)
