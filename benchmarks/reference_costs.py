"""Reference costs of the problem library, and what TSMC reaches with its default budget.

For every registered problem (``models.names()``):

1. TSMC with the default configuration (``TSMC(model)``: 256 particles, target ESS 0.5,
   self-tuning moves) on the default problem at its recommended temperature, ``--seeds``
   independent runs: the best particle's cost of each (the "default budget" column).
2. NumPyro's NUTS (``MCMC(NUTS)``, 300 warm-up + 300 draws), ``--seeds`` chains: every draw is a
   candidate too (NUTS's long trajectories find basins tempering can miss; cartpole is one).
3. The reference: the best cost found by the strongest methods at hand, followed by gradient
   polishing. Every final TSMC particle and NUTS draw of every seed is a candidate; the
   ``--restarts`` cheapest of them plus as many prior draws start Adam (``--adam-steps`` steps,
   learning rate ``--learning-rate``) on the controls through ``u = mid + half * tanh(w)`` (smooth
   in ``w`` and always inside the action box). The reference is the lowest cost of all candidates
   and polished points. Problems with an exact optimum (``lqr``, ``double_integrator``) report it
   alongside.

    python -m benchmarks.reference_costs                  # print the table
    python -m benchmarks.reference_costs --write          # also update BENCHMARKS.md's section

``--write`` replaces only the section ``## Problem library: reference costs`` of BENCHMARKS.md.
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import NUTS, TSMC

from ._machine import describe, replace_section

HEADING = "## Problem library: reference costs"
EXACT = {"lqr", "double_integrator"}


def _box(problem):
    if problem.action_bounds is None:
        return None
    low, high = (jnp.broadcast_to(jnp.asarray(b, jnp.float32), (problem.action_dim,)) for b in problem.action_bounds)
    return 0.5 * (low + high), 0.5 * (high - low)


def polish(problem, starts, steps, learning_rate):
    """Adam from each row of ``starts`` (controls); returns the polished controls' costs."""
    box = _box(problem)
    if box is None:
        to_u, w0 = (lambda w: w), starts
    else:
        mid, half = box
        to_u = lambda w: mid + half * jnp.tanh(w)
        w0 = jnp.arctanh(jnp.clip((starts - mid) / half, -0.999, 0.999))
    opt = optax.adam(learning_rate)
    objective = lambda w: problem.cost(to_u(w))

    @jax.jit
    def run(w):
        def body(carry, _):
            w, state, best = carry
            cost, grad = jax.value_and_grad(objective)(w)
            grad = jnp.where(jnp.isfinite(grad), grad, 0.0)
            updates, state = opt.update(grad, state)
            return (optax.apply_updates(w, updates), state, jnp.minimum(best, cost)), None

        (w, _, best), _ = jax.lax.scan(body, (w, opt.init(w), jnp.inf), None, steps)
        return jnp.minimum(best, objective(w))

    return np.asarray(jax.vmap(run)(w0))


def measure(name, seeds, restarts, adam_steps, learning_rate):
    problem = models.get(name)
    model = pc.trajectory_model(problem)
    tsmc = TSMC(model, progress_bar=False)
    bests, times, particles, costs = [], [], [], []
    for seed in range(seeds):
        start = time.perf_counter()
        result = tsmc.run(jax.random.key(seed))
        times.append(time.perf_counter() - start)
        c = np.asarray(result.samples["cost"], dtype=np.float64)
        bests.append(float(np.nanmin(np.where(np.isfinite(c), c, np.nan))))
        particles.append(np.asarray(result.samples["controls"]))
        costs.append(np.where(np.isfinite(c), c, np.inf))
    nuts = NUTS(model, num_warmup=300, num_samples=300, progress_bar=False)
    nuts_bests = []
    for seed in range(seeds):
        result = nuts.run(jax.random.key(seed))
        c = np.asarray(result.samples["cost"], dtype=np.float64)
        nuts_bests.append(float(np.nanmin(np.where(np.isfinite(c), c, np.nan))))
        particles.append(np.asarray(result.samples["controls"]))
        costs.append(np.where(np.isfinite(c), c, np.inf))
    num_tsmc = sum(len(c) for c in costs[:seeds])
    particles, costs = np.concatenate(particles), np.concatenate(costs)
    order = np.argsort(costs)[:restarts]
    prior = pc.control_prior(problem).sample(jax.random.key(10_000), (restarts,))
    starts = jnp.concatenate([jnp.asarray(particles[order]), prior])
    start = time.perf_counter()
    polished = polish(problem, starts, adam_steps, learning_rate)
    polish_time = time.perf_counter() - start
    from_tsmc, from_prior = float(np.min(polished[:restarts])), float(np.min(polished[restarts:]))
    reference = min(float(costs.min()), from_tsmc, from_prior)
    cheapest = int(np.argmin(costs))
    how = (("TSMC particle" if cheapest < num_tsmc else "NUTS draw") if reference == float(costs.min())
           else "Adam from TSMC/NUTS" if reference == from_tsmc else "Adam from prior")
    exact = None
    if name == "double_integrator":
        exact = models.double_integrator.exact_minimum()[0]
    elif name == "lqr":
        exact = problem.reference_cost
    return dict(name=name, dim=problem.horizon * problem.action_dim, temperature=problem.temperature,
                reference=reference, how=how, exact=exact, tsmc_best=bests, tsmc_time=times, nuts_best=nuts_bests,
                adam_from_tsmc=from_tsmc, adam_from_prior=from_prior, polish_time=polish_time)


def table(rows, args) -> str:
    lines = [
        f"Command: `python -m benchmarks.reference_costs --seeds {args.seeds} --restarts {args.restarts} "
        f"--adam-steps {args.adam_steps} --write`  ",
        f"Machine: {describe()} (times are wall clock and only indicative). float32.",
        "",
        "Reference = lowest cost among all final TSMC particles and NUTS draws (300 + 300) of the seeds "
        f"and Adam polishing ({args.adam_steps} steps, lr {args.learning_rate}, tanh-reparametrised "
        f"controls) from the {args.restarts} cheapest of them and from {args.restarts} prior draws. "
        "TSMC default budget = `TSMC(model)` defaults (256 particles, target ESS 0.5, self-tuning moves) "
        "at the problem's recommended temperature; best particle per seed; NUTS likewise, best draw.",
        "",
        "| problem | dim | temperature | reference cost | found by | exact optimum | TSMC default best (per seed) | gap to reference | TSMC time / run (s) | NUTS best (per seed) | best Adam from prior |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        exact = "" if r["exact"] is None else f"{r['exact']:.4f}"
        gap = min(r["tsmc_best"]) - r["reference"]
        rel = gap / abs(r["reference"]) if r["reference"] else math.nan
        lines.append(
            f"| {r['name']} | {r['dim']} | {r['temperature']:g} | {r['reference']:.4f} | {r['how']} | {exact} | "
            f"{', '.join(f'{b:.4f}' for b in r['tsmc_best'])} | {gap:.3g} ({100 * rel:.1f}%) | "
            f"{np.mean(r['tsmc_time']):.0f} | {', '.join(f'{b:.4f}' for b in r['nuts_best'])} | "
            f"{r['adam_from_prior']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default=",".join(models.names()))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--restarts", type=int, default=16)
    parser.add_argument("--adam-steps", type=int, default=2000)
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md's section")
    args = parser.parse_args(argv)
    rows = []
    for name in args.problems.split(","):
        row = measure(name, args.seeds, args.restarts, args.adam_steps, args.learning_rate)
        print(f"{name}: reference {row['reference']:.4f} ({row['how']}), TSMC default {row['tsmc_best']}, "
              f"{np.mean(row['tsmc_time']):.0f} s/run, polish {row['polish_time']:.0f} s", flush=True)
        rows.append(row)
    section = table(rows, args)
    print(section)
    if args.write:
        replace_section("BENCHMARKS.md", HEADING, section)


if __name__ == "__main__":
    main()
