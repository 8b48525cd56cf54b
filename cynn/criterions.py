r"""Criterions: losses with the Module-like contract.

``forward(input, target)`` returns the loss as a Python float and
``backward(input, target)`` the gradient of that loss with respect to ``input``, in the
input's dtype.  Every loss is averaged over the batch: divided by N, the length of
axis 0.

Targets are either integer class labels of shape ``(N,)`` (any integer dtype, each in
``[0, C)``) or float rows of shape ``(N, C)`` (one-hot or class probabilities).

``sample_weight`` (``(N,)``, non-negative, not all 0) turns the mean into a weighted
mean, :math:`L = \sum_n w_n \ell_n / \sum_n w_n`: in one batch a weight of 2 counts
a sample exactly as showing it twice.
"""
import numpy as np

from ._validation import as_float_array, as_real_array, check_ndim, sample_weights
from .functional import log_softmax

__all__ = [
    "Criterion",
    "MSECriterion",
    "ClassNLLCriterionUnstable",
    "ClassNLLCriterion",
    "CrossEntropyCriterion",
]


class Criterion:
    """Base class of the losses; a subclass writes the two hooks.

    - ``_compute_output(input, target)`` returns the loss (a scalar);
    - ``_compute_input_grad(input, target)`` returns the gradient w.r.t. ``input``.
    """

    def __init__(self):
        self._output = None
        self._input_grad = None

    def forward(self, input, target, sample_weight=None):
        """The loss of ``input`` against ``target``, as a Python float; with
        ``sample_weight``, the weighted mean of the per-sample losses."""
        if sample_weight is None:
            self._output = float(self._compute_output(input, target))
        else:
            w = self._check_weights(sample_weight, input)
            losses = self._sample_losses(input, target)
            self._output = float(np.dot(w, losses) / w.sum())
        return self._output

    def backward(self, input, target, sample_weight=None):
        """The gradient of the loss with respect to ``input``, in the input's dtype."""
        grad = self._compute_input_grad(input, target)
        if sample_weight is not None:
            # The unweighted gradient's row n is (1/N) d l_n / d x_n; the weighted
            # loss's is (w_n / sum w) d l_n / d x_n.
            w = self._check_weights(sample_weight, input)
            scale = (w * (len(w) / w.sum())).astype(grad.dtype)
            grad = grad * scale.reshape((-1,) + (1,) * (grad.ndim - 1))
        self._input_grad = grad
        return self._input_grad

    def _sample_losses(self, input, target):
        """The per-sample losses ``l_n`` (float64, shape ``(N,)``) whose mean is the
        loss; needed for ``sample_weight``."""
        raise TypeError(f"{type(self).__name__} does not support sample_weight (it has no "
                        "_sample_losses)")

    def _check_weights(self, sample_weight, input):
        n = np.shape(input)[0] if np.ndim(input) else None
        return sample_weights(sample_weight, n, type(self).__name__)

    __call__ = forward

    def _compute_output(self, input, target):
        raise NotImplementedError(f"{type(self).__name__} does not implement _compute_output")

    def _compute_input_grad(self, input, target):
        raise NotImplementedError(
            f"{type(self).__name__} does not implement _compute_input_grad"
        )

    def __repr__(self):
        return f"{type(self).__name__}()"

    # -- shared checks ----------------------------------------------------------
    def _check_input(self, input, any_shape=False):
        """``input`` as a float array of shape ``(N, C)`` (or ``(N, *)``), N > 0."""
        owner = type(self).__name__
        x = as_float_array(input, owner)
        if any_shape:
            if x.ndim == 0:
                raise ValueError(f"{owner} expected input of shape (N, *) with a batch axis, "
                                 f"got a 0-d array")
            check_ndim(x, (x.ndim,), owner, "(N, *)")
        else:
            check_ndim(x, (2,), owner, "(N, C)")
        return x

    def _target_matrix(self, x, target):
        """``target`` as an array of ``x``'s shape and dtype: integer labels ``(N,)``
        against 2-D input become one-hot rows, anything else must match ``x``'s shape."""
        owner = type(self).__name__
        t = as_real_array(target, owner, name="target")
        if t.shape == x.shape:
            return t.astype(x.dtype, copy=False)
        if x.ndim == 2 and t.ndim == 1:
            if t.dtype.kind not in "iu":
                raise ValueError(
                    f"{owner}: target shape {t.shape} does not match input shape {x.shape}; "
                    f"class labels of shape ({x.shape[0]},) need an integer dtype, got {t.dtype}"
                )
            return _one_hot(t, x, owner)
        raise ValueError(f"{owner}: target shape {t.shape} does not match input shape {x.shape}"
                         + (f"; class labels must have shape ({x.shape[0]},)" if x.ndim == 2 else ""))


def _one_hot(labels, x, owner):
    """One-hot rows in ``x``'s dtype for integer ``labels``, after checking them."""
    n, n_classes = x.shape
    if labels.shape[0] != n:
        raise ValueError(f"{owner}: target shape {labels.shape} does not match input shape "
                         f"{x.shape}: {n} rows but {labels.shape[0]} labels")
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        raise ValueError(f"{owner}: label {int(labels[bad][0])} out of range [0, {n_classes}) "
                         f"for input of shape {x.shape}")
    onehot = np.zeros(x.shape, dtype=x.dtype)
    onehot[np.arange(n), labels] = 1
    return onehot


def _target_dot(t, values, axis=None):
    """``sum(t * values)`` in float64 (per row with ``axis=1``), where entries with
    ``t == 0`` count as 0 even when the value is -inf (the log-probability of an
    impossible class that is not the target)."""
    products = np.zeros(t.shape, dtype=np.float64)
    np.multiply(t, values, out=products, where=t != 0)
    return products.sum(axis=axis)


class MSECriterion(Criterion):
    r"""Squared error summed over all elements and divided by the batch size.

    .. math:: L = \frac{1}{N} \sum_{n,j} (x_{nj} - t_{nj})^2, \qquad
              \frac{\partial L}{\partial x} = \frac{2}{N} (x - t)

    This is the course's definition.  PyTorch's ``MSELoss()`` takes the mean over *all*
    elements instead; this loss equals ``MSELoss(reduction='sum')(x, t) / N``.

    Shape
    -----
    - Input: ``(N, *)``, any number of dimensions.
    - Target: the input's shape; or integer labels ``(N,)`` when the input is
      ``(N, C)``, which are one-hot encoded.
    - Output: a Python float.
    """

    def _compute_output(self, input, target):
        x = self._check_input(input, any_shape=True)
        diff = x.astype(np.float64) - self._target_matrix(x, target)
        return np.vdot(diff, diff) / x.shape[0]

    def _sample_losses(self, input, target):
        x = self._check_input(input, any_shape=True)
        diff = (x.astype(np.float64) - self._target_matrix(x, target)).reshape(len(x), -1)
        return np.einsum("ij,ij->i", diff, diff)

    def _compute_input_grad(self, input, target):
        x = self._check_input(input, any_shape=True)
        return (x - self._target_matrix(x, target)) * x.dtype.type(2.0 / x.shape[0])


class ClassNLLCriterionUnstable(Criterion):
    r"""Negative log-likelihood of class probabilities (e.g. `SoftMax` output).

    .. math:: L = -\frac{1}{N} \sum_{n,j} t_{nj} \log \tilde p_{nj}, \quad
              \tilde p = \mathrm{clip}(p, 10^{-15}, 1 - 10^{-15}); \qquad
              \frac{\partial L}{\partial p_{nj}} = -\frac{t_{nj}}{N \tilde p_{nj}}

    and 0 where ``p`` was clipped.  The clipping keeps the loss finite for
    probabilities that rounded to 0, but the logarithm of a probability loses the
    precision that `LogSoftMax` + `ClassNLLCriterion` (or `CrossEntropyCriterion`)
    keep: the course keeps this class to show why.  Equals PyTorch's
    ``NLLLoss()(log(clamp(p, 1e-15, 1 - 1e-15)), labels)``.

    Shape
    -----
    - Input: ``(N, C)`` probabilities.
    - Target: integer labels ``(N,)`` or one-hot / probability rows ``(N, C)``.
    - Output: a Python float.
    """

    EPS = 1e-15

    def _clipped(self, x):
        # In float64 whatever the input dtype: 1 - 1e-15 rounds to 1 in float32.
        return np.clip(x.astype(np.float64), self.EPS, 1 - self.EPS)

    def _compute_output(self, input, target):
        x = self._check_input(input)
        t = self._target_matrix(x, target)
        return -_target_dot(t, np.log(self._clipped(x))) / x.shape[0]

    def _sample_losses(self, input, target):
        x = self._check_input(input)
        return -_target_dot(self._target_matrix(x, target), np.log(self._clipped(x)), axis=1)

    def _compute_input_grad(self, input, target):
        x = self._check_input(input)
        t = self._target_matrix(x, target)
        grad = -t / self._clipped(x) / x.shape[0]
        # Where the clip is active the loss is flat in p (torch.clamp's gradient too).
        grad[(x < self.EPS) | (x > 1 - self.EPS)] = 0
        return grad.astype(x.dtype)


class ClassNLLCriterion(Criterion):
    r"""Negative log-likelihood of log-probabilities (`LogSoftMax` output).

    .. math:: L = -\frac{1}{N} \sum_{n,j} t_{nj} x_{nj}, \qquad
              \frac{\partial L}{\partial x} = -\frac{t}{N}

    With labels this picks ``-x[n, label_n]``, as PyTorch's ``NLLLoss()``.  A
    log-probability of ``-inf`` where the target is 0 does not matter.

    Shape
    -----
    - Input: ``(N, C)`` log-probabilities.
    - Target: integer labels ``(N,)`` or one-hot / probability rows ``(N, C)``.
    - Output: a Python float.
    """

    def _compute_output(self, input, target):
        x = self._check_input(input)
        return -_target_dot(self._target_matrix(x, target), x) / x.shape[0]

    def _sample_losses(self, input, target):
        x = self._check_input(input)
        return -_target_dot(self._target_matrix(x, target), x, axis=1)

    def _compute_input_grad(self, input, target):
        x = self._check_input(input)
        return self._target_matrix(x, target) / x.dtype.type(-x.shape[0])


class CrossEntropyCriterion(Criterion):
    r"""Cross-entropy of logits: log-softmax and negative log-likelihood in one step.

    .. math:: L = -\frac{1}{N} \sum_{n,j} t_{nj} \log \mathrm{softmax}(x)_{nj}, \qquad
              \frac{\partial L}{\partial x_{nj}} =
              \frac{1}{N}\Big(\mathrm{softmax}(x)_{nj} \sum_k t_{nk} - t_{nj}\Big)

    which is ``(softmax(x) - t) / N`` when each target row sums to 1 (labels, one-hot
    or probability rows).  The log-softmax subtracts the row maximum first, so logits
    of 1e4 give exact, finite losses and gradients.  Equals PyTorch's
    ``CrossEntropyLoss()``, which also accepts probability targets.

    Shape
    -----
    - Input: ``(N, C)`` logits.
    - Target: integer labels ``(N,)`` or one-hot / probability rows ``(N, C)``.
    - Output: a Python float.
    """

    def _compute_output(self, input, target):
        x = self._check_input(input)
        return -_target_dot(self._target_matrix(x, target), log_softmax(x)) / x.shape[0]

    def _sample_losses(self, input, target):
        x = self._check_input(input)
        return -_target_dot(self._target_matrix(x, target), log_softmax(x), axis=1)

    def _compute_input_grad(self, input, target):
        x = self._check_input(input)
        t = self._target_matrix(x, target)
        probs = np.exp(log_softmax(x))
        return (probs * t.sum(axis=1, keepdims=True) - t) / x.dtype.type(x.shape[0])
