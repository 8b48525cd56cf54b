"""scikit-learn estimators around a cynn network: NeuralNetClassifier, NeuralNetRegressor.

They follow scikit-learn's contract: ``__init__`` stores its arguments untouched,
``fit`` validates all of them at once, fitted state ends in ``_``.  They work in
Pipeline, cross_val_score, GridSearchCV (also with ``n_jobs``: fitted and unfitted
estimators pickle), and pass ``sklearn.utils.estimator_checks``.

Where scikit-learn has ``sklearn.callback`` (1.9 and later) they also take its callbacks,
``est.set_callbacks(ProgressBar(), ScoringMonitor(scoring=...))``, on their own or
propagated from a meta-estimator such as GridSearchCV: ``fit`` (or ``partial_fit``) is
the root task and each epoch one sub-task.  With an older scikit-learn they work as
before, without ``set_callbacks``.  The ``callbacks`` parameter (cynn's own, for the
Trainer) is unrelated and works either way.
"""
import copy
import functools
import math
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import (_check_sample_weight, check_is_fitted, column_or_1d,
                                      validate_data)

import cynn
from cynn._random import derive_seed
from cynn.functional import softmax
from cynn._validation import (callable_or_none, collect_errors, fraction, non_negative_float,
                              non_negative_int, positive_float, positive_int)

from .callbacks import Callback, EarlyStopping, GradientClipping
from cynn.models import build
from .trainer import Trainer

try:
    # scikit-learn >= 1.9: its callback protocol.  Older versions have no such module;
    # the estimators then neither gain set_callbacks nor report epochs to anything.
    from sklearn.callback import CallbackSupportMixin as _CallbackSupportMixin
    from sklearn.callback import with_callbacks as _with_callbacks
except ImportError:
    _CallbackSupportMixin = None

    def _with_callbacks(method):
        return method

#: Base classes the estimators gain from scikit-learn's callback support, if any.
_CALLBACK_BASES = () if _CallbackSupportMixin is None else (_CallbackSupportMixin,)

_OPTIMIZERS = ("adam", "adamw", "sgd")


class _SklearnCallbackBridge(Callback):
    """A cynn Callback that reports each epoch of the Trainer as one sub-task of the
    estimator's scikit-learn callback context (``sklearn.callback``).

    ``on_epoch_begin`` opens a sub-context "epoch" and calls the scikit-learn
    callbacks' ``on_fit_task_begin``; ``on_epoch_end`` calls their ``on_fit_task_end``
    with the fit's data and the state needed for a ``fitted_estimator`` (a copy of the
    estimator holding a snapshot of the network after that epoch), and sets
    ``trainer.stop_training`` when one of them asks to stop.  An epoch that began
    but never ended (Ctrl-C, a non-finite loss) is closed without data at
    ``on_train_end``, so every begin has its end.
    """

    def __init__(self, estimator, context, X, y, metadata):
        self.estimator = estimator
        self.context = context
        self.X = X
        self.y = y
        self.metadata = metadata
        self._epoch_context = None

    def _state(self):
        # Called lazily, only when a callback asks for fitted_estimator.  The network
        # is copied so that the estimator handed out stays as it was at this point,
        # whatever training does next (and predicting on it never touches the one
        # being trained).
        est = self.estimator
        return {"module_": copy.deepcopy(est.module_), "n_iter_": len(est.history_),
                "loss_curve_": est.history_["train_loss"]}

    def on_epoch_begin(self, trainer, epoch):
        self._epoch_context = self.context.subcontext(task_name="epoch")
        self._epoch_context.call_on_fit_task_begin(
            estimator=self.estimator, X=self.X, y=self.y, metadata=self.metadata,
            reconstruction_attributes=self._state)

    def on_epoch_end(self, trainer, epoch, logs):
        context, self._epoch_context = self._epoch_context, None
        if context.call_on_fit_task_end(estimator=self.estimator, X=self.X, y=self.y,
                                        metadata=self.metadata,
                                        reconstruction_attributes=self._state):
            trainer.stop_training = True

    def on_train_end(self, trainer):
        if self._epoch_context is not None:
            context, self._epoch_context = self._epoch_context, None
            context.call_on_fit_task_end(estimator=self.estimator)


class _NeuralNet(*_CALLBACK_BASES, BaseEstimator):
    """What the classifier and the regressor share: parameters, validation, the loop."""

    def __init__(self, module=None, image_shape=None, criterion=None, optimizer="adam", lr=1e-3,
                 momentum=0.9, weight_decay=0.0, batch_size=64, max_epochs=20,
                 validation_fraction=0.1, early_stopping=False, patience=5, callbacks=None,
                 random_state=None, verbose=0, dtype="float32", warm_start=False, augment=None,
                 clip_grad_norm=None):
        self.module = module
        self.image_shape = image_shape
        self.criterion = criterion
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.validation_fraction = validation_fraction
        self.early_stopping = early_stopping
        self.patience = patience
        self.callbacks = callbacks
        self.random_state = random_state
        self.verbose = verbose
        self.dtype = dtype
        self.warm_start = warm_start
        self.augment = augment
        self.clip_grad_norm = clip_grad_norm

    # -- validation ---------------------------------------------------------------
    def _validate_params(self):
        """Check every parameter and report all problems in one ValueError/TypeError."""
        errors = []
        check = functools.partial(collect_errors, errors)
        check(positive_int, self.batch_size, "batch_size")
        check(positive_int, self.max_epochs, "max_epochs")
        if self.early_stopping:
            check(non_negative_int, self.patience, "patience")
        check(positive_float, self.lr, "lr")
        check(fraction, self.momentum, "momentum")
        check(non_negative_float, self.weight_decay, "weight_decay")
        check(fraction, self.validation_fraction, "validation_fraction")
        if self.early_stopping and not self.validation_fraction:
            errors.append("early_stopping=True needs validation_fraction > 0")
        if not (isinstance(self.optimizer, str) and self.optimizer.lower() in _OPTIMIZERS) \
                and not (isinstance(self.optimizer, type) and issubclass(self.optimizer, cynn.Optimizer)):
            errors.append(f"optimizer must be one of {_OPTIMIZERS} or a cynn Optimizer class, "
                          f"got {self.optimizer!r}")
        if self.dtype not in ("float32", "float64", np.float32, np.float64):
            errors.append(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.module is not None and not isinstance(self.module, (cynn.Module, str)) \
                and not callable(self.module):
            errors.append("module must be None, a model name such as 'resnet20' (see "
                          "cynn.models.build), a cynn Module or a callable (input shape, "
                          f"n_outputs) -> Module, got {type(self.module).__name__}")
        if self.criterion is not None and not isinstance(self.criterion, cynn.Criterion):
            errors.append(f"criterion must be None or a cynn Criterion, got {self.criterion!r}")
        if self.image_shape is not None:
            shape = self.image_shape
            if not (isinstance(shape, (tuple, list)) and len(shape) == 3
                    and all(isinstance(s, numbers.Integral) and s > 0 for s in shape)):
                errors.append(f"image_shape must be (channels, height, width), got {shape!r}")
        if self.callbacks is not None and not all(isinstance(cb, Callback) for cb in self.callbacks):
            errors.append("callbacks must be None or a list of cynn.trainers.Callback")
        if self.clip_grad_norm is not None:
            check(positive_float, self.clip_grad_norm, "clip_grad_norm")
        check(callable_or_none, self.augment, "augment",
              requirement="None or a callable (X_batch, rng) -> X_batch, such as "
                          "cynn.datasets.Compose([...])")
        if errors:
            raise ValueError(f"invalid parameters for {type(self).__name__}:\n  " + "\n  ".join(errors))

    def _prepare_X(self, X, reset):
        X = validate_data(self, X, reset=reset, dtype=[np.float64, np.float32])
        return self._reshape(X)

    def _reshape(self, X):
        X = np.asarray(X, dtype=np.dtype(self.dtype))
        if self.image_shape is not None:
            if math.prod(self.image_shape) != X.shape[1]:
                raise ValueError(f"image_shape {tuple(self.image_shape)} holds "
                                 f"{math.prod(self.image_shape)} values, but X has {X.shape[1]} features")
            X = X.reshape((X.shape[0],) + tuple(self.image_shape))
        return X

    # -- building -----------------------------------------------------------------
    def _build_module(self, n_features, n_outputs, seed):
        dtype = np.dtype(self.dtype)
        input_shape = tuple(self.image_shape) if self.image_shape is not None else n_features
        if self.module is None or isinstance(self.module, str):
            name = self.module
            if name is None:
                name = "small_cnn" if self.image_shape is not None else "mlp"
            shape = input_shape if self.image_shape is not None else (n_features,)
            try:
                return build(name, shape, n_outputs, dtype=dtype, random_state=seed)
            except ValueError as exc:
                hint = " (set image_shape=(C, H, W))" if self.image_shape is None else ""
                raise ValueError(f"module={name!r}: {exc}{hint}") from None
        if isinstance(self.module, cynn.Module):
            # Never train the object held in the parameter: clone() and grid searches
            # rely on it staying as given.
            return copy.deepcopy(self.module).astype(dtype)
        if seed is not None:
            cynn.manual_seed(seed)
        module = self.module(input_shape, n_outputs)
        if not isinstance(module, cynn.Module):
            raise TypeError(f"module callable must return a cynn Module, got {type(module).__name__}")
        return module.astype(dtype)

    def _build_optimizer(self, module):
        name = self.optimizer.lower() if isinstance(self.optimizer, str) else None
        if name == "adam":
            return cynn.Adam(module, lr=self.lr, weight_decay=self.weight_decay)
        if name == "adamw":
            return cynn.AdamW(module, lr=self.lr, weight_decay=self.weight_decay)
        if name == "sgd":
            return cynn.SGD(module, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return self.optimizer(module, lr=self.lr)

    def _initialize(self, n_features, n_outputs):
        seed = derive_seed(self.random_state)
        self._rng_ = np.random.default_rng(seed)
        self.module_ = self._build_module(n_features, n_outputs, seed)
        self.optimizer_ = self._build_optimizer(self.module_)
        self.criterion_ = copy.deepcopy(self.criterion) if self.criterion is not None else self._default_criterion()
        self.history_ = cynn.trainers.History()

    def _trainer(self, extra_callbacks=()):
        callbacks = [copy.deepcopy(cb) for cb in (self.callbacks or [])] + list(extra_callbacks)
        if self.clip_grad_norm is not None:
            callbacks.append(GradientClipping(self.clip_grad_norm))
        # The augmentation is the Trainer's: applied to the training batches of fit
        # only, never to the early-stopping split, nor in predict or score (so never
        # to a held-out fold of cross_val_score or GridSearchCV).
        trainer = Trainer(self.module_, self.criterion_, self.optimizer_, callbacks=callbacks,
                          batch_size=self.batch_size, shuffle=True, random_state=self._rng_,
                          verbose=self.verbose, augment=self.augment)
        trainer.history = self.history_
        return trainer

    def _split(self, X, y, w, stratify):
        arrays = (X, y) if w is None else (X, y, w)
        if not (self.early_stopping and self.validation_fraction):
            return arrays, None
        strat = y if stratify else None
        try:
            parts = train_test_split(*arrays, test_size=self.validation_fraction, stratify=strat,
                                     random_state=int(self._rng_.integers(2**31 - 1)))
        except ValueError:
            # Too few samples of a class to stratify: split without it.
            parts = train_test_split(*arrays, test_size=self.validation_fraction,
                                     random_state=int(self._rng_.integers(2**31 - 1)))
        # The validation loss that early stopping watches is unweighted.
        return tuple(parts[0::2]), (parts[1], parts[3])

    def _weights(self, X, y, sample_weight):
        """Per-sample weights from ``sample_weight`` and (classifiers) ``class_weight``,
        or None when both are None (the unweighted loop, bit for bit)."""
        class_weight = getattr(self, "class_weight", None)
        if sample_weight is None and class_weight is None:
            return None
        w = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        if class_weight is not None:
            w = w * compute_sample_weight(class_weight, y)
        if not w.any():
            raise ValueError("sample_weight (times class_weight) is 0 for every sample")
        return w

    def _fit_epochs(self, X, y, epochs, stratify, w=None, task="fit", reported=None):
        """Train ``epochs`` epochs on the prepared (X, y, w).

        ``reported`` is ``(X, y, sample_weight)`` as the caller of ``task`` ("fit" or
        "partial_fit") gave them, after validation: what scikit-learn's callbacks see
        (ScoringMonitor scores ``predict`` on them, so the rows and the labels).
        """
        context = None
        extra = []
        if _CallbackSupportMixin is not None:
            # The root task: this call, with one sub-task per epoch it may run.
            X_cb, y_cb, sw_cb = reported if reported is not None else (None, None, None)
            metadata = None if sw_cb is None else {"sample_weight": sw_cb}
            context = self._init_callback_context(task_name=task, max_subtasks=epochs)
            context.call_on_fit_task_begin(estimator=self, X=X_cb, y=y_cb, metadata=metadata)
        train, val = self._split(X, y, w, stratify)
        if val is not None:
            extra.append(EarlyStopping("val_loss", patience=self.patience))
        if context is not None:
            extra.append(_SklearnCallbackBridge(self, context, X_cb, y_cb, metadata))
        trainer = self._trainer(extra)
        trainer.fit(train, val, epochs=epochs)
        self.n_iter_ = len(self.history_)
        self.loss_curve_ = self.history_["train_loss"]
        self.validation_scores_ = self._validation_scores(val)
        if context is not None:
            # With EarlyStopping the network now holds the best epoch's weights: the
            # root task's fitted_estimator is this estimator as fit leaves it.
            context.call_on_fit_task_end(estimator=self, X=X_cb, y=y_cb, metadata=metadata,
                                         reconstruction_attributes={})
        return self

    def _validation_scores(self, val):
        if val is None:
            return None
        return self.history_["val_accuracy"] if self._is_classifier() else [-v for v in self.history_["val_loss"]]

    def _forward(self, X):
        check_is_fitted(self, "module_")
        X = self._prepare_X(X, reset=False)
        trainer = Trainer(self.module_, self.criterion_, self.optimizer_, batch_size=max(self.batch_size, 256),
                          verbose=0)
        return trainer.predict(X)

    def save(self, path):
        """Write the fitted network to ``path`` as a self-describing cynn model file
        (`cynn.save`): ``cynn.load(path)`` rebuilds the module in any process, and
        ``cynn predict``/``cynn summary``/``cynn evaluate`` read it.

        The file records the input shape the module sees (``image_shape``, or
        ``(n_features_in_,)``) and, for a classifier, ``classes_`` in its metadata
        (``cynn.model_info(path)["metadata"]["classes"]``, when the labels are
        booleans, integers or strings; ``"class_names"`` always).  Only the network is saved; pickle
        or joblib the estimator to keep its hyperparameters and optimizer too.
        """
        check_is_fitted(self, "module_")
        shape = tuple(self.image_shape) if self.image_shape is not None else (self.n_features_in_,)
        metadata = {"estimator": type(self).__name__}
        if self._is_classifier():
            metadata["class_names"] = [str(c) for c in self.classes_]
            kind = self.classes_.dtype.kind
            if kind == "b":
                metadata["classes"] = [bool(c) for c in self.classes_]
            elif kind in "iu":
                metadata["classes"] = [int(c) for c in self.classes_]
            elif kind == "U" or all(isinstance(c, str) for c in self.classes_):
                metadata["classes"] = [str(c) for c in self.classes_]
        cynn.save(self.module_, path, input_shape=shape, metadata=metadata, training=False)
        return path

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


class NeuralNetClassifier(ClassifierMixin, _NeuralNet):
    """A cynn network as a scikit-learn classifier.

    Parameters
    ----------
    module : None, str, Module or callable, default None
        ``None`` builds a small CNN when ``image_shape`` is given and an MLP
        (one hidden layer of 100) otherwise; a string names a model of
        `cynn.models.build`: 'small_cnn', 'mlp', 'resnet20' (any 'resnetN' with
        N = 6n + 2: 'resnet8', 'resnet14', ...), which the image models need
        ``image_shape`` for; a Module is deep-copied at fit; a callable is called as
        ``module(n_features or image_shape, n_classes)``.  The network outputs one
        logit per class.
    image_shape : (C, H, W), optional
        Reshape each row of X to an image, e.g. ``(1, 8, 8)`` for digits.
    criterion : Criterion, default CrossEntropyCriterion()
    optimizer : 'adam', 'adamw', 'sgd' or an Optimizer class, default 'adam'
    lr, momentum, weight_decay : float
        ``momentum`` is used by 'sgd' only.
    batch_size : int, default 64
    max_epochs : int, default 20
    validation_fraction : float, default 0.1
        Share of the training data held out when ``early_stopping`` is on.
    early_stopping : bool, default False
        Stop when the validation loss has not improved for ``patience`` epochs and
        keep the best weights.
    patience : int, default 5
    callbacks : list of Callback, optional
        Copied for every fit.
    random_state : None, int, RandomState or Generator
        A fixed value gives bit-identical fits.
    verbose : int, default 0
        1 shows progress bars.
    dtype : 'float32' or 'float64'
    warm_start : bool, default False
        Continue from the previous fit's weights.
    augment : callable, optional
        Applied to every training batch of `fit` and `partial_fit`, after the
        reshape to ``image_shape``, as ``augment(X_batch, rng)``: for example
        ``cynn.datasets.Compose([RandomCrop(8, padding=1), RandomHorizontalFlip()])``.
        Never applied to the early-stopping validation split, nor in `predict`,
        `predict_proba` or `score`; in `cross_val_score` and `GridSearchCV` the
        held-out fold is therefore never augmented.  The draws come from
        ``random_state``, so a fixed one still gives bit-identical fits.
    clip_grad_norm : float, optional
        Scale each batch's gradients so that their global L2 norm is at most this
        (`cynn.clip_grad_norm`, through the `GradientClipping` callback).
    class_weight : None, 'balanced' or dict, default None
        Weights of the classes in the loss, as in scikit-learn's linear models:
        'balanced' is ``n_samples / (n_classes * count(class))``; a dict maps labels
        to weights (missing labels weigh 1).  Multiplies ``sample_weight``.

    Attributes
    ----------
    classes_, n_features_in_, module_, history_, n_iter_, loss_curve_,
    validation_scores_ (validation accuracy per epoch, or None)

    Notes
    -----
    With scikit-learn 1.9 or later, ``set_callbacks`` takes scikit-learn's callbacks
    (``sklearn.callback.ProgressBar``, ``ScoringMonitor``, ...), which may also be
    set on a meta-estimator such as GridSearchCV and propagate to this one.  ``fit``
    (or ``partial_fit``) is the root task, with ``max_epochs`` (or 1) sub-tasks named
    "epoch"; at the end of each the callbacks get the data of the call and a fitted
    copy of the estimator as it is after that epoch, and a callback returning True
    stops training after it.  They see the whole of X and y, including any
    early-stopping split.  They do not change the fit: with the same
    ``random_state`` it is bit-identical with and without them.
    """

    def __init__(self, module=None, image_shape=None, criterion=None, optimizer="adam", lr=1e-3,
                 momentum=0.9, weight_decay=0.0, batch_size=64, max_epochs=20,
                 validation_fraction=0.1, early_stopping=False, patience=5, callbacks=None,
                 random_state=None, verbose=0, dtype="float32", warm_start=False, augment=None,
                 clip_grad_norm=None, class_weight=None):
        super().__init__(module=module, image_shape=image_shape, criterion=criterion,
                         optimizer=optimizer, lr=lr, momentum=momentum,
                         weight_decay=weight_decay, batch_size=batch_size,
                         max_epochs=max_epochs, validation_fraction=validation_fraction,
                         early_stopping=early_stopping, patience=patience, callbacks=callbacks,
                         random_state=random_state, verbose=verbose, dtype=dtype,
                         warm_start=warm_start, augment=augment, clip_grad_norm=clip_grad_norm)
        self.class_weight = class_weight

    def _is_classifier(self):
        return True

    def _default_criterion(self):
        return cynn.CrossEntropyCriterion()

    def _encode(self, y, classes):
        index = np.searchsorted(classes, y)
        index = np.clip(index, 0, len(classes) - 1)
        if not np.array_equal(classes[index], y):
            unknown = np.setdiff1d(y, classes)
            raise ValueError(f"y contains labels {unknown[:5].tolist()} not in classes {classes.tolist()}")
        return index.astype(np.int64)

    @_with_callbacks
    def fit(self, X, y, sample_weight=None):
        """Train from scratch (or from the last weights with ``warm_start``) for
        ``max_epochs`` epochs.

        ``sample_weight`` (one non-negative weight per row) weighs each sample's loss:
        every batch's loss is the weighted mean, so in one batch a weight of 2 counts
        as the row shown twice.  ``class_weight`` multiplies it.
        """
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        w = self._weights(X, y, sample_weight)
        classes = np.unique(y)
        if not (self.warm_start and hasattr(self, "module_") and np.array_equal(classes, self.classes_)):
            self.classes_ = classes
            self._initialize(X.shape[1], len(classes))
        return self._fit_epochs(self._reshape(X), self._encode(y, self.classes_), self.max_epochs,
                                True, w, reported=(X, y, sample_weight))

    @_with_callbacks
    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch on (X, y); ``classes`` (all labels) is required on the first call.

        ``class_weight='balanced'`` is refused here, as by scikit-learn's SGD
        estimators: one call's counts are not the data's; pass a dict (for example from
        ``sklearn.utils.class_weight.compute_class_weight`` on all labels)."""
        if isinstance(self.class_weight, str):
            raise ValueError("class_weight='balanced' is not supported by partial_fit: one "
                             "call's class counts are not the data's; pass a dict of weights, "
                             "e.g. from sklearn.utils.class_weight.compute_class_weight")
        first = not hasattr(self, "module_")
        if first:
            self._validate_params()
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], reset=first)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if first:
            self.classes_ = np.unique(np.asarray(classes))
            self._initialize(X.shape[1], len(self.classes_))
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes {np.unique(classes).tolist()} differ from the first call's "
                             f"{self.classes_.tolist()}")
        w = self._weights(X, y, sample_weight)
        return self._fit_epochs(self._reshape(X), self._encode(y, self.classes_), 1, True, w,
                                task="partial_fit", reported=(X, y, sample_weight))

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's outputs), columns in ``classes_`` order."""
        logits = self._forward(X).astype(np.float64)
        if logits.shape[1] == 1:
            return np.ones_like(logits)
        return softmax(logits)

    def predict(self, X):
        check_is_fitted(self, "module_")
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class NeuralNetRegressor(RegressorMixin, _NeuralNet):
    """A cynn network as a scikit-learn regressor (mean squared error by default).

    Same parameters as `NeuralNetClassifier`; the network has one output per target.
    ``validation_scores_`` holds minus the validation loss per epoch.
    """

    def _is_classifier(self):
        return False

    def _default_criterion(self):
        return cynn.MSECriterion()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _targets(self, y):
        y = np.asarray(y, dtype=np.dtype(self.dtype))
        return y.reshape(-1, 1) if y.ndim == 1 else y

    @_with_callbacks
    def fit(self, X, y, sample_weight=None):
        """Train from scratch (or from the last weights with ``warm_start``) for
        ``max_epochs`` epochs; ``sample_weight`` weighs each row's loss (see
        `NeuralNetClassifier.fit`)."""
        self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], multi_output=True,
                             y_numeric=True)
        w = self._weights(X, y, sample_weight)
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if not (self.warm_start and hasattr(self, "module_") and self.n_outputs_ == n_outputs):
            self.n_outputs_ = n_outputs
            self._y_ndim_ = y.ndim
            self._initialize(X.shape[1], n_outputs)
        return self._fit_epochs(self._reshape(X), self._targets(y), self.max_epochs, False, w,
                                reported=(X, y, sample_weight))

    @_with_callbacks
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on (X, y), with optional ``sample_weight``."""
        first = not hasattr(self, "module_")
        if first:
            self._validate_params()
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], multi_output=True,
                             y_numeric=True, reset=first)
        if first:
            self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
            self._y_ndim_ = y.ndim
            self._initialize(X.shape[1], self.n_outputs_)
        w = self._weights(X, y, sample_weight)
        return self._fit_epochs(self._reshape(X), self._targets(y), 1, False, w,
                                task="partial_fit", reported=(X, y, sample_weight))

    def predict(self, X):
        out = self._forward(X).astype(np.float64)
        return out.ravel() if self._y_ndim_ == 1 else out
