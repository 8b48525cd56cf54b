"""The training loop: histories, callbacks, failure modes, determinism, plots, augmentation."""
import copy
import os
import signal

import numpy as np
import pytest

import cynn
from cynn.datasets import load_digits
from cynn.trainers import (Callback, Checkpoint, CSVLogger, EarlyStopping, History, LRSchedulerCallback,
                           NonFiniteLossError, ProgressBar, Trainer, plot_histories)
from cynn.models import small_cnn


@pytest.fixture(scope="module")
def digits():
    return load_digits(random_state=0)


def _trainer(data, seed=0, lr=1e-3, callbacks=(), verbose=0, optimizer="adam"):
    model = small_cnn(data.input_shape, data.n_classes, random_state=seed)
    opt = cynn.Adam(model, lr=lr) if optimizer == "adam" else cynn.SGD(model, lr=lr, momentum=0.9)
    return Trainer(model, cynn.CrossEntropyCriterion(), opt, callbacks=callbacks, batch_size=64,
                   random_state=seed, verbose=verbose)


def test_fit_learns_digits_and_records_history(digits):
    trainer = _trainer(digits)
    history = trainer.fit(digits.train, digits.val, epochs=4)
    assert len(history) == 4 and history["epoch"] == [1, 2, 3, 4]
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["val_accuracy"][-1] > 0.85
    assert all(r["lr"] == 1e-3 and r["seconds"] > 0 for r in history)
    scores = trainer.evaluate(digits.test)
    assert scores["accuracy"] > 0.85
    assert trainer.predict(digits.X_test).shape == (len(digits.y_test), 10)
    assert trainer.model.training   # evaluate/predict restore the mode


def test_training_is_bit_identical_for_fixed_seeds(digits):
    results = []
    for _ in range(2):
        trainer = _trainer(digits, seed=3)
        trainer.fit(digits.train, epochs=2)
        results.append([p.copy() for p in trainer.model.get_parameters()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


def test_callback_hooks_run_in_order(digits):
    calls = []

    class Recorder(Callback):
        def on_train_begin(self, trainer):
            calls.append("train_begin")

        def on_epoch_begin(self, trainer, epoch):
            calls.append(f"epoch_begin {epoch}")

        def on_batch_end(self, trainer, batch, logs):
            calls.append("batch")
            assert np.isfinite(logs["loss"]) and logs["size"] > 0

        def on_epoch_end(self, trainer, epoch, logs):
            calls.append(f"epoch_end {epoch} {logs['epoch']}")

        def on_train_end(self, trainer):
            calls.append("train_end")

    small = (digits.X_train[:130], digits.y_train[:130])
    _trainer(digits, callbacks=[Recorder()]).fit(small, epochs=2)
    assert calls == ["train_begin", "epoch_begin 1", "batch", "batch", "batch", "epoch_end 1 1",
                     "epoch_begin 2", "batch", "batch", "batch", "epoch_end 2 2", "train_end"]


def test_early_stopping_stops_and_restores_best(digits):
    class WorsenValidation(Callback):
        """Fake a validation loss that is best at epoch 2."""

        def on_epoch_end(self, trainer, epoch, logs):
            logs["val_loss"] = abs(epoch - 2) + 1.0
            if epoch == 2:
                self.best = [p.copy() for p in trainer.model.get_parameters()]

    fake = WorsenValidation()
    stopper = EarlyStopping(monitor="val_loss", patience=1)
    trainer = _trainer(digits, callbacks=[fake, stopper])
    history = trainer.fit(digits.train, digits.val, epochs=10)
    assert len(history) == 4 and stopper.best_epoch == 2 and stopper.stopped_epoch == 4
    for p, best in zip(trainer.model.get_parameters(), fake.best):
        np.testing.assert_array_equal(p, best)


def test_early_stopping_needs_the_monitored_column(digits):
    with pytest.raises(ValueError, match="pass validation data"):
        _trainer(digits, callbacks=[EarlyStopping()]).fit(digits.train, epochs=1)


def test_checkpoint_saves_best_model(digits, tmp_path):
    path = tmp_path / "best.npz"
    ckpt = Checkpoint(path, monitor="val_accuracy")
    trainer = _trainer(digits, callbacks=[ckpt])
    history = trainer.fit(digits.train, digits.val, epochs=3)
    assert path.exists() and 1 <= len(ckpt.saved) <= 3
    best = history.best("val_accuracy", mode="max")
    restored = cynn.load(small_cnn(digits.input_shape, 10, random_state=9), path)
    probe = Trainer(restored, cynn.CrossEntropyCriterion(), cynn.SGD(restored, lr=0.1), verbose=0)
    assert probe.evaluate(digits.val)["accuracy"] == pytest.approx(best["val_accuracy"])
    assert sorted(os.listdir(tmp_path)) == ["best.npz"]


def test_lr_scheduler_and_csv_logger(digits, tmp_path):
    trainer = _trainer(digits, lr=0.01, optimizer="sgd")
    trainer.callbacks += [LRSchedulerCallback(cynn.StepLR(trainer.optimizer, step_size=1, gamma=0.5)),
                          CSVLogger(tmp_path / "log.csv")]
    history = trainer.fit(digits.train, epochs=3)
    assert history["lr"] == [0.01, 0.005, 0.0025]
    assert History.from_csv(tmp_path / "log.csv")["train_loss"] == pytest.approx(history["train_loss"])


def test_the_old_callback_name_still_works_and_says_it_is_deprecated(digits):
    from cynn.trainers import LRScheduler

    trainer = _trainer(digits, lr=0.01, optimizer="sgd")
    with pytest.warns(FutureWarning, match="LRSchedulerCallback"):
        callback = LRScheduler(cynn.StepLR(trainer.optimizer, step_size=1, gamma=0.5))
    assert isinstance(callback, LRSchedulerCallback)
    trainer.callbacks.append(callback)
    assert trainer.fit(digits.train, epochs=2)["lr"] == [0.01, 0.005]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_non_finite_loss_stops_with_epoch_and_batch(digits):
    trainer = _trainer(digits, lr=1e20, optimizer="sgd")
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, batch \d+"):
        trainer.fit(digits.train, epochs=3)
    assert all(np.isfinite(p).all() for p in trainer.model.get_parameters())
    assert all(np.isfinite(s).all() for s in trainer.model.state_dict().values())


def test_ctrl_c_stops_after_the_batch_and_keeps_the_history(digits, capsys):
    class Interrupt(Callback):
        def on_batch_end(self, trainer, batch, logs):
            if len(trainer.history) == 1 and batch == 2:
                os.kill(os.getpid(), signal.SIGINT)

    trainer = _trainer(digits, callbacks=[Interrupt()])
    history = trainer.fit(digits.train, epochs=5)
    assert trainer.interrupted and len(history) == 1
    assert "interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_progress_bar_is_silent_with_verbose_0(digits, capsys):
    _trainer(digits, verbose=0).fit((digits.X_train[:64], digits.y_train[:64]), epochs=1)
    assert capsys.readouterr().err == ""
    _trainer(digits, verbose=1).fit((digits.X_train[:64], digits.y_train[:64]), epochs=1)
    assert "epochs" in capsys.readouterr().err
    assert any(isinstance(cb, ProgressBar) for cb in _trainer(digits, verbose=1).callbacks)


@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(epochs=0), ValueError, "epochs must be a positive integer, got 0"),
    (dict(train=([1, 2], [1])), ValueError, "X has 2 samples but y has 1"),
    (dict(train=np.zeros((3, 1, 8, 8))), TypeError, r"a tuple \(X, y\) or \(X, y, sample_weight\)"),
])
def test_fit_argument_errors(digits, kwargs, exc, pattern):
    args = dict(train=digits.train, epochs=1)
    args.update(kwargs)
    with pytest.raises(exc, match=pattern):
        _trainer(digits).fit(args.pop("train"), **args)


def test_history_round_trips(tmp_path):
    h = History([{"epoch": 1, "train_loss": 0.5, "val_loss": 0.7},
                 {"epoch": 2, "train_loss": 0.25, "val_loss": None}])
    h.to_json(tmp_path / "h.json")
    h.to_csv(tmp_path / "h.csv")
    for loaded in (History.from_json(tmp_path / "h.json"), History.from_csv(tmp_path / "h.csv")):
        assert loaded["train_loss"] == [0.5, 0.25] and loaded["val_loss"] == [0.7, None]
        assert loaded[0]["epoch"] == 1
    with pytest.raises(KeyError, match="no column 'nope'"):
        h["nope"]


def test_plot_histories_overlays_runs():
    pytest.importorskip("matplotlib", reason="matplotlib not installed (optional extra: plot)")
    h1 = History([{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_accuracy": 0.5}
                  for e in (1, 2, 3)])
    h2 = History([{"epoch": e, "train_loss": 2 / e} for e in (1, 2)])
    fig = plot_histories({"Adam": h1, "SGD": h2}, metrics=("loss", "accuracy"))
    loss_ax, acc_ax = fig.axes
    labels = [line.get_label() for line in loss_ax.get_lines()]
    assert labels == ["Adam (train)", "Adam (val)", "SGD (train)"]
    assert loss_ax.get_xlabel() == "epoch" and loss_ax.get_title() == "loss"
    assert [line.get_label() for line in acc_ax.get_lines()] == ["Adam (train)"]
    with pytest.raises(ValueError, match="no run has values for metric 'f1'"):
        plot_histories({"Adam": h1}, metrics=("f1",))


def test_training_does_not_depend_on_the_thread_count(digits):
    results = []
    previous = cynn.get_num_threads()
    try:
        for threads in (1, 2):
            cynn.set_num_threads(threads)
            trainer = _trainer(digits, seed=5)
            trainer.fit((digits.X_train[:256], digits.y_train[:256]), epochs=2)
            results.append([p.copy() for p in trainer.model.get_parameters()])
    finally:
        cynn.set_num_threads(previous)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


# --- augmentation -----------------------------------------------------------------------------

class SpyAugment:
    """Records every batch it is given, and the first number of each generator."""

    def __init__(self, inner=None):
        self.inner = inner
        self.batches = []
        self.first_draws = []

    def __call__(self, X, rng):
        self.batches.append(X.copy())
        self.first_draws.append(np.random.Generator(copy.deepcopy(rng.bit_generator)).random())
        return X if self.inner is None else self.inner(X, rng)


def _rows_in(rows, X):
    """How many of ``rows`` (n, ...) are rows of X: matched exactly, byte for byte."""
    known = {row.tobytes() for row in X}
    return sum(row.tobytes() in known for row in rows)


def test_augment_sees_training_batches_only(digits):
    spy = SpyAugment()
    model = small_cnn(digits.input_shape, 10, random_state=0)
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), batch_size=64,
                      random_state=0, verbose=0, augment=spy)
    trainer.fit(digits.train, digits.val, epochs=2)
    seen = np.concatenate(spy.batches)
    assert len(spy.batches) == 2 * trainer.batches_per_epoch
    assert len(seen) == 2 * len(digits.y_train)
    assert _rows_in(seen, digits.X_train) == len(seen)
    # Digits has a few duplicate images across splits; none of the validation-only
    # ones (or test ones) ever reaches the augmentation.
    val_only = [x for x in digits.X_val if _rows_in(x[None], digits.X_train) == 0]
    assert len(val_only) > 0 and _rows_in(np.array(val_only), seen) == 0
    calls = len(spy.batches)
    trainer.evaluate(digits.test)
    trainer.predict(digits.X_test)
    assert len(spy.batches) == calls


def test_each_batch_gets_a_generator_from_seed_epoch_and_batch(digits):
    spy = SpyAugment()
    model = small_cnn(digits.input_shape, 10, random_state=0)
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), batch_size=256,
                      random_state=9, verbose=0, augment=spy)
    trainer.fit(digits.train, epochs=2)
    n = trainer.batches_per_epoch
    expected = [np.random.default_rng([9, epoch, batch]).random()
                for epoch in (1, 2) for batch in range(1, n + 1)]
    assert spy.first_draws == expected


def test_augmentation_changes_training_not_evaluation(digits):
    from cynn.datasets import RandomHorizontalFlip

    plain, flipped = _trainer(digits, seed=1), _trainer(digits, seed=1)
    flipped.augment = RandomHorizontalFlip(1.0)
    plain.fit(digits.train, epochs=1)
    flipped.fit(digits.train, epochs=1)
    assert any(not np.array_equal(a, b) for a, b in
               zip(plain.model.get_parameters(), flipped.model.get_parameters()))
    # Evaluation of one model is the same with and without an augment set.
    scores = flipped.evaluate(digits.test)
    flipped.augment = None
    assert flipped.evaluate(digits.test) == scores


def _augmented_trainer(digits, random_state):
    from cynn.datasets import Compose, RandomCrop, RandomHorizontalFlip

    cynn.manual_seed(4)
    model = small_cnn(digits.input_shape, 10, random_state=4)
    return Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model, lr=3e-3), batch_size=64,
                   random_state=random_state, verbose=0,
                   augment=Compose([RandomCrop(8, padding=1), RandomHorizontalFlip()]))


@pytest.mark.parametrize("seed", [3, "generator"])
def test_augmented_training_is_bit_identical_across_thread_counts(digits, seed):
    results = []
    previous = cynn.get_num_threads()
    try:
        for threads in (1, 2, 1):
            cynn.set_num_threads(threads)
            random_state = np.random.default_rng(3) if seed == "generator" else seed
            trainer = _augmented_trainer(digits, random_state)
            trainer.fit((digits.X_train[:320], digits.y_train[:320]), epochs=2)
            results.append([p.copy() for p in trainer.model.get_parameters()])
    finally:
        cynn.set_num_threads(previous)
    for params in results[1:]:
        for a, b in zip(results[0], params):
            np.testing.assert_array_equal(a, b)


def test_bad_augment_is_refused(digits):
    model = small_cnn(digits.input_shape, 10, random_state=0)
    with pytest.raises(TypeError, match="Trainer: augment must be None or a callable, got 'flip'"):
        Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), augment="flip")
    trainer = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), verbose=0,
                      augment=lambda X, rng: X[:-1])
    with pytest.raises(ValueError, match=r"augment must return an array with one row per sample, "
                                         r"got ndarray of shape \(63, 1, 8, 8\) for a batch of "
                                         r"shape \(64, 1, 8, 8\)"):
        trainer.fit(digits.train, epochs=1)
