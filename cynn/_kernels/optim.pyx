"""The optimizers' element-wise updates in one pass over each parameter.

NumPy needs a dozen passes (and temporaries) for one Adam step; here each element is
read and written once.  Every operation is the one NumPy's sequence did, in the same
order and in the parameter's dtype, with the Python-float hyperparameters rounded to
that dtype as NumPy rounds them, so the result is the same bits.  The module is
compiled with no fused multiply-add contraction (which would round differently);
``adam_update`` is its baseline loop, ``adam_step`` and ``sgd_step`` run optim.h's
loops, cloned for AVX2 / AVX-512, whose vector square roots and divisions round as
the scalar ones.  Elements are independent, so the result does not depend on the
thread count either.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf
from libc.stdlib cimport malloc, free
cimport numpy as cnp

cnp.import_array()

cdef str _FAMILY = "optim"
include "_checks.pxi"

cdef enum:
    # fewer elements than this run in the calling thread (a thread team costs more)
    PARALLEL_MIN = 32768


def adam_update(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
                floating[::1] exp_avg_sq, double beta1, double beta2, double sqrt_bc2,
                double eps, double step, int num_threads):
    """One Adam step, as `cynn.Adam._update_parameter` writes it with NumPy:
    m = m * b1 + g * (1 - b1); v = v * b2 + (g * g) * (1 - b2);
    param -= m / (sqrt(v) / sqrt_bc2 + eps) * step, where step = lr / bias_correction1."""
    cdef Py_ssize_t n = param.shape[0], i
    cdef floating b1 = <floating> beta1, c1 = <floating> (1.0 - beta1)
    cdef floating b2 = <floating> beta2, c2 = <floating> (1.0 - beta2)
    cdef floating s2 = <floating> sqrt_bc2, e = <floating> eps, s = <floating> step
    cdef floating m, v, t, d
    cdef int threads = num_threads if n >= PARALLEL_MIN else 1
    _check(grad.shape[0] == n and exp_avg.shape[0] == n and exp_avg_sq.shape[0] == n,
           "parameter and state sizes")
    _check(num_threads >= 1, "thread count")
    for i in prange(n, nogil=True, schedule='static', num_threads=threads):
        m = exp_avg[i] * b1
        t = grad[i] * c1
        m = m + t
        exp_avg[i] = m
        v = exp_avg_sq[i] * b2
        t = grad[i] * grad[i]
        t = t * c2
        v = v + t
        exp_avg_sq[i] = v
        if floating is float:
            d = sqrtf(v)
        else:
            d = sqrt(v)
        d = d / s2
        d = d + e
        t = m / d
        t = t * s
        param[i] = param[i] - t


# -- every parameter in one call ------------------------------------------------------
# An optimizer step over a dozen small arrays spent more time in Python, per array,
# than in the arithmetic (12 arrays of a small CNN: 210 us a step through
# adam_update).  These take the lists of arrays, check them in C and run every
# update in one nogil call; the per-element operations are the ones above.

cdef int _table(list arrays, Py_ssize_t n, int typenum, bint writeable, void** ptrs,
                Py_ssize_t stride, Py_ssize_t* sizes) except -1:
    """ptrs[i * stride] = the data of arrays[i]; 1 when each of the n arrays is a
    C-contiguous ndarray of ``typenum`` (``writeable`` when asked) with sizes[i]
    elements (sizes[i] < 0: any, then set), else 0 (the caller falls back)."""
    cdef Py_ssize_t i
    cdef cnp.ndarray a
    if len(arrays) != n:
        return 0
    for i in range(n):
        if not isinstance(arrays[i], cnp.ndarray):
            return 0
        a = <cnp.ndarray> arrays[i]
        if (not cnp.PyArray_IS_C_CONTIGUOUS(a) or cnp.PyArray_TYPE(a) != typenum
                or (writeable and not cnp.PyArray_ISWRITEABLE(a))):
            return 0
        if sizes[i] < 0:
            sizes[i] = cnp.PyArray_SIZE(a)
        elif cnp.PyArray_SIZE(a) != sizes[i]:
            return 0
        ptrs[i * stride] = cnp.PyArray_DATA(a)
    return 1


cdef int _typenum(list params) except -2:
    """The float type number every parameter shares, or -1."""
    if not params or not isinstance(params[0], cnp.ndarray):
        return -1
    cdef int t = cnp.PyArray_TYPE(<cnp.ndarray> params[0])
    return t if t == cnp.NPY_FLOAT32 or t == cnp.NPY_FLOAT64 else -1


cdef extern from "optim.h":
    void cynn_adam_f(float* p, const float* g, float* m, float* v, Py_ssize_t i0,
                     Py_ssize_t i1, float b1, float c1, float b2, float c2, float s2, float e,
                     float s, int has_l2, float l2, int has_shrink, float shrink) noexcept nogil
    void cynn_adam_d(double* p, const double* g, double* m, double* v, Py_ssize_t i0,
                     Py_ssize_t i1, double b1, double c1, double b2, double c2, double s2,
                     double e, double s, int has_l2, double l2, int has_shrink,
                     double shrink) noexcept nogil
    void cynn_sgd_f(float* p, const float* g, float* b, Py_ssize_t i0, Py_ssize_t i1,
                    float lr, float mu, int nesterov, int has_l2, float l2) noexcept nogil
    void cynn_sgd_d(double* p, const double* g, double* b, Py_ssize_t i0, Py_ssize_t i1,
                    double lr, double mu, int nesterov, int has_l2, double l2) noexcept nogil


cdef class _Table:
    """The data pointers of parallel lists of arrays (``columns``: the parameters, then
    their gradients, states...), one row of ``len(columns)`` per parameter, and each
    parameter's size.  ``ok`` is False when an array is not one the kernels take: a
    C-contiguous ndarray of the parameters' one float dtype, of its parameter's size,
    writeable where ``writeable`` says so."""
    cdef void** ptrs
    cdef Py_ssize_t* sizes
    cdef Py_ssize_t n, width
    cdef int typenum
    cdef bint ok

    def __cinit__(self, list columns, tuple writeable):
        cdef Py_ssize_t i, j
        self.width = len(columns)
        self.n = len(columns[0])
        self.typenum = _typenum(columns[0])
        self.ok = False
        self.ptrs = <void**> malloc(max(1, self.width * self.n) * sizeof(void*))
        self.sizes = <Py_ssize_t*> malloc(max(1, self.n) * sizeof(Py_ssize_t))
        if self.ptrs == NULL or self.sizes == NULL:
            raise MemoryError("optim kernel: cannot allocate the array table")
        if self.typenum < 0 or self.n == 0:
            return
        for i in range(self.n):
            self.sizes[i] = -1
        for j in range(self.width):
            if not _table(columns[j], self.n, self.typenum, writeable[j], self.ptrs + j,
                          self.width, self.sizes):
                return
        self.ok = True

    def __dealloc__(self):
        free(self.ptrs)
        free(self.sizes)


cdef inline void _adam_range(void** a, Py_ssize_t i0, Py_ssize_t i1, floating b1, floating c1,
                             floating b2, floating c2, floating s2, floating e, floating s,
                             bint has_l2, floating l2, bint has_shrink,
                             floating shrink) noexcept nogil:
    if floating is float:
        cynn_adam_f(<float*> a[0], <const float*> a[1], <float*> a[2], <float*> a[3], i0, i1,
                    b1, c1, b2, c2, s2, e, s, has_l2, l2, has_shrink, shrink)
    else:
        cynn_adam_d(<double*> a[0], <const double*> a[1], <double*> a[2], <double*> a[3], i0,
                    i1, b1, c1, b2, c2, s2, e, s, has_l2, l2, has_shrink, shrink)


cdef void _adam_all(void** ptrs, const Py_ssize_t* sizes, Py_ssize_t n_arrays, floating b1,
                    floating c1, floating b2, floating c2, floating s2, floating e,
                    floating s, bint has_l2, floating l2, bint has_shrink, floating shrink,
                    int num_threads) noexcept nogil:
    """Each parameter in blocks of PARALLEL_MIN elements, over the threads when it has
    more than one block (elements are independent: any split gives the same bits)."""
    cdef Py_ssize_t a, blk, n, nb
    for a in range(n_arrays):
        n = sizes[a]
        nb = (n + PARALLEL_MIN - 1) // PARALLEL_MIN
        if nb > 1 and num_threads > 1:
            for blk in prange(nb, schedule='static', num_threads=num_threads):
                _adam_range(ptrs + 4 * a, blk * PARALLEL_MIN, min(n, (blk + 1) * PARALLEL_MIN),
                            b1, c1, b2, c2, s2, e, s, has_l2, l2, has_shrink, shrink)
        else:
            _adam_range(ptrs + 4 * a, 0, n, b1, c1, b2, c2, s2, e, s, has_l2, l2, has_shrink,
                        shrink)


def adam_step(list params, list grads, list exp_avgs, list exp_avg_sqs, double beta1,
              double beta2, double sqrt_bc2, double eps, double step, bint has_l2,
              double weight_decay, bint has_shrink, double shrink, int num_threads):
    """`adam_update` on every parameter at once, with ``has_l2`` Adam's penalty folded
    into the gradient first (grad + param * weight_decay) and with ``has_shrink``
    AdamW's decay (param *= shrink) first.  Returns False, having changed nothing, unless
    every array is C-contiguous and writeable (the gradients need not be), of the
    parameters' one float dtype, and each gradient and state the size of its parameter;
    the caller then updates parameter by parameter."""
    cdef _Table t = _Table([params, grads, exp_avgs, exp_avg_sqs], (True, False, True, True))
    _check(num_threads >= 1, "thread count")
    if not t.ok:
        return False
    with nogil:
        if t.typenum == cnp.NPY_FLOAT32:
            _adam_all(t.ptrs, t.sizes, t.n, <float> beta1, <float> (1.0 - beta1), <float> beta2,
                      <float> (1.0 - beta2), <float> sqrt_bc2, <float> eps, <float> step,
                      has_l2, <float> weight_decay, has_shrink, <float> shrink, num_threads)
        else:
            _adam_all(t.ptrs, t.sizes, t.n, beta1, 1.0 - beta1, beta2, 1.0 - beta2, sqrt_bc2,
                      eps, step, has_l2, weight_decay, has_shrink, shrink, num_threads)
    return True


cdef inline void _sgd_range(void** a, bint momentum, Py_ssize_t i0, Py_ssize_t i1,
                            floating lr, floating mu, bint nesterov, bint has_l2,
                            floating l2) noexcept nogil:
    if floating is float:
        cynn_sgd_f(<float*> a[0], <const float*> a[1], <float*> a[2] if momentum else NULL,
                   i0, i1, lr, mu, nesterov, has_l2, l2)
    else:
        cynn_sgd_d(<double*> a[0], <const double*> a[1], <double*> a[2] if momentum else NULL,
                   i0, i1, lr, mu, nesterov, has_l2, l2)


cdef void _sgd_all(void** ptrs, Py_ssize_t width, const Py_ssize_t* sizes,
                   Py_ssize_t n_arrays, floating lr, floating mu, bint momentum,
                   bint nesterov, bint has_l2, floating l2, int num_threads) noexcept nogil:
    cdef Py_ssize_t a, blk, n, nb
    for a in range(n_arrays):
        n = sizes[a]
        nb = (n + PARALLEL_MIN - 1) // PARALLEL_MIN
        if nb > 1 and num_threads > 1:
            for blk in prange(nb, schedule='static', num_threads=num_threads):
                _sgd_range(ptrs + width * a, momentum, blk * PARALLEL_MIN,
                           min(n, (blk + 1) * PARALLEL_MIN), lr, mu, nesterov, has_l2, l2)
        else:
            _sgd_range(ptrs + width * a, momentum, 0, n, lr, mu, nesterov, has_l2, l2)


def sgd_step(list params, list grads, list buffers, double lr, double momentum,
             bint nesterov, bint has_l2, double weight_decay, int num_threads):
    """`cynn.SGD`'s update on every parameter at once: the gradient (plus param *
    weight_decay with ``has_l2``), with ``buffers`` (a list, or None for no momentum)
    buf = buf * momentum + g and g = buf (Nesterov: buf * momentum + g), then
    param -= g * lr.  Returns False, having changed nothing, on arrays it cannot take
    (as `adam_step`)."""
    cdef bint has_buffers = buffers is not None
    cdef _Table t = _Table([params, grads, buffers] if has_buffers else [params, grads],
                           (True, False, True))
    _check(num_threads >= 1, "thread count")
    if not t.ok:
        return False
    with nogil:
        if t.typenum == cnp.NPY_FLOAT32:
            _sgd_all(t.ptrs, t.width, t.sizes, t.n, <float> lr, <float> momentum, has_buffers,
                     nesterov, has_l2, <float> weight_decay, num_threads)
        else:
            _sgd_all(t.ptrs, t.width, t.sizes, t.n, lr, momentum, has_buffers, nesterov, has_l2,
                     weight_decay, num_threads)
    return True
