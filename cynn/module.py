"""The Module contract (from the course seed) and the Sequential container.

``forward``/``backward`` are fixed here; a layer fills in three hooks:

- ``_compute_output(input)`` returns the output;
- ``_compute_input_grad(input, output_grad)`` returns the gradient w.r.t. the input;
- ``_update_parameters_grad(input, output_grad)`` ADDS the parameter gradients into
  arrays allocated once in ``__init__``; only ``zero_grad()`` clears them.

A layer with parameters lists the attribute names of its parameters and of their
gradients (same order: weight first, then bias) in ``_parameter_names`` and
``_grad_names``; state that is not learned but must be saved (BatchNormalization's
moving statistics) goes in ``_buffer_names``.  The base class derives
``get_parameters``, ``zero_grad``, ``astype`` and ``state_dict`` from those names.
"""
import threading

import numpy as np

from . import _plan
from ._threads import thread_flag
from ._validation import check_dtype

_thread_state = threading.local()


def inference_mode():
    """Run every module as in evaluation mode, in this thread only, and keep nothing
    for a backward pass.

    Unlike ``model.evaluate()``, this changes no attribute of any model, so any
    number of threads may run inference on one model at once (each with its own
    workspaces) while another thread's model stays in training mode.  ``backward``
    inside the block raises RuntimeError.  `Trainer.predict`, `Trainer.evaluate` and
    the estimators' predict family run their forward passes in it.  The same idea as
    PyTorch's ``torch.inference_mode()``.
    """
    return thread_flag(_thread_state, "inference")


def is_inference():
    """True inside `inference_mode` in the calling thread."""
    return getattr(_thread_state, "inference", False)


def _busy_error(owner, what, other):
    name = repr(owner).split("\n", 1)[0]
    return RuntimeError(
        f"{name}: {what} in thread {threading.get_ident()} while thread {other} is training "
        "with it; training one model from two threads at once is not supported (give "
        "each thread its own copy, e.g. copy.deepcopy(model)); inference from many threads "
        "is, in evaluation mode or inside cynn.inference_mode()"
    )


# A training step's forward, backward and optimizer step belong to one thread at a
# time.  The marker is set with dict.setdefault, atomic under the GIL, so two threads
# cannot both believe they hold it; the same thread may re-enter (a module used twice).
def claim(owner, what):
    """Mark ``owner`` as used by this thread for ``what``; RuntimeError if another
    thread holds it.  Returns the token to pass to `release`."""
    token = (threading.get_ident(), object())
    holder = owner.__dict__.setdefault("_busy", token)
    if holder is not token and holder[0] != token[0]:
        raise _busy_error(owner, what, holder[0])
    return token


def release(owner, token):
    if owner.__dict__.get("_busy") is token:
        del owner.__dict__["_busy"]


def check_same_input(owner, saved, input):
    """Refuse a container's backward whose ``input`` is not the object its last forward
    got (``saved``; None when it kept nothing).

    Replaying forward would move BatchNormalization's moving statistics again and draw
    new Dropout masks: the gradient would belong to another loss than the one
    computed.  Refuse, and touch nothing.
    """
    if saved is None or saved is not input:
        raise ValueError(
            f"{owner}.backward must get the same input object that the forward call right "
            "before it got (call forward(x) then backward(x, grad))"
        )


def indented(module):
    """``repr(module)`` for a line inside a container's repr: continuation lines
    indented by two spaces."""
    return repr(module).replace("\n", "\n  ")


class Module:
    """A differentiable black box: ``output = forward(input)``,
    ``input_grad = backward(input, output_grad)``.

    ``backward`` must be called with the same ``input`` that was given to the
    ``forward`` call right before it: layers may use what forward kept.
    """

    _parameter_names = ()
    _grad_names = ()
    _buffer_names = ()
    _training = True
    # Per-call scratch state; dropped from copies and pickles (a pickled model should
    # not carry its last batch around).
    _transient_attrs = ("_output", "_input_grad", "_grad_cache", "_inputs", "_saved",
                        "_widths", "_busy", "_forward_thread", "_steps")

    def __init__(self):
        self._output = None
        self._input_grad = None
        self.training = True

    @property
    def training(self):
        """True in training mode, unless this thread is inside `inference_mode`."""
        return self._training and not getattr(_thread_state, "inference", False)

    @training.setter
    def training(self, value):
        self._training = bool(value)

    # -- the fixed sequence -------------------------------------------------
    def forward(self, input):
        """Compute the output for ``input`` and keep it in ``self._output``.

        In evaluation mode this is safe from any number of threads at once; in
        training mode a second thread gets RuntimeError instead of mixed state.
        """
        if not self.training:
            output = self._compute_output(input)
            if not is_inference():
                self._output = output
            return output
        token = claim(self, "forward")
        try:
            output = self._compute_output(input)
            self._output = output
            self._forward_thread = threading.get_ident()
        finally:
            release(self, token)
        return output

    def backward(self, input, output_grad):
        """Backpropagate ``output_grad``: return the input gradient and accumulate
        the parameter gradients."""
        if is_inference():
            raise RuntimeError(f"{type(self).__name__}.backward called inside "
                               "cynn.inference_mode(), which keeps nothing for backward")
        token = claim(self, "backward")
        try:
            forward_thread = self.__dict__.get("_forward_thread")
            if self._training and forward_thread not in (None, token[0]):
                raise _busy_error(self, "backward", forward_thread)
            input_grad = self._compute_input_grad(input, output_grad)
            self._update_parameters_grad(input, output_grad)
            self._input_grad = input_grad
        finally:
            release(self, token)
        return input_grad

    def __call__(self, input):
        return self.forward(input)

    def __getstate__(self):
        state = self.__dict__.copy()
        for key in self._transient_attrs:
            if key in state:
                state[key] = None
        state.pop("_busy", None)
        return state

    def __setstate__(self, state):
        if "training" in state:  # pickled before `training` became a property
            state["_training"] = state.pop("training")
        self.__dict__.update(state)

    # -- hooks ----------------------------------------------------------------
    def _compute_output(self, input):
        raise NotImplementedError(f"{type(self).__name__} does not implement _compute_output")

    def _compute_input_grad(self, input, output_grad):
        raise NotImplementedError(
            f"{type(self).__name__} does not implement _compute_input_grad"
        )

    def _update_parameters_grad(self, input, output_grad):
        """Accumulate parameter gradients; modules without parameters keep this no-op."""

    # -- parameters -----------------------------------------------------------
    def children(self):
        """Direct sub-modules (containers override this)."""
        return []

    def get_parameters(self):
        """The live parameter arrays (an optimizer updates them in place): this
        module's own, then its children's, in order."""
        own = [getattr(self, name) for name in self._parameter_names]
        return own + [p for child in self.children() for p in child.get_parameters()]

    def get_parameters_grad(self):
        """The live gradient arrays, in the order of `get_parameters`."""
        own = [getattr(self, name) for name in self._grad_names]
        return own + [g for child in self.children() for g in child.get_parameters_grad()]

    def zero_grad(self):
        """Set every parameter gradient to zero, in place."""
        for grad in self.get_parameters_grad():
            grad.fill(0)

    def train(self):
        """Training mode (Dropout samples masks, BatchNormalization uses batch statistics)."""
        self.training = True
        for child in self.children():
            child.train()
        return self

    def evaluate(self):
        """Switch to evaluation mode (Dropout is the identity, BatchNormalization uses
        moving statistics); returns self.

        This only sets a mode: it computes nothing.  `cynn.trainers.Trainer.evaluate`
        is the one that scores a model on data.
        """
        self.training = False
        for child in self.children():
            child.evaluate()
        return self

    # The PyTorch spelling, for users who come from there.
    eval = evaluate

    def astype(self, dtype):
        """Convert parameters, gradients and buffers to ``dtype`` (float32 or float64).

        This allocates new arrays: build optimizers after calling it.
        """
        dt = check_dtype(dtype, type(self).__name__)
        for name in (*self._parameter_names, *self._grad_names, *self._buffer_names):
            value = getattr(self, name)
            if isinstance(value, np.ndarray):
                setattr(self, name, value.astype(dt))
        if hasattr(self, "dtype"):
            self.dtype = dt
        for child in self.children():
            child.astype(dt)
        self._on_astype(dt)
        return self

    def _on_astype(self, dtype):
        """Hook for layers that hold dtype-dependent workspaces."""

    # -- state ----------------------------------------------------------------
    def _named_state(self):
        """(name, array) pairs of this module's own parameters and buffers."""
        names = (*self._parameter_names, *self._buffer_names)
        return [(name, getattr(self, name)) for name in names]

    def state_dict(self):
        """Copies of parameters and buffers, keyed ``"name"`` (``"i.name"`` in containers)."""
        state = {}
        for name, value in self._named_state():
            if value is not None:
                state[name] = np.array(value, copy=True)
        for i, child in enumerate(self.children()):
            for key, value in child.state_dict().items():
                state[f"{i}.{key}"] = value
        return state

    def load_state_dict(self, state):
        """Copy arrays from ``state`` into this module's live arrays, in place.

        Raises ValueError naming the keys that are missing or unexpected and any
        array whose shape does not match.
        """
        required, optional = self._expected_keys()
        given = set(state)
        missing = sorted(set(required) - given)
        unexpected = sorted(given - set(required) - set(optional))
        if missing or unexpected:
            raise ValueError(
                f"state does not match {type(self).__name__}: missing keys {missing}, "
                f"unexpected keys {unexpected}"
            )
        self._load_checked(state, "")
        return self

    def _expected_keys(self):
        """Keys this module must find in a state, and keys it may find (buffers that
        are allocated on first use, such as an untrained BatchNormalization's)."""
        required = [name for name, value in self._named_state() if value is not None]
        optional = list(self._lazy_buffer_names())
        for i, child in enumerate(self.children()):
            child_required, child_optional = child._expected_keys()
            required += [f"{i}.{key}" for key in child_required]
            optional += [f"{i}.{key}" for key in child_optional]
        return required, optional

    def _lazy_buffer_names(self):
        """Buffers that are allocated on first use (none by default)."""
        return []

    def _load_checked(self, state, prefix):
        for name, live in self._named_state():
            if prefix + name not in state:
                continue  # an optional (lazy) buffer the state does not have
            value = np.asarray(state[prefix + name])
            if live is None:
                self._load_lazy(name, value)
                continue
            if value.shape != live.shape:
                raise ValueError(
                    f"shape mismatch for {prefix + name!r} in {type(self).__name__}: "
                    f"model has {live.shape}, state has {value.shape}"
                )
            if value.dtype.kind not in "biuf":
                raise TypeError(f"{prefix + name!r} has non-numeric dtype {value.dtype}")
            np.copyto(live, value, casting="unsafe")
        for i, child in enumerate(self.children()):
            child._load_checked(state, f"{prefix}{i}.")

    def _load_lazy(self, name, value):
        raise AssertionError(f"{type(self).__name__}.{name} is not allocated")

    def __repr__(self):
        return f"{type(self).__name__}()"

    def summary(self, input_shape=None):
        """Table of this model's modules: output shape, parameters and
        multiply-accumulates per sample, with the totals; see `cynn.summary.summary`.

        Parameters
        ----------
        input_shape : tuple of int, optional
            One sample's shape, without the batch axis; default ``self.input_shape``.

        Returns
        -------
        cynn.summary.Summary
            ``print(model.summary((3, 32, 32)))`` prints the table.
        """
        from .summary import summary  # not at the top: `import cynn` stays light

        return summary(self, input_shape)

    # -- architecture (what cynn.save writes beside the weights) ----------------
    # Containers whose constructor takes their children (Sequential(*modules),
    # Residual(body, shortcut), Concat(*branches)) set this: they are rebuilt as
    # ``cls(*children, **config)``.  Other modules build their children themselves.
    _children_are_arguments = False

    def get_config(self):
        """The constructor arguments that rebuild this module, weights aside, as a
        dict of JSON values (numbers, strings, booleans, None, lists, dicts).

        The default reads, for every named parameter of ``__init__``, the attribute
        of the same name (as scikit-learn's ``get_params``); a layer that keeps an
        argument under another name overrides this.  Children are not part of it:
        `cynn.save` describes them itself.
        """
        import inspect

        cls = type(self)
        config = {}
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL,
                                                     parameter.VAR_KEYWORD):
                continue
            if name not in self.__dict__:
                raise TypeError(
                    f"{cls.__name__}.__init__ takes {name!r} but the module has no attribute "
                    f"{name!r}: store the argument as self.{name}, or override "
                    f"{cls.__name__}.get_config() to return the arguments that rebuild it"
                )
            config[name] = self.__dict__[name]
        return config

    @classmethod
    def from_config(cls, config, children=()):
        """Build a module from `get_config`'s dict (and, for containers whose
        constructor takes them, the rebuilt children).  Weights are loaded after."""
        if cls._children_are_arguments:
            return cls(*children, **config)
        return cls(**config)


class Sequential(Module):
    """Modules applied one after another.

    ``backward`` feeds every child the input that child saw in the last ``forward``.

    Parameters
    ----------
    *modules : Module
        The children, in order.
    """

    _children_are_arguments = True

    def __init__(self, *modules):
        super().__init__()
        self.modules = []
        for module in modules:
            self.add(module)

    def add(self, module):
        """Append a module; returns self so calls can be chained."""
        if not isinstance(module, Module):
            raise TypeError(
                f"Sequential expects Module instances, got {type(module).__name__}"
            )
        self.modules.append(module)
        return self

    def children(self):
        return list(self.modules)

    def _compute_output(self, input):
        if not self.modules:
            raise ValueError("Sequential has no modules")
        if is_inference() and _plan.inference_plans_enabled():
            # Nothing is kept for backward: run the fused steps (cynn._plan).
            return _plan.run(self.modules, input)
        if self.training and _plan.training_fusion_enabled():
            # Batch norm, scaling and ReLU runs in fused steps (cynn._plan.NormStep).
            out, steps, inputs = _plan.train_forward(self.modules, input)
            self._steps, self._inputs = steps, inputs
            return out
        inputs = [input]
        out = input
        for module in self.modules:
            out = module.forward(out)
            inputs.append(out)
        if not is_inference():
            self._steps, self._inputs = list(self.modules), inputs
        return out

    def _compute_input_grad(self, input, output_grad):
        inputs = getattr(self, "_inputs", None)
        check_same_input("Sequential", None if inputs is None else inputs[0], input)
        grad = output_grad
        for i in range(len(self._steps) - 1, -1, -1):
            grad = self._steps[i].backward(self._inputs[i], grad)
        return grad

    def __len__(self):
        return len(self.modules)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*self.modules[index])
        return self.modules[index]

    def __iter__(self):
        return iter(self.modules)

    def __repr__(self):
        if not self.modules:
            return "Sequential()"
        lines = [f"  ({i}): {indented(module)}" for i, module in enumerate(self.modules)]
        return "Sequential(\n" + "\n".join(lines) + "\n)"
