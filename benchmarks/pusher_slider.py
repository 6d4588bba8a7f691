"""The pusher-slider: TSMC, NUTS, MDPO, gradient descent and MPPI on the same model, same run.

``pc.trajectory_model(models.get("pusher_slider"))`` (temperature 0.005, 100 decision variables),
``--seeds`` runs of each algorithm with a fixed modest budget. Reported per algorithm: the best
particle's cost (median, min and max over the seeds) and its gap to the module's reference cost,
how many of the seeds' best particles turn each way (the goal is mirror symmetric: two optimal
pushes, a left and a right turn), the share of each run's particles (weighted) that turn left,
gradient or cost evaluations per run, and wall time (the first run compiles; the others reuse it).

Budgets (the same as ``compare_algorithms``'s, about 1,600 to 6,000 evaluations):
  TSMC:                  64 particles, 2 HMC moves x 5 leapfrog steps per stage, <= 60 stages
  NUTS:                  200 warmup + 200 draws, one chain
  MDPO, GradientDescent: 16 restarts x 200 iterations (gradient evaluations)
  MPPI:                  32 samples x 100 iterations (cost evaluations)

    .venv/bin/python -m benchmarks.pusher_slider [--seeds 3] [--write]
"""

import argparse
import time

import jax
import numpy as np

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import MDPO, MPPI, NUTS, TSMC, GradientDescent

from ._machine import describe, replace_section

HEADING = "## Pusher-slider: the TSMC paper's task"
ALGORITHMS = {
    "tsmc": (TSMC, dict(num_particles=64, num_moves=2, num_leapfrog=5, max_stages=60)),
    "nuts": (NUTS, dict(num_warmup=200, num_samples=200)),
    "mdpo": (MDPO, dict(num_particles=16, num_steps=200)),
    "gradient_descent": (GradientDescent, dict(num_particles=16, num_steps=200)),
    "mppi": (MPPI, dict(num_particles=32, num_steps=100)),
}


def evaluations(method, result, config) -> str:
    if method in ("mdpo", "gradient_descent"):
        return f"{int(np.sum(result.stats['num_evaluations']))} grad"
    if method == "mppi":
        return f"{int(np.sum(result.stats['num_evaluations']))} cost"
    if method == "nuts":
        return f">= {int(np.sum(result.particle_stats['tree_size']))} grad"
    stages = int(result.config["num_stages"])
    return f"~{stages * config['num_particles'] * config['num_moves'] * config['num_leapfrog']} grad ({stages} stages)"


def measure(problem, seeds):
    model = pc.trajectory_model(problem)
    final_heading = jax.jit(jax.vmap(lambda u: problem.trajectory(u)[-1, 2]))
    rows = {}
    for method, (cls, config) in ALGORITHMS.items():
        algo = cls(model, progress_bar=False, **config)
        best, left_best, left_share, times, work = [], 0, [], [], ""
        for seed in range(seeds):
            start = time.perf_counter()
            result = algo.run(jax.random.key(seed))
            times.append(time.perf_counter() - start)
            cost = np.asarray(result.samples["cost"], np.float64)
            ok = np.isfinite(cost)
            headings = np.asarray(final_heading(result.samples["controls"]))
            i = int(np.argmin(np.where(ok, cost, np.inf)))
            best.append(float(cost[i]))
            left_best += int(headings[i] > 0)
            left_share.append(float(np.sum(np.asarray(result.weights) * (headings > 0))))
            work = evaluations(method, result, config)
            print(f"{method} seed {seed}: best {cost[i]:.4f} (turns {'left' if headings[i] > 0 else 'right'}), "
                  f"{left_share[-1]:.0%} of the particles turn left, {times[-1]:.1f} s", flush=True)
        rows[method] = dict(best=np.array(best), left_best=left_best, left_share=left_share,
                            first=times[0], later=np.median(times[1:]) if seeds > 1 else np.nan, work=work)
    return rows


def table(rows, problem, args) -> str:
    reference = problem.reference_cost
    lines = [
        f"Command: `.venv/bin/python -m benchmarks.pusher_slider --seeds {args.seeds} --write` (a few minutes).  ",
        f"Machine: {describe()}; 2 cores shared with other jobs, so wall times are noisy.  ",
        f"`models.get(\"pusher_slider\")`: horizon {problem.horizon}, {problem.horizon * problem.action_dim} "
        f"decision variables, temperature {problem.temperature:g}, reference cost {reference} (Adam polishing "
        "from TSMC particles, see the module). Budgets in `benchmarks/pusher_slider.py`'s docstring. "
        "`best turns left/right`: how many seeds' best particle ends turning each way (the goal is "
        "mirror symmetric, both are optimal); `left share per seed`: the weighted share of each run's "
        "returned particles that turn left (a run that holds both modes sits near 50%; 0% or 100% "
        "is a run that kept one).",
        "",
        "| algorithm | best cost (median) | min | max | gap to reference (median) | best turns left/right | "
        "left share per seed | evaluations / run | 1st run s | later runs s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, r in rows.items():
        median = float(np.median(r["best"]))
        gap = f"{100 * (median - reference) / reference:.1f}%" if reference else ""
        lines.append(
            f"| {method} | {median:.4f} | {r['best'].min():.4f} | {r['best'].max():.4f} | {gap} | "
            f"{r['left_best']}/{args.seeds - r['left_best']} | {', '.join(f'{100 * x:.0f}%' for x in r['left_share'])} | "
            f"{r['work']} | "
            f"{r['first']:.1f} | {r['later']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md's section")
    args = parser.parse_args(argv)
    problem = models.get("pusher_slider")
    body = table(measure(problem, args.seeds), problem, args)
    print(body)
    if args.write:
        replace_section("BENCHMARKS.md", HEADING, body)


if __name__ == "__main__":
    main()
