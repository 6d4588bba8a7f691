"""The model layer: rollout, boltzmann, ControlProblem, trajectory_model and the log-density split."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers

import ppl_control as pc
from ppl_control import models


def test_rollout_has_t_plus_one_rows_and_matches_a_loop():
    step = lambda x, u: 0.9 * x + u
    controls = jnp.arange(6.0).reshape(3, 2)
    states = pc.rollout(step, jnp.ones(2), controls)
    expected = [np.ones(2)]
    for u in np.asarray(controls):
        expected.append(0.9 * expected[-1] + u)
    np.testing.assert_allclose(states, np.stack(expected), rtol=1e-6)


def test_rollout_accepts_pytree_states():
    step = lambda x, u: {"p": x["p"] + x["v"], "v": x["v"] + u[0]}
    states = pc.rollout(step, {"p": jnp.zeros(()), "v": jnp.zeros(())}, jnp.ones((4, 1)))
    assert states["p"].shape == (5,) and states["v"].shape == (5,)
    np.testing.assert_allclose(states["p"], [0, 0, 1, 3, 6])


def test_boltzmann_adds_cost_site_and_factor():
    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
        pc.boltzmann(x**2 + 1.0, temperature=0.5)

    tr = handlers.trace(handlers.substitute(handlers.seed(model, 0), data={"x": 2.0})).get_trace()
    assert float(tr["cost"]["value"]) == pytest.approx(5.0)
    factor = tr["cost_boltzmann"]
    assert factor["is_observed"]
    assert float(factor["fn"].log_prob(factor["value"])) == pytest.approx(-10.0)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("inf")])
def test_boltzmann_rejects_bad_temperature(temperature):
    with pytest.raises(ValueError, match="temperature"):
        pc.boltzmann(jnp.ones(()), temperature=temperature)


def test_control_problem_cost_matches_hand_computation():
    problem = models.get("lqr", horizon=3)
    controls = jnp.array([[1.0, 0.0], [0.0, -1.0], [0.5, 0.5]])
    a, b = models.lqr.matrices()
    x, total = np.array([1.0, -1.0, 0.5, 0.0]), 0.0
    for u in np.asarray(controls):
        total += x @ x + 0.1 * u @ u
        x = a @ x + b @ u
    total += 10.0 * x @ x
    assert float(problem.cost(controls)) == pytest.approx(total, rel=1e-5)


def test_control_problem_cost_jits_and_differentiates_directly():
    problem = models.get("lqr", horizon=3)
    controls = jnp.ones((3, 2))
    assert float(jax.jit(problem.cost)(controls)) == pytest.approx(float(problem.cost(controls)), rel=1e-6)
    assert jax.jit(jax.grad(problem.cost))(controls).shape == (3, 2)


def test_control_problem_checks_shapes():
    with pytest.raises(ValueError, match="controls must have shape"):
        models.get("lqr").cost(jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match="horizon"):
        models.get("lqr", horizon=0)


def test_bounded_prior_keeps_samples_inside_the_box():
    problem = models.get("pendulum")
    ld = pc.log_density(pc.trajectory_model(problem))
    z = 3.0 * ld.sample_prior(jax.random.key(0), 64)  # far out in unconstrained space
    controls = jax.vmap(ld.constrain)(z)["controls"]
    assert controls.shape == (64, problem.horizon, 1)
    assert float(jnp.max(jnp.abs(controls))) <= 5.0


def test_log_density_split_matches_closed_form_with_jacobian():
    """A LogNormal latent: the unconstrained density is the Normal density of log x."""

    def model():
        x = numpyro.sample("x", dist.LogNormal(0.3, 0.7))
        numpyro.factor("lik", -2.0 * x)

    ld = pc.log_density(model)
    assert ld.dim == 1 and ld.latent_names == ("x",) and ld.observed_names == ("lik",)
    z = jnp.array([0.4])
    lp, ll = ld.log_parts(z)
    expected_lp = dist.Normal(0.3, 0.7).log_prob(0.4)  # change of variables x = exp(z)
    assert float(lp) == pytest.approx(float(expected_lp), rel=1e-5)
    assert float(ll) == pytest.approx(-2.0 * np.exp(0.4), rel=1e-5)
    assert float(ld.constrain(z)["x"]) == pytest.approx(np.exp(0.4), rel=1e-6)


def test_log_density_prior_samples_have_prior_moments():
    def model():
        numpyro.sample("a", dist.Normal(1.0, 2.0).expand([3]).to_event(1))
        numpyro.sample("b", dist.Exponential(2.0))
        numpyro.factor("f", 0.0)

    ld = pc.log_density(model)
    z = ld.sample_prior(jax.random.key(1), 4000)
    values = jax.vmap(ld.constrain)(z)
    assert abs(float(values["a"].mean()) - 1.0) < 0.1
    assert abs(float(values["a"].std()) - 2.0) < 0.1
    assert abs(float(values["b"].mean()) - 0.5) < 0.03


def test_log_density_rejects_models_it_cannot_handle():
    def no_latent():
        numpyro.factor("f", 0.0)

    def no_observed():
        numpyro.sample("x", dist.Normal())

    def discrete():
        numpyro.sample("k", dist.Bernoulli(0.5))
        numpyro.factor("f", 0.0)

    def slash_name():
        numpyro.sample("net/w", dist.Normal())
        numpyro.factor("f", 0.0)

    with pytest.raises(ValueError, match="no latent"):
        pc.log_density(no_latent)
    with pytest.raises(ValueError, match="no observed"):
        pc.log_density(no_observed)
    with pytest.raises(ValueError, match="discrete"):
        pc.log_density(discrete)
    with pytest.raises(ValueError, match="'/'"):
        pc.log_density(slash_name)


def test_trajectory_model_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        ld = pc.log_density(pc.trajectory_model(models.get("pendulum", horizon=15)))
        z = 0.5 * ld.sample_prior(jax.random.key(2), 1)[0]
        f = lambda v: ld.log_target(v, 1.0)
        grad = jax.grad(f)(z)
        eps = 1e-6
        basis = jnp.eye(ld.dim)
        fd = jnp.array([(f(z + eps * e) - f(z - eps * e)) / (2 * eps) for e in basis])
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


def test_result_best_ignores_non_finite_costs():
    result = pc.Result(
        method="x",
        samples={"cost": np.array([np.nan, 3.0, 1.0, -np.inf]), "u": np.arange(4.0)},
        log_weights=np.log(np.full(4, 0.25)),
    )
    assert result.best_index() == 2 and result.best()["u"] == 2.0
