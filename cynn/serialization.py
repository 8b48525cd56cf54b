"""Save and load models as ``.npz`` files that describe themselves.

A model file holds the state (parameters and buffers, one array each, keyed as
``state_dict`` keys them) and one JSON member, ``__model__.json``, that describes the
architecture: for every module its registered class name, its constructor arguments
(`Module.get_config`), its mode and its children, nested as the containers nest, plus
the cynn version, the dtype and, when known, the input shape per sample.
``cynn.load(path)`` rebuilds the model from that; ``cynn.load(model, path)`` loads
the weights into a model built in code, and reads files that hold weights only.

Files are written to a temporary file in the target folder and renamed over the
target, so an interrupted save never destroys the previous file.  They are read
without pickle and never evaluated: a class is rebuilt only when its name is
registered (built-in modules are; user modules are with `register`).
"""
import json
import numbers
import os
import tempfile
import warnings
import zipfile

import numpy as np

from ._validation import _is_integer
from .module import Module

FORMAT = "cynn-model"
FORMAT_VERSION = 1
# The JSON member: a name no state_dict key can take (keys are attribute names joined
# by dots, and np.savez appends ".npy").
MODEL_MEMBER = "__model__.json"
# Nesting deeper than this in a file is refused before anything is built.
_MAX_DEPTH = 64


def new_folder(base, attempts=10000):
    """Create and return the folder ``base``, or ``base-2``, ``base-3``, ... if taken:
    ``os.mkdir`` is atomic, so two processes (a shell loop with &, the workers of a
    grid search) never get the same one.  FileExistsError after ``attempts`` names."""
    for i in range(1, attempts + 1):
        path = base if i == 1 else f"{base}-{i}"
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free folder name from {base!r} to {base}-{attempts}")


def atomic_write(path, write):
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- the registry of rebuildable classes ------------------------------------------
_registry = {}          # name -> class
_names = {}             # class -> name


def register(cls=None, *, name=None):
    """Make a Module class rebuildable by ``cynn.load(path)``: a class decorator.

    ::

        @cynn.register
        class Scale(cynn.Module):
            def __init__(self, factor=2.0):
                super().__init__()
                self.factor = factor          # get_config() finds it by name
            ...

    The class is stored in files under ``name`` (default: its ``__qualname__``); the
    module that defines it must be imported before a file naming it is loaded.  Its
    constructor arguments come from `Module.get_config` (override it when an argument
    is not kept as the attribute of the same name).  A name already taken by another
    class raises ValueError: pass ``name=`` to choose another.  Returns the class.
    """
    def decorate(cls):
        if not (isinstance(cls, type) and issubclass(cls, Module)):
            raise TypeError(f"cynn.register expects a Module subclass, got {cls!r}")
        key = cls.__qualname__ if name is None else name
        if not isinstance(key, str) or not key:
            raise ValueError(f"cynn.register: name must be a non-empty string, got {key!r}")
        _register_builtins()
        taken = _registry.get(key)
        same_definition = taken is not None and (taken.__module__, taken.__qualname__) == \
            (cls.__module__, cls.__qualname__)
        if taken is not None and taken is not cls and not same_definition:
            raise ValueError(
                f"cynn.register: the name {key!r} is already taken by "
                f"{taken.__module__}.{taken.__qualname__}; register "
                f"{cls.__module__}.{cls.__qualname__} with another one, e.g. "
                f"@cynn.register(name='{cls.__module__}.{key}')"
            )
        if same_definition:
            # A notebook cell run again, or a reloaded module: the new class replaces it.
            _names.pop(taken, None)
        _registry[key] = cls
        _names[cls] = key
        return cls

    return decorate if cls is None else decorate(cls)


def _register_builtins():
    if _registry:
        return
    from . import containers, layers
    from .module import Sequential

    builtins = [Module, Sequential, *(getattr(containers, n) for n in containers.__all__),
                *(getattr(layers, n) for n in layers.__all__)]
    for cls in builtins:
        _registry[cls.__name__] = cls
        _names[cls] = cls.__name__


def registered_classes():
    """``{name: class}`` of every class `cynn.load` can rebuild in this process."""
    _register_builtins()
    return dict(_registry)


def _class_name(cls):
    _register_builtins()
    # An unregistered class is stored under its full dotted name, which no registered
    # name can shadow; loading it then says how to register it.
    return _names.get(cls, f"{cls.__module__}.{cls.__qualname__}")


# -- describing a model -------------------------------------------------------------
class ArchitectureError(ValueError):
    """A model that cannot be described in a file, or a description that cannot be
    rebuilt."""


def _json_value(value, where):
    """``value`` as plain JSON data; tuples become lists, NumPy scalars and dtypes
    become numbers and names."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not np.isfinite(value):
            raise ArchitectureError(f"{where} is {value}, which JSON cannot hold")
        return value
    if isinstance(value, np.dtype) or (isinstance(value, type) and issubclass(value, np.generic)):
        return np.dtype(value).name
    if isinstance(value, (list, tuple)):
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise ArchitectureError(f"{where} has a key {key!r} that is not a string")
            out[key] = _json_value(v, f"{where}[{key!r}]")
        return out
    raise ArchitectureError(
        f"{where} is a {type(value).__name__} ({value!r}), not a number, string, boolean, "
        "None, list or dict"
    )


def describe(module, where="model"):
    """The architecture of ``module`` as JSON data: ``{"class", "config", "training",
    "children"}``, children nested the same way.  ArchitectureError says which module
    cannot be described and why."""
    cls = type(module)
    try:
        config = module.get_config()
        owner = next(c for c in cls.__mro__ if "get_config" in c.__dict__)
        if owner is not Module and cls.__init__ is not owner.__init__ and isinstance(config, dict):
            # A subclass with a constructor of its own (say ScaledLinear(n_in, n_out,
            # scale, **kwargs)) under an inherited get_config: its own arguments are
            # read by name as well, or it could not be rebuilt as it is.
            config = {**config, **Module.get_config(module)}
    except (TypeError, ValueError, AttributeError) as exc:
        raise ArchitectureError(f"{where} ({cls.__name__}): {exc}") from None
    if not isinstance(config, dict):
        raise ArchitectureError(f"{where} ({cls.__name__}): get_config() returned a "
                                f"{type(config).__name__}, not a dict")
    entry = {"class": _class_name(cls),
             "config": _json_value(config, f"{where} ({cls.__name__}) argument"),
             "training": bool(module._training)}
    children = module.children()
    if children:
        entry["children"] = [describe(child, f"{where}[{i}]") for i, child in enumerate(children)]
    return entry


def _model_dtype(module):
    dtypes = {p.dtype.name for p in module.get_parameters() if isinstance(p, np.ndarray)}
    return dtypes.pop() if len(dtypes) == 1 else None


def _set_mode(entry, training):
    entry["training"] = training
    for child in entry.get("children", []):
        _set_mode(child, training)


def _header(module, input_shape, metadata, training=None):
    from . import __version__

    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "cynn_version": __version__,
              "dtype": _model_dtype(module), "input_shape": None, "metadata": None,
              "architecture": None}
    if input_shape is None:
        input_shape = getattr(module, "input_shape", None)
    if input_shape is not None:
        shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
        if not shape or not all(_is_integer(d) and d > 0 for d in shape):
            raise ValueError(f"save: input_shape must be a tuple of positive ints (one "
                             f"sample, no batch axis), got {input_shape!r}")
        header["input_shape"] = [int(d) for d in shape]
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise TypeError(f"save: metadata must be a dict, got {type(metadata).__name__}")
        try:
            header["metadata"] = _json_value(metadata, "metadata")
        except ArchitectureError as exc:
            raise ValueError(f"save: {exc}") from None
    try:
        header["architecture"] = describe(module)
        if training is not None:
            _set_mode(header["architecture"], bool(training))
    except ArchitectureError as exc:
        # The weights are still worth keeping (a checkpoint mid-run must not fail):
        # write them, say why the file cannot rebuild the model, and keep the reason.
        header["architecture_error"] = str(exc)
        warnings.warn(f"cynn.save: the architecture cannot be stored, so this file holds "
                      f"weights only (load it with cynn.load(model, path)): {exc}",
                      UserWarning, stacklevel=3)
    return header


def save(module, path, *, input_shape=None, metadata=None, training=None):
    """Write ``module`` to ``path`` (an ``.npz`` file), atomically: its state and a
    description of its architecture, so that ``cynn.load(path)`` rebuilds it.

    Parameters
    ----------
    module : Module
    path : str or path-like
    input_shape : tuple of int, optional
        The shape of one sample, e.g. ``(1, 28, 28)``; default: the module's
        ``input_shape`` attribute when it has one (a loaded model does).  ``cynn
        summary`` and ``cynn predict`` use it.
    metadata : dict, optional
        JSON data kept with the model, e.g. ``{"class_names": [...]}``; `model_info`
        returns it.
    training : bool, optional
        The mode `load` gives the rebuilt model: False for evaluation mode (what the
        `Checkpoint` callback, ``cynn train`` and the estimators' ``save`` write, so
        that a loaded model predicts deterministically), True for training mode;
        default: each module's mode as it is now.  The live model is not changed.

    A module whose architecture cannot be described (a user class whose
    `Module.get_config` fails) is still saved, weights only, with a UserWarning.
    """
    if not isinstance(module, Module):
        raise TypeError(f"save expects a cynn Module, got {type(module).__name__}")
    state = module.state_dict()
    header = _header(module, input_shape, metadata, training)
    state[MODEL_MEMBER] = np.array(json.dumps(header))
    atomic_write(path, lambda f: np.savez(f, **state))


# A cynn file stores its arrays uncompressed (np.savez), so what it unpacks to is about
# its own size; a member that claims much more is a hostile or broken file.
_MAX_MEMBERS = 4096
_MAX_EXPANSION = 16


def read_npz(path, text_members=()):
    """Every array of an ``.npz`` file, read without pickle and checked first.

    Each member's ``.npy`` header is read before its data: a member whose declared
    shape needs more bytes than the member holds, an object, string or complex dtype
    (except the ``text_members`` named, which may be strings), too many members, an
    archive that would unpack to much more than the file's size, or non-finite
    floats raise ValueError naming the file and the member.  Never more than what
    the members declare, at most 16 times the file's size plus 1 MiB, is allocated.
    """
    path = os.fspath(path)
    where = f"cannot read {path} as a cynn .npz file"
    try:
        size = os.path.getsize(path)
        archive = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001  (a damaged central directory raises many kinds)
        raise ValueError(f"{where}: {type(exc).__name__}: {exc}") from None
    arrays = {}
    with archive:
        members = archive.infolist()
        if len(members) > _MAX_MEMBERS:
            raise ValueError(f"{where}: {len(members)} members (at most {_MAX_MEMBERS})")
        if sum(m.file_size for m in members) > _MAX_EXPANSION * size + (1 << 20):
            raise ValueError(f"{where}: its members would unpack to far more than its "
                             f"{size} bytes")
        for member in members:
            name = member.filename[:-4] if member.filename.endswith(".npy") else member.filename
            try:
                arrays[name] = _read_member(archive, member, name in text_members)
            except ValueError as exc:
                raise ValueError(f"{where}: member {name!r}: {exc}") from None
            except Exception as exc:  # noqa: BLE001  (zipfile and the .npy header parser
                # raise many kinds: BadZipFile, SyntaxError, EOFError, OverflowError...)
                raise ValueError(f"{where}: member {name!r}: {type(exc).__name__}: {exc}") from None
    return arrays


def _read_member(archive, member, text):
    with archive.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"unknown .npy version {version}")
        header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                  else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = header(f, max_header_size=10000)
        allowed = "U" if text else "biuf"
        if dtype.kind not in allowed or dtype.hasobject or dtype.fields is not None:
            raise ValueError(f"dtype {dtype} is not allowed here")
        count = 1
        for dim in shape:
            count *= dim
        if count * dtype.itemsize > member.file_size:
            raise ValueError(f"declares shape {shape} of {dtype} ({count * dtype.itemsize} "
                             f"bytes) but holds {member.file_size} bytes")
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"truncated: {len(data)} of {count * dtype.itemsize} bytes")
        # Reading to the member's end makes zipfile check its CRC-32: a flipped data
        # byte is an error, not silently different weights.
        if f.read(1):
            raise ValueError("holds bytes after its array")
    array = np.frombuffer(data, dtype=dtype, count=count)
    array = array.reshape(shape[::-1]).T if fortran else array.reshape(shape)
    if dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("holds NaN or infinite values")
    return array.copy()


def _split(path):
    """(state arrays, header dict or None) of a model file."""
    arrays = read_npz(path, text_members=(MODEL_MEMBER,))
    text = arrays.pop(MODEL_MEMBER, None)
    if text is None:
        return arrays, None
    where = f"cannot read {os.fspath(path)} as a cynn model file"
    if text.ndim != 0:
        raise ValueError(f"{where}: {MODEL_MEMBER} is not one string")
    try:
        header = json.loads(str(text))
    except (ValueError, RecursionError, SystemError, UnicodeError) as exc:
        # SystemError: NumPy turns code points beyond U+10FFFF into it.
        raise ValueError(f"{where}: {MODEL_MEMBER} is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"{where}: {MODEL_MEMBER} does not describe a cynn model")
    version = header.get("format_version")
    if not _is_integer(version) or version < 1:
        raise ValueError(f"{where}: format_version is {version!r}, not a version number")
    shape = header.get("input_shape")
    if shape is not None and not (isinstance(shape, list) and shape and all(
            _is_integer(d) and d > 0 for d in shape)):
        raise ValueError(f"{where}: input_shape is {str(shape)[:80]}, not a list of positive ints")
    if header.get("metadata") is not None and not isinstance(header["metadata"], dict):
        raise ValueError(f"{where}: metadata is a {type(header['metadata']).__name__}, not a dict")
    if version > FORMAT_VERSION:
        raise ValueError(f"{where}: format version {version!r} was written by a newer cynn "
                         f"(this one, {_version()}, reads version {FORMAT_VERSION}); upgrade cynn")
    return arrays, header


def _version():
    from . import __version__
    return __version__


def model_info(path):
    """What a model file says about itself, without building anything: a dict with
    ``cynn_version``, ``dtype``, ``input_shape`` (a tuple, or None), ``metadata``,
    ``architecture`` (as `describe` gives it, or None for a file of weights only),
    ``n_values`` (numbers stored: parameters and buffers) and ``keys`` (the state keys)."""
    arrays, header = _split(path)
    header = dict(header or {"format": FORMAT, "format_version": 0, "cynn_version": None,
                             "dtype": None, "input_shape": None, "metadata": None,
                             "architecture": None})
    if header.get("input_shape") is not None:
        header["input_shape"] = tuple(header["input_shape"])
    header["n_values"] = int(sum(a.size for a in arrays.values()))
    header["keys"] = sorted(arrays)
    return header


def _check_shapes(cls, config, state, prefix, where):
    """For the built-in layers with weights, the shapes the config implies must be
    those of the file's arrays: a file cannot make the loader allocate more than it
    holds."""
    from .layers import BatchNormalization, ChannelwiseScaling, Conv2d, Linear

    def need(key, shape):
        value = state.get(prefix + key)
        if value is None or tuple(value.shape) != tuple(shape):
            got = None if value is None else tuple(value.shape)
            raise ArchitectureError(f"{where} ({cls.__name__}): its arguments {config} need "
                                    f"{prefix + key!r} of shape {tuple(shape)}, the file has {got}")

    def ints(*names):
        values = [config.get(n) for n in names]
        for n, v in zip(names, values):
            if isinstance(v, list):
                if len(v) != 2 or not all(_is_integer(x) for x in v):
                    raise ArchitectureError(f"{where} ({cls.__name__}): {n} is {v!r}")
            elif not _is_integer(v):
                raise ArchitectureError(f"{where} ({cls.__name__}): {n} is {v!r}, not an int")
        return values

    if cls is Linear:
        n_in, n_out = ints("n_in", "n_out")
        need("W", (n_out, n_in))
    elif cls is Conv2d:
        c_in, c_out, groups = ints("in_channels", "out_channels", "groups")
        (k,) = ints("kernel_size")
        kh, kw = k if isinstance(k, list) else (k, k)
        if groups <= 0 or c_in % groups:
            raise ArchitectureError(f"{where} (Conv2d): groups={groups} does not divide "
                                    f"in_channels={c_in}")
        need("W", (c_out, c_in // groups, kh, kw))
    elif cls is ChannelwiseScaling:
        (n_out,) = ints("n_out")
        need("gamma", (n_out,))
    elif cls is BatchNormalization and config.get("n_features") is not None:
        (n,) = ints("n_features")
        need("moving_mean", (n,))


def _rebuild(entry, state, custom_objects, prefix="", where="model", depth=0):
    if depth > _MAX_DEPTH:
        raise ArchitectureError(f"{where}: nested more than {_MAX_DEPTH} levels deep")
    if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) \
            or not isinstance(entry.get("config", {}), dict) \
            or not isinstance(entry.get("children", []), list):
        raise ArchitectureError(f"{where}: not a module description: {str(entry)[:200]}")
    name = entry["class"]
    config = entry.get("config", {})
    short = name.rsplit(".", 1)[-1]
    lookup = custom_objects or {}
    cls = lookup.get(name) or lookup.get(short) or registered_classes().get(name)
    if cls is None:
        raise ArchitectureError(
            f"{where}: the file names the class {name!r}, which is not registered in this "
            f"process; import the module that defines it, decorated with @cynn.register"
            + (f"(name={name!r})" if "." in name else "")
            + f", before cynn.load, or pass custom_objects={{{short!r}: {short}}}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Module)):
        raise ArchitectureError(f"{where}: custom_objects[{name!r}] is not a Module subclass")
    _check_shapes(cls, config, state, prefix, where)
    children = [_rebuild(child, state, custom_objects, f"{prefix}{i}.", f"{where}[{i}]", depth + 1)
                for i, child in enumerate(entry.get("children", []))]
    try:
        module = cls.from_config(dict(config), children)
    except (TypeError, ValueError) as exc:
        raise ArchitectureError(f"{where}: cannot build {name} from {config}: {exc}") from None
    if not isinstance(module, Module):
        raise ArchitectureError(f"{where}: {name}.from_config returned {type(module).__name__}")
    if not cls._children_are_arguments:
        # The module built its own children: they must be the ones described.
        built = [_class_name(type(c)) for c in module.children()]
        described = [c.get("class") for c in entry.get("children", [])]
        if built != described:
            raise ArchitectureError(f"{where}: {name}({config}) builds children {built}, the "
                                    f"file describes {described}")
    training = entry.get("training", True)
    if not isinstance(training, bool):
        raise ArchitectureError(f"{where}: training is {training!r}, not true or false")
    module._training = training
    return module


def load(module_or_path, path=None, *, custom_objects=None):
    """Read a model file written by `save`.

    ``load(path)`` rebuilds the model the file describes, loads its weights and
    returns it, in the mode (training or evaluation) it was saved in and with
    ``input_shape`` set when the file knows it.  In evaluation mode its outputs are
    bit-identical to the saved model's (in training mode a rebuilt Dropout draws its
    masks from the package generator, `cynn.manual_seed`).  ``load(model, path)`` loads the weights into ``model`` (built in
    code, of the same architecture), in place, and returns it; files that hold weights
    only (written by earlier versions of cynn, or of a model that could not be described) load
    this way only.

    Parameters
    ----------
    custom_objects : dict, optional
        ``{name: class}`` for user classes that are not registered with `register`.

    Raises ValueError when the file is not a cynn model file (see `read_npz` for the
    checks made before anything is allocated), names an unknown class, or when its
    names or shapes do not match the module's.  Loading never runs code from the file.
    """
    if isinstance(module_or_path, Module):
        if path is None:
            raise TypeError("load(model, path): the path is missing")
        arrays, _ = _split(path)
        module_or_path.load_state_dict(arrays)
        return module_or_path
    if path is not None:
        raise TypeError(f"load expects (path) or (model, path), got a "
                        f"{type(module_or_path).__name__} and a path")
    if not isinstance(module_or_path, (str, os.PathLike)):
        raise TypeError(f"load expects a path or a cynn Module, got {type(module_or_path).__name__}")
    path = module_or_path
    arrays, header = _split(path)
    if header is None or header.get("architecture") is None:
        reason = (header or {}).get("architecture_error", "it was written by a cynn that stored "
                                    "weights only")
        raise ValueError(f"{os.fspath(path)} holds weights only ({reason}); build the model in "
                         "code and call cynn.load(model, path)")
    from . import _random

    # Building draws initial weights from the package generator; loading a model
    # must not move the draws of the user's own seeded code.
    generator = _random.global_generator()
    saved_state = generator.bit_generator.state
    try:
        model = _rebuild(header["architecture"], arrays, custom_objects)
    except ArchitectureError as exc:
        raise ArchitectureError(f"cannot rebuild the model in {os.fspath(path)}: {exc}") from None
    except RecursionError:
        raise ArchitectureError(f"cannot rebuild the model in {os.fspath(path)}: nested too "
                                "deeply") from None
    finally:
        generator.bit_generator.state = saved_state
    try:
        model.load_state_dict(arrays)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{os.fspath(path)}: the weights do not fit the architecture it "
                         f"describes: {exc}") from None
    if header.get("input_shape") is not None:
        model.input_shape = tuple(int(d) for d in header["input_shape"])
    return model
