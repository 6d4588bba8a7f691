"""The HMC metric of a particle population, from positions *and* gradients.

HMC with inverse mass matrix ``M = S S'`` behaves as plain HMC in whitened coordinates
``y = S^{-1} z``; the closer the whitened target is to a standard normal, the larger the step one
step size allows in every direction and the shorter the trajectory that crosses it.

Why not the particles' covariance alone. Trajectory-optimisation posteriors are very badly
conditioned (an early control moves the final state far more than a late one), and with
``n_eff`` weighted particles in ``D`` dimensions the sample covariance of the positions smears
the wide directions' variance into the narrow ones (Marchenko-Pastur: its small eigenvalues come
out too large when they are tiny against the large ones). Whitening by it leaves directions
much narrower than the metric believes, and those force tiny steps; shrinking it toward its
diagonal, the usual remedy for noise, makes this worse by undoing the correlations.

The gradients know the narrow directions. For a target ``N(mu, Sigma)``, ``Cov(z) = Sigma`` and
``Cov(grad log pi(z)) = Sigma^{-1}``: the positions measure the wide directions well, the
gradients the narrow ones. Every particle carries its gradient at the new temperature (the
refresh pass computes it), so both are free. We use the metric that makes the whitened target
closest to a standard normal in Fisher divergence among affine maps (Seyboldt et al., nutpie,
2024; diagonal: ``M_ii = sqrt(Var z_i / Var g_i)``), which is the matrix geometric mean::

    M = A # B^{-1},   A = Cov(z), B = Cov(g)        (M B M = A; M = Sigma for a Gaussian)

computed as ``M = L C^{-1/2} L'`` with ``L L' = A`` and ``C = L' B L``. Noise: ``A`` is shrunk
toward its diagonal and ``C`` (the identity for an exact Gaussian) toward ``(tr C / D) I``, each
by the oracle-approximating shrinkage intensity (OAS; Chen, Wiesel, Eldar & Hero 2010) for
``n_eff`` samples; as ``n_eff`` grows both intensities vanish and ``M`` tends to the target's
covariance for a Gaussian target. The factor ``S = L C^{-1/4}`` (the symmetric root
``V diag(c^{-1/4}) V'`` of ``C = V diag(c) V'``) gives momenta, kinetic energy and whitening.

**Separated groups.** A population that holds two modes (a swing-up to the left and one to the
right, two routes around an obstacle) spreads far along the line between them. That spread is not
something the moves can cross or should be scaled for: HMC moves each particle within its own
mode, and the weights, not the moves, keep the modes' shares. Fitted into ``A``, it inflates the
metric along that line (the geometric mean keeps ``sqrt`` of the excess), the step size shrinks to
the modes' own width there and the trajectories lengthen to make up for it. On the pendulum
swing-up (``models.get("pendulum")``, 256 particles, seeds 0, 1, 4: runs that kept both swings)
that cost 2.6 to 3x the gradients. So ``A`` is the covariance *within* groups
(``group_centres``): when the population falls into two groups along its principal axis that are
far apart against their own spread, each particle is centred at its group's mean, not at the
population's. A single mode is left as it is.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

# Relative jitter added to diagonals: keeps factorisations defined when particles are (nearly)
# collinear, far below any scale the moves resolve.
JITTER = 1e-8


class Metric(NamedTuple):
    """The HMC metric: ``inverse_mass = S S'`` and ``momentum_factor = S^{-T}``.

    Dense: ``(D, D)`` matrices; diagonal: ``(D,)`` vectors. ``whiten(dz)`` maps a displacement to
    the whitened coordinates ``S^{-1} dz``, where the target is roughly standard normal.
    """

    momentum_factor: jax.Array
    inverse_mass: jax.Array

    @property
    def dense(self) -> bool:
        return self.inverse_mass.ndim == 2

    def whiten(self, dz: jax.Array) -> jax.Array:
        """``S^{-1} dz`` for one displacement ``(D,)`` or a batch ``(..., D)``."""
        return dz @ self.momentum_factor if self.dense else dz * self.momentum_factor

    def velocity(self, p: jax.Array) -> jax.Array:
        """``Sigma p`` (``Sigma = S S'``, the inverse mass) for one momentum ``(D,)``."""
        return self.inverse_mass @ p if self.dense else self.inverse_mass * p

    def momentum(self, xi: jax.Array) -> jax.Array:
        """``S^{-T} xi``: a momentum ``~ N(0, Sigma^{-1})`` from a standard normal ``xi`` ``(D,)``."""
        return self.momentum_factor @ xi if self.dense else self.momentum_factor * xi


class CrossFitted(NamedTuple):
    """Two metrics, each fitted on one half of the population, and for each particle which one it
    moves with: the one fitted on the half it did *not* descend from (``fit_cross_metric``).

    It offers ``Metric``'s operations; each computes both metrics' products and keeps the
    particle's (``use_second`` is a scalar inside a per-particle function, ``(N,)`` for a batch).
    """

    first: Metric
    second: Metric
    use_second: jax.Array

    def _pick(self, on_first: jax.Array, on_second: jax.Array) -> jax.Array:
        return jnp.where(self.use_second[..., None], on_second, on_first)

    def whiten(self, dz: jax.Array) -> jax.Array:
        return self._pick(self.first.whiten(dz), self.second.whiten(dz))

    def velocity(self, p: jax.Array) -> jax.Array:
        return self._pick(self.first.velocity(p), self.second.velocity(p))

    def momentum(self, xi: jax.Array) -> jax.Array:
        return self._pick(self.first.momentum(xi), self.second.momentum(xi))


class MetricInfo(NamedTuple):
    """How the metric was estimated: the two OAS intensities (0 = data as is, 1 = target)."""

    position_shrinkage: jax.Array
    gradient_shrinkage: jax.Array


def weighted_covariance(values: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Mean and covariance of ``values`` (N, D) under normalised ``weights`` (N,).

    Rows with zero weight, or with any non-finite entry, are masked out before any arithmetic.
    """
    alive = (weights > 0) & jnp.all(jnp.isfinite(values), axis=-1)
    weights = jnp.where(alive, weights, 0.0)
    weights = weights / jnp.maximum(jnp.sum(weights), jnp.finfo(weights.dtype).tiny)
    safe = jnp.where(alive[:, None], values, 0.0)
    mean = weights @ safe
    centred = jnp.where(alive[:, None], safe - mean, 0.0)
    return mean, (centred * weights[:, None]).T @ centred


def oas_intensity(cov: jax.Array, num_samples) -> jax.Array:
    """The OAS shrinkage intensity of a covariance estimate toward ``(tr cov / D) I``.

    Chen et al. (2010), eq. 23, in scikit-learn's form: with ``mu = tr(cov) / D`` and
    ``alpha = mean(cov**2)``, ``rho = (alpha + mu^2) / ((n + 1) (alpha - mu^2 / D))``, clipped to
    ``[0, 1]``; 1 when ``cov`` is exactly spherical. To shrink toward a diagonal target, pass the
    correlation matrix.
    """
    dim = cov.shape[0]
    mu = jnp.trace(cov) / dim
    alpha = jnp.mean(cov**2)
    numerator = alpha + mu**2
    denominator = (num_samples + 1.0) * (alpha - mu**2 / dim)
    rho = jnp.where(denominator > 0, numerator / jnp.where(denominator > 0, denominator, 1.0), 1.0)
    return jnp.clip(rho, 0.0, 1.0)


def _shrink_toward_diagonal(cov: jax.Array, num_samples):
    """``(cov', rho)``: OAS on the correlation matrix, so the diagonal (the variances) is kept."""
    std = jnp.sqrt(jnp.diag(cov))
    correlation = cov / (std[:, None] * std[None, :])
    rho = oas_intensity(correlation, num_samples)
    off_diagonal = 1.0 - jnp.eye(cov.shape[0], dtype=cov.dtype)
    return cov * (1.0 - rho * off_diagonal), rho


def _floor(variance: jax.Array) -> jax.Array:
    """``JITTER`` times the mean variance; a population with no spread at all has no scale to
    offer, and gets unit variances instead (the step size then finds the scale)."""
    scale = jnp.mean(variance)
    return jnp.where(scale > jnp.finfo(variance.dtype).tiny / JITTER, JITTER * scale, 1.0)


# Two groups along the principal axis count as separated when the spread between their means is
# more than this share of the population's variance along that axis. Splitting a unimodal
# population at its mean gives 2 / pi (a Gaussian) to 3 / 4 (a uniform); two equal Gaussian modes
# reach 0.9 when their means are about 6 of their standard deviations apart, a 5% / 95% pair at
# about 14: well past what HMC crosses.
SEPARATED_SHARE = 0.9
_POWER_ITERATIONS = 16  # for the principal axis; the gap is large exactly when groups are separated
_SPLIT_ITERATIONS = 8  # 1-D two-means (Lloyd) along it, from a split at the mean


def group_centres(particles: jax.Array, weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(centres, separated)``: ``(N, D)``, each particle's group mean when the weighted population
    falls into two separated groups (module docstring, "Separated groups"), and that boolean.

    The groups: a split of the projections on the principal axis (power iteration on the weighted
    covariance, from the particle furthest from the mean) by two-means; they are separated when
    the between-group variance along that axis exceeds ``SEPARATED_SHARE`` of the total. Rows
    with zero weight or a non-finite entry do not count.
    """
    alive = (weights > 0) & jnp.all(jnp.isfinite(particles), axis=-1)
    tiny = jnp.finfo(particles.dtype).tiny
    w = jnp.where(alive, weights, 0.0)
    w = w / jnp.maximum(jnp.sum(w), tiny)
    safe = jnp.where(alive[:, None], particles, 0.0)
    mean = w @ safe
    x = jnp.where(alive[:, None], safe - mean, 0.0)

    def power(v, _):
        v = (w * (x @ v)) @ x
        return v / jnp.maximum(jnp.linalg.norm(v), tiny), None

    start = x[jnp.argmax(jnp.where(alive, jnp.sum(x**2, axis=-1), -1.0))]
    axis, _ = lax.scan(power, start / jnp.maximum(jnp.linalg.norm(start), tiny), None, length=_POWER_ITERATIONS)
    t = x @ axis

    def shares_and_means(split):
        right = t > split
        w_right = jnp.sum(jnp.where(right, w, 0.0))
        m_right = jnp.sum(jnp.where(right, w * t, 0.0)) / jnp.maximum(w_right, tiny)
        m_left = jnp.sum(jnp.where(right, 0.0, w * t)) / jnp.maximum(1.0 - w_right, tiny)
        return right, w_right, m_left, m_right

    def lloyd(split, _):
        _, _, m_left, m_right = shares_and_means(split)
        return 0.5 * (m_left + m_right), None

    split, _ = lax.scan(lloyd, jnp.zeros((), t.dtype), None, length=_SPLIT_ITERATIONS)
    right, w_right, m_left, m_right = shares_and_means(split)
    between = w_right * (1.0 - w_right) * (m_right - m_left) ** 2
    separated = between > SEPARATED_SHARE * (w @ t**2)
    in_right = jnp.where(right, w, 0.0)
    centre_right = mean + in_right @ x / jnp.maximum(w_right, tiny)
    centre_left = mean + (w - in_right) @ x / jnp.maximum(1.0 - w_right, tiny)
    return jnp.where(right[:, None], centre_right, centre_left), separated


METRICS = ("dense", "diagonal", "covariance")


def fit_metric(particles: jax.Array, grads: jax.Array, weights: jax.Array, kind: str):
    """``(Metric, MetricInfo)`` of the weighted population (see the module docstring).

    Args:
      particles: ``(N, D)`` positions.
      grads: ``(N, D)`` gradients of the log target at those positions.
      weights: ``(N,)`` normalised weights (zero for particles to ignore).
      kind: ``"dense"``, the matrix geometric mean of the positions' covariance and the inverse
        of the gradients'; ``"diagonal"``, ``sqrt(Var z / Var g)`` per coordinate;
        ``"covariance"``, the positions' covariance alone, OAS-shrunk toward its diagonal (what
        a population metric is without gradients: for comparison, and for models whose gradients
        are too noisy to trust).
    """
    if kind not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {kind!r}")
    _, position_cov = weighted_covariance(particles, weights)
    # Within separated groups (module docstring): each particle from its own group's mean.
    centres, separated = group_centres(particles, weights)
    position_cov = jnp.where(separated, weighted_covariance(particles - centres, weights)[1], position_cov)
    _, gradient_cov = weighted_covariance(grads, weights)
    n_eff = 1.0 / jnp.sum(weights**2)
    position_var, gradient_var = jnp.diag(position_cov), jnp.diag(gradient_cov)
    position_var = jnp.maximum(position_var, _floor(position_var))
    gradient_var = jnp.maximum(gradient_var, _floor(gradient_var))
    zero = jnp.zeros((), particles.dtype)
    if kind == "diagonal":
        inverse_mass = jnp.sqrt(position_var / gradient_var)
        return Metric(1.0 / jnp.sqrt(inverse_mass), inverse_mass), MetricInfo(zero, zero)
    position_cov = position_cov + jnp.diag(position_var - jnp.diag(position_cov))  # floored diagonal
    a, rho_a = _shrink_toward_diagonal(position_cov, n_eff)
    fallback = Metric(jnp.diag(1.0 / jnp.sqrt(position_var)), jnp.diag(position_var))
    chol = jnp.linalg.cholesky(a)
    ok = jnp.all(jnp.isfinite(chol))
    chol = jnp.where(ok, chol, jnp.diag(jnp.sqrt(position_var)))
    if kind == "covariance":
        eye = jnp.eye(particles.shape[1], dtype=particles.dtype)
        metric = Metric(jax.scipy.linalg.solve_triangular(chol.T, eye, lower=False), chol @ chol.T)
        return _or_fallback(metric, fallback), MetricInfo(rho_a, zero)
    c = chol.T @ gradient_cov @ chol  # the identity for an exact Gaussian
    c = 0.5 * (c + c.T)
    rho_c = oas_intensity(c, n_eff)
    mu = jnp.trace(c) / c.shape[0]
    c = (1.0 - rho_c) * c + rho_c * mu * jnp.eye(c.shape[0], dtype=c.dtype)
    eigenvalues, vectors = jnp.linalg.eigh(c)
    eigenvalues = jnp.maximum(eigenvalues, _floor(eigenvalues))
    # S = L C^{-1/4}, so S S' = L C^{-1/2} L' = M; S^{-T} = L^{-T} C^{1/4}. The roots are the
    # symmetric ones, V diag(c^{-+1/4}) V': unlike L V diag(c^{-1/4}) they do not depend on which
    # eigenvectors eigh returns where eigenvalues (nearly) coincide, as they do when the metric
    # fits well (C ~ I). So S, and the momenta drawn with it, are continuous in the covariances:
    # sums over particles added up in another order (on several devices, say) change them at
    # float rounding level, not by a rotation.
    factor = chol @ ((vectors * eigenvalues ** -0.25) @ vectors.T)
    momentum_factor = jax.scipy.linalg.solve_triangular(
        chol.T, (vectors * eigenvalues**0.25) @ vectors.T, lower=False)
    return _or_fallback(Metric(momentum_factor, factor @ factor.T), fallback), MetricInfo(rho_a, rho_c)


def fit_cross_metric(particles: jax.Array, grads: jax.Array, weights: jax.Array, kind: str,
                     in_first_half: jax.Array):
    """``(CrossFitted, MetricInfo)``: ``fit_metric`` on each half of the weighted population
    (``in_first_half``, a boolean ``(N,)`` split), for moving the particles of the other half.

    Why. A metric fitted on all the particles depends on each particle it then moves: in ``D``
    dimensions one particle's position and gradient change the fitted covariances along its own
    direction by about ``D / n_eff`` (15% at ``D = 40``, ``n_eff = 256``). The moves then no longer
    leave the target exactly invariant: with the dense metric the population came out
    under-dispersed after every stage, and over the stages of a sharp target the log-evidence
    drifted upward (``benchmarks.tsmc_vs_blackjax``). A metric fitted on the other half does not
    depend on the particle it moves, so each move is an exact HMC move of the target given the
    other half (cross-fitting). ``use_second`` is set to ``in_first_half`` (the first half moves
    with the second half's metric); resampling maps it to the descendants.

    A half without weight (every particle there has weight 0) borrows the other half's metric.
    The info is the two halves' mean shrinkage.
    """
    first_weights = jnp.where(in_first_half, weights, 0.0)
    second_weights = weights - first_weights
    first, first_info = fit_metric(particles, grads, _normalised(first_weights), kind)
    second, second_info = fit_metric(particles, grads, _normalised(second_weights), kind)
    first_ok, second_ok = jnp.sum(first_weights) > 0, jnp.sum(second_weights) > 0
    choose = lambda ok, mine, other: jax.tree.map(lambda a, b: jnp.where(ok, a, b), mine, other)
    first, second = choose(first_ok, first, second), choose(second_ok, second, first)
    info = jax.tree.map(lambda a, b: 0.5 * (a + b), first_info, second_info)
    return CrossFitted(first, second, in_first_half), info


def _normalised(weights: jax.Array) -> jax.Array:
    return weights / jnp.maximum(jnp.sum(weights), jnp.finfo(weights.dtype).tiny)


def _or_fallback(metric: Metric, fallback: Metric) -> Metric:
    """``metric`` where every entry is finite, else ``fallback`` (the diagonal of the positions)."""
    ok = jnp.all(jnp.isfinite(metric.momentum_factor)) & jnp.all(jnp.isfinite(metric.inverse_mass))
    return jax.tree.map(lambda good, bad: jnp.where(ok, good, bad), metric, fallback)


def covariance_estimate(particles: jax.Array, weights: jax.Array):
    """``(mean, cov)``: the weighted mean and the covariance shrunk toward its diagonal by OAS
    (positive definite); what a warm start fits its Gaussian with."""
    mean, cov = weighted_covariance(particles, weights)
    variance = jnp.diag(cov)
    variance = jnp.maximum(variance, _floor(variance))
    cov = cov + jnp.diag(variance - jnp.diag(cov))
    n_eff = 1.0 / jnp.sum(jnp.where(jnp.all(jnp.isfinite(particles), axis=-1), weights, 0.0) ** 2)
    cov, _ = _shrink_toward_diagonal(cov, n_eff)
    return mean, cov
