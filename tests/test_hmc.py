"""HMC moves leave an exactly sampled target unchanged, whatever the metric."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference.hmc import hmc_move
from ppl_control.inference.metric import Metric, fit_metric


def _tilted_lqr(temperature):
    mean, cov, _ = models.lqr.gaussian_target(temperature=temperature)
    ld = pc.log_density(pc.trajectory_model(models.get("lqr", temperature=temperature)))
    return ld, mean, cov


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "diagonal"])
def test_moves_at_fixed_beta_keep_exact_gaussian_moments(dense):
    """Start from exact draws of the LQR target (a correlated 40-d Gaussian), apply 10 HMC moves
    with a metric fitted to the particles, and compare moments with the closed form.

    Tolerances: with n = 2000 draws the standard error of a mean is sd/45 and of a variance about
    3% of it; the bounds allow for that (max over 40 coordinates) but catch a kernel that drifts
    (a wrong kinetic term or metric moves the variance by far more than 15%).
    """
    ld, mean, cov = _tilted_lqr(temperature=0.05)
    n = 2000
    key_init, key_moves = jax.random.split(jax.random.key(3))
    z = jnp.asarray(np.random.default_rng(0).multivariate_normal(mean, cov, size=n), dtype=jnp.float32)
    value_and_grad = jax.value_and_grad(lambda v: (ld.log_target(v, 1.0), ()), has_aux=True)
    (logp, aux), grad = jax.vmap(value_and_grad)(z)
    metric, _ = fit_metric(z, grad, jnp.full((n,), 1.0 / n), "dense" if dense else "diagonal")
    move = jax.jit(jax.vmap(hmc_move, in_axes=(0, 0, 0, 0, 0, None, None, None, None, None)),
                   static_argnums=(5, 8))
    accepted = []
    for key in jax.random.split(key_moves, 10):
        z, logp, grad, aux, info = move(jax.random.split(key, n), z, logp, grad, aux, value_and_grad,
                                        0.5 if dense else 0.1, metric, 8, 0.5)
        accepted.append(float(info.acceptance_rate.mean()))
    z = np.asarray(z, dtype=np.float64)
    sd = np.sqrt(np.diag(cov))
    assert min(accepted) > 0.3, accepted  # the chain really moved
    assert np.max(np.abs(z.mean(0) - mean) / sd) < 0.12
    assert np.max(np.abs(z.var(0) / np.diag(cov) - 1.0)) < 0.15


def test_nan_proposal_is_rejected_and_counted_divergent():
    """The log density climbs toward x0 > 0.5, where it is NaN: every trajectory ends there."""
    value_and_grad = jax.value_and_grad(
        lambda v: (jnp.where(v[0] > 0.5, jnp.nan, 10.0 * v[0]), ()), has_aux=True
    )
    z = jnp.array([0.4, 0.0])
    (logp, aux), grad = value_and_grad(z)
    new_z, new_logp, _, _, info = hmc_move(
        jax.random.key(0), z, logp, grad, aux, value_and_grad, 0.5, Metric(momentum_factor=jnp.ones(2), inverse_mass=jnp.ones(2)), 5, 0.0
    )
    assert bool(info.diverging)
    assert float(info.acceptance_rate) == 0.0
    assert info.diverging.dtype == jnp.bool_
    np.testing.assert_array_equal(new_z, z)
    assert float(new_logp) == float(logp)


def test_refresh_pass_returns_the_gradient_at_the_position_without_moving():
    value_and_grad = jax.value_and_grad(lambda v: (-0.5 * jnp.sum((v - 1.0) ** 2), v[0]), has_aux=True)
    z = jnp.array([0.3, -2.0])
    metric = Metric(momentum_factor=jnp.ones(2), inverse_mass=jnp.ones(2))
    new_z, logp, grad, aux, info = hmc_move(
        jax.random.key(0), z, jnp.array(-jnp.inf), jnp.zeros(2), jnp.array(0.0), value_and_grad,
        0.7, metric, 5, 0.5, jnp.array(True),
    )
    np.testing.assert_array_equal(new_z, z)
    np.testing.assert_allclose(grad, 1.0 - z)
    assert float(logp) == pytest.approx(-0.5 * float(jnp.sum((z - 1.0) ** 2)))
    assert float(aux) == pytest.approx(0.3) and not bool(info.diverging)
