"""``ppl-control``: solve ready-made problems or your own NumPyro model from the shell.

    ppl-control list
    ppl-control solve pendulum --method tsmc --particles 256 --seed 0 --out run.nc --plot run.png
    ppl-control solve pendulum --temperature 0.05 --compare tsmc,nuts,gd
    ppl-control solve my_problem.py:model --arg goal='[1.0, 0.0]' --method mdpo --json
    ppl-control solve mypackage.models:model --checkpoint run.ckpt.npz
    ppl-control report run.nc [--json]
    ppl-control demo [--quick] [--out demo-output]
    ppl-control mpc pendulum --method tsmc --steps 100 --horizon 30 --plot mpc.png

The problem is a name from ``ppl-control list`` or a model: ``path/to/file.py:function`` or
``package.module:function``, the function an ordinary NumPyro model (latent sample sites for the
decision variables, the cost as an observed site, as ``pc.boltzmann`` adds), called with the
``--arg name=value`` keyword arguments (values in JSON; lists of numbers become NumPy arrays).

This is the one module that uses all three layers (the core, ``ppl_control.models`` and
``ppl_control.inference``); the core never imports it. Mistakes a user can make (an unknown
problem or method, a model file or function that does not exist, a function that is not a model,
fewer than two particles, a file that cannot be read) end the program with a one-line message and
exit status 2, never a traceback.

Progress bars are drawn on stderr when it is a terminal (``--progress`` forces one anywhere,
``--quiet`` switches it off), so piped output and CI logs stay readable; ``--json`` prints one
JSON object on stdout and nothing else there.
"""

import argparse
import importlib
import importlib.util
import json
import math
import os
import sys
import time
import traceback
from typing import Callable, NamedTuple

METHODS = ("tsmc", "mdpo", "gd", "cem", "mppi", "nuts")
_METHOD_HELP = {
    "tsmc": "tempered SMC with HMC moves (samples the Boltzmann posterior, estimates log Z)",
    "mdpo": "gradient descent with sensitivity-scaled exploration noise",
    "gd": "multi-start gradient descent (Adam)",
    "cem": "cross-entropy method",
    "mppi": "model predictive path integral",
    "nuts": "NumPyro's NUTS (MCMC baseline; runs as one compiled loop, no checkpoints)",
}
CHECKPOINTING_METHODS = ("tsmc", "mdpo", "gd", "cem", "mppi")
DEMO_PROBLEMS = ("pendulum", "navigation")
DEMO_METHODS = ("tsmc", "mdpo", "gd")
JSON_SCHEMA_SOLVE = "ppl_control.solve/1"
JSON_SCHEMA_REPORT = "ppl_control.report/1"


class UsageError(Exception):
    """A mistake in the command line; reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the whole usage block first
        raise UsageError(message)


def _int_at_least(text: str, minimum: int, not_an_int: str, too_small: str) -> int:
    """``int(text)`` if it is at least ``minimum``; otherwise argparse's error, ``not_an_int`` or
    ``too_small`` followed by what was given."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{not_an_int}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{too_small}, got {value}")
    return value


def _positive_particles(text: str) -> int:
    return _int_at_least(text, 2, "--particles must be an integer", "--particles must be at least 2")


def _positive_int(text: str) -> int:
    return _int_at_least(text, 1, "expected a positive integer", "expected a positive integer")


def _chain_length(text: str):
    """``--chain-length``: an integer >= 2, ``auto`` or ``none`` (kept as the string: the flag's
    absence is ``None``)."""
    if text.lower() in ("auto", "none"):
        return text.lower()
    expected = "expected an integer >= 2, 'auto' or 'none'"
    return _int_at_least(text, 2, expected, expected)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0.0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ppl-control", description="Optimal control as inference on NumPyro models.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    sub.add_parser("list", help="the ready-made problems and the algorithms")

    solve = sub.add_parser("solve", help="solve a ready-made problem or your own NumPyro model")
    solve.add_argument("problem", help="a name from `ppl-control list`, or your model as "
                       "path/to/file.py:function or package.module:function")
    solve.add_argument("--method", default=None, help=f"one of {', '.join(METHODS)} (default tsmc)")
    solve.add_argument("--compare", default=None, metavar="M1,M2,...",
                       help="run several methods (comma-separated) and print one table")
    solve.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                       help="a keyword argument of the model, VALUE in JSON (repeatable)")
    solve.add_argument("--temperature", type=_positive_float, default=None,
                       help="lambda in exp(-J / lambda) for a ready-made problem (default: its own)")
    solve.add_argument("--horizon", type=_positive_int, default=None,
                       help="override a ready-made problem's horizon")
    solve.add_argument("--particles", type=_positive_particles, default=None,
                       help="particles / restarts / samples (default: the algorithm's own)")
    solve.add_argument("--seed", type=int, default=0)
    solve.add_argument("--steps", type=_positive_int, default=None,
                       help="iterations (mdpo, gd, cem, mppi) or warm-up draws (nuts)")
    solve.add_argument("--moves", type=_positive_int, default=None, help="HMC moves per TSMC stage")
    solve.add_argument("--leapfrog", type=_positive_int, default=None, help="leapfrog steps per HMC move")
    solve.add_argument("--chain-length", type=_chain_length, default=None,
                       help="TSMC's waste-free chain length (states kept per resampled particle), or 'auto'; "
                            "default 'none': standard rejuvenation")
    solve.add_argument("--max-stages", type=_positive_int, default=None, help="TSMC's stage cap")
    solve.add_argument("--checkpoint", default=None, metavar="PATH",
                       help="save the run there as it goes; the same command resumes it (not nuts)")
    solve.add_argument("--out", default=None, help="write the run as ArviZ netCDF (run.nc)")
    solve.add_argument("--plot", default=None, help="write an overview PNG (run.png)")
    solve.add_argument("--json", action="store_true", help="print a JSON summary instead of text")
    bars = solve.add_mutually_exclusive_group()
    bars.add_argument("--quiet", action="store_true", help="no progress bar")
    bars.add_argument("--progress", action="store_true",
                      help="a progress bar even when stderr is not a terminal")

    report = sub.add_parser("report", help="ArviZ summary of the cost and the stage table of a run")
    report.add_argument("path", help="a netCDF file written by `solve --out`")
    report.add_argument("--json", action="store_true", help="print a JSON summary instead of text")

    demo = sub.add_parser("demo", help="pendulum and navigation by TSMC, MDPO and gradient descent")
    demo.add_argument("--quick", action="store_true", help="a small budget (a smoke run)")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("--seed", type=int, default=0)
    _add_mpc_parser(sub)
    return parser


# -- the model: a shipped problem or the user's own ------------------------------------------------


def parse_model_args(items) -> dict:
    """``["name=value", ...]`` -> keyword arguments; values are JSON, numeric lists NumPy arrays."""
    import numpy as np

    kwargs = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise UsageError(f"--arg needs NAME=VALUE with NAME a Python identifier, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise UsageError(f"--arg {name}: {text!r} is not JSON (numbers as 0.5, lists as [1, 2], "
                             f"strings quoted: --arg {name}='\"{text}\"')") from None
        if isinstance(value, list):
            array = np.asarray(value) if value else None
            if array is not None and array.dtype.kind in "biuf":
                value = array
        kwargs[name] = value
    return kwargs


def _error_line(error: BaseException, filename: str | None = None, *, with_type: bool = True) -> str:
    """``Type: first line of the message (line N)``, N the last line of ``filename`` involved."""
    message = (str(error).strip().splitlines() or [""])[0]
    where = ""
    if isinstance(error, SyntaxError) and error.lineno:
        where = f" (line {error.lineno})"
    elif filename is not None:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if os.path.abspath(f.filename) == os.path.abspath(filename)]
        if frames:
            where = f" (line {frames[-1].lineno})"
    return f"{type(error).__name__ + ': ' if with_type else ''}{message}{where}"


def _import_file(path: str):
    if not os.path.isfile(path):
        raise UsageError(f"cannot load the model: no such file {path!r}")
    stem = "".join(c if c.isalnum() else "_" for c in os.path.splitext(os.path.basename(path))[0])
    name = f"_ppl_control_user_{stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path!r} as Python (the model file must end in .py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:  # the file imports its neighbours as a script would
        sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        raise UsageError(f"loading {path} failed: {_error_line(error, path)}") from None
    return module, path


def _import_module(dotted: str):
    if not all(part.isidentifier() for part in dotted.split(".")):
        raise UsageError(f"{dotted!r} is neither a .py file nor a module path (package.module)")
    if os.getcwd() not in sys.path:  # as `python -m` does: modules beside you are importable
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(dotted)
    except ModuleNotFoundError as error:
        if error.name and dotted.startswith(error.name):
            raise UsageError(f"cannot load the model: no module named {error.name!r}") from None
        raise UsageError(f"importing {dotted} failed: {_error_line(error)}") from None
    except Exception as error:
        raise UsageError(f"importing {dotted} failed: {_error_line(error, getattr(error, 'filename', None))}") from None
    return module, getattr(module, "__file__", None)


def load_model(spec: str):
    """The function named by ``path/to/file.py:function`` or ``package.module:function``."""
    location, _, attribute = spec.rpartition(":")
    if not location or not attribute:
        raise UsageError(f"{spec!r}: write the model as path/to/file.py:function or package.module:function")
    is_file = location.endswith(".py") or os.sep in location or "/" in location
    module, filename = _import_file(location) if is_file else _import_module(location)
    obj = module
    for part in attribute.split("."):
        if not hasattr(obj, part):
            defined = sorted(n for n, v in vars(module).items()
                             if callable(v) and not n.startswith("_")
                             and getattr(v, "__module__", None) == module.__name__)
            hint = f" (it defines: {', '.join(defined[:10])})" if defined else ""
            raise UsageError(f"{location} has no function {attribute!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise UsageError(f"{spec}: {attribute!r} is not a function (a NumPyro model) but a {type(obj).__name__}")
    return obj, filename


def check_model(model, spec: str, kwargs: dict, filename=None) -> None:
    """Trace ``model(**kwargs)`` once: a one-line ``UsageError`` when it cannot be solved."""
    import ppl_control as pc

    try:
        pc.log_density(model, **kwargs)
    except TypeError as error:
        hint = ""
        if "missing" in str(error) and "argument" in str(error):
            hint = "; pass the model's arguments with --arg name=value"
        elif "unexpected keyword argument" in str(error):
            hint = "; check the names given with --arg"
        raise UsageError(f"calling {spec} failed: {_error_line(error, filename)}{hint}") from None
    except ValueError as error:  # ppl_control's structural checks: no latent / observed site ...
        raise UsageError(f"{spec} cannot be solved: {_error_line(error, filename, with_type=False)}") from None
    except Exception as error:
        raise UsageError(f"calling {spec} failed: {_error_line(error, filename)}") from None


class ModelSpec(NamedTuple):
    """What ``solve`` (and ``mpc``) work on, resolved from the command line."""

    model: Callable
    problem: object  # the ControlProblem behind it (for plots), or None
    label: str  # the problem's name or the user's ``file.py:function``
    kwargs: dict  # the model's keyword arguments (--arg)
    temperature: float | None  # a ready-made problem's temperature; None for the user's model


def resolve_model(target: str, *, model_args=(), temperature=None, horizon=None) -> ModelSpec:
    """A ready-made problem's name or a ``file.py:function`` / ``module:function`` spec, checked
    by tracing the model once. Shared by ``solve`` (and ``mpc``)."""
    import ppl_control as pc
    from ppl_control import models

    kwargs = parse_model_args(model_args)
    if ":" not in target:
        problem = _problem(target, horizon)
        model = pc.trajectory_model(problem, temperature=temperature)
        if kwargs:
            check_model(model, target, kwargs)
        used = problem.temperature if temperature is None else temperature
        return ModelSpec(model, problem, target, kwargs, used)
    for flag, value in (("--temperature", temperature), ("--horizon", horizon)):
        if value is not None:
            raise UsageError(f"{flag} applies to the ready-made problems ({', '.join(models.names())}); "
                             "your model takes its own settings through --arg name=value")
    model, filename = load_model(target)
    check_model(model, target, kwargs, filename)
    return ModelSpec(model, getattr(model, "problem", None), target, kwargs, None)


# -- solving --------------------------------------------------------------------------------------


def make_algorithm(method: str, model, *, particles=None, steps=None, moves=None, leapfrog=None,
                   max_stages=None, chain_length=None, progress_bar=True):
    """The algorithm object for ``method`` with the budget flags that were given (others default)."""
    from ppl_control import inference

    given = lambda **kw: {k: v for k, v in kw.items() if v is not None}
    common = given(num_particles=particles) | {"progress_bar": progress_bar}
    if method == "tsmc":
        chain = None if chain_length in (None, "none") else chain_length
        return inference.TSMC(model, **common, chain_length=chain, **given(num_moves=moves, num_leapfrog=leapfrog,
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


def _methods(args) -> list[str]:
    if args.compare is not None and args.method is not None:
        raise UsageError("give --method or --compare, not both")
    if args.compare is None:
        names = [args.method or "tsmc"]
    else:
        names = list(dict.fromkeys(m.strip() for m in args.compare.split(",") if m.strip()))
        if not names:
            raise UsageError("--compare needs a comma-separated list of methods, e.g. tsmc,nuts,gd")
    for name in names:
        _check_choice("method", name, METHODS)
    return names


def _costs(result):
    """Per-particle cost: the ``cost`` site, else minus the summed log-likelihood (what the
    algorithms use for a model without a ``cost`` site)."""
    import numpy as np

    n = result.num_particles
    if "cost" in result.samples:
        return np.asarray(result.samples["cost"], dtype=np.float64).reshape(n, -1).sum(axis=1)
    if result.log_likelihood:
        return -sum(np.asarray(v, dtype=np.float64).reshape(n, -1).sum(axis=1)
                    for v in result.log_likelihood.values())
    return np.full(n, np.nan)


def cost_summary(result) -> dict:
    """``best`` (lowest finite cost of any particle), ``median`` (over the particles the result
    keeps: positive weight, finite cost) and ``mean`` (weighted) cost; ``None`` where undefined."""
    import numpy as np

    cost, weights = _costs(result), result.weights
    finite = np.isfinite(cost)
    kept = finite & (weights > 0)
    return dict(
        best=float(cost[finite].min()) if finite.any() else None,
        median=float(np.median(cost[kept])) if kept.any() else None,
        mean=float(np.sum(weights[kept] * cost[kept]) / np.sum(weights[kept])) if kept.any() else None,
    )


def evaluations(result) -> dict:
    """The model evaluations a run spent: ``{"count", "kind", "accuracy"}``.

    ``stats["num_evaluations"]`` summed when the algorithm records it (MDPO and gradient descent:
    gradient evaluations; CEM and MPPI: cost evaluations), ``"exact"``. Otherwise NUTS: the summed
    leapfrog steps of the kept draws (``particle_stats["tree_size"]``), a ``"lower bound"`` (warm-up
    not counted); TSMC: ``stages * particles * (num_moves * num_leapfrog + 1)`` gradient evaluations
    (the leapfrog steps of every HMC move plus one gradient refresh per particle and stage), an
    ``"estimate"``.
    """
    import numpy as np

    kind = "cost" if result.method in ("cem", "mppi") else "gradient"
    if "num_evaluations" in result.stats:
        return dict(count=int(np.sum(result.stats["num_evaluations"])), kind=kind, accuracy="exact")
    if "tree_size" in result.particle_stats:
        return dict(count=int(np.sum(result.particle_stats["tree_size"])), kind=kind, accuracy="lower bound")
    config = result.config
    if all(k in config for k in ("num_stages", "num_moves", "num_leapfrog")):
        count = config["num_stages"] * result.num_particles * (config["num_moves"] * config["num_leapfrog"] + 1)
        return dict(count=int(count), kind=kind, accuracy="estimate")
    return dict(count=None, kind=kind, accuracy="unknown")


def _evaluations_text(ev: dict) -> str:
    if ev["count"] is None:
        return "?"
    prefix = {"exact": "", "estimate": "~", "lower bound": ">="}.get(ev["accuracy"], "?")
    return f"{prefix}{ev['count']} {'grad' if ev['kind'] == 'gradient' else 'cost'}"


def _finite_or_none(value):
    return float(value) if value is not None and math.isfinite(float(value)) else None


def _jsonable(value):
    """Plain JSON: NumPy scalars and arrays become numbers and lists, NaN and inf ``null``."""
    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _finite_or_none(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


def run_summary(result, seconds: float, *, method: str, target: str, seed: int, problem=None,
                temperature=None, files=None) -> dict:
    """The machine-readable summary of one run (``solve --json``), schema ``ppl_control.solve/1``."""
    costs = cost_summary(result)
    config = dict(result.config)
    return _jsonable(dict(
        schema=JSON_SCHEMA_SOLVE,
        problem=target,
        method=method,
        algorithm=result.method,
        seed=seed,
        num_particles=result.num_particles,
        best_cost=costs["best"],
        median_cost=costs["median"],
        mean_cost=costs["mean"],
        log_evidence=result.log_evidence,
        stages=config.get("num_stages"),
        iterations=config.get("num_steps") if result.method not in ("tsmc", "nuts") else None,
        evaluations=evaluations(result),
        seconds=seconds,
        reference_cost=getattr(problem, "reference_cost", None),
        temperature=temperature,
        config=config,
        files=dict(files or {}),
    ))


def _solve_one(model, method, seed, *, progress_bar, model_kwargs=None, checkpoint=None, **budget):
    import jax

    from ppl_control import InferenceError
    from ppl_control.inference.checkpoint import CheckpointMismatch

    algorithm = make_algorithm(method, model, progress_bar=progress_bar, **budget)
    run_kwargs = dict(model_kwargs or {})
    if checkpoint:
        run_kwargs["checkpoint"] = checkpoint
    start = time.perf_counter()
    try:
        result = algorithm.run(jax.random.key(seed), **run_kwargs)
    except CheckpointMismatch as error:
        raise UsageError(str(error)) from None
    except InferenceError as error:
        raise UsageError(f"{method}: {error}") from None
    return result, time.perf_counter() - start


def _save(result, problem, out=None, plot=None, seconds=None, **plot_kwargs):
    if out:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        tree = result.to_arviz()
        if seconds is not None:
            tree.attrs["wall_time_seconds"] = float(seconds)
        tree.to_netcdf(out)
    if plot:
        from ppl_control import plots

        os.makedirs(os.path.dirname(os.path.abspath(plot)), exist_ok=True)
        plots.plot_run(result, problem, **plot_kwargs).savefig(plot, dpi=110)


def _with_method(path, method: str, several: bool):
    """``run.nc`` -> ``run-tsmc.nc`` when several methods share one ``--out``."""
    if not path or not several:
        return path
    stem, ext = os.path.splitext(path)
    return f"{stem}-{method}{ext}"


def _progress_bar(args) -> bool:
    from ppl_control.inference._common import show_progress

    if args.quiet:
        return False
    return True if args.progress else show_progress("auto")


def _headline(spec: ModelSpec) -> str:
    if spec.temperature is None:
        return spec.label
    return f"{spec.label} (horizon {spec.problem.horizon}, temperature {spec.temperature:g})"


def cmd_list(args) -> int:
    from ppl_control import models

    print("problems:")
    for name in models.names():
        doc = (models.module(name).__doc__ or "").strip().splitlines()
        print(f"  {name:<18} {doc[0] if doc else ''}")
    print("  (Brax environments: ppl_control.models.brax.problem(env_name) from Python)")
    print("  your own NumPyro model: path/to/file.py:function or package.module:function")
    print("methods:")
    for method in METHODS:
        print(f"  {method:<18} {_METHOD_HELP[method]}")
    return 0


def cmd_solve(args) -> int:
    methods = _methods(args)
    several = len(methods) > 1
    if args.checkpoint:
        if several:
            raise UsageError("--checkpoint saves one run; use it with --method, not --compare")
        if methods[0] not in CHECKPOINTING_METHODS:
            raise UsageError(f"{methods[0]} cannot checkpoint (NumPyro's MCMC runs warm-up and sampling "
                             f"as one compiled loop); {', '.join(CHECKPOINTING_METHODS)} can")
    spec = resolve_model(args.problem, model_args=args.arg, temperature=args.temperature,
                         horizon=args.horizon)
    progress_bar = _progress_bar(args)
    budget = dict(particles=args.particles, steps=args.steps, moves=args.moves, leapfrog=args.leapfrog,
                  max_stages=args.max_stages, chain_length=args.chain_length)
    summaries = []
    for method in methods:
        if several and not args.json:
            print(f"== {spec.label} by {method}", flush=True)
        result, seconds = _solve_one(spec.model, method, args.seed, progress_bar=progress_bar,
                                     model_kwargs=spec.kwargs, checkpoint=args.checkpoint, **budget)
        files = {"run": _with_method(args.out, method, several), "plot": _with_method(args.plot, method, several)}
        _save(result, spec.problem, files["run"], files["plot"], seconds=seconds)
        summaries.append(run_summary(result, seconds, method=method, target=spec.label, seed=args.seed,
                                     problem=spec.problem, temperature=spec.temperature, files=files))
    if args.json:
        document = summaries[0] if not several else {"schema": JSON_SCHEMA_SOLVE, "problem": spec.label,
                                                     "runs": summaries}
        print(json.dumps(document, indent=2, allow_nan=False))
        return 0
    if several:
        print(compare_table(summaries, _headline(spec)))
    else:
        print(f"{_headline(spec)} {_summary_line(summaries[0])}")
    for summary in summaries:
        for kind, path in summary["files"].items():
            if path:
                print(f"{kind} written to {path}")
    return 0


def _summary_line(summary: dict) -> str:
    def number(value):
        return "-" if value is None else f"{value:.4g}"

    parts = [f"by {summary['algorithm']}: {summary['num_particles']} particles in {summary['seconds']:.1f} s",
             f"best cost {number(summary['best_cost'])}", f"mean cost {number(summary['mean_cost'])}"]
    if summary["log_evidence"] is not None:
        parts.append(f"log evidence {summary['log_evidence']:.4g}")
    if summary["reference_cost"] is not None:
        parts.append(f"reference {summary['reference_cost']:.4g}")
    return ", ".join(parts)


def compare_table(summaries: list[dict], headline: str) -> str:
    """The side-by-side table of ``solve --compare``."""
    def number(value, width, fmt=".4g"):
        return f"{'-' if value is None else format(value, fmt):>{width}}"

    header = (f"{'method':<8} {'particles':>9} {'best cost':>10} {'median cost':>11} {'log Z':>9} "
              f"{'evaluations':>14} {'seconds':>8}")
    lines = [headline, "", header, "-" * len(header)]
    for s in summaries:
        lines.append(f"{s['method']:<8} {s['num_particles']:>9d} {number(s['best_cost'], 10)} "
                     f"{number(s['median_cost'], 11)} {number(s['log_evidence'], 9)} "
                     f"{_evaluations_text(s['evaluations']):>14} {number(s['seconds'], 8, '.1f')}")
    reference = summaries[0]["reference_cost"]
    if reference is not None:
        lines.append(f"\nreference cost (best known): {reference:.4g}")
    lines.append(
        "\nbest: lowest cost of any particle; median: over the particles the result keeps; log Z: the "
        "log evidence (TSMC only).\nevaluations: grad = gradient, cost = model evaluations; ~ an "
        "estimate from the configuration (TSMC: stages x particles x (moves x leapfrog + 1)),\n>= "
        "NUTS's kept draws only (warm-up not counted). seconds: wall time including compilation."
    )
    return "\n".join(lines)


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


def _stat_table(tree, group: str, axis: str):
    ds = tree[group].to_dataset().isel(chain=0)
    scalar = [n for n in ds.data_vars if ds[n].dims == (axis,)]
    return ds[scalar].to_dataframe()[scalar].dropna(how="all")


def report_text(tree) -> str:
    """The text of ``ppl-control report``: run attributes, cost summary, stage/iteration table."""
    import arviz as az
    import pandas as pd

    lines = [f"method: {tree.attrs.get('method', '?')}, chains: {tree['posterior'].sizes['chain']}, "
             f"draws per chain: {tree['posterior'].sizes['draw']}"]
    if "log_evidence" in tree.attrs:
        lines.append(f"log evidence: {tree.attrs['log_evidence']}")
    if "wall_time_seconds" in tree.attrs:
        lines.append(f"wall time: {float(tree.attrs['wall_time_seconds']):.1f} s (including compilation)")
    lines.append(f"configuration: {tree.attrs.get('config', '{}')}")
    if "cost" in tree["posterior"]:
        lines += ["", "cost (ArviZ summary over equal-weight draws):",
                  az.summary(tree, var_names=["cost"]).to_string()]
    for group, axis in (("tempering", "stage"), ("optimization", "iteration")):
        if group in tree.children:
            frame = _stat_table(tree, group, axis)
            if group == "optimization" and len(frame) > 20:  # the first, every k-th and the last
                keep = sorted(set(range(0, len(frame), max(1, len(frame) // 10))) | {len(frame) - 1})
                frame = frame.iloc[keep]
            with pd.option_context("display.width", 160, "display.max_columns", 20):
                lines += ["", f"{group} (chain 0, per {axis}):", frame.to_string(float_format="%.4g")]
    return "\n".join(lines)


def report_json(tree, path: str) -> dict:
    """``report --json``, schema ``ppl_control.report/1``: the run's summary from its netCDF file.

    Costs are over the posterior's equal-weight draws (all chains); ``stages`` and ``iterations``
    count chain 0's rows of the ``tempering`` / ``optimization`` tables, given in full (one list
    per per-stage or per-iteration quantity).
    """
    import numpy as np

    from ppl_control._arviz import config_from_arviz

    posterior = tree["posterior"]
    cost = np.asarray(posterior["cost"], dtype=np.float64).ravel() if "cost" in posterior else np.array([])
    finite = cost[np.isfinite(cost)]
    tables = {}
    for group, axis in (("tempering", "stage"), ("optimization", "iteration")):
        if group in tree.children:
            frame = _stat_table(tree, group, axis)
            tables[group] = {name: frame[name].to_numpy() for name in frame.columns}
            tables[f"num_{axis}s"] = len(frame)
    return _jsonable(dict(
        schema=JSON_SCHEMA_REPORT,
        path=path,
        method=tree.attrs.get("method"),
        num_chains=posterior.sizes["chain"],
        draws_per_chain=posterior.sizes["draw"],
        best_cost=finite.min() if finite.size else None,
        median_cost=np.median(finite) if finite.size else None,
        mean_cost=finite.mean() if finite.size else None,
        log_evidence=tree.attrs.get("log_evidence"),
        stages=tables.get("num_stages"),
        iterations=tables.get("num_iterations"),
        seconds=tree.attrs.get("wall_time_seconds"),
        config=config_from_arviz(tree),
        tempering=tables.get("tempering"),
        optimization=tables.get("optimization"),
    ))


def cmd_report(args) -> int:
    tree = _open(args.path)
    if args.json:
        print(json.dumps(report_json(tree, args.path), indent=2, allow_nan=False))
    else:
        print(report_text(tree))
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
    import ppl_control as pc
    from ppl_control import plots

    os.makedirs(args.out, exist_ok=True)
    progress_bar = _progress_bar(argparse.Namespace(quiet=False, progress=False))
    rows = []
    for name in DEMO_PROBLEMS:
        problem = _problem(name, 20 if args.quick else None)
        results = {}
        for method in DEMO_METHODS:
            print(f"== {name} by {method}", flush=True)
            result, seconds = _solve_one(pc.trajectory_model(problem), method, args.seed,
                                         progress_bar=progress_bar, **_demo_budget(method, args.quick))
            results[method] = result
            stem = os.path.join(args.out, f"{name}-{method}")
            _save(result, problem, f"{stem}.nc", f"{stem}.png", seconds=seconds,
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
    mpc.add_argument("problem", help="a name from `ppl-control list`, or file.py:function / module:function "
                     "naming a model built by pc.trajectory_model (it takes the measured state and carries "
                     ".problem, whose dynamics are the true system)")
    mpc.add_argument("--temperature", type=float, default=None,
                     help="the Boltzmann temperature of a ready-made problem (default: the problem's)")
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
    # pc.mpc's ACTIONS, written out: importing _mpc here would load JAX for every command
    mpc.add_argument("--action", choices=("best", "mean"), default="best",
                     help="apply the lowest-cost plan's first action (best, default) or the particles' "
                          "weighted mean (mean: the path-integral control, as MPPI does)")
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
    spec = resolve_model(args.problem, temperature=args.temperature, horizon=args.horizon)
    if spec.problem is None:
        raise UsageError(
            f"{args.problem}: mpc needs the ControlProblem behind the model, whose dynamics are the true "
            "system: build the model with pc.trajectory_model(problem), which takes the measured state as "
            "its first argument and carries .problem")
    problem = spec.problem
    algorithm = make_algorithm(args.method, spec.model, particles=args.particles,
                               steps=args.iterations, moves=args.moves, leapfrog=args.leapfrog,
                               max_stages=args.max_stages, progress_bar=False)
    start = time.perf_counter()
    loop = pc.mpc(algorithm, problem.x0, args.steps, jax.random.key(args.seed), warm_start=not args.cold,
                  action=args.action, progress_bar=not args.quiet)
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
    args = None
    try:
        args = build_parser().parse_args(argv)
        return commands[args.command](args)
    except UsageError as error:
        print(f"ppl-control: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        checkpoint = getattr(args, "checkpoint", None)
        hint = f"; run the same command again to resume from {checkpoint}" if checkpoint else ""
        print(f"ppl-control: interrupted{hint}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ppl-control report run.nc | head`: the reader left, not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":
    sys.exit(main())
