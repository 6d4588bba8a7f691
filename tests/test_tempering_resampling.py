"""The ESS, the bisection that picks beta, and the resampling schemes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ppl_control.inference import resampling
from ppl_control.inference.tempering import ess, incremental_log_weights, next_delta


def test_ess_on_degenerate_and_uniform_weights():
    assert float(ess(jnp.zeros(10))) == pytest.approx(10.0)
    assert float(ess(jnp.array([0.0, -jnp.inf, -jnp.inf]))) == pytest.approx(1.0)
    assert float(ess(jnp.array([1000.0, 1000.0, -jnp.inf]))) == pytest.approx(2.0)  # no overflow


@pytest.mark.parametrize("target", [0.3, 0.5, 0.9])
def test_bisection_hits_target_ess_within_one_percent(target):
    # An asymmetric log-likelihood (a sign bug in the weights would change the answer).
    log_lik = -jnp.exp(jax.random.normal(jax.random.key(0), (1000,)) * 1.5) * 40.0
    delta, reached = next_delta(log_lik, 1.0, target)
    assert not bool(reached)
    achieved = float(ess(incremental_log_weights(log_lik, delta))) / 1000
    assert achieved == pytest.approx(target, rel=0.01)


def test_bisection_goes_straight_to_one_when_ess_allows():
    log_lik = -0.01 * jnp.arange(100.0)
    delta, reached = next_delta(log_lik, 0.7, 0.5)
    assert bool(reached) and float(delta) == pytest.approx(0.7)


def test_non_finite_log_likelihood_gets_zero_weight_and_target_is_relative():
    log_lik = jnp.concatenate([jnp.array([jnp.nan, jnp.inf, -jnp.inf]), -jnp.linspace(0, 50, 97)])
    w = incremental_log_weights(log_lik, 0.1)
    assert bool(jnp.all(w[:3] == -jnp.inf)) and bool(jnp.all(jnp.isfinite(w[3:])))
    delta, _ = next_delta(log_lik, 1.0, 0.5)
    # the target is half of the ESS among the 97 particles that can carry weight
    assert float(ess(incremental_log_weights(log_lik, delta))) == pytest.approx(48.5, rel=0.01)


@pytest.mark.parametrize("scheme", ["systematic", "stratified", "multinomial"])
def test_resampling_is_unbiased(scheme):
    """Mean offspring counts over R repetitions match N w_i.

    Each count has variance at most N w_i (1 - w_i) per draw (multinomial, the largest), so the
    mean over R = 4000 repetitions has standard error below sqrt(N w_i / R); we allow 5 of them.
    """
    resample = jax.jit(resampling.get(scheme), static_argnums=2)
    weights = jnp.array([0.02, 0.08, 0.3, 0.001, 0.199, 0.4])
    n, reps = 6, 4000
    counts = jax.vmap(lambda k: jnp.bincount(resample(k, weights, n), length=n))(
        jax.random.split(jax.random.key(1), reps)
    )
    mean_counts = np.asarray(counts.mean(0))
    expected = n * np.asarray(weights)
    tolerance = 5 * np.sqrt(expected / reps) + 1e-3
    assert np.all(np.abs(mean_counts - expected) < tolerance), (mean_counts, expected)
    assert int(counts.sum(1).min()) == n


def test_systematic_resampling_counts_stay_within_one_of_expectation():
    weights = jax.random.dirichlet(jax.random.key(2), jnp.ones(50))
    idx = resampling.systematic(jax.random.key(3), weights, 50)
    counts = np.bincount(np.asarray(idx), minlength=50)
    assert np.all(np.abs(counts - 50 * np.asarray(weights)) < 1.0 + 1e-5)


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown resampling scheme 'bogus'"):
        resampling.get("bogus")
