"""Conv2d kernels: per-sample im2col / col2im around BLAS GEMMs.

Layout.  Input x is (N, C, H, W), output y is (N, F, Ho, Wo), P = Ho * Wo and
K = C * kh * kw.  Each sample n is unfolded into a (K, P) column matrix with row
``r = (c * kh + i) * kw + j`` and column ``oh * Wo + ow``, in a per-thread workspace
small enough to stay in cache, and then

    forward:     y[n]  (F, P) = W (F, K) @ col_n + b
    input grad:  dcol  (K, P) = W^T @ dy[n]             then dx[n] = col2im(dcol)
    weight grad: part[g] (K, F) += col_n @ dy[n]^T       for the samples n of group g
                 gW += (part[0] + part[1] + ...)^T       in group order
    bias grad:   gb[f] += sum over n, p of dy[n, f, p]

Threads.  Samples (and groups of samples) are spread over OpenMP threads with a static
schedule; each thread calls a single-threaded GEMM on its own sample, so BLAS threads
are never nested inside the prange region.  When the caller could not pin the BLAS
used here to one thread (``blas_single_threaded=False``) the loops run serially and
BLAS threads each GEMM instead.  The number of weight-gradient groups is fixed by
the caller independently of the thread count, and every sum runs in a fixed order,
so results are bit-identical for any number of threads.

The Python layer checks every shape; the ``def`` functions re-check the sizes they
index with, so a bug upstream is an exception, never an out-of-bounds access.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.string cimport memcpy, memset

cdef extern from *:
    """
    #ifdef _OPENMP
    #define CYNN_HAVE_OPENMP 1
    #else
    #define CYNN_HAVE_OPENMP 0
    #endif
    #ifndef CYNN_DEBUG_BUILD
    #define CYNN_DEBUG_BUILD 0
    #endif
    """
    int CYNN_HAVE_OPENMP
    int CYNN_DEBUG_BUILD


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(CYNN_HAVE_OPENMP)


def debug_build():
    """True for a CYNN_DEBUG=1 build (bounds and wraparound checks on)."""
    return bool(CYNN_DEBUG_BUILD)


include "_gemm.pxi"


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


cdef void _im2col_rows(const floating* x, Py_ssize_t channels, Py_ssize_t height,
                       Py_ssize_t width, floating* col, int kh, int kw, int sh, int sw,
                       int ph, int pw, int oh0, int oh1, int wo) noexcept nogil:
    """Unfold output rows [oh0, oh1) of one (C, H, W) sample into col (K, (oh1 - oh0) * Wo)."""
    cdef Py_ssize_t p = (oh1 - oh0) * wo, r, c, i, j, oh, ow, ih, ow_lo, ow_hi, iw0
    cdef floating* dst
    cdef const floating* src
    for r in range(channels * kh * kw):
        j = r % kw
        i = (r // kw) % kh
        c = r // (kw * kh)
        dst = col + r * p - oh0 * wo
        ow_lo = _first_valid(j - pw, sw)
        if ow_lo > wo:
            ow_lo = wo
        ow_hi = _end_valid(j - pw, sw, width, wo)
        if ow_hi < ow_lo:
            ow_hi = ow_lo
        for oh in range(oh0, oh1):
            ih = oh * sh - ph + i
            if ih < 0 or ih >= height:
                memset(dst + oh * wo, 0, wo * sizeof(floating))
                continue
            src = x + (c * height + ih) * width
            for ow in range(ow_lo):
                dst[oh * wo + ow] = 0
            iw0 = j - pw
            if sw == 1:
                # glibc's memcpy picks the widest vector copy this CPU has; the
                # compiled loop is held to the baseline x86-64 SSE2 width.
                memcpy(dst + oh * wo + ow_lo, src + ow_lo + iw0, (ow_hi - ow_lo) * sizeof(floating))
            else:
                for ow in range(ow_lo, ow_hi):
                    dst[oh * wo + ow] = src[ow * sw + iw0]
            for ow in range(ow_hi, wo):
                dst[oh * wo + ow] = 0


cdef void _col2im_rows(const floating* col, Py_ssize_t channels, Py_ssize_t height,
                       Py_ssize_t width, floating* dx, int kh, int kw, int sh, int sw,
                       int ph, int pw, int oh0, int oh1, int wo) noexcept nogil:
    """Add the patches of output rows [oh0, oh1), col (K, (oh1 - oh0) * Wo), into one
    (C, H, W) sample (which the caller zeroed)."""
    cdef Py_ssize_t p = (oh1 - oh0) * wo, r, c, i, j, oh, ow, ih, ow_lo, ow_hi, iw0
    cdef const floating* src
    cdef floating* dst
    for r in range(channels * kh * kw):
        j = r % kw
        i = (r // kw) % kh
        c = r // (kw * kh)
        src = col + r * p - oh0 * wo
        ow_lo = _first_valid(j - pw, sw)
        ow_hi = _end_valid(j - pw, sw, width, wo)
        iw0 = j - pw
        for oh in range(oh0, oh1):
            ih = oh * sh - ph + i
            if ih < 0 or ih >= height:
                continue
            dst = dx + (c * height + ih) * width
            if sw == 1:
                for ow in range(ow_lo, ow_hi):
                    dst[ow + iw0] += src[oh * wo + ow]
            else:
                for ow in range(ow_lo, ow_hi):
                    dst[ow * sw + iw0] += src[oh * wo + ow]


cdef inline int _chunk_rows(Py_ssize_t k, int ho, int wo, size_t itemsize) noexcept nogil:
    """Output rows per column chunk: a (K, rows * Wo) block of about 256 KB stays in the
    L2 cache between the im2col that writes it and the GEMM that reads it.  (Measured on
    (64,16,16,28,5) and (64,32,64,14,3): 128 KB and 384-512 KB blocks were slower.)"""
    cdef Py_ssize_t rows = (262144 // itemsize) // (k * wo) if k * wo > 0 else ho
    if rows < 1:
        rows = 1
    if rows > ho:
        rows = ho
    return <int> rows


def _check(bint ok, str what):
    if not ok:
        raise ValueError(f"conv kernel: inconsistent {what}")


cdef inline bint _size_ok(Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t h, Py_ssize_t w,
                          int kh, int kw, int sh, int sw, int ph, int pw):
    return (ho >= 1 and wo >= 1 and ho == (h + 2 * ph - kh) // sh + 1
            and wo == (w + 2 * pw - kw) // sw + 1)


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] weight,
                   const floating[::1] bias, floating[:, ::1] workspace,
                   floating[:, :, :, ::1] out, int kh, int kw, int sh, int sw, int ph,
                   int pw, bint has_bias, int num_threads, bint blas_single_threaded):
    """out[n] = weight @ im2col(x[n]) + bias; ``workspace`` holds one (K*P) row per thread."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t n_filters = weight.shape[0], k = weight.shape[1]
    cdef int ho = out.shape[2], wo = out.shape[3]
    cdef Py_ssize_t p = ho * wo, n, f, q, tid
    cdef int threads = num_threads if blas_single_threaded else 1
    cdef floating bf
    cdef int rows, oh0, oh1
    cdef floating* col
    cdef floating* dst
    _check(k == channels * kh * kw, "weight shape")
    _check(out.shape[0] == n_batch and out.shape[1] == n_filters, "output shape")
    _check(_size_ok(ho, wo, height, width, kh, kw, sh, sw, ph, pw), "output size")
    _check(workspace.shape[0] >= threads and workspace.shape[1] >= k * p, "column workspace")
    _check(not has_bias or bias.shape[0] == n_filters, "bias shape")
    rows = _chunk_rows(k, ho, wo, sizeof(floating))
    for n in prange(n_batch, nogil=True, schedule='static', num_threads=threads):
        tid = threadid()
        col = &workspace[tid, 0]
        oh0 = 0
        while oh0 < ho:
            oh1 = oh0 + rows if oh0 + rows < ho else ho
            _im2col_rows(&x[n, 0, 0, 0], channels, height, width, col, kh, kw, sh, sw, ph, pw,
                         oh0, oh1, wo)
            gemm_rm(False, False, <int> n_filters, (oh1 - oh0) * wo, <int> k, <floating> 1,
                    &weight[0, 0], <int> k, col, (oh1 - oh0) * wo, <floating> 0,
                    &out[n, 0, 0, 0] + oh0 * wo, <int> p)
            oh0 = oh1
        if has_bias:
            for f in range(n_filters):
                bf = bias[f]
                dst = &out[n, f, 0, 0]
                for q in range(p):
                    dst[q] = dst[q] + bf


def conv2d_grad_input(const floating[:, ::1] weight, const floating[:, :, :, ::1] dy,
                      floating[:, ::1] workspace, floating[:, :, :, ::1] dx,
                      int kh, int kw, int sh, int sw, int ph, int pw, int num_threads,
                      bint blas_single_threaded):
    """dx[n] = col2im(weight^T @ dy[n])."""
    cdef Py_ssize_t n_batch = dx.shape[0], channels = dx.shape[1]
    cdef Py_ssize_t height = dx.shape[2], width = dx.shape[3]
    cdef Py_ssize_t n_filters = weight.shape[0], k = weight.shape[1]
    cdef int ho = dy.shape[2], wo = dy.shape[3]
    cdef Py_ssize_t p = ho * wo, n, tid
    cdef int threads = num_threads if blas_single_threaded else 1
    cdef floating* dcol
    cdef int rows, oh0, oh1
    _check(k == channels * kh * kw, "weight shape")
    _check(dy.shape[0] == n_batch and dy.shape[1] == n_filters, "gradient shape")
    _check(_size_ok(ho, wo, height, width, kh, kw, sh, sw, ph, pw), "output size")
    _check(workspace.shape[0] >= threads and workspace.shape[1] >= k * p, "column workspace")
    rows = _chunk_rows(k, ho, wo, sizeof(floating))
    for n in prange(n_batch, nogil=True, schedule='static', num_threads=threads):
        tid = threadid()
        dcol = &workspace[tid, 0]
        memset(&dx[n, 0, 0, 0], 0, channels * height * width * sizeof(floating))
        oh0 = 0
        while oh0 < ho:
            oh1 = oh0 + rows if oh0 + rows < ho else ho
            gemm_rm(True, False, <int> k, (oh1 - oh0) * wo, <int> n_filters, <floating> 1,
                    &weight[0, 0], <int> k, &dy[n, 0, 0, 0] + oh0 * wo, <int> p, <floating> 0,
                    dcol, (oh1 - oh0) * wo)
            _col2im_rows(dcol, channels, height, width, &dx[n, 0, 0, 0], kh, kw, sh, sw, ph, pw,
                         oh0, oh1, wo)
            oh0 = oh1


def conv2d_grad_params(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dy,
                       floating[:, ::1] grad_weight, floating[::1] grad_bias, bint has_bias,
                       floating[:, ::1] workspace, floating[:, :, ::1] partial,
                       int kh, int kw, int sh, int sw, int ph, int pw, int num_threads,
                       bint blas_single_threaded):
    """grad_weight += sum_n dy[n] @ im2col(x[n])^T and grad_bias += sum dy, in a fixed order.

    ``partial`` (G, K, F) holds one transposed partial sum per group of consecutive
    samples; G is chosen by the caller independently of the thread count.
    """
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t n_filters = grad_weight.shape[0], k = grad_weight.shape[1]
    cdef Py_ssize_t n_groups = partial.shape[0]
    cdef int ho = dy.shape[2], wo = dy.shape[3]
    cdef Py_ssize_t p = ho * wo, n, g, f, e, q, tid, first, last
    cdef int threads = num_threads if blas_single_threaded else 1
    cdef double total
    cdef floating acc
    cdef floating* col
    cdef int rows = _chunk_rows(k, ho, wo, sizeof(floating)), oh0, oh1
    cdef const floating* src
    _check(k == channels * kh * kw, "weight gradient shape")
    _check(dy.shape[0] == n_batch and dy.shape[1] == n_filters, "gradient shape")
    _check(_size_ok(ho, wo, height, width, kh, kw, sh, sw, ph, pw), "output size")
    _check(workspace.shape[0] >= threads and workspace.shape[1] >= k * p, "column workspace")
    _check(n_groups >= 1 and partial.shape[1] == k and partial.shape[2] == n_filters,
           "partial-sum workspace")
    _check(not has_bias or grad_bias.shape[0] == n_filters, "bias gradient shape")
    for g in prange(n_groups, nogil=True, schedule='static', num_threads=threads):
        tid = threadid()
        col = &workspace[tid, 0]
        first = g * n_batch // n_groups
        last = (g + 1) * n_batch // n_groups
        memset(&partial[g, 0, 0], 0, n_filters * k * sizeof(floating))
        for n in range(first, last):
            # The transposed product part^T (K, F) += col (K, P) @ dy[n]^T runs 15-45%
            # faster in the BLAS than part (F, K) += dy[n] @ col^T (measured for F of
            # 16 to 64), most for few filters.  Column chunks as in the forward pass.
            oh0 = 0
            while oh0 < ho:
                oh1 = oh0 + rows if oh0 + rows < ho else ho
                _im2col_rows(&x[n, 0, 0, 0], channels, height, width, col, kh, kw, sh, sw,
                             ph, pw, oh0, oh1, wo)
                gemm_rm(False, True, <int> k, <int> n_filters, (oh1 - oh0) * wo, <floating> 1,
                        col, (oh1 - oh0) * wo, &dy[n, 0, 0, 0] + oh0 * wo, <int> p,
                        <floating> 1, &partial[g, 0, 0], <int> n_filters)
                oh0 = oh1
    for e in prange(n_filters * k, nogil=True, schedule='static', num_threads=num_threads):
        f = e // k
        acc = 0
        for g in range(n_groups):
            acc = acc + partial[g, e - f * k, f]
        grad_weight[f, e - f * k] += acc
    if has_bias:
        for f in prange(n_filters, nogil=True, schedule='static', num_threads=num_threads):
            total = 0
            for n in range(n_batch):
                src = &dy[n, f, 0, 0]
                for q in range(p):
                    total = total + src[q]
            grad_bias[f] += <floating> total
