"""Gradient checks for every layer with parameters or kernels, and their input checks."""
import pickle

import numpy as np
import pytest

import cynn


def _x(rng, *shape):
    return rng.standard_normal(shape)


GRADCHECK_CASES = [
    ("linear", lambda: cynn.Linear(4, 3, random_state=0), (5, 4)),
    ("linear-nobias", lambda: cynn.Linear(4, 3, bias=False, random_state=0), (2, 4)),
    ("conv-same", lambda: cynn.Conv2d(2, 3, 3, random_state=0), (2, 2, 5, 4)),
    ("conv-stride", lambda: cynn.Conv2d(2, 2, (3, 2), stride=2, padding=(1, 0), random_state=0), (2, 2, 7, 6)),
    ("conv-valid", lambda: cynn.Conv2d(1, 2, 3, padding="valid", random_state=0), (1, 1, 5, 5)),
    ("conv-even", lambda: cynn.Conv2d(2, 2, 2, padding=1, random_state=0), (2, 2, 4, 3)),
    ("conv-nobias", lambda: cynn.Conv2d(2, 2, 3, bias=False, random_state=0), (2, 2, 4, 4)),
    ("bn-2d", lambda: cynn.BatchNormalization(alpha=0.5), (6, 3)),
    ("bn-4d", lambda: cynn.BatchNormalization(), (3, 2, 3, 4)),
    ("bn-eval", lambda: _trained_bn().evaluate(), (4, 2, 2, 3)),
    ("scaling-2d", lambda: cynn.ChannelwiseScaling(3, random_state=0), (4, 3)),
    ("scaling-4d", lambda: cynn.ChannelwiseScaling(2, random_state=0), (3, 2, 2, 3)),
    ("maxpool", lambda: cynn.MaxPool2d(2), (2, 2, 4, 6)),
    ("maxpool-overlap", lambda: cynn.MaxPool2d(3, 2, 1), (1, 2, 5, 5)),
    ("avgpool", lambda: cynn.AvgPool2d(2), (2, 2, 4, 6)),
    ("avgpool-overlap", lambda: cynn.AvgPool2d((3, 2), (2, 1)), (2, 1, 7, 5)),
    ("flatten", lambda: cynn.Flatten(), (2, 3, 2, 2)),
    ("dropout-eval", lambda: cynn.Dropout(0.3).evaluate(), (4, 5)),
    ("small-cnn", lambda: cynn.Sequential(
        cynn.Conv2d(1, 3, 3, random_state=0), cynn.BatchNormalization(),
        cynn.ChannelwiseScaling(3, random_state=1), cynn.MaxPool2d(2), cynn.Flatten(),
        cynn.Linear(12, 2, random_state=2)), (3, 1, 4, 4)),
]


def _trained_bn():
    bn = cynn.BatchNormalization(alpha=0.5, dtype=np.float64)
    bn.forward(np.random.default_rng(3).standard_normal((8, 2, 2, 3)) * 2 + 1)
    return bn


@pytest.mark.parametrize("name,make,shape", GRADCHECK_CASES, ids=[c[0] for c in GRADCHECK_CASES])
def test_gradcheck(name, make, shape, rng):
    assert cynn.gradcheck(make(), _x(rng, *shape))


def test_gradcheck_detects_a_wrong_gradient(rng):
    class WrongScale(cynn.Linear):
        def _compute_input_grad(self, input, output_grad):
            return 1.01 * super()._compute_input_grad(input, output_grad)

    with pytest.raises(cynn.GradcheckError, match="input"):
        cynn.gradcheck(WrongScale(3, 2, random_state=0), _x(rng, 4, 3))
    assert not cynn.gradcheck(WrongScale(3, 2, random_state=0), _x(rng, 4, 3), raise_exception=False)


def test_gradcheck_rejects_nondeterministic_module(rng):
    with pytest.raises(ValueError, match="not deterministic"):
        cynn.gradcheck(cynn.Dropout(0.5), _x(rng, 4, 5))


def test_dropout_training_mask_and_gradient(rng):
    drop = cynn.Dropout(0.25, random_state=0)
    x = np.ones((200, 50), dtype=np.float32)
    y = drop.forward(x)
    kept = y != 0
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    assert abs(kept.mean() - 0.75) < 0.02
    dy = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(drop.backward(x, dy), dy * y)  # mask of the forward pass
    drop.evaluate()
    np.testing.assert_array_equal(drop.forward(x), x)


def test_dropout_masks_repeat_with_manual_seed():
    cynn.manual_seed(7)
    a = cynn.Dropout(0.5).forward(np.ones((4, 10)))
    cynn.manual_seed(7)
    b = cynn.Dropout(0.5).forward(np.ones((4, 10)))
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5, float("nan"), "0.5"])
def test_dropout_rejects_bad_p(p):
    with pytest.raises(ValueError, match="p must"):
        cynn.Dropout(p)


def test_batchnorm_eval_uses_moving_statistics(rng):
    bn = cynn.BatchNormalization(alpha=0.0, dtype=np.float64)
    x = rng.standard_normal((10, 3)) * 2 + 5
    bn.forward(x)
    np.testing.assert_allclose(bn.moving_mean, x.mean(axis=0))
    np.testing.assert_allclose(bn.moving_variance, x.var(axis=0))  # biased, as in the seed
    bn.evaluate()
    z = rng.standard_normal((4, 3))
    expected = (z - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + 1e-3)
    np.testing.assert_allclose(bn.forward(z), expected)
    dy = rng.standard_normal((4, 3))
    np.testing.assert_allclose(bn.backward(z, dy), dy / np.sqrt(x.var(axis=0) + 1e-3))


def test_batchnorm_before_training_uses_seed_initial_statistics(rng):
    bn = cynn.BatchNormalization(dtype=np.float64).evaluate()
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(bn.forward(x), x / np.sqrt(1 + 1e-3))


def test_batchnorm_channel_count_is_checked():
    bn = cynn.BatchNormalization(n_features=3)
    with pytest.raises(ValueError, match="3 channels.*\\(2, 4\\)"):
        bn.forward(np.zeros((2, 4)))
    bn = cynn.BatchNormalization()
    bn.forward(np.zeros((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="3 channels"):
        bn.forward(np.zeros((2, 5, 2, 2)))


@pytest.mark.parametrize("make,bad,pattern", [
    (lambda: cynn.Conv2d(3, 4, 3), np.zeros((8, 1, 28, 28)), r"3 channels, got shape \(8, 1, 28, 28\)"),
    (lambda: cynn.Conv2d(3, 4, 3), np.zeros((3, 28, 28)), r"4-D input.*\(3, 28, 28\)"),
    (lambda: cynn.Conv2d(1, 4, 5, padding=0), np.zeros((2, 1, 3, 8)), r"larger than the padded input"),
    (lambda: cynn.Conv2d(1, 4, 3), np.zeros((0, 1, 5, 5)), r"empty batch"),
    (lambda: cynn.MaxPool2d(3), np.zeros((1, 1, 2, 2)), r"larger than the padded input"),
    (lambda: cynn.MaxPool2d(2), np.zeros((2, 4)), r"4-D input"),
    (lambda: cynn.AvgPool2d(2), np.zeros((1, 1, 1, 5)), r"larger than the padded input"),
    (lambda: cynn.Linear(4, 2), np.zeros((3, 5)), r"4 features, got shape \(3, 5\)"),
    (lambda: cynn.Linear(4, 2), np.zeros((3, 4, 1)), r"2-D input"),
    (lambda: cynn.BatchNormalization(), np.zeros((2, 3, 4)), r"2 or 4-D input"),
    (lambda: cynn.BatchNormalization(), np.zeros((0, 3)), r"empty batch"),
    (lambda: cynn.ChannelwiseScaling(3), np.zeros((2, 2)), r"3 channels"),
])
def test_bad_input_shapes_raise_value_error(make, bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        make().forward(bad)


@pytest.mark.parametrize("bad", [
    np.array([[1 + 2j, 3j]]), np.array([["a", "b"]]), np.array([[object(), None]], dtype=object),
])
@pytest.mark.parametrize("make", [lambda: cynn.Linear(2, 2), cynn.Flatten, cynn.BatchNormalization])
def test_non_numeric_input_raises_type_error(make, bad):
    with pytest.raises(TypeError, match="real numeric"):
        make().forward(bad)


def test_wrong_output_grad_shape_is_reported(rng):
    conv = cynn.Conv2d(1, 2, 3)
    x = rng.standard_normal((2, 1, 5, 5))
    conv.forward(x)
    with pytest.raises(ValueError, match=r"output_grad of shape \(2, 2, 5, 5\), got \(2, 2, 4, 4\)"):
        conv.backward(x, np.zeros((2, 2, 4, 4)))


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(in_channels=0, out_channels=2, kernel_size=3), "in_channels must be a positive integer, got 0"),
    (dict(in_channels=1, out_channels=-2, kernel_size=3), "out_channels must be a positive integer, got -2"),
    (dict(in_channels=1, out_channels=2, kernel_size=0), "kernel_size must be a positive integer, got 0"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, stride=0), "stride must be a positive integer, got 0"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, stride=(1, 2, 3)), r"stride must be an int or a pair"),
    (dict(in_channels=1, out_channels=2, kernel_size=4), "odd kernel_size, got \\(4, 4\\)"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, padding=-1), "padding must be a non-negative integer, got -1"),
    (dict(in_channels=1, out_channels=2, kernel_size=3, padding="full"), "padding must be 'same'"),
    (dict(in_channels=1.5, out_channels=2, kernel_size=3), "in_channels must be a positive integer, got 1.5"),
])
def test_conv2d_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        cynn.Conv2d(**kwargs)


@pytest.mark.parametrize("make,pattern", [
    (lambda: cynn.Linear(0, 2), "n_in must be a positive integer, got 0"),
    (lambda: cynn.MaxPool2d(2, padding=2), r"padding \(2, 2\) must be at most half"),
    (lambda: cynn.MaxPool2d(2, stride=0), "stride must be a positive integer, got 0"),
    (lambda: cynn.AvgPool2d(-1), "kernel_size must be a positive integer, got -1"),
    (lambda: cynn.BatchNormalization(alpha=1.5), r"alpha must be a number in \[0.0, 1.0\], got 1.5"),
    (lambda: cynn.BatchNormalization(eps=0), "eps must be a positive finite number, got 0"),
    (lambda: cynn.ChannelwiseScaling(0), "n_out must be a positive integer, got 0"),
])
def test_bad_layer_arguments(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


@pytest.mark.parametrize("dtype", ["float16", np.int32, "complex64"])
def test_bad_dtype_argument(dtype):
    with pytest.raises(TypeError, match="float32 or float64"):
        cynn.Conv2d(1, 1, 3, dtype=dtype)


def test_other_dtypes_are_cast_at_the_boundary(rng):
    conv = cynn.Conv2d(1, 2, 3, random_state=0)
    x = rng.standard_normal((2, 1, 4, 4))
    y64 = conv.forward(x)                         # float64 input, float32 layer
    y16 = conv.forward(x.astype(np.float16))
    yint = conv.forward(np.ones((2, 1, 4, 4), dtype=np.int64))
    assert y64.dtype == y16.dtype == yint.dtype == np.float32
    np.testing.assert_allclose(y64, conv.forward(x.astype(np.float32)))
    np.testing.assert_allclose(yint, conv.forward(np.ones((2, 1, 4, 4), np.float32)))


def test_parameterless_layers_keep_float_dtype(rng):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 2, 4, 4)).astype(dtype)
        assert cynn.MaxPool2d(2).forward(x).dtype == dtype
        assert cynn.AvgPool2d(2).forward(x).dtype == dtype
        assert cynn.Flatten().forward(x).dtype == dtype


def test_initialization_follows_the_seed():
    conv = cynn.Conv2d(16, 8, 3, random_state=0)
    bound = 1 / np.sqrt(16)
    assert conv.W.shape == (8, 16, 3, 3) and conv.b.shape == (8,)
    assert np.abs(conv.W).max() <= bound and np.abs(conv.W).max() > 0.9 * bound
    assert abs(conv.W.mean()) < 0.02
    lin = cynn.Linear(25, 4, random_state=0)
    assert np.abs(lin.W).max() <= 0.2 and lin.W.shape == (4, 25)
    assert conv.W.dtype == np.float32


def test_random_state_and_manual_seed_make_initialization_repeatable():
    np.testing.assert_array_equal(cynn.Conv2d(2, 3, 3, random_state=5).W,
                                  cynn.Conv2d(2, 3, 3, random_state=5).W)
    cynn.manual_seed(11)
    a = cynn.Linear(3, 3).W
    cynn.manual_seed(11)
    b = cynn.Linear(3, 3).W
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, cynn.Linear(3, 3).W)


def test_repr_says_what_the_layer_is():
    assert repr(cynn.Conv2d(3, 16, 3)) == "Conv2d(3 -> 16, kernel_size=3, stride=1, padding=1)"
    assert repr(cynn.Conv2d(3, 16, (3, 1), stride=2, padding=(1, 0), bias=False)) == \
        "Conv2d(3 -> 16, kernel_size=(3, 1), stride=2, padding=(1, 0), bias=False)"
    assert repr(cynn.Linear(4, 2)) == "Linear(4 -> 2)"
    assert repr(cynn.MaxPool2d(2)) == "MaxPool2d(kernel_size=2, stride=2)"
    assert repr(cynn.Dropout(0.3)) == "Dropout(p=0.3)"
    assert repr(cynn.BatchNormalization(0.9)) == "BatchNormalization(alpha=0.9, eps=0.001)"
    assert repr(cynn.ChannelwiseScaling(5)) == "ChannelwiseScaling(5)"


def test_layers_pickle_without_their_last_batch(rng):
    conv = cynn.Conv2d(2, 3, 3, random_state=0)
    x = rng.standard_normal((4, 2, 6, 6))
    y = conv.forward(x)
    restored = pickle.loads(pickle.dumps(conv))
    assert restored._output is None
    np.testing.assert_array_equal(restored.forward(x), y)


@pytest.mark.parametrize("init, bound", [("seed", 1 / np.sqrt(4)), ("fan_in", 1 / np.sqrt(4 * 3 * 3))])
def test_conv2d_init_bounds(init, bound):
    conv = cynn.Conv2d(4, 64, 3, init=init, random_state=0)
    for a in (conv.W, conv.b):
        assert np.abs(a).max() <= bound
    # 2,304 uniform draws fill the interval: the extremes come close to the bound.
    assert np.abs(conv.W).max() > 0.99 * bound
    assert abs(conv.W.std() - bound / np.sqrt(3)) < 0.05 * bound


def test_conv2d_rejects_unknown_init():
    with pytest.raises(ValueError, match="init must be 'seed' or 'fan_in', got 'he'"):
        cynn.Conv2d(1, 2, 3, init="he")


@pytest.mark.parametrize("shape", [(32, 16), (8, 16, 5, 7)])
def test_float32_moving_mean_matches_the_float64_mean_of_the_same_batch(shape):
    # float32 lane sums once missed np.allclose in 25 of 100 draws of (32, 16) batches.
    rng = np.random.default_rng(0)
    axes = (0,) if len(shape) == 2 else (0, 2, 3)
    misses = 0
    for _ in range(100):
        x = rng.uniform(-5, 5, shape).astype(np.float32)
        layer = cynn.BatchNormalization(dtype=np.float32)
        layer.forward(x)
        exact = x.astype(np.float64).mean(axis=axes)
        misses += not np.allclose(layer.moving_mean, exact)
        assert np.allclose(layer.moving_variance, x.astype(np.float64).var(axis=axes))
    assert misses == 0
