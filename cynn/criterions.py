"""Criterions: losses with the Module-like contract.

``forward(input, target)`` returns the loss as a Python float and
``backward(input, target)`` the gradient with respect to ``input``.  Targets are
integer class labels ``(N,)`` or one-hot / probability rows ``(N, C)``.
"""
import numpy as np

from ._validation import as_float_array


class Criterion:
    """Base class: subclasses write ``_compute_output`` and ``_compute_input_grad``."""

    def __init__(self):
        self._output = None
        self._input_grad = None

    def forward(self, input, target):
        """The loss for ``input`` against ``target``, as a float."""
        self._output = float(self._compute_output(input, target))
        return self._output

    def backward(self, input, target):
        """The gradient of the loss with respect to ``input``."""
        self._input_grad = self._compute_input_grad(input, target)
        return self._input_grad

    __call__ = forward

    def _compute_output(self, input, target):
        raise NotImplementedError

    def _compute_input_grad(self, input, target):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"

    # -- shared checks -------------------------------------------------------------
    def _input(self, input, ndims=(2,)):
        owner = type(self).__name__
        x = as_float_array(input, owner)
        if x.ndim not in ndims:
            raise ValueError(f"{owner} expected {' or '.join(map(str, ndims))}-D input, got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"{owner} got an empty batch (shape {x.shape})")
        return x

    def _target_matrix(self, x, target):
        """Targets as an (N, C) array in x's dtype: labels become one-hot rows."""
        owner = type(self).__name__
        t = np.asarray(target)
        if t.dtype.kind not in "biuf":
            raise TypeError(f"{owner} expected numeric targets, got dtype {t.dtype}")
        if t.ndim == 1 and x.ndim == 2:
            if t.dtype.kind == "f":
                if not np.all(np.mod(t, 1) == 0):
                    raise ValueError(f"{owner}: 1-D targets must be integer class labels")
                t = t.astype(np.int64)
            if t.shape[0] != x.shape[0]:
                raise ValueError(f"{owner}: input has {x.shape[0]} rows but target has {t.shape[0]} labels")
            n_classes = x.shape[1]
            bad = (t < 0) | (t >= n_classes)
            if bad.any():
                raise ValueError(f"{owner}: label {int(t[bad][0])} out of range for {n_classes} classes "
                                 f"(input shape {x.shape})")
            onehot = np.zeros(x.shape, dtype=x.dtype)
            onehot[np.arange(x.shape[0]), t] = 1
            return onehot
        if t.shape != x.shape:
            raise ValueError(f"{owner}: target shape {t.shape} does not match input shape {x.shape}")
        return t.astype(x.dtype, copy=False)


class MSECriterion(Criterion):
    r"""Sum of squared errors divided by the batch size N:
    :math:`L = \frac{1}{N}\sum_{n,j} (x_{nj} - t_{nj})^2`.

    This is the course's definition.  PyTorch's ``MSELoss()`` takes the mean over all
    elements; ``MSELoss(reduction='sum') / N`` equals this loss.  Integer labels
    ``(N,)`` with 2-D input are one-hot encoded.
    """

    def _compute_output(self, input, target):
        x = self._input(input, ndims=(1, 2, 3, 4))
        diff = x - self._target_matrix(x, target)
        return np.sum(diff.astype(np.float64) ** 2) / x.shape[0]

    def _compute_input_grad(self, input, target):
        x = self._input(input, ndims=(1, 2, 3, 4))
        return (x - self._target_matrix(x, target)) * x.dtype.type(2.0 / x.shape[0])


class ClassNLLCriterionUnstable(Criterion):
    r"""Negative log-likelihood of probabilities (e.g. SoftMax output), clipped to
    [1e-15, 1 - 1e-15]: :math:`L = -\frac{1}{N}\sum t \log p`.

    Kept from the course to show why `ClassNLLCriterion` on log-probabilities is preferred.
    """

    EPS = 1e-15

    def _clipped(self, x):
        return np.clip(x, self.EPS, 1 - self.EPS)

    def _compute_output(self, input, target):
        x = self._input(input)
        t = self._target_matrix(x, target)
        return -np.sum(t * np.log(self._clipped(x.astype(np.float64)))) / x.shape[0]

    def _compute_input_grad(self, input, target):
        x = self._input(input)
        t = self._target_matrix(x, target)
        grad = -t / self._clipped(x.astype(np.float64)) / x.shape[0]
        # The clipped region is flat: no gradient flows there.
        grad[(x < self.EPS) | (x > 1 - self.EPS)] = 0
        return grad.astype(x.dtype)


class ClassNLLCriterion(Criterion):
    r"""Negative log-likelihood of log-probabilities (LogSoftMax output):
    :math:`L = -\frac{1}{N}\sum t \cdot x`, as PyTorch's ``NLLLoss``."""

    def _compute_output(self, input, target):
        x = self._input(input)
        return -np.sum(self._target_matrix(x, target) * x, dtype=np.float64) / x.shape[0]

    def _compute_input_grad(self, input, target):
        x = self._input(input)
        return -self._target_matrix(x, target) / x.dtype.type(x.shape[0])


class CrossEntropyCriterion(Criterion):
    r"""Cross-entropy of logits: log-softmax fused with NLL, as PyTorch's
    ``CrossEntropyLoss``.  Stable for logits of 1e4; the gradient is
    :math:`(\mathrm{softmax}(x) - t) / N`."""

    def _log_softmax(self, x):
        shifted = x - x.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def _compute_output(self, input, target):
        x = self._input(input)
        t = self._target_matrix(x, target)
        return -np.sum(t * self._log_softmax(x), dtype=np.float64) / x.shape[0]

    def _compute_input_grad(self, input, target):
        x = self._input(input)
        t = self._target_matrix(x, target)
        # For probability targets the rows of t may not sum to one: d/dx of
        # -sum t log softmax(x) is softmax(x) * sum(t) - t.
        p = np.exp(self._log_softmax(x))
        return (p * t.sum(axis=1, keepdims=True) - t) / x.dtype.type(x.shape[0])
