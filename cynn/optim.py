"""Optimizers: SGD, Adam, AdamW (the schedules that change their rate are in
`cynn.lr_scheduler`).

An optimizer holds a module's live parameter and gradient arrays and updates the
parameters in place; a schedule changes ``optimizer.lr`` once per epoch::

    optimizer = cynn.optim.SGD(model, lr=0.1, momentum=0.9)
    schedule = cynn.lr_scheduler.StepLR(optimizer, step_size=30)
    for epoch in range(epochs):
        for x, y in batches:
            optimizer.zero_grad()
            output = model.forward(x)
            loss = criterion.forward(output, y)
            model.backward(x, criterion.backward(output, y))
            optimizer.step()
        schedule.step()

The update rules are PyTorch's (``torch.optim``, single parameter group, no
dampening, no amsgrad), so a cynn model and a PyTorch model fed the same
gradients follow the same trajectory.
"""
import math

import numpy as np

from ._kernels import optim as _optim
from ._threads import get_num_threads
from ._validation import (check_state_keys, flag, fraction, non_negative_float, non_negative_int,
                          positive_float)
from .module import Module, claim, release

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm"]


# -- optimizers ---------------------------------------------------------------------
class Optimizer:
    """Base class: holds the parameters, their per-parameter state and the
    hyperparameters; a subclass writes the update of one parameter.

    Parameters
    ----------
    module : Module
        The model.  ``module.get_parameters()`` and ``module.get_parameters_grad()``
        are read once, here: they are the live arrays, updated in place by `step`.
        Build the optimizer after ``module.astype(...)``, which replaces them.
    lr : float
        Learning rate, positive.  Stored as the attribute ``lr``, which schedules
        (or you) may change between steps to any non-negative value.
    **hyperparameters
        Checked by the subclass's ``_check_hyperparameters``.

    Attributes
    ----------
    lr : float
    step_count : int
        Number of `step` calls so far (``t`` in the update rules, counted from 1).
    state : list of dict
        Per-parameter state arrays (momentum buffers, moment estimates), in the
        order of ``module.get_parameters()``; filled on the first step.
    """

    #: Names of the arrays a subclass keeps per parameter (all or none are present).
    _state_names = ()

    def __init__(self, module, lr, **hyperparameters):
        owner = type(self).__name__
        if not isinstance(module, Module):
            raise TypeError(f"{owner} expects a cynn Module, got {type(module).__name__}")
        params = list(module.get_parameters())
        grads = list(module.get_parameters_grad())
        _check_parameters(params, grads, owner)
        self._lr = positive_float(lr, "lr", owner)
        checked = self._check_hyperparameters(**hyperparameters)
        self._hyperparameter_names = tuple(checked)
        for name, value in checked.items():
            setattr(self, name, value)
        self.module = module
        self._params = params
        self._grads = grads
        self.step_count = 0
        self.state = [{} for _ in params]
        self._scratch = None

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        # Zero is allowed here (cosine annealing reaches eta_min=0), not at construction.
        self._lr = non_negative_float(value, "lr", type(self).__name__)

    # -- the fixed sequence -----------------------------------------------------------
    def step(self):
        """Update every parameter once from its current gradient.

        RuntimeError if another thread is inside `step` of this optimizer.
        """
        token = claim(self, "step")
        try:
            self._step()
        finally:
            release(self, token)

    def _step(self):
        self._check_still_live()
        if self._scratch is None:
            # Two work arrays per parameter, reused every step, so that an update
            # allocates nothing and writes in the parameter's own dtype.
            self._scratch = [(np.empty_like(p), np.empty_like(p)) for p in self._params]
        self.step_count += 1
        if self._step_all():
            return
        for param, grad, state, scratch in zip(self._params, self._grads, self.state,
                                               self._scratch):
            self._update_parameter(param, grad, state, scratch)

    def _step_all(self):
        """Update every parameter in one kernel call, with the bits that
        `_update_parameter` on each would give; False when this optimizer cannot (the
        first step, which makes the state, or arrays the kernel does not take), and
        then `_step` goes parameter by parameter.  A subclass that changes the update
        rule (overrides `_update_parameter`) never gets here."""
        return False

    def _own_rule(self, cls, hook="_update_parameter"):
        """Whether this optimizer's ``hook`` is ``cls``'s: a subclass (or an instance)
        that replaces the update rule runs it as written, parameter by parameter."""
        return getattr(getattr(self, hook), "__func__", None) is getattr(cls, hook)

    def zero_grad(self):
        """Set the module's parameter gradients to zero (they accumulate otherwise)."""
        self.module.zero_grad()

    # -- hooks --------------------------------------------------------------------------
    def _check_hyperparameters(self, **hyperparameters):
        """Return the hyperparameters other than ``lr``, validated, in display order."""
        if hyperparameters:
            raise TypeError(
                f"{type(self).__name__} got unexpected arguments {sorted(hyperparameters)}"
            )
        return {}

    def _update_parameter(self, param, grad, state, scratch):
        """Update ``param`` in place.  ``state`` is this parameter's dict, ``scratch``
        a pair of arrays shaped like it whose contents need not survive the call."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _update_parameter")

    # -- state ----------------------------------------------------------------------------
    def state_dict(self):
        """Hyperparameters, step count and copies of the per-parameter state arrays.

        Returns
        -------
        dict
            ``{"optimizer": class name, "lr": ..., <hyperparameters>, "step_count": t,
            "state": [dict of arrays per parameter]}``.
        """
        state = {"optimizer": type(self).__name__, "lr": self.lr}
        for name in self._hyperparameter_names:
            state[name] = getattr(self, name)
        state["step_count"] = self.step_count
        state["state"] = [{k: np.array(v, copy=True) for k, v in s.items()} for s in self.state]
        return state

    def load_state_dict(self, state):
        """Restore hyperparameters, step count and per-parameter state from `state_dict`.

        Everything is checked before anything changes: a state from another optimizer
        class, for another number of parameters or with arrays of other shapes raises
        ValueError and leaves this optimizer as it was.
        """
        owner = type(self).__name__
        check_state_keys(state, ("optimizer", "lr", *self._hyperparameter_names, "step_count", "state"),
                    owner)
        if state["optimizer"] != owner:
            raise ValueError(f"cannot load a {state['optimizer']} state into {owner}")
        lr = non_negative_float(state["lr"], "lr", owner)
        checked = self._check_hyperparameters(
            **{name: state[name] for name in self._hyperparameter_names}
        )
        step_count = non_negative_int(state["step_count"], "step_count", owner)
        per_param = state["state"]
        if not isinstance(per_param, (list, tuple)) or len(per_param) != len(self._params):
            got = len(per_param) if isinstance(per_param, (list, tuple)) else repr(per_param)
            raise ValueError(
                f"{owner} has {len(self._params)} parameters, state has {got} parameter states"
            )
        new_state = []
        for i, (entry, param) in enumerate(zip(per_param, self._params)):
            if not isinstance(entry, dict) or set(entry) not in (set(), set(self._state_names)):
                raise ValueError(
                    f"{owner}: state of parameter {i} must hold {list(self._state_names)} "
                    f"(or nothing before the first step), got {entry!r:.80}"
                )
            arrays = {}
            for key, value in entry.items():
                value = np.asarray(value)
                if value.dtype.kind not in "biuf":
                    raise TypeError(f"{owner}: state {key!r} of parameter {i} has non-numeric "
                                    f"dtype {value.dtype}")
                if value.shape != param.shape:
                    raise ValueError(
                        f"{owner}: shape mismatch for state {key!r} of parameter {i}: "
                        f"parameter has {param.shape}, state has {value.shape}"
                    )
                arrays[key] = np.array(value, dtype=param.dtype, copy=True)
            new_state.append(arrays)
        self._lr = lr
        for name, value in checked.items():
            setattr(self, name, value)
        self.step_count = step_count
        self.state = new_state
        return self

    def _check_still_live(self):
        params = self.module.get_parameters()
        grads = self.module.get_parameters_grad()
        same = (len(params) == len(self._params) and len(grads) == len(self._grads)
                and all(a is b for a, b in zip(params, self._params))
                and all(a is b for a, b in zip(grads, self._grads)))
        if not same:
            raise RuntimeError(
                f"{type(self).__name__}: the module's parameter arrays changed after the "
                "optimizer was built (astype or a reassignment replaces them); build the "
                "optimizer after converting the model"
            )

    def __repr__(self):
        args = [f"lr={self.lr!r}"]
        args += [f"{name}={getattr(self, name)!r}" for name in self._hyperparameter_names]
        return f"{type(self).__name__}({', '.join(args)})"


def _check_parameters(params, grads, owner):
    if len(params) == 0:
        raise ValueError(f"{owner}: the module has no parameters to optimize")
    if len(params) != len(grads):
        raise ValueError(
            f"{owner}: the module returns {len(params)} parameters but {len(grads)} gradients"
        )
    for i, (p, g) in enumerate(zip(params, grads)):
        if not isinstance(p, np.ndarray) or p.dtype.kind != "f":
            raise TypeError(f"{owner}: parameter {i} must be a floating-point ndarray, got "
                            f"{getattr(p, 'dtype', type(p).__name__)}")
        if not p.flags.writeable:
            raise ValueError(f"{owner}: parameter {i} is read-only and cannot be updated in place")
        if not isinstance(g, np.ndarray) or g.shape != p.shape:
            raise ValueError(f"{owner}: gradient {i} has shape {getattr(g, 'shape', None)}, "
                             f"its parameter has shape {p.shape}")


def _l2_gradient(param, grad, weight_decay, out):
    """``grad + weight_decay * param`` (L2 penalty folded into the gradient), in ``out``."""
    if weight_decay == 0:
        return grad
    np.multiply(param, weight_decay, out=out)
    out += grad
    return out


class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional (Nesterov) momentum and weight decay.

    With ``g`` the gradient, ``mu`` the momentum and ``b`` the momentum buffer, step
    ``t`` does

    .. math::

        g &\leftarrow g + \lambda\,p \\
        b &\leftarrow g \ \text{if}\ t = 1 \ \text{else}\ \mu\,b + g \\
        g &\leftarrow g + \mu\,b \ \text{(Nesterov)} \quad\text{or}\quad g \leftarrow b \\
        p &\leftarrow p - \eta\,g

    (the momentum lines only when ``momentum > 0``).

    Parameters
    ----------
    module : Module
        The model whose parameters are updated in place.
    lr : float
        Learning rate :math:`\eta`, positive.  Required.
    momentum : float, default 0.0
        :math:`\mu \in [0, 1)`.
    nesterov : bool, default False
        Nesterov momentum; needs ``momentum > 0``.
    weight_decay : float, default 0.0
        L2 penalty :math:`\lambda \ge 0`, added to the gradient.

    Notes
    -----
    This is PyTorch's ``torch.optim.SGD`` with ``dampening=0``.  Like PyTorch, and
    unlike Polyak (1964) and Sutskever et al. (2013), the learning rate multiplies the
    buffer instead of entering it, which makes changing ``lr`` during training act
    immediately.  The Nesterov form is the one of Sutskever, Martens, Dahl and Hinton,
    "On the importance of initialization and momentum in deep learning", ICML 2013.
    """

    _state_names = ("momentum_buffer",)

    def __init__(self, module, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(module, lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay)

    def _check_hyperparameters(self, momentum, nesterov, weight_decay):
        momentum = fraction(momentum, "momentum", "SGD")
        nesterov = flag(nesterov, "nesterov", "SGD")
        if nesterov and momentum == 0:
            raise ValueError(f"SGD: nesterov=True requires momentum > 0, got momentum={momentum!r}")
        weight_decay = non_negative_float(weight_decay, "weight_decay", "SGD")
        return {"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}

    def _step_all(self):
        momentum = self.momentum != 0
        if not self._own_rule(SGD) or (momentum and not all(self.state)):
            return False
        return _optim.sgd_step(self._params, self._grads,
                               [s["momentum_buffer"] for s in self.state] if momentum else None,
                               self.lr, self.momentum, self.nesterov, self.weight_decay != 0,
                               self.weight_decay, get_num_threads())

    def _update_parameter(self, param, grad, state, scratch):
        work, step = scratch
        g = _l2_gradient(param, grad, self.weight_decay, work)
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # The first step seeds the buffer with the gradient itself, not with
                # mu * 0 + g: identical values, but this is PyTorch's definition.
                state["momentum_buffer"] = buf = np.array(g, dtype=param.dtype, copy=True)
            else:
                buf *= self.momentum
                buf += g
            if self.nesterov:
                np.multiply(buf, self.momentum, out=step)
                step += g
                g = step
            else:
                g = buf
        np.multiply(g, self.lr, out=step)
        param -= step


class Adam(Optimizer):
    r"""Adam: per-coordinate step sizes from running moment estimates.

    With ``g`` the gradient at step ``t`` (counted from 1):

    .. math::

        g &\leftarrow g + \lambda\,p \\
        m &\leftarrow \beta_1 m + (1 - \beta_1)\,g \\
        v &\leftarrow \beta_2 v + (1 - \beta_2)\,g^2 \\
        p &\leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
              \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    with ``m`` and ``v`` starting at zero.

    Parameters
    ----------
    module : Module
        The model whose parameters are updated in place.
    lr : float, default 1e-3
        Learning rate :math:`\eta`, positive.
    betas : (float, float), default (0.9, 0.999)
        Decay rates :math:`\beta_1, \beta_2`, each in [0, 1).
    eps : float, default 1e-8
        :math:`\epsilon > 0`, keeps the denominator away from zero.  (PyTorch also
        accepts 0, which turns a coordinate whose gradient has always been 0 into NaN.)
    weight_decay : float, default 0.0
        L2 penalty :math:`\lambda \ge 0`, added to the gradient (so it is rescaled by
        the adaptive step; see `AdamW` for decoupled decay).

    Notes
    -----
    Kingma and Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015
    (arXiv:1412.6980).  The rule is PyTorch's ``torch.optim.Adam`` with
    ``amsgrad=False``: epsilon is added after the bias correction of ``sqrt(v)``,
    as in the paper's Algorithm 1.
    """

    _state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, module, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(module, lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _check_hyperparameters(self, betas, eps, weight_decay):
        owner = type(self).__name__
        if (not isinstance(betas, (tuple, list, np.ndarray)) or np.ndim(betas) != 1
                or len(betas) != 2):
            raise ValueError(f"{owner}: betas must be a pair of numbers in [0, 1), got {betas!r}")
        betas = (fraction(betas[0], "betas[0]", owner),
                 fraction(betas[1], "betas[1]", owner))
        eps = positive_float(eps, "eps", owner)
        weight_decay = non_negative_float(weight_decay, "weight_decay", owner)
        return {"betas": betas, "eps": eps, "weight_decay": weight_decay}

    def _gradient(self, param, grad, out):
        """The gradient the moments see (Adam folds the L2 penalty into it)."""
        return _l2_gradient(param, grad, self.weight_decay, out)

    def _step_all(self):
        decoupled = self._own_rule(AdamW, "_gradient")
        if (not self._own_rule(Adam) or not (decoupled or self._own_rule(Adam, "_gradient"))
                or not all(self.state)):
            return False
        decay = self.weight_decay != 0
        beta1, beta2 = self.betas
        t = self.step_count
        bias_correction1 = 1.0 - beta1 ** t
        bias_correction2 = 1.0 - beta2 ** t
        return _optim.adam_step(self._params, self._grads, [s["exp_avg"] for s in self.state],
                                [s["exp_avg_sq"] for s in self.state], beta1, beta2,
                                math.sqrt(bias_correction2), self.eps,
                                self.lr / bias_correction1, decay and not decoupled,
                                self.weight_decay, decay and decoupled,
                                1.0 - self.lr * self.weight_decay, get_num_threads())

    def _update_parameter(self, param, grad, state, scratch):
        work, tmp = scratch
        beta1, beta2 = self.betas
        g = self._gradient(param, grad, work)
        if not state:
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        # Bias corrections in Python floats: scalars never change the array dtype.
        t = self.step_count
        bias_correction1 = 1.0 - beta1 ** t
        bias_correction2 = 1.0 - beta2 ** t
        if all(a.flags.c_contiguous and a.dtype == param.dtype for a in (param, g, m, v)):
            # one pass, the same bits as the NumPy lines below (cynn/_kernels/optim.pyx)
            _optim.adam_update(param.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1),
                               beta1, beta2, math.sqrt(bias_correction2), self.eps,
                               self.lr / bias_correction1, get_num_threads())
            return
        m *= beta1
        np.multiply(g, 1.0 - beta1, out=tmp)
        m += tmp
        v *= beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        denom = np.sqrt(v, out=tmp)
        denom /= math.sqrt(bias_correction2)
        denom += self.eps
        update = np.divide(m, denom, out=tmp)
        update *= self.lr / bias_correction1
        param -= update


class AdamW(Adam):
    r"""Adam with decoupled weight decay.

    Each step first shrinks the parameters, then takes an Adam step whose gradient
    carries no penalty:

    .. math::

        p \leftarrow p\,(1 - \eta\lambda), \qquad
        \text{then the Adam step of `Adam` with } \lambda = 0 \text{ in its gradient.}

    Parameters
    ----------
    module, lr, betas, eps
        As in `Adam`.
    weight_decay : float, default 1e-2
        Decoupled decay :math:`\lambda \ge 0`.

    Notes
    -----
    Loshchilov and Hutter, "Decoupled Weight Decay Regularization", ICLR 2019
    (arXiv:1711.05101).  As in PyTorch's ``torch.optim.AdamW``, the decay is scaled by
    the current learning rate (the paper scales it by the schedule multiplier only),
    so a schedule that lowers ``lr`` lowers the decay too.
    """

    def __init__(self, module, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(module, lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _gradient(self, param, grad, out):
        if self.weight_decay != 0:
            param *= 1.0 - self.lr * self.weight_decay
        return grad


# -- gradient clipping ---------------------------------------------------------------
def clip_grad_norm(gradients, max_norm, norm_type=2.0, error_if_nonfinite=False):
    r"""Scale gradients in place so that their global norm is at most ``max_norm``;
    return the norm they had before, as PyTorch's ``torch.nn.utils.clip_grad_norm_``.

    .. math:: \|g\| = \Big(\sum_i \sum_j |g_{ij}|^p\Big)^{1/p}, \qquad
              g_i \leftarrow g_i \cdot \min\Big(1, \frac{\text{max\_norm}}
              {\|g\| + 10^{-6}}\Big)

    over all the gradient arrays at once (one norm, not one per array), so the
    direction of the step is kept.  Call it between ``backward`` and
    ``optimizer.step()``; `cynn.trainers.GradientClipping` does that in a Trainer, and
    the estimators' ``clip_grad_norm=`` parameter uses it.

    Parameters
    ----------
    gradients : Module or iterable of ndarray
        A module (its `Module.get_parameters_grad` arrays are clipped) or the gradient
        arrays themselves.
    max_norm : float
        Positive.
    norm_type : float, default 2.0
        ``p >= 1``, or ``math.inf`` for the largest absolute entry.
    error_if_nonfinite : bool, default False
        Raise RuntimeError, changing nothing, when the norm is NaN or infinite;
        otherwise the gradients are scaled by a NaN factor as in PyTorch.

    Returns
    -------
    float
        The global norm before clipping (summed in float64).
    """
    max_norm = positive_float(max_norm, "max_norm", "clip_grad_norm")
    norm_type = float(norm_type) if isinstance(norm_type, (int, float)) and \
        not isinstance(norm_type, bool) else norm_type
    if not isinstance(norm_type, float) or not (norm_type >= 1):
        raise ValueError(f"clip_grad_norm: norm_type must be a number >= 1 or math.inf, got "
                         f"{norm_type!r}")
    grads = gradients.get_parameters_grad() if isinstance(gradients, Module) else list(gradients)
    for i, g in enumerate(grads):
        if not isinstance(g, np.ndarray) or g.dtype.kind != "f":
            raise TypeError(f"clip_grad_norm: gradient {i} must be a floating-point ndarray, got "
                            f"{getattr(g, 'dtype', type(g).__name__)}")
    if not grads:
        return 0.0
    if norm_type == math.inf:
        total = max(float(np.max(np.abs(g))) if g.size else 0.0 for g in grads)
    elif norm_type == 2.0:
        total = math.sqrt(sum(float(np.dot(r, r)) for r in
                              (g.ravel().astype(np.float64) for g in grads)))
    else:
        total = sum(float(np.sum(np.abs(g, dtype=np.float64) ** norm_type)) for g in grads)
        total = total ** (1.0 / norm_type)
    if not math.isfinite(total) and error_if_nonfinite:
        raise RuntimeError(f"clip_grad_norm: the total norm of order {norm_type} of the "
                           f"gradients is {total}; the gradients were not changed")
    coefficient = max_norm / (total + 1e-6)
    if coefficient < 1.0 or not math.isfinite(total):
        with np.errstate(invalid="ignore"):      # inf * 0 is NaN, as in PyTorch
            for g in grads:
                g *= g.dtype.type(coefficient)
    return total


_SCHEDULE_NAMES = ("LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR",
                   "ReduceLROnPlateau")


def __getattr__(name):
    # The schedules lived here before they had their own module; old imports keep working.
    if name in _SCHEDULE_NAMES:
        from . import lr_scheduler

        return getattr(lr_scheduler, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
