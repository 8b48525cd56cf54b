"""Package-level randomness: one reseedable generator, plus `random_state` resolution."""
import numbers

import numpy as np

_global_generator = np.random.default_rng()


def manual_seed(seed):
    """Reseed the package-level generator.

    Layers created with ``random_state=None`` draw their initial weights (and
    Dropout its masks) from this generator, so ``cynn.manual_seed(0)`` before
    building and training a model makes the run repeatable.
    """
    global _global_generator
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"manual_seed expected a non-negative integer, got {seed!r}")
    _global_generator = np.random.default_rng(int(seed))


def global_generator():
    """Return the package-level generator (the one `manual_seed` reseeds)."""
    return _global_generator


def check_random_state(random_state):
    """Turn ``None | int | numpy.random.Generator`` into a Generator, or None.

    ``None`` is returned as ``None``: the caller then draws from the package-level
    generator at the moment it needs numbers, so a later `manual_seed` still counts.
    """
    if random_state is None:
        return None
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return np.random.default_rng(int(random_state))
    raise TypeError(
        "random_state must be None, a non-negative int or a numpy.random.Generator, "
        f"got {random_state!r} ({type(random_state).__name__})"
    )


def as_generator(random_state):
    """Like `check_random_state`, but ``None`` gives a Generator on fresh entropy
    (for shuffling and synthetic data, which do not follow `manual_seed`)."""
    rng = check_random_state(random_state)
    return np.random.default_rng() if rng is None else rng


def derive_seed(random_state):
    """An int seed drawn from ``random_state`` (None, an int, a NumPy RandomState or
    Generator), or None for fresh entropy: what the estimators hand to the model
    builder, the shuffling and the validation split."""
    if random_state is None:
        return None
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    check_random_state(random_state)
    return int(random_state)


def generator_for(rng):
    """The generator to draw from now: the layer's own, or the package-level one."""
    return _global_generator if rng is None else rng
