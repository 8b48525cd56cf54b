"""Input and argument checks shared by the layers.

Every check runs in Python before a kernel sees the data, and every message names the
bad value and what was expected.
"""
import numbers

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, owner):
    """Return ``np.dtype(dtype)`` if it is float32 or float64, else raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{owner}: dtype must be float32 or float64, got {dt}")
    return dt


def as_real_array(x, owner, name="input"):
    """``x`` as an array of its own real dtype (integers stay integers, nothing is
    copied that need not be); object, complex and string data raise TypeError."""
    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{owner} expected a numeric array as {name}: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{owner} expected a real numeric array as {name}, got dtype {arr.dtype}"
        )
    return arr


def as_float_array(x, owner, dtype=None, name="input"):
    """Convert ``x`` to a C-contiguous float array, copying only when needed.

    ``dtype=None`` keeps float32/float64 input as it is and casts any other real
    numeric input to float64.  Object, complex, string and other non-numeric data
    raise TypeError.  Read-only arrays are accepted as they are (kernels take const
    memoryviews).
    """
    arr = as_real_array(x, owner, name)
    if dtype is None:
        dtype = arr.dtype if arr.dtype in FLOAT_DTYPES else np.dtype(np.float64)
    if arr.dtype != dtype or not arr.flags.c_contiguous:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    return arr


def check_ndim(x, ndims, owner, what):
    """Raise ValueError unless ``x.ndim`` is in ``ndims``; also reject empty batches."""
    if x.ndim not in ndims:
        expected = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{owner} expected {expected}-D input {what}, got shape {x.shape}")
    if x.shape[0] == 0:
        raise ValueError(f"{owner} got an empty batch (shape {x.shape})")
    if x.size == 0:
        raise ValueError(f"{owner} got input with a zero-sized dimension, shape {x.shape}")


def check_same_shape(grad, expected_shape, owner, name="output_grad"):
    if grad.shape != tuple(expected_shape):
        raise ValueError(
            f"{owner} expected {name} of shape {tuple(expected_shape)}, got {grad.shape}"
        )


def positive_int(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive integer, got {value!r}")
    return int(value)


def non_negative_int(value, name, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{owner}: {name} must be a non-negative integer, got {value!r}")
    return int(value)


def int_pair(value, name, owner, allow_zero=False):
    """Accept an int or a pair of ints and return a 2-tuple, validated."""
    check = non_negative_int if allow_zero else positive_int
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
        return (check(value[0], name, owner), check(value[1], name, owner))
    v = check(value, name, owner)
    return (v, v)


def finite_float(value, name, owner, low=None, high=None, low_open=False, high_open=False):
    """Validate a real number inside an interval; names the value on failure."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{owner}: {name} must be a finite number, got {value!r}")
    v = float(value)
    bad = (
        (low is not None and (v < low or (low_open and v == low)))
        or (high is not None and (v > high or (high_open and v == high)))
    )
    if bad:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        interval = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
        raise ValueError(f"{owner}: {name} must be in {interval}, got {value!r}")
    return v


def window_output_size(shape, kernel_size, stride, padding, owner):
    """Output (height, width) of a sliding window over an (N, C, H, W) input.

    Raises ValueError when the kernel does not fit in the padded input.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel_size, stride, padding
    h, w = shape[2] + 2 * ph, shape[3] + 2 * pw
    if h < kh or w < kw:
        raise ValueError(
            f"{owner} kernel_size {tuple(kernel_size)} is larger than the padded input "
            f"({h}, {w}) of input shape {tuple(shape)}"
        )
    return (h - kh) // sh + 1, (w - kw) // sw + 1
