"""`summary`: one row per module with its output shape, parameters, multiply-accumulates
and output memory, and the model's totals, as Keras' ``model.summary()`` or torchinfo.

The shapes come from one traced forward pass on a batch of one zero sample; the counts
are exact.  `Module.summary` calls `summary`.
"""
import copy
import operator
import threading
from dataclasses import dataclass, field

import numpy as np

from .layers import Conv2d, Linear
from . import _plan
from .module import Module, inference_mode

__all__ = ["Summary", "SummaryRow", "summary"]

_WIDTH = 100  # the table fits this many columns unless a shape alone is wider
# Tracing in place (when a model cannot be copied) installs wrappers on the model's
# modules; one such trace at a time, so that two never stack and restore out of order.
_IN_PLACE = threading.RLock()


@dataclass(frozen=True)
class SummaryRow:
    """One module of the table, at one place in the model.

    Attributes
    ----------
    name : str
        Its place in its parent: the position (``"3"``) or the attribute that holds it
        (``"body"``, ``"shortcut"``); ``""`` for the model itself.
    path : str
        From the model down, e.g. ``"Sequential[5].body[0]"``.
    depth : int
        0 for the model, 1 for its children, ...
    description : str
        Short form of the module, e.g. ``"Conv2d(3 -> 16, 3x3, s1)"``.
    is_container : bool
        True when it has children; then ``params``, ``macs`` are subtotals of its subtree.
    output_shape : tuple of int or None
        One sample's output shape (no batch axis); None if the trace never called it.
    params : int
        Parameter values (a container: of its subtree, each array once).
    macs : int
        Multiply-accumulates per sample (a container: of its subtree).
    output_bytes : int
        Bytes of its output for one sample (0 if never called).
    owns_output : bool
        False when its output is, or is a view of, an array that an earlier module (or
        the input) made: the identity, Flatten, or a container handing on its last
        child's output.  Only outputs that own their memory count in
        `Summary.activation_bytes`.
    calls : int
        Calls in the traced forward pass (more than 1 for a module applied twice).
    module : Module
        The module itself.
    """

    name: str
    path: str
    depth: int
    description: str
    is_container: bool
    output_shape: tuple | None
    params: int
    macs: int
    output_bytes: int
    owns_output: bool
    calls: int
    module: Module = field(repr=False, compare=False)


@dataclass(frozen=True, repr=False)
class Summary:
    """What `summary` returns; ``str()`` and ``repr()`` render the table.

    Attributes
    ----------
    rows : list of SummaryRow
        The model first, then every module below it, depth first in `children` order.
    input_shape : tuple of int
        One sample's shape.
    output_shape : tuple of int or None
        One sample's output shape.
    dtype : numpy.dtype
        The model's (its first parameter's); the traced zero batch has it.
    total_params, trainable_params : int
        Parameter values, each array once (all of cynn's parameters are trainable).
    param_bytes : int
        Memory of the parameters.
    buffer_values, buffer_bytes : int
        Non-trainable state kept beside them: BatchNormalization's moving statistics.
    total_macs : int
        Multiply-accumulates per sample (see `summary`).
    activation_bytes : int
        Memory of the modules' outputs for one sample, each array once.
    input_bytes : int
        Memory of one input sample.
    """

    rows: list
    input_shape: tuple
    output_shape: tuple | None
    dtype: np.dtype
    total_params: int
    trainable_params: int
    param_bytes: int
    buffer_values: int
    buffer_bytes: int
    total_macs: int
    activation_bytes: int
    input_bytes: int

    def __str__(self):
        return _render(self)

    __repr__ = __str__


def summary(model, input_shape=None):
    """Table of ``model``'s modules: output shape, parameters, multiply-accumulates
    (MACs) and output memory per sample, with the totals.

    The shapes come from one forward pass on a batch of one zero sample inside
    `cynn.inference_mode`, traced on a copy of the model that shares its arrays
    (models that cannot be copied are traced in place, seen only by the calling
    thread).  The model's parameters, buffers, mode and saved outputs stay as they
    were, and other threads may run inference on it meanwhile.

    MACs count the multiplications by weights, as Keras' and torchinfo's "mult-adds":
    ``C_out * H_out * W_out * (C_in / groups) * kh * kw`` per sample for `Conv2d`,
    ``n_in * n_out`` for `Linear`.  Bias adds and element-wise layers (batch
    normalization, scaling, activations, pooling, dropout, the sum of `Residual`)
    count 0, and so do layers of other classes.

    Parameters
    ----------
    model : Module
    input_shape : tuple of int, optional
        One sample's shape, without the batch axis: ``(C, H, W)`` or ``(n_features,)``.
        Default: ``model.input_shape``, which models loaded by `cynn.load` carry.

    Returns
    -------
    Summary
        ``print(summary(model, (3, 32, 32)))`` prints the table.

    Raises
    ------
    ValueError
        No input shape, or one with a non-positive size.
    TypeError
        ``model`` is not a Module, or ``input_shape`` is not integers.
    Exception
        An error in the traced forward pass is raised again, of its type, naming the
        failing module's path and the shape it got.
    """
    if not isinstance(model, Module):
        raise TypeError(f"summary expects a Module, got {type(model).__name__}")
    shape = _check_shape(model, input_shape)
    places = _walk(model)
    dtype = _model_dtype(places)
    x = np.zeros((1, *shape), dtype=dtype)
    traced = _private_copy(model, places)
    if traced is None:
        with _IN_PLACE:
            calls, outputs = _trace(model, places, x, shape)
        traced_places = places
    else:
        traced_places = _walk(traced)
        calls, outputs = _trace(traced, traced_places, x, shape)
    owned = _owned(x, outputs)
    rows = _rows(places, traced_places, calls, owned)
    params, buffers = _arrays(traced_places)
    root = rows[0]
    return Summary(
        rows=rows, input_shape=shape, output_shape=root.output_shape, dtype=np.dtype(dtype),
        total_params=sum(a.size for a in params), trainable_params=sum(a.size for a in params),
        param_bytes=sum(a.nbytes for a in params),
        buffer_values=sum(a.size for a in buffers), buffer_bytes=sum(a.nbytes for a in buffers),
        total_macs=root.macs, activation_bytes=sum(a.nbytes for a in owned if a is not None),
        input_bytes=x.nbytes)


# -- arguments ------------------------------------------------------------------
def _check_shape(model, input_shape):
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
        if input_shape is None:
            raise ValueError(
                f"summary: {type(model).__name__} does not record its input shape; pass "
                "input_shape, one sample's shape without the batch axis, e.g. (3, 32, 32) "
                "or (64,)")
    if isinstance(input_shape, (int, np.integer)) and not isinstance(input_shape, bool):
        input_shape = (input_shape,)
    try:
        if isinstance(input_shape, (str, bytes)) or any(isinstance(d, bool) for d in input_shape):
            raise TypeError
        shape = tuple(operator.index(d) for d in input_shape)
    except TypeError:
        raise TypeError(f"summary: input_shape must be a tuple of positive ints (one sample, "
                        f"no batch axis), got {input_shape!r}") from None
    if not shape or min(shape) <= 0:
        raise ValueError(f"summary: input_shape must be a tuple of positive ints (one sample, "
                         f"no batch axis), got {input_shape!r}")
    return shape


# -- the tree ---------------------------------------------------------------------
def _walk(model):
    """(module, name, path, depth) for every place in the tree, depth first."""
    places = []

    def visit(module, name, path, depth, ancestors):
        if id(module) in ancestors:
            raise ValueError(f"summary: {path} contains itself")
        places.append((module, name, path, depth))
        for i, child in enumerate(module.children()):
            label = _attribute_name(module, child)
            visit(child, label or str(i), f"{path}.{label}" if label else f"{path}[{i}]",
                  depth + 1, ancestors | {id(module)})

    visit(model, "", type(model).__name__, 0, frozenset())
    return places


def _attribute_name(parent, child):
    """The attribute of ``parent`` that holds ``child`` itself (Residual's ``body``), or
    None (a child kept in a list, as Sequential's, goes by its position)."""
    for key, value in list(vars(parent).items()):
        if value is child:
            return key
    return None


def _model_dtype(places):
    for module, *_ in places:
        for name in (*module._parameter_names, *module._buffer_names):
            value = getattr(module, name, None)
            if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                return value.dtype
    for module, *_ in places:
        if isinstance(getattr(module, "dtype", None), np.dtype):
            return module.dtype
    return np.dtype(np.float32)


def _arrays(places):
    """The distinct parameter arrays and buffer arrays of the tree."""
    params, buffers, seen = [], [], set()
    for module, *_ in places:
        for names, into in ((module._parameter_names, params), (module._buffer_names, buffers)):
            for name in names:
                value = getattr(module, name, None)
                if isinstance(value, np.ndarray) and id(value) not in seen:
                    seen.add(id(value))
                    into.append(value)
    return params, buffers


def _private_copy(model, places):
    """A deep copy of ``model`` that shares its parameter, gradient and buffer arrays
    (inference only reads them), or None when the model cannot be copied."""
    memo = {}
    for module, *_ in places:
        for name in (*module._parameter_names, *module._grad_names, *module._buffer_names):
            value = getattr(module, name, None)
            if isinstance(value, np.ndarray):
                memo[id(value)] = value
    try:
        return copy.deepcopy(model, memo)
    except Exception:  # noqa: BLE001 - a module holding a lock, a file...: trace in place
        return None


# -- the trace --------------------------------------------------------------------
def _trace(model, places, x, shape):
    """Run ``model`` on ``x`` with every module's ``forward`` wrapped by a recorder
    that sees only this thread's calls.  Returns ({id(module): [(k, output), ...]},
    [output, ...] in the order the calls returned, k indexing it)."""
    thread = threading.get_ident()
    calls, outputs, failure = {}, [], []
    installed = []

    def install(module, path):
        original = module.forward  # the class's, or an instance attribute already there
        had_own = "forward" in vars(module)
        record = calls.setdefault(id(module), [])

        def forward(input):
            if threading.get_ident() != thread:
                return original(input)
            try:
                output = original(input)
            except Exception as exc:
                if failure:  # located already, by the module that failed
                    raise
                failure.append(_located(exc, module, path, input, shape))
                if failure[0] is exc:
                    raise
                raise failure[0] from exc
            record.append((len(outputs), output))
            outputs.append(output)
            return output

        installed.append((module, had_own, original))
        module.forward = forward

    try:
        for module, _, path, _ in places:
            if id(module) not in calls:
                install(module, path)
        # layer by layer: a fused plan would skip the forward calls traced here
        with inference_mode(), _plan.layer_by_layer():
            model.forward(x)
    finally:
        for module, had_own, original in reversed(installed):
            if had_own:
                module.forward = original
            else:
                del module.forward
    return calls, outputs


def _located(exc, module, path, input, shape):
    where = type(module).__name__ if path == type(module).__name__ else \
        f"{path} {type(module).__name__}"
    message = (f"summary(input_shape={shape}): {where} got input of shape "
               f"{np.shape(input)}: {exc}")
    try:
        located = type(exc)(message)
    except Exception:  # noqa: BLE001 - an exception class that takes other arguments
        # (NumPy's MemoryError takes a shape and a dtype): keep it, with a note.
        exc.add_note(message)
        return exc
    return located


def _owned(x, outputs):
    """For each output in call order, the array that owns its memory when no earlier
    output (nor the input) uses that memory, else None."""
    def owner(a):
        while isinstance(a.base, np.ndarray):
            a = a.base
        return a

    seen = {id(owner(x))}
    owned = []
    for out in outputs:
        base = owner(out) if isinstance(out, np.ndarray) else None
        if base is not None and id(base) in seen:
            base = None
        if base is not None:
            seen.add(id(base))
        owned.append(base)
    return owned


# -- the rows ---------------------------------------------------------------------
def _macs(module, output):
    if not isinstance(output, np.ndarray) or output.ndim == 0 or output.shape[0] == 0:
        return 0
    per_sample = output.size // output.shape[0]
    if isinstance(module, Conv2d):
        kh, kw = module.kernel_size
        return per_sample * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, Linear):
        return per_sample * module.n_in
    return 0


def _assign_calls(traced_places, calls):
    """The calls each place gets: a module at m places with n calls gives the k-th
    call to its k-th place, and any further calls to its last place."""
    positions = {}
    for i, (module, *_) in enumerate(traced_places):
        positions.setdefault(id(module), []).append(i)
    assigned = [[] for _ in traced_places]
    for key, where in positions.items():
        made = calls.get(key, [])
        for k, i in enumerate(where):
            assigned[i] = made[k:k + 1] if k < len(where) - 1 else made[k:]
    return assigned


def _rows(places, traced_places, calls, owned):
    assigned = _assign_calls(traced_places, calls)
    n = len(places)
    subtree_end = list(range(1, n + 1))  # index after the last descendant of each place
    for i in range(n):
        j = i + 1
        while j < n and places[j][3] > places[i][3]:
            j += 1
        subtree_end[i] = j
    rows = []
    for i, ((module, name, path, depth), (traced, *_)) in enumerate(zip(places, traced_places)):
        made = [out for _, out in assigned[i]]
        first = made[0] if made else None
        is_container = bool(traced.children())
        if is_container:
            params, _ = _arrays(traced_places[i:subtree_end[i]])
            macs = None  # filled below from the leaves of its subtree
        else:
            params, _ = _arrays([traced_places[i]])
            macs = sum(_macs(traced, out) for out in made)
        array = isinstance(first, np.ndarray)
        rows.append({
            "name": name, "path": path, "depth": depth,
            "description": _describe(module, len(made)), "is_container": is_container,
            "output_shape": tuple(first.shape[1:]) if array and first.ndim else None,
            "params": sum(a.size for a in params), "macs": macs,
            "output_bytes": first.nbytes if array else 0,
            "owns_output": array and owned[assigned[i][0][0]] is not None,
            "calls": len(made), "module": module})
    for i in range(n - 1, -1, -1):
        if rows[i]["macs"] is None:
            rows[i]["macs"] = sum(rows[j]["macs"] for j in range(i + 1, subtree_end[i])
                                  if not rows[j]["is_container"])
    return [SummaryRow(**row) for row in rows]


def _pair(pair, sep="x"):
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}{sep}{pair[1]}"


def _describe(module, calls):
    if isinstance(module, Conv2d):
        text = (f"Conv2d({module.in_channels} -> {module.out_channels}, "
                f"{module.kernel_size[0]}x{module.kernel_size[1]}, s{_pair(module.stride)}"
                + (f", g{module.groups}" if module.groups > 1 else "") + ")")
    elif type(module).__name__ == "BatchNormalization" and module.n_features is not None:
        text = f"BatchNormalization({module.n_features})"
    elif type(module).__name__ in ("MaxPool2d", "AvgPool2d"):
        text = f"{type(module).__name__}({_pair(module.kernel_size)}, s{_pair(module.stride)})"
    else:
        text = repr(module)
        if "\n" in text:  # a container's repr lists its children: they have rows
            text = type(module).__name__
    return text if calls <= 1 else f"{text} (x{calls})"


# -- rendering --------------------------------------------------------------------
def _int(n):
    return f"{n:,}"


def _si(n):
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _binary(n):
    for size, unit in ((2 ** 30, "GiB"), (2 ** 20, "MiB"), (2 ** 10, "KiB")):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _shape(shape):
    return "-" if shape is None else "(" + ", ".join(["N", *map(str, shape)]) + ")"


def _render(s):
    head = ("Module", "Output shape", "Params", "MACs", "Out bytes")
    cells = []
    for row in s.rows:
        sub = (lambda text: f"[{text}]") if row.is_container else (lambda text: text)
        called = row.output_shape is not None
        out = _int(row.output_bytes) if called else "-"
        cells.append((row.depth, f"{row.name}: {row.description}" if row.name else row.description,
                      _shape(row.output_shape), sub(_int(row.params)), sub(_int(row.macs)),
                      out if row.owns_output or not called else f"[{out}]"))
    widths = [max(len(head[k]), *(len(c[k + 1]) for c in cells)) for k in range(1, 5)]
    room = _WIDTH - sum(widths) - 2 * 4
    label_width = max(20, min(room, max(len(head[0]), *(2 * c[0] + len(c[1]) for c in cells))))

    def line(label, rest):
        if len(label) > label_width:
            label = label[:label_width - 3] + "..."
        return "  ".join([label.ljust(label_width), rest[0].ljust(widths[0]),
                          *(text.rjust(w) for text, w in zip(rest[1:], widths[1:]))]).rstrip()

    rule = "=" * (label_width + sum(widths) + 8)
    lines = [line(head[0], head[1:]), rule]
    lines += [line("  " * depth + label, rest) for depth, label, *rest in cells]
    lines.append(rule)
    item = s.dtype.itemsize
    lines += [
        f"Input: {_shape(s.input_shape)} {s.dtype.name}, {_int(s.input_bytes)} bytes per sample",
        f"Total parameters: {_int(s.total_params)} ({_binary(s.param_bytes)})",
        f"Trainable parameters: {_int(s.trainable_params)}",
        (f"Non-trainable buffers: {_int(s.buffer_values)} values "
         f"({_binary(s.buffer_bytes)}), such as batch-norm moving statistics"),
        f"Total MACs: {_int(s.total_macs)} per sample ({_si(s.total_macs)})",
        (f"Activation memory: {_int(s.activation_bytes)} bytes per sample "
         f"({_binary(s.activation_bytes)}; module outputs, {item}-byte values)"),
        ("[...]: a container's subtotal, or an output that shares an earlier array; "
         "totals count each once"),
    ]
    return "\n".join(lines)
