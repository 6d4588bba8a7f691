"""RDDL domains through pyRDDLGym-jax: the compiled cost against pyRDDLGym's own simulator,
finite-difference gradients, the three benchmark domains, noise scenarios, and the errors.

Needs the ``rddl`` extra (``make test`` installs it); skipped cleanly without it.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("pyRDDLGym_jax")
pytest.importorskip("rddlrepository")

import ppl_control as pc  # noqa: E402
from ppl_control.models import rddl  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# The three domains of the JaxPlan comparison (PowerGen_Continuous ships only instance 0).
DOMAINS = {"Reservoir_Continuous": "1", "PowerGen_Continuous": "0", "HVAC_ippc2023": "1"}
SMOOTH = dict(use_sigmoid_ste=False, use_tanh_ste=False, use_if_else_ste=False)  # no straight-through


def _uniform_plan(problem, key, low_fraction=0.0, high_fraction=1.0, dtype=None):
    """A uniform random plan in a sub-box of ``problem``'s action box (as fractions of its width)."""
    low, high = (np.asarray(b, np.float64) for b in problem.action_bounds)
    width = high - low
    u = jax.random.uniform(key, problem.controls_shape, jnp.float64 if dtype is None else dtype)
    return jnp.asarray(low + width * (low_fraction + (high_fraction - low_fraction) * np.asarray(u)),
                       dtype or problem.x0["reward"].dtype)


@pytest.fixture(scope="module")
def default_problems():
    """The three domains with every default (scenarios and temperature derived), float32."""
    return {domain: rddl.problem(domain, instance) for domain, instance in DOMAINS.items()}


def test_unknown_domain_instance_and_discrete_actions_raise():
    with pytest.raises(ValueError, match="unknown RDDL domain 'Reservoir_Continous'"):
        rddl.problem("Reservoir_Continous", "1")
    with pytest.raises(ValueError, match="no instance '7'.*0, 1"):
        rddl.problem("Reservoir_Continuous", "7")
    with pytest.raises(ValueError, match=r"every action of this domain is discrete \(put-out \(bool\), cut-out \(bool\)\)"):
        rddl.problem("Wildfire_MDP_ippc2014", "1")
    with pytest.raises(ValueError, match="action_bounds names \\['nope'\\]"):
        rddl.problem("PowerGen_Continuous", "0", action_bounds={"nope": (0, 1)}, temperature=1.0)
    with pytest.raises(ValueError, match="compiler_kwargs"):
        rddl.problem("PowerGen_Continuous", "0", compiler_kwargs={"not_a_setting": 1.0}, temperature=1.0)


def test_the_three_domains_as_control_problems(default_problems):
    expected = {  # (horizon, action_dim, scenarios): Reservoir and PowerGen are noisy, HVAC instance 1 is not
        "Reservoir_Continuous": (120, 10, rddl.DEFAULT_SCENARIOS),
        "PowerGen_Continuous": (40, 3, rddl.DEFAULT_SCENARIOS),
        "HVAC_ippc2023": (100, 5, 1),
    }
    for domain, problem in default_problems.items():
        horizon, dim, scenarios = expected[domain]
        assert isinstance(problem, pc.ControlProblem)
        assert (problem.horizon, problem.action_dim, problem.num_scenarios) == (horizon, dim, scenarios), domain
        low, high = (np.asarray(b) for b in problem.action_bounds)
        assert np.all(np.isfinite(low)) and np.all(np.isfinite(high)) and np.all(high > low)
        assert np.all(low >= problem.domain_bounds[0]) and np.all(high <= problem.domain_bounds[1])
        assert np.isfinite(problem.temperature) and problem.temperature > 0
        leaves = jax.tree.leaves(problem.x0["fluents"])
        assert leaves and all(leaf.shape[0] == scenarios for leaf in leaves)
        u = _uniform_plan(problem, jax.random.key(0), 0.0, 0.5)
        cost, grad = jax.jit(jax.value_and_grad(problem.cost))(u)
        assert np.isfinite(cost) and bool(jnp.all(jnp.isfinite(grad))) and float(jnp.linalg.norm(grad)) > 0, domain
    # HVAC's open sides got the default width: fan-in in [0.05, inf), heat-input unbounded
    hvac = default_problems["HVAC_ippc2023"]
    limit = rddl.DEFAULT_UNBOUNDED_LIMIT
    np.testing.assert_allclose(np.asarray(hvac.action_bounds[1]), [0.05 + limit] * 2 + [limit] * 3, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(hvac.action_bounds[0])[2:], -limit)


@pytest.mark.parametrize("relaxed", [True, False])
@pytest.mark.parametrize("domain, instance, horizon", [("HVAC_ippc2023", "1", 20), ("MountainCar_Continuous_gym", "0", 60)])
def test_cost_matches_pyrddlgym_simulator_on_deterministic_domains(domain, instance, horizon, relaxed):
    """JaxPlan's relaxation uses straight-through estimators, so its forward value is exact."""
    with jax.enable_x64(True):
        problem = rddl.problem(domain, instance, horizon, relaxed=relaxed, temperature=1.0)
        assert problem.num_scenarios == 1
        plans = jnp.stack([_uniform_plan(problem, jax.random.key(i), 0.0, 0.01 if domain == "HVAC_ippc2023" else 1.0)
                           for i in range(2)])
        returns = -np.asarray(jax.jit(jax.vmap(problem.cost))(plans))
        for i, u in enumerate(plans):
            played = rddl.evaluate(problem, u, episodes=1, rng_key=jax.random.key(i))["mean"]
            assert returns[i] == pytest.approx(played, rel=1e-9, abs=1e-9), (domain, i)


def test_noisy_cost_is_the_environments_expected_return():
    """PowerGen's temperature is a random walk: the average over 256 common-random-number
    scenarios and 200 episodes of the real simulator agree within their sampling error."""
    problem = rddl.problem("PowerGen_Continuous", "0", num_scenarios=256, temperature=1.0)
    u = _uniform_plan(problem, jax.random.key(3), 0.2, 0.6)
    cost, states = jax.jit(lambda v: (problem.cost(v), problem.trajectory(v)))(u)
    per_scenario = np.asarray(states["reward"], np.float64).sum(axis=0)  # rewards (T + 1, K) summed over time
    assert float(-cost) == pytest.approx(per_scenario.mean(), rel=1e-5)
    env = rddl.evaluate(problem, u, episodes=200, rng_key=jax.random.key(4))
    se = np.sqrt(per_scenario.var() / per_scenario.size + env["std"] ** 2 / env["episodes"])
    assert per_scenario.std() > 0 and env["std"] > 0
    assert abs(per_scenario.mean() - env["mean"]) < 4 * se, (per_scenario.mean(), env["mean"], se)


@pytest.mark.parametrize("domain", sorted(DOMAINS))
def test_gradient_matches_finite_differences_of_the_smooth_relaxation(domain):
    with jax.enable_x64(True):
        problem = rddl.problem(domain, DOMAINS[domain], 8, num_scenarios=2, compiler_kwargs=SMOOTH, temperature=1.0)
        u = _uniform_plan(problem, jax.random.key(5), 0.05, 0.1 if domain == "HVAC_ippc2023" else 0.95)
        value_and_grad = jax.jit(jax.value_and_grad(problem.cost))
        _, grad = value_and_grad(u)
        assert float(jnp.linalg.norm(grad)) > 0
        width = jnp.asarray(problem.action_bounds[1] - problem.action_bounds[0])
        eps = 1e-6
        for i in range(2):
            d = width * jax.random.normal(jax.random.key(6 + i), u.shape, jnp.float64)
            fd = (value_and_grad(u + eps * d)[0] - value_and_grad(u - eps * d)[0]) / (2 * eps)
            ad = float(jnp.sum(grad * d))
            assert abs(float(fd) - ad) <= 1e-5 * float(jnp.linalg.norm(grad) * jnp.linalg.norm(d)), (domain, fd, ad)


def test_compiler_leaves_the_global_x64_flag_alone():
    before = bool(jax.config.jax_enable_x64)
    with jax.enable_x64(not before):
        problem = rddl.problem("PowerGen_Continuous", "0", 4, num_scenarios=1, temperature=1.0)
        assert problem.x0["reward"].dtype == (jnp.float64 if not before else jnp.float32)
    assert bool(jax.config.jax_enable_x64) == before


def test_scenarios_seed_and_evaluate_are_reproducible():
    problem = rddl.problem("PowerGen_Continuous", "0", 10, num_scenarios=3, temperature=1.0)
    again = rddl.problem("PowerGen_Continuous", "0", 10, num_scenarios=3, temperature=1.0)
    other = rddl.problem("PowerGen_Continuous", "0", 10, num_scenarios=3, seed=1, temperature=1.0)
    # the scenarios are the keys in x0: the same seed, the same noise; another seed, other noise
    np.testing.assert_array_equal(np.asarray(problem.x0["key"]), np.asarray(again.x0["key"]))
    assert np.unique(np.asarray(problem.x0["key"]), axis=0).shape[0] == 3
    assert not np.any(np.all(np.asarray(other.x0["key"])[:, None] == np.asarray(problem.x0["key"])[None], -1))
    u = _uniform_plan(problem, jax.random.key(7), 0.2, 0.6)
    rewards = np.asarray(jax.jit(problem.trajectory)(u)["reward"])
    assert np.all(rewards[0] == 0) and np.unique(rewards[1:].sum(0)).size == 3  # three different draws
    first = rddl.evaluate(problem, u, episodes=4, rng_key=jax.random.key(8))
    second = rddl.evaluate(problem, u, episodes=4, rng_key=jax.random.key(8))
    np.testing.assert_array_equal(first["returns"], second["returns"])
    assert first["returns"].shape == (4,) and np.unique(first["returns"]).size == 4
    assert first["mean"] == pytest.approx(np.mean(first["returns"])) and first["std"] == pytest.approx(np.std(first["returns"]))
    with pytest.raises(ValueError, match="controls must have shape"):
        rddl.evaluate(problem, u[:5], episodes=1)
    with pytest.raises(ValueError, match="models.rddl.problem"):
        rddl.evaluate(pc.ControlProblem(lambda x, a: x, lambda x, a: 0.0, lambda x: 0.0, 0.0, 10, 3, "x"), u)


def test_evaluate_plays_the_domains_bounds_not_the_problems_box():
    """HVAC's fan-in has no upper bound in the domain: a plan beyond the problem's finite box is
    played as it is, and scores what the compiled model says once its box is wide enough."""
    boxed = rddl.problem("HVAC_ippc2023", "1", 10, temperature=1.0)
    wide = rddl.problem("HVAC_ippc2023", "1", 10, action_bounds={"fan-in": (0.05, 1e4)}, temperature=1.0)
    plan = np.zeros(boxed.controls_shape, np.float32)
    plan[:, :2] = 1.0
    plan[:3, :2] = 1.5 * rddl.DEFAULT_UNBOUNDED_LIMIT  # fan-in beyond the box for three steps
    played = rddl.evaluate(boxed, plan, episodes=1)["mean"]
    wide_cost, boxed_cost = jax.jit(lambda p: (wide.cost(p), boxed.cost(p)))(jnp.asarray(plan))
    assert played == pytest.approx(-float(wide_cost), rel=1e-4)
    assert played != pytest.approx(-float(boxed_cost), rel=1e-4)


def test_trajectory_model_centres_the_prior_on_the_noop():
    import numpyro
    from numpyro import handlers

    problem = rddl.problem("HVAC_ippc2023", "1", 6, temperature=2.0)
    np.testing.assert_allclose(problem.noop, [1.0, 1.0, 0.0, 0.0, 0.0])  # fan-in 1, heat-input 0 (the RDDL defaults)
    model = rddl.trajectory_model(problem, prior_scale=0.01)
    trace = handlers.trace(handlers.seed(model, jax.random.key(11))).get_trace()
    prior, controls = trace["controls"]["fn"], trace["controls"]["value"]
    assert not trace["controls"]["is_observed"] and controls.shape == problem.controls_shape
    np.testing.assert_allclose(np.asarray(prior.base_dist.base_dist.loc), np.broadcast_to(problem.noop, problem.controls_shape))
    assert np.all(np.abs(np.asarray(controls) - problem.noop) < 0.05 * 1000.0 + 1e-3)  # within 5 scale units
    assert float(trace["cost"]["value"]) == pytest.approx(float(problem.cost(controls)), rel=1e-6)
    log_joint = numpyro.infer.util.log_density(model, (), {}, {"controls": controls})[0]
    expected = prior.log_prob(controls) - problem.cost(controls) / 2.0
    assert float(log_joint) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(ValueError, match="models.rddl.problem"):
        rddl.trajectory_model(pc.ControlProblem(lambda x, a: x, lambda x, a: 0.0, lambda x: 0.0, 0.0, 4, 1, "x"))


def test_trajectory_model_takes_its_noise_key():
    """``model(noise_key=k)`` rolls out on scenarios drawn from ``k`` (``scenarios``), ``None`` on
    the problem's fixed ones; ``fresh_scenarios`` sets how many; traceable and reproducible."""
    from numpyro import handlers

    problem = rddl.problem("PowerGen_Continuous", "0", 6, num_scenarios=3, temperature=1.0)
    u = _uniform_plan(problem, jax.random.key(7), 0.2, 0.6)
    big = dataclasses.replace(problem, x0=rddl.scenarios(problem, 0, 5), num_scenarios=5)

    def model_cost(model, key):
        trace = handlers.trace(handlers.substitute(model, {"controls": u}))
        return trace.get_trace(noise_key=key)["cost"]["value"]

    @jax.jit
    def costs(key):
        model, five = rddl.trajectory_model(problem), rddl.trajectory_model(problem, fresh_scenarios=5)
        return dict(fixed=model_cost(model, None), expected_fixed=problem.cost(u),
                    fresh=model_cost(model, key), expected_fresh=problem.cost(u, rddl.scenarios(problem, key)),
                    five=model_cost(five, key), expected_five=big.cost(u, rddl.scenarios(problem, key, 5)))

    first, second = costs(jax.random.key(1)), costs(jax.random.key(2))
    for name in ("fixed", "fresh", "five"):
        assert float(first[name]) == pytest.approx(float(first[f"expected_{name}"]), rel=1e-6)
    assert float(first["fresh"]) != pytest.approx(float(second["fresh"]), rel=1e-6)
    assert float(first["fixed"]) == float(second["fixed"])
    x0 = rddl.scenarios(problem, jax.random.key(1))
    assert x0["key"].shape == problem.x0["key"].shape and x0["key"].dtype == problem.x0["key"].dtype
    np.testing.assert_array_equal(np.asarray(rddl.scenarios(problem, 4)["key"]),
                                  np.asarray(rddl.scenarios(problem, jax.random.PRNGKey(4))["key"]))
    with pytest.raises(ValueError, match="fresh_scenarios must be a positive integer"):
        rddl.trajectory_model(problem, fresh_scenarios=0)
