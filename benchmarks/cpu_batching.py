"""On a CPU, how fast a population's gradients are when its particles are evaluated in batches.

Every population algorithm evaluates its particles through ``inference._parallel.ParticleLayout``:
all at once (one ``vmap``, the default ``batch_size=None``) or in sequential batches of
``batch_size`` (``lax.map`` over a ``vmap``), which gives the same numbers up to float rounding.
On a GPU one wide batch is what the hardware wants. On a CPU it is not obvious: a wide batch
streams every intermediate of the rollout's reverse pass through memory for all particles at
once, while a small batch keeps them in cache but pays a loop iteration per batch.

Part 1 times the population's value-and-gradient (256 particles) of every problem in ``models``
(and a Brax environment with ``--brax``) at batch sizes from all 256 down to 1, interleaved in one
process, and reports each as a ratio to the all-at-once time (below 1: batches are faster).
Part 2 runs TSMC as it ships on two problems with ``batch_size=None`` and small batches, same key,
and reports the warm wall times side by side.

    .venv/bin/python -m benchmarks.cpu_batching [--brax] [--write]
"""

import argparse
import time

import jax
import numpy as np

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC
from ppl_control.inference._parallel import ParticleLayout

from ._machine import describe, replace_section

HEADING = "## CPU: particles evaluated in batches"
NUM_PARTICLES = 256
BATCH_SIZES = (64, 32, 16, 8, 4, 1)


def _problem(name):
    if name == "brax inverted_pendulum":
        from ppl_control.models import brax as pcbrax

        return pcbrax.problem("inverted_pendulum", horizon=50)
    return models.get(name)


def gradient_ratios(name, repeats=7):
    """Per-particle time of the population's value-and-gradient at each batch size, as a ratio to
    all at once; and the all-at-once time per particle in microseconds."""
    ld = pc.log_density(pc.trajectory_model(_problem(name)))
    value_and_grad = jax.value_and_grad(lambda z: sum(ld.log_parts(z)))
    z = ld.sample_prior(jax.random.key(0), NUM_PARTICLES)
    sizes = (None,) + BATCH_SIZES
    fns = {b: jax.jit(ParticleLayout(NUM_PARTICLES, None, b).map(value_and_grad)) for b in sizes}
    for fn in fns.values():
        jax.block_until_ready(fn(z))
    times = {b: [] for b in sizes}
    for _ in range(repeats):  # interleaved, so load changes hit every size alike
        for b, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(z))
            times[b].append(time.perf_counter() - start)
    full = min(times[None])
    return full / NUM_PARTICLES * 1e6, {b: min(times[b]) / full for b in BATCH_SIZES}


def tsmc_times(name, sizes=(None, 16, 8), repeats=2):
    """Warm wall time of TSMC (defaults, 256 particles, key 0) at each batch size, interleaved."""
    model = pc.trajectory_model(_problem(name))
    algos = {b: TSMC(model, num_particles=NUM_PARTICLES, batch_size=b, progress_bar=False) for b in sizes}
    best = {}
    for b, algo in algos.items():
        best[b] = float(np.min(algo.run(jax.random.key(0)).samples["cost"]))  # compiles
    times = {b: [] for b in sizes}
    for _ in range(repeats):
        for b, algo in algos.items():
            start = time.perf_counter()
            algo.run(jax.random.key(0))
            times[b].append(time.perf_counter() - start)
    return {b: (float(np.median(times[b])), best[b]) for b in sizes}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brax", action="store_true", help="also a Brax environment (slow to compile)")
    parser.add_argument("--tsmc", default="pendulum,cartpole", help="problems for part 2 ('' to skip)")
    parser.add_argument("--write", action="store_true", help="write the tables into BENCHMARKS.md")
    args = parser.parse_args(argv)
    names = list(models.names())
    if args.brax:
        names.append("brax inverted_pendulum")
    command = "`.venv/bin/python -m benchmarks.cpu_batching" + (" --brax" if args.brax else "") + " --write`"
    lines = [
        f"Command: {command}  ",
        f"Machine: {describe()}  ",
        f"Part 1: the value-and-gradient of {NUM_PARTICLES} particles (`ParticleLayout.map`, compiled), per-particle "
        "time at each `batch_size` as a ratio to all at once (below 1: faster in batches); minimum of 7 "
        "interleaved repeats.",
        "",
        "| problem | all at once (us / particle) | " + " | ".join(f"batch {b}" for b in BATCH_SIZES) + " |",
        "|---|---|" + "---|" * len(BATCH_SIZES),
    ]
    for name in names:
        full, ratios = gradient_ratios(name)
        lines.append(f"| {name} | {full:.1f} | " + " | ".join(f"{ratios[b]:.2f}" for b in BATCH_SIZES) + " |")
        print(lines[-1], flush=True)
    problems = [p for p in args.tsmc.split(",") if p]
    if problems:
        lines += ["", f"Part 2: TSMC as it ships, {NUM_PARTICLES} particles, key 0, warm wall time (median of 2, "
                  "interleaved) and best cost at each `batch_size`.", "",
                  "| problem | batch_size | warm (s) | ratio to all at once | best cost |", "|---|---|---|---|---|"]
        for name in problems:
            measured = tsmc_times(name)
            base = measured[None][0]
            for b, (wall, best) in measured.items():
                lines.append(f"| {name} | {'all' if b is None else b} | {wall:.2f} | {wall / base:.2f} | {best:.3f} |")
                print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.write:
        replace_section("BENCHMARKS.md", HEADING, table)


if __name__ == "__main__":
    main()
