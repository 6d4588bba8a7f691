"""Plumbing shared by the iterative optimisers (MDPO, gradient descent, CEM, MPPI).

Two pieces: what one particle is worth (``objective_and_cost``) and the driver that runs a
compiled chunk of iterations at a time so a progress bar can follow (``iterate``).
"""

import math

import jax
import jax.numpy as jnp

from ._common import progress, tempered_target

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


def iterate(chunk_fn, state, num_steps: int, *, desc: str, progress_bar: bool, postfix=None):
    """Run ``num_steps`` iterations as a few compiled chunks.

    ``chunk_fn(state, steps) -> (state, stats)`` scans over ``steps`` (the int32 iteration indices
    of the chunk) and returns per-iteration statistics with a leading iteration axis; they are
    concatenated here. ``postfix(state) -> str`` labels the progress bar after each chunk.
    """
    chunk = max(1, math.ceil(num_steps / NUM_CHUNKS))
    pieces = []
    with progress(num_steps, desc, progress_bar) as bar:
        start = 0
        while start < num_steps:
            n = min(chunk, num_steps - start)
            state, stats = chunk_fn(state, jnp.arange(start, start + n, dtype=jnp.int32))
            pieces.append(stats)
            bar.update(n)
            if postfix is not None and progress_bar:
                bar.set_postfix_str(postfix(state))
            start += n
    stats = jax.tree.map(lambda *xs: jnp.concatenate(xs, axis=0), *pieces)
    return state, stats
