"""Numeric gradient checks by central differences, in float64.

Users test their own modules with these, the same way cynn's tests check every layer:

    >>> cynn.gradcheck(MyLayer(...), x)          # raises GradcheckError on a mismatch
    True
"""
import copy

import numpy as np

from ._validation import as_float_array


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with the central-difference estimate."""


def _numeric_grad(loss, array, eps):
    """Central differences of ``loss()`` with respect to every element of ``array``,
    perturbed in place (and restored)."""
    grad = np.zeros_like(array)
    flat = array.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        plus = loss()
        flat[i] = orig - eps
        minus = loss()
        flat[i] = orig
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def _compare(name, analytic, numeric, atol, rtol, failures):
    if analytic.shape != numeric.shape:
        failures.append(f"{name}: analytic shape {analytic.shape} != expected {numeric.shape}")
        return
    if not np.allclose(analytic, numeric, atol=atol, rtol=rtol):
        diff = np.abs(analytic - numeric)
        worst = np.unravel_index(np.argmax(diff), diff.shape)
        failures.append(
            f"{name}: max abs difference {diff.max():.3e} at index {tuple(int(i) for i in worst)} "
            f"(analytic {analytic[worst]:.6e}, numeric {numeric[worst]:.6e})"
        )


def _report(owner, failures, raise_exception):
    if failures:
        if raise_exception:
            raise GradcheckError(f"gradient check failed for {owner}:\n  " + "\n  ".join(failures))
        return False
    return True


def gradcheck(module, input, output_grad=None, *, eps=1e-6, atol=1e-5, rtol=1e-4,
              random_state=0, raise_exception=True):
    """Check a module's input and parameter gradients against central differences.

    The check runs on a float64 deep copy of ``module`` (the module itself is not
    touched), in the module's current mode, with the scalar loss
    ``sum(forward(x) * output_grad)``; ``output_grad`` is drawn from a standard
    normal when not given.

    Parameters
    ----------
    module : Module
        Must be deterministic: put Dropout in evaluation mode first.
    input : array_like
    output_grad : array_like, optional
    eps : float
        Step of the central differences.
    atol, rtol : float
        Tolerances passed to ``numpy.allclose``.
    random_state : int
        Seed for the random ``output_grad``.
    raise_exception : bool
        Raise `GradcheckError` on failure (default), or return False.

    Returns
    -------
    bool
        True when every gradient matches.
    """
    model = copy.deepcopy(module).astype(np.float64)
    x = np.array(as_float_array(input, "gradcheck", dtype=np.float64), copy=True)
    out = model.forward(x)
    if output_grad is None:
        g = np.random.default_rng(random_state).standard_normal(np.shape(out))
    else:
        g = np.array(as_float_array(output_grad, "gradcheck", np.float64, "output_grad"))
        if g.shape != np.shape(out):
            raise ValueError(f"output_grad has shape {g.shape}, output has shape {np.shape(out)}")

    def loss():
        return float(np.sum(model.forward(x) * g))

    base = loss()
    if loss() != base:
        raise ValueError(
            f"{module!r} is not deterministic (two forward passes differ); "
            "put it in evaluation mode or fix its random state before a gradient check"
        )

    model.zero_grad()
    model.forward(x)
    analytic_input = np.array(model.backward(x, g), dtype=np.float64, copy=True)
    analytic_params = [np.array(p, copy=True) for p in model.get_parameters_grad()]

    failures = []
    _compare("input", analytic_input, _numeric_grad(loss, x, eps), atol, rtol, failures)
    for i, param in enumerate(model.get_parameters()):
        _compare(f"parameter {i} {param.shape}", analytic_params[i],
                 _numeric_grad(loss, param, eps), atol, rtol, failures)
    return _report(repr(module), failures, raise_exception)


def check_criterion(criterion, input, target, *, eps=1e-6, atol=1e-5, rtol=1e-4,
                    raise_exception=True):
    """Check ``criterion.backward(input, target)`` against central differences of
    ``criterion.forward(input, target)``, in float64."""
    x = np.array(as_float_array(input, "check_criterion", dtype=np.float64), copy=True)
    analytic = np.array(criterion.backward(x, target), dtype=np.float64, copy=True)

    def loss():
        return float(criterion.forward(x, target))

    failures = []
    _compare("input", analytic, _numeric_grad(loss, x, eps), atol, rtol, failures)
    return _report(repr(criterion), failures, raise_exception)
