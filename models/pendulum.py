"""Torque-limited pendulum swing-up.

State ``[theta, omega]``: angle from hanging straight down (``theta = 0``) and angular velocity;
upright is ``theta = pi`` (mod ``2 pi``). Action: torque ``u`` in ``[-max_torque, max_torque]``
(default 5 N m, about half of ``m g l``, so the pendulum must be pumped, not lifted).

Dynamics (``m = l = 1``, ``g = 9.81``, damping ``b = 0.1``), semi-implicit Euler with
``dt = 0.05``::

    omega' = omega + dt * (-g/l sin(theta) - b omega + u / (m l^2))
    theta' = theta + dt * omega'

Cost, smooth and free of angle wrapping (``1 + cos(theta)`` is 0 upright and 2 hanging down)::

    stage(x, u)  = (1 + cos theta) + 0.01 omega^2 + 0.01 u^2
    terminal(x)  = 20 (1 + cos theta) + 0.5 omega^2

Default horizon 60 steps (3 s), start hanging at rest, temperature 0.01: the tilted target's
cost spread is about ``dim * temperature / 2``, so at 0.5 the samples scatter ~15 above the
optimum and the best particle misses upright by 0.2-0.4 rad; at 0.01 TSMC with 256 particles
reached cost 75.05-75.07 on 3 of 3 seeds, ending within 0.03 rad of upright.
Reference cost: see ``REFERENCE_COST`` (how it was found is written beside it).
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ppl_control import ControlProblem

DEFAULTS = dict(dt=0.05, horizon=60, max_torque=5.0, gravity=9.81, length=1.0, mass=1.0,
                damping=0.1, x0=(0.0, 0.0), temperature=0.01)

# Lowest cost found by benchmarks/reference_costs.py (table in BENCHMARKS.md, 2026-11-24): 1500 Adam
# steps (lr 0.02, tanh-reparametrised controls) from the 256 cheapest of the final particles of 2
# default TSMC runs and 2 NUTS chains (seeds 0, 1), float32. (74.7761 before, the same search with
# 16 starting points.)
REFERENCE_COST = 74.7759


def upright_error(theta):
    """Distance of ``theta`` from upright, in radians, in ``[0, pi]``."""
    return jnp.abs(jnp.mod(theta, 2 * jnp.pi) - jnp.pi)


def problem(**overrides) -> ControlProblem:
    """The swing-up problem; ``overrides`` may set any key of ``DEFAULTS``."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"pendulum.problem: unknown overrides {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = dict(DEFAULTS, **overrides)
    dt, g, l, m, b = s["dt"], s["gravity"], s["length"], s["mass"], s["damping"]

    def step(x, u):
        theta, omega = x[0], x[1]
        omega = omega + dt * (-g / l * jnp.sin(theta) - b * omega + u[0] / (m * l**2))
        return jnp.stack([theta + dt * omega, omega])

    def stage_cost(x, u):
        return (1.0 + jnp.cos(x[0])) + 0.01 * x[1] ** 2 + 0.01 * u[0] ** 2

    def terminal_cost(x):
        return 20.0 * (1.0 + jnp.cos(x[0])) + 0.5 * x[1] ** 2

    return ControlProblem(
        step=step,
        stage_cost=stage_cost,
        terminal_cost=terminal_cost,
        x0=jnp.asarray(s["x0"], dtype=jnp.result_type(float)),
        horizon=int(s["horizon"]),
        action_dim=1,
        name="pendulum",
        action_bounds=(-float(s["max_torque"]), float(s["max_torque"])),
        temperature=float(s["temperature"]),
        reference_cost=REFERENCE_COST,
    )


# -- a feedback policy for the swing-up (policy optimisation: pc.policy_model) ------------------


class SwingUpPolicy(eqx.Module):
    """``theta, omega -> raw torque``: a tanh MLP on ``(cos theta, sin theta, omega / 5)``, the
    small feedback policy the example and the policy benchmarks train for the swing-up."""

    mlp: eqx.nn.MLP

    def __init__(self, width, key):
        self.mlp = eqx.nn.MLP(3, "scalar", width, 1, activation=jnp.tanh, key=key)

    def __call__(self, x):
        return self.mlp(jnp.stack([jnp.cos(x[0]), jnp.sin(x[0]), 0.2 * x[1]]))


def swing_up_starts(key, num):
    """``num`` initial states spread around hanging: ``theta ~ U(-pi/2, pi/2)``, ``omega ~ U(-1, 1)``."""
    k1, k2 = jax.random.split(key)
    theta = jax.random.uniform(k1, (num,), minval=-np.pi / 2, maxval=np.pi / 2)
    omega = jax.random.uniform(k2, (num,), minval=-1.0, maxval=1.0)
    return jnp.stack([theta, omega], axis=-1)
