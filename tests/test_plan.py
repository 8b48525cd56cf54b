"""Inference plans (cynn._plan): inside inference_mode a Sequential fuses Conv2d with the
batch norm, scaling, ReLU, pooling and residual sum after it.  The fused output must equal
the layer-by-layer one, whatever the layers, dtype, batch and thread count, and bad input
must get the layers' own errors."""
import numpy as np
import pytest

import cynn
from cynn import _plan
from cynn._kernels import conv as _conv
from cynn._kernels import dense as _dense
from cynn.models import resnet, small_cnn


def _settle(model, rng, x):
    """Moving statistics and scalings away from their initial values: one training step,
    then random statistics, so that folding them is exercised."""
    model.train()
    out = model.forward(x)
    model.backward(x, np.ones_like(out))
    stack = [model]
    while stack:
        m = stack.pop()
        stack.extend(m.children())
        if isinstance(m, cynn.BatchNormalization):
            m.moving_mean[...] = rng.normal(0, 0.3, m.moving_mean.shape)
            m.moving_variance[...] = rng.uniform(0.3, 2.0, m.moving_variance.shape)
        if isinstance(m, cynn.ChannelwiseScaling):
            m.gamma[...] = rng.uniform(-1.5, 1.5, m.gamma.shape)
            m.beta[...] = rng.normal(0, 0.2, m.beta.shape)
    model.evaluate()
    return model


def _both(model, x):
    with cynn.inference_mode():
        fused = model.forward(x)
        previous = cynn.set_inference_plans(False)
        try:
            plain = model.forward(x)
        finally:
            cynn.set_inference_plans(previous)
    return fused, plain


def _assert_close(fused, plain, dtype):
    assert fused.dtype == plain.dtype and fused.shape == plain.shape
    scale = max(float(np.abs(plain).max()), 1e-30)
    # the folded affine map rounds once where the layers round three times
    atol = (1e-5 if dtype == np.float32 else 1e-12) * scale
    np.testing.assert_allclose(fused, plain, rtol=0, atol=atol)


def _blocks(dtype, rng):
    c = dict(dtype=dtype, random_state=rng)
    bn = dict(alpha=0.5, dtype=dtype)
    return {
        "conv-bn-cs-relu-pool": [cynn.Conv2d(3, 6, 3, **c), cynn.BatchNormalization(n_features=6, **bn),
                                 cynn.ChannelwiseScaling(6, **c), cynn.ReLU(), cynn.MaxPool2d(2)],
        "conv-bias-only": [cynn.Conv2d(3, 5, 3, **c)],
        "conv-no-bias-bn": [cynn.Conv2d(3, 9, 3, bias=False, **c),
                            cynn.BatchNormalization(n_features=9, **bn)],
        "conv-cs-relu": [cynn.Conv2d(3, 4, 5, padding=2, **c), cynn.ChannelwiseScaling(4, **c),
                         cynn.ReLU()],
        "strided-conv-bn-relu": [cynn.Conv2d(3, 7, 3, stride=2, padding=1, bias=False, **c),
                                 cynn.BatchNormalization(n_features=7, **bn), cynn.ReLU()],
        "1x1-conv-pool-3-2": [cynn.Conv2d(3, 6, 1, padding=0, **c), cynn.MaxPool2d(3, stride=2)],
        "rect-kernel-rect-pool": [cynn.Conv2d(3, 5, (3, 2), padding=(1, 0), **c), cynn.ReLU(),
                                  cynn.MaxPool2d((2, 3), stride=(1, 2))],
        "padded-pool-not-fused": [cynn.Conv2d(3, 4, 3, **c), cynn.ReLU(),
                                  cynn.MaxPool2d(3, stride=2, padding=1)],
        "residual-identity-relu": [cynn.Conv2d(3, 8, 3, **c), cynn.Residual(cynn.Sequential(
            cynn.Conv2d(8, 8, 3, bias=False, **c), cynn.BatchNormalization(n_features=8, **bn),
            cynn.ChannelwiseScaling(8, **c), cynn.ReLU(), cynn.Conv2d(8, 8, 3, bias=False, **c),
            cynn.BatchNormalization(n_features=8, **bn), cynn.ChannelwiseScaling(8, **c))),
            cynn.ReLU()],
        "residual-projection-no-relu": [cynn.Residual(
            cynn.Sequential(cynn.Conv2d(3, 8, 3, stride=2, bias=False, **c),
                            cynn.BatchNormalization(n_features=8, **bn)),
            cynn.Sequential(cynn.Conv2d(3, 8, 1, stride=2, padding=0, bias=False, **c),
                            cynn.BatchNormalization(n_features=8, **bn)))],
        "residual-body-ends-in-relu": [cynn.Residual(cynn.Sequential(
            cynn.Conv2d(3, 3, 3, **c), cynn.ReLU())), cynn.ReLU()],
        # 3 -> 8 runs on the wide-grid kernel, 8 -> 33 (72 taps) and the strided
        # 33 -> 16 on the filter-vector one, with the pooling and the ReLU epilogues
        "filter-vector-conv-bn-relu-pool": [
            cynn.Conv2d(3, 8, 3, **c), cynn.Conv2d(8, 33, 3, bias=False, **c),
            cynn.BatchNormalization(n_features=33, **bn), cynn.ReLU(), cynn.MaxPool2d(2),
            cynn.Conv2d(33, 16, 3, stride=2, **c), cynn.ReLU()],
        "grouped-conv-not-fused": [cynn.Conv2d(4 - 1, 6, 3, **c), cynn.Conv2d(6, 6, 3, groups=3, **c),
                                   cynn.BatchNormalization(n_features=6, **bn), cynn.ReLU()],
    }


BLOCKS = list(_blocks(np.float32, np.random.default_rng(0)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", BLOCKS)
@pytest.mark.parametrize("batch", [1, 3])
def test_fused_blocks_equal_layer_by_layer(name, dtype, batch):
    rng = np.random.default_rng(1)
    model = cynn.Sequential(*_blocks(dtype, rng)[name])
    x = rng.standard_normal((batch, 3, 11, 10)).astype(dtype)
    _settle(model, rng, x)
    fused, plain = _both(model, x)
    _assert_close(fused, plain, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [4, 7, 9, 16, 28, 34])
def test_pooling_epilogue_over_row_widths(width, dtype):
    """The epilogue's 2x2 pooling takes rows of 8 and 4 outputs in vector lanes and
    the last n % 4 as an overlapping group of 4 (rows of fewer than 4 one by one):
    rows of 2, 3, 4, 8, 14 and 17 outputs, with NaNs, against the layers."""
    rng = np.random.default_rng(6)
    model = cynn.Sequential(*_blocks(dtype, rng)["conv-bn-cs-relu-pool"])
    x = rng.standard_normal((2, 3, 6, width)).astype(dtype)
    _settle(model, rng, x)
    x[1, 0, 2, width // 2] = np.nan
    fused, plain = _both(model, x)
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(plain))
    finite = ~np.isnan(plain)
    _assert_close(fused[finite], plain[finite], dtype)


@pytest.mark.parametrize("build, shape", [
    (lambda: small_cnn((1, 8, 8), 10, random_state=0), (1, 8, 8)),
    (lambda: small_cnn((3, 12, 12), 4, random_state=0), (3, 12, 12)),
    (lambda: resnet(8, random_state=0), (3, 32, 32)),
])
@pytest.mark.parametrize("batch", [1, 2, 17])
def test_models_fused_equal_layer_by_layer(build, shape, batch):
    rng = np.random.default_rng(2)
    model = build()
    x = rng.random((batch,) + shape, dtype=np.float32)
    _settle(model, rng, x)
    fused, plain = _both(model, x)
    _assert_close(fused, plain, np.float32)


def test_the_plan_fuses_what_it_should_and_nothing_else():
    model = small_cnn((1, 8, 8), 10, random_state=0)
    steps = _plan.plan(model.modules)
    convs = [s for s in steps if isinstance(s, _plan.ConvStep)]
    assert len(convs) == 2
    first, second = convs
    assert first.bn is model[1] and first.scaling is model[2] and first.relu and first.pool is None
    assert second.relu and second.pool is model[8]
    net = resnet(8, random_state=0)
    assert sum(isinstance(s, _plan.ResidualStep) for s in _plan.plan(net.modules)) == 3

    class MyReLU(cynn.ReLU):
        pass

    custom = cynn.Sequential(cynn.Conv2d(1, 2, 3), MyReLU())
    steps = _plan.plan(custom.modules)
    assert isinstance(steps[0], _plan.ConvStep) and not steps[0].relu  # a subclass runs as itself
    assert len(steps) == 2


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_fused_results_do_not_depend_on_the_thread_count(batch):
    rng = np.random.default_rng(3)
    model = resnet(8, random_state=0)
    x = rng.random((batch, 3, 16, 16), dtype=np.float32)
    _settle(model, rng, x)
    previous = cynn.get_num_threads()
    outs = []
    try:
        for threads in (1, 2, 3):
            cynn.set_num_threads(threads)
            with cynn.inference_mode():
                outs.append(model.forward(x))
    finally:
        cynn.set_num_threads(previous)
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])


def test_nan_propagates_as_in_the_layers():
    rng = np.random.default_rng(4)
    model = cynn.Sequential(*_blocks(np.float32, rng)["conv-bn-cs-relu-pool"])
    x = rng.standard_normal((2, 3, 11, 10)).astype(np.float32)
    _settle(model, rng, x)
    x[0, 1, 4, 4] = np.nan
    fused, plain = _both(model, x)
    np.testing.assert_array_equal(np.isnan(fused), np.isnan(plain))
    assert np.isnan(fused).any()


def test_outside_inference_mode_evaluation_keeps_what_backward_needs():
    rng = np.random.default_rng(5)
    model = small_cnn((1, 8, 8), 3, random_state=0)
    x = rng.random((4, 1, 8, 8), dtype=np.float32)
    _settle(model, rng, x)
    out = model.forward(x)
    dx = model.backward(x, np.ones_like(out))
    assert dx.shape == x.shape


def test_an_untrained_batch_norm_is_run_by_itself():
    """Before any training step the moving statistics are allocated on first use: that
    batch norm is not folded, and the result is still the layers' own."""
    model = cynn.Sequential(cynn.Conv2d(2, 3, 3, random_state=0), cynn.BatchNormalization(),
                            cynn.ReLU())
    model.evaluate()
    x = np.random.default_rng(6).random((2, 2, 5, 5), dtype=np.float32)
    fused, plain = _both(model, x)
    _assert_close(fused, plain, np.float32)


@pytest.mark.parametrize("layers, x_shape, match", [
    (lambda: [cynn.Conv2d(3, 4, 3), cynn.ReLU()], (2, 5, 6, 6), "expected input with 3 channels"),
    (lambda: [cynn.Conv2d(3, 4, 3, padding=0), cynn.MaxPool2d(5)], (1, 3, 6, 6), "MaxPool2d"),
    (lambda: [cynn.Residual(cynn.Sequential(cynn.Conv2d(3, 4, 3))), cynn.ReLU()], (1, 3, 6, 6),
     "Residual: the body gives shape"),
])
def test_bad_input_gets_the_layers_own_error(layers, x_shape, match):
    model = cynn.Sequential(*layers())
    model.evaluate()
    x = np.ones(x_shape, np.float32)
    with cynn.inference_mode(), pytest.raises(ValueError, match=match):
        model.forward(x)


def test_eval_kernel_rejects_inconsistent_shapes():
    x = np.zeros((2, 3, 5, 5), np.float32)
    w = np.zeros((4, 27), np.float32)
    scale, shift = np.ones(4, np.float32), np.zeros(4, np.float32)
    size = _conv.eval_workspace_size(3, 5, 5, 3, 3, 1, 1, 5, 5, 4, 4, 2)
    ws = np.zeros((1, size), np.float32)
    no_add = np.zeros((0, 0, 0, 0), np.float32)
    out = np.zeros((2, 4, 2, 2), np.float32)
    args = (3, 3, 1, 1, 1, 1, True, 2, 2, 2, 2, 1, True)
    _conv.conv2d_forward_eval(x, w, scale, shift, no_add, out, ws, *args)
    with pytest.raises(ValueError, match="inconsistent column workspace"):
        _conv.conv2d_forward_eval(x, w, scale, shift, no_add, out, ws[:, :-1].copy(), *args)
    with pytest.raises(ValueError, match="inconsistent output shape"):
        _conv.conv2d_forward_eval(x, w, scale, shift, no_add, np.zeros((2, 4, 5, 5), np.float32),
                                  ws, *args)
    with pytest.raises(ValueError, match="inconsistent addend shape"):
        _conv.conv2d_forward_eval(x, w, scale, shift, np.zeros((2, 4, 2, 2), np.float32), out,
                                  ws, *args)
    with pytest.raises(ValueError, match="inconsistent weight shape"):
        _conv.conv2d_forward_eval(x, w, scale[:3].copy(), shift, no_add, out, ws, *args)
    with pytest.raises(ValueError, match="inconsistent pooling size"):
        _conv.conv2d_forward_eval(x, w, scale, shift, no_add, out, ws,
                                  3, 3, 1, 1, 1, 1, True, 6, 2, 2, 2, 1, True)


def test_fold_affine_matches_the_formula():
    rng = np.random.default_rng(7)
    b, m, g, be = (rng.standard_normal(5) for _ in range(4))
    v = rng.uniform(0.1, 2, 5)
    scale, shift = np.empty(5), np.empty(5)
    _conv.fold_affine(b, m, v, 1e-3, g, be, scale, shift)
    np.testing.assert_allclose(scale, g / np.sqrt(v + 1e-3), rtol=1e-15)
    np.testing.assert_allclose(shift, be + g / np.sqrt(v + 1e-3) * (b - m), rtol=1e-14, atol=1e-15)
    empty = np.empty(0)
    _conv.fold_affine(empty, empty, empty, 0.0, empty, empty, scale, shift)
    np.testing.assert_array_equal(scale, 1)
    np.testing.assert_array_equal(shift, 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("c, f, hw, k, stride, pad, pool, with_add", [
    (3, 8, 11, 3, 1, 1, 0, False),      # wide grid
    (16, 33, 8, 3, 1, 1, 2, False),     # filter vectors, pooled
    (8, 16, 9, 3, 2, 1, 0, True),       # strided, with an addend
    (2, 5, 7, 5, 1, 0, 3, False),       # the GEMM path, pooled 3x3
])
def test_conv_eval_step_is_fold_then_the_eval_kernel(dtype, c, f, hw, k, stride, pad, pool,
                                                      with_add):
    """The plan's one-call step gives the bits of fold_affine then conv2d_forward_eval."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3, c, hw, hw)).astype(dtype)
    w = rng.standard_normal((f, c, k, k)).astype(dtype)
    b, mean, g, beta = (rng.standard_normal(f).astype(dtype) for _ in range(4))
    var = rng.uniform(0.2, 2, f).astype(dtype)
    ho = (hw + 2 * pad - k) // stride + 1
    add = rng.standard_normal((3, f, ho, ho)).astype(dtype) if with_add else None
    out = _conv.conv_eval_step(x, w, b, mean, var, 1e-3, g, beta, add, stride, stride, pad,
                               pad, True, pool, pool, pool or 0, pool or 0, 2, True)
    scale, shift = np.empty(f, dtype), np.empty(f, dtype)
    _conv.fold_affine(b, mean, var, 1e-3, g, beta, scale, shift)
    po = (ho - pool) // pool + 1 if pool else ho
    expected = np.empty((3, f, po, po), dtype)
    size = _conv.eval_workspace_size(c, hw, hw, k, k, pad, pad, ho, ho, x.itemsize, f, pool)
    ws = np.empty((2, size), dtype)
    _conv.conv2d_forward_eval(x, w.reshape(f, -1), scale, shift,
                              np.empty((0, 0, 0, 0), dtype) if add is None else add, expected,
                              ws, k, k, stride, stride, pad, pad, True, pool, pool, pool,
                              pool, 2, True)
    np.testing.assert_array_equal(out, expected)


def test_conv_eval_step_declines_what_the_checked_path_must_see():
    """None (nothing done) for input the step does not take as is, so that the caller's
    checked path converts it or raises the layer's error."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    geometry = (1, 1, 1, 1, False, 0, 0, 0, 0, 1, True)

    def step(x=x, w=w, b=None, mean=None, var=None, gamma=None, beta=None, add=None,
             geometry=geometry):
        return _conv.conv_eval_step(x, w, b, mean, var, 1e-5, gamma, beta, add, *geometry)

    assert step().shape == (2, 4, 6, 6)
    for bad in [dict(x=x.astype(np.float64)), dict(x=x[:, :, :, ::-1]), dict(x=x[:0]),
                dict(x=x[:, :2].copy()), dict(x=x.tolist()), dict(x=x.astype(">f4")),
                dict(b=np.zeros(3, np.float32)), dict(b=np.zeros(4, np.float64)),
                dict(mean=np.zeros(4, np.float32)), dict(gamma=np.ones(4, np.float32)),
                dict(add=np.zeros((2, 4, 5, 6), np.float32)),
                dict(geometry=(1, 1, 0, 0, False, 5, 5, 1, 1, 1, True)),  # pool > 4x4
                dict(geometry=(1, 1, 1, 1, False, 0, 0, 0, 0, 0, True)),  # no threads
                dict(x=np.zeros((1, 3, 1, 1), np.float32),
                     geometry=(1, 1, 0, 0, False, 0, 0, 0, 0, 1, True))]:  # 3x3 > 1x1
        assert step(**bad) is None, bad


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch", [1, 5, 30])
def test_dense_step_is_linear_then_relu(dtype, batch):
    """[Flatten], Linear, ReLU and an evaluation Dropout in one pass give the layers'
    bits, NaN and the sign of zero included."""
    rng = np.random.default_rng(10)
    layers = [cynn.Flatten(), cynn.Linear(2 * 3 * 5, 27, dtype=dtype, random_state=0),
              cynn.ReLU(), cynn.Dropout(0.5), cynn.Linear(27, 4, bias=False, dtype=dtype,
                                                         random_state=1)]
    model = cynn.Sequential(*layers)
    model.evaluate()
    steps = _plan.plan(model.modules)
    assert [type(s) for s in steps] == [_plan.DenseStep, _plan.DenseStep]
    assert steps[0].flatten and steps[0].relu and not steps[1].flatten and not steps[1].relu
    x = rng.standard_normal((batch, 2, 3, 5)).astype(dtype)
    x[0, 1, 2, 3] = np.nan
    fused, plain = _both(model, x)
    np.testing.assert_array_equal(fused, plain)
    hidden = _dense.linear_step(x, layers[1].W, layers[1].b, True, True, 1)
    reference = layers[2].forward(layers[1].forward(x.reshape(batch, -1)))
    np.testing.assert_array_equal(hidden, reference)
    assert not np.signbit(hidden[hidden == 0]).any()


def test_dense_step_declines_and_the_layers_raise():
    w = np.ones((3, 4), np.float32)
    x = np.ones((2, 4), np.float32)
    assert _dense.linear_step(x, w, None, False, False, 1).shape == (2, 3)
    for bad in [x.astype(np.float64), x[:, ::2], x[:0], x.reshape(2, 2, 2), np.ones((2, 5), np.float32)]:
        assert _dense.linear_step(bad, w, None, False, False, 1) is None
    assert _dense.linear_step(x, w, np.ones(2, np.float32), False, False, 1) is None
    model = cynn.Sequential(cynn.Flatten(), cynn.Linear(4, 3), cynn.ReLU())
    model.evaluate()
    with cynn.inference_mode(), pytest.raises(ValueError, match="Linear expected input with 4"):
        model.forward(np.ones((2, 5), np.float32))
    with cynn.inference_mode(), pytest.raises(ValueError, match="empty batch"):
        model.forward(np.ones((0, 4), np.float32))


def test_inference_mode_nests_per_thread_and_decorates():
    import threading

    from cynn.module import is_inference

    mode = cynn.inference_mode()
    seen = []

    def other():
        seen.append(is_inference())
        with mode:
            seen.append(is_inference())
        seen.append(is_inference())

    with mode:
        with mode:
            assert is_inference()
        assert is_inference()
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert not is_inference() and seen == [False, True, False]

    @cynn.inference_mode()
    def decorated():
        return is_inference()

    assert decorated() and not is_inference()


def _big_model(dtype=np.float32):
    """Outputs of 64 x 16 x 32 x 32 float32 (4 MiB): past the size the pool takes."""
    rng = np.random.default_rng(11)
    model = cynn.Sequential(cynn.Conv2d(3, 16, 3, dtype=dtype, random_state=0),
                            cynn.BatchNormalization(n_features=16, dtype=dtype), cynn.ReLU(),
                            cynn.Conv2d(16, 16, 3, dtype=dtype, random_state=1))
    x = rng.standard_normal((64, 3, 32, 32)).astype(dtype)
    _settle(model, rng, x)
    return model, x


def test_pooled_outputs_are_reused_only_when_nobody_holds_them():
    model, x = _big_model()
    _plan.release_inference_buffers()
    with cynn.inference_mode():
        first = model.forward(x)
        kept = first.copy()
        second = model.forward(2 * x)
        # the first result is still held: the second call wrote elsewhere
        np.testing.assert_array_equal(first, kept)
        assert not np.shares_memory(first, second)
        view = second[:, :3]
        del second
        third = model.forward(x)
        assert not np.shares_memory(third, view)  # a view keeps its base from reuse
        np.testing.assert_array_equal(third, kept)
        del third, view
        before = {_address(a) for a in _plan._local.pool}
        assert len(before) >= 3  # both convolutions' outputs are pooled
        fourth = model.forward(x)
    # dropped, the buffers go out again: no fresh pages on every call
    assert _address(fourth) in before
    assert {_address(a) for a in _plan._local.pool} == before
    np.testing.assert_array_equal(fourth, kept)
    _plan.release_inference_buffers()
    assert _plan._local.pool == []


def test_pooled_outputs_stay_per_thread():
    """Threads running one model at once each write their own pooled arrays."""
    import threading

    model, x = _big_model()
    inputs = [x * (i + 1) for i in range(4)]
    with cynn.inference_mode():
        expected = [model.forward(a) for a in inputs]
    errors = []

    def run(i):
        try:
            with cynn.inference_mode():
                for _ in range(3):
                    out = model.forward(inputs[i])
                    np.testing.assert_array_equal(out, expected[i])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def _address(array):
    return array.__array_interface__["data"][0]


def test_pool_gives_the_smallest_free_array_that_fits():
    _plan.release_inference_buffers()
    dtype = np.dtype(np.float32)
    a = _plan.pooled((4, 1000), dtype)
    b = _plan.pooled((2, 1000), dtype)
    big, small = _address(a), _address(b)  # addresses: holding the arrays would block reuse
    del a, b
    c = _plan.pooled((1500,), dtype)
    assert _address(c) == small and c.shape == (1500,) and c.flags.c_contiguous
    d = _plan.pooled((3000,), dtype)
    assert _address(d) == big
    e = _plan.pooled((10,), dtype)  # both in use: a new array
    assert _address(e) not in (big, small)
    assert _plan.pooled((10,), np.dtype(np.float64)).dtype == np.float64
    del c, d
    f = _plan.pooled((999,), dtype)  # under a quarter of the big array: not that one
    assert _address(f) == small
    del e, f
    for _ in range(_plan._POOL_ARRAYS + 2):
        _plan.pooled((10,), np.dtype(np.float64)).fill(0)
    assert len(_plan._local.pool) <= _plan._POOL_ARRAYS
    _plan.release_inference_buffers()


def test_conv_eval_step_takes_its_large_arrays_from_alloc():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)  # output: 512 KiB
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    asked = []

    def alloc(shape, dtype):
        asked.append(shape)
        return np.empty(shape, dtype)

    geometry = (1, 1, 1, 1, True, 0, 0, 0, 0, 2, True)
    out = _conv.conv_eval_step(x, w, None, None, None, 0.0, None, None, None, *geometry,
                               alloc=alloc)
    plain = _conv.conv_eval_step(x, w, None, None, None, 0.0, None, None, None, *geometry)
    np.testing.assert_array_equal(out, plain)
    assert (8, 16, 32, 32) in asked and len(asked) == 2  # the output and the workspace
    small = _conv.conv_eval_step(x[:1, :, :8, :8].copy(), w, None, None, None, 0.0, None,
                                 None, None, *geometry, alloc=alloc)
    assert small.shape == (1, 16, 8, 8) and len(asked) == 2  # small: malloc, not alloc
    with pytest.raises(ValueError, match="alloc gave an unusable"):
        _conv.conv_eval_step(x, w, None, None, None, 0.0, None, None, None, *geometry,
                             alloc=lambda shape, dtype: np.empty(shape, np.float64))
