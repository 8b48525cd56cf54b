"""The optimizers' element-wise updates in one pass over each parameter.

NumPy needs a dozen passes (and temporaries) for one Adam step; here each element is
read and written once.  Every operation is the one NumPy's sequence did, in the same
order and in the parameter's dtype, with the Python-float hyperparameters rounded to
that dtype as NumPy rounds them, so the result is the same bits.  The module is
compiled for the baseline instruction set only (no fused multiply-add contraction,
which would round differently), and elements are independent, so the result does not
depend on the thread count either.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

cdef str _FAMILY = "optim"
include "_checks.pxi"

cdef enum:
    # fewer elements than this run in the calling thread (a thread team costs more)
    PARALLEL_MIN = 32768


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
                floating[::1] exp_avg_sq, double beta1, double beta2, double sqrt_bc2,
                double eps, double step, int num_threads):
    """One Adam step, as `cynn.Adam._update_parameter` writes it with NumPy:
    m = m * b1 + g * (1 - b1); v = v * b2 + (g * g) * (1 - b2);
    param -= m / (sqrt(v) / sqrt_bc2 + eps) * step, where step = lr / bias_correction1."""
    cdef Py_ssize_t n = param.shape[0], i
    cdef floating b1 = <floating> beta1, c1 = <floating> (1.0 - beta1)
    cdef floating b2 = <floating> beta2, c2 = <floating> (1.0 - beta2)
    cdef floating s2 = <floating> sqrt_bc2, e = <floating> eps, s = <floating> step
    cdef floating m, v, t, d
    cdef int threads = num_threads if n >= PARALLEL_MIN else 1
    _check(grad.shape[0] == n and exp_avg.shape[0] == n and exp_avg_sq.shape[0] == n,
           "parameter and state sizes")
    _check(num_threads >= 1, "thread count")
    for i in prange(n, nogil=True, schedule='static', num_threads=threads):
        m = exp_avg[i] * b1
        t = grad[i] * c1
        m = m + t
        exp_avg[i] = m
        v = exp_avg_sq[i] * b2
        t = grad[i] * grad[i]
        t = t * c2
        v = v + t
        exp_avg_sq[i] = v
        if floating is float:
            d = sqrtf(v)
        else:
            d = sqrt(v)
        d = d / s2
        d = d + e
        t = m / d
        t = t * s
        param[i] = param[i] - t
