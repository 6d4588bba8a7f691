"""Tempered Sequential Monte Carlo with Hamiltonian Monte Carlo rejuvenation (TSMC).

The particles move from the prior (``beta = 0``) to the tilted target (``beta = 1``) through the
path of distributions::

    pi_beta(z)  ∝  prior(z) * exp(beta * log_likelihood(z))

where the log-likelihood is every observed site of the model (for a control problem,
``-J(z) / temperature``). Each stage (Del Moral, Doucet & Jasra 2006):

1. picks ``beta_next`` by bisection so that the ESS of the incremental weights
   ``exp((beta_next - beta) * log_likelihood)`` is ``target_ess`` of its value (``tempering``);
2. adds ``log mean(incremental weights)`` to the log-evidence estimate;
3. fits the HMC metric to the weighted particles, then resamples (``resampling``);
4. moves every particle with ``num_moves`` HMC transitions that leave ``pi_beta_next`` invariant,
   gradients exact through the rollout (``hmc``); the step size adapts toward ``target_accept``.

The stage is one compiled function; a run is a short Python loop over stages (tens), which drives
the progress bar and the optional checkpoint.
"""

import hashlib
import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import logsumexp

from ppl_control import log_density

from . import checkpoint as checkpointing
from . import resampling as resampling_schemes
from ._common import (
    check_fraction,
    check_num_particles,
    check_positive,
    check_positive_int,
    finite_min_mean,
    progress,
    raise_if_all_nonfinite,
    tempered_target,
)
from .hmc import adapt_step_size, fit_metric, hmc_move
from .tempering import incremental_log_weights, log_ess, next_delta
from .warm_start import as_site_values, fit_reference


class TSMCState(NamedTuple):
    """What the next stage needs. ``particles`` is ``(N, dim)`` in unconstrained space.

    ``log_start`` is the log density of the path's start (the prior; a warm start's Gaussian
    reference ``q``) and ``log_likelihood`` what tempering scales (the model's log-likelihood;
    ``log prior + log likelihood - log q`` for a warm start), so that ``pi_beta ∝
    exp(log_start + beta * log_likelihood)`` either way.
    """

    particles: jax.Array
    log_start: jax.Array
    log_likelihood: jax.Array
    cost: jax.Array
    beta: jax.Array
    step_size: jax.Array
    log_evidence: jax.Array
    stage: jax.Array


class StageInfo(NamedTuple):
    """What a user inspects about one stage (per-particle fields describe its moves)."""

    beta: jax.Array
    ess: jax.Array
    acceptance_rate: jax.Array
    step_size: jax.Array
    log_evidence_increment: jax.Array
    cost_min: jax.Array
    cost_mean: jax.Array
    num_divergent: jax.Array
    num_finite: jax.Array
    particle_acceptance_rate: jax.Array
    particle_diverging: jax.Array
    particle_step_size: jax.Array


_PER_STAGE = ("beta", "ess", "acceptance_rate", "step_size", "log_evidence_increment",
              "cost_min", "cost_mean", "num_divergent", "num_finite")


def path_target(ld, reference, beta):
    """``z -> (log pi_beta(z), (log_start, log_likelihood, cost))`` on the tempering path.

    ``reference`` is ``None`` for the path from the prior, or a ``GaussianReference`` ``q`` for
    the geometric path ``q^(1 - beta) (prior * likelihood)^beta`` of a warm start.
    """
    model_target = tempered_target(ld, 1.0)

    def target(z):
        _, (lp, ll, cost) = model_target(z)
        if reference is not None:
            log_q = reference.log_prob(z)
            lp, ll = log_q, lp + ll - log_q
        return lp + beta * ll, (lp, ll, cost)

    return target


def _as_typed_key(rng_key):
    if jnp.issubdtype(jnp.asarray(rng_key).dtype, jax.dtypes.prng_key):
        return rng_key
    return jax.random.wrap_key_data(jnp.asarray(rng_key, dtype=jnp.uint32))


class TSMC:
    """Tempered SMC with HMC moves: samples the tilted target and estimates its log evidence.

    Example::

        problem = models.get("pendulum")
        result = TSMC(pc.trajectory_model(problem), num_particles=256).run(jax.random.key(0))
        result.best()["controls"], result.log_evidence

    Args:
      model: a NumPyro model with continuous latent sites and at least one observed site.
      num_particles: the population size ``N`` (>= 2).
      target_ess: the fraction of the ESS kept by each temperature increment, in ``(0, 1)``.
      num_moves: HMC transitions per particle per stage.
      num_leapfrog: leapfrog steps per HMC transition.
      step_size: the initial HMC step size in whitened coordinates; default ``dim ** -0.25``.
      target_accept: the acceptance rate the step size adapts toward (after every move).
      resampling: ``"systematic"`` (default), ``"stratified"`` or ``"multinomial"``.
      max_stages: the largest number of stages; a run that has not reached ``beta = 1`` by then
        warns and returns its particles at the last ``beta`` (recorded in ``config``).
      metric: ``"dense"`` (the particles' full covariance, default) or ``"diagonal"``.
      dense_max_dim: above this dimension a dense metric falls back to the diagonal.
      step_jitter: each proposal uses ``step_size * U(1 - step_jitter, 1 + step_jitter)``.
      init_spread: a warm start (``run(..., init=...)``) tempers from a Gaussian fitted to the
        given particles with its standard deviations multiplied by this (>= 1 keeps the
        importance weights' tails light); see ``inference.warm_start``.
      progress_bar: show a progress bar over beta (stage count, ESS, acceptance, best cost).
    """

    method = "tsmc"

    def __init__(
        self,
        model,
        num_particles: int = 256,
        target_ess: float = 0.5,
        num_moves: int = 5,
        num_leapfrog: int = 10,
        step_size: float | None = None,
        target_accept: float = 0.65,
        resampling: str = "systematic",
        max_stages: int = 200,
        metric: str = "dense",
        dense_max_dim: int = 1000,
        step_jitter: float = 0.5,
        init_spread: float = 1.2,
        progress_bar: bool = True,
    ):
        if metric not in ("dense", "diagonal"):
            raise ValueError(f"metric must be 'dense' or 'diagonal', got {metric!r}")
        if not 0.0 <= step_jitter < 1.0:
            raise ValueError(f"step_jitter must lie in [0, 1), got {step_jitter!r}")
        self.model = model
        self.num_particles = check_num_particles(num_particles)
        self.target_ess = check_fraction("target_ess", target_ess)
        self.num_moves = check_positive_int("num_moves", num_moves)
        self.num_leapfrog = check_positive_int("num_leapfrog", num_leapfrog)
        self.step_size = None if step_size is None else check_positive("step_size", step_size)
        self.target_accept = check_fraction("target_accept", target_accept)
        self.resample = resampling_schemes.get(resampling)
        self.resampling = resampling
        self.max_stages = check_positive_int("max_stages", max_stages)
        self.metric = metric
        self.dense_max_dim = check_positive_int("dense_max_dim", dense_max_dim)
        self.step_jitter = float(step_jitter)
        self.init_spread = check_positive("init_spread", init_spread)
        self.progress_bar = bool(progress_bar)
        # Compiled once per instance; later runs (other keys, same argument shapes) reuse them.
        self._init = eqx.filter_jit(self._init_impl)
        self._stage = eqx.filter_jit(self._stage_impl)
        self._finalize = eqx.filter_jit(self._finalize_impl)
        self._fit_reference = eqx.filter_jit(self._fit_reference_impl)

    @property
    def config(self) -> dict:
        return dict(
            num_particles=self.num_particles, target_ess=self.target_ess, num_moves=self.num_moves,
            num_leapfrog=self.num_leapfrog, step_size=self.step_size, target_accept=self.target_accept,
            resampling=self.resampling, max_stages=self.max_stages, metric=self.metric,
            dense_max_dim=self.dense_max_dim, step_jitter=self.step_jitter, init_spread=self.init_spread,
        )

    # -- compiled pieces ---------------------------------------------------------------------

    def _init_impl(self, rng_key, model_args, model_kwargs, reference):
        ld = log_density(self.model, *model_args, **model_kwargs)
        if reference is None:
            particles = ld.sample_prior(rng_key, self.num_particles)
        else:
            particles = reference.sample(rng_key, self.num_particles)
        lp, ll, cost = jax.vmap(lambda z: path_target(ld, reference, 0.0)(z)[1])(particles)  # no gradient needed
        step = self.step_size if self.step_size is not None else ld.dim ** -0.25
        zero = jnp.zeros((), particles.dtype)
        return TSMCState(particles, lp, ll, cost, zero, zero + step, zero, jnp.zeros((), jnp.int32))

    def _fit_reference_impl(self, init_values, model_args, model_kwargs):
        ld = log_density(self.model, *model_args, **model_kwargs)
        return fit_reference(jax.vmap(ld.unconstrain)(init_values), self.init_spread)

    def _stage_impl(self, rng_key, state: TSMCState, model_args, model_kwargs, reference):
        ld = log_density(self.model, *model_args, **model_kwargs)
        n, dim = state.particles.shape
        key_resample, key_moves = jax.random.split(rng_key)

        # 1-2. next temperature, reweighting, evidence increment.
        delta, last = next_delta(state.log_likelihood, 1.0 - state.beta, self.target_ess)
        beta = jnp.where(last, jnp.ones_like(state.beta), state.beta + delta)
        log_w = incremental_log_weights(state.log_likelihood, delta)
        log_evidence_increment = logsumexp(log_w) - math.log(n)
        weights = jnp.exp(log_w - logsumexp(log_w))

        # 3. metric from the weighted population, then resampling.
        metric = fit_metric(state.particles, weights, self.metric == "dense" and dim <= self.dense_max_dim)
        ancestors = self.resample(key_resample, weights, n)
        z = state.particles[ancestors]

        # 4. HMC rejuvenation at the new temperature. Pass 0 of the loop only refreshes the
        # gradients at the new beta (``refresh``), so the reverse pass is compiled once.
        value_and_grad = jax.value_and_grad(path_target(ld, reference, beta), has_aux=True)
        move_particles = jax.vmap(hmc_move, in_axes=(0, 0, 0, 0, 0, None, None, None, None, None, None))

        def one_move(carry, pass_and_key):
            index, key = pass_and_key
            z, logp, grad, aux, eps = carry
            refresh = index == 0
            z, logp, grad, aux, info = move_particles(
                jax.random.split(key, n), z, logp, grad, aux, value_and_grad, eps, metric,
                self.num_leapfrog, self.step_jitter, refresh,
            )
            adapted = adapt_step_size(eps, jnp.mean(info.acceptance_rate), self.target_accept)
            return (z, logp, grad, aux, jnp.where(refresh, eps, adapted)), (info, eps)

        placeholder = (jnp.full((n,), -jnp.inf, z.dtype), (state.log_start[ancestors],
                       state.log_likelihood[ancestors], state.cost[ancestors]))
        passes = (jnp.arange(self.num_moves + 1), jax.random.split(key_moves, self.num_moves + 1))
        (z, _, _, (lp, ll, cost), step_size), (infos, base_steps) = lax.scan(
            one_move, (z, placeholder[0], jnp.zeros_like(z), placeholder[1], state.step_size), passes
        )
        infos, base_steps = jax.tree.map(lambda x: x[1:], (infos, base_steps))  # drop the refresh pass
        cost_min, cost_mean = finite_min_mean(cost)
        new_state = TSMCState(z, lp, ll, cost, beta, step_size, state.log_evidence + log_evidence_increment,
                              state.stage + 1)
        info = StageInfo(
            beta=beta,
            ess=jnp.exp(log_ess(log_w)),
            acceptance_rate=jnp.mean(infos.acceptance_rate),
            step_size=jnp.mean(base_steps),
            log_evidence_increment=log_evidence_increment,
            cost_min=cost_min,
            cost_mean=cost_mean,
            num_divergent=jnp.sum(infos.diverging),
            num_finite=jnp.sum(jnp.isfinite(state.log_likelihood)),
            particle_acceptance_rate=jnp.mean(infos.acceptance_rate, axis=0),
            particle_diverging=jnp.any(infos.diverging, axis=0),
            particle_step_size=infos.step_size[-1],
        )
        return new_state, info

    def _finalize_impl(self, particles, model_args, model_kwargs):
        ld = log_density(self.model, *model_args, **model_kwargs)
        return jax.vmap(ld.sites)(particles)

    # -- the run -------------------------------------------------------------------------------

    def run(self, rng_key, *model_args, init=None, checkpoint: str | None = None, **model_kwargs):
        """Run TSMC from the prior (or a warm start) to ``beta = 1``.

        Args:
          rng_key: a JAX PRNG key; the same key gives the same result, bit for bit.
          *model_args, **model_kwargs: passed to the model.
          init: a warm start: a ``pc.Result`` or a dict latent site -> constrained values with a
            leading particle axis (at least 2 particles; any number). TSMC then tempers from a
            Gaussian fitted to them (``inference.warm_start``) instead of from the prior; the log
            evidence still estimates the model's.
          checkpoint: a file path; the state is saved there after every stage, and a run started
            with an existing checkpoint of the same configuration and key resumes from it.

        Returns:
          A ``Result`` with equally weighted particles at the last ``beta``, the log-evidence
          estimate, per-stage ``stats`` and the last stage's per-particle ``particle_stats``.

        Raises:
          InferenceError: every particle of the initial population has a non-finite cost.
        """
        rng_key = _as_typed_key(rng_key)
        key_init, key_stages = jax.random.split(rng_key)
        # max_stages is left out: resuming with a larger budget is how a stopped run continues.
        fingerprint = {k: v for k, v in self.config.items() if k != "max_stages"}
        fingerprint.update(method=self.method, key=np.asarray(jax.random.key_data(rng_key)).ravel().tolist())
        reference = None
        if init is not None:
            names = log_density(self.model, *model_args, **model_kwargs).latent_names
            values = as_site_values(init, names)
            fingerprint["init"] = hashlib.sha1(b"".join(v.tobytes() for v in values.values())).hexdigest()
            reference = self._fit_reference(values, model_args, model_kwargs)
        loaded = checkpointing.load(checkpoint, TSMCState, fingerprint) if checkpoint else None
        if loaded is not None:
            state, history = loaded
            state = TSMCState(*map(jnp.asarray, state))
        else:
            state = self._init(key_init, model_args, model_kwargs, reference)
            raise_if_all_nonfinite(state.log_likelihood, "log-likelihood (cost)", "TSMC")
            history = {name: [] for name in StageInfo._fields}

        with progress(1.0, "TSMC", self.progress_bar) as bar:
            bar.update(float(state.beta))
            while float(state.beta) < 1.0 and int(state.stage) < self.max_stages:
                previous_beta = float(state.beta)
                state, info = self._stage(jax.random.fold_in(key_stages, int(state.stage)), state,
                                          model_args, model_kwargs, reference)
                info = jax.device_get(info)
                for name, value in info._asdict().items():
                    history[name].append(value)
                bar.set_description_str(f"TSMC stage {int(state.stage)}")
                bar.set_postfix_str(
                    f"ess={float(info.ess):.0f} acc={float(info.acceptance_rate):.2f} "
                    f"cost_min={float(info.cost_min):.4g}"
                )
                bar.update(float(info.beta) - previous_beta)
                if checkpoint:
                    checkpointing.save(checkpoint, state, history, fingerprint)

        final_beta = float(state.beta)
        if final_beta < 1.0:
            warnings.warn(
                f"TSMC stopped at beta={final_beta:.4g} after max_stages={self.max_stages} stages; "
                "the particles target the tempered, not the final, distribution. Raise max_stages "
                "or lower target_ess.",
                stacklevel=2,
            )
        samples, log_likelihood = self._finalize(state.particles, model_args, model_kwargs)
        stats = {name: np.asarray(history[name]) for name in _PER_STAGE}
        particle_stats = {
            "lp": np.asarray(state.log_start + state.log_likelihood),
            "acceptance_rate": np.asarray(history["particle_acceptance_rate"][-1]),
            "diverging": np.asarray(history["particle_diverging"][-1]),
            "step_size": np.asarray(history["particle_step_size"][-1]),
        }
        from ppl_control import Result

        return Result(
            method=self.method,
            samples={k: np.asarray(v) for k, v in samples.items()},
            log_weights=np.full(self.num_particles, -math.log(self.num_particles)),
            log_evidence=float(state.log_evidence),
            stats=stats,
            particle_stats=particle_stats,
            log_likelihood={k: np.asarray(v) for k, v in log_likelihood.items()},
            config=dict(self.config, num_stages=int(state.stage), final_beta=final_beta,
                        warm_start=init is not None),
        )
