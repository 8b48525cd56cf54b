"""MNIST, Fashion-MNIST and CIFAR-10 from OpenML, downloaded once and cached by scikit-learn.

`sklearn.datasets.fetch_openml` downloads the files and keeps them under
``get_data_home(data_home)/openml``; later calls read that cache and need no network.
Without a network and without a cache the fetchers raise one
`DatasetUnavailableError` that says where the cache was looked for and how to fill it.
"""
import collections
import http.client
import os
import socket
import warnings
from urllib.error import URLError

import numpy as np

from cynn._validation import fraction, positive_int

from .loaders import Dataset, register

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")

# What cynn knows about one OpenML image file: its rows are images with pixel values
# 0 .. 255 in ``image_shape``'s row-major order, then a class column of the digits 0 .. 9.
_ImageSet = collections.namedtuple("_ImageSet", "name title data_id class_names image_shape")

_MNIST = _ImageSet("mnist", "MNIST", 554, MNIST_CLASSES, (1, 28, 28))
_FASHION_MNIST = _ImageSet("fashion_mnist", "Fashion-MNIST", 40996, FASHION_MNIST_CLASSES,
                           (1, 28, 28))
_CIFAR10 = _ImageSet("cifar10", "CIFAR-10", 40927, CIFAR10_CLASSES, (3, 32, 32))


class DatasetUnavailableError(OSError):
    """A dataset is neither in the local cache nor downloadable from here.

    A subclass of `OSError`, so code (and the ``cynn`` command) that already handles
    missing files handles this too.
    """


# Failures that mean "could not reach the server", as opposed to a broken cache
# folder: urlopen wraps most socket errors in URLError, but a timeout while reading
# or a dropped connection can surface bare.
_NETWORK_ERRORS = (URLError, TimeoutError, ConnectionError, socket.gaierror,
                   http.client.HTTPException)


def _fetch_openml_images(spec, data_home, val_size, random_state, n_train, n_test, n_retries,
                         delay):
    """Download (or read from the cache) one OpenML image set and split it."""
    from sklearn.datasets import fetch_openml, get_data_home

    name, title, data_id = spec.name, spec.title, spec.data_id
    n_pixels = int(np.prod(spec.image_shape))
    val_size = fraction(val_size, "val_size")
    n_train = positive_int(n_train, "n_train")
    n_test = positive_int(n_test, "n_test")
    try:
        home = get_data_home(data_home)     # creates the folder
    except OSError as exc:
        raise DatasetUnavailableError(f"cannot create scikit-learn's data folder for {title}: "
                                      f"{_one_line(exc)}") from None
    try:
        import pandas  # noqa: F401  (the fast ARFF parser; optional for cynn.datasets)
    except ImportError:
        # scikit-learn's pure Python parser: much slower, and it parses the whole
        # file again on every call, but it needs nothing beyond scikit-learn.
        parser, read_csv_kwargs = "liac-arff", None
    else:
        # Read the class column (the last, after the pixels) as plain strings.
        # scikit-learn asks pandas for a categorical column there; pandas >= 3.1 gives
        # bare digits integer categories, on which scikit-learn 1.9.1 fails with a
        # TypeError after deleting the cached file and downloading it again
        # (scikit-learn issue #34892, fixed upstream by pull request #34902).  Once a
        # dtype is given, pandas uses no other: the pixels are read as float32, exact
        # for 0 .. 255 and a quarter of the int64 pandas would choose (CIFAR-10's
        # 60,000 x 3,072 pixels take 740 MB instead of 1.5 GB).
        dtypes = dict.fromkeys(range(n_pixels), np.float32)
        dtypes[n_pixels] = str
        parser, read_csv_kwargs = "pandas", {"dtype": dtypes}
    try:
        with warnings.catch_warnings():
            # scikit-learn warns once per retry; the error below says it all, and the
            # `cynn` command must print one line, not a retry log.
            warnings.filterwarnings("ignore", message="A network error occurred")
            X, y = fetch_openml(data_id=data_id, data_home=home, as_frame=False, return_X_y=True,
                                parser=parser, read_csv_kwargs=read_csv_kwargs,
                                n_retries=n_retries, delay=delay)
    except _NETWORK_ERRORS as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DatasetUnavailableError(
            f"{title} (OpenML data id {data_id}) is not in scikit-learn's cache "
            f"{os.path.join(home, 'openml')} and could not be downloaded: {_one_line(reason)}. "
            f"To fill the cache, run cynn.datasets.fetch_{name}() once on a machine with network "
            f"access (same data_home), or copy the 'openml' folder of a scikit-learn data home "
            f"where it was fetched (by default ~/scikit_learn_data/openml) to "
            f"{os.path.join(home, 'openml')}") from None
    except OSError as exc:
        raise DatasetUnavailableError(
            f"cannot use the scikit-learn cache under {home} for {title} (OpenML data id "
            f"{data_id}): {_one_line(exc)}") from None
    return _to_dataset(spec, X, y, val_size, random_state, n_train, n_test)


def _one_line(reason):
    text = str(reason).strip()
    return text.splitlines()[0] if text else type(reason).__name__


def _to_dataset(spec, X, y, val_size, random_state, n_train, n_test):
    from sklearn.model_selection import train_test_split

    name, class_names = spec.name, spec.class_names
    n_pixels = int(np.prod(spec.image_shape))
    if X.ndim != 2 or X.shape[1] != n_pixels or len(X) != n_train + n_test or len(y) != len(X):
        raise ValueError(f"{name}: expected {n_train + n_test} rows (n_train={n_train} + "
                         f"n_test={n_test}) of {n_pixels} pixels, got X of shape {X.shape} and "
                         f"{len(y)} labels")
    # The OpenML targets are the nominal values '0' .. '9', as strings; ARFF allows
    # them quoted.
    try:
        labels = np.array([int(str(label).strip("'\"")) for label in y], dtype=np.int64)
    except ValueError:
        raise ValueError(f"{name}: labels must be the digits 0 .. 9, got values such as "
                         f"{sorted(set(map(str, y)))[:5]}") from None
    if labels.min() < 0 or labels.max() >= len(class_names):
        raise ValueError(f"{name}: labels must be in 0 .. {len(class_names) - 1}, got "
                         f"{labels.min()} .. {labels.max()}")
    # Row-major: for CIFAR-10's channel-major rows the first 1,024 values become
    # channel 0 (red), 32 x 32 row by row, and so on.
    images = np.asarray(X, dtype=np.float32).reshape((-1,) + spec.image_shape)
    images /= 255.0        # pixels are stored as 0 .. 255 (in place: X is ours)

    # OpenML keeps the files' order: the official training images come first.
    X_train, y_train = images[:n_train], labels[:n_train]
    X_test, y_test = images[n_train:], labels[n_train:]
    if val_size > 0:
        X_train, X_val, y_train, y_val = train_test_split(
            X_train, y_train, test_size=val_size, stratify=y_train, random_state=random_state)
    else:
        X_val, y_val = X_train[:0], y_train[:0]
    arrays = [np.ascontiguousarray(a) for a in (X_train, y_train, X_val, y_val, X_test, y_test)]
    return Dataset(name, *arrays, tuple(class_names))


_PARAMETERS_DOC = """
    Parameters
    ----------
    data_home : str or path-like, default=None
        scikit-learn's data folder (``sklearn.datasets.get_data_home(data_home)``,
        by default ``$SCIKIT_LEARN_DATA`` or ``~/scikit_learn_data``); the files are
        cached under its ``openml`` subfolder.
    val_size : float, default=0.1
        Fraction of the ``n_train`` training images held out, stratified, as the
        validation split ({n_val} of the {n_train} by default); 0 gives an empty one.
        Note that this is a fraction of the training part, not of the whole set as
        in the other loaders: the test split is fixed.
    random_state : int, RandomState or None, default=0
        Seed of the validation split.
    n_train, n_test : int, default={n_train_digits} and {n_test_digits}
        Sizes of the training part (the first rows of the OpenML file) and of the
        test part (the last rows); their sum must be the file's number of rows.
        They describe the file and are parameters only so that tests can serve a
        small stand-in for it.
    n_retries : int, default=3
        Retries per file after a network error (at least 1), as in `fetch_openml`.
    delay : float, default=1.0
        Seconds between attempts, > 0.

    Returns
    -------
    Dataset
        Images ``{shape}`` float32 in [0, 1], labels int64 in 0 .. 9.

    Raises
    ------
    DatasetUnavailableError
        The files are not cached and cannot be downloaded (no network), or the
        cache folder cannot be used.  The message names the cache folder.
    ValueError
        A bad argument, or a file that does not have the expected layout.
"""


def _parameters_doc(n_train, n_test, image_shape):
    return _PARAMETERS_DOC.format(
        n_val=f"{n_train // 10:,}", n_train=f"{n_train:,}", n_train_digits=n_train,
        n_test_digits=n_test, shape="(N, " + ", ".join(map(str, image_shape)) + ")")


def fetch_mnist(data_home=None, val_size=0.1, random_state=0, *, n_train=60000, n_test=10000,
                n_retries=3, delay=1.0):
    return _fetch_openml_images(_MNIST, data_home, val_size, random_state, n_train, n_test,
                                n_retries, delay)


def fetch_fashion_mnist(data_home=None, val_size=0.1, random_state=0, *, n_train=60000,
                        n_test=10000, n_retries=3, delay=1.0):
    return _fetch_openml_images(_FASHION_MNIST, data_home, val_size, random_state, n_train,
                                n_test, n_retries, delay)


def fetch_cifar10(data_home=None, val_size=0.1, random_state=0, *, n_train=50000, n_test=10000,
                  n_retries=3, delay=1.0):
    return _fetch_openml_images(_CIFAR10, data_home, val_size, random_state, n_train, n_test,
                                n_retries, delay)


fetch_mnist.__doc__ = """The 70,000 handwritten digits of MNIST (OpenML data id 554).

    The first 60,000 images are the training part (less the validation split), the
    last 10,000 the test split.  The first call downloads the data into
    scikit-learn's cache; later calls read the cache, with no network.  Class names
    are '0' .. '9'.
""" + _parameters_doc(60000, 10000, _MNIST.image_shape)

fetch_fashion_mnist.__doc__ = """Zalando's Fashion-MNIST: 70,000 clothing images (OpenML id 40996).

    Same layout as `fetch_mnist`: the first 60,000 images are the training part
    (less the validation split), the last 10,000 the test split; cached by
    scikit-learn after the first download.  Class names are those of
    `FASHION_MNIST_CLASSES`: 'T-shirt/top', 'Trouser', ..., 'Ankle boot'.
""" + _parameters_doc(60000, 10000, _FASHION_MNIST.image_shape)

fetch_cifar10.__doc__ = """CIFAR-10: 60,000 colour images of 32 x 32 pixels in 10 classes
    (OpenML dataset "CIFAR_10", data id 40927).

    The OpenML file has 60,000 rows of 3,072 pixel columns, stored channel-major:
    the first 1,024 values are the red channel, then 1,024 green, then 1,024 blue,
    each 32 x 32 in row-major order; they become images ``(N, 3, 32, 32)``.  The
    target column "class" holds 0 .. 9, standing for the names of `CIFAR10_CLASSES`:
    airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck.  The first
    50,000 rows are the standard training split (less the validation split here),
    the last 10,000 the standard test split; this order comes from OpenML's
    description of the dataset.  The first call downloads the data into
    scikit-learn's cache; later calls read the cache, with no network.  scikit-learn
    caches the compressed text file, so every call parses it again: that takes a
    while and, for a moment, a few GB of memory.
""" + _parameters_doc(50000, 10000, _CIFAR10.image_shape)

register("mnist", fetch_mnist)
register("fashion_mnist", fetch_fashion_mnist)
register("cifar10", fetch_cifar10)
