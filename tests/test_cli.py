"""``ppl-control`` end to end in a subprocess: list, a tiny solve, report on its file, bad input."""

import os
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
    run, png = tmp_path / "run.nc", tmp_path / "run.png"
    out = cli("solve", "pendulum", "--method", "tsmc", "--particles", "8", "--seed", "1", "--horizon",
              "6", "--moves", "1", "--leapfrog", "2", "--out", str(run), "--plot", str(png), "--quiet")
    assert out.returncode == 0, out.stderr
    assert "best cost" in out.stdout and "log evidence" in out.stdout
    assert run.stat().st_size > 0 and png.stat().st_size > 5_000
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
