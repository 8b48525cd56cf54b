"""Save and load a module's state (parameters and buffers) as ``.npz``.

Files are written to a temporary file in the target folder and renamed over the
target, so an interrupted save never destroys the previous file; they are read with
``allow_pickle=False``, so opening a model file never runs code.
"""
import os
import tempfile
import zipfile

import numpy as np

from .module import Module


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


def save(module, path):
    """Write ``module.state_dict()`` to ``path`` (an ``.npz`` file), atomically.

    Load it back with `load` into a module of the same architecture.
    """
    if not isinstance(module, Module):
        raise TypeError(f"save expects a cynn Module, got {type(module).__name__}")
    state = module.state_dict()
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
    floats raise ValueError naming the file and the member.  Never more than about
    the file's own size is allocated.
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


def load(module, path):
    """Load parameters and buffers saved by `save` into ``module``, in place.

    Raises ValueError when the file is not a cynn state file (see `read_npz` for the
    checks made before anything is allocated), or when its names or shapes do not
    match the module's.
    """
    if not isinstance(module, Module):
        raise TypeError(f"load expects a cynn Module, got {type(module).__name__}")
    state = read_npz(path)
    module.load_state_dict(state)
    return module
