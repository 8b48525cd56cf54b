"""cynn.export_onnx: the graph is valid ONNX and onnxruntime computes what cynn does.

Tolerance: float32 results agree to ``rtol=1e-5``, with ``atol`` 1e-6 times the largest
output magnitude (about 8 float32 ulps of it; benchmarks/onnx_parity.py measures at most
3e-7).  The absolute part covers entries much smaller than the output scale, where the
two implementations round differently: summation order in convolutions, GEMMs and
global pooling (cynn sums in double), and onnxruntime's exp/logistic approximations,
which are accurate to about an ulp of 1 but not relative to a tiny result (ELU's
``exp(x) - 1`` at ``x = -1e-6``, a sigmoid's saturated tail), where cynn keeps full
relative precision.  Entries near the output scale are held to the 1e-5 relative bound.
"""
import copy
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import cynn
from cynn import (ELU, AvgPool2d, BatchNormalization, ChannelwiseScaling, Concat, Conv2d,
                  Dropout, Flatten, GlobalAvgPool2d, Identity, LeakyReLU, Linear,
                  LogSoftMax, MaxPool2d, Module, ReLU, Residual, Sequential, Sigmoid,
                  SoftMax, SoftPlus, Tanh)
from cynn.onnx_export import OPSET

RTOL = 1e-5
ATOL_SCALE = 1e-6


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, x):
    return session.run(None, {"input": x.astype(np.float32)})[0]


def _cynn(model, x):
    with cynn.inference_mode():
        return model.forward(x)


def _assert_close(actual, expected):
    expected = np.asarray(expected)
    assert actual.shape == expected.shape
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, expected, rtol=RTOL,
                               atol=ATOL_SCALE * max(float(np.abs(expected).max()), 1e-30))


def _export_and_compare(model, input_shape, tmp_path, rng, scale=1.0, batches=(1, 5)):
    """Export, check the graph, and compare onnxruntime with cynn on each batch size."""
    path = tmp_path / "model.onnx"
    proto = cynn.export_onnx(model, path, input_shape)
    loaded = onnx.load(str(path))
    onnx.checker.check_model(loaded, full_check=True)
    assert loaded == proto
    session = _session(path)
    for n in batches:
        x = (scale * rng.standard_normal((n, *input_shape))).astype(np.float32)
        _assert_close(_run(session, x), _cynn(model, x))
    return loaded


def _bn(channels, rng, alpha=0.9, eps=1e-3):
    """A BatchNormalization with non-trivial moving statistics."""
    bn = BatchNormalization(alpha=alpha, eps=eps, n_features=channels)
    bn.moving_mean[...] = rng.standard_normal(channels)
    bn.moving_variance[...] = rng.uniform(0.05, 3.0, channels)
    return bn


def _trained_bn(rng):
    """Moving statistics from a few training-mode passes, as a fit leaves them."""
    bn = BatchNormalization(alpha=0.5)
    for _ in range(3):
        bn.forward(2.0 + 3.0 * rng.standard_normal((8, 4, 5, 5)).astype(np.float32))
    return bn.evaluate()


def _scaling(channels, rng):
    return ChannelwiseScaling(channels, random_state=rng)


def _untrained_bn(rng):
    return BatchNormalization()


# (id, factory(rng) -> module, one sample's input shape, input scale)
LAYERS = [
    ("conv", lambda r: Conv2d(3, 8, 3, random_state=r), (3, 9, 11), 1),
    ("conv-stride-pad-pair", lambda r: Conv2d(3, 6, (3, 5), stride=(2, 1), padding=(1, 2),
                                              random_state=r), (3, 10, 13), 1),
    ("conv-valid-no-bias", lambda r: Conv2d(4, 6, 3, padding="valid", bias=False,
                                            random_state=r), (4, 8, 7), 1),
    ("conv-groups", lambda r: Conv2d(4, 6, 3, groups=2, random_state=r), (4, 7, 7), 1),
    ("conv-depthwise-multiplier", lambda r: Conv2d(4, 8, 3, stride=2, groups=4,
                                                   random_state=r), (4, 9, 8), 1),
    ("conv-depthwise-no-bias", lambda r: Conv2d(3, 3, 5, groups=3, bias=False,
                                                random_state=r), (3, 8, 8), 1),
    ("bn-images", lambda r: _bn(5, r), (5, 4, 6), 2),
    ("bn-features", lambda r: _bn(7, r, eps=1e-5), (7,), 2),
    ("bn-trained", _trained_bn, (4, 5, 5), 3),
    ("bn-untrained", _untrained_bn, (3, 4, 4), 1),
    ("scaling-images", lambda r: _scaling(5, r), (5, 3, 4), 1),
    ("scaling-features", lambda r: _scaling(6, r), (6,), 1),
    ("maxpool", lambda r: MaxPool2d(2), (3, 8, 9), 1),
    ("maxpool-stride-pad", lambda r: MaxPool2d(3, stride=2, padding=1), (2, 9, 10), 1),
    ("maxpool-rect", lambda r: MaxPool2d((2, 3), stride=(1, 2)), (2, 6, 9), 1),
    ("avgpool", lambda r: AvgPool2d(2), (3, 8, 9), 1),
    ("avgpool-stride", lambda r: AvgPool2d(3, stride=2), (2, 9, 10), 1),
    ("global-avgpool", lambda r: GlobalAvgPool2d(), (5, 7, 6), 1),
    ("linear", lambda r: Linear(12, 5, random_state=r), (12,), 1),
    ("linear-no-bias", lambda r: Linear(12, 5, bias=False, random_state=r), (12,), 1),
    ("relu", lambda r: ReLU(), (3, 4, 5), 1),
    ("leaky-relu", lambda r: LeakyReLU(0.2), (3, 4, 5), 1),
    ("leaky-relu-negative-slope", lambda r: LeakyReLU(-0.5), (10,), 1),
    ("elu", lambda r: ELU(0.7), (3, 4, 5), 3),
    ("softplus", lambda r: SoftPlus(), (3, 4, 5), 10),
    ("sigmoid", lambda r: Sigmoid(), (3, 4, 5), 10),
    ("tanh", lambda r: Tanh(), (20,), 3),
    ("softmax", lambda r: SoftMax(), (10,), 5),
    ("log-softmax", lambda r: LogSoftMax(), (10,), 5),
    ("dropout", lambda r: Dropout(0.5, random_state=r), (3, 4, 4), 1),
    ("flatten", lambda r: Flatten(), (2, 3, 4), 1),
    ("identity", lambda r: Identity(), (2, 3, 4), 1),
    ("sequential", lambda r: Sequential(Conv2d(2, 3, 3, random_state=r), ReLU(), Flatten(),
                                        Linear(48, 4, random_state=r), LogSoftMax()),
     (2, 4, 4), 1),
    ("residual-identity", lambda r: Residual(Sequential(Conv2d(3, 3, 3, random_state=r),
                                                        Tanh())), (3, 5, 5), 1),
    ("residual-shortcut", lambda r: Residual(
        Sequential(Conv2d(3, 6, 3, stride=2, random_state=r), _bn(6, r), _scaling(6, r)),
        Sequential(Conv2d(3, 6, 1, stride=2, padding=0, bias=False, random_state=r),
                   _bn(6, r), _scaling(6, r))), (3, 8, 8), 1),
    ("residual-no-sequential", lambda r: Residual(Conv2d(2, 2, 3, random_state=r),
                                                  Sigmoid()), (2, 4, 4), 1),
    ("concat-images", lambda r: Concat(Conv2d(3, 4, 3, random_state=r), Identity(),
                                       MaxPool2d(3, stride=1, padding=1)), (3, 5, 6), 1),
    ("concat-features", lambda r: Concat(Linear(6, 2, random_state=r), ReLU(),
                                         Sequential(Linear(6, 3, random_state=r), Tanh())),
     (6,), 1),
]


@pytest.mark.parametrize("factory, input_shape, scale",
                         [case[1:] for case in LAYERS], ids=[case[0] for case in LAYERS])
def test_every_layer_matches_onnxruntime(factory, input_shape, scale, tmp_path, rng):
    model = factory(rng)
    _export_and_compare(model, input_shape, tmp_path, rng, scale=scale)


def test_every_builtin_layer_and_container_is_covered():
    layers = {type(factory(np.random.default_rng(0))) for _, factory, _, _ in LAYERS}
    public = {getattr(cynn, name) for name in cynn.layers.__all__ + cynn.containers.__all__}
    assert public - layers == set()
    assert Sequential in layers


def _train(model, input_shape, n_classes, rng, steps=2, batch=8):
    """A couple of SGD steps, so weights move and BN moving statistics are non-trivial."""
    optimizer = cynn.SGD(model, lr=0.05, momentum=0.9)
    criterion = cynn.CrossEntropyCriterion()
    model.train()
    for _ in range(steps):
        x = (1.0 + rng.standard_normal((batch, *input_shape))).astype(np.float32)
        y = rng.integers(0, n_classes, batch)
        model.zero_grad()
        out = model.forward(x)
        criterion.forward(out, y)
        model.backward(x, criterion.backward(out, y))
        optimizer.step()
    return model.evaluate()


@pytest.mark.parametrize("name, input_shape", [
    ("small_cnn", (1, 28, 28)),
    ("mlp", (1, 12, 12)),
    ("mlp", (64,)),
    ("resnet20", (3, 32, 32)),
])
def test_models_match_onnxruntime(name, input_shape, tmp_path, rng):
    if name == "resnet20":
        model = cynn.models.resnet(20, in_channels=3, n_classes=10, random_state=1)
    else:
        model = cynn.models.build(name, input_shape, 10, random_state=1)
    _train(model, input_shape, 10, rng)
    bns = [m for m in _walk(model) if isinstance(m, BatchNormalization)]
    assert all(np.abs(bn.moving_mean).max() > 1e-3 for bn in bns)
    _export_and_compare(model, input_shape, tmp_path, rng)


def _walk(module):
    yield module
    for child in module.children():
        yield from _walk(child)


def test_batch_axis_is_symbolic_and_names_are_fixed(tmp_path):
    model = cynn.models.build("small_cnn", (1, 28, 28), 10, random_state=0)
    proto = cynn.export_onnx(model, tmp_path / "m.onnx", (1, 28, 28))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("input", "output")
    in_dims = inp.type.tensor_type.shape.dim
    out_dims = out.type.tensor_type.shape.dim
    assert in_dims[0].dim_param == "N" and not in_dims[0].HasField("dim_value")
    assert out_dims[0].dim_param == "N"
    assert [d.dim_value for d in in_dims[1:]] == [1, 28, 28]
    assert [d.dim_value for d in out_dims[1:]] == [10]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.opset_import[0].version == OPSET >= 21
    # Weights are initializers under the model's state_dict keys.
    initializers = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    np.testing.assert_array_equal(initializers["0.W"], model.state_dict()["0.W"])
    np.testing.assert_array_equal(initializers["1.moving_variance"],
                                  model.state_dict()["1.moving_variance"])


def test_a_float64_model_exports_float32_weights(tmp_path, rng):
    model = Sequential(Conv2d(2, 4, 3, random_state=0), _bn(4, rng), _scaling(4, rng), ReLU(),
                       GlobalAvgPool2d(), Linear(4, 3, random_state=0)).astype(np.float64)
    proto = cynn.export_onnx(model, tmp_path / "m.onnx", (2, 6, 6))
    assert {t.data_type for t in proto.graph.initializer} == {onnx.TensorProto.FLOAT}
    x = rng.standard_normal((4, 2, 6, 6)).astype(np.float32)
    _assert_close(_run(_session(tmp_path / "m.onnx"), x), _cynn(model, x))


def test_export_does_not_change_the_model(tmp_path, rng):
    # Training mode, and a BN that has never run (its statistics are not allocated).
    model = Sequential(Conv2d(1, 4, 3, random_state=0), BatchNormalization(),
                       _scaling(4, rng), ReLU(), Dropout(0.5, random_state=0), Flatten(),
                       Linear(4 * 6 * 6, 3, random_state=0))
    x = rng.standard_normal((3, 1, 6, 6)).astype(np.float32)
    before_state = model.state_dict()
    # On a copy: cynn's own forward would allocate the BN's statistics.
    before_output = _cynn(copy.deepcopy(model), x)
    assert model.modules[1].moving_mean is None
    cynn.export_onnx(model, tmp_path / "m.onnx", (1, 6, 6))
    assert model.modules[1].moving_mean is None
    assert all(m.training for m in _walk(model))
    after_state = model.state_dict()
    assert before_state.keys() == after_state.keys()
    for key in before_state:
        np.testing.assert_array_equal(before_state[key], after_state[key])
    # The export is the evaluation-mode computation although the model is training.
    _assert_close(_run(_session(tmp_path / "m.onnx"), x), before_output)

    np.testing.assert_array_equal(_cynn(model, x), before_output)

    trained = _trained_bn(rng)
    mean = trained.moving_mean.copy()
    cynn.export_onnx(trained, None, (4, 3, 3))
    np.testing.assert_array_equal(trained.moving_mean, mean)
    assert not trained.training


def test_path_none_writes_nothing_and_a_failed_export_keeps_the_old_file(tmp_path):
    proto = cynn.export_onnx(ReLU(), None, (3,))
    onnx.checker.check_model(proto, full_check=True)
    assert list(tmp_path.iterdir()) == []
    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")
    with pytest.raises(ValueError):
        cynn.export_onnx(Linear(3, 2), target, (4,))
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


class Unexportable(Module):
    def _compute_output(self, input):
        return np.asarray(input) * 2


def test_an_unexportable_layer_is_named_with_its_place():
    model = Sequential(ReLU(), ReLU(),
                       Residual(Sequential(Unexportable(), ReLU()), Identity()))
    with pytest.raises(TypeError) as info:
        cynn.export_onnx(model, None, (4,))
    message = str(info.value)
    assert message.startswith("Sequential[2] -> Residual.body[0]: cannot export Unexportable "
                              "to ONNX")
    assert "to_onnx(self, builder, input)" in message
    with pytest.raises(TypeError, match=r"^Concat\[1\] -> Residual\.shortcut: cannot export "
                                        r"Unexportable"):
        cynn.export_onnx(Concat(ReLU(), Residual(ReLU(), Unexportable())), None, (4,))
    with pytest.raises(TypeError, match="the model itself: cannot export Unexportable"):
        cynn.export_onnx(Unexportable(), None, (4,))


class Squared(ReLU):
    """Changes what ReLU computes: ReLU's conversion must not be used."""

    def _apply(self, x):
        return x * x


class NamedConv(Conv2d):
    """Only a constructor of its own: Conv2d's conversion holds."""

    def __init__(self, channels):
        super().__init__(channels, channels, 3, random_state=0)


def test_subclasses_of_builtin_layers(tmp_path, rng):
    with pytest.raises(TypeError, match="cannot export Squared to ONNX: it subclasses ReLU"):
        cynn.export_onnx(Sequential(Squared()), None, (4,))
    _export_and_compare(NamedConv(3), (3, 5, 5), tmp_path, rng)


class Scale(Module):
    """A user layer with its own conversion: y = factor * x + offset, per channel."""

    def __init__(self, factor, offset):
        super().__init__()
        self.factor = np.asarray(factor, np.float32)
        self.offset = np.float32(offset)

    def _compute_output(self, input):
        shape = (-1,) + (1,) * (np.ndim(input) - 2)
        return np.asarray(input, np.float32) * self.factor.reshape(shape) + self.offset

    def to_onnx(self, builder, input):
        shape = (-1,) + (1,) * (len(builder.shape(input)) - 2)
        scaled = builder.node("Mul", [input, builder.constant(self.factor.reshape(shape),
                                                              "factor")])
        return builder.node("Add", [scaled, builder.constant(self.offset, "offset")])


class Twice(Module):
    """A user container: its child applied two times."""

    def __init__(self, inner, other):
        super().__init__()
        self.inner, self.other = inner, other

    def children(self):
        return [self.inner, self.other]

    def _compute_output(self, input):
        return self.other.forward(self.inner.forward(input))

    def to_onnx(self, builder, input):
        return builder.module(self.other, builder.module(self.inner, input))


def test_the_extension_point_exports_user_layers(tmp_path, rng):
    model = Sequential(Conv2d(2, 3, 3, random_state=0),
                       Twice(Scale([0.5, -2.0, 3.0], 0.25), ReLU()),
                       Flatten(), Linear(3 * 16, 2, random_state=0), Scale([1.5, -1.0], 1.0))
    proto = _export_and_compare(model, (2, 4, 4), tmp_path, rng)
    names = {t.name for t in proto.graph.initializer}
    # Each layer's constants under its own position: no clash between the two Scales.
    assert {"1.0.factor", "1.0.offset", "4.factor", "4.offset"} <= names

    class Nameless(Module):
        def _compute_output(self, input):
            return input

        def to_onnx(self, builder, input):
            return None

    with pytest.raises(TypeError, match=r"Sequential\[1\]: Nameless.to_onnx must return"):
        cynn.export_onnx(Sequential(ReLU(), Nameless()), None, (3,))
    with pytest.raises(TypeError, match=r"^Sequential\[1\] -> Twice\[1\]: cannot export "
                                        r"Unexportable"):
        cynn.export_onnx(Sequential(ReLU(), Twice(ReLU(), Unexportable())), None, (3,))

    class Broken(Nameless):
        def to_onnx(self, builder, input):
            return builder.node("Mul", [input])  # Mul takes two inputs

    with pytest.raises(onnx.checker.ValidationError):
        cynn.export_onnx(Broken(), tmp_path / "broken.onnx", (3,))
    assert not (tmp_path / "broken.onnx").exists()


def test_input_shape_that_does_not_fit_the_model():
    model = cynn.models.build("small_cnn", (3, 16, 16), 10, random_state=0)
    with pytest.raises(ValueError, match=r"input_shape \(1, 16, 16\) does not fit the model "
                                         r"at Sequential\[0\] \(Conv2d\): Conv2d expected "
                                         r"input with 3 channels"):
        cynn.export_onnx(model, None, (1, 16, 16))
    # The batch axis by mistake.
    with pytest.raises(ValueError, match=r"input_shape \(1, 3, 16, 16\) does not fit"):
        cynn.export_onnx(model, None, (1, 3, 16, 16))
    # Right for the convolutions, wrong for the Linear layer after Flatten.
    with pytest.raises(ValueError, match=r"input_shape \(3, 8, 8\) .* at Sequential\[10\] "
                                         r"\(Linear\)"):
        cynn.export_onnx(model, None, (3, 8, 8))
    with pytest.raises(ValueError, match=r"does not fit the model \(Residual, the model itself\): "
                                         r"Residual: the body gives shape \(1, 2\)"):
        cynn.export_onnx(Residual(Linear(3, 2)), None, (3,))
    for bad in [(), (0, 4), (3, -1), (2.5,), "abc"]:
        with pytest.raises(ValueError, match=r"input_shape must be .* got " + repr(bad)
                           .replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            cynn.export_onnx(model, None, bad)
    with pytest.raises(ValueError, match="pass input_shape.*this model does not record one"):
        cynn.export_onnx(model, None, None)
    model.input_shape = (3, 16, 16)        # as cynn.load sets it from a model file
    assert cynn.export_onnx(model, None).graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3
    del model.input_shape
    with pytest.raises(TypeError, match="expects a cynn Module, got str"):
        cynn.export_onnx("model", None, (3, 16, 16))
    with pytest.raises(ValueError, match="empty Sequential"):
        cynn.export_onnx(Sequential(), None, (3,))


def test_an_int_input_shape_is_one_feature_axis(tmp_path, rng):
    model = Linear(5, 2, random_state=0)
    cynn.export_onnx(model, tmp_path / "m.onnx", 5)
    x = rng.standard_normal((3, 5)).astype(np.float32)
    _assert_close(_run(_session(tmp_path / "m.onnx"), x), _cynn(model, x))


def _python(code, tmp_path):
    # Run outside the repository, so the installed package is the one imported.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, check=False)


def test_import_cynn_does_not_import_onnx(tmp_path):
    code = ("import sys, cynn; assert callable(cynn.export_onnx); "
            "bad = [m for m in ('onnx', 'onnxruntime') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_onnx_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None; import cynn\n"
            "try:\n"
            "    cynn.export_onnx(cynn.ReLU(), None, (3,))\n"
            "except ImportError as exc:\n"
            "    print(exc)\n")
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'pip install "cynn-framework[onnx]"' in result.stdout
    assert 'pip install -e ".[onnx]"' in result.stdout
