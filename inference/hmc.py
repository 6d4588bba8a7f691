"""Hamiltonian Monte Carlo moves for a population of particles, with a population metric.

One move of one particle: momentum ``p ~ N(0, Sigma^{-1})`` (``Sigma`` the metric's inverse mass,
``inference.metric``), ``num_leapfrog`` leapfrog steps, a Metropolis correction. Momenta live in
the original coordinates, so each leapfrog step costs one gradient and one product ``Sigma p``
(equivalent to whitening by ``S^{-1}``, with half the matrix products). Step sizes are in
whitened units.

Every proposal's step size is jittered per particle and per move (randomised integration time,
Mackenzie 1989; Neal 2011): with a well-whitened metric a fixed step and leapfrog count can
resonate with the target's period, so particles stop moving.

A *probe* move also records, at every leapfrog step ``l`` of its trajectory, what a move of ``l``
steps would have achieved: the squared jump (in whitened units) times its acceptance probability,
and the expected value after it of a watched scalar (the log-likelihood, for TSMC). Over the population that shows how much every trajectory
length decorrelates the particles, at once, from which ``inference.tuning`` picks the length
(in the spirit of Buchholz, Chopin & Jacob 2021).
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .metric import Metric

# NumPyro's and Stan's threshold: an energy error beyond this marks the trajectory divergent.
DIVERGENCE_THRESHOLD = 1000.0


class MoveInfo(NamedTuple):
    """Per-particle diagnostics of one HMC move.

    For a probe move, with ``a_l = min(1, exp(-dH_l))`` the acceptance probability of stopping
    after ``l`` leapfrog steps: ``path_jump[l - 1] = a_l |S^{-1}(z_l - z_0)|^2`` and
    ``path_watched[l - 1] = a_l w(z_l) + (1 - a_l) w(z_0)`` for the watched scalar ``w`` (zeros
    past its length); both have length 0 for other moves.
    """

    acceptance_rate: jax.Array
    diverging: jax.Array
    step_size: jax.Array
    path_jump: jax.Array
    path_watched: jax.Array


def _velocity(metric: Metric, p):
    """``Sigma p``: the velocity of momentum ``p``."""
    return metric.velocity(p)


def _draw_momentum(key, metric: Metric, shape, dtype):
    """``p ~ N(0, Sigma^{-1})`` as ``S^{-T} xi``; returns ``(p, |xi|^2 / 2)`` (its kinetic energy)."""
    xi = jax.random.normal(key, shape, dtype)
    return metric.momentum(xi), 0.5 * xi @ xi


def _energy_change(logp, p, metric, start_energy):
    """``H(start) - H(now)``: the log Metropolis ratio (``-dH``); ``NaN`` when anything is not finite."""
    return (logp - 0.5 * p @ _velocity(metric, p)) - start_energy


def hmc_move(
    rng_key: jax.Array,
    position: jax.Array,
    log_density: jax.Array,
    grad: jax.Array,
    aux,
    value_and_grad: Callable,
    step_size,
    metric: Metric,
    num_leapfrog,
    step_jitter: float,
    refresh=False,
    probe_length: int = 0,
    record=False,
    watch: Callable | None = None,
):
    """One HMC transition of one particle, leaving ``exp(log_density)`` invariant.

    Args:
      rng_key: this particle's key for this move.
      position, log_density, grad, aux: the current state; ``aux`` is whatever
        ``value_and_grad`` returns beside the value (carried along, swapped on acceptance).
      value_and_grad: ``z -> ((log_density, aux), grad)``.
      step_size: the base step size; each call draws ``step_size * U(1 - jitter, 1 + jitter)``.
      metric: the ``Metric`` (``inference.metric.fit_metric``), or this particle's view of a
        ``CrossFitted`` pair (``inference.metric.fit_cross_metric``).
      num_leapfrog: leapfrog steps of the proposal (an int, possibly traced; at most
        ``probe_length`` for a probe move).
      step_jitter: the jitter's half-width, in ``[0, 1)``.
      refresh: a (traced, unbatched) boolean. When true the call makes no move: one zero-length
        leapfrog step evaluates ``value_and_grad`` at ``position`` and returns it, ignoring the
        ``log_density``, ``grad`` and ``aux`` passed in. TSMC uses it to refresh gradients after the
        temperature changes through the same compiled loop as the moves, so the model's reverse
        pass is compiled once, not twice.
      probe_length: static; the length of the ``MoveInfo.path_*`` buffers (0: none).
      record: a (traced, unbatched) boolean: fill the ``path_*`` buffers (a probe move; costs one more
        ``Sigma p`` and one whitening per leapfrog step). A traced flag rather than a second
        function, so probe and ordinary moves share one compiled call of the model's gradient.
      watch: static; ``aux -> scalar``, the quantity a probe records along the path
        (``path_watched``); ``None`` watches the log density itself.

    Returns:
      ``(position, log_density, grad, aux, MoveInfo)`` after the Metropolis correction. A proposal
      whose energy is NaN or inf is rejected and counted as divergent.
    """
    refresh = jnp.asarray(refresh, dtype=bool)  # a Python False would make ``~refresh`` == -1
    record = jnp.asarray(record, dtype=bool)
    key_momentum, key_jitter, key_accept = jax.random.split(rng_key, 3)
    eps = step_size * jax.random.uniform(key_jitter, minval=1.0 - step_jitter, maxval=1.0 + step_jitter)
    eps = jnp.where(refresh, jnp.zeros_like(eps), eps)
    momentum, kinetic = _draw_momentum(key_momentum, metric, position.shape, position.dtype)
    start_energy = log_density - kinetic
    start_aux = aux
    path = (jnp.zeros((probe_length,), position.dtype), jnp.zeros((probe_length,), position.dtype))

    def leapfrog(step, carry):
        z, p, g, logp, aux, path = carry
        p = p + 0.5 * eps * g
        z = z + eps * _velocity(metric, p)
        # The barrier keeps XLA from fusing the momentum and position updates into the
        # gradient's last operations, which slowed the leapfrog loop down (pendulum, 4096
        # particles: ~8% per stage, benchmarks/scaling.py and tsmc_overhead's notes).
        (logp, aux), g = lax.optimization_barrier(value_and_grad(z))
        p = p + 0.5 * eps * g
        if probe_length:
            path = lax.cond(record, lambda: _record_jump(path, step, z, p, logp, aux), lambda: path)
        return z, p, g, logp, aux, path

    def _record_jump(path, step, z, p, logp, aux):
        change = _energy_change(logp, p, metric, start_energy)
        accept = jnp.where(jnp.isfinite(change), jnp.exp(jnp.minimum(change, 0.0)), 0.0)
        white = metric.whiten(z - position)
        jump = jnp.where(jnp.isfinite(white @ white), white @ white, 0.0)
        now, before = (logp, log_density) if watch is None else (watch(aux), watch(start_aux))
        expected = jnp.where(accept > 0, accept * now + (1.0 - accept) * before, before)
        return path[0].at[step].set(accept * jump), path[1].at[step].set(expected)

    num_steps = jnp.where(refresh, 1, num_leapfrog)
    z, p, g, logp, aux_new, path = lax.fori_loop(
        0, num_steps, leapfrog, (position, momentum, grad, log_density, aux, path)
    )
    energy_change = _energy_change(logp, p, metric, start_energy)
    valid = jnp.isfinite(energy_change) & jnp.all(jnp.isfinite(g))
    log_accept = jnp.where(valid, jnp.minimum(energy_change, 0.0), -jnp.inf)
    accept = (jnp.log(jax.random.uniform(key_accept)) < log_accept) | refresh
    diverging = (~valid | (-energy_change > DIVERGENCE_THRESHOLD)) & ~refresh
    pick = lambda new, old: jnp.where(accept, new, old)
    return (
        pick(z, position),
        pick(logp, log_density),
        pick(g, grad),
        jax.tree.map(pick, aux_new, aux),
        MoveInfo(jnp.exp(log_accept), diverging, eps, *path),
    )
