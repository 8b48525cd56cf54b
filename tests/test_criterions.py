"""Criterions: gradient checks, targets as labels or one-hot, stability, bad input, PyTorch parity."""
import warnings

import numpy as np
import pytest

import cynn

ALL = [cynn.MSECriterion, cynn.ClassNLLCriterionUnstable, cynn.ClassNLLCriterion, cynn.CrossEntropyCriterion]


def _inputs(cls, rng, shape=(6, 4)):
    if cls is cynn.ClassNLLCriterionUnstable:
        return rng.uniform(0.05, 0.95, shape)
    return rng.standard_normal(shape)


@pytest.mark.parametrize("cls", ALL)
def test_gradcheck_with_labels_and_one_hot(cls, rng):
    x = _inputs(cls, rng)
    labels = np.array([0, 3, 1, 1, 2, 0])
    onehot = np.eye(4)[labels]
    assert cynn.check_criterion(cls(), x, labels)
    assert cynn.check_criterion(cls(), x, onehot)
    assert cls().forward(x, labels) == pytest.approx(cls().forward(x, onehot), rel=1e-12)


def test_known_values(rng):
    x = rng.standard_normal((3, 2))
    t = rng.standard_normal((3, 2))
    assert cynn.MSECriterion().forward(x, t) == pytest.approx(np.sum((x - t) ** 2) / 3)
    logp = np.log(np.array([[0.5, 0.5], [0.9, 0.1]]))
    assert cynn.ClassNLLCriterion().forward(logp, np.array([0, 1])) == pytest.approx(
        -(np.log(0.5) + np.log(0.1)) / 2)


def test_loss_is_a_python_float(rng):
    loss = cynn.CrossEntropyCriterion().forward(rng.standard_normal((2, 3)).astype(np.float32), [0, 2])
    assert type(loss) is float


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls", ALL)
def test_gradient_keeps_input_dtype(cls, dtype, rng):
    x = _inputs(cls, rng).astype(dtype)
    assert cls().backward(x, np.array([0, 1, 2, 3, 0, 1])).dtype == dtype


def test_cross_entropy_is_stable_for_huge_logits():
    x = np.array([[1e4, -1e4, 0.0], [0.0, 1e4, 1e4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        crit = cynn.CrossEntropyCriterion()
        loss = crit.forward(x, [0, 1])
        grad = crit.backward(x, [0, 1])
    assert loss == pytest.approx(np.log(2) / 2)
    np.testing.assert_allclose(grad, [[0, 0, 0], [0, -0.25, 0.25]], atol=1e-12)


def test_unstable_nll_clips_probabilities():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = cynn.ClassNLLCriterionUnstable().forward(np.array([[0.0, 1.0]]), [0])
    assert loss == pytest.approx(-np.log(1e-15))


@pytest.mark.parametrize("target,exc,pattern", [
    (np.array([0, 5]), ValueError, "label 5 out of range for 3 classes"),
    (np.array([0, -1]), ValueError, "label -1 out of range"),
    (np.array([0, 1, 2]), ValueError, "2 rows but target has 3 labels"),
    (np.zeros((2, 4)), ValueError, r"target shape \(2, 4\) does not match input shape \(2, 3\)"),
    (np.array(["a", "b"]), TypeError, "numeric targets"),
    (np.array([0.5, 1.0]), ValueError, "integer class labels"),
])
def test_bad_targets(target, exc, pattern):
    with pytest.raises(exc, match=pattern):
        cynn.CrossEntropyCriterion().forward(np.zeros((2, 3)), target)


def test_bad_input():
    with pytest.raises(ValueError, match="empty batch"):
        cynn.CrossEntropyCriterion().forward(np.zeros((0, 3)), np.zeros(0, int))
    with pytest.raises(TypeError, match="real numeric"):
        cynn.MSECriterion().forward(np.array([[1j]]), np.array([[1.0]]))
    with pytest.raises(ValueError, match=r"2-D input, got shape \(3,\)"):
        cynn.ClassNLLCriterion().forward(np.zeros(3), np.zeros(3, int))


def test_matches_pytorch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch not installed (optional extra: torch==2.13.0)")
    F = torch.nn.functional
    x = rng.standard_normal((6, 4)) * 3
    labels = np.array([0, 3, 1, 1, 2, 0])
    t_labels = torch.tensor(labels)
    probs = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    soft_targets = rng.dirichlet(np.ones(4), size=6)
    cases = [
        (cynn.CrossEntropyCriterion(), x, labels, lambda z: F.cross_entropy(z, t_labels)),
        (cynn.CrossEntropyCriterion(), x, soft_targets,
         lambda z: F.cross_entropy(z, torch.tensor(soft_targets))),
        (cynn.ClassNLLCriterion(), np.log(probs), labels, lambda z: F.nll_loss(z, t_labels)),
        (cynn.ClassNLLCriterionUnstable(), probs, labels,
         lambda z: F.nll_loss(torch.log(torch.clamp(z, 1e-15, 1 - 1e-15)), t_labels)),
        (cynn.MSECriterion(), x, soft_targets,
         lambda z: F.mse_loss(z, torch.tensor(soft_targets), reduction="sum") / 6),
    ]
    for crit, inp, target, reference in cases:
        tz = torch.tensor(inp, requires_grad=True)
        tl = reference(tz)
        tl.backward()
        assert crit.forward(inp, target) == pytest.approx(tl.item(), rel=1e-6, abs=1e-6), crit
        np.testing.assert_allclose(crit.backward(inp, target), tz.grad.numpy(), rtol=1e-6, atol=1e-6)
