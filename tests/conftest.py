import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def _tolerance(dtype, float64=1e-12):
    """assert_allclose tolerances for a kernel result computed in ``dtype`` against
    its float64 NumPy twin: float32 rounding, or ``float64`` for float64 results."""
    t = 1e-4 if np.dtype(dtype) == np.float32 else float64
    return {"rtol": t, "atol": t}


@pytest.fixture
def tolerance():
    return _tolerance
