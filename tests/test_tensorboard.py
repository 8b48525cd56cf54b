"""The TensorBoard callback, read back with TensorBoard's own event reader."""
import copy
import os
import pickle
import sys

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

import cynn
from cynn.trainers import NeuralNetClassifier, TensorBoard, Trainer

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _scalars(run_dir):
    reader = event_accumulator.EventAccumulator(str(run_dir))
    reader.Reload()
    return {tag: [(e.step, e.value) for e in reader.Scalars(tag)]
            for tag in reader.Tags()["scalars"]}


def _data(n=48):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 5)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def test_every_epoch_is_written_and_reads_back(tmp_path):
    X, y = _data()
    model = cynn.models.mlp(5, 2)
    board = TensorBoard(tmp_path / "tb")
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model, lr=0.01),
                      callbacks=[board], verbose=0, random_state=0)
    history = trainer.fit((X, y), (X, y), epochs=3)
    assert board._writer is None                 # closed when training ends
    scalars = _scalars(board.run_dir)
    assert set(scalars) == {"loss/train", "loss/val", "accuracy/train", "accuracy/val",
                            "learning_rate", "time/seconds_per_epoch"}
    for tag, column in [("loss/train", "train_loss"), ("loss/val", "val_loss"),
                        ("accuracy/val", "val_accuracy"), ("learning_rate", "lr")]:
        steps, values = zip(*scalars[tag])
        assert steps == (1, 2, 3)
        np.testing.assert_allclose(values, history[column], rtol=1e-6)   # stored as float32


def test_one_folder_per_fit_and_a_named_run(tmp_path):
    X, y = _data()
    model = cynn.models.mlp(5, 2)
    board = TensorBoard(tmp_path / "tb")
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), callbacks=[board],
                      verbose=0, random_state=0)
    trainer.fit((X, y), epochs=1)
    first = board.run_dir
    trainer.fit((X, y), epochs=2)
    assert board.run_dir != first and len(os.listdir(tmp_path / "tb")) == 2
    assert [s for s, _ in _scalars(board.run_dir)["loss/train"]] == [2, 3]
    named = TensorBoard(tmp_path / "tb", run_name="baseline")
    Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), callbacks=[named],
            verbose=0).fit((X, y), epochs=1)
    assert named.run_dir == os.path.join(str(tmp_path / "tb"), "baseline")


def test_survives_clone_pickle_and_a_grid_search(tmp_path):
    X, y = _data(60)
    clf = NeuralNetClassifier(module="mlp", max_epochs=2, random_state=0,
                              callbacks=[TensorBoard(tmp_path / "grid")])
    search = GridSearchCV(clf, {"lr": [1e-3, 1e-2]}, cv=2, n_jobs=2).fit(X, y)
    runs = sorted(os.listdir(tmp_path / "grid"))
    assert len(runs) == 2 * 2 + 1                # every fold of every candidate, and the refit
    for run in runs:
        assert [s for s, _ in _scalars(tmp_path / "grid" / run)["loss/train"]] == [1, 2]
    fitted = search.best_estimator_
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict(X), fitted.predict(X))
    copy.deepcopy(fitted).fit(X, y)
    assert len(os.listdir(tmp_path / "grid")) == 6


def test_a_resumed_run_writes_on_into_its_folder(tmp_path):
    X, y = _data()
    state = tmp_path / "state.npz"

    def trainer():
        cynn.manual_seed(0)
        model = cynn.models.mlp(5, 2)
        board = TensorBoard(tmp_path / "tb")
        return Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), callbacks=[board],
                       verbose=0, random_state=0), board

    class Crash(cynn.trainers.Callback):
        def on_epoch_begin(self, trainer, epoch):
            if epoch == 3:
                raise RuntimeError("the machine went down")

    first, board = trainer()
    first.callbacks.append(Crash())
    with pytest.raises(RuntimeError, match="went down"):
        first.fit((X, y), epochs=4, state_path=state)      # dies in epoch 3 of 4
    run = board.run_dir
    assert board._writer is None                           # closed on the way out
    second, board = trainer()
    second.fit((X, y), epochs=4, resume_from=state, state_path=state)
    assert board.run_dir == run
    assert [s for s, _ in _scalars(run)["loss/train"]] == [1, 2, 3, 4]


def test_without_tensorboardx_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    X, y = _data()
    model = cynn.models.mlp(5, 2)
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model),
                      callbacks=[TensorBoard(tmp_path / "tb")], verbose=0)
    with pytest.raises(ImportError, match='pip install "cynn-framework\\[tensorboard\\]"'):
        trainer.fit((X, y), epochs=1)
