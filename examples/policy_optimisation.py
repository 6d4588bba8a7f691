"""Policy optimisation: learn a pendulum swing-up feedback policy with tempered SMC.

The decision variable is the parameter vector of a small Equinox MLP; ``pc.policy_model`` turns
it into a NumPyro model whose cost is the mean closed-loop cost over a fixed set of training
initial states. With ``--noise sigma`` the rollout has additive process noise; by default each
training state is rolled out with ``--noise-samples`` noise sequences drawn once and held fixed
(common random numbers: the policy is trained for its expected cost), and ``--noise-treatment
extended`` makes the noise a latent instead (the extended-space construction, which rewards lucky
noise and under-controls; see BENCHMARKS.md). TSMC samples the Boltzmann-tilted posterior;
``pc.trained_policy`` hands back the lowest-cost particle as an ordinary Equinox module, which is
then checked on held-out initial states with fresh noise and saved.

    .venv/bin/python examples/policy_optimisation.py            # about a minute on 2 CPU cores
    .venv/bin/python examples/policy_optimisation.py --quick    # a smoke run: smaller budget, weaker policy
    .venv/bin/python examples/policy_optimisation.py --noise 0.05 --noise-samples 4 --out policy-output
"""

import argparse
import os

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import ppl_control as pc
from ppl_control.inference import TSMC
from ppl_control.models import pendulum


# The policy (a small tanh MLP) and the spread of starting states live beside the problem:
# models.pendulum.SwingUpPolicy and models.pendulum.swing_up_starts.
SwingUpPolicy, initial_states = pendulum.SwingUpPolicy, pendulum.swing_up_starts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small budget (fewer particles and states)")
    parser.add_argument("--noise", type=float, default=0.0, help="process-noise scale sigma")
    parser.add_argument("--noise-treatment", default="common", choices=pc.NOISE_TREATMENTS,
                        help="common: fixed noise sequences (default); extended: the noise as a latent")
    parser.add_argument("--noise-samples", type=int, default=1,
                        help="K, noise sequences per training state (keep N K well above the 41 parameters)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="policy-output", help="folder for the plot and the saved policy")
    args = parser.parse_args(argv)

    num_particles, num_train = (48, 12) if args.quick else (128, 24)
    problem = pendulum.problem(horizon=60)
    policy = SwingUpPolicy(8, jax.random.key(args.seed))
    k_train, k_test, k_run = jax.random.split(jax.random.key(args.seed), 3)
    train = initial_states(k_train, num_train)
    model = pc.policy_model(problem, policy, train, temperature=0.02, param_prior_scale=2.0,
                            process_noise=args.noise, noise_treatment=args.noise_treatment,
                            num_noise_samples=args.noise_samples, noise_key=jax.random.fold_in(k_train, 1))
    result = TSMC(model, num_particles=num_particles, num_moves=4, num_leapfrog=8).run(k_run)
    print(result)
    print(f"TSMC: {result.config['num_stages']} stages, log evidence {result.log_evidence:.1f}")

    net = pc.trained_policy(result, policy)
    held_out = initial_states(k_test, 200)
    noise = None
    if args.noise > 0:
        noise = jax.random.normal(jax.random.fold_in(k_test, 1), (200, problem.horizon, 2))
    costs = pc.policy_cost(problem, net, held_out, noise, args.noise)
    rollout = jax.vmap(lambda x0, w: pc.closed_loop_rollout(problem, net, x0, w, args.noise),
                       in_axes=(0, None if noise is None else 0))
    states, actions = rollout(held_out, noise)
    final_error = pendulum.upright_error(states[:, -1, 0])
    print(f"training cost (best particle, mean over {num_train} states): {float(result.best()['cost']):.2f}")
    print(f"held-out cost (200 fresh states{', fresh noise' if args.noise > 0 else ''}): {float(costs.mean()):.2f}")
    print(f"held-out swing-ups (within 0.3 rad of upright at t = 3 s): {float(jnp.mean(final_error < 0.3)):.0%}")

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "pendulum_policy.eqx")
    eqx.tree_serialise_leaves(path, net)
    reloaded = eqx.tree_deserialise_leaves(path, policy)
    assert float(reloaded(held_out[0])) == float(net(held_out[0]))
    print(f"saved the policy to {path} (load with eqx.tree_deserialise_leaves(path, SwingUpPolicy(...)))")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    t = np.arange(problem.horizon + 1) * 0.05
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for i in range(40):
        ax1.plot(t, np.asarray(pendulum.upright_error(states[i, :, 0])), lw=0.8, alpha=0.6)
        ax2.plot(t[:-1], np.asarray(actions[i, :, 0]), lw=0.8, alpha=0.6)
    ax1.axhline(0.3, color="k", ls="--", lw=0.8)
    ax1.set(xlabel="time (s)", ylabel="distance from upright (rad)", title="40 held-out starts")
    ax2.set(xlabel="time (s)", ylabel="torque (N m)", title="policy actions")
    fig.tight_layout()
    plot = os.path.join(args.out, "pendulum_policy.png")
    fig.savefig(plot, dpi=120)
    print(f"saved {plot}")


if __name__ == "__main__":
    main()
