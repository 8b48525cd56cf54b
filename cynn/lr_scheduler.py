"""Learning-rate schedules: StepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau.

A schedule reads and writes ``optimizer.lr`` once per epoch, after that epoch's
optimizer steps (see `cynn.optim` for the loop).  The rules are PyTorch's
(``torch.optim.lr_scheduler``), for a single parameter group.
"""
import functools
import math
import numbers

import numpy as np

from ._validation import (check_state_keys, choice, fraction, non_negative_float,
                          non_negative_int, positive_float, positive_int)
from .optim import Optimizer

__all__ = ["LRScheduler", "StepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau"]


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

    #: name -> rule(value, name, owner) from cynn._validation: a schedule states its
    #: argument rules as data, in display order, and this base class checks them.
    _rules = {}

    def _check_hyperparameters(self, **hyperparameters):
        owner = type(self).__name__
        return {name: rule(hyperparameters[name], name, owner)
                for name, rule in self._rules.items()}

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
        check_state_keys(state, ("scheduler", *self._hyperparameter_names, *self._float_names,
                            *self._counter_names, *self._extra_names), owner)
        if state["scheduler"] != owner:
            raise ValueError(f"cannot load a {state['scheduler']} state into {owner}")
        checked = self._check_hyperparameters(
            **{name: state[name] for name in self._hyperparameter_names}
        )
        base_lr = non_negative_float(state["base_lr"], "base_lr", owner)
        last_lr = non_negative_float(state["last_lr"], "last_lr", owner)
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

    _rules = {"step_size": positive_int, "gamma": positive_float}

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

    _rules = {"gamma": positive_float}

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

    _rules = {"T_max": positive_int, "eta_min": non_negative_float}

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

    _rules = {
        "mode": functools.partial(choice, choices=("min", "max")),
        "factor": functools.partial(fraction, include_zero=False),
        "patience": non_negative_int,
        "threshold": non_negative_float,
        "threshold_mode": functools.partial(choice, choices=("rel", "abs")),
        "cooldown": non_negative_int,
        "min_lr": non_negative_float,
        "eps": non_negative_float,
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
