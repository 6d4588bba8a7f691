"""Receding-horizon control (``pc.mpc``) and the warm starts (``run(..., init=...)``) it relies on."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import CEM, MDPO, MPPI, NUTS, TSMC, GradientDescent
from ppl_control.models.pendulum import upright_error

# One worker runs the whole module (make test: --dist loadfile), so the LQR fixture is built once.
pytestmark = pytest.mark.xdist_group(name="mpc")

LQR = dict(horizon=10, temperature=1e-2)
LQR_STEPS = 6


def riccati_first_gain(a, b, q, r, qf, horizon):
    """The gain ``K_0`` of the finite-horizon LQR, ``u_0 = -K_0 x_0``, by the backward Riccati
    recursion ``K = (R + B'PB)^-1 B'PA``, ``P <- Q + A'P(A - BK)`` from ``P = Q_f``."""
    p = qf
    for _ in range(horizon):
        k = np.linalg.solve(r + b.T @ p @ b, b.T @ p @ a)
        p = q + a.T @ p @ (a - b @ k)
    return k


def counting_model(problem, **kwargs):
    """``trajectory_model(problem)`` that counts how often it is traced (called on tracers)."""
    base = pc.trajectory_model(problem, **kwargs)
    traces = []

    def model(x0=None):
        if isinstance(x0, jax.core.Tracer):
            traces.append(1)
        base(x0)

    model.problem = problem
    return model, traces


@pytest.fixture(scope="module")
def lqr_loops():
    """One warm and one cold closed loop of the same TSMC planner on the LQR problem.

    ``trace_counts[t]``: model traces so far, read by the true system right after plan ``t``.
    """
    problem = models.get("lqr", **LQR)
    model, traces = counting_model(problem)
    planner = TSMC(model, num_particles=128, num_moves=2, num_leapfrog=5, progress_bar=False)
    trace_counts = []

    def true_step(key, x, u):
        trace_counts.append(len(traces))
        return problem.step(x, u)

    warm = pc.mpc(planner, problem.x0, LQR_STEPS, jax.random.key(0), true_step=true_step)
    cold = pc.mpc(planner, problem.x0, LQR_STEPS, jax.random.key(0), warm_start=False)
    return problem, warm, cold, trace_counts


def test_lqr_closed_loop_applies_the_lqr_controller(lqr_loops):
    """At every measured state the applied action is the finite-horizon LQR action.

    The model's target ``N(u; 0, I) exp(-J(u; x) / lam)`` is Gaussian with mean ``-K_0 x`` for
    the LQR with ``R + lam/2 I`` (the prior adds ``lam |u|^2 / 2`` to ``J``), computed here by the
    Riccati recursion. The applied action is the lowest-cost particle's, one point of (TSMC's
    approximation of) that target, so it lies within a few of the target's standard deviations
    ``sigma_0`` of the mean: |error| <= 4 sigma_0 per coordinate (sigma_0 = 0.18 at lam = 1e-2,
    from ``lqr.gaussian_target``, against actions of about 4). lam = 1e-2 rather than lower: at
    1e-3 the shifted plan lies ~30 posterior standard deviations (Mahalanobis) from the next
    target, and a warm start then needs more stages than a cold one.
    """
    problem, warm, _, _ = lqr_loops
    a, b = models.lqr.matrices()
    lam = LQR["temperature"]
    gain = riccati_first_gain(a, b, np.eye(4), (0.1 + lam / 2) * np.eye(2), 10.0 * np.eye(4), LQR["horizon"])
    states = np.asarray(warm.observations, np.float64)
    expected = -states[:-1] @ gain.T
    _, cov, _ = models.lqr.gaussian_target(**LQR)
    sigma0 = np.sqrt(np.diag(cov)[:2])
    assert np.all(np.abs(warm.actions - expected) <= 4 * sigma0), (warm.actions, expected, sigma0)
    # The states are the measured ones: the true system (here the model's own) moved them.
    np.testing.assert_allclose(states[1:], states[:-1] @ a.T + warm.actions @ b.T, rtol=1e-5, atol=1e-5)
    assert warm.stage_costs.shape == (LQR_STEPS,) and warm.solve_time.shape == (LQR_STEPS,)
    assert warm.cost == pytest.approx(warm.stage_costs.sum() + 10.0 * states[-1] @ states[-1], rel=1e-5)


def test_warm_start_needs_fewer_stages_than_cold(lqr_loops):
    _, warm, cold, _ = lqr_loops
    warm_stages, cold_stages = warm.diagnostics["num_stages"], cold.diagnostics["num_stages"]
    assert warm_stages.mean() < 0.7 * cold_stages.mean(), (warm_stages, cold_stages)
    assert warm.initial is not None and cold.initial is None


def test_nothing_retraces_after_the_first_control_step(lqr_loops):
    _, _, _, trace_counts = lqr_loops
    assert trace_counts[0] > 0
    assert trace_counts[1:LQR_STEPS] == [trace_counts[0]] * (LQR_STEPS - 1), trace_counts


def test_closed_loop_converts_to_arviz_and_plots(lqr_loops):
    from ppl_control import plots

    _, warm, cold, _ = lqr_loops
    tree = pc.to_arviz([warm, cold])
    group = tree["closed_loop"]
    assert group.sizes["chain"] == 2 and group.sizes["step"] == LQR_STEPS and group.sizes["time"] == LQR_STEPS + 1
    for name in ("state", "action", "stage_cost", "solve_time", "plan_cost", "num_stages", "cost"):
        assert name in group, name
    np.testing.assert_allclose(group["action"].values[0], warm.actions)
    assert tree.attrs["method"] == "tsmc"
    fig = plots.plot_closed_loop(warm)
    assert len(fig.axes) >= 3


def test_pendulum_closed_loop_swings_up_and_stays():
    """No disturbance: from hanging at rest, warm TSMC swings the pendulum up and holds it."""
    problem = models.get("pendulum", horizon=30)
    planner = TSMC(pc.trajectory_model(problem), num_particles=32, num_moves=2, num_leapfrog=5,
                   progress_bar=False)
    loop = pc.mpc(planner, problem.x0, 70, jax.random.key(0))
    error = np.asarray(upright_error(loop.observations[:, 0]))
    assert error[0] > 3.1
    assert np.all(error[-10:] < 0.2), error[-10:]
    assert np.all(np.abs(loop.actions) <= 5.0)


def _no_latent_model_builder(problem):
    def model(x0=None):
        pc.boltzmann(problem.cost(jnp.zeros(problem.controls_shape), x0))

    model.problem = problem
    return model


def test_bad_input_gives_clear_errors():
    problem = models.get("lqr", horizon=3)
    planner = MPPI(pc.trajectory_model(problem), num_particles=8, num_steps=2, progress_bar=False)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="no latent sample site"):
        pc.mpc(MPPI(_no_latent_model_builder(problem), progress_bar=False), problem.x0, 2, key)
    with pytest.raises(ValueError, match=r"shape of problem.x0, \(4,\), got \(3,\)"):
        pc.mpc(planner, jnp.zeros(3), 2, key)
    with pytest.raises(ValueError, match="structure of problem.x0"):
        pc.mpc(planner, {"x": jnp.zeros(4)}, 2, key)
    with pytest.raises(ValueError, match="num_steps"):
        pc.mpc(planner, problem.x0, 0, key)
    with pytest.raises(ValueError, match="shift"):
        pc.mpc(planner, problem.x0, 2, key, shift="sideways")

    def plain_model(x0=None):
        numpyro.sample("controls", dist.Normal(0, 1).expand([3, 2]).to_event(2))

    with pytest.raises(ValueError, match="trajectory_model"):
        pc.mpc(MPPI(plain_model, progress_bar=False), problem.x0, 2, key)

    class NoWarmStart:
        method = "custom"

        def __init__(self):
            self.model = planner.model

        def run(self, rng_key, *args):
            return planner.run(rng_key, *args)

    with pytest.raises(ValueError, match="takes no init"):
        pc.mpc(NoWarmStart(), problem.x0, 2, key)
    loop = pc.mpc(NoWarmStart(), problem.x0, 2, key, warm_start=False)  # cold works
    assert loop.actions.shape == (2, 2)


# -- the warm starts behind pc.mpc: run(..., init=...) of every algorithm ----------------------


@pytest.fixture(scope="module")
def small_lqr():
    problem = models.get("lqr", horizon=3)
    mean, _, _ = models.lqr.gaussian_target(horizon=3)
    return pc.trajectory_model(problem), mean.reshape(3, 2)


@pytest.mark.parametrize("cls", [GradientDescent, MDPO])
def test_restarts_begin_at_the_given_particles(small_lqr, cls):
    """One iteration keeps each restart's first iterate: exactly the given particles, cycled."""
    model, _ = small_lqr
    given = np.arange(18, dtype=np.float32).reshape(3, 3, 2) / 10
    result = cls(model, num_particles=4, num_steps=1, progress_bar=False).run(jax.random.key(0), init={"controls": given})
    np.testing.assert_allclose(result.samples["controls"], given[[0, 1, 2, 0]], rtol=1e-6)


def test_cem_and_mppi_start_from_the_given_particles(small_lqr):
    model, optimum = small_lqr
    cost = lambda u: float(pc.log_density(model).evaluate(jnp.asarray(u, jnp.float32).ravel())[2]["cost"])
    # CEM: the population and (mu, sigma) come from the given particles; all at one poor point,
    # so sigma is min_std and one iteration stays there, while prior draws do far better.
    poor = np.full((8, 3, 2), 3.0, np.float32)
    cem = CEM(model, num_particles=16, num_steps=1, min_std=1e-4, progress_bar=False)
    warm = float(cem.run(jax.random.key(0), init={"controls": poor}).samples["cost"].min())
    assert warm == pytest.approx(cost(poor[0]), rel=1e-3)
    assert float(cem.run(jax.random.key(0)).samples["cost"].min()) < 0.5 * warm
    # MPPI: the nominal (sample 0 of the first population) is the given particles' mean.
    spread = optimum + np.linspace(-1, 1, 8, dtype=np.float32)[:, None, None]
    mppi = MPPI(model, num_particles=16, num_steps=1, progress_bar=False).run(jax.random.key(0), init={"controls": spread})
    np.testing.assert_allclose(mppi.samples["controls"][0], optimum, rtol=1e-5, atol=1e-5)


def test_nuts_starts_at_the_lowest_cost_particle():
    def model():
        x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pc.boltzmann(jnp.sum((x - 3.0) ** 2), temperature=1e-4)

    init = {"x": np.array([[0.0, 0.0], [3.0, 3.0]], np.float32), "cost": np.array([18.0, 0.0])}
    algo = NUTS(model, num_warmup=0, num_samples=4, progress_bar=False)
    warm = algo.run(jax.random.key(0), init=init)  # no warm-up: the chain stays near its start
    assert np.all(np.abs(warm.samples["x"] - 3.0) < 0.1)
    cold = algo.run(jax.random.key(0))
    assert np.all(np.abs(cold.samples["x"] - 3.0) > 1.0)


def test_bad_warm_starts_give_clear_errors(small_lqr):
    model, _ = small_lqr
    for cls in (GradientDescent, CEM, MPPI):
        algo = cls(model, num_particles=4, num_steps=1, progress_bar=False)
        with pytest.raises(ValueError, match="latent site"):
            algo.run(jax.random.key(0), init={"u": np.zeros((4, 3, 2))})
        with pytest.raises(ValueError, match="shape"):
            algo.run(jax.random.key(0), init={"controls": np.zeros((4, 2, 2))})
        with pytest.raises(ValueError, match="finite"):
            algo.run(jax.random.key(0), init={"controls": np.full((4, 3, 2), np.nan)})


def test_cli_mpc_writes_the_loop_and_its_plot(tmp_path, capsys):
    import xarray as xr

    from ppl_control.cli import main

    run, png = tmp_path / "loop.nc", tmp_path / "loop.png"
    status = main(["mpc", "lqr", "--method", "mppi", "--steps", "3", "--horizon", "3", "--particles", "8",
                   "--iterations", "2", "--quiet", "--out", str(run), "--plot", str(png)])
    assert status == 0
    out = capsys.readouterr().out
    assert "closed loop by mppi (warm), 3 steps" in out and "ms/step" in out
    assert png.stat().st_size > 5_000
    assert xr.open_datatree(run)["closed_loop"].sizes["step"] == 3
    assert main(["mpc", "lqr", "--method", "annealing"]) == 2
    assert "unknown method" in capsys.readouterr().err
