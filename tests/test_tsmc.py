"""TSMC against closed forms (linear-quadratic), on the pendulum swing-up, and its contracts."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC
from ppl_control.models.pendulum import upright_error

from _lqr_closed_form import assert_matches_lqr_closed_form


@pytest.fixture(scope="module")
def lqr_runs():
    """Two seeds of TSMC as it ships (self-tuning moves), 1024 particles, on the 40-variable LQR
    problem, one compiled stage."""
    algo = TSMC(pc.trajectory_model(models.get("lqr")), num_particles=1024, progress_bar=False)
    return algo, [algo.run(jax.random.key(seed)) for seed in (0, 1)]


def test_lqr_matches_closed_form_posterior_and_evidence(lqr_runs):
    _, results = lqr_runs
    assert models.lqr.gaussian_target()[0].shape[0] >= 40
    for result in results:
        assert_matches_lqr_closed_form(result, variance_tolerance=0.25)


def test_stage_statistics_are_recorded(lqr_runs):
    _, (result, _) = lqr_runs
    stats = result.stats
    num_stages = result.config["num_stages"]
    for name in ("beta", "ess", "acceptance_rate", "step_size", "log_evidence_increment",
                 "cost_min", "cost_mean", "num_divergent", "num_moves", "num_leapfrog", "probe_length",
                 "num_evaluations", "correlation", "unmoved_fraction", "position_shrinkage",
                 "gradient_shrinkage"):
        assert stats[name].shape == (num_stages,), name
    # every stage probes (adaptive length) and moves at least once; the count is what was spent
    assert result.config["chain_length"] is None  # standard rejuvenation by default
    assert np.all(stats["probe_length"] >= 1) and np.all(stats["num_moves"] >= 1)
    assert np.all(stats["num_evaluations"] >= 1024 * (1 + stats["probe_length"]))
    assert np.all(np.diff(stats["beta"]) > 0)
    # every stage but the last keeps the ESS at the target; the last may keep more
    np.testing.assert_allclose(stats["ess"][:-1] / 1024, 0.5, rtol=0.01)
    assert stats["ess"][-1] / 1024 >= 0.5 * 0.99
    assert result.log_evidence == pytest.approx(stats["log_evidence_increment"].sum(), rel=1e-5)
    assert np.all(stats["cost_min"] <= stats["cost_mean"])
    assert 0.4 < stats["acceptance_rate"][1:].mean() < 0.9
    assert set(result.particle_stats) >= {"lp", "acceptance_rate", "diverging", "step_size"}


def test_same_key_same_result_and_compiled_stage_is_reused(lqr_runs):
    algo, (first, _) = lqr_runs
    before = algo._stage._cached._cache_size() if hasattr(algo._stage, "_cached") else None
    again = algo.run(jax.random.key(0))
    np.testing.assert_array_equal(first.samples["controls"], again.samples["controls"])
    assert first.log_evidence == again.log_evidence
    if before is not None:
        assert algo._stage._cached._cache_size() == before


def test_stage_is_traced_once_across_runs():
    calls = []

    def model():
        calls.append(1)
        x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        pc.boltzmann(jnp.sum((x - 1.0) ** 2), temperature=0.5)

    algo = TSMC(model, num_particles=64, num_moves=2, num_leapfrog=3, progress_bar=False)
    algo.run(jax.random.key(0))
    traced = len(calls)
    algo.run(jax.random.key(1))
    assert len(calls) == traced  # the second run compiled nothing


@pytest.fixture(scope="module")
def pendulum_result():
    problem = models.get("pendulum")
    result = TSMC(pc.trajectory_model(problem), num_particles=256, progress_bar=False).run(jax.random.key(0))
    return problem, result


def test_pendulum_best_particle_swings_up(pendulum_result):
    problem, result = pendulum_result
    states = problem.trajectory(jnp.asarray(result.best()["controls"]))
    theta, omega = states[-1]
    assert float(upright_error(theta)) < 0.1
    assert abs(float(omega)) < 0.5
    prior_cost = np.median(jax.vmap(problem.cost)(jnp.zeros((1,) + problem.controls_shape)))
    assert result.best()["cost"] < 0.6 * prior_cost


def _nan_model(bad_fraction):
    """Costs NaN or inf where x[0] falls in a band, so a share of prior draws are bad."""

    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        cost = jnp.sum((x - 0.5) ** 2)
        threshold = jax.scipy.stats.norm.ppf(bad_fraction)
        cost = jnp.where(x[0] < threshold, jnp.where(x[1] > 0, jnp.nan, jnp.inf), cost)
        pc.boltzmann(cost, temperature=0.2)

    return model


def test_non_finite_particles_get_zero_weight_and_the_run_finishes():
    result = TSMC(_nan_model(0.3), num_particles=256, num_moves=3, num_leapfrog=5,
                  progress_bar=False).run(jax.random.key(4))
    assert np.all(np.isfinite(result.samples["cost"]))
    assert np.isfinite(result.log_evidence)
    assert result.stats["num_finite"][0] < 256


def test_all_non_finite_is_an_inference_error():
    with pytest.raises(pc.InferenceError, match="every particle"):
        TSMC(_nan_model(1.0), num_particles=16, progress_bar=False).run(jax.random.key(0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_particles=1), "num_particles"),
        (dict(target_ess=1.0), "target_ess"),
        (dict(target_ess=0.0), "target_ess"),
        (dict(num_moves=0), "num_moves"),
        (dict(resampling="residual"), "resampling"),
        (dict(metric="full"), "metric"),
        (dict(max_unmoved=1.5), "max_unmoved"),
        (dict(cross_fit="yes"), "cross_fit"),
    ],
)
def test_configuration_errors_name_the_cause(kwargs, message):
    model = pc.trajectory_model(models.get("lqr", horizon=2))
    with pytest.raises(ValueError, match=message):
        TSMC(model, **kwargs)


@pytest.fixture(scope="module")
def small_lqr_tsmc():
    """A small TSMC (64 particles, fixed moves, 10-variable LQR) and its twin stopped after two
    stages; the max_stages and checkpoint tests share their compiled stages."""
    model = pc.trajectory_model(models.get("lqr", horizon=4, temperature=0.1))
    config = dict(num_particles=64, num_moves=2, num_leapfrog=3, progress_bar=False)
    return model, TSMC(model, **config), TSMC(model, max_stages=2, **config)


def test_max_stages_warns_and_reports_final_beta(small_lqr_tsmc):
    _, _, stopped = small_lqr_tsmc
    with pytest.warns(UserWarning, match="max_stages"):
        result = stopped.run(jax.random.key(0))
    assert result.config["final_beta"] < 1.0 and result.config["num_stages"] == 2


def test_checkpoint_resume_gives_the_uninterrupted_result(small_lqr_tsmc, tmp_path):
    model, algo, stopped = small_lqr_tsmc
    path = str(tmp_path / "run.npz")
    full = algo.run(jax.random.key(7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped.run(jax.random.key(7), checkpoint=path)
    # Resumed by the other instance: what it needs comes from the file the stopped one wrote
    # (a compiled stage holds no run state), and it compiles nothing new.
    resumed = algo.run(jax.random.key(7), checkpoint=path)
    assert resumed.config["num_stages"] == full.config["num_stages"] > 2
    np.testing.assert_array_equal(resumed.samples["controls"], full.samples["controls"])
    np.testing.assert_array_equal(resumed.stats["beta"], full.stats["beta"])
    assert resumed.log_evidence == full.log_evidence
    with pytest.raises(ValueError, match="another run configuration"):
        TSMC(model, num_particles=64, num_moves=3, num_leapfrog=3, progress_bar=False).run(
            jax.random.key(7), checkpoint=path)


def test_warm_start_keeps_the_evidence_and_needs_fewer_stages(lqr_runs):
    """Tempering from a Gaussian fitted to a guess (geometric path) still estimates the model's
    log Z: from exact posterior draws in few stages, from a biased, too narrow guess in more."""
    algo, (cold, _) = lqr_runs
    mean, cov, log_z = models.lqr.gaussian_target()
    rng = np.random.default_rng(0)
    exact = rng.multivariate_normal(mean, cov, size=256).reshape(256, 20, 2)
    warm = algo.run(jax.random.key(1), init={"controls": exact})
    assert warm.config["warm_start"] and warm.config["num_stages"] < cold.config["num_stages"]
    assert abs(warm.log_evidence - log_z) < 0.3
    shifted = rng.multivariate_normal(mean + 0.5 * np.sqrt(np.diag(cov)), 0.5 * cov, size=64)
    off = algo.run(jax.random.key(2), init={"controls": shifted.reshape(64, 20, 2)})
    assert abs(off.log_evidence - log_z) < 0.5
    u = off.samples["controls"].reshape(1024, -1)
    assert np.sqrt(np.mean(((u.mean(0) - mean) / np.sqrt(np.diag(cov))) ** 2)) < 0.15
    with pytest.raises(ValueError, match="latent site"):
        algo.run(jax.random.key(3), init={"other": exact})
