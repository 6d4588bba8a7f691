"""Every algorithm on every ready-made problem, same machine, same run.

For each problem (``trajectory_model`` with the problem's default temperature and prior) and each
algorithm, one run with a fixed key and a modest budget, then the same run again (compiled): the
best and the median cost over the returned particles, the gradient or cost evaluations spent,
and the wall time of the first call (compilation included) and of the second (compiled).
Then, on the hybrid ``reservoir`` problem, MDPO against gradient descent and a fixed noise
profile over 8 seeds at equal gradient evaluations.

    .venv/bin/python benchmarks/compare_algorithms.py [--out table.md]

Budgets (about 1,600 evaluations for the optimisers):
  MDPO, GradientDescent: 16 restarts x 100 iterations (gradient evaluations)
  CEM, MPPI:             32 samples x 50 iterations (cost evaluations)
  NUTS:                  100 warmup + 100 draws (gradient evaluations = leapfrog steps, draws only)
  TSMC:                  64 particles, 2 HMC moves x 5 leapfrog steps per stage, <= 20 stages
"""

import argparse
import time

import jax
import numpy as np

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import CEM, MDPO, MPPI, NUTS, TSMC, GradientDescent

ALGORITHMS = {
    "tsmc": (TSMC, dict(num_particles=64, num_moves=2, num_leapfrog=5, max_stages=20)),
    "mdpo": (MDPO, dict(num_particles=16, num_steps=100)),
    "gradient_descent": (GradientDescent, dict(num_particles=16, num_steps=100)),
    "cem": (CEM, dict(num_particles=32, num_steps=50)),
    "mppi": (MPPI, dict(num_particles=32, num_steps=50)),
    "nuts": (NUTS, dict(num_warmup=100, num_samples=100)),
}


def evaluations(method: str, result: pc.Result, config: dict) -> str:
    if method in ("mdpo", "gradient_descent"):
        return f"{int(np.sum(result.stats['num_evaluations']))} grad"
    if method in ("cem", "mppi"):
        return f"{int(np.sum(result.stats['num_evaluations']))} cost"
    if method == "nuts":
        return f">= {int(np.sum(result.particle_stats['tree_size']))} grad"
    if method == "tsmc":
        stages = len(next(iter(result.stats.values())))
        n, moves, leap = config["num_particles"], config["num_moves"], config["num_leapfrog"]
        return f"~{stages * n * moves * leap} grad"
    return "?"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out.log_weights)
    return out, time.perf_counter() - start


def compare(names) -> list[str]:
    rows = ["| problem | algorithm | best cost | median cost | evaluations | 1st call s | 2nd call s |",
            "|---|---|---|---|---|---|---|"]
    for name in names:
        model = pc.trajectory_model(models.get(name))
        for method, (cls, config) in ALGORITHMS.items():
            algo = cls(model, progress_bar=False, **config)
            result, first = timed(lambda: algo.run(jax.random.key(0)))
            result, second = timed(lambda: algo.run(jax.random.key(0)))
            cost = np.asarray(result.samples["cost"], dtype=np.float64)
            cost = cost[np.isfinite(cost)]
            row = (f"| {name} | {method} | {cost.min():.4g} | {np.median(cost):.4g} | "
                   f"{evaluations(method, result, config)} | {first:.1f} | {second:.2f} |")
            print(row, flush=True)
            rows.append(row)
    return rows


def reservoir_seeds(num_seeds: int = 8) -> list[str]:
    model = pc.trajectory_model(models.get("reservoir"))
    budget = dict(num_particles=16, num_steps=100, progress_bar=False)
    variants = {
        "gradient_descent": GradientDescent(model, **budget),
        "mdpo (adaptive profile)": MDPO(model, **budget),
        "mdpo (fixed profile, same mean)": MDPO(model, adaptive_noise=False, **budget),
    }
    rows = ["| reservoir, 16 x 100 gradient evaluations | median best cost | min | max |", "|---|---|---|---|"]
    for label, algo in variants.items():
        best = np.array([np.min(algo.run(jax.random.key(s)).samples["cost"]) for s in range(num_seeds)])
        row = f"| {label} | {np.median(best):.3f} | {best.min():.3f} | {best.max():.3f} |"
        print(row, flush=True)
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="also write the tables (markdown) here")
    parser.add_argument("--problems", nargs="*", default=None)
    args = parser.parse_args()
    rows = compare(args.problems or models.names())
    rows += [""] + reservoir_seeds()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
