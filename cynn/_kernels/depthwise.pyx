"""Depthwise Conv2d kernels: a direct convolution, plane by plane, with no im2col.

Semantics (PyTorch's ``conv2d(groups=C)``).  Input x is (N, C, H, W); the F = C * m
output channels (channel multiplier m >= 1) each read one input channel, f // m; the
weight is (F, kh, kw), C-contiguous (the layer's (F, 1, kh, kw) reshaped).  With zero
padding (ph, pw):

    y[n, f, oh, ow] = b[f] + sum_{i,j} xpad[n, f // m, oh * sh + i, ow * sw + j] * w[f, i, j]

How.  A depthwise convolution does kh * kw multiply-adds per output value, too few
for a GEMM to pay for an unfolded copy (im2col would move kh * kw times the data), so
each plane is streamed through the cache once: it is copied into a small per-thread
buffer, zero-padded and, for stride sw > 1, split into sw column phases so that every
tap is a contiguous row slice (depthwise.h), and the loops run vector by vector over
output rows from that buffer.  The padding is the same for every plane of a call, so
each thread's buffer is zeroed once per call and only the plane's values are copied
in after that.

    forward:      one task per (n, c): pad x[n, c] once, then the m output planes
                  y[n, c*m + k] = b + sum of the taps, in registers.
    input grad:   one task per (n, c).  Stride 1: dx[n, c] is the correlation of the m
                  planes dy[n, c*m + k], padded by kernel - 1 - padding, with the flipped
                  kernels (the m * kh * kw taps accumulate in registers).  Other strides:
                  each dy plane is scattered tap by tap into a padded buffer, which is
                  then copied out (a plain vectorized axpy per tap and row).
    param grads:  one task per (sample group, block of input channels): for each
                  sample of the group, in order, pad x[n, c] and add the kh * kw + 1 sums
                  of products with each dy[n, c*m + k] into the group's double
                  accumulators for that output channel; the groups' sums are then added
                  in group order.

Accumulation.  The forward and the input gradient sum at most m * kh * kw products
per value in the array's dtype, as PyTorch does.  The weight and bias gradients sum
N * Ho * Wo products: float32 lanes add at most 64 terms each (CYNN_DW_LANE_TERMS,
or one output row if that is longer) before the lane sums are added into double
accumulators, so float32 gradients are as exact as a blocked float sum; they are
rounded to the dtype once, when added into grad_w and grad_b.

Threads.  Every task writes its own output and sums in a fixed order; the sample
groups of the parameter gradients are fixed by N alone (min(N, 4) groups), never by the
thread count.  Results are bit-identical for any num_threads.  Tasks go to the threads
in dynamic chunks (see _chunk): which thread runs a task changes nothing it computes.

Safety.  The ``def`` entry points check every shape and geometry relation before any
loop runs and raise ValueError naming the value; the loops then only index inside
the arrays and the per-call buffers.
"""
from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.stdlib cimport free, malloc
from libc.string cimport memset


cdef str _FAMILY = "depthwise"
include "_checks.pxi"
include "_geometry.pxi"


cdef extern from "depthwise.h":
    int CYNN_DW_LANE_TERMS
    void cynn_dw_pad_f(const float* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t top,
                       Py_ssize_t left, Py_ssize_t sw, Py_ssize_t rows, Py_ssize_t lp,
                       float* buf) noexcept nogil
    void cynn_dw_pad_d(const double* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t top,
                       Py_ssize_t left, Py_ssize_t sw, Py_ssize_t rows, Py_ssize_t lp,
                       double* buf) noexcept nogil
    void cynn_dw_unpad_f(const float* buf, Py_ssize_t rows, Py_ssize_t lp, Py_ssize_t sw,
                         Py_ssize_t top, Py_ssize_t left, float* x, Py_ssize_t h,
                         Py_ssize_t w) noexcept nogil
    void cynn_dw_unpad_d(const double* buf, Py_ssize_t rows, Py_ssize_t lp, Py_ssize_t sw,
                         Py_ssize_t top, Py_ssize_t left, double* x, Py_ssize_t h,
                         Py_ssize_t w) noexcept nogil
    void cynn_dw_f_direct(const float* src, Py_ssize_t rstride, const Py_ssize_t* off,
                          const float* w, Py_ssize_t taps, int three_by_three, float bias,
                          float* out, Py_ssize_t ho, Py_ssize_t wo) noexcept nogil
    void cynn_dw_d_direct(const double* src, Py_ssize_t rstride, const Py_ssize_t* off,
                          const double* w, Py_ssize_t taps, int three_by_three,
                          double bias, double* out, Py_ssize_t ho,
                          Py_ssize_t wo) noexcept nogil
    void cynn_dw_f_corr(const float* dy, Py_ssize_t ho, Py_ssize_t wo, const float* src,
                        Py_ssize_t rstride, const Py_ssize_t* off, Py_ssize_t taps,
                        int three_by_three, int has_bias, double* acc) noexcept nogil
    void cynn_dw_d_corr(const double* dy, Py_ssize_t ho, Py_ssize_t wo, const double* src,
                        Py_ssize_t rstride, const Py_ssize_t* off, Py_ssize_t taps,
                        int three_by_three, int has_bias, double* acc) noexcept nogil
    void cynn_dw_scatter_f(const float* dy, Py_ssize_t ho, Py_ssize_t wo, float* dst,
                           Py_ssize_t rstride, const Py_ssize_t* off, const float* w,
                           Py_ssize_t taps) noexcept nogil
    void cynn_dw_scatter_d(const double* dy, Py_ssize_t ho, Py_ssize_t wo, double* dst,
                           Py_ssize_t rstride, const Py_ssize_t* off, const double* w,
                           Py_ssize_t taps) noexcept nogil


# Samples per parameter-gradient task: N is split into min(N, _PARAM_GROUPS) groups of
# consecutive samples, so that few output channels still spread over the threads.  A
# constant: the summation order must not depend on the thread count.
cdef enum:
    _PARAM_GROUPS = 4


cdef inline void _pad(const floating* x, Py_ssize_t h, Py_ssize_t w, Py_ssize_t top,
                      Py_ssize_t left, Py_ssize_t sw, Py_ssize_t rows, Py_ssize_t lp,
                      floating* buf) noexcept nogil:
    if floating is float:
        cynn_dw_pad_f(x, h, w, top, left, sw, rows, lp, buf)
    else:
        cynn_dw_pad_d(x, h, w, top, left, sw, rows, lp, buf)


cdef inline void _unpad(const floating* buf, Py_ssize_t rows, Py_ssize_t lp, Py_ssize_t sw,
                        Py_ssize_t top, Py_ssize_t left, floating* x, Py_ssize_t h,
                        Py_ssize_t w) noexcept nogil:
    if floating is float:
        cynn_dw_unpad_f(buf, rows, lp, sw, top, left, x, h, w)
    else:
        cynn_dw_unpad_d(buf, rows, lp, sw, top, left, x, h, w)


cdef inline void _direct(const floating* src, Py_ssize_t rstride, const Py_ssize_t* off,
                         const floating* w, Py_ssize_t taps, bint three_by_three,
                         floating bias, floating* out, Py_ssize_t ho,
                         Py_ssize_t wo) noexcept nogil:
    if floating is float:
        cynn_dw_f_direct(src, rstride, off, w, taps, three_by_three, bias, out, ho, wo)
    else:
        cynn_dw_d_direct(src, rstride, off, w, taps, three_by_three, bias, out, ho, wo)


cdef inline void _corr(const floating* dy, Py_ssize_t ho, Py_ssize_t wo, const floating* src,
                       Py_ssize_t rstride, const Py_ssize_t* off, Py_ssize_t taps,
                       bint three_by_three, bint has_bias, double* acc) noexcept nogil:
    if floating is float:
        cynn_dw_f_corr(dy, ho, wo, src, rstride, off, taps, three_by_three, has_bias, acc)
    else:
        cynn_dw_d_corr(dy, ho, wo, src, rstride, off, taps, three_by_three, has_bias, acc)


cdef inline void _scatter(const floating* dy, Py_ssize_t ho, Py_ssize_t wo, floating* dst,
                          Py_ssize_t rstride, const Py_ssize_t* off, const floating* w,
                          Py_ssize_t taps) noexcept nogil:
    if floating is float:
        cynn_dw_scatter_f(dy, ho, wo, dst, rstride, off, w, taps)
    else:
        cynn_dw_scatter_d(dy, ho, wo, dst, rstride, off, w, taps)


# ---- checks ---------------------------------------------------------------------------

cdef str _fmt(Py_ssize_t* shape, int ndim):
    return "(" + ", ".join([str(shape[i]) for i in range(ndim)]) + ")"


cdef int _check_channels(Py_ssize_t channels, Py_ssize_t n_filters) except -1:
    if channels < 1:
        raise ValueError(f"depthwise kernel: the input needs at least one channel, got {channels}")
    if n_filters < 1 or n_filters % channels != 0:
        raise ValueError(f"depthwise kernel: {n_filters} output channels is not a positive "
                         f"multiple of the {channels} input channels")
    return 0


cdef int _check_kernel(Py_ssize_t* shape, str name, Py_ssize_t n_filters, int kh,
                       int kw) except -1:
    if shape[0] != n_filters or shape[1] != kh or shape[2] != kw:
        raise ValueError(f"depthwise kernel: {name} has shape {_fmt(shape, 3)}, expected "
                         f"({n_filters}, {kh}, {kw}) for {n_filters} output channels and "
                         f"kernel ({kh}, {kw})")
    return 0


cdef int _check_geometry(Py_ssize_t height, Py_ssize_t width, Py_ssize_t ho, Py_ssize_t wo,
                         int kh, int kw, int sh, int sw, int ph, int pw) except -1:
    """The output (ho, wo) is what a (kh, kw) kernel, stride (sh, sw) and zero padding
    (ph, pw) make of an (H, W) input: every relation the loops rely on, checked in
    Python integers."""
    if kh < 1 or kw < 1:
        raise ValueError(f"depthwise kernel: kernel size must be positive, got ({kh}, {kw})")
    if sh < 1 or sw < 1:
        raise ValueError(f"depthwise kernel: stride must be positive, got ({sh}, {sw})")
    if ph < 0 or pw < 0:
        raise ValueError(f"depthwise kernel: padding must be non-negative, got ({ph}, {pw})")
    cdef object hp = <object> height + 2 * <object> ph, wp = <object> width + 2 * <object> pw
    if kh > hp or kw > wp:
        raise ValueError(f"depthwise kernel: kernel ({kh}, {kw}) is larger than the padded "
                         f"input ({hp}, {wp}) of input ({height}, {width}) with padding "
                         f"({ph}, {pw})")
    cdef object eho = (hp - kh) // sh + 1, ewo = (wp - kw) // sw + 1
    if ho != eho or wo != ewo:
        raise ValueError(f"depthwise kernel: inconsistent output size ({ho}, {wo}), expected "
                         f"({eho}, {ewo}) for input ({height}, {width}), kernel ({kh}, {kw}), "
                         f"stride ({sh}, {sw}), padding ({ph}, {pw})")
    # The shared check, in C integers, says the same; kept as the loops' guard.
    _check(_output_size_ok(ho, wo, height, width, kh, kw, sh, sw, ph, pw), "output size")
    return 0


cdef int _check_threads(int num_threads) except -1:
    if num_threads < 1:
        raise ValueError(f"depthwise kernel: num_threads must be at least 1, got {num_threads}")
    return 0


cdef Py_ssize_t* _phase_offsets(int kh, int kw, int sw, Py_ssize_t lp) except NULL:
    """Offsets of the (i, j) taps, in row-major order, in a (rows, sw, lp) buffer."""
    cdef Py_ssize_t* off = <Py_ssize_t*> malloc(kh * kw * sizeof(Py_ssize_t))
    cdef Py_ssize_t i, j
    if off == NULL:
        raise MemoryError()
    for i in range(kh):
        for j in range(kw):
            off[i * kw + j] = i * sw * lp + (j % sw) * lp + j // sw
    return off


cdef inline Py_ssize_t _chunk(Py_ssize_t tasks, int threads) noexcept nogil:
    """Tasks per dynamic-schedule chunk: about 16 chunks per thread.  Dynamic, because
    the cores may be shared: with a static split, a thread that loses its core holds
    up the whole call, while the others could take over its planes.  Which thread runs
    a task never changes what the task computes."""
    cdef Py_ssize_t c = tasks // (16 * threads)
    return c if c > 1 else 1


cdef void* _alloc(Py_ssize_t items, size_t itemsize) except NULL:
    cdef void* p = malloc((items if items > 0 else 1) * itemsize)
    if p == NULL:
        raise MemoryError()
    return p


# ---- entry points ---------------------------------------------------------------------

def depthwise_forward(const floating[:, :, :, ::1] x not None,
                      const floating[:, :, ::1] weight not None,
                      const floating[::1] bias not None, floating[:, :, :, ::1] out not None,
                      int kh, int kw, int sh, int sw, int ph, int pw, bint has_bias,
                      int num_threads):
    """out (N, F, Ho, Wo) = the depthwise correlation of x (N, C, H, W) with weight
    (F, kh, kw), plus bias (F,) when ``has_bias`` (bias may then be empty)."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t n_filters = weight.shape[0], ho = out.shape[2], wo = out.shape[3]
    _check_channels(channels, n_filters)
    _check_kernel(weight.shape, "weight", n_filters, kh, kw)
    if out.shape[0] != n_batch or out.shape[1] != n_filters:
        raise ValueError(f"depthwise kernel: output has shape {_fmt(out.shape, 4)}, expected "
                         f"({n_batch}, {n_filters}, Ho, Wo) for input {_fmt(x.shape, 4)}")
    if has_bias and bias.shape[0] != n_filters:
        raise ValueError(f"depthwise kernel: bias has length {bias.shape[0]}, expected "
                         f"{n_filters}")
    _check_geometry(height, width, ho, wo, kh, kw, sh, sw, ph, pw)
    _check_threads(num_threads)
    cdef Py_ssize_t tasks = n_batch * channels
    if tasks == 0:
        return
    cdef Py_ssize_t mult = n_filters // channels, taps = kh * kw
    cdef Py_ssize_t rows = (ho - 1) * sh + kh, lp = (kw - 1) // sw + wo
    cdef Py_ssize_t pitch = sw * lp, plane = rows * pitch
    cdef int threads = num_threads if num_threads < tasks else <int> tasks
    cdef bint k3x3 = kh == 3 and kw == 3
    cdef Py_ssize_t task, n, c, k, f
    cdef const floating* xs
    cdef floating* buf
    cdef floating b
    cdef Py_ssize_t* off = _phase_offsets(kh, kw, sw, lp)
    cdef floating* ws = NULL
    try:
        ws = <floating*> _alloc(threads * plane, sizeof(floating))
        memset(ws, 0, threads * plane * sizeof(floating))   # the padding, once (see _pad)
        for task in prange(tasks, nogil=True, schedule='dynamic', chunksize=_chunk(tasks, threads),
                           num_threads=threads):
            n = task // channels
            c = task - n * channels
            buf = ws + threadid() * plane
            xs = NULL
            if height > 0 and width > 0:
                xs = &x[n, c, 0, 0]
            _pad(xs, height, width, ph, pw, sw, rows, lp, buf)
            for k in range(mult):
                f = c * mult + k
                b = 0
                if has_bias:
                    b = bias[f]
                _direct(buf, sh * pitch, off, &weight[f, 0, 0], taps, k3x3, b,
                        &out[n, f, 0, 0], ho, wo)
    finally:
        free(ws)
        free(off)


def depthwise_backward_input(const floating[:, :, :, ::1] dy not None,
                             const floating[:, :, ::1] weight not None,
                             floating[:, :, :, ::1] dx not None, int kh, int kw, int sh,
                             int sw, int ph, int pw, int num_threads):
    """dx (N, C, H, W) = the gradient of sum(y * dy) with respect to x: written, not
    added; each input channel sums its m output channels."""
    cdef Py_ssize_t n_batch = dx.shape[0], channels = dx.shape[1]
    cdef Py_ssize_t height = dx.shape[2], width = dx.shape[3]
    cdef Py_ssize_t n_filters = dy.shape[1], ho = dy.shape[2], wo = dy.shape[3]
    _check_channels(channels, n_filters)
    _check_kernel(weight.shape, "weight", n_filters, kh, kw)
    if dy.shape[0] != n_batch:
        raise ValueError(f"depthwise kernel: output gradient has shape {_fmt(dy.shape, 4)}, "
                         f"expected {n_batch} samples like the input gradient "
                         f"{_fmt(dx.shape, 4)}")
    _check_geometry(height, width, ho, wo, kh, kw, sh, sw, ph, pw)
    _check_threads(num_threads)
    cdef Py_ssize_t tasks = n_batch * channels
    if tasks == 0 or height == 0 or width == 0:
        return
    cdef Py_ssize_t mult = n_filters // channels, kk = kh * kw, taps, task, n, c, k, f, i, j
    cdef int threads = num_threads if num_threads < tasks else <int> tasks
    cdef Py_ssize_t rows, lp, pitch, plane, qh, qw
    cdef bint k3x3 = mult == 1 and kh == 3 and kw == 3
    cdef floating* buf
    cdef Py_ssize_t* off = NULL
    cdef floating* ws = NULL
    cdef floating* flipped = NULL
    try:
        if sh == 1 and sw == 1:
            # dx[n, c] = the correlation, stride 1 and no padding, of the m planes
            # dy[n, c*m + k] padded by (kh - 1 - ph, kw - 1 - pw) (cropped where that is
            # negative) with the flipped kernels: m * kh * kw taps over an (m, rows, lp)
            # buffer, accumulated in registers.
            qh, qw = kh - 1 - ph, kw - 1 - pw
            rows, lp = height + kh - 1, width + kw - 1
            plane = rows * lp
            taps = mult * kk
            off = <Py_ssize_t*> _alloc(taps, sizeof(Py_ssize_t))
            flipped = <floating*> _alloc(n_filters * kk, sizeof(floating))
            ws = <floating*> _alloc(threads * mult * plane, sizeof(floating))
            memset(ws, 0, threads * mult * plane * sizeof(floating))
            for k in range(mult):
                for i in range(kh):
                    for j in range(kw):
                        off[(k * kh + i) * kw + j] = k * plane + i * lp + j
            for f in range(n_filters):
                for i in range(kh):
                    for j in range(kw):
                        flipped[(f * kh + i) * kw + j] = weight[f, kh - 1 - i, kw - 1 - j]
            for task in prange(tasks, nogil=True, schedule='dynamic', chunksize=_chunk(tasks, threads),
                           num_threads=threads):
                n = task // channels
                c = task - n * channels
                buf = ws + threadid() * mult * plane
                for k in range(mult):
                    _pad(&dy[n, c * mult + k, 0, 0], ho, wo, qh, qw, 1, rows, lp,
                         buf + k * plane)
                _direct(buf, lp, off, flipped + c * mult * kk, taps, k3x3, 0,
                        &dx[n, c, 0, 0], height, width)
        else:
            # Any stride: scatter each tap of each dy row into a zeroed, padded,
            # phase-split copy of dx[n, c] (the forward's layout), then copy its middle out.
            rows, lp = (ho - 1) * sh + kh, (kw - 1) // sw + wo
            pitch = sw * lp
            plane = rows * pitch
            off = _phase_offsets(kh, kw, sw, lp)
            ws = <floating*> _alloc(threads * plane, sizeof(floating))
            for task in prange(tasks, nogil=True, schedule='dynamic', chunksize=_chunk(tasks, threads),
                           num_threads=threads):
                n = task // channels
                c = task - n * channels
                buf = ws + threadid() * plane
                memset(buf, 0, plane * sizeof(floating))
                for k in range(mult):
                    f = c * mult + k
                    _scatter(&dy[n, f, 0, 0], ho, wo, buf, sh * pitch, off, &weight[f, 0, 0],
                             kk)
                _unpad(buf, rows, lp, sw, ph, pw, &dx[n, c, 0, 0], height, width)
    finally:
        free(ws)
        free(flipped)
        free(off)


def depthwise_backward_params(const floating[:, :, :, ::1] x not None,
                              const floating[:, :, :, ::1] dy not None,
                              floating[:, :, ::1] grad_w not None,
                              floating[::1] grad_b not None, int kh, int kw, int sh, int sw,
                              int ph, int pw, bint has_bias, int num_threads):
    """grad_w (F, kh, kw) += dL/dW and, when ``has_bias``, grad_b (F,) += dL/db (grad_b
    may then be empty), for input x (N, C, H, W) and output gradient dy (N, F, Ho, Wo)."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t n_filters = dy.shape[1], ho = dy.shape[2], wo = dy.shape[3]
    _check_channels(channels, n_filters)
    _check_kernel(grad_w.shape, "weight gradient", n_filters, kh, kw)
    if dy.shape[0] != n_batch:
        raise ValueError(f"depthwise kernel: output gradient has shape {_fmt(dy.shape, 4)}, "
                         f"expected {n_batch} samples like the input {_fmt(x.shape, 4)}")
    if has_bias and grad_b.shape[0] != n_filters:
        raise ValueError(f"depthwise kernel: bias gradient has length {grad_b.shape[0]}, "
                         f"expected {n_filters}")
    _check_geometry(height, width, ho, wo, kh, kw, sh, sw, ph, pw)
    _check_threads(num_threads)
    if n_batch == 0:
        return
    cdef Py_ssize_t mult = n_filters // channels, taps = kh * kw, stride_acc = taps + 1
    cdef Py_ssize_t groups = n_batch if n_batch < _PARAM_GROUPS else _PARAM_GROUPS
    cdef Py_ssize_t rows = (ho - 1) * sh + kh, lp = (kw - 1) // sw + wo
    cdef Py_ssize_t pitch = sw * lp, plane = rows * pitch
    # Input channels per task: a block of planes of about 64 KiB per sample, read
    # front to back (whole pages, as the prefetcher likes; one channel per task over
    # all samples would jump a page per plane).  This choice never changes a sum.
    cdef Py_ssize_t per_block = 65536 // ((height * width + 1) * sizeof(floating))
    if per_block < 1:
        per_block = 1
    if per_block > channels:
        per_block = channels
    cdef Py_ssize_t n_blocks = (channels + per_block - 1) // per_block
    cdef Py_ssize_t tasks = groups * n_blocks
    cdef int threads = num_threads if num_threads < tasks else <int> tasks
    cdef bint k3x3 = kh == 3 and kw == 3
    cdef Py_ssize_t task, n, c, c0, c1, k, f, g, t
    cdef const floating* xs
    cdef floating* buf
    cdef double s
    cdef Py_ssize_t* off = _phase_offsets(kh, kw, sw, lp)
    cdef floating* ws = NULL
    cdef double* partial = NULL
    try:
        ws = <floating*> _alloc(threads * plane, sizeof(floating))
        memset(ws, 0, threads * plane * sizeof(floating))
        # partial (groups, F, kh * kw + 1): each group's sums, in double.
        partial = <double*> _alloc(groups * n_filters * stride_acc, sizeof(double))
        for task in prange(tasks, nogil=True, schedule='dynamic', chunksize=_chunk(tasks, threads),
                           num_threads=threads):
            g = task // n_blocks
            c0 = (task - g * n_blocks) * per_block
            c1 = c0 + per_block if c0 + per_block < channels else channels
            memset(partial + (g * n_filters + c0 * mult) * stride_acc, 0,
                   (c1 - c0) * mult * stride_acc * sizeof(double))
            buf = ws + threadid() * plane
            # The samples of group g in order: each weight's sum over them is fixed.
            for n in range(g * n_batch // groups, (g + 1) * n_batch // groups):
                for c in range(c0, c1):
                    xs = NULL
                    if height > 0 and width > 0:
                        xs = &x[n, c, 0, 0]
                    _pad(xs, height, width, ph, pw, sw, rows, lp, buf)
                    for k in range(mult):
                        f = c * mult + k
                        _corr(&dy[n, f, 0, 0], ho, wo, buf, sh * pitch, off, taps, k3x3,
                              has_bias, partial + (g * n_filters + f) * stride_acc)
        # The groups' sums, in group order (F * (kh * kw + 1) values).
        for f in range(n_filters):
            for t in range(taps + has_bias):
                s = 0
                for g in range(groups):
                    s += partial[(g * n_filters + f) * stride_acc + t]
                if t < taps:
                    grad_w[f, t // kw, t % kw] = <floating> (grad_w[f, t // kw, t % kw] + s)
                else:
                    grad_b[f] = <floating> (grad_b[f] + s)
    finally:
        free(partial)
        free(ws)
        free(off)
