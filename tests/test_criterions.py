"""Criterions: gradient checks with label, one-hot and probability targets, exact values,
dtypes, stability at logits of 1e4, bad input and targets, and parity with PyTorch."""
import re
import warnings

import numpy as np
import pytest

from cynn.criterions import (ClassNLLCriterion, ClassNLLCriterionUnstable, Criterion,
                             CrossEntropyCriterion, MSECriterion)
from cynn.gradcheck import check_criterion
from cynn.layers.activation import LogSoftMax, SoftMax

ALL = [MSECriterion, ClassNLLCriterionUnstable, ClassNLLCriterion, CrossEntropyCriterion]
CLASSIFICATION = [ClassNLLCriterionUnstable, ClassNLLCriterion, CrossEntropyCriterion]
LABELS = np.array([0, 3, 1, 1, 2, 0])


def _inputs(cls, rng, shape=(6, 4)):
    """What each criterion is normally fed: probabilities, log-probabilities or logits."""
    logits = rng.standard_normal(shape) * 2
    if cls is ClassNLLCriterionUnstable:
        return SoftMax().forward(logits)
    if cls is ClassNLLCriterion:
        return LogSoftMax().forward(logits)
    return logits


def _reference_loss(cls, x, t):
    """Each loss written out naively in float64, for one-hot/probability targets t."""
    n = x.shape[0]
    if cls is MSECriterion:
        return np.sum((x - t) ** 2) / n
    if cls is ClassNLLCriterionUnstable:
        return -np.sum(t * np.log(np.clip(x, 1e-15, 1 - 1e-15))) / n
    if cls is ClassNLLCriterion:
        return -np.sum(t * x) / n
    return -np.sum(t * (x - np.log(np.exp(x).sum(axis=1, keepdims=True)))) / n


# -- gradients -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_gradcheck_with_labels_one_hot_and_probability_targets(cls, rng):
    x = _inputs(cls, rng)
    assert check_criterion(cls(), x, LABELS)
    assert check_criterion(cls(), x, np.eye(4)[LABELS])
    assert check_criterion(cls(), x, rng.dirichlet(np.ones(4), size=6))


@pytest.mark.parametrize("shape", [(5,), (3, 2, 4, 4)])
def test_mse_gradcheck_on_other_shapes(shape, rng):
    assert check_criterion(MSECriterion(), rng.standard_normal(shape), rng.standard_normal(shape))


@pytest.mark.parametrize("cls", ALL)
def test_labels_and_one_hot_rows_are_the_same_target(cls, rng):
    x = _inputs(cls, rng)
    onehot = np.eye(4)[LABELS]
    crit = cls()
    assert crit.forward(x, LABELS) == pytest.approx(crit.forward(x, onehot), rel=1e-14)
    np.testing.assert_allclose(crit.backward(x, LABELS), crit.backward(x, onehot), rtol=1e-14)
    for labels in (LABELS.tolist(), LABELS.astype(np.uint8), LABELS.astype(np.int32)):
        assert crit.forward(x, labels) == crit.forward(x, LABELS)


# -- values ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_loss_matches_the_formula(cls, rng):
    x = _inputs(cls, rng)
    soft = rng.dirichlet(np.ones(4), size=6)
    for t in (np.eye(4)[LABELS], soft):
        assert cls().forward(x, t) == pytest.approx(_reference_loss(cls, x, t), rel=1e-12)


def test_known_values():
    x = np.array([[1.0, 2.0], [0.0, -1.0]])
    # MSE divides by N = 2, not by the 4 elements.
    assert MSECriterion().forward(x, np.zeros((2, 2))) == pytest.approx(6 / 2, rel=1e-15)
    # Labels [1, 0] are the one-hot rows [[0, 1], [1, 0]]: squared errors 1 + 1 + 1 + 1.
    assert MSECriterion().forward(x, [1, 0]) == pytest.approx(4 / 2, rel=1e-15)
    logp = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    expected = -(np.log(0.5) + np.log(0.1)) / 2
    assert ClassNLLCriterion().forward(logp, [0, 1]) == pytest.approx(expected, rel=1e-15)
    assert ClassNLLCriterionUnstable().forward(np.exp(logp), [0, 1]) == pytest.approx(expected, rel=1e-14)
    # Equal logits: every class has probability 1/C.
    assert CrossEntropyCriterion().forward(np.zeros((3, 5)), [0, 4, 2]) == pytest.approx(np.log(5), rel=1e-15)


def test_cross_entropy_gradient_is_softmax_minus_target_over_n(rng):
    x = rng.standard_normal((5, 3)) * 3
    t = rng.dirichlet(np.ones(3), size=5)
    softmax = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(CrossEntropyCriterion().backward(x, t), (softmax - t) / 5, rtol=1e-12, atol=1e-15)


def test_cross_entropy_equals_log_softmax_then_nll(rng):
    x = rng.standard_normal((6, 4)) * 3
    log_softmax, nll, fused = LogSoftMax(), ClassNLLCriterion(), CrossEntropyCriterion()
    logp = log_softmax.forward(x)
    assert fused.forward(x, LABELS) == pytest.approx(nll.forward(logp, LABELS), rel=1e-14)
    chained = log_softmax.backward(x, nll.backward(logp, LABELS))
    np.testing.assert_allclose(fused.backward(x, LABELS), chained, rtol=1e-12, atol=1e-16)


def test_mse_gradient(rng):
    x, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    np.testing.assert_allclose(MSECriterion().backward(x, t), 2 * (x - t) / 4, rtol=1e-15)


@pytest.mark.parametrize("cls", ALL)
def test_forward_returns_a_python_float_and_call_is_forward(cls, rng):
    x = _inputs(cls, rng).astype(np.float32)
    crit = cls()
    loss = crit.forward(x, LABELS)
    assert type(loss) is float
    assert crit(x, LABELS) == loss
    grad = crit.backward(x, LABELS)
    assert crit._output == loss and crit._input_grad is grad


# -- dtypes ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradient_keeps_the_input_dtype(cls, dtype, rng):
    x64 = _inputs(cls, rng)
    x = x64.astype(dtype)
    crit = cls()
    for target in (LABELS, np.eye(4)[LABELS], np.eye(4, dtype=np.float32)[LABELS]):
        grad = crit.backward(x, target)
        assert grad.dtype == dtype and grad.shape == x.shape
        tol = 1e-5 if dtype == np.float32 else 0
        np.testing.assert_allclose(grad, cls().backward(x64, target), rtol=tol, atol=tol)
        assert crit.forward(x, target) == pytest.approx(cls().forward(x64, target), rel=max(tol, 1e-15))


@pytest.mark.parametrize("cls", ALL)
def test_integer_input_gives_a_float64_gradient(cls):
    x = np.array([[0, 1, 1], [1, 0, 0]])
    assert cls().backward(x, [1, 0]).dtype == np.float64


# -- stability -------------------------------------------------------------------------
HUGE = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, 1e4], [-1e4, -1e4, -1e4]])
HUGE_LABELS = np.array([0, 1, 2])


def _strict():
    """Overflow, division by zero and invalid operations are errors; underflow of
    exp(-2e4) to 0 is the correctly rounded result and allowed."""
    warnings.simplefilter("error")
    return np.errstate(over="raise", divide="raise", invalid="raise")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_exact_for_logits_of_1e4(dtype):
    x = HUGE.astype(dtype)
    crit = CrossEntropyCriterion()
    with warnings.catch_warnings(), _strict():
        loss = crit.forward(x, HUGE_LABELS)
        grad = crit.backward(x, HUGE_LABELS)
        soft_loss = crit.forward(x, np.eye(3)[HUGE_LABELS])
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx((0 + np.log(2) + np.log(3)) / 3, rel=1e-6)
    assert soft_loss == pytest.approx(loss, rel=1e-6)
    expected = np.array([[0, 0, 0], [0, -0.5, 0.5], [1 / 3, 1 / 3, -2 / 3]]) / 3
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_cross_entropy_of_a_confidently_wrong_prediction_is_the_logit_gap():
    with warnings.catch_warnings(), _strict():
        loss = CrossEntropyCriterion().forward(np.array([[1e4, -1e4]]), [1])
    assert loss == 2e4


def test_log_softmax_then_nll_is_stable_for_logits_of_1e4():
    with warnings.catch_warnings(), _strict():
        logp = LogSoftMax().forward(HUGE)
        loss = ClassNLLCriterion().forward(logp, HUGE_LABELS)
    assert loss == pytest.approx((0 + np.log(2) + np.log(3)) / 3, rel=1e-12)


def test_nll_ignores_minus_infinity_where_the_target_is_zero():
    logp = np.array([[0.0, -np.inf], [-np.inf, np.log(0.25)]])
    for target in ([0, 1], np.array([[1.0, 0.0], [0.0, 1.0]])):
        with warnings.catch_warnings(), _strict():
            loss = ClassNLLCriterion().forward(logp, target)
        assert loss == pytest.approx(np.log(4) / 2, rel=1e-15)


def test_unstable_nll_clips_probabilities_of_zero_and_one():
    p = np.array([[0.0, 1.0], [1.0, 0.0]])
    crit = ClassNLLCriterionUnstable()
    with warnings.catch_warnings(), _strict():
        loss = crit.forward(p, [0, 0])
        grad = crit.backward(p, [0, 0])
    # -log(1e-15) for the impossible class, -log(1 - 1e-15) ~ 1e-15 for the sure one.
    assert loss == pytest.approx((-np.log(1e-15) - np.log1p(-1e-15)) / 2, rel=1e-12)
    # The clipped region is flat: no gradient flows through it.
    np.testing.assert_array_equal(grad, np.zeros((2, 2)))


def test_unstable_nll_in_float32_uses_the_float64_clip():
    # 1 - 1e-15 rounds to 1 in float32; the loss of a certain prediction stays ~1e-15.
    loss = ClassNLLCriterionUnstable().forward(np.array([[1.0, 0.0]], dtype=np.float32), [0])
    assert 0 < loss < 1e-14


# -- bad input and targets -------------------------------------------------------------
@pytest.mark.parametrize("cls", CLASSIFICATION + [MSECriterion])
@pytest.mark.parametrize("target,exc,pattern", [
    (np.array([0, 3]), ValueError, r"label 3 out of range \[0, 3\) for input of shape \(2, 3\)"),
    (np.array([-1, 0]), ValueError, r"label -1 out of range \[0, 3\)"),
    (np.array([0, 1, 2]), ValueError, r"target shape \(3,\) does not match input shape \(2, 3\)"),
    (np.zeros((2, 4)), ValueError, r"target shape \(2, 4\) does not match input shape \(2, 3\)"),
    (np.zeros((3, 3)), ValueError, r"target shape \(3, 3\) does not match input shape \(2, 3\)"),
    (np.array([0.0, 1.0]), ValueError, r"target shape \(2,\) does not match .*integer dtype, got float64"),
    (np.array(["a", "b"]), TypeError, r"real numeric array as target, got dtype <U1"),
    (np.zeros((2, 3), dtype=complex), TypeError, r"target, got dtype complex128"),
    (np.array([None, 1], dtype=object), TypeError, r"target, got dtype object"),
])
def test_bad_targets_are_named(cls, target, exc, pattern):
    crit = cls()
    with pytest.raises(exc, match=pattern):
        crit.forward(np.full((2, 3), 0.3), target)
    with pytest.raises(exc, match=pattern):
        crit.backward(np.full((2, 3), 0.3), target)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("bad,exc,pattern", [
    (np.array([[1j, 0]]), TypeError, r"real numeric .*complex128"),
    (np.array([[object(), 0]], dtype=object), TypeError, r"real numeric .*object"),
    (np.zeros((0, 2)), ValueError, r"empty batch \(shape \(0, 2\)\)"),
])
def test_bad_input_is_named(cls, bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        cls().forward(bad, np.zeros(bad.shape[0], dtype=int))


@pytest.mark.parametrize("cls", CLASSIFICATION)
@pytest.mark.parametrize("shape", [(3,), (2, 3, 4)])
def test_classification_criterions_need_2d_input(cls, shape):
    pattern = re.escape(f"{cls.__name__} expected 2-D input (N, C), got shape {shape}")
    with pytest.raises(ValueError, match=pattern):
        cls().forward(np.zeros(shape), np.zeros(shape[0], dtype=int))


def test_mse_shape_rules(rng):
    # Regression outputs (N, 1) against targets (N,) would broadcast to (N, N) in NumPy.
    with pytest.raises(ValueError, match=r"target shape \(4,\) does not match input shape \(4, 1\)"):
        MSECriterion().forward(rng.standard_normal((4, 1)), rng.standard_normal(4))
    with pytest.raises(ValueError, match=r"target shape \(2, 3\) does not match input shape \(2, 3, 1\)"):
        MSECriterion().forward(np.zeros((2, 3, 1)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="0-d array"):
        MSECriterion().forward(np.float64(1.0), np.float64(0.0))
    # 1-D input with integer targets of the same shape is plain regression.
    assert MSECriterion().forward(np.array([1.0, 2.0]), np.array([0, 0])) == pytest.approx(2.5)


# -- the base class --------------------------------------------------------------------
def test_criterion_subclass_only_writes_the_hooks():
    class AbsSum(Criterion):
        def _compute_output(self, input, target):
            return np.abs(input - target).sum()

        def _compute_input_grad(self, input, target):
            return np.sign(input - target)

    crit = AbsSum()
    x, t = np.array([[1.0, -2.0]]), np.array([[0.0, 0.0]])
    assert crit(x, t) == 3.0 and type(crit(x, t)) is float
    np.testing.assert_array_equal(crit.backward(x, t), [[1.0, -1.0]])
    assert repr(crit) == "AbsSum()"
    with pytest.raises(NotImplementedError, match="Criterion does not implement _compute_output"):
        Criterion().forward(x, t)


def test_repr():
    assert [repr(cls()) for cls in ALL] == [
        "MSECriterion()", "ClassNLLCriterionUnstable()", "ClassNLLCriterion()", "CrossEntropyCriterion()"]


# -- PyTorch parity --------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch", reason="PyTorch not installed (optional extra torch==2.13.0)")


def _torch_loss(cls, torch, z, target):
    """PyTorch's equivalent of ``cls()`` on input ``z`` (a tensor) and a numpy target."""
    F = torch.nn.functional
    n, n_classes = z.shape
    if target.ndim == 1:
        labels = torch.tensor(target)
        dense = F.one_hot(labels, n_classes).double()
    else:
        labels = torch.tensor(target.argmax(axis=1))  # only used for one-hot rows
        dense = torch.tensor(target)
    if cls is MSECriterion:
        return F.mse_loss(z, dense, reduction="sum") / n
    if cls is CrossEntropyCriterion:
        return F.cross_entropy(z, labels if target.ndim == 1 else dense)
    if cls is ClassNLLCriterion:
        return F.nll_loss(z, labels)
    return F.nll_loss(torch.log(torch.clamp(z, 1e-15, 1 - 1e-15)), labels)


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("target_kind", ["labels", "one-hot"])
def test_matches_pytorch(cls, target_kind, rng):
    torch = _torch()
    x = _inputs(cls, rng, (7, 5)) * (3 if cls in (MSECriterion, CrossEntropyCriterion) else 1)
    labels = rng.integers(0, 5, size=7)
    target = labels if target_kind == "labels" else np.eye(5)[labels]
    tz = torch.tensor(x, requires_grad=True)
    reference = _torch_loss(cls, torch, tz, target)
    reference.backward()
    crit = cls()
    assert crit.forward(x, target) == pytest.approx(reference.item(), rel=1e-10, abs=1e-12)
    np.testing.assert_allclose(crit.backward(x, target), tz.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [CrossEntropyCriterion, MSECriterion])
def test_matches_pytorch_with_probability_targets(cls, rng):
    torch = _torch()
    x = rng.standard_normal((6, 4)) * 3
    probs = rng.dirichlet(np.ones(4), size=6)
    tz = torch.tensor(x, requires_grad=True)
    reference = _torch_loss(cls, torch, tz, probs)
    reference.backward()
    assert cls().forward(x, probs) == pytest.approx(reference.item(), rel=1e-10)
    np.testing.assert_allclose(cls().backward(x, probs), tz.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_unstable_nll_matches_pytorch_where_probabilities_are_clipped():
    torch = _torch()
    p = np.array([[0.0, 1.0, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    labels = np.array([0, 2, 0])
    tz = torch.tensor(p, requires_grad=True)
    reference = _torch_loss(ClassNLLCriterionUnstable, torch, tz, labels)
    reference.backward()
    crit = ClassNLLCriterionUnstable()
    assert crit.forward(p, labels) == pytest.approx(reference.item(), rel=1e-12)
    np.testing.assert_allclose(crit.backward(p, labels), tz.grad.numpy(), rtol=1e-12, atol=0)


def test_cross_entropy_matches_pytorch_at_logits_of_1e4():
    torch = _torch()
    tz = torch.tensor(HUGE, requires_grad=True)
    reference = torch.nn.functional.cross_entropy(tz, torch.tensor(HUGE_LABELS))
    reference.backward()
    crit = CrossEntropyCriterion()
    assert crit.forward(HUGE, HUGE_LABELS) == pytest.approx(reference.item(), rel=1e-12)
    np.testing.assert_allclose(crit.backward(HUGE, HUGE_LABELS), tz.grad.numpy(), rtol=1e-12, atol=1e-15)
