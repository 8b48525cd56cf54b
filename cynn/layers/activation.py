"""Activations: element-wise ones, and SoftMax / LogSoftMax over the rows of ``(N, C)``.

None of them has parameters.  Forward keeps its input object and its output in
``self._saved``; backward reads the output from there when it gets that same input
object, and recomputes it otherwise (so ``forward(a); forward(b); backward(a, g)`` is
still right).  Do not modify a forward output in place before the backward pass: the
backward pass of Sigmoid, Tanh, ELU, SoftPlus, SoftMax and LogSoftMax reads it.
"""
import numpy as np

from .._kernels import activation as _act
from .._threads import get_num_threads
from ..functional import log_softmax, softmax
from .._validation import as_float_array, check_ndim, check_same_shape, finite_float
from ..module import Module, is_inference

__all__ = ["ReLU", "LeakyReLU", "ELU", "SoftPlus", "Sigmoid", "Tanh", "SoftMax", "LogSoftMax"]


class _Activation(Module):
    """Shared machinery: input checks, keeping the output, the output_grad check.

    A subclass writes ``_apply(x) -> y`` and ``_grad(x, y, dy) -> dx``, both on arrays
    already converted to one float dtype.
    """

    # None: any shape with a batch axis; a tuple: the allowed ndims.
    _ndims = None
    _shape_name = "(N, *)"
    def __init__(self):
        super().__init__()
        self._saved = None  # (the input object forward got, the output it returned)
        self._arguments = ()

    def _set_arguments(self, **arguments):
        """The layer's real-valued constructor arguments (any finite number), stored
        as attributes and shown by __repr__."""
        for name, value in arguments.items():
            setattr(self, name, finite_float(value, name, type(self).__name__))
        self._arguments = tuple(arguments)

    def _check_input(self, input):
        owner = type(self).__name__
        x = as_float_array(input, owner)
        if self._ndims is None and x.ndim == 0:
            raise ValueError(f"{owner} expected input of shape (N, *) with a batch axis, "
                             f"got a 0-d array")
        check_ndim(x, self._ndims or (x.ndim,), owner, self._shape_name)
        return x

    def _compute_output(self, input):
        x = self._check_input(input)
        y = self._apply(x)
        if not is_inference():
            self._saved = (input, y)
        return y

    def _compute_input_grad(self, input, output_grad):
        owner = type(self).__name__
        x = self._check_input(input)
        dy = as_float_array(output_grad, owner, x.dtype, name="output_grad")
        check_same_shape(dy, x.shape, owner)
        if self._saved is not None and self._saved[0] is input:
            y = self._saved[1]
        else:
            y = self._apply(x)
        return self._grad(x, y, dy)

    def __repr__(self):
        args = ", ".join(f"{name}={getattr(self, name)}" for name in self._arguments)
        return f"{type(self).__name__}({args})"


class ReLU(_Activation):
    r"""Rectified linear unit, element-wise.

    .. math:: y = \max(x, 0), \qquad \frac{\partial y}{\partial x} = [x > 0]

    The gradient at exactly 0 is taken as 0, as in PyTorch.

    Shape
    -----
    - Input: ``(N, *)``, any number of dimensions.
    - Output: same shape and dtype as the input.
    """

    def _apply(self, x):
        # A Cython select loop: np.maximum runs at a quarter of memory speed here.
        y = np.empty_like(x)
        _act.relu_forward(x.reshape(-1), y.reshape(-1), get_num_threads())
        return y

    def _grad(self, x, y, dy):
        dx = np.empty_like(x)
        _act.relu_backward(x.reshape(-1), dy.reshape(-1), dx.reshape(-1), get_num_threads())
        return dx


class LeakyReLU(_Activation):
    r"""Leaky rectified linear unit, element-wise.

    .. math:: y = \begin{cases} x & x > 0 \\ \mathrm{slope} \cdot x & x \le 0 \end{cases}

    PyTorch calls ``slope`` ``negative_slope`` (its default is 0.01; cynn's is 0.03).

    Parameters
    ----------
    slope : float, default 0.03
        Slope for non-positive inputs; any finite number.

    Shape
    -----
    - Input: ``(N, *)``, any number of dimensions.
    - Output: same shape and dtype as the input.
    """

    def __init__(self, slope=0.03):
        super().__init__()
        self._set_arguments(slope=slope)

    # Branch-free forms, which vectorize; both are exact: x + 0 and 0 + slope * x.
    def _apply(self, x):
        return np.maximum(x, 0) + x.dtype.type(self.slope) * np.minimum(x, 0)

    def _grad(self, x, y, dy):
        positive = x > 0
        return dy * positive + (dy * dy.dtype.type(self.slope)) * ~positive


class ELU(_Activation):
    r"""Exponential linear unit, element-wise.

    .. math:: y = \begin{cases} x & x > 0 \\ \alpha\,(e^{x} - 1) & x \le 0 \end{cases},
              \qquad \frac{\partial y}{\partial x} = \begin{cases} 1 & x > 0 \\
              y + \alpha & x \le 0 \end{cases}

    Parameters
    ----------
    alpha : float, default 1.0
        Scale of the negative part; any finite number.

    Shape
    -----
    - Input: ``(N, *)``, any number of dimensions.
    - Output: same shape and dtype as the input.
    """

    def __init__(self, alpha=1.0):
        super().__init__()
        self._set_arguments(alpha=alpha)

    def _apply(self, x):
        # The exponential only sees the non-positive part, so large positive inputs
        # cannot overflow it.
        negative = x.dtype.type(self.alpha) * np.expm1(np.minimum(x, x.dtype.type(0)))
        return np.where(x > 0, x, negative)

    def _grad(self, x, y, dy):
        # alpha * e^x == y + alpha on the negative side: reuse the output.
        return np.where(x > 0, dy, dy * (y + y.dtype.type(self.alpha)))


def _sigmoid(x):
    """The logistic function without overflow: both branches only exponentiate -|x|."""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, x.dtype.type(1), z) / (1 + z)


class SoftPlus(_Activation):
    r"""Smooth approximation of ReLU, element-wise.

    .. math:: y = \log(1 + e^{x}) = \max(x, 0) + \log(1 + e^{-|x|}), \qquad
              \frac{\partial y}{\partial x} = \sigma(x) = 1 - e^{-y}

    The second form is exact and never overflows, for inputs of any size.  PyTorch's
    ``Softplus`` returns ``x`` itself above ``threshold=20``; the two differ by less
    than ``2e-9`` there.

    Shape
    -----
    - Input: ``(N, *)``, any number of dimensions.
    - Output: same shape and dtype as the input.
    """

    def _apply(self, x):
        return np.maximum(x, x.dtype.type(0)) + np.log1p(np.exp(-np.abs(x)))

    def _grad(self, x, y, dy):
        # sigmoid(x) = 1 - 1 / (1 + e^x) = 1 - e^{-y}; expm1 keeps it exact for tiny y.
        return dy * -np.expm1(-y)


class Sigmoid(_Activation):
    r"""Logistic function, element-wise.

    .. math:: y = \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad
              \frac{\partial y}{\partial x} = y\,(1 - y)

    Computed as ``1 / (1 + e^{-x})`` for ``x >= 0`` and ``e^{x} / (1 + e^{x})`` for
    ``x < 0``, so no exponential overflows and both tails keep full relative precision.

    Shape
    -----
    - Input: ``(N, *)``, any number of dimensions.
    - Output: same shape and dtype as the input.
    """

    def _apply(self, x):
        return _sigmoid(x)

    def _grad(self, x, y, dy):
        return dy * y * (1 - y)


class Tanh(_Activation):
    r"""Hyperbolic tangent, element-wise.

    .. math:: y = \tanh(x), \qquad \frac{\partial y}{\partial x} = 1 - y^2

    Shape
    -----
    - Input: ``(N, *)``, any number of dimensions.
    - Output: same shape and dtype as the input.
    """

    def _apply(self, x):
        return np.tanh(x)

    def _grad(self, x, y, dy):
        return dy * (1 - y * y)


class SoftMax(_Activation):
    r"""Softmax over the classes (axis 1) of each row.

    .. math:: y_{nj} = \frac{e^{x_{nj} - m_n}}{\sum_k e^{x_{nk} - m_n}}, \quad
              m_n = \max_k x_{nk}; \qquad
              \frac{\partial L}{\partial x_{nj}} = y_{nj}\Big(g_{nj} - \sum_k g_{nk} y_{nk}\Big)

    where ``g`` is the output gradient.  Subtracting the row maximum changes nothing
    mathematically and keeps every exponent <= 0.  As PyTorch's ``Softmax(dim=1)``.

    Shape
    -----
    - Input: ``(N, C)``.
    - Output: ``(N, C)``, same dtype; each row sums to 1.
    """

    _ndims = (2,)
    _shape_name = "(N, C)"

    def _apply(self, x):
        return softmax(x)

    def _grad(self, x, y, dy):
        # In double, then rounded once: g - sum(g * y) cancels, and float32 rounding
        # of the sum and of the difference would each add to the error.
        y64, dy64 = y.astype(np.float64), dy.astype(np.float64)
        return (y64 * (dy64 - np.sum(dy64 * y64, axis=1, keepdims=True))).astype(y.dtype)


class LogSoftMax(_Activation):
    r"""Logarithm of the softmax over the classes (axis 1) of each row.

    .. math:: y_{nj} = x_{nj} - m_n - \log\sum_k e^{x_{nk} - m_n}, \quad
              m_n = \max_k x_{nk}; \qquad
              \frac{\partial L}{\partial x_{nj}} = g_{nj} - e^{y_{nj}} \sum_k g_{nk}

    where ``g`` is the output gradient.  With the row maximum subtracted, logits of
    1e4 (or any finite size) give finite, exact log-probabilities.  As PyTorch's
    ``LogSoftmax(dim=1)``; feed the output to `ClassNLLCriterion`.

    Shape
    -----
    - Input: ``(N, C)``.
    - Output: ``(N, C)``, same dtype.
    """

    _ndims = (2,)
    _shape_name = "(N, C)"

    def _apply(self, x):
        return log_softmax(x)

    def _grad(self, x, y, dy):
        return dy - np.exp(y) * dy.sum(axis=1, keepdims=True)
