"""Unicycle parallel parking: a nonholonomic vehicle must shift sideways into a parking spot.

State ``[px, py, heading]``; action ``[v, omega]``: forward speed in ``[-max_speed, max_speed]``
(default 1 m/s) and turn rate in ``[-max_turn, max_turn]`` (default 1.5 rad/s). The vehicle starts
at the origin facing ``+x`` and must end at ``(0, 1)`` facing ``+x`` again: a pure sideways move the
nonholonomic constraint (no sideways velocity) forbids, so the optimum is a multi-point manoeuvre
(drive, turn, reverse), the classic parallel-parking problem.

Dynamics: the kinematic unicycle ``px_dot = v cos(h)``, ``py_dot = v sin(h)``, ``h_dot = omega``,
one classical RK4 step per control interval ``dt = 0.1`` s with the action held constant.

Cost::

    stage(x, u) = 0.1 v^2 + 0.05 omega^2
    terminal(x) = 50 |p - goal|^2 + 10 (1 - cos(h - h_goal))

Default horizon 40 steps (4 s), temperature 0.01.
Reference cost: ``REFERENCE_COST`` (how it was found is written beside it).
"""

import jax.numpy as jnp

from ppl_control import ControlProblem

from ._common import as_float_array, reference_for, rk4, settings

DEFAULTS = dict(dt=0.1, horizon=40, max_speed=1.0, max_turn=1.5, x0=(0.0, 0.0, 0.0), goal=(0.0, 1.0, 0.0),
                speed_weight=0.1, turn_weight=0.05, position_weight=50.0, heading_weight=10.0,
                temperature=0.01)

# Lowest cost among the final particles of 2 default TSMC runs (seeds 0, 1) and 1500 Adam steps
# (lr 0.02, tanh-reparametrised controls) from their 16 cheapest particles and from 16 prior
# draws, float32: benchmarks/reference_costs.py, table in BENCHMARKS.md.
REFERENCE_COST = 1.8611


def dynamics(x, u):
    """The kinematic unicycle vector field ``d[px, py, h]/dt`` under ``u = [v, omega]``."""
    return jnp.stack([u[0] * jnp.cos(x[2]), u[0] * jnp.sin(x[2]), u[1]])


def problem(**overrides) -> ControlProblem:
    """The parking problem; ``overrides`` may set any key of ``DEFAULTS``."""
    s = settings("unicycle", DEFAULTS, overrides)
    dt = float(s["dt"])
    w_v, w_w = float(s["speed_weight"]), float(s["turn_weight"])
    w_p, w_h = float(s["position_weight"]), float(s["heading_weight"])
    goal = tuple(float(g) for g in s["goal"])

    def step(x, u):
        return rk4(dynamics, x, u, dt)

    def stage_cost(x, u):
        return w_v * u[0] ** 2 + w_w * u[1] ** 2

    def terminal_cost(x):
        return (w_p * ((x[0] - goal[0]) ** 2 + (x[1] - goal[1]) ** 2)
                + w_h * (1.0 - jnp.cos(x[2] - goal[2])))

    bounds = (as_float_array([-s["max_speed"], -s["max_turn"]]), as_float_array([s["max_speed"], s["max_turn"]]))
    return ControlProblem(
        step=step,
        stage_cost=stage_cost,
        terminal_cost=terminal_cost,
        x0=as_float_array(s["x0"]),
        horizon=int(s["horizon"]),
        action_dim=2,
        name="unicycle",
        action_bounds=bounds,
        temperature=float(s["temperature"]),
        reference_cost=reference_for(REFERENCE_COST, overrides),
    )
