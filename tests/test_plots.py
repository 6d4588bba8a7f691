"""Every plot in ``ppl_control.plots`` draws from real (tiny) runs and saves a non-empty PNG."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import jax
import pytest
from matplotlib.figure import Figure

import ppl_control as pc
from ppl_control import models, plots
from ppl_control.inference import MDPO, TSMC


@pytest.fixture(scope="module")
def runs():
    problem = models.get("navigation", horizon=10)
    model = pc.trajectory_model(problem)
    tsmc = TSMC(model, num_particles=16, num_moves=1, num_leapfrog=3, progress_bar=False)
    mdpo = MDPO(model, num_particles=4, num_steps=6, progress_bar=False)
    return model, tsmc.run(jax.random.key(0)), tsmc.run(jax.random.key(1)), mdpo.run(jax.random.key(0))


def _saved(fig, path):
    assert isinstance(fig, Figure)
    fig.savefig(path)
    assert path.stat().st_size > 5_000  # a real picture, not an empty canvas
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_tempering_schedule(runs, tmp_path):
    _, a, b, _ = runs
    _saved(plots.plot_tempering([a, b]), tmp_path / "tempering.png")
    with pytest.raises(ValueError, match="TSMC"):
        plots.plot_tempering(runs[3])


def test_trajectory_fan(runs, tmp_path):
    model, tsmc, _, mdpo = runs
    _saved(plots.plot_trajectories(tsmc, model, planar=(0, 1)), tmp_path / "fan.png")
    _saved(plots.plot_trajectories(mdpo, model.problem, state_dims=[0, 1], state_labels=["px", "py"]),
           tmp_path / "fan_mdpo.png")


def test_noise_profile_and_history(runs, tmp_path):
    _, tsmc, _, mdpo = runs
    _saved(plots.plot_noise_profile(mdpo), tmp_path / "noise.png")
    _saved(plots.plot_cost_history(mdpo), tmp_path / "history.png")
    with pytest.raises(ValueError, match="noise_scale"):
        plots.plot_noise_profile(tsmc)


def test_cost_distributions_and_overview(runs, tmp_path):
    model, tsmc, _, mdpo = runs
    fig = plots.plot_cost_distributions({"tsmc": tsmc, "mdpo": mdpo}, reference=model.problem.reference_cost)
    _saved(fig, tmp_path / "costs.png")
    _saved(plots.plot_run(tsmc, model), tmp_path / "run.png")
    _saved(plots.plot_run(mdpo, model), tmp_path / "run_mdpo.png")
