"""Plumbing shared by the iterative optimisers (MDPO, gradient descent, CEM, MPPI).

Two pieces: what one particle is worth (``objective_and_cost``) and the driver that runs a
compiled chunk of iterations at a time so a progress bar can follow (``iterate``).
"""

import math
import numbers

import jax
import jax.numpy as jnp

from ._common import progress

# The iterations are run in at most this many compiled chunks (all of one length, plus at most one
# shorter remainder, so at most two compilations), whether or not a progress bar is shown: the
# chunking never changes the arithmetic, so results do not depend on ``progress_bar``.
NUM_CHUNKS = 20


def check_nonnegative(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or not (0.0 <= float(value) < float("inf")):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def check_unit_interval(name: str, value, *, closed_high: bool = False) -> float:
    """``value`` in ``(0, 1)``, or ``(0, 1]`` with ``closed_high``."""
    ok = isinstance(value, numbers.Real) and 0.0 < float(value) and (
        float(value) <= 1.0 if closed_high else float(value) < 1.0
    )
    if not ok:
        interval = "(0, 1]" if closed_high else "(0, 1)"
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def objective_and_cost(log_density):
    """``z -> (objective, cost)`` for one flat unconstrained particle.

    ``objective = -(log_prior(z) + log_likelihood(z))`` is the negative log density of the model
    (the Boltzmann target at beta = 1), the quantity every optimiser here minimises. ``cost`` is the
    model's deterministic ``cost`` site (summed) when it has one, else ``-log_likelihood(z)``; it is
    what the per-iteration statistics report.
    """
    has_cost = "cost" in log_density.deterministic_names

    def evaluate(z):
        lp, ll = log_density.log_parts(z)
        cost = jnp.sum(log_density.constrain(z)["cost"]) if has_cost else -ll
        return -(lp + ll), cost

    return evaluate


def finite_min_mean(values: jax.Array, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``(min, mean)`` over the finite (and ``valid``) entries; ``(inf, nan)`` when there are none."""
    ok = jnp.isfinite(values) if valid is None else jnp.isfinite(values) & valid
    count = jnp.sum(ok)
    vmin = jnp.min(jnp.where(ok, values, jnp.inf))
    vmean = jnp.where(count > 0, jnp.sum(jnp.where(ok, values, 0.0)) / jnp.maximum(count, 1), jnp.nan)
    return vmin, vmean


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
