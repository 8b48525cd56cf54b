"""The depthwise Conv2d kernels (cynn._kernels.depthwise) against their NumPy twins in
cynn._kernels._reference and against PyTorch's conv2d(groups=C), over dtypes and awkward
shapes; bit-for-bit independence from the thread count; and the entry points' checks."""
import numpy as np
import pytest

from cynn._kernels import _reference as ref
from cynn._kernels import depthwise as dw

DTYPES = [np.float32, np.float64]

# (N, C, m, H, W, kernel, stride, padding): F = C * m output channels
CASES = [
    pytest.param(1, 1, 1, 5, 5, (3, 3), (1, 1), (1, 1), id="batch-of-1"),
    pytest.param(2, 3, 1, 8, 9, (3, 3), (1, 1), (1, 1), id="3x3-s1-p1"),
    pytest.param(2, 3, 2, 8, 9, (3, 3), (1, 1), (1, 1), id="multiplier-2"),
    pytest.param(2, 2, 1, 7, 37, (3, 3), (2, 2), (1, 1), id="stride-2-odd"),
    pytest.param(3, 2, 1, 12, 11, (3, 3), (2, 2), (0, 0), id="stride-2-p0"),
    pytest.param(2, 2, 2, 9, 9, (5, 5), (2, 2), (2, 2), id="5x5-stride-2-m2"),
    pytest.param(1, 2, 3, 5, 20, (5, 5), (1, 1), (2, 2), id="5x5-p2-m3"),
    pytest.param(2, 2, 1, 6, 5, (3, 1), (1, 1), (1, 0), id="3x1"),
    pytest.param(2, 2, 2, 9, 30, (1, 1), (1, 1), (0, 0), id="1x1"),
    pytest.param(2, 2, 1, 9, 30, (1, 1), (1, 1), (1, 1), id="1x1-padded"),
    pytest.param(3, 2, 1, 11, 13, (3, 3), (2, 3), (0, 2), id="uneven-stride-padding"),
    pytest.param(2, 2, 1, 9, 17, (3, 3), (2, 1), (1, 1), id="stride-2x1"),
    pytest.param(2, 2, 2, 9, 17, (3, 3), (1, 2), (1, 1), id="stride-1x2-m2"),
    pytest.param(2, 2, 1, 10, 11, (3, 3), (3, 3), (1, 1), id="stride-3"),
    pytest.param(1, 1, 1, 4, 4, (5, 5), (1, 1), (2, 2), id="kernel-larger-than-image"),
    pytest.param(2, 4, 1, 3, 3, (3, 3), (1, 1), (0, 0), id="single-output-pixel"),
    pytest.param(1, 2, 2, 6, 6, (2, 2), (1, 1), (3, 3), id="padding-larger-than-kernel"),
    pytest.param(2, 3, 1, 16, 16, (3, 3), (1, 1), (1, 1), id="rows-of-whole-vectors"),
    pytest.param(2, 2, 1, 10, 28, (3, 3), (1, 1), (1, 1), id="rows-ending-in-a-partial-vector"),
    pytest.param(2, 2, 1, 7, 6, (3, 3), (1, 1), (1, 1), id="rows-of-16-bytes"),
    pytest.param(2, 2, 1, 6, 3, (3, 3), (1, 1), (1, 1), id="rows-shorter-than-a-vector"),
    pytest.param(1, 2, 1, 70, 10, (3, 3), (1, 1), (1, 1), id="tall-plane-blocks-of-rows"),
    pytest.param(1, 1, 1, 3, 150, (3, 3), (1, 1), (1, 1), id="wide-plane"),
    pytest.param(2, 2, 1, 12, 20, (3, 3), (1, 1), (2, 2), id="3x3-p2"),
]


def _output_size(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def _data(rng, n, c, m, h, w, k, s, p, dtype):
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    f = c * m
    ho, wo = _output_size(h, kh, sh, ph), _output_size(w, kw, sw, pw)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    weight = rng.standard_normal((f, kh, kw)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    dy = rng.standard_normal((n, f, ho, wo)).astype(dtype)
    return x, weight, bias, dy


def _run(x, weight, bias, dy, k, s, p, has_bias, threads, grad_w0=None, grad_b0=None):
    """out, dx, grad_w, grad_b from the three kernels (grad_w, grad_b accumulate onto
    the given starting values)."""
    (kh, kw), (sh, sw), (ph, pw) = k, s, p
    b = bias if has_bias else np.empty(0, x.dtype)
    out = np.full(dy.shape, np.nan, x.dtype)           # every value must be written
    dw.depthwise_forward(x, weight, b, out, kh, kw, sh, sw, ph, pw, has_bias, threads)
    dx = np.full(x.shape, np.nan, x.dtype)             # written, not added to
    dw.depthwise_backward_input(dy, weight, dx, kh, kw, sh, sw, ph, pw, threads)
    grad_w = np.zeros_like(weight) if grad_w0 is None else grad_w0.copy()
    grad_b = (np.zeros_like(bias) if grad_b0 is None else grad_b0.copy()) if has_bias \
        else np.empty(0, x.dtype)
    dw.depthwise_backward_params(x, dy, grad_w, grad_b, kh, kw, sh, sw, ph, pw, has_bias,
                                 threads)
    return out, dx, grad_w, grad_b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("has_bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize("n, c, m, h, w, k, s, p", CASES)
def test_kernels_match_reference(n, c, m, h, w, k, s, p, has_bias, dtype, rng, tolerance):
    x, weight, bias, dy = _data(rng, n, c, m, h, w, k, s, p, dtype)
    gw0 = rng.standard_normal(weight.shape).astype(dtype)
    gb0 = rng.standard_normal(bias.shape).astype(dtype)
    out, dx, grad_w, grad_b = _run(x, weight, bias, dy, k, s, p, has_bias, 2, gw0, gb0)

    x64, w64, dy64 = x.astype(np.float64), weight.astype(np.float64), dy.astype(np.float64)
    y_ref = ref.depthwise_forward(x64, w64, bias.astype(np.float64) if has_bias else None, s, p)
    dx_ref, dw_ref, db_ref = ref.depthwise_backward(x64, w64, dy64, s, p)
    tol = tolerance(dtype)
    assert out.dtype == dtype and out.shape == y_ref.shape
    np.testing.assert_allclose(out, y_ref, **tol)
    np.testing.assert_allclose(dx, dx_ref, **tol)
    np.testing.assert_allclose(grad_w, gw0 + dw_ref, **tol)     # added, not written
    if has_bias:
        np.testing.assert_allclose(grad_b, gb0 + db_ref, **tol)
    else:
        assert grad_b.size == 0


# Enough planes, samples and channels for every thread to get work, on each path: the
# 3x3 stride-1 loops, the generic taps, the stride-2 scatter, a multiplier, and few
# channels over many samples (the parameter gradients' sample groups).
THREAD_CASES = [
    pytest.param(5, 6, 1, 13, 21, (3, 3), (1, 1), (1, 1), id="3x3-s1"),
    pytest.param(4, 3, 2, 11, 12, (5, 3), (1, 1), (2, 1), id="5x3-m2"),
    pytest.param(5, 4, 1, 14, 19, (3, 3), (2, 2), (1, 1), id="3x3-s2"),
    pytest.param(9, 1, 1, 10, 30, (3, 3), (1, 1), (1, 1), id="one-channel-many-samples"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, c, m, h, w, k, s, p", THREAD_CASES)
def test_results_do_not_depend_on_the_thread_count(n, c, m, h, w, k, s, p, dtype, rng):
    x, weight, bias, dy = _data(rng, n, c, m, h, w, k, s, p, dtype)
    gw0 = rng.standard_normal(weight.shape).astype(dtype)
    gb0 = rng.standard_normal(bias.shape).astype(dtype)
    one = _run(x, weight, bias, dy, k, s, p, True, 1, gw0, gb0)
    for threads in (2, 3):
        many = _run(x, weight, bias, dy, k, s, p, True, threads, gw0, gb0)
        for a, b in zip(one, many):
            np.testing.assert_array_equal(a, b)


TORCH_CASES = [
    pytest.param(2, 3, 1, 9, 11, (3, 3), (1, 1), (1, 1), id="3x3-s1-p1"),
    pytest.param(2, 3, 2, 9, 11, (3, 3), (2, 2), (1, 1), id="3x3-s2-m2"),
    pytest.param(1, 2, 1, 8, 7, (5, 3), (1, 2), (2, 0), id="5x3-uneven"),
    pytest.param(2, 2, 3, 16, 16, (3, 3), (1, 1), (0, 0), id="3x3-p0-m3"),
]


@pytest.mark.parametrize("n, c, m, h, w, k, s, p", TORCH_CASES)
def test_matches_torch_float64(n, c, m, h, w, k, s, p, rng):
    torch = pytest.importorskip("torch")
    x, weight, bias, dy = _data(rng, n, c, m, h, w, k, s, p, np.float64)
    out, dx, grad_w, grad_b = _run(x, weight, bias, dy, k, s, p, True, 2)

    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(weight[:, None], requires_grad=True)     # (F, 1, kh, kw)
    tb = torch.tensor(bias, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p, groups=c)
    ty.backward(torch.tensor(dy))
    tol = {"rtol": 1e-7, "atol": 1e-10}
    np.testing.assert_allclose(out, ty.detach().numpy(), **tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), **tol)
    np.testing.assert_allclose(grad_w, tw.grad.numpy()[:, 0], **tol)
    np.testing.assert_allclose(grad_b, tb.grad.numpy(), **tol)


def test_empty_batch_and_empty_image():
    """N = 0 writes nothing and adds nothing; an empty image with padding has outputs
    made of padding only (the bias), an empty input gradient, and a bias gradient."""
    x = np.zeros((0, 2, 5, 5), np.float32)
    grad_w = np.ones((2, 3, 3), np.float32)
    grad_b = np.ones(2, np.float32)
    dw.depthwise_forward(x, np.ones((2, 3, 3), np.float32), np.ones(2, np.float32),
                         np.zeros((0, 2, 5, 5), np.float32), 3, 3, 1, 1, 1, 1, True, 2)
    dw.depthwise_backward_params(x, np.zeros((0, 2, 5, 5), np.float32), grad_w, grad_b,
                                 3, 3, 1, 1, 1, 1, True, 2)
    assert (grad_w == 1).all() and (grad_b == 1).all()

    x = np.zeros((1, 2, 0, 4), np.float64)
    weight = np.full((2, 1, 1), 2.0)
    bias = np.array([3.0, -1.0])
    out = np.zeros((1, 2, 2, 6))
    dw.depthwise_forward(x, weight, bias, out, 1, 1, 1, 1, 1, 1, True, 1)
    np.testing.assert_array_equal(out, ref.depthwise_forward(x, weight, bias, 1, 1))
    dy = np.arange(24.0).reshape(1, 2, 2, 6)
    dx = np.zeros_like(x)
    dw.depthwise_backward_input(dy, weight, dx, 1, 1, 1, 1, 1, 1, 1)
    grad_w, grad_b = np.zeros_like(weight), np.zeros(2)
    dw.depthwise_backward_params(x, dy, grad_w, grad_b, 1, 1, 1, 1, 1, 1, True, 1)
    _, dw_ref, db_ref = ref.depthwise_backward(x, weight, dy, 1, 1)
    np.testing.assert_array_equal(grad_w, dw_ref)
    np.testing.assert_array_equal(grad_b, db_ref)


def test_float32_weight_gradient_is_accumulated_accurately(rng):
    """The weight and bias gradients of a large batch sum N * Ho * Wo terms: float32
    lanes of at most 64 terms, then double, keep them within a few float32 ulps of the
    exact sums (a single float32 accumulator over 2^16 terms would not)."""
    x = rng.standard_normal((64, 2, 32, 32)).astype(np.float32) + 3   # a large mean
    dy = rng.standard_normal((64, 2, 32, 32)).astype(np.float32) + 3
    grad_w, grad_b = np.zeros((2, 3, 3), np.float32), np.zeros(2, np.float32)
    dw.depthwise_backward_params(x, dy, grad_w, grad_b, 3, 3, 1, 1, 1, 1, True, 2)
    _, dw_ref, db_ref = ref.depthwise_backward(x.astype(np.float64), grad_w.astype(np.float64),
                                               dy.astype(np.float64), 1, 1)
    np.testing.assert_allclose(grad_w, dw_ref, rtol=3e-7)
    np.testing.assert_allclose(grad_b, db_ref, rtol=3e-7)


# ---- checks at the entry points ------------------------------------------------------

def _call_all(x, weight, bias, out, dy, dx, grad_w, grad_b, geom, threads=1, has_bias=True):
    """Every entry point with the same geometry; yields a callable per kernel."""
    kh, kw, sh, sw, ph, pw = geom
    yield lambda: dw.depthwise_forward(x, weight, bias, out, kh, kw, sh, sw, ph, pw,
                                       has_bias, threads)
    yield lambda: dw.depthwise_backward_input(dy, weight, dx, kh, kw, sh, sw, ph, pw, threads)
    yield lambda: dw.depthwise_backward_params(x, dy, grad_w, grad_b, kh, kw, sh, sw, ph, pw,
                                               has_bias, threads)


# (H, W, kh, kw, sh, sw, ph, pw, Ho, Wo, message): geometry that a direct call could pass
# and that the loops must never see; Ho, Wo is what C's truncating division, or a
# careless caller, would make of it.
BAD_GEOMETRY = [
    pytest.param(4, 8, 5, 3, 2, 2, 0, 0, 1, 3, r"kernel \(5, 3\) is larger than the padded input \(4, 8\)",
                 id="kernel-taller-than-input-stride-2"),
    pytest.param(8, 4, 3, 5, 2, 2, 0, 0, 3, 1, r"kernel \(3, 5\) is larger than the padded input \(8, 4\)",
                 id="kernel-wider-than-input-stride-2"),
    pytest.param(2, 6, 5, 3, 3, 1, 1, 1, 1, 6, r"kernel \(5, 3\) is larger than the padded input \(4, 8\)",
                 id="kernel-taller-than-padded-input"),
    pytest.param(5, 5, 3, 3, 0, 1, 1, 1, 1, 5, r"stride must be positive, got \(0, 1\)", id="zero-stride"),
    pytest.param(5, 5, 3, 3, -1, 1, 1, 1, 1, 5, r"stride must be positive, got \(-1, 1\)",
                 id="negative-stride"),
    pytest.param(5, 5, 0, 3, 1, 1, 0, 1, 6, 5, r"kernel size must be positive, got \(0, 3\)",
                 id="empty-kernel"),
    pytest.param(5, 5, 3, 3, 1, 1, -1, 1, 1, 5, r"padding must be non-negative, got \(-1, 1\)",
                 id="negative-padding"),
    pytest.param(5, 5, 3, 3, 1, 1, 1, 1, 6, 5, r"inconsistent output size \(6, 5\), expected \(5, 5\)",
                 id="output-one-row-too-many"),
    pytest.param(5, 5, 3, 3, 2, 2, 1, 1, 3, 2, r"inconsistent output size \(3, 2\), expected \(3, 3\)",
                 id="output-one-column-too-few"),
]


@pytest.mark.parametrize("h, w, kh, kw, sh, sw, ph, pw, ho, wo, message", BAD_GEOMETRY)
def test_bad_geometry_raises(h, w, kh, kw, sh, sw, ph, pw, ho, wo, message):
    c = 2
    x = np.ones((1, c, h, w), np.float32)
    weight = np.ones((c, max(kh, 0), max(kw, 0)), np.float32)
    bias = np.ones(c, np.float32)
    dy = np.ones((1, c, ho, wo), np.float32)
    calls = _call_all(x, weight, bias, np.zeros_like(dy), dy, np.zeros_like(x),
                      np.zeros_like(weight), np.zeros_like(bias), (kh, kw, sh, sw, ph, pw))
    for call in calls:
        with pytest.raises(ValueError, match="depthwise kernel: " + message):
            call()


def test_bad_shapes_raise_naming_the_value():
    f32 = np.float32
    x = np.ones((2, 3, 5, 5), f32)
    weight = np.ones((6, 3, 3), f32)          # m = 2
    bias = np.ones(6, f32)
    out = np.zeros((2, 6, 5, 5), f32)
    dy = np.ones((2, 6, 5, 5), f32)
    dx = np.zeros_like(x)
    gw, gb = np.zeros_like(weight), np.zeros_like(bias)
    g = (3, 3, 1, 1, 1, 1)
    for call in _call_all(x, weight, bias, out, dy, dx, gw, gb, g):
        call()                                # the consistent call works

    def raises(message, **changed):
        args = dict(x=x, weight=weight, bias=bias, out=out, dy=dy, dx=dx, grad_w=gw,
                    grad_b=gb, geom=g)
        args.update(changed)
        hit = 0
        for call in _call_all(**args):
            try:
                call()
            except ValueError as exc:
                assert message in str(exc), str(exc)
                hit += 1
        assert hit, f"nothing raised for {changed}"

    raises("4 output channels is not a positive multiple of the 3 input channels",
           weight=np.ones((4, 3, 3), f32), out=np.zeros((2, 4, 5, 5), f32),
           dy=np.ones((2, 4, 5, 5), f32), grad_w=np.zeros((4, 3, 3), f32),
           bias=np.ones(4, f32), grad_b=np.zeros(4, f32))
    raises("weight has shape (6, 3, 2), expected (6, 3, 3)", weight=np.ones((6, 3, 2), f32))
    raises("weight gradient has shape (6, 2, 3), expected (6, 3, 3)",
           grad_w=np.zeros((6, 2, 3), f32))
    raises("bias has length 5, expected 6", bias=np.ones(5, f32))
    raises("bias gradient has length 0, expected 6", grad_b=np.zeros(0, f32))
    raises("output has shape (2, 5, 5, 5), expected (2, 6, Ho, Wo)",
           out=np.zeros((2, 5, 5, 5), f32))
    raises("output gradient has shape (3, 6, 5, 5), expected 2 samples",
           dy=np.ones((3, 6, 5, 5), f32))
    raises("at least one channel, got 0", x=np.ones((2, 0, 5, 5), f32),
           dx=np.zeros((2, 0, 5, 5), f32))
    raises("inconsistent output size (5, 4), expected (5, 5)", out=np.zeros((2, 6, 5, 4), f32),
           dy=np.ones((2, 6, 5, 4), f32))
    for threads in (0, -1):
        for call in _call_all(x, weight, bias, out, dy, dx, gw, gb, g, threads=threads):
            with pytest.raises(ValueError, match=f"num_threads must be at least 1, got {threads}"):
                call()


def test_without_bias_the_bias_arrays_may_be_empty():
    x = np.ones((1, 2, 4, 4))
    weight = np.ones((2, 3, 3))
    out = np.zeros((1, 2, 4, 4))
    dw.depthwise_forward(x, weight, np.empty(0), out, 3, 3, 1, 1, 1, 1, False, 1)
    assert out[0, 0, 1, 1] == 9 and out[0, 0, 0, 0] == 4
    gw = np.zeros_like(weight)
    dw.depthwise_backward_params(x, np.ones_like(out), gw, np.empty(0), 3, 3, 1, 1, 1, 1,
                                 False, 1)
    assert gw[0, 1, 1] == 16


def test_layout_and_dtype_errors():
    x = np.ones((1, 2, 4, 4), np.float32)
    weight = np.ones((2, 3, 3), np.float32)
    bias = np.ones(2, np.float32)
    out = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError):           # the kernels take C-contiguous arrays only
        dw.depthwise_forward(np.ones((1, 2, 4, 8), np.float32)[..., ::2], weight, bias, out,
                             3, 3, 1, 1, 1, 1, True, 1)
    with pytest.raises((TypeError, ValueError)):   # mixed dtypes never reach the loops
        dw.depthwise_forward(x, weight.astype(np.float64), bias, out, 3, 3, 1, 1, 1, 1, True, 1)
    with pytest.raises(TypeError):
        dw.depthwise_forward(x, weight, None, out, 3, 3, 1, 1, 1, 1, True, 1)
