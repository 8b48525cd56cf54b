"""Gradient clipping: cynn.clip_grad_norm against torch.nn.utils.clip_grad_norm_, the
Trainer callback and the estimators' clip_grad_norm parameter."""
import math

import numpy as np
import pytest

import cynn
from cynn.trainers import Callback, GradientClipping, NeuralNetClassifier, Trainer


def _grads(seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(dtype) for shape in [(16, 3, 3, 3), (16,), (10, 64)]]


@pytest.mark.parametrize("max_norm", [0.5, 3.0, 1e3])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.5, math.inf])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_pytorch(max_norm, norm_type, dtype):
    torch = pytest.importorskip("torch")
    grads = _grads(0, dtype)
    tensors = [torch.zeros(g.shape, dtype=torch.float64 if dtype == np.float64 else torch.float32,
                           requires_grad=True) for g in grads]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g.copy())
    expected_norm = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type))
    norm = cynn.clip_grad_norm(grads, max_norm, norm_type=norm_type)
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert norm == pytest.approx(expected_norm, rel=rtol)
    for t, g in zip(tensors, grads):
        assert g.dtype == dtype
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=10 * rtol, atol=0)


def test_clips_a_module_in_place_and_keeps_the_direction():
    model = cynn.Sequential(cynn.Linear(5, 4), cynn.ReLU(), cynn.Linear(4, 2))
    x = np.random.default_rng(1).standard_normal((8, 5)).astype(np.float32)
    model.forward(x)
    model.backward(x, np.full((8, 2), 10.0, np.float32))
    live = model.get_parameters_grad()
    before = [g.copy() for g in live]
    norm = cynn.clip_grad_norm(model, 1.0)
    assert norm == pytest.approx(math.sqrt(sum(float((g.astype(np.float64) ** 2).sum())
                                               for g in before)), rel=1e-6)
    assert norm > 1.0
    after = math.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in live))
    assert after == pytest.approx(1.0, rel=1e-5)
    for b, g in zip(before, live):
        np.testing.assert_allclose(g, b * (1.0 / (norm + 1e-6)), rtol=1e-6)
    # Under the limit nothing changes, bit for bit.
    again = [g.copy() for g in live]
    cynn.clip_grad_norm(model, 10.0)
    for a, g in zip(again, live):
        np.testing.assert_array_equal(a, g)


def test_non_finite_norms():
    grads = _grads(2)
    grads[1][3] = np.inf
    kept = [g.copy() for g in grads]
    with pytest.raises(RuntimeError, match="total norm of order 2.0 of the gradients is inf"):
        cynn.clip_grad_norm(grads, 1.0, error_if_nonfinite=True)
    for k, g in zip(kept, grads):
        np.testing.assert_array_equal(k, g)
    # As PyTorch: an infinite norm scales by 0 (inf * 0 is NaN), a NaN norm by NaN.
    assert cynn.clip_grad_norm(grads, 1.0) == math.inf
    assert not grads[0].any() and np.isnan(grads[1][3])
    grads = _grads(3)
    grads[2][0, 0] = np.nan
    assert math.isnan(cynn.clip_grad_norm(grads, 1.0))
    assert np.isnan(grads[0]).all()


@pytest.mark.parametrize("kwargs,error,message", [
    ({"max_norm": 0}, ValueError, "max_norm"),
    ({"max_norm": -1}, ValueError, "max_norm"),
    ({"max_norm": 1, "norm_type": 0.5}, ValueError, "norm_type must be a number >= 1 or "
                                                    "math.inf, got 0.5"),
    ({"max_norm": 1, "norm_type": "fro"}, ValueError, "got 'fro'"),
])
def test_bad_arguments_name_the_value(kwargs, error, message):
    with pytest.raises(error, match=message):
        cynn.clip_grad_norm(_grads(0), **kwargs)
    with pytest.raises(error, match=message):
        GradientClipping(**kwargs)
    with pytest.raises(TypeError, match="gradient 0 must be a floating-point ndarray, got int64"):
        cynn.clip_grad_norm([np.arange(3)], 1.0)


def _step_sizes(clip):
    """Per-step parameter change norms of SGD(lr=1) on a model with huge gradients."""
    cynn.manual_seed(0)
    model = cynn.Sequential(cynn.Linear(6, 8), cynn.Tanh(), cynn.Linear(8, 3))
    rng = np.random.default_rng(0)
    X = (100 * rng.standard_normal((64, 6))).astype(np.float32)
    y = rng.integers(0, 3, 64)
    sizes = []

    class Watch(Callback):
        def on_batch_begin(self, trainer, batch):
            self.before = [p.copy() for p in trainer.model.get_parameters()]

        def on_batch_end(self, trainer, batch, logs):
            sizes.append(math.sqrt(sum(float(((p - b).astype(np.float64) ** 2).sum())
                                       for p, b in zip(trainer.model.get_parameters(),
                                                       self.before))))

    callbacks = [Watch()] + ([GradientClipping(clip)] if clip else [])
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.SGD(model, lr=1.0),
                      callbacks=callbacks, batch_size=16, verbose=0, random_state=0)
    trainer.fit((X, y), epochs=1)
    return sizes, callbacks[-1]


def test_the_callback_clips_between_backward_and_step():
    clipped, callback = _step_sizes(0.01)
    # SGD with lr=1: each step moves the parameters by exactly the clipped gradient.
    assert len(clipped) == 4 and max(clipped) <= 0.01 * (1 + 1e-5)
    assert callback.last_norm > 0.01
    free, _ = _step_sizes(None)
    assert max(free) > 0.1


def test_estimator_clip_grad_norm():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    clipped = NeuralNetClassifier(module="mlp", max_epochs=2, clip_grad_norm=1e-4, optimizer="sgd",
                                  lr=1.0, momentum=0.0, random_state=0).fit(X, y)
    free = NeuralNetClassifier(module="mlp", max_epochs=2, optimizer="sgd", lr=1.0, momentum=0.0,
                               random_state=0).fit(X, y)
    start = NeuralNetClassifier(module="mlp", max_epochs=1, optimizer="sgd", lr=1e-12,
                                momentum=0.0, random_state=0).fit(X, y)
    moved = [np.abs(a.module_.get_parameters()[0] - start.module_.get_parameters()[0]).max()
             for a in (clipped, free)]
    # 2 epochs x 1 batch of 60 (batch_size 64): two steps of at most 1e-4 each.
    assert moved[0] <= 2e-4 * (1 + 1e-4) < moved[1]
    with pytest.raises(ValueError, match="clip_grad_norm"):
        NeuralNetClassifier(clip_grad_norm=-1.0).fit(X, y)
    assert NeuralNetClassifier(clip_grad_norm=0.5).get_params()["clip_grad_norm"] == 0.5
