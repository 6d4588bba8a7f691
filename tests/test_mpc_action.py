"""``pc.mpc(..., action="mean")``: the weighted mean of the particles' plans is applied."""

import jax
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import Result, models
from ppl_control._mpc import _applied_plan
from ppl_control.inference import TSMC

LQR = dict(horizon=10, temperature=1e-2)


def test_mean_action_is_the_lqr_controller_within_its_monte_carlo_error():
    """On the LQR problem the target over plans is Gaussian, so its mean first action is the
    finite-horizon LQR action ``-K_0 x`` (for ``R + lam/2 I``; see test_mpc.py). The best
    particle's action is one draw, within ``4 sigma_0`` of it (test_mpc.py); the mean of 128
    resampled particles averages that noise out: with an effective sample size of at least 16
    its standard error is ``sigma_0 / 4``, so ``|error| <= sigma_0`` is four standard errors."""
    problem = models.get("lqr", **LQR)
    planner = TSMC(pc.trajectory_model(problem), num_particles=128, num_moves=2, num_leapfrog=5,
                   progress_bar=False)
    loop = pc.mpc(planner, problem.x0, 4, jax.random.key(1), action="mean")
    a, b = models.lqr.matrices()
    lam = LQR["temperature"]
    p = 10.0 * np.eye(4)
    for _ in range(LQR["horizon"]):  # backward Riccati recursion for K_0
        gain = np.linalg.solve((0.1 + lam / 2) * np.eye(2) + b.T @ p @ b, b.T @ p @ a)
        p = np.eye(4) + a.T @ p @ (a - b @ gain)
    states = np.asarray(loop.observations, np.float64)
    expected = -states[:-1] @ gain.T
    _, cov, _ = models.lqr.gaussian_target(**LQR)
    sigma0 = np.sqrt(np.diag(cov)[:2])
    assert np.all(np.abs(loop.actions - expected) <= sigma0), (loop.actions, expected, sigma0)
    assert loop.config["action"] == "mean"
    np.testing.assert_allclose(loop.plans[:, 0], loop.actions, rtol=1e-6)  # the applied plan is kept


def _result(controls, log_weights):
    return Result(method="test", samples={"controls": np.asarray(controls, np.float32),
                                          "cost": np.zeros(len(controls), np.float32)},
                  log_weights=np.asarray(log_weights, np.float64))


def test_mean_plan_is_weighted_clipped_and_skips_bad_particles():
    clip = jax.jit(jax.vmap(lambda u: jax.numpy.clip(u, -1.0, 1.0)))
    controls = np.array([[[0.5]], [[3.0]], [[np.nan]], [[-0.5]]])  # (particles, horizon 1, action 1)
    log_w = np.log(np.array([0.5, 0.25, 0.125, 0.125]))
    # the NaN particle counts for nothing; 3.0 is clipped to 1.0 first
    expected = (0.5 * 0.5 + 0.25 * 1.0 + 0.125 * -0.5) / 0.875
    np.testing.assert_allclose(_applied_plan(_result(controls, log_w), "mean", clip)[0, 0], expected, rtol=1e-6)
    # no usable particle left: the best particle's plan instead of a NaN
    bad = np.full((2, 1, 1), np.nan)
    assert _applied_plan(_result(bad, np.log([0.5, 0.5])), "mean", clip).shape == (1, 1)


def test_unknown_action_is_named():
    problem = models.get("lqr", horizon=3)
    planner = TSMC(pc.trajectory_model(problem), num_particles=8, progress_bar=False)
    with pytest.raises(ValueError, match="action must be one of"):
        pc.mpc(planner, problem.x0, 2, jax.random.key(0), action="median")
