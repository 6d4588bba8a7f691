"""Adaptive tempering: the effective sample size and the bisection that picks the next beta.

At inverse temperature ``beta`` the target is ``prior(z) * L(z)^beta``. Moving to ``beta + delta``
reweights particle ``i`` by ``L(z_i)^delta``; the next ``delta`` is chosen so that the effective
sample size of those weights is a fixed fraction of what it was, which keeps consecutive targets
close (Jasra et al. 2011; Buchholz, Chopin & Jacob 2021).
"""

import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp

BISECTION_STEPS = 64


def log_ess(log_weights: jax.Array) -> jax.Array:
    """``log`` of the effective sample size ``(sum w)^2 / sum w^2``, from unnormalised log weights.

    Computed as ``2 lse(w) - lse(2w)`` so that huge or tiny weights never overflow; ``-inf``
    weights (dead particles) contribute nothing.
    """
    # Shift by the largest weight first: 2 lse(w) and lse(2w) are both large when the weights are,
    # and their difference would lose float32 precision (1000 + log 2 keeps ~4 digits).
    shift = jnp.max(jnp.where(jnp.isfinite(log_weights), log_weights, -jnp.inf))
    shifted = log_weights - jnp.where(jnp.isfinite(shift), shift, 0.0)
    return 2.0 * logsumexp(shifted) - logsumexp(2.0 * shifted)


def ess(log_weights: jax.Array) -> jax.Array:
    """The effective sample size, between 1 and the number of particles."""
    return jnp.exp(log_ess(log_weights))


def incremental_log_weights(log_likelihood: jax.Array, delta) -> jax.Array:
    """``delta * log L`` per particle; a non-finite log-likelihood gives weight zero (``-inf``).

    The ``where`` guards both NaN and ``+-inf``: a particle whose cost overflowed must neither
    take all the weight nor turn the others' weights into NaN.
    """
    finite = jnp.isfinite(log_likelihood)
    return jnp.where(finite, delta * jnp.where(finite, log_likelihood, 0.0), -jnp.inf)


def next_delta(log_likelihood: jax.Array, max_delta, target_ess: float):
    """The temperature increment that keeps the ESS at ``target_ess`` of its starting value.

    Particles enter with equal weights. With ``f(delta) = ESS(delta * log L) / ESS(0)`` (``ESS(0)``
    counts the particles with finite ``log L``), returns ``max_delta`` when
    ``f(max_delta) >= target_ess`` (the last stage), else the root of ``f(delta) = target_ess`` by
    bisection on ``[0, max_delta]``; ``f`` decreases in ``delta``.

    Returns:
      ``(delta, reached_max)``: the increment and whether it is ``max_delta`` exactly.
    """
    log_ess0 = log_ess(incremental_log_weights(log_likelihood, 0.0))
    log_target = jnp.log(target_ess) + log_ess0

    def gap(delta):
        return log_ess(incremental_log_weights(log_likelihood, delta)) - log_target

    reached_max = gap(max_delta) >= 0.0

    def bisect(_, bounds):
        low, high = bounds
        mid = 0.5 * (low + high)
        above = gap(mid) >= 0.0
        return jnp.where(above, mid, low), jnp.where(above, high, mid)

    low, high = lax.fori_loop(0, BISECTION_STEPS, bisect, (jnp.zeros_like(max_delta), max_delta))
    # ``low`` keeps the ESS at or above target; never return an increment of exactly zero.
    root = jnp.maximum(low, jnp.finfo(jnp.result_type(max_delta)).tiny)
    return jnp.where(reached_max, max_delta, root), reached_max
