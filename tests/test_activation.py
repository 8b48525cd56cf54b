"""Activations: gradient checks, dtypes, stability at large inputs, bad input, PyTorch parity."""
import warnings

import numpy as np
import pytest

import cynn

ELEMENTWISE = [cynn.ReLU, cynn.LeakyReLU, cynn.ELU, cynn.SoftPlus, cynn.Sigmoid, cynn.Tanh]
ROWWISE = [cynn.SoftMax, cynn.LogSoftMax]


def _away_from_kinks(rng, shape):
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


@pytest.mark.parametrize("cls", ELEMENTWISE + ROWWISE)
def test_gradcheck(cls, rng):
    assert cynn.gradcheck(cls(), _away_from_kinks(rng, (4, 6)))


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_gradcheck_on_images(cls, rng):
    assert cynn.gradcheck(cls(), _away_from_kinks(rng, (2, 3, 2, 2)))


@pytest.mark.parametrize("cls", ELEMENTWISE + ROWWISE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(cls, dtype, rng):
    layer = cls()
    x = rng.standard_normal((3, 4)).astype(dtype)
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == x.shape
    assert layer.backward(x, np.ones_like(y)).dtype == dtype


@pytest.mark.parametrize("cls", ELEMENTWISE + ROWWISE)
def test_large_inputs_are_finite_without_warnings(cls):
    x = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, 1e4, 1e4]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        layer = cls()
        y = layer.forward(x)
        dx = layer.backward(x, np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(dx).all()


def test_known_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_allclose(cynn.ReLU().forward(x), [[0, 0, 3]])
    np.testing.assert_allclose(cynn.LeakyReLU(0.1).forward(x), [[-0.2, 0, 3]])
    np.testing.assert_allclose(cynn.ELU(2.0).forward(x), [[2 * (np.exp(-2) - 1), 0, 3]])
    np.testing.assert_allclose(cynn.Sigmoid().forward(x), 1 / (1 + np.exp(-x)))
    np.testing.assert_allclose(cynn.SoftPlus().forward(x), np.log1p(np.exp(x)))
    np.testing.assert_allclose(cynn.SoftMax().forward(x).sum(), 1.0)
    np.testing.assert_allclose(cynn.LogSoftMax().forward(np.array([[1e4, 1e4]])), [[-np.log(2)] * 2])


def test_backward_recomputes_for_a_different_input(rng):
    layer = cynn.Tanh()
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    layer.forward(a)
    np.testing.assert_allclose(layer.backward(b, np.ones_like(b)), 1 - np.tanh(b) ** 2)


@pytest.mark.parametrize("bad,exc,pattern", [
    (np.array([[1 + 1j]]), TypeError, "real numeric"),
    (np.array([["a"]]), TypeError, "real numeric"),
    (np.zeros((0, 3)), ValueError, "empty batch"),
])
def test_bad_input(bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        cynn.ReLU().forward(bad)


def test_softmax_needs_2d_input():
    with pytest.raises(ValueError, match=r"2-D input.*\(2, 3, 4\)"):
        cynn.SoftMax().forward(np.zeros((2, 3, 4)))


def test_gradient_shape_mismatch_is_reported(rng):
    layer = cynn.Sigmoid()
    x = rng.standard_normal((2, 3))
    layer.forward(x)
    with pytest.raises(ValueError, match=r"\(2, 3\), got \(3, 2\)"):
        layer.backward(x, np.zeros((3, 2)))


@pytest.mark.parametrize("make,pattern", [
    (lambda: cynn.LeakyReLU(float("inf")), "slope must be a finite number"),
    (lambda: cynn.ELU("1"), "alpha must be a finite number"),
])
def test_bad_arguments(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_repr():
    assert repr(cynn.ReLU()) == "ReLU()"
    assert repr(cynn.LeakyReLU()) == "LeakyReLU(slope=0.03)"
    assert repr(cynn.ELU(0.5)) == "ELU(alpha=0.5)"


@pytest.mark.parametrize("ours,theirs", [
    (lambda: cynn.ReLU(), "ReLU()"),
    (lambda: cynn.LeakyReLU(0.03), "LeakyReLU(negative_slope=0.03)"),
    (lambda: cynn.ELU(1.3), "ELU(alpha=1.3)"),
    (lambda: cynn.SoftPlus(), "Softplus()"),
    (lambda: cynn.Sigmoid(), "Sigmoid()"),
    (lambda: cynn.Tanh(), "Tanh()"),
    (lambda: cynn.SoftMax(), "Softmax(dim=1)"),
    (lambda: cynn.LogSoftMax(), "LogSoftmax(dim=1)"),
])
def test_matches_pytorch(ours, theirs, rng):
    torch = pytest.importorskip("torch", reason="PyTorch not installed (optional extra: torch==2.13.0)")
    x = rng.standard_normal((5, 7)) * 3
    dy = rng.standard_normal((5, 7))
    layer = ours()
    tx = torch.tensor(x, requires_grad=True)
    ty = eval(f"torch.nn.{theirs}")(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.backward(x, dy), tx.grad.numpy(), rtol=1e-6, atol=1e-6)
