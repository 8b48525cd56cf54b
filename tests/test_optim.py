"""Optimizers and learning-rate schedules: update rules against hand-written NumPy
formulas and against torch.optim, in-place updates, dtypes, state round trips and
argument checks."""
import math

import numpy as np
import pytest

from cynn.module import Module
from cynn.optim import (
    SGD,
    Adam,
    AdamW,
    CosineAnnealingLR,
    ExponentialLR,
    LRScheduler,
    Optimizer,
    ReduceLROnPlateau,
    StepLR,
)


class Params(Module):
    """Two float64 and two float32 parameter arrays with their gradients; no layer code."""

    _parameter_names = ("W", "b", "W32", "b32")
    _grad_names = ("gradW", "gradb", "gradW32", "gradb32")

    def __init__(self, seed=0, float32=True):
        super().__init__()
        rng = np.random.default_rng(seed)
        dt32 = np.float32 if float32 else np.float64
        self.W = rng.standard_normal((3, 4))
        self.b = rng.standard_normal(4)
        self.W32 = rng.standard_normal((2, 5)).astype(dt32)
        self.b32 = rng.standard_normal(5).astype(dt32)
        self.gradW = np.zeros_like(self.W)
        self.gradb = np.zeros_like(self.b)
        self.gradW32 = np.zeros_like(self.W32)
        self.gradb32 = np.zeros_like(self.b32)

    def set_grads(self, grads):
        for live, value in zip(self.get_parameters_grad(), grads):
            np.copyto(live, value, casting="unsafe")


class NoParams(Module):
    pass


def random_grads(module, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [[rng.standard_normal(p.shape) for p in module.get_parameters()]
            for _ in range(steps)]


def run(optimizer, module, grads):
    for step_grads in grads:
        module.set_grads(step_grads)
        optimizer.step()


def as64(module):
    return [np.array(p, dtype=np.float64) for p in module.get_parameters()]


def assert_params_close(module, expected):
    """float64 parameters to round-off; float32 ones to float32 precision."""
    for p, e in zip(module.get_parameters(), expected):
        if p.dtype == np.float64:
            np.testing.assert_allclose(p, e, rtol=1e-12, atol=1e-14)
        else:
            np.testing.assert_allclose(p, e, rtol=2e-5, atol=2e-6)


# -- reference formulas, written out one step at a time --------------------------------
def reference_sgd(params, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    params = [p.copy() for p in params]
    bufs = [None] * len(params)
    for step_grads in grads:
        for i, (p, grad) in enumerate(zip(params, step_grads)):
            g = grad + weight_decay * p
            if momentum:
                bufs[i] = g.copy() if bufs[i] is None else momentum * bufs[i] + g
                g = g + momentum * bufs[i] if nesterov else bufs[i]
            params[i] = p - lr * g
    return params


def reference_adam(params, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   decoupled=False):
    b1, b2 = betas
    params = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t, step_grads in enumerate(grads, start=1):
        for i, (p, grad) in enumerate(zip(params, step_grads)):
            if decoupled:
                p = p * (1 - lr * weight_decay)
                g = grad
            else:
                g = grad + weight_decay * p
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            bc1 = 1 - b1 ** t
            bc2 = 1 - b2 ** t
            params[i] = p - (lr / bc1) * m[i] / (np.sqrt(v[i]) / np.sqrt(bc2) + eps)
    return params


SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, weight_decay=0.01),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.1, momentum=0.9, weight_decay=0.05),
    dict(lr=0.1, momentum=0.8, nesterov=True),
    dict(lr=0.03, momentum=0.5, nesterov=True, weight_decay=0.1),
]
ADAM_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    dict(lr=0.5, betas=(0.0, 0.0)),
]
ADAMW_CONFIGS = [
    dict(lr=0.01),
    dict(lr=0.05, betas=(0.5, 0.9), weight_decay=0.3),
]


def all_optimizers():
    return ([(SGD, c) for c in SGD_CONFIGS] + [(Adam, c) for c in ADAM_CONFIGS]
            + [(AdamW, c) for c in ADAMW_CONFIGS])


OPTIMIZER_IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(all_optimizers())]


# -- update rules ---------------------------------------------------------------------
@pytest.mark.parametrize("config", SGD_CONFIGS)
def test_sgd_matches_formula(config):
    module = Params()
    start = as64(module)
    grads = random_grads(module, 3)
    run(SGD(module, **config), module, grads)
    assert_params_close(module, reference_sgd(start, grads, **config))


def test_sgd_momentum_by_hand():
    # One scalar, numbers small enough to check on paper.
    module = Params()
    module.W[...] = 1.0
    opt = SGD(module, lr=0.5, momentum=0.5)
    for g, expected in [(1.0, 0.5), (1.0, -0.25), (0.0, -0.625)]:
        module.set_grads([np.full(p.shape, g) for p in module.get_parameters()])
        opt.step()
        np.testing.assert_array_equal(module.W, expected)


@pytest.mark.parametrize("config", ADAM_CONFIGS)
def test_adam_matches_formula(config):
    module = Params()
    start = as64(module)
    grads = random_grads(module, 3)
    run(Adam(module, **config), module, grads)
    assert_params_close(module, reference_adam(start, grads, **config))


@pytest.mark.parametrize("config", ADAMW_CONFIGS)
def test_adamw_matches_formula(config):
    module = Params()
    start = as64(module)
    grads = random_grads(module, 3)
    run(AdamW(module, **config), module, grads)
    expected = reference_adam(start, grads, decoupled=True,
                              **{"weight_decay": 1e-2, **config})
    assert_params_close(module, expected)


def test_adam_first_step_moves_each_coordinate_by_lr():
    # With bias correction the first Adam step is lr * sign(g) (up to eps).
    module = Params()
    start = as64(module)
    grads = random_grads(module, 1)
    run(Adam(module, lr=0.01, eps=1e-12), module, grads)
    for p, p0, g in zip(module.get_parameters(), start, grads[0]):
        np.testing.assert_allclose(p, p0 - 0.01 * np.sign(g), rtol=1e-6)


def test_adamw_decay_differs_from_adam_l2():
    module_w, module_l2 = Params(), Params()
    grads = random_grads(module_w, 3)
    run(AdamW(module_w, lr=0.01, weight_decay=0.5), module_w, grads)
    run(Adam(module_l2, lr=0.01, weight_decay=0.5), module_l2, grads)
    assert not np.allclose(module_w.W, module_l2.W)


def test_changing_lr_between_steps_takes_effect():
    module = Params()
    start = as64(module)
    grads = random_grads(module, 2)
    opt = SGD(module, lr=0.1)
    run(opt, module, grads[:1])
    opt.lr = 0.01
    run(opt, module, grads[1:])
    expected = [p - 0.1 * g0 - 0.01 * g1 for p, g0, g1 in zip(start, *grads)]
    assert_params_close(module, expected)


@pytest.mark.parametrize("cls, config", all_optimizers(), ids=OPTIMIZER_IDS)
def test_step_updates_in_place_and_keeps_dtype(cls, config):
    module = Params()
    params = module.get_parameters()
    before = [p.copy() for p in params]
    dtypes = [p.dtype for p in params]
    opt = cls(module, **config)
    run(opt, module, random_grads(module, 2))
    for p_now, p_then, old, dt in zip(module.get_parameters(), params, before, dtypes):
        assert p_now is p_then
        assert p_now.dtype == dt
        assert not np.array_equal(p_now, old)
    has_state = cls is not SGD or config.get("momentum", 0) > 0
    for state, p in zip(opt.state, params):
        assert bool(state) == has_state
        for value in state.values():
            assert value.dtype == p.dtype and value.shape == p.shape


@pytest.mark.parametrize("cls, config", all_optimizers(), ids=OPTIMIZER_IDS)
def test_step_leaves_gradients_alone(cls, config):
    module = Params()
    grads = random_grads(module, 1)
    module.set_grads(grads[0])
    cls(module, **config).step()
    for live, g in zip(module.get_parameters_grad(), grads[0]):
        np.testing.assert_allclose(live, g, rtol=1e-6)


def test_zero_grad_clears_module_gradients():
    module = Params()
    module.set_grads(random_grads(module, 1)[0])
    grads = module.get_parameters_grad()
    SGD(module, lr=0.1).zero_grad()
    for live, g in zip(module.get_parameters_grad(), grads):
        assert live is g
        assert not live.any()


def test_step_after_astype_raises():
    module = Params()
    opt = SGD(module, lr=0.1)
    module.astype(np.float64)
    with pytest.raises(RuntimeError, match="astype"):
        opt.step()


# -- state ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls, config", all_optimizers(), ids=OPTIMIZER_IDS)
def test_state_dict_round_trip_reproduces_steps(cls, config):
    grads = random_grads(Params(), 6)
    module = Params()
    opt = cls(module, **config)
    run(opt, module, grads[:3])
    state = opt.state_dict()
    saved_params = [p.copy() for p in module.get_parameters()]
    run(opt, module, grads[3:])

    resumed = Params(seed=7)
    for live, value in zip(resumed.get_parameters(), saved_params):
        live[...] = value
    opt2 = cls(resumed, lr=1.0)  # other hyperparameters come from the state
    opt2.load_state_dict(state)
    assert repr(opt2) == repr(opt)
    assert opt2.step_count == 3
    run(opt2, resumed, grads[3:])
    for a, b in zip(module.get_parameters(), resumed.get_parameters()):
        np.testing.assert_array_equal(a, b)


def test_state_dict_holds_copies():
    module = Params()
    opt = Adam(module, lr=0.1)
    run(opt, module, random_grads(module, 1))
    state = opt.state_dict()
    snapshot = state["state"][0]["exp_avg"].copy()
    run(opt, module, random_grads(module, 1, seed=5))
    np.testing.assert_array_equal(state["state"][0]["exp_avg"], snapshot)
    state["state"][0]["exp_avg"][...] = 123.0
    assert not np.any(opt.state[0]["exp_avg"] == 123.0)


def test_state_dict_contents():
    module = Params()
    opt = SGD(module, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    assert opt.state_dict() == {
        "optimizer": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True,
        "weight_decay": 0.01, "step_count": 0, "state": [{}, {}, {}, {}],
    }
    run(opt, module, random_grads(module, 1))
    state = opt.state_dict()
    assert state["step_count"] == 1
    assert [list(s) for s in state["state"]] == [["momentum_buffer"]] * 4


def test_load_state_dict_casts_to_parameter_dtype():
    module = Params()
    opt = Adam(module)
    state = opt.state_dict()
    state["step_count"] = 1
    state["state"] = [{"exp_avg": np.ones(p.shape), "exp_avg_sq": np.ones(p.shape)}
                      for p in module.get_parameters()]
    opt.load_state_dict(state)
    assert opt.state[2]["exp_avg"].dtype == np.float32


def _mutated(original, **changes):
    state = dict(original)
    state.update(changes)
    return state


@pytest.mark.parametrize("change, message", [
    (lambda s, p: _mutated(s, state=s["state"][:3]), "4 parameters, state has 3"),
    (lambda s, p: _mutated(s, state=[{"momentum_buffer": np.zeros((9,))}] + s["state"][1:]),
     "(9,)"),
    (lambda s, p: _mutated(s, state=[{"exp_avg": np.zeros(p[0].shape)}] + s["state"][1:]),
     "exp_avg"),
    (lambda s, p: {k: v for k, v in s.items() if k != "momentum"}, "missing keys ['momentum']"),
    (lambda s, p: _mutated(s, extra=1), "unexpected keys ['extra']"),
    (lambda s, p: _mutated(s, optimizer="Adam"), "Adam"),
    (lambda s, p: _mutated(s, momentum=1.5), "1.5"),
    (lambda s, p: _mutated(s, lr=-1.0), "-1.0"),
])
def test_load_state_dict_rejects_mismatch_and_changes_nothing(change, message):
    module = Params()
    opt = SGD(module, lr=0.1, momentum=0.9)
    run(opt, module, random_grads(module, 2))
    before = opt.state_dict()
    bad = change(before, module.get_parameters())
    with pytest.raises(ValueError) as excinfo:
        opt.load_state_dict(bad)
    assert message in str(excinfo.value)
    after = opt.state_dict()
    assert after["step_count"] == before["step_count"] and after["lr"] == before["lr"]
    for s_after, s_before in zip(after["state"], before["state"]):
        np.testing.assert_array_equal(s_after["momentum_buffer"], s_before["momentum_buffer"])


# -- argument checks ------------------------------------------------------------------
@pytest.mark.parametrize("factory, bad", [
    (lambda m: SGD(m, lr=-0.1), -0.1),
    (lambda m: SGD(m, lr=0.0), 0.0),
    (lambda m: SGD(m, lr=float("nan")), float("nan")),
    (lambda m: SGD(m, lr=float("inf")), float("inf")),
    (lambda m: SGD(m, lr="0.1"), "0.1"),
    (lambda m: SGD(m, lr=True), True),
    (lambda m: SGD(m, lr=0.1, momentum=-0.5), -0.5),
    (lambda m: SGD(m, lr=0.1, momentum=1.0), 1.0),
    (lambda m: SGD(m, lr=0.1, momentum=0.9, nesterov="yes"), "yes"),
    (lambda m: SGD(m, lr=0.1, nesterov=True), "momentum=0.0"),
    (lambda m: SGD(m, lr=0.1, weight_decay=-0.01), -0.01),
    (lambda m: Adam(m, lr=-1e-3), -1e-3),
    (lambda m: Adam(m, betas=(1.0, 0.999)), 1.0),
    (lambda m: Adam(m, betas=(0.9, -0.1)), -0.1),
    (lambda m: Adam(m, betas=0.9), 0.9),
    (lambda m: Adam(m, betas=(0.9, 0.99, 0.999)), (0.9, 0.99, 0.999)),
    (lambda m: Adam(m, eps=0.0), 0.0),
    (lambda m: Adam(m, eps=-1e-8), -1e-8),
    (lambda m: Adam(m, weight_decay=float("inf")), float("inf")),
    (lambda m: AdamW(m, weight_decay=-0.01), -0.01),
    (lambda m: AdamW(m, betas=(0.9, 1.5)), 1.5),
    (lambda m: StepLR(SGD(m, lr=0.1), step_size=0), 0),
    (lambda m: StepLR(SGD(m, lr=0.1), step_size=2.5), 2.5),
    (lambda m: StepLR(SGD(m, lr=0.1), step_size=3, gamma=-0.5), -0.5),
    (lambda m: ExponentialLR(SGD(m, lr=0.1), gamma=0.0), 0.0),
    (lambda m: CosineAnnealingLR(SGD(m, lr=0.1), T_max=-3), -3),
    (lambda m: CosineAnnealingLR(SGD(m, lr=0.1), T_max=10, eta_min=-0.1), -0.1),
    (lambda m: ReduceLROnPlateau(SGD(m, lr=0.1), mode="mean"), "mean"),
    (lambda m: ReduceLROnPlateau(SGD(m, lr=0.1), factor=1.0), 1.0),
    (lambda m: ReduceLROnPlateau(SGD(m, lr=0.1), factor=0.0), 0.0),
    (lambda m: ReduceLROnPlateau(SGD(m, lr=0.1), patience=-1), -1),
    (lambda m: ReduceLROnPlateau(SGD(m, lr=0.1), threshold=-1e-4), -1e-4),
    (lambda m: ReduceLROnPlateau(SGD(m, lr=0.1), threshold_mode="relative"), "relative"),
    (lambda m: ReduceLROnPlateau(SGD(m, lr=0.1), cooldown=1.5), 1.5),
    (lambda m: ReduceLROnPlateau(SGD(m, lr=0.1), min_lr=-1.0), -1.0),
])
def test_bad_arguments_raise_value_error_naming_the_value(factory, bad):
    with pytest.raises(ValueError) as excinfo:
        factory(Params())
    expected = bad if isinstance(bad, str) and "=" in bad else repr(bad)
    assert expected in str(excinfo.value)


def test_sgd_error_message_format():
    with pytest.raises(ValueError, match=r"^SGD: lr must be a positive finite number, got -0\.1$"):
        SGD(Params(), lr=-0.1)


def test_sgd_requires_lr():
    with pytest.raises(TypeError):
        SGD(Params())


def test_optimizer_rejects_non_module_and_empty_module():
    with pytest.raises(TypeError, match="list"):
        SGD([np.zeros(3)], lr=0.1)
    with pytest.raises(ValueError, match="no parameters"):
        Adam(NoParams())


def test_schedule_rejects_non_optimizer():
    with pytest.raises(TypeError, match="str"):
        StepLR("sgd", step_size=3)


def test_lr_attribute_is_checked_but_may_reach_zero():
    opt = SGD(Params(), lr=0.1)
    opt.lr = 0.0
    assert opt.lr == 0.0
    with pytest.raises(ValueError, match="-0.5"):
        opt.lr = -0.5
    assert opt.lr == 0.0


def test_reprs():
    module = Params()
    assert repr(SGD(module, lr=0.1, momentum=0.9, nesterov=True)) == \
        "SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0)"
    assert repr(Adam(module)) == "Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.0)"
    opt = AdamW(module)
    assert repr(opt) == "AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-08, weight_decay=0.01)"
    assert repr(StepLR(opt, 30)) == "StepLR(step_size=30, gamma=0.1)"
    assert repr(ExponentialLR(opt, 0.9)) == "ExponentialLR(gamma=0.9)"
    assert repr(CosineAnnealingLR(opt, 10)) == "CosineAnnealingLR(T_max=10, eta_min=0.0)"
    assert repr(ReduceLROnPlateau(opt)) == (
        "ReduceLROnPlateau(mode='min', factor=0.1, patience=10, threshold=0.0001, "
        "threshold_mode='rel', cooldown=0, min_lr=0.0, eps=1e-08)")


def test_public_names():
    import cynn.optim
    for name in cynn.optim.__all__:
        assert hasattr(cynn.optim, name)
    assert issubclass(AdamW, Adam) and issubclass(Adam, Optimizer)
    assert issubclass(ReduceLROnPlateau, LRScheduler)


# -- schedules ------------------------------------------------------------------------
def lr_sequence(schedule, epochs, metrics=None):
    lrs = []
    for epoch in range(epochs):
        if metrics is None:
            schedule.step()
        else:
            schedule.step(metrics[epoch])
        assert schedule.get_last_lr() == schedule.optimizer.lr
        lrs.append(schedule.optimizer.lr)
    return lrs


def test_step_lr_sequence():
    opt = SGD(Params(), lr=1.0)
    schedule = StepLR(opt, step_size=3, gamma=0.5)
    assert schedule.get_last_lr() == 1.0
    np.testing.assert_allclose(lr_sequence(schedule, 8),
                               [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25], rtol=1e-15)


def test_exponential_lr_sequence():
    opt = SGD(Params(), lr=0.2)
    np.testing.assert_allclose(lr_sequence(ExponentialLR(opt, gamma=0.9), 5),
                               [0.2 * 0.9 ** k for k in range(1, 6)], rtol=1e-14)


def test_cosine_lr_sequence():
    opt = SGD(Params(), lr=1.0)
    lrs = lr_sequence(CosineAnnealingLR(opt, T_max=4, eta_min=0.2), 8)
    expected = [0.2 + 0.8 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(1, 9)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-14)
    assert lrs[3] == 0.2  # reaches eta_min exactly at T_max
    np.testing.assert_allclose(lrs[7], 1.0, rtol=1e-14)  # and climbs back after it


def test_cosine_lr_to_zero_then_optimizer_still_works():
    module = Params()
    opt = SGD(module, lr=0.1)
    schedule = CosineAnnealingLR(opt, T_max=2)
    schedule.step()
    schedule.step()
    assert opt.lr == 0.0
    before = [p.copy() for p in module.get_parameters()]
    run(opt, module, random_grads(module, 1))
    for p, b in zip(module.get_parameters(), before):
        np.testing.assert_array_equal(p, b)


def test_plateau_patience():
    opt = SGD(Params(), lr=1.0)
    schedule = ReduceLROnPlateau(opt, patience=2, factor=0.5)
    # epoch 1 improves on inf; epochs 2, 3 are bad (within patience); epoch 4 is the third
    # bad epoch in a row and triggers the reduction; the count then restarts.
    lrs = lr_sequence(schedule, 8, [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert schedule.best == 0.5 and schedule.num_bad_epochs == 0


def test_plateau_improvement_resets_count_and_threshold_counts():
    opt = SGD(Params(), lr=1.0)
    schedule = ReduceLROnPlateau(opt, patience=1, threshold=0.1)
    # 0.95 is below best but not by 10%: a bad epoch.  0.8 is a real improvement.
    lrs = lr_sequence(schedule, 4, [1.0, 0.95, 0.8, 0.79])
    assert lrs == [1.0, 1.0, 1.0, 1.0]
    assert schedule.best == 0.8 and schedule.num_bad_epochs == 1
    schedule.step(0.85)
    assert opt.lr == pytest.approx(0.1)


def test_plateau_cooldown():
    opt = SGD(Params(), lr=1.0)
    schedule = ReduceLROnPlateau(opt, patience=0, cooldown=2, factor=0.5)
    lrs = lr_sequence(schedule, 7, [1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0])
    # reduction at epoch 2, two cooldown epochs, reduction again at epoch 5.
    assert lrs == [1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]


def test_plateau_min_lr_and_max_mode():
    opt = SGD(Params(), lr=1.0)
    schedule = ReduceLROnPlateau(opt, mode="max", patience=0, factor=0.1, min_lr=0.05,
                                 threshold_mode="abs", threshold=0.01)
    lrs = lr_sequence(schedule, 5, [0.5, 0.505, 0.6, 0.6, 0.6])
    assert lrs == [1.0, 0.1, 0.1, 0.05, 0.05]


def test_plateau_rejects_nan_and_non_numbers():
    schedule = ReduceLROnPlateau(SGD(Params(), lr=1.0))
    with pytest.raises(ValueError, match="NaN"):
        schedule.step(float("nan"))
    with pytest.raises(TypeError, match="list"):
        schedule.step([1.0])
    assert schedule.last_epoch == 0
    schedule.step(np.float32(0.5))
    assert schedule.best == 0.5


@pytest.mark.parametrize("make, metrics", [
    (lambda o: StepLR(o, step_size=2, gamma=0.5), None),
    (lambda o: ExponentialLR(o, gamma=0.8), None),
    (lambda o: CosineAnnealingLR(o, T_max=5, eta_min=0.01), None),
    (lambda o: ReduceLROnPlateau(o, patience=1, cooldown=1), [3, 2, 2, 2, 2, 1, 1, 1, 1, 1]),
])
def test_schedule_state_dict_round_trip(make, metrics):
    opt = SGD(Params(), lr=0.3)
    schedule = make(opt)
    lr_sequence(schedule, 5, metrics)
    opt_state, schedule_state = opt.state_dict(), schedule.state_dict()
    rest = lr_sequence(schedule, 5, metrics and metrics[5:])

    opt2 = SGD(Params(), lr=0.3)
    schedule2 = make(opt2)
    opt2.load_state_dict(opt_state)
    schedule2.load_state_dict(schedule_state)
    assert schedule2.get_last_lr() == opt_state["lr"]
    assert lr_sequence(schedule2, 5, metrics and metrics[5:]) == rest


def test_schedule_load_state_dict_checks():
    opt = SGD(Params(), lr=0.3)
    schedule = StepLR(opt, step_size=2)
    state = schedule.state_dict()
    with pytest.raises(ValueError, match="CosineAnnealingLR"):
        CosineAnnealingLR(opt, T_max=3).load_state_dict(state)
    with pytest.raises(ValueError, match="-4"):
        schedule.load_state_dict({**state, "last_epoch": -4})
    with pytest.raises(ValueError, match=r"missing keys \['gamma'\]"):
        schedule.load_state_dict({k: v for k, v in state.items() if k != "gamma"})
    assert schedule.last_epoch == 0


# -- PyTorch parity -------------------------------------------------------------------
TORCH_REASON = "PyTorch not installed (optional extra torch==2.13.0)"

TORCH_OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.05, momentum=0.7, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.05)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.02, betas=(0.85, 0.99), weight_decay=0.2)),
]


@pytest.mark.parametrize("name, config", TORCH_OPTIMIZERS,
                         ids=[f"{n}-{i}" for i, (n, _) in enumerate(TORCH_OPTIMIZERS)])
def test_optimizer_matches_pytorch(name, config):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    module = Params(float32=False)
    tensors = [torch.tensor(p.copy(), dtype=torch.float64, requires_grad=True)
               for p in module.get_parameters()]
    ours = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[name](module, **config)
    theirs = getattr(torch.optim, name)(tensors, **config)
    for step_grads in random_grads(module, 10, seed=3):
        module.set_grads(step_grads)
        for t, g in zip(tensors, step_grads):
            t.grad = torch.from_numpy(g.copy())
        ours.step()
        theirs.step()
    for p, t in zip(module.get_parameters(), tensors):
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-10, atol=1e-12)


TORCH_SCHEDULES = [
    ("StepLR", dict(step_size=3, gamma=0.5), None),
    ("ExponentialLR", dict(gamma=0.85), None),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.01), None),
    ("CosineAnnealingLR", dict(T_max=20), None),
    ("ReduceLROnPlateau", dict(patience=2, factor=0.5, cooldown=1), "min"),
    ("ReduceLROnPlateau", dict(mode="max", patience=1, threshold=0.05, threshold_mode="abs",
                               min_lr=0.02), "max"),
]


@pytest.mark.parametrize("name, config, metric_kind", TORCH_SCHEDULES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(TORCH_SCHEDULES)])
def test_schedule_matches_pytorch(name, config, metric_kind):
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    opt = SGD(Params(), lr=0.5)
    ours = globals()[name](opt, **config)
    torch_opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    theirs = getattr(torch.optim.lr_scheduler, name)(torch_opt, **config)
    rng = np.random.default_rng(4)
    # A noisy metric that improves early and then stalls, so reductions happen.
    metrics = np.concatenate([np.linspace(1.0, 0.5, 6), 0.5 + 0.02 * rng.random(14)])
    if metric_kind == "max":
        metrics = 1.0 - metrics
    ours_lrs, theirs_lrs = [], []
    for epoch in range(20):
        torch_opt.step()
        if metric_kind is None:
            ours.step()
            theirs.step()
        else:
            ours.step(metrics[epoch])
            theirs.step(float(metrics[epoch]))
        ours_lrs.append(ours.get_last_lr())
        theirs_lrs.append(theirs.get_last_lr()[0])
    np.testing.assert_allclose(ours_lrs, theirs_lrs, rtol=1e-10, atol=1e-14)
    if metric_kind is not None:
        assert ours_lrs[-1] < 0.5, "the metric sequence should trigger a reduction"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [7, 100_000])
def test_adam_kernel_gives_the_bits_of_the_numpy_update(dtype, size):
    """The one-pass Adam kernel against the NumPy sequence it replaces (the one in
    Adam._update_parameter): the same operations in the same order and dtype, so the
    same bits, with the thread team (100,000 values) and without (7)."""
    from cynn._kernels import optim as kernel

    rng = np.random.default_rng(0)
    p = rng.standard_normal(size).astype(dtype)
    m, v = np.zeros_like(p), np.zeros_like(p)
    p2, m2, v2 = p.copy(), m.copy(), v.copy()
    lr, (b1, b2), eps = 3e-3, (0.9, 0.999), 1e-8
    for t in range(1, 6):
        g = rng.standard_normal(size).astype(dtype)
        kernel.adam_update(p, g, m, v, b1, b2, math.sqrt(1.0 - b2 ** t), eps,
                           lr / (1.0 - b1 ** t), 2)
        m2 *= b1
        m2 += g * (1.0 - b1)
        v2 *= b2
        v2 += (g * g) * (1.0 - b2)
        denom = np.sqrt(v2) / math.sqrt(1.0 - b2 ** t) + eps
        p2 -= (m2 / denom) * (lr / (1.0 - b1 ** t))
        np.testing.assert_array_equal(m, m2)
        np.testing.assert_array_equal(v, v2)
        np.testing.assert_array_equal(p, p2)
    with pytest.raises(ValueError, match="optim kernel: inconsistent parameter and state sizes"):
        kernel.adam_update(p, g[:-1].copy(), m, v, b1, b2, 1.0, eps, lr, 1)


ONE_CALL_CASES = [
    ("Adam", {}), ("Adam", {"weight_decay": 1e-2}), ("AdamW", {}), ("AdamW", {"weight_decay": 0.0}),
    ("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.1, "weight_decay": 5e-4}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name, config", ONE_CALL_CASES)
def test_one_call_step_gives_the_bits_of_the_per_parameter_update(name, config, dtype):
    """From the second step on, SGD, Adam and AdamW update every parameter in one
    kernel call (optim.adam_step / sgd_step); it must give the same bits as the
    per-parameter update it replaces, over several steps, with parameters large
    enough for the thread team (40,000 values) and small ones."""
    import cynn
    from cynn.models import small_cnn

    def run(one_call):
        model = small_cnn((1, 10, 10), 10, random_state=0, dtype=dtype)   # Linear 800x50
        opt = getattr(cynn, name)(model, **config)
        calls = []
        if one_call:
            step_all = opt._step_all
            opt._step_all = lambda: calls.append(step_all()) or calls[-1]
        else:
            opt._step_all = lambda: False
        rng = np.random.default_rng(1)
        for _ in range(4):
            for g in model.get_parameters_grad():
                g[...] = rng.standard_normal(g.shape)
            opt.step()
        return [p.copy() for p in model.get_parameters()], opt.state, calls

    fast, fast_state, calls = run(True)
    slow, slow_state, _ = run(False)
    # the first step makes the momentum and moment buffers parameter by parameter
    expected_calls = [False, True, True, True] if name != "SGD" or "momentum" in config \
        else [True] * 4
    assert calls == expected_calls
    assert max(p.size for p in fast) > 32768
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fast_state, slow_state):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_one_call_step_declines_arrays_it_cannot_take_and_changes_nothing():
    """A state array of another dtype or size, a read-only parameter or a
    non-contiguous one: adam_step and sgd_step return False before writing anything,
    and the optimizer's own step still updates every parameter (per parameter)."""
    from cynn._kernels import optim as kernel

    rng = np.random.default_rng(0)
    p = [rng.standard_normal(5).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)]
    g = [np.ones_like(a) for a in p]
    m = [np.zeros_like(a) for a in p]
    v = [np.zeros_like(a) for a in p]
    before = [a.copy() for a in p]
    args = (0.9, 0.999, 1.0, 1e-8, 1e-3, False, 0.0, False, 1.0, 1)
    odd_dtype, odd_size = [v[0], v[1].astype(np.float64)], [m[0], m[1][:2]]
    transposed = [g[0], np.ones((4, 3), np.float32).T]
    for case in [(p, g, m, odd_dtype), (p, g, odd_size, v), (p, transposed, m, v),
                 (p, g[:1], m, v)]:
        assert kernel.adam_step(*case, *args) is False
    for case in [(p, g, odd_dtype), (p, g, odd_size), (p, transposed, None), (p, g[:1], None)]:
        assert kernel.sgd_step(*case, 0.1, 0.9, False, False, 0.0, 1) is False
    frozen = p[1].copy()
    frozen.flags.writeable = False
    assert kernel.adam_step([p[0], frozen], g, m, v, *args) is False
    assert kernel.sgd_step([p[0], frozen], g, None, 0.1, 0.0, False, False, 0.0, 1) is False
    for a, b in zip(p, before):
        np.testing.assert_array_equal(a, b)
    for a in m + v:
        assert not a.any()
    assert kernel.adam_step(p, g, m, v, *args) is True
    assert all((a != b).all() for a, b in zip(p, before))
