"""Checkpoints for long runs: the state, the per-stage or per-iteration history and a fingerprint.

Stored with ``numpy.savez`` (arrays only, no pickling), written to a temporary file beside the
target, flushed to disk and renamed over it (``os.replace`` is atomic), so a run killed at any
moment leaves either the previous checkpoint or the new one, never half of one.

Two layouts share that writer:

- ``save`` / ``load``: a ``NamedTuple`` of arrays and a history of per-stage lists (TSMC);
- ``save_snapshot`` / ``load_snapshot``: any pytree state (optimiser states, PRNG keys included)
  rebuilt on the structure of a template, with per-iteration histories and the number of
  iterations done (the iterative optimisers, through ``_iterate.iterate``).

The fingerprint (JSON: the configuration, the key, ...) is stored beside the arrays; loading
with another fingerprint raises ``CheckpointMismatch`` (a ``ValueError``) rather than resuming
someone else's run.
"""

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_PREFIX_STATE, _PREFIX_HISTORY, _PREFIX_KEY = "state.", "history.", "key."


class CheckpointMismatch(ValueError):
    """The checkpoint at the path belongs to another run (configuration, key or model)."""


def _write_atomic(path: str, arrays: dict) -> None:
    tmp = f"{path}.tmp.npz"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _canonical(fingerprint: dict):
    return json.loads(json.dumps(fingerprint, sort_keys=True))


def _check_fingerprint(path: str, data, fingerprint: dict) -> None:
    stored, current = json.loads(str(data["fingerprint"])), _canonical(fingerprint)
    if stored != current:
        differ = sorted(k for k in stored.keys() | current.keys() if stored.get(k) != current.get(k))
        details = "; ".join(f"{k}: {stored.get(k)!r} there, {current.get(k)!r} here" for k in differ)
        raise CheckpointMismatch(
            f"checkpoint {path!r} belongs to another run configuration ({details}); delete it or "
            "pass another checkpoint path"
        )


def save(path: str, state: NamedTuple, history: dict, fingerprint: dict) -> None:
    """Write ``state`` (a NamedTuple of arrays), ``history`` (name -> list of arrays) and
    ``fingerprint`` (JSON-serialisable configuration) to ``path``."""
    arrays = {_PREFIX_STATE + k: np.asarray(v) for k, v in state._asdict().items()}
    arrays.update({_PREFIX_HISTORY + k: np.stack([np.asarray(x) for x in v]) for k, v in history.items() if v})
    arrays["fingerprint"] = np.array(json.dumps(fingerprint, sort_keys=True))
    _write_atomic(path, arrays)


def load(path: str, state_type, fingerprint: dict):
    """Read a checkpoint written by ``save``: ``(state, history)``, or ``None`` if ``path`` is absent.

    Raises:
      CheckpointMismatch: when the checkpoint was written by a run with another configuration.
    """
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        _check_fingerprint(path, data, fingerprint)
        state = state_type(**{k: data[_PREFIX_STATE + k] for k in state_type._fields})
        history = {
            k[len(_PREFIX_HISTORY):]: list(data[k]) for k in data.files if k.startswith(_PREFIX_HISTORY)
        }
    return state, history


class Snapshot(NamedTuple):
    """A run between two compiled chunks: enough to continue it bit for bit."""

    state: Any  # a pytree of arrays (typed PRNG keys allowed)
    history: dict  # name -> array with a leading iteration axis, the iterations done so far
    steps_done: int


def _is_key(leaf) -> bool:
    return jnp.issubdtype(jnp.result_type(leaf), jax.dtypes.prng_key)


def save_snapshot(path: str, snapshot: Snapshot, fingerprint: dict) -> None:
    """Write ``snapshot`` and ``fingerprint`` to ``path`` (atomically).

    The state's leaves are stored in ``jax.tree.leaves`` order; typed PRNG keys as their key
    data, so they come back as the same keys.
    """
    arrays = {}
    for i, leaf in enumerate(jax.tree.leaves(snapshot.state)):
        if _is_key(leaf):
            arrays[f"{_PREFIX_KEY}{i}"] = np.asarray(jax.random.key_data(leaf))
        else:
            arrays[f"{_PREFIX_STATE}{i}"] = np.asarray(leaf)
    arrays.update({_PREFIX_HISTORY + k: np.asarray(v) for k, v in snapshot.history.items()})
    arrays["steps_done"] = np.asarray(snapshot.steps_done, np.int64)
    arrays["fingerprint"] = np.array(json.dumps(fingerprint, sort_keys=True))
    _write_atomic(path, arrays)


def load_snapshot(path: str, template, fingerprint: dict) -> Snapshot | None:
    """Read a checkpoint written by ``save_snapshot``, or ``None`` if ``path`` is absent.

    ``template`` is a state of the same run (the freshly initialised one): its structure, shapes,
    dtypes and key implementations rebuild the stored leaves.

    Raises:
      CheckpointMismatch: when the checkpoint belongs to another configuration or key (the
        fingerprint), or its arrays do not fit ``template`` (another model).
    """
    if not os.path.exists(path):
        return None
    leaves, treedef = jax.tree.flatten(template)
    with np.load(path, allow_pickle=False) as data:
        _check_fingerprint(path, data, fingerprint)
        restored = []
        for i, leaf in enumerate(leaves):
            if _is_key(leaf):
                name = f"{_PREFIX_KEY}{i}"
                expected = jax.eval_shape(jax.random.key_data, leaf)
            else:
                name = f"{_PREFIX_STATE}{i}"
                expected = jax.ShapeDtypeStruct(np.shape(leaf), jnp.result_type(leaf))
            found = data[name] if name in data.files else None
            if found is None or found.shape != expected.shape or found.dtype != expected.dtype:
                raise CheckpointMismatch(
                    f"checkpoint {path!r} does not fit this run's state (array {i}: expected "
                    f"{expected.dtype}{list(expected.shape)}); it was written for another model"
                )
            if _is_key(leaf):
                restored.append(jax.random.wrap_key_data(found, impl=jax.random.key_impl(leaf)))
            else:
                restored.append(jnp.asarray(found))
        stored_leaves = sum(k.startswith((_PREFIX_STATE, _PREFIX_KEY)) for k in data.files)
        if stored_leaves != len(leaves):
            raise CheckpointMismatch(
                f"checkpoint {path!r} holds {stored_leaves} state arrays, this run's state has "
                f"{len(leaves)}; it was written for another model or version"
            )
        history = {k[len(_PREFIX_HISTORY):]: data[k] for k in data.files if k.startswith(_PREFIX_HISTORY)}
        steps_done = int(data["steps_done"])
    return Snapshot(jax.tree.unflatten(treedef, restored), history, steps_done)
