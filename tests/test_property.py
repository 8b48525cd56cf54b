"""Random shapes, strides, paddings and dtypes: every case matches the reference or raises
ValueError/TypeError in Python.  A crash of the interpreter would fail the whole run."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cynn
from cynn._kernels import _reference as ref

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
DTYPES = st.sampled_from([np.float32, np.float64, np.float16, np.int32, np.complex64, object])
small = st.integers(min_value=-1, max_value=6)


def _input(shape, dtype, seed):
    data = np.random.default_rng(seed).standard_normal(shape)
    if dtype is object:
        return data.astype(object)
    return data.astype(dtype)


def _tol(dtype):
    return dict(rtol=1e-3, atol=1e-3) if dtype != np.float64 else dict(rtol=1e-9, atol=1e-9)


def _per_group(fn, x, weight, groups, *rest):
    """Apply a reference function group by group, to channel slices of x and of the
    weight's rows."""
    cg, fg = x.shape[1] // groups, weight.shape[0] // groups
    return [fn(x[:, g * cg:(g + 1) * cg], weight[g * fg:(g + 1) * fg], *rest) for g in range(groups)]


@SETTINGS
@given(n=st.integers(0, 3), c=st.integers(1, 3), f=st.integers(1, 3), groups=st.integers(1, 3),
       h=small, w=small, kh=small, kw=small, sh=small, sw=small, ph=small, pw=small,
       dtype=DTYPES, channels_ok=st.booleans(), seed=st.integers(0, 2**16))
def test_conv2d_matches_reference_or_raises(n, c, f, groups, h, w, kh, kw, sh, sw, ph, pw, dtype,
                                            channels_ok, seed):
    """c and f are per group: c == 1 with groups > 1 is a depthwise convolution."""
    c, f = c * groups, f * groups
    try:
        layer = cynn.Conv2d(c, f, (kh, kw), stride=(sh, sw), padding=(ph, pw), groups=groups,
                            dtype=np.float64, random_state=seed)
    except ValueError:
        assert min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0
        return
    shape = (n, c if channels_ok else c + 1, max(h, 0), max(w, 0))
    x = _input(shape, dtype, seed)
    try:
        y = layer.forward(x)
    except (ValueError, TypeError):
        valid = (n > 0 and channels_ok and dtype not in (np.complex64, object)
                 and h + 2 * ph >= kh and w + 2 * pw >= kw and h > 0 and w > 0)
        assert not valid, "a valid input was rejected"
        return
    x64 = x.astype(np.float64)
    stride, padding = layer.stride, layer.padding
    y_ref = np.concatenate(_per_group(ref.conv2d_forward, x64, layer.W, groups, None, stride,
                                      padding), axis=1) + layer.b[:, None, None]
    np.testing.assert_allclose(y, y_ref, **_tol(dtype))
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape)
    dx = layer.backward(x, dy)
    fg = f // groups
    grads = [ref.conv2d_backward(x64[:, g * (c // groups):(g + 1) * (c // groups)],
                                 layer.W[g * fg:(g + 1) * fg], dy[:, g * fg:(g + 1) * fg],
                                 stride, padding) for g in range(groups)]
    np.testing.assert_allclose(dx, np.concatenate([g[0] for g in grads], axis=1), **_tol(dtype))
    np.testing.assert_allclose(layer.gradW, np.concatenate([g[1] for g in grads]), **_tol(dtype))
    np.testing.assert_allclose(layer.gradb, np.concatenate([g[2] for g in grads]), **_tol(dtype))


@SETTINGS
@given(n=st.integers(0, 3), c=st.integers(1, 3), h=small, w=small, kh=small, kw=small,
       sh=small, sw=small, ph=small, pw=small, dtype=DTYPES, seed=st.integers(0, 2**16))
def test_maxpool2d_matches_reference_or_raises(n, c, h, w, kh, kw, sh, sw, ph, pw, dtype, seed):
    try:
        layer = cynn.MaxPool2d((kh, kw), stride=(sh, sw), padding=(ph, pw))
    except ValueError:
        assert min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0 or ph > kh // 2 or pw > kw // 2
        return
    x = _input((n, c, max(h, 0), max(w, 0)), dtype, seed)
    try:
        y = layer.forward(x)
    except (ValueError, TypeError):
        valid = (n > 0 and dtype not in (np.complex64, object) and h > 0 and w > 0
                 and h + 2 * ph >= kh and w + 2 * pw >= kw)
        assert not valid, "a valid input was rejected"
        return
    xr = np.asarray(x, dtype=y.dtype)
    y_ref, idx = ref.maxpool2d_forward(xr, layer.kernel_size, layer.stride, layer.padding)
    np.testing.assert_array_equal(y, y_ref)
    dy = np.random.default_rng(seed).standard_normal(y.shape).astype(y.dtype)
    np.testing.assert_allclose(layer.backward(x, dy), ref.maxpool2d_backward(dy, idx, xr.shape),
                               rtol=1e-6, atol=1e-6)


@SETTINGS
@given(shape=st.lists(st.integers(0, 5), min_size=1, max_size=5), dtype=DTYPES,
       alpha=st.floats(-0.5, 1.5), training=st.booleans(), seed=st.integers(0, 2**16))
def test_batchnorm_matches_reference_or_raises(shape, dtype, alpha, training, seed):
    try:
        layer = cynn.BatchNormalization(alpha=alpha, dtype=np.float64)
    except ValueError:
        assert not 0 <= alpha <= 1
        return
    if not training:
        layer.evaluate()
    x = _input(tuple(shape), dtype, seed)
    try:
        y = layer.forward(x)
    except (ValueError, TypeError):
        valid = len(shape) in (2, 4) and min(shape) > 0 and dtype not in (np.complex64, object)
        assert not valid, "a valid input was rejected"
        return
    x64 = x.astype(np.float64)
    dy = np.random.default_rng(seed).standard_normal(x.shape)
    dx = layer.backward(x, dy)
    if training:
        np.testing.assert_allclose(y, ref.batchnorm_forward(x64, 1e-3)[0], rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(dx, ref.batchnorm_backward(x64, dy, 1e-3), rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(y, x64 / np.sqrt(1 + 1e-3), rtol=1e-12)
        np.testing.assert_allclose(dx, dy / np.sqrt(1 + 1e-3), rtol=1e-12)
