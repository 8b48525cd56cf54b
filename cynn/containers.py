"""Containers beyond a straight chain: Residual, Concat and Identity.

They are Modules like any other (the three hooks of the contract): their children are
listed by `children()`, so parameters, gradients, ``state_dict`` keys (by position:
``"0.W"`` is the first child's weight), ``train``/``evaluate``, ``astype``, copies and
pickles all recurse through them, to any depth.  `Sequential` lives in `cynn.module`.
"""
import numpy as np

from .module import Module, check_same_input, indented, is_inference

__all__ = ["Residual", "Concat", "Identity"]


def _as_module(value, owner, what):
    if not isinstance(value, Module):
        raise TypeError(f"{owner} expects a Module as {what}, got {type(value).__name__}")
    return value


def _distinct(owner, children):
    """One module object in two places of a container would list its parameters twice
    (an optimizer would step them twice) and its second forward would overwrite what
    the first one's backward needs: refuse it."""
    seen = set()
    for child in children:
        if id(child) in seen:
            raise ValueError(f"{owner}: the same module object {child!r} appears twice; give "
                             "each place its own module (copy.deepcopy for equal weights)")
        seen.add(id(child))


class Identity(Module):
    """Returns its input unchanged (the same array, or the input as an array), and the
    output gradient as the input gradient.  A placeholder where a layer is optional, as
    PyTorch's ``nn.Identity``."""

    def _compute_output(self, input):
        return np.asarray(input)

    def _compute_input_grad(self, input, output_grad):
        return output_grad


class Residual(Module):
    r"""``y = body(x) + shortcut(x)``: the building block of residual networks.

    .. math:: \frac{\partial L}{\partial x} = \frac{\partial L}{\partial x}\Big|_{body}
              + \frac{\partial L}{\partial x}\Big|_{shortcut}

    ``backward`` sends ``output_grad`` through both branches and adds their input
    gradients.

    Parameters
    ----------
    body : Module
    shortcut : Module or None, default None
        None is the identity; where the body changes the shape, a projection such as
        ``Sequential(Conv2d(c_in, c_out, 1, stride=2, bias=False),
        BatchNormalization(...), ChannelwiseScaling(c_out))``.

    The body's output and the shortcut's must have the same shape; the output has the
    body's dtype.  ``state_dict`` keys are ``"0.*"`` for the body, ``"1.*"`` for the
    shortcut.
    """

    _children_are_arguments = True

    def get_config(self):
        return {}

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = _as_module(body, "Residual", "body")
        self.shortcut = None if shortcut is None else _as_module(shortcut, "Residual", "shortcut")
        _distinct("Residual", self.children())
        self._inputs = None

    def children(self):
        return [self.body] if self.shortcut is None else [self.body, self.shortcut]

    def _compute_output(self, input):
        out = self.body.forward(input)
        skip = np.asarray(input) if self.shortcut is None else self.shortcut.forward(input)
        if skip.shape != out.shape:
            raise ValueError(
                f"Residual: the body gives shape {out.shape} but the "
                f"{'input' if self.shortcut is None else 'shortcut'} has shape {skip.shape}; "
                "give a shortcut that maps the input to the body's output shape"
            )
        if not is_inference():
            self._inputs = input
        return np.add(out, skip, dtype=out.dtype)

    def _compute_input_grad(self, input, output_grad):
        check_same_input("Residual", self._inputs, input)
        grad = self.body.backward(input, output_grad)
        if self.shortcut is None:
            return np.add(grad, output_grad, dtype=grad.dtype)
        return np.add(grad, self.shortcut.backward(input, output_grad), dtype=grad.dtype)

    def __repr__(self):
        lines = [f"  (body): {indented(self.body)}"]
        if self.shortcut is not None:
            lines.append(f"  (shortcut): {indented(self.shortcut)}")
        return "Residual(\n" + "\n".join(lines) + "\n)"


class Concat(Module):
    """Every branch sees the same input; their outputs are concatenated along the
    channel axis (axis 1, for ``(N, C)`` and ``(N, C, H, W)`` alike), as Torch7's
    ``Concat(2)`` or an Inception block.

    ``backward`` splits ``output_grad`` along axis 1 into the branches' widths, sends
    each part back through its branch and adds the input gradients.

    Parameters
    ----------
    *branches : Module
        At least one.  All outputs must agree on every axis but axis 1.
    """

    _children_are_arguments = True

    def __init__(self, *branches):
        super().__init__()
        if not branches:
            raise ValueError("Concat needs at least one branch")
        self.branches = [_as_module(b, "Concat", f"branch {i}") for i, b in enumerate(branches)]
        _distinct("Concat", self.branches)
        self._inputs = None
        self._widths = None

    def children(self):
        return list(self.branches)

    def __len__(self):
        return len(self.branches)

    def __getitem__(self, index):
        return self.branches[index]

    def _compute_output(self, input):
        outs = [branch.forward(input) for branch in self.branches]
        first = outs[0].shape
        for i, out in enumerate(outs):
            if out.ndim < 2 or out.shape[:1] + out.shape[2:] != first[:1] + first[2:]:
                shapes = [o.shape for o in outs]
                raise ValueError(
                    f"Concat: branch outputs must agree on every axis but axis 1, got shapes "
                    f"{shapes} (branch {i} differs)"
                )
        widths = [out.shape[1] for out in outs]
        if not is_inference():
            self._inputs, self._widths = input, widths
        # The layers' float dtype, whichever branch comes first (an Identity branch may
        # pass integer pixels through).
        floats = [out.dtype for out in outs if out.dtype.kind == "f"]
        return np.concatenate(outs, axis=1, dtype=np.result_type(*floats) if floats else None)

    def _compute_input_grad(self, input, output_grad):
        check_same_input("Concat", self._inputs, input)
        grad = np.asarray(output_grad)
        total = sum(self._widths)
        if grad.ndim < 2 or grad.shape[1] != total:
            raise ValueError(
                f"Concat: output_grad must have {total} entries on axis 1 (the forward "
                f"output's), got shape {grad.shape}"
            )
        input_grad = None
        start = 0
        for branch, width in zip(self.branches, self._widths):
            part = np.ascontiguousarray(grad[:, start:start + width])
            start += width
            g = branch.backward(input, part)
            input_grad = g.copy() if input_grad is None else np.add(input_grad, g, out=input_grad)
        return input_grad

    def __repr__(self):
        lines = [f"  ({i}): {indented(b)}" for i, b in enumerate(self.branches)]
        return "Concat(\n" + "\n".join(lines) + "\n)"
