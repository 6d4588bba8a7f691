"""Swap TSMC, MDPO and the baselines on one model and compare what they find.

One ``pc.trajectory_model`` of the multimodal navigation problem (two mirror-image optimal
paths, above or below the central obstacle) goes to every algorithm unchanged; each returns the
same ``pc.Result``. The table shows the lowest and mean cost and how the equal-weight particles
split over the homotopy classes: sampling (TSMC) keeps both optimal gaps alive, optimisers
settle wherever their restarts fell.

    .venv/bin/python examples/compare_algorithms.py            # about a minute on 2 CPU cores
    .venv/bin/python examples/compare_algorithms.py --quick    # a smoke run with a small budget
"""

import argparse
import os
import time

import jax
import numpy as np

import ppl_control as pc
from ppl_control import models, plots
from ppl_control._arviz import resample_indices
from ppl_control.inference import CEM, MDPO, MPPI, TSMC, GradientDescent
from ppl_control.models import navigation


def algorithms(model, quick):
    steps = 20 if quick else 300
    return {
        "tsmc": TSMC(model, num_particles=32 if quick else 256, num_moves=2 if quick else 5,
                     progress_bar=False),
        "mdpo": MDPO(model, num_particles=4 if quick else 16, num_steps=steps, progress_bar=False),
        "gradient descent": GradientDescent(model, num_particles=4 if quick else 16, num_steps=steps,
                                            progress_bar=False),
        "cem": CEM(model, num_particles=32 if quick else 128, num_steps=steps, progress_bar=False),
        "mppi": MPPI(model, num_particles=32 if quick else 128, num_steps=steps, progress_bar=False),
    }


def classes(result, problem):
    controls = np.asarray(result.samples["controls"])[resample_indices(result.log_weights)]
    labels = np.asarray(navigation.homotopy_class(jax.vmap(problem.trajectory)(controls)))
    return dict(zip(*np.unique(labels, return_counts=True)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small budget (smoke run)")
    parser.add_argument("--out", default="examples-output", help="where to save the plots")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    problem = models.get("navigation", **({"horizon": 15} if args.quick else {}))
    model = pc.trajectory_model(problem)
    results = {}
    print(f"{'method':<17} {'best cost':>10} {'mean cost':>10} {'seconds':>8}  classes (gap: draws)")
    for name, algo in algorithms(model, args.quick).items():
        start = time.perf_counter()
        result = algo.run(jax.random.key(0))
        seconds = time.perf_counter() - start
        results[name] = result
        cost = np.asarray(result.samples["cost"])
        mean = float(np.sum(result.weights * np.where(np.isfinite(cost), cost, 0.0)))
        split = " ".join(f"{int(k)}:{int(v)}" for k, v in classes(result, problem).items())
        print(f"{name:<17} {np.nanmin(cost):>10.4g} {mean:>10.4g} {seconds:>8.1f}  {split}")
    if problem.reference_cost is not None:
        print(f"reference cost (navigation.REFERENCE_COST): {problem.reference_cost:.4g}")

    path = os.path.join(args.out, "compare_costs.png")
    plots.plot_cost_distributions(results).savefig(path)
    path2 = os.path.join(args.out, "compare_tsmc_paths.png")
    plots.plot_trajectories(results["tsmc"], problem, state_dims=[0, 1], planar=(0, 1)).savefig(path2)
    print(f"plots saved to {path} and {path2}")
    return results


if __name__ == "__main__":
    main()
