"""``to_arviz``: the DataTree schema for TSMC and MDPO runs, several chains, the netCDF round trip."""

import json

import arviz as az
import jax
import numpy as np
import pytest
import xarray as xr

import ppl_control as pc
from ppl_control import models
from ppl_control._arviz import resample_indices
from ppl_control.inference import MDPO, TSMC


@pytest.fixture(scope="module")
def problem():
    return models.get("pendulum", horizon=8)


@pytest.fixture(scope="module")
def tsmc_runs(problem):
    algo = TSMC(pc.trajectory_model(problem), num_particles=16, num_moves=1, num_leapfrog=3,
                progress_bar=False)
    return [algo.run(jax.random.key(s)) for s in range(2)]


@pytest.fixture(scope="module")
def mdpo_run(problem):
    return MDPO(pc.trajectory_model(problem), num_particles=4, num_steps=6,
                progress_bar=False).run(jax.random.key(0))


def test_tsmc_schema(tsmc_runs, problem):
    result = tsmc_runs[0]
    dt = pc.to_arviz(result)
    assert {"posterior", "sample_stats", "log_likelihood", "tempering"} <= set(dt.children)
    assert "optimization" not in dt.children
    post = dt["posterior"]
    assert post["controls"].dims == ("chain", "draw", "time", "action")
    assert post["controls"].shape == (1, 16, problem.horizon, 1)
    assert post["cost"].dims == ("chain", "draw")
    stats = dt["sample_stats"]
    for name in ("cost", "log_weight", "lp", "acceptance_rate", "step_size", "diverging"):
        assert stats[name].dims == ("chain", "draw"), name
    assert stats["diverging"].dtype == bool
    # The draws are the particles the deterministic resampler picked, costs carried along.
    picked = resample_indices(result.log_weights)
    np.testing.assert_array_equal(stats["particle"].values[0], picked)
    np.testing.assert_allclose(post["cost"].values[0], np.asarray(result.samples["cost"])[picked])
    np.testing.assert_allclose(stats["cost"].values, post["cost"].values)
    assert set(dt["log_likelihood"].data_vars) == set(result.log_likelihood)
    temp = dt["tempering"]
    for name in ("beta", "ess", "acceptance_rate", "step_size", "log_evidence_increment",
                 "cost_min", "cost_mean", "num_divergent", "num_moves", "num_leapfrog", "num_evaluations"):
        assert temp[name].dims == ("chain", "stage"), name
    assert np.all(temp["num_moves"].values == 1) and np.all(temp["num_leapfrog"].values == 3)
    assert temp["beta"].values[0, -1] == pytest.approx(1.0)
    assert dt.attrs["method"] == "tsmc"
    assert dt.attrs["log_evidence"] == pytest.approx(result.log_evidence)
    assert json.loads(dt.attrs["config"])["num_particles"] == 16
    assert pc.Result.to_arviz(result).attrs["method"] == "tsmc"


def test_mdpo_schema(mdpo_run):
    dt = pc.to_arviz(mdpo_run)
    assert {"posterior", "sample_stats", "log_likelihood", "optimization"} <= set(dt.children)
    assert "tempering" not in dt.children
    opt = dt["optimization"]
    assert opt["cost_min"].dims == ("chain", "iteration") and opt.sizes["iteration"] == 6
    assert opt["noise_scale"].dims[:2] == ("chain", "iteration")
    assert opt["noise_scale"].ndim == 3
    assert "log_evidence" not in dt.attrs
    assert json.loads(dt.attrs["config"])["num_steps"] == 6


def test_resampling_is_deterministic_and_follows_weights():
    uniform = np.full(8, -np.log(8))
    np.testing.assert_array_equal(resample_indices(uniform), np.arange(8))
    log_w = np.array([np.log(0.5), np.log(0.25), np.log(0.25), -np.inf])
    np.testing.assert_array_equal(resample_indices(log_w), [0, 0, 1, 2])
    with pytest.raises(ValueError, match="no particle"):
        resample_indices(np.full(3, -np.inf))


def test_chains_netcdf_round_trip_and_arviz_functions(tsmc_runs, tmp_path):
    dt = pc.to_arviz(tsmc_runs)
    assert dt["posterior"].sizes["chain"] == 2
    assert dt["tempering"].sizes["chain"] == 2
    stages = [len(r.stats["beta"]) for r in tsmc_runs]
    beta = dt["tempering"]["beta"].values
    for c, n in enumerate(stages):  # shorter runs are padded with NaN
        assert np.all(np.isfinite(beta[c, :n])) and np.all(np.isnan(beta[c, n:]))
    path = tmp_path / "runs.nc"
    dt.to_netcdf(path)
    back = xr.open_datatree(path)
    assert set(back.children) == set(dt.children)
    for group in dt.children:
        xr.testing.assert_identical(back[group].to_dataset().load(), dt[group].to_dataset())
    assert dict(back.attrs).keys() == dict(dt.attrs).keys()
    np.testing.assert_allclose(back.attrs["log_evidence"], dt.attrs["log_evidence"])
    assert back.attrs["config"] == dt.attrs["config"]

    summary = az.summary(dt, var_names=["cost"])
    assert list(summary.index) == ["cost"] and "r_hat" in summary.columns
    az.plot_dist(back, var_names=["cost"])
    az.plot_forest(dt, var_names=["cost"])
    az.plot_trace(dt)


def test_mismatched_runs_are_rejected(tsmc_runs, mdpo_run):
    with pytest.raises(ValueError, match="one method"):
        pc.to_arviz([tsmc_runs[0], mdpo_run])
    with pytest.raises(ValueError, match="at least one"):
        pc.to_arviz([])
