"""TSMC's wall time against its physical floor: the same number of vmapped value-and-gradients.

Every HMC leapfrog step costs one value-and-gradient of the model's log density for all particles;
resampling, the metric fit, the bisection and the Python loop over stages are overhead. The floor
runs exactly as many vmapped value-and-gradient evaluations in one compiled loop (each feeding the
next, so none is skipped). Ratio = TSMC wall time / floor wall time, both after compilation, timed
side by side, median over repeats. The first run's extra time over a warm one (compilation and
tracing) is reported apart, with the number of times the model was traced.

A second table breaks one stage down (pendulum, fixed moves, so every stage takes the same
gradients): the stage's parts compiled and timed alone, side by side in one process, against the
same number of gradients, and the Python loop's share (a run's time per stage minus the compiled
stage's).

    .venv/bin/python -m benchmarks.tsmc_overhead [--repeats 5] [--skip-acrobot] [--write]
"""

import argparse
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC
from ppl_control.inference import hmc, metric as metrics, resampling, tempering
from ppl_control.inference._blas import single_threaded_blas
from ppl_control.inference.tsmc import path_target

from ._machine import describe, replace_section

HEADING = "## TSMC overhead over the gradient floor"

# What a profile of the stage showed (jax.profiler traces of the compiled stage, XLA:CPU thunks
# attributed to JAX operations through the compiled HLO's op_name metadata; pendulum H=50, fixed
# 2 x 8 moves, 2026-11-23 on the shared 2-core machine at load 5-8). Written beneath the tables.
PROFILE_NOTES = """\
Profile of one stage (`jax.profiler` trace of the compiled stage, XLA:CPU thunks attributed to JAX
operations through the compiled HLO's `op_name`; pendulum H=50, fixed 2 x 8 moves, load 5-8). At
256 particles the stage's thunks ran 18-21 ms against 18 ms for the floor's 17 gradients: the
refresh pass's metric fit and resampling (one `cond` branch, eigh 0.2 ms of it) about 0.7 ms, the
temperature bisection under 0.1 ms, the 16 leapfrog steps 0.9 ms each (the floor: 1.0-1.1), so the
compiled stage is within about 10% of its gradients there. The rest of a run's time per stage was
host work between stages: the loop read the device 4 times per stage (beta, the stage counter
twice, the stage's scalars) and dispatched a separate `fold_in` for the stage key, each a wait for
the device that a busy machine stretches (one wait took 40 ms in the trace). Now the stage key is
folded in inside the stage and the loop reads the device once per stage (tested under a transfer
guard in `tests/test_stage_overhead.py`). At 64 particles the floor is not the same kind of
program: XLA:CPU compiles its whole loop of 17 gradients into one kernel (small while loops
without a dot or custom call are hoisted into a single call), while the stage's leapfrog loop
holds the dense metric's matrix-vector product, so each of its operations runs as a separate
thunk; there the moves' own work (momentum and jitter draws, energies, the Metropolis step,
about 0.6 ms per move) is as large as their 8 gradients, and the ratio stays high. Compilation:
the stage compiles in 7-27 s against 1 s for the floor (load-dependent), spread over its many
small kernels (the dense metric fit alone 1.8-4.5 s, the per-particle random draws 1.7 s); the
model is traced once for all of the stage's gradients (twice in all, once for its structure), and
a second run traces and compiles nothing.
"""


def gradient_evaluations(result) -> int:
    """Value-and-gradient evaluations (of all particles at once) that a TSMC run made: what its
    stages counted (the refresh, the probe and every move's leapfrog steps, adaptive or fixed)."""
    return int(np.sum(result.stats["num_evaluations"]) // result.num_particles)


def chain_step(value, grad):
    """A tiny bounded step that makes the next evaluation depend on this one (so XLA can neither
    skip nor hoist any), at the cost of a few elementwise operations (applied after an
    optimization barrier: fused into the gradient, an earlier ``tanh`` step made the floor slower
    than TSMC itself at 4096 particles)."""
    return 1e-6 * grad / (1.0 + jnp.abs(grad)) + 0.0 * value[:, None]


def floor_function(model, num_particles):
    ld = pc.log_density(model)
    value_and_grad = jax.vmap(jax.value_and_grad(lambda z: ld.log_target(z, 1.0)))

    @jax.jit
    def floor(z, count):
        def body(_, z):
            # The barrier keeps XLA from fusing the step into the gradient's last operations,
            # which made the loop up to 4x slower than the gradients alone (pendulum, 4096).
            value, grad = lax.optimization_barrier(value_and_grad(z))
            return z + chain_step(value, grad)

        return lax.fori_loop(0, count, body, z)

    return floor, ld.sample_prior(jax.random.key(0), num_particles)


class TraceCounter:
    """The model, counting how many times it is traced (every JAX trace runs the Python model)."""

    def __init__(self, model):
        self.model, self.count = model, 0

    def __call__(self, *args, **kwargs):
        self.count += 1
        return self.model(*args, **kwargs)


def load_inference(path):
    """Another checkout's ``inference`` package (``path``: its ``inference`` folder), imported under
    a private name beside this one, so that its TSMC can be timed side by side with this one's in
    one process (``--baseline``)."""
    import importlib.util
    import sys

    name = "_baseline_inference"
    spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"),
                                                  submodule_search_locations=[path])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def measure(name, model, num_particles, repeats, baseline=None):
    """TSMC's warm wall time against the floor, interleaved, and the first (compiling) run; with a
    ``baseline`` TSMC class, that one too, in the same interleaved loop."""
    classes = {"after": TSMC} if baseline is None else {"after": TSMC, "before": baseline}
    floor, z0 = floor_function(model, num_particles)
    algos, first, traces = {}, {}, {}
    for label, cls in classes.items():
        counted = TraceCounter(model)
        algos[label] = (cls(counted, num_particles=num_particles, progress_bar=False), counted)
        start = time.perf_counter()
        result = algos[label][0].run(jax.random.key(0))  # compiles
        first[label] = time.perf_counter() - start
        traces[label] = counted.count
    floor(z0, gradient_evaluations(result)).block_until_ready()  # compiles
    times = {label: [] for label in classes}
    floor_times, evals, stages = [], [], []
    for seed in range(1, repeats + 1):
        for label, (algo, _) in algos.items():
            start = time.perf_counter()
            result = algo.run(jax.random.key(seed))
            times[label].append(time.perf_counter() - start)
        count = gradient_evaluations(result)  # the same key gives the same run in both versions
        evals.append(count)
        stages.append(result.config["num_stages"])
        start = time.perf_counter()
        floor(z0, count).block_until_ready()
        floor_times.append(time.perf_counter() - start)
    row = dict(problem=name, particles=num_particles, dim=z0.shape[1], stages=int(np.median(stages)),
               evals=int(np.median(evals)), floor=float(np.median(floor_times)))
    for label in classes:
        ratios = np.array(times[label]) / np.array(floor_times)
        row[label] = dict(tsmc=float(np.median(times[label])), ratio=float(np.median(ratios)),
                          ratio_range=(float(ratios.min()), float(ratios.max())), first=first[label],
                          compile=first[label] - float(np.median(times[label])), traces=traces[label],
                          retraces=algos[label][1].count - traces[label])
    return row


def _timed(fn, repeats):
    """Minimum over ``repeats`` calls of ``fn`` (blocked), in ms; the minimum is the figure least
    disturbed by other work on a shared machine."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.min(times))


def _per_stage_in_run(algo, repeats, few=2, many=8):
    """A run's time per stage (ms): the fastest of ``repeats`` runs stopped after ``many`` stages
    minus the fastest stopped after ``few``, over ``many - few`` (the run's fixed costs cancel;
    the fastest of each is the figure least disturbed by other work on a shared machine)."""
    elapsed = {few: [], many: []}
    algo.max_stages = few
    algo.run(jax.random.key(99))  # compiles
    for seed in range(repeats):
        for stages in (few, many):
            algo.max_stages = stages  # read by the Python loop only
            start = time.perf_counter()
            algo.run(jax.random.key(100 + seed))
            elapsed[stages].append(time.perf_counter() - start)
    return 1e3 * (min(elapsed[many]) - min(elapsed[few])) / (many - few)


def stage_breakdown(num_particles, repeats, baseline=None, horizon=50, num_moves=2, num_leapfrog=8):
    """One TSMC stage and its parts, each compiled alone and timed side by side (ms, minimum of
    ``repeats``): pendulum with ``horizon`` steps, fixed ``num_moves`` x ``num_leapfrog`` moves."""
    model = pc.trajectory_model(models.get("pendulum", horizon=horizon))
    ld = pc.log_density(model)
    settings = dict(num_particles=num_particles, num_moves=num_moves, num_leapfrog=num_leapfrog, progress_bar=False)
    algo = TSMC(model, **settings)
    before = None if baseline is None else baseline(model, **settings)
    key = jax.random.key(1)
    state = algo._init(key, (), {}, None)
    for _ in range(3):  # a representative state, some way along the path
        state, _ = algo._stage(key, state, (), {}, None)
    floor, _ = floor_function(model, num_particles)
    z, n = state.particles, num_particles
    weights = jnp.full((n,), 1.0 / n, z.dtype)
    target = jax.value_and_grad(path_target(ld, None, 0.5), has_aux=True)
    (logp, aux), grad = jax.vmap(target)(z)
    metric = metrics.fit_metric(z, grad, weights, "dense")[0]
    keys = jax.random.split(key, n)
    bisection = jax.jit(lambda ll, beta: tempering.next_delta(ll, 1.0 - beta, algo.target_ess))
    fit = jax.jit(lambda z, g, w: metrics.fit_metric(z, g, w, "dense"))
    resample = jax.jit(lambda k, w, z: z[resampling.systematic(k, w, n)])
    move = jax.jit(jax.vmap(lambda k, z, lp, g, a, m: hmc.hmc_move(k, z, lp, g, a, target, 0.1, m, num_leapfrog, 0.5),
                            in_axes=(0, 0, 0, 0, 0, None)))
    gradients = 1 + num_moves * num_leapfrog
    with warnings.catch_warnings(), single_threaded_blas():
        warnings.simplefilter("ignore")  # max_stages stops before beta = 1, on purpose
        row = dict(
            particles=num_particles,
            run=_per_stage_in_run(algo, max(3, repeats // 2)),
            run_before=None if before is None else _per_stage_in_run(before, max(3, repeats // 2)),
            stage=_timed(lambda: algo._stage(key, state, (), {}, None), repeats),
            floor=_timed(lambda: floor(z, gradients), repeats),
            move=_timed(lambda: move(keys, z, logp, grad, aux, metric), repeats),
            floor_move=_timed(lambda: floor(z, num_leapfrog), repeats),
            bisection=_timed(lambda: bisection(state.log_likelihood, state.beta), repeats),
            fit=_timed(lambda: fit(z, grad, weights), repeats),
            resample=_timed(lambda: resample(key, weights, z), repeats),
        )
    row["gradients"] = gradients
    return row


def breakdown_table(rows, repeats):
    with_baseline = rows[0]["run_before"] is not None
    lines = [
        "Stage breakdown: pendulum H=50, fixed 2 moves x 8 leapfrog (17 value-and-gradients per stage: "
        f"refresh + 16), dense metric; ms, minimum of {repeats} calls, every part compiled alone and "
        "timed side by side in one process. *run / stage*: a run's time per stage inside `run` (the "
        "fastest runs stopped after 2 and after 8 stages, their difference over 6: the Python loop over "
        "stages included, the run's fixed costs not)"
        + (", with main's HEAD (*before*) beside this branch" if with_baseline else "")
        + "; *stage*: the compiled stage called alone; *floor*: its 17 gradients; *move*: one HMC "
        "move of 8 leapfrog steps (vmapped) against *8 grads*.",
        "",
        "| particles | " + ("run / stage before | " if with_baseline else "") + "run / stage | stage | "
        "floor (17 grads) | stage / floor | move (8 leapfrog) | 8 grads | bisection | metric fit | resampling |",
        "|---|" + ("---|" if with_baseline else "") + "---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        before = f"{r['run_before']:.2f} | " if with_baseline else ""
        lines.append(
            f"| {r['particles']} | {before}{r['run']:.2f} | {r['stage']:.2f} | {r['floor']:.2f} | "
            f"{r['stage'] / r['floor']:.2f} | {r['move']:.2f} | {r['floor_move']:.2f} | {r['bisection']:.3f} | "
            f"{r['fit']:.3f} | {r['resample']:.3f} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    parser.add_argument("--breakdown", default="64,256,1024",
                        help="particle counts of the stage breakdown table (comma-separated; empty: none)")
    parser.add_argument("--baseline", default=None,
                        help="another checkout's inference/ folder (say main's HEAD in a git worktree): its "
                             "TSMC is timed beside this one, interleaved in the same process")
    parser.add_argument("--skip-acrobot", action="store_true",
                        help="leave out the acrobot row (the slowest: about a minute a run on 2 busy cores)")
    parser.add_argument("--particles", default="256,1024,4096",
                        help="particle counts of the pendulum rows (comma-separated)")
    args = parser.parse_args(argv)
    baseline = None if args.baseline is None else load_inference(args.baseline).TSMC
    cases = [("lqr (40 vars)", pc.trajectory_model(models.get("lqr")), 1024)]
    cases += [("pendulum (60 vars)", pc.trajectory_model(models.get("pendulum")), int(n))
              for n in args.particles.split(",") if n]
    if not args.skip_acrobot:
        cases.append(("acrobot (80 vars)", pc.trajectory_model(models.get("acrobot")), 256))
    load_before = os.getloadavg()
    rows = [measure(name, model, n, args.repeats, baseline) for name, model, n in cases]
    sizes = [int(n) for n in args.breakdown.split(",") if n]
    breakdown_repeats = 3 * args.repeats + 3
    breakdown = [stage_breakdown(n, breakdown_repeats, baseline) for n in sizes]
    load_after = os.getloadavg()
    command = (f".venv/bin/python -m benchmarks.tsmc_overhead --repeats {args.repeats}"
               f"{' --skip-acrobot' if args.skip_acrobot else ''} --particles {args.particles}"
               f" --breakdown {args.breakdown}{' --baseline ' + args.baseline if args.baseline else ''} --write")
    lines = [
        f"Command: `{command}`  ",
        f"Machine: {describe()}; load average (1 min) {load_before[0]:.1f} at the start, "
        f"{load_after[0]:.1f} at the end  ",
        "TSMC as it ships (self-tuning moves, dense metric). Floor = the same number of vmapped "
        "value-and-gradient evaluations as the run's stages counted (refresh, probe and every "
        "leapfrog step) in one compiled loop, each chained to the last by a cheap step behind an "
        f"optimization barrier. Median of {args.repeats} seeds, timed side by side after compilation"
        + (", main's HEAD (*before*, `--baseline`) and this branch interleaved in one process" if baseline else "")
        + "; the whole run (Python loop over stages included). Goal (issue 10): ratio <= 1.10 at 256 "
        "to 4096 particles. *First run*: the compiling run (key 0); *compile*: first run minus the "
        "median warm run; *traces*: how many times the Python model ran during the first run (once "
        "per JAX trace of it) / during the warm runs (0: nothing traced or compiled again).",
        "",
    ]
    versions = ["before", "after"] if baseline else ["after"]
    head = "| problem | particles | stages | value-and-grad evals | floor (s) |"
    rule = "|---|---|---|---|---|"
    for v in versions:
        tag = f" {v}" if baseline else ""
        head += f" TSMC{tag} (s) | ratio{tag} (min-max) | first run{tag} (s) | compile{tag} (s) |"
        rule += "---|---|---|---|"
    head += " traces (first / warm) |"
    rule += "---|"
    lines += [head, rule]
    for r in rows:
        line = f"| {r['problem']} | {r['particles']} | {r['stages']} | {r['evals']} | {r['floor']:.3f} |"
        for v in versions:
            x = r[v]
            line += (f" {x['tsmc']:.3f} | {x['ratio']:.2f} ({x['ratio_range'][0]:.2f}-{x['ratio_range'][1]:.2f}) |"
                     f" {x['first']:.1f} | {x['compile']:.1f} |")
        line += " " + ", ".join(f"{r[v]['traces']} / {r[v]['retraces']}" for v in versions) + " |"
        lines.append(line)
    if breakdown:
        lines += [""] + breakdown_table(breakdown, breakdown_repeats)
    lines += ["", PROFILE_NOTES]
    table = "\n".join(lines)
    print(table)
    if args.write:
        replace_section("BENCHMARKS.md", HEADING, table)


if __name__ == "__main__":
    main()
