"""The population metric against closed forms: Gaussian targets whose covariance is known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_control.inference.metric import fit_cross_metric, fit_metric, group_centres, oas_intensity
from ppl_control.inference.tuning import whitened_spread


def _correlated_gaussian(dim, seed=0):
    """A covariance with eigenvalues spread over four decades and random eigenvectors."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    cov = (q * np.logspace(-2, 2, dim)) @ q.T
    return cov


def _exact_population(cov, n, seed=1):
    """Exact draws ``z ~ N(0, cov)`` and their exact gradients ``-cov^{-1} z``."""
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal(np.zeros(len(cov)), cov, size=n)
    return z, -z @ np.linalg.inv(cov)


def test_dense_metric_tends_to_the_true_covariance_with_many_particles():
    cov = _correlated_gaussian(6)
    z, g = _exact_population(cov, 200_000)
    metric, info = fit_metric(jnp.asarray(z), jnp.asarray(g), jnp.full(len(z), 1.0 / len(z)), "dense")
    mass = np.asarray(metric.inverse_mass, np.float64)
    # Relative error in every direction: the whitened covariance cov^{-1/2} M cov^{-1/2} is ~ I.
    w, v = np.linalg.eigh(cov)
    root_inv = (v / np.sqrt(w)) @ v.T
    assert np.max(np.abs(np.linalg.eigvalsh(root_inv @ mass @ root_inv) - 1.0)) < 0.05
    # The positions' estimate is kept as it is (C = L' B L is then ~ I, so shrinking it is harmless).
    assert float(info.position_shrinkage) < 0.01
    # momentum_factor is S^{-T} for S S' = M: S^{-1} M S^{-T} = I.
    s_inv = np.asarray(metric.momentum_factor, np.float64).T
    np.testing.assert_allclose(s_inv @ mass @ s_inv.T, np.eye(6), atol=1e-3)


def test_gradients_rescue_the_narrow_directions_that_positions_smear():
    """With few particles the sample covariance overstates the narrow directions of a badly
    conditioned target; the gradient-informed metric keeps the whitened target far better
    conditioned (the largest over the smallest whitened variance)."""
    dim = 40
    cov = _correlated_gaussian(dim, seed=2)
    z, g = _exact_population(cov, 120, seed=3)
    weights = jnp.full(120, 1.0 / 120)
    w, v = np.linalg.eigh(cov)
    root = (v * np.sqrt(w)) @ v.T

    def condition(mass):
        whitened = np.linalg.eigvalsh(root @ np.linalg.inv(mass) @ root)
        return whitened.max() / whitened.min()

    metric, _ = fit_metric(jnp.asarray(z), jnp.asarray(g), weights, "dense")
    positions_only, _ = fit_metric(jnp.asarray(z), jnp.asarray(g), weights, "covariance")
    assert condition(np.asarray(metric.inverse_mass, np.float64)) < 0.2 * condition(
        np.asarray(positions_only.inverse_mass, np.float64))


def test_diagonal_metric_is_the_ratio_of_standard_deviations():
    rng = np.random.default_rng(0)
    scales = np.array([0.1, 1.0, 7.0])
    z = rng.normal(size=(100_000, 3)) * scales
    metric, _ = fit_metric(jnp.asarray(z), jnp.asarray(-z / scales**2), jnp.full(100_000, 1e-5), "diagonal")
    np.testing.assert_allclose(np.asarray(metric.inverse_mass), scales**2, rtol=0.02)


def test_oas_intensity_limits():
    assert float(oas_intensity(jnp.eye(5), 100)) == 1.0  # exactly spherical: all the way
    rough = jnp.diag(jnp.array([1.0, 10.0, 100.0]))
    assert float(oas_intensity(rough, 1e6)) < 1e-3  # plenty of data: keep the estimate
    assert 0.0 <= float(oas_intensity(rough, 2)) <= 1.0


def test_zero_weight_and_nan_particles_are_ignored_and_degenerate_input_stays_finite():
    z, g = _exact_population(np.diag([1.0, 4.0]), 500)
    z[0], g[0] = np.nan, np.inf
    weights = np.full(500, 1.0 / 499)
    weights[0] = 0.0
    metric, _ = fit_metric(jnp.asarray(z), jnp.asarray(g), jnp.asarray(weights), "dense")
    assert np.all(np.isfinite(metric.inverse_mass)) and np.all(np.isfinite(metric.momentum_factor))
    same = jnp.ones((8, 2))  # every particle identical: nothing to estimate, still usable
    metric, _ = fit_metric(same, same, jnp.full(8, 0.125), "dense")
    assert np.all(np.isfinite(metric.inverse_mass)) and np.all(np.isfinite(metric.momentum_factor))


@pytest.mark.parametrize("kind", ["dense", "diagonal"])
def test_cross_fitted_metric_is_each_half_fitted_alone_and_each_particle_uses_the_other(kind):
    """Each half's metric is ``fit_metric`` of that half alone (its weights renormalised), and a
    particle's products (velocity, momentum, whitening) are those of the metric fitted on the half
    it is not in: so no particle's own position or gradient enters the metric that moves it."""
    cov = _correlated_gaussian(5)
    z, g = _exact_population(cov, 64)
    weights = np.random.default_rng(2).uniform(size=64)
    weights /= weights.sum()
    in_first = np.arange(64) % 3 == 0
    pair, _ = fit_cross_metric(jnp.asarray(z), jnp.asarray(g), jnp.asarray(weights), kind, jnp.asarray(in_first))
    for metric, mask in ((pair.first, in_first), (pair.second, ~in_first)):
        alone, _ = fit_metric(jnp.asarray(z[mask]), jnp.asarray(g[mask]), jnp.asarray(weights[mask] / weights[mask].sum()),
                              kind)
        np.testing.assert_allclose(np.asarray(metric.inverse_mass), np.asarray(alone.inverse_mass), rtol=1e-4, atol=1e-6)
    xi = jnp.asarray(np.random.default_rng(3).normal(size=(64, 5)), jnp.float32)
    use_second = jnp.asarray(in_first)
    for op in ("velocity", "momentum", "whiten"):
        per_particle = jax.vmap(lambda v, u: getattr(pair._replace(use_second=u), op)(v))(xi, use_second)
        expected = [getattr(pair.second if u else pair.first, op)(v) for v, u in zip(xi, in_first)]
        np.testing.assert_allclose(np.asarray(per_particle), np.asarray(jnp.stack(expected)), rtol=1e-5, atol=1e-6)
    # The batch form (what the population statistics use) agrees with the per-particle one.
    np.testing.assert_allclose(np.asarray(pair._replace(use_second=use_second).whiten(xi)),
                               np.asarray(jnp.stack([getattr(pair.second if u else pair.first, "whiten")(v)
                                                     for v, u in zip(xi, in_first)])), rtol=1e-5, atol=1e-6)


def test_a_cross_fitted_half_without_weight_borrows_the_other_halfs_metric():
    z, g = _exact_population(np.diag([1.0, 4.0]), 100)
    in_first = np.arange(100) < 50
    weights = np.where(in_first, 0.0, 1.0 / 50)
    pair, _ = fit_cross_metric(jnp.asarray(z), jnp.asarray(g), jnp.asarray(weights), "dense", jnp.asarray(in_first))
    np.testing.assert_array_equal(np.asarray(pair.first.inverse_mass), np.asarray(pair.second.inverse_mass))
    assert np.all(np.isfinite(pair.first.momentum_factor))


# -- separated groups (two modes): the metric is the modes', not the mixture's ------------------


def _two_modes(cov, n, shift, share=0.3, seed=4):
    """Exact draws from ``share N(shift, cov) + (1 - share) N(-shift, cov)`` with each draw's
    gradient under its own mode (what HMC sees inside a mode), and which mode each came from."""
    rng = np.random.default_rng(seed)
    first = rng.random(n) < share
    noise = rng.multivariate_normal(np.zeros(len(cov)), cov, size=n)
    z = noise + np.where(first[:, None], shift, -shift)
    return z, -noise @ np.linalg.inv(cov), first


def test_group_centres_find_two_separated_modes_and_leave_one_mode_alone():
    cov = _correlated_gaussian(5, seed=5)
    shift = 12.0 * np.sqrt(np.diag(cov).max()) * np.ones(5) / np.sqrt(5)
    z, _, first = _two_modes(cov, 4000, shift)
    uniform = jnp.full(len(z), 1.0 / len(z))
    centres, separated = group_centres(jnp.asarray(z), uniform)
    assert bool(separated)
    for mode in (first, ~first):  # every particle's centre is its own mode's mean
        np.testing.assert_allclose(np.asarray(centres)[mode], np.broadcast_to(z[mode].mean(0), (mode.sum(), 5)),
                                   rtol=1e-3, atol=1e-3)
    # One Gaussian (a split at its mean explains 2/pi of the variance), and a uniform (3/4): one group.
    gaussian, _ = _exact_population(cov, 4000, seed=6)
    assert not bool(group_centres(jnp.asarray(gaussian), uniform)[1])
    flat = np.random.default_rng(7).uniform(-1.0, 1.0, size=(4000, 5)) * np.array([30.0, 1, 1, 1, 1])
    assert not bool(group_centres(jnp.asarray(flat), uniform)[1])
    # A mode without weight is no group; a non-finite particle is ignored.
    only_second = jnp.where(jnp.asarray(first), 0.0, 1.0)
    assert not bool(group_centres(jnp.asarray(z), only_second / jnp.sum(only_second))[1])
    broken = jnp.asarray(z).at[0].set(jnp.nan)
    centres, separated = group_centres(broken, uniform)
    assert bool(separated) and np.all(np.isfinite(np.asarray(centres)[1:]))


def test_dense_metric_of_two_separated_modes_is_the_modes_covariance():
    """The mixture's spread along the line between the modes is not fitted into the metric: with
    many particles the metric tends to each mode's covariance, where the mixture's would be
    ``1 + share (1 - share) |2 shift|^2 / var`` times wider along that line."""
    cov = _correlated_gaussian(6, seed=8)
    shift = 10.0 * np.sqrt(np.diag(cov).max()) * np.ones(6) / np.sqrt(6)
    z, g, _ = _two_modes(cov, 100_000, shift, seed=9)
    metric, _ = fit_metric(jnp.asarray(z), jnp.asarray(g), jnp.full(len(z), 1.0 / len(z)), "dense")
    w, v = np.linalg.eigh(cov)
    root_inv = (v / np.sqrt(w)) @ v.T
    mass = np.asarray(metric.inverse_mass, np.float64)
    assert np.max(np.abs(np.linalg.eigvalsh(root_inv @ mass @ root_inv) - 1.0)) < 0.05
    # The spread the moves are tuned by (tuning.whitened_spread) is the modes' too: E|y|^2 = D.
    spread = whitened_spread(metric, jnp.asarray(z), jnp.full(len(z), 1.0 / len(z)))
    assert float(spread) == pytest.approx(6.0, rel=0.05)
