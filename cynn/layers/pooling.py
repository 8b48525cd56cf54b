"""Pooling layers: MaxPool2d (Cython kernel, keeps argmax indices), AvgPool2d and
GlobalAvgPool2d (Cython kernel)."""
import numpy as np

from .._threads import get_num_threads
from .._validation import as_float_array, check_ndim, int_pair, window_output_size
from .._kernels import pooling as _pool
from ..module import Module, is_inference
from ._base import Workspaces, check_grad_input

__all__ = ["AvgPool2d", "GlobalAvgPool2d", "MaxPool2d"]


class _Pool2d(Module):
    """Argument and input checks shared by the 2-D pooling layers."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        owner = type(self).__name__
        self.kernel_size = int_pair(kernel_size, "kernel_size", owner)
        self.stride = self.kernel_size if stride is None else int_pair(stride, "stride", owner)
        self.padding = int_pair(padding, "padding", owner, allow_zero=True)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(
                f"{owner}: padding {self.padding} must be at most half of kernel_size "
                f"{self.kernel_size}"
            )
        self._saved = None
        self._ws = Workspaces()

    def _check_input(self, input):
        owner = type(self).__name__
        x = as_float_array(input, owner)
        check_ndim(x, (4,), owner, "(N, C, H, W)")
        return x, window_output_size(x.shape, self.kernel_size, self.stride, self.padding, owner)

    def _short(self, pair):
        return pair[0] if pair[0] == pair[1] else pair

    def __repr__(self):
        pad = f", padding={self._short(self.padding)}" if any(self.padding) else ""
        return (f"{type(self).__name__}(kernel_size={self._short(self.kernel_size)}, "
                f"stride={self._short(self.stride)}{pad})")


class MaxPool2d(_Pool2d):
    """Maximum over ``kernel_size`` windows, as PyTorch's ``MaxPool2d``.

    Padding is implicit negative infinity (it never wins); NaN propagates.  Forward
    keeps the index of each maximum; backward routes the gradient to it (to the first
    maximum in row-major window order when several are equal).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default ``kernel_size``
    padding : int or (int, int), default 0; at most half the kernel size

    Shape
    -----
    ``(N, C, H, W) -> (N, C, (H + 2p - k) // s + 1, (W + 2p - k) // s + 1)``
    """

    def _compute_output(self, input):
        x, (ho, wo) = self._check_input(input)
        if x.shape[2] * x.shape[3] > np.iinfo(np.int32).max:
            raise ValueError(f"MaxPool2d: an input plane of {x.shape[2]}x{x.shape[3]} has too "
                             f"many pixels for its int32 argmax indices")
        out = np.empty(x.shape[:2] + (ho, wo), dtype=x.dtype)
        # Only the last forward's indices are needed: reuse the array.
        argmax = self._ws.get("argmax", out.shape, np.int32)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        _pool.maxpool2d_forward(x, out, argmax, kh, kw, sh, sw, ph, pw, get_num_threads())
        if not is_inference():
            self._saved = (input, x.shape, x.dtype, argmax)
        return out

    def _compute_input_grad(self, input, output_grad):
        if self._saved is None or self._saved[0] is not input:
            self._compute_output(input)
        _, shape, dtype, argmax = self._saved
        dy = check_grad_input(self, output_grad, argmax.shape, dtype)
        dx = np.empty(shape, dtype=dtype)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        _pool.maxpool2d_backward(dy, argmax, dx, kh, kw, sh, sw, ph, pw, get_num_threads())
        return dx


class AvgPool2d(_Pool2d):
    """Mean over ``kernel_size`` windows, no padding (PyTorch's ``AvgPool2d`` with
    ``padding=0``).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), default ``kernel_size``

    Shape
    -----
    ``(N, C, H, W) -> (N, C, (H - k) // s + 1, (W - k) // s + 1)``
    """

    def __init__(self, kernel_size, stride=None):
        super().__init__(kernel_size, stride, 0)

    def _windows(self, x, out_hw):
        """Yield (i, j, view) where view[n, c, oh, ow] = x[n, c, oh*sh + i, ow*sw + j]."""
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        ho, wo = out_hw
        for i in range(kh):
            for j in range(kw):
                yield x[:, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]

    def _compute_output(self, input):
        x, out_hw = self._check_input(input)
        out = np.zeros(x.shape[:2] + out_hw, dtype=x.dtype)
        for view in self._windows(x, out_hw):
            out += view
        out *= 1.0 / (self.kernel_size[0] * self.kernel_size[1])
        return out

    def _compute_input_grad(self, input, output_grad):
        x, out_hw = self._check_input(input)
        dy = check_grad_input(self, output_grad, x.shape[:2] + out_hw, x.dtype)
        dy = dy * (1.0 / (self.kernel_size[0] * self.kernel_size[1]))
        dx = np.zeros(x.shape, dtype=x.dtype)
        for view in self._windows(dx, out_hw):
            view += dy
        return dx


class GlobalAvgPool2d(Module):
    """Mean over each whole plane: ``(N, C, H, W) -> (N, C)``, as PyTorch's
    ``nn.AdaptiveAvgPool2d(1)`` followed by ``flatten(1)``.

    The head of residual networks: it makes the classifier independent of the image
    size.  Sums run in double, also for float32 input.
    """

    def _check_input(self, input):
        x = as_float_array(input, "GlobalAvgPool2d")
        check_ndim(x, (4,), "GlobalAvgPool2d", "(N, C, H, W)")
        return x

    def _compute_output(self, input):
        x = self._check_input(input)
        out = np.empty(x.shape[:2], dtype=x.dtype)
        _pool.global_avgpool2d_forward(x, out, get_num_threads())
        return out

    def _compute_input_grad(self, input, output_grad):
        x = self._check_input(input)
        dy = check_grad_input(self, output_grad, x.shape[:2], x.dtype)
        dx = np.empty(x.shape, dtype=x.dtype)
        _pool.global_avgpool2d_backward(dy, dx, get_num_threads())
        return dx
