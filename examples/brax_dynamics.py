"""A Brax environment as the dynamics: balance Brax's inverted pendulum with open-loop controls.

``models.brax.problem("inverted_pendulum")`` wraps the Brax environment as a ``ControlProblem``
whose state is Brax's ``State`` pytree; the rollout is differentiable through the physics, so
MDPO's gradients and TSMC's HMC moves work on it exactly as on the hand-written problems. The
trajectory plot draws the observation coordinates (cart position and pole angle).

    .venv/bin/python examples/brax_dynamics.py            # a few minutes on 2 CPU cores
    .venv/bin/python examples/brax_dynamics.py --quick    # a smoke run: short horizon, tiny budget
"""

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np

import ppl_control as pc
from ppl_control import plots
from ppl_control.inference import MDPO
from ppl_control.models import brax as pcbrax


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small budget (smoke run)")
    parser.add_argument("--out", default="examples-output", help="where to save the plots")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    problem = pcbrax.problem("inverted_pendulum", horizon=8 if args.quick else 50)
    # A narrow prior (0.2 of the [-1, 1] force range): the pole starts near upright, so good
    # controls are small corrections and wide random pushes would only need undoing.
    model = pc.trajectory_model(problem, prior_scale=0.2)
    # The cost and the last observation of a control sequence in one compiled function: a Brax
    # rollout takes seconds to compile, and called eagerly each call would compile its own.
    cost_and_final = jax.jit(lambda u: (problem.cost(u), problem.observation(
        jax.tree.map(lambda leaf: leaf[-1], problem.trajectory(u)))))
    zeros = jnp.zeros(problem.controls_shape)
    zero_cost = float(cost_and_final(zeros)[0])
    algo = MDPO(model, num_particles=2 if args.quick else 8, num_steps=5 if args.quick else 200,
                progress_bar=not args.quick)
    result = algo.run(jax.random.key(0))
    best = result.best()
    _, final = cost_and_final(jnp.asarray(best["controls"], zeros.dtype))  # same dtype: no recompile
    print(result)
    print(f"cost with zero force {zero_cost:.4f}; lowest MDPO cost {float(best['cost']):.4f}")
    print("final observation [x, theta, x_dot, theta_dot]:", np.round(np.asarray(final), 3))

    path = os.path.join(args.out, "brax_inverted_pendulum.png")
    plots.plot_trajectories(result, problem, state_dims=[0, 1],
                            state_labels=["cart x", "pole angle"]).savefig(path)
    print(f"trajectory plot saved to {path}")
    return result


if __name__ == "__main__":
    main()
