"""Batch augmentation: RandomCrop, RandomHorizontalFlip, Compose.

Each transform is compared with an obviously correct loop over the images that makes
the same draws; then seeding, dtypes, errors, and the value semantics (equality,
repr, copy, pickle, scikit-learn's clone) that let a transform be an estimator
parameter.
"""
import copy
import pickle

import numpy as np
import pytest
from sklearn.base import clone

import cynn
from cynn.datasets import Compose, RandomCrop, RandomHorizontalFlip


def _batch(n=6, c=2, h=5, w=7, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(dtype) + 1  # never 0


def _crop_loop(X, size, padding, rng):
    """One image at a time, with the draws RandomCrop makes: all tops, then all lefts."""
    (sh, sw), (ph, pw) = size, padding
    n, c, h, w = X.shape
    top = rng.integers(0, h + 2 * ph - sh + 1, size=n)
    left = rng.integers(0, w + 2 * pw - sw + 1, size=n)
    out = np.empty((n, c, sh, sw), X.dtype)
    for i in range(n):
        padded = np.pad(X[i], ((0, 0), (ph, ph), (pw, pw)))
        out[i] = padded[:, top[i]:top[i] + sh, left[i]:left[i] + sw]
    return out


@pytest.mark.parametrize("size, padding", [(5, 0), (3, 0), (5, 2), ((4, 6), 1), ((5, 7), (0, 3)),
                                           (9, 2), ((7, 11), (1, 2))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_crop_matches_a_loop_over_the_images(size, padding, dtype):
    X = _batch(dtype=dtype)
    crop = RandomCrop(size, padding)
    out = crop(X, np.random.default_rng(3))
    expected = _crop_loop(X, np.broadcast_to(size, 2), np.broadcast_to(padding, 2),
                          np.random.default_rng(3))
    assert out.dtype == dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_random_crop_reaches_every_offset_and_pads_with_zeros():
    X = np.ones((400, 1, 4, 4), np.float32)
    out = RandomCrop(4, padding=1)(X, 0)
    # The number of zero rows above the crop tells its vertical offset: 0, 1 or 2.
    zeros_top = (out[:, 0, 0, :] == 0).all(axis=1).astype(int)
    zeros_bottom = (out[:, 0, -1, :] == 0).all(axis=1).astype(int)
    offsets = 1 - zeros_top + zeros_bottom
    assert set(np.unique(offsets)) == {0, 1, 2}
    assert set(np.unique(out)) == {0.0, 1.0}
    # Without padding and at full size the crop is the identity.
    X = _batch()
    np.testing.assert_array_equal(RandomCrop((5, 7))(X, 0), X)


def test_horizontal_flip_mirrors_the_images_it_picks():
    X = _batch(n=200)
    out = RandomHorizontalFlip(0.5)(X, np.random.default_rng(1))
    picked = np.random.default_rng(1).random(200) < 0.5
    np.testing.assert_array_equal(out[picked], X[picked][..., ::-1])
    np.testing.assert_array_equal(out[~picked], X[~picked])
    assert 60 < picked.sum() < 140
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(X, 0), X)
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(X, 0), X[..., ::-1])
    assert out.dtype == np.float32 and out.flags.c_contiguous


def test_compose_applies_the_transforms_in_order_from_one_generator():
    X = _batch(n=20, h=8, w=8)
    chain = Compose([RandomCrop(6, padding=1), RandomHorizontalFlip()])
    out = chain(X, np.random.default_rng(5))
    rng = np.random.default_rng(5)
    expected = RandomHorizontalFlip()(RandomCrop(6, padding=1)(X, rng), rng)
    np.testing.assert_array_equal(out, expected)
    assert out.shape == (20, 2, 6, 6)
    # Any function of (X, rng) can take part.
    noisy = Compose([lambda X, rng: X + rng.standard_normal(X.shape).astype(X.dtype)])
    assert noisy(X, 0).dtype == np.float32


def test_the_input_is_never_changed():
    X = _batch()
    before = X.copy()
    for t in (RandomCrop(5), RandomCrop(5, 2), RandomHorizontalFlip(1.0),
              Compose([RandomCrop(5, 1), RandomHorizontalFlip(1.0)])):
        out = t(X, 0)
        assert not np.shares_memory(out, X)
    np.testing.assert_array_equal(X, before)
    # Read-only and non-contiguous batches are accepted.
    X.flags.writeable = False
    RandomCrop(3, 1)(X, 0)
    RandomHorizontalFlip()(X[:, :, :, ::2], 0)


def test_seeding_follows_cynn_random_state_rules():
    X = _batch(n=50, h=8, w=8)
    crop = Compose([RandomCrop(8, padding=2), RandomHorizontalFlip()])
    np.testing.assert_array_equal(crop(X, 7), crop(X, 7))
    assert not np.array_equal(crop(X, 7), crop(X, 8))
    rng = np.random.default_rng(7)
    first, second = crop(X, rng), crop(X, rng)      # a Generator advances
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, crop(X, 7))
    # None draws from the package-level generator, which cynn.manual_seed reseeds.
    cynn.manual_seed(11)
    a = crop(X)
    cynn.manual_seed(11)
    np.testing.assert_array_equal(crop(X), a)


def test_integer_images_come_back_as_float64():
    X = np.arange(2 * 1 * 4 * 4).reshape(2, 1, 4, 4)
    out = RandomCrop(4, padding=1)(X, 0)
    assert out.dtype == np.float64


@pytest.mark.parametrize("make, match", [
    (lambda: RandomCrop(0), "RandomCrop: size must be a positive integer, got 0"),
    (lambda: RandomCrop(2.5), "RandomCrop: size must be a positive integer, got 2.5"),
    (lambda: RandomCrop((3, 4, 5)), r"RandomCrop: size must be an int or a pair of ints, "
                                    r"got \(3, 4, 5\)"),
    (lambda: RandomCrop(3, padding=-1), "RandomCrop: padding must be a non-negative integer, got -1"),
    (lambda: RandomHorizontalFlip(1.5), r"RandomHorizontalFlip: p must be a number in \[0, 1\], "
                                        r"got 1.5"),
    (lambda: RandomHorizontalFlip(-0.1), r"RandomHorizontalFlip: p must be a number in \[0, 1\], "
                                         r"got -0.1"),
    (lambda: RandomHorizontalFlip(float("nan")), r"p must be a number in \[0, 1\], got nan"),
])
def test_bad_parameters_are_named(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize("transform, X, match", [
    (RandomCrop(6), np.zeros((2, 1, 5, 5), np.float32),
     r"RandomCrop size \(6, 6\) is larger than the padded image \(5, 5\) of input shape "
     r"\(2, 1, 5, 5\) with padding \(0, 0\)"),
    (RandomCrop((4, 9), padding=1), np.zeros((2, 1, 5, 5), np.float32),
     r"RandomCrop size \(4, 9\) is larger than the padded image \(7, 7\)"),
    (RandomCrop(2), np.zeros((2, 5, 5), np.float32),
     r"RandomCrop expected 4-D input \(N, C, H, W\), got shape \(2, 5, 5\)"),
    (RandomHorizontalFlip(), np.zeros((4, 10), np.float32),
     r"RandomHorizontalFlip expected 4-D input \(N, C, H, W\), got shape \(4, 10\)"),
    (Compose([RandomHorizontalFlip()]), np.zeros((0, 1, 4, 4), np.float32), "empty batch"),
])
def test_bad_batches_are_named(transform, X, match):
    with pytest.raises(ValueError, match=match):
        transform(X, 0)


def test_bad_types_raise_type_errors():
    with pytest.raises(TypeError, match="expected a real numeric array"):
        RandomHorizontalFlip()(np.array([["a"]], dtype=object), 0)
    with pytest.raises(TypeError, match="random_state must be None"):
        RandomHorizontalFlip()(_batch(), "seed")
    with pytest.raises(TypeError, match="Compose expects a sequence of transforms, got 3"):
        Compose(3)
    with pytest.raises(TypeError, match="Compose expects callable transforms, got 'flip'"):
        Compose(["flip"])


def test_transforms_are_values_equal_repr_copy_pickle():
    chain = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()])
    assert repr(chain) == "Compose([RandomCrop(size=32, padding=4), RandomHorizontalFlip(p=0.5)])"
    assert repr(RandomCrop((28, 32), (3, 4))) == "RandomCrop(size=(28, 32), padding=(3, 4))"
    assert RandomCrop((32, 32), padding=[4, 4]) == RandomCrop(32, 4)
    assert RandomCrop(32, 4) != RandomCrop(32, 3) and RandomCrop(3) != RandomHorizontalFlip()
    assert RandomHorizontalFlip(0.5) == RandomHorizontalFlip()
    assert len({RandomCrop(32, 4), RandomCrop(32, 4), RandomHorizontalFlip()}) == 2
    X = _batch(n=10, h=32, w=32)
    for twin in (copy.copy(chain), copy.deepcopy(chain), pickle.loads(pickle.dumps(chain))):
        assert twin == chain and twin is not chain
        np.testing.assert_array_equal(twin(X, 3), chain(X, 3))


def test_an_estimator_with_augment_survives_clone_and_pickle():
    from cynn.trainers import NeuralNetClassifier

    chain = Compose([RandomCrop(8, padding=1), RandomHorizontalFlip()])
    clf = NeuralNetClassifier(image_shape=(1, 8, 8), augment=chain)
    twin = clone(clf)
    assert twin.get_params()["augment"] == chain
    assert twin.get_params()["augment"] is not chain       # deep-copied, as clone does
    assert pickle.loads(pickle.dumps(clf)).get_params()["augment"] == chain
    assert "augment=Compose([RandomCrop(size=8, padding=1)" in repr(clf)
