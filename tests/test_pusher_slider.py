"""Pusher-slider: gradients, contact physics against an independent quasi-static computation,
the goal's mirror symmetry, and a short inference run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.models import pusher_slider

SIDE, MU = 0.09, 0.3


def _mean_radius_numerically(side, n=2000):
    """``(1/A) int |r| dA`` over the square by the midpoint rule: the limit surface's ``c``."""
    t = (np.arange(n) + 0.5) / n * side - side / 2
    x, y = np.meshgrid(t, t)
    return float(np.mean(np.hypot(x, y)))


def _quasi_static(p, side=SIDE, mu=MU):
    """Independent quasi-static model at contact ``(-side/2, p)``: ``(twist_of(f), contact_velocity_of(f),
    cone_edges)`` from the ellipsoidal limit surface, by plain matrix algebra."""
    c = _mean_radius_numerically(side)
    L = np.diag([1.0, 1.0, 1.0 / c**2])  # twist ∝ gradient of f^2/fmax^2 + m^2/mmax^2
    r = np.array([-side / 2, p])
    J = np.array([[1.0, 0.0, -r[1]], [0.0, 1.0, r[0]]])  # material-point velocity = J @ twist

    def twist(f):
        return L @ J.T @ f

    def contact_velocity(f):
        return J @ twist(f)

    edges = [contact_velocity(np.array([1.0, s * mu])) for s in (-1.0, 1.0)]
    cone = tuple(v[1] / v[0] for v in edges)  # v_t / v_n along each edge of the friction cone
    return twist, contact_velocity, cone, J, L


def _constant_twist_pose(v, t):
    """World pose after time ``t`` from the origin under a constant body twist ``v = (vx, vy, w)``."""
    vx, vy, w = v
    if abs(w) < 1e-12:
        return np.array([vx * t, vy * t, 0.0])
    s, c = math.sin(w * t), math.cos(w * t)
    return np.array([(s * vx + (c - 1) * vy) / w, ((1 - c) * vx + s * vy) / w, w * t])


def test_limit_surface_ratio_is_the_squares_mean_radius():
    assert pusher_slider.limit_surface_ratio(SIDE) == pytest.approx(_mean_radius_numerically(SIDE), rel=1e-5)


def test_gradient_matches_finite_differences_in_every_contact_mode():
    with jax.enable_x64(True):
        problem = models.get("pusher_slider", horizon=20)
        value_and_grad = jax.jit(jax.value_and_grad(problem.cost))
        keys = jax.random.split(jax.random.key(0), 3)
        v = 0.1
        # sticking-dominated (small v_t), sliding (|v_t| >> v_n), and a mix that walks off the face
        plans = [
            jnp.stack([jax.random.uniform(keys[0], (20,), minval=0.02, maxval=0.09),
                       0.01 * jax.random.normal(keys[1], (20,))], -1),
            jnp.stack([jnp.full(20, 0.02), 0.09 * jnp.sign(jax.random.normal(keys[2], (20,)))], -1),
            jax.random.uniform(keys[2], (20, 2), minval=jnp.array([0.005, -0.95 * v]), maxval=jnp.array([0.095, 0.95 * v])),
        ]
        for u in plans:
            u = jnp.asarray(u, jnp.float64)
            _, grad = value_and_grad(u)
            assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.linalg.norm(grad)) > 0
            eps = 1e-7
            for i in range(2):
                d = jax.random.normal(jax.random.key(10 + i), u.shape, jnp.float64)
                fd = (value_and_grad(u + eps * d)[0] - value_and_grad(u - eps * d)[0]) / (2 * eps)
                ad = float(jnp.sum(grad * d))
                assert abs(float(fd) - ad) <= 1e-5 * float(jnp.linalg.norm(grad) * jnp.linalg.norm(d)), (fd, ad)


def test_slider_moves_only_when_pushed():
    with jax.enable_x64(True):
        problem = models.get("pusher_slider", horizon=30)
        # no normal velocity: the pusher slides along the face, the slider stays put (up to
        # rounding: w_t = v_t - s(v_t) + s(-v_t) is 0 exactly in real arithmetic)
        v_t = 0.08 * jnp.sin(jnp.arange(30.0))
        states = problem.trajectory(jnp.stack([jnp.zeros(30), v_t], -1))
        np.testing.assert_allclose(np.asarray(states[:, :3]), 0.0, atol=1e-15)
        np.testing.assert_allclose(np.asarray(states[1:, 3]), np.cumsum(np.asarray(v_t)) * 0.1, atol=1e-14)
        # pushing from beyond the face's end (out of contact): nothing moves but the pusher
        off = models.get("pusher_slider", horizon=30, x0=(0.0, 0.0, 0.0, 2 * SIDE))
        states = off.trajectory(jnp.tile(jnp.array([0.1, 0.0]), (30, 1)))
        np.testing.assert_allclose(np.asarray(states[-1, :3]), 0.0, atol=1e-30)
        # pushing straight at the middle of the face: straight-line motion at the pusher's speed
        states = problem.trajectory(jnp.tile(jnp.array([0.07, 0.0]), (30, 1)))
        np.testing.assert_allclose(np.asarray(states[-1]), [0.07 * 3.0, 0.0, 0.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("p", [0.0, 0.02, -0.035])
def test_pure_sticking_follows_the_motion_cone_prediction(p):
    twist, contact_velocity, (cone_low, cone_high), J, L = _quasi_static(p)
    assert cone_low < 0 < cone_high or p != 0.0
    v_n = 0.06
    v_t = v_n * (0.3 * cone_low + 0.7 * cone_high)  # strictly inside the motion cone
    f = np.linalg.solve(J @ L @ J.T, np.array([v_n, v_t]))  # the force that makes J V = u
    assert f[0] > 0 and abs(f[1]) < MU * f[0]  # inside the friction cone: sticking is consistent
    expected = _constant_twist_pose(twist(f), 1.0)
    with jax.enable_x64(True):
        sharp = models.get("pusher_slider", horizon=20, dt=0.05, sharpness=1e4, x0=(0.0, 0.0, 0.0, p))
        final = np.asarray(sharp.trajectory(jnp.tile(jnp.array([v_n, v_t]), (20, 1)))[-1])
    np.testing.assert_allclose(final[:3], expected, rtol=1e-5, atol=1e-9)  # c by quadrature: ~1e-6
    assert final[3] == pytest.approx(p, abs=1e-9)  # sticking: the pusher does not slide


@pytest.mark.parametrize("side_of_cone", [-1.0, 1.0])
def test_sliding_moves_the_slider_along_the_cone_edge(side_of_cone):
    p = 0.015
    twist, contact_velocity, cone, J, L = _quasi_static(p)
    edge = cone[1] if side_of_cone > 0 else cone[0]
    v_n, v_t = 0.05, 0.05 * edge + side_of_cone * 0.04  # beyond that edge of the cone
    f_edge = np.array([1.0, side_of_cone * MU])
    scale = v_n / contact_velocity(f_edge)[0]  # the normal velocity fixes the force's size
    v = twist(scale * f_edge)
    with jax.enable_x64(True):
        rate = np.asarray(pusher_slider.dynamics(jnp.array([0.0, 0.0, 0.0, p]), jnp.array([v_n, v_t]),
                                                 side=SIDE, pusher_friction=MU, sharpness=1e5))
    np.testing.assert_allclose(rate[:3], v, rtol=1e-6, atol=1e-10)
    assert rate[3] == pytest.approx(v_t - edge * v_n, rel=1e-6)  # the pusher slides over the face


def test_goal_is_mirror_symmetric_two_equal_modes():
    with jax.enable_x64(True):
        problem = models.get("pusher_slider", horizon=20)
        u = pc.control_prior(problem).sample(jax.random.key(3))
        mirrored = u * jnp.array([1.0, -1.0])  # v_t -> -v_t mirrors the whole motion in y
        cost, final = jax.jit(jax.vmap(lambda v: (problem.cost(v), problem.trajectory(v)[-1])))(jnp.stack([u, mirrored]))
        assert float(cost[1]) == pytest.approx(float(cost[0]), rel=1e-12)
        np.testing.assert_allclose(np.asarray(final[1]), np.asarray(final[0]) * np.array([1, -1, -1, -1]), atol=1e-15)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="not_a_setting"):
        models.get("pusher_slider", not_a_setting=1)
    with pytest.raises(ValueError, match="sharpness"):
        models.get("pusher_slider", sharpness=0.0)


# A short inference run improving on the prior: tests/test_models.py runs TSMC on every registered
# problem, pusher_slider included (test_short_tsmc_lowers_best_cost_well_below_the_prior).
