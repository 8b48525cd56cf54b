# What the one-call entry points (conv_eval_step, linear_step) take as they are, shared
# by the kernel modules that include this file; they cimport numpy as cnp first.

cdef bint _is_array(object a, int typenum, int ndim) noexcept:
    """``a`` is an aligned, native-order, C-contiguous ndarray of ``typenum`` and ``ndim``
    axes."""
    return (cnp.PyArray_Check(a) and cnp.PyArray_TYPE(<cnp.ndarray> a) == typenum
            and cnp.PyArray_NDIM(<cnp.ndarray> a) == ndim
            and cnp.PyArray_ISBEHAVED_RO(<cnp.ndarray> a)
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray> a))
