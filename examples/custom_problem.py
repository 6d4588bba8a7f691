"""Write your own control problem as a NumPyro model and solve it with tempered SMC.

The model below is plain NumPyro: the decision variable (a thrust sequence for a 1-D rocket that
must climb to height 1 and stop there) is a latent ``numpyro.sample`` site with a prior, a
``pc.rollout`` of the dynamics gives the trajectory, and ``pc.boltzmann`` adds the cost as the
likelihood ``exp(-J / temperature)``. Nothing else is needed: TSMC (or any algorithm in
``ppl_control.inference``) takes the model as it is.

    .venv/bin/python examples/custom_problem.py            # a few seconds after JAX starts
    .venv/bin/python examples/custom_problem.py --quick    # a smoke run with a small budget
"""

import argparse
import os

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppl_control as pc
from ppl_control import plots
from ppl_control.inference import TSMC

DT, GRAVITY, HORIZON = 0.1, 1.0, 20


def step(x, u):
    """Height and velocity; thrust ``u[0]`` fights gravity."""
    height, velocity = x
    velocity = velocity + DT * (u[0] - GRAVITY)
    return jnp.stack([height + DT * velocity, velocity])


def rocket_model(temperature=0.05):
    thrust = numpyro.sample("thrust", dist.Normal(GRAVITY * jnp.ones((HORIZON, 1)), 1.0).to_event(2))
    states = pc.rollout(step, jnp.zeros(2), thrust)
    numpyro.deterministic("height", states[:, 0])
    fuel = 0.01 * jnp.sum(thrust**2)
    miss = 10.0 * (states[-1, 0] - 1.0) ** 2 + 10.0 * states[-1, 1] ** 2
    pc.boltzmann(fuel + miss, temperature)  # the "cost" site and the factor -J / temperature


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small budget (smoke run)")
    parser.add_argument("--out", default="examples-output", help="where to save the plots")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    algo = TSMC(rocket_model, num_particles=32 if args.quick else 256,
                num_moves=2 if args.quick else 5, progress_bar=not args.quick)
    result = algo.run(jax.random.key(0))
    best = result.best()
    print(result)
    print(f"lowest cost {float(best['cost']):.4f}; final height {float(best['height'][-1]):.3f} "
          f"(target 1.0); log evidence {result.log_evidence:.3f}")
    mean_thrust = np.average(np.asarray(result.samples["thrust"])[:, :, 0], axis=0, weights=result.weights)
    print("posterior mean thrust:", np.array2string(mean_thrust, precision=2, max_line_width=100))

    path = os.path.join(args.out, "custom_problem_tempering.png")
    plots.plot_tempering(result).savefig(path)
    print(f"tempering schedule saved to {path}")
    return result


if __name__ == "__main__":
    main()
