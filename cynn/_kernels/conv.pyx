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

Direct kernels (conv.h) compute the same sums without the column matrix: from 64 taps
per filter (C * kh * kw), at any stride, the forward pass, the input gradient as a
correlation and the weight gradient run on kernels vectorized over blocks of 16
filters (``_FILTERS``); with fewer taps the stride-1 forward pass and correlation run
on the wide-grid kernel (``_WIDE``).  ``set_direct(False)`` and
``set_filter_direct(False)`` turn them off, to compare.  Both run on 64-byte vectors
where the CPU has them (``vector_bytes``), else on 32-byte ones, with the same sums
in the same order, except the wide-grid weight gradient, which reduces across lanes.
``conv2d_backward`` computes the input gradient and the weight gradient's partial sums
in one pass over the samples, so each dy[n] comes from memory once; for F <= 2C it can
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
from libc.math cimport sqrt
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport numpy as cnp

cnp.import_array()

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
    int cynn_v64_enabled
    int cynn_v64_init()
    # im2col / col2im of output rows [oh0, oh1) of one padded sample, and the direct
    # stride-1 convolution with its weight packing and epilogue: see conv.h.
    int CYNN_DIRECT_FB, CYNN_DIRECT_NV
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
    void cynn_direct_pack_f(const float* w, Py_ssize_t ldw, Py_ssize_t n_filters,
                            Py_ssize_t taps, const float* bias, Py_ssize_t bias_stride,
                            const float* scale, int fb, float* wpk) noexcept nogil
    void cynn_direct_pack_d(const double* w, Py_ssize_t ldw, Py_ssize_t n_filters,
                            Py_ssize_t taps, const double* bias, Py_ssize_t bias_stride,
                            const double* scale, int fb, double* wpk) noexcept nogil
    int CYNN_FDIRECT_FB, CYNN_FDIRECT_MIN_TAPS
    void cynn_fdirect_f(const float* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                        int kh, int kw, int sh, int sw, int ho, int wo, const float* wpk,
                        Py_ssize_t n_filters, Py_ssize_t blk0, Py_ssize_t blk1, float* out,
                        Py_ssize_t ldo) noexcept nogil
    void cynn_fdirect_d(const double* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                        int kh, int kw, int sh, int sw, int ho, int wo, const double* wpk,
                        Py_ssize_t n_filters, Py_ssize_t blk0, Py_ssize_t blk1, double* out,
                        Py_ssize_t ldo) noexcept nogil
    void cynn_transpose_dy_f(const float* dy, Py_ssize_t n_filters, Py_ssize_t p,
                             Py_ssize_t ldt, float* dyt) noexcept nogil
    void cynn_transpose_dy_d(const double* dy, Py_ssize_t n_filters, Py_ssize_t p,
                             Py_ssize_t ldt, double* dyt) noexcept nogil
    void cynn_fdirect_wgrad_f(const float* xp, Py_ssize_t channels, Py_ssize_t hp,
                              Py_ssize_t wp, int kh, int kw, int sh, int sw, int ho, int wo,
                              const float* dyt, Py_ssize_t ldt, Py_ssize_t n_filters,
                              int has_bias, float* part) noexcept nogil
    void cynn_fdirect_wgrad_d(const double* xp, Py_ssize_t channels, Py_ssize_t hp,
                              Py_ssize_t wp, int kh, int kw, int sh, int sw, int ho, int wo,
                              const double* dyt, Py_ssize_t ldt, Py_ssize_t n_filters,
                              int has_bias, double* part) noexcept nogil
    void cynn_direct_f(const float* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                       int kh, int kw, const float* wpk, Py_ssize_t n_blocks, Py_ssize_t blk0,
                       Py_ssize_t blk1, float* buf, Py_ssize_t ldb, Py_ssize_t nq) noexcept nogil
    void cynn_direct_d(const double* xp, Py_ssize_t channels, Py_ssize_t hp, Py_ssize_t wp,
                       int kh, int kw, const double* wpk, Py_ssize_t n_blocks, Py_ssize_t blk0,
                       Py_ssize_t blk1, double* buf, Py_ssize_t ldb, Py_ssize_t nq) noexcept nogil
    void cynn_wide_store_f(const float* buf, Py_ssize_t ldb, Py_ssize_t pitch, Py_ssize_t f0,
                           Py_ssize_t f1, int ho, int wo, const float* add, int relu,
                           float* out) noexcept nogil
    void cynn_wide_store_d(const double* buf, Py_ssize_t ldb, Py_ssize_t pitch, Py_ssize_t f0,
                           Py_ssize_t f1, int ho, int wo, const double* add, int relu,
                           double* out) noexcept nogil
    int cynn_wgrad_wb(int v64) noexcept nogil
    void cynn_direct_wgrad_f(const float* xp, const Py_ssize_t* off, Py_ssize_t taps,
                             const float* dyw, Py_ssize_t ldd, Py_ssize_t n_filters,
                             Py_ssize_t nq, int has_bias, float* part, int v64) noexcept nogil
    void cynn_direct_wgrad_d(const double* xp, const Py_ssize_t* off, Py_ssize_t taps,
                             const double* dyw, Py_ssize_t ldd, Py_ssize_t n_filters,
                             Py_ssize_t nq, int has_bias, double* part, int v64) noexcept nogil
    void cynn_to_wide_f(const float* dy, Py_ssize_t n_filters, int ho, int wo, Py_ssize_t wp,
                        Py_ssize_t rows, Py_ssize_t ldd, float* dyw) noexcept nogil
    void cynn_to_wide_d(const double* dy, Py_ssize_t n_filters, int ho, int wo, Py_ssize_t wp,
                        Py_ssize_t rows, Py_ssize_t ldd, double* dyw) noexcept nogil
    void cynn_pool_store_f(const float* buf, Py_ssize_t ldb, Py_ssize_t pitch, Py_ssize_t f0,
                           Py_ssize_t f1, int ho, int wo, const float* add, int relu, int pkh,
                           int pkw, int psh, int psw, int po, int qo, float* tmp,
                           float* out) noexcept nogil
    void cynn_pool_store_d(const double* buf, Py_ssize_t ldb, Py_ssize_t pitch, Py_ssize_t f0,
                           Py_ssize_t f1, int ho, int wo, const double* add, int relu, int pkh,
                           int pkw, int psh, int psw, int po, int qo, double* tmp,
                           double* out) noexcept nogil


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


cdef inline Py_ssize_t _direct_positions(const Geom* g, size_t itemsize) noexcept nogil:
    """nq: the direct kernel's wide output grid, Ho * Wp positions rounded up to a
    64-byte vector, the widest it runs on (its last tile is narrower when nq is not a
    multiple of the tile)."""
    cdef Py_ssize_t q = 64 // itemsize
    return (g.ho * g.wp + q - 1) // q * q


cdef inline Py_ssize_t _direct_slack(const Geom* g, size_t itemsize) noexcept nogil:
    """Values past the padded sample that the direct kernel's last tile reads, on
    64-byte vectors."""
    return CYNN_DIRECT_NV * (64 // itemsize) + g.kw


cdef inline Py_ssize_t _blocks(Py_ssize_t n_filters) noexcept nogil:
    return (n_filters + CYNN_DIRECT_FB - 1) // CYNN_DIRECT_FB


cdef Py_ssize_t _region(const Geom* g, Py_ssize_t rows, Py_ssize_t n_filters,
                        size_t itemsize) noexcept nogil:
    """Length of the first part of a thread's workspace: a column block of ``rows``
    rows, the direct kernel's wide output rows (every block of filters) or dy transposed
    for the filter-vector weight gradient, the longest."""
    cdef Py_ssize_t block = _block(rows, g.ho, g.wo, itemsize)
    # (blocks of four filters, or up to two rows more: the weight gradient's blocks of 3)
    cdef Py_ssize_t wide = (_blocks(n_filters) * CYNN_DIRECT_FB + 2) * _direct_positions(g, itemsize)
    cdef Py_ssize_t dyt = (_kind_blocks(n_filters, _FILTERS) * CYNN_FDIRECT_FB
                           * <Py_ssize_t> g.ho * g.wo)
    return max(block, wide, dyt)


def workspace_size(Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width, int kh, int kw,
                   int ph, int pw, int ho, int wo, Py_ssize_t itemsize, Py_ssize_t n_filters):
    """Per-thread workspace length, in items, that every kernel here accepts for this
    geometry and number of filters: a column block of K + 1 rows or the direct
    kernel's wide output rows, whichever is longer, then the padded
    (C, H + 2ph, W + 2pw) sample and the few values the direct kernel reads past it."""
    cdef Geom g = _geom(channels, height, width, kh, kw, 1, 1, ph, pw, ho, wo)
    cdef Py_ssize_t k = channels * kh * kw
    return (max(_region(&g, k, n_filters, itemsize), _region(&g, k + 1, n_filters, itemsize))
            + channels * g.hp * g.wp + _direct_slack(&g, itemsize))


cdef str _FAMILY = "conv"
include "_checks.pxi"
include "_geometry.pxi"
include "_steps.pxi"


cdef int _check_workspace(floating[:, ::1] ws, int threads, const Geom* g, Py_ssize_t rows,
                          Py_ssize_t n_filters) except -1:
    _check(ws.shape[0] >= threads
           and ws.shape[1] >= (_region(g, rows, n_filters, sizeof(floating))
                               + g.channels * g.hp * g.wp + _direct_slack(g, sizeof(floating))),
           "column workspace")
    return 0


# The direct kernels (see _kind); set_direct(False) sends every convolution through
# im2col + GEMM, set_filter_direct(False) leaves the filter-vector kernel's geometries
# to the wide-grid kernel or the GEMM, as before it: both to compare.
cdef bint _direct_enabled = True
cdef bint _filters_enabled = True


cdef bint _swap(bint* flag, bint enabled) noexcept:
    cdef bint old = flag[0]
    flag[0] = enabled
    return old


def set_direct(bint enabled):
    """Turn the direct convolution kernels on or off; returns the previous setting."""
    return _swap(&_direct_enabled, enabled)


def set_filter_direct(bint enabled):
    """Turn the filter-vector direct kernel on or off; returns the previous setting."""
    return _swap(&_filters_enabled, enabled)


cdef int _v64_supported = cynn_v64_init()


def vector_bytes():
    """The width of the vectors the direct kernels run on: 64 on a CPU with AVX-512
    (x86-64-v4), else 32."""
    return 64 if cynn_v64_enabled else 32


def set_vector_bytes(int n):
    """Run the direct kernels on 32- or 64-byte vectors (64 only where the CPU has
    them); returns the previous width.  The results are the same bits either way,
    except the wide-grid weight gradient's (fewer than CYNN_FDIRECT_MIN_TAPS taps),
    which sums across the vector's lanes."""
    global cynn_v64_enabled
    wide = _wide_vectors(n, _v64_supported)
    old = vector_bytes()
    cynn_v64_enabled = wide
    return old


# The direct weight gradient sums over the wide grid, one tile of filters and taps at a
# time, then reduces each sum across its lanes.  It beats im2col + GEMM on large
# planes with few channels (16 channels at 32x32, batch 128: 116 against 91 GFLOP/s)
# and loses on small planes (32 -> 64 channels at 16x16: 95 against 147; 64 at 8x8:
# its reductions cost more than the GEMM's packing), so it needs this many wide-grid
# positions (32x32 has 1088, 28x28 840, 16x16 288).
cdef enum:
    _WGRAD_MIN_POSITIONS = 512

# The training and layer-by-layer forward pass takes the direct kernel only on planes of
# this many wide-grid positions: at 8x8 (80) the GEMM is faster (64 channels, batch
# 128: 116 against 104 GFLOP/s; 32 channels 128 against 102), at 12x12 (168) and up the
# direct kernel (64 channels: 123 against 111).  The decision is the geometry's alone,
# so a sample's output does not depend on the batch or the thread count.  The input
# gradient's direct correlation keeps small planes (64 channels at 8x8: dx 4.5 ms
# against 6.5 beside the weight gradient), and so does the evaluation kernel, whose
# batch-1 calls share a sample's filters between threads only on the direct path.
cdef enum:
    _FORWARD_MIN_POSITIONS = 128


cdef inline bint _direct(const Geom* g) noexcept nogil:
    return _direct_enabled and g.sh == 1 and g.sw == 1


# How a convolution is computed: im2col + GEMM, the direct kernel on the wide grid
# (stride 1), or the direct kernel vectorized over filters (any stride, from
# CYNN_FDIRECT_MIN_TAPS taps per filter, where it is the fastest of the three).
cdef enum:
    _GEMM = 0
    _WIDE = 1
    _FILTERS = 2


cdef inline int _kind(const Geom* g, bint small_planes, Py_ssize_t n_filters) noexcept nogil:
    """The kernel for this geometry: the wide-grid kernel at stride 1 from
    _FORWARD_MIN_POSITIONS wide positions (3-7% faster there than the filter-vector
    kernel: 16 and 32 channels at 16x16 to 32x32, batch 64-128), else the filter-vector
    kernel from CYNN_FDIRECT_MIN_TAPS taps (stride 2, and 8x8 planes, where the wide
    grid wastes a fifth of its work), else with ``small_planes`` the wide-grid kernel
    below _FORWARD_MIN_POSITIONS too, else the GEMM.  On 64-byte vectors with
    ``small_planes``, a stride-1 convolution of one block of filters (1 to
    CYNN_FDIRECT_FB; 0 stands for unknown) takes the wide-grid kernel on any plane: the
    filter-vector tile of a single block is bound by its broadcasts (the backward pass
    of 16 -> 32 channels at 8x8, batch 64, whose input gradient has 16 filters: 0.30
    against 0.36 ms, medians of 15 calls over 5 alternating rounds).  The two kernels give
    the same bits.  The geometry and filter count alone decide, so a sample's output
    does not depend on the batch or the thread count."""
    if not _direct_enabled:
        return _GEMM
    if _direct(g) and g.ho * g.wp >= _FORWARD_MIN_POSITIONS:
        return _WIDE
    if (cynn_v64_enabled and small_planes and _direct(g) and 0 < n_filters
            and n_filters <= CYNN_FDIRECT_FB):
        return _WIDE
    if _filters_enabled and g.channels * g.kh * g.kw >= CYNN_FDIRECT_MIN_TAPS:
        return _FILTERS
    if _direct(g) and small_planes:
        return _WIDE
    return _GEMM


cdef inline int _kind_params(const Geom* g) noexcept nogil:
    """The weight gradient's kernel: the filter-vector kernel from
    CYNN_FDIRECT_MIN_TAPS taps, else the wide-grid correlation on stride-1 planes of
    _WGRAD_MIN_POSITIONS wide positions, else the GEMM.  (On 64-byte vectors a
    filter-vector tile of one block of 16 filters is bound by its broadcasts, but it
    still matches the wide grid there: 16 channels at 32x32, batch 128, backward 3.9
    against 4.0 ms; 5x5 at 28x28, batch 64, 3.6 against 4.0 ms.)"""
    cdef bint wide = _direct(g) and g.ho * g.wp >= _WGRAD_MIN_POSITIONS
    if (_filters_enabled and _direct_enabled
            and g.channels * g.kh * g.kw >= CYNN_FDIRECT_MIN_TAPS):
        return _FILTERS
    return _WIDE if wide else _GEMM


def weight_grad_kernel(Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width, int kh,
                       int kw, int sh, int sw, int ph, int pw):
    """Which kernel ``conv2d_backward`` runs for the weight gradient of this geometry:
    "gemm", "wide" or "filters"."""
    cdef int ho = (<int> height + 2 * ph - kh) // sh + 1
    cdef int wo = (<int> width + 2 * pw - kw) // sw + 1
    cdef Geom g = _geom(channels, height, width, kh, kw, sh, sw, ph, pw, ho, wo)
    return ("gemm", "wide", "filters")[_kind_params(&g)]


def forward_kernel(Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width, int kh, int kw,
                   int sh, int sw, int ph, int pw, bint evaluation=False,
                   Py_ssize_t n_filters=0):
    """Which kernel ``conv2d_forward`` (or with ``evaluation``, ``conv2d_forward_eval``)
    runs for this geometry and number of filters (0: many): "gemm", "wide" or
    "filters"."""
    cdef int ho = (<int> height + 2 * ph - kh) // sh + 1
    cdef int wo = (<int> width + 2 * pw - kw) // sw + 1
    cdef Geom g = _geom(channels, height, width, kh, kw, sh, sw, ph, pw, ho, wo)
    return ("gemm", "wide", "filters")[_kind(&g, evaluation, n_filters)]


cdef inline int _fb(int kind) noexcept nogil:
    """Filters per block of the kernel's packed weights."""
    return CYNN_FDIRECT_FB if kind == _FILTERS else CYNN_DIRECT_FB


cdef inline Py_ssize_t _kind_blocks(Py_ssize_t n_filters, int kind) noexcept nogil:
    return (n_filters + _fb(kind) - 1) // _fb(kind)


cdef inline Py_ssize_t _splits(bint direct, Py_ssize_t n_batch, int threads,
                               Py_ssize_t n_blocks) noexcept nogil:
    """Into how many shares of filter blocks each sample's work is cut: with fewer
    samples than threads, enough to keep every thread busy, on the direct kernel only.
    Its sums do not depend on the blocks asked for; a GEMM over fewer rows may round
    differently, so the GEMM path never splits."""
    if not direct or n_batch >= threads:
        return 1
    return min((threads + n_batch - 1) // n_batch, n_blocks)


cdef floating* _pack(const floating* weight, Py_ssize_t ldw, Py_ssize_t n_filters,
                     Py_ssize_t taps, const floating* bias, Py_ssize_t bias_stride,
                     const floating* scale, int kind) except NULL:
    """The packed weights of a direct kernel ``kind`` (free them with free()) from the
    rows of ``weight`` (``taps`` each), each times ``scale`` when given, and ``bias``
    (NULL for none) read at ``bias_stride``."""
    cdef Py_ssize_t n = _kind_blocks(n_filters, kind) * _fb(kind) * (taps + 1)
    cdef floating* wpk = <floating*> malloc(n * sizeof(floating))
    if wpk == NULL:
        raise MemoryError(f"conv kernel: cannot allocate {n} packed weights")
    if floating is float:
        cynn_direct_pack_f(weight, ldw, n_filters, taps, bias, bias_stride, scale, _fb(kind),
                           wpk)
    else:
        cynn_direct_pack_d(weight, ldw, n_filters, taps, bias, bias_stride, scale, _fb(kind),
                           wpk)
    return wpk


cdef Py_ssize_t _direct_sample(const floating* xs, const Geom* g, const floating* wpk,
                               int kind, Py_ssize_t n_filters, Py_ssize_t blk0,
                               Py_ssize_t blk1, floating* xp, floating* buf) noexcept nogil:
    """A direct kernel on one sample: pad it into ``xp``, then the output rows of filter
    blocks [blk0, blk1) into ``buf``; returns their length: Ho * Wo for _FILTERS, whose
    rows are the output's, else the wide grid's nq (rows of pitch Wp)."""
    cdef Py_ssize_t nq = _direct_positions(g, sizeof(floating))
    cdef Py_ssize_t p = <Py_ssize_t> g.ho * g.wo
    _pad_sample(xs, g, xp)
    if kind == _FILTERS:
        if floating is float:
            cynn_fdirect_f(xp, g.channels, g.hp, g.wp, g.kh, g.kw, g.sh, g.sw, g.ho, g.wo,
                           wpk, n_filters, blk0, blk1, buf, p)
        else:
            cynn_fdirect_d(xp, g.channels, g.hp, g.wp, g.kh, g.kw, g.sh, g.sw, g.ho, g.wo,
                           wpk, n_filters, blk0, blk1, buf, p)
        return p
    # the values the last tile reads past the sample, zero (never a NaN or a denormal
    # in the dropped positions)
    memset(xp + g.channels * g.hp * g.wp, 0,
           _direct_slack(g, sizeof(floating)) * sizeof(floating))
    if floating is float:
        cynn_direct_f(xp, g.channels, g.hp, g.wp, g.kh, g.kw, wpk, _blocks(n_filters),
                      blk0, blk1, buf, nq, nq)
    else:
        cynn_direct_d(xp, g.channels, g.hp, g.wp, g.kh, g.kw, wpk, _blocks(n_filters),
                      blk0, blk1, buf, nq, nq)
    return nq


cdef void _forward_sample(const floating* xs, const Geom* g, const floating* weight,
                          const floating* wpk, int kind, Py_ssize_t n_filters, bint has_bias,
                          Py_ssize_t blk0, Py_ssize_t blk1, floating* col, floating* xp,
                          floating* out) noexcept nogil:
    """Output rows of filter blocks [blk0, blk1) of one sample (F, Ho, Wo): with packed
    weights ``wpk`` the direct convolution ``kind``, else [W | b] @ [im2col(xs); 1].
    ``col`` is the column block or wide output region, ``xp`` the padded sample's place."""
    cdef Py_ssize_t kk = g.channels * g.kh * g.kw + has_bias
    cdef Py_ssize_t f0 = blk0 * _fb(kind)
    cdef Py_ssize_t f1 = min(blk1 * _fb(kind), n_filters), nq
    cdef int rows = _chunk_rows(kk, g.ho, g.wo, sizeof(floating)), oh0 = 0, oh1
    cdef int p = g.ho * g.wo
    if f0 >= f1:
        return
    if wpk != NULL and kind == _FILTERS:
        _direct_sample(xs, g, wpk, kind, n_filters, blk0, blk1, xp, out)
        return
    if wpk != NULL:
        nq = _direct_sample(xs, g, wpk, kind, n_filters, blk0, blk1, xp, col)
        if floating is float:
            cynn_wide_store_f(col, nq, g.wp, f0, f1, g.ho, g.wo, NULL, 0, out)
        else:
            cynn_wide_store_d(col, nq, g.wp, f0, f1, g.ho, g.wo, NULL, 0, out)
        return
    _pad_sample(xs, g, xp)
    while oh0 < g.ho:
        oh1 = oh0 + rows if oh0 + rows < g.ho else g.ho
        _im2col_rows(xp, g, col, oh0, oh1, has_bias)
        gemm_rm(False, False, <int> (f1 - f0), (oh1 - oh0) * g.wo, <int> kk, <floating> 1,
                weight + f0 * kk, <int> kk, col, (oh1 - oh0) * g.wo, <floating> 0,
                out + f0 * p + oh0 * g.wo, p)
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
                              floating* part, const Py_ssize_t* off, int kind,
                              bint v64) noexcept nogil:
    """part (K + has_bias, F) += [im2col(xs); 1] @ dy^T: with ``kind`` _FILTERS by the
    filter-vector kernel, else with the tap offsets ``off`` (stride 1) as the wide-grid
    kernel's correlation of the padded sample with dy (on 64-byte vectors with
    ``v64``), else by im2col + GEMM."""
    cdef Py_ssize_t kk = g.channels * g.kh * g.kw + has_bias
    cdef int rows = _chunk_rows(kk, g.ho, g.wo, sizeof(floating)), oh0 = 0, oh1
    cdef int p = g.ho * g.wo
    cdef Py_ssize_t lanes = (64 if v64 else 32) // sizeof(floating), nqw, wrows
    cdef Py_ssize_t wb = cynn_wgrad_wb(v64)
    cdef Py_ssize_t ldt = _kind_blocks(n_filters, _FILTERS) * CYNN_FDIRECT_FB
    _pad_sample(xs, g, xp)
    if kind == _FILTERS:
        if floating is float:
            cynn_transpose_dy_f(dy, n_filters, p, ldt, col)
            cynn_fdirect_wgrad_f(xp, g.channels, g.hp, g.wp, g.kh, g.kw, g.sh, g.sw, g.ho,
                                 g.wo, col, ldt, n_filters, has_bias, part)
        else:
            cynn_transpose_dy_d(dy, n_filters, p, ldt, col)
            cynn_fdirect_wgrad_d(xp, g.channels, g.hp, g.wp, g.kh, g.kw, g.sh, g.sw, g.ho,
                                 g.wo, col, ldt, n_filters, has_bias, part)
        return
    if off != NULL:
        memset(xp + g.channels * g.hp * g.wp, 0,
               _direct_slack(g, sizeof(floating)) * sizeof(floating))
        nqw = (g.ho * g.wp + lanes - 1) // lanes * lanes
        wrows = (n_filters + wb - 1) // wb * wb
        if floating is float:
            cynn_to_wide_f(dy, n_filters, g.ho, g.wo, g.wp, wrows, nqw, col)
            cynn_direct_wgrad_f(xp, off, kk - has_bias, col, nqw, n_filters, nqw, has_bias,
                                part, v64)
        else:
            cynn_to_wide_d(dy, n_filters, g.ho, g.wo, g.wp, wrows, nqw, col)
            cynn_direct_wgrad_d(xp, off, kk - has_bias, col, nqw, n_filters, nqw, has_bias,
                                part, v64)
        return
    # The transposed product part^T (K, F) += col (K, P) @ dy^T runs faster in the BLAS
    # than part (F, K) += dy @ col^T, the more so the fewer the filters.
    while oh0 < g.ho:
        oh1 = oh0 + rows if oh0 + rows < g.ho else g.ho
        _im2col_rows(xp, g, col, oh0, oh1, has_bias)
        gemm_rm(False, True, <int> kk, <int> n_filters, (oh1 - oh0) * g.wo, <floating> 1,
                col, (oh1 - oh0) * g.wo, dy + oh0 * g.wo, p, <floating> 1, part,
                <int> n_filters)
        oh0 = oh1


cdef inline void _dx_sample(bint as_conv, const floating* weight_dx, const floating* wpk_dx,
                            int kind, Py_ssize_t n_filters, const floating* dy, const Geom* g,
                            const Geom* gq, floating* ws, Py_ssize_t block,
                            floating* dx) noexcept nogil:
    """dx (C, H, W) of one sample: the flipped-kernel correlation of dy (geometry ``gq``,
    direct when ``wpk_dx`` holds the packed flipped kernel) or col2im(W^T @ dy); ``ws``
    is a region of ``block`` items, then the padding."""
    if as_conv:
        _forward_sample(dy, gq, weight_dx, wpk_dx, kind, g.channels, False, 0,
                        _kind_blocks(g.channels, kind), ws, ws + block, dx)
    else:
        _grad_input_sample(weight_dx, n_filters, dy, g, ws, ws + block, dx)


def conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, ::1] weight,
                   floating[:, ::1] workspace, floating[:, :, :, ::1] out, int kh, int kw,
                   int sh, int sw, int ph, int pw, bint has_bias, int num_threads,
                   bint blas_single_threaded):
    """out[n] = weight @ im2col(x[n]), where with a bias ``weight`` is (F, K + 1) with the
    bias as its last column and the column block gets a last row of ones, so the GEMM
    adds the bias in the same sweep that writes the output; at stride 1 the direct
    kernel computes the same sums from the packed weights.  ``workspace`` holds one row
    per thread (``workspace_size`` gives the length).  With fewer samples than threads,
    the direct kernel shares each sample's filters out between threads (the same sums
    either way)."""
    _bind_blas()
    cdef Py_ssize_t n_batch = x.shape[0], n_filters = weight.shape[0], i, n, s, tid
    cdef Geom g = _geom(x.shape[1], x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw,
                        out.shape[2], out.shape[3])
    cdef int kind = _kind(&g, False, n_filters)
    cdef bint direct = kind != _GEMM
    cdef int threads = num_threads if (blas_single_threaded or direct) else 1
    cdef Py_ssize_t kk = g.channels * kh * kw + has_bias
    cdef Py_ssize_t region = _region(&g, kk, n_filters, sizeof(floating))
    cdef Py_ssize_t n_blocks = _kind_blocks(n_filters, kind), splits
    cdef floating* col
    cdef floating* wpk = NULL
    _check(weight.shape[1] == kk, "weight shape")
    _check(out.shape[0] == n_batch and out.shape[1] == n_filters, "output shape")
    _check(_output_size_ok(out.shape[2], out.shape[3], g.height, g.width, kh, kw, sh, sw,
                           ph, pw), "output size")
    _check(num_threads >= 1, "thread count")
    _check_workspace(workspace, threads, &g, kk, n_filters)
    if n_batch == 0:
        return
    splits = _splits(direct, n_batch, threads, n_blocks)
    if direct:
        wpk = _pack(&weight[0, 0], kk, n_filters, kk - has_bias,
                    &weight[0, kk - 1] if has_bias else NULL, kk, NULL, kind)
    try:
        for i in prange(n_batch * splits, nogil=True, schedule='static', num_threads=threads):
            tid = threadid()
            col = &workspace[tid, 0]
            n = i // splits
            s = i - n * splits
            _forward_sample(&x[n, 0, 0, 0], &g, &weight[0, 0], wpk, kind, n_filters, has_bias,
                            s * n_blocks // splits, (s + 1) * n_blocks // splits, col,
                            col + region, &out[n, 0, 0, 0])
    finally:
        free(wpk)


# -- evaluation mode: batch norm folded in, epilogue fused ----------------------------

cdef void _fold(Py_ssize_t n, const floating* bias, const floating* mean,
                const floating* variance, double eps, const floating* gamma,
                const floating* beta, floating* scale, floating* shift) noexcept nogil:
    """``fold_affine`` on pointers, NULL for an absent array (variance with mean, beta
    with gamma)."""
    cdef Py_ssize_t f
    cdef double s, b
    for f in range(n):
        s = 1.0
        b = bias[f] if bias != NULL else 0.0
        if mean != NULL:
            s = 1.0 / sqrt(<double> variance[f] + eps)
            b = b - mean[f]
        if gamma != NULL:
            s = s * gamma[f]
        scale[f] = <floating> s
        shift[f] = <floating> ((beta[f] if beta != NULL else 0.0) + s * b)


def fold_affine(const floating[::1] bias, const floating[::1] mean,
                const floating[::1] variance, double eps, const floating[::1] gamma,
                const floating[::1] beta, floating[::1] scale, floating[::1] shift):
    """scale, shift (F,) of the affine map that a convolution's bias, an evaluation-mode
    batch norm (moving mean and variance) and a channelwise scaling apply in turn, each
    absent when its arrays are empty: y = scale * (W * x) + shift with
    scale = gamma / sqrt(variance + eps) and shift = beta + scale * (bias - mean),
    computed in double precision and rounded once."""
    cdef Py_ssize_t n = scale.shape[0]
    _check(shift.shape[0] == n and bias.shape[0] in (0, n) and mean.shape[0] in (0, n)
           and variance.shape[0] == mean.shape[0] and gamma.shape[0] in (0, n)
           and beta.shape[0] == gamma.shape[0], "affine shape")
    if n == 0:
        return
    _fold(n, &bias[0] if bias.shape[0] else NULL, &mean[0] if mean.shape[0] else NULL,
          &variance[0] if mean.shape[0] else NULL, eps, &gamma[0] if gamma.shape[0] else NULL,
          &beta[0] if gamma.shape[0] else NULL, &scale[0], &shift[0])


def eval_workspace_size(Py_ssize_t channels, Py_ssize_t height, Py_ssize_t width, int kh,
                        int kw, int ph, int pw, int ho, int wo, Py_ssize_t itemsize,
                        Py_ssize_t n_filters, int pool_kh):
    """Per-thread workspace length for ``conv2d_forward_eval``: ``workspace_size``'s, then
    the GEMM path's (F, Ho * Wo) output and the pooling epilogue's pool_kh rows."""
    return (workspace_size(channels, height, width, kh, kw, ph, pw, ho, wo, itemsize,
                           n_filters)
            + _blocks(n_filters) * CYNN_DIRECT_FB * <Py_ssize_t> ho * wo + pool_kh * wo)


cdef void _eval_sample(const floating* xs, const Geom* g, const floating* folded,
                       const floating* wpk, int kind, Py_ssize_t n_filters, Py_ssize_t blk0,
                       Py_ssize_t blk1, floating* ws, Py_ssize_t region, Py_ssize_t conv_out,
                       const floating* add, bint relu, int pkh, int pkw, int psh, int psw,
                       int po, int qo, floating* out) noexcept nogil:
    """One sample's filter blocks [blk0, blk1): the convolution (direct from ``wpk``, else
    the GEMM of the folded [W * scale | shift] into the workspace), then the epilogue."""
    cdef Py_ssize_t f0 = blk0 * _fb(kind), f1 = min(blk1 * _fb(kind), n_filters)
    cdef Py_ssize_t nq, ldb, pitch
    cdef floating* xp = ws + region + conv_out + pkh * g.wo
    cdef floating* buf
    if f0 >= f1:
        return
    if wpk != NULL:
        nq = _direct_sample(xs, g, wpk, kind, n_filters, blk0, blk1, xp, ws)
        buf, ldb, pitch = ws, nq, (g.wo if kind == _FILTERS else g.wp)
    else:
        buf = ws + region
        _forward_sample(xs, g, folded, NULL, _GEMM, n_filters, True, blk0, blk1, ws, xp, buf)
        ldb, pitch = <Py_ssize_t> g.ho * g.wo, g.wo
    if pkh == 0:
        if floating is float:
            cynn_wide_store_f(buf, ldb, pitch, f0, f1, g.ho, g.wo, add, relu, out)
        else:
            cynn_wide_store_d(buf, ldb, pitch, f0, f1, g.ho, g.wo, add, relu, out)
    elif floating is float:
        cynn_pool_store_f(buf, ldb, pitch, f0, f1, g.ho, g.wo, add, relu, pkh, pkw, psh, psw,
                          po, qo, ws + region + conv_out, out)
    else:
        cynn_pool_store_d(buf, ldb, pitch, f0, f1, g.ho, g.wo, add, relu, pkh, pkw, psh, psw,
                          po, qo, ws + region + conv_out, out)


def conv2d_forward_eval(const floating[:, :, :, ::1] x, const floating[:, ::1] weight,
                        const floating[::1] scale, const floating[::1] shift,
                        const floating[:, :, :, ::1] add, floating[:, :, :, ::1] out,
                        floating[:, ::1] workspace, int kh, int kw, int sh, int sw, int ph,
                        int pw, bint relu, int pkh, int pkw, int psh, int psw,
                        int num_threads, bint blas_single_threaded):
    """The evaluation-mode convolution with what follows it fused, sample by sample while
    its output is in the cache: out[n] = pool(relu(scale * (W * x[n]) + shift + add[n])),
    with ``weight`` (F, K), ``scale``/``shift`` from ``fold_affine``, ``add`` (N, F, Ho,
    Wo) or empty for none, ``relu`` and a max pooling of window (pkh, pkw) and stride
    (psh, psw), pkh == 0 for none.  ``workspace`` rows have ``eval_workspace_size``
    items."""
    _bind_blas()
    cdef Py_ssize_t n_batch = x.shape[0], n_filters = weight.shape[0]
    cdef Geom g = _geom(x.shape[1], x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw, 0, 0)
    cdef Py_ssize_t k = g.channels * kh * kw
    cdef int ho = (<int> g.height + 2 * ph - kh) // sh + 1 if kh <= g.height + 2 * ph else 0
    cdef int wo = (<int> g.width + 2 * pw - kw) // sw + 1 if kw <= g.width + 2 * pw else 0
    cdef int po = ho, qo = wo
    cdef bint has_add = add.shape[0] != 0
    g.ho, g.wo = ho, wo
    _check(weight.shape[1] == k and scale.shape[0] == n_filters
           and shift.shape[0] == n_filters, "weight shape")
    _check(ho >= 1 and wo >= 1 and _output_size_ok(ho, wo, g.height, g.width, kh, kw, sh, sw,
                                                   ph, pw), "output size")
    if pkh:
        _check(pkw >= 1 and psh >= 1 and psw >= 1 and pkh <= ho and pkw <= wo, "pooling size")
        po = (ho - pkh) // psh + 1
        qo = (wo - pkw) // psw + 1
    _check(out.shape[0] == n_batch and out.shape[1] == n_filters and out.shape[2] == po
           and out.shape[3] == qo, "output shape")
    _check(not has_add or (add.shape[0] == n_batch and add.shape[1] == n_filters
                           and add.shape[2] == ho and add.shape[3] == wo), "addend shape")
    _check(num_threads >= 1, "thread count")
    _check(workspace.shape[0] >= _eval_threads(&g, n_batch, n_filters, num_threads,
                                               blas_single_threaded)
           and workspace.shape[1] >= _eval_ws_size(&g, n_filters, pkh, sizeof(floating)),
           "column workspace")
    if n_batch == 0:
        return
    _eval_run(&x[0, 0, 0, 0], n_batch, &g, &weight[0, 0], n_filters, &scale[0], &shift[0],
              &add[0, 0, 0, 0] if has_add else NULL, relu, pkh, pkw, psh, psw, po, qo,
              &workspace[0, 0], workspace.shape[1], num_threads, blas_single_threaded,
              &out[0, 0, 0, 0])


cdef Py_ssize_t _eval_ws_size(const Geom* g, Py_ssize_t n_filters, int pkh,
                              Py_ssize_t itemsize) noexcept nogil:
    """The per-thread workspace items ``_eval_run`` needs (``eval_workspace_size``)."""
    return (_region(g, g.channels * g.kh * g.kw + 1, n_filters, itemsize)
            + _blocks(n_filters) * CYNN_DIRECT_FB * <Py_ssize_t> g.ho * g.wo + pkh * g.wo
            + g.channels * g.hp * g.wp + _direct_slack(g, itemsize))


cdef int _eval_threads(const Geom* g, Py_ssize_t n_batch, Py_ssize_t n_filters,
                       int num_threads, bint blas_single_threaded) noexcept nogil:
    """The threads ``_eval_run`` runs on: one for a small call, and when the GEMM path's
    BLAS has threads of its own."""
    if n_batch * n_filters * g.ho * g.wo * g.channels * g.kh * g.kw < _SMALL_WORK:
        return 1
    if blas_single_threaded or _kind(g, True, n_filters) != _GEMM:
        return num_threads
    return 1


cdef int _eval_run(const floating* x, Py_ssize_t n_batch, const Geom* g,
                   const floating* weight, Py_ssize_t n_filters, const floating* scale,
                   const floating* shift, const floating* add, bint relu, int pkh, int pkw,
                   int psh, int psw, int po, int qo, floating* workspace, Py_ssize_t ws_len,
                   int num_threads, bint blas_single_threaded, floating* out) except -1:
    """The body of ``conv2d_forward_eval`` once its arguments are checked: weight (F, K)
    rows, scale/shift (F,), add (N, F, Ho, Wo) or NULL, out (N, F, Po, Qo), workspace
    rows of ``ws_len`` >= ``_eval_ws_size`` items, one per ``_eval_threads``."""
    cdef Py_ssize_t k = g.channels * g.kh * g.kw, i, n, s, e, t
    cdef int kind = _kind(g, True, n_filters)
    cdef bint direct = kind != _GEMM
    cdef Py_ssize_t n_blocks = _kind_blocks(n_filters, kind)
    cdef int threads = _eval_threads(g, n_batch, n_filters, num_threads, blas_single_threaded)
    cdef Py_ssize_t region = _region(g, k + 1, n_filters, sizeof(floating))
    cdef Py_ssize_t conv_out = _blocks(n_filters) * CYNN_DIRECT_FB * <Py_ssize_t> g.ho * g.wo
    cdef Py_ssize_t splits = _splits(direct, n_batch, threads, n_blocks)
    cdef Py_ssize_t in_size = g.channels * g.height * g.width
    cdef Py_ssize_t add_size = n_filters * <Py_ssize_t> g.ho * g.wo
    cdef Py_ssize_t out_size = n_filters * <Py_ssize_t> po * qo
    cdef floating* wpk = NULL
    cdef floating* folded = NULL
    try:
        if direct:
            wpk = _pack(weight, k, n_filters, k, shift, 1, scale, kind)
        else:
            folded = <floating*> malloc(n_filters * (k + 1) * sizeof(floating))
            if folded == NULL:
                raise MemoryError(f"conv kernel: cannot allocate {n_filters * (k + 1)} weights")
            for e in range(n_filters):
                for t in range(k):
                    folded[e * (k + 1) + t] = weight[e * k + t] * scale[e]
                folded[e * (k + 1) + k] = shift[e]
        for i in prange(n_batch * splits, nogil=True, schedule='static', num_threads=threads):
            n = i // splits
            s = i - n * splits
            _eval_sample(x + n * in_size, g, folded, wpk, kind, n_filters,
                         s * n_blocks // splits, (s + 1) * n_blocks // splits,
                         workspace + threadid() * ws_len, region, conv_out,
                         add + n * add_size if add != NULL else NULL, relu, pkh, pkw, psh,
                         psw, po, qo, out + n * out_size)
    finally:
        free(wpk)
        free(folded)
    return 0



cdef bint _is_vector(object a, int typenum, Py_ssize_t n) noexcept:
    """``a`` is as ``_is_array`` would have it, of any axes, with ``n`` items."""
    return (cnp.PyArray_Check(a) and cnp.PyArray_TYPE(<cnp.ndarray> a) == typenum
            and cnp.PyArray_ISBEHAVED_RO(<cnp.ndarray> a)
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> a)
            and cnp.PyArray_SIZE(<cnp.ndarray> a) == n)


cdef inline void* _data(object a) noexcept:
    return NULL if a is None else cnp.PyArray_DATA(<cnp.ndarray> a)


cdef enum:
    # Arrays from this many bytes up come from the caller's ``alloc`` (a pool) rather
    # than malloc: glibc maps blocks past its threshold (128 KiB at first) afresh and
    # may hand the heap's top back on free, and then each call pays a page fault per
    # 4 KiB (ResNet-20 at batch 16: 550 faults a residual block, 1.3 against 0.8 ms).
    _ALLOC_MIN_BYTES = 131072


cdef int _eval_step(floating* x, Py_ssize_t n_batch, const Geom* g, void* weight,
                    Py_ssize_t n_filters, void* bias, void* mean, void* variance, double eps,
                    void* gamma, void* beta, void* add, bint relu, int pkh, int pkw, int psh,
                    int psw, int po, int qo, int num_threads, bint blas_single_threaded,
                    void* out, object alloc, int typenum) except -1:
    """``conv_eval_step`` once its arguments are checked: the folded affine map and a
    workspace of the call's own (from ``alloc`` when large), then ``_eval_run``."""
    cdef int threads = _eval_threads(g, n_batch, n_filters, num_threads, blas_single_threaded)
    cdef Py_ssize_t ws_len = _eval_ws_size(g, n_filters, pkh, sizeof(floating))
    cdef floating* affine = <floating*> malloc(2 * n_filters * sizeof(floating))
    cdef floating* ws = NULL
    cdef object ws_array = None
    if alloc is not None and threads * ws_len * sizeof(floating) >= _ALLOC_MIN_BYTES:
        ws_array = alloc((threads * ws_len,), cnp.PyArray_DescrFromType(typenum))
        if not (_is_array(ws_array, typenum, 1)
                and cnp.PyArray_DIM(<cnp.ndarray> ws_array, 0) == threads * ws_len
                and cnp.PyArray_ISWRITEABLE(<cnp.ndarray> ws_array)):
            free(affine)
            raise ValueError("conv kernel: alloc gave an unusable workspace")
        ws = <floating*> cnp.PyArray_DATA(<cnp.ndarray> ws_array)
    else:
        ws = <floating*> malloc(threads * ws_len * sizeof(floating))
    try:
        if affine == NULL or ws == NULL:
            raise MemoryError(f"conv kernel: cannot allocate a {threads} x {ws_len} workspace")
        _fold(n_filters, <floating*> bias, <floating*> mean, <floating*> variance, eps,
              <floating*> gamma, <floating*> beta, affine, affine + n_filters)
        _eval_run(x, n_batch, g, <floating*> weight, n_filters, affine, affine + n_filters,
                  <floating*> add, relu, pkh, pkw, psh, psw, po, qo, ws, ws_len, num_threads,
                  blas_single_threaded, <floating*> out)
    finally:
        free(affine)
        if ws_array is None:
            free(ws)
    return 0


def conv_eval_step(x, weight, bias, mean, variance, double eps, gamma, beta, add, int sh,
                   int sw, int ph, int pw, bint relu, int pkh, int pkw, int psh, int psw,
                   int num_threads, bint blas_single_threaded, alloc=None):
    """A planned evaluation-mode step (cynn._plan.ConvStep) in one call: ``fold_affine``,
    a new output array, and ``conv2d_forward_eval`` on a workspace of the call's own.
    ``weight`` is the layer's (F, C, kh, kw) array; ``bias``, ``mean`` with ``variance``,
    ``gamma`` with ``beta`` (F items each) and ``add`` (N, F, Ho, Wo) are None when absent;
    ``pkh`` 0 for no pooling.  ``alloc(shape, dtype)``, when given, makes the output and
    the workspace of _ALLOC_MIN_BYTES and up, C-contiguous arrays of that shape and
    dtype (cynn._plan.pooled).  Returns the output, or None, having done nothing, when
    an array is not an aligned C-contiguous one of the weight's dtype and expected size
    or the windows do not fit: the caller then takes the checked path, whose errors
    name the problem.  The same bits as ``fold_affine`` then ``conv2d_forward_eval``."""
    _bind_blas()
    cdef int t, kh, kw, ho, wo, po, qo
    cdef Py_ssize_t n_batch, n_filters
    cdef cnp.npy_intp dims[4]
    cdef Geom g
    if not cnp.PyArray_Check(weight) or num_threads < 1 or pkh < 0:
        return None
    t = cnp.PyArray_TYPE(<cnp.ndarray> weight)
    if ((t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or not _is_array(weight, t, 4)
            or not _is_array(x, t, 4)
            or cnp.PyArray_DIM(<cnp.ndarray> x, 1) != cnp.PyArray_DIM(<cnp.ndarray> weight, 1)):
        return None
    n_batch, n_filters = cnp.PyArray_DIM(<cnp.ndarray> x, 0), cnp.PyArray_DIM(<cnp.ndarray> weight, 0)
    if n_batch < 1:
        return None  # the layer's own error for an empty batch
    if cnp.PyArray_DIM(<cnp.ndarray> weight, 2) > 1 << 20 or cnp.PyArray_DIM(<cnp.ndarray> weight, 3) > 1 << 20:
        return None
    kh, kw = cnp.PyArray_DIM(<cnp.ndarray> weight, 2), cnp.PyArray_DIM(<cnp.ndarray> weight, 3)
    g = _geom(cnp.PyArray_DIM(<cnp.ndarray> x, 1), cnp.PyArray_DIM(<cnp.ndarray> x, 2),
              cnp.PyArray_DIM(<cnp.ndarray> x, 3), kh, kw, sh, sw, ph, pw, 0, 0)
    if (n_filters < 1 or sh < 1 or sw < 1 or ph < 0 or pw < 0 or kh > g.hp or kw > g.wp
            or g.hp > 1 << 30 or g.wp > 1 << 30):
        return None
    ho, wo = <int> (g.hp - kh) // sh + 1, <int> (g.wp - kw) // sw + 1
    g.ho, g.wo = ho, wo
    if not _output_size_ok(ho, wo, g.height, g.width, kh, kw, sh, sw, ph, pw):
        return None
    po, qo = ho, wo
    if pkh:
        if not (pkw >= 1 and psh >= 1 and psw >= 1 and pkh <= ho and pkw <= wo):
            return None
        po, qo = (ho - pkh) // psh + 1, (wo - pkw) // psw + 1
    if ((bias is not None and not _is_vector(bias, t, n_filters))
            or (mean is None) != (variance is None) or (gamma is None) != (beta is None)
            or (mean is not None and not (_is_vector(mean, t, n_filters)
                                          and _is_vector(variance, t, n_filters)))
            or (gamma is not None and not (_is_vector(gamma, t, n_filters)
                                           and _is_vector(beta, t, n_filters)))):
        return None
    if add is not None and not (
            _is_array(add, t, 4) and cnp.PyArray_DIM(<cnp.ndarray> add, 0) == n_batch
            and cnp.PyArray_DIM(<cnp.ndarray> add, 1) == n_filters
            and cnp.PyArray_DIM(<cnp.ndarray> add, 2) == ho
            and cnp.PyArray_DIM(<cnp.ndarray> add, 3) == wo):
        return None
    if (alloc is not None and n_batch * n_filters * po * qo
            * cnp.PyArray_ITEMSIZE(<cnp.ndarray> weight) >= _ALLOC_MIN_BYTES):
        out = alloc((n_batch, n_filters, po, qo), (<cnp.ndarray> weight).dtype)
        if not (_is_array(out, t, 4) and cnp.PyArray_ISWRITEABLE(<cnp.ndarray> out)
                and cnp.PyArray_DIM(<cnp.ndarray> out, 0) == n_batch
                and cnp.PyArray_DIM(<cnp.ndarray> out, 1) == n_filters
                and cnp.PyArray_DIM(<cnp.ndarray> out, 2) == po
                and cnp.PyArray_DIM(<cnp.ndarray> out, 3) == qo):
            raise ValueError("conv kernel: alloc gave an unusable output")
    else:
        dims[0], dims[1], dims[2], dims[3] = n_batch, n_filters, po, qo
        out = cnp.PyArray_EMPTY(4, dims, t, 0)
    if t == cnp.NPY_FLOAT32:
        _eval_step(<float*> _data(x), n_batch, &g, _data(weight), n_filters, _data(bias),
                   _data(mean), _data(variance), eps, _data(gamma), _data(beta), _data(add),
                   relu, pkh, pkw, psh, psw, po, qo, num_threads, blas_single_threaded,
                   _data(out), alloc, t)
    else:
        _eval_step(<double*> _data(x), n_batch, &g, _data(weight), n_filters, _data(bias),
                   _data(mean), _data(variance), eps, _data(gamma), _data(beta), _data(add),
                   relu, pkh, pkw, psh, psw, po, qo, num_threads, blas_single_threaded,
                   _data(out), alloc, t)
    return out


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
    _bind_blas()
    cdef Py_ssize_t n_batch = x.shape[0], n_filters = dy.shape[1]
    cdef Py_ssize_t n_groups = partial.shape[0], n, grp, tid, first, last
    cdef int threads = num_threads if blas_single_threaded else 1
    cdef Geom g = _geom(x.shape[1], x.shape[2], x.shape[3], kh, kw, sh, sw, ph, pw,
                        dy.shape[2], dy.shape[3])
    cdef Geom gq
    cdef Py_ssize_t k = g.channels * kh * kw, kk = k + has_bias
    cdef Py_ssize_t block_dx = 0, block_params = _region(&g, kk, n_filters, sizeof(floating))
    cdef floating* wsp
    cdef floating* wpk_dx = NULL
    cdef int kind_dx = _GEMM
    cdef int kind_params = _GEMM
    cdef bint v64 = cynn_v64_enabled
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
            block_dx = _region(&gq, n_filters * kh * kw, g.channels, sizeof(floating))
            _check_workspace(workspace_dx, threads, &gq, n_filters * kh * kw, g.channels)
        else:
            _check(weight_dx.shape[0] == n_filters and weight_dx.shape[1] == k, "weight shape")
            block_dx = _region(&g, k, n_filters, sizeof(floating))
            _check_workspace(workspace_dx, threads, &g, k, n_filters)
    _check(partial.shape[1] == kk and partial.shape[2] == n_filters, "partial-sum workspace")
    _check_workspace(workspace_params, threads, &g, kk, n_filters)
    if n_batch == 0:
        return
    cdef Py_ssize_t* off = NULL
    cdef Py_ssize_t t, c, i, j
    # Fused when every thread gets a group; with more threads than groups, dx first
    # spreads over the samples on its own (the same per-sample work, the same bits).
    cdef bint fuse = want_dx and threads <= n_groups
    try:
        kind_params = _kind_params(&g)
        if kind_params == _WIDE:
            # the weight gradient as the direct kernel's correlation: its tap offsets
            off = <Py_ssize_t*> malloc(k * sizeof(Py_ssize_t))
            if off == NULL:
                raise MemoryError("conv kernel: cannot allocate the tap offsets")
            t = 0
            for c in range(g.channels):
                for i in range(kh):
                    for j in range(kw):
                        off[t] = (c * g.hp + i) * g.wp + j
                        t += 1
        if want_dx and as_conv:
            kind_dx = _kind(&gq, True, g.channels)
        if kind_dx != _GEMM:
            wpk_dx = _pack(&weight_dx[0, 0], n_filters * kh * kw, g.channels,
                           n_filters * kh * kw, NULL, 0, NULL, kind_dx)
        if want_dx and not fuse:
            for n in prange(n_batch, nogil=True, schedule='static', num_threads=threads):
                _dx_sample(as_conv, &weight_dx[0, 0], wpk_dx, kind_dx, n_filters,
                           &dy[n, 0, 0, 0], &g, &gq, &workspace_dx[threadid(), 0], block_dx,
                           &dx[n, 0, 0, 0])
        for grp in prange(n_groups, nogil=True, schedule='static', num_threads=threads):
            tid = threadid()
            first = grp * n_batch // n_groups
            last = (grp + 1) * n_batch // n_groups
            memset(&partial[grp, 0, 0], 0, kk * n_filters * sizeof(floating))
            for n in range(first, last):
                if fuse:
                    _dx_sample(as_conv, &weight_dx[0, 0], wpk_dx, kind_dx, n_filters,
                               &dy[n, 0, 0, 0], &g, &gq, &workspace_dx[tid, 0], block_dx,
                               &dx[n, 0, 0, 0])
                wsp = &workspace_params[tid, 0]
                _grad_params_sample(&x[n, 0, 0, 0], &dy[n, 0, 0, 0], &g, n_filters, has_bias,
                                    wsp, wsp + block_params, &partial[grp, 0, 0], off,
                                    kind_params, v64)
    finally:
        free(wpk_dx)
        free(off)


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
