"""Plumbing shared by the iterative optimisers (MDPO, gradient descent, CEM, MPPI).

The pieces: what one particle is worth (``objective_and_cost``); the driver that runs a compiled
chunk of iterations at a time so a progress bar can follow and a checkpoint can be written between
chunks (``iterate``); the model's latent layout, traced once per argument signature
(``LayoutCache``), so that repeated ``run`` calls (receding-horizon re-plans) trace nothing; and
fresh noise per iteration (``check_fresh_noise``, ``iteration_kwargs``).
"""

import inspect
import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ppl_control import log_density

from . import checkpoint as checkpointing
from ._parallel import LAYOUT_FIELDS, to_host
from ._common import argument_signature, progress, tempered_target
from .warm_start import init_digest


class ModelLayout(NamedTuple):
    """What the host needs of a model's latent space; it depends on the arguments' shapes only.

    ``ravel`` / ``unravel`` map a dict of unconstrained latent values to the flat vector and back;
    nothing here evaluates the model, so a layout built from one set of arguments serves every
    set of the same signature.
    """

    dim: int
    latent_names: tuple
    latent_shapes: dict
    ravel: Callable
    unravel: Callable


class LayoutCache:
    """``cache(args, kwargs) -> ModelLayout``: the model traced once per argument signature
    (``_common.argument_signature``: tree structure, shapes, dtypes, static values); TSMC's warm
    starts use it too.

    A control loop calls ``run`` with a new measured state every step; splitting the log density
    on the host each time traced (and ran, op by op) the whole rollout. Unhashable arguments get
    no cache entry (traced every time).
    """

    def __init__(self, model):
        self.model = model
        self._entries = {}

    def __call__(self, args, kwargs) -> ModelLayout:
        signature = argument_signature(args, kwargs)
        if signature is not None and signature in self._entries:
            return self._entries[signature]
        layout = _abstract_layout(self.model, args, kwargs)
        if signature is not None:
            self._entries[signature] = layout
        return layout


def _abstract_layout(model, args, kwargs) -> ModelLayout:
    """The model's ``ModelLayout``, read off an abstract trace (``jax.eval_shape``): the model's
    operations are traced, not run, so nothing is compiled. (Run eagerly, the structural trace
    dispatched and compiled every operation of the rollout one by one: tens to hundreds of small
    compilations per model, a Brax rollout's scan among them.) Only shapes, names and the
    ``ravel_pytree`` maps leave the trace; they hold no traced values.
    """
    found = []

    def structure():
        ld = log_density(model, *args, **kwargs)
        found.append(ModelLayout(ld.dim, tuple(ld.latent_names), dict(ld.latent_shapes), ld.ravel, ld.unravel))
        return ld.dim

    jax.eval_shape(structure)
    return found[0]


def final_sites(model, particle_layout, args, kwargs, particles):
    """Every particle's ``log_density.sites`` (constrained latents, deterministic sites, observed
    log densities): the body of each algorithm's compiled finalisation."""
    ld = log_density(model, *args, **kwargs)
    return particle_layout.map(ld.sites)(particles)


def check_fresh_noise(model, fresh_noise) -> str | None:
    """``fresh_noise`` checked: ``None``, or the name of a keyword argument of ``model`` that
    takes a PRNG key.

    Raises:
      ValueError: not a string, or ``model`` has no such argument (and no ``**kwargs``).
    """
    if fresh_noise is None:
        return None
    if not isinstance(fresh_noise, str) or not fresh_noise.isidentifier():
        raise ValueError(f"fresh_noise must be None or the name of a model argument, got {fresh_noise!r}")
    try:
        parameters = inspect.signature(model).parameters
    except (TypeError, ValueError):  # a callable without an inspectable signature: trust the name
        return fresh_noise
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    usable = fresh_noise in parameters and parameters[fresh_noise].kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    if not (usable or takes_any):
        name = getattr(model, "__name__", repr(model))
        raise ValueError(
            f"fresh_noise={fresh_noise!r}: model {name!r} has no keyword argument {fresh_noise!r} to "
            f"redraw; its arguments: {list(parameters) or 'none'} (models.rddl.trajectory_model and "
            "pc.policy_model take noise_key=)")
    return fresh_noise


def iteration_kwargs(kwargs: dict, fresh_noise: str | None, noise_root, step) -> dict:
    """The model's keyword arguments for iteration ``step``: ``kwargs``, with
    ``fresh_noise`` set to ``fold_in(noise_root, step)`` when fresh noise is on (a traced key: one
    compiled step serves every iteration, and the key depends only on the run's key and the
    iteration index, so a run is reproducible and resumes bit for bit)."""
    if fresh_noise is None:
        return kwargs
    return dict(kwargs, **{fresh_noise: jax.random.fold_in(noise_root, step)})

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
