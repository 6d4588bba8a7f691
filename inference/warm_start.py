"""Warm starts for TSMC: a Gaussian reference fitted to earlier particles, and the path from it.

A cold TSMC run tempers from the prior, ``pi_beta ∝ p(z) L(z)^beta``. When a good guess of the
answer exists (the previous control step's particles, shifted by one step, in receding-horizon
control), starting from the prior wastes most of the stages. A warm start instead fits a Gaussian
``q = N(m, C)`` to the guess (in the unconstrained space) and follows the geometric path::

    pi_beta(z) ∝ q(z)^(1 - beta) * (p(z) L(z))^beta,       beta: 0 -> 1

which is the usual tempering with ``q`` in the role of the prior and
``log p(z) + log L(z) - log q(z)`` in the role of the log-likelihood. ``q`` is normalised, so the
summed evidence increments still estimate ``log Z = log ∫ p L`` of the model: the log evidence
stays meaningful however good or bad the guess is (a poor guess costs stages, not correctness).
The covariance is the particle covariance shrunk toward its diagonal as far as it is noisy
(``metric.covariance_estimate``), inflated by
``spread**2``: a reference a little wider than the target keeps the importance weights'
tails light.
"""

import hashlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .metric import covariance_estimate


class GaussianReference(NamedTuple):
    """``N(mean, factor factor')`` on the flat unconstrained space; ``factor`` lower triangular.

    ``inverse_factor`` is ``factor^{-1}``, computed once: ``log_prob`` runs inside every gradient
    of a warm-started run, and a matrix product there is far cheaper than a triangular solve (on
    XLA:CPU about 175x, measured at D = 30 with 64 particles).
    """

    mean: jax.Array  # (D,)
    factor: jax.Array  # (D, D)
    inverse_factor: jax.Array  # (D, D)

    def log_prob(self, z: jax.Array) -> jax.Array:
        """The normalised log density at one particle ``z`` of shape ``(D,)``."""
        white = self.inverse_factor @ (z - self.mean)
        dim = z.shape[-1]
        log_det = jnp.sum(jnp.log(jnp.diag(self.factor)))
        return -0.5 * white @ white - log_det - 0.5 * dim * jnp.log(2.0 * jnp.pi)

    def sample(self, rng_key: jax.Array, num: int) -> jax.Array:
        """``num`` draws, shape ``(num, D)``."""
        xi = jax.random.normal(rng_key, (num, self.mean.shape[0]), self.mean.dtype)
        return self.mean + xi @ self.factor.T


def fit_reference(particles: jax.Array, spread: float) -> GaussianReference:
    """The Gaussian reference of ``particles`` ``(M, D)`` (rows with NaN or inf are ignored).

    Mean and shrunk covariance of the finite rows, the covariance scaled by ``spread**2``. Falls
    back to the diagonal when the Cholesky factorisation fails.
    """
    finite = jnp.all(jnp.isfinite(particles), axis=1)
    weights = finite / jnp.maximum(jnp.sum(finite), 1)
    mean, cov = covariance_estimate(particles, weights)
    cov = spread**2 * cov
    factor = jnp.linalg.cholesky(cov)
    factor = jnp.where(jnp.all(jnp.isfinite(factor)), factor, jnp.diag(jnp.sqrt(jnp.diag(cov))))
    eye = jnp.eye(factor.shape[0], dtype=factor.dtype)
    return GaussianReference(mean, factor, jax.scipy.linalg.solve_triangular(factor, eye, lower=True))


def init_digest(values: dict) -> str:
    """A short digest of a warm start's site values, for checkpoint fingerprints."""
    digest = hashlib.sha1()
    for name in sorted(values):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(values[name]).tobytes())
    return digest.hexdigest()


def as_site_values(init, latent_names) -> dict:
    """``init`` (a ``Result``, or a dict site -> array with a leading particle axis) as the dict
    of its latent sites, checked: every latent site present, one particle count, at least two."""
    samples = getattr(init, "samples", init)
    if not isinstance(samples, dict):
        raise ValueError(
            f"init must be a pc.Result or a dict of latent site values, got {type(init).__name__}"
        )
    missing = [n for n in latent_names if n not in samples]
    if missing:
        raise ValueError(f"init has no values for the latent site(s) {missing}")
    values = {n: np.asarray(samples[n]) for n in latent_names}
    counts = {v.shape[0] if v.ndim else 0 for v in values.values()}
    if len(counts) != 1 or min(counts) < 2:
        raise ValueError(
            "init needs the same number (>= 2) of particles on the leading axis of every latent "
            f"site, got {({n: v.shape for n, v in values.items()})}"
        )
    return values
