"""Dense matrix products for Linear, on the same thread pool as the other kernels.

NumPy's matmul would run on NumPy's BLAS threads; after a call those threads keep
spinning for a while and starve the OpenMP threads of the convolution and batch-norm
kernels on a small machine.  Here the rows of the result are cut into fixed blocks
and the blocks are spread over OpenMP threads, each calling a single-threaded GEMM.
The blocks do not depend on the thread count, so neither do the results.
"""
from cython cimport floating
from cython.parallel cimport prange

include "_gemm.pxi"

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
                         Py_ssize_t k, float* y, Py_ssize_t ldy) noexcept nogil
    void cynn_dot_tile_d(const double* x, Py_ssize_t ldx, Py_ssize_t r0, Py_ssize_t r1,
                         const double* w, Py_ssize_t ldw, Py_ssize_t o0, Py_ssize_t o1,
                         Py_ssize_t k, double* y, Py_ssize_t ldy) noexcept nogil


cdef enum:
    DOT_ROWS = 24      # rows of x per work item
    DOT_OUTPUTS = 24   # rows of W per work item (24 x K stays in the L2 cache)


def linear_forward(const floating[:, ::1] x, const floating[:, ::1] w, floating[:, ::1] y,
                   int num_threads):
    """y = x @ w.T, every entry the same sum (dense.h) for any batch size, batch
    position and thread count.  Work items of DOT_ROWS rows by DOT_OUTPUTS outputs,
    those that share outputs next to each other in each thread's share, so that a
    thread's rows of W stay in the cache."""
    cdef Py_ssize_t m = x.shape[0], k = x.shape[1], n_out = w.shape[0], i, rb, ob
    cdef Py_ssize_t row_blocks = (m + DOT_ROWS - 1) // DOT_ROWS
    cdef Py_ssize_t out_blocks = (n_out + DOT_OUTPUTS - 1) // DOT_OUTPUTS
    _check(w.shape[1] == k, "weight shape")
    _check(y.shape[0] == m and y.shape[1] == n_out, "output shape")
    _check(num_threads >= 1, "thread count")
    if m == 0 or n_out == 0:
        return
    for i in prange(row_blocks * out_blocks, nogil=True, schedule='static',
                    num_threads=num_threads):
        ob = i // row_blocks
        rb = i - ob * row_blocks
        if floating is float:
            cynn_dot_tile_f(&x[0, 0], k, rb * DOT_ROWS, min((rb + 1) * DOT_ROWS, m), &w[0, 0], k,
                            ob * DOT_OUTPUTS, min((ob + 1) * DOT_OUTPUTS, n_out), k, &y[0, 0],
                            n_out)
        else:
            cynn_dot_tile_d(&x[0, 0], k, rb * DOT_ROWS, min((rb + 1) * DOT_ROWS, m), &w[0, 0], k,
                            ob * DOT_OUTPUTS, min((ob + 1) * DOT_OUTPUTS, n_out), k, &y[0, 0],
                            n_out)
