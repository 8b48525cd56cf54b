"""Layers against PyTorch (the optional extra torch==2.13.0), in float64."""
import numpy as np
import pytest

import cynn

torch = pytest.importorskip("torch", reason="PyTorch not installed (optional extra: torch==2.13.0)")
F = torch.nn.functional
TOL = dict(rtol=1e-6, atol=1e-6)


def _t(a):
    return torch.tensor(np.asarray(a, dtype=np.float64), requires_grad=True)


def _check(layer, x, torch_fn, params, rng):
    y = layer.forward(x)
    tx = _t(x)
    tparams = [_t(p) for p in params]
    ty = torch_fn(tx, *tparams)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(x, dy)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    for g, tp in zip(layer.get_parameters_grad(), tparams):
        np.testing.assert_allclose(g, tp.grad.numpy(), **TOL)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias, rng):
    layer = cynn.Linear(7, 4, bias=bias, dtype=np.float64, random_state=0)
    _check(layer, rng.standard_normal((5, 7)), lambda x, w, b=None: F.linear(x, w, b),
           layer.get_parameters(), rng)


@pytest.mark.parametrize("shape,out_ch,k,stride,padding", [
    ((2, 3, 8, 8), 4, 3, 1, "same"),
    ((3, 2, 9, 7), 5, 3, 2, 1),
    ((2, 4, 10, 6), 3, (3, 2), (2, 1), (1, 0)),
    ((1, 1, 6, 6), 2, 5, 1, "valid"),
    ((2, 3, 7, 7), 2, 4, 3, 2),
])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(shape, out_ch, k, stride, padding, bias, rng):
    layer = cynn.Conv2d(shape[1], out_ch, k, stride=stride, padding=padding, bias=bias,
                        dtype=np.float64, random_state=0)

    def fn(x, w, b=None):
        return F.conv2d(x, w, b, stride=layer.stride, padding=layer.padding)

    _check(layer, rng.standard_normal(shape), fn, layer.get_parameters(), rng)


@pytest.mark.parametrize("k,s,p,shape", [(2, None, 0, (2, 3, 8, 8)), (3, 2, 1, (2, 2, 9, 7)),
                                         ((2, 3), (1, 2), (1, 1), (1, 2, 6, 7))])
def test_maxpool2d(k, s, p, shape, rng):
    layer = cynn.MaxPool2d(k, s, p)
    _check(layer, rng.standard_normal(shape),
           lambda x: F.max_pool2d(x, k, s if s is not None else k, p), [], rng)


@pytest.mark.parametrize("k,s,shape", [(2, None, (2, 3, 8, 8)), (3, 2, (2, 2, 9, 7)), ((2, 3), (1, 2), (1, 2, 6, 7))])
def test_avgpool2d(k, s, shape, rng):
    layer = cynn.AvgPool2d(k, s)
    _check(layer, rng.standard_normal(shape),
           lambda x: F.avg_pool2d(x, k, s if s is not None else k), [], rng)


@pytest.mark.parametrize("shape", [(16, 5), (8, 3, 5, 4)])
@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_batchnorm(shape, alpha, rng):
    layer = cynn.BatchNormalization(alpha=alpha, dtype=np.float64)
    ref = (torch.nn.BatchNorm1d if len(shape) == 2 else torch.nn.BatchNorm2d)(
        shape[1], eps=1e-3, momentum=1 - alpha, affine=False).double()
    for _ in range(3):
        x = rng.standard_normal(shape) * 2 + 1
        tx = _t(x)
        ty = ref(tx)
        y = layer.forward(x)
        np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
        dy = rng.standard_normal(shape)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(layer.backward(x, dy), tx.grad.numpy(), **TOL)
        # Moving mean agrees; PyTorch's running variance uses the unbiased estimate.
        np.testing.assert_allclose(layer.moving_mean, ref.running_mean.numpy(), **TOL)
    ref.eval()
    layer.evaluate()
    layer.moving_variance[...] = ref.running_var.numpy()
    x = rng.standard_normal(shape)
    tx = _t(x)
    ty = ref(tx)
    np.testing.assert_allclose(layer.forward(x), ty.detach().numpy(), **TOL)
    dy = rng.standard_normal(shape)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(layer.backward(x, dy), tx.grad.numpy(), **TOL)


def test_dropout_eval_is_identity_like_torch(rng):
    x = rng.standard_normal((4, 6))
    drop = torch.nn.Dropout(0.4).eval()
    np.testing.assert_array_equal(cynn.Dropout(0.4).evaluate().forward(x), drop(torch.tensor(x)).numpy())
