"""Dense matrix products for Linear, on the same thread pool as the other kernels.

NumPy's matmul would run on NumPy's BLAS threads; after a call those threads keep
spinning for a while and starve the OpenMP threads of the convolution and batch-norm
kernels on a small machine.  Here the rows of the result are cut into fixed blocks
and the blocks are spread over OpenMP threads, each calling a single-threaded GEMM.
The blocks do not depend on the thread count, so neither do the results.
"""
from cython cimport floating
from cython.parallel cimport prange

cimport numpy as cnp

cnp.import_array()

include "_gemm.pxi"
include "_steps.pxi"

cdef enum:
    ROW_BLOCK = 32


cdef str _FAMILY = "dense"
include "_checks.pxi"


def matmul(const floating[:, ::1] a, const floating[:, ::1] b, floating[:, ::1] c,
           bint trans_a, bint trans_b, floating beta, int num_threads,
           bint blas_single_threaded):
    """c = op(a) @ op(b) + beta * c, with op the transpose when the flag is set.

    With ``blas_single_threaded=False`` (the BLAS could not be pinned to one thread)
    the blocks run serially and BLAS threads each call instead.
    """
    _bind_blas()
    cdef int m = c.shape[0], n = c.shape[1]
    cdef int k = a.shape[0] if trans_a else a.shape[1]
    cdef int lda = a.shape[1], ldb = b.shape[1]
    cdef Py_ssize_t blocks = (m + ROW_BLOCK - 1) // ROW_BLOCK, blk, r0, rows
    cdef int threads = num_threads if blas_single_threaded else 1
    _check((a.shape[1] if trans_a else a.shape[0]) == m, "left operand")
    _check((b.shape[1] if trans_b else b.shape[0]) == k and (b.shape[0] if trans_b else b.shape[1]) == n,
           "right operand")
    if m == 0 or n == 0:
        return
    for blk in prange(blocks, nogil=True, schedule='static', num_threads=threads):
        r0 = blk * ROW_BLOCK
        rows = ROW_BLOCK if r0 + ROW_BLOCK <= m else m - r0
        # Rows r0.. of op(a): a row block, or a column block of a stored transposed.
        gemm_rm(trans_a, trans_b, <int> rows, n, k, <floating> 1,
                &a[0, r0] if trans_a else &a[r0, 0], lda, &b[0, 0], ldb, beta, &c[r0, 0], n)


cdef extern from "dense.h":
    void cynn_dot_tile_f(const float* x, Py_ssize_t ldx, Py_ssize_t r0, Py_ssize_t r1,
                         const float* w, Py_ssize_t ldw, Py_ssize_t o0, Py_ssize_t o1,
                         Py_ssize_t k, const float* bias, int relu, float* y,
                         Py_ssize_t ldy) noexcept nogil
    void cynn_dot_tile_d(const double* x, Py_ssize_t ldx, Py_ssize_t r0, Py_ssize_t r1,
                         const double* w, Py_ssize_t ldw, Py_ssize_t o0, Py_ssize_t o1,
                         Py_ssize_t k, const double* bias, int relu, double* y,
                         Py_ssize_t ldy) noexcept nogil
    int cynn_dot_v64
    int cynn_dot_init()

cdef int _dot_v64 = cynn_dot_init()


def dot_vector_bytes():
    """The vector width of Linear's forward products here: 64 on x86-64-v4, else 32
    (dense.h; the two sum in different orders)."""
    return 64 if cynn_dot_v64 else 32


def set_dot_vector_bytes(int n):
    """Run Linear's forward products on 32- or 64-byte vectors (64 only where the CPU
    has them), to test or compare; returns the previous width.  Not thread-safe: set it
    before any thread runs a product."""
    global cynn_dot_v64
    wide = _wide_vectors(n, _dot_v64)
    old = dot_vector_bytes()
    cynn_dot_v64 = wide
    return old


cdef enum:
    DOT_ROWS = 24      # rows of x per work item
    DOT_OUTPUTS = 24   # rows of W per work item (24 x K stays in the L2 cache)


def linear_forward(const floating[:, ::1] x, const floating[:, ::1] w, floating[:, ::1] y,
                   int num_threads):
    """y = x @ w.T, every entry the same sum (dense.h) for any batch size, batch
    position and thread count."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], n_out = w.shape[0]
    _check(w.shape[1] == k, "weight shape")
    _check(y.shape[0] == m and y.shape[1] == n_out, "output shape")
    _check(num_threads >= 1, "thread count")
    if m == 0 or n_out == 0:
        return
    _linear(&x[0, 0], m, k, &w[0, 0], n_out, NULL, False, &y[0, 0], num_threads)


cdef void _linear(const floating* x, Py_ssize_t m, Py_ssize_t k, const floating* w,
                  Py_ssize_t n_out, const floating* bias, bint relu, floating* y,
                  int num_threads) noexcept nogil:
    """y (m, n_out) = x (m, k) @ w (n_out, k).T, plus ``bias`` (NULL for none), then the
    ReLU when ``relu``.  Work items of DOT_ROWS rows by DOT_OUTPUTS outputs; in each
    thread's share, those that share the larger operand's block come next to each other,
    so that it is read from memory once and the smaller one cycles through the cache
    (for a batch larger than the outputs: x's rows)."""
    cdef Py_ssize_t row_blocks = (m + DOT_ROWS - 1) // DOT_ROWS
    cdef Py_ssize_t out_blocks = (n_out + DOT_OUTPUTS - 1) // DOT_OUTPUTS, i, rb, ob
    cdef bint rows_outer = m > n_out
    if m * k * n_out < _SMALL_WORK:
        num_threads = 1
    for i in prange(row_blocks * out_blocks, schedule='static', num_threads=num_threads):
        if rows_outer:
            rb = i // out_blocks
            ob = i - rb * out_blocks
        else:
            ob = i // row_blocks
            rb = i - ob * row_blocks
        if floating is float:
            cynn_dot_tile_f(x, k, rb * DOT_ROWS, min((rb + 1) * DOT_ROWS, m), w, k,
                            ob * DOT_OUTPUTS, min((ob + 1) * DOT_OUTPUTS, n_out), k, bias,
                            relu, y, n_out)
        else:
            cynn_dot_tile_d(x, k, rb * DOT_ROWS, min((rb + 1) * DOT_ROWS, m), w, k,
                            ob * DOT_OUTPUTS, min((ob + 1) * DOT_OUTPUTS, n_out), k, bias,
                            relu, y, n_out)




def linear_step(x, w, bias, bint relu, bint flatten, int num_threads):
    """Linear's forward, the ReLU after it when ``relu``, in one call on a new output:
    ``linear_forward``, then ``+ bias`` (None for none), then the ReLU, the same bits.
    ``x`` (N, K) or, with ``flatten`` (a Flatten before the Linear), (N, ...) with K
    items per sample; ``w`` (F, K).  Returns None, having done nothing, when an array is not an aligned
    C-contiguous one of ``w``'s dtype and the expected size, or the batch is empty: the
    caller then takes the checked path, whose errors name the problem."""
    cdef int t
    cdef Py_ssize_t m, k, n_out
    cdef cnp.npy_intp dims[2]
    if not cnp.PyArray_Check(w) or num_threads < 1:
        return None
    t = cnp.PyArray_TYPE(<cnp.ndarray> w)
    if ((t != cnp.NPY_FLOAT32 and t != cnp.NPY_FLOAT64) or not _is_array(w, t, 2)
            or not cnp.PyArray_Check(x) or cnp.PyArray_NDIM(<cnp.ndarray> x) < 2
            or (not flatten and cnp.PyArray_NDIM(<cnp.ndarray> x) != 2)
            or not _is_array(x, t, cnp.PyArray_NDIM(<cnp.ndarray> x))):
        return None
    m, n_out, k = cnp.PyArray_DIM(<cnp.ndarray> x, 0), cnp.PyArray_DIM(<cnp.ndarray> w, 0), cnp.PyArray_DIM(<cnp.ndarray> w, 1)
    if m < 1 or k < 1 or cnp.PyArray_SIZE(<cnp.ndarray> x) != m * k:
        return None
    if bias is not None and not (_is_array(bias, t, 1)
                                 and cnp.PyArray_DIM(<cnp.ndarray> bias, 0) == n_out):
        return None
    dims[0], dims[1] = m, n_out
    out = cnp.PyArray_EMPTY(2, dims, t, 0)
    if n_out == 0:
        return out
    with nogil:
        if t == cnp.NPY_FLOAT32:
            _linear(<float*> cnp.PyArray_DATA(<cnp.ndarray> x), m, k,
                    <float*> cnp.PyArray_DATA(<cnp.ndarray> w), n_out,
                    NULL if bias is None else <float*> cnp.PyArray_DATA(<cnp.ndarray> bias),
                    relu, <float*> cnp.PyArray_DATA(<cnp.ndarray> out), num_threads)
        else:
            _linear(<double*> cnp.PyArray_DATA(<cnp.ndarray> x), m, k,
                    <double*> cnp.PyArray_DATA(<cnp.ndarray> w), n_out,
                    NULL if bias is None else <double*> cnp.PyArray_DATA(<cnp.ndarray> bias),
                    relu, <double*> cnp.PyArray_DATA(<cnp.ndarray> out), num_threads)
    return out
