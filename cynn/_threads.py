"""Thread count shared by the Cython kernels (OpenMP) and BLAS.

The kernels receive the count as an argument of every call (``prange(num_threads=...)``),
so changing it never needs a rebuild.

Two BLAS libraries are usually loaded: the one NumPy uses (array arithmetic in Python
code) and the one behind ``scipy.linalg.cython_blas`` (the GEMMs of the convolution and
``Linear`` kernels, ``conv.pyx`` and ``dense.pyx``).  Those kernels spread blocks of work
over OpenMP threads and call a single-threaded GEMM per block, so SciPy's BLAS is
pinned to one thread; a threaded GEMM inside a prange region would
put two thread pools on the same cores.  NumPy's BLAS gets the cynn thread count.
When SciPy's BLAS cannot be told apart from NumPy's, the kernels fall back to serial
loops around threaded GEMMs (`kernel_blas_single_threaded` returns False).
"""
import contextlib
import os

from ._validation import parse_positive_int

_num_threads = None
_kernel_blas_pinned = None


def _default_num_threads():
    # OMP_NUM_THREADS is what process pools (joblib's loky workers, for one) set to keep
    # n_jobs processes from oversubscribing the cores; honour it like OpenMP would.
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def get_num_threads():
    """Number of threads the kernels use.

    Default: ``CYNN_NUM_THREADS``, else ``OMP_NUM_THREADS``, else the cores this
    process may run on.
    """
    global _num_threads
    if _num_threads is None:
        env = os.environ.get("CYNN_NUM_THREADS")
        if env:
            _num_threads = parse_positive_int(env, "CYNN_NUM_THREADS")
            _limit_blas(_num_threads)
        else:
            _num_threads = _default_num_threads()
    return _num_threads


def set_num_threads(n):
    """Set the number of threads used by cynn's kernels and by NumPy's BLAS.

    Results do not depend on this number: every reduction runs in a fixed order.
    """
    global _num_threads
    _num_threads = parse_positive_int(n, "num_threads")
    _limit_blas(_num_threads)


def _scipy_blas_controllers(controller):
    """threadpoolctl controllers of the BLAS libraries shipped inside SciPy's wheel."""
    import scipy

    scipy_libs = os.path.normcase(os.path.realpath(os.path.dirname(scipy.__file__))) + ".libs"
    return [lib for lib in controller.lib_controllers
            if lib.user_api == "blas"
            and os.path.normcase(os.path.dirname(os.path.realpath(lib.filepath))) == scipy_libs]


def kernel_blas_single_threaded():
    """Pin SciPy's BLAS to one thread (once); True if that could be done."""
    global _kernel_blas_pinned
    if _kernel_blas_pinned is None:
        from threadpoolctl import ThreadpoolController

        import scipy.linalg.cython_blas  # noqa: F401  (loads the library first)

        libs = _scipy_blas_controllers(ThreadpoolController())
        for lib in libs:
            lib.set_num_threads(1)
        _kernel_blas_pinned = bool(libs)
    return _kernel_blas_pinned


def _limit_blas(n):
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    pinned = {lib.filepath for lib in _scipy_blas_controllers(controller)} if kernel_blas_single_threaded() else set()
    for lib in controller.lib_controllers:
        if lib.user_api == "blas":
            lib.set_num_threads(1 if lib.filepath in pinned else n)


class thread_flag(contextlib.ContextDecorator):
    """Set the flag ``name`` of the ``threading.local`` object ``local`` in the calling
    thread for the block, then put back what it was (nested blocks restore in order):
    the per-thread switches of `cynn.inference_mode` and of the inference plans.  A
    class rather than a generator, as it is entered on every inference call: what each
    entry replaced goes on a stack of the thread's own, so one object may be entered
    from several threads and nested."""

    __slots__ = ("_local", "_name", "_stack")

    def __init__(self, local, name):
        self._local, self._name, self._stack = local, name, name + " stack"

    def __enter__(self):
        local, name = self._local, self._name
        local.__dict__.setdefault(self._stack, []).append(getattr(local, name, False))
        setattr(local, name, True)
        return self

    def __exit__(self, *exc):
        setattr(self._local, self._name, self._local.__dict__[self._stack].pop())
        return False
