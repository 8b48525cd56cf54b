"""Dataset loaders and minibatching."""
import numpy as np
import pytest

from cynn.datasets import (available_datasets, iterate_minibatches, load_breast_cancer, load_dataset,
                           load_digits, load_iris, load_wine)

LOADERS = [load_digits, load_iris, load_wine, load_breast_cancer]


@pytest.mark.parametrize("loader", LOADERS)
def test_splits_are_disjoint_stratified_and_complete(loader):
    data = loader(test_size=0.2, val_size=0.1, random_state=0)
    sizes = [len(data.y_train), len(data.y_val), len(data.y_test)]
    total = sum(sizes)
    assert abs(sizes[1] - 0.1 * total) <= 2 and abs(sizes[2] - 0.2 * total) <= 2
    assert data.y_train.dtype == np.int64 and data.X_train.dtype == np.float32
    rows = [tuple(r.ravel()) for X in (data.X_train, data.X_val, data.X_test) for r in X]
    # Digits has a few duplicate images in the raw data; every other row is unique.
    assert len(set(rows)) >= total - 5
    full = np.bincount(np.concatenate([data.y_train, data.y_val, data.y_test])) / total
    for y in (data.y_train, data.y_test):
        np.testing.assert_allclose(np.bincount(y, minlength=len(full)) / len(y), full, atol=0.05)
    assert data.n_classes == len(full) == len(data.class_names)


def test_digits_are_images_in_unit_range():
    data = load_digits()
    assert data.input_shape == (1, 8, 8)
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0
    assert data.class_names == tuple(str(i) for i in range(10))


@pytest.mark.parametrize("loader", [load_iris, load_wine, load_breast_cancer])
def test_tables_are_standardized_on_the_training_split(loader):
    data = loader()
    np.testing.assert_allclose(data.X_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.X_train.std(axis=0), 1, atol=1e-4)
    assert np.abs(data.X_test.mean(axis=0)).max() > 1e-3   # test statistics were not used


def test_seeds_reproduce_and_differ():
    a, b, c = load_wine(random_state=1), load_wine(random_state=1), load_wine(random_state=2)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.y_train, c.y_train) or not np.array_equal(a.X_train, c.X_train)


def test_val_size_zero_gives_an_empty_validation_split():
    data = load_iris(val_size=0)
    assert data.X_val.shape == (0, 4) and len(data.y_val) == 0


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(test_size=0), r"test_size must be in \(0, 1\), got 0"),
    (dict(test_size=0.5, val_size=0.5), r"test_size \+ val_size must be below 1, got 0.5 \+ 0.5"),
    (dict(val_size=-0.1), r"val_size must be in \[0, 1\), got -0.1"),
    (dict(test_size="a"), "test_size must be a fraction"),
])
def test_bad_split_sizes(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_iris(**kwargs)


def test_registry():
    assert {"digits", "iris", "wine", "breast_cancer"} <= set(available_datasets())
    assert load_dataset("iris").name == "iris"
    with pytest.raises(ValueError, match="unknown dataset 'mnst'; available: .*digits"):
        load_dataset("mnst")


def test_minibatches_cover_every_sample_once():
    X = np.arange(103)[:, None] * np.ones((1, 3))
    y = np.arange(103)
    seen = []
    for xb, yb in iterate_minibatches(X, y, batch_size=10, random_state=0):
        assert len(xb) == len(yb) <= 10
        np.testing.assert_array_equal(xb[:, 0], yb)
        seen += list(yb)
    assert sorted(seen) == list(range(103)) and seen != list(range(103))


def test_minibatch_options():
    X = np.arange(25)
    assert [len(b) for b in iterate_minibatches(X, batch_size=10, shuffle=False)] == [10, 10, 5]
    assert [len(b) for b in iterate_minibatches(X, batch_size=10, drop_last=True)] == [10, 10]
    np.testing.assert_array_equal(np.concatenate(list(iterate_minibatches(X, batch_size=7, shuffle=False))), X)
    rng = np.random.default_rng(0)
    first = np.concatenate(list(iterate_minibatches(X, batch_size=5, random_state=rng)))
    second = np.concatenate(list(iterate_minibatches(X, batch_size=5, random_state=rng)))
    assert not np.array_equal(first, second)   # a Generator advances: new order each epoch
    again = np.concatenate(list(iterate_minibatches(X, batch_size=5, random_state=3)))
    np.testing.assert_array_equal(again, np.concatenate(list(iterate_minibatches(X, batch_size=5, random_state=3))))


def test_minibatches_over_a_memmap(tmp_path):
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float32, mode="w+", shape=(50, 4))
    mm[:] = np.arange(200).reshape(50, 4)
    mm.flush()
    ro = np.memmap(path, dtype=np.float32, mode="r", shape=(50, 4))
    batches = list(iterate_minibatches(ro, np.arange(50), batch_size=16, random_state=0))
    assert sum(len(b[0]) for b in batches) == 50
    for xb, yb in batches:
        np.testing.assert_array_equal(xb[:, 0], yb * 4)


@pytest.mark.parametrize("args,kwargs,pattern", [
    ((np.zeros(5), np.zeros(4)), {}, "X has 5 samples but y has 4"),
    ((np.zeros(5),), dict(batch_size=0), "batch_size must be a positive integer, got 0"),
    ((np.zeros(0),), {}, "empty X"),
])
def test_minibatch_errors(args, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        iterate_minibatches(*args, **kwargs)
