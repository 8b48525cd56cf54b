"""BatchNormalization kernels over (N, C, S) views: S = H * W for images, 1 for vectors.

Each channel is one prange iteration that sums in a fixed order (accumulating in
double), so statistics do not depend on the thread count.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt


def _check(bint ok, str what):
    if not ok:
        raise ValueError(f"batchnorm kernel: inconsistent {what}")


def batchnorm_forward_train(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                            floating[::1] mean, floating[::1] var, floating[::1] invstd,
                            double eps, int num_threads):
    """Batch statistics per channel (biased variance) and y = (x - mean) * invstd."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    cdef Py_ssize_t c, n, q
    cdef double total, m, d, inv, count = n_batch * s
    cdef const floating* src
    cdef floating* dst
    _check(y.shape[0] == n_batch and y.shape[1] == channels and y.shape[2] == s, "output shape")
    _check(mean.shape[0] == channels and var.shape[0] == channels and invstd.shape[0] == channels,
           "statistics shape")
    for c in prange(channels, nogil=True, schedule='static', num_threads=num_threads):
        total = 0
        for n in range(n_batch):
            src = &x[n, c, 0]
            for q in range(s):
                total = total + src[q]
        m = total / count
        # Two passes: the centred sum of squares avoids the cancellation of E[x^2] - E[x]^2.
        total = 0
        for n in range(n_batch):
            src = &x[n, c, 0]
            for q in range(s):
                d = src[q] - m
                total = total + d * d
        inv = 1.0 / sqrt(total / count + eps)
        mean[c] = <floating> m
        var[c] = <floating> (total / count)
        invstd[c] = <floating> inv
        for n in range(n_batch):
            src = &x[n, c, 0]
            dst = &y[n, c, 0]
            for q in range(s):
                dst[q] = <floating> ((src[q] - m) * inv)


def batchnorm_forward_eval(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                           const floating[::1] mean, const floating[::1] invstd,
                           int num_threads):
    """y = (x - mean) * invstd with given per-channel statistics."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    cdef Py_ssize_t task, c, n, q
    cdef floating m, inv
    cdef const floating* src
    cdef floating* dst
    _check(y.shape[0] == n_batch and y.shape[1] == channels and y.shape[2] == s, "output shape")
    _check(mean.shape[0] == channels and invstd.shape[0] == channels, "statistics shape")
    for task in prange(n_batch * channels, nogil=True, schedule='static',
                       num_threads=num_threads):
        n = task // channels
        c = task - n * channels
        m = mean[c]
        inv = invstd[c]
        src = &x[n, c, 0]
        dst = &y[n, c, 0]
        for q in range(s):
            dst[q] = (src[q] - m) * inv


def batchnorm_backward_train(const floating[:, :, ::1] x, const floating[:, :, ::1] dy,
                             const floating[::1] mean, const floating[::1] invstd,
                             floating[:, :, ::1] dx, int num_threads):
    """Input gradient through batch statistics:

    dx = invstd * (dy - mean(dy) - xn * mean(dy * xn)),  xn = (x - mean) * invstd
    """
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    cdef Py_ssize_t c, n, q
    cdef double sum_dy, sum_dy_xn, m, inv, xn, mean_dy, mean_dy_xn, count = n_batch * s
    cdef const floating* xs
    cdef const floating* gs
    cdef floating* dst
    _check(dy.shape[0] == n_batch and dy.shape[1] == channels and dy.shape[2] == s,
           "gradient shape")
    _check(dx.shape[0] == n_batch and dx.shape[1] == channels and dx.shape[2] == s,
           "input gradient shape")
    _check(mean.shape[0] == channels and invstd.shape[0] == channels, "statistics shape")
    for c in prange(channels, nogil=True, schedule='static', num_threads=num_threads):
        m = mean[c]
        inv = invstd[c]
        sum_dy = 0
        sum_dy_xn = 0
        for n in range(n_batch):
            xs = &x[n, c, 0]
            gs = &dy[n, c, 0]
            for q in range(s):
                sum_dy = sum_dy + gs[q]
                sum_dy_xn = sum_dy_xn + gs[q] * (xs[q] - m) * inv
        mean_dy = sum_dy / count
        mean_dy_xn = sum_dy_xn / count
        for n in range(n_batch):
            xs = &x[n, c, 0]
            gs = &dy[n, c, 0]
            dst = &dx[n, c, 0]
            for q in range(s):
                xn = (xs[q] - m) * inv
                dst[q] = <floating> (inv * (gs[q] - mean_dy - xn * mean_dy_xn))


def batchnorm_backward_eval(const floating[:, :, ::1] dy, const floating[::1] invstd,
                            floating[:, :, ::1] dx, int num_threads):
    """dx = dy * invstd: in evaluation mode the statistics are constants."""
    cdef Py_ssize_t n_batch = dy.shape[0], channels = dy.shape[1], s = dy.shape[2]
    cdef Py_ssize_t task, c, n, q
    cdef floating inv
    cdef const floating* gs
    cdef floating* dst
    _check(dx.shape[0] == n_batch and dx.shape[1] == channels and dx.shape[2] == s,
           "input gradient shape")
    _check(invstd.shape[0] == channels, "statistics shape")
    for task in prange(n_batch * channels, nogil=True, schedule='static',
                       num_threads=num_threads):
        n = task // channels
        c = task - n * channels
        inv = invstd[c]
        gs = &dy[n, c, 0]
        dst = &dx[n, c, 0]
        for q in range(s):
            dst[q] = gs[q] * inv
