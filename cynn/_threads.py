"""Thread count shared by the Cython kernels (OpenMP) and BLAS.

The kernels receive the count as an argument of every call (``prange(num_threads=...)``),
so changing it never needs a rebuild.  BLAS threads are set through threadpoolctl; a GEMM
is never called from inside a ``prange`` region, so the two pools are never nested.
"""
import os

_num_threads = None


def _parse_positive_int(value, name):
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive integer, got {value!r}") from None
    if n < 1 or isinstance(value, bool) or (isinstance(value, float) and value != n):
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return n


def get_num_threads():
    """Number of threads the kernels use (default: ``CYNN_NUM_THREADS`` or all cores)."""
    global _num_threads
    if _num_threads is None:
        env = os.environ.get("CYNN_NUM_THREADS")
        if env:
            _num_threads = _parse_positive_int(env, "CYNN_NUM_THREADS")
            _limit_blas(_num_threads)
        else:
            _num_threads = os.cpu_count() or 1
    return _num_threads


def set_num_threads(n):
    """Set the number of threads used by cynn's kernels and by BLAS.

    Results do not depend on this number: every reduction runs in a fixed order.
    """
    global _num_threads
    _num_threads = _parse_positive_int(n, "num_threads")
    _limit_blas(_num_threads)


def _limit_blas(n):
    from threadpoolctl import threadpool_limits

    # Not used as a context manager: the limit stays in force until changed again.
    threadpool_limits(limits=n, user_api="blas")
