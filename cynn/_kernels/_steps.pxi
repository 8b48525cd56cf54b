# Shared by the one-call entry points (conv_eval_step, linear_step) of the kernel modules
# that include this file; they cimport numpy as cnp first.

cdef enum:
    # Below this many multiply-adds a call runs on one thread: waking the others costs
    # more than they save (small_cnn's 1 -> 16 channels at 8x8, batch 1: 9,216).
    _SMALL_WORK = 65536


cdef bint _is_array(object a, int typenum, int ndim) noexcept:
    """``a`` is an aligned, native-order, C-contiguous ndarray of ``typenum`` and ``ndim``
    axes."""
    return (cnp.PyArray_Check(a) and cnp.PyArray_TYPE(<cnp.ndarray> a) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray> a) == ndim
            and cnp.PyArray_ISBEHAVED_RO(<cnp.ndarray> a)
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> a))


cdef bint _wide_vectors(int n, bint supported) except -1:
    """A set_*vector_bytes(n) argument checked: True for 64-byte vectors, False for
    32; ValueError for any other width, or 64 where the CPU has no x86-64-v4."""
    if n not in (32, 64):
        raise ValueError(f"vector width must be 32 or 64 bytes, got {n!r}")
    if n == 64 and not supported:
        raise ValueError("this CPU has no 64-byte vectors (x86-64-v4)")
    return n == 64
