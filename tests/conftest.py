import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def tolerance(dtype):
    """Comparison tolerance for results computed in ``dtype``."""
    return {"rtol": 1e-4, "atol": 1e-4} if np.dtype(dtype) == np.float32 else {"rtol": 1e-10, "atol": 1e-10}
