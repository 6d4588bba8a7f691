"""Resampling schemes: ancestor indices drawn in proportion to the weights.

Each scheme maps ``(rng_key, weights, num_samples)`` to integer ancestors of shape
``(num_samples,)`` with ``E[count_i] = num_samples * w_i`` (unbiased). Systematic and stratified
resampling have lower variance than multinomial (Douc, Cappé & Moulines 2005).
"""

import jax
import jax.numpy as jnp


def _sorted_uniforms_to_indices(weights: jax.Array, positions: jax.Array) -> jax.Array:
    cumulative = jnp.cumsum(weights)
    # Clip the queries to the total weight: rounding can leave cumsum[-1] slightly below 1, and a
    # query past it would index one beyond the last particle.
    positions = jnp.minimum(positions * cumulative[-1], cumulative[-1])
    indices = jnp.searchsorted(cumulative, positions, side="right")
    return jnp.clip(indices, 0, weights.shape[0] - 1)


def systematic(rng_key: jax.Array, weights: jax.Array, num_samples: int) -> jax.Array:
    """One uniform offset shared by ``num_samples`` evenly spaced positions."""
    u = jax.random.uniform(rng_key, dtype=weights.dtype)
    return _sorted_uniforms_to_indices(weights, (jnp.arange(num_samples, dtype=weights.dtype) + u) / num_samples)


def stratified(rng_key: jax.Array, weights: jax.Array, num_samples: int) -> jax.Array:
    """One independent uniform inside each of ``num_samples`` equal strata."""
    u = jax.random.uniform(rng_key, (num_samples,), dtype=weights.dtype)
    return _sorted_uniforms_to_indices(weights, (jnp.arange(num_samples, dtype=weights.dtype) + u) / num_samples)


def multinomial(rng_key: jax.Array, weights: jax.Array, num_samples: int) -> jax.Array:
    """Independent draws from the categorical distribution of the weights."""
    u = jnp.sort(jax.random.uniform(rng_key, (num_samples,), dtype=weights.dtype))
    return _sorted_uniforms_to_indices(weights, u)


SCHEMES = {"systematic": systematic, "stratified": stratified, "multinomial": multinomial}


def get(name: str):
    """The resampling function called ``name``."""
    try:
        return SCHEMES[name]
    except KeyError:
        raise ValueError(f"unknown resampling scheme {name!r}; choose one of {', '.join(SCHEMES)}") from None
