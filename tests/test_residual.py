"""Residual, Concat and Identity containers, GlobalAvgPool2d, grouped convolutions and the
CIFAR ResNets: the contract through containers, twins, gradients and errors.  Parity with
PyTorch is in tests/test_torch_parity.py."""
import copy
import pickle

import numpy as np
import pytest

import cynn
from cynn._kernels import _reference as ref
from cynn._kernels import pooling as _pool
from cynn.models import build, plain_cnn, resnet


def block(c_in, c_out, stride, dtype=np.float64, rng=0):
    """A residual block with a projection shortcut, as in ResNet's downsampling blocks."""
    rng = np.random.default_rng(rng)
    body = cynn.Sequential(
        cynn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False, dtype=dtype,
                    random_state=rng),
        cynn.BatchNormalization(alpha=0.9, dtype=dtype),
        cynn.ChannelwiseScaling(c_out, dtype=dtype, random_state=rng),
        cynn.ReLU(),
        cynn.Conv2d(c_out, c_out, 3, dtype=dtype, random_state=rng),
    )
    shortcut = cynn.Sequential(
        cynn.Conv2d(c_in, c_out, 1, stride=stride, padding=0, dtype=dtype, random_state=rng),
        cynn.ChannelwiseScaling(c_out, dtype=dtype, random_state=rng),
    )
    return cynn.Residual(body, shortcut)


def nested(dtype=np.float64):
    """Containers inside containers inside containers."""
    rng = np.random.default_rng(3)
    return cynn.Sequential(
        cynn.Residual(cynn.Sequential(
            cynn.Conv2d(2, 2, 3, dtype=dtype, random_state=rng),
            cynn.Residual(cynn.Concat(cynn.Conv2d(2, 1, 1, dtype=dtype, random_state=rng),
                                      cynn.Identity(),
                                      cynn.Conv2d(2, 1, 3, groups=1, dtype=dtype,
                                                  random_state=rng)),
                          cynn.Conv2d(2, 4, 1, bias=False, dtype=dtype, random_state=rng)),
            cynn.Tanh(),
            cynn.Conv2d(4, 2, 3, groups=2, dtype=dtype, random_state=rng))),
        cynn.GlobalAvgPool2d(),
        cynn.Linear(2, 3, dtype=dtype, random_state=rng),
    )


# -- containers --------------------------------------------------------------------
def test_identity_residual_sums_body_and_input(rng):
    body = cynn.Conv2d(3, 3, 3, dtype=np.float64, random_state=0)
    res = cynn.Residual(body)
    x = rng.standard_normal((2, 3, 5, 4))
    y = res.forward(x)
    np.testing.assert_allclose(y, cynn.Conv2d(3, 3, 3, dtype=np.float64, random_state=0)(x) + x)
    dy = rng.standard_normal(y.shape)
    dx = res.backward(x, dy)
    ref_dx, ref_dw, ref_db = ref.conv2d_backward(x, body.W, dy, (1, 1), (1, 1))
    np.testing.assert_allclose(dx, ref_dx + dy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(body.gradW, ref_dw, rtol=1e-12, atol=1e-12)
    # gradients accumulate through the container like through any layer
    res.backward(x, dy)
    np.testing.assert_allclose(body.gradW, 2 * ref_dw, rtol=1e-12, atol=1e-12)
    res.zero_grad()
    assert not body.gradW.any()


def test_concat_joins_channels_and_splits_the_gradient(rng):
    a = cynn.Linear(4, 3, dtype=np.float64, random_state=0)
    b = cynn.Linear(4, 2, dtype=np.float64, random_state=1)
    cat = cynn.Concat(a, b, cynn.Identity())
    x = rng.standard_normal((5, 4))
    y = cat.forward(x)
    assert y.shape == (5, 3 + 2 + 4)
    np.testing.assert_array_equal(y[:, :3], a.forward(x))
    np.testing.assert_array_equal(y[:, 5:], x)
    dy = rng.standard_normal(y.shape)
    cat.forward(x)
    dx = cat.backward(x, dy)
    np.testing.assert_allclose(dx, dy[:, :3] @ a.W + dy[:, 3:5] @ b.W + dy[:, 5:], rtol=1e-12)
    np.testing.assert_allclose(a.gradW, dy[:, :3].T @ x, rtol=1e-12)


@pytest.mark.parametrize("make, shape", [
    (lambda: block(3, 4, 2), (2, 3, 7, 6)),
    (lambda: block(3, 3, 1), (1, 3, 5, 5)),
    (lambda: cynn.Concat(cynn.Conv2d(2, 3, 3, stride=2, dtype=np.float64, random_state=0),
                         cynn.Conv2d(2, 1, (3, 1), stride=2, padding=(1, 0),
                                     dtype=np.float64, random_state=1)), (2, 2, 6, 5)),
    (nested, (2, 2, 5, 6)),
    (lambda: cynn.Sequential(cynn.Linear(3, 4, dtype=np.float64, random_state=0),
                             cynn.Residual(cynn.Sequential(cynn.BatchNormalization(),
                                                           cynn.Tanh()))), (6, 3)),
])
def test_containers_pass_gradcheck(make, shape, rng):
    assert cynn.gradcheck(make(), rng.standard_normal(shape))


def test_parameters_state_and_modes_recurse_through_nested_containers(rng, tmp_path):
    model = nested()
    params = model.get_parameters()
    grads = model.get_parameters_grad()
    convs = [m for m in _walk(model) if isinstance(m, cynn.Conv2d)]
    assert len(params) == len(grads) == 2 * len(convs) - 1 + 2
    assert [p.shape for p in params] == [g.shape for g in grads]
    keys = set(model.state_dict())
    assert {"0.0.0.W", "0.0.1.0.0.W", "0.0.1.0.2.b", "0.0.1.1.W", "0.0.3.W", "2.W"} <= keys
    model.evaluate()
    assert not any(m._training for m in _walk(model))
    model.train()
    x = rng.standard_normal((3, 2, 5, 6))
    y = model.forward(x)
    # save / load / copy / pickle give the same function
    cynn.save(model, tmp_path / "m.npz")
    other = cynn.load(nested(), tmp_path / "m.npz")
    for clone in (other, copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        np.testing.assert_array_equal(clone.forward(x), y)
    # astype reaches every leaf
    model.astype(np.float32)
    assert all(p.dtype == np.float32 for p in model.get_parameters())
    assert model.forward(x).dtype == np.float32


def _walk(module):
    yield module
    for child in module.children():
        yield from _walk(child)


def test_concat_dtype_is_the_layers_whatever_the_branch_order():
    pixels = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)          # integers
    conv = cynn.Conv2d(3, 2, 3, random_state=0)                   # float32
    for cat in (cynn.Concat(cynn.Identity(), conv), cynn.Concat(conv, cynn.Identity())):
        out = cat.forward(pixels)
        assert out.dtype == np.float32 and out.shape == (2, 5, 4, 4)
    listed = cynn.Residual(cynn.Identity()).forward([[1.0, 2.0]])
    np.testing.assert_array_equal(listed, [[2.0, 4.0]])


def test_grouped_conv_float32_backward_matches_float64(rng):
    x = rng.standard_normal((3, 6, 7, 8))
    dy = rng.standard_normal((3, 4, 4, 4))
    grads = []
    for dtype in (np.float32, np.float64):
        layer = cynn.Conv2d(6, 4, 3, stride=2, groups=2, dtype=dtype, random_state=0)
        layer.forward(x.astype(dtype))
        grads.append((layer.backward(x.astype(dtype), dy.astype(dtype)), layer.gradW, layer.gradb))
    for a, b in zip(*grads):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_repr_shows_the_tree():
    text = repr(block(3, 4, 2))
    assert text.startswith("Residual(\n  (body): Sequential(")
    assert "(shortcut): Sequential(" in text
    assert "Conv2d(3 -> 4, kernel_size=1, stride=2, padding=0)" in text
    assert repr(cynn.Concat(cynn.Identity())) == "Concat(\n  (0): Identity()\n)"


def test_container_errors_name_the_problem(rng):
    with pytest.raises(TypeError, match="Residual expects a Module as body, got int"):
        cynn.Residual(3)
    with pytest.raises(TypeError, match="branch 1, got str"):
        cynn.Concat(cynn.Identity(), "relu")
    with pytest.raises(ValueError, match="at least one branch"):
        cynn.Concat()
    shared = cynn.Conv2d(3, 3, 3)
    with pytest.raises(ValueError, match="same module object Conv2d.*appears twice"):
        cynn.Concat(shared, shared)
    with pytest.raises(ValueError, match="appears twice"):
        cynn.Residual(shared, shared)
    x = rng.standard_normal((2, 3, 6, 6))
    with pytest.raises(ValueError, match=r"body gives shape \(2, 4, 3, 3\) but the input has "
                                         r"shape \(2, 3, 6, 6\)"):
        cynn.Residual(cynn.Conv2d(3, 4, 3, stride=2)).forward(x)
    with pytest.raises(ValueError, match=r"branch 1 differs"):
        cynn.Concat(cynn.Identity(), cynn.MaxPool2d(2)).forward(x)
    res = block(3, 4, 2)
    res.forward(x)
    before = res.state_dict()
    grad = np.ones((2, 4, 3, 3))
    with pytest.raises(ValueError, match="same input object"):
        res.backward(x.copy(), grad)
    assert all(np.array_equal(v, res.state_dict()[k]) for k, v in before.items())
    assert not any(g.any() for g in res.get_parameters_grad())
    cat = cynn.Concat(cynn.Identity(), cynn.Identity())
    cat.forward(x)
    with pytest.raises(ValueError, match=r"6 entries on axis 1.*\(2, 5, 6, 6\)"):
        cat.backward(x, np.ones((2, 5, 6, 6)))


def test_a_second_thread_training_a_container_is_refused():
    import threading

    model = block(2, 2, 1)
    x = np.ones((1, 2, 4, 4))
    model.forward(x)
    errors = []

    def other():
        try:
            model.backward(x, np.ones((1, 2, 4, 4)))
        except RuntimeError as e:
            errors.append(str(e))

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert errors and "training one model from two threads" in errors[0]


# -- GlobalAvgPool2d -----------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 5, 4, 7), (2, 64, 8, 8)])
def test_global_avgpool_matches_twin(dtype, shape, rng, tolerance):
    x = rng.standard_normal(shape).astype(dtype) + 3
    layer = cynn.GlobalAvgPool2d()
    y = layer.forward(x)
    assert y.dtype == dtype and y.shape == shape[:2]
    np.testing.assert_allclose(y, ref.global_avgpool2d_forward(x.astype(np.float64)),
                               **tolerance(dtype))
    dy = rng.standard_normal(shape[:2]).astype(dtype)
    np.testing.assert_allclose(layer.backward(x, dy), ref.global_avgpool2d_backward(dy, shape),
                               **tolerance(dtype))


def test_global_avgpool_float32_sums_in_double():
    # 4096 values of 1 + 2**-20: a float32 running sum would drift, a double one is exact
    x = np.full((1, 1, 64, 64), 1 + 2.0**-20, dtype=np.float32)
    assert cynn.GlobalAvgPool2d().forward(x)[0, 0] == np.float32(1 + 2.0**-20)
    x = np.random.default_rng(0).standard_normal((1, 1, 512, 512)).astype(np.float32) + 100
    exact = x.astype(np.float64).mean()
    assert abs(cynn.GlobalAvgPool2d().forward(x)[0, 0] - exact) <= 2 * np.spacing(np.float32(100))


def test_global_avgpool_thread_count_does_not_change_bits(rng):
    x = rng.standard_normal((4, 9, 6, 5)).astype(np.float32)
    outs = []
    for threads in (1, 2, 3):
        out = np.empty((4, 9), np.float32)
        _pool.global_avgpool2d_forward(x, out, threads)
        outs.append(out)
    assert all(np.array_equal(outs[0], o) for o in outs)


def test_global_avgpool_bad_input():
    layer = cynn.GlobalAvgPool2d()
    with pytest.raises(ValueError, match=r"4-D input \(N, C, H, W\), got shape \(2, 3\)"):
        layer.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="zero-sized"):
        layer.forward(np.ones((2, 3, 0, 4)))
    layer.forward(np.ones((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"output_grad of shape \(2, 3\), got \(2, 4\)"):
        layer.backward(np.ones((2, 3, 4, 4)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="pooling kernel: inconsistent output shape"):
        _pool.global_avgpool2d_forward(np.ones((2, 3, 4, 4)), np.empty((2, 4)), 1)
    with pytest.raises(ValueError, match="pooling kernel: inconsistent gradient shape"):
        _pool.global_avgpool2d_backward(np.ones((3, 3)), np.empty((2, 3, 4, 4)), 1)


# -- grouped convolution ---------------------------------------------------------------
def grouped_reference(x, layer):
    """Grouped convolution as independent convolutions on channel slices, by the twin."""
    g = layer.groups
    cg, fg = layer.in_channels // g, layer.out_channels // g
    parts = [ref.conv2d_forward(x[:, i * cg:(i + 1) * cg], layer.W[i * fg:(i + 1) * fg],
                                None if layer.b is None else layer.b[i * fg:(i + 1) * fg],
                                layer.stride, layer.padding) for i in range(g)]
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c, f, groups, k, stride, padding, bias", [
    (4, 6, 2, 3, 1, 1, True),
    (6, 3, 3, (3, 1), 2, (1, 0), False),
    (8, 8, 8, 3, 1, 1, True),     # depthwise
    (4, 8, 4, 3, 2, 1, True),     # depthwise, channel multiplier 2, stride 2
    (5, 5, 5, 5, 1, 2, False),
    (4, 4, 4, 3, 2, 0, True),
])
def test_grouped_conv_matches_per_group_twin(dtype, c, f, groups, k, stride, padding, bias,
                                             rng, tolerance):
    layer = cynn.Conv2d(c, f, k, stride=stride, padding=padding, bias=bias, groups=groups,
                        dtype=dtype, random_state=0)
    assert layer.W.shape[:2] == (f, c // groups)
    x = rng.standard_normal((3, c, 9, 7)).astype(dtype)
    y = layer.forward(x)
    np.testing.assert_allclose(y, grouped_reference(x.astype(np.float64), layer),
                               **tolerance(dtype, 1e-11))
    if dtype == np.float64:
        assert cynn.gradcheck(layer, x[:2])


@pytest.mark.parametrize("c, f", [(8, 8), (4, 8)])
def test_direct_depthwise_equals_the_gemm_path(c, f, rng):
    """The direct kernel and the per-group im2col path agree, and the switch works."""
    x = rng.standard_normal((4, c, 10, 9))
    dy = rng.standard_normal((4, f, 5, 5))
    results = []
    for direct in (True, False):
        layer = cynn.Conv2d(c, f, 3, stride=2, groups=c, dtype=np.float64, random_state=1)
        layer.direct_depthwise = direct
        y = layer.forward(x)
        results.append((y, layer.backward(x, dy), layer.gradW.copy(), layer.gradb.copy()))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_grouped_conv_errors():
    with pytest.raises(ValueError, match="groups=3 must divide in_channels=4 and out_channels=6"):
        cynn.Conv2d(4, 6, 3, groups=3)
    with pytest.raises(ValueError, match="groups"):
        cynn.Conv2d(4, 4, 3, groups=0)
    assert repr(cynn.Conv2d(4, 4, 3, groups=4)).endswith("groups=4)")
    old = cynn.Conv2d(2, 2, 3)
    state = old.__dict__.copy()
    del state["groups"]  # a model pickled before grouped convolutions
    revived = cynn.Conv2d.__new__(cynn.Conv2d)
    revived.__setstate__(state)
    assert revived.groups == 1
    np.testing.assert_array_equal(revived.forward(np.ones((1, 2, 4, 4))),
                                  old.forward(np.ones((1, 2, 4, 4))))


# -- models --------------------------------------------------------------------------
def test_resnet_family_shapes_and_errors():
    model = resnet(8, in_channels=3, n_classes=7, width=4, random_state=0)
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 12)).astype(np.float32)
    y = model.forward(x)
    assert y.shape == (2, 7) and y.dtype == np.float32
    assert model.backward(x, np.ones_like(y)).shape == x.shape
    shortcuts = [m for m in _walk(model) if isinstance(m, cynn.Residual) and m.shortcut]
    assert len(shortcuts) == 2  # the two stage transitions
    with pytest.raises(ValueError, match=r"6n \+ 2 \(8, 14, 20, 26, 32.*got 21"):
        resnet(21)
    with pytest.raises(ValueError, match=r"got 2"):
        resnet(2)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        build("resnet", (3, 8, 8), 10)
    with pytest.raises(ValueError, match="needs images"):
        build("resnet8", (64,), 10)
    assert isinstance(build("plain8", (1, 8, 8), 3)[4], cynn.Conv2d)
    with pytest.raises(ValueError, match="plain_cnn: depth must be"):
        build("plain9", (1, 8, 8), 3)
    flat = build("mlp", (64,), 3, random_state=0)
    images = build("mlp", (1, 8, 8), 3, random_state=0)   # flattens its images first
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8))
    np.testing.assert_array_equal(images.forward(x), flat.forward(x.reshape(5, 64)))


def test_same_seed_same_resnet_and_plain_lacks_only_the_projections():
    a, b = resnet(8, width=4, random_state=1), resnet(8, width=4, random_state=1)
    assert all(np.array_equal(p, q) for p, q in zip(a.get_parameters(), b.get_parameters()))
    plain = plain_cnn(8, width=4, random_state=1)
    assert not any(isinstance(m, cynn.Residual) for m in _walk(plain))
    residual_layers = [type(m) for m in _walk(a) if not m.children()]
    plain_layers = [type(m) for m in _walk(plain) if not m.children()]
    # the residual one has, besides, two shortcuts of conv + BN + scaling
    assert len(residual_layers) - len(plain_layers) == 2 * 3
    n_plain = sum(p.size for p in plain.get_parameters())
    n_res = sum(p.size for p in a.get_parameters())
    assert n_res - n_plain == (4 * 8 + 2 * 8) + (8 * 16 + 2 * 16)


def test_resnet_trains_and_resumes_bit_identically(tmp_path):
    """The reliability guarantees hold through containers: a crashed, resumed run of a
    residual network ends with the same bits as one that never stopped."""
    from cynn.trainers import Callback, Trainer

    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 1, 8, 8)).astype(np.float32)
    y = (X[:, 0, :4].sum(axis=(1, 2)) > 0).astype(np.int64)

    class Crash(Exception):
        pass

    class CrashAt(Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 3:
                raise Crash

    def trainer(callbacks=()):
        model = resnet(8, in_channels=1, n_classes=2, width=4, random_state=2)
        return Trainer(model, cynn.CrossEntropyCriterion(), cynn.SGD(model, lr=0.05, momentum=0.9),
                       batch_size=16, random_state=4, verbose=0, callbacks=list(callbacks))

    full = trainer()
    full.fit((X, y), epochs=4, state_path=tmp_path / "a.npz")
    crashed = trainer([CrashAt()])
    with pytest.raises(Crash):
        crashed.fit((X, y), epochs=4, state_path=tmp_path / "b.npz")
    resumed = trainer()
    resumed.fit((X, y), epochs=4, resume_from=tmp_path / "b.npz", state_path=tmp_path / "b.npz")
    for key, value in full.model.state_dict().items():
        assert np.array_equal(value, resumed.model.state_dict()[key]), key
    assert full.history.records[-1]["train_loss"] == resumed.history.records[-1]["train_loss"]
    assert full.history.records[-1]["train_loss"] < full.history.records[0]["train_loss"]
