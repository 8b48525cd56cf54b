"""Conv2d kernels: im2col / col2im over the whole batch plus one GEMM per product.

Layout.  Input x is (N, C, H, W), output y is (N, F, Ho, Wo), P = Ho * Wo and
K = C * kh * kw.  The column matrix holds the whole batch, ``col`` (K, N * P), with
row ``r = (c * kh + i) * kw + j`` and column ``n * P + oh * Wo + ow``.  Then

    forward:   tmp (F, N*P)  = W (F, K) @ col                 then y[n, f] = tmp[f, n] + b[f]
    backward:  dyt (F, N*P)  = dy transposed,  gb[f] += sum(dyt[f])
               gW  (F, K)   += dyt @ col^T
               dcol (K, N*P) = W^T @ dyt                      then dx = col2im(dcol)

The GEMMs run multi-threaded inside BLAS, outside any prange region; the sweeps run
under prange with static schedules, and every output element is written by one
iteration summing in a fixed order, so results do not depend on the thread count.
The Python layer checks every shape; the ``def`` functions re-check the sizes they
index with, so a bug upstream is an exception, never an out-of-bounds access.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

cdef extern from *:
    """
    #ifdef _OPENMP
    #define CYNN_HAVE_OPENMP 1
    #else
    #define CYNN_HAVE_OPENMP 0
    #endif
    """
    int CYNN_HAVE_OPENMP


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(CYNN_HAVE_OPENMP)


cdef void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                  const floating* a, int lda, const floating* b, int ldb,
                  floating beta, floating* c, int ldc) noexcept nogil:
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: a row-major
    # matrix read column-major is its transpose, so swap operands and m with n.
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)


cdef inline Py_ssize_t _first_valid(Py_ssize_t offset, Py_ssize_t stride) noexcept nogil:
    # Smallest o >= 0 with o * stride + offset >= 0.
    if offset >= 0:
        return 0
    return (-offset + stride - 1) // stride


cdef inline Py_ssize_t _end_valid(Py_ssize_t offset, Py_ssize_t stride, Py_ssize_t size,
                                  Py_ssize_t n_out) noexcept nogil:
    # One past the largest o < n_out with o * stride + offset < size.
    cdef Py_ssize_t last
    if offset >= size:
        return 0
    last = (size - 1 - offset) // stride + 1
    return last if last < n_out else n_out


cdef void _im2col(const floating[:, :, :, ::1] x, floating[:, ::1] col,
                  int kh, int kw, int sh, int sw, int ph, int pw, int ho, int wo,
                  int num_threads) noexcept nogil:
    cdef Py_ssize_t n_batch = x.shape[0], height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t n_rows = col.shape[0], p = ho * wo
    cdef Py_ssize_t task, r, n, c, i, j, oh, ow, ih, ow_lo, ow_hi, base
    cdef floating* dst
    for task in prange(n_rows * n_batch, nogil=True, schedule='static',
                       num_threads=num_threads):
        r = task // n_batch
        n = task - r * n_batch
        j = r % kw
        i = (r // kw) % kh
        c = r // (kw * kh)
        dst = &col[r, n * p]
        ow_lo = _first_valid(j - pw, sw)
        if ow_lo > wo:
            ow_lo = wo
        ow_hi = _end_valid(j - pw, sw, width, wo)
        if ow_hi < ow_lo:
            ow_hi = ow_lo
        for oh in range(ho):
            ih = oh * sh - ph + i
            base = oh * wo
            if ih < 0 or ih >= height:
                memset(&dst[base], 0, wo * sizeof(floating))
                continue
            for ow in range(ow_lo):
                dst[base + ow] = 0
            for ow in range(ow_lo, ow_hi):
                dst[base + ow] = x[n, c, ih, ow * sw - pw + j]
            for ow in range(ow_hi, wo):
                dst[base + ow] = 0


cdef void _col2im(const floating[:, ::1] dcol, floating[:, :, :, ::1] dx,
                  int kh, int kw, int sh, int sw, int ph, int pw, int ho, int wo,
                  int num_threads) noexcept nogil:
    cdef Py_ssize_t n_batch = dx.shape[0], channels = dx.shape[1]
    cdef Py_ssize_t height = dx.shape[2], width = dx.shape[3], p = ho * wo
    cdef Py_ssize_t task, n, c, i, j, r, oh, ow, ih, ow_lo, ow_hi
    cdef const floating* src
    for task in prange(n_batch * channels, nogil=True, schedule='static',
                       num_threads=num_threads):
        n = task // channels
        c = task - n * channels
        memset(&dx[n, c, 0, 0], 0, height * width * sizeof(floating))
        for i in range(kh):
            for j in range(kw):
                r = (c * kh + i) * kw + j
                src = &dcol[r, n * p]
                ow_lo = _first_valid(j - pw, sw)
                ow_hi = _end_valid(j - pw, sw, width, wo)
                for oh in range(ho):
                    ih = oh * sh - ph + i
                    if ih < 0 or ih >= height:
                        continue
                    for ow in range(ow_lo, ow_hi):
                        dx[n, c, ih, ow * sw - pw + j] += src[oh * wo + ow]


def _check(bint ok, str what):
    if not ok:
        raise ValueError(f"conv kernel: inconsistent {what}")


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] weight,
                   const floating[::1] bias, floating[:, ::1] col, floating[:, ::1] tmp,
                   floating[:, :, :, ::1] out, int kh, int kw, int sh, int sw, int ph,
                   int pw, bint has_bias, int num_threads):
    """out = conv(x, weight) + bias, with ``col`` (K, N*P) and ``tmp`` (F, N*P) workspaces."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t n_filters = weight.shape[0], k = weight.shape[1]
    cdef int ho = out.shape[2], wo = out.shape[3]
    cdef Py_ssize_t p = ho * wo
    cdef Py_ssize_t task, n, f, q
    cdef floating bf
    cdef floating* dst
    _check(k == channels * kh * kw, "weight shape")
    _check(out.shape[0] == n_batch and out.shape[1] == n_filters, "output shape")
    _check(ho == (x.shape[2] + 2 * ph - kh) // sh + 1 and wo == (x.shape[3] + 2 * pw - kw) // sw + 1,
           "output size")
    _check(col.shape[0] == k and col.shape[1] == n_batch * p, "column workspace")
    _check(tmp.shape[0] == n_filters and tmp.shape[1] == n_batch * p, "product workspace")
    _check(not has_bias or bias.shape[0] == n_filters, "bias shape")
    with nogil:
        _im2col(x, col, kh, kw, sh, sw, ph, pw, ho, wo, num_threads)
        gemm_rm(False, False, <int> n_filters, <int> (n_batch * p), <int> k, <floating> 1,
                &weight[0, 0], <int> k, &col[0, 0], <int> (n_batch * p), <floating> 0,
                &tmp[0, 0], <int> (n_batch * p))
        for task in prange(n_batch * n_filters, schedule='static', num_threads=num_threads):
            n = task // n_filters
            f = task - n * n_filters
            bf = bias[f] if has_bias else 0
            dst = &out[n, f, 0, 0]
            for q in range(p):
                dst[q] = tmp[f, n * p + q] + bf


def conv2d_grad_output(const floating[:, :, :, ::1] dy, floating[:, ::1] dyt,
                       floating[::1] grad_bias, bint accumulate_bias, int num_threads):
    """dyt (F, N*P) = dy (N, F, P) transposed; ``grad_bias[f] += sum(dy[:, f])`` if asked."""
    cdef Py_ssize_t n_batch = dy.shape[0], n_filters = dy.shape[1]
    cdef Py_ssize_t p = dy.shape[2] * dy.shape[3]
    cdef Py_ssize_t f, n, q
    cdef double total
    cdef const floating* src
    _check(dyt.shape[0] == n_filters and dyt.shape[1] == n_batch * p, "gradient workspace")
    _check(not accumulate_bias or grad_bias.shape[0] == n_filters, "bias gradient shape")
    for f in prange(n_filters, nogil=True, schedule='static', num_threads=num_threads):
        total = 0
        for n in range(n_batch):
            src = &dy[n, f, 0, 0]
            for q in range(p):
                dyt[f, n * p + q] = src[q]
                total = total + src[q]
        if accumulate_bias:
            grad_bias[f] += <floating> total


def conv2d_grad_weight(const floating[:, :, :, ::1] x, const floating[:, ::1] dyt,
                       floating[:, ::1] col, floating[:, ::1] grad_weight,
                       int kh, int kw, int sh, int sw, int ph, int pw, int ho, int wo,
                       int num_threads):
    """grad_weight (F, K) += dyt (F, N*P) @ im2col(x)^T, using ``col`` as workspace."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t n_filters = grad_weight.shape[0], k = grad_weight.shape[1]
    cdef Py_ssize_t np_ = n_batch * ho * wo
    _check(k == channels * kh * kw, "weight gradient shape")
    _check(ho == (x.shape[2] + 2 * ph - kh) // sh + 1 and wo == (x.shape[3] + 2 * pw - kw) // sw + 1,
           "output size")
    _check(col.shape[0] == k and col.shape[1] == np_, "column workspace")
    _check(dyt.shape[0] == n_filters and dyt.shape[1] == np_, "gradient workspace")
    with nogil:
        _im2col(x, col, kh, kw, sh, sw, ph, pw, ho, wo, num_threads)
        gemm_rm(False, True, <int> n_filters, <int> k, <int> np_, <floating> 1,
                &dyt[0, 0], <int> np_, &col[0, 0], <int> np_, <floating> 1,
                &grad_weight[0, 0], <int> k)


def conv2d_grad_input(const floating[:, ::1] weight, const floating[:, ::1] dyt,
                      floating[:, ::1] dcol, floating[:, :, :, ::1] dx,
                      int kh, int kw, int sh, int sw, int ph, int pw, int ho, int wo,
                      int num_threads):
    """dx = col2im(W^T (K, F) @ dyt (F, N*P)), using ``dcol`` (K, N*P) as workspace."""
    cdef Py_ssize_t n_batch = dx.shape[0], channels = dx.shape[1]
    cdef Py_ssize_t n_filters = weight.shape[0], k = weight.shape[1]
    cdef Py_ssize_t np_ = n_batch * ho * wo
    _check(k == channels * kh * kw, "weight shape")
    _check(ho == (dx.shape[2] + 2 * ph - kh) // sh + 1 and wo == (dx.shape[3] + 2 * pw - kw) // sw + 1,
           "output size")
    _check(dcol.shape[0] == k and dcol.shape[1] == np_, "column workspace")
    _check(dyt.shape[0] == n_filters and dyt.shape[1] == np_, "gradient workspace")
    with nogil:
        gemm_rm(True, False, <int> k, <int> np_, <int> n_filters, <floating> 1,
                &weight[0, 0], <int> k, &dyt[0, 0], <int> np_, <floating> 0,
                &dcol[0, 0], <int> np_)
        _col2im(dcol, dx, kh, kw, sh, sw, ph, pw, ho, wo, num_threads)
