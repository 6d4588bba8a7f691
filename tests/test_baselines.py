"""CEM, MPPI and NUTS against the LQR problem's closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl_control as pc
from ppl_control import InferenceError, models
from ppl_control.inference import CEM, MPPI, NUTS


@pytest.fixture(scope="module")
def lqr_weak_prior():
    """LQR with a prior of scale 3: the target's mode is then within 1% of the cost minimiser."""
    problem = models.get("lqr")
    return problem, pc.trajectory_model(problem, prior_scale=3.0)


def _prior_best_cost(model, num):
    ld = pc.log_density(model)
    z = ld.sample_prior(jax.random.key(123), num)
    return float(jnp.min(jax.vmap(ld.constrain)(z)["cost"]))


@pytest.mark.parametrize(
    "algo_cls, config",
    [
        (CEM, dict(num_particles=64, num_steps=100)),
        (MPPI, dict(num_particles=64, num_steps=100, noise_scale=0.2)),
    ],
)
def test_gradient_free_baselines_approach_the_lqr_optimum(lqr_weak_prior, algo_cls, config):
    problem, model = lqr_weak_prior
    reference = problem.reference_cost  # the exact minimum, 31.26
    algo = algo_cls(model, progress_bar=False, **config)
    result = algo.run(jax.random.key(0))
    best = float(result.best()["cost"])
    start = _prior_best_cost(model, config["num_particles"])
    assert start > 1.5 * reference  # the best of as many prior draws is far off
    assert reference - 1e-3 <= best < 1.05 * reference
    assert result.method == algo_cls.__name__.lower() and result.log_evidence is None
    assert result.stats["cost_min"].shape == (100,)
    # The same key gives the same result, from the same compiled functions.
    again = algo.run(jax.random.key(0))
    np.testing.assert_array_equal(again.samples["controls"], result.samples["controls"])


def test_cem_keeps_its_elites(lqr_weak_prior):
    """With elitism the population's best log density never decreases; the elites carry weight."""
    _, model = lqr_weak_prior
    algo = CEM(model, num_particles=16, num_steps=20, progress_bar=False)
    result = algo.run(jax.random.key(1))
    k = algo.num_elites
    assert k == 4 and np.sum(np.isfinite(result.log_weights)) == k
    assert int(result.stats["num_evaluations"].sum()) == 16 + 20 * (16 - k)


def test_mppi_weights_follow_the_temperature(lqr_weak_prior):
    """``w_i ~ exp(-S_i / temperature)`` with ``S`` the negative log density: recompute it."""
    _, model = lqr_weak_prior
    result = MPPI(model, num_particles=8, num_steps=3, temperature=50.0, progress_bar=False).run(jax.random.key(2))
    ld = pc.log_density(model)
    z = jax.vmap(ld.ravel)({"controls": jnp.asarray(result.samples["controls"])})
    s = -np.asarray(jax.vmap(lambda x: ld.log_target(x, 1.0))(z), dtype=np.float64)
    expected = -s / 50.0 - np.logaddexp.reduce(-s / 50.0)
    np.testing.assert_allclose(result.log_weights, expected, atol=1e-4)


def test_nuts_matches_the_lqr_gaussian_target():
    """The LQR target is Gaussian (``lqr.gaussian_target``): NUTS's draws must match its moments."""
    mean, cov, _ = models.lqr.gaussian_target()
    model = pc.trajectory_model(models.get("lqr"))
    result = NUTS(model, num_warmup=300, num_samples=400, progress_bar=False).run(jax.random.key(0))
    assert result.method == "nuts" and result.num_particles == 400 and result.log_evidence is None
    x = result.samples["controls"].reshape(400, -1).astype(np.float64)
    sd = np.sqrt(np.diag(cov))  # 0.82 .. 0.88
    # Standard error of a mean is sd / sqrt(ESS); NUTS on a Gaussian gives ESS of hundreds.
    assert np.max(np.abs(x.mean(axis=0) - mean) / sd) < 0.35
    np.testing.assert_allclose(x.std(axis=0), sd, rtol=0.2)
    assert np.max(np.abs(np.cov(x.T) - cov)) < 0.3
    stats = result.particle_stats
    assert set(stats) >= {"lp", "acceptance_rate", "step_size", "diverging"}
    assert 0.5 < float(np.mean(stats["acceptance_rate"])) <= 1.0 and not np.any(stats["diverging"])
    # lp is the log joint of the unconstrained draw: for this model, the log density itself.
    ld = pc.log_density(model)
    z = jax.vmap(ld.ravel)({"controls": jnp.asarray(result.samples["controls"][:5])})
    np.testing.assert_allclose(stats["lp"][:5], jax.vmap(lambda v: ld.log_target(v, 1.0))(z), rtol=1e-4)


@pytest.mark.parametrize(
    "algo_cls, kwargs, match",
    [
        (CEM, dict(num_particles=1), "num_particles"),
        (CEM, dict(elite_fraction=1.0), "elite_fraction"),
        (CEM, dict(learning_rate=1.5), "learning_rate"),
        (CEM, dict(num_steps=0), "num_steps"),
        (MPPI, dict(num_particles=0), "num_particles"),
        (MPPI, dict(temperature=0.0), "temperature"),
        (MPPI, dict(noise_scale=-1.0), "noise_scale"),
        (NUTS, dict(num_samples=1), "num_samples"),
        (NUTS, dict(num_warmup=-1), "num_warmup"),
        (NUTS, dict(chain_method="threads"), "chain_method"),
        (NUTS, dict(target_accept_prob=1.0), "target_accept_prob"),
    ],
)
def test_bad_configuration_names_the_cause(lqr_weak_prior, algo_cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        algo_cls(lqr_weak_prior[1], **kwargs)


@pytest.mark.parametrize("algo_cls", [CEM, MPPI])
def test_all_nonfinite_raises(algo_cls):
    def model():
        u = numpyro.sample("u", dist.Normal(0.0, 1.0))
        pc.boltzmann(u * jnp.inf)

    with pytest.raises(InferenceError, match="non-finite"):
        algo_cls(model, num_particles=4, num_steps=2, progress_bar=False).run(jax.random.key(0))
