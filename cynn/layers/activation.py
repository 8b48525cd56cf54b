"""Element-wise activations and the row-wise SoftMax / LogSoftMax.

Each layer keeps what its backward needs from forward (the output, or the input's
sign) and recomputes it when backward gets an input other than forward's.
"""
import numpy as np

from .._validation import as_float_array, check_ndim, finite_float
from ..module import Module
from ._base import check_grad_input


class _Activation(Module):
    """Shared input checks: any float array with a non-empty batch axis."""

    _ndims = (1, 2, 3, 4, 5)

    def __init__(self):
        super().__init__()
        self._saved = None

    def _check(self, input):
        owner = type(self).__name__
        x = as_float_array(input, owner)
        check_ndim(x, self._ndims, owner, "(N, ...)" if len(self._ndims) > 1 else "(N, C)")
        return x

    def _compute_output(self, input):
        x = self._check(input)
        y = self._apply(x)
        self._saved = (input, y)
        return y

    def _compute_input_grad(self, input, output_grad):
        x = self._check(input)
        dy = check_grad_input(self, x, output_grad, x.shape, x.dtype)
        if self._saved is not None and self._saved[0] is input:
            y = self._saved[1]
        else:
            y = self._apply(x)
        return self._grad(x, y, dy)

    def __repr__(self):
        return f"{type(self).__name__}()"


class ReLU(_Activation):
    """``max(x, 0)``; the gradient at 0 is taken as 0, as in PyTorch."""

    def _apply(self, x):
        return np.maximum(x, 0)

    def _grad(self, x, y, dy):
        return dy * (x > 0)


class LeakyReLU(_Activation):
    """``x`` for positive x, ``slope * x`` otherwise (PyTorch's ``negative_slope``)."""

    def __init__(self, slope=0.03):
        super().__init__()
        self.slope = finite_float(slope, "slope", "LeakyReLU")

    def _apply(self, x):
        return np.where(x > 0, x, x * x.dtype.type(self.slope))

    def _grad(self, x, y, dy):
        return dy * np.where(x > 0, x.dtype.type(1), x.dtype.type(self.slope))

    def __repr__(self):
        return f"LeakyReLU(slope={self.slope})"


class ELU(_Activation):
    """``x`` for positive x, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = finite_float(alpha, "alpha", "ELU")

    def _apply(self, x):
        # expm1 only of the non-positive part: no overflow for large positive x.
        return np.where(x > 0, x, x.dtype.type(self.alpha) * np.expm1(np.minimum(x, 0)))

    def _grad(self, x, y, dy):
        return dy * np.where(x > 0, x.dtype.type(1), x.dtype.type(self.alpha) * np.exp(np.minimum(x, 0)))

    def __repr__(self):
        return f"ELU(alpha={self.alpha})"


def _sigmoid(x):
    # 0.5 * (1 + tanh(x / 2)) is the logistic function without exp overflow.
    half = x.dtype.type(0.5)
    return half + half * np.tanh(half * x)


class SoftPlus(_Activation):
    """``log(1 + exp(x))``, computed as ``logaddexp(0, x)``; the gradient is sigmoid(x)."""

    def _apply(self, x):
        return np.logaddexp(x.dtype.type(0), x)

    def _grad(self, x, y, dy):
        return dy * _sigmoid(x)


class Sigmoid(_Activation):
    """``1 / (1 + exp(-x))``."""

    def _apply(self, x):
        return _sigmoid(x)

    def _grad(self, x, y, dy):
        return dy * y * (1 - y)


class Tanh(_Activation):
    """``tanh(x)``."""

    def _apply(self, x):
        return np.tanh(x)

    def _grad(self, x, y, dy):
        return dy * (1 - y * y)


class SoftMax(_Activation):
    """Row-wise ``exp(x) / sum(exp(x))`` over axis 1 of ``(N, C)`` input (row max
    subtracted first)."""

    _ndims = (2,)

    def _apply(self, x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    def _grad(self, x, y, dy):
        return y * (dy - np.sum(dy * y, axis=1, keepdims=True))


class LogSoftMax(_Activation):
    """Row-wise ``x - log(sum(exp(x)))`` over axis 1 of ``(N, C)`` input (row max
    subtracted first, so logits of 1e4 stay finite)."""

    _ndims = (2,)

    def _apply(self, x):
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def _grad(self, x, y, dy):
        return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)
