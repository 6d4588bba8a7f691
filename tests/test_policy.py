"""Policy optimisation: ``pc.policy_model`` and ``pc.trained_policy``.

Truth comes from outside the code under test: a hand-written NumPy rollout, central finite
differences, the finite-horizon Riccati recursion, and held-out initial states and noise.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_control as pc
from ppl_control.inference import CEM, MDPO, MPPI, NUTS, TSMC, GradientDescent
from ppl_control.models import lqr, pendulum

# One xdist worker runs this file, so the module-scoped solver runs are shared, not repeated.
pytestmark = pytest.mark.xdist_group(name="policy")


class PendulumPolicy(eqx.Module):
    """A small tanh MLP on the wrapped features ``(cos theta, sin theta, omega / 5)``."""

    mlp: eqx.nn.MLP

    def __init__(self, width, key):
        self.mlp = eqx.nn.MLP(3, "scalar", width, 1, activation=jnp.tanh, key=key)

    def __call__(self, x):
        return self.mlp(jnp.stack([jnp.cos(x[0]), jnp.sin(x[0]), 0.2 * x[1]]))


def _pendulum_starts(key, num, max_angle=np.pi / 2, max_speed=1.0):
    """Initial states spread around hanging: ``theta ~ U(-pi/2, pi/2)``, ``omega ~ U(-1, 1)``."""
    k1, k2 = jax.random.split(key)
    theta = jax.random.uniform(k1, (num,), minval=-max_angle, maxval=max_angle)
    omega = jax.random.uniform(k2, (num,), minval=-max_speed, maxval=max_speed)
    return jnp.stack([theta, omega], axis=-1)


def _numpy_pendulum_cost(params_policy, x0, noise, sigma, horizon, dt=0.05, max_torque=5.0):
    """The closed-loop cost from one state, written out with NumPy from the model's docstring."""
    g, b = 9.81, 0.1
    theta, omega = float(x0[0]), float(x0[1])
    total = 0.0
    for t in range(horizon):
        raw = float(params_policy(jnp.asarray([theta, omega])))
        u = max_torque * np.tanh(raw)
        total += (1 + np.cos(theta)) + 0.01 * omega**2 + 0.01 * u**2
        omega_next = omega + dt * (-g * np.sin(theta) - b * omega + u)
        theta_next = theta + dt * omega_next
        theta, omega = theta_next + sigma * noise[t, 0], omega_next + sigma * noise[t, 1]
    return total + 20 * (1 + np.cos(theta)) + 0.5 * omega**2


# ------------------------------------------------------------------------------------------
# The model layer
# ------------------------------------------------------------------------------------------


def test_sites_shapes_and_cost_match_a_numpy_rollout():
    problem = pendulum.problem(horizon=12)
    policy = PendulumPolicy(4, jax.random.key(0))
    starts = _pendulum_starts(jax.random.key(1), 3)
    model = pc.policy_model(problem, policy, starts, temperature=0.5, process_noise=0.1,
                            noise_treatment="extended")
    ld = pc.log_density(model)
    assert ld.latent_shapes == {
        "policy.mlp.layers[0].weight": (4, 3),
        "policy.mlp.layers[0].bias": (4,),
        "policy.mlp.layers[1].weight": (1, 4),
        "policy.mlp.layers[1].bias": (1,),
        "process_noise": (3, 12, 2),
    }
    assert ld.observed_names == ("cost_boltzmann",)

    z = jax.jit(ld.sample_prior, static_argnums=1)(jax.random.key(2), 1)[0]
    sites = jax.jit(ld.constrain)(z)
    fake = pc.Result("hand", {k: np.asarray(v)[None] for k, v in sites.items()}, np.zeros(1))
    net = pc.trained_policy(fake, policy)
    expected = np.mean([
        _numpy_pendulum_cost(net, starts[m], np.asarray(sites["process_noise"][m]), 0.1, 12)
        for m in range(3)
    ])
    np.testing.assert_allclose(float(sites["cost"]), expected, rtol=2e-5)
    # The helper used for evaluation agrees with the model's cost site.
    helper = pc.policy_cost(problem, net, starts, sites["process_noise"], process_noise=0.1).mean()
    np.testing.assert_allclose(float(helper), float(sites["cost"]), rtol=1e-6)
    # The Boltzmann factor is -cost / temperature; the prior is exact Normal(0, 1) on every site.
    lp, ll = jax.jit(ld.log_parts)(z)
    np.testing.assert_allclose(float(ll), -float(sites["cost"]) / 0.5, rtol=1e-6)
    np.testing.assert_allclose(float(lp), float(jnp.sum(jax.scipy.stats.norm.logpdf(z))), rtol=1e-5)

    # The default treatment holds K fixed sequences per state instead of a latent: the same rollout
    # on model.scenario_states (each state repeated K times) and model.noise.
    common = pc.policy_model(problem, policy, starts, temperature=0.5, process_noise=0.1, num_noise_samples=2,
                             noise_key=jax.random.key(5))
    ld_common = pc.log_density(common)
    assert ld_common.latent_names == tuple(n for n in ld.latent_names if n != "process_noise")
    assert common.noise.shape == (6, 12, 2) and common.scenario_states.shape == (6, 2)
    np.testing.assert_array_equal(common.scenario_states[1::2], starts)
    z_common = ld_common.ravel({k: v for k, v in ld.unravel(z).items() if k != "process_noise"})
    cost_common = float(jax.jit(ld_common.constrain)(z_common)["cost"])
    expected_common = np.mean([
        _numpy_pendulum_cost(net, starts[m // 2], np.asarray(common.noise[m]), 0.1, 12) for m in range(6)
    ])
    np.testing.assert_allclose(cost_common, expected_common, rtol=2e-5)
    np.testing.assert_allclose(float(jax.jit(ld_common.log_parts)(z_common)[1]), -cost_common / 0.5, rtol=1e-6)

    # Without process noise there is no noise site; actions always respect the torque bounds.
    ld0 = pc.log_density(pc.policy_model(problem, policy, starts, param_prior_scale=30.0))
    assert "process_noise" not in ld0.latent_names
    wide = ld0.constrain(ld0.sample_prior(jax.random.key(3), 1)[0])
    big = pc.trained_policy(pc.Result("hand", {k: np.asarray(v)[None] for k, v in wide.items()}, np.zeros(1)), policy)
    _, actions = pc.closed_loop_rollout(problem, big, starts[0])
    assert actions.shape == (12, 1) and float(jnp.max(jnp.abs(actions))) <= 5.0


def test_gradient_matches_finite_differences_in_float64():
    with jax.enable_x64(True):
        problem = pendulum.problem(horizon=15)
        policy = PendulumPolicy(4, jax.random.key(0))
        starts = _pendulum_starts(jax.random.key(1), 3).astype(jnp.float64)
        model = pc.policy_model(problem, policy, starts, temperature=0.7, param_prior_scale=1.5,
                                process_noise=0.2, noise_treatment="extended")
        ld = pc.log_density(model)
        z = jax.jit(ld.sample_prior, static_argnums=1)(jax.random.key(4), 1)[0]
        assert z.dtype == jnp.float64
        f = jax.jit(lambda z: ld.log_target(z, 0.8))
        grad = jax.jit(jax.grad(lambda z: ld.log_target(z, 0.8)))(z)
        num_policy = sum(int(np.prod(s)) for n, s in ld.latent_shapes.items() if n != "process_noise")
        rng = np.random.default_rng(0)
        # Every parameter coordinate, a sample of noise coordinates, and three random directions.
        coords = list(range(num_policy)) + list(rng.choice(np.arange(num_policy, ld.dim), 12, replace=False))
        eps = 1e-6
        for i in coords:
            e = jnp.zeros_like(z).at[i].set(eps)
            fd = (f(z + e) - f(z - e)) / (2 * eps)
            np.testing.assert_allclose(float(grad[i]), float(fd), rtol=1e-5, atol=1e-6)
        for _ in range(3):
            v = jnp.asarray(rng.standard_normal(ld.dim))
            fd = (f(z + eps * v) - f(z - eps * v)) / (2 * eps)
            np.testing.assert_allclose(float(grad @ v), float(fd), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(initial_states=jnp.zeros(2)), "single state"),
        (dict(initial_states=jnp.zeros((4, 3))), r"shape \(M, 2\)"),
        (dict(initial_states=jnp.zeros((0, 2))), "M >= 1"),
        (dict(initial_states=[jnp.zeros(2)]), "structure"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(param_prior_scale=0.0), "param_prior_scale"),
        (dict(process_noise=-0.1), "process_noise"),
        (dict(process_noise=0.1, noise_treatment="redrawn"), "noise_treatment"),
        (dict(process_noise=0.1, num_noise_samples=0), "num_noise_samples"),
        (dict(process_noise=0.1, num_noise_samples=2.0), "num_noise_samples"),
        (dict(process_noise=0.1, noise_key="seed"), "noise_key"),
        (dict(process_noise=0.1, noise_key=jnp.zeros(3)), "noise_key"),
        (dict(policy=eqx.nn.Linear(2, 3, key=jax.random.key(0))), r"shape \(action_dim,\)"),
        (dict(policy=eqx.nn.Linear(5, 1, key=jax.random.key(0))), "calling the policy"),
    ],
)
def test_bad_inputs_raise_value_errors(kwargs, match):
    problem = pendulum.problem(horizon=5)
    args = dict(policy=eqx.nn.Linear(2, 1, key=jax.random.key(0)), initial_states=jnp.zeros((4, 2)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pc.policy_model(problem, **args)


def test_scenarios_passed_at_run_time_replace_the_built_in_ones():
    """``model(initial_states=..., noise=...)``: the cost of the passed scenarios (checked against
    ``policy_cost``), and a clear error where the noise cannot be replaced."""
    problem = pendulum.problem(horizon=8)
    policy = PendulumPolicy(3, jax.random.key(0))
    model = pc.policy_model(problem, policy, _pendulum_starts(jax.random.key(1), 3), process_noise=0.1,
                            num_noise_samples=2)
    other = _pendulum_starts(jax.random.key(2), 5)
    noise = jax.random.normal(jax.random.key(3), (10, 8, 2))
    ld = pc.log_density(model, initial_states=other, noise=noise)
    z = ld.sample_prior(jax.random.key(4), 1)[0]
    sites = ld.constrain(z)
    net = pc.trained_policy(pc.Result("hand", {k: np.asarray(v)[None] for k, v in sites.items()}, np.zeros(1)), policy)
    expected = pc.policy_cost(problem, net, jnp.repeat(other, 2, axis=0), noise, 0.1).mean()
    np.testing.assert_allclose(float(sites["cost"]), float(expected), rtol=1e-6)

    with pytest.raises(ValueError, match=r"noise must have shape .*\(10, 8, 2\).*pass noise="):
        pc.log_density(model, initial_states=other)
    with pytest.raises(ValueError, match=r"\(10, 8, 2\)"):
        pc.log_density(model, initial_states=other, noise=noise[:6])
    extended = pc.policy_model(problem, policy, other, process_noise=0.1, noise_treatment="extended")
    with pytest.raises(ValueError, match="noise_treatment='extended'"):
        pc.log_density(extended, noise=noise)
    assert pc.log_density(extended, initial_states=other[:2]).latent_shapes["process_noise"] == (2, 8, 2)
    with pytest.raises(ValueError, match="process_noise=0.0"):
        pc.log_density(pc.policy_model(problem, policy, other), noise=noise)


def test_process_noise_needs_array_states():
    dict_problem = pc.ControlProblem(
        step=lambda x, u: {"p": x["p"] + u}, stage_cost=lambda x, u: jnp.sum(x["p"] ** 2),
        terminal_cost=lambda x: jnp.sum(x["p"] ** 2), x0={"p": jnp.zeros(1)}, horizon=3,
        action_dim=1, name="dict_state", observe=lambda x: x["p"],
    )
    policy = eqx.nn.Linear(1, 1, key=jax.random.key(0))
    starts = {"p": jnp.ones((2, 1))}
    ld = pc.log_density(pc.policy_model(dict_problem, policy, starts))  # pytree states: fine
    assert ld.latent_names == ("policy.weight", "policy.bias")
    with pytest.raises(ValueError, match="1-D arrays"):
        pc.policy_model(dict_problem, policy, starts, process_noise=0.1)


def test_trained_policy_picks_particles_and_round_trips_through_serialisation(tmp_path):
    problem = pendulum.problem(horizon=5)
    policy = PendulumPolicy(4, jax.random.key(0))
    ld = pc.log_density(pc.policy_model(problem, policy, _pendulum_starts(jax.random.key(1), 2)))
    samples = jax.vmap(ld.constrain)(ld.sample_prior(jax.random.key(5), 4))
    samples = {k: np.asarray(v) for k, v in samples.items()}
    samples["cost"] = np.array([3.0, np.nan, 1.0, 2.0])  # particle 2 is the best; NaN never wins
    result = pc.Result("hand", samples, np.log(np.full(4, 0.25)))

    best = pc.trained_policy(result, policy)
    np.testing.assert_array_equal(best.mlp.layers[0].weight, samples["policy.mlp.layers[0].weight"][2])
    third = pc.trained_policy(result, policy, index=3)
    np.testing.assert_array_equal(third.mlp.layers[1].bias, samples["policy.mlp.layers[1].bias"][3])
    assert type(best) is PendulumPolicy and best.mlp.activation is policy.mlp.activation

    path = tmp_path / "policy.eqx"
    eqx.tree_serialise_leaves(path, best)
    loaded = eqx.tree_deserialise_leaves(path, policy)
    x = jnp.array([0.3, -0.2])
    assert float(loaded(x)) == float(best(x))

    with pytest.raises(ValueError, match="index"):
        pc.trained_policy(result, policy, index=4)
    with pytest.raises(ValueError, match="no site for the policy parameters"):
        pc.trained_policy(result, eqx.nn.Linear(2, 1, key=jax.random.key(0)))
    with pytest.raises(ValueError, match="no site"):
        pc.trained_policy(result, policy, name="controller")


# ------------------------------------------------------------------------------------------
# Every algorithm runs on the policy model unchanged
# ------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:TSMC stopped")  # three stages are enough to run, not to finish
@pytest.mark.parametrize(
    "make",
    [
        lambda m: TSMC(m, num_particles=8, num_moves=1, num_leapfrog=2, max_stages=3, progress_bar=False),
        lambda m: MDPO(m, num_particles=4, num_steps=5, progress_bar=False),
        lambda m: GradientDescent(m, num_particles=4, num_steps=5, progress_bar=False),
        lambda m: CEM(m, num_particles=8, num_steps=3, progress_bar=False),
        lambda m: MPPI(m, num_particles=8, num_steps=3, progress_bar=False),
        lambda m: NUTS(m, num_warmup=5, num_samples=4, max_tree_depth=3, progress_bar=False),
    ],
    ids=["tsmc", "mdpo", "gradient_descent", "cem", "mppi", "nuts"],
)
def test_every_algorithm_runs_on_the_policy_model(make):
    problem = pendulum.problem(horizon=6)
    policy = PendulumPolicy(3, jax.random.key(0))
    model = pc.policy_model(problem, policy, _pendulum_starts(jax.random.key(1), 2), process_noise=0.05)
    result = make(model).run(jax.random.key(0))
    # The default noise treatment holds the noise fixed (tests/test_policy_noise.py runs TSMC and
    # gradient descent on the extended treatment, whose noise is a latent).
    assert "process_noise" not in result.samples
    assert np.all(np.isfinite(result.samples["cost"]))
    net = pc.trained_policy(result, policy)
    assert np.isfinite(float(net(jnp.zeros(2))))
    tree = pc.to_arviz(result)
    assert "policy.mlp.layers[0].weight" in tree["posterior"].data_vars


# ------------------------------------------------------------------------------------------
# Linear-quadratic: the learned gain against the Riccati controller
# ------------------------------------------------------------------------------------------

LQ_HORIZON, LQ_NOISE, LQ_STATES = 20, 0.1, 128
LQ_INITIAL_COV = np.diag([1.0, 1.0, 0.5, 0.5])
Q, R = np.eye(4), 0.1 * np.eye(2)


def _stationary_riccati(a, b):
    p = Q.copy()
    for _ in range(5000):
        k = np.linalg.solve(R + b.T @ p @ b, b.T @ p @ a)
        p = Q + a.T @ p @ (a - b @ k)
    return p


def _finite_horizon_riccati(a, b, terminal):
    """Backward recursion: gains ``K_0 .. K_{T-1}`` and cost-to-go matrices ``P_0 .. P_T``."""
    ps, gains = [terminal], []
    for _ in range(LQ_HORIZON):
        p = ps[0]
        k = np.linalg.solve(R + b.T @ p @ b, b.T @ p @ a)
        ps.insert(0, Q + k.T @ R @ k + (a - b @ k).T @ p @ (a - b @ k))
        gains.insert(0, k)
    return gains, ps


def _expected_cost(a, b, terminal, gain):
    """``E[J]`` of ``u = -gain x`` over ``x_0 ~ N(0, S_0)`` and ``w ~ N(0, sigma^2 I)``, exactly,
    by propagating the second moment ``S_{t+1} = A_cl S_t A_cl' + sigma^2 I``."""
    closed = a - b @ gain
    s, total = LQ_INITIAL_COV.copy(), 0.0
    for _ in range(LQ_HORIZON):
        total += np.trace((Q + gain.T @ R @ gain) @ s)
        s = closed @ s @ closed.T + LQ_NOISE**2 * np.eye(4)
    return total + np.trace(terminal @ s)


@pytest.fixture(scope="module")
def lq_setup():
    a, b = lqr.matrices(0.1)
    terminal = _stationary_riccati(a, b)
    aj, bj, tj = (jnp.asarray(m, jnp.float32) for m in (a, b, terminal))
    problem = pc.ControlProblem(
        step=lambda x, u: aj @ x + bj @ u,
        stage_cost=lambda x, u: x @ x + 0.1 * (u @ u),
        terminal_cost=lambda x: x @ tj @ x,
        x0=jnp.zeros(4), horizon=LQ_HORIZON, action_dim=2, name="lq_stationary",
    )
    scale = jnp.sqrt(jnp.diag(jnp.asarray(LQ_INITIAL_COV, jnp.float32)))
    starts = jax.random.normal(jax.random.key(1), (LQ_STATES, 4)) * scale
    policy = eqx.nn.Linear(4, 2, use_bias=False, key=jax.random.key(0))
    model = pc.policy_model(problem, policy, starts, temperature=0.1, param_prior_scale=5.0,
                            process_noise=LQ_NOISE)
    result = TSMC(model, num_particles=64, num_moves=4, num_leapfrog=8, progress_bar=False).run(jax.random.key(0))
    return dict(a=a, b=b, terminal=terminal, problem=problem, policy=policy, result=result, scale=scale)


@pytest.mark.slow
def test_lq_learned_gain_is_within_5_percent_of_riccati(lq_setup):
    """Linear-quadratic regulation with process noise, linear policy ``u = W x``.

    Choice (stated honestly): the optimal finite-horizon controller is time-varying in general,
    and a stationary gain could not match it. Here the terminal weight is the stationary Riccati
    solution ``P_inf``; then the finite-horizon Riccati recursion is stationary and its gains are
    all ``K_inf`` (asserted below), so the best *linear stationary* policy is the optimal
    controller, and the comparison is against the true optimum. Both policies are evaluated on
    fresh initial states and fresh noise: exactly, by second-moment propagation, and by Monte Carlo
    through ``pc.policy_cost`` with common random numbers.

    Why M = 128 states and temperature 0.1: the default noise treatment holds one noise sequence
    per state fixed, so the target is ``p(W) exp(-J_hat(W) / lambda)`` with ``J_hat`` the sample
    average of the cost over the 128 scenarios, whose minimiser's excess expected cost falls as
    ``dim / M``; the posterior's own spread costs about ``lambda * dim / 2``, and ``lambda dim / 2
    = 0.4`` (1% of the optimal cost) keeps it small. (With ``noise_treatment="extended"`` the
    target is risk-seeking instead, with a bias that shrinks only as ``M lambda`` grows;
    tests/test_policy_noise.py measures it against its closed form.)
    """
    s = lq_setup
    a, b, terminal = s["a"], s["b"], s["terminal"]
    gains, ps = _finite_horizon_riccati(a, b, terminal)
    for k in gains:
        np.testing.assert_allclose(k, gains[-1], atol=1e-8)
    k_opt = gains[0]
    optimal = np.trace(ps[0] @ LQ_INITIAL_COV) + LQ_NOISE**2 * sum(np.trace(p) for p in ps[1:])
    np.testing.assert_allclose(_expected_cost(a, b, terminal, k_opt), optimal, rtol=1e-10)

    learned = pc.trained_policy(s["result"], s["policy"])
    k_learned = -np.asarray(learned.weight, np.float64)
    exact_ratio = _expected_cost(a, b, terminal, k_learned) / optimal
    assert 1.0 - 1e-9 <= exact_ratio < 1.05, (exact_ratio, k_learned, k_opt)

    key_x, key_w = jax.random.split(jax.random.key(123))
    fresh = jax.random.normal(key_x, (4000, 4)) * s["scale"]
    noise = jax.random.normal(key_w, (4000, LQ_HORIZON, 4))
    riccati = eqx.nn.Linear(4, 2, use_bias=False, key=jax.random.key(0))
    riccati = eqx.tree_at(lambda m: m.weight, riccati, jnp.asarray(-k_opt, jnp.float32))
    mc_opt = float(pc.policy_cost(s["problem"], riccati, fresh, noise, LQ_NOISE).mean())
    mc_learned = float(pc.policy_cost(s["problem"], learned, fresh, noise, LQ_NOISE).mean())
    np.testing.assert_allclose(mc_opt, optimal, rtol=0.03)  # the helper sees the Riccati truth
    assert mc_learned / mc_opt < 1.05, (mc_learned, mc_opt)


# ------------------------------------------------------------------------------------------
# Pendulum swing-up with a small MLP policy
# ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pendulum_mlp_policy_swings_up_from_held_out_states():
    """TSMC on a 3-8-1 tanh MLP (41 parameters) from 24 training states spread around hanging
    (``theta ~ U(-pi/2, pi/2)``, ``omega ~ U(-1, 1)``), torque limit 5 N m (pumping needed),
    horizon 60 (3 s), no process noise. Success on a held-out state: within 0.3 rad of upright
    at the end of the horizon. At least 80% of 200 held-out states must succeed."""
    problem = pendulum.problem(horizon=60)
    policy = PendulumPolicy(8, jax.random.key(0))
    train = _pendulum_starts(jax.random.key(1), 24)
    model = pc.policy_model(problem, policy, train, temperature=0.02, param_prior_scale=2.0)
    result = TSMC(model, num_particles=128, num_moves=4, num_leapfrog=8, progress_bar=False).run(jax.random.key(0))
    net = pc.trained_policy(result, policy)

    held_out = _pendulum_starts(jax.random.key(7), 200)
    states, _ = jax.vmap(lambda x0: pc.closed_loop_rollout(problem, net, x0))(held_out)
    final_error = pendulum.upright_error(states[:, -1, 0])
    assert float(jnp.mean(final_error < 0.3)) >= 0.8
    # The policy does the work: doing nothing leaves every held-out start far from upright.
    idle = eqx.nn.Linear(2, 1, key=jax.random.key(0))
    idle = eqx.tree_at(lambda m: (m.weight, m.bias), idle, (jnp.zeros((1, 2)), jnp.zeros(1)))
    idle_states, _ = jax.vmap(lambda x0: pc.closed_loop_rollout(problem, idle, x0))(held_out)
    assert float(jnp.mean(pendulum.upright_error(idle_states[:, -1, 0]) < 0.3)) == 0.0
