"""TSMC's self-tuning: trajectory length, step size and move count against known answers."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import TSMC
from ppl_control.inference import resampling
from ppl_control.inference.hmc import hmc_move
from ppl_control.inference.metric import Metric
from ppl_control.inference.rejuvenation import MoveSettings, rejuvenate
from ppl_control.inference.tuning import best_length, moved_enough, next_step_size


def test_best_length_maximises_decorrelation_per_gradient_within_the_probe():
    """Positions alone: c_pos(l) = |1 - jump(l) / (2 V)| with V = 1 and a constant watched value."""
    jump = jnp.array([0.2, 0.8, 1.6, 2.0, 2.4, 3.6, 0.0, 0.0])  # c_pos: .9 .6 .2 0 .2 .8
    flat = jnp.zeros((16, 8)), jnp.zeros(16)  # no spread: the watched correlation counts as 0
    # per gradient: .1/1 .4/2 .8/3 1/4 .8/5 .2/6 -> .1 .2 .267 .25 .16 .033
    assert int(best_length(jump, *flat, 6, 1.0)) == 3
    assert int(best_length(jump, *flat, 2, 1.0)) == 2  # never beyond the probe
    assert int(best_length(jnp.zeros(8), *flat, 5, 1.0)) == 1  # nothing moved: the shortest
    # positions alone prefer l = 2 (c_pos .8 .4 .2 0: per gradient .2 .3 .267 .25), but a watched
    # value (the log-likelihood) still perfectly correlated with its start after 2 steps makes
    # that length worthless: l = 3 wins
    jump = jnp.array([0.4, 1.2, 1.6, 2.0, 0.0, 0.0, 0.0, 0.0])
    assert int(best_length(jump, *flat, 4, 1.0)) == 2
    start = jnp.arange(16.0)
    watched = jnp.zeros((16, 8)).at[:, 1].set(start)
    assert int(best_length(jump, watched, start, 4, 1.0)) == 3


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_probe_integration_time_follows_the_targets_scale(scale):
    """On N(0, scale^2 I) with a unit metric, a move of integration time t leaves correlations
    c_pos = cos(t / scale) in the positions and c_lp = cos^2(t / scale) in the (quadratic)
    log-likelihood: both vanish at a quarter period, t = (pi / 2) scale, which the probe must find,
    so the chosen time grows in proportion to the target's scale."""
    dim, n, eps = 10, 2048, 0.05 * scale
    target = lambda z: -0.5 * jnp.sum(z**2) / scale**2
    value_and_grad = jax.value_and_grad(lambda z: (target(z), (0.0, target(z))), has_aux=True)
    z = scale * jax.random.normal(jax.random.key(0), (n, dim))
    (logp, aux), grad = jax.vmap(value_and_grad)(z)
    unit = Metric(jnp.ones(dim), jnp.ones(dim))
    move = jax.vmap(partial(hmc_move, watch=lambda aux: aux[1]),
                    in_axes=(0, 0, 0, 0, 0, None, None, None, None, None, None, None, None))
    *_, info = move(jax.random.split(jax.random.key(1), n), z, logp, grad, aux, value_and_grad, eps, unit,
                    64, 0.0, False, 64, True)
    spread = float(jnp.sum(jnp.var(z, axis=0)))
    chosen = int(best_length(jnp.mean(info.path_jump, axis=0), info.path_watched, aux[1], 64, spread))
    assert chosen * eps == pytest.approx(np.pi / 2 * scale, rel=0.15)


def test_step_size_solves_the_fitted_acceptance_line():
    step = 0.1
    jittered = step * jax.random.uniform(jax.random.key(0), (4096,), minval=0.5, maxval=1.5)
    acceptance = jnp.clip(0.9 - 0.5 * jnp.log(jittered / step), 0.0, 1.0)
    # acceptance 0.65 at log(eps / 0.1) = 0.5
    assert float(next_step_size(step, jittered, acceptance, 0.65)) == pytest.approx(step * np.exp(0.5), rel=0.02)
    # every proposal accepted: no slope to read, grow by the capped factor
    assert float(next_step_size(step, jittered, jnp.ones(4096), 0.65)) == pytest.approx(step * np.exp(0.5), rel=1e-5)
    # nothing accepted: shrink fast
    assert float(next_step_size(step, jittered, jnp.zeros(4096), 0.65)) == pytest.approx(step * np.exp(-1.3), rel=1e-5)


@pytest.mark.parametrize(
    "history, done",
    [
        ((np.nan, 1.0, 0.4), True),  # below target after one move
        ((np.nan, 1.0, 0.7), False),  # one move only: no extrapolation yet
        ((1.0, 0.7, 0.71), True),  # no progress: the moves cannot decorrelate further
        ((1.0, 0.8, 0.65), False),  # still falling geometrically toward ~0.2
        ((0.8, 0.65, 0.6), True),  # levelling off near 0.575: little reducible correlation left
    ],
)
def test_moves_stop_when_decorrelated_or_levelled(history, done):
    assert bool(moved_enough(jnp.asarray(history, jnp.float32), 0.5)) is done


def test_adapted_moves_keep_an_exactly_sampled_gaussian():
    """The whole move phase (metric from positions and gradients, probe, adaptive step, length and
    move count) at a fixed temperature leaves exact draws of the correlated 40-d LQR target exact.

    Tolerances as in test_hmc: n = 2000 draws, standard error of a mean sd/45, of a variance ~3%."""
    temperature = 0.05
    mean, cov, _ = models.lqr.gaussian_target(temperature=temperature)
    ld = pc.log_density(pc.trajectory_model(models.get("lqr", temperature=temperature)))
    n = 2000
    z = jnp.asarray(np.random.default_rng(0).multivariate_normal(mean, cov, size=n), dtype=jnp.float32)
    value_and_grad = jax.value_and_grad(lambda v: (ld.log_target(v, 1.0), ld.log_parts(v)), has_aux=True)
    settings = MoveSettings(num_moves=None, max_moves=6, num_leapfrog=None, max_leapfrog=64,
                            target_correlation=0.5, target_accept=0.65, step_jitter=0.5)
    run = jax.jit(lambda key, z: rejuvenate(key, z, jnp.full((n,), 1.0 / n), (jnp.zeros(n), jnp.zeros(n)), value_and_grad,
                                            resampling.systematic, "dense", jnp.asarray(0.5), jnp.asarray(8),
                                            settings))
    moved, _, _, step, length, info, _ = run(jax.random.key(3), z)
    z = np.asarray(moved, dtype=np.float64)
    sd = np.sqrt(np.diag(cov))
    assert int(info.num_moves) >= 1 and float(info.acceptance_rate) > 0.3
    assert float(info.correlation) < 0.9  # the particles really moved
    assert np.max(np.abs(z.mean(0) - mean) / sd) < 0.12
    assert np.max(np.abs(z.var(0) / np.diag(cov) - 1.0)) < 0.15


def _quadratic_model():
    x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([4]).to_event(1))
    pc.boltzmann(jnp.sum((x - 1.0) ** 2), temperature=0.2)


def test_user_fixed_moves_and_length_are_respected():
    fixed = TSMC(_quadratic_model, num_particles=64, num_moves=3, num_leapfrog=4, progress_bar=False)
    stats = fixed.run(jax.random.key(0)).stats
    assert np.all(stats["num_moves"] == 3) and np.all(stats["num_leapfrog"] == 4)
    assert np.all(stats["probe_length"] == 0)
    assert np.all(stats["num_evaluations"] == 64 * (1 + 3 * 4))
    moves_only = TSMC(_quadratic_model, num_particles=64, num_moves=2, max_leapfrog=16, progress_bar=False)
    stats = moves_only.run(jax.random.key(0)).stats
    assert np.all(stats["num_moves"] == 2) and np.all(stats["probe_length"] >= 1)
    assert np.all(stats["num_leapfrog"] <= 16)
    adaptive = TSMC(_quadratic_model, num_particles=64, max_moves=4, chain_length=None, progress_bar=False)
    stats = adaptive.run(jax.random.key(0)).stats
    assert np.all((stats["num_moves"] >= 1) & (stats["num_moves"] <= 4))


def test_moves_go_on_until_few_particles_are_left_where_resampling_put_them():
    """A step size far too large for the target: most proposals are rejected at first, so two moves
    would leave many particles in place. The adaptive moves go on until at most ``max_unmoved`` of
    them are, counted here by exact equality with the particles passed in (uniform weights:
    systematic resampling keeps every particle once)."""
    n, dim = 512, 10
    z = jax.random.normal(jax.random.key(0), (n, dim))
    value_and_grad = jax.value_and_grad(lambda v: (-0.5 * v @ v, (0.0, -0.5 * v @ v)), has_aux=True)
    settings = MoveSettings(num_moves=None, max_moves=10, num_leapfrog=None, max_leapfrog=16,
                            target_correlation=0.9, target_accept=0.65, step_jitter=0.5, max_unmoved=0.1)

    def move(settings):
        moved, _, _, _, _, info, _ = jax.jit(lambda key, z: rejuvenate(
            key, z, jnp.full((n,), 1.0 / n), (jnp.zeros(n), jnp.zeros(n)), value_and_grad,
            resampling.systematic, "diagonal", jnp.asarray(4.0), jnp.asarray(4), settings))(jax.random.key(1), z)
        return np.mean(np.all(np.asarray(moved) == np.asarray(z), axis=1)), info

    unmoved, info = move(settings)
    assert int(info.num_moves) > 2 and int(info.num_moves) < settings.max_moves
    assert unmoved <= settings.max_unmoved and float(info.unmoved_fraction) == pytest.approx(unmoved)
    # Without the rule the correlations alone stop at the 2-move minimum, leaving more in place.
    unmoved_off, info_off = move(settings._replace(max_unmoved=1.0))
    assert int(info_off.num_moves) == 2 and unmoved_off > settings.max_unmoved
