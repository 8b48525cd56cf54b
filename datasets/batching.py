"""Minibatches over any NumPy arrays, memory-mapped ones included."""
import numpy as np

from cynn._random import as_generator
from cynn._validation import positive_int


def iterate_minibatches(X, y=None, batch_size=64, shuffle=True, drop_last=False, random_state=None):
    """Yield ``(X_batch, y_batch)`` (or ``X_batch`` when ``y`` is None).

    Only the rows of the current batch are read, so a ``numpy.memmap`` larger than
    memory works.  With ``shuffle`` the order is a permutation drawn from
    ``random_state`` (None, an int or a ``numpy.random.Generator``; a Generator
    advances, so successive epochs get new orders).

    Raises
    ------
    ValueError
        Empty X, X and y of different lengths, or a batch size that is not a
        positive integer.
    """
    n = len(X)
    if n == 0:
        raise ValueError("iterate_minibatches got an empty X")
    if y is not None and len(y) != n:
        raise ValueError(f"X has {n} samples but y has {len(y)}")
    batch_size = positive_int(batch_size, "batch_size")
    # Checked now, not at the first batch: the error belongs to this call.
    rng = as_generator(random_state) if shuffle else None
    return _batches(X, y, n, batch_size, rng, drop_last)


def _batches(X, y, n, batch_size, rng, drop_last):
    order = rng.permutation(n) if rng is not None else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            index = slice(start, end)
        else:
            # Sorted indices read a memory map front to back; the permutation
            # inside the batch does not matter for a gradient step.
            index = np.sort(order[start:end])
        # Always a copy: a slice would be a view, and changing a batch in place
        # (augmentation, normalization) would change the data, or a memory map's file.
        xb = np.array(X[index], copy=True)
        if y is None:
            yield xb
        else:
            yield xb, np.array(y[index], copy=True)
