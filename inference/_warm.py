"""Warm starts for the optimisers: earlier particles as flat unconstrained starting points.

Every algorithm's ``run(..., init=...)`` takes the same thing, checked the same way
(``warm_start.as_site_values``): a ``pc.Result`` or a dict latent site -> constrained values with a
leading particle axis (at least two particles). TSMC fits its reference Gaussian to them; MDPO and
gradient descent start their restarts at them; CEM and MPPI take their sampler's mean (and CEM its
scale) from them; NUTS starts at the lowest-cost one. The functions here are the shared part:
``site_values`` on the host (checks, before any compiled code), the rest inside compiled code.
"""

import jax
import jax.numpy as jnp
import numpy as np

from .warm_start import as_site_values


def site_values(init, log_density) -> dict:
    """``init`` as a dict latent site -> constrained values ``(M, ...)``, checked.

    Raises:
      ValueError: a latent site missing, unequal or fewer than two particles (``as_site_values``),
        a site of the wrong shape, or no particle whose values are all finite.
    """
    values = as_site_values(init, log_density.latent_names)
    for name, value in values.items():
        expected = tuple(log_density.latent_shapes[name])
        if value.shape[1:] != expected:
            raise ValueError(f"init: site {name!r} needs values of shape (particles,) + {expected}, "
                             f"got {value.shape}")
    finite = np.ones(next(iter(values.values())).shape[0], bool)
    for value in values.values():
        finite &= np.all(np.isfinite(value.reshape(value.shape[0], -1)), axis=1)
    if not finite.any():
        raise ValueError("init: no particle has finite values at every latent site")
    return values


def unconstrained(log_density, values: dict) -> tuple[jax.Array, jax.Array]:
    """``(z, finite)``: the particles ``(M, dim)`` in the unconstrained space and which rows are
    finite (a value on the boundary of a bounded support maps to infinity)."""
    z = jax.vmap(log_density.unconstrain)(values)
    return z, jnp.all(jnp.isfinite(z), axis=1)


def select_rows(z: jax.Array, finite: jax.Array, num: int) -> jax.Array:
    """``num`` finite rows of ``z``: cycled when there are fewer, evenly spaced when more.

    Deterministic (no key), and shape-static so it compiles: the finite rows are moved to the
    front (stable order) and indexed by position.
    """
    order = jnp.argsort(~finite, stable=True)
    count = jnp.maximum(jnp.sum(finite), 1)
    i = jnp.arange(num)
    position = jnp.where(count >= num, (i * count) // num, i % count)
    return z[order[position]]


def finite_moments(z: jax.Array, finite: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and standard deviation ``(dim,)`` of the finite rows of ``z``."""
    w = finite.astype(z.dtype) / jnp.maximum(jnp.sum(finite), 1)
    zf = jnp.where(finite[:, None], z, 0.0)
    mean = w @ zf
    var = w @ (zf - mean) ** 2
    return mean, jnp.sqrt(var)


def best_particles(init, values: dict, num: int) -> dict:
    """The ``num`` lowest-cost particles of ``init`` (cycled if fewer), as ``values``' sites.

    Uses the ``cost`` site when ``init`` carries one (a ``Result``, or a dict with ``"cost"``);
    without one the first particles, in order.
    """
    samples = getattr(init, "samples", init)
    m = next(iter(values.values())).shape[0]
    cost = samples.get("cost") if isinstance(samples, dict) else None
    if cost is not None and np.shape(cost)[:1] == (m,):
        cost = np.asarray(cost, np.float64).reshape(m, -1).sum(axis=1)
        order = np.argsort(np.where(np.isfinite(cost), cost, np.inf), kind="stable")
    else:
        order = np.arange(m)
    chosen = order[np.arange(num) % m]
    return {name: value[chosen] for name, value in values.items()}
