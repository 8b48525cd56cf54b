# Sliding-window output sizes, shared by the kernels that include this file (conv,
# pooling): their def entry points check the geometry they are given with these before
# any loop relies on it.

cdef inline bint _window_ok(Py_ssize_t out, Py_ssize_t size, Py_ssize_t k, Py_ssize_t s,
                            Py_ssize_t p) noexcept nogil:
    """True when ``out`` windows of ``k`` taps, stride ``s``, fit a length ``size`` padded
    by ``p`` on both sides: k <= size + 2p and out == (size + 2p - k) // s + 1.  Computed
    on non-negative numbers only, so that C's truncating division is the floor: with
    size + 2p - k == -1 and s == 2 it would otherwise give one output, not none."""
    cdef Py_ssize_t padded = size + 2 * p
    return (k >= 1 and s >= 1 and p >= 0 and size >= 0 and padded >= k
            and out == (padded - k) // s + 1)


cdef inline bint _output_size_ok(Py_ssize_t ho, Py_ssize_t wo, Py_ssize_t h, Py_ssize_t w,
                                 int kh, int kw, int sh, int sw, int ph,
                                 int pw) noexcept nogil:
    """(ho, wo) is the output of a (kh, kw) window, stride (sh, sw), over an (h, w) plane
    zero-padded by (ph, pw) on each side (see _window_ok)."""
    return _window_ok(ho, h, kh, sh, ph) and _window_ok(wo, w, kw, sw, pw)
