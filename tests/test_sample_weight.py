"""Sample and class weights: the criterions' weighted mean, the Trainer, the estimators."""
import numpy as np
import pytest
from sklearn.utils.class_weight import compute_sample_weight

import cynn
from cynn.trainers import NeuralNetClassifier, NeuralNetRegressor, Trainer

RNG = np.random.default_rng(0)


def _inputs(name):
    x = RNG.standard_normal((6, 4))
    labels = np.array([0, 3, 1, 2, 3, 0])
    if name == "ClassNLLCriterion":
        x = cynn.functional.log_softmax(x)
    if name == "ClassNLLCriterionUnstable":
        x = cynn.functional.softmax(x)
    if name == "MSECriterion4d":
        return RNG.standard_normal((6, 2, 3, 3)), RNG.standard_normal((6, 2, 3, 3))
    return x, labels


CRITERIONS = ["CrossEntropyCriterion", "ClassNLLCriterion", "ClassNLLCriterionUnstable",
              "MSECriterion", "MSECriterion4d"]


def _criterion(name):
    return getattr(cynn, name.replace("4d", ""))()


@pytest.mark.parametrize("name", CRITERIONS)
def test_a_weight_of_two_is_the_sample_twice(name):
    criterion = _criterion(name)
    x, t = _inputs(name)
    w = np.array([2.0, 1, 1, 1, 1, 1])
    twice_x, twice_t = np.concatenate([x[:1], x]), np.concatenate([t[:1], t])
    assert criterion.forward(x, t, sample_weight=w) == pytest.approx(
        criterion.forward(twice_x, twice_t), rel=1e-13)
    g = criterion.backward(x, t, sample_weight=w)
    g_twice = criterion.backward(twice_x, twice_t)
    np.testing.assert_allclose(g[0], g_twice[0] + g_twice[1], rtol=1e-12)
    np.testing.assert_allclose(g[1:], g_twice[2:], rtol=1e-12)


@pytest.mark.parametrize("name", CRITERIONS)
def test_weights_of_one_and_of_zero(name):
    criterion = _criterion(name)
    x, t = _inputs(name)
    assert criterion.forward(x, t, sample_weight=np.ones(6)) == pytest.approx(
        criterion.forward(x, t), rel=1e-13)
    np.testing.assert_allclose(criterion.backward(x, t, sample_weight=np.ones(6)),
                               criterion.backward(x, t), rtol=1e-13)
    # A weight of 0 is the sample left out; its gradient row is 0.
    w = np.array([0.0, 1, 1, 1, 1, 1])
    assert criterion.forward(x, t, sample_weight=w) == pytest.approx(
        criterion.forward(x[1:], t[1:]), rel=1e-13)
    g = criterion.backward(x, t, sample_weight=w)
    assert not g[0].any()
    np.testing.assert_allclose(g[1:], criterion.backward(x[1:], t[1:]), rtol=1e-12)
    assert g.dtype == x.dtype


def test_class_weights_match_pytorch():
    torch = pytest.importorskip("torch")
    x = RNG.standard_normal((20, 5))
    y = RNG.integers(0, 5, 20)
    class_weight = np.array([0.5, 2.0, 1.0, 3.0, 0.25])
    reference = torch.nn.CrossEntropyLoss(weight=torch.from_numpy(class_weight))
    xt = torch.from_numpy(x).requires_grad_()
    loss = reference(xt, torch.from_numpy(y))
    loss.backward()
    criterion = cynn.CrossEntropyCriterion()
    assert criterion.forward(x, y, sample_weight=class_weight[y]) == pytest.approx(
        loss.item(), rel=1e-12)
    np.testing.assert_allclose(criterion.backward(x, y, sample_weight=class_weight[y]),
                               xt.grad.numpy(), rtol=1e-10, atol=1e-15)


@pytest.mark.parametrize("w,message", [
    (np.ones(5), "sample_weight must have shape \\(6,\\), one weight per sample, got \\(5,\\)"),
    (np.ones((6, 1)), "got \\(6, 1\\)"),
    (np.array([1, 1, -1, 1, 1, 1.0]), "finite and non-negative, got -1.0"),
    (np.array([1, 1, np.nan, 1, 1, 1.0]), "got nan"),
    (np.zeros(6), "sums to 0"),
])
def test_bad_weights_name_the_value(w, message):
    x, t = _inputs("CrossEntropyCriterion")
    for call in (cynn.CrossEntropyCriterion().forward, cynn.CrossEntropyCriterion().backward):
        with pytest.raises(ValueError, match=message):
            call(x, t, sample_weight=w)


def _data(n=40, d=6, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


def _params(estimator):
    return [p.copy() for p in estimator.module_.get_parameters()]


def test_estimator_weight_two_equals_the_row_twice_in_one_full_batch():
    X, y = _data()
    w = np.ones(len(X))
    w[[3, 7]] = 2.0
    X2 = np.concatenate([X, X[[3, 7]]])
    y2 = np.concatenate([y, y[[3, 7]]])
    make = lambda: NeuralNetClassifier(module="mlp", batch_size=1000, max_epochs=5, lr=1e-2,
                                       random_state=0)
    weighted = make().fit(X, y, sample_weight=w)
    repeated = make().fit(X2, y2)
    for a, b in zip(_params(weighted), _params(repeated)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-5)
    # And the weights mattered: without them the fit is elsewhere.
    plain = make().fit(X, y)
    assert max(np.abs(a - b).max() for a, b in zip(_params(plain), _params(weighted))) > 1e-3


def test_balanced_class_weight_is_its_sample_weight():
    X, y = _data(n=50)
    y[:35] = 0
    y[35:] = 1
    make = lambda **kw: NeuralNetClassifier(module="mlp", max_epochs=3, batch_size=16,
                                            random_state=0, **kw)
    balanced = make(class_weight="balanced").fit(X, y)
    by_hand = make().fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    for a, b in zip(_params(balanced), _params(by_hand)):
        np.testing.assert_array_equal(a, b)
    # A dict, multiplied with sample_weight.
    sw = np.linspace(0.5, 1.5, len(y))
    as_dict = make(class_weight={0: 1.0, 1: 3.0}).fit(X, y, sample_weight=sw)
    product = make().fit(X, y, sample_weight=sw * np.where(y == 1, 3.0, 1.0))
    for a, b in zip(_params(as_dict), _params(product)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="class_weight='balanced' is not supported by partial_fit"):
        make(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    make(class_weight={0: 1.0, 1: 2.0}).partial_fit(X, y, classes=[0, 1], sample_weight=sw)


def test_balanced_weights_lift_the_minority_class():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((400, 2)).astype(np.float32)
    y = (X[:, 0] > 1.3).astype(int)          # about 10% positives, overlapping
    X[y == 1] += 0.3 * rng.standard_normal((int(y.sum()), 2)).astype(np.float32)
    recall = []
    for class_weight in (None, "balanced"):
        clf = NeuralNetClassifier(module="mlp", max_epochs=15, random_state=0,
                                  class_weight=class_weight).fit(X, y)
        recall.append(float(np.mean(clf.predict(X[y == 1]) == 1)))
    assert recall[1] > recall[0]


def test_trainer_takes_weights_and_reports_the_weighted_loss():
    X, y = _data(n=32)
    w = np.where(y == 1, 3.0, 1.0)
    cynn.manual_seed(0)
    model = cynn.models.mlp(6, 2)
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.SGD(model, lr=1e-12),
                      batch_size=8, verbose=0, random_state=0)
    history = trainer.fit((X, y, w), epochs=1)
    # lr ~ 0: the epoch's loss is the weighted mean of the per-sample losses.
    with cynn.inference_mode():
        out = model.forward(X)
    expected = cynn.CrossEntropyCriterion().forward(out, y, sample_weight=w)
    assert history["train_loss"][0] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="train: sample_weight must have shape \\(32,\\)"):
        trainer.fit((X, y, w[:-1]), epochs=1)
    with pytest.raises(TypeError, match="val must be an \\(X, y\\) pair"):
        trainer.fit((X, y, w), (X, y, w), epochs=1)


def test_regressor_and_score_take_sample_weight():
    X, _ = _data()
    target = X[:, 0] * 2
    w = np.ones(len(X))
    w[:5] = 0.0
    a = NeuralNetRegressor(module="mlp", batch_size=1000, max_epochs=4, random_state=0)
    b = NeuralNetRegressor(module="mlp", batch_size=1000, max_epochs=4, random_state=0)
    a.fit(X, target, sample_weight=w)
    b.fit(X[5:], target[5:])
    for p, q in zip(_params(a), _params(b)):
        np.testing.assert_allclose(p, q, rtol=1e-4, atol=1e-6)
    a.partial_fit(X, target, sample_weight=w)
    X, y = _data()
    clf = NeuralNetClassifier(module="mlp", max_epochs=2, random_state=0).fit(X, y)
    weights = np.where(clf.predict(X) == y, 1.0, 0.0)
    assert clf.score(X, y, sample_weight=weights) == 1.0
