"""Data augmentation for image batches: random crops, horizontal flips, and chains of them.

A transform is a small parameter object called on a whole ``(N, C, H, W)`` batch at
once, ``transform(X_batch, random_state)``, with no Python loop per image.  It holds
no generator of its own: every random number comes from the ``random_state`` passed
to the call.  That is what lets `cynn.trainers.Trainer` hand each training batch a
generator derived from (run seed, epoch, batch), so that a seeded run draws the same
crops and flips whatever the thread count and after a resume.  It also makes
transforms plain values: they compare equal when their parameters are equal, print
as their constructor call, and survive ``copy``, ``pickle`` and scikit-learn's
``clone`` (they are estimator parameters: ``NeuralNetClassifier(augment=...)``).
"""
import numpy as np

from cynn._random import check_random_state, generator_for
from cynn._validation import as_real_array, check_ndim, finite_float, int_pair


class Transform:
    """Base of the batch transforms: the call sequence, equality and repr.

    A subclass lists its parameters in ``_params`` (stored as attributes of those
    names by ``__init__``) and writes ``_apply(X, rng)``, which gets a float, 4-D,
    non-empty batch and a Generator and returns a new array of X's dtype.
    """

    _params = ()

    def __call__(self, X, random_state=None):
        """Transform the batch ``X`` (N, C, H, W); returns a new array of X's dtype.

        ``random_state`` is None, an int or a ``numpy.random.Generator``; None draws
        from the package-level generator that `cynn.manual_seed` reseeds.  ``X`` is
        never changed in place.
        """
        X = self._check_input(X)
        return self._apply(X, generator_for(check_random_state(random_state)))

    def _check_input(self, X):
        owner = type(self).__name__
        X = as_real_array(X, owner, "X")
        check_ndim(X, (4,), owner, "(N, C, H, W)")
        if X.dtype.kind != "f":
            # Integer pixels would come back as floats from a chain that pads or
            # blends; converting once here keeps every transform's output float.
            X = X.astype(np.float64)
        return X

    def _values(self):
        return tuple(getattr(self, name) for name in self._params)

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self):
        return hash((type(self).__name__,) + self._values())

    def __repr__(self):
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({args})"


class RandomCrop(Transform):
    """Crop every image of a batch at its own random position, after zero padding.

    Each image is padded with ``padding`` zeros on every side (like torchvision's
    ``RandomCrop`` with its default ``fill=0``) and a ``size`` window is cut from it
    at an offset drawn uniformly from all positions that fit.

    Parameters
    ----------
    size : int or (int, int)
        Height and width of the output; an int means a square.
    padding : int or (int, int), default=0
        Zeros added above and below (first value) and left and right (second).

    Shape
    -----
    Input ``(N, C, H, W)``; output ``(N, C, size_h, size_w)``, of the input's float
    dtype (integer input becomes float64).

    Raises
    ------
    ValueError
        At construction for a size or padding that is not a positive (non-negative)
        int or pair; at the call for a batch that is not 4-D, or smaller, once
        padded, than ``size``.

    Examples
    --------
    >>> import numpy as np
    >>> crop = RandomCrop(32, padding=4)
    >>> crop(np.ones((8, 3, 32, 32), np.float32), random_state=0).shape
    (8, 3, 32, 32)
    """

    _params = ("size", "padding")

    def __init__(self, size, padding=0):
        self.size = _one_or_pair(int_pair(size, "size", "RandomCrop"))
        self.padding = _one_or_pair(int_pair(padding, "padding", "RandomCrop", allow_zero=True))

    def _apply(self, X, rng):
        n, c, h, w = X.shape
        (size_h, size_w), (pad_h, pad_w) = _pair(self.size), _pair(self.padding)
        padded_h, padded_w = h + 2 * pad_h, w + 2 * pad_w
        if size_h > padded_h or size_w > padded_w:
            raise ValueError(f"RandomCrop size {(size_h, size_w)} is larger than the padded image "
                             f"({padded_h}, {padded_w}) of input shape {X.shape} with padding "
                             f"{(pad_h, pad_w)}")
        top = rng.integers(0, padded_h - size_h + 1, size=n)
        left = rng.integers(0, padded_w - size_w + 1, size=n)
        if pad_h or pad_w:
            padded = np.zeros((n, c, padded_h, padded_w), dtype=X.dtype)
            padded[:, :, pad_h:pad_h + h, pad_w:pad_w + w] = X
        else:
            padded = X
        # All windows as a view (N, C, H', W', size_h, size_w); one fancy index picks
        # each image's own window, a copy of shape (N, C, size_h, size_w).
        windows = np.lib.stride_tricks.sliding_window_view(padded, (size_h, size_w), axis=(2, 3))
        return np.ascontiguousarray(windows[np.arange(n), :, top, left])


class RandomHorizontalFlip(Transform):
    """Mirror each image of a batch left to right with probability ``p``.

    Parameters
    ----------
    p : float in [0, 1], default=0.5

    Shape
    -----
    Output the same shape and float dtype as the input ``(N, C, H, W)``.
    """

    _params = ("p",)

    def __init__(self, p=0.5):
        self.p = finite_float(p, "p", "RandomHorizontalFlip", low=0, high=1)

    def _apply(self, X, rng):
        flip = rng.random(len(X)) < self.p
        out = np.array(X, copy=True, order="C")
        out[flip] = X[flip, :, :, ::-1]
        return out


class Compose(Transform):
    """Apply transforms one after the other, all drawing from the same generator.

    Parameters
    ----------
    transforms : sequence of callables
        Each called as ``transform(X, rng)`` with a ``numpy.random.Generator``:
        the transforms of this module, or functions of the same form.

    Examples
    --------
    >>> augment = Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()])
    >>> augment
    Compose([RandomCrop(size=32, padding=4), RandomHorizontalFlip(p=0.5)])
    """

    _params = ("transforms",)

    def __init__(self, transforms):
        if isinstance(transforms, (str, bytes)) or not hasattr(transforms, "__iter__"):
            raise TypeError(f"Compose expects a sequence of transforms, got {transforms!r}")
        transforms = tuple(transforms)
        for t in transforms:
            if not callable(t):
                raise TypeError(f"Compose expects callable transforms, got {t!r}")
        self.transforms = transforms

    def _apply(self, X, rng):
        for transform in self.transforms:
            X = transform(X, rng)
        return X

    def __repr__(self):
        return f"Compose([{', '.join(map(repr, self.transforms))}])"


def _pair(value):
    return value if isinstance(value, tuple) else (value, value)


def _one_or_pair(pair):
    """An int for a square, as given most often; the pair otherwise."""
    return pair[0] if pair[0] == pair[1] else pair
