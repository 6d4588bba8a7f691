"""``ppl-control`` end to end: list, tiny solves of a shipped problem and of a model file written
here (in a subprocess, as a user runs them), report on their files, --json, --compare,
--checkpoint, progress bars in a pipe, and one-line errors for bad input (in this process: main
returns the status)."""

import os
import re
import subprocess
import sys

import pytest

ENV = dict(os.environ, MPLBACKEND="Agg", JAX_PLATFORMS="cpu")


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ppl_control.cli", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout)


def test_list_names_problems_and_methods():
    out = cli("list")
    assert out.returncode == 0, out.stderr
    for word in ("pendulum", "navigation", "tsmc", "mdpo", "nuts"):
        assert word in out.stdout


def test_solve_then_report(tmp_path):
    import numpy as np
    import xarray as xr

    run, png = tmp_path / "run.nc", tmp_path / "run.png"
    out = cli("solve", "pendulum", "--method", "tsmc", "--particles", "8", "--seed", "1", "--horizon",
              "6", "--moves", "1", "--leapfrog", "2", "--temperature", "0.25", "--out", str(run),
              "--plot", str(png), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "best cost" in out.stdout and "log evidence" in out.stdout and "temperature 0.25" in out.stdout
    assert run.stat().st_size > 0 and png.stat().st_size > 5_000
    tree = xr.open_datatree(run)  # --temperature reached the model: log-likelihood = -cost / 0.25
    np.testing.assert_allclose(np.asarray(tree["log_likelihood"]["cost_boltzmann"]),
                               -np.asarray(tree["posterior"]["cost"]) / 0.25, rtol=1e-5)
    report = cli("report", str(run))
    assert report.returncode == 0, report.stderr
    assert "r_hat" in report.stdout and "tempering" in report.stdout and "beta" in report.stdout


@pytest.mark.parametrize("args, message", [
    (("solve", "no-such-problem"), "unknown problem"),
    (("solve", "pendulum", "--particles", "1"), "at least 2"),
    (("report", "missing.nc"), "cannot read"),
])
def test_bad_arguments_fail_in_one_line(args, message):
    from ppl_control.cli import main

    # In-process (no JAX start-up per case): main returns the status instead of raising.
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        status = main(list(args))
    assert status == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err.getvalue()


def test_bad_method_in_a_subprocess():
    out = cli("solve", "pendulum", "--method", "simulated-annealing")
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "unknown method" in out.stderr


# -- your own model from the shell ----------------------------------------------------------------

MODEL_FILE = '''
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

import ppl_control as pc


def model(goal, horizon=3):
    u = numpyro.sample("controls", dist.Normal(0.0, 1.0).expand([horizon, 2]).to_event(2))
    pc.boltzmann(jnp.sum((jnp.sum(u, axis=0) - goal) ** 2) + 0.1 * jnp.sum(u**2), temperature=0.5)


def plain():
    u = numpyro.sample("u", dist.Normal(0.0, 1.0))
    pc.boltzmann(u**2, temperature=1.0)


def not_a_model(goal=1.0):
    return 2 * goal


def prior_only():
    numpyro.sample("u", dist.Normal(0.0, 1.0))


def broken():
    return undefined_name


LIMIT = 3

# A closed-loop problem of one's own: a damped cart pushed to the origin; trajectory_model's
# model takes the measured state and carries .problem (mpc's true system).
cart = pc.ControlProblem(
    step=lambda x, u: jnp.stack([x[0] + 0.1 * x[1], 0.9 * x[1] + 0.1 * u[0]]),
    stage_cost=lambda x, u: x[0] ** 2 + 0.01 * u[0] ** 2,
    terminal_cost=lambda x: 10.0 * x[0] ** 2,
    x0=jnp.array([1.0, 0.0]), horizon=6, action_dim=1, name="cart",
)
cart_model = pc.trajectory_model(cart, temperature=0.05)
'''


BROKEN_LINE = MODEL_FILE.splitlines().index("    return undefined_name") + 1


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user") / "my_problem.py"
    path.write_text(MODEL_FILE)
    return path


def _in_process(*args):
    """``main(args)`` in this process: (status, stdout, stderr)."""
    import contextlib
    import io

    from ppl_control.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in args])
    return status, out.getvalue(), err.getvalue()


def test_compare_own_model_as_json(model_file, tmp_path):
    """--compare on a model file with --arg, --json on stdout, no progress bar in a pipe; the
    files written agree with the JSON; report --json reads them back."""
    import json

    import numpy as np
    import xarray as xr

    out = cli("solve", f"{model_file}:model", "--arg", "goal=[1.0, -0.5]", "--arg", "horizon=4",
              "--compare", "tsmc,nuts,gd", "--particles", "8", "--steps", "10", "--moves", "1",
              "--leapfrog", "2", "--seed", "3", "--json", "--out", str(tmp_path / "run.nc"))
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)  # stdout is one JSON document and nothing else
    assert "\r" not in out.stderr and "it/s" not in out.stderr and "%|" not in out.stderr
    assert document["schema"] == "ppl_control.solve/1" and document["problem"].endswith(":model")
    runs = {run["method"]: run for run in document["runs"]}
    assert list(runs) == ["tsmc", "nuts", "gd"]
    keys = {"schema", "problem", "method", "algorithm", "seed", "num_particles", "best_cost", "median_cost",
            "mean_cost", "log_evidence", "stages", "iterations", "evaluations", "seconds",
            "reference_cost", "temperature", "config", "files"}
    for method, run in runs.items():
        assert set(run) == keys and run["seed"] == 3 and run["num_particles"] == 8
        assert run["best_cost"] <= run["median_cost"] and run["seconds"] > 0
        tree = xr.open_datatree(run["files"]["run"])
        assert tree["posterior"]["controls"].shape[-2:] == (4, 2)  # --arg horizon=4 reached the model
        cost = np.asarray(tree["posterior"]["cost"])
        assert np.isclose(run["best_cost"], cost.min(), rtol=1e-6)
    assert runs["tsmc"]["log_evidence"] is not None and runs["gd"]["log_evidence"] is None
    assert runs["gd"]["evaluations"] == {"count": 8 * 10, "kind": "gradient", "accuracy": "exact"}
    assert runs["gd"]["iterations"] == 10 and runs["tsmc"]["stages"] >= 1
    assert runs["nuts"]["evaluations"]["accuracy"] == "lower bound"
    assert runs["nuts"]["evaluations"]["count"] >= 8  # at least one leapfrog step per kept draw
    tsmc = runs["tsmc"]
    assert tsmc["evaluations"]["count"] == tsmc["stages"] * 8 * (1 * 2 + 1) or \
        tsmc["evaluations"]["accuracy"] == "exact"

    status, stdout, _ = _in_process("report", runs["gd"]["files"]["run"], "--json")
    assert status == 0
    report = json.loads(stdout)
    assert report["schema"] == "ppl_control.report/1" and report["method"] == "gradient_descent"
    assert report["iterations"] == 10 and report["stages"] is None
    assert len(report["optimization"]["cost_min"]) == 10
    assert np.isclose(report["seconds"], runs["gd"]["seconds"])
    assert report["config"]["num_steps"] == 10 and report["log_evidence"] is None
    assert np.isclose(report["best_cost"], runs["gd"]["best_cost"], rtol=1e-6)


def test_checkpoint_and_forced_progress_bar(model_file, tmp_path):
    """--checkpoint writes the run's checkpoint, the same command resumes it to the same result;
    --progress forces a bar on stderr even in a pipe."""
    ckpt = tmp_path / "run.ckpt.npz"
    args = ("solve", f"{model_file}:model", "--arg", "goal=0.5", "--method", "mdpo", "--particles", "4",
            "--checkpoint", str(ckpt), "--json")
    first = cli(*args, "--steps", "20", "--progress")
    assert first.returncode == 0, first.stderr
    assert ckpt.exists() and "mdpo" in first.stderr and "20/20" in first.stderr
    import json

    resumed = json.loads(_in_process(*args, "--steps", "20")[1])  # a finished checkpoint: loaded
    assert resumed["best_cost"] == json.loads(first.stdout)["best_cost"]
    status, _, err = _in_process(*args, "--steps", "21")
    assert status == 2 and "another run configuration" in err and "num_steps" in err


@pytest.mark.parametrize("target, extra, message", [
    ("missing.py:model", (), "no such file"),
    ("{file}:nowhere", (), "has no function 'nowhere' (it defines: broken, model, not_a_model, plain, prior_only)"),
    ("{file}:LIMIT", (), "not a function"),
    ("{file}:not_a_model", (), "no latent sample site"),
    ("{file}:prior_only", (), "no observed site"),
    ("{file}:broken", (), f"NameError: name 'undefined_name' is not defined (line {BROKEN_LINE})"),
    ("{file}:model", (), "missing 1 required positional argument: 'goal'; pass the model's arguments"),
    ("{file}:model", ("--arg", "goal=fast"), "is not JSON"),
    ("{file}:model", ("--arg", "goal=1", "--temperature", "2"), "--temperature applies to the ready-made"),
    ("{file}:model", ("--arg", "goal=1", "--method", "nuts", "--checkpoint", "x.npz"), "nuts cannot checkpoint"),
    ("{file}:model", ("--method", "gd", "--compare", "gd,cem"), "not both"),
    ("no_such_package.models:model", (), "no module named 'no_such_package'"),
])
def test_own_model_mistakes_fail_in_one_line(model_file, target, extra, message):
    status, _, err = _in_process("solve", target.format(file=model_file), *extra)
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and "Traceback" not in err
    assert message in lines[0], lines[0]


def test_mpc_on_own_model_file(model_file, tmp_path):
    """``mpc file.py:model`` closes the loop on the model's own problem; a model without one is a
    one-line error."""
    plot = tmp_path / "loop.png"
    status, out, err = _in_process("mpc", f"{model_file}:cart_model", "--method", "gd", "--steps", "4",
                                   "--iterations", "30", "--particles", "4", "--quiet", "--plot", plot)
    assert status == 0, err
    assert "cart (horizon 6) closed loop by gradient_descent" in out and plot.exists()
    final = [float(v) for v in re.findall(r"-?\d+\.?\d*(?:e[-+]?\d+)?", out.split("final observation:")[1])][:2]
    assert abs(final[0]) < 1.0  # pushed toward the origin from x = 1
    status, _, err = _in_process("mpc", f"{model_file}:plain", "--quiet")
    assert status == 2 and "mpc needs the ControlProblem behind the model" in err.strip().splitlines()[0]


def test_model_from_a_module_path(model_file, monkeypatch):
    """``package.module:function`` imports from the current directory, as ``python -m`` does."""
    monkeypatch.chdir(model_file.parent)
    status, _, err = _in_process("solve", "my_problem:not_a_model")
    assert status == 2 and "my_problem:not_a_model cannot be solved: model 'not_a_model' has no latent" in err


# -- progress bars: only where someone watches ----------------------------------------------------


def test_progress_bar_only_on_a_terminal_unless_asked(capsys):
    import io
    import os

    from ppl_control.inference._common import progress, show_progress

    main_fd, terminal_fd = os.openpty()
    with open(terminal_fd, "w") as terminal:
        assert show_progress("auto", terminal) is True
    os.close(main_fd)
    assert show_progress("auto", io.StringIO()) is False  # a pipe, a file, a CI log
    assert show_progress(True, io.StringIO()) is True and show_progress(False) is False
    with pytest.raises(ValueError, match="progress_bar must be True, False or 'auto'"):
        show_progress("yes")

    with progress(10, "mdpo", "auto") as bar:  # pytest's captured stderr is not a terminal
        bar.update(10)
    assert bar.disable and capsys.readouterr().err == ""

    # A bar over beta in [0, 1] (TSMC's): the value and the postfix, no count and no rate.
    with progress(1.0, "TSMC", True, quantity="beta") as bar:
        for stage, beta in enumerate((0.25, 0.5, 1.0), 1):
            bar.set_description_str(f"TSMC stage {stage}", refresh=False)
            bar.set_postfix_str("ess=128 acc=0.71 cost_min=3.5", refresh=False)
            bar.update(beta - bar.n)
    last = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert last.startswith("TSMC stage 3: 100%|") and "beta=1.000" in last
    assert "ess=128 acc=0.71 cost_min=3.5" in last and "it/s" not in last and "/1" not in last


def test_chain_length_flag_reaches_tsmc():
    """``--chain-length`` is parsed to TSMC's ``chain_length``: absent or ``none`` means standard
    rejuvenation, ``auto`` the waste-free rule, and a length below 2 is refused by argparse."""
    import argparse

    import ppl_control as pc
    from ppl_control import cli, models

    model = pc.trajectory_model(models.get("lqr", horizon=2))
    make = lambda flag: cli.make_algorithm("tsmc", model, particles=64, chain_length=flag, progress_bar=False)
    assert make(None).chain_length is None
    assert make(cli._chain_length("auto")).chain_length == 8  # the longest chain up to 16 leaving 8 chains
    assert make(cli._chain_length("none")).chain_length is None
    assert make(cli._chain_length("16")).chain_length == 16
    with pytest.raises(argparse.ArgumentTypeError, match=">= 2"):
        cli._chain_length("1")
