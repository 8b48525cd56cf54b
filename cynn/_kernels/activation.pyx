"""Element-wise ReLU kernels over flat C-contiguous arrays.

NumPy's ``maximum`` and the mask product run well below memory speed on the
activations of a small CNN; these loops (activation.h) are plain selects that the
compiler vectorizes, split into fixed blocks over the threads.  Each element depends
on its own input only, so the result does not depend on the thread count.
"""
from cython cimport floating
from cython.parallel cimport prange


cdef extern from "activation.h":
    void cynn_relu_f_fwd(const float* x, float* y, Py_ssize_t n) noexcept nogil
    void cynn_relu_d_fwd(const double* x, double* y, Py_ssize_t n) noexcept nogil
    void cynn_relu_f_bwd(const float* x, const float* dy, float* dx, Py_ssize_t n) noexcept nogil
    void cynn_relu_d_bwd(const double* x, const double* dy, double* dx, Py_ssize_t n) noexcept nogil


# Elements per parallel block: big enough to amortize the thread hand-off, small
# enough that two threads share a batch of a few hundred kilobytes.
cdef enum:
    BLOCK = 32768


cdef str _FAMILY = "activation"
include "_checks.pxi"


def relu_forward(const floating[::1] x, floating[::1] y, int num_threads):
    cdef Py_ssize_t n = x.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK, b, start, stop
    _check(y.shape[0] == n, "output size")
    if n == 0:
        return
    if n_blocks == 1 or num_threads <= 1:
        with nogil:
            if floating is float:
                cynn_relu_f_fwd(&x[0], &y[0], n)
            else:
                cynn_relu_d_fwd(&x[0], &y[0], n)
        return
    for b in prange(n_blocks, nogil=True, schedule='static', num_threads=num_threads):
        start = b * BLOCK
        stop = min(start + BLOCK, n)
        if floating is float:
            cynn_relu_f_fwd(&x[start], &y[start], stop - start)
        else:
            cynn_relu_d_fwd(&x[start], &y[start], stop - start)


def relu_backward(const floating[::1] x, const floating[::1] dy, floating[::1] dx,
                  int num_threads):
    cdef Py_ssize_t n = x.shape[0], n_blocks = (n + BLOCK - 1) // BLOCK, b, start, stop
    _check(dy.shape[0] == n and dx.shape[0] == n, "gradient size")
    if n == 0:
        return
    if n_blocks == 1 or num_threads <= 1:
        with nogil:
            if floating is float:
                cynn_relu_f_bwd(&x[0], &dy[0], &dx[0], n)
            else:
                cynn_relu_d_bwd(&x[0], &dy[0], &dx[0], n)
        return
    for b in prange(n_blocks, nogil=True, schedule='static', num_threads=num_threads):
        start = b * BLOCK
        stop = min(start + BLOCK, n)
        if floating is float:
            cynn_relu_f_bwd(&x[start], &dy[start], &dx[start], stop - start)
        else:
            cynn_relu_d_bwd(&x[start], &dy[start], &dx[start], stop - start)
