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


def load(module, path):
    """Load parameters and buffers saved by `save` into ``module``, in place.

    Raises ValueError when the file is not a cynn state file, or when its names or
    shapes do not match the module's.
    """
    if not isinstance(module, Module):
        raise TypeError(f"load expects a cynn Module, got {type(module).__name__}")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError(f"{path} is not an .npz state file")
            state = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"cannot read {path} as an .npz state file: {exc}") from None
    except ValueError as exc:
        raise ValueError(f"cannot read {path} as an .npz state file: {exc}") from None
    module.load_state_dict(state)
    return module
