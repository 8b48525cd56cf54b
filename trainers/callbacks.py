"""Callbacks: hooks the training loop calls at fixed points; every hook defaults to nothing.

The loop calls, in order::

    on_train_begin(trainer)
      on_epoch_begin(trainer, epoch)
        on_batch_begin(trainer, batch)                                  per batch
          on_grad_computed(trainer, batch)   after backward, before the optimizer step
        on_batch_end(trainer, batch, logs)
      on_epoch_end(trainer, epoch, logs)
    on_train_end(trainer)

``logs`` of a batch hold ``loss`` and ``size``; ``logs`` of an epoch are the epoch's
History record.  A callback stops training by setting ``trainer.stop_training = True``.
"""
import itertools
import math

from cynn._validation import choice, non_negative_float, non_negative_int
from cynn.serialization import save

from .history import History


class Callback:
    """Base class: override the hooks you need."""

    def on_train_begin(self, trainer):
        pass

    def on_train_end(self, trainer):
        pass

    def on_epoch_begin(self, trainer, epoch):
        pass

    def on_epoch_end(self, trainer, epoch, logs):
        pass

    def on_batch_begin(self, trainer, batch):
        pass

    def on_batch_end(self, trainer, batch, logs):
        pass

    def on_grad_computed(self, trainer, batch):
        """The gradients of the batch are in the model's gradient arrays and the
        optimizer has not stepped yet: the place to inspect or change them."""

    # What a resumed run needs of this callback (see cynn.trainers.state): a dict of
    # numbers, strings, lists and arrays.  Stateless callbacks keep these defaults.
    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def _mode_for(monitor, mode):
    choice(mode, "mode", None, ("auto", "min", "max"))
    if mode == "auto":
        return "max" if "acc" in monitor else "min"
    return mode


class _Monitor:
    """Tracks the best value of one History column."""

    def __init__(self, monitor, mode, min_delta=0.0):
        if not isinstance(monitor, str):
            raise ValueError(f"monitor must be a column name, got {monitor!r}")
        self.monitor = monitor
        self.mode = _mode_for(monitor, mode)
        self.min_delta = non_negative_float(min_delta, "min_delta")
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf

    def value(self, logs):
        value = logs.get(self.monitor)
        if value is None:
            raise ValueError(
                f"cannot monitor {self.monitor!r}: the epoch logs have "
                f"{sorted(k for k, v in logs.items() if v is not None)}"
                + (" (pass validation data to monitor val_* columns)" if self.monitor.startswith("val_") else "")
            )
        return value

    def improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta


class ProgressBar(Callback):
    """tqdm progress bars: one for the epochs (loss and accuracy in its postfix) and
    one per epoch for the batches, which does not linger.  ``tqdm.auto`` makes them
    widgets in notebooks.

    Parameters
    ----------
    verbose : int, default 1
        0: silent; 1: epoch and batch bars.
    """

    def __init__(self, verbose=1):
        self.verbose = verbose
        self._epochs = self._batches = None

    def on_train_begin(self, trainer):
        if not self.verbose:
            return
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self._epochs = tqdm(total=trainer.epochs, desc="epochs", unit="epoch", dynamic_ncols=True)

    def on_epoch_begin(self, trainer, epoch):
        if self.verbose:
            self._batches = self._tqdm(total=trainer.batches_per_epoch, desc=f"epoch {epoch}",
                                       unit="batch", leave=False, dynamic_ncols=True)

    def on_batch_end(self, trainer, batch, logs):
        if self._batches is not None:
            self._batches.update(1)
            self._batches.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

    def on_epoch_end(self, trainer, epoch, logs):
        if self._batches is not None:
            self._batches.close()
            self._batches = None
        if self._epochs is not None:
            shown = {k: logs[k] for k in ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
                     if logs.get(k) is not None}
            self._epochs.set_postfix({k.replace("train_", "").replace("accuracy", "acc"): f"{v:.4f}"
                                      for k, v in shown.items()}, refresh=False)
            self._epochs.update(1)

    def on_train_end(self, trainer):
        for bar in (self._batches, self._epochs):
            if bar is not None:
                bar.close()
        self._epochs = self._batches = None


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    Parameters
    ----------
    monitor : str, default 'val_loss'
    patience : int, default 5
    min_delta : float, default 0.0
    mode : 'auto', 'min' or 'max'
        'auto' maximizes columns with 'acc' in their name, minimizes the rest.
    restore_best : bool, default True
        At the end, put back the weights of the best epoch.
    """

    def __init__(self, monitor="val_loss", patience=5, min_delta=0.0, mode="auto", restore_best=True):
        self.patience = non_negative_int(patience, "patience")
        self.restore_best = restore_best
        self._monitor = _Monitor(monitor, mode, min_delta)
        self.best_epoch = None
        self.stopped_epoch = None

    @property
    def monitor(self):
        return self._monitor.monitor

    def on_train_begin(self, trainer):
        self._monitor.reset()
        self._wait = 0
        self._best_state = None
        self.best_epoch = self.stopped_epoch = None

    def on_epoch_end(self, trainer, epoch, logs):
        value = self._monitor.value(logs)
        if self._monitor.improved(value):
            self._monitor.best = value
            self.best_epoch = epoch
            self._wait = 0
            if self.restore_best:
                self._best_state = trainer.model.state_dict()
        else:
            self._wait += 1
            if self._wait > self.patience:
                self.stopped_epoch = epoch
                trainer.stop_training = True

    def on_train_end(self, trainer):
        if self.restore_best and self._best_state is not None:
            trainer.model.load_state_dict(self._best_state)

    def state_dict(self):
        return {"best": self._monitor.best, "wait": self._wait, "best_epoch": self.best_epoch,
                "best_state": self._best_state}

    def load_state_dict(self, state):
        self._monitor.best = float(state["best"])
        self._wait = int(state["wait"])
        self.best_epoch = state["best_epoch"]
        self._best_state = state["best_state"]


class Checkpoint(Callback):
    """Save the model (``cynn.save``, atomic ``.npz``: architecture, weights and the
    input shape of the training data) after an epoch; ``cynn.load(path)`` rebuilds it.

    Parameters
    ----------
    path : str or path-like
        May contain ``{epoch}``.
    monitor : str, default 'val_loss'
    save_best_only : bool, default True
        Save only when ``monitor`` improves; otherwise after every epoch.
    mode : 'auto', 'min' or 'max'
    metadata : dict, optional
        Written into every file (`cynn.save`), e.g. ``{"class_names": [...]}``.
    """

    def __init__(self, path, monitor="val_loss", save_best_only=True, mode="auto", metadata=None):
        self.path = path
        self.metadata = metadata
        self.save_best_only = save_best_only
        self._monitor = _Monitor(monitor, mode)
        self.saved = []

    def on_train_begin(self, trainer):
        self._monitor.reset()

    def on_epoch_end(self, trainer, epoch, logs):
        if self.save_best_only:
            value = self._monitor.value(logs)
            if not self._monitor.improved(value):
                return
            self._monitor.best = value
        path = str(self.path).format(epoch=epoch)
        # Stored in evaluation mode: a loaded checkpoint predicts deterministically
        # (the Trainer's resumption uses its own training-state file).
        save(trainer.model, path, input_shape=getattr(trainer, "input_shape", None) or None,
             metadata=self.metadata, training=False)
        self.saved.append(path)

    def state_dict(self):
        return {"best": self._monitor.best, "saved": list(self.saved)}

    def load_state_dict(self, state):
        self._monitor.best = float(state["best"])
        self.saved = list(state["saved"])


class GradientClipping(Callback):
    """Clip the gradients' global norm before every optimizer step
    (`cynn.clip_grad_norm`), as skorch's ``GradientNormClipping`` or Keras'
    ``clipnorm``.

    Parameters
    ----------
    max_norm : float
    norm_type : float, default 2.0

    Attributes
    ----------
    last_norm : float or None
        The norm of the last batch's gradients, before clipping.
    """

    def __init__(self, max_norm, norm_type=2.0):
        from cynn.optim import clip_grad_norm

        # Checked now, so a bad value fails before training starts.
        clip_grad_norm([], max_norm, norm_type)
        self.max_norm = max_norm
        self.norm_type = norm_type
        self.last_norm = None

    def on_grad_computed(self, trainer, batch):
        from cynn.optim import clip_grad_norm

        self.last_norm = clip_grad_norm(trainer.model, self.max_norm, self.norm_type)

    def __repr__(self):
        return f"GradientClipping(max_norm={self.max_norm}, norm_type={self.norm_type})"


class LRSchedulerCallback(Callback):
    """Step a learning-rate schedule (`cynn.lr_scheduler.StepLR` and friends) after
    every epoch.

    ``ReduceLROnPlateau`` is stepped with the epoch's ``monitor`` value (the training
    loss when the epoch has no such column).  The schedule itself is a
    `cynn.lr_scheduler.LRScheduler`; this callback only calls its ``step``.

    Parameters
    ----------
    schedule : cynn.lr_scheduler.LRScheduler
    monitor : str, default 'val_loss'
    """

    def __init__(self, schedule, monitor="val_loss"):
        self.schedule = schedule
        self.monitor = monitor

    def on_epoch_end(self, trainer, epoch, logs):
        from cynn.lr_scheduler import ReduceLROnPlateau

        if isinstance(self.schedule, ReduceLROnPlateau):
            value = logs.get(self.monitor)
            if value is None:
                value = logs.get("train_loss")
            self.schedule.step(value)
        else:
            self.schedule.step()

    def state_dict(self):
        return {"schedule": self.schedule.state_dict()}

    def load_state_dict(self, state):
        self.schedule.load_state_dict(state["schedule"])


class LRScheduler(LRSchedulerCallback):
    """Deprecated name of `LRSchedulerCallback` (it clashed with
    `cynn.lr_scheduler.LRScheduler`, the base class of the schedules); it will be
    removed in the next release."""

    def __init__(self, schedule, monitor="val_loss"):
        import warnings

        warnings.warn("cynn.trainers.LRScheduler is deprecated; use "
                      "cynn.trainers.LRSchedulerCallback", FutureWarning, stacklevel=2)
        super().__init__(schedule, monitor)


class CSVLogger(Callback):
    """Rewrite the History as CSV after every epoch (atomically)."""

    def __init__(self, path):
        self.path = path

    def on_epoch_end(self, trainer, epoch, logs):
        History(trainer.history.records).to_csv(self.path)




# History columns and the TensorBoard tags they are written under: one chart per
# quantity, with the training and validation curves side by side.
_TENSORBOARD_TAGS = {"train_loss": "loss/train", "val_loss": "loss/val",
                     "train_accuracy": "accuracy/train", "val_accuracy": "accuracy/val",
                     "lr": "learning_rate", "seconds": "time/seconds_per_epoch"}


_writer_count = itertools.count()


class TensorBoard(Callback):
    """Write every epoch's History record (losses, accuracies, learning rate, time,
    and any column a callback adds) as TensorBoard event files, one sub-folder of
    ``log_dir`` per fit; view them with ``tensorboard --logdir LOG_DIR``.

    The writer is tensorboardX (``pip install "cynn-framework[tensorboard]"``),
    imported and opened at the first epoch's end and closed when training ends, so
    the callback can be copied, pickled and cloned by scikit-learn (it holds no open
    file between fits) and each fit of a grid search writes its own run.  A resumed
    `Trainer.fit` goes on writing into the run it stopped in.

    Parameters
    ----------
    log_dir : str or path-like, default 'runs/tensorboard'
    run_name : str, optional
        The sub-folder of the next fit; default: the time, the process id and a
        counter (unique even for parallel jobs).

    Attributes
    ----------
    run_dir : str or None
        The folder of the current (or last) fit.
    """

    def __init__(self, log_dir="runs/tensorboard", run_name=None):
        self.log_dir = log_dir
        self.run_name = run_name
        self.run_dir = None
        self._writer = None

    def _open(self):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as exc:
            raise ImportError('the TensorBoard callback writes through tensorboardX: pip install '
                              '"cynn-framework[tensorboard]" (pip install -e ".[tensorboard]" from '
                              'a checkout)') from exc
        import os

        if self.run_dir is None:
            self.run_dir = self._new_run_dir()
        # tensorboardX names its file after the second it was opened: a resumed run
        # reopening the folder within that second would overwrite the first file.
        self._writer = SummaryWriter(logdir=self.run_dir,
                                     filename_suffix=f".{os.getpid()}.{next(_writer_count)}")

    def _new_run_dir(self):
        import os
        import time

        from cynn.serialization import new_folder

        os.makedirs(self.log_dir, exist_ok=True)
        return new_folder(os.path.join(os.fspath(self.log_dir), self.run_name or
                                       f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"),
                          attempts=100000)

    def on_train_begin(self, trainer):
        self.close()
        self.run_dir = None

    def on_epoch_end(self, trainer, epoch, logs):
        if self._writer is None:
            self._open()
        for key, value in logs.items():
            if key == "epoch" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self._writer.add_scalar(_TENSORBOARD_TAGS.get(key, key), float(value), epoch)
        self._writer.flush()

    def on_train_end(self, trainer):
        self.close()

    def close(self):
        """Flush and close the writer, if one is open."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self):
        return {"run_dir": self.run_dir or ""}

    def load_state_dict(self, state):
        # A resumed run writes on into the folder it stopped in.
        self.run_dir = state["run_dir"] or None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_writer"] = None      # an open writer is a file and a thread
        return state

    def __deepcopy__(self, memo):
        copy = TensorBoard(self.log_dir, self.run_name)
        copy.run_dir = self.run_dir
        return copy

    def __repr__(self):
        return f"TensorBoard(log_dir={self.log_dir!r})"
