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
    rng = _generator(random_state) if shuffle else None
    return _batches(X, y, n, int(batch_size), rng, drop_last)


def _generator(random_state):
    """Check ``random_state`` now (not at the first batch) and return a Generator."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if random_state is None or (isinstance(random_state, numbers.Integral)
                                and not isinstance(random_state, bool) and random_state >= 0):
        return np.random.default_rng(random_state)
    raise ValueError("random_state must be None, a non-negative int or a numpy.random.Generator, "
                     f"got {random_state!r}")


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
