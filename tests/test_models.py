"""The problem library: gradients, independent cost checks, robustness, and TSMC progress."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC

from _reference_impls import COSTS as NUMPY_COSTS

LIBRARY = ("cartpole", "acrobot", "double_integrator", "navigation", "unicycle", "reservoir")


def _box(problem):
    """``(low, high)`` of shape ``(action_dim,)``, or ``(-2, 2)`` for unbounded problems."""
    bounds = problem.action_bounds if problem.action_bounds is not None else (-2.0, 2.0)
    return tuple(np.broadcast_to(np.asarray(b, np.float64), (problem.action_dim,)) for b in bounds)


def _interior_controls(problem, key, shrink=0.9):
    """Random controls strictly inside the action box (no clipping kink nearby)."""
    low, high = _box(problem)
    mid, half = (low + high) / 2, shrink * (high - low) / 2
    return jnp.asarray(mid + half * jax.random.uniform(key, problem.controls_shape, jnp.float64, -1.0, 1.0))


def test_registry_lists_and_builds_every_problem():
    assert set(LIBRARY) <= set(models.names())
    for name in models.names():
        problem = models.get(name)
        assert isinstance(problem, pc.ControlProblem)
        assert problem.name == name
        assert models.module(name).__doc__  # each problem documents itself


@pytest.mark.parametrize("name", LIBRARY)
def test_unknown_override_raises_naming_it(name):
    with pytest.raises(ValueError, match="not_a_setting"):
        models.get(name, not_a_setting=1.0)


@pytest.mark.parametrize("name", ["cartpole", "acrobot"])
def test_unknown_integrator_raises(name):
    with pytest.raises(ValueError, match="integrator"):
        models.get(name, integrator="leapfrog")


@pytest.mark.parametrize("name", models.names())
def test_gradient_matches_central_finite_differences(name):
    with jax.enable_x64(True):
        problem = models.get(name)
        u = _interior_controls(problem, jax.random.key(1))
        value_and_grad = jax.jit(jax.value_and_grad(problem.cost))
        _, grad = value_and_grad(u)
        assert grad.dtype == jnp.float64
        eps = 1e-6
        for i in range(3):
            v = jax.random.normal(jax.random.key(10 + i), u.shape, jnp.float64)
            fd = (value_and_grad(u + eps * v)[0] - value_and_grad(u - eps * v)[0]) / (2 * eps)
            ad = jnp.sum(grad * v)
            scale = float(jnp.linalg.norm(grad) * jnp.linalg.norm(v)) + 1e-8
            assert abs(float(fd - ad)) <= 1e-5 * scale, (name, float(fd), float(ad))


@pytest.mark.parametrize("name", sorted(NUMPY_COSTS))
def test_cost_matches_independent_numpy_implementation(name):
    reference = NUMPY_COSTS[name]
    with jax.enable_x64(True):
        problem = models.get(name)
        zeros = jnp.zeros(problem.controls_shape)
        np.testing.assert_allclose(float(problem.cost(zeros)), reference(np.zeros(problem.controls_shape)), rtol=1e-10)
        # and away from zero, beyond the bounds too (the clipping must agree)
        u = _interior_controls(problem, jax.random.key(2), shrink=1.2)
        np.testing.assert_allclose(float(problem.cost(u)), reference(np.asarray(u)), rtol=1e-9)


@pytest.mark.parametrize("integrator", ["euler", "rk4"])
@pytest.mark.parametrize("name", ["cartpole", "acrobot"])
def test_integrators_match_numpy(name, integrator):
    with jax.enable_x64(True):
        problem = models.get(name, integrator=integrator)
        u = _interior_controls(problem, jax.random.key(3))
        np.testing.assert_allclose(float(problem.cost(u)), NUMPY_COSTS[name](np.asarray(u), integrator=integrator),
                                   rtol=1e-9)


def test_double_integrator_reference_is_the_constrained_optimum():
    """The QP minimiser beats every admissible perturbation and saturates the bound."""
    with jax.enable_x64(True):
        problem = models.get("double_integrator")
        best, u_star = models.double_integrator.exact_minimum()
        assert problem.reference_cost == pytest.approx(best)
        u_star = jnp.asarray(u_star)[:, None]
        assert float(problem.cost(u_star)) == pytest.approx(best, rel=1e-10)
        assert np.isclose(np.abs(np.asarray(u_star)), 1.0).sum() >= 5  # bang at the start
        perturbed = problem.clip(u_star + 0.05 * jax.random.normal(jax.random.key(4), (64,) + u_star.shape))
        assert bool(jnp.all(jax.vmap(problem.cost)(perturbed) >= best))


@pytest.mark.parametrize("name", models.names())
def test_costs_finite_over_random_controls(name):
    problem = models.get(name)
    low, high = _box(problem)
    mid, half = (low + high) / 2, (high - low) / 2
    # uniform over twice the box: half the entries are out of bounds and get clipped
    u = mid + 2 * half * jax.random.uniform(jax.random.key(5), (64,) + problem.controls_shape, minval=-1, maxval=1)
    costs = jax.jit(jax.vmap(problem.cost))(u)
    assert bool(jnp.all(jnp.isfinite(costs)))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in models.names() if n != "lqr"])  # lqr: the TSMC tests' own
def test_short_tsmc_lowers_best_cost_well_below_the_prior(name):
    problem = models.get(name)
    n = 32
    prior = pc.control_prior(problem).sample(jax.random.key(6), (n,))
    prior_costs = np.asarray(jax.jit(jax.vmap(problem.cost))(prior))
    result = TSMC(pc.trajectory_model(problem), num_particles=n, num_moves=2, num_leapfrog=5,
                  progress_bar=False).run(jax.random.key(7))
    best = float(np.min(result.samples["cost"]))
    prior_best = float(np.min(prior_costs))
    # Every cost in the library is >= 0, so "well below" is a ratio: TSMC's best particle is at
    # least 25% cheaper than the best of as many prior draws (measured: 0.06 to 0.68 of it).
    assert np.all(prior_costs >= 0)
    assert best < 0.75 * prior_best, (name, best, prior_best)
