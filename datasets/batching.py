"""Minibatches over any NumPy arrays, memory-mapped ones included."""
import numbers

import numpy as np


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
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return _batches(X, y, n, int(batch_size), shuffle, drop_last, random_state)


def _batches(X, y, n, batch_size, shuffle, drop_last, random_state):
    if shuffle:
        rng = random_state if isinstance(random_state, np.random.Generator) \
            else np.random.default_rng(random_state)
        order = rng.permutation(n)
    else:
        order = None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, n)
        if order is None:
            index = slice(start, end)
        else:
            # Sorted indices read a memory map front to back; the permutation
            # inside the batch does not matter for a gradient step.
            index = np.sort(order[start:end])
        xb = np.asarray(X[index])
        if y is None:
            yield xb
        else:
            yield xb, np.asarray(y[index])
