"""Inspect TSMC runs in ArviZ: summary with between-run R-hat, trace plot, the tempering group.

Four independent TSMC runs (different keys) on the pendulum swing-up become four chains of one
``xarray.DataTree``; ``az.summary`` then reports R-hat and ESS across runs, ``az.plot_trace``
draws the cost, and the ``tempering`` group holds each run's schedule (beta, ESS, acceptance,
step size, log-evidence increments per stage). The tree is saved to netCDF and read back.

    .venv/bin/python examples/inspect_in_arviz.py            # about a minute on 2 CPU cores
    .venv/bin/python examples/inspect_in_arviz.py --quick    # a smoke run with a small budget
"""

import argparse
import os

import arviz as az
import jax
import numpy as np
import xarray as xr

import ppl_control as pc
from ppl_control import models, plots
from ppl_control.inference import TSMC


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small budget (smoke run)")
    parser.add_argument("--out", default="examples-output", help="where to save files")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    problem = models.get("pendulum", **({"horizon": 15} if args.quick else {}))
    algo = TSMC(pc.trajectory_model(problem), num_particles=16 if args.quick else 256,
                num_moves=1 if args.quick else 5, progress_bar=False)
    runs = [algo.run(jax.random.key(seed)) for seed in range(2 if args.quick else 4)]
    dt = pc.to_arviz(runs)
    print(dt)

    print("\nArviZ summary of the cost across runs:")
    print(az.summary(dt, var_names=["cost"]))
    tempering = dt["tempering"]
    print("\nstages per run:", np.isfinite(tempering["beta"].values).sum(axis=1))
    print("log evidence per run (sum of the increments):",
          np.nansum(tempering["log_evidence_increment"].values, axis=1).round(2))

    path = os.path.join(args.out, "pendulum_runs.nc")
    dt.to_netcdf(path)
    back = xr.open_datatree(path)
    print(f"\nsaved to {path}; read back groups: {sorted(back.children)}")

    trace = az.plot_trace(dt, var_names=["cost"])
    trace_path = os.path.join(args.out, "arviz_trace.png")
    trace.savefig(trace_path)
    schedule_path = os.path.join(args.out, "arviz_tempering.png")
    plots.plot_tempering(back).savefig(schedule_path)
    print(f"plots saved to {trace_path} and {schedule_path}")
    return dt


if __name__ == "__main__":
    main()
