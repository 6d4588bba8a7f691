"""How TSMC's cost grows: time per stage and peak memory against particles, horizon and devices.

The problem is the pendulum swing-up (``models.get("pendulum", horizon=H)``, H decision variables).
Every row runs TSMC with fixed moves (``num_moves`` x ``num_leapfrog``, so every stage takes the
same number of gradients whatever the size) for ``--stages`` stages, after one compiling run, and
reports:

* seconds per stage (median over ``--repeats`` seeds, after compilation);
* the overhead ratio: TSMC's wall time over the bare gradient floor, the same number of vmapped
  value-and-gradient evaluations of the same particles in one compiled loop, timed side by side
  (``benchmarks.tsmc_overhead``'s floor, with the particles placed as TSMC places them);
* peak memory of the compiled stage: XLA's own buffer assignment (arguments + outputs +
  temporaries, ``Compiled.memory_analysis()``), what the device must hold at once;
* the fitted growth exponent ``b`` of ``time ~ a * size^b`` (least squares in log-log) per sweep.

Devices are host devices (``--xla_force_host_platform_device_count``), each sweep in its own
process. A ``batch_size`` row shows the memory bound of ``batch_size=``. A last table times TSMC as
it ships (adaptive moves) with the host BLAS limited to one thread (``TSMC.run``'s default,
``inference._blas.single_threaded_blas``) against the library's default threads, side by side.

    .venv/bin/python -m benchmarks.scaling [--full] [--repeats 2] [--write]

The default grid (particles 64-4096 at horizon 50, horizon 25-200 at 256 particles, 1/2/4 devices
at 1024 particles) takes about 10 minutes on 2 cores; ``--full`` runs particles 64-16,384 and
horizon 25-400.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

HEADING = "## Scaling: particles, horizon, devices"
NUM_MOVES, NUM_LEAPFROG = 2, 8


def _problem_model(horizon):
    import ppl_control as pc
    from ppl_control import models

    return pc.trajectory_model(models.get("pendulum", horizon=horizon))


def _floor(model, layout):
    """``(floor(z, count), z0)``: ``count`` chained value-and-gradients of every particle."""
    import jax
    from jax import lax

    import ppl_control as pc

    from .tsmc_overhead import chain_step

    ld = pc.log_density(model)
    value_and_grad = layout.map(jax.value_and_grad(lambda z: ld.log_target(z, 1.0)))

    @jax.jit
    def floor(z, count):
        def body(_, z):
            value, grad = lax.optimization_barrier(value_and_grad(z))  # see tsmc_overhead.chain_step
            return layout.constrain(z + chain_step(value, grad))

        return lax.fori_loop(0, count, body, layout.constrain(z))

    return floor, layout.put(ld.sample_prior(jax.random.key(0), layout.num_particles))


def _peak_bytes(algo, state):
    import jax

    stats = algo._stage.lower(jax.random.key(1), state, (), {}, None).compile().compiled.memory_analysis()
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes


def measure_row(num_particles, horizon, stages, repeats, batch_size=None):
    """One row: TSMC with fixed moves for ``stages`` stages, its floor, the stage's peak memory."""
    import jax

    from ppl_control.inference import TSMC

    model = _problem_model(horizon)
    algo = TSMC(model, num_particles=num_particles, num_moves=NUM_MOVES, num_leapfrog=NUM_LEAPFROG,
                max_stages=stages, batch_size=batch_size, progress_bar=False)
    floor, z0 = _floor(model, algo.layout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_stages stops before beta = 1, on purpose
        start = time.perf_counter()
        result = algo.run(jax.random.key(0))  # compiles
        first = time.perf_counter() - start
        count = int(np.sum(result.stats["num_evaluations"]) // num_particles)
        floor(z0, count).block_until_ready()  # compiles
        tsmc_times, floor_times = [], []
        for seed in range(1, repeats + 1):
            start = time.perf_counter()
            result = algo.run(jax.random.key(seed))
            tsmc_times.append(time.perf_counter() - start)
            count = int(np.sum(result.stats["num_evaluations"]) // num_particles)
            start = time.perf_counter()
            floor(z0, count).block_until_ready()
            floor_times.append(time.perf_counter() - start)
    state = algo._init(jax.random.key(0), (), {}, None)
    num_stages = result.config["num_stages"]
    return dict(
        particles=num_particles, horizon=horizon, devices=algo.layout.num_devices, batch_size=batch_size,
        stages=num_stages, evals=count, first=first,
        per_stage=float(np.median(tsmc_times)) / num_stages,
        floor_per_stage=float(np.median(floor_times)) / num_stages,
        ratio=float(np.median(np.array(tsmc_times) / np.array(floor_times))),
        peak_mb=_peak_bytes(algo, state) / 2**20,
    )


def measure_blas(repeats):
    """TSMC as it ships on the pendulum (256 particles): ``run`` (host BLAS on one thread) against
    the same run under the BLAS library's default threads, interleaved."""
    import contextlib

    import jax
    from threadpoolctl import threadpool_info

    from ppl_control.inference import TSMC
    from ppl_control.inference import tsmc as tsmc_module

    algo = TSMC(_problem_model(60), num_particles=256, progress_bar=False)

    def default_run(key):  # run() without its thread limit
        limit = tsmc_module.single_threaded_blas
        tsmc_module.single_threaded_blas = contextlib.nullcontext
        try:
            return algo.run(key)
        finally:
            tsmc_module.single_threaded_blas = limit

    algo.run(jax.random.key(0)), default_run(jax.random.key(0))  # compile
    one, default = [], []
    for seed in range(1, repeats + 1):
        for times, fn in ((one, algo.run), (default, default_run)):
            start = time.perf_counter()
            fn(jax.random.key(seed))
            times.append(time.perf_counter() - start)
    threads = sorted({info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"})
    return dict(one=float(np.median(one)), default=float(np.median(default)),
                ratio=float(np.median(np.array(default) / np.array(one))), default_threads=threads)


def _sweep(args):
    """The rows of one process (one device count); printed as JSON for the parent."""
    rows = []
    if args.devices == 1:
        for n in args.particles:
            rows.append(dict(measure_row(n, args.base_horizon, args.stages, args.repeats), sweep="particles"))
        for h in args.horizons:
            rows.append(dict(measure_row(args.base_particles, h, args.stages, args.repeats), sweep="horizon"))
        n, h = max(args.particles), max(args.horizons)
        for batch in (None, args.batch_size):
            rows.append(dict(measure_row(n, h, args.stages, args.repeats, batch), sweep="batch"))
    rows.append(dict(measure_row(args.device_particles, args.base_horizon, args.stages, args.repeats),
                     sweep="devices"))
    out = dict(rows=rows)
    if args.devices == 1 and args.blas_repeats:
        out["blas"] = measure_blas(args.blas_repeats)
    print("ROWS" + json.dumps(out), flush=True)


def _exponent(rows, key, value):
    x = np.log([r[key] for r in rows])
    y = np.log([r[value] for r in rows])
    return float(np.polyfit(x, y, 1)[0]) if len(rows) > 1 else float("nan")


def _table(rows, key):
    lines = [
        "| particles | horizon | devices | batch | stages | s / stage | floor s / stage | ratio | peak MB | first run (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['particles']} | {r['horizon']} | {r['devices']} | {r['batch_size'] or '-'} | {r['stages']} | "
            f"{r['per_stage']:.4f} | {r['floor_per_stage']:.4f} | {r['ratio']:.2f} | {r['peak_mb']:.1f} | "
            f"{r['first']:.1f} |")
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="particles 64-16,384 and horizon 25-400")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stages", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    parser.add_argument("--devices", type=int, default=0, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    if args.full:
        args.particles, args.horizons = [64, 256, 1024, 4096, 16384], [25, 50, 100, 200, 400]
        args.batch_size = 1024
    else:
        args.particles, args.horizons = [64, 256, 1024, 4096], [25, 50, 100, 200]
        args.batch_size = 512
    args.base_horizon, args.base_particles, args.device_particles = 50, 256, 1024
    args.blas_repeats = 3
    if args.devices:
        return _sweep(args)

    outputs = {}
    for devices in (1, 2, 4):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
        child = [sys.executable, "-m", "benchmarks.scaling", "--devices", str(devices),
                 "--repeats", str(args.repeats), "--stages", str(args.stages)] + (["--full"] if args.full else [])
        proc = subprocess.run(child, env=env, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"benchmarks.scaling --devices {devices} failed:\n{proc.stderr[-3000:]}")
        line = next(line for line in proc.stdout.splitlines() if line.startswith("ROWS"))
        outputs[devices] = json.loads(line[4:])
        print(f"{devices} device(s) done", file=sys.stderr, flush=True)

    from ._machine import describe, publish

    rows = outputs[1]["rows"]
    by = lambda sweep: [r for r in rows if r["sweep"] == sweep]
    devices_rows = [r for d in (1, 2, 4) for r in outputs[d]["rows"] if r["sweep"] == "devices"]
    blas = outputs[1]["blas"]
    grid = "--full " if args.full else ""
    lines = [
        f"Command: `.venv/bin/python -m benchmarks.scaling {grid}--repeats {args.repeats} --write`  ",
        f"Machine: {describe()}  ",
        f"Date: {time.strftime('%Y-%m-%d', time.gmtime())}. No GPU was lent for this work: host (CPU) "
        "devices only, no GPU table.",
        "",
        f"Pendulum swing-up, `models.get('pendulum', horizon=H)` (H decision variables). TSMC with fixed "
        f"moves ({NUM_MOVES} moves x {NUM_LEAPFROG} leapfrog, dense metric) for {args.stages} stages, "
        f"median of {args.repeats} seeds after a compiling run. Floor: the same number of vmapped "
        "value-and-gradient evaluations in one compiled loop, timed side by side; ratio = TSMC / floor. "
        "Peak MB: the compiled stage's buffers (arguments + outputs + temporaries, XLA's "
        "`memory_analysis`). First run: compilation included.",
        "",
        f"**Particles** (horizon {args.base_horizon}): time per stage grows as N^"
        f"{_exponent(by('particles'), 'particles', 'per_stage'):.2f}, peak memory as N^"
        f"{_exponent(by('particles'), 'particles', 'peak_mb'):.2f}.",
        "",
        *_table(by("particles"), "particles"),
        "",
        f"**Horizon** ({args.base_particles} particles): time per stage grows as H^"
        f"{_exponent(by('horizon'), 'horizon', 'per_stage'):.2f}, peak memory as H^"
        f"{_exponent(by('horizon'), 'horizon', 'peak_mb'):.2f} (the dense metric's D x D work "
        "and the rollout's length both grow with H).",
        "",
        *_table(by("horizon"), "horizon"),
        "",
        "**Memory-bounded evaluation**: the largest size of both sweeps, all particles at once against "
        f"`batch_size={args.batch_size}`.",
        "",
        *_table(by("batch"), "batch"),
        "",
        f"**Host devices** ({args.device_particles} particles, horizon {args.base_horizon}), particles "
        "sharded over 1, 2 and 4 devices of one CPU "
        "(`XLA_FLAGS=--xla_force_host_platform_device_count=k`). The host has 2 cores, so more "
        "than 2 devices share cores: these rows show that sharding works and what its collectives "
        "cost, not a speed-up.",
        "",
        *_table(devices_rows, "devices"),
        "",
        f"**Host BLAS threads** (TSMC as it ships, pendulum H=60, 256 particles, median of "
        f"{args.blas_repeats} seeds, interleaved): `TSMC.run` limits the host BLAS/LAPACK to one "
        f"thread (median {blas['one']:.2f} s); the same runs under the BLAS default of "
        f"{'/'.join(map(str, blas['default_threads']))} threads took a median {blas['default']:.2f} s "
        f"(median ratio of the interleaved pairs {blas['ratio']:.2f}). The metric's eigh, Cholesky and triangular solves are small "
        "matrices that gain nothing from threads, whose workers then compete with XLA's for the cores.",
    ]
    publish(lines, HEADING, args.write)


if __name__ == "__main__":
    main()
