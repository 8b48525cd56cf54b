"""Pooling kernels: MaxPool2d and GlobalAvgPool2d.

MaxPool2d's forward keeps, for every output, the flat index (ih * W + iw, int32) of the
winning input inside its (n, c) plane; backward scatters through those indices.

One prange iteration per (n, c) plane: overlapping windows only collide inside a plane,
so the scatter needs no atomics and sums in a fixed order.
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memset


cdef str _FAMILY = "pooling"
include "_checks.pxi"
include "_geometry.pxi"


cdef extern from "pooling.h":
    void cynn_max2x2_plane_f(const float* x, Py_ssize_t width, float* out, int* argmax,
                             Py_ssize_t ho, Py_ssize_t wo) noexcept nogil
    void cynn_max2x2_plane_d(const double* x, Py_ssize_t width, double* out, int* argmax,
                             Py_ssize_t ho, Py_ssize_t wo) noexcept nogil
    void cynn_max2x2_plane_f_grad(const float* dy, const int* argmax, float* dx,
                                  Py_ssize_t height, Py_ssize_t width, Py_ssize_t ho,
                                  Py_ssize_t wo) noexcept nogil
    void cynn_max2x2_plane_d_grad(const double* dy, const int* argmax, double* dx,
                                  Py_ssize_t height, Py_ssize_t width, Py_ssize_t ho,
                                  Py_ssize_t wo) noexcept nogil


cdef inline void _max2x2_plane(const floating* x, Py_ssize_t width, floating* out,
                               int* argmax, Py_ssize_t ho, Py_ssize_t wo) noexcept nogil:
    if floating is float:
        cynn_max2x2_plane_f(x, width, out, argmax, ho, wo)
    else:
        cynn_max2x2_plane_d(x, width, out, argmax, ho, wo)


cdef inline void _max2x2_plane_grad(const floating* dy, const int* argmax, floating* dx,
                                    Py_ssize_t height, Py_ssize_t width, Py_ssize_t ho,
                                    Py_ssize_t wo) noexcept nogil:
    if floating is float:
        cynn_max2x2_plane_f_grad(dy, argmax, dx, height, width, ho, wo)
    else:
        cynn_max2x2_plane_d_grad(dy, argmax, dx, height, width, ho, wo)


cdef inline bint _is_2x2(int kh, int kw, int sh, int sw, int ph, int pw) noexcept nogil:
    return kh == 2 and kw == 2 and sh == 2 and sw == 2 and ph == 0 and pw == 0


def maxpool2d_forward(const floating[:, :, :, ::1] x, floating[:, :, :, ::1] out,
                      int[:, :, :, ::1] argmax, int kh, int kw, int sh, int sw,
                      int ph, int pw, int num_threads):
    """Max over each window (padding never wins); NaN propagates like in PyTorch."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t height = x.shape[2], width = x.shape[3]
    cdef Py_ssize_t ho = out.shape[2], wo = out.shape[3]
    cdef Py_ssize_t task, n, c, oh, ow, i, j, ih, iw, best_idx
    cdef floating best, v
    _check(out.shape[0] == n_batch and out.shape[1] == channels, "output shape")
    _check(_output_size_ok(ho, wo, height, width, kh, kw, sh, sw, ph, pw), "output size")
    _check(argmax.shape[0] == n_batch and argmax.shape[1] == channels
           and argmax.shape[2] == ho and argmax.shape[3] == wo, "index shape")
    if _is_2x2(kh, kw, sh, sw, ph, pw):
        for task in prange(n_batch * channels, nogil=True, schedule='static',
                           num_threads=num_threads):
            _max2x2_plane(&x[task // channels, task % channels, 0, 0], width,
                          &out[task // channels, task % channels, 0, 0],
                          &argmax[task // channels, task % channels, 0, 0], ho, wo)
        return
    for task in prange(n_batch * channels, nogil=True, schedule='static',
                       num_threads=num_threads):
        n = task // channels
        c = task - n * channels
        for oh in range(ho):
            for ow in range(wo):
                best_idx = -1
                best = 0
                for i in range(kh):
                    ih = oh * sh - ph + i
                    if ih < 0 or ih >= height:
                        continue
                    for j in range(kw):
                        iw = ow * sw - pw + j
                        if iw < 0 or iw >= width:
                            continue
                        v = x[n, c, ih, iw]
                        if best_idx < 0 or v > best or v != v:
                            best = v
                            best_idx = ih * width + iw
                            if v != v:
                                break
                    if best != best and best_idx >= 0:
                        break
                out[n, c, oh, ow] = best
                argmax[n, c, oh, ow] = best_idx


def maxpool2d_backward(const floating[:, :, :, ::1] dy, const int[:, :, :, ::1] argmax,
                       floating[:, :, :, ::1] dx, int kh, int kw, int sh, int sw, int ph,
                       int pw, int num_threads):
    """dx[plane][argmax] += dy, zero elsewhere, for the indices of the forward with the
    same window geometry."""
    cdef Py_ssize_t n_batch = dx.shape[0], channels = dx.shape[1]
    cdef Py_ssize_t height = dx.shape[2], width = dx.shape[3], plane = height * width
    cdef Py_ssize_t ho = dy.shape[2], wo = dy.shape[3]
    cdef Py_ssize_t task, n, c, oh, ow
    cdef Py_ssize_t idx
    cdef floating* dst
    _check(dy.shape[0] == n_batch and dy.shape[1] == channels, "gradient shape")
    _check(argmax.shape[0] == n_batch and argmax.shape[1] == channels
           and argmax.shape[2] == ho and argmax.shape[3] == wo, "index shape")
    _check(_output_size_ok(ho, wo, height, width, kh, kw, sh, sw, ph, pw), "output size")
    if _is_2x2(kh, kw, sh, sw, ph, pw):
        for task in prange(n_batch * channels, nogil=True, schedule='static',
                           num_threads=num_threads):
            _max2x2_plane_grad(&dy[task // channels, task % channels, 0, 0],
                               &argmax[task // channels, task % channels, 0, 0],
                               &dx[task // channels, task % channels, 0, 0],
                               height, width, ho, wo)
        return
    for task in prange(n_batch * channels, nogil=True, schedule='static',
                       num_threads=num_threads):
        n = task // channels
        c = task - n * channels
        dst = &dx[n, c, 0, 0]
        memset(dst, 0, plane * sizeof(floating))
        for oh in range(ho):
            for ow in range(wo):
                idx = argmax[n, c, oh, ow]
                # Indices come from maxpool2d_forward on a plane of this size; the
                # bounds test keeps a corrupted index array from writing outside dx.
                if idx >= 0 and idx < plane:
                    dst[idx] += dy[n, c, oh, ow]


def global_avgpool2d_forward(const floating[:, :, :, ::1] x, floating[:, ::1] out,
                             int num_threads):
    """out[n, c] = mean of the (n, c) plane, summed in double then rounded once."""
    cdef Py_ssize_t n_batch = x.shape[0], channels = x.shape[1]
    cdef Py_ssize_t plane = x.shape[2] * x.shape[3]
    cdef Py_ssize_t task, k
    cdef double total
    cdef const floating* src
    _check(out.shape[0] == n_batch and out.shape[1] == channels, "output shape")
    _check(plane > 0, "input plane (it is empty)")
    for task in prange(n_batch * channels, nogil=True, schedule='static',
                       num_threads=num_threads):
        src = &x[task // channels, task % channels, 0, 0]
        total = 0
        for k in range(plane):
            total = total + src[k]
        out[task // channels, task % channels] = <floating>(total / plane)


def global_avgpool2d_backward(const floating[:, ::1] dy, floating[:, :, :, ::1] dx,
                              int num_threads):
    """dx[n, c, :, :] = dy[n, c] / (H * W)."""
    cdef Py_ssize_t n_batch = dx.shape[0], channels = dx.shape[1]
    cdef Py_ssize_t plane = dx.shape[2] * dx.shape[3]
    cdef Py_ssize_t task, k
    cdef floating v
    cdef floating* dst
    _check(dy.shape[0] == n_batch and dy.shape[1] == channels, "gradient shape")
    _check(plane > 0, "input plane (it is empty)")
    for task in prange(n_batch * channels, nogil=True, schedule='static',
                       num_threads=num_threads):
        v = <floating>(<double>dy[task // channels, task % channels] / plane)
        dst = &dx[task // channels, task % channels, 0, 0]
        for k in range(plane):
            dst[k] = v
