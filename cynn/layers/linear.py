"""Linear: a fully connected layer, y = x W^T + b (NumPy matmul goes to BLAS)."""
import numpy as np

from .._kernels import dense as _dense
from .._random import check_random_state
from .._threads import get_num_threads, kernel_blas_single_threaded
from .._validation import as_float_array, check_dtype, check_ndim, positive_int
from ..module import Module
from ._base import check_grad_input, init_weight_and_bias

__all__ = ["Linear"]


class Linear(Module):
    r"""Fully connected layer :math:`y = x W^T + b`.

    Parameters
    ----------
    n_in, n_out : int
    bias : bool, default True
    dtype : float32 or float64, default float32
    random_state : None, int or numpy.random.Generator

    Attributes
    ----------
    W : ndarray (n_out, n_in)
    b : ndarray (n_out,), absent when ``bias=False``
    gradW, gradb : accumulated gradients

    Shape
    -----
    ``(N, n_in) -> (N, n_out)``

    Notes
    -----
    ``W, b ~ U(-1/sqrt(n_in), 1/sqrt(n_in))``, as in the course and in PyTorch.
    Gradients: ``dx = dy W``, ``dW += dy^T x``, ``db += sum_n dy``.
    """

    def __init__(self, n_in, n_out, bias=True, dtype=np.float32, random_state=None):
        super().__init__()
        owner = "Linear"
        self.n_in = positive_int(n_in, "n_in", owner)
        self.n_out = positive_int(n_out, "n_out", owner)
        self.dtype = check_dtype(dtype, owner)
        rng = check_random_state(random_state)
        bound = 1.0 / np.sqrt(self.n_in)
        init_weight_and_bias(self, rng, bound, (self.n_out, self.n_in), bias)

    def get_config(self):
        return {"n_in": self.n_in, "n_out": self.n_out, "bias": self.b is not None,
                "dtype": self.dtype.name}

    def _check_input(self, input):
        x = as_float_array(input, "Linear", self.dtype)
        check_ndim(x, (2,), "Linear", "(N, n_in)")
        if x.shape[1] != self.n_in:
            raise ValueError(f"Linear expected input with {self.n_in} features, got shape {x.shape}")
        return x

    # The products run on cynn's kernel thread pool rather than NumPy's BLAS threads
    # (see cynn/_kernels/dense.pyx for why).
    def _matmul(self, a, b, out, trans_a, trans_b, beta):
        _dense.matmul(a, b, out, trans_a, trans_b, beta, get_num_threads(),
                      kernel_blas_single_threaded())
        return out

    def _compute_output(self, input):
        # One kernel call for input as _check_input would take it as is (dense.h's
        # sums, bias added after them); anything else through the checks.
        out = _dense.linear_step(input, self.W, self.b, False, False, get_num_threads())
        if out is not None:
            return out
        x = self._check_input(input)
        out = np.empty((x.shape[0], self.n_out), self.dtype)
        # Not the BLAS: each output is the same sum whatever the batch size, so that a
        # sample's prediction does not depend on the batch it comes in, and one row
        # does not pay for packing all of W (dense.h).
        _dense.linear_forward(x, self.W, out, get_num_threads())
        if self.b is not None:
            out += self.b
        return out

    def _compute_input_grad(self, input, output_grad):
        x = self._check_input(input)
        dy = check_grad_input(self, output_grad, (x.shape[0], self.n_out), self.dtype)
        return self._matmul(dy, self.W, np.empty(x.shape, self.dtype), False, False, 0)

    def _update_parameters_grad(self, input, output_grad):
        x = self._check_input(input)
        dy = check_grad_input(self, output_grad, (x.shape[0], self.n_out), self.dtype)
        self._matmul(dy, x, self.gradW, True, False, 1)
        if self.b is not None:
            self.gradb += dy.sum(axis=0)

    def __repr__(self):
        extra = "" if self.b is not None else ", bias=False"
        return f"Linear({self.n_in} -> {self.n_out}{extra})"
