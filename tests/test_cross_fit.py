"""TSMC's log evidence against the LQR closed form at the shipped 256 particles, and the
cross-fitted metric that keeps it unbiased (``inference.metric.fit_cross_metric``). In their own
file so that the test workers share them out with ``test_tsmc.py``."""

import jax
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC


def _lqr_evidence_errors(temperature, **config):
    """TSMC (256 particles) on the LQR at ``temperature``: log-evidence errors of seeds 0-4."""
    model = pc.trajectory_model(models.get("lqr", temperature=temperature))
    log_z = models.lqr.gaussian_target(temperature=temperature)[2]
    algo = TSMC(model, num_particles=256, progress_bar=False, **config)
    return [algo.run(jax.random.key(seed)).log_evidence - log_z for seed in range(5)]


@pytest.mark.parametrize("temperature, goal", [(1.0, 0.2), (0.05, 0.3)])
def test_shipped_population_meets_the_evidence_goals(temperature, goal):
    """TSMC as it ships (256 particles) against the closed-form log evidence, median over seeds 0-4
    within the tuning issue's goals. Measured: medians +0.03 (temperature 1) and +0.09 (0.05)."""
    errors = _lqr_evidence_errors(temperature)
    assert abs(np.median(errors)) < goal, errors


def test_one_metric_from_all_the_particles_drifts_the_evidence_upward():
    """Why the metric is cross-fitted: fitted on all the particles (``cross_fit=False``), each
    particle's move depends on its own position and gradient through the metric, the population
    comes out under-dispersed after every stage, and at temperature 0.05 the log evidence drifts
    upward (measured: +1.07 to +2.23 over seeds 0-4, median +1.24; cross-fitted: median +0.09)."""
    errors = _lqr_evidence_errors(0.05, cross_fit=False)
    assert np.median(errors) > 0.6 and min(errors) > 0.3, errors
