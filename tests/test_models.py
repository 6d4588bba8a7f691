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
        assert models.module(name).__doc__  # each problem documents itself


@pytest.mark.parametrize("name", LIBRARY)
def test_unknown_override_raises_naming_it(name):
    with pytest.raises(ValueError, match="not_a_setting"):
        models.get(name, not_a_setting=1.0)


@pytest.mark.parametrize("name", ["cartpole", "acrobot"])
def test_unknown_integrator_raises(name):
    with pytest.raises(ValueError, match="integrator"):
        models.get(name, integrator="leapfrog")


@pytest.fixture(scope="module")
def float64_costs():
    """name -> (problem, jitted value-and-gradient of its cost), built in float64 on first use.

    The gradient and the NumPy-reference checks of one problem share this compiled function (the
    cost is its value), where each used to compile a rollout of its own. Call it inside
    ``jax.enable_x64(True)``: the compiled function is float64 there.
    """
    cache = {}

    def get(name, **overrides):
        key = (name, tuple(sorted(overrides.items())))
        if key not in cache:
            problem = models.get(name, **overrides)
            cache[key] = problem, jax.jit(jax.value_and_grad(problem.cost))
        return cache[key]

    return get


@pytest.fixture(scope="module")
def float32_batch_costs():
    """name -> (problem, jitted vmapped cost) in float32, shared by the random-controls and the
    TSMC checks, which evaluate batches of the same size (``BATCH``) on one compiled function."""
    cache = {}

    def get(name):
        if name not in cache:
            problem = models.get(name)
            cache[name] = problem, jax.jit(jax.vmap(problem.cost))
        return cache[name]

    return get


BATCH = 32  # the TSMC check's particles and prior draws; the random-controls check runs 2 batches


@pytest.mark.parametrize("name", models.names())
def test_gradient_matches_central_finite_differences(float64_costs, name):
    with jax.enable_x64(True):
        problem, value_and_grad = float64_costs(name)
        u = _interior_controls(problem, jax.random.key(1))
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
def test_cost_matches_independent_numpy_implementation(float64_costs, name):
    reference = NUMPY_COSTS[name]
    with jax.enable_x64(True):
        problem, value_and_grad = float64_costs(name)  # the cost is its value (the compiled rollout)
        zeros = jnp.zeros(problem.controls_shape)
        np.testing.assert_allclose(float(value_and_grad(zeros)[0]), reference(np.zeros(problem.controls_shape)),
                                   rtol=1e-10)
        # and away from zero, beyond the bounds too (the clipping must agree)
        u = _interior_controls(problem, jax.random.key(2), shrink=1.2)
        np.testing.assert_allclose(float(value_and_grad(u)[0]), reference(np.asarray(u)), rtol=1e-9)


@pytest.mark.parametrize("integrator", ["euler", "rk4"])
@pytest.mark.parametrize("name", ["cartpole", "acrobot"])
def test_integrators_match_numpy(float64_costs, name, integrator):
    with jax.enable_x64(True):
        # the default integrator's problem is the one the tests above compiled: the same function
        default = models.module(name).DEFAULTS["integrator"]
        problem, value_and_grad = float64_costs(name, **({} if integrator == default else {"integrator": integrator}))
        u = _interior_controls(problem, jax.random.key(3))
        np.testing.assert_allclose(float(value_and_grad(u)[0]),
                                   NUMPY_COSTS[name](np.asarray(u), integrator=integrator), rtol=1e-9)


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
def test_costs_finite_over_random_controls(float32_batch_costs, name):
    problem, batch_cost = float32_batch_costs(name)
    low, high = _box(problem)
    mid, half = (low + high) / 2, (high - low) / 2
    # uniform over twice the box: half the entries are out of bounds and get clipped
    u = mid + 2 * half * jax.random.uniform(jax.random.key(5), (2 * BATCH,) + problem.controls_shape, minval=-1, maxval=1)
    costs = jnp.concatenate([batch_cost(u[:BATCH]), batch_cost(u[BATCH:])])  # 64 draws, as 2 batches
    assert costs.shape == (64,) and bool(jnp.all(jnp.isfinite(costs)))


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in models.names() if n != "lqr"])  # lqr: the TSMC tests' own
def test_short_tsmc_lowers_best_cost_well_below_the_prior(float32_batch_costs, name):
    problem, batch_cost = float32_batch_costs(name)
    n = BATCH
    prior = pc.control_prior(problem).sample(jax.random.key(6), (n,))
    prior_costs = np.asarray(batch_cost(prior))
    result = TSMC(pc.trajectory_model(problem), num_particles=n, num_moves=2, num_leapfrog=5,
                  progress_bar=False).run(jax.random.key(7))
    best = float(np.min(result.samples["cost"]))
    prior_best = float(np.min(prior_costs))
    # Every cost in the library is >= 0, so "well below" is a ratio: TSMC's best particle is at
    # least 25% cheaper than the best of as many prior draws (measured: 0.06 to 0.68 of it).
    assert np.all(prior_costs >= 0)
    assert best < 0.75 * prior_best, (name, best, prior_best)
