"""scikit-learn's callback protocol (sklearn.callback, scikit-learn >= 1.9) on the
estimators: each epoch is one sub-task of the fit, reported to ProgressBar,
ScoringMonitor and any FitCallback, also when propagated from GridSearchCV."""
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest

sklearn_callback = pytest.importorskip("sklearn.callback")

from sklearn.base import clone
from sklearn.datasets import make_classification, make_regression
from sklearn.model_selection import GridSearchCV

import cynn
from cynn.trainers import Callback, NeuralNetClassifier, NeuralNetRegressor

ScoringMonitor = sklearn_callback.ScoringMonitor
MAX_EPOCHS = 4


def _has_rich():
    try:
        import rich  # noqa: F401  (ProgressBar draws with rich)
    except ImportError:
        return False
    return True


needs_rich = pytest.mark.skipif(not _has_rich(), reason="sklearn's ProgressBar needs rich")


class Recorder:
    """A FitCallback that propagates into sub-estimators and records every hook call:
    (hook, estimator name, task name, max_subtasks, name of the meta-estimator whose
    task this one was merged with)."""

    max_propagation_depth = None

    def __init__(self, stop_after=None):
        self.calls = []
        self.stop_after = stop_after
        self.epoch_predictions = []

    def setup(self, estimator, context):
        self.calls.append(("setup", type(estimator).__name__, context.task_name, None, None))

    def teardown(self, estimator, context):
        self.calls.append(("teardown", type(estimator).__name__, context.task_name, None, None))

    def _record(self, hook, context):
        self.calls.append((hook, context.estimator_name, context.task_name,
                           context.max_subtasks, context.source_estimator_name))

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None, fitted_estimator=None):
        self._record("begin", context)

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, fitted_estimator=None):
        self._record("end", context)
        if context.task_name == "epoch" and fitted_estimator is not None:
            self.epoch_predictions.append(fitted_estimator.predict(X))
            n_epochs = sum(1 for c in self.calls if c[:3] == ("end", context.estimator_name, "epoch"))
            return self.stop_after is not None and n_epochs >= self.stop_after
        return False

    def count(self, hook, task_name, estimator_name=None):
        return sum(1 for c in self.calls if c[0] == hook and c[2] == task_name
                   and (estimator_name is None or c[1] == estimator_name))


if _has_rich():
    class CountingProgressBar(sklearn_callback.ProgressBar):
        """sklearn's ProgressBar, counting the tasks it is told about as well."""

        def __init__(self, max_propagation_depth=1):
            super().__init__(max_propagation_depth=max_propagation_depth)
            self.ended = []

        def on_fit_task_end(self, estimator, context):
            self.ended.append((context.estimator_name, context.task_name))
            super().on_fit_task_end(estimator, context)

        def count(self, estimator_name, task_name):
            return self.ended.count((estimator_name, task_name))


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(n_samples=160, n_features=6, n_informative=4, n_classes=3,
                               random_state=0)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def regression():
    X, y = make_regression(n_samples=160, n_features=6, noise=0.1, random_state=0)
    return X.astype(np.float32), (y / y.std()).astype(np.float32)


def _estimator(kind, **params):
    params.setdefault("max_epochs", MAX_EPOCHS)
    params.setdefault("random_state", 0)
    params.setdefault("batch_size", 32)
    return (NeuralNetClassifier if kind == "classifier" else NeuralNetRegressor)(**params)


def _data(kind, classification, regression):
    return classification if kind == "classifier" else regression


KINDS = ["classifier", "regressor"]


@needs_rich
@pytest.mark.parametrize("kind", KINDS)
def test_progress_bar_reports_each_epoch_as_an_iteration(kind, classification, regression, capsys):
    X, y = _data(kind, classification, regression)
    bar = CountingProgressBar()
    est = _estimator(kind).set_callbacks(bar)
    est.fit(X, y)
    name = type(est).__name__
    assert bar.count(name, "epoch") == MAX_EPOCHS
    assert bar.count(name, "fit") == 1
    assert est.n_iter_ == MAX_EPOCHS
    out = capsys.readouterr().out
    assert f"{name} - fit" in out and "100%" in out


@needs_rich
def test_progress_bar_propagates_from_grid_search(classification):
    X, y = classification
    bar = CountingProgressBar(max_propagation_depth=None)
    search = GridSearchCV(_estimator("classifier"), {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=1)
    search.set_callbacks(bar)
    search.fit(X, y)
    fits = 2 * 2 + 1                     # candidates x folds, and the refit
    assert bar.count("NeuralNetClassifier", "fit") == fits
    assert bar.count("NeuralNetClassifier", "epoch") == fits * MAX_EPOCHS
    # The propagated callback was taken off the estimators again.
    assert not hasattr(search.best_estimator_, "_skl_callbacks")
    assert search.best_estimator_.n_iter_ == MAX_EPOCHS


def test_recorded_task_tree_inside_grid_search(classification):
    X, y = classification
    recorder = Recorder()
    search = GridSearchCV(_estimator("classifier", max_epochs=2), {"lr": [1e-3, 1e-2]}, cv=2,
                          n_jobs=1).set_callbacks(recorder)
    search.fit(X, y)
    roots = [c for c in recorder.calls if c[:3] == ("begin", "NeuralNetClassifier", "fit")]
    assert len(roots) == 5
    # Each fit is the root task of the estimator, merged with a task of the search,
    # and announces its number of epochs.
    assert all(c[3] == 2 and c[4] == "GridSearchCV" for c in roots)
    assert recorder.count("begin", "epoch") == recorder.count("end", "epoch") == 5 * 2
    # setup and teardown once, on the outermost estimator only.
    assert [c[:2] for c in recorder.calls if c[0] in ("setup", "teardown")] == \
        [("setup", "GridSearchCV"), ("teardown", "GridSearchCV")]


@pytest.mark.parametrize("kind, scoring", [("classifier", "accuracy"), ("regressor", "r2")])
def test_scoring_monitor_records_one_score_per_epoch(kind, scoring, classification, regression):
    X, y = _data(kind, classification, regression)
    monitor = ScoringMonitor(scoring=scoring)
    est = _estimator(kind).set_callbacks(monitor)
    est.fit(X, y)
    rows = monitor.get_logs().data
    epochs = [r for r in rows if r["task_name"] == "epoch"]
    assert len(epochs) == MAX_EPOCHS
    assert [r["task_id"] for r in epochs] == list(range(MAX_EPOCHS))
    assert all(np.isfinite(r[scoring]) for r in epochs)
    # Each score is of the network after that epoch: the last is the fitted estimator's.
    assert epochs[-1][scoring] == pytest.approx(est.score(X, y), abs=1e-12)
    # The root task (the whole fit) is scored too, once.
    assert [r[scoring] for r in rows if r["task_name"] == "fit"] == \
        [pytest.approx(est.score(X, y), abs=1e-12)]


def test_scores_follow_the_epochs_and_fitted_estimators_are_snapshots(classification):
    X, y = classification
    recorder = Recorder()
    clf = _estimator("classifier", max_epochs=6, lr=1e-2).set_callbacks(recorder)
    clf.fit(X, y)
    preds = recorder.epoch_predictions
    assert len(preds) == 6
    # A fitted_estimator handed out at an epoch stays as it was then.
    assert np.array_equal(preds[-1], clf.predict(X))
    assert not all(np.array_equal(preds[0], p) for p in preds[1:])


@pytest.mark.parametrize("kind", KINDS)
def test_results_bit_identical_with_and_without_callbacks(kind, classification, regression):
    X, y = _data(kind, classification, regression)
    params = dict(early_stopping=True, patience=10) if kind == "classifier" else {}
    plain = _estimator(kind, **params).fit(X, y)
    scoring = "accuracy" if kind == "classifier" else "r2"
    callbacks = [ScoringMonitor(scoring=scoring), Recorder()]
    if _has_rich():
        callbacks.append(sklearn_callback.ProgressBar())
    watched = _estimator(kind, **params).set_callbacks(*callbacks).fit(X, y)
    assert plain.loss_curve_ == watched.loss_curve_
    for a, b in zip(plain.module_.get_parameters(), watched.module_.get_parameters()):
        assert np.array_equal(a, b)
    out = "predict_proba" if kind == "classifier" else "predict"
    assert np.array_equal(getattr(plain, out)(X), getattr(watched, out)(X))


def test_a_callback_asking_to_stop_ends_training(classification):
    X, y = classification
    recorder = Recorder(stop_after=2)
    clf = _estimator("classifier", max_epochs=10).set_callbacks(recorder)
    clf.fit(X, y)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert recorder.count("end", "epoch") == 2 and recorder.count("end", "fit") == 1


def test_early_stopping_reports_the_epochs_it_ran(classification):
    X, y = classification
    monitor = ScoringMonitor(scoring="accuracy")
    # lr so high and patience 0: the validation loss stops improving early.
    clf = _estimator("classifier", max_epochs=30, early_stopping=True, patience=0, lr=0.3)
    clf.set_callbacks(monitor).fit(X, y)
    assert clf.n_iter_ < 30
    epochs = [r for r in monitor.get_logs().data if r["task_name"] == "epoch"]
    assert len(epochs) == clf.n_iter_


@pytest.mark.parametrize("kind", KINDS)
def test_partial_fit_reports_one_epoch_per_call(kind, classification, regression):
    X, y = _data(kind, classification, regression)
    recorder = Recorder()
    est = _estimator(kind).set_callbacks(recorder)
    extra = {"classes": np.unique(y)} if kind == "classifier" else {}
    for _ in range(3):
        est.partial_fit(X, y, **extra)
    assert est.n_iter_ == 3
    assert recorder.count("begin", "partial_fit") == recorder.count("end", "partial_fit") == 3
    assert recorder.count("end", "epoch") == 3
    roots = [c for c in recorder.calls if c[:3] == ("begin", type(est).__name__, "partial_fit")]
    assert all(c[3] == 1 for c in roots)
    assert len(recorder.epoch_predictions) == 3


class _FailInSecondEpoch(Callback):
    def on_batch_end(self, trainer, batch, logs):
        if len(trainer.history) == 1:
            raise RuntimeError("stop here")


def test_an_epoch_cut_short_still_ends_and_callbacks_are_torn_down(classification):
    X, y = classification
    recorder = Recorder()
    clf = _estimator("classifier", callbacks=[_FailInSecondEpoch()]).set_callbacks(recorder)
    with pytest.raises(RuntimeError, match="stop here"):
        clf.fit(X, y)
    assert recorder.count("begin", "epoch") == recorder.count("end", "epoch") == 2
    assert recorder.count("teardown", "fit") == 1
    assert not hasattr(clf, "_callback_fit_ctx")


def test_sample_weight_reaches_the_callbacks(classification):
    X, y = classification
    w = np.linspace(0.5, 2.0, len(y))
    seen = []

    class Metadata(Recorder):
        def on_fit_task_end(self, estimator, context, *, metadata=None):
            seen.append((context.task_name, metadata))

    clf = _estimator("classifier", max_epochs=2).set_callbacks(Metadata())
    clf.fit(X, y, sample_weight=w)
    assert [name for name, _ in seen] == ["epoch", "epoch", "fit"]
    assert all(m["sample_weight"] is w for _, m in seen)
    monitor = ScoringMonitor(scoring="accuracy")
    _estimator("classifier", max_epochs=2).set_callbacks(monitor).fit(X, y, sample_weight=w)
    assert len([r for r in monitor.get_logs().data if r["task_name"] == "epoch"]) == 2


@pytest.mark.parametrize("kind", KINDS)
def test_clone_and_pickle_keep_working(kind, classification, regression):
    X, y = _data(kind, classification, regression)
    scoring = "accuracy" if kind == "classifier" else "r2"
    monitor = ScoringMonitor(scoring=scoring)
    est = _estimator(kind).set_callbacks(monitor)
    twin = clone(est)
    # clone shares the callback instances (scikit-learn's rule) and keeps the parameters.
    assert twin._skl_callbacks == [monitor]
    assert twin.get_params() == est.get_params()
    unfitted = pickle.loads(pickle.dumps(est))
    est.fit(X, y)
    fitted = pickle.loads(pickle.dumps(est))
    assert not hasattr(fitted, "_callback_fit_ctx")
    out = "predict_proba" if kind == "classifier" else "predict"
    assert np.array_equal(getattr(fitted, out)(X), getattr(est, out)(X))
    # The unpickled copies still fit and report through their own callbacks.
    unfitted.fit(X, y)
    assert np.array_equal(getattr(unfitted, out)(X), getattr(est, out)(X))
    copy_monitor = unfitted._skl_callbacks[0]
    assert len([r for r in copy_monitor.get_logs().data if r["task_name"] == "epoch"]) == MAX_EPOCHS
    twin.fit(X, y)
    assert np.array_equal(getattr(twin, out)(X), getattr(est, out)(X))
    # Removing the callbacks leaves a plain estimator.
    est.set_callbacks()
    assert not hasattr(est, "_skl_callbacks")
    pickle.loads(pickle.dumps(est)).fit(X, y)


def test_set_callbacks_refuses_cynn_callbacks():
    with pytest.raises(TypeError, match="FitCallback"):
        NeuralNetClassifier().set_callbacks(cynn.trainers.EarlyStopping())


def test_without_sklearn_callback_the_estimators_work_as_before(tmp_path):
    """An older scikit-learn has no sklearn.callback: where importing it fails, the
    estimators import, gain no set_callbacks and compute what they compute with it."""
    script = textwrap.dedent("""
        import sys
        import numpy as np
        # scikit-learn 1.9 itself needs sklearn.callback: load what the estimators use
        # first, then make any further import of it fail, as on an older version.
        import sklearn.datasets, sklearn.metrics, sklearn.model_selection
        import sklearn.utils.class_weight, sklearn.utils.multiclass, sklearn.utils.validation
        from sklearn.datasets import make_classification
        sys.modules["sklearn.callback"] = None
        from cynn.trainers import NeuralNetClassifier, NeuralNetRegressor
        from cynn.trainers import estimators
        assert estimators._CallbackSupportMixin is None
        assert not hasattr(NeuralNetClassifier(), "set_callbacks")
        X, y = make_classification(n_samples=80, n_features=5, random_state=0)
        X = X.astype(np.float32)
        clf = NeuralNetClassifier(max_epochs=3, random_state=0).fit(X, y)
        clf.partial_fit(X, y)
        reg = NeuralNetRegressor(max_epochs=2, random_state=0).fit(X, y.astype(np.float32))
        assert clf.n_iter_ == 4 and reg.n_iter_ == 2
        np.save(sys.argv[1], clf.predict_proba(X))
    """)
    out = tmp_path / "proba.npy"
    subprocess.run([sys.executable, "-c", script, str(out)], check=True, timeout=300)
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    X = X.astype(np.float32)
    clf = NeuralNetClassifier(max_epochs=3, random_state=0).fit(X, y)
    clf.partial_fit(X, y)
    np.testing.assert_array_equal(np.load(out), clf.predict_proba(X))
