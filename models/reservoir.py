"""Reservoir cascade: a hybrid discrete-continuous problem where plain gradients stall.

Three reservoirs in series (water flows from reservoir 0 to 1 to 2; the release of reservoir 2
supplies a town). State ``[l_0, l_1, l_2, t]``: water levels (capacity 1 each) and the step index
``t`` (carried in the state because the rain depends on it). Action: release gate openings
``u_i`` in ``[0, 1]``, a fraction of the maximum release ``0.2`` per step.

Dynamics, one step per control interval (``dt = 1``, a week), reservoirs updated upstream first::

    avail_i   = l_i + rain_i(t) + released_{i-1}            (released_{-1} = 0)
    released_i = min(0.2 u_i, avail_i)                      (cannot release water it lacks)
    spill_i   = relu(avail_i - released_i - 1)              (overflow above capacity is lost)
    l_i'      = avail_i - released_i - spill_i

Rain is a known deterministic forecast: a seasonal base ``0.03 (1 + sin(2 pi t / 40))`` on each
reservoir, plus storms of 0.5 on reservoir 0 at ``t = 8`` and ``t = 24`` and 0.4 on reservoir 1 at
``t = 16`` (see ``rain``).

Cost per step: overflow and shortage penalties that switch on and off, each with a linear part
and a fixed charge (the discrete part: a flood alert or a rationing day costs the same however
small the breach)::

    stage = sum_i (10 spill_i + 1[spill_i > 0])             flooding
          + 20 short + 1[short > 0],  short = relu(0.08 - released_2)   supply shortfall
          + 0.1 sum_i released_i                           (release is not free)
    terminal = 20 sum_i relu(0.5 - l_i)^2                   (keep stock for next season)

The cost is piecewise smooth: differentiable almost everywhere (the fixed charges jump on sets of
measure zero and have zero gradient elsewhere; ``min`` and ``relu`` have kinks), so gradient methods
run, but the gradient never sees the fixed charges and is zero wherever a gate is clamped by the
water available or a penalty is switched off: plateaus and cliffs a gradient method crosses blind,
while a population method sees them through the cost values. (Measured, BENCHMARKS.md: Adam on
tanh-reparametrised gates from 16 prior draws still came within 1% of the reference; the plateaus
slow a well-initialised gradient method down more than they stop it.)

Default horizon 40 steps, start ``l = (0.5, 0.5, 0.5)``, temperature 0.02.
Reference cost: ``REFERENCE_COST`` (how it was found is written beside it).
"""

import jax
import jax.numpy as jnp
import numpy as np

from ppl_control import ControlProblem

from ._common import as_float_array, reference_for, settings

NUM_RESERVOIRS = 3
DEFAULTS = dict(horizon=40, levels0=(0.5, 0.5, 0.5), capacity=1.0, max_release=0.2, demand=0.08,
                base_rain=0.03, storms=((8, 0, 0.5), (16, 1, 0.4), (24, 0, 0.5)), spill_weight=10.0,
                flood_charge=1.0, shortage_weight=20.0, shortage_charge=1.0, release_weight=0.1,
                target_level=0.5, terminal_weight=20.0, temperature=0.02)

# Lowest cost among the final particles of 2 default TSMC runs (seeds 0, 1) and 1500 Adam steps
# (lr 0.02, tanh-reparametrised controls) from their 16 cheapest particles and from 16 prior
# draws, float32: benchmarks/reference_costs.py, table in BENCHMARKS.md.
REFERENCE_COST = 0.9463


def rain(horizon: int = DEFAULTS["horizon"], base_rain: float = DEFAULTS["base_rain"],
         storms=DEFAULTS["storms"]) -> np.ndarray:
    """The rain forecast, shape ``(horizon, 3)``: seasonal base plus ``(t, reservoir, amount)`` storms."""
    t = np.arange(horizon)
    table = np.repeat((base_rain * (1.0 + np.sin(2.0 * np.pi * t / 40.0)))[:, None], NUM_RESERVOIRS, axis=1)
    for when, which, amount in storms:
        if 0 <= when < horizon:
            table[int(when), int(which)] += amount
    return table


def flows(x, u, rain_table, capacity, max_release):
    """``(released, spill, next_levels)`` of one step from state ``x`` and gate openings ``u``."""
    t = jnp.clip(x[NUM_RESERVOIRS].astype(jnp.int32), 0, rain_table.shape[0] - 1)
    r = rain_table[t]
    released, spill, levels = [], [], []
    upstream = 0.0
    for i in range(NUM_RESERVOIRS):
        avail = x[i] + r[i] + upstream
        out = jnp.minimum(max_release * u[i], avail)
        over = jax.nn.relu(avail - out - capacity)
        released.append(out)
        spill.append(over)
        levels.append(avail - out - over)
        upstream = out
    return jnp.stack(released), jnp.stack(spill), jnp.stack(levels)


def problem(**overrides) -> ControlProblem:
    """The reservoir problem; ``overrides`` may set any key of ``DEFAULTS``."""
    s = settings("reservoir", DEFAULTS, overrides)
    horizon = int(s["horizon"])
    if len(s["levels0"]) != NUM_RESERVOIRS:
        raise ValueError(f"reservoir.problem: levels0 needs {NUM_RESERVOIRS} levels, got {s['levels0']!r}")
    table = rain(horizon, s["base_rain"], s["storms"])
    cap, max_rel, demand = float(s["capacity"]), float(s["max_release"]), float(s["demand"])
    w_spill, c_flood = float(s["spill_weight"]), float(s["flood_charge"])
    w_short, c_short = float(s["shortage_weight"]), float(s["shortage_charge"])
    w_rel, target, w_term = float(s["release_weight"]), float(s["target_level"]), float(s["terminal_weight"])

    def step(x, u):
        _, _, levels = flows(x, u, as_float_array(table), cap, max_rel)
        return jnp.concatenate([levels, x[NUM_RESERVOIRS:] + 1.0])

    def stage_cost(x, u):
        released, spill, _ = flows(x, u, as_float_array(table), cap, max_rel)
        short = jax.nn.relu(demand - released[-1])
        flood = w_spill * jnp.sum(spill) + c_flood * jnp.sum(spill > 0)
        shortage = w_short * short + c_short * (short > 0)
        return flood + shortage + w_rel * jnp.sum(released)

    def terminal_cost(x):
        return w_term * jnp.sum(jax.nn.relu(target - x[:NUM_RESERVOIRS]) ** 2)

    return ControlProblem(
        step=step,
        stage_cost=stage_cost,
        terminal_cost=terminal_cost,
        x0=as_float_array(tuple(s["levels0"]) + (0.0,)),
        horizon=horizon,
        action_dim=NUM_RESERVOIRS,
        name="reservoir",
        action_bounds=(0.0, 1.0),
        temperature=float(s["temperature"]),
        reference_cost=reference_for(REFERENCE_COST, overrides),
        observe=lambda x: x[:NUM_RESERVOIRS],
    )
