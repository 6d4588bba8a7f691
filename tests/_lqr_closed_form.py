"""The check a sampler's run on the default LQR problem must pass against its closed form."""

import numpy as np

from ppl_control import models


def assert_matches_lqr_closed_form(result, variance_tolerance: float, log_z_tolerance: float = 0.5,
                                   mean_tolerance: float = 0.15):
    """``result`` (a run on ``models.get("lqr")``) reached ``beta = 1`` with its log evidence, its
    posterior mean (RMS over coordinates, in posterior sds) and every marginal variance ratio
    within the tolerances of ``models.lqr.gaussian_target``'s closed form."""
    mean, cov, log_z = models.lqr.gaussian_target()
    sd = np.sqrt(np.diag(cov))
    u = result.samples["controls"].reshape(result.num_particles, -1).astype(np.float64)
    assert abs(result.log_evidence - log_z) < log_z_tolerance
    assert np.sqrt(np.mean(((u.mean(0) - mean) / sd) ** 2)) < mean_tolerance
    assert np.max(np.abs(u.var(0) / np.diag(cov) - 1.0)) < variance_tolerance
    assert result.stats["beta"][-1] == 1.0
