"""Waste-free rejuvenation (``TSMC(chain_length=P)``) against closed forms and its contracts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC
from ppl_control.inference import resampling
from ppl_control.inference.rejuvenation import MoveSettings
from ppl_control.inference.waste_free import check_chain_length, rejuvenate_waste_free

from _lqr_closed_form import assert_matches_lqr_closed_form


def test_chains_keep_an_exactly_sampled_gaussian_and_every_state():
    """Exact draws of the correlated 40-d LQR target, equally weighted: resampling 512 of them and
    running 7 self-tuned HMC moves from each must leave all 4096 kept states exact draws.

    The states of a chain are correlated, so the population is worth fewer than 4096 independent
    draws but at least the 512 chains: standard error of a mean at most sd / 22, of a variance
    ratio at most 6%; the bounds below are the largest over 40 coordinates, about 3 of those."""
    temperature = 0.05
    mean, cov, _ = models.lqr.gaussian_target(temperature=temperature)
    ld = pc.log_density(pc.trajectory_model(models.get("lqr", temperature=temperature)))
    n, chain_length = 4096, 8
    z = jnp.asarray(np.random.default_rng(0).multivariate_normal(mean, cov, size=n), dtype=jnp.float32)
    value_and_grad = jax.value_and_grad(lambda v: (ld.log_target(v, 1.0), ld.log_parts(v)), has_aux=True)
    settings = MoveSettings(num_moves=None, max_moves=6, num_leapfrog=None, max_leapfrog=64,
                            target_correlation=0.5, target_accept=0.65, step_jitter=0.5)
    run = jax.jit(lambda key, z: rejuvenate_waste_free(
        key, z, jnp.full((n,), 1.0 / n), (jnp.zeros(n), jnp.zeros(n)), value_and_grad, resampling.systematic,
        "dense", jnp.asarray(0.5), jnp.asarray(8), settings, chain_length))
    moved, logp, (_, log_likelihood), _, length, info, _ = run(jax.random.key(3), z)
    moved = np.asarray(moved, dtype=np.float64)
    assert moved.shape == (n, 40) and logp.shape == (n,) and log_likelihood.shape == (n,)
    # Chain by chain: every chain's first state is one of the given particles, the rest moved on.
    starts = moved[::chain_length].astype(np.float32)
    given = {row.tobytes() for row in np.asarray(z)}
    assert all(row.tobytes() in given for row in starts)
    assert int(info.num_moves) == chain_length - 1 and int(info.probe_length) == 16
    assert int(info.num_evaluations) > n + (n // chain_length) * (chain_length - 1)
    assert 1 <= int(length) <= 64 and float(info.acceptance_rate) > 0.3
    assert float(info.correlation) < 0.9  # the chains really moved
    for name in ("particle_acceptance_rate", "particle_diverging", "particle_step_size"):
        assert getattr(info, name).shape == (n,), name
    np.testing.assert_allclose(np.asarray(logp), np.asarray(jax.vmap(ld.log_target, (0, None))(
        jnp.asarray(moved, jnp.float32), 1.0)), rtol=1e-4, atol=1e-3)
    sd = np.sqrt(np.diag(cov))
    assert np.max(np.abs(moved.mean(0) - mean) / sd) < 0.15
    assert np.max(np.abs(moved.var(0) / np.diag(cov) - 1.0)) < 0.2


@pytest.fixture(scope="module")
def lqr_waste_free():
    """Waste-free TSMC (512 particles, chains of 16) on the 40-variable LQR, two seeds."""
    algo = TSMC(pc.trajectory_model(models.get("lqr")), num_particles=512, chain_length=16, max_leapfrog=512,
                progress_bar=False)
    return algo, [algo.run(jax.random.key(seed)) for seed in (0, 1)]


def test_waste_free_tsmc_matches_the_closed_form_posterior_and_evidence(lqr_waste_free):
    """Same tolerances on the evidence and the mean as the standard run at 1024 particles
    (test_tsmc); the variance bound is wider because 512 correlated states are fewer draws."""
    _, results = lqr_waste_free
    for result in results:
        assert_matches_lqr_closed_form(result, variance_tolerance=0.4)


def test_waste_free_stages_make_chain_length_minus_one_moves_and_repeat_bit_for_bit(lqr_waste_free):
    algo, (first, _) = lqr_waste_free
    stats = first.stats
    assert np.all(stats["num_moves"] == 15) and np.all(stats["probe_length"] >= 1)
    # the refresh of all 512 particles, then 15 moves of 32 chains of at least one leapfrog step
    assert np.all(stats["num_evaluations"] >= 512 + 32 * 15)
    assert first.config["chain_length"] == 16
    again = algo.run(jax.random.key(0))
    np.testing.assert_array_equal(first.samples["controls"], again.samples["controls"])
    assert first.log_evidence == again.log_evidence


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_particles=64, chain_length=1), "chain_length"),
        (dict(num_particles=64, chain_length=6), "divide num_particles"),
        (dict(num_particles=64, chain_length=8, num_moves=3), "num_moves and chain_length"),
    ],
)
def test_chain_length_errors_name_the_cause(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TSMC(pc.trajectory_model(models.get("lqr", horizon=2)), **kwargs)


@pytest.mark.parametrize(
    "num_particles, num_devices, num_moves, expected",
    [
        (256, 1, None, 16),  # the longest chain up to 16
        (100, 1, None, 10),  # ... that divides the population
        (24, 1, None, 3),  # ... and leaves at least 8 chains
        (2, 1, None, None),  # too few particles for chains: standard rejuvenation
        (256, 1, 3, None),  # a fixed num_moves is standard rejuvenation's knob
        (96, 4, None, 12),  # 8 chains over 4 devices (16 would leave 6)
        (128, 16, None, 8),  # 16 chains, one a device
    ],
)
def test_auto_chain_length(num_particles, num_devices, num_moves, expected):
    assert check_chain_length("auto", num_particles, num_devices, num_moves) == expected
