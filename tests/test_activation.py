"""Activations: gradient checks, exact values, dtypes, stability at |x| = 1e4, bad input,
the forward/backward pairing, and parity with PyTorch."""
import pickle
import re
import warnings

import numpy as np
import pytest

from cynn.gradcheck import gradcheck
from cynn.layers.activation import (ELU, LeakyReLU, LogSoftMax, ReLU, Sigmoid, SoftMax,
                                    SoftPlus, Tanh)

ELEMENTWISE = [ReLU, LeakyReLU, ELU, SoftPlus, Sigmoid, Tanh]
ROWWISE = [SoftMax, LogSoftMax]
ALL = ELEMENTWISE + ROWWISE


def _away_from_kinks(rng, shape, scale=1.0):
    """Standard normal values, none within 0.05 of 0 (the kink of ReLU/LeakyReLU/ELU),
    so that central differences do not straddle it."""
    x = rng.standard_normal(shape) * scale
    return np.where(np.abs(x) < 0.05, 0.5, x)


def _reference(layer, x):
    """Naive float64 formulas (fine at moderate inputs) for the expected outputs."""
    name = type(layer).__name__
    if name == "ReLU":
        return np.where(x > 0, x, 0.0)
    if name == "LeakyReLU":
        return np.where(x > 0, x, layer.slope * x)
    if name == "ELU":
        return np.where(x > 0, x, layer.alpha * (np.exp(x) - 1))
    if name == "SoftPlus":
        return np.log(1 + np.exp(x))
    if name == "Sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "Tanh":
        return (np.exp(x) - np.exp(-x)) / (np.exp(x) + np.exp(-x))
    e = np.exp(x)
    softmax = e / e.sum(axis=1, keepdims=True)
    return softmax if name == "SoftMax" else np.log(softmax)


def _non_default(cls):
    """An instance with a non-default argument where the class takes one."""
    return {LeakyReLU: lambda: LeakyReLU(0.2), ELU: lambda: ELU(1.7)}.get(cls, cls)()


# -- gradients -------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_gradcheck_default_and_non_default_arguments(cls, rng):
    x = _away_from_kinks(rng, (4, 6), scale=2.0)
    assert gradcheck(cls(), x)
    assert gradcheck(_non_default(cls), x)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 2), (1, 7)])
@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_gradcheck_on_other_shapes(cls, shape, rng):
    assert gradcheck(cls(), _away_from_kinks(rng, shape))


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_gradcheck_over_a_wide_range(cls):
    # Tails where saturating functions must not lose their small gradients.
    x = np.array([[-30.0, -12.5, -4.0, -0.7, 0.3, 2.5, 9.0, 30.0]])
    assert gradcheck(cls(), x, atol=1e-7)


def test_leaky_relu_with_negative_slope_gradient(rng):
    x = _away_from_kinks(rng, (3, 5))
    layer = LeakyReLU(-0.5)
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(x, np.ones_like(x)), np.where(x > 0, 1.0, -0.5))
    assert gradcheck(layer, x)


def test_relu_gradient_at_zero_is_zero():
    x = np.array([[-1.0, 0.0, 1.0]])
    layer = ReLU()
    layer.forward(x)
    np.testing.assert_array_equal(layer.backward(x, np.full_like(x, 3.0)), [[0.0, 0.0, 3.0]])


# -- values ----------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_output_matches_the_formula(cls, rng):
    x = rng.standard_normal((5, 4)) * 3
    layer = _non_default(cls)
    np.testing.assert_allclose(layer.forward(x), _reference(layer, x), rtol=1e-12, atol=1e-14)


def test_known_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(ReLU().forward(x), [[0.0, 0.0, 3.0]])
    np.testing.assert_allclose(LeakyReLU(0.1).forward(x), [[-0.2, 0.0, 3.0]], rtol=1e-15)
    np.testing.assert_allclose(ELU(2.0).forward(x), [[2 * np.expm1(-2), 0.0, 3.0]], rtol=1e-15)
    np.testing.assert_allclose(Sigmoid().forward(x)[0, 1], 0.5, rtol=1e-15)
    np.testing.assert_allclose(SoftPlus().forward(x)[0, 1], np.log(2), rtol=1e-15)
    np.testing.assert_allclose(SoftMax().forward(np.array([[0.0, np.log(3.0)]])), [[0.25, 0.75]],
                               rtol=1e-15)


def test_softmax_rows_are_distributions_and_shift_invariant(rng):
    x = rng.standard_normal((6, 5)) * 4
    y = SoftMax().forward(x)
    assert (y > 0).all()
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(SoftMax().forward(x + 50.0), y, rtol=1e-12)
    np.testing.assert_allclose(np.exp(LogSoftMax().forward(x)), y, rtol=1e-12)


def test_saturating_tails_keep_relative_precision():
    x = np.array([[-40.0, -700.0, 40.0]])
    sig = Sigmoid().forward(x)
    np.testing.assert_allclose(sig[0, :2], np.exp(x[0, :2]) / (1 + np.exp(x[0, :2])), rtol=1e-13)
    assert sig[0, 2] == 1.0
    softplus = SoftPlus().forward(x)
    np.testing.assert_allclose(softplus[0, :2], np.exp(x[0, :2]), rtol=1e-13)
    assert softplus[0, 2] == 40.0
    layer = SoftPlus()
    layer.forward(x)
    np.testing.assert_allclose(layer.backward(x, np.ones_like(x))[0, :2], sig[0, :2], rtol=1e-13)


# -- dtypes, layouts -------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept_and_float32_agrees_with_float64(cls, dtype, rng):
    x64 = _away_from_kinks(rng, (3, 4), scale=2.0)
    g64 = rng.standard_normal((3, 4))
    x = x64.astype(dtype)
    layer = cls()
    y = layer.forward(x)
    dx = layer.backward(x, g64)  # a float64 output_grad is converted to the input's dtype
    assert y.dtype == dtype and y.shape == x.shape
    assert dx.dtype == dtype and dx.shape == x.shape
    ref = cls()
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == np.float32 else {"rtol": 0, "atol": 0}
    np.testing.assert_allclose(y, ref.forward(x64), **tol)
    np.testing.assert_allclose(dx, ref.backward(x64, g64), **tol)


@pytest.mark.parametrize("cls", ALL)
def test_integer_and_list_input_become_float64(cls):
    x = np.array([[-2, 1, 3], [0, 4, -1]])
    layer = cls()
    y = layer.forward(x)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(cls().forward(x.tolist()), y)
    np.testing.assert_allclose(y, cls().forward(x.astype(np.float64)), rtol=0)
    assert layer.backward(x, np.ones(x.shape, dtype=np.int32)).dtype == np.float64


@pytest.mark.parametrize("cls", ALL)
def test_non_contiguous_and_read_only_input(cls, rng):
    base = rng.standard_normal((4, 10))
    strided = base[:, ::2]
    frozen = base.copy()
    frozen.setflags(write=False)
    for x in (strided, frozen):
        layer = cls()
        y = layer.forward(x)
        dx = layer.backward(x, np.ones_like(y))
        ref = cls()
        contiguous = np.ascontiguousarray(x)
        np.testing.assert_array_equal(y, ref.forward(contiguous))
        np.testing.assert_array_equal(dx, ref.backward(contiguous, np.ones_like(y)))
    assert not frozen.flags.writeable


# -- stability at |x| = 1e4 ------------------------------------------------------------
EXTREME = np.array([[1e4, -1e4, 0.0, 3.0], [-1e4, -1e4, 1e4, 1e4]])


def _expected_extremes(layer):
    """The exact values (output and gradient for output_grad = 1) at EXTREME."""
    x = EXTREME
    name = type(layer).__name__
    if name == "ReLU":
        return np.maximum(x, 0), (x > 0) * 1.0
    if name == "LeakyReLU":
        return np.where(x > 0, x, 0.03 * x), np.where(x > 0, 1.0, 0.03)
    if name == "ELU":
        return np.where(x > 0, x, np.expm1(np.minimum(x, 0))), np.where(x > 0, 1.0, np.exp(np.minimum(x, 0)))
    if name == "SoftPlus":
        y = np.array([[1e4, 0.0, np.log(2), 3 + np.log1p(np.exp(-3))], [0.0, 0.0, 1e4, 1e4]])
        return y, np.array([[1.0, 0.0, 0.5, 1 / (1 + np.exp(-3))], [0.0, 0.0, 1.0, 1.0]])
    if name == "Sigmoid":
        s3 = 1 / (1 + np.exp(-3))
        return (np.array([[1.0, 0.0, 0.5, s3], [0.0, 0.0, 1.0, 1.0]]),
                np.array([[0.0, 0.0, 0.25, s3 * (1 - s3)], [0.0, 0.0, 0.0, 0.0]]))
    if name == "Tanh":
        t3 = np.tanh(3.0)
        return (np.array([[1.0, -1.0, 0.0, t3], [-1.0, -1.0, 1.0, 1.0]]),
                np.array([[0.0, 0.0, 1.0, 1 - t3 ** 2], [0.0, 0.0, 0.0, 0.0]]))
    if name == "SoftMax":
        # A gradient of all ones is orthogonal to the softmax's Jacobian rows.
        return np.array([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]), np.zeros_like(x)
    # LogSoftMax: row 0 is dominated by 1e4, row 1 splits between the two 1e4 logits.
    y = np.array([[0.0, -2e4, -1e4, -1e4 + 3], [-2e4 - np.log(2), -2e4 - np.log(2), -np.log(2), -np.log(2)]])
    return y, np.array([[-3.0, 1.0, 1.0, 1.0], [1.0, 1.0, -1.0, -1.0]])


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_inputs_of_1e4_give_exact_finite_results_without_warnings(cls, dtype):
    x = EXTREME.astype(dtype)
    layer = cls()
    # Overflow, division by zero and invalid operations are errors here; underflow to 0
    # (e.g. exp(-1e4)) is the correctly rounded result and allowed.
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):
        warnings.simplefilter("error")
        y = layer.forward(x)
        dx = layer.backward(x, np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    expected_y, expected_dx = _expected_extremes(layer)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, expected_y, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, expected_dx, rtol=tol, atol=tol)


# -- the forward/backward pairing ------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_backward_after_forward_of_another_input_recomputes(cls, rng):
    a, b = _away_from_kinks(rng, (3, 5)), _away_from_kinks(rng, (3, 5)) * 2
    g = rng.standard_normal((3, 5))
    expected = cls().backward(a, g)  # never saw a forward pass at all
    layer = cls()
    layer.forward(a)
    layer.forward(b)
    np.testing.assert_array_equal(layer.backward(a, g), expected)
    layer.forward(a)
    np.testing.assert_array_equal(layer.backward(a, g), expected)
    # A copy of the input (equal values, another object) gives the same answer.
    np.testing.assert_array_equal(layer.backward(a.copy(), g), expected)


@pytest.mark.parametrize("cls", [Sigmoid, SoftMax, LogSoftMax, SoftPlus, ELU, Tanh])
def test_backward_reuses_the_forward_output_for_the_same_input(cls, rng, monkeypatch):
    x = _away_from_kinks(rng, (3, 5))
    g = rng.standard_normal((3, 5))
    layer = cls()
    layer.forward(x)
    expected = cls().backward(x, g)

    def fail(*args):
        raise AssertionError("backward recomputed the forward pass")

    monkeypatch.setattr(layer, "_apply", fail)
    np.testing.assert_array_equal(layer.backward(x, g), expected)


@pytest.mark.parametrize("cls", ALL)
def test_layers_have_no_parameters_and_pickles_do_not_keep_the_batch(cls, rng):
    layer = _non_default(cls)
    assert layer.get_parameters() == [] and layer.get_parameters_grad() == []
    x = rng.standard_normal((256, 64))
    layer.forward(x)
    blob = pickle.dumps(layer)
    assert len(blob) < 2000
    restored = pickle.loads(blob)
    assert repr(restored) == repr(layer)
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(restored.backward(x, g), layer.backward(x, g))


# -- bad input and arguments -----------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("bad,exc,pattern", [
    (np.array([[1 + 1j, 2]]), TypeError, r"real numeric .*complex128"),
    (np.array([[object(), 1]], dtype=object), TypeError, r"real numeric .*object"),
    (np.array([["a", "b"]]), TypeError, r"real numeric .*<U1"),
    (np.zeros((0, 3)), ValueError, r"empty batch \(shape \(0, 3\)\)"),
    (np.zeros((3, 0)), ValueError, r"zero-sized dimension, shape \(3, 0\)"),
])
def test_bad_input_is_rejected_with_its_dtype_or_shape(cls, bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        cls().forward(bad)


@pytest.mark.parametrize("cls", ELEMENTWISE)
def test_elementwise_layers_need_a_batch_axis(cls):
    with pytest.raises(ValueError, match="0-d array"):
        cls().forward(np.float64(1.0))


@pytest.mark.parametrize("cls", ROWWISE)
@pytest.mark.parametrize("shape", [(6,), (2, 3, 4)])
def test_rowwise_layers_need_2d_input(cls, shape):
    pattern = re.escape(f"{cls.__name__} expected 2-D input (N, C), got shape {shape}")
    with pytest.raises(ValueError, match=pattern):
        cls().forward(np.zeros(shape))


@pytest.mark.parametrize("cls", ALL)
def test_output_grad_must_match_the_input_shape(cls, rng):
    layer = cls()
    x = rng.standard_normal((2, 3))
    layer.forward(x)
    with pytest.raises(ValueError, match=r"output_grad of shape \(2, 3\), got \(3, 2\)"):
        layer.backward(x, np.zeros((3, 2)))
    with pytest.raises(TypeError, match=r"output_grad.*complex128"):
        layer.backward(x, np.zeros((2, 3), dtype=complex))


@pytest.mark.parametrize("make,pattern", [
    (lambda: LeakyReLU(float("inf")), r"LeakyReLU: slope must be a finite number, got inf"),
    (lambda: LeakyReLU(float("nan")), r"slope must be a finite number, got nan"),
    (lambda: LeakyReLU("0.1"), r"slope must be a finite number, got '0.1'"),
    (lambda: ELU("1"), r"ELU: alpha must be a finite number, got '1'"),
    (lambda: ELU(None), r"alpha must be a finite number, got None"),
    (lambda: ELU(-float("inf")), r"alpha must be a finite number, got -inf"),
])
def test_bad_arguments_name_the_value(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_repr():
    assert repr(ReLU()) == "ReLU()"
    assert repr(LeakyReLU()) == "LeakyReLU(slope=0.03)"
    assert repr(LeakyReLU(0.2)) == "LeakyReLU(slope=0.2)"
    assert repr(ELU()) == "ELU(alpha=1.0)"
    assert repr(ELU(0.5)) == "ELU(alpha=0.5)"
    assert [repr(cls()) for cls in (SoftPlus, Sigmoid, Tanh, SoftMax, LogSoftMax)] == [
        "SoftPlus()", "Sigmoid()", "Tanh()", "SoftMax()", "LogSoftMax()"]


# -- PyTorch parity --------------------------------------------------------------------
TORCH_TWINS = [
    (ReLU, {}, "ReLU", {}),
    (LeakyReLU, {"slope": 0.03}, "LeakyReLU", {"negative_slope": 0.03}),
    (LeakyReLU, {"slope": 0.2}, "LeakyReLU", {"negative_slope": 0.2}),
    (ELU, {}, "ELU", {}),
    (ELU, {"alpha": 1.3}, "ELU", {"alpha": 1.3}),
    (SoftPlus, {}, "Softplus", {}),
    (Sigmoid, {}, "Sigmoid", {}),
    (Tanh, {}, "Tanh", {}),
    (SoftMax, {}, "Softmax", {"dim": 1}),
    (LogSoftMax, {}, "LogSoftmax", {"dim": 1}),
]


def _torch():
    return pytest.importorskip("torch", reason="PyTorch not installed (optional extra torch==2.13.0)")


# SoftMax/LogSoftMax take (N, C) only; the element-wise layers are also compared on images.
TORCH_CASES = [(*twin, shape) for twin in TORCH_TWINS for shape in [(5, 7), (2, 3, 4, 4)]
               if twin[0] in ELEMENTWISE or len(shape) == 2]


@pytest.mark.parametrize("ours,kwargs,theirs,torch_kwargs,shape", TORCH_CASES,
                         ids=[f"{c[0].__name__}{c[1]}-{len(c[4])}d" for c in TORCH_CASES])
def test_matches_pytorch_float64(ours, kwargs, theirs, torch_kwargs, shape, rng):
    torch = _torch()
    x = _away_from_kinks(rng, shape, scale=4.0)
    x.reshape(-1)[:4] = [25.0, -25.0, 60.0, -60.0]  # beyond torch Softplus' threshold of 20
    dy = rng.standard_normal(shape)
    layer = ours(**kwargs)
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn, theirs)(**torch_kwargs)(tx)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(layer.backward(x, dy), tx.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("ours,kwargs,theirs,torch_kwargs", TORCH_TWINS,
                         ids=[f"{t[0].__name__}{t[1]}" for t in TORCH_TWINS])
def test_matches_pytorch_float32(ours, kwargs, theirs, torch_kwargs, rng):
    torch = _torch()
    x = _away_from_kinks(rng, (6, 5), scale=4.0).astype(np.float32)
    dy = rng.standard_normal((6, 5)).astype(np.float32)
    layer = ours(**kwargs)
    tx = torch.tensor(x, requires_grad=True)
    ty = getattr(torch.nn, theirs)(**torch_kwargs)(tx)
    ty.backward(torch.tensor(dy))
    y, dx = layer.forward(x), layer.backward(x, dy)
    assert y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-5, atol=1e-6)
