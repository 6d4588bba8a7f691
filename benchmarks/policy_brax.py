"""Policy optimisation on a Brax environment: TSMC and MDPO against Brax's own APG and PPO.

Task: Brax ``inverted_pendulum`` (``generalized`` backend, differentiable), horizon ``H`` steps,
initial states spread wider than Brax's own reset (cart ``x ~ U(-0.5, 0.5)``, pole angle
``theta ~ U(-0.3, 0.3)`` rad, both velocities ``~ U(-0.3, 0.3)``), so that held-out initial
states differ, and the cart force limited to 30% of Brax's range (``ACTION_SCALE``). The objective of every method is the same smooth cost, the one
``ppl_control.models.brax`` ships: per step ``10 (1 - cos theta) + 0.1 x^2 + 0.01 theta_dot^2 +
0.01 u^2``. Episodes never terminate early (fixed horizon, as in ``pc.policy_model``).

* TSMC and MDPO: ``pc.policy_model(problem, policy, M training states)`` with a tanh-squashed
  Equinox MLP (``obs -> 8 -> 8 -> action``, swish), solved by ``ppl_control.inference``.
* APG (``brax.training.agents.apg``) and PPO (``brax.training.agents.ppo``): trained on the same
  environment wrapped so that its reset draws the same spread, its reward is ``-(cost of the next
  state + 0.01 u^2)`` (the same objective up to the cost of the initial state), and ``done`` is
  never set. Policy networks of the same size (hidden 8, 8); PPO's value net is (64, 64).

Budget: every method gets the same number of simulated environment transitions (forward steps;
backward passes through the physics, which TSMC, MDPO and APG take and PPO does not, are not
counted). TSMC runs first; its transitions fix the budget of the others.

Evaluation: each trained policy, deterministic (the mean action for APG and PPO), from the same
held-out initial states; ``return`` is minus the cost of the ``H``-step closed loop (higher is
better), ``upright`` the mean number of steps before the pole first leaves ``|theta| <= 0.2``
(Brax's own termination rule, so the Brax return the env would pay). Wall time includes
compilation (on a CPU it is a large share, and Brax's agents pay it too).

    .venv/bin/python -m benchmarks.policy_brax            # the budget reported in BENCHMARKS.md
    .venv/bin/python -m benchmarks.policy_brax --quick    # a smoke run, minutes on 2 cores
    .venv/bin/python -m benchmarks.policy_brax --write    # also write the table to BENCHMARKS.md
"""

import argparse
import dataclasses
import functools
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import ppl_control as pc
from ppl_control.inference import MDPO, TSMC
from ppl_control.models import brax as pcbrax

from ._machine import describe, replace_section

HEADING = "## Policy optimisation (Brax)"
ENV = "inverted_pendulum"
BACKEND = "generalized"
SPREAD_Q = np.array([0.5, 0.3])  # cart position, pole angle
SPREAD_QD = 0.3
CONTROL_WEIGHT = 0.01
HIDDEN = (8, 8)
# The cart force is limited to ACTION_SCALE of Brax's range (+-300 N): full-range bang-bang forces
# crash the generalized solver at the slider's limits (NaN states) for any method. Applied inside the
# dynamics, so every method sees the same system with actions in [-1, 1].
ACTION_SCALE = 0.3
PRIOR_SCALE = 0.3
TEMPERATURE = 0.1  # lambda in exp(-J / lambda) for TSMC and MDPO (J: mean cost over the states)


# -- the environment, its initial-state spread and the shared evaluation -----------------------


def wide_reset(env, rng):
    """``env.reset`` with the wider spread above; the same ``State`` structure as Brax's reset."""
    from brax.envs.base import State

    k1, k2 = jax.random.split(rng)
    spread = jnp.asarray(SPREAD_Q, jnp.float32)
    q = env.sys.init_q + jax.random.uniform(k1, (env.sys.q_size(),), minval=-spread, maxval=spread)
    qd = jax.random.uniform(k2, (env.sys.qd_size(),), minval=-SPREAD_QD, maxval=SPREAD_QD)
    pipeline_state = env.pipeline_init(q, qd)
    zero = jnp.zeros(())
    return State(pipeline_state, env._get_obs(pipeline_state), zero, zero, {}, {"time_out": zero})


def state_cost(state):
    return pcbrax.COSTS[ENV][0](state)


def cost_env(env):
    """``env`` with the wide reset, reward ``-(cost(next state) + w |u|^2)`` and no termination."""
    from brax.envs.base import Wrapper

    class CostEnv(Wrapper):
        def reset(self, rng):
            return wide_reset(self.env, rng)

        def step(self, state, action):
            nxt = self.env.step(state, ACTION_SCALE * action)
            reward = -(state_cost(nxt) + CONTROL_WEIGHT * jnp.sum(action**2))
            zero = jnp.zeros_like(nxt.done)
            return nxt.replace(reward=reward, done=zero, info={**nxt.info, "time_out": zero})

    return CostEnv(env)


def evaluate(problem, action_fn, states):
    """Mean held-out ``(return, upright steps)`` of the closed loop ``u = action_fn(state)``."""

    def one(x0):
        def body(carry, _):
            x, alive = carry
            u = action_fn(x)
            x_next = problem.step(x, u)
            alive = alive & (jnp.abs(x_next.obs[1]) <= 0.2)
            return (x_next, alive), (problem.stage_cost(x, u), alive)

        (x_last, _), (stage, alive) = lax.scan(body, (x0, jnp.abs(x0.obs[1]) <= 0.2), None,
                                              length=problem.horizon)
        return jnp.sum(stage) + problem.terminal_cost(x_last), jnp.sum(alive)

    cost, upright = jax.jit(jax.vmap(one))(states)
    return float(jnp.mean(-cost)), float(jnp.mean(upright))


class MLPPolicy(eqx.Module):
    mlp: eqx.nn.MLP

    def __init__(self, obs_size, action_size, key):
        self.mlp = eqx.nn.MLP(obs_size, action_size, HIDDEN[0], len(HIDDEN), activation=jax.nn.swish, key=key)

    def __call__(self, obs):
        return self.mlp(obs)


# -- the four methods ----------------------------------------------------------------------------


def _brax_training_compat():
    """Brax 0.14's agents call ``jax.device_put_replicated``, which JAX 0.10 removed; give them the
    drop-in replacement of JAX's pmap migration guide (stack on a leading device axis, shard it)."""
    try:
        jax.device_put_replicated  # noqa: B018
        return
    except AttributeError:
        pass

    def device_put_replicated(x, devices):
        mesh = jax.sharding.Mesh(np.asarray(devices), ("devices",))
        sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("devices"))
        return jax.tree.map(lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * len(devices)), sharding), x)

    jax.device_put_replicated = device_put_replicated


def run_ours(algo_cls, problem, policy, train_states, config, key):
    model = pc.policy_model(problem, policy, train_states, temperature=config.pop("temperature"),
                            param_prior_scale=config.pop("param_prior_scale"))
    start = time.perf_counter()
    result = algo_cls(model, progress_bar=False, **config).run(key)
    net = pc.trained_policy(result, policy)
    jax.block_until_ready(jax.tree.leaves(eqx.filter(net, eqx.is_array)))
    wall = time.perf_counter() - start
    return result, net, wall


def tsmc_transitions(result, num_states, horizon) -> int:
    c = result.config
    evaluations = 1 + c["num_stages"] * (1 + c["num_moves"] * c["num_leapfrog"])
    return evaluations * c["num_particles"] * num_states * horizon


def run_apg(env, horizon, budget, num_envs, seed):
    from brax.training.agents.apg import networks as apg_networks
    from brax.training.agents.apg import train as apg

    _brax_training_compat()

    updates = max(1, budget // (num_envs * horizon))
    start = time.perf_counter()
    make_policy, params, _ = apg.train(
        environment=cost_env(env), episode_length=horizon, policy_updates=updates,
        horizon_length=horizon, num_envs=num_envs, num_evals=1, learning_rate=3e-3,
        num_eval_envs=num_envs, seed=seed,
        network_factory=functools.partial(apg_networks.make_apg_networks, hidden_layer_sizes=HIDDEN),
    )
    policy = make_policy(params, deterministic=True)
    wall = time.perf_counter() - start
    return (lambda x: policy(x.obs, jax.random.key(0))[0]), wall, updates * num_envs * horizon


def run_ppo(env, horizon, budget, num_envs, seed):
    from brax.training.agents.ppo import networks as ppo_networks
    from brax.training.agents.ppo import train as ppo

    _brax_training_compat()

    unroll, batch, minibatches = 10, 32, 4
    per_update = unroll * batch * minibatches
    budget = max(budget, per_update)
    start = time.perf_counter()
    make_policy, params, _ = ppo.train(
        environment=cost_env(env), num_timesteps=budget, episode_length=horizon, num_envs=num_envs,
        unroll_length=unroll, batch_size=batch, num_minibatches=minibatches, num_updates_per_batch=4,
        learning_rate=3e-4, entropy_cost=1e-3, discounting=0.97, normalize_observations=True,
        num_evals=1, num_eval_envs=num_envs, seed=seed,
        network_factory=functools.partial(ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=HIDDEN,
                                          value_hidden_layer_sizes=(64, 64)),
    )
    policy = make_policy(params, deterministic=True)
    wall = time.perf_counter() - start
    steps = -(-budget // per_update) * per_update  # Brax rounds up to whole updates
    return (lambda x: policy(x.obs, jax.random.key(0))[0]), wall, steps


# -- the run -------------------------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke budget")
    parser.add_argument("--write", action="store_true", help="write the table to BENCHMARKS.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", default="tsmc,mdpo,apg,ppo", help="comma-separated subset")
    parser.add_argument("--budget", type=int, default=None,
                        help="transitions per method when TSMC is not run (TSMC's otherwise)")
    args = parser.parse_args(argv)

    horizon, num_train, num_test = (20, 4, 32) if args.quick else (30, 8, 128)
    # A small initial HMC step and a tight prior: the contact-rich Brax gradients make TSMC's default
    # step (dim^-1/4) diverge, and wide priors start from policies that slam the cart into its stops.
    tsmc_config = dict(num_particles=8 if args.quick else 16, num_moves=2, num_leapfrog=2 if args.quick else 4,
                       step_size=0.05, temperature=TEMPERATURE, param_prior_scale=PRIOR_SCALE)
    mdpo_particles = 4 if args.quick else 8

    env = pcbrax.make_env(ENV, BACKEND)
    brax_problem = pcbrax.problem(ENV, backend=BACKEND, horizon=horizon)
    problem = dataclasses.replace(brax_problem, step=lambda x, u: brax_problem.step(x, ACTION_SCALE * u))
    key = jax.random.key(args.seed)
    k_train, k_test, k_policy, k_tsmc, k_mdpo = jax.random.split(key, 5)
    reset = jax.jit(jax.vmap(functools.partial(wide_reset, env)))
    train_states = reset(jax.random.split(k_train, num_train))
    test_states = reset(jax.random.split(k_test, num_test))
    policy = MLPPolicy(env.observation_size, env.action_size, k_policy)
    print(f"{ENV} ({BACKEND}), horizon {horizon}, {num_train} training / {num_test} held-out initial states")

    rows = []
    zero = evaluate(problem, lambda x: jnp.zeros(env.action_size), test_states)
    rows.append(("zero action (reference)", 0, 0.0) + zero)
    ours = lambda net: functools.partial(pc.policy_action, problem, net)  # noqa: E731

    methods = args.methods.split(",")
    budget = args.budget
    if "tsmc" in methods:
        result, net, wall = run_ours(TSMC, problem, policy, train_states, dict(tsmc_config), k_tsmc)
        budget = tsmc_transitions(result, num_train, horizon)
        rows.append((f"TSMC ({result.config['num_particles']} particles, {result.config['num_stages']} stages)",
                     budget, wall) + evaluate(problem, ours(net), test_states))
        print(rows[-1], flush=True)
    if budget is None:
        parser.error("give --budget when TSMC is not among --methods")

    if "mdpo" in methods:
        mdpo_steps = max(1, budget // (mdpo_particles * num_train * horizon))
        mdpo_config = dict(num_particles=mdpo_particles, num_steps=mdpo_steps, learning_rate=0.01,
                           noise_scale=0.05, time_sites=(), temperature=TEMPERATURE, param_prior_scale=PRIOR_SCALE)
        _, net, wall = run_ours(MDPO, problem, policy, train_states, mdpo_config, k_mdpo)
        rows.append((f"MDPO ({mdpo_particles} restarts, {mdpo_steps} steps)",
                     mdpo_steps * mdpo_particles * num_train * horizon, wall) + evaluate(problem, ours(net), test_states))
        print(rows[-1], flush=True)

    num_envs = 8 if args.quick else 16
    if "apg" in methods:
        action_fn, wall, steps = run_apg(env, horizon, budget, num_envs, args.seed)
        rows.append((f"Brax APG ({num_envs} envs)", steps, wall) + evaluate(problem, action_fn, test_states))
        print(rows[-1], flush=True)
    if "ppo" in methods:
        action_fn, wall, steps = run_ppo(env, horizon, budget, num_envs, args.seed)
        rows.append((f"Brax PPO ({num_envs} envs)", steps, wall) + evaluate(problem, action_fn, test_states))
        print(rows[-1], flush=True)

    table = ["| method | env transitions | wall time (s) | held-out return (-cost) | upright steps |",
             "|---|---:|---:|---:|---:|"]
    for name, steps, wall, ret, upright in rows:
        table.append(f"| {name} | {steps:,} | {wall:.1f} | {ret:.2f} | {upright:.1f} / {horizon} |")
    text = "\n".join(table)
    print(text)
    if args.write:
        body = (
            f"`.venv/bin/python -m benchmarks.policy_brax{' --quick' if args.quick else ''} --write` "
            f"(seed {args.seed}). Machine: {describe()}; run while other jobs shared the 2 cores, so "
            "wall times are indicative.\n\n"
            f"Brax `{ENV}` (`{BACKEND}` backend), horizon {horizon}, policy MLP obs-8-8-action for "
            f"every method, {num_train} training initial states (TSMC/MDPO's empirical set), "
            f"{num_test} held-out ones for the evaluation, spread wider than Brax's reset (cart "
            "x, angle in U(-0.5, 0.5) x U(-0.3, 0.3), velocities in U(-0.3, 0.3)). Every method "
            "optimises the same smooth cost (models.brax's shipped `inverted_pendulum` cost; APG and "
            "PPO get it as the reward, with termination off) with the same budget of simulated "
            "transitions (TSMC's, counted as forward steps; backward passes not counted). "
            "Return = minus the closed-loop cost of the deterministic policy, mean over the held-out "
            "states (higher is better); upright steps = mean steps before |theta| > 0.2, Brax's "
            "own termination rule. The cart force is capped at 30% of Brax's range for every method "
            "(full-range forces crash the generalized solver at the slider limits). Wall time includes compilation. Budgets are small so that the run "
            "fits 2 CPU cores; they rank the methods at this budget only.\n\n" + text
        )
        replace_section("BENCHMARKS.md", HEADING, body)
        print("wrote", HEADING, "to BENCHMARKS.md")


if __name__ == "__main__":
    main()
