"""BatchNormalization (Cython kernel) and ChannelwiseScaling, as split in the seed."""
import numpy as np

from .._random import check_random_state
from .._threads import get_num_threads
from .._validation import (as_float_array, check_dtype, check_ndim, finite_float,
                           positive_int)
from .._kernels import batchnorm as _bn
from ..module import Module
from ._base import Workspaces, check_grad_input, uniform_init

__all__ = ["BatchNormalization", "ChannelwiseScaling"]


def _as_channels_view(x):
    """(N, C) -> (N, C, 1) and (N, C, H, W) -> (N, C, H*W), without copying."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _work(workspaces, x):
    """The kernels' float64 workspace: 3 rows of per-channel values, and for images two
    more rows per sample for the per-plane sums."""
    rows = 3 if x.ndim == 2 else 3 + 2 * x.shape[0]
    return workspaces.get("work", (rows, x.shape[1]), np.float64)


class BatchNormalization(Module):
    r"""Normalize each channel with batch statistics (training) or moving ones (evaluation).

    .. math:: y = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}

    with :math:`\mu, \sigma^2` the mean and *biased* variance over the batch (and the
    spatial axes for images).  In training mode the moving statistics follow the seed:

    ``moving = moving * alpha + batch * (1 - alpha)``

    There are no learnable parameters: follow the layer with `ChannelwiseScaling`.

    Parameters
    ----------
    alpha : float in [0, 1], default 0.0
        Weight of the old moving value.  PyTorch's ``momentum`` is ``1 - alpha``.
    eps : float > 0, default 1e-3
    n_features : int, optional
        Number of channels.  When omitted (the seed's signature) the moving
        statistics are allocated on the first forward pass, from the input's channels.
    dtype : float32 or float64, default float32

    Shape
    -----
    ``(N, C)`` or ``(N, C, H, W)``, output of the same shape.

    Notes
    -----
    Differences from PyTorch's ``BatchNorm1d/2d(affine=False)``: the moving variance
    is updated with the biased batch variance (PyTorch uses the unbiased one), and
    before any training the moving statistics are 0 and 1 as in the seed.  In
    evaluation mode backward treats the moving statistics as constants
    (``dx = dy / sqrt(moving_variance + eps)``); the seed used batch statistics there.
    """

    _buffer_names = ("moving_mean", "moving_variance")

    def __init__(self, alpha=0.0, eps=1e-3, n_features=None, dtype=np.float32):
        super().__init__()
        owner = "BatchNormalization"
        self.alpha = finite_float(alpha, "alpha", owner, 0.0, 1.0)
        self.eps = finite_float(eps, "eps", owner, 0.0, None, low_open=True)
        self.dtype = check_dtype(dtype, owner)
        self.n_features = None
        self.moving_mean = self.moving_variance = None
        if n_features is not None:
            self._allocate(positive_int(n_features, "n_features", owner))
        self._saved = None
        self._ws = Workspaces()

    def get_config(self):
        return {"alpha": self.alpha, "eps": self.eps, "n_features": self.n_features,
                "dtype": self.dtype.name}

    # Kept for code written against the seed, which spelled it in capitals.
    @property
    def EPS(self):
        return self.eps

    def _allocate(self, channels):
        # moving_mean is what callers test for, so it is assigned last: a thread that
        # sees it set finds the other two set as well.
        self.n_features = channels
        self.moving_variance = np.ones(channels, dtype=self.dtype)
        self.moving_mean = np.zeros(channels, dtype=self.dtype)

    def _lazy_buffer_names(self):
        return [] if self.moving_mean is not None else list(self._buffer_names)

    def _load_lazy(self, name, value):
        value = np.asarray(value)
        if value.ndim != 1 or value.size == 0:
            raise ValueError(f"BatchNormalization: {name} must be a 1-D array, got shape {value.shape}")
        if self.moving_mean is None:
            self._allocate(value.shape[0])
        live = getattr(self, name)
        if live.shape != value.shape:
            raise ValueError(f"shape mismatch for {name!r}: model has {live.shape}, state has {value.shape}")
        np.copyto(live, value, casting="unsafe")

    def _check_input(self, input):
        x = as_float_array(input, "BatchNormalization", self.dtype)
        check_ndim(x, (2, 4), "BatchNormalization", "(N, C) or (N, C, H, W)")
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise ValueError(
                f"BatchNormalization expected input with {self.n_features} channels, "
                f"got shape {x.shape}"
            )
        return x

    def _work(self, x):
        return _work(self._ws, x)

    def _moving_invstd(self):
        return (1.0 / np.sqrt(self.moving_variance.astype(np.float64) + self.eps)).astype(self.dtype)

    def _update_moving(self, mean, var):
        """The seed's moving averages, after a training batch's statistics."""
        a = self.alpha
        self.moving_mean *= a
        self.moving_mean += (1 - a) * mean
        self.moving_variance *= a
        self.moving_variance += (1 - a) * var

    def _compute_output(self, input):
        x = self._check_input(input)
        if self.moving_mean is None:
            self._allocate(x.shape[1])
        y = np.empty_like(x)
        channels = x.shape[1]
        if self.training:
            mean = np.empty(channels, self.dtype)
            var = np.empty(channels, self.dtype)
            invstd = np.empty(channels, self.dtype)
            _bn.batchnorm_forward_train(_as_channels_view(x), _as_channels_view(y),
                                        mean, var, invstd, self._work(x), self.eps,
                                        get_num_threads())
            self._update_moving(mean, var)
            self._saved = (input, mean, invstd)
        else:
            _bn.batchnorm_forward_eval(_as_channels_view(x), _as_channels_view(y),
                                       self.moving_mean, self._moving_invstd(), get_num_threads())
        return y

    def _compute_input_grad(self, input, output_grad):
        x = self._check_input(input)
        if self.moving_mean is None:
            self._allocate(x.shape[1])
        dy = check_grad_input(self, output_grad, x.shape, self.dtype)
        dx = np.empty_like(x)
        if self.training:
            if self._saved is not None and self._saved[0] is input:
                _, mean, invstd = self._saved
            else:
                # backward without the matching forward: recompute the batch
                # statistics, leaving the moving ones alone.
                mean = np.empty(x.shape[1], self.dtype)
                var = np.empty(x.shape[1], self.dtype)
                invstd = np.empty(x.shape[1], self.dtype)
                _bn.batchnorm_forward_train(_as_channels_view(x), _as_channels_view(np.empty_like(x)),
                                            mean, var, invstd, self._work(x), self.eps,
                                            get_num_threads())
            _bn.batchnorm_backward_train(_as_channels_view(x), _as_channels_view(dy), mean,
                                         invstd, _as_channels_view(dx), self._work(x),
                                         get_num_threads())
        else:
            _bn.batchnorm_backward_eval(_as_channels_view(dy), self._moving_invstd(),
                                        _as_channels_view(dx), get_num_threads())
        return dx

    def __repr__(self):
        n = f", n_features={self.n_features}" if self.n_features is not None else ""
        return f"BatchNormalization(alpha={self.alpha}, eps={self.eps}{n})"


class ChannelwiseScaling(Module):
    r"""Per-channel affine transform :math:`y = \gamma_c x + \beta_c` (the learnable half
    of batch normalization in the seed's decomposition).

    Parameters
    ----------
    n_out : int
        Number of channels (features for ``(N, C)`` input).
    dtype : float32 or float64, default float32
    random_state : None, int or numpy.random.Generator

    Notes
    -----
    As in the seed, ``gamma`` and ``beta`` start ``U(-1/sqrt(n_out), 1/sqrt(n_out))``;
    PyTorch's affine batch norm starts at gamma = 1, beta = 0.

    Shape
    -----
    ``(N, C)`` or ``(N, C, H, W)``, output of the same shape.
    """

    _parameter_names = ("gamma", "beta")
    _grad_names = ("gradGamma", "gradBeta")

    def __init__(self, n_out, dtype=np.float32, random_state=None):
        super().__init__()
        owner = "ChannelwiseScaling"
        self.n_out = positive_int(n_out, "n_out", owner)
        self.dtype = check_dtype(dtype, owner)
        rng = check_random_state(random_state)
        bound = 1.0 / np.sqrt(self.n_out)
        self.gamma = uniform_init(rng, bound, (self.n_out,), self.dtype)
        self.beta = uniform_init(rng, bound, (self.n_out,), self.dtype)
        self.gradGamma = np.zeros_like(self.gamma)
        self.gradBeta = np.zeros_like(self.beta)
        self._ws = Workspaces()
        self._grad_cache = None

    def get_config(self):
        return {"n_out": self.n_out, "dtype": self.dtype.name}

    def _check_input(self, input):
        x = as_float_array(input, "ChannelwiseScaling", self.dtype)
        check_ndim(x, (2, 4), "ChannelwiseScaling", "(N, C) or (N, C, H, W)")
        if x.shape[1] != self.n_out:
            raise ValueError(
                f"ChannelwiseScaling expected input with {self.n_out} channels, got shape {x.shape}"
            )
        return x

    def _compute_output(self, input):
        x = self._check_input(input)
        y = np.empty_like(x)
        _bn.scale_forward(_as_channels_view(x), self.gamma, self.beta, _as_channels_view(y),
                          get_num_threads())
        return y

    def _compute_input_grad(self, input, output_grad):
        x = self._check_input(input)
        dy = check_grad_input(self, output_grad, x.shape, self.dtype)
        dx = np.empty_like(x)
        # One sweep gives dx and both parameter gradients; backward calls the
        # parameter hook next with the same objects and takes them from here.
        grad_gamma = np.zeros_like(self.gamma)
        grad_beta = np.zeros_like(self.beta)
        _bn.scale_backward(_as_channels_view(x), _as_channels_view(dy), self.gamma,
                           _as_channels_view(dx), grad_gamma, grad_beta,
                           _work(self._ws, x), get_num_threads())
        self._grad_cache = (input, output_grad, grad_gamma, grad_beta)
        return dx

    def _update_parameters_grad(self, input, output_grad):
        cache, self._grad_cache = self._grad_cache, None
        if cache is not None and cache[0] is input and cache[1] is output_grad:
            grad_gamma, grad_beta = cache[2], cache[3]
        else:
            x = self._check_input(input)
            dy = check_grad_input(self, output_grad, x.shape, self.dtype)
            grad_gamma = np.zeros_like(self.gamma)
            grad_beta = np.zeros_like(self.beta)
            _bn.scale_backward(_as_channels_view(x), _as_channels_view(dy), self.gamma,
                               _as_channels_view(np.empty_like(x)), grad_gamma, grad_beta,
                               _work(self._ws, x),
                               get_num_threads())
        self.gradGamma += grad_gamma
        self.gradBeta += grad_beta

    def __repr__(self):
        return f"ChannelwiseScaling({self.n_out})"
