"""Every kernel against its slow NumPy twin in cynn._kernels._reference, over dtypes and
awkward shapes, and bit-for-bit independence from the thread count."""
import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import cynn
import cynn._kernels
from cynn._kernels import _reference as ref

DTYPES = [np.float32, np.float64]

# (N, C, F, H, W, kernel, stride, padding)
CONV_CASES = [
    (1, 1, 1, 5, 5, (3, 3), (1, 1), (1, 1)),      # batch of 1, one channel
    (2, 3, 4, 7, 5, (3, 2), (1, 1), (1, 0)),      # non-square image and kernel
    (3, 2, 5, 9, 7, (3, 3), (2, 2), (1, 1)),      # stride 2, odd sizes
    (2, 4, 3, 6, 6, (3, 3), (1, 1), (0, 0)),      # padding 0
    (2, 2, 3, 8, 11, (1, 4), (2, 3), (0, 2)),     # thin kernel, uneven stride and padding
    (1, 3, 2, 4, 4, (5, 5), (1, 1), (2, 2)),      # kernel larger than the image
    (2, 1, 2, 5, 5, (2, 2), (1, 1), (3, 3)),      # padding larger than the kernel
    (4, 5, 6, 3, 3, (3, 3), (3, 3), (0, 0)),      # a single output pixel
    # Column blocks past the ~256 KB chunk: the kernels split the output rows (3 + 3 +
    # 3 + 1 rows here, 5 + 1 with stride 2), padding rows falling inside a chunk.
    (2, 16, 3, 10, 48, (5, 5), (1, 1), (2, 2)),
    (2, 16, 3, 11, 60, (5, 5), (2, 2), (2, 2)),
    # Row widths around im2col's 64/32/16-byte moves: 28 ends in an overlapping move
    # (16 + 12 floats, 3 x 8 + 4 doubles); 3 and 2 are copied value by value.
    (2, 3, 4, 6, 28, (3, 3), (1, 1), (1, 1)),
    (2, 2, 3, 4, 3, (1, 1), (1, 1), (0, 0)),
    (1, 2, 3, 4, 4, (3, 3), (1, 1), (0, 0)),
]


def _awkward(x, kind):
    """The same values as a non-contiguous or a read-only array."""
    if kind == "noncontiguous":
        big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), dtype=x.dtype)
        big[..., ::2] = x
        view = big[..., ::2]
        assert not view.flags.c_contiguous
        return view
    if kind == "readonly":
        y = x.copy()
        y.setflags(write=False)
        return y
    return x


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("kind", ["plain", "noncontiguous", "readonly"])
def test_conv2d_matches_reference(case, dtype, kind, rng, tolerance):
    n, c, f, h, w, k, s, p = case
    conv = cynn.Conv2d(c, f, k, stride=s, padding=p, dtype=dtype, random_state=0)
    x64 = rng.standard_normal((n, c, h, w))
    x = _awkward(x64.astype(dtype), kind)
    y = conv.forward(x)
    w64, b64 = conv.W.astype(np.float64), conv.b.astype(np.float64)
    expected = ref.conv2d_forward(x.astype(np.float64), w64, b64, s, p)
    assert y.dtype == dtype and y.shape == expected.shape
    tol = tolerance(dtype)
    np.testing.assert_allclose(y, expected, **tol)

    dy = _awkward(rng.standard_normal(y.shape).astype(dtype), kind)
    dx = conv.backward(x, dy)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x.astype(np.float64), w64, dy.astype(np.float64), s, p)
    assert dx.dtype == dtype and dx.shape == x.shape
    np.testing.assert_allclose(dx, dx_ref, **tol)
    np.testing.assert_allclose(conv.gradW, dw_ref, **tol)
    np.testing.assert_allclose(conv.gradb, db_ref, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("as_conv", [True, False])
def test_conv2d_input_grad_paths_match_reference(case, dtype, as_conv, rng, monkeypatch, tolerance):
    """Both input-gradient paths (a correlation of dy with the flipped kernel, or a GEMM
    and col2im), forced on every case; the first falls back where it does not apply
    (stride 2, padding past the kernel)."""
    n, c, f, h, w, k, s, p = case
    monkeypatch.setattr(cynn.Conv2d, "_FLIP_MIN_CHANNELS", 1 if as_conv else 10**9)
    monkeypatch.setattr(cynn.Conv2d, "_FLIP_MAX_RATIO", 10**9)
    conv = cynn.Conv2d(c, f, k, stride=s, padding=p, dtype=dtype, random_state=0)
    kh, kw = conv.kernel_size
    ph, pw = conv.padding
    assert conv._grad_input_as_conv(ph, pw) == (as_conv and s == (1, 1) and ph < kh and pw < kw)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    dy = rng.standard_normal(conv.forward(x).shape).astype(dtype)
    dx = conv.backward(x, dy)
    dx_ref = ref.conv2d_backward(x.astype(np.float64), conv.W.astype(np.float64),
                                 dy.astype(np.float64), s, p)[0]
    tol = tolerance(dtype)
    np.testing.assert_allclose(dx, dx_ref, **tol)


@pytest.fixture
def direct_conv():
    """Switch the conv kernel's direct stride-1 convolution for one test, then restore it."""
    from cynn._kernels import conv

    old = conv.set_direct(True)
    yield conv.set_direct
    conv.set_direct(old)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES + [(3, 3, 6, 9, 40, (3, 3), (1, 1), (1, 1)),
                                               (2, 1, 5, 7, 17, (5, 5), (1, 1), (2, 2)),
                                               (2, 17, 9, 6, 5, (3, 2), (1, 1), (0, 1)),
                                               (1, 5, 3, 4, 4, (1, 1), (1, 1), (0, 0)),
                                               (2, 17, 9, 14, 11, (3, 2), (1, 1), (0, 1)),
                                               (1, 5, 3, 13, 12, (1, 1), (1, 1), (0, 0)),
                                               (2, 4, 7, 14, 14, (3, 3), (1, 1), (1, 1))])
@pytest.mark.parametrize("direct", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_forward_paths_match_reference(case, dtype, direct, bias, rng, direct_conv, tolerance):
    """The forward pass with the direct convolution off (im2col + GEMM everywhere) and on
    (stride-1 cases of at least 128 wide-grid positions), with and without bias; the
    extra cases have rows of 40 and 17 values, wide output grids whose last tile runs
    past the sample or is one vector (224 positions) or two (160) wide, filter counts
    that are not a multiple of the kernel's blocks of four, non-square kernels and 1x1."""
    n, c, f, h, w, k, s, p = case
    direct_conv(direct)
    conv = cynn.Conv2d(c, f, k, stride=s, padding=p, bias=bias, dtype=dtype, random_state=0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = conv.forward(x)
    expected = ref.conv2d_forward(x.astype(np.float64), conv.W.astype(np.float64),
                                  None if conv.b is None else conv.b.astype(np.float64), s, p)
    tol = tolerance(dtype)
    np.testing.assert_allclose(y, expected, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("direct", [False, True])
def test_conv2d_input_gradient_as_convolution_matches_reference(dtype, direct, rng, direct_conv,
                                                               tolerance):
    """16 -> 9 channels at stride 1 takes the flipped-kernel path for dx, which runs on
    the direct kernel when it is on."""
    direct_conv(direct)
    conv = cynn.Conv2d(16, 9, 3, dtype=dtype, random_state=0)
    assert conv._grad_input_as_conv(1, 1)
    x = rng.standard_normal((3, 16, 7, 11)).astype(dtype)
    dy = rng.standard_normal((3, 9, 7, 11)).astype(dtype)
    conv.forward(x)
    dx = conv.backward(x, dy)
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x.astype(np.float64), conv.W.astype(np.float64),
                                                 dy.astype(np.float64), (1, 1), (1, 1))
    np.testing.assert_allclose(dx, dx_ref, **tolerance(dtype))
    np.testing.assert_allclose(conv.gradW, dw_ref, **tolerance(dtype))


@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("channels, filters, stride, kernel", [
    (6, 10, 1, "wide"), (6, 10, 2, "gemm"), (16, 33, 2, "filters")])
def test_conv2d_filters_shared_out_when_samples_are_fewer_than_threads(n, channels, filters,
                                                                       stride, kernel, rng):
    """With fewer samples than threads the direct kernels split each sample's filter
    blocks between threads (10 filters: 3 blocks of 4 for the wide-grid kernel; 33: 3
    blocks of 16 for the filter-vector one), the GEMM path does not: either way, layer by
    layer and planned, the same values as one thread, bit for bit."""
    from cynn._kernels import conv as kernels

    assert kernels.forward_kernel(channels, 9, 8, 3, 3, stride, stride, 1, 1, True) == kernel
    conv = cynn.Conv2d(channels, filters, 3, stride=stride, random_state=0)
    conv.evaluate()
    x = rng.standard_normal((n, channels, 9, 8)).astype(np.float32)
    previous = cynn.get_num_threads()
    runs = []
    try:
        for threads in (1, 3):
            cynn.set_num_threads(threads)
            with cynn.inference_mode():
                planned = cynn.Sequential(conv).forward(x)
            runs.append((conv.forward(x), planned))
    finally:
        cynn.set_num_threads(previous)
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    np.testing.assert_array_equal(runs[1][1], runs[0][1])


# Geometries of the direct kernel vectorized over filters (from 64 taps per filter, at
# stride 2 or on planes of fewer than 128 wide positions): filter counts short of its
# blocks of 16 (10, 33: a last block of one), output planes that are not a multiple of
# its tiles of 6 (float) or 3 (double) positions, a tile that crosses output rows,
# uneven strides, non-square kernels, 1x1, and chunks of output rows (16 channels at
# 40x40, stride 2: 16 rows a chunk; 64 channels at 80x80: 1).  The weight gradient
# runs on it for any plane, so a large stride-1 plane is there too.
FILTER_CASES = [
    (2, 8, 10, 12, 12, (3, 3), (2, 2), (1, 1)),
    (3, 16, 33, 7, 9, (3, 3), (1, 1), (1, 1)),
    (2, 70, 17, 5, 4, (1, 1), (1, 1), (0, 0)),
    (1, 8, 20, 13, 11, (5, 3), (2, 1), (2, 1)),
    (1, 16, 16, 40, 40, (3, 3), (2, 2), (1, 1)),
    (1, 64, 16, 80, 80, (3, 3), (2, 2), (1, 1)),
    (1, 300, 20, 3, 10, (1, 1), (1, 1), (0, 0)),
    (2, 9, 7, 6, 5, (3, 3), (1, 1), (0, 0)),
    (1, 64, 16, 40, 40, (3, 3), (1, 1), (1, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FILTER_CASES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d_filter_vector_kernel_matches_reference(case, dtype, bias, rng, direct_conv,
                                                       tolerance):
    """Forward, input gradient (as a correlation where it applies) and weight gradient
    on the filter-vector direct kernel's geometries, against the float64 reference, and
    the forward equal to the im2col + GEMM path's within rounding."""
    n, c, f, h, w, k, s, p = case
    direct_conv(True)
    conv = cynn.Conv2d(c, f, k, stride=s, padding=p, bias=bias, dtype=dtype, random_state=0)
    from cynn._kernels import conv as kernels

    expect = "wide" if (s == (1, 1) and h > 16) else "filters"
    assert kernels.forward_kernel(c, h, w, *conv.kernel_size, *conv.stride, *conv.padding) == expect
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    y = conv.forward(x)
    w64 = conv.W.astype(np.float64)
    b64 = None if conv.b is None else conv.b.astype(np.float64)
    tol = tolerance(dtype)
    np.testing.assert_allclose(y, ref.conv2d_forward(x.astype(np.float64), w64, b64, s, p), **tol)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = conv.backward(x, dy)
    dx_ref, dw_ref, _ = ref.conv2d_backward(x.astype(np.float64), w64, dy.astype(np.float64), s, p)
    np.testing.assert_allclose(dx, dx_ref, **tol)
    np.testing.assert_allclose(conv.gradW, dw_ref, **tol)
    direct_conv(False)
    np.testing.assert_allclose(conv.forward(x), y, **tol)


def test_conv2d_kernel_choice_follows_the_geometry(direct_conv):
    """ResNet-20's and the MNIST network's convolutions take the kernel measured fastest
    for them (see conv.pyx ``_kind``); switched off, the direct kernels leave them to
    the GEMM or to the wide-grid kernel."""
    from cynn._kernels import conv as kernels

    direct_conv(True)
    pick = kernels.forward_kernel
    assert pick(16, 32, 32, 3, 3, 1, 1, 1, 1) == "wide"       # 32x32, 16 channels
    assert pick(3, 32, 32, 3, 3, 1, 1, 1, 1) == "wide"        # the 3-channel first layer
    assert pick(64, 8, 8, 3, 3, 1, 1, 1, 1) == "filters"      # 8x8: 80 wide positions
    assert pick(16, 32, 32, 3, 3, 2, 2, 1, 1) == "filters"    # stride 2
    assert pick(3, 8, 8, 3, 3, 1, 1, 1, 1) == "gemm"          # 27 taps, small plane
    assert pick(3, 8, 8, 3, 3, 1, 1, 1, 1, evaluation=True) == "wide"
    assert pick(16, 32, 32, 1, 1, 2, 2, 0, 0) == "gemm"       # a 1x1 projection of 16 taps
    previous = kernels.set_filter_direct(False)
    try:
        assert pick(64, 8, 8, 3, 3, 1, 1, 1, 1) == "gemm"
        assert pick(16, 32, 32, 3, 3, 2, 2, 1, 1) == "gemm"
        assert pick(64, 8, 8, 3, 3, 1, 1, 1, 1, evaluation=True) == "wide"
    finally:
        kernels.set_filter_direct(previous)
    direct_conv(False)
    assert pick(16, 32, 32, 3, 3, 1, 1, 1, 1) == "gemm"


def _conv_pass(conv, x, dy):
    """One forward and backward pass from zeroed gradients: y, dx, gradW, gradb."""
    conv.zero_grad()
    y = conv.forward(x)
    dx = conv.backward(x, dy)
    return y, dx, conv.gradW.copy(), conv.gradb.copy()


@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_filter_vector_gradients_do_not_depend_on_the_thread_count(stride, rng):
    """The filter-vector kernels' input and weight gradients (16 -> 33 channels, 144
    taps) are the same bits on 1, 2 and 3 threads."""
    conv = cynn.Conv2d(16, 33, 3, stride=stride, random_state=0)
    x = rng.standard_normal((5, 16, 9, 8)).astype(np.float32)
    dy = rng.standard_normal(conv.forward(x).shape).astype(np.float32)
    previous = cynn.get_num_threads()
    runs = []
    try:
        for threads in (1, 2, 3):
            cynn.set_num_threads(threads)
            runs.append(_conv_pass(conv, x, dy))
    finally:
        cynn.set_num_threads(previous)
    for run in runs[1:]:
        for got, want in zip(run, runs[0]):
            np.testing.assert_array_equal(got, want)


def _has_64_byte_vectors():
    from cynn._kernels import conv as kernels

    try:
        kernels.set_vector_bytes(kernels.set_vector_bytes(64))
    except ValueError:
        return False
    return True


@pytest.mark.skipif(not _has_64_byte_vectors(), reason="the CPU has no 64-byte vectors")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", FILTER_CASES + [(2, 16, 48, 8, 8, (3, 3), (1, 1), (1, 1)),
                                                 (2, 16, 32, 8, 8, (3, 3), (1, 1), (1, 1)),
                                                 (3, 24, 40, 12, 10, (3, 3), (2, 2), (1, 1)),
                                                 (2, 3, 16, 32, 32, (3, 3), (1, 1), (1, 1)),
                                                 (2, 32, 64, 16, 16, (3, 3), (1, 1), (1, 1))])
def test_conv2d_64_byte_vectors_give_the_32_byte_bits(case, dtype, rng, direct_conv, tolerance):
    """The direct kernels on 64-byte vectors (tiles of two blocks of filters for
    float32, a last block alone when their number is odd) compute the same sums in
    the same order as on 32-byte vectors: forward, input and weight gradients, bit for
    bit, on both direct kernels' geometries.  The one exception is the wide-grid weight
    gradient, which reduces its sums across the vector's lanes: there the two widths
    agree within rounding, and both match the float64 reference."""
    from cynn._kernels import conv as kernels

    n, c, f, h, w, k, s, p = case
    direct_conv(True)
    conv = cynn.Conv2d(c, f, k, stride=s, padding=p, dtype=dtype, random_state=0)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    dy = rng.standard_normal(conv.forward(x).shape).astype(dtype)
    runs, wgrad_kernels = [], []
    previous = kernels.vector_bytes()
    try:
        for width in (32, 64):
            kernels.set_vector_bytes(width)
            wgrad_kernels.append(kernels.weight_grad_kernel(c, h, w, *k, *s, *p))
            runs.append(_conv_pass(conv, x, dy))
    finally:
        kernels.set_vector_bytes(previous)
    for got, want in zip(runs[1][:2], runs[0][:2]):
        np.testing.assert_array_equal(got, want)
    if "wide" not in wgrad_kernels:
        for got, want in zip(runs[1][2:], runs[0][2:]):
            np.testing.assert_array_equal(got, want)
    _, dw_ref, db_ref = ref.conv2d_backward(x.astype(np.float64), conv.W.astype(np.float64),
                                            dy.astype(np.float64), s, p)
    for gw, gb in (runs[0][2:], runs[1][2:]):
        np.testing.assert_allclose(gw, dw_ref, **tolerance(dtype))
        np.testing.assert_allclose(gb, db_ref, **tolerance(dtype))


@pytest.mark.skipif(not _has_64_byte_vectors(), reason="the CPU has no 64-byte vectors")
def test_conv2d_kernel_choice_follows_filters_and_width(direct_conv):
    from cynn._kernels import conv as kernels

    direct_conv(True)
    pick = kernels.weight_grad_kernel
    previous = kernels.vector_bytes()
    try:
        for width in (32, 64):
            kernels.set_vector_bytes(width)
            assert pick(16, 32, 32, 3, 3, 1, 1, 1, 1) == "filters"
            assert pick(3, 32, 32, 3, 3, 1, 1, 1, 1) == "wide"      # 27 taps
            assert pick(3, 8, 8, 3, 3, 1, 1, 1, 1) == "gemm"
        kernels.set_vector_bytes(64)
        # the input gradient (evaluation too) of one block of filters: the wide grid
        forward = kernels.forward_kernel
        assert forward(32, 8, 8, 3, 3, 1, 1, 1, 1, True, 16) == "wide"
        assert forward(32, 8, 8, 3, 3, 1, 1, 1, 1, True, 17) == "filters"
        assert forward(32, 8, 8, 3, 3, 1, 1, 1, 1, False, 16) == "filters"
        assert forward(32, 8, 8, 3, 3, 2, 2, 1, 1, True, 16) == "filters"
        kernels.set_vector_bytes(32)
        assert forward(32, 8, 8, 3, 3, 1, 1, 1, 1, True, 16) == "filters"
    finally:
        kernels.set_vector_bytes(previous)


def test_conv2d_vector_width_is_checked():
    from cynn._kernels import conv as kernels

    with pytest.raises(ValueError, match="48"):
        kernels.set_vector_bytes(48)
    assert kernels.vector_bytes() in (32, 64)


def test_conv2d_without_bias_matches_reference(rng):
    conv = cynn.Conv2d(2, 3, 3, bias=False, dtype=np.float64, random_state=0)
    x = rng.standard_normal((2, 2, 5, 4))
    y = conv.forward(x)
    np.testing.assert_allclose(y, ref.conv2d_forward(x, conv.W, None, (1, 1), (1, 1)), atol=1e-12)
    assert conv.get_parameters() == [conv.W]
    dy = rng.standard_normal(y.shape)
    dx = conv.backward(x, dy)
    dx_ref, dw_ref, _ = ref.conv2d_backward(x, conv.W, dy, (1, 1), (1, 1))
    np.testing.assert_allclose(dx, dx_ref, atol=1e-12)
    np.testing.assert_allclose(conv.gradW, dw_ref, atol=1e-12)


POOL_CASES = [
    (1, 1, 4, 4, (2, 2), (2, 2), (0, 0)),
    (2, 3, 7, 5, (3, 3), (2, 2), (1, 1)),   # overlapping windows, odd sizes, padding
    (2, 2, 6, 9, (2, 3), (1, 2), (1, 0)),   # non-square kernel and stride
    (3, 1, 5, 5, (5, 5), (1, 1), (2, 2)),
    (1, 2, 3, 8, (1, 1), (1, 1), (0, 0)),
    (2, 3, 10, 38, (2, 2), (2, 2), (0, 0)),  # 2x2 path: vectorized rows and their tail
    (2, 2, 9, 7, (2, 2), (2, 2), (0, 0)),    # 2x2 path, odd sizes drop the last row/col
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("kind", ["plain", "noncontiguous", "readonly"])
def test_maxpool2d_matches_reference(case, dtype, kind, rng):
    n, c, h, w, k, s, p = case
    pool = cynn.MaxPool2d(k, s, p)
    x = _awkward(rng.standard_normal((n, c, h, w)).astype(dtype), kind)
    y = pool.forward(x)
    y_ref, idx_ref = ref.maxpool2d_forward(np.asarray(x), k, s, p)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, y_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = pool.backward(x, dy)
    np.testing.assert_allclose(dx, ref.maxpool2d_backward(dy, idx_ref, x.shape), rtol=1e-6, atol=1e-6)


def test_maxpool2d_ties_go_to_first_element():
    pool = cynn.MaxPool2d(2)
    x = np.ones((1, 1, 2, 2))
    pool.forward(x)
    dx = pool.backward(x, np.full((1, 1, 1, 1), 3.0))
    np.testing.assert_array_equal(dx, [[[[3.0, 0.0], [0.0, 0.0]]]])


def test_maxpool2d_propagates_nan():
    x = np.array([[[[1.0, np.nan], [5.0, 2.0]]]])
    assert np.isnan(cynn.MaxPool2d(2).forward(x)).all()


# Plane sizes for the 2x2 kernel: output rows of 1-3 (one by one), 4 and 8 (whole
# vectors), 5, 7, 14, 17 (vectors and an overlapping last vector), odd sizes whose last
# row or column belongs to no window.
POOL_2X2_PLANES = [(2, 2), (4, 6), (8, 8), (6, 10), (14, 14), (9, 15), (28, 28), (8, 34),
                   (5, 16), (3, 33)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h, w", POOL_2X2_PLANES)
def test_maxpool2d_2x2_ties_and_nans(dtype, h, w, rng):
    # Few distinct values make ties common; NaNs sit at random places.  Expected: the
    # first NaN of a window if it has one, else the first of its maxima (row-major).
    x = rng.integers(-1, 2, size=(3, 2, h, w)).astype(dtype)
    x[rng.random(x.shape) < 0.05] = np.nan
    ho, wo = h // 2, w // 2
    pool = cynn.MaxPool2d(2)
    y = pool.forward(x)
    win = (x[:, :, :2 * ho, :2 * wo].reshape(3, 2, ho, 2, wo, 2).transpose(0, 1, 2, 4, 3, 5)
           .reshape(3, 2, ho, wo, 4))
    has_nan = np.isnan(win).any(axis=-1)
    first = np.where(has_nan, np.isnan(win).argmax(axis=-1),
                     np.nan_to_num(win, nan=-np.inf).argmax(axis=-1))
    np.testing.assert_array_equal(y, np.take_along_axis(win, first[..., None], -1)[..., 0])
    dy = rng.standard_normal(y.shape).astype(dtype)
    dy[rng.random(dy.shape) < 0.2] = -0.0
    dx = pool.backward(x, dy)
    expected = np.zeros_like(win)
    np.put_along_axis(expected, first[..., None], dy[..., None] + 0.0, -1)
    full = np.zeros_like(x)
    full[:, :, :2 * ho, :2 * wo] = (expected.reshape(3, 2, ho, wo, 2, 2)
                                    .transpose(0, 1, 2, 4, 3, 5).reshape(3, 2, 2 * ho, 2 * wo))
    # Bits, signs of zeros included: a -0.0 gradient lands as +0.0, as in clear-then-add.
    np.testing.assert_array_equal(dx.view(f"i{dx.itemsize}"), full.view(f"i{dx.itemsize}"))


@pytest.mark.parametrize("dtype", DTYPES)
def test_maxpool2d_2x2_backward_ignores_an_index_outside_its_window(dtype):
    """The 2x2 backward writes each window's four inputs from its own index: an index
    array that was tampered with changes no input outside the window it names."""
    from cynn._kernels import pooling

    dy = np.arange(1, 17, dtype=dtype).reshape(1, 1, 4, 4)
    argmax = np.array([[0, 3, 4, 7], [16, 19, 20, 23], [32, 35, 36, 39], [48, 51, 52, 55]],
                      np.int32).reshape(1, 1, 4, 4)
    dx = np.full((1, 1, 8, 8), np.nan, dtype)
    pooling.maxpool2d_backward(dy, argmax, dx, 2, 2, 2, 2, 0, 0, 1)
    expected = np.zeros((8, 8), dtype)
    for oh in range(4):
        for ow in range(4):
            i = argmax[0, 0, oh, ow]
            expected[i // 8, i % 8] = dy[0, 0, oh, ow]
    np.testing.assert_array_equal(dx[0, 0], expected)
    bad = argmax.copy()
    bad[0, 0, 1, 2] = 0          # names window (0, 0), not its own
    bad[0, 0, 3, 3] = 10 ** 6    # names nothing in the plane
    pooling.maxpool2d_backward(dy, bad, dx, 2, 2, 2, 2, 0, 0, 1)
    expected[argmax[0, 0, 1, 2] // 8, argmax[0, 0, 1, 2] % 8] = 0
    expected[argmax[0, 0, 3, 3] // 8, argmax[0, 0, 3, 3] % 8] = 0
    np.testing.assert_array_equal(dx[0, 0], expected)
    with pytest.raises(ValueError, match="pooling kernel: inconsistent output size"):
        pooling.maxpool2d_backward(dy, argmax, np.zeros((1, 1, 10, 8), dtype),
                                   2, 2, 2, 2, 0, 0, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3), (7, 5), (300, 70), (4, 3, 5, 6), (1, 2, 3, 3), (2, 1, 1, 7), (3, 2, 40, 41)])
@pytest.mark.parametrize("kind", ["plain", "noncontiguous", "readonly"])
def test_batchnorm_matches_reference(shape, dtype, kind, rng, tolerance):
    bn = cynn.BatchNormalization(alpha=0.3, dtype=dtype)
    x = _awkward((rng.standard_normal(shape) * 3 + 1).astype(dtype), kind)
    y = bn.forward(x)
    x64 = np.asarray(x, dtype=np.float64)
    y_ref, mean, var = ref.batchnorm_forward(x64, 1e-3)
    tol = tolerance(dtype, float64=1e-11)
    np.testing.assert_allclose(y, y_ref, **tol)
    np.testing.assert_allclose(bn.moving_mean, 0.7 * mean, **tol)
    np.testing.assert_allclose(bn.moving_variance, 0.3 + 0.7 * var, **tol)
    dy = _awkward(rng.standard_normal(shape).astype(dtype), kind)
    dx = bn.backward(x, dy)
    np.testing.assert_allclose(dx, ref.batchnorm_backward(x64, np.asarray(dy, np.float64), 1e-3), **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [1, 7, 32768, 100003])
def test_relu_kernel_matches_numpy(size, dtype, rng):
    relu = cynn.ReLU()
    x = rng.standard_normal((1, size)).astype(dtype)
    x[0, ::97] = 0.0
    x[0, 3::101] = np.nan
    dy = rng.standard_normal(x.shape).astype(dtype)
    dy[0, 5::89] = np.inf
    np.testing.assert_array_equal(relu.forward(x), np.maximum(x, 0))  # NaN passes through
    # Gradient dy where x > 0, and exactly 0 elsewhere (also at x = 0 and x = NaN, and
    # for an infinite dy), as in PyTorch's threshold_backward.
    np.testing.assert_array_equal(relu.backward(x, dy), np.where(x > 0, dy, 0))


def _run_model(threads, dtype):
    previous = cynn.get_num_threads()
    cynn.set_num_threads(threads)
    try:
        model = cynn.Sequential(
            cynn.Conv2d(3, 8, 3, dtype=dtype, random_state=0),
            cynn.BatchNormalization(alpha=0.9, dtype=dtype),
            cynn.ReLU(),
            cynn.MaxPool2d(2),
            cynn.Conv2d(8, 8, 3, dtype=dtype, random_state=4),  # dx by the flipped kernel
            cynn.Conv2d(8, 16, 3, stride=2, dtype=dtype, random_state=1),
            cynn.BatchNormalization(dtype=dtype),
            cynn.ChannelwiseScaling(16, dtype=dtype, random_state=2),
            cynn.Flatten(),
            cynn.Linear(16 * 4 * 4, 40, dtype=dtype, random_state=3),
            cynn.BatchNormalization(dtype=dtype),
        )
        # 40 samples: the ReLU sees several of its parallel blocks and a partial one.
        x = np.random.default_rng(0).standard_normal((40, 3, 16, 16)).astype(dtype)
        y = model.forward(x)
        dy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        dx = model.backward(x, dy)
        return [y, dx] + [g.copy() for g in model.get_parameters_grad()]
    finally:
        cynn.set_num_threads(previous)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [2, 11])
def test_results_do_not_depend_on_thread_count(dtype, threads):
    """1 thread against 2, and against 11: more threads than the conv layers' 8 groups of
    weight-gradient partial sums, where dx runs in its own pass over the samples."""
    one = _run_model(1, dtype)
    many = _run_model(threads, dtype)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_kernels_reject_inconsistent_shapes():
    """The def wrappers re-check sizes: a bug in a layer raises, never writes out of bounds."""
    from cynn._kernels import conv, pooling

    x = np.zeros((2, 3, 5, 5), np.float32)
    w = np.zeros((4, 28), np.float32)  # (F, K + 1): the bias is the last column
    out = np.zeros((2, 4, 5, 5), np.float32)
    enough = conv.workspace_size(3, 5, 5, 3, 3, 1, 1, 5, 5, 4, 4)
    assert enough >= 28 * 25 + 3 * 7 * 7  # (K + 1) * P columns and a padded (3, 7, 7) sample
    conv.conv2d_forward(x, w, np.zeros((1, enough), np.float32), out, 3, 3, 1, 1, 1, 1, True, 1, True)
    with pytest.raises(ValueError, match="inconsistent column workspace"):
        conv.conv2d_forward(x, w, np.zeros((1, enough - 1), np.float32), out, 3, 3, 1, 1, 1, 1, True, 1, True)
    with pytest.raises(ValueError, match="inconsistent weight shape"):
        conv.conv2d_forward(x, w[:, :27].copy(), np.zeros((1, enough), np.float32), out,
                            3, 3, 1, 1, 1, 1, True, 1, True)
    with pytest.raises(ValueError, match="inconsistent output size"):
        conv.conv2d_forward(x, w, np.zeros((1, enough), np.float32), out, 3, 3, 2, 2, 1, 1, True, 1, True)
    with pytest.raises(ValueError, match="inconsistent column workspace"):
        # two threads need two workspace rows
        conv.conv2d_forward(x, w, np.zeros((1, enough), np.float32), out, 3, 3, 1, 1, 1, 1, True, 2, True)
    with pytest.raises(ValueError, match="inconsistent"):
        pooling.maxpool2d_forward(x, np.zeros((2, 3, 3, 3), np.float32),
                                  np.zeros((2, 3, 2, 2), np.int32), 2, 2, 2, 2, 0, 0, 1)
    with pytest.raises((ValueError, TypeError)):
        # Mixed dtypes cannot reach the loops.
        conv.conv2d_forward(x, w.astype(np.float64), np.zeros((1, enough), np.float32),
                            out, 3, 3, 1, 1, 1, 1, True, 1, True)


# Geometry a direct call could give the kernels, (H, W, kh, kw, sh, sw, ph, pw, Ho, Wo),
# where Ho, Wo is what C's truncating division makes of (H + 2ph - kh) // sh + 1: each
# names one output row or column where there is none (floor division says 0), or worse.
BAD_GEOMETRY = [
    pytest.param(4, 8, 5, 3, 2, 2, 0, 0, 1, 3, id="kernel-taller-than-input-stride-2"),
    pytest.param(8, 4, 3, 5, 2, 2, 0, 0, 3, 1, id="kernel-wider-than-input-stride-2"),
    pytest.param(2, 6, 5, 3, 3, 1, 1, 1, 1, 6, id="kernel-taller-than-padded-input"),
    pytest.param(3, 3, 4, 4, 3, 3, 0, 0, 1, 1, id="kernel-larger-than-input-stride-3"),
    pytest.param(5, 5, 3, 3, 0, 1, 1, 1, 1, 5, id="zero-stride"),
    pytest.param(5, 5, 3, 3, -1, 1, 1, 1, 1, 5, id="negative-stride"),
    pytest.param(5, 5, 0, 3, 1, 1, 0, 1, 6, 5, id="empty-kernel"),
    pytest.param(5, 5, 3, 3, 1, 1, -1, 1, 1, 5, id="negative-padding"),
]


@pytest.mark.parametrize("h, w, kh, kw, sh, sw, ph, pw, ho, wo", BAD_GEOMETRY)
def test_conv_kernels_reject_geometry_c_division_would_accept(h, w, kh, kw, sh, sw, ph, pw, ho, wo):
    """Called directly, the conv entry points check kh <= H + 2ph (likewise kw) and the
    output size with non-negative numbers, before any loop reads the padded input."""
    from cynn._kernels import conv

    c, f = 2, 3
    k = c * max(kh, 0) * max(kw, 0)
    x = np.ones((1, c, h, w), np.float32)
    ws = np.zeros((1, 1 << 14), np.float32)
    with pytest.raises(ValueError, match="conv kernel: inconsistent output size"):
        conv.conv2d_forward(x, np.ones((f, k + 1), np.float32), ws,
                            np.zeros((1, f, ho, wo), np.float32), kh, kw, sh, sw, ph, pw,
                            True, 1, True)
    with pytest.raises(ValueError, match="conv kernel: inconsistent output size"):
        conv.conv2d_backward(x, np.ones((1, f, ho, wo), np.float32), np.ones((f, k), np.float32),
                             np.zeros_like(x), ws, np.zeros((1, k + 1, f), np.float32), ws.copy(),
                             kh, kw, sh, sw, ph, pw, True, True, False, 1, True)


@pytest.mark.parametrize("h, w, kh, kw, sh, sw, ph, pw, ho, wo", BAD_GEOMETRY + [
    # The 2x2, stride 2 loop reads rows 2 * oh and 2 * oh + 1: a one-row plane has no second.
    pytest.param(1, 4, 2, 2, 2, 2, 0, 0, 1, 2, id="2x2-pool-over-one-row"),
    pytest.param(4, 1, 2, 2, 2, 2, 0, 0, 2, 1, id="2x2-pool-over-one-column"),
])
def test_pool_kernel_rejects_geometry_c_division_would_accept(h, w, kh, kw, sh, sw, ph, pw, ho, wo):
    from cynn._kernels import pooling

    x = np.ones((1, 2, h, w), np.float32)
    with pytest.raises(ValueError, match="pooling kernel: inconsistent output size"):
        pooling.maxpool2d_forward(x, np.zeros((1, 2, ho, wo), np.float32),
                                  np.zeros((1, 2, ho, wo), np.int32), kh, kw, sh, sw, ph, pw, 1)


def test_conv_kernels_reject_a_thread_count_below_one():
    """OpenMP reads num_threads(0) as 'the default', more threads than workspace rows."""
    from cynn._kernels import conv

    x = np.ones((4, 3, 5, 5), np.float32)
    ws = np.zeros((1, conv.workspace_size(3, 5, 5, 3, 3, 1, 1, 5, 5, 4, 4)), np.float32)
    for threads in (0, -1):
        with pytest.raises(ValueError, match="conv kernel: inconsistent thread count"):
            conv.conv2d_forward(x, np.ones((4, 28), np.float32), ws,
                                np.zeros((4, 4, 5, 5), np.float32), 3, 3, 1, 1, 1, 1, True,
                                threads, True)
        with pytest.raises(ValueError, match="conv kernel: inconsistent thread count"):
            conv.conv2d_backward(x, np.ones((4, 4, 5, 5), np.float32), np.ones((4, 27), np.float32),
                                 np.zeros_like(x), ws, np.zeros((1, 28, 4), np.float32), ws.copy(),
                                 3, 3, 1, 1, 1, 1, True, True, False, threads, True)


def test_geometry_checks_accept_windows_that_just_fit():
    """The checks reject no geometry that is valid: a kernel as large as the padded input
    gives one output; every stride and padding of the layers' own tests still runs."""
    from cynn._kernels import conv, pooling

    x = np.ones((1, 1, 3, 4), np.float64)
    out = np.zeros((1, 1, 1, 1), np.float64)
    ws = np.zeros((1, conv.workspace_size(1, 3, 4, 5, 6, 1, 1, 1, 1, 8, 1)), np.float64)
    conv.conv2d_forward(x, np.ones((1, 31), np.float64), ws, out, 5, 6, 2, 3, 1, 1, True, 1, True)
    assert out[0, 0, 0, 0] == 12 + 1  # every input value once, plus the bias
    pooled = np.zeros((1, 1, 1, 2), np.float64)
    pooling.maxpool2d_forward(x, pooled, np.zeros((1, 1, 1, 2), np.int32), 2, 2, 2, 2, 0, 0, 1)
    np.testing.assert_array_equal(pooled, 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3), (7, 5), (300, 70), (4, 3, 5, 6), (1, 2, 1, 1)])
@pytest.mark.parametrize("kind", ["plain", "noncontiguous", "readonly"])
def test_channelwise_scaling_matches_reference(shape, dtype, kind, rng, tolerance):
    layer = cynn.ChannelwiseScaling(shape[1], dtype=dtype, random_state=0)
    x = _awkward(rng.standard_normal(shape).astype(dtype), kind)
    dy = _awkward(rng.standard_normal(shape).astype(dtype), kind)
    y = layer.forward(x)
    dx = layer.backward(x, dy)
    args = [np.asarray(a, dtype=np.float64) for a in (x, layer.gamma, layer.beta, dy)]
    y_ref, dx_ref, dgamma_ref, dbeta_ref = ref.channelwise_scaling(*args)
    tol = tolerance(dtype)
    for got, want in ((y, y_ref), (dx, dx_ref), (layer.gradGamma, dgamma_ref), (layer.gradBeta, dbeta_ref)):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (33, 7, 5), (64, 10, 512), (100, 65, 3)])
@pytest.mark.parametrize("trans_a,trans_b", [(False, False), (False, True), (True, False), (True, True)])
def test_dense_matmul_matches_reference(m, n, k, trans_a, trans_b, dtype, rng, tolerance):
    from cynn._kernels import dense

    a = rng.standard_normal((k, m) if trans_a else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if trans_b else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    tol = tolerance(dtype)
    for beta in (0.0, 1.0):
        c = c0.copy()
        dense.matmul(a, b, c, trans_a, trans_b, beta, 2, True)
        want = ref.matmul(a.astype(np.float64), b.astype(np.float64), trans_a, trans_b) + beta * c0
        np.testing.assert_allclose(c, want, **tol)
    with pytest.raises(ValueError, match="inconsistent"):
        dense.matmul(a, b, np.zeros((m + 1, n), dtype), trans_a, trans_b, 0.0, 1, True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("as_conv", [True, False])
def test_conv2d_fused_backward_matches_separate_hooks(dtype, as_conv, rng, monkeypatch, tolerance):
    """backward computes the weight-gradient partial sums with dx and the parameter hook
    adds them up; called with another dy or another x than the input-gradient hook just
    got, the parameter hook computes them itself, from its own arguments, to the same bits."""
    monkeypatch.setattr(cynn.Conv2d, "_FLIP_MIN_CHANNELS", 1 if as_conv else 10**9)
    monkeypatch.setattr(cynn.Conv2d, "_FLIP_MAX_RATIO", 10**9)
    conv = cynn.Conv2d(3, 4, 3, dtype=dtype, random_state=0)
    assert conv._grad_input_as_conv(1, 1) == as_conv
    # 21 samples: 8 groups of 2 or 3, each summing several samples.
    x = rng.standard_normal((21, 3, 9, 8)).astype(dtype)
    dy = rng.standard_normal(conv.forward(x).shape).astype(dtype)
    dx = conv.backward(x, dy)
    fused = conv.gradW.copy(), conv.gradb.copy()
    dx_ref, dw_ref, db_ref = ref.conv2d_backward(x.astype(np.float64), conv.W.astype(np.float64),
                                                 dy.astype(np.float64), (1, 1), (1, 1))
    tol = tolerance(dtype)
    np.testing.assert_allclose(dx, dx_ref, **tol)
    np.testing.assert_allclose(fused[0], dw_ref, **tol)
    np.testing.assert_allclose(fused[1], db_ref, **tol)

    conv.zero_grad()
    conv._compute_input_grad(x, rng.standard_normal(dy.shape).astype(dtype))
    conv._update_parameters_grad(x, dy.copy())  # another dy: recomputed
    np.testing.assert_array_equal(conv.gradW, fused[0])
    np.testing.assert_array_equal(conv.gradb, fused[1])

    conv.zero_grad()
    conv._compute_input_grad(rng.standard_normal(x.shape).astype(dtype), dy)
    conv._update_parameters_grad(x, dy)  # another x: recomputed
    np.testing.assert_array_equal(conv.gradW, fused[0])

    # The same objects: the parameter hook only adds up what the first hook left.
    conv.zero_grad()
    np.testing.assert_array_equal(conv._compute_input_grad(x, dy), dx)
    with monkeypatch.context() as m:
        m.setattr(conv, "_backward", lambda *args: pytest.fail("partial sums recomputed"))
        conv._update_parameters_grad(x, dy)
    np.testing.assert_array_equal(conv.gradW, fused[0])


def test_conv2d_astype_between_the_backward_hooks(rng):
    """astype drops the layer's workspaces: the partial sums left by the input-gradient
    hook must not be read back from a fresh buffer."""
    conv = cynn.Conv2d(2, 3, 3, dtype=np.float32, random_state=0)
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    conv._compute_input_grad(x, dy)
    conv.astype(np.float64)
    conv._update_parameters_grad(x, dy)  # the same objects, now taken as float64
    _, dw_ref, db_ref = ref.conv2d_backward(x.astype(np.float64), conv.W,
                                            dy.astype(np.float64), (1, 1), (1, 1))
    np.testing.assert_allclose(conv.gradW, dw_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv.gradb, db_ref, rtol=1e-12, atol=1e-12)


KERNEL_DIR = Path(cynn._kernels.__file__).parent
HEADERS = sorted(p.name for p in KERNEL_DIR.glob("*.h"))


@pytest.mark.skipif(not HEADERS, reason="the kernels' C headers ship in the sdist, not the wheel")
@pytest.mark.parametrize("header", HEADERS)
def test_kernel_header_compiles_alone_without_warnings(header, tmp_path):
    """Each header under cynn/_kernels stands on its own: it includes what it uses, its
    include guard makes a second include harmless, and gcc -Wall -Wextra at the flags
    Python builds extensions with has nothing to say about it."""
    cc = shutil.which((sysconfig.get_config_var("CC") or "cc").split()[0]) or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler")
    source = tmp_path / "header.c"
    source.write_text(f'#include "{header}"\n#include "{header}"\n')
    flags = (sysconfig.get_config_var("CFLAGS") or "").split() + ["-Wall", "-Wextra", "-Werror"]
    result = subprocess.run(
        [cc, *flags, "-fPIC", "-I", sysconfig.get_paths()["include"], "-I", str(KERNEL_DIR),
         "-c", str(source), "-o", str(tmp_path / "header.o")],
        capture_output=True, text=True)
    assert result.returncode == 0 and not result.stderr, result.stderr


def _dot_widths():
    from cynn._kernels import dense

    return [32, 64] if dense.dot_vector_bytes() == 64 else [32]


@pytest.fixture(params=_dot_widths(), ids=lambda n: f"{n}-byte")
def dot_width(request):
    """Linear's products on each vector width this CPU has (dense.h's two tiles)."""
    from cynn._kernels import dense

    previous = dense.set_dot_vector_bytes(request.param)
    yield request.param
    dense.set_dot_vector_bytes(previous)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, k, n_out", [(1, 3136, 128), (5, 7, 4), (50, 1030, 25), (3, 1, 1),
                                        (30, 70, 61), (101, 600, 30)])
def test_linear_forward_kernel_matches_reference_and_is_batch_invariant(m, k, n_out, dtype, rng,
                                                                        tolerance, dot_width):
    """y = x W^T with K tails past the last vector and past the last 512-value chunk, row
    and output counts that are not multiples of the tiles; each row alone, and any
    thread count, gives the same bits as the row inside the batch, on either width."""
    from cynn._kernels import dense

    x = rng.standard_normal((m, k)).astype(dtype)
    w = rng.standard_normal((n_out, k)).astype(dtype)
    y = np.empty((m, n_out), dtype)
    dense.linear_forward(x, w, y, 2)
    expected = x.astype(np.float64) @ w.T.astype(np.float64)
    # sums of k products of unit normals: errors grow like sqrt(k) times the rounding
    t = (1e-6 if dtype == np.float32 else 1e-15) * np.sqrt(k) * np.sqrt(k)
    np.testing.assert_allclose(y, expected, rtol=0, atol=t)
    for row in {0, m // 2, m - 1}:
        alone = np.empty((1, n_out), dtype)
        dense.linear_forward(np.ascontiguousarray(x[row:row + 1]), w, alone, 3)
        np.testing.assert_array_equal(alone[0], y[row])
    fused = dense.linear_step(x, w, np.ones(n_out, dtype), True, False, 2)
    np.testing.assert_array_equal(fused, np.where(y + 1 <= 0, 0, y + 1))
    with pytest.raises(ValueError, match="inconsistent weight shape"):
        dense.linear_forward(x, w[:, :-1].copy() if k > 1 else np.empty((n_out, 2), dtype), y, 1)
    with pytest.raises(ValueError, match="inconsistent output shape"):
        dense.linear_forward(x, w, np.empty((m, n_out + 1), dtype), 1)
    with pytest.raises(ValueError, match="32 or 64"):
        dense.set_dot_vector_bytes(16)
