"""Pusher-slider: a point pusher must push a square block to a goal pose on a table.

The planar quasi-static pusher-slider of Hogan & Rodriguez ("Feedback control of the pusher-slider
system: a story of hybrid and underactuated contact dynamics", WAFR 2016), with Lynch & Mason's
ellipsoidal limit surface (Goyal, Ruina & Papadopoulos 1991; Lynch, Maekawa & Tanie 1992).

State ``[x, y, theta, p]``: the slider's centre and orientation in the world, and the pusher's
position ``p`` along the pushed face, in the slider's frame (the face is ``px = -side / 2``,
``-side / 2 <= p <= side / 2``; ``p = 0`` is the middle of the face). Action ``u = [v_n, v_t]``:
the pusher's velocity in the slider's frame, normal to the face (into the slider, ``v_n`` in
``[0, max_speed]``, so the pusher never pulls) and along it (``v_t`` in ``[-max_speed,
max_speed]``). Only that one face is pushed (as in Hogan & Rodriguez's MPC).

Quasi-statics. With a uniform pressure under the square the limit surface is approximated by the
ellipsoid ``H(F) = (f_x^2 + f_y^2) / f_max^2 + m^2 / m_max^2`` with ``c = m_max / f_max =
side (sqrt 2 + asinh 1) / 6`` (the mean distance of the square's points from its centre), and the
slider's body twist is normal to it: ``V = [v_x, v_y, omega] ∝ L F``, ``L = diag(1, 1, 1 / c^2)``.
The contact force ``f = [f_n, f_t]`` at ``r = (px, py) = (-side / 2, p)`` gives the wrench
``F = J^T f`` with ``J = [[1, 0, -py], [0, 1, px]]``, and ``J V`` is the velocity of the slider's
material point under the pusher. Writing ``M = J L J^T``:

* sticking: the material point moves with the pusher, ``J V = (v_n, v_t)``, so
  ``V = L J^T M^{-1} (v_n, v_t)``; this holds while ``f`` lies in the friction cone
  ``|f_t| <= mu_p f_n``, i.e. while ``v_t`` lies in the motion cone
  ``gamma_- v_n <= v_t <= gamma_+ v_n`` with ``gamma_± = (M w_±)_t / (M w_±)_n``,
  ``w_± = (1, ±mu_p)`` (the twists the cone's edges produce);
* sliding: ``f`` sits on the cone edge, the material point moves along the face at
  ``gamma_± v_n`` and the pusher slides over it: ``dp/dt = v_t - gamma_± v_n``.

All three modes are one formula: the material point's tangential velocity is ``v_t`` clipped to
the motion cone, ``w_t = clip(v_t, gamma_- v_n, gamma_+ v_n)``, the twist is
``V = L J^T M^{-1} (v_n, w_t)`` and ``dp/dt = v_t - w_t``. The smooth mode switch replaces the
clip with ``w_t = v_t - s(v_t - gamma_+ v_n) + s(gamma_- v_n - v_t)``, ``s(z) = eps softplus(z /
eps)``, ``eps = max_speed / sharpness``: the weights of the two sliding modes are the sigmoids
``s'``, and ``sharpness -> inf`` is the exact hybrid model. With ``v_n = 0`` the cone is the
single point 0 and ``w_t = 0`` exactly (``s(z) - s(-z) = z``), so the slider moves only when
pushed. The pusher is in contact only while it is on the face: the twist is multiplied by the
contact weight ``sigmoid(k (h - p) / h) sigmoid(k (h + p) / h)`` (``h = side / 2``,
``k = sharpness``), and off the face the pusher slides freely (``dp/dt = v_t``).

World motion: ``d[x, y]/dt = R(theta) [v_x, v_y]``, ``dtheta/dt = omega``; one classical RK4
step per control interval ``dt = 0.1`` s (``integrator="euler"`` for explicit Euler), ``u`` held.

The task: from rest at the origin, pusher at the middle of the face, push the 9 cm block to
``(0.25, 0)`` turned round to ``theta = pi``. The goal is mirror symmetric (``y -> -y`` maps a
left turn onto a right turn, pushing above the face's middle onto pushing below), so there are
two optimal pushes of equal cost and the target is bimodal: which way to turn.

Cost (positions in metres, speeds normalised by ``max_speed``)::

    stage(x, u) = 0.01 |u / max_speed|^2 + 10 (relu(p - h)^2 + relu(-p - h)^2) / h^2
    terminal(x) = 1000 |(x, y) - goal|^2 + 10 (1 - cos(theta - theta_goal))

(the second stage term keeps the pusher on its face). 1 cm off the goal costs 0.1, 10 degrees off
its heading 0.15, the start 82.5.

Default horizon 50 steps (5 s), ``max_speed = 0.1`` m/s, pusher friction ``mu_p = 0.3``,
sharpness 50, temperature 0.005 (the tilted target's cost spread, about ``dim * temperature / 2
= 0.25``, is half the optimum's 0.5). Prior draws cost about 20 (the start 82.5). On
``benchmarks/pusher_slider.py``'s budgets (BENCHMARKS.md, "Pusher-slider") TSMC's and gradient
descent's best particles end 4-8% above the reference, and both turns occur among the seeds.
Reference cost: ``REFERENCE_COST`` (how it was found is written beside it).
"""

import math

import jax
import jax.numpy as jnp

from ppl_control import ControlProblem

from ._common import as_float_array, integrator, reference_for, settings

DEFAULTS = dict(dt=0.1, horizon=50, side=0.09, pusher_friction=0.3, max_speed=0.1, sharpness=50.0,
                integrator="rk4", x0=(0.0, 0.0, 0.0, 0.0), goal=(0.25, 0.0, math.pi), control_weight=0.01,
                face_weight=10.0, position_weight=1000.0, heading_weight=10.0, temperature=0.005)

# Lowest cost among the final particles of 2 default TSMC runs (seeds 0, 1) and 1500 Adam steps
# (lr 0.02, tanh-reparametrised controls) from their 16 cheapest particles and from 16 prior
# draws, float32: `python -m benchmarks.reference_costs --problems pusher_slider --seeds 2
# --restarts 16 --adam-steps 1500` (found by Adam from a TSMC particle; TSMC's own best 0.5335).
REFERENCE_COST = 0.5024


def limit_surface_ratio(side: float) -> float:
    """``c = m_max / f_max`` of a square of side ``side`` under uniform pressure (its mean radius)."""
    return side * (math.sqrt(2.0) + math.asinh(1.0)) / 6.0


def softplus_scaled(z, eps):
    """``eps * softplus(z / eps)``: a smooth ``relu`` that is exact as ``eps -> 0``."""
    return eps * jax.nn.softplus(z / eps)


def motion_cone(p, side, c, mu):
    """``(gamma_minus, gamma_plus)``: the motion cone's edges ``v_t / v_n`` at contact ``p``."""
    px, py, c2 = -0.5 * side, p, c * c
    # M c^2 = [[c^2 + py^2, -px py], [-px py, c^2 + px^2]]; gamma = (M w)_t / (M w)_n, w = (1, ±mu).
    def edge(sign):
        normal = c2 + py**2 - sign * mu * px * py
        tangential = -px * py + sign * mu * (c2 + px**2)
        return tangential / normal

    return edge(-1.0), edge(1.0)


def body_twist(p, normal_velocity, tangential_velocity, side, c):
    """``[v_x, v_y, omega] = L J^T M^{-1} (v_n, w_t)``: the slider's twist in its own frame."""
    px, py, c2 = -0.5 * side, p, c * c
    d = c2 + px**2 + py**2
    # M^{-1} = Q = [[c^2 + px^2, px py], [px py, c^2 + py^2]] / d (Hogan & Rodriguez's Q).
    vx = ((c2 + px**2) * normal_velocity + px * py * tangential_velocity) / d
    vy = (px * py * normal_velocity + (c2 + py**2) * tangential_velocity) / d
    omega = (-py * normal_velocity + px * tangential_velocity) / d
    return vx, vy, omega


def dynamics(x, u, side=0.09, pusher_friction=0.3, max_speed=0.1, sharpness=50.0):
    """The vector field ``d[x, y, theta, p]/dt`` under pusher velocity ``u = [v_n, v_t]``."""
    c = limit_surface_ratio(side)
    half = 0.5 * side
    theta, p = x[2], x[3]
    v_n, v_t = u[0], u[1]
    low, high = motion_cone(p, side, c, pusher_friction)
    eps = max_speed / sharpness
    # the material point's tangential velocity: v_t softly clipped to the motion cone
    w_t = v_t - softplus_scaled(v_t - high * v_n, eps) + softplus_scaled(low * v_n - v_t, eps)
    contact = jax.nn.sigmoid(sharpness * (half - p) / half) * jax.nn.sigmoid(sharpness * (half + p) / half)
    vx, vy, omega = body_twist(p, v_n, w_t, side, c)
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    return jnp.stack([contact * (cos * vx - sin * vy), contact * (sin * vx + cos * vy), contact * omega,
                      v_t - contact * w_t])


def problem(**overrides) -> ControlProblem:
    """The pusher-slider problem; ``overrides`` may set any key of ``DEFAULTS``."""
    s = settings("pusher_slider", DEFAULTS, overrides)
    if not float(s["sharpness"]) > 0:
        raise ValueError(f"pusher_slider.problem: sharpness must be positive, got {s['sharpness']!r}")
    dt, v_max = float(s["dt"]), float(s["max_speed"])
    integrate = integrator(s["integrator"], "pusher_slider")
    params = dict(side=float(s["side"]), pusher_friction=float(s["pusher_friction"]), max_speed=v_max,
                  sharpness=float(s["sharpness"]))
    half = 0.5 * float(s["side"])
    goal = tuple(float(g) for g in s["goal"])
    w_u, w_face = float(s["control_weight"]), float(s["face_weight"])
    w_pos, w_head = float(s["position_weight"]), float(s["heading_weight"])

    def step(x, u):
        return integrate(lambda y, a: dynamics(y, a, **params), x, u, dt)

    def stage_cost(x, u):
        off_face = jax.nn.relu(x[3] - half) ** 2 + jax.nn.relu(-x[3] - half) ** 2
        return w_u * jnp.sum((u / v_max) ** 2) + w_face * off_face / half**2

    def terminal_cost(x):
        position = (x[0] - goal[0]) ** 2 + (x[1] - goal[1]) ** 2
        return w_pos * position + w_head * (1.0 - jnp.cos(x[2] - goal[2]))

    bounds = (as_float_array([0.0, -v_max]), as_float_array([v_max, v_max]))
    return ControlProblem(
        step=step,
        stage_cost=stage_cost,
        terminal_cost=terminal_cost,
        x0=as_float_array(s["x0"]),
        horizon=int(s["horizon"]),
        action_dim=2,
        name="pusher_slider",
        action_bounds=bounds,
        temperature=float(s["temperature"]),
        reference_cost=reference_for(REFERENCE_COST, overrides),
    )
