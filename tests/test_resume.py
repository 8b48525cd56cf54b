"""A run stopped at any moment and resumed ends bit-identical to one that never stopped."""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cynn
from cynn.datasets import Compose, RandomCrop, RandomHorizontalFlip, load_digits
from cynn.models import small_cnn
from cynn.trainers import Callback, Checkpoint, EarlyStopping, LRSchedulerCallback, Trainer
from cynn.trainers.state import TrainingStateError


class Crash(Exception):
    pass


class CrashAt(Callback):
    """Stands for the machine dying: raises when epoch ``epoch`` begins."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_begin(self, trainer, epoch):
        if epoch == self.epoch:
            raise Crash


@pytest.fixture(scope="module")
def digits():
    return load_digits(random_state=0)


def make_trainer(digits, tmp_path, extra=(), random_state=5, augment=None):
    cynn.manual_seed(5)
    model = small_cnn(digits.input_shape, 10, random_state=5)
    optimizer = cynn.Adam(model, lr=3e-3)
    callbacks = [LRSchedulerCallback(cynn.StepLR(optimizer, step_size=2, gamma=0.5)),
                 EarlyStopping("val_loss", patience=50),
                 Checkpoint(tmp_path / "best.npz", monitor="val_accuracy"), *extra]
    return Trainer(model, cynn.CrossEntropyCriterion(), optimizer, callbacks=callbacks,
                   batch_size=64, random_state=random_state, verbose=0, augment=augment)


def without_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history.records]


def test_resume_after_a_crash_equals_the_uninterrupted_run(digits, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full = make_trainer(digits, tmp_path / "a")
    full.fit(digits.train, digits.val, epochs=5, state_path=tmp_path / "a" / "state.npz")

    crashed = make_trainer(digits, tmp_path / "b", [CrashAt(4)])
    with pytest.raises(Crash):
        crashed.fit(digits.train, digits.val, epochs=5, state_path=tmp_path / "b" / "state.npz")
    assert len(crashed.history) == 3
    # A fresh process would start from nothing: new objects, other global RNG state.
    cynn.manual_seed(123)
    resumed = make_trainer(digits, tmp_path / "b")
    resumed.fit(digits.train, digits.val, epochs=5, resume_from=tmp_path / "b" / "state.npz",
                state_path=tmp_path / "b" / "state.npz")

    assert without_seconds(resumed.history) == without_seconds(full.history)
    for a, b in zip(full.model.get_parameters(), resumed.model.get_parameters()):
        assert np.array_equal(a, b)
    for key, value in full.model.state_dict().items():
        assert np.array_equal(value, resumed.model.state_dict()[key]), key
    assert resumed.optimizer.step_count == full.optimizer.step_count
    assert resumed.optimizer.lr == full.optimizer.lr
    assert (tmp_path / "a" / "best.npz").read_bytes() == (tmp_path / "b" / "best.npz").read_bytes()


class RecordingAugment:
    """Crop and flip, remembering what it produced, to compare two runs' draws."""

    def __init__(self):
        self.chain = Compose([RandomCrop(8, padding=1), RandomHorizontalFlip()])
        self.outputs = []

    def __call__(self, X, rng):
        out = self.chain(X, rng)
        self.outputs.append(out)
        return out


@pytest.mark.parametrize("seed", ["int", "generator"])
def test_resume_continues_the_augmentation_draws(digits, tmp_path, seed):
    # With a Generator as random_state, the augmentation seed is drawn from it at the
    # first fit and must come back from the state file, not from a second draw.
    def random_state():
        return 5 if seed == "int" else np.random.default_rng(5)

    train = (digits.X_train[:384], digits.y_train[:384])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    full_augment = RecordingAugment()
    full = make_trainer(digits, tmp_path / "a", random_state=random_state(), augment=full_augment)
    full.fit(train, digits.val, epochs=4, state_path=tmp_path / "a" / "state.npz")

    crashed = make_trainer(digits, tmp_path / "b", [CrashAt(3)], random_state=random_state(),
                           augment=RecordingAugment())
    with pytest.raises(Crash):
        crashed.fit(train, digits.val, epochs=4, state_path=tmp_path / "b" / "state.npz")
    cynn.manual_seed(123)
    resumed_augment = RecordingAugment()
    resumed = make_trainer(digits, tmp_path / "b", random_state=random_state(),
                           augment=resumed_augment)
    resumed.fit(train, digits.val, epochs=4, resume_from=tmp_path / "b" / "state.npz")

    # The resumed run draws exactly the crops and flips of epochs 3 and 4.
    later = full_augment.outputs[-len(resumed_augment.outputs):]
    assert len(resumed_augment.outputs) == 2 * full.batches_per_epoch
    for a, b in zip(later, resumed_augment.outputs):
        np.testing.assert_array_equal(a, b)
    assert without_seconds(resumed.history) == without_seconds(full.history)
    for a, b in zip(full.model.get_parameters(), resumed.model.get_parameters()):
        assert np.array_equal(a, b)


def test_a_state_from_another_architecture_is_refused_and_changes_nothing(digits, tmp_path):
    trainer = make_trainer(digits, tmp_path)
    trainer.fit(digits.train, digits.val, epochs=1, state_path=tmp_path / "state.npz")
    model = cynn.models.mlp(64, 10, random_state=0)
    other = Trainer(model, cynn.CrossEntropyCriterion(), cynn.Adam(model), verbose=0)
    before = model.state_dict()
    flat = (digits.X_train.reshape(len(digits.X_train), -1), digits.y_train)
    with pytest.raises(TrainingStateError, match="state.npz"):
        other.fit(flat, epochs=2, resume_from=tmp_path / "state.npz")
    assert all(np.array_equal(v, model.state_dict()[k]) for k, v in before.items())


def run_cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "cynn", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_run_killed_with_sigkill_and_resumed_is_bit_identical(tmp_path):
    args = ["train", "--epochs", "12", "--quiet", "--threads", "2"]
    done = run_cli(*args, "--out", "full", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([sys.executable, "-m", "cynn", *args, "--out", "killed"], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "killed" / "training_state.npz"
    deadline = time.monotonic() + 120
    while not state.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(random.uniform(0.0, 0.6))      # somewhere in the middle of an epoch, or a write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "history.json").exists()
    resumed = run_cli("train", "--resume", "killed", "--quiet", "--threads", "2", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "full" / "model.npz").read_bytes() == \
        (tmp_path / "killed" / "model.npz").read_bytes()
    full = json.loads((tmp_path / "full" / "history.json").read_text())
    again = json.loads((tmp_path / "killed" / "history.json").read_text())
    # Wall-clock seconds per epoch are the one column no rerun can reproduce.
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in full] == \
        [{k: v for k, v in r.items() if k != "seconds"} for r in again]
    assert len(again) == 12


@pytest.mark.slow
def test_cli_resume_errors_are_one_line_with_status_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_cli("train", "--resume", "empty", "--quiet", cwd=tmp_path)
    assert result.returncode == 2 and "no training_state.npz" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

    assert run_cli("train", "--epochs", "1", "--quiet", "--out", "done", cwd=tmp_path).returncode == 0
    result = run_cli("train", "--resume", "done", "--quiet", cwd=tmp_path)
    assert result.returncode == 2 and "already finished" in result.stderr

    assert run_cli("train", "--epochs", "2", "--quiet", "--model", "mlp", "--out", "mlp",
                   cwd=tmp_path).returncode == 0
    os.remove(tmp_path / "mlp" / "history.json")             # as if killed at the very end
    shutil.copy(tmp_path / "mlp" / "training_state.npz", tmp_path / "done")
    os.remove(tmp_path / "done" / "history.json")
    result = run_cli("train", "--resume", "done", "--quiet", cwd=tmp_path)
    assert result.returncode == 2 and "does not match" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_folders_started_in_the_same_second_are_distinct(tmp_path, monkeypatch):
    from cynn import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(time, "strftime", lambda fmt: "20261201-120000")
    args = cli.build_parser().parse_args(["train"])
    folders = {cli._make_out_dir(args, "small-cnn") for _ in range(3)}
    assert len(folders) == 3 and all(os.path.isdir(f) for f in folders)
