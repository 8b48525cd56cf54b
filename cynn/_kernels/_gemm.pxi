# Row-major GEMM on SciPy's Fortran BLAS, shared by the kernels that include this file.
from scipy.linalg.cython_blas cimport dgemm, sgemm


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
