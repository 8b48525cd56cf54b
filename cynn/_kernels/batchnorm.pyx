"""BatchNormalization kernels over (N, C, S) views: S = H * W for images, 1 for vectors.

Statistics are sums in double precision, each channel's taken in one fixed order
(whatever the thread count), in one sweep over the data: the mean and the centred
second moment come from the sums of x and of (x - shift)^2, with ``shift`` the first
element of the channel so that the subtraction does not cancel for data far from 0.

Two loop orders: for images every channel is a contiguous run per sample and a
thread takes whole channels; for vectors (S = 1) a channel is a strided column, so
a thread takes a block of columns and walks the rows, which keeps the reads
contiguous and lets the compiler vectorize across channels.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free

cdef str _FAMILY = "batchnorm"
include "_checks.pxi"


cdef extern from "batchnorm.h":
    # Columns per task in the vector case (S = 1); the same macro sizes the C's lane
    # arrays, so the two cannot disagree.
    enum: COLUMN_BLOCK "CYNN_BN_COLUMN_BLOCK"
    void cynn_bn_f_sums(const float* x, Py_ssize_t s, float shift, double* sum,
                        double* sq) noexcept nogil
    void cynn_bn_d_sums(const double* x, Py_ssize_t s, double shift, double* sum,
                        double* sq) noexcept nogil
    void cynn_bn_f_grad_sums(const float* x, const float* dy, Py_ssize_t s, float m,
                             double* sum_dy, double* sum_dyx) noexcept nogil
    void cynn_bn_d_grad_sums(const double* x, const double* dy, Py_ssize_t s, double m,
                             double* sum_dy, double* sum_dyx) noexcept nogil
    void cynn_bn_f_col_sums(const float* x, Py_ssize_t n_batch, Py_ssize_t channels,
                            Py_ssize_t c0, Py_ssize_t c1, const double* shift, const double* m,
                            int grad, const float* dy, double* out0, double* out1) noexcept nogil
    void cynn_bn_d_col_sums(const double* x, Py_ssize_t n_batch, Py_ssize_t channels,
                            Py_ssize_t c0, Py_ssize_t c1, const double* shift, const double* m,
                            int grad, const double* dy, double* out0, double* out1) noexcept nogil
    void cynn_bn_f_row_normalize(const float* x, float* y, const float* m, const float* inv,
                                 Py_ssize_t channels) noexcept nogil
    void cynn_bn_d_row_normalize(const double* x, double* y, const double* m, const double* inv,
                                 Py_ssize_t channels) noexcept nogil
    void cynn_bn_f_row_backward(const float* x, const float* dy, float* dx, const float* m,
                                const float* a, const float* b, const float* k,
                                Py_ssize_t channels) noexcept nogil
    void cynn_bn_d_row_backward(const double* x, const double* dy, double* dx, const double* m,
                                const double* a, const double* b, const double* k,
                                Py_ssize_t channels) noexcept nogil
    void cynn_bn_f_affine_apply(const float* x, float* y, Py_ssize_t s, float m, float inv,
                                float g, float beta, int relu) noexcept nogil
    void cynn_bn_d_affine_apply(const double* x, double* y, Py_ssize_t s, double m,
                                double inv, double g, double beta, int relu) noexcept nogil
    void cynn_bn_f_affine_grad_sums(const float* x, const float* dy, Py_ssize_t s, float m,
                                    float inv, float g, float beta, int relu, double* sum_dz,
                                    double* sum_dzx) noexcept nogil
    void cynn_bn_d_affine_grad_sums(const double* x, const double* dy, Py_ssize_t s, double m,
                                    double inv, double g, double beta, int relu,
                                    double* sum_dz, double* sum_dzx) noexcept nogil
    void cynn_bn_f_affine_grad_apply(const float* x, const float* dy, float* dx, Py_ssize_t s,
                                     float m, float inv, float g, float beta, int relu,
                                     float a, float b, float k) noexcept nogil
    void cynn_bn_d_affine_grad_apply(const double* x, const double* dy, double* dx,
                                     Py_ssize_t s, double m, double inv, double g, double beta,
                                     int relu, double a, double b, double k) noexcept nogil
    void cynn_bn_f_scale_grad(const float* x, const float* dy, float* dx, Py_ssize_t s,
                              float g, double* sum_dy, double* sum_dyx) noexcept nogil
    void cynn_bn_d_scale_grad(const double* x, const double* dy, double* dx, Py_ssize_t s,
                              double g, double* sum_dy, double* sum_dyx) noexcept nogil


cdef inline void _plane_sums(const floating* x, Py_ssize_t channels, Py_ssize_t s,
                             Py_ssize_t task, double[:, ::1] work) noexcept nogil:
    """Sums of x and of (x - shift)^2 over plane ``task`` = n * C + c."""
    cdef Py_ssize_t n = task // channels, c = task - n * channels
    work[3 + 2 * n, c] = 0
    work[4 + 2 * n, c] = 0
    if floating is float:
        cynn_bn_f_sums(x + task * s, s, <float> work[2, c], &work[3 + 2 * n, c], &work[4 + 2 * n, c])
    else:
        cynn_bn_d_sums(x + task * s, s, work[2, c], &work[3 + 2 * n, c], &work[4 + 2 * n, c])


cdef inline void _plane_grad_sums(const floating* x, const floating* dy,
                                  const floating[::1] mean, Py_ssize_t channels, Py_ssize_t s,
                                  Py_ssize_t task, double[:, ::1] work) noexcept nogil:
    """Sums of dy and dy * (x - mean) over plane ``task`` = n * C + c."""
    cdef Py_ssize_t n = task // channels, c = task - n * channels
    work[3 + 2 * n, c] = 0
    work[4 + 2 * n, c] = 0
    if floating is float:
        cynn_bn_f_grad_sums(x + task * s, dy + task * s, s, mean[c], &work[3 + 2 * n, c],
                            &work[4 + 2 * n, c])
    else:
        cynn_bn_d_grad_sums(x + task * s, dy + task * s, s, mean[c], &work[3 + 2 * n, c],
                            &work[4 + 2 * n, c])


cdef void _reduce_planes(double[:, ::1] work, Py_ssize_t n_batch, Py_ssize_t channels) noexcept nogil:
    """work[0, c] and work[1, c]: the plane sums of rows 3 + 2n and 4 + 2n, n in order."""
    cdef Py_ssize_t n, c
    for c in range(channels):
        work[0, c] = 0
        work[1, c] = 0
    for n in range(n_batch):
        for c in range(channels):
            work[0, c] += work[3 + 2 * n, c]
            work[1, c] += work[4 + 2 * n, c]


cdef void _sums_columns(const floating* x, Py_ssize_t n_batch, Py_ssize_t channels,
                        Py_ssize_t c0, Py_ssize_t c1, double* sums, double* sqs,
                        const double* shift) noexcept nogil:
    if floating is float:
        cynn_bn_f_col_sums(x, n_batch, channels, c0, c1, shift, NULL, 0, NULL, sums, sqs)
    else:
        cynn_bn_d_col_sums(x, n_batch, channels, c0, c1, shift, NULL, 0, NULL, sums, sqs)


cdef void _normalize(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                     const floating[::1] mean, const floating[::1] invstd,
                     int num_threads) noexcept nogil:
    """y = (x - mean[c]) * invstd[c]; rows for vectors, channel runs for images."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    cdef Py_ssize_t task, c, n, q
    cdef floating m, inv
    cdef const floating* src
    cdef floating* dst
    if s == 1:
        for n in prange(n_batch, schedule='static', num_threads=num_threads):
            if floating is float:
                cynn_bn_f_row_normalize(&x[n, 0, 0], &y[n, 0, 0], &mean[0], &invstd[0], channels)
            else:
                cynn_bn_d_row_normalize(&x[n, 0, 0], &y[n, 0, 0], &mean[0], &invstd[0], channels)
        return
    for task in prange(n_batch * channels, schedule='static', num_threads=num_threads):
        n = task // channels
        c = task - n * channels
        m = mean[c]
        inv = invstd[c]
        src = &x[n, c, 0]
        dst = &y[n, c, 0]
        for q in range(s):
            dst[q] = (src[q] - m) * inv


cdef void _affine(const floating[:, :, ::1] x, const floating[::1] gamma,
                  const floating[::1] beta, bint has_beta, floating[:, :, ::1] y,
                  int num_threads) noexcept nogil:
    """y = x * gamma[c] (+ beta[c]); rows for vectors, channel runs for images."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    cdef Py_ssize_t task, c, n, q
    cdef floating g, b
    cdef const floating* src
    cdef floating* dst
    if s == 1:
        for n in prange(n_batch, schedule='static', num_threads=num_threads):
            src = &x[n, 0, 0]
            dst = &y[n, 0, 0]
            if has_beta:
                for c in range(channels):
                    dst[c] = src[c] * gamma[c] + beta[c]
            else:
                for c in range(channels):
                    dst[c] = src[c] * gamma[c]
        return
    for task in prange(n_batch * channels, schedule='static', num_threads=num_threads):
        n = task // channels
        c = task - n * channels
        g = gamma[c]
        src = &x[n, c, 0]
        dst = &y[n, c, 0]
        if has_beta:
            b = beta[c]
            for q in range(s):
                dst[q] = src[q] * g + b
        else:
            for q in range(s):
                dst[q] = src[q] * g


cdef void _batch_statistics(const floating[:, :, ::1] x, floating[::1] mean,
                            floating[::1] var, floating[::1] invstd, double[:, ::1] work,
                            double eps, int num_threads) noexcept nogil:
    """mean, biased variance and 1 / sqrt(var + eps) per channel of x (shapes checked by
    the caller; ``work`` has 3 rows, and 2 more per sample for images)."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    cdef Py_ssize_t c, task, blocks, c0, c1
    cdef double count = n_batch * s, m, shift, v
    for c in range(channels):
        work[2, c] = x[0, c, 0]
    if s == 1:
        blocks = (channels + COLUMN_BLOCK - 1) // COLUMN_BLOCK
        for task in prange(blocks, schedule='static', num_threads=num_threads):
            c0 = task * COLUMN_BLOCK
            c1 = c0 + COLUMN_BLOCK if c0 + COLUMN_BLOCK < channels else channels
            _sums_columns(&x[0, 0, 0], n_batch, channels, c0, c1, &work[0, 0], &work[1, 0], &work[2, 0])
    else:
        # One task per (n, c) plane, in memory order; the plane sums land in rows
        # 3 + 2n and 4 + 2n and are added over n afterwards in a fixed order.
        for task in prange(n_batch * channels, schedule='static', num_threads=num_threads):
            _plane_sums(&x[0, 0, 0], channels, s, task, work)
        _reduce_planes(work, n_batch, channels)
    for c in range(channels):
        # work[0]: the sum of x; work[1]: the sum of (x - shift)^2.
        m = work[0, c] / count
        shift = m - work[2, c]          # the mean about the shift
        v = work[1, c] / count - shift * shift
        if v < 0:
            v = 0
        mean[c] = <floating> m
        var[c] = <floating> v
        invstd[c] = <floating> (1.0 / sqrt(v + eps))


cdef int _check_statistics(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                           floating[::1] mean, floating[::1] var, floating[::1] invstd,
                           double[:, ::1] work) except -1:
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    _check(y.shape[0] == n_batch and y.shape[1] == channels and y.shape[2] == s, "output shape")
    _check(mean.shape[0] == channels and var.shape[0] == channels and invstd.shape[0] == channels,
           "statistics shape")
    _check(work.shape[0] >= (3 if s == 1 else 3 + 2 * n_batch) and work.shape[1] >= channels,
           "workspace")
    return 0


def batchnorm_forward_train(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                            floating[::1] mean, floating[::1] var, floating[::1] invstd,
                            double[:, ::1] work, double eps, int num_threads):
    """Batch statistics per channel (biased variance) and y = (x - mean) * invstd.

    ``work`` is a float64 workspace of 3 rows (vectors) or 3 + 2N rows (images).
    """
    _check_statistics(x, y, mean, var, invstd, work)
    with nogil:
        _batch_statistics(x, mean, var, invstd, work, eps, num_threads)
        _normalize(x, y, mean, invstd, num_threads)


def bn_scale_forward_train(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                           floating[::1] mean, floating[::1] var, floating[::1] invstd,
                           const floating[::1] gamma, const floating[::1] beta, bint relu,
                           double[:, ::1] work, double eps, int num_threads):
    """A training-mode BatchNormalization, ChannelwiseScaling and (``relu``) ReLU in one
    sweep after the statistics' own: y = relu(gamma * ((x - mean) * invstd) + beta),
    rounded step by step as the three layers round it, so the same bits.  Images only
    (S > 1); the statistics as `batchnorm_forward_train` computes them."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2], task, n, c
    _check_statistics(x, y, mean, var, invstd, work)
    _check(s > 1, "image layout")
    _check(gamma.shape[0] == channels and beta.shape[0] == channels, "parameter shape")
    with nogil:
        _batch_statistics(x, mean, var, invstd, work, eps, num_threads)
        for task in prange(n_batch * channels, schedule='static', num_threads=num_threads):
            n = task // channels
            c = task - n * channels
            if floating is float:
                cynn_bn_f_affine_apply(&x[n, c, 0], &y[n, c, 0], s, mean[c], invstd[c],
                                       gamma[c], beta[c], relu)
            else:
                cynn_bn_d_affine_apply(&x[n, c, 0], &y[n, c, 0], s, mean[c], invstd[c],
                                       gamma[c], beta[c], relu)


def bn_scale_backward_train(const floating[:, :, ::1] x, const floating[:, :, ::1] dy,
                            const floating[::1] mean, const floating[::1] invstd,
                            const floating[::1] gamma, const floating[::1] beta, bint relu,
                            floating[:, :, ::1] dx, floating[::1] grad_gamma,
                            floating[::1] grad_beta, double[:, ::1] work, int num_threads):
    """The backward pass of `bn_scale_forward_train` in two sweeps over x and dy:

    dz = dy where the ReLU passed (everywhere without ``relu``); with the sums
    S1 = sum(dz) and S2 = sum(dz * (x - mean)) per channel, over count values,
    grad_beta += S1, grad_gamma += invstd * S2, and the batch norm's input gradient
    of gamma * dz, dx = a * dz + b * (x - mean) + k with a = gamma * invstd,
    b = -gamma * invstd^3 * S2 / count, k = -gamma * invstd * S1 / count.

    The sums are in double, each channel's in one fixed order.  ``work`` as for the
    forward pass."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2], task, n, c
    cdef double count = n_batch * s, inv, g
    cdef floating a, b, k
    _check(s > 1, "image layout")
    _check(dy.shape[0] == n_batch and dy.shape[1] == channels and dy.shape[2] == s,
           "gradient shape")
    _check(dx.shape[0] == n_batch and dx.shape[1] == channels and dx.shape[2] == s,
           "input gradient shape")
    _check(mean.shape[0] == channels and invstd.shape[0] == channels, "statistics shape")
    _check(gamma.shape[0] == channels and beta.shape[0] == channels
           and grad_gamma.shape[0] == channels and grad_beta.shape[0] == channels,
           "parameter shape")
    _check(work.shape[0] >= 3 + 2 * n_batch and work.shape[1] >= channels, "workspace")
    with nogil:
        for task in prange(n_batch * channels, schedule='static', num_threads=num_threads):
            n = task // channels
            c = task - n * channels
            work[3 + 2 * n, c] = 0
            work[4 + 2 * n, c] = 0
            if floating is float:
                cynn_bn_f_affine_grad_sums(&x[n, c, 0], &dy[n, c, 0], s, mean[c], invstd[c],
                                           gamma[c], beta[c], relu, &work[3 + 2 * n, c],
                                           &work[4 + 2 * n, c])
            else:
                cynn_bn_d_affine_grad_sums(&x[n, c, 0], &dy[n, c, 0], s, mean[c], invstd[c],
                                           gamma[c], beta[c], relu, &work[3 + 2 * n, c],
                                           &work[4 + 2 * n, c])
        _reduce_planes(work, n_batch, channels)
        for c in range(channels):
            inv = invstd[c]
            g = gamma[c]
            grad_beta[c] += <floating> work[0, c]
            grad_gamma[c] += <floating> (inv * work[1, c])
            work[2, c] = -g * inv * inv * inv * work[1, c] / count   # b
            work[1, c] = -g * inv * work[0, c] / count               # k
            work[0, c] = g * inv                                     # a
        for task in prange(n_batch * channels, schedule='static', num_threads=num_threads):
            n = task // channels
            c = task - n * channels
            a = <floating> work[0, c]
            b = <floating> work[2, c]
            k = <floating> work[1, c]
            if floating is float:
                cynn_bn_f_affine_grad_apply(&x[n, c, 0], &dy[n, c, 0], &dx[n, c, 0], s, mean[c],
                                            invstd[c], gamma[c], beta[c], relu, a, b, k)
            else:
                cynn_bn_d_affine_grad_apply(&x[n, c, 0], &dy[n, c, 0], &dx[n, c, 0], s, mean[c],
                                            invstd[c], gamma[c], beta[c], relu, a, b, k)


def batchnorm_forward_eval(const floating[:, :, ::1] x, floating[:, :, ::1] y,
                           const floating[::1] mean, const floating[::1] invstd,
                           int num_threads):
    """y = (x - mean) * invstd with given per-channel statistics."""
    _check(y.shape[0] == x.shape[0] and y.shape[1] == x.shape[1] and y.shape[2] == x.shape[2],
           "output shape")
    _check(mean.shape[0] == x.shape[1] and invstd.shape[0] == x.shape[1], "statistics shape")
    with nogil:
        _normalize(x, y, mean, invstd, num_threads)


cdef void _grad_sums_columns(const floating* x, const floating* dy, Py_ssize_t n_batch,
                             Py_ssize_t channels, Py_ssize_t c0, Py_ssize_t c1,
                             const double* mean, double* sum_dy, double* sum_dyx) noexcept nogil:
    if floating is float:
        cynn_bn_f_col_sums(x, n_batch, channels, c0, c1, NULL, mean, 1, dy, sum_dy, sum_dyx)
    else:
        cynn_bn_d_col_sums(x, n_batch, channels, c0, c1, NULL, mean, 1, dy, sum_dy, sum_dyx)


def batchnorm_backward_train(const floating[:, :, ::1] x, const floating[:, :, ::1] dy,
                             const floating[::1] mean, const floating[::1] invstd,
                             floating[:, :, ::1] dx, double[:, ::1] work, int num_threads):
    """Input gradient through batch statistics:

    dx = invstd * (dy - mean(dy) - xn * mean(dy * xn)),  xn = (x - mean) * invstd

    ``work`` is a (3, C) float64 workspace.
    """
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    cdef Py_ssize_t c, n, q, task, blocks, c0, c1
    cdef double count = n_batch * s, inv
    cdef floating a, b, m, k
    cdef const floating* xs
    cdef const floating* gs
    cdef floating* dst
    cdef floating* coef
    _check(dy.shape[0] == n_batch and dy.shape[1] == channels and dy.shape[2] == s,
           "gradient shape")
    _check(dx.shape[0] == n_batch and dx.shape[1] == channels and dx.shape[2] == s,
           "input gradient shape")
    _check(mean.shape[0] == channels and invstd.shape[0] == channels, "statistics shape")
    _check(work.shape[0] >= 3 and work.shape[1] >= channels, "workspace")
    if s == 1:
        for c in range(channels):
            work[2, c] = mean[c]
        blocks = (channels + COLUMN_BLOCK - 1) // COLUMN_BLOCK
        for task in prange(blocks, nogil=True, schedule='static', num_threads=num_threads):
            c0 = task * COLUMN_BLOCK
            c1 = c0 + COLUMN_BLOCK if c0 + COLUMN_BLOCK < channels else channels
            _grad_sums_columns(&x[0, 0, 0], &dy[0, 0, 0], n_batch, channels, c0, c1,
                               &work[2, 0], &work[0, 0], &work[1, 0])
    else:
        _check(work.shape[0] >= 3 + 2 * n_batch, "per-plane workspace")
        for task in prange(n_batch * channels, nogil=True, schedule='static',
                           num_threads=num_threads):
            _plane_grad_sums(&x[0, 0, 0], &dy[0, 0, 0], mean, channels, s, task, work)
        _reduce_planes(work, n_batch, channels)
    # dx = a * dy + b * (x - mean) + k, per channel:
    #   a = invstd, b = -invstd^3 * mean(dy * (x - mean)), k = -invstd * mean(dy)
    for c in range(channels):
        inv = invstd[c]
        work[2, c] = -inv * inv * inv * work[1, c] / count
        work[1, c] = -inv * work[0, c] / count
    if s == 1:
        # The per-channel coefficients a, b, k as rows of the data's type.
        coef = <floating*> malloc(3 * channels * sizeof(floating))
        if coef == NULL:
            raise MemoryError()
        for c in range(channels):
            coef[c] = invstd[c]
            coef[channels + c] = <floating> work[2, c]
            coef[2 * channels + c] = <floating> work[1, c]
        for n in prange(n_batch, nogil=True, schedule='static', num_threads=num_threads):
            if floating is float:
                cynn_bn_f_row_backward(&x[n, 0, 0], &dy[n, 0, 0], &dx[n, 0, 0], &mean[0], coef,
                                       coef + channels, coef + 2 * channels, channels)
            else:
                cynn_bn_d_row_backward(&x[n, 0, 0], &dy[n, 0, 0], &dx[n, 0, 0], &mean[0], coef,
                                       coef + channels, coef + 2 * channels, channels)
        free(coef)
    else:
        for task in prange(n_batch * channels, nogil=True, schedule='static',
                           num_threads=num_threads):
            n = task // channels
            c = task - n * channels
            a = invstd[c]
            b = <floating> work[2, c]
            k = <floating> work[1, c]
            m = mean[c]
            xs = &x[n, c, 0]
            gs = &dy[n, c, 0]
            dst = &dx[n, c, 0]
            for q in range(s):
                dst[q] = a * gs[q] + b * (xs[q] - m) + k


def batchnorm_backward_eval(const floating[:, :, ::1] dy, const floating[::1] invstd,
                            floating[:, :, ::1] dx, int num_threads):
    """dx = dy * invstd: in evaluation mode the statistics are constants."""
    _check(dx.shape[0] == dy.shape[0] and dx.shape[1] == dy.shape[1] and dx.shape[2] == dy.shape[2],
           "input gradient shape")
    _check(invstd.shape[0] == dy.shape[1], "statistics shape")
    with nogil:
        _affine(dy, invstd, invstd, False, dx, num_threads)


def scale_forward(const floating[:, :, ::1] x, const floating[::1] gamma,
                  const floating[::1] beta, floating[:, :, ::1] y, int num_threads):
    """y = gamma[c] * x + beta[c] (ChannelwiseScaling), in one sweep."""
    _check(y.shape[0] == x.shape[0] and y.shape[1] == x.shape[1] and y.shape[2] == x.shape[2],
           "output shape")
    _check(gamma.shape[0] == x.shape[1] and beta.shape[0] == x.shape[1], "parameter shape")
    with nogil:
        _affine(x, gamma, beta, True, y, num_threads)


def scale_backward(const floating[:, :, ::1] x, const floating[:, :, ::1] dy,
                   const floating[::1] gamma, floating[:, :, ::1] dx,
                   floating[::1] grad_gamma, floating[::1] grad_beta, double[:, ::1] work,
                   int num_threads):
    """dx = gamma[c] * dy; grad_gamma[c] += sum(dy * x); grad_beta[c] += sum(dy).

    Sums in double, each channel's in one fixed order.  ``work`` is (3, C) float64.
    """
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1], s = x.shape[2]
    cdef Py_ssize_t c, n, off, task, blocks, c0, c1
    _check(dy.shape[0] == n_batch and dy.shape[1] == channels and dy.shape[2] == s,
           "gradient shape")
    _check(dx.shape[0] == n_batch and dx.shape[1] == channels and dx.shape[2] == s,
           "input gradient shape")
    _check(gamma.shape[0] == channels and grad_gamma.shape[0] == channels
           and grad_beta.shape[0] == channels, "parameter shape")
    _check(work.shape[0] >= 3 and work.shape[1] >= channels, "workspace")
    if s == 1:
        for c in range(channels):
            work[2, c] = 0
        blocks = (channels + COLUMN_BLOCK - 1) // COLUMN_BLOCK
        for task in prange(blocks, nogil=True, schedule='static', num_threads=num_threads):
            c0 = task * COLUMN_BLOCK
            c1 = c0 + COLUMN_BLOCK if c0 + COLUMN_BLOCK < channels else channels
            # Sums of dy and dy * (x - 0): the column helper with a zero mean.
            _grad_sums_columns(&x[0, 0, 0], &dy[0, 0, 0], n_batch, channels, c0, c1,
                               &work[2, 0], &work[0, 0], &work[1, 0])
        with nogil:
            _affine(dy, gamma, gamma, False, dx, num_threads)
    else:
        # One sweep per channel: the sums and dx = gamma * dy together.
        _check(work.shape[0] >= 3 + 2 * n_batch, "per-plane workspace")
        for task in prange(n_batch * channels, nogil=True, schedule='static',
                           num_threads=num_threads):
            n = task // channels
            c = task - n * channels
            off = task * s
            work[3 + 2 * n, c] = 0
            work[4 + 2 * n, c] = 0
            if floating is float:
                cynn_bn_f_scale_grad(&x[0, 0, 0] + off, &dy[0, 0, 0] + off, &dx[0, 0, 0] + off,
                                     s, gamma[c], &work[3 + 2 * n, c], &work[4 + 2 * n, c])
            else:
                cynn_bn_d_scale_grad(&x[0, 0, 0] + off, &dy[0, 0, 0] + off, &dx[0, 0, 0] + off,
                                     s, gamma[c], &work[3 + 2 * n, c], &work[4 + 2 * n, c])
        _reduce_planes(work, n_batch, channels)
    for c in range(channels):
        grad_beta[c] += <floating> work[0, c]
        grad_gamma[c] += <floating> work[1, c]
