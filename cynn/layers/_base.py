"""Shared machinery of the layers: reusable workspaces and parameter initialization."""
import math
import threading

import numpy as np

from .._random import generator_for


class Workspaces:
    """Scratch arrays kept across calls, grown when a call needs more, one set per
    thread.

    The first touch of freshly allocated memory costs a page fault per 4 KiB page,
    so the large temporaries of a layer (im2col matrices and the like) are allocated
    once and reused.  Each thread gets its own arrays, so threads running one model
    at once never write into each other's scratch space; a thread's arrays are freed
    with the thread.  Copies and pickles start empty.
    """

    def __init__(self):
        self._local = threading.local()

    def _buffers(self):
        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        return buffers

    def get(self, name, shape, dtype):
        size = math.prod(shape)
        buffers = self._buffers()
        buf = buffers.get(name)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = np.empty(max(size, 1), dtype=dtype)
            buffers[name] = buf
        return buf[:size].reshape(shape)

    def clear(self):
        """Drop every thread's arrays (a dtype change makes them useless)."""
        self._local = threading.local()

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        self._local = threading.local()


def uniform_init(rng, bound, shape, dtype):
    """U(-bound, bound) drawn in float64 then cast, so float32 and float64 models
    built from the same seed hold the same values up to rounding."""
    return generator_for(rng).uniform(-bound, bound, size=shape).astype(dtype)


def init_weight_and_bias(layer, rng, bound, weight_shape, bias):
    """Give ``layer`` a weight ``W`` of ``weight_shape`` and, when ``bias``, a bias ``b``
    of one entry per output (``weight_shape[0]``), both U(-bound, bound), with their
    zeroed gradients, and name them for the Module contract (weight first)."""
    layer.W = uniform_init(rng, bound, weight_shape, layer.dtype)
    layer.gradW = np.zeros_like(layer.W)
    if bias:
        layer.b = uniform_init(rng, bound, (weight_shape[0],), layer.dtype)
        layer.gradb = np.zeros_like(layer.b)
        layer._parameter_names, layer._grad_names = ("W", "b"), ("gradW", "gradb")
    else:
        layer.b = layer.gradb = None
        layer._parameter_names, layer._grad_names = ("W",), ("gradW",)


def check_grad_input(layer, output_grad, out_shape, dtype):
    """Convert ``output_grad`` and check it has the shape forward produced."""
    from .._validation import as_float_array, check_same_shape

    grad = as_float_array(output_grad, type(layer).__name__, dtype, name="output_grad")
    check_same_shape(grad, out_shape, type(layer).__name__)
    return grad
