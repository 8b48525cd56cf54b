"""Conv2d: 2-D cross-correlation over NCHW batches, on the Cython im2col + GEMM kernel."""
import numpy as np

from .._random import check_random_state
from .._threads import get_num_threads, kernel_blas_single_threaded
from .._validation import (as_float_array, check_dtype, check_ndim, int_pair,
                           positive_int, window_output_size)
from .._kernels import conv as _conv
from .._kernels import depthwise as _depthwise
from ..module import Module
from ._base import Workspaces, check_grad_input, init_weight_and_bias

__all__ = ["Conv2d"]


def _resolve_padding(padding, kernel_size, owner):
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0)
        if padding == "same":
            kh, kw = kernel_size
            if kh % 2 == 0 or kw % 2 == 0:
                raise ValueError(
                    f"{owner}: padding='same' needs an odd kernel_size, got {kernel_size}; "
                    "pass an explicit int or pair padding for even kernels"
                )
            return (kh // 2, kw // 2)
        raise ValueError(f"{owner}: padding must be 'same', 'valid', an int or a pair, got {padding!r}")
    return int_pair(padding, "padding", owner, allow_zero=True)


class Conv2d(Module):
    r"""2-D convolution (cross-correlation, as in PyTorch) over ``(N, C, H, W)`` input.

    .. math:: Y_{n,f} = B_f + \sum_c X_{n,c} \star K_{f,c}

    Gradients (the seed's formulas): :math:`\partial L/\partial K_{fc} = X_c \star
    \partial L/\partial Y_f`, :math:`\partial L/\partial B_f = \sum \partial L/\partial Y_f`,
    :math:`\partial L/\partial X_c = \sum_f \partial L/\partial Y_f \ast K_{fc}` (full
    convolution), computed here as im2col/col2im around GEMMs.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int or (int, int)
    stride : int or (int, int), default 1
    padding : 'same', 'valid', int or (int, int), default 'same'
        'same' pads ``kernel_size // 2`` zeros on each side (odd kernels only), which
        keeps the size at stride 1 and gives ``ceil(H / stride)`` rows otherwise.
    bias : bool, default True
    dtype : float32 or float64, default float32
    random_state : None, int or numpy.random.Generator
    init : 'seed' or 'fan_in', default 'seed'
        The bound of the uniform initialization of ``W`` and ``b``: 'seed' is the
        course's ``1/sqrt(in_channels / groups)``; 'fan_in' is
        ``1/sqrt(in_channels / groups * kh * kw)``, PyTorch's default for ``nn.Conv2d``
        (three times smaller for 3x3 kernels).
    groups : int, default 1
        Split the channels into ``groups`` independent convolutions, as PyTorch's
        ``groups``: output channels ``[g * F/G, (g + 1) * F/G)`` see only input channels
        ``[g * C/G, (g + 1) * C/G)``.  ``groups == in_channels`` is a depthwise
        convolution (``out_channels`` a multiple of it); it runs on a direct kernel
        (set ``direct_depthwise = False`` on a layer to compare it with the per-group
        im2col + GEMM path that other groupings use).

    Attributes
    ----------
    W : ndarray (out_channels, in_channels / groups, kh, kw)
    b : ndarray (out_channels,), absent when ``bias=False``
    gradW, gradb : accumulated gradients of the same shapes

    Shape
    -----
    input ``(N, C_in, H, W)`` -> output ``(N, C_out, Ho, Wo)`` with
    ``Ho = (H + 2 * ph - kh) // sh + 1``.

    Notes
    -----
    Initialization follows the seed by default: ``W, b ~ U(-1/sqrt(c), 1/sqrt(c))`` with
    ``c = in_channels / groups``.  PyTorch uses the fan-in ``c * kh * kw`` instead
    (``init='fan_in'``); ahead of a batch normalization the larger seed weights act as a
    smaller effective step size.
    """

    # Partial sums of the weight gradient (groups of samples).  More groups than
    # threads balances the load; the number must not depend on the thread count.
    _GRAD_GROUPS = 8
    # Input gradient as a correlation of dy (see _compute_input_grad) when there are at
    # least this many input channels and at most this many output channels per input
    # one.  At twice as many outputs (16 -> 32 at 8x8 and 16x16, 32 -> 64 at 8x8 and
    # 14x14, stride 1) the correlation makes the whole backward 0.88-0.97x the time of
    # col2im(W^T @ dy) (batch 64-128, 25 rounds alternating in one process, medians).
    _FLIP_MIN_CHANNELS = 8
    _FLIP_MAX_RATIO = 2
    # groups == in_channels runs on the direct depthwise kernel; False sends it through
    # the per-group im2col + GEMM path instead (for comparison).
    direct_depthwise = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding="same",
                 bias=True, dtype=np.float32, random_state=None, init="seed", groups=1):
        super().__init__()
        owner = "Conv2d"
        self.in_channels = positive_int(in_channels, "in_channels", owner)
        self.out_channels = positive_int(out_channels, "out_channels", owner)
        self.groups = positive_int(groups, "groups", owner)
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(
                f"Conv2d: groups={self.groups} must divide in_channels={self.in_channels} "
                f"and out_channels={self.out_channels}"
            )
        self.kernel_size = int_pair(kernel_size, "kernel_size", owner)
        self.stride = int_pair(stride, "stride", owner)
        self.padding = _resolve_padding(padding, self.kernel_size, owner)
        self.dtype = check_dtype(dtype, owner)
        rng = check_random_state(random_state)
        fan_channels = self.in_channels // self.groups
        if init == "seed":
            bound = 1.0 / np.sqrt(fan_channels)
        elif init == "fan_in":
            bound = 1.0 / np.sqrt(fan_channels * self.kernel_size[0] * self.kernel_size[1])
        else:
            raise ValueError(f"Conv2d: init must be 'seed' or 'fan_in', got {init!r}")
        shape = (self.out_channels, fan_channels) + self.kernel_size
        init_weight_and_bias(self, rng, bound, shape, bias)
        self._ws = Workspaces()
        self._grad_cache = None

    def get_config(self):
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": list(self.padding), "bias": self.b is not None,
                "dtype": self.dtype.name, "groups": self.groups}

    def __setstate__(self, state):
        state.setdefault("groups", 1)  # pickled before grouped convolutions
        super().__setstate__(state)

    def _check_input(self, input):
        x = as_float_array(input, "Conv2d", self.dtype)
        check_ndim(x, (4,), "Conv2d", "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d expected input with {self.in_channels} channels, got shape {x.shape}"
            )
        return x, window_output_size(x.shape, self.kernel_size, self.stride, self.padding, "Conv2d")

    def _geometry(self):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return kh, kw, sh, sw, ph, pw

    def _depthwise(self):
        return self.groups == self.in_channels and self.groups > 1 and self.direct_depthwise

    def _group_slices(self):
        """(input channels, output channels) of each group, as slices."""
        cg, fg = self.in_channels // self.groups, self.out_channels // self.groups
        return [(slice(g * cg, (g + 1) * cg), slice(g * fg, (g + 1) * fg))
                for g in range(self.groups)]

    def _group(self, array, channels):
        """One group's channels of an (N, C, H, W) array, C-contiguous for the kernel."""
        return array if self.groups == 1 else np.ascontiguousarray(array[:, channels])

    def _columns(self, in_shape, out_hw, n_filters, padding=None, name="col"):
        """Per-thread kernel workspace: a column block (one chunk of output rows) or the
        direct kernel's output rows, and a padded copy of one sample."""
        (ph, pw), (kh, kw) = padding or self.padding, self.kernel_size
        size = _conv.workspace_size(in_shape[1], in_shape[2], in_shape[3], kh, kw, ph, pw,
                                    out_hw[0], out_hw[1], self.dtype.itemsize, n_filters)
        return self._ws.get(name, (get_num_threads(), size), self.dtype)

    def _part(self, array, channels):
        """``array[channels]`` (a bias or its gradient), or an empty array when the layer
        has no bias: the kernels take a length-0 array then."""
        return array[channels] if array is not None else np.empty(0, self.dtype)

    def _planes(self, weight):
        """``W`` or ``gradW`` as the depthwise kernel's (F, kh, kw) view."""
        return weight.reshape(-1, *self.kernel_size)

    def _check_backward(self, input, output_grad):
        """The checked input and output gradient of a backward hook."""
        x, out_hw = self._check_input(input)
        dy = check_grad_input(self, output_grad, (x.shape[0], self.out_channels) + out_hw,
                              self.dtype)
        return x, dy

    def _compute_output(self, input):
        x, out_hw = self._check_input(input)
        if self.groups == 1:
            return self._forward_gemm(x, self.W, slice(None), out_hw)
        out = np.empty((x.shape[0], self.out_channels) + out_hw, dtype=self.dtype)
        if self._depthwise():
            _depthwise.depthwise_forward(x, self._planes(self.W), self._part(self.b, slice(None)),
                                         out, *self._geometry(), self.b is not None,
                                         get_num_threads())
            return out
        for xs, fs in self._group_slices():
            out[:, fs] = self._forward_gemm(self._group(x, xs), self.W[fs], fs, out_hw)
        return out

    def _forward_gemm(self, x, W, channels, out_hw):
        f, k = W.shape[0], W[0].size
        out = np.empty((x.shape[0], f) + out_hw, dtype=self.dtype)
        if self.b is not None:
            # [W | b]: the kernel's GEMM adds the bias through a row of ones.
            weight = self._ws.get("weight_bias", (f, k + 1), self.dtype)
            weight[:, :k] = W.reshape(f, k)
            weight[:, k] = self.b[channels]
        else:
            weight = W.reshape(f, k)
        _conv.conv2d_forward(x, weight, self._columns(x.shape, out_hw, f), out, *self._geometry(),
                             self.b is not None, get_num_threads(), kernel_blas_single_threaded())
        return out

    def _compute_input_grad(self, input, output_grad):
        x, dy = self._check_backward(input, output_grad)
        dx = np.empty(x.shape, dtype=self.dtype)
        if self._depthwise():
            _depthwise.depthwise_backward_input(dy, self._planes(self.W), dx, *self._geometry(),
                                                get_num_threads())
            self._grad_cache = (input, output_grad, (x, dy))
            return dx
        # One pass over the samples computes dx and the weight gradient's partial sums
        # while each dy[n] is in the cache; backward calls the parameter hook next with
        # the same objects, which then only adds the partial sums up.
        partials = []
        for g, (xs, fs) in enumerate(self._group_slices()):
            dx_g = dx if self.groups == 1 else np.empty((x.shape[0], xs.stop - xs.start)
                                                        + x.shape[2:], dtype=self.dtype)
            partials.append(self._backward(self._group(x, xs), self._group(dy, fs),
                                           self.W[fs], g, dx_g))
            if self.groups > 1:
                dx[:, xs] = dx_g
        self._grad_cache = (input, output_grad, partials)
        return dx

    def _grad_input_as_conv(self, ph, pw):
        """Whether the input gradient of one group runs as a forward convolution."""
        kh, kw = self.kernel_size
        c, f = self.in_channels // self.groups, self.out_channels // self.groups
        return (self.stride == (1, 1) and ph <= kh - 1 and pw <= kw - 1
                and c >= self._FLIP_MIN_CHANNELS and f <= c * self._FLIP_MAX_RATIO)

    def _partial(self, n, k, f, group):
        # A fixed number of partial sums, whatever the thread count, keeps the
        # weight gradient bit-identical for any number of threads.
        groups = min(n, self._GRAD_GROUPS)
        return self._ws.get(f"partial{group}", (groups, k + (self.b is not None), f), self.dtype)

    def _backward(self, x, dy, W, group, dx=None):
        """Run the backward kernel on one group (``x``, ``dy`` and weight ``W`` of its
        channels): the partial sums of the parameter gradients, which it returns, and
        when ``dx`` is given the input gradient into it."""
        f, c, k = W.shape[0], W.shape[1], W[0].size
        kh, kw, sh, sw, ph, pw = self._geometry()
        ws_params = self._columns(x.shape, dy.shape[2:], f)
        want_dx = dx is not None
        as_conv = want_dx and self._grad_input_as_conv(ph, pw)
        if not want_dx:
            weight_dx, ws_dx = np.empty((0, 0), self.dtype), ws_params
            dx = np.empty((0, 0, 0, 0), self.dtype)
        elif as_conv:
            # dx is the stride-1 correlation of dy with the flipped, transposed kernel
            # (C, F, kh, kw), padded by k - 1 - p: one GEMM of depth F * kh * kw per
            # column block instead of a depth-F GEMM and a col2im scatter.
            weight_dx = self._ws.get("weight_t", (c, f * kh * kw), self.dtype)
            weight_dx.reshape(c, f, kh, kw)[...] = W.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1]
            ws_dx = self._columns(dy.shape, x.shape[2:], c, (kh - 1 - ph, kw - 1 - pw), "col_dx")
        else:
            weight_dx = W.reshape(f, k)
            ws_dx = self._columns(x.shape, dy.shape[2:], f, name="col_dx")
        partial = self._partial(x.shape[0], k, f, group)
        _conv.conv2d_backward(x, dy, weight_dx, dx, ws_dx, partial, ws_params,
                              kh, kw, sh, sw, ph, pw, self.b is not None, want_dx, as_conv,
                              get_num_threads(), kernel_blas_single_threaded())
        return partial

    def _update_parameters_grad(self, input, output_grad):
        cache, self._grad_cache = self._grad_cache, None
        # What the input-gradient hook kept for these objects (it checked them):
        # (x, dy) for the depthwise kernel, the partial sums per group otherwise.
        kept = cache[2] if cache is not None and cache[0] is input and cache[1] is output_grad \
            else None
        if self._depthwise():
            x, dy = kept if kept is not None else self._check_backward(input, output_grad)
            _depthwise.depthwise_backward_params(x, dy, self._planes(self.gradW),
                                                 self._part(self.gradb, slice(None)),
                                                 *self._geometry(), self.b is not None,
                                                 get_num_threads())
            return
        if kept is None:
            x, dy = self._check_backward(input, output_grad)
            kept = [self._backward(self._group(x, xs), self._group(dy, fs), self.W[fs], g)
                    for g, (xs, fs) in enumerate(self._group_slices())]
        for (_, fs), partial in zip(self._group_slices(), kept):
            grad_w = self.gradW[fs]
            _conv.conv2d_reduce_params(partial, grad_w.reshape(grad_w.shape[0], -1),
                                       self._part(self.gradb, fs), self.b is not None,
                                       get_num_threads())

    def _on_astype(self, dtype):
        self._ws.clear()
        self._grad_cache = None

    def __repr__(self):
        ks = self.kernel_size if self.kernel_size[0] != self.kernel_size[1] else self.kernel_size[0]
        st = self.stride if self.stride[0] != self.stride[1] else self.stride[0]
        pd = self.padding if self.padding[0] != self.padding[1] else self.padding[0]
        extra = "" if self.b is not None else ", bias=False"
        if self.groups > 1:
            extra += f", groups={self.groups}"
        return (f"Conv2d({self.in_channels} -> {self.out_channels}, kernel_size={ks}, "
                f"stride={st}, padding={pd}{extra})")
