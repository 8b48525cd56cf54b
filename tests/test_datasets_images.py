"""Image datasets: the synthetic shapes, and MNIST / Fashion-MNIST / CIFAR-10 through a fake OpenML.

No test here reaches the network.  An autouse fixture makes every socket connection
and scikit-learn's ``urlopen`` fail; the OpenML tests install `FakeOpenML`, which
answers scikit-learn's requests with a tiny gzipped stand-in of the real files
(description, features, qualities JSON and the ARFF data), written to ``tmp_path``.
"""
import gzip
import hashlib
import json
import os
import socket
import sys
import types
from io import BytesIO
from urllib.error import URLError

import numpy as np
import pytest
import sklearn.datasets._openml as sklearn_openml
from sklearn.datasets import get_data_home

from cynn import cli
from cynn.datasets import (CIFAR10_CLASSES, FASHION_MNIST_CLASSES, MNIST_CLASSES, SHAPE_NAMES,
                           DatasetUnavailableError, available_datasets, fetch_cifar10,
                           fetch_fashion_mnist, fetch_mnist, load_dataset, load_shapes,
                           make_shapes)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail loudly if anything in a test tries to reach a real server."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(sklearn_openml, "urlopen", refuse)


# --------------------------------------------------------------------------- shapes

def test_make_shapes_dtype_shape_and_range():
    for n, size, n_classes in [(50, 28, 6), (17, 8, 2), (40, 33, 8)]:
        X, y = make_shapes(n, image_size=size, n_classes=n_classes, random_state=0)
        assert X.shape == (n, 1, size, size) and X.dtype == np.float32 and X.flags.c_contiguous
        assert y.shape == (n,) and y.dtype == np.int64
        assert X.min() >= 0.0 and X.max() <= 1.0 and np.isfinite(X).all()
        assert set(np.unique(y)) <= set(range(n_classes))


def test_make_shapes_classes_are_balanced_and_shuffled():
    _, y = make_shapes(100, n_classes=6, random_state=0)
    counts = np.bincount(y, minlength=6)
    assert counts.sum() == 100 and set(counts) <= {16, 17}
    assert not np.array_equal(y, np.sort(y))


def test_make_shapes_is_deterministic_for_a_seed_and_differs_between_seeds():
    a = make_shapes(64, random_state=3)
    b = make_shapes(64, random_state=3)
    c = make_shapes(64, random_state=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    # A Generator is used as is and advances: two draws from it differ.
    rng = np.random.default_rng(3)
    first, second = make_shapes(8, random_state=rng), make_shapes(8, random_state=rng)
    assert not np.array_equal(first[0], second[0])


def test_make_shapes_deterministic_across_chunks():
    # More samples than one drawing chunk: the result still depends on the seed only.
    a = make_shapes(1100, image_size=8, random_state=1)
    b = make_shapes(1100, image_size=8, random_state=1)
    np.testing.assert_array_equal(a[0], b[0])


def _normalized(X):
    """Noiseless images rescaled to coverage in [0, 1]: 0 background, 1 shape."""
    images = X[:, 0].astype(np.float64)
    low = images.min(axis=(1, 2), keepdims=True)
    high = images.max(axis=(1, 2), keepdims=True)
    return (images - low) / (high - low)


def test_noiseless_images_are_a_flat_background_and_a_shape_inside_the_frame():
    X, _ = make_shapes(200, n_classes=8, noise=0.0, random_state=0)
    coverage = _normalized(X)
    # Every image has a shape: some pixels fully covered, most of the border empty.
    assert (coverage.reshape(200, -1).max(axis=1) == 1).all()
    border = np.concatenate([coverage[:, 0], coverage[:, -1], coverage[:, :, 0],
                             coverage[:, :, -1]], axis=1)
    assert border.max() == 0.0


def _radial_profiles(coverage, n_bins=8):
    """Mean coverage in rings around each image's centroid, at distances scaled by
    its radius of gyration: the same for a shape wherever, however large and however
    turned it is drawn, so it compares kinds of shape and not their placement."""
    rows, cols = np.mgrid[:coverage.shape[1], :coverage.shape[2]]
    mass = coverage.sum(axis=(1, 2))
    cy = (coverage * rows).sum(axis=(1, 2)) / mass
    cx = (coverage * cols).sum(axis=(1, 2)) / mass
    distance = np.hypot(rows - cy[:, None, None], cols - cx[:, None, None])
    gyration = np.sqrt((coverage * distance ** 2).sum(axis=(1, 2)) / mass)
    ring = np.minimum((distance / gyration[:, None, None] * 4).astype(int), n_bins - 1)
    profiles = np.empty((len(coverage), n_bins))
    for b in range(n_bins):
        inside = ring == b
        profiles[:, b] = (coverage * inside).sum(axis=(1, 2)) / np.maximum(inside.sum(axis=(1, 2)), 1)
    return profiles


def test_classes_differ_more_than_samples_of_one_class():
    # The mean radial profile of each class, from two disjoint halves of its samples:
    # every pair of classes is far further apart than the two halves of one class.
    X, y = make_shapes(1600, n_classes=8, noise=0.0, random_state=0)
    profiles = _radial_profiles(_normalized(X))
    halves, means = [], []
    for k in range(8):
        rows = profiles[y == k]
        half = len(rows) // 2
        halves.append(np.linalg.norm(rows[:half].mean(0) - rows[half:].mean(0)))
        means.append(rows.mean(0))
    between = min(np.linalg.norm(means[i] - means[j]) for i in range(8) for j in range(i))
    assert between > 4 * max(halves)


def test_position_size_and_rotation_vary_within_a_class():
    X, y = make_shapes(800, n_classes=8, noise=0.0, random_state=0)
    coverage = _normalized(X)
    rows, cols = np.mgrid[:28, :28]
    for k, name in enumerate(SHAPE_NAMES):
        images = coverage[y == k]
        mass = images.sum(axis=(1, 2))
        cy = (images * rows).sum(axis=(1, 2)) / mass
        cx = (images * cols).sum(axis=(1, 2)) / mass
        assert cx.std() > 1.5 and cy.std() > 1.5, name          # position
        assert mass.std() / mass.mean() > 0.15, name            # size
        if name in ("ellipse", "bars"):
            # Orientation of the long axis from second moments, as a doubled angle
            # so that 0 and 180 degrees agree; uniform angles average to about 0.
            mu20 = (images * (cols - cx[:, None, None]) ** 2).sum(axis=(1, 2))
            mu02 = (images * (rows - cy[:, None, None]) ** 2).sum(axis=(1, 2))
            mu11 = (images * (cols - cx[:, None, None]) * (rows - cy[:, None, None])).sum(axis=(1, 2))
            doubled = np.arctan2(2 * mu11, mu20 - mu02)
            assert abs(np.exp(1j * doubled).mean()) < 0.3, name


@pytest.mark.parametrize("kwargs, match", [
    ({"n_samples": 0}, "n_samples must be a positive integer, got 0"),
    ({"n_samples": 2.5}, "n_samples must be a positive integer, got 2.5"),
    ({"n_samples": True}, "n_samples must be a positive integer, got True"),
    ({"n_samples": 10, "image_size": 7}, "image_size must be an integer >= 8, got 7"),
    ({"n_samples": 10, "n_classes": 1}, r"n_classes must be an integer in \[2, 8\], got 1"),
    ({"n_samples": 10, "n_classes": 9}, r"n_classes must be an integer in \[2, 8\], got 9"),
    ({"n_samples": 10, "noise": -0.1}, r"noise must be a non-negative finite number, got -0.1"),
    ({"n_samples": 10, "noise": float("nan")}, "noise must be a non-negative finite number, got nan"),
])
def test_make_shapes_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_shapes(**kwargs)


# ------------------------------------------------------------------- colour shapes

def test_colour_shapes_shape_range_and_determinism():
    X, y = make_shapes(40, image_size=12, n_classes=8, channels=3, random_state=2)
    assert X.shape == (40, 3, 12, 12) and X.dtype == np.float32 and X.flags.c_contiguous
    assert X.min() >= 0.0 and X.max() <= 1.0
    again, y_again = make_shapes(40, image_size=12, n_classes=8, channels=3, random_state=2)
    np.testing.assert_array_equal(X, again)
    # The labels come from the same draws as in grayscale: only the colours differ.
    np.testing.assert_array_equal(y, make_shapes(40, image_size=12, n_classes=8,
                                                 random_state=2)[1])
    np.testing.assert_array_equal(y, y_again)


def test_colour_shapes_are_one_colour_on_another_with_the_grayscale_outline():
    X, _ = make_shapes(60, image_size=16, channels=3, noise=0.0, random_state=0)
    gray, _ = make_shapes(60, image_size=16, channels=1, noise=0.0, random_state=0)
    inside = _normalized(gray) == 1.0
    outside = _normalized(gray) == 0.0
    for image, fully, empty in zip(X, inside, outside):
        shape_colour = image[:, fully]          # (3, pixels)
        background = image[:, empty]
        # Flat colours: every fully covered pixel the same, every empty one too...
        assert np.ptp(shape_colour, axis=1).max() < 1e-6
        assert np.ptp(background, axis=1).max() < 1e-6
        # ... and far enough apart to see.
        assert np.linalg.norm(shape_colour[:, 0] - background[:, 0]) >= 0.5 - 1e-6


def test_the_mean_colour_does_not_reveal_the_class():
    # A CNN must learn shape: a linear model on the three channel means is at chance.
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = make_shapes(1200, image_size=12, n_classes=6, channels=3, random_state=0)
    means = X.mean(axis=(2, 3))
    accuracy = cross_val_score(LogisticRegression(), means, y, cv=4).mean()
    assert accuracy < 1 / 6 + 0.05, accuracy


# Images and labels of make_shapes(30, image_size=10, random_state=4) as drawn before
# colour existed (NumPy 2.4).  NumPy does not promise the same random streams across
# versions, so the digest is checked only on the version that recorded it.
GRAYSCALE_DIGEST = ("2.4", "91962d3110f0dc6684b76b5575d9dd7e0a137872a65efeb9f1e80dca97e4abea")


def test_grayscale_is_the_default_and_unchanged():
    a = make_shapes(30, image_size=10, random_state=4)
    b = make_shapes(30, image_size=10, random_state=4, channels=1)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape == (30, 1, 10, 10)
    version, expected = GRAYSCALE_DIGEST
    if not np.__version__.startswith(version + "."):
        pytest.skip(f"digest recorded with NumPy {version}, this is {np.__version__}")
    assert hashlib.sha256(a[0].tobytes() + a[1].tobytes()).hexdigest() == expected


@pytest.mark.parametrize("channels", [0, 2, 4, 3.0, True, "3"])
def test_channels_other_than_1_or_3_are_refused(channels):
    with pytest.raises(ValueError, match=rf"channels must be one of \(1, 3\), got {channels!r}"):
        make_shapes(5, channels=channels)


def test_load_shapes_in_colour_and_by_name():
    data = load_shapes(n_samples=120, image_size=12, channels=3, random_state=1)
    assert data.name == "shapes_rgb" and data.input_shape == (3, 12, 12)
    assert "shapes_rgb" in available_datasets()
    named = load_dataset("shapes_rgb", n_samples=120, image_size=12, random_state=1)
    np.testing.assert_array_equal(named.X_train, data.X_train)
    assert named.class_names == SHAPE_NAMES[:6]


def test_load_shapes_is_registered_and_splits():
    assert "shapes" in available_datasets()
    data = load_dataset("shapes", n_samples=300, image_size=16, random_state=1)
    assert data.name == "shapes" and data.class_names == SHAPE_NAMES[:6]
    assert data.input_shape == (1, 16, 16) and data.X_train.dtype == np.float32
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (210, 30, 60)
    again = load_shapes(n_samples=300, image_size=16, random_state=1)
    np.testing.assert_array_equal(data.X_test, again.X_test)


# ----------------------------------------------------------------- OpenML (offline)

class _Response:
    """What scikit-learn reads from urlopen: a gzip body, headers, close()."""

    def __init__(self, body):
        self._body = BytesIO(body)

    def read(self, amt=-1):
        return self._body.read(amt)

    def info(self):
        return {"Content-Encoding": "gzip"}

    def close(self):
        self._body.close()


class FakeOpenML:
    """Serves one small dataset in OpenML's formats, from gzipped files in ``folder``.

    Each URL may be requested once: a second request means the cache was not used.
    Set ``online = False`` to answer every request like a machine without network.
    """

    def __init__(self, folder, data_id, pixels, labels, quote=""):
        self.online = True
        self.requested = []
        folder.mkdir(parents=True, exist_ok=True)
        n_rows, n_pixels = pixels.shape
        lines = ["@RELATION fake", ""]
        lines += [f"@ATTRIBUTE pixel{j + 1} NUMERIC" for j in range(n_pixels)]
        lines += ["@ATTRIBUTE class {0,1,2,3,4,5,6,7,8,9}", "", "@DATA"]
        lines += [",".join(map(str, row)) + f",{quote}{label}{quote}"
                  for row, label in zip(pixels, labels)]
        arff = ("\n".join(lines) + "\n").encode()
        features = [{"index": str(j), "name": f"pixel{j + 1}", "data_type": "numeric",
                     "is_target": "false", "is_ignore": "false", "is_row_identifier": "false",
                     "number_of_missing_values": "0"} for j in range(n_pixels)]
        features.append({"index": str(n_pixels), "name": "class", "data_type": "nominal",
                         "nominal_value": [str(d) for d in range(10)], "is_target": "true",
                         "is_ignore": "false", "is_row_identifier": "false",
                         "number_of_missing_values": "0"})
        self.arff_url = f"https://www.openml.org/data/v1/download/{data_id + 1000}/fake.arff"
        description = {"id": str(data_id), "name": "fake", "version": "1", "format": "ARFF",
                       "description": "A tiny stand-in for an OpenML image set.",
                       "url": self.arff_url, "file_id": str(data_id + 1000),
                       "default_target_attribute": "class", "status": "active",
                       "md5_checksum": hashlib.md5(arff).hexdigest()}
        api = "https://www.openml.org/api/v1/json/data"
        bodies = {
            f"{api}/{data_id}": {"data_set_description": description},
            f"{api}/features/{data_id}": {"data_features": {"feature": features}},
            f"{api}/qualities/{data_id}": {"data_qualities": {"quality": [
                {"name": "NumberOfInstances", "value": f"{n_rows}.0"}]}},
        }
        self.files = {}
        for i, (url, body) in enumerate(bodies.items()):
            self.files[url] = self._write(folder / f"response{i}.json.gz", json.dumps(body).encode())
        self.files[self.arff_url] = self._write(folder / "data.arff.gz", arff)

    @staticmethod
    def _write(path, content):
        with gzip.open(path, "wb") as f:
            f.write(content)
        return path

    def urlopen(self, request, *args, **kwargs):
        url = request.get_full_url()
        if not self.online:
            raise URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
        assert url in self.files, f"unexpected request {url}"
        assert url not in self.requested, f"{url} requested twice: the cache was not used"
        self.requested.append(url)
        return _Response(self.files[url].read_bytes())


N_TRAIN, N_TEST = 100, 20


def _fake_images(n_pixels):
    """Rows whose pixel 0 is the row number, so every split row can be traced back."""
    rows = np.arange(N_TRAIN + N_TEST)[:, None]
    pixels = (rows + 3 * np.arange(n_pixels)[None, :]) % 256
    return pixels, rows[:, 0] % 10


FETCHERS = {"mnist": (fetch_mnist, 554, MNIST_CLASSES, (1, 28, 28)),
            "fashion_mnist": (fetch_fashion_mnist, 40996, FASHION_MNIST_CLASSES, (1, 28, 28)),
            "cifar10": (fetch_cifar10, 40927, CIFAR10_CLASSES, (3, 32, 32))}


def _serve(name, tmp_path, monkeypatch):
    fetch, data_id, class_names, image_shape = FETCHERS[name]
    n_pixels = int(np.prod(image_shape))
    pixels, labels = _fake_images(n_pixels)
    server = FakeOpenML(tmp_path / "server", data_id, pixels, labels)
    monkeypatch.setattr(sklearn_openml, "urlopen", server.urlopen)
    # Retries after a failed request wait `delay` seconds each; there is no server to wait for.
    monkeypatch.setattr(sklearn_openml, "time", types.SimpleNamespace(sleep=lambda seconds: None))
    return types.SimpleNamespace(fetch=fetch, name=name, data_id=data_id, class_names=class_names,
                                 server=server, home=str(tmp_path / "home"), pixels=pixels,
                                 labels=labels, image_shape=image_shape, n_pixels=n_pixels)


@pytest.fixture(params=list(FETCHERS))
def openml(request, tmp_path, monkeypatch):
    return _serve(request.param, tmp_path, monkeypatch)


@pytest.fixture(params=["mnist", "fashion_mnist"])
def openml_28(request, tmp_path, monkeypatch):
    """Only the 28 x 28 sets: for tests of code that all three share, where CIFAR-10's
    3,072 columns would only make the test slower."""
    return _serve(request.param, tmp_path, monkeypatch)


def _arrays(data):
    return (data.X_train, data.y_train, data.X_val, data.y_val, data.X_test, data.y_test)


def _fetch(openml, **kwargs):
    kwargs = {"data_home": openml.home, "n_train": N_TRAIN, "n_test": N_TEST, "val_size": 0.2,
              **kwargs}
    return openml.fetch(**kwargs)


def test_fetch_downloads_caches_reshapes_and_splits(openml):
    data = _fetch(openml, random_state=0)
    assert sorted(openml.server.requested) == sorted(openml.server.files)

    # The files are cached under scikit-learn's data home.
    cache = os.path.join(openml.home, "openml", "openml.org")
    assert os.path.isfile(os.path.join(cache, "api", "v1", "json", "data", f"{openml.data_id}.gz"))
    assert os.path.isfile(os.path.join(cache, "data", "v1", "download",
                                       str(openml.data_id + 1000), "fake.arff.gz"))

    assert data.name == openml.name and data.class_names == openml.class_names
    assert data.input_shape == openml.image_shape
    for X, y in (data.train, data.val, data.test):
        assert X.dtype == np.float32 and y.dtype == np.int64
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (80, 20, 20)
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0

    # Pixel 0 of each image, times 255, is the row it came from: the last N_TEST rows
    # are the test split, in order; train and validation share the first N_TRAIN.
    def source_rows(X):
        return np.rint(X[:, 0, 0, 0] * 255).astype(int)

    np.testing.assert_array_equal(source_rows(data.X_test), np.arange(N_TRAIN, N_TRAIN + N_TEST))
    first = np.concatenate([source_rows(data.X_train), source_rows(data.X_val)])
    np.testing.assert_array_equal(np.sort(first), np.arange(N_TRAIN))
    # Row-major reshape: pixel j of a row lands at (j // 28, j % 28) in MNIST, at
    # channel j // 1024, row (j % 1024) // 32, column j % 32 in CIFAR-10; labels follow.
    for X, y in (data.train, data.val, data.test):
        rows = source_rows(X)
        expected = (openml.pixels[rows] / 255).astype(np.float32)
        for j in (0, 1, 31, 32, openml.n_pixels // 3, openml.n_pixels - 1):
            np.testing.assert_array_equal(X[(slice(None),) + np.unravel_index(j, X.shape[1:])],
                                          expected[:, j])
        np.testing.assert_array_equal(X.reshape(len(X), openml.n_pixels), expected)
        np.testing.assert_array_equal(y, openml.labels[rows])
    # The validation split is stratified: two of each digit.
    np.testing.assert_array_equal(np.bincount(data.y_val, minlength=10), np.full(10, 2))

    # Offline now: the second call is served from the cache alone.
    openml.server.online = False
    again = _fetch(openml, random_state=0)
    for a, b in zip(_arrays(data), _arrays(again)):
        np.testing.assert_array_equal(a, b)
    other = _fetch(openml, random_state=1)
    assert not np.array_equal(other.y_val, data.y_val) or not np.array_equal(other.X_val, data.X_val)
    assert len(_fetch(openml, val_size=0).y_val) == 0


def test_fetch_is_registered(openml):
    assert openml.name in available_datasets()
    data = load_dataset(openml.name, data_home=openml.home, n_train=N_TRAIN, n_test=N_TEST,
                        val_size=0.2, random_state=0)
    assert data.class_names == openml.class_names


def test_without_network_or_cache_one_clear_error(openml, recwarn):
    openml.server.online = False
    with pytest.raises(DatasetUnavailableError) as info:
        _fetch(openml, n_retries=2)
    error = info.value
    assert isinstance(error, OSError)
    message = str(error)
    assert "\n" not in message
    assert os.path.join(get_data_home(openml.home), "openml") in message
    assert f"OpenML data id {openml.data_id}" in message
    assert f"cynn.datasets.fetch_{openml.name}()" in message and "network access" in message
    assert "Temporary failure in name resolution" in message
    # No urllib traceback attached, and no retry warnings on the way.
    assert error.__cause__ is None and error.__suppress_context__
    assert not [w for w in recwarn if "network error" in str(w.message)]


def test_interrupted_download_leaves_a_usable_cache(openml_28):
    openml = openml_28
    def lose_the_data(request, *args, **kwargs):
        if request.get_full_url() == openml.server.arff_url:
            raise URLError(ConnectionResetError(104, "Connection reset by peer"))
        return openml.server.urlopen(request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sklearn_openml, "urlopen", lose_the_data)
        with pytest.raises(DatasetUnavailableError, match="Connection reset by peer"):
            _fetch(openml, n_retries=1)
    # The JSON files are cached, the data file is not: only it is downloaded now.
    data = _fetch(openml)
    assert openml.server.requested[-1] == openml.server.arff_url
    assert len(data.y_test) == N_TEST


@pytest.mark.parametrize("quote", ["", "'"])
@pytest.mark.parametrize("parser", ["pandas", "liac-arff"])
def test_labels_parse_quoted_or_not_with_either_parser(openml_28, tmp_path, monkeypatch, quote,
                                                       parser):
    openml = openml_28
    # ARFF allows nominal values quoted or bare; without pandas, scikit-learn's pure
    # Python parser is used.  Bare digits are the case that breaks scikit-learn 1.9.1
    # with pandas >= 3.1 unless the class column is read as strings.
    server = FakeOpenML(tmp_path / "quoted", openml.data_id, openml.pixels, openml.labels, quote)
    monkeypatch.setattr(sklearn_openml, "urlopen", server.urlopen)
    if parser == "liac-arff":
        monkeypatch.setitem(sys.modules, "pandas", None)    # `import pandas` fails
    data = _fetch(openml, val_size=0)
    np.testing.assert_array_equal(data.y_train, openml.labels[:N_TRAIN])
    np.testing.assert_array_equal(data.y_test, openml.labels[N_TRAIN:])
    np.testing.assert_array_equal(data.X_test.reshape(N_TEST, openml.n_pixels),
                                  (openml.pixels[N_TRAIN:] / 255).astype(np.float32))


@pytest.mark.parametrize("kwargs, match", [
    ({"val_size": 1.0}, r"val_size must be a number in \[0, 1\), got 1.0"),
    ({"val_size": -0.1}, r"val_size must be a number in \[0, 1\), got -0.1"),
    ({"n_train": 0}, "n_train must be a positive integer, got 0"),
    ({"n_test": 2.0}, "n_test must be a positive integer, got 2.0"),
])
def test_fetch_rejects_bad_arguments_before_downloading(openml_28, kwargs, match):
    openml = openml_28
    with pytest.raises(ValueError, match=match):
        _fetch(openml, **kwargs)
    assert openml.server.requested == []


def test_fetch_rejects_a_file_of_the_wrong_size(openml):
    n = openml.n_pixels
    with pytest.raises(ValueError, match=rf"expected 130 rows \(n_train=110 \+ n_test=20\) "
                                         rf"of {n} pixels, got X of shape \(120, {n}\)"):
        _fetch(openml, n_train=110)


def test_cifar10_is_described_as_openml_serves_it():
    doc = " ".join(fetch_cifar10.__doc__.split())
    for fact in ('"CIFAR_10", data id 40927', "60,000 rows of 3,072 pixel columns",
                 "channel-major", "first 1,024 values are the red channel, then 1,024 green, "
                 "then 1,024 blue, each 32 x 32 in row-major order", "first 50,000 rows are the "
                 "standard training split", "last 10,000 the standard test split",
                 "order comes from OpenML's description", 'target column "class" holds 0 .. 9',
                 "(N, 3, 32, 32)", "5,000 of the 50,000"):
        assert fact in doc, fact
    assert CIFAR10_CLASSES == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                               "horse", "ship", "truck")


def test_cli_reports_a_missing_dataset_in_one_line(openml, tmp_path, monkeypatch, capsys):
    openml.server.online = False
    monkeypatch.setenv("SCIKIT_LEARN_DATA", openml.home)
    run = tmp_path / "run"
    status = cli.main(["train", "--dataset", openml.name, "--epochs", "1", "--out", str(run),
                       "--quiet"])
    captured = capsys.readouterr()
    assert status == 2
    lines = captured.err.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: cannot load dataset {openml.name!r}: ")
    assert os.path.join(openml.home, "openml") in lines[0]
    assert not run.exists()
