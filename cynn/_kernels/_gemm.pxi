# Row-major GEMM on SciPy's Fortran BLAS, shared by the kernels that include this file.
#
# The routines are looked up on first use rather than cimported: a cimport imports
# scipy.linalg when the kernel module loads, 0.2 s, two thirds of `import cynn`.  Every
# def entry point that may reach gemm_rm calls _bind_blas() first (with the GIL);
# gemm_rm binds itself too should one not have.
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer

ctypedef void (*_sgemm_t)(char* transa, char* transb, int* m, int* n, int* k, float* alpha,
                          float* a, int* lda, float* b, int* ldb, float* beta, float* c,
                          int* ldc) noexcept nogil
ctypedef void (*_dgemm_t)(char* transa, char* transb, int* m, int* n, int* k, double* alpha,
                          double* a, int* lda, double* b, int* ldb, double* beta, double* c,
                          int* ldc) noexcept nogil

cdef _sgemm_t _sgemm = NULL
cdef _dgemm_t _dgemm = NULL


cdef int _bind_blas() except -1:
    """Point _sgemm and _dgemm at scipy.linalg.cython_blas's routines (once)."""
    global _sgemm, _dgemm
    if _sgemm != NULL:
        return 0
    from scipy.linalg import cython_blas

    capi = cython_blas.__pyx_capi__
    s, d = capi["sgemm"], capi["dgemm"]
    _dgemm = <_dgemm_t> PyCapsule_GetPointer(d, PyCapsule_GetName(d))
    _sgemm = <_sgemm_t> PyCapsule_GetPointer(s, PyCapsule_GetName(s))
    return 0


cdef void _bind_blas_nogil() noexcept nogil:
    with gil:
        try:
            _bind_blas()
        except BaseException:
            pass  # scipy is a dependency; were it broken, the import at the call fails first


cdef void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                  const floating* a, int lda, const floating* b, int ldb,
                  floating beta, floating* c, int ldc) noexcept nogil:
    # Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: a row-major
    # matrix read column-major is its transpose, so swap operands and m with n.
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    if _sgemm == NULL:
        _bind_blas_nogil()
    if floating is float:
        _sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda,
               &beta, c, &ldc)
    else:
        _dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda,
               &beta, c, &ldc)
