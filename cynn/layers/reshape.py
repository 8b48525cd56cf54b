"""Flatten: (N, ...) -> (N, prod(...)), the bridge from convolutions to Linear."""
from .._validation import as_float_array, check_ndim
from ..module import Module
from ._base import check_grad_input

__all__ = ["Flatten"]


class Flatten(Module):
    """Flatten every axis but the first.

    Shape
    -----
    ``(N, d1, d2, ...) -> (N, d1 * d2 * ...)``
    """

    def _compute_output(self, input):
        x = as_float_array(input, "Flatten")
        check_ndim(x, (2, 3, 4, 5), "Flatten", "(N, ...)")
        return x.reshape(x.shape[0], -1)

    def _compute_input_grad(self, input, output_grad):
        x = as_float_array(input, "Flatten")
        dy = check_grad_input(self, output_grad, (x.shape[0], x[0].size), x.dtype)
        return dy.reshape(x.shape)

    def __repr__(self):
        return "Flatten()"
