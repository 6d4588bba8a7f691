"""Double integrator with bounded acceleration: bring a mass to rest at the origin.

State ``[p, v]`` (position, velocity); action: acceleration ``a`` in ``[-max_accel, max_accel]``
(default 1). Exact zero-order-hold discretisation with ``dt = 0.1``::

    p' = p + dt v + dt^2/2 a,   v' = v + dt a

Cost::

    stage(x, a) = p^2 + 0.1 v^2 + 0.01 a^2
    terminal(x) = 10 (p^2 + v^2)

Default horizon 40 steps (4 s), start ``[-2, 0]``, temperature 0.05. The quadratic cost wants the
mass home faster than the bound allows, so the optimum saturates the bound (bang-bang at the start)
and the problem is a box-constrained convex quadratic programme.

Reference cost: exact. ``exact_minimum`` solves the QP (cost quadratic in the stacked controls,
built from explicit matrices, box constraints) by accelerated projected gradient (FISTA) in numpy
to a projected-gradient norm below 1e-10; ``problem`` stores it as ``reference_cost`` for whatever
overrides it is given.
"""

import numpy as np
import jax.numpy as jnp

from ppl_control import ControlProblem

from ._common import as_float_array, settings

DEFAULTS = dict(dt=0.1, horizon=40, max_accel=1.0, x0=(-2.0, 0.0), q_pos=1.0, q_vel=0.1, r=0.01,
                terminal=10.0, temperature=0.05)


def matrices(dt: float) -> tuple[np.ndarray, np.ndarray]:
    """``(A, B)`` of the exactly discretised double integrator."""
    return np.array([[1.0, dt], [0.0, 1.0]]), np.array([[0.5 * dt**2], [dt]])


def _quadratic_form(s):
    """``(H, g, c)`` with ``J(u) = u'Hu/2 + g'u + c`` for the stacked controls ``u`` (length T)."""
    a, b = matrices(float(s["dt"]))
    horizon, x0 = int(s["horizon"]), np.asarray(s["x0"], dtype=np.float64)
    stage_w = np.diag([s["q_pos"], s["q_vel"]])
    weights = [stage_w] * horizon + [s["terminal"] * np.eye(2)]
    h = 2.0 * s["r"] * np.eye(horizon)
    g = np.zeros(horizon)
    c = 0.0
    phi = np.eye(2)
    gamma = np.zeros((2, horizon))  # x_t = phi x0 + gamma u
    for t in range(horizon + 1):
        free = phi @ x0
        h += 2.0 * gamma.T @ weights[t] @ gamma
        g += 2.0 * gamma.T @ weights[t] @ free
        c += free @ weights[t] @ free
        if t < horizon:
            gamma = a @ gamma
            gamma[:, t] += b[:, 0]
            phi = a @ phi
    return h, g, c


def exact_minimum(**overrides) -> tuple[float, np.ndarray]:
    """``(minimum cost, minimiser)`` of the box-constrained QP, by FISTA with restarts."""
    s = settings("double_integrator", DEFAULTS, overrides)
    h, g, c = _quadratic_form(s)
    bound = float(s["max_accel"])
    step = 1.0 / np.linalg.eigvalsh(h)[-1]
    u = y = np.zeros_like(g)
    t = 1.0
    for _ in range(200_000):
        u_next = np.clip(y - step * (h @ y + g), -bound, bound)
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        if (u_next - u) @ (h @ u_next + g) > 0:  # objective went up: restart the momentum
            t_next, y = 1.0, u_next
        else:
            y = u_next + (t - 1.0) / t_next * (u_next - u)
        u, t = u_next, t_next
        grad = h @ u + g
        projected = u - np.clip(u - grad, -bound, bound)
        if np.max(np.abs(projected)) < 1e-10:
            break
    return float(0.5 * u @ h @ u + g @ u + c), u


def problem(**overrides) -> ControlProblem:
    """The bounded double integrator; ``overrides`` may set any key of ``DEFAULTS``."""
    s = settings("double_integrator", DEFAULTS, overrides)
    dt = float(s["dt"])
    qp, qv, r, qf = float(s["q_pos"]), float(s["q_vel"]), float(s["r"]), float(s["terminal"])

    def step(x, u):
        return jnp.stack([x[0] + dt * x[1] + 0.5 * dt**2 * u[0], x[1] + dt * u[0]])

    def stage_cost(x, u):
        return qp * x[0] ** 2 + qv * x[1] ** 2 + r * u[0] ** 2

    def terminal_cost(x):
        return qf * (x[0] ** 2 + x[1] ** 2)

    return ControlProblem(
        step=step,
        stage_cost=stage_cost,
        terminal_cost=terminal_cost,
        x0=as_float_array(s["x0"]),
        horizon=int(s["horizon"]),
        action_dim=1,
        name="double_integrator",
        action_bounds=(-float(s["max_accel"]), float(s["max_accel"])),
        temperature=float(s["temperature"]),
        reference_cost=exact_minimum(**overrides)[0],
    )
