"""Input and argument checks, shared by the whole package.

Every check runs in Python before a kernel sees the data, and every message names the
bad value and what was expected.
"""
import math
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



def sample_weights(sample_weight, n, owner):
    """``sample_weight`` as float64 of shape ``(n,)``: finite, non-negative and not all
    0 (a weighted mean over no weight is undefined); ValueError naming the bad value."""
    w = as_real_array(sample_weight, owner, name="sample_weight").astype(np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"{owner}: sample_weight must have shape ({n},), one weight per "
                         f"sample, got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        bad = w[~np.isfinite(w) | (w < 0)][0]
        raise ValueError(f"{owner}: sample_weight must be finite and non-negative, got {bad}")
    if w.sum() == 0:
        raise ValueError(f"{owner}: sample_weight sums to 0; at least one sample must count")
    return w

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


# -- argument rules ------------------------------------------------------------------
# One place for the rules that constructors, optimizers, the training loop, the
# estimators, the datasets and the command line state about their arguments.  Each
# returns the value normalized (int, float, bool) or raises ValueError with the message
# ``"<owner>: <name> must be <requirement>, got <value>"`` (no owner prefix when
# ``owner`` is None).

def _fail(value, name, owner, requirement):
    where = f"{owner}: " if owner else ""
    raise ValueError(f"{where}{name} must be {requirement}, got {value!r}")


def _is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def integer(value, name, owner=None, low=None, high=None):
    """An integer in ``[low, high]`` (either bound may be None)."""
    if low == 1 and high is None:
        requirement = "a positive integer"
    elif low == 0 and high is None:
        requirement = "a non-negative integer"
    elif high is None:
        requirement = "an integer" if low is None else f"an integer >= {low}"
    else:
        requirement = f"an integer in [{'-inf' if low is None else low}, {high}]"
    if not _is_integer(value) or (low is not None and value < low) \
            or (high is not None and value > high):
        _fail(value, name, owner, requirement)
    return int(value)


def positive_int(value, name, owner=None):
    return integer(value, name, owner, low=1)


def non_negative_int(value, name, owner=None):
    return integer(value, name, owner, low=0)


def parse_positive_int(text, name):
    """A positive integer from text (an environment variable, a command-line value)."""
    if isinstance(text, str):
        try:
            value = int(text.strip())
        except ValueError:
            _fail(text, name, None, "a positive integer")
        if value < 1:
            _fail(text, name, None, "a positive integer")
        return value
    if isinstance(text, float) and text.is_integer():
        text = int(text)
    return positive_int(text, name)


def int_pair(value, name, owner, allow_zero=False):
    """Accept an int or a pair of ints and return a 2-tuple, validated."""
    check = non_negative_int if allow_zero else positive_int
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
        return (check(value[0], name, owner), check(value[1], name, owner))
    v = check(value, name, owner)
    return (v, v)


def finite_float(value, name, owner=None, low=None, high=None, low_open=False, high_open=False):
    """A finite real number inside an interval (either bound may be None)."""
    if low is None and high is None:
        requirement = "a finite number"
    elif low == 0 and high is None:
        requirement = "a positive finite number" if low_open else "a non-negative finite number"
    else:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        requirement = f"a number in {lo}{'-inf' if low is None else low}, " \
                      f"{'inf' if high is None else high}{hi}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        _fail(value, name, owner, requirement)
    v = float(value)
    if (low is not None and (v < low or (low_open and v == low))) \
            or (high is not None and (v > high or (high_open and v == high))):
        _fail(value, name, owner, requirement)
    return v


def positive_float(value, name, owner=None):
    return finite_float(value, name, owner, low=0, low_open=True)


def non_negative_float(value, name, owner=None):
    return finite_float(value, name, owner, low=0)


def fraction(value, name, owner=None, include_zero=True):
    """A number in [0, 1) (or (0, 1))."""
    return finite_float(value, name, owner, low=0, high=1, low_open=not include_zero,
                        high_open=True)


def flag(value, name, owner=None):
    if not isinstance(value, (bool, np.bool_)):
        _fail(value, name, owner, "True or False")
    return bool(value)


def choice(value, name, owner, choices):
    """One of ``choices``: strings, or integers (a bool or a float is never taken for
    an integer option)."""
    if not (isinstance(value, str) or _is_integer(value)) or value not in choices:
        _fail(value, name, owner, f"one of {tuple(choices)}")
    return value if isinstance(value, str) else int(value)


def callable_or_none(value, name, owner=None, requirement="None or a callable"):
    """None or a callable (a function, or an object with ``__call__``); TypeError otherwise."""
    if value is not None and not callable(value):
        where = f"{owner}: " if owner else ""
        raise TypeError(f"{where}{name} must be {requirement}, got {value!r}")
    return value


def collect_errors(errors, check, *args, **kwargs):
    """Run one rule; on failure append its message to ``errors`` instead of raising
    (the estimators report every bad parameter at once)."""
    try:
        return check(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        errors.append(str(exc))
        return None


def check_state_keys(state, expected, owner):
    """Raise unless ``state`` is a dict with exactly the ``expected`` keys."""
    if not isinstance(state, dict):
        raise TypeError(f"{owner}.load_state_dict expects a dict, got {type(state).__name__}")
    expected, given = set(expected), set(state)
    if expected != given:
        raise ValueError(
            f"state does not match {owner}: missing keys {sorted(expected - given)}, "
            f"unexpected keys {sorted(given - expected)}"
        )


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
