"""Fused training steps (cynn._plan.NormStep): in training mode a Sequential runs
BatchNormalization followed by ChannelwiseScaling, ReLU or both on images as one step.  Its
output must be the layers' own bits, its gradients the layers' up to float rounding,
the moving statistics must move the same way, whatever the dtype, shape and thread
count; input the fused kernels do not take must run the layers one by one, and bad
input must get the layers' own errors."""
import copy

import numpy as np
import pytest

import cynn
from cynn import _plan
from cynn.gradcheck import gradcheck

DTYPES = [np.float32, np.float64]
# Planes with vector tails (5x5, 3x7), a single row (1x9), full vectors (8x8).
SHAPES = [(4, 3, 5, 5), (3, 6, 8, 8), (2, 5, 3, 7), (5, 2, 1, 9)]


def _block(channels, dtype, relu, seed=0, alpha=0.3, scaling=True):
    rng = np.random.default_rng(seed)
    layers = [cynn.BatchNormalization(alpha=alpha, n_features=channels, dtype=dtype)]
    if scaling:
        layers.append(cynn.ChannelwiseScaling(channels, dtype=dtype, random_state=rng))
    if relu:
        layers.append(cynn.ReLU())
    return cynn.Sequential(*layers)


def _x_dy(shape, seed, dtype=np.float32):
    """An input and an output gradient of ``shape``."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(dtype), rng.normal(size=shape).astype(dtype)


def _step(model, x, dy, fused):
    """forward and backward with fusion on or off: output, input gradient, parameter
    gradients, moving statistics."""
    previous = cynn.set_training_fusion(fused)
    try:
        model.zero_grad()
        out = model.forward(x)
        dx = model.backward(x, dy)
    finally:
        cynn.set_training_fusion(previous)
    grads = [g.copy() for g in model.get_parameters_grad()]
    buffers = {k: v for k, v in model.state_dict().items() if "moving" in k}
    return out, dx, grads, buffers


def _tol(dtype):
    return 2e-6 if dtype == np.float32 else 1e-13


def _close(a, b, dtype):
    scale = max(float(np.abs(b).max()), 1e-30)
    np.testing.assert_allclose(a, b, rtol=0, atol=_tol(dtype) * scale)


def _fused_steps(model):
    return [type(s).__name__ for s in model._steps]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scaling, relu", [(True, True), (True, False), (False, True)],
                         ids=["bn-cs-relu", "bn-cs", "bn-relu"])
def test_fused_equals_layer_by_layer(dtype, shape, scaling, relu):
    rng = np.random.default_rng(1)
    x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    dy = rng.normal(size=shape).astype(dtype)
    plain_model = _block(shape[1], dtype, relu, scaling=scaling)
    fused_model = copy.deepcopy(plain_model)
    p_out, p_dx, p_grads, p_buf = _step(plain_model, x, dy, fused=False)
    f_out, f_dx, f_grads, f_buf = _step(fused_model, x, dy, fused=True)
    assert _fused_steps(fused_model) == ["NormStep"]
    assert _fused_steps(plain_model) == [type(m).__name__ for m in plain_model]
    # the forward rounds exactly as the layers do
    assert f_out.dtype == dtype and np.array_equal(f_out, p_out)
    for key in p_buf:
        assert np.array_equal(f_buf[key], p_buf[key]), key
    _close(f_dx, p_dx, dtype)
    for fg, pg in zip(f_grads, p_grads):
        _close(fg, pg, dtype)
    if relu:
        assert (f_out >= 0).all() and (f_out == 0).any()


@pytest.mark.parametrize("scaling, relu", [(True, True), (True, False), (False, True)])
def test_gradcheck_through_the_fused_step(scaling, relu):
    rng = np.random.default_rng(2)
    model = cynn.Sequential(cynn.Conv2d(2, 3, 3, padding=1, dtype=np.float64, random_state=rng),
                            *_block(3, np.float64, relu, scaling=scaling).modules)
    x = rng.normal(size=(4, 2, 5, 5))
    model.forward(x)
    assert "NormStep" in _fused_steps(model)
    assert gradcheck(model, x, random_state=3)


def test_results_do_not_depend_on_the_thread_count():
    x, dy = _x_dy((6, 5, 9, 11), 4)
    results = []
    previous = cynn.get_num_threads()
    try:
        for threads in (1, 2, 3):
            cynn.set_num_threads(threads)
            results.append(_step(_block(5, np.float32, True), x, dy, fused=True))
    finally:
        cynn.set_num_threads(previous)
    for other in results[1:]:
        assert np.array_equal(other[0], results[0][0])
        assert np.array_equal(other[1], results[0][1])
        for a, b in zip(other[2], results[0][2]):
            assert np.array_equal(a, b)


def test_relu_mask_at_exact_zero_and_nan_as_the_layers():
    # A constant channel normalizes to exactly 0, so with beta = 0 the ReLU sees 0
    # (gradient 0); a NaN in another channel makes that channel NaN forward.
    x = np.ones((3, 2, 4, 4), np.float32)
    x[:, 1] = np.arange(48, dtype=np.float32).reshape(3, 4, 4)
    x[1, 1, 2, 3] = np.nan
    dy = np.random.default_rng(5).normal(size=x.shape).astype(np.float32)
    plain_model = _block(2, np.float32, True)
    plain_model[1].beta[:] = 0
    fused_model = copy.deepcopy(plain_model)
    p = _step(plain_model, x, dy, fused=False)
    f = _step(fused_model, x, dy, fused=True)
    assert np.array_equal(f[0], p[0], equal_nan=True)
    assert (f[0][:, 0] == 0).all() and np.isnan(f[0][:, 1]).all()
    np.testing.assert_array_equal(f[1][:, 0], p[1][:, 0])
    assert np.isnan(f[1][:, 1]).all() and np.isnan(p[1][:, 1]).all()


def test_accumulates_into_the_parameter_gradients():
    x, dy = _x_dy((4, 3, 6, 6), 6)
    model = _block(3, np.float32, True)
    model.forward(x)
    model.backward(x, dy)
    once = [g.copy() for g in model.get_parameters_grad()]
    model.forward(x)
    model.backward(x, dy)
    for g, g1 in zip(model.get_parameters_grad(), once):
        np.testing.assert_allclose(g, 2 * g1, rtol=1e-6)


def test_inputs_the_fused_kernels_do_not_take_run_the_layers():
    rng = np.random.default_rng(7)
    cases = {
        "batch norm alone": (_block(4, np.float32, False, scaling=False),
                             rng.normal(size=(8, 4, 3, 3))),
        "vectors": (_block(4, np.float32, True), rng.normal(size=(8, 4))),
        "1x1 planes": (_block(4, np.float32, True), rng.normal(size=(8, 4, 1, 1))),
    }

    class MyBN(cynn.BatchNormalization):
        pass

    sub = cynn.Sequential(MyBN(n_features=3), cynn.ChannelwiseScaling(3), cynn.ReLU())
    cases["subclass"] = (sub, rng.normal(size=(2, 3, 4, 4)))
    eval_bn = _block(3, np.float32, True)
    eval_bn.forward(rng.normal(size=(2, 3, 4, 4)).astype(np.float32))
    eval_bn[0].evaluate()
    cases["evaluation-mode batch norm"] = (eval_bn, rng.normal(size=(2, 3, 4, 4)))
    mixed = cynn.Sequential(cynn.BatchNormalization(n_features=3),
                            cynn.ChannelwiseScaling(3, dtype=np.float64))
    cases["mixed dtypes"] = (mixed, rng.normal(size=(2, 3, 4, 4)))
    for name, (model, x) in cases.items():
        out = model.forward(x)
        assert "NormStep" not in _fused_steps(model), name
        expected = copy.deepcopy(model)
        previous = cynn.set_training_fusion(False)
        try:
            np.testing.assert_array_equal(out, expected.forward(x), err_msg=name)
        finally:
            cynn.set_training_fusion(previous)
        dx = model.backward(x, np.ones_like(out))
        assert dx.shape == np.shape(x), name


def test_bad_input_gets_the_layers_errors():
    model = _block(3, np.float32, True)
    with pytest.raises(ValueError, match="BatchNormalization expected input with 3 channels"):
        model.forward(np.zeros((2, 4, 5, 5), np.float32))
    x = np.random.default_rng(8).normal(size=(2, 3, 5, 5)).astype(np.float32)
    model.forward(x)
    with pytest.raises(ValueError, match="output_grad"):
        model.backward(x, np.zeros((2, 3, 5, 4), np.float32))
    with pytest.raises(ValueError, match="same input object"):
        model.backward(x.copy(), np.zeros_like(x))
    with pytest.raises(TypeError):
        model.forward(np.full((2, 3, 5, 5), "a"))


def test_the_layers_own_backward_still_works_after_a_fused_forward():
    x, dy = _x_dy((3, 2, 4, 4), 9)
    model = _block(2, np.float32, False)
    model.forward(x)
    reference = copy.deepcopy(model[0])
    np.testing.assert_allclose(model[0].backward(x, dy), reference.backward(x, dy), rtol=1e-6)


def test_layer_by_layer_turns_fusion_off_in_its_thread_only():
    x = np.random.default_rng(10).normal(size=(2, 3, 4, 4)).astype(np.float32)
    model = _block(3, np.float32, True)
    with _plan.layer_by_layer():
        assert not _plan.training_fusion_enabled()
        model.forward(x)
        assert _fused_steps(model) == ["BatchNormalization", "ChannelwiseScaling", "ReLU"]
    assert _plan.training_fusion_enabled()
    model.forward(x)
    assert _fused_steps(model) == ["NormStep"]


def test_resnet_training_step_matches_layer_by_layer():
    from cynn.models import resnet

    rng = np.random.default_rng(11)
    x = rng.normal(size=(4, 3, 16, 16)).astype(np.float32)
    plain_model = resnet(8, random_state=0)
    fused_model = copy.deepcopy(plain_model)
    out = plain_model.forward(x)
    dy = rng.normal(size=out.shape).astype(np.float32)
    p = _step(plain_model, x, dy, fused=False)
    f = _step(fused_model, x, dy, fused=True)
    assert "NormStep" in _fused_steps(fused_model)
    bodies = [m.body for m in fused_model if isinstance(m, cynn.Residual)]
    assert bodies and all(_fused_steps(b).count("NormStep") == 2 for b in bodies)
    # the gradients differ by rounding, which a deep network's layers pass along
    for a, b in zip([f[0], f[1], *f[2]], [p[0], p[1], *p[2]]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(np.abs(b).max(), 1e-30))


def test_small_cnn_training_fuses_its_batch_norm_and_relu():
    from cynn.models import small_cnn

    rng = np.random.default_rng(12)
    x = rng.normal(size=(5, 1, 8, 8)).astype(np.float32)
    plain_model = small_cnn((1, 8, 8), 10, dropout=0.0, random_state=0)
    fused_model = copy.deepcopy(plain_model)
    out = plain_model.forward(x)
    dy = rng.normal(size=out.shape).astype(np.float32)
    p = _step(plain_model, x, dy, fused=False)
    f = _step(fused_model, x, dy, fused=True)
    assert _fused_steps(fused_model).count("NormStep") == 2
    for a, b in zip(f[:2], p[:2]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max())
    # a convolution's bias before a batch norm has a gradient of 0 up to rounding: the
    # parameter gradients are compared on the scale of the largest one
    scale = max(np.abs(g).max() for g in p[2])
    for a, b in zip(f[2], p[2]):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * scale)
