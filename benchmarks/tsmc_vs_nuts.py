"""TSMC as it ships beside what a user would pick instead, on the swing-up problems, in one run.

For each problem (``models`` pendulum, cartpole, acrobot at their default temperatures, and
``euler_acrobot``: an acrobot swing-up task written here, outside the problem library, as a user
would write one on the same physics (``models.acrobot.dynamics``): Euler steps of 0.1 s, 50 steps,
its own cost, temperature 0.01, prior N(0, 2) on an unbounded elbow torque) and each seed, every
method solves the problem's model:

* TSMC with its defaults (self-tuning HMC moves), with waste-free chains of 16 and of 32
  (``chain_length``, ``max_leapfrog=512``), with the fixed moves before the tuning issue
  (``num_moves=5, num_leapfrog=10``), with the metric from the particles' positions alone
  (``metric="covariance"``, no gradients: the metric ablation), with moves that go on while more
  than 10% of the particles are still where resampling put them (``max_unmoved=0.1``), and 64
  particles with ``max_leapfrog=1024`` (population traded for travel);
* NumPyro's NUTS (``MCMC(NUTS)``, 300 warm-up + 300 draws, NumPyro's defaults otherwise),
  called directly; gradient evaluations counted over warm-up and sampling;
* multi-start gradient descent (``GradientDescent``, Adam, 256 restarts x 1000 steps);
* BlackJAX's adaptive tempered SMC with HMC moves tuned by its own ``pretuning`` (Buchholz, Chopin
  & Jacob 2021: per-particle step sizes and trajectory lengths resampled by their expected squared
  jumping distance), 256 particles, 5 moves per stage, target ESS 0.5, the inverse mass matrix
  the prior's variances (set up as BlackJAX's own tests of pretuning do).

Reported per method: best and median cost of the particles it returns (median over seeds, with the
range of the best), gradient evaluations, first-call wall time (compilation included) and warm
wall time (median over the later seeds, the compiled code reused). Everything runs in the same
process, one method after another per problem, so the times are side by side.

    .venv/bin/python -m benchmarks.tsmc_vs_nuts [--seeds 5] [--problems pendulum,cartpole,acrobot] [--write]
"""

import argparse
import time

import blackjax
import blackjax.smc.resampling as bj_resampling
import jax
import jax.numpy as jnp
import numpy as np
from blackjax.smc import extend_params
from blackjax.smc.pretuning import build_pretune
from numpyro.infer import MCMC
from numpyro.infer import NUTS as NumPyroNUTS

import numpyro
import numpyro.distributions as dist

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC, GradientDescent

from ._machine import describe, replace_section

HEADING = "## TSMC beside NUTS, multi-start Adam and BlackJAX's tuned SMC (swing-up problems)"
PROBLEMS = ("pendulum", "cartpole", "acrobot", "euler_acrobot")


def euler_acrobot_model():
    """The acrobot swing-up written outside the problem library (see the module docstring)."""
    u = numpyro.sample("u", dist.Normal(0.0, 2.0).expand([50, 1]).to_event(2))
    xs = pc.rollout(lambda x, a: x + 0.1 * models.acrobot.dynamics(x, a), jnp.zeros(4), u)
    height = models.acrobot.tip_height(xs)
    cost = (0.1 * jnp.sum(2.0 - height[1:]) + 0.01 * jnp.sum(u**2) + 10.0 * (2.0 - height[-1])
            + 0.1 * jnp.sum(xs[-1, 2:] ** 2))
    pc.boltzmann(cost, temperature=0.01)


def problem_and_model(name):
    """``(reference cost or None, model)`` for a name of ``PROBLEMS``."""
    if name == "euler_acrobot":
        return None, euler_acrobot_model
    problem = models.get(name)
    return problem.reference_cost, pc.trajectory_model(problem)


def tsmc_runner(model, **config):
    algo = TSMC(model, progress_bar=False, **config)

    def run(key):
        result = algo.run(key)
        return np.asarray(result.samples["cost"]), int(np.sum(result.stats["num_evaluations"]))

    return run


def nuts_runner(model, site="cost"):
    """NumPyro's own ``MCMC(NUTS)``; warm-up and sampling run as ``MCMC.run`` would run them, with
    the tree sizes of both phases collected to count gradient evaluations. ``run(key)`` returns the
    draws of ``site`` and the evaluations."""
    mcmc = MCMC(NumPyroNUTS(model), num_warmup=300, num_samples=300, progress_bar=False)

    def run(key):
        mcmc.warmup(key, collect_warmup=True, extra_fields=("num_steps",))
        warmup_steps = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
        mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=("num_steps",))
        steps = int(np.sum(mcmc.get_extra_fields()["num_steps"]))
        return np.asarray(mcmc.get_samples()[site]), warmup_steps + steps

    return run


def gradient_descent_runner(model, num_particles=256, num_steps=1000):
    algo = GradientDescent(model, num_particles=num_particles, num_steps=num_steps, progress_bar=False)

    def run(key):
        result = algo.run(key)
        return np.asarray(result.samples["cost"]), num_particles * num_steps

    return run


def blackjax_runner(model, num_particles=256, num_moves=5, target_ess=0.5):
    """BlackJAX's adaptive tempered SMC with pretuned HMC (per-particle step and length)."""
    ld = pc.log_density(model)
    cost = jax.jit(jax.vmap(lambda z: ld.evaluate(z)[2]["cost"]))
    pretune = build_pretune(
        blackjax.hmc.init, blackjax.hmc.build_kernel(), alpha=1, n_particles=num_particles,
        sigma_parameters={"step_size": 0.01, "num_integration_steps": 2},
        natural_parameters=["num_integration_steps"], positive_parameters=["step_size"],
    )

    smc = blackjax.pretuning(
        blackjax.adaptive_tempered_smc, ld.log_prior, ld.log_likelihood, blackjax.hmc.build_kernel(),
        blackjax.hmc.init, bj_resampling.systematic, num_mcmc_steps=num_moves,
        initial_parameter_value=None, pretune_fn=pretune, target_ess=target_ess,
    )
    step = jax.jit(smc.step)  # the per-particle parameters live in the state: compiled once

    def run(key):
        key_init, key_step, key_length, key = jax.random.split(key, 4)
        z = ld.sample_prior(key_init, num_particles)
        parameters = dict(
            inverse_mass_matrix=extend_params(jnp.diag(jnp.var(z, axis=0))),  # dense: its ESJD needs it
            step_size=jax.random.uniform(key_step, (num_particles,), minval=0.0, maxval=0.1),
            num_integration_steps=jnp.round(
                jax.random.uniform(key_length, (num_particles,), minval=1, maxval=100)).astype(int),
        )
        state = blackjax.smc.pretuning.init(blackjax.adaptive_tempered_smc.init, z, parameters)
        evaluations, stages = 0, 0
        while float(state.sampler_state.tempering_param) < 1.0 and stages < 500:
            lengths = np.asarray(state.parameter_override["num_integration_steps"])
            key, sub = jax.random.split(key)
            state, _ = step(sub, state)
            # the pretuning step and the moves, each as long as that particle's trajectory
            evaluations += int(np.sum(lengths)) * (num_moves + 1)
            stages += 1
        return np.asarray(cost(state.sampler_state.particles)), evaluations

    return run


def measure(run, seeds):
    """``run(key) -> (costs, evaluations)`` over ``seeds``; the first call compiles."""
    rows = []
    for i, seed in enumerate(seeds):
        start = time.perf_counter()
        costs, evaluations = run(jax.random.key(seed))
        wall = time.perf_counter() - start
        finite = costs[np.isfinite(costs)]
        rows.append(dict(best=float(finite.min()), median=float(np.median(finite)), evaluations=evaluations,
                         wall=wall, first=i == 0))
        print(f"    seed {seed}: best {rows[-1]['best']:.2f} median {rows[-1]['median']:.2f} "
              f"evaluations {evaluations} wall {wall:.1f}s", flush=True)
    best = np.array([r["best"] for r in rows])
    warm = [r["wall"] for r in rows if not r["first"]] or [rows[0]["wall"]]
    return dict(best=float(np.median(best)), best_min=float(best.min()), best_max=float(best.max()),
                median=float(np.median([r["median"] for r in rows])),
                evaluations=float(np.median([r["evaluations"] for r in rows])),
                first=rows[0]["wall"], warm=float(np.median(warm)), bests=best)


METHODS = {
    "TSMC (defaults)": lambda model: tsmc_runner(model),
    # One metric from all the particles (the defaults before the cross-fitted metric).
    "TSMC (cross_fit=False)": lambda model: tsmc_runner(model, cross_fit=False),
    # Waste-free moves (inference.waste_free): 16 chains of 16, every state kept, longer trajectories.
    "TSMC (waste-free: chain_length=16 and max_leapfrog=512)":
        lambda model: tsmc_runner(model, chain_length=16, max_leapfrog=512),
    "TSMC (previous defaults: 5 moves x 10 leapfrog)": lambda model: tsmc_runner(model, num_moves=5, num_leapfrog=10),
    "TSMC (metric from positions only)": lambda model: tsmc_runner(model, metric="covariance"),
    "TSMC (waste-free: chain_length=32 and max_leapfrog=512)":
        lambda model: tsmc_runner(model, chain_length=32, max_leapfrog=512),
    "TSMC (moves also wait for the unmoved: max_unmoved=0.1)": lambda model: tsmc_runner(model, max_unmoved=0.1),
    # Fewer particles, longer trajectories: at a fixed gradient budget each particle's lineage
    # travels ~1/N further, what an ill-conditioned swing-up needs to leave a poor basin.
    "TSMC (64 particles and max_leapfrog=1024)":
        lambda model: tsmc_runner(model, num_particles=64, max_leapfrog=1024),
    "NUTS (NumPyro 300 + 300)": nuts_runner,
    "Adam multi-start (256 x 1000)": gradient_descent_runner,
    "BlackJAX adaptive tempered SMC (pretuned HMC)": blackjax_runner,
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated names from METHODS")
    parser.add_argument("--write", action="store_true", help="write the table into BENCHMARKS.md")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    methods = [m for m in METHODS if m in args.methods.split(",")]
    rows, verdicts = [], []
    for name in args.problems.split(","):
        reference, model = problem_and_model(name)
        results = {}
        for method in methods:
            print(f"== {name}: {method}", flush=True)
            results[method] = measure(METHODS[method](model), seeds)
        lowest = min(min(r["bests"]) for r in results.values())
        for method, r in results.items():
            gap = "" if reference is None else f"{100 * (r['best'] / reference - 1):+.1f}%"
            rows.append(f"| {name} | {method} | {r['best']:.2f} ({r['best_min']:.2f}-{r['best_max']:.2f}) | "
                        f"{gap} | {r['median']:.2f} | {r['evaluations']:.3g} | {r['first']:.1f} | {r['warm']:.1f} |")
        tsmc, nuts = results.get("TSMC (defaults)"), results.get("NUTS (NumPyro 300 + 300)")
        if tsmc and nuts:
            verdicts.append(
                f"- {name}: TSMC best {tsmc['best']:.2f} vs NUTS {nuts['best']:.2f} "
                f"({'at or below' if tsmc['best'] <= nuts['best'] else 'above'}); warm time ratio TSMC/NUTS "
                f"{tsmc['warm'] / nuts['warm']:.2f}; reference {reference}; lowest found by any method {lowest:.2f}")
    lines = [
        f"Command: `.venv/bin/python -m benchmarks.tsmc_vs_nuts --seeds {args.seeds} --write`  ",
        f"Machine: {describe()}  ",
        f"Seeds 0..{args.seeds - 1}. Best = the lowest cost among the particles (draws) a run returns; the "
        "column gives the median over seeds and the range; gap = median best against the problem's "
        "reference cost; median = median over seeds of the particles' median cost; evaluations = "
        "value-and-gradient evaluations, all particles (or the one chain) together, median over seeds; "
        "first call includes "
        "compilation; warm = median wall time of the later seeds.",
        "",
        "| problem | method | best, median (range) | gap to reference | median cost | gradient evaluations | first call (s) | warm (s) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        *verdicts,
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        replace_section("BENCHMARKS.md", HEADING, table)


if __name__ == "__main__":
    main()
