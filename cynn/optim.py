"""Optimizers (SGD, Adam, AdamW) and learning-rate schedules.

An optimizer holds a module's live parameter and gradient arrays and updates the
parameters in place; a schedule changes ``optimizer.lr`` once per epoch::

    optimizer = cynn.optim.SGD(model, lr=0.1, momentum=0.9)
    schedule = cynn.optim.StepLR(optimizer, step_size=30)
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
import numbers

import numpy as np

from ._validation import non_negative_int, positive_int
from .module import Module

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "LRScheduler",
    "StepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "ReduceLROnPlateau",
]


# -- argument checks ----------------------------------------------------------------
def _finite(value, name, owner, requirement):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{owner}: {name} must be {requirement}, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{owner}: {name} must be {requirement}, got {value!r}")
    return v


def _positive(value, name, owner):
    v = _finite(value, name, owner, "a positive finite number")
    if v <= 0:
        raise ValueError(f"{owner}: {name} must be a positive finite number, got {value!r}")
    return v


def _non_negative(value, name, owner):
    v = _finite(value, name, owner, "a non-negative finite number")
    if v < 0:
        raise ValueError(f"{owner}: {name} must be a non-negative finite number, got {value!r}")
    return v


def _in_zero_one(value, name, owner, include_zero=True):
    interval = "[0, 1)" if include_zero else "(0, 1)"
    v = _finite(value, name, owner, f"a number in {interval}")
    if v < 0 or v >= 1 or (v == 0 and not include_zero):
        raise ValueError(f"{owner}: {name} must be a number in {interval}, got {value!r}")
    return v


def _flag(value, name, owner):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{owner}: {name} must be True or False, got {value!r}")
    return bool(value)


def _choice(value, name, owner, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")
    return value


def _check_keys(state, expected, owner):
    if not isinstance(state, dict):
        raise TypeError(f"{owner}.load_state_dict expects a dict, got {type(state).__name__}")
    expected, given = set(expected), set(state)
    if expected != given:
        raise ValueError(
            f"state does not match {owner}: missing keys {sorted(expected - given)}, "
            f"unexpected keys {sorted(given - expected)}"
        )


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
        self._lr = _positive(lr, "lr", owner)
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
        self._lr = _non_negative(value, "lr", type(self).__name__)

    # -- the fixed sequence -----------------------------------------------------------
    def step(self):
        """Update every parameter once from its current gradient."""
        self._check_still_live()
        if self._scratch is None:
            # Two work arrays per parameter, reused every step, so that an update
            # allocates nothing and writes in the parameter's own dtype.
            self._scratch = [(np.empty_like(p), np.empty_like(p)) for p in self._params]
        self.step_count += 1
        for param, grad, state, scratch in zip(self._params, self._grads, self.state,
                                               self._scratch):
            self._update_parameter(param, grad, state, scratch)

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
        _check_keys(state, ("optimizer", "lr", *self._hyperparameter_names, "step_count", "state"),
                    owner)
        if state["optimizer"] != owner:
            raise ValueError(f"cannot load a {state['optimizer']} state into {owner}")
        lr = _non_negative(state["lr"], "lr", owner)
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
        momentum = _in_zero_one(momentum, "momentum", "SGD")
        nesterov = _flag(nesterov, "nesterov", "SGD")
        if nesterov and momentum == 0:
            raise ValueError(f"SGD: nesterov=True requires momentum > 0, got momentum={momentum!r}")
        weight_decay = _non_negative(weight_decay, "weight_decay", "SGD")
        return {"momentum": momentum, "nesterov": nesterov, "weight_decay": weight_decay}

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
        betas = (_in_zero_one(betas[0], "betas[0]", owner),
                 _in_zero_one(betas[1], "betas[1]", owner))
        eps = _positive(eps, "eps", owner)
        weight_decay = _non_negative(weight_decay, "weight_decay", owner)
        return {"betas": betas, "eps": eps, "weight_decay": weight_decay}

    def _gradient(self, param, grad, out):
        """The gradient the moments see (Adam folds the L2 penalty into it)."""
        return _l2_gradient(param, grad, self.weight_decay, out)

    def _update_parameter(self, param, grad, state, scratch):
        work, tmp = scratch
        beta1, beta2 = self.betas
        g = self._gradient(param, grad, work)
        if not state:
            state["exp_avg"] = np.zeros_like(param)
            state["exp_avg_sq"] = np.zeros_like(param)
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m *= beta1
        np.multiply(g, 1.0 - beta1, out=tmp)
        m += tmp
        v *= beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        # Bias corrections in Python floats: scalars never change the array dtype.
        t = self.step_count
        bias_correction1 = 1.0 - beta1 ** t
        bias_correction2 = 1.0 - beta2 ** t
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
        p \leftarrow p - \frac{\eta}{1 - \beta_1^t}\,
              \frac{m}{\sqrt{v} / \sqrt{1 - \beta_2^t} + \epsilon}

    Parameters
    ----------
    module : Module
        The model whose parameters are updated in place.
    lr : float, default 1e-3
        Learning rate :math:`\eta`, positive.
    betas : (float, float), default (0.9, 0.999)
        Each in [0, 1).
    eps : float, default 1e-8
        Positive.
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


# -- learning-rate schedules ------------------------------------------------------
class LRScheduler:
    """Base class of the learning-rate schedules: reads and writes ``optimizer.lr``.

    Call `step` once per epoch, after that epoch's optimizer steps.  After ``k`` calls
    ``last_epoch == k`` and ``optimizer.lr`` is the schedule's value for epoch ``k``;
    at construction (epoch 0) the learning rate is left as it is and remembered as
    ``base_lr``.

    Unlike PyTorch, which returns one value per parameter group, `get_last_lr`
    returns a single float: a cynn optimizer has one learning rate.
    """

    def __init__(self, optimizer, **hyperparameters):
        owner = type(self).__name__
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"{owner} expects a cynn Optimizer, got {type(optimizer).__name__}")
        checked = self._check_hyperparameters(**hyperparameters)
        self._hyperparameter_names = tuple(checked)
        for name, value in checked.items():
            setattr(self, name, value)
        self.optimizer = optimizer
        self.base_lr = optimizer.lr
        self.last_epoch = 0
        self._last_lr = optimizer.lr

    def step(self):
        """Move to the next epoch and set ``optimizer.lr`` for it."""
        self.last_epoch += 1
        self.optimizer.lr = self._compute_lr()
        self._last_lr = self.optimizer.lr

    def get_last_lr(self):
        """The learning rate this schedule set last (``base_lr`` before any step)."""
        return self._last_lr

    def _check_hyperparameters(self, **hyperparameters):
        raise NotImplementedError

    def _compute_lr(self):
        """The learning rate for epoch ``self.last_epoch``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement _compute_lr")

    # -- state ----------------------------------------------------------------------------
    _counter_names = ("last_epoch",)
    _float_names = ("base_lr", "last_lr")
    _extra_names = ()

    def state_dict(self):
        """Hyperparameters and progress (not the optimizer: save its state separately)."""
        state = {"scheduler": type(self).__name__}
        for name in self._hyperparameter_names:
            state[name] = getattr(self, name)
        state["base_lr"] = self.base_lr
        state["last_lr"] = self._last_lr
        for name in self._counter_names:
            state[name] = getattr(self, name)
        return state

    def load_state_dict(self, state):
        """Restore what `state_dict` returned; checks everything before changing anything.

        ``optimizer.lr`` is not touched: load the optimizer's own state for that.
        """
        owner = type(self).__name__
        _check_keys(state, ("scheduler", *self._hyperparameter_names, *self._float_names,
                            *self._counter_names, *self._extra_names), owner)
        if state["scheduler"] != owner:
            raise ValueError(f"cannot load a {state['scheduler']} state into {owner}")
        checked = self._check_hyperparameters(
            **{name: state[name] for name in self._hyperparameter_names}
        )
        base_lr = _non_negative(state["base_lr"], "base_lr", owner)
        last_lr = _non_negative(state["last_lr"], "last_lr", owner)
        counters = {name: non_negative_int(state[name], name, owner)
                    for name in self._counter_names}
        extra = self._check_extra_state(state)
        for name, value in (*checked.items(), *counters.items(), *extra.items()):
            setattr(self, name, value)
        self.base_lr = base_lr
        self._last_lr = last_lr
        return self

    def _check_extra_state(self, state):
        return {}

    def __repr__(self):
        args = [f"{name}={getattr(self, name)!r}" for name in self._hyperparameter_names]
        return f"{type(self).__name__}({', '.join(args)})"


class StepLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every ``step_size`` epochs.

    .. math:: \eta_t = \eta_0 \, \gamma^{\lfloor t / \text{step\_size} \rfloor}

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Epochs between decays, positive.
    gamma : float, default 0.1
        Multiplicative factor, positive.

    Notes
    -----
    As in PyTorch, the factor is applied to the optimizer's current ``lr`` at each
    boundary (not recomputed from ``base_lr``), so a learning rate changed by hand
    keeps decaying from where it was set.
    """

    def __init__(self, optimizer, step_size, gamma=0.1):
        super().__init__(optimizer, step_size=step_size, gamma=gamma)

    def _check_hyperparameters(self, step_size, gamma):
        return {"step_size": positive_int(step_size, "step_size", "StepLR"),
                "gamma": _positive(gamma, "gamma", "StepLR")}

    def _compute_lr(self):
        if self.last_epoch % self.step_size == 0:
            return self.optimizer.lr * self.gamma
        return self.optimizer.lr


class ExponentialLR(LRScheduler):
    r"""Multiply the learning rate by ``gamma`` every epoch.

    .. math:: \eta_t = \eta_0 \, \gamma^t

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
        Multiplicative factor, positive (above 1 grows the rate, e.g. for a
        learning-rate range test).

    Notes
    -----
    Like PyTorch, the factor multiplies the optimizer's current ``lr``.
    """

    def __init__(self, optimizer, gamma):
        super().__init__(optimizer, gamma=gamma)

    def _check_hyperparameters(self, gamma):
        return {"gamma": _positive(gamma, "gamma", "ExponentialLR")}

    def _compute_lr(self):
        return self.optimizer.lr * self.gamma


class CosineAnnealingLR(LRScheduler):
    r"""Anneal the learning rate from ``base_lr`` to ``eta_min`` along a half cosine.

    .. math::

        \eta_t = \eta_{min} + \frac{\eta_0 - \eta_{min}}{2}
                 \left(1 + \cos\frac{\pi t}{T_{max}}\right)

    After ``T_max`` epochs the rate rises again (the formula has period ``2 T_max``),
    as in PyTorch; stop stepping the schedule, or set ``T_max`` to the number of
    epochs, to stay at ``eta_min``.

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Epochs of the half period, positive.
    eta_min : float, default 0.0
        Lowest learning rate, non-negative.

    Notes
    -----
    Loshchilov and Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts",
    ICLR 2017 (arXiv:1608.03983), without the restarts.  PyTorch computes the same
    values recursively from the previous ``lr``; cynn uses the closed form, so the
    rate depends only on the epoch and never drifts.
    """

    def __init__(self, optimizer, T_max, eta_min=0.0):
        super().__init__(optimizer, T_max=T_max, eta_min=eta_min)

    def _check_hyperparameters(self, T_max, eta_min):
        return {"T_max": positive_int(T_max, "T_max", "CosineAnnealingLR"),
                "eta_min": _non_negative(eta_min, "eta_min", "CosineAnnealingLR")}

    def _compute_lr(self):
        cosine = math.cos(math.pi * self.last_epoch / self.T_max)
        return self.eta_min + (self.base_lr - self.eta_min) * (1.0 + cosine) / 2.0


class ReduceLROnPlateau(LRScheduler):
    """Multiply the learning rate by ``factor`` when a monitored metric stops improving.

    ``step(metric)`` is called once per epoch with, say, the validation loss.  A value
    improves on the best so far when it beats it by more than ``threshold``
    (``best * (1 - threshold)`` in 'rel' mode, ``best - threshold`` in 'abs' mode, for
    mode 'min'; mirrored for 'max').  After more than ``patience`` epochs in a row
    without improvement the rate is multiplied by ``factor`` (never below ``min_lr``),
    and the next ``cooldown`` epochs are not counted as bad.

    Parameters
    ----------
    optimizer : Optimizer
    mode : {'min', 'max'}, default 'min'
        Whether the metric should go down (a loss) or up (an accuracy).
    factor : float, default 0.1
        In (0, 1).
    patience : int, default 10
        Bad epochs tolerated before a reduction, non-negative.
    threshold : float, default 1e-4
        Minimum significant change, non-negative.
    threshold_mode : {'rel', 'abs'}, default 'rel'
    cooldown : int, default 0
        Epochs after a reduction during which bad epochs are not counted.
    min_lr : float, default 0.0
        Floor of the learning rate, non-negative.
    eps : float, default 1e-8
        A reduction smaller than this is skipped (as in PyTorch).

    Notes
    -----
    Same rule as PyTorch's ``ReduceLROnPlateau``, including its 'rel' test, which
    assumes the metric keeps one sign: for a negative metric in mode 'min' use 'abs'.
    A NaN metric raises ValueError (PyTorch counts it as a bad epoch silently).
    """

    _counter_names = ("last_epoch", "num_bad_epochs", "cooldown_counter")
    _extra_names = ("best",)

    def __init__(self, optimizer, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        super().__init__(optimizer, mode=mode, factor=factor, patience=patience,
                         threshold=threshold, threshold_mode=threshold_mode,
                         cooldown=cooldown, min_lr=min_lr, eps=eps)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def _check_hyperparameters(self, mode, factor, patience, threshold, threshold_mode,
                               cooldown, min_lr, eps):
        owner = "ReduceLROnPlateau"
        return {
            "mode": _choice(mode, "mode", owner, ("min", "max")),
            "factor": _in_zero_one(factor, "factor", owner, include_zero=False),
            "patience": non_negative_int(patience, "patience", owner),
            "threshold": _non_negative(threshold, "threshold", owner),
            "threshold_mode": _choice(threshold_mode, "threshold_mode", owner, ("rel", "abs")),
            "cooldown": non_negative_int(cooldown, "cooldown", owner),
            "min_lr": _non_negative(min_lr, "min_lr", owner),
            "eps": _non_negative(eps, "eps", owner),
        }

    def step(self, metric):
        """Record this epoch's ``metric`` and reduce the learning rate if it has stalled."""
        try:
            current = float(metric)
        except (TypeError, ValueError):
            raise TypeError(
                f"ReduceLROnPlateau.step expects a number, got {type(metric).__name__}"
            ) from None
        if math.isnan(current):
            raise ValueError(f"ReduceLROnPlateau.step got a NaN metric at epoch "
                             f"{self.last_epoch + 1}")
        self.last_epoch += 1
        if self._is_better(current):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            old_lr = self.optimizer.lr
            new_lr = max(old_lr * self.factor, self.min_lr)
            if old_lr - new_lr > self.eps:
                self.optimizer.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = self.optimizer.lr

    def _is_better(self, value):
        if self.mode == "min":
            if self.threshold_mode == "rel":
                return value < self.best * (1.0 - self.threshold)
            return value < self.best - self.threshold
        if self.threshold_mode == "rel":
            return value > self.best * (1.0 + self.threshold)
        return value > self.best + self.threshold

    def state_dict(self):
        state = super().state_dict()
        state["best"] = self.best
        return state

    def _check_extra_state(self, state):
        best = state["best"]
        if isinstance(best, (bool, np.bool_)) or not isinstance(best, numbers.Real) \
                or math.isnan(best):
            raise ValueError(f"ReduceLROnPlateau: best must be a number, got {best!r}")
        return {"best": float(best)}

    def _compute_lr(self):
        raise AssertionError("ReduceLROnPlateau sets the rate in step(metric)")
