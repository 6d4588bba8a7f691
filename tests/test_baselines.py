"""CEM, MPPI and NUTS against the LQR problem's closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl_control as pc
from ppl_control import InferenceError, models
from ppl_control.inference import CEM, MDPO, MPPI, NUTS


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


@pytest.mark.parametrize("algo_cls", [MDPO, CEM, MPPI])
def test_repeated_runs_trace_the_model_once(algo_cls):
    """Receding-horizon re-plans call ``run`` with a new state each time: the layout is cached per
    argument signature and everything else is compiled, so the second run calls the model zero
    times (before, every run traced it on the host to split the log density and to report)."""
    calls = []

    def model(target):
        calls.append(1)
        u = numpyro.sample("u", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        pc.boltzmann(jnp.sum((u - target) ** 2), temperature=0.5)

    algo = algo_cls(model, num_particles=8, num_steps=4, progress_bar=False)
    algo.run(jax.random.key(0), jnp.zeros(3))
    traced = len(calls)
    target = jnp.array([0.5, -1.0, 2.0])
    result = algo.run(jax.random.key(1), target)
    assert len(calls) == traced
    np.testing.assert_allclose(result.samples["cost"], np.sum((result.samples["u"] - np.asarray(target)) ** 2, -1),
                               rtol=1e-5)


def test_mppi_fresh_noise_follows_the_expected_score():
    """MPPI with the noise key redrawn every iteration: its nominal goes to the expected-cost
    optimum ``u = 1`` of ``J = mean_m (u - 1 - w_m)^2`` (2 draws per iteration), not to the
    sample-average optimum of 2 fixed draws; the same key gives the same bits."""

    def model(noise_key=None):
        u = numpyro.sample("u", dist.Normal(0.0, 3.0))
        key = jax.random.key(5) if noise_key is None else noise_key
        pc.boltzmann(jnp.mean((u - 1.0 - jax.random.normal(key, (2,))) ** 2), temperature=0.05)

    fixed_optimum = 1.0 + float(jnp.mean(jax.random.normal(jax.random.key(5), (2,))))
    assert abs(fixed_optimum - 1.0) > 0.4
    config = dict(num_particles=32, num_steps=200, noise_scale=0.1, learning_rate=0.2, progress_bar=False)
    fixed = MPPI(model, **config).run(jax.random.key(0))
    algo = MPPI(model, fresh_noise="noise_key", **config)
    fresh, again = algo.run(jax.random.key(0)), algo.run(jax.random.key(0))
    np.testing.assert_array_equal(fresh.samples["u"], again.samples["u"])
    # The nominal is sample 0 of the last iteration; it wanders by about the step's noise.
    assert abs(float(fixed.samples["u"][0]) - fixed_optimum) < 0.05
    assert abs(float(fresh.samples["u"][0]) - 1.0) < 0.15
    with pytest.raises(ValueError, match="no keyword argument 'noise'"):
        MPPI(model, fresh_noise="noise")
