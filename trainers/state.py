"""Training state on disk: everything a run needs to continue where it stopped.

One ``.npz`` file, written atomically (`cynn.serialization.atomic_write`) and read
without pickle.  It holds the model's parameters and buffers, the optimizer's
per-parameter arrays, and one JSON member with the rest: optimizer hyperparameters
and step count, the callbacks' state (a schedule's progress, the best value a
Checkpoint or EarlyStopping has seen), the epoch reached, the history, and the state
of every random generator the loop draws from (shuffling, each layer's own
generator, and the package-level one of `cynn.manual_seed`).
"""
import json
import math

import numpy as np

from cynn import _random
from cynn.serialization import atomic_write, read_npz

FORMAT = "cynn-training-state-1"
_META = "__meta__.json"


class TrainingStateError(ValueError):
    """A training-state file that cannot be resumed: unreadable, or from another run."""


def _layer_generators(module, found=None):
    """The distinct Generators held by the modules of a tree, in a fixed order."""
    found = [] if found is None else found
    for value in vars(module).values():
        if isinstance(value, np.random.Generator) and all(value is not g for g in found):
            found.append(value)
    for child in module.children():
        _layer_generators(child, found)
    return found


def _stateful(callbacks):
    """(callback, state) for the callbacks that have state; a progress bar or a
    logger may come and go between a run and its resumption."""
    return [(cb, state) for cb in callbacks for state in (cb.state_dict(),) if state]


def _split_arrays(value, prefix, arrays):
    """Replace every ndarray in a nested dict/list by a reference to an npz member."""
    if isinstance(value, np.ndarray):
        arrays[prefix] = value
        return {"__array__": prefix}
    if isinstance(value, dict):
        return {str(k): _split_arrays(v, f"{prefix}/{k}", arrays) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split_arrays(v, f"{prefix}/{i}", arrays) for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": repr(value)}
    return value


def _join_arrays(value, arrays):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        if set(value) == {"__float__"}:
            return float(value["__float__"])
        return {k: _join_arrays(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join_arrays(v, arrays) for v in value]
    return value


def save_training_state(trainer, path, finished=False):
    """Write ``trainer``'s whole state to ``path``, atomically."""
    arrays = {}
    meta = {
        "format": FORMAT,
        "epoch": len(trainer.history),
        "finished": bool(finished),
        "history": trainer.history.records,
        "model": _split_arrays(trainer.model.state_dict(), "model", arrays),
        "optimizer": _split_arrays(trainer.optimizer.state_dict(), "optimizer", arrays),
        "callbacks": [{"class": type(cb).__name__,
                       "state": _split_arrays(state, f"callbacks/{i}", arrays)}
                      for i, (cb, state) in enumerate(_stateful(trainer.callbacks))],
        "generators": {
            "shuffle": trainer._rng.bit_generator.state,
            "layers": [g.bit_generator.state for g in _layer_generators(trainer.model)],
            "package": _random.global_generator().bit_generator.state,
            # Not a generator: the seed each batch's augmentation generator comes from.
            "augment": trainer._augment_seed,
        },
    }
    arrays[_META] = np.array(json.dumps(_split_arrays(meta, "meta", arrays)))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_training_state(path):
    """The state dict written by `save_training_state` (arrays joined back in)."""
    try:
        arrays = read_npz(path, text_members=(_META,))
    except ValueError as exc:
        raise TrainingStateError(str(exc)) from None
    try:
        meta = json.loads(str(arrays.pop(_META)[()]))
    except (KeyError, ValueError, TypeError):
        raise TrainingStateError(f"{path} is not a cynn training-state file") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise TrainingStateError(f"{path} is not a cynn training-state file ({FORMAT})")
    try:
        return _join_arrays(meta, arrays)
    except (KeyError, TypeError) as exc:
        raise TrainingStateError(f"{path}: training state refers to a missing array {exc}") from None


def load_training_state(trainer, path):
    """Restore ``trainer`` from `save_training_state`'s file; returns the state dict.

    Everything is checked against the trainer's model, optimizer and callbacks first;
    a mismatch raises TrainingStateError and leaves the trainer as it was.
    """
    from .history import History

    state = read_training_state(path)
    generators = _layer_generators(trainer.model)
    saved = state.get("generators", {})
    callbacks = [cb for cb, _ in _stateful(trainer.callbacks)]
    saved_callbacks = state.get("callbacks", [])
    if len(saved.get("layers", ())) != len(generators) \
            or [c.get("class") for c in saved_callbacks] != [type(c).__name__ for c in callbacks]:
        raise TrainingStateError(f"{path} does not match this run: it was written by a run "
                                 "with other layers or callbacks")
    before = trainer.model.state_dict()
    try:
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer.load_state_dict(state["optimizer"])
        for cb, saved_cb in zip(callbacks, saved_callbacks):
            cb.load_state_dict(saved_cb["state"])
        for g, g_state in zip(generators, saved["layers"]):
            g.bit_generator.state = g_state
        trainer._rng.bit_generator.state = saved["shuffle"]
        if saved.get("augment") is not None:    # absent from files of older versions
            trainer._augment_seed = int(saved["augment"])
        _random.global_generator().bit_generator.state = saved["package"]
        history = History(state["history"])
    except (ValueError, TypeError, KeyError) as exc:
        trainer.model.load_state_dict(before)
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrainingStateError(f"{path} does not match this run: {first}") from None
    trainer.history = history
    return state
