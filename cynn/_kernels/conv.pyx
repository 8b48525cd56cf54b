"""Conv2d kernels: per-sample im2col / col2im around BLAS GEMMs.

Layout.  Input x is (N, C, H, W), output y is (N, F, Ho, Wo), P = Ho * Wo and
K = C * kh * kw.  Each sample is first copied into a zero-padded (C, H + 2ph, W + 2pw)
buffer, so that every patch read is in bounds; it is then unfolded into a (K, P) column
matrix with row ``r = (c * kh + i) * kw + j`` and column ``oh * Wo + ow``, a block of
output rows at a time small enough to stay in cache between im2col and the GEMM:

    forward:     y[n]  (F, P) = [W | b] (F, K + 1) @ [col_n; 1]
    input grad:  dcol  (K, P) = W^T @ dy[n]             then dx[n] = col2im(dcol)
    weight grad: part[g] (K + 1, F) += [col_n; 1] @ dy[n]^T   for the samples n of group g
                 [gW | gb] += (part[0] + part[1] + ...)^T     in group order

The row of ones folds the bias into the GEMMs: no separate sweep over y or dy.
``conv2d_backward`` computes the input gradient and the weight gradient's partial sums
in one pass over the samples, so each dy[n] comes from memory once; for F <= C it can
compute the input gradient as the forward convolution of dy with the flipped kernel
instead (see ``Conv2d._grad_input_as_conv``).

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

cdef extern from "cynn_common.h":
    int CYNN_HAVE_OPENMP
    int CYNN_DEBUG_BUILD
    int CYNN_SANITIZE_BUILD


def openmp_enabled():
    """True when the kernels were compiled with OpenMP."""
    return bool(CYNN_HAVE_OPENMP)


def debug_build():
    """True for a CYNN_DEBUG=1 build (bounds and wraparound checks on)."""
    return bool(CYNN_DEBUG_BUILD)


def sanitize_build():
    """True for a CYNN_SANITIZE=1 build (AddressSanitizer and UBSan compiled in)."""
    return bool(CYNN_SANITIZE_BUILD)


include "_gemm.pxi"


cdef extern from "conv.h":
    # im2col / col2im of output rows [oh0, oh1) of one padded sample, and the direct
    # stride-1 convolution (at most CYNN_DIRECT_TAPS taps): see conv.h.
    int CYNN_DIRECT_TAPS
    void cynn_im2col_f(const float* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                       float* col, int kh, int kw, int sh, int sw, int oh0, int oh1,
                       int wo) noexcept nogil
    void cynn_im2col_d(const double* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                       double* col, int kh, int kw, int sh, int sw, int oh0, int oh1,
                       int wo) noexcept nogil
    void cynn_col2im_f(const float* col, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                       float* dxp, int kh, int kw, int sh, int sw, int oh0, int oh1,
                       int wo) noexcept nogil
    void cynn_col2im_d(const double* col, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                       double* dxp, int kh, int kw, int sh, int sw, int oh0, int oh1,
                       int wo) noexcept nogil
    void cynn_direct_f(const float* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                       const float* w, Py_ssize_t ldw, Py_ssize_t n_filters, int has_bias,
                       int kh, int kw, float* out, int ho, int wo) noexcept nogil
    void cynn_direct_d(const double* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                       const double* w, Py_ssize_t ldw, Py_ssize_t n_filters, int has_bias,
                       int kh, int kw, double* out, int ho, int wo) noexcept nogil


cdef struct Geom:
    # One sample's geometry: input (C, H, W), padded (C, Hp, Wp), output rows Ho x Wo.
    Py_ssize_t channels, height, width, hp, wp
    int kh, kw, sh, sw, ph, pw, ho, wo


cdef Geom _geom(Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width, int kh, int kw,
                int sh, int sw, int ph, int pw, int ho, int wo) noexcept nogil:
    cdef Geom g
    g.channels, g.height, g.width = channels, height, width
    g.hp, g.wp = height + 2 * <Py_ssize_t> ph, width + 2 * <Py_ssize_t> pw
    g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.ho, g.wo = kh, kw, sh, sw, ph, pw, ho, wo
    return g


cdef inline void _im2col_rows(const floating* xp, const Geom* g, floating* col, int oh0, int oh1,
                              bint ones_row) noexcept nogil:
    """Unfold output rows [oh0, oh1) of one padded (C, Hp, Wp) sample into col (K, (oh1 - oh0) * Wo),
    with ``ones_row`` one more row of ones after them (the bias's column of [W | b])."""
    cdef Py_ssize_t q, k = g.channels * g.kh * g.kw, p = (oh1 - oh0) * g.wo
    if floating is float:
        cynn_im2col_f(xp, g.channels, g.hp, g.wp, col, g.kh, g.kw, g.sh, g.sw, oh0, oh1, g.wo)
    else:
        cynn_im2col_d(xp, g.channels, g.hp, g.wp, col, g.kh, g.kw, g.sh, g.sw, oh0, oh1, g.wo)
    if ones_row:
        for q in range(p):
            col[k * p + q] = 1


cdef inline void _col2im_rows(const floating* col, const Geom* g, floating* dxp, int oh0,
                              int oh1) noexcept nogil:
    """Add the patches of output rows [oh0, oh1), col (K, (oh1 - oh0) * Wo), into one
    padded (C, Hp, Wp) sample gradient."""
    if floating is float:
        cynn_col2im_f(col, g.channels, g.hp, g.wp, dxp, g.kh, g.kw, g.sh, g.sw, oh0, oh1, g.wo)
    else:
        cynn_col2im_d(col, g.channels, g.hp, g.wp, dxp, g.kh, g.kw, g.sh, g.sw, oh0, oh1, g.wo)


cdef void _pad_sample(const floating* x, const Geom* g, floating* xp) noexcept nogil:
    """Copy one (C, H, W) sample into the middle of a zeroed (C, Hp, Wp) buffer."""
    cdef Py_ssize_t c, h
    if g.ph == 0 and g.pw == 0:
        memcpy(xp, x, g.channels * g.height * g.width * sizeof(floating))
        return
    memset(xp, 0, g.channels * g.hp * g.wp * sizeof(floating))
    for c in range(g.channels):
        for h in range(g.height):
            memcpy(xp + (c * g.hp + h + g.ph) * g.wp + g.pw, x + (c * g.height + h) * g.width,
                   g.width * sizeof(floating))


cdef void _unpad_sample(const floating* xp, const Geom* g, floating* x) noexcept nogil:
    """Copy the middle (C, H, W) of a padded (C, Hp, Wp) buffer out."""
    cdef Py_ssize_t c, h
    for c in range(g.channels):
        for h in range(g.height):
            memcpy(x + (c * g.height + h) * g.width, xp + (c * g.hp + h + g.ph) * g.wp + g.pw,
                   g.width * sizeof(floating))


cdef inline int _chunk_rows(Py_ssize_t k, int ho, int wo, size_t itemsize) noexcept nogil:
    """Output rows per column chunk: a (K, rows * Wo) block of about 256 KB stays in the
    L2 cache between the im2col that writes it and the GEMM that reads it (both smaller
    and larger blocks were slower)."""
    cdef Py_ssize_t rows = (262144 // itemsize) // (k * wo) if k * wo > 0 else ho
    if rows < 1:
        rows = 1
    if rows > ho:
        rows = ho
    return <int> rows


cdef inline Py_ssize_t _block(Py_ssize_t k, int ho, int wo, size_t itemsize) noexcept nogil:
    """Length of the column block: k rows of one chunk of output rows."""
    return k * _chunk_rows(k, ho, wo, itemsize) * wo


def workspace_size(Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width, int kh, int kw,
                   int ph, int pw, int ho, int wo, Py_ssize_t itemsize):
    """Per-thread workspace length, in items, that every kernel here accepts for this
    geometry: a column block of K or K + 1 rows, whichever is longer, then the padded
    (C, H + 2ph, W + 2pw) sample."""
    cdef Py_ssize_t k = channels * kh * kw
    cdef Py_ssize_t block = max(_block(k, ho, wo, itemsize), _block(k + 1, ho, wo, itemsize))
    return block + channels * (height + 2 * ph) * (width + 2 * pw)


cdef str _FAMILY = "conv"
include "_checks.pxi"
include "_geometry.pxi"


cdef int _check_workspace(floating[:, ::1] ws, int threads, const Geom* g, Py_ssize_t k,
                          size_t itemsize) except -1:
    _check(ws.shape[0] >= threads
           and ws.shape[1] >= _block(k, g.ho, g.wo, itemsize) + g.channels * g.hp * g.wp,
           "column workspace")
    return 0


# Stride-1 forward passes with at most this many taps (C * kh * kw <= 27 by default;
# set_direct_max_taps moves it, up to CYNN_DIRECT_TAPS, the size of conv.h's offset
# table) and output rows of at least one 64-byte vector run as a direct convolution.
cdef int _direct_max_taps = 27


def set_direct_max_taps(int taps):
    """Set the direct-convolution threshold (0 turns it off); returns the previous value."""
    global _direct_max_taps
    if taps < 0 or taps > CYNN_DIRECT_TAPS:
        raise ValueError(f"direct convolution takes 0 to {CYNN_DIRECT_TAPS} taps, got {taps}")
    cdef int old = _direct_max_taps
    _direct_max_taps = taps
    return old


cdef inline bint _direct(const Geom* g, size_t itemsize) noexcept nogil:
    return (g.sh == 1 and g.sw == 1 and g.channels * g.kh * g.kw <= _direct_max_taps
            and g.wo * itemsize >= 64)


cdef void _forward_sample(const floating* xs, const Geom* g, const floating* weight,
                          Py_ssize_t n_filters, bint has_bias, floating* col, floating* xp,
                          floating* out) noexcept nogil:
    """out (F, Ho, Wo) = [W | b] @ [im2col(xs); 1], or the direct convolution."""
    cdef Py_ssize_t kk = g.channels * g.kh * g.kw + has_bias
    cdef int rows = _chunk_rows(kk, g.ho, g.wo, sizeof(floating)), oh0 = 0, oh1
    cdef int p = g.ho * g.wo
    _pad_sample(xs, g, xp)
    if _direct(g, sizeof(floating)):
        if floating is float:
            cynn_direct_f(xp, g.channels, g.hp, g.wp, weight, kk, n_filters, has_bias,
                          g.kh, g.kw, out, g.ho, g.wo)
        else:
            cynn_direct_d(xp, g.channels, g.hp, g.wp, weight, kk, n_filters, has_bias,
                          g.kh, g.kw, out, g.ho, g.wo)
        return
    while oh0 < g.ho:
        oh1 = oh0 + rows if oh0 + rows < g.ho else g.ho
        _im2col_rows(xp, g, col, oh0, oh1, has_bias)
        gemm_rm(False, False, <int> n_filters, (oh1 - oh0) * g.wo, <int> kk, <floating> 1,
                weight, <int> kk, col, (oh1 - oh0) * g.wo, <floating> 0, out + oh0 * g.wo, p)
        oh0 = oh1


cdef void _grad_input_sample(const floating* weight, Py_ssize_t n_filters, const floating* dy,
                             const Geom* g, floating* dcol, floating* dxp,
                             floating* dx) noexcept nogil:
    """dx (C, H, W) = col2im(W^T @ dy), chunk by chunk of output rows."""
    cdef Py_ssize_t k = g.channels * g.kh * g.kw
    cdef int rows = _chunk_rows(k, g.ho, g.wo, sizeof(floating)), oh0 = 0, oh1
    cdef int p = g.ho * g.wo
    memset(dxp, 0, g.channels * g.hp * g.wp * sizeof(floating))
    while oh0 < g.ho:
        oh1 = oh0 + rows if oh0 + rows < g.ho else g.ho
        gemm_rm(True, False, <int> k, (oh1 - oh0) * g.wo, <int> n_filters, <floating> 1,
                weight, <int> k, dy + oh0 * g.wo, p, <floating> 0, dcol, (oh1 - oh0) * g.wo)
        _col2im_rows(dcol, g, dxp, oh0, oh1)
        oh0 = oh1
    _unpad_sample(dxp, g, dx)


cdef void _grad_params_sample(const floating* xs, const floating* dy, const Geom* g,
                              Py_ssize_t n_filters, bint has_bias, floating* col, floating* xp,
                              floating* part) noexcept nogil:
    """part (K + has_bias, F) += [im2col(xs); 1] @ dy^T."""
    cdef Py_ssize_t kk = g.channels * g.kh * g.kw + has_bias
    cdef int rows = _chunk_rows(kk, g.ho, g.wo, sizeof(floating)), oh0 = 0, oh1
    cdef int p = g.ho * g.wo
    _pad_sample(xs, g, xp)
    # The transposed product part^T (K, F) += col (K, P) @ dy^T runs faster in the BLAS
    # than part (F, K) += dy @ col^T, the more so the fewer the filters.
    while oh0 < g.ho:
        oh1 = oh0 + rows if oh0 + rows < g.ho else g.ho
        _im2col_rows(xp, g, col, oh0, oh1, has_bias)
        gemm_rm(False, True, <int> kk, <int> n_filters, (oh1 - oh0) * g.wo, <floating> 1,
                col, (oh1 - oh0) * g.wo, dy + oh0 * g.wo, p, <floating> 1, part,
                <int> n_filters)
        oh0 = oh1


cdef inline void _dx_sample(bint as_conv, const floating* weight_dx, Py_ssize_t n_filters,
                            const floating* dy, const Geom* g, const Geom* gq, floating* ws,
                            Py_ssize_t block, floating* dx) noexcept nogil:
    """dx (C, H, W) of one sample: the flipped-kernel correlation of dy (geometry ``gq``)
    or col2im(W^T @ dy); ``ws`` is a column block of ``block`` items, then the padding."""
    if as_conv:
        _forward_sample(dy, gq, weight_dx, g.channels, False, ws, ws + block, dx)
    else:
        _grad_input_sample(weight_dx, n_filters, dy, g, ws, ws + block, dx)


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] weight,
                   floating[:, ::1] workspace, floating[:, :, :, ::1] out, int kh, int kw,
                   int sh, int sw, int ph, int pw, bint has_bias, int num_threads,
                   bint blas_single_threaded):
    """out[n] = weight @ im2col(x[n]), where with a bias ``weight`` is (F, K + 1) with the
    bias as its last column and the column block gets a last row of ones, so the GEMM
    adds the bias in the same sweep that writes the output.  ``workspace`` holds one row
    per thread: a column block of K + 1 rows, then the padded (C, H + 2ph, W + 2pw) sample
    (``workspace_size`` gives the length)."""
    cdef Py_ssize_t n_batch = x.shape[0], n_filters = weight.shape[0], n, tid
    cdef int threads = num_threads if blas_single_threaded else 1
    cdef Geom g = _geom(x.shape[1], x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw,
                        out.shape[2], out.shape[3])
    cdef Py_ssize_t kk = g.channels * kh * kw + has_bias
    cdef Py_ssize_t block = _block(kk, g.ho, g.wo, sizeof(floating))
    cdef floating* col
    _check(weight.shape[1] == kk, "weight shape")
    _check(out.shape[0] == n_batch and out.shape[1] == n_filters, "output shape")
    _check(_output_size_ok(out.shape[2], out.shape[3], g.height, g.width, kh, kw, sh, sw,
                           ph, pw), "output size")
    _check(num_threads >= 1, "thread count")
    _check_workspace(workspace, threads, &g, kk, sizeof(floating))
    for n in prange(n_batch, nogil=True, schedule='static', num_threads=threads):
        tid = threadid()
        col = &workspace[tid, 0]
        _forward_sample(&x[n, 0, 0, 0], &g, &weight[0, 0], n_filters, has_bias, col,
                        col + block, &out[n, 0, 0, 0])


def conv2d_backward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] dy,
                    const floating[:, ::1] weight_dx, floating[:, :, :, ::1] dx,
                    floating[:, ::1] workspace_dx, floating[:, :, ::1] partial,
                    floating[:, ::1] workspace_params, int kh, int kw, int sh, int sw,
                    int ph, int pw, bint has_bias, bint want_dx, bint as_conv,
                    int num_threads, bint blas_single_threaded):
    """The input gradient and the weight gradient's partial sums in one pass over the
    samples, so that each dy[n] is read from memory once and then from the cache.

    With ``want_dx``, dx[n] is either col2im(W^T @ dy[n]) with ``weight_dx`` the (F, K)
    weight, or with ``as_conv`` (stride 1) the correlation of dy[n], padded by k - 1 - p,
    with ``weight_dx`` the flipped, transposed (C, F * kh * kw) kernel.
    ``partial`` (G, K + has_bias, F) gets one transposed partial sum
    [im2col(x[n]); 1] @ dy[n]^T per group of consecutive samples (G fixed by the caller,
    independently of the thread count); ``conv2d_reduce_params`` adds them up.
    ``workspace_dx`` and ``workspace_params`` have ``workspace_size`` items per thread for
    the geometry each computes with.
    """
    cdef Py_ssize_t n_batch = x.shape[0], n_filters = dy.shape[1]
    cdef Py_ssize_t n_groups = partial.shape[0], n, grp, tid, first, last
    cdef int threads = num_threads if blas_single_threaded else 1
    cdef Geom g = _geom(x.shape[1], x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw,
                        dy.shape[2], dy.shape[3])
    cdef Geom gq
    cdef Py_ssize_t k = g.channels * kh * kw, kk = k + has_bias
    cdef Py_ssize_t block_dx = 0, block_params = _block(kk, g.ho, g.wo, sizeof(floating))
    cdef floating* wsp
    _check(dy.shape[0] == n_batch, "gradient shape")
    _check(_output_size_ok(dy.shape[2], dy.shape[3], g.height, g.width, kh, kw, sh, sw,
                           ph, pw), "output size")
    _check(num_threads >= 1, "thread count")
    _check(n_groups >= 1, "partial-sum workspace")
    # The input gradient as a correlation of dy padded by k - 1 - p (kh, ph checked above).
    gq = _geom(n_filters, g.ho, g.wo, kh, kw, 1, 1, kh - 1 - ph, kw - 1 - pw,
               <int> g.height, <int> g.width)
    if want_dx:
        _check(dx.shape[0] == n_batch and dx.shape[1] == g.channels and dx.shape[2] == g.height
               and dx.shape[3] == g.width, "input gradient shape")
        if as_conv:
            _check(sh == 1 and sw == 1 and _output_size_ok(g.height, g.width, g.ho, g.wo, kh,
                                                           kw, 1, 1, gq.ph, gq.pw),
                   "flipped geometry")
            _check(weight_dx.shape[0] == g.channels and weight_dx.shape[1] == n_filters * kh * kw,
                   "flipped weight shape")
            block_dx = _block(n_filters * kh * kw, gq.ho, gq.wo, sizeof(floating))
            _check_workspace(workspace_dx, threads, &gq, n_filters * kh * kw, sizeof(floating))
        else:
            _check(weight_dx.shape[0] == n_filters and weight_dx.shape[1] == k, "weight shape")
            block_dx = _block(k, g.ho, g.wo, sizeof(floating))
            _check_workspace(workspace_dx, threads, &g, k, sizeof(floating))
    _check(partial.shape[1] == kk and partial.shape[2] == n_filters, "partial-sum workspace")
    _check_workspace(workspace_params, threads, &g, kk, sizeof(floating))
    # Fused when every thread gets a group; with more threads than groups, dx first
    # spreads over the samples on its own (the same per-sample work, the same bits).
    cdef bint fuse = want_dx and threads <= n_groups
    if want_dx and not fuse:
        for n in prange(n_batch, nogil=True, schedule='static', num_threads=threads):
            _dx_sample(as_conv, &weight_dx[0, 0], n_filters, &dy[n, 0, 0, 0], &g, &gq,
                       &workspace_dx[threadid(), 0], block_dx, &dx[n, 0, 0, 0])
    for grp in prange(n_groups, nogil=True, schedule='static', num_threads=threads):
        tid = threadid()
        first = grp * n_batch // n_groups
        last = (grp + 1) * n_batch // n_groups
        memset(&partial[grp, 0, 0], 0, kk * n_filters * sizeof(floating))
        for n in range(first, last):
            if fuse:
                _dx_sample(as_conv, &weight_dx[0, 0], n_filters, &dy[n, 0, 0, 0], &g, &gq,
                           &workspace_dx[tid, 0], block_dx, &dx[n, 0, 0, 0])
            wsp = &workspace_params[tid, 0]
            _grad_params_sample(&x[n, 0, 0, 0], &dy[n, 0, 0, 0], &g, n_filters, has_bias,
                                wsp, wsp + block_params, &partial[grp, 0, 0])


def conv2d_reduce_params(const floating[:, :, ::1] partial, floating[:, ::1] grad_weight,
                         floating[::1] grad_bias, bint has_bias, int num_threads):
    """grad_weight += (partial[0] + partial[1] + ...)^T over its first K rows and, with a
    bias, grad_bias += the same sum of row K: always in group order."""
    cdef Py_ssize_t n_groups = partial.shape[0], n_filters = grad_weight.shape[0]
    cdef Py_ssize_t k = grad_weight.shape[1], e, f, g
    cdef floating acc
    _check(n_groups >= 1 and partial.shape[1] == k + has_bias and partial.shape[2] == n_filters,
           "partial-sum workspace")
    _check(not has_bias or grad_bias.shape[0] == n_filters, "bias gradient shape")
    for e in prange(n_filters * k, nogil=True, schedule='static', num_threads=num_threads):
        f = e // k
        acc = 0
        for g in range(n_groups):
            acc = acc + partial[g, e - f * k, f]
        grad_weight[f, e - f * k] += acc
    if has_bias:
        for f in range(n_filters):
            acc = 0
            for g in range(n_groups):
                acc = acc + partial[g, k, f]
            grad_bias[f] += acc
