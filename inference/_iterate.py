"""Plumbing shared by the iterative optimisers (MDPO, gradient descent, CEM, MPPI).

Two pieces: what one particle is worth (``objective_and_cost``) and the driver that runs a
compiled chunk of iterations at a time so a progress bar can follow and a checkpoint can be
written between chunks (``iterate``).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from . import checkpoint as checkpointing
from ._parallel import LAYOUT_FIELDS, to_host
from ._common import progress, tempered_target
from .warm_start import init_digest

# The iterations are run in at most this many compiled chunks (all of one length, plus at most one
# shorter remainder, so at most two compilations), whether or not a progress bar is shown: the
# chunking never changes the arithmetic, so results do not depend on ``progress_bar``.
NUM_CHUNKS = 20


def objective_and_cost(log_density):
    """``z -> (objective, cost)`` for one flat unconstrained particle.

    ``objective = -(log_prior(z) + log_likelihood(z))`` is the negative log density of the model
    (the Boltzmann target at beta = 1), the quantity every optimiser here minimises; ``cost`` is
    ``tempered_target``'s (the ``cost`` site, else ``-log_likelihood``), from the same evaluation.
    """
    target = tempered_target(log_density, 1.0)

    def evaluate(z):
        log_target, (_, _, cost) = target(z)
        return -log_target, cost

    return evaluate


def key_fingerprint(rng_key) -> list[int]:
    """The bits of ``rng_key`` (a typed key or a raw ``uint32`` key) as a JSON-able list."""
    if jnp.issubdtype(jnp.result_type(rng_key), jax.dtypes.prng_key):
        rng_key = jax.random.key_data(rng_key)
    return np.asarray(rng_key).ravel().tolist()


def run_fingerprint(method: str, config: dict, rng_key, log_density_, init_values: dict | None = None) -> dict:
    """What a checkpoint must match to be resumed: method, configuration, key, the model's
    latent shapes (a checkpoint of another model fails loudly instead of resuming garbage) and,
    for a warm start, a digest of its particles."""
    # Where the particles live (devices, batches) does not change what is computed: a run may
    # resume on other devices.
    fingerprint = dict(
        {k: v for k, v in config.items() if k not in LAYOUT_FIELDS},
        method=method,
        key=key_fingerprint(rng_key),
        latent_shapes={name: list(shape) for name, shape in log_density_.latent_shapes.items()},
    )
    if init_values is not None:
        fingerprint["init"] = init_digest(init_values)
    return fingerprint


def iterate(chunk_fn, state, num_steps: int, *, desc: str, progress_bar, postfix=None,
            checkpoint: str | None = None, fingerprint: dict | None = None):
    """Run ``num_steps`` iterations as a few compiled chunks, optionally checkpointed.

    ``chunk_fn(state, steps) -> (state, stats)`` scans over ``steps`` (the int32 iteration indices
    of the chunk) and returns per-iteration statistics with a leading iteration axis; they are
    concatenated here. ``postfix(state) -> str`` labels the progress bar after each chunk
    (``progress_bar`` is ``True``, ``False`` or ``"auto"``, see ``_common.show_progress``).

    With ``checkpoint`` (a file path), the state, the statistics so far and the number of
    iterations done are written there after every chunk (atomically, ``checkpoint.save_snapshot``)
    under ``fingerprint``; a run started with an existing checkpoint of the same fingerprint
    continues after its last chunk. The chunk boundaries depend only on ``num_steps``, so the
    resumed run executes the very same compiled chunks on the very same states: its result is
    bit for bit the uninterrupted run's. ``state`` (the freshly initialised one) is the template
    the stored arrays are rebuilt on.
    """
    chunk = max(1, math.ceil(num_steps / NUM_CHUNKS))
    pieces, start = [], 0
    if checkpoint:
        loaded = checkpointing.load_snapshot(checkpoint, state, fingerprint or {})
        if loaded is not None:
            state, start = loaded.state, loaded.steps_done
            if start % chunk and start != num_steps:
                raise checkpointing.CheckpointMismatch(
                    f"checkpoint {checkpoint!r} stopped inside a chunk ({start} steps)")
            if start:
                pieces.append({k: jnp.asarray(v) for k, v in loaded.history.items()})
    with progress(num_steps, desc, progress_bar) as bar:
        bar.update(start)
        while start < num_steps:
            n = min(chunk, num_steps - start)
            state, stats = chunk_fn(state, jnp.arange(start, start + n, dtype=jnp.int32))
            pieces.append(stats)
            start += n
            if checkpoint:
                history = jax.tree.map(lambda *xs: np.concatenate(xs, axis=0), *to_host(pieces))
                pieces = [history]
                checkpointing.save_snapshot(checkpoint, checkpointing.Snapshot(state, history, start),
                                            fingerprint or {})
            if postfix is not None and not bar.disable:
                bar.set_postfix_str(postfix(state), refresh=False)  # drawn by the update below
            bar.update(n)
    stats = jax.tree.map(lambda *xs: jnp.concatenate([jnp.asarray(x) for x in xs], axis=0), *pieces)
    return state, stats
