"""Dropout: inverted dropout, as in the seed."""
import numpy as np

from .._random import check_random_state, generator_for
from .._validation import as_float_array, check_ndim, finite_float
from ..module import Module, is_inference
from ._base import check_grad_input

__all__ = ["Dropout"]


class Dropout(Module):
    r"""Zero each element with probability ``p`` while training, scale the rest by
    ``1 / (1 - p)``; the identity in evaluation mode.

    Forward draws a fresh mask :math:`M` every call; backward is
    :math:`\nabla_X L = \nabla_{\hat X} L \odot M` with the mask of the last forward.

    Parameters
    ----------
    p : float in [0, 1), default 0.5
        Probability of an element to be zeroed.
    random_state : None, int or numpy.random.Generator
        ``None`` draws masks from the package generator (see `cynn.manual_seed`).

    Shape
    -----
    Any shape; output of the same shape.
    """

    _transient_attrs = Module._transient_attrs + ("mask",)

    def __init__(self, p=0.5, random_state=None):
        super().__init__()
        self.p = finite_float(p, "p", "Dropout", 0.0, 1.0, high_open=True)
        self._rng = check_random_state(random_state)
        self.mask = None

    def get_config(self):
        # A file does not carry a generator: a rebuilt Dropout draws its masks from
        # the package generator (cynn.manual_seed).
        return {"p": self.p}

    def _compute_output(self, input):
        x = as_float_array(input, "Dropout")
        check_ndim(x, (1, 2, 3, 4, 5), "Dropout", "with a batch axis")
        if not self.training or self.p == 0.0:
            if not is_inference():
                self.mask = None
            return x.copy()
        keep = generator_for(self._rng).random(x.shape, dtype=np.float64) >= self.p
        self.mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def _compute_input_grad(self, input, output_grad):
        x = as_float_array(input, "Dropout")
        dy = check_grad_input(self, output_grad, x.shape, x.dtype)
        if self.mask is None:
            return dy.copy()
        if self.mask.shape != dy.shape:
            raise ValueError(
                f"Dropout: output_grad shape {dy.shape} does not match the mask of the last "
                f"forward pass {self.mask.shape}; call forward first"
            )
        return dy * self.mask

    def __repr__(self):
        return f"Dropout(p={self.p})"
