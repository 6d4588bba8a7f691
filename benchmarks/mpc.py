"""Receding-horizon control: warm-started TSMC against cold TSMC, MPPI, CEM and gradient descent.

Every method plans with ``pc.mpc`` on the same model (``trajectory_model`` of the problem, at
its recommended temperature) and controls a *different* true system: process noise on the
velocities every step and a 20% model mismatch. Closed-loop cost (the problem's stage costs along
the true trajectory plus its terminal cost) and success over held-out initial states, at equal
per-step wall time.

Tasks:

* ``pendulum`` swing-up (``models.pendulum``, MPC horizon 30): the true pendulum is 20% heavier
  (``mass=1.2``), noise ``N(0, 0.05^2)`` rad/s on the angular velocity per step; initial states
  ``theta, omega ~ U(-0.5, 0.5)`` (near hanging); 80 steps (4 s). Success: within 0.3 rad of
  upright over the last 20 steps.
* ``cartpole`` swing-up (``models.cartpole``, MPC horizon 30): the true pole is 20% heavier
  (``pole_mass=0.36``), noise ``N(0, 0.02^2)`` on both velocities; initial ``x, theta ~
  U(-0.3, 0.3)``, velocities ``~ U(-0.2, 0.2)``; 100 steps (5 s). Success as for the pendulum.
* ``brax`` balancing (Brax ``inverted_pendulum``, ``generalized`` backend, MPC horizon 15): the
  true pole is 20% heavier (mass and inertia), noise ``N(0, 0.05^2)`` on the joint velocities;
  initial states spread as in the policy benchmark (cart ``x ~ U(-0.5, 0.5)``, angle ``~
  U(-0.3, 0.3)``, velocities ``~ U(-0.3, 0.3)``); 40 steps (1.6 s); the cart force capped at 30%
  of Brax's range as there. Success: ``|theta| <= 0.2`` at every step (Brax's own termination).

Methods: TSMC warm-started from the previous plan (``pc.mpc``'s default shift), TSMC started
cold from the prior at every step, and MPPI, CEM and gradient descent (Adam restarts), each
warm-started from its previous solution as MPC practice does (MPPI's nominal, CEM's mean and
scale, the restarts' iterates, all shifted by one step).

Equal per-step wall time, calibrated on one initial state that is not among the held-out ones:
warm TSMC (64 particles, 2 HMC moves of 5 leapfrog steps per stage) runs a short closed loop and
its median per-step time (compiled; the first step, which compiles the warm re-plan, left out) is
the target ``T``. Each other method runs the same closed loop at a probe budget; its budget is
scaled by ``T / (its median per-step time)`` (iterations for MPPI, CEM and gradient descent;
particles for cold TSMC, whose stage count is adaptive) and, if that is more than 15% off,
measured once more and scaled again. The table reports the per-step times each method actually
took in the evaluation, so the equality can be checked. Timings on a shared machine are noisy.

    .venv/bin/python -m benchmarks.mpc                     # 3 held-out states per task (default)
    .venv/bin/python -m benchmarks.mpc --states 20         # the full 20 held-out states
    .venv/bin/python -m benchmarks.mpc --sweep             # init_spread and shift of warm TSMC
    .venv/bin/python -m benchmarks.mpc --quick             # a smoke run
    .venv/bin/python -m benchmarks.mpc --write             # also write BENCHMARKS.md
"""

import argparse
import dataclasses
import time
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

import ppl_control as pc
from ppl_control import InferenceError, models
from ppl_control.inference import CEM, MPPI, TSMC, GradientDescent

from ._machine import describe, replace_section

HEADING = "## Receding-horizon control (MPC)"
SWEEP_HEADING = "## MPC: warm-start settings of TSMC"
MISMATCH = 1.2

TSMC_BASE = dict(num_particles=64, num_moves=2, num_leapfrog=5, max_stages=60)
# method -> (class, fixed configuration, the budget knob calibrated to equal time, its probe value, warm)
METHODS = {
    "tsmc_warm": (TSMC, TSMC_BASE, None, None, True),
    "tsmc_warm_mean": (TSMC, TSMC_BASE, None, None, True),
    "tsmc_cold": (TSMC, {k: v for k, v in TSMC_BASE.items() if k != "num_particles"}, "num_particles", 64, False),
    "mppi": (MPPI, dict(num_particles=128), "num_steps", 10, True),
    "cem": (CEM, dict(num_particles=128), "num_steps", 10, True),
    "gradient_descent": (GradientDescent, dict(num_particles=16), "num_steps", 20, True),
}
# method -> pc.mpc options beyond the planner (the same compiled planner as "tsmc_warm")
MPC_OPTIONS = {"tsmc_warm_mean": dict(action="mean")}
LABELS = {"tsmc_warm": "TSMC, warm", "tsmc_warm_mean": "TSMC, warm, mean action", "tsmc_cold": "TSMC, cold",
          "mppi": "MPPI", "cem": "CEM", "gradient_descent": "gradient descent (Adam)"}


@dataclasses.dataclass
class Task:
    name: str
    problem: pc.ControlProblem  # the model the planner believes
    true_step: Callable  # (key, x, u) -> x_next, jitted
    initial_states: Callable  # (key, n) -> list of states
    num_steps: int
    success: Callable  # ClosedLoop -> bool
    description: str


def _upright_tail(angle_index: int, tail: int = 20, tolerance: float = 0.3):
    from ppl_control.models.pendulum import upright_error

    def success(loop):
        return bool(np.all(np.asarray(upright_error(loop.observations[-tail:, angle_index])) < tolerance))

    return success


def _noisy(step, scales):
    scales = jnp.asarray(scales)

    @jax.jit
    def true_step(key, x, u):
        return step(x, u) + scales * jax.random.normal(key, x.shape, x.dtype)

    return true_step


def _uniform_states(low, high):
    def draw(key, n):
        states = jax.random.uniform(key, (n, len(low)), minval=jnp.asarray(low), maxval=jnp.asarray(high))
        return list(states)

    return draw


def pendulum_task(horizon=30, num_steps=80) -> Task:
    problem = models.get("pendulum", horizon=horizon)
    truth = models.get("pendulum", mass=1.0 * MISMATCH)
    return Task("pendulum", problem, _noisy(truth.step, [0.0, 0.05]),
                _uniform_states([-0.5, -0.5], [0.5, 0.5]), num_steps, _upright_tail(0),
                f"pendulum swing-up, MPC horizon {horizon}, {num_steps} steps; true mass x{MISMATCH}, "
                "noise 0.05 rad/s")


def cartpole_task(horizon=30, num_steps=100) -> Task:
    problem = models.get("cartpole", horizon=horizon)
    truth = models.get("cartpole", pole_mass=0.3 * MISMATCH)
    return Task("cartpole", problem, _noisy(truth.step, [0.0, 0.0, 0.02, 0.02]),
                _uniform_states([-0.3, -0.3, -0.2, -0.2], [0.3, 0.3, 0.2, 0.2]), num_steps,
                _upright_tail(1),
                f"cart-pole swing-up, MPC horizon {horizon}, {num_steps} steps; true pole mass x{MISMATCH}, "
                "noise 0.02 on both velocities")


def brax_task(horizon=15, num_steps=40) -> Task:
    from ppl_control.models import brax as pcbrax

    from .policy_brax import ACTION_SCALE, BACKEND, ENV, wide_reset

    env = pcbrax.make_env(ENV, BACKEND)
    model_problem = pcbrax.problem(ENV, backend=BACKEND, horizon=horizon)
    problem = dataclasses.replace(model_problem, step=lambda x, u: model_problem.step(x, ACTION_SCALE * u))
    true_env = pcbrax.make_env(ENV, BACKEND)
    sys = true_env.sys
    inertia = sys.link.inertia
    pole = 1  # links: cart, pole
    heavier = inertia.replace(mass=inertia.mass.at[pole].multiply(MISMATCH), i=inertia.i.at[pole].multiply(MISMATCH))
    true_env.unwrapped.sys = sys.replace(link=sys.link.replace(inertia=heavier))

    @jax.jit
    def true_step(key, x, u):
        state = x.replace(metrics=dict(x.metrics), info=dict(x.info))
        nxt = pcbrax._same_types(true_env.step(state, ACTION_SCALE * u), state)
        ps = nxt.pipeline_state
        qd = ps.qd + 0.05 * jax.random.normal(key, ps.qd.shape, ps.qd.dtype)
        ps = true_env.pipeline_init(ps.q, qd)
        return pcbrax._same_types(nxt.replace(pipeline_state=ps, obs=true_env._get_obs(ps)), nxt)

    reset = jax.jit(lambda key: wide_reset(env, key))

    def initial_states(key, n):
        return [reset(k) for k in jax.random.split(key, n)]

    def success(loop):
        return bool(np.all(np.abs(loop.observations[:, 1]) <= 0.2))

    return Task("brax", problem, true_step, initial_states, num_steps, success,
                f"Brax {ENV} balancing ({BACKEND}), MPC horizon {horizon}, {num_steps} steps; true pole "
                f"mass and inertia x{MISMATCH}, noise 0.05 on the joint velocities, force capped at "
                f"{ACTION_SCALE:.0%}")


TASKS = {"pendulum": pendulum_task, "cartpole": cartpole_task, "brax": brax_task}


# -- running and timing ------------------------------------------------------------------------


def build(method: str, problem, budget=None, **overrides):
    cls, config, knob, _, _ = METHODS[method]
    config = dict(config, **overrides)
    if knob is not None and budget is not None:
        config[knob] = int(budget)
    return cls(pc.trajectory_model(problem), progress_bar=False, **config)


def closed_loop(task: Task, algorithm, x0, key, warm: bool, **mpc_kwargs):
    """``pc.mpc`` on the task, or ``None`` when the true system diverged (NaN state)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TSMC's max_stages warning, once per capped step
        try:
            return pc.mpc(algorithm, x0, task.num_steps, key, true_step=task.true_step,
                          warm_start=warm, **mpc_kwargs)
        except InferenceError as error:
            print(f"    diverged: {error}", flush=True)
            return None


def step_time(loop) -> float:
    """Median compiled per-step time: the first step (which compiles the re-plan) left out."""
    return float(np.median(loop.solve_time[1:]))


def calibrate(task: Task, methods, calibration_steps: int, key) -> tuple[float, dict, dict]:
    """The target per-step time (warm TSMC's), each method's budget for it and its planner
    (already compiled by the calibration runs)."""
    short = dataclasses.replace(task, num_steps=calibration_steps)
    x0 = task.initial_states(jax.random.fold_in(key, 10_000), 1)[0]  # not a held-out state
    planners = {"tsmc_warm": build("tsmc_warm", task.problem)}
    target = step_time(closed_loop(short, planners["tsmc_warm"], x0, key, True))
    print(f"  target per-step time (warm TSMC): {target * 1e3:.1f} ms", flush=True)
    budgets = {"tsmc_warm": None}
    for method in methods:
        _, _, knob, probe, warm = METHODS[method]
        if knob is None:  # warm TSMC itself, or it with other mpc options: the same planner
            budgets[method], planners[method] = None, planners["tsmc_warm"]
            continue
        budget = probe
        for attempt in range(3):
            planner = build(method, task.problem, budget)
            measured = step_time(closed_loop(short, planner, x0, key, warm))
            scaled = max(2, int(round(budget * target / measured)))
            print(f"  {method}: {knob}={budget} -> {measured * 1e3:.1f} ms/step; scaled {scaled}", flush=True)
            if abs(measured / target - 1.0) <= 0.15 or attempt == 2:
                break
            budget = scaled
        budgets[method], planners[method] = budget, planner
    return target, budgets, planners


def evaluate(task: Task, planners: dict, states, key) -> dict:
    """Closed loops of every planner from every state, methods interleaved per state so that a
    change in the machine's load falls on all of them alike."""
    loops = {m: [] for m in planners}
    for i, x0 in enumerate(states):
        for m, planner in planners.items():
            loop = closed_loop(task, planner, x0, jax.random.fold_in(key, i), METHODS[m][4],
                               **MPC_OPTIONS.get(m, {}))
            loops[m].append(loop)
            if loop is not None:
                print(f"  state {i} {m}: cost {loop.cost:.1f}, success {task.success(loop)}, "
                      f"{step_time(loop) * 1e3:.0f} ms/step", flush=True)
    return loops


def summary(task: Task, loops: list) -> dict:
    done = [loop for loop in loops if loop is not None]
    costs = np.array([loop.cost for loop in done])
    times = np.concatenate([loop.solve_time[1:] for loop in done]) if done else np.array([np.nan])
    stages = [loop.diagnostics["num_stages"] for loop in done if "num_stages" in loop.diagnostics]
    return dict(
        n=len(loops),
        diverged=len(loops) - len(done),
        cost_mean=float(costs.mean()) if done else float("nan"),
        cost_se=float(costs.std(ddof=1) / np.sqrt(len(costs))) if len(done) > 1 else float("nan"),
        success=sum(task.success(loop) for loop in done),
        time_ms=float(np.median(times) * 1e3),
        stages=float(np.mean(np.concatenate(stages))) if stages else None,
    )


def table_rows(task_name: str, method_label: str, budget: str, s: dict) -> str:
    stages = "-" if s["stages"] is None else f"{s['stages']:.1f}"
    diverged = f" ({s['diverged']} diverged)" if s["diverged"] else ""
    return (f"| {task_name} | {method_label} | {budget} | {s['time_ms']:.0f} | {stages} | "
            f"{s['cost_mean']:.1f} ± {s['cost_se']:.1f} | {s['success']}/{s['n']}{diverged} |")


def run_comparison(task_names, num_states, seed, quick) -> list[str]:
    rows = ["| task | method | budget per step | ms per step (median) | TSMC stages per step | "
            "closed-loop cost (mean ± s.e.) | success |", "|---|---|---|---:|---:|---:|---|"]
    descriptions = []
    methods = list(METHODS)
    for name in task_names:
        task = TASKS[name]() if not quick else TASKS[name](num_steps=30)
        print(f"== {name}: {task.description}", flush=True)
        descriptions.append(f"- {name}: {task.description}.")
        key = jax.random.key(seed)
        target, budgets, planners = calibrate(task, methods, 8 if quick else 12, key)
        states = task.initial_states(jax.random.fold_in(key, 1), num_states)
        loops = evaluate(task, planners, states, jax.random.fold_in(key, 2))
        for m in methods:
            knob = METHODS[m][2]
            budget = (f"{TSMC_BASE['num_particles']} particles, adaptive stages" if knob is None
                      else f"{knob}={budgets[m]}" + (", adaptive stages" if m == "tsmc_cold" else ""))
            rows.append(table_rows(name, LABELS[m], budget, summary(task, loops[m])))
            print(rows[-1], flush=True)
    return descriptions, rows


def run_sweep(task_names, num_states, seed, spreads, quick) -> list[str]:
    """Warm TSMC with several ``init_spread`` values (and the prior shift): stages, time, quality."""
    rows = ["| task | init_spread | shift | TSMC stages per step | ms per step (median) | "
            "closed-loop cost (mean ± s.e.) | success |", "|---|---:|---|---:|---:|---:|---|"]
    variants = [(s, "repeat") for s in spreads] + [(1.2, "prior")]
    for name in task_names:
        task = TASKS[name]() if not quick else TASKS[name](num_steps=30)
        print(f"== sweep {name}", flush=True)
        key = jax.random.key(seed)
        states = task.initial_states(jax.random.fold_in(key, 1), num_states)
        for spread, shift in variants:
            algorithm = build("tsmc_warm", task.problem, init_spread=spread)
            loops = [closed_loop(task, algorithm, x0, jax.random.fold_in(key, i), True, shift=shift)
                     for i, x0 in enumerate(states)]
            s = summary(task, loops)
            diverged = f" ({s['diverged']} diverged)" if s["diverged"] else ""
            rows.append(f"| {name} | {spread} | {shift} | {s['stages']:.1f} | {s['time_ms']:.0f} | "
                        f"{s['cost_mean']:.1f} ± {s['cost_se']:.1f} | {s['success']}/{s['n']}{diverged} |")
            print(rows[-1], flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="pendulum,cartpole,brax", help="comma-separated subset")
    parser.add_argument("--states", type=int, default=3, help="held-out initial states per task (20: the full set)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help="warm TSMC's init_spread and shift instead")
    parser.add_argument("--spreads", default="1.0,1.2,1.5,2.0,3.0")
    parser.add_argument("--quick", action="store_true", help="short loops, a smoke run")
    parser.add_argument("--write", action="store_true", help="write the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    task_names = args.tasks.split(",")
    for name in task_names:
        if name not in TASKS:
            parser.error(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    command = f"`.venv/bin/python -m benchmarks.mpc {' '.join(argv if argv is not None else __import__('sys').argv[1:])}`"
    start = time.perf_counter()
    if args.sweep:
        spreads = [float(s) for s in args.spreads.split(",")]
        rows = run_sweep(task_names, args.states, args.seed, spreads, args.quick)
        text = "\n".join(rows)
        body = (f"{command}, {time.perf_counter() - start:.0f} s. Machine: {describe()}.\n\n"
                f"Warm TSMC ({TSMC_BASE}) in the closed loops of `benchmarks.mpc` ({args.states} held-out "
                "initial states per task): `init_spread` scales the standard deviations of the Gaussian "
                "that a warm start tempers from; `shift` is how `pc.mpc` fills the shifted plan's new last "
                "action (repeat the old last one, or draw it from the prior).\n\n" + text)
        heading = SWEEP_HEADING
    else:
        descriptions, rows = run_comparison(task_names, args.states, args.seed, args.quick)
        text = "\n".join(rows)
        body = (f"{command}, {time.perf_counter() - start:.0f} s. Machine: {describe()}; other jobs "
                "shared the 2 cores, so per-step times are noisy (each method's own median is in the "
                f"table).\n\n{args.states} held-out initial states per task:\n" + "\n".join(descriptions)
                + "\n\nEqual per-step wall time: warm TSMC's median per-step time on a calibration state "
                "is the target; every other method's budget (iterations, or particles for cold TSMC) is "
                "scaled to it (see the module docstring).\n\n" + text)
        heading = HEADING
    print(text)
    if args.write:
        replace_section("BENCHMARKS.md", heading, body)
        print("wrote", heading, "to BENCHMARKS.md")


if __name__ == "__main__":
    main()
