"""Self-describing model files: cynn.save stores the architecture, cynn.load(path)
rebuilds it; user classes through cynn.register; hostile files refused."""
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import cynn
from cynn import models
from cynn.trainers import Trainer
from cynn.serialization import MODEL_MEMBER, ArchitectureError

RNG = np.random.default_rng(0)


def _trained(model, shape, steps=2, seed=0):
    """A few training steps so that BN's moving statistics are not 0 and 1."""
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        x = rng.standard_normal((4, *shape)).astype(model.get_parameters()[0].dtype
                                                    if model.get_parameters() else np.float32)
        out = model.forward(x)
        model.backward(x, np.ones_like(out))
    return model


LAYERS = [
    (lambda: cynn.Conv2d(3, 8, (3, 5), stride=(2, 1), padding=(1, 2), bias=False), (3, 9, 9)),
    (lambda: cynn.Conv2d(4, 8, 3, groups=2, dtype=np.float64), (4, 6, 6)),
    (lambda: cynn.Conv2d(4, 8, 3, groups=4, padding="valid"), (4, 6, 6)),
    (lambda: cynn.Linear(7, 3, bias=False), (7,)),
    (lambda: cynn.BatchNormalization(alpha=0.7, eps=1e-4, n_features=3), (3, 4, 4)),
    (lambda: cynn.BatchNormalization(alpha=0.1), (5,)),
    (lambda: cynn.ChannelwiseScaling(3, dtype=np.float64), (3, 2, 2)),
    (lambda: cynn.MaxPool2d(3, stride=2, padding=1), (2, 7, 7)),
    (lambda: cynn.AvgPool2d((2, 3), stride=1), (2, 6, 6)),
    (lambda: cynn.GlobalAvgPool2d(), (2, 5, 5)),
    (lambda: cynn.Dropout(0.25), (6,)),
    (lambda: cynn.Flatten(), (2, 3, 3)),
    (lambda: cynn.Identity(), (4,)),
    (lambda: cynn.ReLU(), (4,)),
    (lambda: cynn.LeakyReLU(0.2), (4,)),
    (lambda: cynn.ELU(0.5), (4,)),
    (lambda: cynn.SoftPlus(), (4,)),
    (lambda: cynn.Sigmoid(), (4,)),
    (lambda: cynn.Tanh(), (4,)),
    (lambda: cynn.SoftMax(), (4,)),
    (lambda: cynn.LogSoftMax(), (4,)),
    (lambda: cynn.Residual(cynn.Sequential(cynn.Conv2d(2, 2, 3), cynn.ReLU())), (2, 4, 4)),
    (lambda: cynn.Residual(cynn.Conv2d(2, 4, 3, stride=2), cynn.Conv2d(2, 4, 1, stride=2)), (2, 4, 4)),
    (lambda: cynn.Concat(cynn.Linear(3, 2), cynn.Identity(), cynn.Sequential(cynn.Linear(3, 1))), (3,)),
]


@pytest.mark.parametrize("make,shape", LAYERS, ids=lambda v: None if callable(v) else str(v))
def test_every_builtin_module_rebuilds_from_its_file(make, shape, tmp_path):
    module = _trained(make(), shape)
    module.evaluate()
    path = tmp_path / "m.npz"
    cynn.save(module, path)
    rebuilt = cynn.load(path)
    assert type(rebuilt) is type(module)
    assert repr(rebuilt) == repr(module)
    assert rebuilt.get_config() == module.get_config()
    assert not rebuilt.training
    state, rebuilt_state = module.state_dict(), rebuilt.state_dict()
    assert sorted(state) == sorted(rebuilt_state)
    for key in state:
        assert rebuilt_state[key].dtype == state[key].dtype
        np.testing.assert_array_equal(rebuilt_state[key], state[key])
    x = RNG.standard_normal((3, *shape))
    np.testing.assert_array_equal(rebuilt.forward(x), module.forward(x))


MODELS = {
    "small_cnn": (lambda: models.build("small_cnn", (1, 28, 28), 10, random_state=1), (1, 28, 28)),
    "mlp": (lambda: models.build("mlp", (20,), 4, random_state=2), (20,)),
    "resnet20": (lambda: models.resnet(20, random_state=3), (3, 32, 32)),
    "plain8_float64": (lambda: models.build("plain8", (3, 16, 16), 5, dtype=np.float64,
                                            random_state=4), (3, 16, 16)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_a_process_that_never_built_the_model_gets_bit_identical_outputs(name, tmp_path):
    make, shape = MODELS[name]
    model = _trained(make(), shape).evaluate()
    path = tmp_path / "model.npz"
    cynn.save(model, path, input_shape=shape)
    x = RNG.random((5, *shape)).astype(model.get_parameters()[0].dtype)
    np.save(tmp_path / "x.npy", x)
    expected = model.forward(x)
    # Only the file and the input cross over: the other process imports cynn and
    # nothing that built the model.
    code = ("import sys, numpy as np, cynn\n"
            "m = cynn.load(sys.argv[1])\n"
            "np.save(sys.argv[3], m.forward(np.load(sys.argv[2])))\n"
            "print(type(m).__name__, m.input_shape, m.training)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"),
                             str(tmp_path / "y.npy")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "Sequential"
    assert f"{shape} False" in result.stdout
    got = np.load(tmp_path / "y.npy")
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_the_file_says_what_it_holds(tmp_path):
    model = models.build("small_cnn", (1, 8, 8), 3, random_state=0)
    path = tmp_path / "m.npz"
    cynn.save(model, path, input_shape=(1, 8, 8), metadata={"class_names": ["a", "b", "c"]})
    info = cynn.model_info(path)
    assert info["format"] == "cynn-model" and info["cynn_version"] == cynn.__version__
    assert info["dtype"] == "float32" and info["input_shape"] == (1, 8, 8)
    assert info["metadata"] == {"class_names": ["a", "b", "c"]}
    assert info["keys"] == sorted(model.state_dict())
    assert info["n_values"] == sum(a.size for a in model.state_dict().values())
    arch = info["architecture"]
    assert arch["class"] == "Sequential" and arch["children"][0]["class"] == "Conv2d"
    assert arch["children"][0]["config"]["in_channels"] == 1
    # Plain JSON inside a plain .npz: readable without cynn, no pickle anywhere.
    with np.load(path, allow_pickle=False) as f:
        header = json.loads(str(f[MODEL_MEMBER]))
    assert header["architecture"] == arch


def test_mixed_modes_come_back_as_saved(tmp_path):
    model = cynn.Sequential(cynn.BatchNormalization(), cynn.Dropout(0.5), cynn.Linear(3, 2))
    model.evaluate()
    model[1].train()
    cynn.save(model, tmp_path / "m.npz")
    rebuilt = cynn.load(tmp_path / "m.npz")
    assert [m.training for m in (rebuilt, *rebuilt)] == [False, False, True, False]


def test_load_with_a_model_keeps_working_on_both_kinds_of_file(tmp_path):
    model = _trained(models.build("small_cnn", (1, 8, 8), 3, random_state=0), (1, 8, 8))
    new = tmp_path / "new.npz"
    cynn.save(model, new)
    old = tmp_path / "old.npz"
    np.savez(old, **model.state_dict())          # what cynn.save wrote before
    for path in (new, old):
        other = models.build("small_cnn", (1, 8, 8), 3, random_state=9)
        assert cynn.load(other, path) is other
        for key, value in model.state_dict().items():
            np.testing.assert_array_equal(other.state_dict()[key], value)
    with pytest.raises(ValueError, match="holds weights only.*cynn.load\\(model, path\\)"):
        cynn.load(old)


def test_loading_leaves_the_package_generator_alone(tmp_path):
    cynn.save(models.resnet(8, random_state=0), tmp_path / "m.npz")
    cynn.manual_seed(5)
    expected = cynn.Linear(4, 4).W
    cynn.manual_seed(5)
    cynn.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(cynn.Linear(4, 4).W, expected)


def test_checkpoints_and_trainer_files_carry_the_input_shape(tmp_path):
    from cynn.trainers import Checkpoint, Trainer

    model = models.build("small_cnn", (1, 8, 8), 2, random_state=0)
    X = RNG.random((40, 1, 8, 8)).astype(np.float32)
    y = (X.mean(axis=(1, 2, 3)) > 0.5).astype(np.int64)
    path = tmp_path / "best.npz"
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model),
                      callbacks=[Checkpoint(path, monitor="val_loss", metadata={"k": 1})],
                      verbose=0, random_state=0)
    trainer.fit((X, y), (X, y), epochs=1)
    rebuilt = cynn.load(path)
    assert rebuilt.input_shape == (1, 8, 8) and cynn.model_info(path)["metadata"] == {"k": 1}
    np.testing.assert_array_equal(rebuilt.evaluate().forward(X), model.evaluate().forward(X))


def test_estimator_save_writes_a_model_file_with_its_classes(tmp_path):
    from cynn.trainers import NeuralNetClassifier

    X = RNG.random((60, 64)).astype(np.float32)
    y = np.where(X[:, 0] > 0.5, "cat", "dog")
    clf = NeuralNetClassifier(image_shape=(1, 8, 8), max_epochs=1, random_state=0, verbose=0)
    clf.fit(X, y)
    clf.save(tmp_path / "clf.npz")
    info = cynn.model_info(tmp_path / "clf.npz")
    assert info["input_shape"] == (1, 8, 8)
    assert info["metadata"]["classes"] == ["cat", "dog"]
    module = cynn.load(tmp_path / "clf.npz")
    scores = module.evaluate().forward(X.reshape(-1, 1, 8, 8))
    np.testing.assert_array_equal(np.array(info["metadata"]["classes"])[scores.argmax(1)],
                                  clf.predict(X))


# -- user-defined modules ---------------------------------------------------------
class Scale(cynn.Module):
    """A user layer whose argument is kept under its own name: the default get_config
    finds it."""

    def __init__(self, factor=2.0):
        super().__init__()
        self.factor = factor

    def _compute_output(self, input):
        return np.asarray(input) * self.factor

    def _compute_input_grad(self, input, output_grad):
        return output_grad * self.factor


class Hidden(Scale):
    """Keeps its argument under another name and does not say how to rebuild it."""

    def __init__(self, amount):
        super().__init__(amount)
        del self.factor
        self._amount = amount

    def _compute_output(self, input):
        return np.asarray(input) * self._amount


class Block(cynn.Module):
    """A user container that builds its own children, PyTorch style."""

    def __init__(self, width):
        super().__init__()
        self.width = width
        self.inner = cynn.Linear(width, width, random_state=0)
        self.act = cynn.Tanh()

    def children(self):
        return [self.inner, self.act]

    def _compute_output(self, input):
        return self.act.forward(self.inner.forward(input))


def test_a_registered_user_class_rebuilds(tmp_path):
    registered = cynn.register(name="tests.Scale")(Scale)
    assert registered is Scale
    cynn.register(name="tests.Block")(Block)
    model = cynn.Sequential(cynn.Linear(3, 3), Scale(0.5), Block(3))
    cynn.save(model, tmp_path / "m.npz")
    rebuilt = cynn.load(tmp_path / "m.npz")
    assert isinstance(rebuilt[1], Scale) and rebuilt[1].factor == 0.5
    assert isinstance(rebuilt[2], Block)
    x = RNG.standard_normal((2, 3))
    np.testing.assert_array_equal(rebuilt.forward(x), model.forward(x))


def test_an_unregistered_class_saves_and_says_how_to_load_it(tmp_path):
    class Twice(Scale):
        pass

    model = cynn.Sequential(cynn.Linear(3, 3), Twice(3.0))
    cynn.save(model, tmp_path / "m.npz")
    name = f"{Twice.__module__}.{Twice.__qualname__}"
    with pytest.raises(ValueError, match=f"names the class '{name}', which is not registered.*"
                                         "@cynn.register.*custom_objects"):
        cynn.load(tmp_path / "m.npz")
    rebuilt = cynn.load(tmp_path / "m.npz", custom_objects={"Twice": Twice})
    assert isinstance(rebuilt[1], Twice) and rebuilt[1].factor == 3.0


def test_a_class_that_cannot_be_described_is_saved_as_weights_with_a_warning(tmp_path):
    model = cynn.Sequential(cynn.Linear(3, 3), Hidden(2.0))
    with pytest.warns(UserWarning, match="weights only.*Hidden.__init__ takes 'amount'"):
        cynn.save(model, tmp_path / "m.npz")
    with pytest.raises(ValueError, match="holds weights only \\(model\\[1\\] \\(Hidden\\)"):
        cynn.load(tmp_path / "m.npz")
    other = cynn.Sequential(cynn.Linear(3, 3, random_state=5), Hidden(2.0))
    cynn.load(other, tmp_path / "m.npz")
    np.testing.assert_array_equal(other[0].W, model[0].W)


def test_register_refuses_a_taken_name_and_non_modules():
    class MyConv(cynn.Module):
        pass

    with pytest.raises(ValueError, match="'Conv2d' is already taken by cynn.layers.conv.Conv2d"):
        cynn.register(name="Conv2d")(MyConv)
    with pytest.raises(TypeError, match="expects a Module subclass"):
        cynn.register(dict)
    cynn.register(Scale, name="tests.Scale")   # the same class again is fine


def test_non_json_arguments_and_shapes_are_refused_at_save(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="factor.*is a object"):
            cynn.save(cynn.Sequential(Scale(object())), tmp_path / "m.npz")
    with pytest.raises(ValueError, match="input_shape must be a tuple of positive ints"):
        cynn.save(cynn.ReLU(), tmp_path / "m.npz", input_shape=(0, 3))
    with pytest.raises(ValueError, match="metadata"):
        cynn.save(cynn.ReLU(), tmp_path / "m.npz", metadata={"f": np.zeros(2)})
    assert not (tmp_path / "m.npz").exists()


# -- hostile and damaged files ----------------------------------------------------
def _rewrite_header(path, out, change):
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    key = MODEL_MEMBER
    header = json.loads(str(arrays[key]))
    change(header)
    arrays[key] = np.array(header if isinstance(header, str) else json.dumps(header))
    np.savez(out, **arrays)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.npz"
    cynn.save(cynn.Sequential(cynn.Linear(4, 3), cynn.ReLU()), path)
    return path


def test_an_architecture_that_claims_more_than_the_file_holds_is_refused(saved, tmp_path):
    out = tmp_path / "big.npz"
    _rewrite_header(saved, out, lambda h: h["architecture"]["children"][0]["config"].update(
        n_in=10 ** 6, n_out=10 ** 6))
    # Refused before building: a 10^12-weight Linear would never be allocated.
    with pytest.raises(ArchitectureError, match="need '0.W' of shape \\(1000000, 1000000\\), "
                                                "the file has \\(3, 4\\)"):
        cynn.load(out)


@pytest.mark.parametrize("change,message", [
    (lambda h: h.update(format_version=99), "format version 99 was written by a newer cynn"),
    (lambda h: h.update(format="other"), "does not describe a cynn model"),
    (lambda h: h["architecture"].update({"class": "os.system"}), "names the class 'os.system'"),
    (lambda h: h["architecture"]["children"][1].update(config={"slope": 1}),
     "cannot build ReLU from \\{'slope': 1\\}"),
    (lambda h: h["architecture"]["children"][0]["config"].update(n_in="4"), "n_in is '4'"),
    (lambda h: h["architecture"].update(children=[{"class": "Linear"}]), "n_in is None, not an int"),
    (lambda h: h["architecture"]["children"][0]["config"].update(n_out=5),
     "need '0.W' of shape \\(5, 4\\), the file has \\(3, 4\\)"),
    (lambda h: h["architecture"]["children"].append({"class": "ReLU", "config": []}),
     "not a module description"),
    # Header fields, checked on load (found in review).
    (lambda h: h.update(input_shape=[-3]), "input_shape is \\[-3\\], not a list of positive ints"),
    (lambda h: h.update(input_shape=[1.5]), "not a list of positive ints"),
    (lambda h: h.update(input_shape="abc"), "input_shape is abc"),
    (lambda h: h.update(metadata=[1, 2]), "metadata is a list, not a dict"),
    (lambda h: h.update(format_version=True), "format_version is True"),
    (lambda h: h.update(format_version=-5), "format_version is -5"),
    (lambda h: h["architecture"].update(training="no"), "training is 'no', not true or false"),
])
def test_damaged_descriptions_give_one_clear_error(saved, tmp_path, change, message):
    out = tmp_path / "bad.npz"
    _rewrite_header(saved, out, change)
    with pytest.raises(ValueError, match=message):
        cynn.load(out)


def test_deep_nesting_and_broken_json_are_refused(saved, tmp_path):
    deep = {"class": "ReLU"}
    for _ in range(200):
        deep = {"class": "Sequential", "children": [deep]}
    out = tmp_path / "deep.npz"
    _rewrite_header(saved, out, lambda h: h.update(architecture=deep))
    with pytest.raises(ValueError, match="nested more than 64 levels"):
        cynn.load(out)
    with np.load(saved, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[MODEL_MEMBER] = np.array("{not json")
    np.savez(tmp_path / "j.npz", **arrays)
    with pytest.raises(ValueError, match="is not JSON"):
        cynn.load(tmp_path / "j.npz")
    with pytest.raises(ValueError, match="is not JSON"):
        cynn.load(cynn.Sequential(cynn.Linear(4, 3), cynn.ReLU()), tmp_path / "j.npz")


def test_the_header_is_the_only_text_member(saved, tmp_path):
    with np.load(saved, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays["0.W"] = np.array(["x"] * 12).reshape(3, 4)
    np.savez(tmp_path / "t.npz", **arrays)
    with pytest.raises(ValueError, match="member '0.W': dtype <U1 is not allowed"):
        cynn.load(tmp_path / "t.npz")
    with pytest.raises(ValueError, match="member '0.W': dtype <U1 is not allowed"):
        cynn.load(cynn.Sequential(cynn.Linear(4, 3), cynn.ReLU()), tmp_path / "t.npz")


# -- found in review ------------------------------------------------------------------
def test_checkpoint_and_estimator_files_load_ready_to_predict(tmp_path):
    from cynn.trainers import Checkpoint, NeuralNetClassifier

    X = RNG.random((40, 64)).astype(np.float32)
    y = (X.mean(axis=1) > 0.5).astype(np.int64)
    model = cynn.Sequential(cynn.Linear(64, 16), cynn.BatchNormalization(), cynn.Dropout(0.5),
                            cynn.Linear(16, 2))
    path = tmp_path / "ck.npz"
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model),
                      callbacks=[Checkpoint(path)], verbose=0, random_state=0)
    trainer.fit((X, y), (X, y), epochs=1)
    assert model.training                       # the live model is left as it was
    clf = NeuralNetClassifier(max_epochs=1, random_state=0).fit(X, y)
    clf.save(tmp_path / "clf.npz")
    for file in (path, tmp_path / "clf.npz"):
        loaded = cynn.load(file)
        assert not loaded.training and not any(m.training for m in loaded.children())
        np.testing.assert_array_equal(loaded.forward(X[:4]), loaded.forward(X[:4]))
    cynn.save(model, tmp_path / "t.npz", training=True)
    assert cynn.load(tmp_path / "t.npz").training


def test_a_subclass_of_a_builtin_keeps_its_own_arguments(tmp_path):
    @cynn.register(name="tests.ScaledLinear")
    class ScaledLinear(cynn.Linear):
        def __init__(self, n_in, n_out, scale=1.0, **kwargs):
            super().__init__(n_in, n_out, **kwargs)
            self.scale = scale

        def _compute_output(self, input):
            return super()._compute_output(input) * self.scale

    model = cynn.Sequential(ScaledLinear(3, 2, scale=10.0, bias=False, dtype=np.float64))
    cynn.save(model, tmp_path / "m.npz")
    rebuilt = cynn.load(tmp_path / "m.npz")
    assert rebuilt[0].scale == 10.0 and rebuilt[0].b is None and rebuilt[0].dtype == np.float64
    x = RNG.standard_normal((2, 3))
    np.testing.assert_array_equal(rebuilt.forward(x), model.forward(x))


def test_a_class_as_an_argument_is_refused_not_stored_as_object(tmp_path):
    class Act(cynn.Module):
        def __init__(self, act=cynn.ReLU):
            super().__init__()
            self.act = act

    with pytest.warns(UserWarning, match="act.*is a type"):
        cynn.save(cynn.Sequential(Act(cynn.Tanh)), tmp_path / "m.npz")
    assert cynn.model_info(tmp_path / "m.npz")["architecture"] is None
    # NumPy dtypes and scalar types are stored by name.
    class Typed(cynn.Module):
        def __init__(self, kind=np.float32):
            super().__init__()
            self.kind = kind

    cynn.save(cynn.Sequential(Typed(np.float64)), tmp_path / "t.npz")
    assert cynn.model_info(tmp_path / "t.npz")["architecture"]["children"][0]["config"] == \
        {"kind": "float64"}


def test_registering_the_same_definition_again_replaces_it():
    def define():
        class Again(Scale):
            pass
        return Again

    first, second = define(), define()
    cynn.register(first, name="tests.Again")
    cynn.register(second, name="tests.Again")      # a notebook cell run twice
    assert cynn.serialization.registered_classes()["tests.Again"] is second


def test_an_impossible_code_point_in_the_header_is_one_error(saved, tmp_path):
    with np.load(saved, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[MODEL_MEMBER] = np.frombuffer(np.array([0x7FFFFFFF], np.uint32).tobytes(), "<U1")[0:1] \
        .reshape(())
    np.savez(tmp_path / "u.npz", **arrays)
    with pytest.raises(ValueError, match="cannot read"):
        cynn.model_info(tmp_path / "u.npz")
