"""Export a model to ONNX, for onnxruntime and other inference engines.

`export_onnx` writes a model's evaluation-mode computation as an ONNX graph: one or a
few ONNX operators per layer, the weights as float32 initializers named after the
model's ``state_dict`` keys (``"2.0.0.W"``), and a dynamic batch axis.  A layer cynn
does not know gets exported by a ``to_onnx(self, builder, input)`` method of its own,
which adds its nodes through an `OnnxBuilder`.

The ``onnx`` package is imported only when a model is exported; ``import cynn`` never
imports it.  Install it with ``pip install "cynn-framework[onnx]"``.
"""
import numbers
import os

import numpy as np

from .containers import Concat, Identity, Residual
from .layers import (ELU, AvgPool2d, BatchNormalization, ChannelwiseScaling, Conv2d,
                     Dropout, Flatten, GlobalAvgPool2d, LeakyReLU, Linear, LogSoftMax,
                     MaxPool2d, ReLU, Sigmoid, SoftMax, SoftPlus, Tanh)
from .module import Module, Sequential, inference_mode
from .serialization import atomic_write

__all__ = ["OPSET", "OnnxBuilder", "export_onnx"]

#: The ONNX operator set the graphs use (onnx >= 1.16, onnxruntime >= 1.18 run it).
OPSET = 21
# The IR version of onnx 1.16 (newer onnx packages would stamp a newer one, which
# older runtimes refuse; nothing here needs more).
_IR_VERSION = 10

_INSTALL_HINT = ('pip install "cynn-framework[onnx]" (pip install -e ".[onnx]" from a '
                 'checkout of cynn)')


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise ImportError(f"cynn.export_onnx needs the onnx package: {_INSTALL_HINT}") from exc
    return onnx, helper, numpy_helper


def _check_input_shape(input_shape):
    """``input_shape`` as a tuple of positive ints; an int is one feature axis."""
    shape = (input_shape,) if isinstance(input_shape, numbers.Integral) else input_shape
    try:
        shape = tuple(shape)
    except TypeError:
        raise TypeError("export_onnx: input_shape must be one sample's shape, a tuple of "
                        f"ints such as (1, 28, 28) or (64,), got {input_shape!r}") from None
    if not shape or any(not isinstance(d, numbers.Integral) or isinstance(d, bool) or d < 1
                        for d in shape):
        raise ValueError("export_onnx: input_shape must be one sample's shape, a non-empty "
                         f"tuple of positive ints such as (1, 28, 28) or (64,), got "
                         f"{input_shape!r}")
    return tuple(int(d) for d in shape)


class _Frame:
    """One module being converted: its ``state_dict`` prefix, its label in location
    strings, and where it sits."""

    def __init__(self, module, key, label, where):
        self.module, self.key, self.label, self.where = module, key, label, where


class OnnxBuilder:
    """The graph under construction, as a layer's ``to_onnx(self, builder, input)``
    method sees it.

    A layer adds its nodes with `node`, its weights with `constant`, and returns the
    name of its output tensor.  Names are made unique and prefixed by the layer's
    ``state_dict`` position, so two layers never clash.

    Attributes
    ----------
    opset : int
        The ONNX operator set of the graph (`OPSET`).
    input_shape : tuple of int
        One sample's shape, as given to `export_onnx`.
    """

    def __init__(self, helper, numpy_helper, input_shape):
        self._helper, self._numpy_helper = helper, numpy_helper
        self.opset = OPSET
        self._nodes, self._initializers = [], []
        self._used = {"input", "output"}
        # Tensor name -> a one-sample example of its value (module inputs and outputs).
        self._samples = {"input": np.zeros((1,) + input_shape, np.float32)}
        self._frames = []
        self.input_shape = input_shape

    # -- for layers -----------------------------------------------------------
    def node(self, op_type, inputs, outputs=1, **attributes):
        """Add an ONNX node of the default domain and return its output name.

        Parameters
        ----------
        op_type : str
            An ONNX operator, e.g. ``"Mul"``, ``"Conv"``.
        inputs : sequence of str
            Tensor names (``""`` for an omitted optional input).
        outputs : int, default 1
            Number of outputs; with more than one, a list of names is returned.
        **attributes
            The operator's attributes (ints, floats, strings, lists of them).

        Returns
        -------
        str or list of str
        """
        name = self._unique(self._prefix("/") + op_type)
        names = [self._unique(f"{name}:{i}") for i in range(outputs)]
        self._nodes.append(self._helper.make_node(op_type, list(inputs), names, name=name,
                                                  **attributes))
        return names[0] if outputs == 1 else names

    def constant(self, array, name):
        """Add ``array`` as an initializer and return its tensor name.

        Floating arrays are stored as float32, integer ones as int64, booleans as bool.
        ``name`` is local to the layer: ``"scale"`` in the model's third layer becomes
        ``"2.scale"``.
        """
        value = np.asarray(array)
        if value.dtype.kind == "f":
            value = value.astype(np.float32)
        elif value.dtype.kind in "iu":
            value = value.astype(np.int64)
        elif value.dtype.kind != "b":
            raise TypeError(f"OnnxBuilder.constant: {name!r} must be a real or boolean array, "
                            f"got dtype {value.dtype}")
        full = self._unique(self._prefix(".") + str(name))
        self._initializers.append(self._numpy_helper.from_array(np.ascontiguousarray(value), full))
        return full

    def module(self, child, input):
        """Convert the sub-module ``child`` (one of the current module's ``children()``)
        on tensor ``input``; return its output name.

        ``input`` must be a tensor whose example value the builder knows: the current
        module's input or the output of an earlier `module` call.
        """
        if input not in self._samples:
            raise ValueError(f"OnnxBuilder.module: {input!r} is not the current module's input "
                             "nor the output of an earlier builder.module() call")
        current = self._frames[-1].module
        position = next((i for i, c in enumerate(current.children()) if c is child), None)
        if position is None:
            raise ValueError(f"OnnxBuilder.module: {child!r} is not one of the children() of "
                             f"{type(current).__name__}")
        return self._child(child, input, position, f"[{position}]")

    def shape(self, name):
        """The shape of tensor ``name``, with None for the batch axis, e.g.
        ``(None, 16, 14, 14)``.

        Known for a layer's input and for what `module` returned.
        """
        if name not in self._samples:
            raise ValueError(f"OnnxBuilder.shape: the shape of {name!r} is not known; it is "
                             "for a layer's input and the outputs of builder.module()")
        return (None,) + self._samples[name].shape[1:]

    # -- internals ----------------------------------------------------------
    def _prefix(self, sep):
        key = self._frames[-1].key if self._frames else ""
        return f"{key}{sep}" if key else ""

    def _unique(self, name):
        candidate, i = name, 1
        while candidate in self._used:
            candidate, i = f"{name}_{i}", i + 1
        self._used.add(candidate)
        return candidate

    def _where(self):
        where = self._frames[-1].where if self._frames else ""
        return where or "the model itself"

    def _child(self, child, input, position, suffix, attribute=False):
        """Convert ``child`` of the current module at ``children()`` index ``position``;
        ``suffix`` is how the parent reaches it (``"[2]"``, ``".body"``)."""
        parent = self._frames[-1]
        key = f"{parent.key}.{position}" if parent.key else str(position)
        segment = parent.label + suffix
        if attribute and isinstance(child, (Sequential, Concat)):
            # Residual.body[0] rather than Residual.body -> Sequential[0].
            label, where = segment, parent.where
        else:
            label = type(child).__name__
            where = f"{parent.where} -> {segment}" if parent.where else segment
        return self._convert(child, input, key, label, where)

    def _convert(self, module, input, key, label, where):
        if not isinstance(module, Module):
            raise TypeError(f"{where or 'the model'}: export_onnx expects cynn Modules, got "
                            f"{type(module).__name__}")
        self._frames.append(_Frame(module, key, label, where))
        try:
            convert, leaf = _converter(module)
            if convert is None:
                raise TypeError(_unsupported_message(module, self._where()))
            # A layer's example output first: a shape that does not fit is reported
            # as such, before any conversion.  Containers get theirs from their children.
            sample = self._run(module, self._samples[input]) if leaf else None
            try:
                output = convert(self, module, input)
            except Exception as exc:
                if getattr(type(module), "to_onnx", None) is not None:
                    _note(exc, f"while exporting {type(module).__name__} at {self._where()} "
                               "with its to_onnx method")
                raise
            if not isinstance(output, str) or not output:
                raise TypeError(f"{self._where()}: {type(module).__name__}.to_onnx must return "
                                f"the name of its output tensor (a str), got {output!r}")
            if leaf:
                self._samples[output] = sample
            return output
        finally:
            self._frames.pop()

    def _run(self, module, sample):
        """The module's evaluation-mode output for one example (the shapes after it)."""
        try:
            with inference_mode():
                if isinstance(module, BatchNormalization) and module.moving_mean is None:
                    # Its forward would allocate the moving statistics: do the same
                    # computation (mean 0, variance 1) without touching the layer.
                    x = module._check_input(sample)
                    return x / np.sqrt(x.dtype.type(1.0 + module.eps))
                return np.asarray(module.forward(sample))
        except ValueError as exc:
            raise self._shape_error(module, exc) from exc

    def _shape_error(self, module, exc):
        name, where = type(module).__name__, self._frames[-1].where
        place = f"at {where} ({name})" if where else f"({name}, the model itself)"
        return ValueError(
            f"export_onnx: input_shape {self.input_shape} does not fit the model {place}: "
            f"{exc} (input_shape is one sample's shape, without the batch axis)"
        )


def _note(exc, text):
    """Add a line to ``exc``'s report (Python >= 3.11; a no-op before)."""
    if hasattr(exc, "add_note"):
        exc.add_note(text)


def _unsupported_message(module, where):
    name = type(module).__name__
    base = next((cls for cls in type(module).__mro__[1:] if cls in _CONVERTERS), None)
    why = "cynn has no conversion for it"
    if base is not None:
        why = (f"it subclasses {base.__name__} but changes what it computes, so "
               f"{base.__name__}'s conversion may not hold")
    return (f"{where}: cannot export {name} to ONNX: {why}; give {name} a method "
            f"to_onnx(self, builder, input) that adds its nodes with builder.node(...) and "
            "returns its output tensor's name (see cynn.export_onnx)")


# The methods whose override makes a subclass compute something else than its base.
_COMPUTE_METHODS = ("forward", "_compute_output", "_apply")


def _converter(module):
    """``(convert(builder, module, input) -> name, is_leaf)``, or ``(None, True)``.

    A ``to_onnx`` method wins; else the conversion of the nearest built-in base class,
    as long as the module's class computes what that base computes.
    """
    cls = type(module)
    if getattr(cls, "to_onnx", None) is not None:
        return (lambda builder, m, x: m.to_onnx(builder, x)), True
    for base in cls.__mro__:
        if base in _CONVERTERS:
            if all(getattr(cls, attr, None) is getattr(base, attr, None)
                   for attr in _COMPUTE_METHODS):
                return _CONVERTERS[base], base not in _CONTAINERS
            break
    return None, True


# -- conversions of the built-in layers ---------------------------------------
def _conv2d(b, m, x):
    inputs = [x, b.constant(m.W, "W")]
    if m.b is not None:
        inputs.append(b.constant(m.b, "b"))
    (ph, pw) = m.padding
    return b.node("Conv", inputs, kernel_shape=list(m.kernel_size), strides=list(m.stride),
                  pads=[ph, pw, ph, pw], dilations=[1, 1], group=m.groups)


def _linear(b, m, x):
    inputs = [x, b.constant(m.W, "W")]
    if m.b is not None:
        inputs.append(b.constant(m.b, "b"))
    return b.node("Gemm", inputs, transB=1)


def _batchnorm(b, m, x):
    # Evaluation semantics whatever the layer's mode; an untrained layer has moving
    # statistics 0 and 1, as its own forward would allocate them.
    channels = b.shape(x)[1]
    mean = np.zeros(channels) if m.moving_mean is None else m.moving_mean
    var = np.ones(channels) if m.moving_variance is None else m.moving_variance
    # cynn's layer has no affine part (ChannelwiseScaling follows it): scale 1, shift 0.
    return b.node("BatchNormalization",
                  [x, b.constant(np.ones(channels), "unit_scale"),
                   b.constant(np.zeros(channels), "zero_shift"),
                   b.constant(mean, "moving_mean"), b.constant(var, "moving_variance")],
                  epsilon=float(m.eps))


def _scaling(b, m, x):
    # gamma and beta broadcast over the spatial axes of (N, C, H, W) input.
    shape = (m.n_out,) + (1,) * (len(b.shape(x)) - 2)
    scaled = b.node("Mul", [x, b.constant(m.gamma.reshape(shape), "gamma")])
    return b.node("Add", [scaled, b.constant(m.beta.reshape(shape), "beta")])


def _maxpool(b, m, x):
    (ph, pw) = m.padding
    return b.node("MaxPool", [x], kernel_shape=list(m.kernel_size), strides=list(m.stride),
                  pads=[ph, pw, ph, pw], ceil_mode=0)


def _avgpool(b, m, x):
    return b.node("AveragePool", [x], kernel_shape=list(m.kernel_size),
                  strides=list(m.stride), ceil_mode=0)


def _global_avgpool(b, m, x):
    return b.node("Flatten", [b.node("GlobalAveragePool", [x])], axis=1)


def _simple(op_type, **attributes):
    """A layer that is one attribute-free (or fixed-attribute) ONNX operator."""
    return lambda b, m, x: b.node(op_type, [x], **attributes)


def _passthrough(b, m, x):
    return x


def _sequential(b, m, x):
    if not m.modules:
        raise ValueError(f"{b._where()}: an empty Sequential has no output to export")
    for i, child in enumerate(m.modules):
        x = b._child(child, x, i, f"[{i}]")
    return x


def _residual(b, m, x):
    body = b._child(m.body, x, 0, ".body", attribute=True)
    skip = x if m.shortcut is None else b._child(m.shortcut, x, 1, ".shortcut", attribute=True)
    out_shape, skip_shape = b._samples[body].shape, b._samples[skip].shape
    if out_shape != skip_shape:
        raise b._shape_error(m, ValueError(
            f"Residual: the body gives shape {out_shape} but the "
            f"{'input' if m.shortcut is None else 'shortcut'} has shape {skip_shape}"))
    out = b.node("Add", [body, skip])
    b._samples[out] = b._samples[body] + b._samples[skip]
    return out


def _concat(b, m, x):
    outs = [b._child(branch, x, i, f"[{i}]") for i, branch in enumerate(m.branches)]
    samples = [b._samples[o] for o in outs]
    shapes = [s.shape for s in samples]
    if any(len(s) < 2 or s[:1] + s[2:] != shapes[0][:1] + shapes[0][2:] for s in shapes):
        raise b._shape_error(m, ValueError(
            f"Concat: branch outputs must agree on every axis but axis 1, got shapes {shapes}"))
    out = b.node("Concat", outs, axis=1)
    b._samples[out] = np.concatenate(samples, axis=1)
    return out


_CONVERTERS = {
    Conv2d: _conv2d,
    Linear: _linear,
    BatchNormalization: _batchnorm,
    ChannelwiseScaling: _scaling,
    MaxPool2d: _maxpool,
    AvgPool2d: _avgpool,
    GlobalAvgPool2d: _global_avgpool,
    ReLU: _simple("Relu"),
    LeakyReLU: lambda b, m, x: b.node("LeakyRelu", [x], alpha=float(m.slope)),
    ELU: lambda b, m, x: b.node("Elu", [x], alpha=float(m.alpha)),
    # ONNX's Softplus is log(exp(x) + 1), cynn's formula; onnxruntime evaluates it
    # without overflow.
    SoftPlus: _simple("Softplus"),
    Sigmoid: _simple("Sigmoid"),
    Tanh: _simple("Tanh"),
    # cynn normalizes each row of (N, C) over its classes, axis 1.
    SoftMax: _simple("Softmax", axis=1),
    LogSoftMax: _simple("LogSoftmax", axis=1),
    Flatten: _simple("Flatten", axis=1),
    # Dropout is the identity in evaluation mode.
    Dropout: _passthrough,
    Identity: _passthrough,
    Sequential: _sequential,
    Residual: _residual,
    Concat: _concat,
}
_CONTAINERS = (Sequential, Residual, Concat)


def export_onnx(model, path, input_shape=None):
    """Write ``model``'s evaluation-mode computation to ``path`` as an ONNX model.

    The graph has one input ``"input"`` of shape ``(N, *input_shape)`` and one output
    ``"output"``, both float32, with the batch axis ``N`` symbolic: one file serves any
    batch size.  It uses ONNX opset `OPSET` (21; onnxruntime >= 1.18).  Every
    built-in layer and container converts; BatchNormalization always uses its moving
    statistics (0 and 1 before any training) and Dropout is the identity, whatever
    mode the model is in.  Weights are stored as float32, also for a float64 model,
    under the model's ``state_dict`` keys.

    The model's forward runs once on a zero sample, inside `cynn.inference_mode`, to
    learn the shapes; nothing of the model changes (parameters, moving statistics,
    training flag).  The graph is checked with ``onnx.checker.check_model(...,
    full_check=True)`` and written atomically.

    Parameters
    ----------
    model : Module
    path : str, os.PathLike or None
        The ``.onnx`` file to write; None only builds and returns the model.
    input_shape : tuple of int, optional
        One sample's shape, without the batch axis: ``(1, 28, 28)`` for images,
        ``(64,)`` for feature vectors.  Default: the model's ``input_shape`` attribute,
        which models loaded from a file (`cynn.load`) carry.

    Returns
    -------
    onnx.ModelProto
        The model written.

    Raises
    ------
    ImportError
        When the ``onnx`` package is missing (``pip install "cynn-framework[onnx]"``).
    ValueError
        When ``input_shape`` does not fit the model; the message names the layer.
    TypeError
        When a layer has no conversion; the message names its class and where it sits.

    Notes
    -----
    A layer of your own exports through a method ``to_onnx(self, builder, input)``:
    ``input`` is the name of its input tensor, ``builder`` an `OnnxBuilder`; the method
    adds nodes with ``builder.node(op_type, inputs, **attributes)`` and weights with
    ``builder.constant(array, name)``, and returns its output tensor's name::

        class Scale(cynn.Module):
            def to_onnx(self, builder, input):
                return builder.node("Mul", [input, builder.constant(self.factor, "factor")])

    A container of your own converts its children with ``builder.module(child, name)``.
    A subclass of a built-in layer that overrides ``forward``, ``_compute_output`` or
    ``_apply`` needs its own ``to_onnx``: the base class's conversion may not hold.

    Examples
    --------
    >>> model = cynn.models.build("small_cnn", (1, 28, 28), 10)    # doctest: +SKIP
    >>> cynn.export_onnx(model, "model.onnx", (1, 28, 28))          # doctest: +SKIP
    >>> import onnxruntime                                          # doctest: +SKIP
    >>> session = onnxruntime.InferenceSession("model.onnx")        # doctest: +SKIP
    >>> logits = session.run(None, {"input": images.astype("float32")})[0]  # doctest: +SKIP
    """
    if not isinstance(model, Module):
        raise TypeError(f"export_onnx expects a cynn Module, got {type(model).__name__}")
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError("export_onnx: pass input_shape, the shape of one sample such as "
                             "(1, 28, 28); this model does not record one")
    shape = _check_input_shape(input_shape)
    onnx, helper, numpy_helper = _import_onnx()
    from . import __version__

    builder = OnnxBuilder(helper, numpy_helper, shape)
    output = builder._convert(model, "input", "", type(model).__name__, "")
    out_shape = builder._samples[output].shape
    if not any(output in node.output for node in builder._nodes):
        # The input itself (an Identity model) or a constant.
        builder._nodes.append(helper.make_node("Identity", [output], ["output"],
                                               name=builder._unique("Identity")))
    else:
        for node in builder._nodes:
            for names in (node.input, node.output):
                for i, name in enumerate(names):
                    if name == output:
                        names[i] = "output"

    float32 = onnx.TensorProto.FLOAT
    graph = helper.make_graph(
        builder._nodes, type(model).__name__,
        [helper.make_tensor_value_info("input", float32, ["N", *shape])],
        [helper.make_tensor_value_info("output", float32, ["N", *out_shape[1:]])],
        initializer=builder._initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="cynn", producer_version=__version__,
                              doc_string=repr(model))
    proto.ir_version = _IR_VERSION
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        _note(exc, "export_onnx: the graph fails the ONNX checker; the built-in conversions "
                   "pass it, so look at the to_onnx methods of the model's own layers")
        raise
    if path is not None:
        data = proto.SerializeToString()
        atomic_write(os.fspath(path), lambda f: f.write(data))
    return proto
