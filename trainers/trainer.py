"""Trainer: the training loop, as a fixed sequence plus callbacks."""
import contextlib
import math
import signal
import sys
import threading
import time

import numpy as np

from cynn._random import as_generator
from cynn._validation import _is_integer, callable_or_none, positive_int, sample_weights
from cynn.criterions import Criterion
from cynn.datasets import iterate_minibatches
from cynn.module import Module, inference_mode
from cynn.optim import Optimizer

from .callbacks import Callback, ProgressBar
from .history import History
from .state import load_training_state, save_training_state


class NonFiniteLossError(FloatingPointError):
    """The loss (or the parameters after a step) became NaN or infinite."""


def _as_xy(data, name, weights=False):
    """``(X, y)`` of ``data``, or ``(X, y, sample_weight)`` with ``weights`` (the weight
    None when ``data`` is a pair)."""
    if isinstance(data, (tuple, list)) and (len(data) == 2 or weights and len(data) == 3):
        X, y, w = (*data, None) if len(data) == 2 else data
    else:
        kinds = "a tuple (X, y) or (X, y, sample_weight)" if weights else "an (X, y) pair of arrays"
        raise TypeError(f"{name} must be {kinds}, got {type(data).__name__}"
                        + (f" of length {len(data)}" if isinstance(data, (tuple, list)) else ""))
    if len(X) != len(y):
        raise ValueError(f"{name}: X has {len(X)} samples but y has {len(y)}")
    if len(X) == 0:
        raise ValueError(f"{name} is empty")
    if not weights:
        return X, y
    return X, y, None if w is None else sample_weights(w, len(X), name)


def _state_arrays(module):
    """The live parameter and buffer arrays of a module tree, in a fixed order."""
    arrays = [value for _, value in module._named_state() if value is not None]
    for child in module.children():
        arrays += _state_arrays(child)
    return arrays


class _Snapshot:
    """Copies of a model's parameters and buffers, refreshed in place after good steps."""

    def __init__(self, model):
        self.model = model
        self.take()

    def take(self):
        self.live = _state_arrays(self.model)
        self.copies = [a.copy() for a in self.live]

    def refresh(self):
        live = _state_arrays(self.model)
        if len(live) != len(self.live) or any(a is not b for a, b in zip(live, self.live)):
            self.take()   # a lazily allocated buffer appeared (BatchNormalization)
            return
        for copy, array in zip(self.copies, self.live):
            np.copyto(copy, array)

    def restore(self):
        for copy, array in zip(self.copies, self.live):
            np.copyto(array, copy)


class _InterruptFlag:
    raised = False


@contextlib.contextmanager
def _sigint_as_flag():
    """Turn the first Ctrl-C into a flag the loop checks between batches.

    A second Ctrl-C interrupts at once.  Outside the main thread signals cannot be
    handled, and Ctrl-C keeps its usual meaning.
    """
    flag = _InterruptFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        flag.raised = True
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def _accuracy_counts(output, target):
    """Number of correct predictions, or None when accuracy does not apply."""
    output = np.asarray(output)
    target = np.asarray(target)
    if output.ndim != 2 or output.shape[1] < 2:
        return None
    if target.ndim == 1 and target.dtype.kind in "iub":
        return int(np.sum(output.argmax(axis=1) == target))
    if target.ndim == 2 and target.shape == output.shape:
        return int(np.sum(output.argmax(axis=1) == target.argmax(axis=1)))
    return None


class Trainer:
    """Fit a model with minibatch gradient descent and report each epoch.

    Parameters
    ----------
    model : Module
    criterion : Criterion
    optimizer : Optimizer
        Built on ``model``.
    callbacks : sequence of Callback
    batch_size : int, default 64
    shuffle : bool, default True
    random_state : None, int or numpy.random.Generator
        Shuffling order and augmentation draws.  With fixed seeds here and in the
        model (``cynn.manual_seed``), training is bit-identical from run to run.
    verbose : int, default 1
        1 adds a `ProgressBar` unless one is among the callbacks; 0 is silent.
    augment : callable, optional
        Applied to every training batch before the forward pass, as
        ``augment(X_batch, rng)``, for example
        ``cynn.datasets.Compose([RandomCrop(32, padding=4), RandomHorizontalFlip()])``;
        it must return a batch of the same length.  Never applied to validation
        data, nor in `evaluate` or `predict`.  ``rng`` is a fresh
        ``numpy.random.Generator`` for each batch, seeded from (run seed, epoch,
        batch number): the draws do not depend on the thread count, and a resumed
        run makes the same ones as a run that never stopped.  The run seed is
        ``random_state`` when it is an int, else one number drawn from the shuffling
        generator when `fit` first needs it.

    Attributes
    ----------
    history : History
        One record per epoch, across calls to `fit`.
    stop_training : bool
        Set by a callback to end training after the current epoch.
    """

    def __init__(self, model, criterion, optimizer, callbacks=(), batch_size=64, shuffle=True,
                 random_state=None, verbose=1, augment=None):
        if not isinstance(model, Module):
            raise TypeError(f"model must be a cynn Module, got {type(model).__name__}")
        if not isinstance(criterion, Criterion):
            raise TypeError(f"criterion must be a cynn Criterion, got {type(criterion).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a cynn Optimizer, got {type(optimizer).__name__}")
        batch_size = positive_int(batch_size, "batch_size")
        callable_or_none(augment, "augment", "Trainer")
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be Callback instances, got {type(cb).__name__}")
        if verbose and not any(isinstance(cb, ProgressBar) for cb in callbacks):
            callbacks.append(ProgressBar(verbose))
        self.model = model
        self.criterion = criterion
        self.optimizer = optimizer
        self.callbacks = callbacks
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.verbose = verbose
        self._rng = as_generator(random_state)
        self.augment = augment
        # The augmentation seed: the run's int seed, or drawn in fit (see `augment`);
        # saved in and restored from the training state.
        self._augment_seed = int(random_state) if _is_integer(random_state) else None
        self.history = History()
        self.stop_training = False
        self.interrupted = False
        self.epochs = 0
        self.batches_per_epoch = 0

    def _call(self, hook, *args):
        for cb in self.callbacks:
            # A callback written before a hook existed (on_grad_computed) need not
            # have it.
            method = getattr(cb, hook, None)
            if method is not None:
                method(self, *args)

    def fit(self, train, val=None, epochs=10, resume_from=None, state_path=None):
        """Train for ``epochs`` epochs (fewer if a callback stops it or on Ctrl-C).

        Parameters
        ----------
        train : (X, y) or (X, y, sample_weight)
            With ``sample_weight`` (one non-negative weight per sample) each batch's
            loss is the weighted mean (`cynn.Criterion.forward`), and so is the
            epoch's ``train_loss``.
        val : (X, y), optional
            Evaluated after every epoch (``val_loss``, ``val_accuracy``).
        epochs : int
            With ``resume_from``: the total the run asked for, counting the epochs
            already done.
        resume_from : path, optional
            A training-state file written through ``state_path``: restore the model,
            optimizer, callbacks, history and random generators from it and train the
            remaining epochs.  With the same data, arguments and thread count the
            result is bit-identical to a run that never stopped.
        state_path : path, optional
            Write the whole training state here, atomically, after every epoch (after
            the callbacks), so that a killed run can be resumed.

        Returns
        -------
        History

        Raises
        ------
        NonFiniteLossError
            With the epoch and batch; the model keeps its last finite weights.
        """
        X, y, w = _as_xy(train, "train", weights=True)
        if val is not None:
            _as_xy(val, "val")
        # The shape of one sample: Checkpoint writes it into the model files.
        self.input_shape = tuple(int(d) for d in np.shape(X)[1:])
        self.epochs = positive_int(epochs, "epochs")
        self.batches_per_epoch = math.ceil(len(X) / self.batch_size)
        self.stop_training = False
        self.interrupted = False
        with _sigint_as_flag() as flag:
            self._call("on_train_begin")
            try:
                # Epochs count from this call, or from the run's start when resuming.
                start = len(self.history)
                if resume_from is not None:
                    # After on_train_begin, which resets the callbacks' own state.
                    self.stop_training = bool(load_training_state(self, resume_from)["finished"])
                    start = 0
                if self.augment is not None and self._augment_seed is None:
                    self._augment_seed = int(self._rng.integers(np.iinfo(np.int64).max))
                snapshot = _Snapshot(self.model)
                while len(self.history) - start < self.epochs and not self.stop_training:
                    self._run_epoch(X, y, w, val, snapshot, flag)
                    if self.interrupted:
                        break
                    if state_path is not None:
                        done = self.stop_training or len(self.history) - start >= self.epochs
                        save_training_state(self, state_path, finished=done)
            finally:
                self._call("on_train_end")
        if self.interrupted:
            print(f"Training interrupted (Ctrl-C) during epoch {len(self.history) + 1}; the model, "
                  f"its history ({len(self.history)} complete epochs) and the callbacks' best "
                  "weights are kept.", file=sys.stderr)
        return self.history

    def _run_epoch(self, X, y, w, val, snapshot, flag):
        epoch = len(self.history) + 1
        self._call("on_epoch_begin", epoch)
        start = time.perf_counter()
        self.model.train()
        total_loss, total_seen, total_correct, accuracy_applies = 0.0, 0, 0, True
        # With weights the batches are drawn as rows of an index (the same permutation
        # draws), and the weights follow their rows.
        batches = iterate_minibatches(X, y if w is None else np.arange(len(X)),
                                      batch_size=self.batch_size, shuffle=self.shuffle,
                                      random_state=self._rng)
        total_weight = 0.0
        for batch, (xb, yb) in enumerate(batches, start=1):
            wb = None
            if w is not None:
                yb, wb = y[yb], w[yb]
            self._call("on_batch_begin", batch)
            if self.augment is not None:
                xb = self._augmented(xb, epoch, batch)
            self.optimizer.zero_grad()
            output = self.model.forward(xb)
            n = len(xb)
            if wb is not None and not wb.any():
                loss = 0.0      # every weight of this batch is 0: nothing to learn from it
            else:
                loss = self._learn(xb, yb, wb, output, epoch, batch, snapshot)
                weight = n if wb is None else float(wb.sum())
                total_loss += loss * weight
                total_weight += weight
                total_seen += n
                correct = _accuracy_counts(output, yb)
                if correct is None:
                    accuracy_applies = False
                else:
                    total_correct += correct
            self._call("on_batch_end", batch, {"loss": loss, "size": n})
            if flag.raised:
                self.interrupted = True
                return
        record = {
            "epoch": epoch,
            "train_loss": total_loss / total_weight if total_weight else float("nan"),
            "train_accuracy": total_correct / total_seen if accuracy_applies else None,
            "lr": float(self.optimizer.lr),
        }
        if val is not None:
            scores = self.evaluate(val)
            record["val_loss"], record["val_accuracy"] = scores["loss"], scores["accuracy"]
        record["seconds"] = time.perf_counter() - start
        self.history.append(record)
        self._call("on_epoch_end", epoch, self.history[-1])

    def _learn(self, xb, yb, wb, output, epoch, batch, snapshot):
        """The loss of one batch's ``output``, its backward pass and the optimizer step;
        returns the loss.  A non-finite loss or step restores the last finite weights
        and raises."""
        # Criterions that predate sample_weight are still called as they always were.
        weight = {} if wb is None else {"sample_weight": wb}
        loss = self.criterion.forward(output, yb, **weight)
        if not math.isfinite(loss):
            snapshot.restore()
            raise NonFiniteLossError(
                f"non-finite loss ({loss}) at epoch {epoch}, batch {batch}; training stopped "
                "and the model was left at its last finite weights (try a lower learning rate)")
        self.model.backward(xb, self.criterion.backward(output, yb, **weight))
        self._call("on_grad_computed", batch)
        self.optimizer.step()
        if not all(np.isfinite(p).all() for p in self.model.get_parameters()):
            snapshot.restore()
            raise NonFiniteLossError(
                f"parameters became non-finite after the step at epoch {epoch}, batch {batch}; "
                "the model was left at its last finite weights (try a lower learning rate)")
        snapshot.refresh()
        return loss

    def _augmented(self, xb, epoch, batch):
        # One generator per batch from (seed, epoch, batch), never one carried from
        # batch to batch: a resumed run needs no augmentation state to draw on.
        rng = np.random.default_rng([self._augment_seed, epoch, batch])
        out = self.augment(xb, rng)
        if not isinstance(out, np.ndarray) or len(out) != len(xb):
            raise ValueError(f"augment must return an array with one row per sample, got "
                             f"{type(out).__name__} of shape {getattr(out, 'shape', None)} for "
                             f"a batch of shape {xb.shape}")
        return out

    def evaluate(self, data, batch_size=None):
        """Score the model on ``data``: loss and accuracy (None for non-classification
        outputs), computed in evaluation mode.

        Not to be confused with `cynn.Module.evaluate`, which only switches a model
        into evaluation mode.
        """
        X, y = _as_xy(data, "data")
        total_loss, total_correct, accuracy_applies = 0.0, 0, True
        with inference_mode():
            for xb, yb in iterate_minibatches(X, y, batch_size=batch_size or self.batch_size,
                                              shuffle=False):
                output = self.model.forward(xb)
                total_loss += self.criterion.forward(output, yb) * len(xb)
                correct = _accuracy_counts(output, yb)
                if correct is None:
                    accuracy_applies = False
                else:
                    total_correct += correct
        return {"loss": total_loss / len(X),
                "accuracy": total_correct / len(X) if accuracy_applies else None}

    def predict(self, X, batch_size=None):
        """The model's outputs for ``X``, computed in evaluation mode, in batches.

        Safe to call from several threads at once on one model: the forward passes run
        in `cynn.inference_mode`, which switches no attribute of the model.
        """
        if len(X) == 0:
            raise ValueError("predict got an empty X")
        outputs = []
        with inference_mode():
            for xb in iterate_minibatches(X, None, batch_size=batch_size or self.batch_size,
                                          shuffle=False):
                outputs.append(np.array(self.model.forward(xb), copy=True))
        return np.concatenate(outputs)
