"""Planar navigation past a symmetric field of circular obstacles: a multimodal problem.

A point mass, state ``[px, py, vx, vy]``, action: acceleration ``[ax, ay]`` in
``[-max_accel, max_accel]^2`` (default 3), starts at rest at ``(-2.5, 0)`` and must reach the
goal ``(2.5, 0)``. Between them stands a column of three discs on the line ``x = 0``, centred at
``(0, 0)`` and ``(0, +-1.8)`` with radius 0.6. The layout is symmetric under ``y -> -y``, and so is
the cost: every optimal path has a mirror image of equal cost, one through the gap above the
central disc and one through the gap below it. Those are two distinct homotopy classes, so the
optimum is (at least) bimodal: the problem where sampling must keep several modes alive.

Dynamics: exact zero-order-hold double integrator, ``dt = 0.1``::

    p' = p + dt v + dt^2/2 a,   v' = v + dt a

Cost, with a smooth (C^1) penetration penalty for each disc ``(c_i, r_i)``::

    stage(x, a) = 0.05 |a|^2 + 200 sum_i relu(r_i + 0.1 - |p - c_i|)^2
    terminal(x) = 20 |p - goal|^2 + 2 |v|^2

Default horizon 40 steps (4 s), temperature 0.01. Zero controls leave the mass at the start. The
temperature is about the coldest at which TSMC (defaults, 256 particles) keeps both mirror-image
classes while its best path stays near the reference cost. Measured with the self-tuning TSMC as
it ships (cross-fitted metric; seeds 0 to 5): at 0.01 the best costs were 2.84 to 2.86
(reference 2.61), each class's best within 9 to 12% of the reference, and the smaller class held 4
to 35% of the weight (the two shares drift once the routes separate; over 24 seeds both were kept
on all 24, ``benchmarks.mode_retention``). Before the metric was cross-fitted: best 2.81 to 2.85,
each class within 8 to 11%, the smaller class 4 to 40%, one route lost on 2 of 24 seeds; at 0.02 the best were 2.98
to 3.13 with the smaller class at 7 to 40%. Earlier measurements: at 0.003 the smaller class held
1 to 2% on two seeds of three, at 0.03 the best were 3.34 to 3.38, at 1 (the first default) 8.5
to 9.3.

Homotopy classes: ``homotopy_class(positions)`` counts the discs a path passes *above*, each
judged where the path first crosses the vertical line through the disc's centre (``y`` linearly
interpolated between steps; a path that never crosses is judged at its step nearest that line).
For the default column that is the index of the gap used: 0 below every disc, 1 between the lower
and the central disc, 2 between the central and the upper disc, 3 above every disc. The optimal,
mirror-image classes are 1 and 2. For paths that cross the column once (x-monotone near it) the
label is a homotopy invariant.

Reference cost: ``REFERENCE_COST`` (how it was found is written beside it).
"""

import jax
import jax.numpy as jnp

from ppl_control import ControlProblem

from ._common import as_float_array, reference_for, settings

# (cx, cy, radius): a column on x = 0, symmetric about the x axis.
OBSTACLES = ((0.0, 0.0, 0.6), (0.0, 1.8, 0.6), (0.0, -1.8, 0.6))

DEFAULTS = dict(dt=0.1, horizon=40, max_accel=3.0, start=(-2.5, 0.0), goal=(2.5, 0.0), obstacles=OBSTACLES,
                margin=0.1, obstacle_weight=200.0, control_weight=0.05, goal_weight=20.0,
                velocity_weight=2.0, temperature=0.01)

# Lowest cost among the final particles of 2 default TSMC runs (seeds 0, 1) and 1500 Adam steps
# (lr 0.02, tanh-reparametrised controls) from their 16 cheapest particles and from 16 prior
# draws, float32: benchmarks/reference_costs.py, table in BENCHMARKS.md.
REFERENCE_COST = 2.6055


def obstacle_penalty(position, obstacles, margin=0.1):
    """``sum_i relu(r_i + margin - |p - c_i|)^2``: zero outside the inflated discs, C^1 at their rim."""
    obstacles = as_float_array(obstacles)
    centres, radii = obstacles[:, :2], obstacles[:, 2]
    # sqrt(|d|^2 + tiny): the distance without the NaN gradient of a norm at exactly zero.
    dist = jnp.sqrt(jnp.sum((position[None, :2] - centres) ** 2, axis=-1) + 1e-12)
    return jnp.sum(jax.nn.relu(radii + margin - dist) ** 2)


def _passes_above(px, py, cx, cy):
    """1 if the path ``(px, py)`` (shape ``(T+1,)``) passes above ``(cx, cy)``, else 0."""
    left, right = px[:-1], px[1:]
    crosses = ((left - cx) * (right - cx) <= 0) & (left != right)
    first = jnp.argmax(crosses)
    frac = jnp.clip((cx - left[first]) / jnp.where(crosses[first], right[first] - left[first], 1.0), 0.0, 1.0)
    y_cross = py[first] + frac * (py[first + 1] - py[first])
    y_near = py[jnp.argmin(jnp.abs(px - cx))]
    y = jnp.where(jnp.any(crosses), y_cross, y_near)
    return (y > cy).astype(jnp.int32)


def homotopy_class(positions, obstacles=OBSTACLES):
    """The number of discs each path passes above (see the module docstring).

    Args:
      positions: states or positions of shape ``(..., T + 1, d)`` with ``d >= 2``; columns 0 and 1
        are ``px`` and ``py`` (the states ``problem().trajectory(u)`` returns qualify).
      obstacles: ``(cx, cy, r)`` triples; defaults to the default layout.

    Returns:
      Integer array of shape ``positions.shape[:-2]``: 0 .. number of discs.
    """
    positions = jnp.asarray(positions)
    obstacles = jnp.asarray(obstacles)
    flat = positions.reshape((-1,) + positions.shape[-2:])

    def one(path):
        above = jax.vmap(lambda o: _passes_above(path[:, 0], path[:, 1], o[0], o[1]))(obstacles)
        return jnp.sum(above)

    return jax.vmap(one)(flat).reshape(positions.shape[:-2])


def problem(**overrides) -> ControlProblem:
    """The navigation problem; ``overrides`` may set any key of ``DEFAULTS``."""
    s = settings("navigation", DEFAULTS, overrides)
    dt = float(s["dt"])
    obstacles = tuple(tuple(float(v) for v in o) for o in s["obstacles"])
    if not obstacles or any(len(o) != 3 or o[2] <= 0 for o in obstacles):
        raise ValueError(f"navigation.problem: obstacles must be (cx, cy, radius>0) triples, got {s['obstacles']!r}")
    margin, w_obs, w_u = float(s["margin"]), float(s["obstacle_weight"]), float(s["control_weight"])
    w_goal, w_vel = float(s["goal_weight"]), float(s["velocity_weight"])
    goal = s["goal"]

    def step(x, u):
        p, v = x[:2], x[2:]
        return jnp.concatenate([p + dt * v + 0.5 * dt**2 * u, v + dt * u])

    def stage_cost(x, u):
        return w_u * jnp.sum(u**2) + w_obs * obstacle_penalty(x, obstacles, margin)

    def terminal_cost(x):
        g = as_float_array(goal)
        return w_goal * jnp.sum((x[:2] - g) ** 2) + w_vel * jnp.sum(x[2:] ** 2)

    return ControlProblem(
        step=step,
        stage_cost=stage_cost,
        terminal_cost=terminal_cost,
        x0=as_float_array(tuple(s["start"]) + (0.0, 0.0)),
        horizon=int(s["horizon"]),
        action_dim=2,
        name="navigation",
        action_bounds=(-float(s["max_accel"]), float(s["max_accel"])),
        temperature=float(s["temperature"]),
        reference_cost=reference_for(REFERENCE_COST, overrides),
    )
