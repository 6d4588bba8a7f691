"""Acrobot swing-up: a two-link pendulum actuated only at the elbow must raise its tip.

State ``[theta1, theta2, theta1_dot, theta2_dot]``: shoulder angle from hanging straight down
(``theta1 = 0``), elbow angle relative to the first link, and their rates. Action: elbow torque
``tau`` in ``[-max_torque, max_torque]`` (default 6 N m). The tip height is
``y = -l1 cos(theta1) - l2 cos(theta1 + theta2)``, from ``-2`` hanging to ``+2`` upright.

Dynamics: the classic Sutton and Barto acrobot (Sutton 1996; *Reinforcement Learning: An
Introduction*, the "book" equations also used by Gym's ``Acrobot-v1``) with ``m1 = m2 = 1``,
``l1 = l2 = 1``, ``lc1 = lc2 = 0.5``, ``I1 = I2 = 1``, ``g = 9.8``::

    d1 = m1 lc1^2 + m2 (l1^2 + lc2^2 + 2 l1 lc2 cos th2) + I1 + I2
    d2 = m2 (lc2^2 + l1 lc2 cos th2) + I2
    phi2 = m2 lc2 g cos(th1 + th2 - pi/2)
    phi1 = -m2 l1 lc2 th2_dot^2 sin th2 - 2 m2 l1 lc2 th2_dot th1_dot sin th2
           + (m1 lc1 + m2 l1) g cos(th1 - pi/2) + phi2
    th2_ddot = (tau + d2/d1 phi1 - m2 l1 lc2 th1_dot^2 sin th2 - phi2) / (m2 lc2^2 + I2 - d2^2/d1)
    th1_ddot = -(d2 th2_ddot + phi1) / d1

Unlike Gym, the velocities are not clipped (clipping would flatten the gradient). One step per
control interval ``dt = 0.05`` s with ``integrator="rk4"`` (default) or ``"euler"`` (explicit
Euler, as in Sutton's original), torque held constant.

Cost (``2 - y`` is 0 with the tip straight up, 4 hanging)::

    stage(x, tau) = (2 - y) + 0.01 (th1_dot^2 + th2_dot^2) + 0.01 tau^2
    terminal(x)   = 20 (2 - y) + 0.5 (th1_dot^2 + th2_dot^2)

Default horizon 80 steps (4 s), temperature 0.1, start hanging at rest.
Reference cost: ``REFERENCE_COST`` (how it was found is written beside it; RK4 only).
"""

import jax.numpy as jnp

from ppl_control import ControlProblem

from ._common import as_float_array, integrator, reference_for, settings

DEFAULTS = dict(dt=0.05, horizon=80, max_torque=6.0, integrator="rk4", link_mass=1.0, link_length=1.0,
                com=0.5, inertia=1.0, gravity=9.8, x0=(0.0, 0.0, 0.0, 0.0), temperature=0.1)

# The lowest cost found by any method so far, float32: a draw of NumPyro's NUTS (300 + 300, key 2)
# in benchmarks/tsmc_vs_nuts.py reached 186.060 (its cost recomputed from the draw). The search of
# benchmarks/reference_costs.py (2 TSMC runs, 2 NUTS chains, 1500 Adam steps from the 256 cheapest
# of those and from 256 prior draws) stopped at 204.174 in another swing-up basin.
REFERENCE_COST = 186.0601


def dynamics(x, u, link_mass=1.0, link_length=1.0, com=0.5, inertia=1.0, gravity=9.8):
    """The Sutton-Barto vector field ``d[th1, th2, th1_dot, th2_dot]/dt`` under elbow torque ``u[0]``."""
    m1 = m2 = link_mass
    l1 = link_length
    lc1 = lc2 = com
    i1 = i2 = inertia
    g = gravity
    th1, th2, dth1, dth2 = x[0], x[1], x[2], x[3]
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * jnp.cos(th2)) + i1 + i2
    d2 = m2 * (lc2**2 + l1 * lc2 * jnp.cos(th2)) + i2
    phi2 = m2 * lc2 * g * jnp.cos(th1 + th2 - jnp.pi / 2)
    phi1 = (-m2 * l1 * lc2 * dth2**2 * jnp.sin(th2) - 2 * m2 * l1 * lc2 * dth2 * dth1 * jnp.sin(th2)
            + (m1 * lc1 + m2 * l1) * g * jnp.cos(th1 - jnp.pi / 2) + phi2)
    ddth2 = (u[0] + d2 / d1 * phi1 - m2 * l1 * lc2 * dth1**2 * jnp.sin(th2) - phi2) / (m2 * lc2**2 + i2 - d2**2 / d1)
    ddth1 = -(d2 * ddth2 + phi1) / d1
    return jnp.stack([dth1, dth2, ddth1, ddth2])


def tip_height(x, link_length=1.0):
    """Height of the tip above the shoulder: ``-l1 cos(th1) - l2 cos(th1 + th2)``."""
    return -link_length * (jnp.cos(x[..., 0]) + jnp.cos(x[..., 0] + x[..., 1]))


def problem(**overrides) -> ControlProblem:
    """The swing-up problem; ``overrides`` may set any key of ``DEFAULTS``."""
    s = settings("acrobot", DEFAULTS, overrides)
    dt = float(s["dt"])
    integrate = integrator(s["integrator"], "acrobot")
    params = dict(link_mass=s["link_mass"], link_length=s["link_length"], com=s["com"],
                  inertia=s["inertia"], gravity=s["gravity"])
    top = 2.0 * s["link_length"]

    def step(x, u):
        return integrate(lambda y, a: dynamics(y, a, **params), x, u, dt)

    def stage_cost(x, u):
        return (top - tip_height(x, s["link_length"])) + 0.01 * (x[2] ** 2 + x[3] ** 2) + 0.01 * u[0] ** 2

    def terminal_cost(x):
        return 20.0 * (top - tip_height(x, s["link_length"])) + 0.5 * (x[2] ** 2 + x[3] ** 2)

    return ControlProblem(
        step=step,
        stage_cost=stage_cost,
        terminal_cost=terminal_cost,
        x0=as_float_array(s["x0"]),
        horizon=int(s["horizon"]),
        action_dim=1,
        name="acrobot",
        action_bounds=(-float(s["max_torque"]), float(s["max_torque"])),
        temperature=float(s["temperature"]),
        reference_cost=reference_for(REFERENCE_COST, overrides),
    )
