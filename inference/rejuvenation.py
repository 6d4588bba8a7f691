"""The move phase of a TSMC stage: metric, resampling and HMC moves at the new temperature.

``rejuvenate`` runs, in one compiled ``lax.while_loop`` over passes:

* pass 0, a *refresh*: a zero-length move that evaluates the target and its gradient at every
  weighted particle (the temperature just changed), through the same compiled call as the moves,
  so the model's reverse pass is compiled once. With positions, gradients and weights in hand it
  fits the metric (``inference.metric``) and resamples;
* pass 1, the first move: a *probe* when the trajectory length adapts (``inference.tuning``): it
  integrates up to twice the previous stage's length, records what every shorter length would
  have done, and the stage keeps the length that decorrelates the particles most per gradient;
* further moves with that integration time (at least one after the probe), until the particles
  have decorrelated from where the stage started as far as the moves can decorrelate them
  (``tuning.moved_enough``) and (an option, ``max_unmoved``) at most that fraction of them are
  still where resampling put them, or ``max_moves``; or exactly ``num_moves`` moves when the
  user fixed it.

After every move the step size adapts toward ``target_accept`` (``tuning.next_step_size``); the
integration time ``length * step`` chosen by the probe is kept, so the length follows the step.
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._parallel import ParticleLayout
from .hmc import hmc_move
from .metric import CrossFitted, Metric, MetricInfo, fit_cross_metric, fit_metric
from .tuning import (
    best_length,
    DEFAULT_MAX_UNMOVED,
    moved_enough,
    next_step_size,
    remaining_correlation,
    whitened_spread,
)


class MoveSettings(NamedTuple):
    """How the moves are chosen (static: part of the compiled stage).

    ``num_moves`` / ``num_leapfrog`` of ``None`` mean "adapt" (up to ``max_moves`` /
    ``max_leapfrog``); an integer fixes them.
    """

    num_moves: int | None
    max_moves: int
    num_leapfrog: int | None
    max_leapfrog: int
    target_correlation: float
    target_accept: float
    step_jitter: float
    max_unmoved: float = DEFAULT_MAX_UNMOVED
    cross_fit: bool = True  # metric.fit_cross_metric; False: one metric from all the particles


class MovesInfo(NamedTuple):
    """What the move phase did (scalars, then per-particle arrays)."""

    num_moves: jax.Array  # HMC moves made (the refresh pass not counted)
    num_leapfrog: jax.Array  # the trajectory length kept for this stage's moves after the probe
    probe_length: jax.Array  # the probe's length (0 when the length is fixed)
    num_evaluations: jax.Array  # value-and-gradient evaluations of the whole population
    acceptance_rate: jax.Array  # mean over moves and particles
    step_size: jax.Array  # mean base step size over the moves
    num_divergent: jax.Array
    correlation: jax.Array  # remaining correlation with the stage's start, after the last move
    unmoved_fraction: jax.Array  # the particles every move since resampling left in place
    particle_acceptance_rate: jax.Array  # (N,) mean over moves
    particle_diverging: jax.Array  # (N,) any move diverged
    particle_step_size: jax.Array  # (N,) the last move's jittered step


def adapt_after_move(info, step_size, integration_time, refresh, probing, start_watched, probe_length, spread,
                     settings: MoveSettings):
    """After one pass of moves: the next base step (unchanged after a refresh), the integration
    time (set by a probe from the length that decorrelated most per gradient: ``tuning.best_length``)
    and the length that keeps that time at the new step. Shared by standard and waste-free
    rejuvenation; with a fixed ``num_leapfrog`` the caller ignores the length."""
    step = next_step_size(step_size, info.step_size, info.acceptance_rate, settings.target_accept)
    step = jnp.where(refresh, step_size, step)
    if settings.num_leapfrog is None:
        chosen = best_length(jnp.mean(info.path_jump, axis=0), info.path_watched, start_watched, probe_length, spread)
        integration_time = jnp.where(probing, chosen * step_size, integration_time)
    length = jnp.clip(jnp.round(integration_time / step), 1, settings.max_leapfrog).astype(jnp.int32)
    return step, integration_time, length


def fit_moves_metric(rng_key: jax.Array, particles: jax.Array, grads: jax.Array, weights: jax.Array,
                     metric_kind: str, layout: ParticleLayout, cross_fit: bool):
    """``(CrossFitted, MetricInfo)``: the metric the moves use, with ``use_second`` set for the
    particles as given (resampling maps it to their descendants).

    With ``cross_fit`` the two halves are random, not contiguous: after resampling, a lineage's
    particles sit next to each other, and contiguous halves could hold different modes or very
    different total weights (``metric.fit_cross_metric``). Without it, one metric fitted on all the
    particles serves as both halves.
    """
    n = particles.shape[0]
    if not cross_fit:
        metric, info = fit_metric(particles, grads, weights, metric_kind)
        return CrossFitted(metric, metric, layout.constrain(jnp.zeros((n,), bool))), info
    in_first_half = layout.constrain(jax.random.permutation(rng_key, n) < n // 2)
    return fit_cross_metric(particles, grads, weights, metric_kind, in_first_half)


def unit_moves_metric(dim: int, metric_kind: str, n: int, dtype) -> CrossFitted:
    """The identity metric in the carried shape: a placeholder the refresh pass replaces."""
    eye = jnp.ones((dim,), dtype) if metric_kind == "diagonal" else jnp.eye(dim, dtype=dtype)
    return CrossFitted(Metric(eye, eye), Metric(eye, eye), jnp.zeros((n,), bool))


def log_likelihood_of(aux: tuple) -> jax.Array:
    """The log-likelihood entry of ``rejuvenate``'s aux tuple."""
    return aux[1]


class _Carry(NamedTuple):
    z: jax.Array
    logp: jax.Array
    grad: jax.Array
    aux: tuple
    metric: CrossFitted  # its use_second is per particle (N,)
    metric_info: MetricInfo
    start: jax.Array  # the resampled positions, from which the correlation is measured
    start_log_likelihood: jax.Array  # and their log-likelihoods (the aux's second entry)
    spread: jax.Array  # their total variance in whitened units (tuning.whitened_spread)
    step_size: jax.Array
    integration_time: jax.Array  # length * step of the moves after the probe
    length: jax.Array
    probe_length: jax.Array
    index: jax.Array  # the pass about to run (0 = refresh)
    correlation: jax.Array  # the last three remaining correlations, oldest first
    evaluations: jax.Array
    acceptance_sum: jax.Array  # (N,)
    step_sum: jax.Array
    diverging: jax.Array  # (N,)
    last_step: jax.Array  # (N,)
    unmoved: jax.Array  # (N,) every move since resampling was rejected: a copy of the ancestor


_PER_PARTICLE = ("z", "logp", "grad", "aux", "start", "start_log_likelihood", "acceptance_sum", "diverging",
                 "last_step", "unmoved")


def _sharded(c: _Carry, layout: ParticleLayout) -> _Carry:
    """``c`` with its per-particle fields kept sharded over the layout's devices."""
    return c._replace(**layout.constrain({name: getattr(c, name) for name in _PER_PARTICLE}))


def rejuvenate(
    rng_key: jax.Array,
    particles: jax.Array,
    weights: jax.Array,
    aux: tuple,
    value_and_grad: Callable,
    resample: Callable,
    metric_kind: str,
    step_size: jax.Array,
    previous_length: jax.Array,
    settings: MoveSettings,
    layout: ParticleLayout | None = None,
):
    """Fit the metric, resample and move ``particles`` ``(N, D)`` toward ``value_and_grad``'s density.

    Args:
      rng_key: the key of this move phase.
      particles: the weighted population (before resampling).
      weights: their normalised importance weights for the new target.
      aux: per-particle auxiliary values (leading axis ``N``) matching ``value_and_grad``'s aux, a
        tuple whose second entry is the log-likelihood (what tempering scales; the move count
        watches its decorrelation); overwritten by the refresh pass (they fix shapes and dtypes).
      value_and_grad: ``z -> ((log density, aux), grad)`` for one particle.
      resample: ``(key, weights, num) -> ancestors`` (``inference.resampling``).
      metric_kind: ``"dense"``, ``"diagonal"`` or ``"covariance"`` (``metric.fit_metric``).
      step_size: the base step size to start from (whitened units).
      previous_length: the length the previous stage kept (the probe tries up to twice it).
      settings: ``MoveSettings``.
      layout: how the particles are spread over devices and evaluated in batches
        (``inference._parallel.ParticleLayout``); default: one device, all particles at once.

    Returns:
      ``(particles, log_density, aux, step_size, length, MovesInfo, MetricInfo)``: equally weighted
      particles; ``length`` is what the next stage should start from.
    """
    n, dim = particles.shape
    adaptive_length = settings.num_leapfrog is None
    max_passes = 1 + (settings.max_moves if settings.num_moves is None else settings.num_moves)
    buffer = settings.max_leapfrog if adaptive_length else 0
    # At least one move; two when the first is a probe, whose length (twice the last choice) was
    # not chosen for this stage: the second move runs the length the probe found.
    min_passes = 3 if adaptive_length else 2
    probe_length = jnp.clip(2 * previous_length, 1, settings.max_leapfrog).astype(jnp.int32)
    fixed_length = jnp.asarray(settings.num_leapfrog or 1, jnp.int32)
    layout = ParticleLayout(n, None, None) if layout is None else layout
    key_resample, key_moves, key_split = jax.random.split(rng_key, 3)

    def fit_and_resample(c: _Carry):
        metric, metric_info = fit_moves_metric(key_split, c.z, c.grad, weights, metric_kind, layout,
                                               settings.cross_fit)
        ancestors = resample(key_resample, weights, n)
        take = lambda x: layout.constrain(x[ancestors])
        z = take(c.z)
        return c._replace(z=z, logp=take(c.logp), grad=take(c.grad), aux=jax.tree.map(take, c.aux),
                          metric=metric._replace(use_second=take(metric.use_second)), metric_info=metric_info,
                          start=z, start_log_likelihood=take(log_likelihood_of(c.aux)),
                          spread=whitened_spread(metric, c.z, weights))

    def keep_going(c: _Carry):
        more = c.index < max_passes
        if settings.num_moves is None:
            more &= ((c.index < min_passes) | ~moved_enough(c.correlation, settings.target_correlation)
                     | (jnp.mean(c.unmoved) > settings.max_unmoved))
        return more

    def one_pass(c: _Carry):
        refresh = c.index == 0
        probing = (c.index == 1) & adaptive_length
        length = jnp.where(probing, probe_length, c.length if adaptive_length else fixed_length)
        keys = layout.constrain(jax.random.split(jax.random.fold_in(key_moves, c.index), n))
        move = layout.map(lambda key, z, logp, grad, aux, use_second: hmc_move(
            key, z, logp, grad, aux, value_and_grad, c.step_size, c.metric._replace(use_second=use_second),
            length, settings.step_jitter, refresh, buffer, probing, watch=log_likelihood_of,
        ))
        z, logp, grad, aux, info = move(keys, c.z, c.logp, c.grad, c.aux, c.metric.use_second)
        step, integration_time, next_length = adapt_after_move(
            info, c.step_size, c.integration_time, refresh, probing, log_likelihood_of(c.aux), probe_length,
            c.spread, settings)
        moved = ~refresh
        c = _Carry(
            z, logp, grad, aux, c.metric, c.metric_info, c.start, c.start_log_likelihood, c.spread, step,
            integration_time,
            next_length if adaptive_length else fixed_length,
            jnp.where(probing, probe_length, c.probe_length), c.index + 1,
            jnp.where(moved, jnp.append(c.correlation[1:], remaining_correlation(
                c.metric, c.start, z, c.spread, c.start_log_likelihood, log_likelihood_of(aux))),
                      c.correlation),
            c.evaluations + n * jnp.where(refresh, 1, length),
            c.acceptance_sum + jnp.where(moved, info.acceptance_rate, 0.0),
            c.step_sum + jnp.where(moved, c.step_size, 0.0),
            c.diverging | (info.diverging & moved),
            jnp.where(moved, info.step_size, c.last_step),
            c.unmoved & ~(moved & jnp.any(z != c.z, axis=-1)),  # the refresh leaves it all True
        )
        return lax.cond(refresh, fit_and_resample, lambda c: c, _sharded(c, layout))

    zeros = jnp.zeros((n,), particles.dtype)
    scalar = jnp.zeros((), particles.dtype)
    start = _Carry(
        particles, jnp.full((n,), -jnp.inf, particles.dtype), jnp.zeros_like(particles), aux,
        unit_moves_metric(dim, metric_kind, n, particles.dtype), MetricInfo(scalar, scalar),
        particles, zeros, scalar + 1.0, step_size,
        previous_length * step_size, previous_length.astype(jnp.int32), jnp.zeros((), jnp.int32),
        jnp.zeros((), jnp.int32), jnp.array([jnp.nan, jnp.nan, 1.0], particles.dtype), jnp.zeros((), jnp.int32),
        zeros, scalar, jnp.zeros((n,), bool), zeros, jnp.ones((n,), bool),
    )
    c = lax.while_loop(keep_going, one_pass, _sharded(start, layout))
    num_moves = c.index - 1
    per_move = jnp.maximum(num_moves, 1)
    info = MovesInfo(
        num_moves=num_moves,
        num_leapfrog=c.length,
        probe_length=c.probe_length,
        num_evaluations=c.evaluations,
        acceptance_rate=jnp.mean(c.acceptance_sum) / per_move,
        step_size=c.step_sum / per_move,
        num_divergent=jnp.sum(c.diverging),
        correlation=c.correlation[-1],
        unmoved_fraction=jnp.mean(c.unmoved),
        particle_acceptance_rate=c.acceptance_sum / per_move,
        particle_diverging=c.diverging,
        particle_step_size=c.last_step,
    )
    return c.z, c.logp, c.aux, c.step_size, c.length, info, c.metric_info
