"""Keeping several solutions: how often each method keeps both of navigation's mirror-image routes.

``models.navigation`` is symmetric under ``y -> -y``: every optimal path has a mirror image of equal
cost through the other gap of the obstacle column, so its Boltzmann posterior puts half its mass
on each route. A sampler that keeps one route only has lost half of the answer. For each seed,
each method solves the shipped problem (temperature 0.01, 40 steps, 80 decision variables) and
its returned particles (or draws) are labelled by ``navigation.homotopy_class``:

* TSMC as it ships (standard rejuvenation: every particle resampled and moved);
* TSMC with waste-free moves (``chain_length=8`` and ``16``; chains of 16 with ``max_leapfrog=512``
  win cart-pole in ``benchmarks.tsmc_vs_nuts``, and on navigation the tuned trajectory length stays
  far below 128, so ``max_leapfrog`` changes nothing here);
* NumPyro's NUTS (``MCMC(NUTS)``, 300 warm-up + 300 draws), the draws weighted equally;
* multi-start Adam (``GradientDescent``, 256 restarts x 1000 steps), restarts weighted equally
  (an optimiser: its shares are how the restarts fell, not a posterior).

A route is *kept* when it holds at least 2% of the weight (5 of 256 equal particles). Reported per
method: the seeds on which both routes were kept, the median weight of the smaller route (0.5 is
the posterior's), the median best cost against the reference, gradient evaluations and the warm
wall time (median over the seeds after the first, which compiles). All methods run in one process,
seed by seed, so their times are side by side.

    .venv/bin/python -m benchmarks.mode_retention [--seeds 24] [--write]
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC, GradientDescent

from ._machine import describe, publish
from .tsmc_vs_nuts import nuts_runner

HEADING = "## Keeping both routes: navigation's mirror-image modes"
KEPT = 0.02  # the weight below which a route counts as lost


def _tsmc(model, **config):
    algo = TSMC(model, progress_bar=False, **config)

    def run(key):
        result = algo.run(key)
        return (np.asarray(result.samples["controls"]), result.weights,
                int(np.sum(result.stats["num_evaluations"])))

    return run


def _nuts(model):
    run_draws = nuts_runner(model, site="controls")

    def run(key):
        controls, evaluations = run_draws(key)
        return controls, np.full(len(controls), 1.0 / len(controls)), evaluations

    return run


def _adam(model, num_particles=256, num_steps=1000):
    algo = GradientDescent(model, num_particles=num_particles, num_steps=num_steps, progress_bar=False)

    def run(key):
        result = algo.run(key)
        return (np.asarray(result.samples["controls"]), np.full(num_particles, 1.0 / num_particles),
                num_particles * num_steps)

    return run


METHODS = {
    "TSMC (defaults: standard rejuvenation)": lambda model: _tsmc(model),
    "TSMC (waste-free: chain_length=8)": lambda model: _tsmc(model, chain_length=8),
    "TSMC (waste-free: chain_length=16)": lambda model: _tsmc(model, chain_length=16),
    "NUTS (NumPyro 300 + 300)": _nuts,
    "Adam multi-start (256 x 1000)": _adam,
}


def measure(problem, run, seeds):
    """Per seed: the smaller optimal route's weight, the best cost, evaluations and wall time."""
    trajectories = jax.jit(jax.vmap(problem.trajectory))
    costs = jax.jit(jax.vmap(problem.cost))
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        controls, weights, evaluations = run(jax.random.key(seed))
        wall = time.perf_counter() - start
        classes = np.asarray(models.navigation.homotopy_class(trajectories(jnp.asarray(controls))))
        mass = np.bincount(classes, weights=weights, minlength=4)
        cost = np.asarray(costs(jnp.asarray(controls)))
        rows.append(dict(minor=float(min(mass[1], mass[2])), best=float(np.min(cost[np.isfinite(cost)])),
                         evaluations=evaluations, wall=wall))
        print(f"    seed {seed}: smaller route {rows[-1]['minor']:.2f} best {rows[-1]['best']:.3f} "
              f"evaluations {evaluations} wall {wall:.1f}s", flush=True)
    return rows


def summarise(rows, reference):
    minor = np.array([r["minor"] for r in rows])
    best = np.median([r["best"] for r in rows])
    warm = [r["wall"] for r in rows[1:]] or [rows[0]["wall"]]
    return dict(kept=int(np.sum(minor >= KEPT)), seeds=len(rows), minor=float(np.median(minor)),
                minor_min=float(minor.min()), minor_max=float(minor.max()), best=float(best),
                gap=float(best / reference - 1.0), evaluations=float(np.median([r["evaluations"] for r in rows])),
                first=rows[0]["wall"], warm=float(np.median(warm)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=24)
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--write", action="store_true", help="write the table to BENCHMARKS.md")
    args = parser.parse_args(argv)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    problem = models.navigation.problem()
    model = pc.trajectory_model(problem)
    seeds = list(range(args.seeds))
    results = {}
    for name in names:
        print(name, flush=True)
        results[name] = summarise(measure(problem, METHODS[name](model), seeds), problem.reference_cost)
    lines = [
        f"Command: `.venv/bin/python -m benchmarks.mode_retention --seeds {args.seeds}"
        + ("" if args.methods == ",".join(METHODS) else f' --methods "{args.methods}"') + " --write`  ",
        f"Machine: {describe()}  ",
        f"Navigation as shipped (temperature {problem.temperature}, 40 steps, 80 decision variables; "
        f"reference cost {problem.reference_cost:.4f}); seeds 0..{args.seeds - 1}. A route is kept when it holds "
        f"at least {KEPT:.0%} of the weight; the posterior gives each 50%. See the module docstring.",
        "",
        "| method | both routes kept | smaller route's weight, median (range) | best cost, median | gap to reference "
        "| gradient evaluations | first call (s) | warm (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['kept']}/{r['seeds']} | {r['minor']:.2f} ({r['minor_min']:.2f}-{r['minor_max']:.2f}) "
            f"| {r['best']:.3f} | {r['gap']:+.1%} | {r['evaluations']:.3g} | {r['first']:.1f} | {r['warm']:.1f} |")
    publish(lines, HEADING, args.write)


if __name__ == "__main__":
    main()
