"""cynn against the course seed's own formulas (cynn._kernels._seed), in float64."""
import numpy as np
import pytest

import cynn
from cynn._kernels import _seed

TOL = dict(rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_batchnorm_matches_the_seed(alpha, rng):
    bn = cynn.BatchNormalization(alpha=alpha, dtype=np.float64)
    mm, mv = 0.0, 1.0                       # the seed's initial moving statistics
    for step in range(3):
        x = rng.standard_normal((16, 5)) * (step + 1) + step
        y_seed, mm, mv = _seed.batchnorm_forward(x, mm, mv, alpha, 1e-3, training=True)
        np.testing.assert_allclose(bn.forward(x), y_seed, **TOL)
        dy = rng.standard_normal(x.shape)
        np.testing.assert_allclose(bn.backward(x, dy), _seed.batchnorm_input_grad(x, dy, 1e-3), **TOL)
    np.testing.assert_allclose(bn.moving_mean, mm, **TOL)
    np.testing.assert_allclose(bn.moving_variance, mv, **TOL)
    bn.evaluate()
    z = rng.standard_normal((4, 5))
    y_seed, _, _ = _seed.batchnorm_forward(z, mm, mv, alpha, 1e-3, training=False)
    np.testing.assert_allclose(bn.forward(z), y_seed, **TOL)


def test_channelwise_scaling_matches_the_seed(rng):
    layer = cynn.ChannelwiseScaling(6, dtype=np.float64, random_state=0)
    x, dy = rng.standard_normal((9, 6)), rng.standard_normal((9, 6))
    y, dx, dgamma, dbeta = _seed.channelwise_scaling(x, layer.gamma, layer.beta, dy)
    np.testing.assert_allclose(layer.forward(x), y, **TOL)
    np.testing.assert_allclose(layer.backward(x, dy), dx, **TOL)
    np.testing.assert_allclose(layer.gradGamma, dgamma, **TOL)
    np.testing.assert_allclose(layer.gradBeta, dbeta, **TOL)


@pytest.mark.parametrize("shape,out_channels,k", [((2, 3, 6, 5), 4, 3), ((1, 1, 7, 7), 2, 5), ((3, 2, 4, 4), 3, 1)])
def test_conv2d_matches_the_seed(shape, out_channels, k, rng):
    conv = cynn.Conv2d(shape[1], out_channels, k, dtype=np.float64, random_state=0)
    x = rng.standard_normal(shape)
    y = conv.forward(x)
    np.testing.assert_allclose(y, _seed.conv2d_forward(x, conv.W, conv.b), **TOL)
    dy = rng.standard_normal(y.shape)
    np.testing.assert_allclose(conv.backward(x, dy), _seed.conv2d_input_grad(x, conv.W, dy), **TOL)
    grad_w, grad_b = _seed.conv2d_parameter_grads(x, conv.W, dy)
    np.testing.assert_allclose(conv.gradW, grad_w, **TOL)
    np.testing.assert_allclose(conv.gradb, grad_b, **TOL)


def test_conv2d_defaults_are_the_seeds():
    conv = cynn.Conv2d(3, 5, 3)
    assert conv.stride == (1, 1) and conv.padding == (1, 1)
    assert conv.forward(np.zeros((2, 3, 7, 9))).shape == (2, 5, 7, 9)
