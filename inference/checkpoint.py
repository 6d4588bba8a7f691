"""Checkpoints for long runs: a NamedTuple state, the per-stage history and a fingerprint.

Stored with ``numpy.savez`` (arrays only, no pickling), written to a temporary file and renamed so
an interrupted write never leaves a half checkpoint behind.
"""

import json
import os
from typing import NamedTuple

import numpy as np

_PREFIX_STATE, _PREFIX_HISTORY = "state.", "history."


def save(path: str, state: NamedTuple, history: dict, fingerprint: dict) -> None:
    """Write ``state`` (a NamedTuple of arrays), ``history`` (name -> list of arrays) and
    ``fingerprint`` (JSON-serialisable configuration) to ``path``."""
    arrays = {_PREFIX_STATE + k: np.asarray(v) for k, v in state._asdict().items()}
    arrays.update({_PREFIX_HISTORY + k: np.stack([np.asarray(x) for x in v]) for k, v in history.items() if v})
    arrays["fingerprint"] = np.array(json.dumps(fingerprint, sort_keys=True))
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def load(path: str, state_type, fingerprint: dict):
    """Read a checkpoint written by ``save``: ``(state, history)``, or ``None`` if ``path`` is absent.

    Raises:
      ValueError: when the checkpoint was written by a run with another configuration.
    """
    if not os.path.exists(path):
        return None
    with np.load(path, allow_pickle=False) as data:
        stored = json.loads(str(data["fingerprint"]))
        if stored != json.loads(json.dumps(fingerprint, sort_keys=True)):
            raise ValueError(
                f"checkpoint {path!r} belongs to another run configuration: {stored} != {fingerprint}; "
                "delete it or pass another checkpoint path"
            )
        state = state_type(**{k: data[_PREFIX_STATE + k] for k in state_type._fields})
        history = {
            k[len(_PREFIX_HISTORY):]: list(data[k]) for k in data.files if k.startswith(_PREFIX_HISTORY)
        }
    return state, history
