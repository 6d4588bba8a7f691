"""Brax environments as control problems: gradients, independent costs, TSMC with tiny budgets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_control as pc
from ppl_control.inference import TSMC
from ppl_control.models import brax as pcbrax

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]

HORIZON = 8
ENVS = ("inverted_pendulum", "reacher")


def _cost_and_observations(problem, u):
    """``problem.cost(u)`` and the observations of ``problem.trajectory(u)``, from one compiled
    function (compiling a Brax rollout costs seconds; evaluated eagerly, each call compiles one)."""
    return jax.jit(lambda u: (problem.cost(u), problem.observation(problem.trajectory(u))))(u)


def test_unknown_env_backend_or_kwargs_raise():
    with pytest.raises(ValueError, match="not_an_env"):
        pcbrax.problem("not_an_env")
    with pytest.raises(ValueError, match="warp_drive"):
        pcbrax.problem("reacher", backend="warp_drive")
    with pytest.raises(ValueError, match="reacher"):
        pcbrax.problem("reacher", not_a_kwarg=3)
    with pytest.raises(ValueError, match="cost"):
        pcbrax.problem("reacher", cost="distance")


@pytest.mark.parametrize("env_name", ENVS)
def test_default_backend_gradient_matches_finite_differences(env_name):
    with jax.enable_x64(True):
        problem = pcbrax.problem(env_name, horizon=HORIZON)
        assert problem.x0.obs.dtype == jnp.float64
        u = 0.8 * jax.random.uniform(jax.random.key(0), problem.controls_shape, jnp.float64, -1.0, 1.0)
        value_and_grad = jax.jit(jax.value_and_grad(problem.cost))
        _, grad = value_and_grad(u)
        assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.linalg.norm(grad)) > 0
        eps = 1e-6
        for i in range(2):
            v = jax.random.normal(jax.random.key(1 + i), u.shape, jnp.float64)
            fd = (value_and_grad(u + eps * v)[0] - value_and_grad(u - eps * v)[0]) / (2 * eps)
            ad = jnp.sum(grad * v)
            assert abs(float(fd - ad)) <= 1e-5 * float(jnp.linalg.norm(grad) * jnp.linalg.norm(v)), (fd, ad)


def test_costs_match_a_manual_brax_loop():
    """``-reward`` and the shipped inverted-pendulum cost against stepping the env by hand."""
    with jax.enable_x64(True):
        env = pcbrax.make_env("inverted_pendulum")
        step = jax.jit(env.step)
        u = 0.5 * jax.random.uniform(jax.random.key(3), (HORIZON, 1), jnp.float64, -1.0, 1.0)
        state = env.reset(jax.random.PRNGKey(0))
        rewards, obs = [], [np.asarray(state.obs)]
        for t in range(HORIZON):
            state = step(state, u[t])
            rewards.append(float(state.reward))
            obs.append(np.asarray(state.obs))
        obs = np.stack(obs)
        by_reward = pcbrax.problem("inverted_pendulum", horizon=HORIZON, cost="reward")
        assert float(jax.jit(by_reward.cost)(u)) == pytest.approx(-sum(rewards), rel=1e-12)  # -1 per alive step
        x, theta, theta_dot = obs[:, 0], obs[:, 1], obs[:, 3]
        expected = np.sum(10 * (1 - np.cos(theta)) + 0.1 * x**2 + 0.01 * theta_dot**2) + 0.01 * np.sum(np.asarray(u) ** 2)
        # The cost and the observed trajectory in one compiled call: one Brax rollout to compile,
        # where calling each eagerly compiled the rollout's scan twice.
        shipped = pcbrax.problem("inverted_pendulum", horizon=HORIZON)
        cost, observed = _cost_and_observations(shipped, u)
        assert float(cost) == pytest.approx(expected, rel=1e-9)
        np.testing.assert_allclose(np.asarray(observed), obs, rtol=1e-9, atol=1e-12)


def test_user_cost_function_of_the_state():
    with jax.enable_x64(True):
        problem = pcbrax.problem("inverted_pendulum", horizon=HORIZON, cost=lambda s: s.obs[0] ** 2)
        cost, observed = _cost_and_observations(problem, jnp.ones((HORIZON, 1)))
        assert float(cost) == pytest.approx(float(jnp.sum(observed[:, 0] ** 2)))
        assert float(observed[-1, 0]) > float(observed[0, 0])  # pushing right moves the cart right


@pytest.mark.parametrize("env_name", ENVS)
def test_tsmc_runs_with_a_tiny_budget(env_name):
    problem = pcbrax.problem(env_name, horizon=HORIZON)
    result = TSMC(pc.trajectory_model(problem), num_particles=16, num_moves=1, num_leapfrog=3,
                  progress_bar=False).run(jax.random.key(0))
    cost = result.samples["cost"]
    assert cost.shape == (16,) and np.all(np.isfinite(cost))
    assert result.samples["controls"].shape == (16, HORIZON, problem.action_dim)
    assert np.all(np.abs(result.samples["controls"]) <= 1.0)
    prior = pc.control_prior(problem).sample(jax.random.key(1), (16,))
    # One compiled function (vmapped eagerly, the rollout's scan and each op compile one by one).
    assert np.min(cost) <= np.median(jax.jit(jax.vmap(problem.cost))(prior))
