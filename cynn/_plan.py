"""Plans: how a `Sequential` groups its layers into fused steps, inside
`cynn.inference_mode` and in training.

Inference
---------

Inside ``inference_mode`` nothing is kept for a backward pass, so a Sequential need not
hand every intermediate array from layer to layer.  It groups its layers into steps:

- ``Conv2d`` (``groups=1``) followed by any of, in this order, a ``BatchNormalization``,
  a ``ChannelwiseScaling``, a ``ReLU`` and an unpadded ``MaxPool2d`` is one call of
  ``conv2d_forward_eval``: the batch norm (moving statistics) and the scaling are an
  affine map per channel, folded into the convolution's weights and bias as the kernel
  packs them, and the ReLU and the pooling run on each sample's output while it is in
  the cache (the batch-norm, scaling and ReLU outputs are never written to memory, the
  convolution's only at a quarter of its size when a 2x2 pooling follows);
- a ``Linear`` (after a ``Flatten`` or not) followed by a ``ReLU``, ``Dropout`` layers
  or both is one call of ``linear_step``: the bias and the ReLU in the product's store,
  the Dropout (the identity in evaluation) skipped;
- a ``Residual`` whose body ends with such a convolution step (without ReLU or pooling),
  followed by a ``ReLU``, adds the shortcut and applies the ReLU in that last
  convolution's epilogue;
- every other module runs its own ``forward`` (containers inside run their own plans).

Large step outputs come from a per-thread pool (see ``pooled``).  A step is one kernel
call (``conv_eval_step``, ``linear_step``) that folds, allocates and runs in C: at
batch 1 the Python work per layer, not the arithmetic, is what costs.  Input that the
call does not take as is (another dtype, a view, a bad shape) goes through the layers'
checked path instead, which converts it or raises their errors.
The grouping is by exact type, so a subclass that changes a layer's behaviour runs as
itself.  The results equal the layer-by-layer forward up to float rounding (the folded
affine map rounds once instead of three times), the same for any thread count.
``set_inference_plans(False)`` runs every layer one by one, for comparison.  Outside
``inference_mode`` (``evaluate()`` with a backward pass to come) every Sequential runs
layer by layer.

Training
--------
In training mode a ``BatchNormalization`` (batch statistics) followed by a
``ChannelwiseScaling``, a ``ReLU`` or both, on images, is one `NormStep`: the
statistics' sweep and one sweep that writes the ReLU's output, and in backward two
sweeps over the input and the output gradient: 3 + 5 reads and writes of an array of
the activations' size, where the three layers one by one make 7 + 11.  The
forward output is the same bits as the layers'; the gradients equal theirs up to
float rounding (the sums are taken once, in double, instead of layer after layer).
The batch norm's moving statistics move as in its own forward.  The intermediate
arrays are never made, so only the step's last layer keeps an ``_output`` after such a
forward.  ``set_training_fusion(False)`` runs the layers one by one.
"""
import contextlib
import math
import sys
import threading

import numpy as np

from ._threads import get_num_threads, kernel_blas_single_threaded, thread_flag
from ._kernels import batchnorm as _bn
from ._kernels import conv as _conv
from ._kernels import dense as _dense

__all__ = ["set_inference_plans", "inference_plans_enabled", "set_training_fusion",
           "training_fusion_enabled", "release_inference_buffers"]

_enabled = True
_training_enabled = True
_local = threading.local()


@contextlib.contextmanager
def layer_by_layer():
    """Run every Sequential layer by layer in this thread only, in inference and in
    training (`cynn.summary` traces each module's own forward), leaving other threads'
    plans alone."""
    with thread_flag(_local, "off"):
        yield


def set_inference_plans(enabled):
    """Turn the fused inference path on or off for the whole process; returns the
    previous setting.  Off, a Sequential inside ``inference_mode`` runs its layers one
    by one, as in evaluation mode."""
    global _enabled
    previous, _enabled = _enabled, bool(enabled)
    return previous


def inference_plans_enabled():
    """True when a Sequential in this thread runs its inference plan."""
    return _enabled and not getattr(_local, "off", False)


def set_training_fusion(enabled):
    """Turn the fused training steps (`NormStep`) on or off for the whole process;
    returns the previous setting.  Off, a Sequential in training mode runs its layers
    one by one."""
    global _training_enabled
    previous, _training_enabled = _training_enabled, bool(enabled)
    return previous


def training_fusion_enabled():
    """True when a Sequential in this thread fuses its training steps."""
    return _training_enabled and not getattr(_local, "off", False)


# -- the output pool ---------------------------------------------------------------------
# A batch of 512 CIFAR-size images gives 33 MB activations.  glibc serves blocks above
# 32 MB by mmap and unmaps them on free, so every such output of every call is fresh
# memory: a page fault per page and the kernel zeroing it (ResNet-20 at batch 512: 3,700
# faults a call, 10-20% of its time); smaller blocks past its mmap threshold (128 KiB
# at first) fault too whenever free gives the heap's top back (ResNet-20 at batch 16:
# 550 faults a residual block).  Inside the plans, a convolution step's output and
# workspace of 128 KiB and up (conv.pyx's _ALLOC_MIN_BYTES) come from a pool of the
# calling thread's own instead, and an array goes out again only when the pool holds
# the only reference to it (no caller, view or other thread has it), so a result anyone
# still holds is never overwritten.  Up to _POOL_ARRAYS arrays stay with each thread
# that ran a plan until it exits or calls `release_inference_buffers`.
_POOL_ARRAYS = 16
_POOL_OVERSIZE = 4   # an array serves requests down to a quarter of its size


def pooled(shape, dtype):
    """An uninitialized C-contiguous array of ``shape`` and ``dtype`` from the calling
    thread's pool: the start of the smallest free pooled array that is large enough
    (and at most _POOL_OVERSIZE times too large), else a new array that joins the pool
    (the least recently used one leaving it when it is full)."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = []
    count = math.prod(shape)
    best = None
    for i in range(len(pool)):
        array = pool[i]
        # three references: the pool's, ``array`` and getrefcount's argument
        if (array.dtype == dtype and count <= array.size <= _POOL_OVERSIZE * count
                and sys.getrefcount(array) == 3
                and (best is None or array.size < pool[best].size)):
            best = i
    if best is None:
        array = np.empty(count, dtype)
        if len(pool) == _POOL_ARRAYS:
            del pool[0]
    else:
        array = pool.pop(best)
    pool.append(array)
    return array[:count].reshape(shape)


def release_inference_buffers():
    """Drop the calling thread's pool of inference outputs (arrays still referenced
    elsewhere live on with their holders)."""
    _local.pool = []


_TYPES = None


def _types():
    # Imported on first use: the layers import cynn.module, which imports this module.
    global _TYPES
    if _TYPES is None:
        from .containers import Residual
        from .layers import (BatchNormalization, ChannelwiseScaling, Conv2d, Dropout, Flatten,
                             Linear, MaxPool2d, ReLU)
        from .module import Sequential
        _TYPES = (Conv2d, BatchNormalization, ChannelwiseScaling, ReLU, MaxPool2d, Residual,
                  Sequential, Linear, Flatten, Dropout)
    return _TYPES


class _Step:
    """A fused step: ``layers`` are the modules it stands for, in order."""

    def __init__(self, layers):
        self.layers = layers

    def plain(self, x):
        """The layers one by one (for input the fused kernel would refuse: their own
        errors)."""
        for layer in self.layers:
            x = layer.forward(x)
        return x


class ConvStep(_Step):
    """A Conv2d and the evaluation-mode layers fused into its epilogue."""

    def __init__(self, layers, conv, bn, scaling, relu, pool):
        super().__init__(layers)
        self.conv, self.bn, self.scaling, self.relu, self.pool = conv, bn, scaling, relu, pool

    def __call__(self, input, add=None, relu=False):
        out = self.fast(input, add, relu)
        return self._checked(input, add, relu) if out is None else out

    def fast(self, input, add, relu):
        """The step in one kernel call, or None, having done nothing, for arguments the
        call does not take as they are."""
        conv, bn, cs = self.conv, self.bn, self.scaling
        if self.pool is None:
            pkh = pkw = psh = psw = 0
        else:
            (pkh, pkw), (psh, psw) = self.pool.kernel_size, self.pool.stride
        # One kernel call for input as the layers would take it as is; anything else
        # (another dtype, a list, a view, a bad shape) goes through the checked path.
        return _conv.conv_eval_step(
            input, conv.W, conv.b, None if bn is None else bn.moving_mean,
            None if bn is None else bn.moving_variance, 0.0 if bn is None else bn.eps,
            None if cs is None else cs.gamma, None if cs is None else cs.beta, add,
            *conv.stride, *conv.padding, self.relu or relu, pkh, pkw, psh, psw,
            get_num_threads(), kernel_blas_single_threaded(), alloc=pooled)

    def _checked(self, input, add, relu):
        conv = self.conv
        x, (ho, wo) = conv._check_input(input)
        n, f, dtype = x.shape[0], conv.out_channels, conv.dtype
        pkh = pkw = psh = psw = 0
        po, qo = ho, wo
        if self.pool is not None:
            (pkh, pkw), (psh, psw) = self.pool.kernel_size, self.pool.stride
            if pkh > ho or pkw > wo:
                return self.plain(input)  # the pooling layer's own error
            po, qo = (ho - pkh) // psh + 1, (wo - pkw) // psw + 1
        empty = np.empty(0, dtype)
        bn, cs = self.bn, self.scaling
        scale, shift = np.empty(f, dtype), np.empty(f, dtype)
        _conv.fold_affine(empty if conv.b is None else conv.b,
                          empty if bn is None else bn.moving_mean,
                          empty if bn is None else bn.moving_variance,
                          0.0 if bn is None else bn.eps,
                          empty if cs is None else cs.gamma.reshape(-1),
                          empty if cs is None else cs.beta.reshape(-1), scale, shift)
        threads = get_num_threads()
        (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
        size = _conv.eval_workspace_size(x.shape[1], x.shape[2], x.shape[3], kh, kw, ph, pw,
                                         ho, wo, dtype.itemsize, f, pkh)
        ws = conv._ws.get("eval", (threads, size), dtype)
        out = np.empty((n, f, po, qo), dtype)
        add = np.empty((0, 0, 0, 0), dtype) if add is None else add
        _conv.conv2d_forward_eval(x, conv.W.reshape(f, -1), scale, shift, add, out, ws,
                                  kh, kw, sh, sw, ph, pw, self.relu or relu, pkh, pkw, psh,
                                  psw, threads, kernel_blas_single_threaded())
        return out


class DenseStep(_Step):
    """A Linear, with the Flatten before it and the ReLU and the evaluation-mode
    Dropout (the identity) after it, in one pass over its output."""

    def __init__(self, layers, linear, flatten, relu):
        super().__init__(layers)
        self.linear, self.flatten, self.relu = linear, flatten, relu

    def __call__(self, input):
        linear = self.linear
        out = _dense.linear_step(input, linear.W, linear.b, self.relu, self.flatten,
                                 get_num_threads())
        return self.plain(input) if out is None else out


class ResidualStep(_Step):
    """A Residual (and the ReLU after it): the shortcut first, then the body, whose last
    convolution step adds the shortcut and applies the ReLU in its epilogue."""

    def __init__(self, layers, residual, relu):
        super().__init__(layers)
        self.residual, self.relu = residual, relu

    def __call__(self, input):
        res = self.residual
        body = res.body.modules
        steps = plan(body)
        last = steps[-1]
        if not isinstance(last, ConvStep) or last.relu or last.pool is not None:
            return self.plain(input)
        h = input
        for step in steps[:-1]:
            h = step(h)
        skip = input if res.shortcut is None else res.shortcut.forward(input)
        out = last.fast(h, skip, self.relu)
        if out is not None:
            return out
        skip = np.asarray(skip)
        conv = last.conv
        x, (ho, wo) = conv._check_input(h)
        if skip.shape != (x.shape[0], conv.out_channels, ho, wo):
            return self.plain(input)  # Residual's own error
        skip = np.ascontiguousarray(skip, dtype=conv.dtype)
        return last(x, add=skip, relu=self.relu)


def plan(modules):
    """The steps of a Sequential's modules in inference mode (see the module docstring)."""
    (Conv2d, BatchNormalization, ChannelwiseScaling, ReLU, MaxPool2d, Residual, Sequential,
     Linear, Flatten, Dropout) = _types()

    steps, i, count = [], 0, len(modules)
    while i < count:
        m = modules[i]
        if type(m) is Conv2d and m.groups == 1:
            j, bn, cs, relu, pool = i + 1, None, None, False, None
            if (j < count and type(modules[j]) is BatchNormalization
                    and modules[j].moving_mean is not None
                    and modules[j].n_features == m.out_channels and modules[j].dtype == m.dtype):
                bn, j = modules[j], j + 1
            if (j < count and type(modules[j]) is ChannelwiseScaling
                    and modules[j].n_out == m.out_channels and modules[j].dtype == m.dtype):
                cs, j = modules[j], j + 1
            if j < count and type(modules[j]) is ReLU:
                relu, j = True, j + 1
            if j < count and type(modules[j]) is MaxPool2d and modules[j].padding == (0, 0):
                pool, j = modules[j], j + 1
            steps.append(ConvStep(modules[i:j], m, bn, cs, relu, pool))
            i = j
        elif type(m) is Linear or (type(m) is Flatten and i + 1 < count
                                   and type(modules[i + 1]) is Linear):
            flatten = type(m) is Flatten
            j = i + 1 + flatten
            relu = j < count and type(modules[j]) is ReLU
            j += relu
            while j < count and type(modules[j]) is Dropout:  # the identity here
                j += 1
            steps.append(DenseStep(modules[i:j], modules[i + flatten], flatten, relu))
            i = j
        elif (type(m) is Residual and type(m.body) is Sequential and m.body.modules):
            relu = i + 1 < count and type(modules[i + 1]) is ReLU
            j = i + 2 if relu else i + 1
            steps.append(ResidualStep(modules[i:j], m, relu))
            i = j
        else:
            steps.append(m.forward)
            i += 1
    return steps


def run(modules, x):
    for step in plan(modules):
        x = step(x)
    return x


# -- training ---------------------------------------------------------------------------

class NormStep:
    """A training-mode BatchNormalization followed by a ChannelwiseScaling, a ReLU or
    both, on images, in the two kernels of
    `cynn._kernels.batchnorm.bn_scale_forward_train` and ``bn_scale_backward_train``
    (without a scaling, as the identity scaling: gamma * t + beta with 1 and 0 is t, up
    to the sign of a zero that the ReLU then drops).  ``forward`` returns None, having
    changed nothing, for input the fused kernels do not take; the layers then run one by
    one."""

    def __init__(self, bn, scaling, relu):
        self.bn, self.scaling, self.relu = bn, scaling, relu
        self._x = None

    def _affine(self, channels, dtype):
        """gamma and beta: the scaling's, or the identity's."""
        if self.scaling is not None:
            return self.scaling.gamma.reshape(-1), self.scaling.beta.reshape(-1)
        return np.ones(channels, dtype), np.zeros(channels, dtype)

    def forward(self, input):
        from .module import claim, release
        from .layers.normalization import _as_channels_view

        bn, cs = self.bn, self.scaling
        x = bn._check_input(input)
        if (x.ndim != 4 or x.shape[2] * x.shape[3] < 2
                or (cs is not None and (x.shape[1] != cs.n_out or cs.dtype != bn.dtype))):
            return None
        modules = [m for m in (bn, cs, self.relu) if m is not None]
        tokens = [(m, claim(m, "forward")) for m in modules]
        try:
            if bn.moving_mean is None:
                bn._allocate(x.shape[1])
            c, dtype = x.shape[1], bn.dtype
            mean, var, invstd = (np.empty(c, dtype) for _ in range(3))
            gamma, beta = self._affine(c, dtype)
            y = np.empty_like(x)
            _bn.bn_scale_forward_train(_as_channels_view(x), _as_channels_view(y), mean, var,
                                       invstd, gamma, beta, self.relu is not None,
                                       bn._work(x), bn.eps, get_num_threads())
            bn._update_moving(mean, var)
            bn._saved = (input, mean, invstd)
            for m in modules:
                m._output = None
            modules[-1]._output = y
        finally:
            for module, token in tokens:
                release(module, token)
        self._x, self._mean, self._invstd = x, mean, invstd
        return y

    def backward(self, input, output_grad):
        from .layers._base import check_grad_input
        from .layers.normalization import _as_channels_view

        bn, cs, x = self.bn, self.scaling, self._x
        dy = check_grad_input(bn, output_grad, x.shape, bn.dtype)
        dx = np.empty_like(x)
        gamma, beta = self._affine(x.shape[1], bn.dtype)
        grad_gamma, grad_beta = np.zeros_like(gamma), np.zeros_like(beta)
        _bn.bn_scale_backward_train(_as_channels_view(x), _as_channels_view(dy), self._mean,
                                    self._invstd, gamma, beta, self.relu is not None,
                                    _as_channels_view(dx), grad_gamma, grad_beta,
                                    bn._work(x), get_num_threads())
        if cs is not None:
            cs.gradGamma += grad_gamma.reshape(cs.gradGamma.shape)
            cs.gradBeta += grad_beta.reshape(cs.gradBeta.shape)
        return dx


def _norm_run(modules, i):
    """The NormStep of a fusable run starting at ``modules[i]`` (a training-mode
    BatchNormalization, then a ChannelwiseScaling, a ReLU or both, matched by exact
    type) and the index after it, or (None, i) when there is none."""
    _, BatchNormalization, ChannelwiseScaling, ReLU, *_ = _types()
    count = len(modules)
    if type(modules[i]) is not BatchNormalization or not modules[i].training:
        return None, i
    j, cs, relu = i + 1, None, None
    if j < count and type(modules[j]) is ChannelwiseScaling:
        cs, j = modules[j], j + 1
    if j < count and type(modules[j]) is ReLU:
        relu, j = modules[j], j + 1
    if cs is None and relu is None:
        return None, i
    return NormStep(modules[i], cs, relu), j


def train_forward(modules, x):
    """A Sequential's training forward with its `NormStep` runs fused: the output, the
    steps (modules or NormSteps) and the input each step got, for backward."""
    steps, inputs = [], [x]
    i, count = 0, len(modules)
    while i < count:
        step, j = _norm_run(modules, i)
        if step is not None:
            out = step.forward(x)
            if out is not None:
                steps.append(step)
                inputs.append(out)
                x, i = out, j
                continue
        x = modules[i].forward(x)
        steps.append(modules[i])
        inputs.append(x)
        i += 1
    return x, steps, inputs
