"""Swap: every algorithm on every ready-made problem, one word apart, each returning a valid Result."""

import jax
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import CEM, MDPO, MPPI, NUTS, TSMC, GradientDescent

# Tiny budgets: this checks the interface and the Result, not the quality (see BENCHMARKS.md).
ALGORITHMS = {
    "tsmc": (TSMC, dict(num_particles=8, num_moves=1, num_leapfrog=2, max_stages=2)),
    "mdpo": (MDPO, dict(num_particles=4, num_steps=2)),
    "gradient_descent": (GradientDescent, dict(num_particles=4, num_steps=2)),
    "cem": (CEM, dict(num_particles=4, num_steps=2)),
    "mppi": (MPPI, dict(num_particles=4, num_steps=2)),
    "nuts": (NUTS, dict(num_warmup=3, num_samples=4, max_tree_depth=3)),
}
ITERATIVE = {"mdpo", "gradient_descent", "cem", "mppi"}


def _check_result(result, method, problem, num_particles):
    assert isinstance(result, pc.Result) and result.method == method
    assert result.num_particles == num_particles
    controls = result.samples["controls"]
    assert controls.shape == (num_particles, problem.horizon, problem.action_dim)
    if problem.action_bounds is not None:
        low, high = problem.action_bounds
        assert np.all(controls >= low) and np.all(controls <= high)
    assert result.samples["cost"].shape == (num_particles,)
    assert np.any(np.isfinite(result.samples["cost"]))
    np.testing.assert_allclose(np.sum(result.weights), 1.0, rtol=1e-5)
    assert (result.log_evidence is None) == (method != "tsmc")
    assert isinstance(result.config, dict) and result.config
    if method in ITERATIVE:
        assert all(v.shape[0] == 2 for v in result.stats.values())
        assert {"cost_min", "cost_mean"} <= set(result.stats)
    if method in ("mdpo", "gradient_descent"):
        assert result.stats["noise_scale"].shape == (2, problem.horizon)
    best = result.best()
    assert np.isfinite(best["cost"])
    tree = result.to_arviz()
    assert "posterior" in tree.children and "sample_stats" in tree.children
    assert tree.posterior["controls"].shape[:2] == (1, num_particles)


# Every algorithm is compile-bound at these budgets (a few seconds per algorithm and problem on
# 2 cores), so the whole 6 x 8 matrix would take several minutes. Every problem runs one
# gradient-based and one gradient-free algorithm (MDPO, CEM); gradient descent is MDPO's own code
# with the noise off (tests/test_mdpo.py checks them bit for bit), MPPI shares CEM's evaluation
# and loop code, TSMC runs on every problem in tests/test_models.py, and NUTS is NumPyro's
# sampler: those four run here on one smooth (lqr) and one hybrid, bounded (reservoir) problem.
EVERY_PROBLEM = ("mdpo", "cem")
SOME_PROBLEMS = ("gradient_descent", "mppi", "nuts", "tsmc")
CASES = [(name, m) for name in models.names() for m in EVERY_PROBLEM] + [
    (name, m) for name in ("lqr", "reservoir") if name in models.names() for m in SOME_PROBLEMS
]


@pytest.fixture(scope="module")
def trajectory_models():
    return {}


@pytest.mark.parametrize("name, method", CASES)
def test_algorithm_runs_on_problem(trajectory_models, name, method):
    if name not in trajectory_models:
        trajectory_models[name] = pc.trajectory_model(models.get(name))
    model = trajectory_models[name]
    cls, config = ALGORITHMS[method]
    result = cls(model, progress_bar=False, **config).run(jax.random.key(0))
    n = config.get("num_particles", config.get("num_samples"))
    _check_result(result, method, model.problem, n)
