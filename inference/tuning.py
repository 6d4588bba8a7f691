"""Self-tuning of TSMC's HMC moves from what the population shows.

Three decisions, all read off the particles rather than fixed in advance:

**Step size**, after every move. Each particle's step is jittered (``hmc``), so one move shows the
acceptance rate at a spread of step sizes. A least-squares line of acceptance against the log
step, solved for ``target_accept``, gives the next step in one go (a Newton step whose slope is
measured, not assumed: a fixed-gain rule over-corrects when the acceptance is steep in the step,
and the step then oscillates from stage to stage). Where the line is useless (no spread, every
proposal accepted or none, a slope of the wrong sign) the fixed-gain rule of ``adapt_step_size``
takes over.

**Trajectory length** (in the spirit of Buchholz, Chopin & Jacob 2021, who tune HMC within SMC
from the jumps the particles make, after Fearnhead & Taylor 2013). The stage's first move is a
*probe*: every particle integrates ``probe_length`` leapfrog steps and records, at each step
``l``, what a move of ``l`` steps would have achieved (``hmc``): its squared whitened jump and the
log-likelihood after it, each weighted by the acceptance probability. Over the population that gives,
for every length at once, the two correlations the move count watches (below), ``c_pos(l)`` and
``c_lp(l)``, and the stage keeps the length that decorrelates most per gradient::

    L* = argmax_l (1 - max(|c_pos(l)|, c_lp(l))) / l

Why not the expected squared jumping distance per gradient, the classic criterion: it rewards
antithetic jumps (a particle thrown to the mirror point of the target), which leave the
log-likelihood, and so the next stage's weights, as correlated as a short move would. For a
Gaussian of whitened scale ``sigma`` (and a quadratic log-likelihood) and integration time ``t``,
``c_pos = cos(t / sigma)`` and ``c_lp = cos^2(t / sigma)``: the rule picks ``t = (pi / 2) sigma``, a quarter period, where both vanish,
while the jump per gradient would pick ``t = 2.33 sigma``. The choice grows in proportion to the
target's scale, follows its widest whitened directions (they dominate ``c_pos``), and the next
stage probes up to twice it, so the length can double per stage when more is needed.

**Number of moves.** Moves continue until the particles have decorrelated from where the stage's
resampling put them, judged by two statistics, each about 1 for particles that have not moved
and 0 for draws independent of their start:

* positions: ``c_pos = 1 - mean_i |y_i - y_i^start|^2 / (2 V)`` (``y = S^{-1} z``, the metric's
  whitening, ``V`` the population's total whitened variance), a variance-weighted average over
  directions, so the widest whitened directions, the slowest to mix, count most. An average of
  signed correlations can cancel (one direction anti-correlated, another still correlated), so:
* the log-likelihood: ``c_ll``, the correlation across particles of the log-likelihood at the
  start and now. It is what the next stage's weights are made of, and for a Gaussian it is a
  quadratic form, whose lag correlation is an average of *squared* cosines: nothing cancels.

Moving stops once ``max(|c_pos|, c_ll) <= target_correlation`` (or at the cap). A stricter rule is
an option (``max_unmoved``, off by default): moves also go on while more than that fraction of the
particles are still where resampling put them, every proposal since rejected. Resampling makes the
weighted population an equally weighted one only approximately (the weights kept an ESS of about
``target_ess``); it is the moves that turn a resampled particle into a fresh draw, and a particle
whose moves were all rejected passes that approximation on to the next stage. Rejections gather
where the step is too large for the local curvature, so the particles left behind are a biased
few, which the correlations, population averages, dilute. At an acceptance rate of 0.65 two moves
leave 12% of the particles in place. On the sharp LQR target (temperature 0.005, 29 stages,
``benchmarks.tsmc_vs_blackjax``) ``max_unmoved=0.1`` halves the log-evidence bias (+0.73 to +0.37
nats median over 5 seeds, worst seed 1.96 to 0.51) for 24% more gradients; on the swing-ups
(``benchmarks.tsmc_vs_nuts``) it changed no best cost and took 1.4 to 2x the gradients, hence off.
A stage where the particles mix slowly gets more moves, one where they mix fast gets fewer.

Part of the correlation may be out of the moves' reach: when the population spans several basins
that HMC does not cross at this temperature, the spread between basins never decorrelates and the
correlation levels off above zero. Moves then stop when they have removed the part they can:
modelling the correlation after ``k`` moves as ``c_inf + r a^k`` (geometric mixing within
basins), two successive decrements ``d_{k-1}, d_k`` give ``a = d_k / d_{k-1}``, the reducible
part left ``r_k = d_k a / (1 - a)`` and the floor ``c_inf = c_k - r_k``; moving stops once
``r_k <= target_correlation * (1 - c_inf)``, the same rule as above applied to the reducible part
(with ``c_inf = 0`` it is exactly ``c_k <= target_correlation``). A move that does not lower the
correlation at all stops the moves.
"""

import jax
import jax.numpy as jnp

from .metric import Metric, group_centres

# The default of TSMC's ``max_unmoved``: the largest fraction of particles the moves may leave where
# resampling put them (module docstring, "Number of moves"). 1.0: the rule is off.
DEFAULT_MAX_UNMOVED = 1.0


def best_length(mean_path_jump: jax.Array, path_watched: jax.Array, start_watched: jax.Array,
                probe_length, spread) -> jax.Array:
    """The length that decorrelates the particles most per gradient (module docstring).

    Args:
      mean_path_jump: ``(B,)`` the population mean of ``MoveInfo.path_jump``.
      path_watched: ``(N, B)`` the particles' ``MoveInfo.path_watched`` (their log-likelihoods).
      start_watched: ``(N,)`` the watched values before the probe.
      probe_length: lengths beyond it are not considered (``B`` may be larger).
      spread: ``V``, the population's total whitened variance (``whitened_spread``).

    Returns:
      An int32 in ``[1, probe_length]``; ties go to the shorter length, and a probe where nothing
      moved gives 1.
    """
    lengths = jnp.arange(1, mean_path_jump.shape[0] + 1)
    positions = jnp.abs(1.0 - mean_path_jump / (2.0 * jnp.maximum(spread, jnp.finfo(mean_path_jump.dtype).tiny)))
    alive = jnp.isfinite(start_watched) & jnp.all(jnp.isfinite(path_watched), axis=1)
    watched = _correlation(start_watched[:, None], path_watched, alive[:, None])
    per_gradient = (1.0 - jnp.maximum(positions, watched)) / lengths
    per_gradient = jnp.where((lengths <= probe_length) & jnp.isfinite(per_gradient), per_gradient, -jnp.inf)
    return (jnp.argmax(per_gradient) + 1).astype(jnp.int32)


def _correlation(a: jax.Array, b: jax.Array, alive: jax.Array) -> jax.Array:
    """Pearson correlation along axis 0 of ``a`` and ``b`` (broadcast), over the ``alive`` rows;
    0 where either has no spread."""
    count = jnp.maximum(jnp.sum(alive, axis=0), 1)
    a = jnp.where(alive, a, 0.0)
    b = jnp.where(alive, b, 0.0)
    a = jnp.where(alive, a - jnp.sum(a, axis=0) / count, 0.0)
    b = jnp.where(alive, b - jnp.sum(b, axis=0) / count, 0.0)
    scale = jnp.sqrt(jnp.sum(a**2, axis=0) * jnp.sum(b**2, axis=0))
    return jnp.where(scale > 0, jnp.sum(a * b, axis=0) / jnp.where(scale > 0, scale, 1.0), 0.0)


def whitened_spread(metric: Metric, particles: jax.Array, weights: jax.Array) -> jax.Array:
    """``V = E|y - c(y)|^2``, the variance of the weighted population in whitened units, each
    particle taken from its centre ``c`` (``metric.group_centres``: its group's mean when the
    population holds two separated groups, else the population mean). The moves decorrelate the
    particles within their group; the distance between groups is not theirs to cover."""
    alive = (weights > 0) & jnp.all(jnp.isfinite(particles), axis=-1)
    w = jnp.where(alive, weights, 0.0)
    safe = jnp.where(alive[:, None], particles, 0.0)
    centres, separated = group_centres(particles, weights)
    centres = jnp.where(separated, centres, (w / jnp.sum(w)) @ safe)
    centred = metric.whiten(jnp.where(alive[:, None], safe - centres, 0.0))
    return (w / jnp.sum(w)) @ jnp.sum(centred**2, axis=-1)


def remaining_correlation(metric: Metric, start: jax.Array, now: jax.Array, spread,
                          start_log_likelihood: jax.Array, log_likelihood: jax.Array) -> jax.Array:
    """``max(|c_pos|, c_ll)``: how much of their start the particles still remember.

    ``c_pos = 1 - mean_i |S^{-1}(now_i - start_i)|^2 / (2 V)`` with ``V`` the population's
    ``whitened_spread``, and ``c_ll`` the correlation across particles between the
    log-likelihoods at the start and now; particles with non-finite values are left out. See the
    module docstring.
    """
    white = metric.whiten(now - start)
    squared = jnp.sum(white**2, axis=-1)
    alive = jnp.isfinite(squared) & jnp.isfinite(start_log_likelihood) & jnp.isfinite(log_likelihood)
    count = jnp.maximum(jnp.sum(alive), 1)
    mean_squared = jnp.sum(jnp.where(alive, squared, 0.0)) / count
    positions = jnp.abs(1.0 - mean_squared / (2.0 * jnp.maximum(spread, jnp.finfo(squared.dtype).tiny)))
    return jnp.maximum(positions, _correlation(start_log_likelihood, log_likelihood, alive))


def moved_enough(correlations: jax.Array, target_correlation) -> jax.Array:
    """Whether the moves can stop, from the last three correlations ``(c_{k-2}, c_{k-1}, c_k)``.

    True when ``c_k <= target_correlation``, or when the geometric extrapolation of the last two
    decrements says the reducible part left is within the target (module docstring). Before the
    second move pass ``c_{k-2} = nan``: only the first test applies.
    """
    before, previous, now = correlations[0], correlations[1], correlations[2]
    decrement, earlier = previous - now, before - previous
    ratio = jnp.clip(decrement / jnp.where(earlier > 0, earlier, 1.0), 0.0, 0.95)
    ratio = jnp.where(earlier > 0, ratio, 0.95)
    reducible = jnp.maximum(decrement, 0.0) * ratio / (1.0 - ratio)
    floor = now - reducible
    levelled = jnp.isfinite(before) & ((decrement <= 0) | (reducible <= target_correlation * (1.0 - floor)))
    return (now <= target_correlation) | levelled


def adapt_step_size(step_size, acceptance_rate, target_accept, rate: float = 2.0):
    """Fixed-gain multiplicative update toward ``target_accept`` (the fallback of ``next_step_size``).

    ``log eps += clip(rate * (acceptance - target), -1.5, 0.5)``: above target the step grows,
    below it shrinks. Shrinking may be fast (x0.27 per move when nothing is accepted, so a start
    far too large for a stiff model, such as a Brax rollout, is corrected quickly) and growing
    is capped (x1.65), because too large a step wastes whole moves while too small a step only
    mixes more slowly.
    """
    return step_size * jnp.exp(jnp.clip(rate * (acceptance_rate - target_accept), -1.5, 0.5))


def next_step_size(step_size, jittered_steps: jax.Array, acceptance: jax.Array, target_accept) -> jax.Array:
    """The base step for the next move, from one move's per-particle ``(jittered step, acceptance)``.

    Fits ``acceptance ≈ a + b log(step)`` by least squares and solves it for ``target_accept``
    (the log change clipped to ``[-1.5, 0.5]``, as in ``adapt_step_size``); falls back to
    ``adapt_step_size`` when the fit has no spread or a slope that is not clearly negative.
    """
    mean_acceptance = jnp.mean(acceptance)
    fallback = adapt_step_size(step_size, mean_acceptance, target_accept)
    x = jnp.log(jittered_steps)
    ok = jnp.isfinite(x) & jnp.isfinite(acceptance)
    count = jnp.maximum(jnp.sum(ok), 1)
    x_mean = jnp.sum(jnp.where(ok, x, 0.0)) / count
    a_mean = jnp.sum(jnp.where(ok, acceptance, 0.0)) / count
    dx = jnp.where(ok, x - x_mean, 0.0)
    variance = jnp.sum(dx**2) / count
    slope = jnp.sum(dx * jnp.where(ok, acceptance - a_mean, 0.0)) / count / jnp.maximum(variance, 1e-12)
    # The slope is useful when clearly negative; near 0 or 1 acceptance saturates and it is not.
    useful = (variance > 1e-6) & (slope < -0.05) & (a_mean > 0.02) & (a_mean < 0.98)
    log_target = x_mean + (target_accept - a_mean) / jnp.where(useful, slope, -1.0)
    change = jnp.clip(log_target - jnp.log(step_size), -1.5, 0.5)
    return jnp.where(useful, step_size * jnp.exp(change), fallback)
