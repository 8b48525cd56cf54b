"""cynn.datasets: the scikit-learn-backed loaders, the registry and minibatching.

The loader tests check each split against scikit-learn's raw data, row by row: every
raw sample lands in exactly one split with its own label, and the tables are
standardized with the statistics of the training rows and nothing else.
"""
import dataclasses
import math

import numpy as np
import pytest
import sklearn.datasets
from hypothesis import given, settings
from hypothesis import strategies as st

import cynn.datasets.loaders
from cynn.datasets import (Dataset, available_datasets, iterate_minibatches, load_breast_cancer,
                           load_dataset, load_digits, load_iris, load_wine, register)

LOADERS = {"digits": load_digits, "iris": load_iris, "wine": load_wine,
           "breast_cancer": load_breast_cancer}
TABLES = ["iris", "wine", "breast_cancer"]
SPLITS = ("train", "val", "test")


def _raw(name):
    """scikit-learn's data as float64 rows ``(n, features)``, labels and class names."""
    bunch = getattr(sklearn.datasets, f"load_{name}")()
    return bunch.data.astype(np.float64), bunch.target, [str(c) for c in bunch.target_names]


def _split_arrays(data):
    return [getattr(data, split) for split in SPLITS]


def _unscale(data, name, raw_X):
    """Undo the loader's scaling, giving raw-unit rows for each split.

    Digits are divided by 16.  A table is standardized column by column with one
    ``(x - mean) / std`` for all splits, so sorting each column of the union of the
    splits and of the raw data pairs up equal samples; a least-squares line through
    those pairs recovers ``std`` and ``mean`` without assuming which rows were used.
    """
    flats = [X.reshape(len(X), -1).astype(np.float64) for X, _ in _split_arrays(data)]
    if name == "digits":
        return [X * 16.0 for X in flats]
    Z = np.sort(np.concatenate(flats), axis=0)
    R = np.sort(raw_X, axis=0)
    Zc, Rc = Z - Z.mean(axis=0), R - R.mean(axis=0)
    scale = (Zc * Rc).sum(axis=0) / (Zc * Zc).sum(axis=0)
    shift = R.mean(axis=0) - scale * Z.mean(axis=0)
    return [X * scale + shift for X in flats]


def _match_rows(data, name):
    """Index into the raw data of every row of every split.

    Each row is matched to the nearest raw row *with the same label*, so a label
    that drifted away from its image (X and y shuffled separately) shows up as a
    large distance.  Exact duplicates in the raw data (iris has one pair) map to the
    first copy, so the returned indices are compared as multisets.
    """
    raw_X, raw_y, _ = _raw(name)
    scale = raw_X.std(axis=0)
    scale[scale == 0] = 1.0
    indices = []
    reference = raw_X / scale
    for rows, (_, y) in zip(_unscale(data, name, raw_X), _split_arrays(data)):
        rows = rows / scale
        # |a - b|^2 expanded, so that the digits' 1797 x 1797 pairs take one product
        # instead of a (1797, 1797, 64) temporary.
        squared = ((rows ** 2).sum(axis=1)[:, None] + (reference ** 2).sum(axis=1)[None, :]
                   - 2.0 * rows @ reference.T)
        distance = np.sqrt(np.maximum(squared, 0.0))
        distance[y[:, None] != raw_y[None, :]] = np.inf
        nearest = distance.argmin(axis=1)
        assert distance[np.arange(len(rows)), nearest].max(initial=0) < 1e-4, \
            f"{name}: a row of the split is not a raw sample with the same label"
        indices.append(nearest)
    return indices


def _first_copy(raw_X, raw_y):
    """For each raw row, the index of the first identical (row, label)."""
    keyed = np.column_stack([raw_X, raw_y])
    _, first, inverse = np.unique(keyed, axis=0, return_index=True, return_inverse=True)
    return first[inverse.ravel()]


# --- loaders ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOADERS)
def test_every_raw_sample_is_in_exactly_one_split_with_its_label(name):
    data = LOADERS[name](test_size=0.2, val_size=0.1, random_state=0)
    raw_X, raw_y, _ = _raw(name)
    n = len(raw_y)
    assert [len(X) for X, _ in _split_arrays(data)] == [len(y) for _, y in _split_arrays(data)]
    assert sum(len(y) for _, y in _split_arrays(data)) == n
    assert abs(len(data.y_test) - 0.2 * n) <= 1 and abs(len(data.y_val) - 0.1 * n) <= 1

    canonical = _first_copy(raw_X, raw_y)
    found = canonical[np.concatenate(_match_rows(data, name))]
    # Same multiset: nothing lost, nothing in two splits, duplicates kept as often
    # as the raw data has them.
    np.testing.assert_array_equal(np.bincount(found, minlength=n),
                                  np.bincount(canonical, minlength=n))


@pytest.mark.parametrize("name", LOADERS)
def test_shapes_dtypes_and_class_names(name):
    data = LOADERS[name]()
    raw_X, raw_y, class_names = _raw(name)
    input_shape = (1, 8, 8) if name == "digits" else (raw_X.shape[1],)
    assert isinstance(data, Dataset) and data.name == name
    assert data.input_shape == input_shape
    assert data.n_classes == len(class_names) == len(np.unique(raw_y))
    assert list(data.class_names) == class_names
    assert all(isinstance(c, str) for c in data.class_names)
    for split, (X, y) in zip(SPLITS, _split_arrays(data)):
        assert X.shape == (len(y),) + input_shape, split
        assert X.dtype == np.float32 and y.dtype == np.int64, split
        assert y.ndim == 1 and y.min() >= 0 and y.max() < data.n_classes, split
        assert np.isfinite(X).all(), split
    for split in SPLITS:
        X, y = getattr(data, split)
        assert X is getattr(data, f"X_{split}") and y is getattr(data, f"y_{split}")


def test_digits_are_the_raw_images_divided_by_16():
    data = load_digits()
    assert data.class_names == tuple(str(d) for d in range(10))
    X = np.concatenate([data.X_train, data.X_val, data.X_test])
    assert X.min() == 0.0 and X.max() == 1.0
    # Raw pixels are the integers 0 .. 16: dividing by 16 (not by the max of each
    # image, not by 255) leaves exact multiples of 1/16.
    np.testing.assert_array_equal(X * 16, np.round(X * 16))


@pytest.mark.parametrize("name", LOADERS)
def test_splits_are_stratified(name):
    data = LOADERS[name](random_state=3)
    counts = [np.bincount(y, minlength=data.n_classes) for _, y in _split_arrays(data)]
    whole = sum(counts)
    for split, count in zip(SPLITS, counts):
        expected = whole * count.sum() / whole.sum()
        # A stratified split is within one sample of the exact share per class (two
        # for validation, which is split off what the test split left); a random
        # split of the 180 validation digits misses that by several samples.
        assert np.abs(count - expected).max() <= 2, (split, count, expected)


@pytest.mark.parametrize("name", TABLES)
def test_tables_are_standardized_with_training_statistics_only(name):
    data = LOADERS[name](random_state=1)
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-5)
    # np.std's (and StandardScaler's) biased estimate: ddof=0.
    np.testing.assert_allclose(data.X_train.std(axis=0), 1, atol=1e-4)

    raw_X, _, _ = _raw(name)
    train, val, test = (raw_X[i] for i in _match_rows(data, name))
    mean, std = train.mean(axis=0), train.std(axis=0)
    for scaled, rows in ((data.X_val, val), (data.X_test, test)):
        np.testing.assert_allclose(scaled, (rows - mean) / std, rtol=1e-5, atol=1e-5)
    # Statistics of the whole data (the leak) give measurably different test features.
    leaked = (test - raw_X.mean(axis=0)) / raw_X.std(axis=0)
    assert np.abs(data.X_test - leaked).max() > 1e-3
    assert np.abs(data.X_test.mean(axis=0)).max() > 1e-3


@pytest.mark.parametrize("name", LOADERS)
def test_a_seed_reproduces_its_splits_and_another_seed_changes_them(name):
    a, b, c = (LOADERS[name](random_state=seed) for seed in (7, 7, 8))
    for (Xa, ya), (Xb, yb) in zip(_split_arrays(a), _split_arrays(b)):
        np.testing.assert_array_equal(Xa, Xb)
        np.testing.assert_array_equal(ya, yb)
    # Compare which raw samples each split holds: the scaled values alone would
    # differ with any change of the training rows, even if the test rows stayed put.
    for split, rows_a, rows_c in zip(SPLITS, _match_rows(a, name), _match_rows(c, name)):
        if split != "train":
            assert set(rows_a) != set(rows_c), split


@pytest.mark.parametrize("name", ["digits", "iris"])
def test_val_size_zero_gives_an_empty_well_shaped_validation_split(name):
    data = LOADERS[name](test_size=0.25, val_size=0)
    assert data.X_val.shape == (0,) + data.input_shape and data.X_val.dtype == np.float32
    assert data.y_val.shape == (0,) and data.y_val.dtype == np.int64
    assert len(data.y_train) + len(data.y_test) == len(_raw(name)[1])


def test_dataset_is_frozen():
    data = load_iris()
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.X_train = data.X_test
    assert "iris" in repr(data) and str(data.X_train.shape) in repr(data)


def test_datasets_compare_and_hash_by_identity():
    a, b = load_iris(), load_iris()
    assert a == a and a != b
    assert len({a, b}) == 2


@pytest.mark.parametrize("kwargs,named", [
    (dict(test_size=0), ["test_size", "0"]),
    (dict(test_size=1), ["test_size", "1"]),
    (dict(test_size=1.5), ["test_size", "1.5"]),
    (dict(test_size=-0.1), ["test_size", "-0.1"]),
    (dict(test_size=float("nan")), ["test_size", "nan"]),
    (dict(test_size="0.2"), ["test_size", "'0.2'"]),
    (dict(test_size=True), ["test_size", "True"]),
    (dict(val_size=-0.1), ["val_size", "-0.1"]),
    (dict(val_size=1.0), ["val_size", "1.0"]),
    (dict(val_size=None), ["val_size", "None"]),
    (dict(test_size=0.5, val_size=0.5), ["test_size", "val_size", "0.5"]),
    (dict(test_size=0.7, val_size=0.4), ["test_size", "val_size", "0.7", "0.4"]),
])
def test_bad_split_sizes_name_the_value(kwargs, named):
    with pytest.raises(ValueError) as info:
        load_iris(**kwargs)
    for word in named:
        assert word in str(info.value)


@pytest.mark.parametrize("kwargs,named", [
    (dict(val_size=0.01), ["val_size", "0.01"]),
    (dict(test_size=0.01), ["test_size", "0.01"]),
])
def test_a_split_too_small_to_stratify_names_the_argument(kwargs, named):
    with pytest.raises(ValueError) as info:
        load_iris(**kwargs)
    for word in named:
        assert word in str(info.value)


# --- registry --------------------------------------------------------------------------------

def test_load_dataset_dispatches_by_name_and_passes_arguments():
    names = available_datasets()
    assert isinstance(names, list) and {"digits", "iris", "wine", "breast_cancer"} <= set(names)
    for name, loader in LOADERS.items():
        data = load_dataset(name, test_size=0.3, val_size=0, random_state=5)
        direct = loader(test_size=0.3, val_size=0, random_state=5)
        assert data.name == name
        np.testing.assert_array_equal(data.X_test, direct.X_test)
        np.testing.assert_array_equal(data.y_train, direct.y_train)
        assert len(data.y_val) == 0


def test_unknown_dataset_lists_the_available_ones():
    with pytest.raises(ValueError) as info:
        load_dataset("mnst")
    message = str(info.value)
    assert "'mnst'" in message
    for name in available_datasets():
        assert name in message


def test_register_adds_a_loader(monkeypatch):
    # Work on a copy of the registry so that the toy loader does not outlive the test.
    monkeypatch.setattr(cynn.datasets.loaders, "_REGISTRY", dict(cynn.datasets.loaders._REGISTRY))
    calls = []

    def load_toy(test_size=0.2, val_size=0.1, random_state=0):
        calls.append((test_size, val_size, random_state))
        return load_iris(test_size=test_size, val_size=val_size, random_state=random_state)

    register("toy", load_toy)
    assert "toy" in available_datasets()
    load_dataset("toy", test_size=0.4, random_state=2)
    assert calls == [(0.4, 0.1, 2)]


# --- minibatching ----------------------------------------------------------------------------

def _xy(n, features=(2, 3)):
    """X whose row i is filled with i, and y = i: a batch shows which rows it holds."""
    X = np.broadcast_to(np.arange(n, dtype=np.float32).reshape((n,) + (1,) * len(features)),
                        (n,) + features).copy()
    return X, np.arange(n)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 70), batch_size=st.integers(1, 80), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_an_epoch_yields_every_sample_once(n, batch_size, shuffle, drop_last, seed):
    X, y = _xy(n)
    batches = list(iterate_minibatches(X, y, batch_size=batch_size, shuffle=shuffle,
                                       drop_last=drop_last, random_state=seed))
    n_batches = n // batch_size if drop_last else math.ceil(n / batch_size)
    assert len(batches) == n_batches
    seen = []
    for i, (xb, yb) in enumerate(batches):
        full = i < n_batches - 1 or drop_last or n % batch_size == 0
        assert len(yb) == (batch_size if full else n % batch_size)
        assert xb.shape == (len(yb),) + X.shape[1:] and xb.dtype == X.dtype
        np.testing.assert_array_equal(xb, X[yb])     # rows stay with their labels
        seen.append(yb)
    seen = np.concatenate(seen) if seen else np.array([], dtype=int)
    assert len(np.unique(seen)) == len(seen) == (n_batches * batch_size if drop_last else n)
    if not drop_last:
        np.testing.assert_array_equal(np.sort(seen), y)
    if not shuffle:
        np.testing.assert_array_equal(seen, np.arange(len(seen)))


def test_shuffling_changes_the_order_and_a_seed_fixes_it():
    X, y = _xy(100)

    def order(**kwargs):
        return np.concatenate([yb for _, yb in iterate_minibatches(X, y, batch_size=16, **kwargs)])

    np.testing.assert_array_equal(order(shuffle=False), y)
    shuffled = order(random_state=0)
    assert not np.array_equal(shuffled, y)
    np.testing.assert_array_equal(shuffled, order(random_state=0))
    np.testing.assert_array_equal(shuffled, order(random_state=np.random.default_rng(0)))
    assert not np.array_equal(shuffled, order(random_state=1))


def test_a_generator_reshuffles_each_epoch_reproducibly():
    X, y = _xy(50)

    def epochs(rng, count=3):
        return [np.concatenate([yb for _, yb in iterate_minibatches(X, y, batch_size=8,
                                                                       random_state=rng)])
                for _ in range(count)]

    first = epochs(np.random.default_rng(4))
    assert not np.array_equal(first[0], first[1]) and not np.array_equal(first[1], first[2])
    for a, b in zip(first, epochs(np.random.default_rng(4))):
        np.testing.assert_array_equal(a, b)


def test_without_y_batches_are_plain_arrays():
    X, _ = _xy(10, features=(4,))
    batches = list(iterate_minibatches(X, batch_size=4, shuffle=False))
    assert all(isinstance(b, np.ndarray) for b in batches)
    assert [b.shape for b in batches] == [(4, 4), (4, 4), (2, 4)]
    np.testing.assert_array_equal(np.concatenate(batches), X)


def test_drop_last_with_fewer_samples_than_a_batch_yields_nothing():
    assert list(iterate_minibatches(np.zeros((3, 2)), batch_size=4, drop_last=True)) == []


@pytest.mark.parametrize("shuffle", [True, False])
def test_memmap_input_gives_the_same_batches_as_in_memory(tmp_path, shuffle):
    X, y = _xy(45, features=(1, 4, 4))
    mx = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="w+", shape=X.shape)
    my = np.memmap(tmp_path / "y.i64", dtype=np.int64, mode="w+", shape=y.shape)
    mx[:], my[:] = X, y
    mx.flush(), my.flush()
    del mx, my
    mx = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="r", shape=X.shape)
    my = np.memmap(tmp_path / "y.i64", dtype=np.int64, mode="r", shape=y.shape)
    from_file = list(iterate_minibatches(mx, my, batch_size=10, shuffle=shuffle, random_state=3))
    in_memory = list(iterate_minibatches(X, y, batch_size=10, shuffle=shuffle, random_state=3))
    assert len(from_file) == len(in_memory) == 5
    for (fx, fy), (mx_, my_) in zip(from_file, in_memory):
        assert fx.dtype == np.float32 and fy.dtype == np.int64
        np.testing.assert_array_equal(fx, mx_)
        np.testing.assert_array_equal(fy, my_)


class _ReadLog(np.ndarray):
    """An ndarray that records how many rows each indexing reads."""

    def __getitem__(self, index):
        self.rows_read.append(len(np.arange(len(self))[index]))
        return np.asarray(self)[index]


@pytest.mark.parametrize("shuffle", [True, False])
def test_only_the_rows_of_each_batch_are_read(shuffle):
    X = _xy(37)[0].view(_ReadLog)
    X.rows_read = []
    batches = list(iterate_minibatches(X, batch_size=8, shuffle=shuffle, random_state=0))
    assert len(batches) == 5
    assert X.rows_read and max(X.rows_read) <= 8 and sum(X.rows_read) == 37


def test_changing_a_batch_in_place_leaves_the_data_alone():
    X, y = _xy(12)
    for shuffle in (True, False):
        for xb, _ in iterate_minibatches(X, y, batch_size=5, shuffle=shuffle):
            xb += 100
        np.testing.assert_array_equal(X, _xy(12)[0])


@pytest.mark.parametrize("args,kwargs,named", [
    ((np.zeros((5, 2)), np.zeros(4)), {}, ["5", "4"]),
    ((np.zeros((0, 2)),), {}, ["empty"]),
    ((np.zeros(5),), dict(batch_size=0), ["batch_size", "0"]),
    ((np.zeros(5),), dict(batch_size=-3), ["batch_size", "-3"]),
    ((np.zeros(5),), dict(batch_size=2.5), ["batch_size", "2.5"]),
    ((np.zeros(5),), dict(batch_size=True), ["batch_size", "True"]),
    ((np.zeros(5),), dict(batch_size="8"), ["batch_size", "'8'"]),
    ((np.zeros(5),), dict(batch_size=None), ["batch_size", "None"]),
])
def test_bad_minibatch_arguments_raise_before_iterating(args, kwargs, named):
    # No next(): the error must come from the call, where the mistake is, not from
    # the first step of a training loop.
    with pytest.raises((ValueError, TypeError)) as info:
        iterate_minibatches(*args, **kwargs)
    for word in named:
        assert word in str(info.value)


def test_numpy_integer_batch_size_is_accepted():
    assert [len(b) for b in iterate_minibatches(np.zeros(5), batch_size=np.int64(2),
                                                shuffle=False)] == [2, 2, 1]


@pytest.mark.parametrize("random_state,named", [("seed", "'seed'"), (-1, "-1"), (1.5, "1.5")])
def test_a_bad_random_state_raises_before_iterating(random_state, named):
    with pytest.raises((ValueError, TypeError)) as info:
        iterate_minibatches(np.zeros(5), random_state=random_state)
    assert "random_state" in str(info.value) and named in str(info.value)
