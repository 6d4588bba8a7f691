"""``ppl-control``: solve ready-made control problems from the shell and inspect the runs.

    ppl-control list
    ppl-control solve pendulum --method tsmc --particles 256 --seed 0 --out run.nc --plot run.png
    ppl-control report run.nc
    ppl-control demo [--quick] [--out demo-output]
    ppl-control mpc pendulum --method tsmc --steps 100 --horizon 30 --plot mpc.png

This is the one module that uses all three layers (the core, ``ppl_control.models`` and
``ppl_control.inference``); the core never imports it. Mistakes a user can make (an unknown
problem or method, fewer than two particles, a file that cannot be read) end the program with a
one-line message and exit status 2, never a traceback.
"""

import argparse
import os
import sys
import time

METHODS = ("tsmc", "mdpo", "gd", "cem", "mppi", "nuts")
_METHOD_HELP = {
    "tsmc": "tempered SMC with HMC moves (samples the Boltzmann posterior, estimates log Z)",
    "mdpo": "gradient descent with sensitivity-scaled exploration noise",
    "gd": "multi-start gradient descent (Adam)",
    "cem": "cross-entropy method",
    "mppi": "model predictive path integral",
    "nuts": "NumPyro's NUTS (MCMC baseline)",
}
DEMO_PROBLEMS = ("pendulum", "navigation")
DEMO_METHODS = ("tsmc", "mdpo", "gd")


class UsageError(Exception):
    """A mistake in the command line; reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the whole usage block first
        raise UsageError(message)


def _positive_particles(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--particles must be an integer, got {text!r}") from None
    if value < 2:
        raise argparse.ArgumentTypeError(f"--particles must be at least 2, got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ppl-control", description="Optimal control as inference on NumPyro models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="the ready-made problems and the algorithms")

    solve = sub.add_parser("solve", help="solve one ready-made problem")
    solve.add_argument("problem", help="a name from `ppl-control list`")
    solve.add_argument("--method", default="tsmc", help=f"one of {', '.join(METHODS)} (default tsmc)")
    solve.add_argument("--particles", type=_positive_particles, default=None,
                       help="particles / restarts / samples (default: the algorithm's own)")
    solve.add_argument("--seed", type=int, default=0)
    solve.add_argument("--steps", type=_positive_int, default=None,
                       help="iterations (mdpo, gd, cem, mppi) or warm-up draws (nuts)")
    solve.add_argument("--moves", type=_positive_int, default=None, help="HMC moves per TSMC stage")
    solve.add_argument("--leapfrog", type=_positive_int, default=None, help="leapfrog steps per HMC move")
    solve.add_argument("--max-stages", type=_positive_int, default=None, help="TSMC's stage cap")
    solve.add_argument("--horizon", type=_positive_int, default=None, help="override the problem's horizon")
    solve.add_argument("--out", default=None, help="write the run as ArviZ netCDF (run.nc)")
    solve.add_argument("--plot", default=None, help="write an overview PNG (run.png)")
    solve.add_argument("--quiet", action="store_true", help="no progress bar")

    report = sub.add_parser("report", help="ArviZ summary of the cost and the stage table of a run")
    report.add_argument("path", help="a netCDF file written by `solve --out`")

    demo = sub.add_parser("demo", help="pendulum and navigation by TSMC, MDPO and gradient descent")
    demo.add_argument("--quick", action="store_true", help="a small budget (a smoke run)")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--seed", type=int, default=0)
    _add_mpc_parser(sub)
    return parser


# -- solving --------------------------------------------------------------------------------------


def make_algorithm(method: str, model, *, particles=None, steps=None, moves=None, leapfrog=None,
                   max_stages=None, progress_bar=True):
    """The algorithm object for ``method`` with the budget flags that were given (others default)."""
    from ppl_control import inference

    given = lambda **kw: {k: v for k, v in kw.items() if v is not None}
    common = given(num_particles=particles) | {"progress_bar": progress_bar}
    if method == "tsmc":
        return inference.TSMC(model, **common, **given(num_moves=moves, num_leapfrog=leapfrog,
                                                        max_stages=max_stages))
    if method == "nuts":
        kw = given(num_samples=particles, num_warmup=steps)
        return inference.NUTS(model, progress_bar=progress_bar, **kw)
    classes = {"mdpo": inference.MDPO, "gd": inference.GradientDescent, "cem": inference.CEM,
               "mppi": inference.MPPI}
    return classes[method](model, **common, **given(num_steps=steps))


def _check_choice(kind: str, value: str, known) -> None:
    if value not in known:
        raise UsageError(f"unknown {kind} {value!r}; choose from {', '.join(known)}")


def _problem(name: str, horizon=None):
    from ppl_control import models

    _check_choice("problem", name, models.names())
    return models.get(name, **({} if horizon is None else {"horizon": horizon}))


def _summary_line(result, seconds: float, problem=None) -> str:
    import numpy as np

    cost = np.asarray(result.samples["cost"], dtype=np.float64)
    finite = cost[np.isfinite(cost)]
    parts = [f"{result.method}: {result.num_particles} particles in {seconds:.1f} s",
             f"best cost {finite.min():.4g}" if finite.size else "no finite cost",
             f"mean cost {np.sum(result.weights * np.where(np.isfinite(cost), cost, 0)):.4g}"]
    if result.log_evidence is not None:
        parts.append(f"log evidence {result.log_evidence:.4g}")
    if problem is not None and problem.reference_cost is not None:
        parts.append(f"reference {problem.reference_cost:.4g}")
    return ", ".join(parts)


def _solve_one(problem, method, seed, *, progress_bar, **budget):
    import jax

    import ppl_control as pc

    model = pc.trajectory_model(problem)
    algorithm = make_algorithm(method, model, progress_bar=progress_bar, **budget)
    start = time.perf_counter()
    result = algorithm.run(jax.random.key(seed))
    return result, time.perf_counter() - start


def _save(result, problem, out=None, plot=None, **plot_kwargs):
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        result.to_arviz().to_netcdf(out)
    if plot:
        from ppl_control import plots

        os.makedirs(os.path.dirname(os.path.abspath(plot)), exist_ok=True)
        plots.plot_run(result, problem, **plot_kwargs).savefig(plot, dpi=110)


def cmd_list(args) -> int:
    from ppl_control import models

    print("problems:")
    for name in models.names():
        doc = (models.module(name).__doc__ or "").strip().splitlines()
        print(f"  {name:<18} {doc[0] if doc else ''}")
    print("  (Brax environments: ppl_control.models.brax.problem(env_name) from Python)")
    print("methods:")
    for method in METHODS:
        print(f"  {method:<18} {_METHOD_HELP[method]}")
    return 0


def cmd_solve(args) -> int:
    _check_choice("method", args.method, METHODS)
    problem = _problem(args.problem, args.horizon)
    result, seconds = _solve_one(
        problem, args.method, args.seed, progress_bar=not args.quiet, particles=args.particles,
        steps=args.steps, moves=args.moves, leapfrog=args.leapfrog, max_stages=args.max_stages,
    )
    print(f"{problem.name} (horizon {problem.horizon}) " + _summary_line(result, seconds, problem))
    _save(result, problem, args.out, args.plot)
    for label, path in (("run", args.out), ("plot", args.plot)):
        if path:
            print(f"{label} written to {path}")
    return 0


# -- reporting ------------------------------------------------------------------------------------


def _open(path: str):
    import xarray as xr

    if not os.path.isfile(path):
        raise UsageError(f"cannot read {path!r}: no such file")
    try:
        tree = xr.open_datatree(path)
    except Exception as error:  # any failure to parse is the user's file, not our bug
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise UsageError(f"cannot read {path!r} as a netCDF run ({type(error).__name__}: {first_line})") from None
    if "posterior" not in tree.children:
        raise UsageError(f"{path!r} has no posterior group; it was not written by `ppl-control solve`")
    return tree


def report_text(tree) -> str:
    """The text of ``ppl-control report``: run attributes, cost summary, stage/iteration table."""
    import arviz as az
    import pandas as pd

    lines = [f"method: {tree.attrs.get('method', '?')}, chains: {tree['posterior'].sizes['chain']}, "
             f"draws per chain: {tree['posterior'].sizes['draw']}"]
    if "log_evidence" in tree.attrs:
        lines.append(f"log evidence: {tree.attrs['log_evidence']}")
    lines.append(f"configuration: {tree.attrs.get('config', '{}')}")
    if "cost" in tree["posterior"]:
        lines += ["", "cost (ArviZ summary over equal-weight draws):",
                  az.summary(tree, var_names=["cost"]).to_string()]
    for group, axis in (("tempering", "stage"), ("optimization", "iteration")):
        if group in tree.children:
            ds = tree[group].to_dataset().isel(chain=0)
            scalar = [n for n in ds.data_vars if ds[n].dims == (axis,)]
            frame = ds[scalar].to_dataframe()[scalar].dropna(how="all")
            if group == "optimization" and len(frame) > 20:  # the first, every k-th and the last
                keep = sorted(set(range(0, len(frame), max(1, len(frame) // 10))) | {len(frame) - 1})
                frame = frame.iloc[keep]
            with pd.option_context("display.width", 160, "display.max_columns", 20):
                lines += ["", f"{group} (chain 0, per {axis}):", frame.to_string(float_format="%.4g")]
    return "\n".join(lines)


def cmd_report(args) -> int:
    print(report_text(_open(args.path)))
    return 0


# -- demo -----------------------------------------------------------------------------------------


def _demo_budget(method: str, quick: bool) -> dict:
    if method == "tsmc":
        return dict(particles=32, moves=2, leapfrog=4) if quick else dict(particles=256)
    return dict(particles=4, steps=25) if quick else dict(particles=16, steps=300)


def _classes_kept(result, problem) -> str:
    """For navigation: how the equal-weight draws split over the homotopy classes."""
    import jax
    import numpy as np

    from ppl_control._arviz import resample_indices
    from ppl_control.models import navigation

    controls = np.asarray(result.samples["controls"])[resample_indices(result.log_weights)]
    states = jax.vmap(problem.trajectory)(controls)
    labels, counts = np.unique(np.asarray(navigation.homotopy_class(states)), return_counts=True)
    return " ".join(f"{int(k)}:{int(c)}" for k, c in zip(labels, counts))


def cmd_demo(args) -> int:
    from ppl_control import plots

    os.makedirs(args.out, exist_ok=True)
    rows = []
    for name in DEMO_PROBLEMS:
        problem = _problem(name, 20 if args.quick else None)
        results = {}
        for method in DEMO_METHODS:
            print(f"== {name} by {method}", flush=True)
            result, seconds = _solve_one(problem, method, args.seed, progress_bar=True,
                                         **_demo_budget(method, args.quick))
            results[method] = result
            stem = os.path.join(args.out, f"{name}-{method}")
            _save(result, problem, f"{stem}.nc", f"{stem}.png",
                  **({"planar": (0, 1)} if name == "navigation" else {}))
            if method == "mdpo":
                plots.plot_noise_profile(result).savefig(f"{stem}-noise.png", dpi=110)
            cost = result.samples["cost"]
            classes = _classes_kept(result, problem) if name == "navigation" else ""
            stages = str(result.config.get("num_stages", "-"))
            log_z = "-" if result.log_evidence is None else f"{result.log_evidence:.4g}"
            rows.append((name, method, result.num_particles, stages, float(cost.min()),
                         float((result.weights * cost).sum()), log_z, seconds, classes))
        plots.plot_cost_distributions(results, reference=problem.reference_cost).savefig(
            os.path.join(args.out, f"{name}-costs.png"), dpi=110)

    print()
    header = (f"{'problem':<11} {'method':<17} {'particles':>9} {'stages':>6} {'best cost':>10} "
              f"{'mean cost':>10} {'log Z':>9} {'seconds':>8}  classes kept")
    print(header)
    print("-" * len(header))
    for name, method, n, stages, best, mean, log_z, seconds, classes in rows:
        print(f"{name:<11} {method:<17} {n:>9d} {stages:>6} {best:>10.4g} {mean:>10.4g} {log_z:>9} "
              f"{seconds:>8.1f}  {classes}")
    print("\nstages and log Z (the log evidence, log of the tilted target's normalising constant) are "
          "TSMC's; seconds are wall time including compilation.")
    print("\nclasses kept (navigation): homotopy class -> equal-weight draws; 1 and 2 are the two "
          "mirror-image optimal gaps, so a sampler that keeps both has found both modes.")
    print(f"netCDF runs and PNG plots written to {args.out}/")
    return 0


# -- receding-horizon control -----------------------------------------------------------------


def _add_mpc_parser(sub) -> None:
    mpc = sub.add_parser("mpc", help="receding-horizon control: re-plan by inference at every step")
    mpc.add_argument("problem", help="a name from `ppl-control list`")
    mpc.add_argument("--method", default="tsmc", help=f"one of {', '.join(METHODS)} (default tsmc)")
    mpc.add_argument("--steps", type=_positive_int, default=100, help="control steps (default 100)")
    mpc.add_argument("--horizon", type=_positive_int, default=None, help="planning horizon (default: the problem's)")
    mpc.add_argument("--particles", type=_positive_particles, default=None,
                     help="particles / restarts / samples per re-plan (default: the algorithm's own)")
    mpc.add_argument("--iterations", type=_positive_int, default=None,
                     help="iterations per re-plan (mdpo, gd, cem, mppi) or warm-up draws (nuts)")
    mpc.add_argument("--moves", type=_positive_int, default=None, help="HMC moves per TSMC stage")
    mpc.add_argument("--leapfrog", type=_positive_int, default=None, help="leapfrog steps per HMC move")
    mpc.add_argument("--max-stages", type=_positive_int, default=None, help="TSMC's stage cap per re-plan")
    mpc.add_argument("--cold", action="store_true", help="plan every step from the prior (no warm start)")
    mpc.add_argument("--seed", type=int, default=0)
    mpc.add_argument("--out", default=None, help="write the closed loop as ArviZ netCDF (loop.nc)")
    mpc.add_argument("--plot", default="mpc.png", help="the closed-loop plot (default mpc.png)")
    mpc.add_argument("--quiet", action="store_true", help="no progress bar")


def cmd_mpc(args) -> int:
    """``ppl-control mpc``: the problem's own dynamics as the true system, from its ``x0``."""
    import jax
    import numpy as np

    import ppl_control as pc
    from ppl_control import plots

    _check_choice("method", args.method, METHODS)
    problem = _problem(args.problem, args.horizon)
    algorithm = make_algorithm(args.method, pc.trajectory_model(problem), particles=args.particles,
                               steps=args.iterations, moves=args.moves, leapfrog=args.leapfrog,
                               max_stages=args.max_stages, progress_bar=False)
    start = time.perf_counter()
    loop = pc.mpc(algorithm, problem.x0, args.steps, jax.random.key(args.seed), warm_start=not args.cold,
                  progress_bar=not args.quiet)
    seconds = time.perf_counter() - start
    times = loop.solve_time[1:] if loop.num_steps > 1 else loop.solve_time
    stages = loop.diagnostics.get("num_stages")
    print(f"{problem.name} (horizon {problem.horizon}) closed loop by {loop.method} "
          f"({'cold' if args.cold else 'warm'}), {loop.num_steps} steps in {seconds:.1f} s: cost {loop.cost:.4g}, "
          f"median solve {np.median(times) * 1e3:.0f} ms/step"
          + ("" if stages is None else f", {np.mean(stages):.1f} TSMC stages/step"))
    print("final observation:", np.array2string(loop.observations[-1], precision=3))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        loop.to_arviz().to_netcdf(args.out)
        print(f"closed loop written to {args.out}")
    if args.plot:
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        plots.plot_closed_loop(loop).savefig(args.plot, dpi=110)
        print(f"plot written to {args.plot}")
    return 0


def main(argv=None) -> int:
    """Entry point of the ``ppl-control`` console script; returns the exit status."""
    commands = {"list": cmd_list, "solve": cmd_solve, "report": cmd_report, "demo": cmd_demo, "mpc": cmd_mpc}
    try:
        args = build_parser().parse_args(argv)
        return commands[args.command](args)
    except UsageError as error:
        print(f"ppl-control: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppl-control: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
