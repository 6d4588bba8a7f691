"""Policies under process noise: the noise treatments of ``pc.policy_model`` against Riccati.

The system is a noisy linear-quadratic regulator written here (an unstable, lightly coupled
two-state plant, not the benchmark's double integrator), so the truth is in closed form: the
Riccati gain is the expected-cost optimum, a linear policy's expected cost follows from its
second moments, and the extended-space target, whose cost is quadratic in the noise, has its
optima (the ``W``-marginal that TSMC samples and the joint mode that gradient descent finds) as
Gaussian integrals.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import ppl_control as pc
from ppl_control.inference import TSMC, GradientDescent

pytestmark = pytest.mark.xdist_group(name="policy_noise")

A = np.array([[1.05, 0.1], [0.0, 0.95]])
B = np.array([[0.0], [0.1]])
Q = np.diag([1.0, 0.2])
R = np.array([[0.05]])
SIGMA, HORIZON, NUM_STATES, TEMPERATURE, PRIOR_SCALE = 0.1, 25, 32, 0.05, 5.0
INITIAL_SCALE = np.array([1.0, 0.5])  # x_0 ~ N(0, diag(INITIAL_SCALE^2))


def _stationary_riccati():
    p = Q.copy()
    for _ in range(10_000):
        p = Q + A.T @ p @ (A - B @ np.linalg.solve(R + B.T @ p @ B, B.T @ p @ A))
    return p


P_INF = _stationary_riccati()
# With terminal weight P_inf every gain of the finite-horizon recursion is K_inf, so u = W* x with
# W* = -K_inf is the expected-cost optimum over all policies (certainty equivalence).
W_OPT = -np.linalg.solve(R + B.T @ P_INF @ B, B.T @ P_INF @ A)


def expected_cost(w):
    """``E[J]`` of ``u = W x`` over fresh ``x_0`` and noise, by second-moment propagation."""
    closed, weight = A + B @ w, Q + w.T @ R @ w
    s, total = np.diag(INITIAL_SCALE**2), 0.0
    for _ in range(HORIZON):
        total += np.trace(weight @ s)
        s = closed @ s @ closed.T + SIGMA**2 * np.eye(2)
    return total + np.trace(P_INF @ s)


def cost_in_noise(w):
    """``(F, G, H)`` with ``J = x0' F x0 + 2 x0' G n + n' H n`` for the stacked noise ``n``."""
    closed, weight = A + B @ w, Q + w.T @ R @ w
    dim = 2 * HORIZON
    phi, gamma = np.eye(2), np.zeros((2, dim))
    f, g, h = np.zeros((2, 2)), np.zeros((2, dim)), np.zeros((dim, dim))
    for t in range(HORIZON + 1):
        l = weight if t < HORIZON else P_INF
        f, g, h = f + phi.T @ l @ phi, g + SIGMA * phi.T @ l @ gamma, h + SIGMA**2 * gamma.T @ l @ gamma
        if t < HORIZON:
            phi, gamma = closed @ phi, closed @ gamma
            gamma[:, 2 * t:2 * t + 2] += np.eye(2)
    return f, g, h


def extended_space_objective(w, starts, kind):
    """``-lambda log`` of the extended-space target as a function of ``W`` (up to a constant).

    Density ``p(W) p(n) exp(-1/M sum_m J_m / lambda)``, ``n^m ~ N(0, I)``; with ``c = M lambda``
    and ``J_m = a + 2 b'n + n'Hn``: the ``W``-marginal has ``-c log E exp(-J_m / c) = (c/2) log
    det(I + 2H/c) + a - b'(H + c I/2)^-1 b`` per scenario (``kind="marginal"``), the joint mode
    ``min_n J_m + c |n|^2 / 2 = a - b'(H + c I/2)^-1 b`` (``kind="joint"``).
    """
    f, g, h = cost_in_noise(w)
    c = len(starts) * TEMPERATURE
    lin = starts @ g
    shifted = h + 0.5 * c * np.eye(len(h))
    value = np.mean(np.einsum("mi,ij,mj->m", starts, f, starts)
                    - np.einsum("mi,mi->m", lin, np.linalg.solve(shifted, lin.T).T))
    if kind == "marginal":
        value += 0.5 * c * np.linalg.slogdet(np.eye(len(h)) + 2.0 * h / c)[1]
    return value + TEMPERATURE * np.sum(w**2) / (2.0 * PRIOR_SCALE**2)


def extended_space_optimum(starts, kind):
    res = scipy.optimize.minimize(lambda v: extended_space_objective(v.reshape(1, 2), starts, kind),
                                  W_OPT.ravel(), method="Nelder-Mead", options=dict(xatol=1e-8, fatol=1e-12))
    return res.x.reshape(1, 2)


@pytest.fixture(scope="module")
def setup():
    aj, bj, pj, qj = (jnp.asarray(m, jnp.float32) for m in (A, B, P_INF, Q))
    problem = pc.ControlProblem(
        step=lambda x, u: aj @ x + bj @ u, stage_cost=lambda x, u: x @ qj @ x + float(R[0, 0]) * (u @ u),
        terminal_cost=lambda x: x @ pj @ x, x0=jnp.zeros(2), horizon=HORIZON, action_dim=1,
        name="noisy_unstable_plant",
    )
    starts = jax.random.normal(jax.random.key(11), (NUM_STATES, 2)) * jnp.asarray(INITIAL_SCALE, jnp.float32)
    policy = eqx.nn.Linear(2, 1, use_bias=False, key=jax.random.key(0))
    return dict(problem=problem, starts=starts, policy=policy)


def _model(setup, **kwargs):
    return pc.policy_model(setup["problem"], setup["policy"], setup["starts"], temperature=TEMPERATURE,
                           param_prior_scale=PRIOR_SCALE, process_noise=SIGMA, **kwargs)


@pytest.fixture(scope="module")
def default_run(setup):
    model = _model(setup, noise_key=jax.random.key(3))
    algo = TSMC(model, num_particles=64, num_moves=4, num_leapfrog=8, progress_bar=False)
    return dict(model=model, algo=algo, result=algo.run(jax.random.key(0)))


def _weight(setup, result):
    return np.asarray(pc.trained_policy(result, setup["policy"]).weight, np.float64)


def test_default_treatment_learns_the_expected_cost_optimum(setup, default_run):
    """The default (common random numbers) policy is within 2% of the Riccati-optimal expected
    cost: exactly (second moments) and on 4,000 fresh states and noise sequences."""
    assert default_run["model"].noise_treatment == "common"
    assert "process_noise" not in pc.log_density(default_run["model"]).latent_names
    w = _weight(setup, default_run["result"])
    optimum = expected_cost(W_OPT)
    assert expected_cost(w) / optimum < 1.02, (w, W_OPT)

    key_x, key_w = jax.random.split(jax.random.key(99))
    fresh = jax.random.normal(key_x, (4000, 2)) * jnp.asarray(INITIAL_SCALE, jnp.float32)
    noise = jax.random.normal(key_w, (4000, HORIZON, 2))
    mean_cost = lambda w: float(pc.policy_cost(  # noqa: E731
        setup["problem"], eqx.tree_at(lambda m: m.weight, setup["policy"], jnp.asarray(w, jnp.float32)),
        fresh, noise, SIGMA).mean())
    riccati = mean_cost(W_OPT)
    np.testing.assert_allclose(riccati, optimum, rtol=0.03)  # the Monte Carlo sees the truth
    assert mean_cost(w) / riccati < 1.02


def test_same_noise_key_same_policy_and_another_key_another(setup, default_run):
    again = _model(setup, noise_key=jax.random.key(3))
    np.testing.assert_array_equal(np.asarray(again.noise), np.asarray(default_run["model"].noise))
    np.testing.assert_array_equal(np.asarray(_model(setup, noise_key=3).noise), np.asarray(again.noise))
    rerun = default_run["algo"].run(jax.random.key(0))
    np.testing.assert_array_equal(_weight(setup, rerun), _weight(setup, default_run["result"]))
    # The same scenarios passed at run time give the same policy; other noise, another one.
    passed = default_run["algo"].run(jax.random.key(0), initial_states=setup["starts"], noise=again.noise)
    np.testing.assert_allclose(_weight(setup, passed), _weight(setup, default_run["result"]), rtol=1e-4)
    other = _model(setup, noise_key=jax.random.key(4)).noise
    assert not np.array_equal(np.asarray(other), np.asarray(again.noise))
    moved = default_run["algo"].run(jax.random.key(0), initial_states=setup["starts"], noise=other)
    assert not np.allclose(_weight(setup, moved), _weight(setup, default_run["result"]))


def test_extended_space_under_controls_as_the_analysis_says(setup, default_run):
    """The extended-space target tilts the noise too: its optima (computed above in closed form)
    use a weaker gain than Riccati's and cost more in expectation. Gradient descent converges to
    the joint mode; TSMC's weighted particles centre on the marginal's optimum."""
    starts = np.asarray(setup["starts"], np.float64)
    joint, marginal = extended_space_optimum(starts, "joint"), extended_space_optimum(starts, "marginal")
    optimum = expected_cost(W_OPT)
    for w in (joint, marginal):  # the analysis: under-control, a clear excess cost
        assert np.all(np.abs(w) < np.abs(W_OPT)) and expected_cost(w) / optimum > 1.03, (w, W_OPT)

    model = _model(setup, noise_treatment="extended")
    assert pc.log_density(model).latent_shapes["process_noise"] == (NUM_STATES, HORIZON, 2)
    gd = GradientDescent(model, num_particles=2, num_steps=5000, learning_rate=0.05, progress_bar=False)
    bias = np.linalg.norm(joint - W_OPT)
    for w_gd in np.asarray(gd.run(jax.random.key(0)).samples["policy.weight"], np.float64):
        assert np.linalg.norm(w_gd - joint) < 0.1 * bias, (w_gd, joint)  # at the mode, to a tenth of the bias

    result = TSMC(model, num_particles=64, num_moves=4, num_leapfrog=8, progress_bar=False).run(jax.random.key(0))
    weights = np.exp(np.asarray(result.log_weights, np.float64))
    mean_w = np.einsum("p,pij->ij", weights / weights.sum(), np.asarray(result.samples["policy.weight"], np.float64))
    assert np.linalg.norm(mean_w - marginal) < 0.5 * np.linalg.norm(mean_w - W_OPT), (mean_w, marginal, W_OPT)
    w_tsmc = _weight(setup, result)
    assert expected_cost(w_tsmc) > expected_cost(_weight(setup, default_run["result"]))


def test_fresh_noise_key_learns_the_expected_cost_optimum(setup):
    """``model(noise_key=k)`` draws the noise from ``k`` (the same as passing those sequences);
    gradient descent that redraws it at every step (``fresh_noise``) learns a policy within 2% of
    the Riccati-optimal expected cost, and reports its cost on the model's fixed scenarios."""
    model = _model(setup, noise_key=jax.random.key(3))
    ld_key = pc.log_density(model, noise_key=jax.random.key(8))
    shape = (NUM_STATES, HORIZON, 2)
    ld_noise = pc.log_density(model, noise=jax.random.normal(jax.random.key(8), shape))
    z = ld_key.sample_prior(jax.random.key(1), 2)
    np.testing.assert_array_equal(jax.vmap(ld_key.constrain)(z)["cost"], jax.vmap(ld_noise.constrain)(z)["cost"])
    with pytest.raises(ValueError, match="not both"):
        pc.log_density(model, noise=jax.random.normal(jax.random.key(8), shape), noise_key=jax.random.key(8))

    algo = GradientDescent(model, num_particles=2, num_steps=300, fresh_noise="noise_key", progress_bar=False,
                           optimizer=optax.adam(optax.exponential_decay(1.0, 300, 0.01)))
    # From the zero policy: far out (prior scale 5) a restart can start in an unstable basin
    # where the exploding cost stalls it, fixed noise or fresh; the valley toward the optimum is
    # long and flat, hence Adam's large, decaying step.
    result = algo.run(jax.random.key(0), init={"policy.weight": np.zeros((2, 1, 2), np.float32)})
    w = _weight(setup, result)
    assert expected_cost(w) / expected_cost(W_OPT) < 1.02, (w, W_OPT)
    held_out = float(pc.policy_cost(setup["problem"], pc.trained_policy(result, setup["policy"]),
                                    model.scenario_states, model.noise, SIGMA).mean())
    assert float(result.best()["cost"]) == pytest.approx(held_out, rel=1e-4)
