"""Receding-horizon control of the cart-pole by warm-started TSMC, against a 20% heavier pole.

Every control step re-plans by tempered SMC from the measured state (the model's first argument),
starting from the previous step's particles shifted by one step (a warm start: far fewer stages
than planning from the prior), applies the first action of the lowest-cost plan, and lets the
*true* system move: here a cart-pole whose pole is 20% heavier than the model's, with process
noise on the velocities. The same planner object serves every step, so the re-plan is compiled
once.

    .venv/bin/python examples/mpc_cartpole.py            # 100 steps (5 s of control), minutes on 2 CPU cores
    .venv/bin/python examples/mpc_cartpole.py --quick    # a smoke run: short horizon, few steps
"""

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

import ppl_control as pc
from ppl_control import models, plots
from ppl_control.inference import TSMC
from ppl_control.models.pendulum import upright_error


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small budget (smoke run)")
    parser.add_argument("--out", default="examples-output", help="where to save the plot and the run")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    horizon, num_steps, particles = (10, 8, 16) if args.quick else (30, 100, 64)
    problem = models.get("cartpole", horizon=horizon)  # what the planner believes
    truth = models.get("cartpole", pole_mass=0.36)  # the real system: a 20% heavier pole
    noise = jnp.array([0.0, 0.0, 0.02, 0.02])  # on the cart and pole velocities

    @jax.jit
    def true_step(key, x, u):
        return truth.step(x, u) + noise * jax.random.normal(key, x.shape, x.dtype)

    planner = TSMC(pc.trajectory_model(problem), num_particles=particles, num_moves=2,
                   num_leapfrog=5, max_stages=60, progress_bar=False)
    loop = pc.mpc(planner, problem.x0, num_steps, jax.random.key(0), true_step=true_step,
                  progress_bar=not args.quick)
    print(loop)

    stages = loop.diagnostics["num_stages"]
    angle_error = np.asarray(upright_error(loop.observations[:, 1]))
    print(f"initial plan from the prior: {loop.initial['num_stages']} TSMC stages, "
          f"{loop.initial['solve_time']:.1f} s (compilation included)")
    print(f"warm re-plans: {stages.mean():.1f} TSMC stages per step on average (min {stages.min()}, "
          f"max {stages.max()}); median {np.median(loop.solve_time[1:]) * 1e3:.0f} ms per step")
    print(f"closed-loop cost {loop.cost:.2f}; pole {angle_error[-1]:.3f} rad from upright at the end, "
          f"cart at x = {loop.observations[-1, 0]:.3f} m")

    path = os.path.join(args.out, "mpc_cartpole.png")
    plots.plot_closed_loop(loop, state_labels=["cart x", "pole angle", "cart velocity", "pole rate"]).savefig(path)
    loop.to_arviz().to_netcdf(os.path.join(args.out, "mpc_cartpole.nc"))
    print(f"closed-loop plot saved to {path}")
    return loop


if __name__ == "__main__":
    main()
