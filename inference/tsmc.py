"""Tempered Sequential Monte Carlo with Hamiltonian Monte Carlo rejuvenation (TSMC).

The particles move from the prior (``beta = 0``) to the tilted target (``beta = 1``) through the
path of distributions::

    pi_beta(z)  ∝  prior(z) * exp(beta * log_likelihood(z))

where the log-likelihood is every observed site of the model (for a control problem,
``-J(z) / temperature``). A warm start replaces the prior by a Gaussian fitted to given particles
(``inference.warm_start``). Each stage (Del Moral, Doucet & Jasra 2006):

1. picks ``beta_next`` by bisection so that the ESS of the incremental weights
   ``exp((beta_next - beta) * log_likelihood)`` is ``target_ess`` of its value (``tempering``);
2. adds ``log mean(incremental weights)`` to the log-evidence estimate;
3. evaluates the gradients at the new temperature, fits the HMC metric to the weighted
   particles' positions and gradients (``metric``), then resamples (``resampling``);
4. moves the particles with HMC transitions that leave ``pi_beta_next`` invariant, gradients
   exact through the rollout (``hmc``), tuning themselves from the population (``tuning``): the
   step size toward ``target_accept``, the trajectory length by the decorrelation per gradient a
   probe move measures. By default all ``N`` particles are resampled and moved, as many moves as
   it takes them to decorrelate from where resampling put them (``rejuvenation``). With
   ``chain_length`` the moves are *waste-free* (``waste_free``, Dau & Chopin 2022): ``N / P``
   resampled particles each start a chain of ``P - 1`` moves and all ``P`` states of every chain
   are kept, so lineages travel far for about one move's gradients.

The stage is one compiled function; a run is a short Python loop over stages (tens), which drives
the progress bar and the optional checkpoint.
"""

import math
import warnings
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl_control import log_density

from . import checkpoint as checkpointing
from . import resampling as resampling_schemes
from ._blas import single_threaded_blas
from ._common import (
    check_fraction,
    check_num_particles,
    check_positive,
    check_positive_int,
    check_progress_bar,
    check_unit_interval,
    finite_min_mean,
    progress,
    raise_if_all_nonfinite,
    tempered_target,
)
from ._iterate import LayoutCache
from ._parallel import LAYOUT_FIELDS, ParticleLayout, to_host
from .metric import METRICS
from .rejuvenation import MoveSettings, rejuvenate
from .tuning import DEFAULT_MAX_UNMOVED
from .tempering import incremental_log_weights, log_ess, next_delta
from .waste_free import check_chain_length, rejuvenate_waste_free
from .warm_start import as_site_values, fit_reference, init_digest

# The trajectory length the first stage's probe starts from (it tries up to twice this); later
# stages start from what the previous one chose.
INITIAL_LEAPFROG = 8


class TSMCState(NamedTuple):
    """What the next stage needs. ``particles`` is ``(N, dim)`` in unconstrained space.

    ``log_start`` is the log density of the path's start (the prior; a warm start's Gaussian
    reference ``q``) and ``log_likelihood`` what tempering scales (the model's log-likelihood;
    ``log prior + log likelihood - log q`` for a warm start), so that ``pi_beta ∝
    exp(log_start + beta * log_likelihood)`` either way. ``num_leapfrog`` is the trajectory
    length the last stage kept (the next one probes up to twice it).
    """

    particles: jax.Array
    log_start: jax.Array
    log_likelihood: jax.Array
    cost: jax.Array
    beta: jax.Array
    step_size: jax.Array
    num_leapfrog: jax.Array
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
    num_moves: jax.Array
    num_leapfrog: jax.Array
    probe_length: jax.Array
    num_evaluations: jax.Array
    correlation: jax.Array
    unmoved_fraction: jax.Array
    position_shrinkage: jax.Array
    gradient_shrinkage: jax.Array
    particle_acceptance_rate: jax.Array
    particle_diverging: jax.Array
    particle_step_size: jax.Array


_PER_STAGE = ("beta", "ess", "acceptance_rate", "step_size", "log_evidence_increment", "cost_min",
              "cost_mean", "num_divergent", "num_finite", "num_moves", "num_leapfrog", "probe_length",
              "num_evaluations", "correlation", "unmoved_fraction", "position_shrinkage",
              "gradient_shrinkage")


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


def _optional(name: str, value, check):
    return None if value is None else check(name, value)


class TSMC:
    """Tempered SMC with self-tuning HMC moves: samples the tilted target and estimates its log
    evidence.

    Example::

        problem = models.get("pendulum")
        result = TSMC(pc.trajectory_model(problem), num_particles=256).run(jax.random.key(0))
        result.best()["controls"], result.log_evidence

    Args:
      model: a NumPyro model with continuous latent sites and at least one observed site.
      num_particles: the population size ``N`` (>= 2): what the weights, the metric fit and the
        evidence are computed from. At a fixed gradient budget each particle's lineage travels
        about ``1/N`` as far (``chain_length`` lifts that); for an accurate log evidence on sharp
        targets use more (1024: ``docs/algorithms/tsmc.md``).
      target_ess: the fraction of the ESS kept by each temperature increment, in ``(0, 1)``.
      num_moves: with ``chain_length=None``, HMC moves per particle per stage. Default ``None``:
        adapt, moving until the particles' remaining correlation with the stage's start is at most
        ``target_correlation`` (and, if set, at most ``max_unmoved`` of them are still where
        resampling put them), at least 1, or 2 when the length adapts too, at most ``max_moves``
        (``inference.tuning``).
      num_leapfrog: leapfrog steps per HMC move. Default ``None``: adapt, each stage's first move
        probing lengths up to twice the previous stage's and keeping the one that decorrelates the
        particles most per gradient (at most ``max_leapfrog``).
      max_moves: the cap on adaptive moves per stage (standard rejuvenation).
      max_leapfrog: the cap on the adaptive trajectory length.
      target_correlation: (standard rejuvenation) adaptive moves stop once the particles'
        estimated correlation with where the stage started is at or below this, in ``(0, 1)``.
      max_unmoved: (standard rejuvenation) adaptive moves also go on while more than this fraction
        of the particles are still where resampling put them, every move they tried rejected
        (``inference.tuning``). Default 1.0: off. 0.1 makes the log-evidence of very sharp targets
        more accurate for more gradients (``benchmarks.tsmc_vs_blackjax``).
      step_size: the initial HMC step size in whitened coordinates; default ``dim ** -0.25``.
      target_accept: the acceptance rate the step size adapts toward (after every move).
      resampling: ``"systematic"`` (default), ``"stratified"`` or ``"multinomial"``.
      max_stages: the largest number of stages; a run that has not reached ``beta = 1`` by then
        warns and returns its particles at the last ``beta`` (recorded in ``config``).
      metric: ``"dense"`` (default: from the particles' positions and gradients, full matrix),
        ``"diagonal"`` (the same, per coordinate) or ``"covariance"`` (the positions' covariance
        alone, without gradients); see ``inference.metric``.
      cross_fit: ``True`` (default): each particle moves with a metric fitted on the half of the
        population it did not descend from, so that the moves leave the target exactly invariant
        (``inference.metric.fit_cross_metric``). ``False``: one metric from all the particles, which
        each particle then pulls along its own direction: the population comes out slightly
        under-dispersed after every stage and the log-evidence drifts upward (+1.2 nats on the
        LQR at 256 particles, temperature 0.05). On some swing-ups that narrowing is a little
        cheaper: the euler acrobot of ``benchmarks.tsmc_vs_nuts`` took 0.87x the gradients, with a
        worse best (11.53 against 11.49 median over 5 seeds, one seed left in a poor basin).
      dense_max_dim: above this dimension a full-matrix metric falls back to the diagonal.
      step_jitter: each proposal uses ``step_size * U(1 - step_jitter, 1 + step_jitter)``.
      init_spread: a warm start (``run(..., init=...)``) tempers from a Gaussian fitted to the
        given particles with its standard deviations multiplied by this; see
        ``inference.warm_start``.
      progress_bar: a progress bar over beta (stage, beta, ESS, acceptance, moves x leapfrog, best
        cost): ``True``, ``False`` or ``"auto"`` (default: only when stderr is a terminal).
      devices: the devices the particles are sharded over (``inference._parallel``): ``None``
        (default) for every device, ``jax.devices()`` (all processes' after
        ``jax.distributed.initialize``; when ``num_particles`` is not a multiple of their number,
        the most of them that divide it), a list of devices, or a one-axis ``jax.sharding.Mesh``.
        Each device moves its share of the particles; weights, ESS, the temperature bisection,
        the metric fit, resampling and the evidence are computed across devices inside the
        compiled stage. ``Result.config["num_devices"]`` records how many were used. The result
        equals the single-device run's to float tolerance (sums over particles are added up in
        another order).
      batch_size: evaluate at most this many particles per device at once (sequential batches,
        ``lax.map``), so that very large populations on long horizons fit in memory: memory then
        grows with the batch, not the population. Default ``None``: all at once. The per-device
        population is split into the fewest equal batches no larger than this (a divisor of
        ``num_particles / num_devices`` wastes nothing; otherwise the last batch is padded).
      chain_length: waste-free moves (``inference.waste_free``, Dau & Chopin 2022): each stage
        resamples ``N / chain_length`` particles, runs a chain of ``chain_length - 1`` self-tuned
        HMC moves from each and keeps every state, so each lineage travels ``chain_length - 1``
        moves a stage for about one move's gradients. ``"auto"``: the longest chain up to 16 that
        leaves at least 8 chains (spread evenly over the devices). Default ``None``: standard
        rejuvenation, every particle resampled and moved until decorrelated. On barrier-crossing
        swing-ups it is the travel that finds the cheaper basin (cart-pole 55.97 against 65.64,
        with ``max_leapfrog=512``: ``benchmarks.tsmc_vs_nuts``); but with few chains the shares of
        separated modes drift (navigation lost one of its two routes on 4 of 6 seeds with chains
        of 16 at 256 particles), so it is not the default (``docs/algorithms/tsmc.md``).
    """

    method = "tsmc"

    def __init__(
        self,
        model,
        num_particles: int = 256,
        target_ess: float = 0.5,
        num_moves: int | None = None,
        num_leapfrog: int | None = None,
        max_moves: int = 10,
        max_leapfrog: int = 128,
        target_correlation: float = 0.5,
        max_unmoved: float = DEFAULT_MAX_UNMOVED,
        step_size: float | None = None,
        target_accept: float = 0.65,
        resampling: str = "systematic",
        max_stages: int = 200,
        metric: str = "dense",
        cross_fit: bool = True,
        dense_max_dim: int = 1000,
        step_jitter: float = 0.5,
        init_spread: float = 1.2,
        progress_bar: bool | str = "auto",
        devices=None,
        batch_size: int | None = None,
        chain_length: int | str | None = None,
    ):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        if not 0.0 <= step_jitter < 1.0:
            raise ValueError(f"step_jitter must lie in [0, 1), got {step_jitter!r}")
        self.model = model
        self.num_particles = check_num_particles(num_particles)
        self.target_ess = check_fraction("target_ess", target_ess)
        self.num_moves = _optional("num_moves", num_moves, check_positive_int)
        self.num_leapfrog = _optional("num_leapfrog", num_leapfrog, check_positive_int)
        self.max_moves = check_positive_int("max_moves", max_moves)
        self.max_leapfrog = check_positive_int("max_leapfrog", max_leapfrog)
        self.target_correlation = check_fraction("target_correlation", target_correlation)
        self.max_unmoved = check_unit_interval("max_unmoved", max_unmoved, closed_low=True, closed_high=True)
        self.step_size = _optional("step_size", step_size, check_positive)
        self.target_accept = check_fraction("target_accept", target_accept)
        self.resample = resampling_schemes.get(resampling)
        self.resampling = resampling
        self.max_stages = check_positive_int("max_stages", max_stages)
        self.metric = metric
        if not isinstance(cross_fit, bool):
            raise ValueError(f"cross_fit must be True or False, got {cross_fit!r}")
        self.cross_fit = cross_fit
        self.dense_max_dim = check_positive_int("dense_max_dim", dense_max_dim)
        self.step_jitter = float(step_jitter)
        self.init_spread = check_positive("init_spread", init_spread)
        self.progress_bar = check_progress_bar(progress_bar)
        self.layout = ParticleLayout.build(self.num_particles, devices, batch_size)
        self.chain_length = check_chain_length(chain_length, self.num_particles, self.layout.num_devices,
                                               self.num_moves)
        self.move_settings = MoveSettings(
            num_moves=self.num_moves, max_moves=self.max_moves, num_leapfrog=self.num_leapfrog,
            max_leapfrog=self.max_leapfrog, target_correlation=self.target_correlation,
            target_accept=self.target_accept, step_jitter=self.step_jitter, max_unmoved=self.max_unmoved,
            cross_fit=self.cross_fit,
        )
        # Compiled once per instance; later runs (other keys, same argument shapes) reuse them.
        self._init = eqx.filter_jit(self._init_impl)
        self._stage = eqx.filter_jit(self._stage_impl)
        self._finalize = eqx.filter_jit(self._finalize_impl)
        self._fit_reference = eqx.filter_jit(self._fit_reference_impl)
        # The model's latent layout, traced abstractly once per argument signature: a warm start in a
        # control loop calls ``run`` with a new state every step, and tracing the rollout each time
        # cost more than a short re-plan.
        self._layouts = LayoutCache(model)

    @property
    def config(self) -> dict:
        return dict(
            num_particles=self.num_particles, target_ess=self.target_ess, num_moves=self.num_moves,
            num_leapfrog=self.num_leapfrog, max_moves=self.max_moves, max_leapfrog=self.max_leapfrog,
            target_correlation=self.target_correlation, max_unmoved=self.max_unmoved,
            step_size=self.step_size,
            target_accept=self.target_accept, resampling=self.resampling, max_stages=self.max_stages,
            metric=self.metric, cross_fit=self.cross_fit, dense_max_dim=self.dense_max_dim,
            step_jitter=self.step_jitter,
            init_spread=self.init_spread, chain_length=self.chain_length, **self.layout.config,
        )

    def _metric_kind(self, dim: int) -> str:
        return "diagonal" if dim > self.dense_max_dim else self.metric

    # -- compiled pieces ---------------------------------------------------------------------

    def _init_impl(self, rng_key, model_args, model_kwargs, reference):
        ld = log_density(self.model, *model_args, **model_kwargs)
        if reference is None:
            particles = ld.sample_prior(rng_key, self.num_particles)
        else:
            particles = reference.sample(rng_key, self.num_particles)
        particles = self.layout.constrain(particles)
        lp, ll, cost = self.layout.map(lambda z: path_target(ld, reference, 0.0)(z)[1])(particles)  # no gradient
        step = self.step_size if self.step_size is not None else ld.dim ** -0.25
        length = self.num_leapfrog if self.num_leapfrog is not None else INITIAL_LEAPFROG
        zero = jnp.zeros((), particles.dtype)
        return TSMCState(particles, lp, ll, cost, zero, zero + step, jnp.asarray(length, jnp.int32),
                         zero, jnp.zeros((), jnp.int32))

    def _fit_reference_impl(self, init_values, model_args, model_kwargs):
        ld = log_density(self.model, *model_args, **model_kwargs)
        return fit_reference(jax.vmap(ld.unconstrain)(init_values), self.init_spread)

    def _stage_impl(self, stages_key, state: TSMCState, model_args, model_kwargs, reference):
        """One stage. ``stages_key`` is the run's key for all stages; this stage's key is
        ``fold_in(stages_key, state.stage)``, derived here so the Python loop never needs the
        stage counter on the host before dispatching the next stage."""
        ld = log_density(self.model, *model_args, **model_kwargs)
        n, dim = state.particles.shape
        rng_key = jax.random.fold_in(stages_key, state.stage)

        # 1-2. next temperature, reweighting, evidence increment. Each of the bisection's steps
        # sums over all particles: with several devices they are gathered once and every device
        # bisects alone, rather than exchanging partial sums at every step.
        log_likelihood = self.layout.replicate(state.log_likelihood)
        delta, last = next_delta(log_likelihood, 1.0 - state.beta, self.target_ess)
        beta = jnp.where(last, jnp.ones_like(state.beta), state.beta + delta)
        log_w = incremental_log_weights(log_likelihood, delta)
        log_evidence_increment = logsumexp(log_w) - math.log(n)
        weights = jnp.exp(log_w - logsumexp(log_w))

        # 3-4. gradients at the new temperature, metric, resampling, self-tuned HMC moves.
        value_and_grad = jax.value_and_grad(path_target(ld, reference, beta), has_aux=True)
        aux = (state.log_start, state.log_likelihood, state.cost)
        arguments = (rng_key, state.particles, weights, aux, value_and_grad, self.resample,
                     self._metric_kind(dim), state.step_size, state.num_leapfrog, self.move_settings)
        if self.chain_length is None:
            moved = rejuvenate(*arguments, self.layout)
        else:
            moved = rejuvenate_waste_free(*arguments, self.chain_length, self.layout)
        z, _, (lp, ll, cost), step_size, length, moves, metric_info = moved
        cost_min, cost_mean = finite_min_mean(cost)
        new_state = TSMCState(z, lp, ll, cost, beta, step_size, length,
                              state.log_evidence + log_evidence_increment, state.stage + 1)
        info = StageInfo(
            beta=beta,
            ess=jnp.exp(log_ess(log_w)),
            acceptance_rate=moves.acceptance_rate,
            step_size=moves.step_size,
            log_evidence_increment=log_evidence_increment,
            cost_min=cost_min,
            cost_mean=cost_mean,
            num_divergent=moves.num_divergent,
            num_finite=jnp.sum(jnp.isfinite(state.log_likelihood)),
            num_moves=moves.num_moves,
            num_leapfrog=moves.num_leapfrog,
            probe_length=moves.probe_length,
            num_evaluations=moves.num_evaluations,
            correlation=moves.correlation,
            unmoved_fraction=moves.unmoved_fraction,
            position_shrinkage=metric_info.position_shrinkage,
            gradient_shrinkage=metric_info.gradient_shrinkage,
            particle_acceptance_rate=moves.particle_acceptance_rate,
            particle_diverging=moves.particle_diverging,
            particle_step_size=moves.particle_step_size,
        )
        return new_state, info

    def _finalize_impl(self, particles, model_args, model_kwargs):
        ld = log_density(self.model, *model_args, **model_kwargs)
        return self.layout.map(ld.sites)(particles)

    # -- the run -------------------------------------------------------------------------------

    def run(self, rng_key, *model_args, init=None, checkpoint: str | None = None, **model_kwargs):
        """Run TSMC from the prior (or a warm start) to ``beta = 1``.

        Args:
          rng_key: a JAX PRNG key; the same key gives the same result, bit for bit.
          *model_args: passed to the model (``pc.trajectory_model``'s measured state, say).
          **model_kwargs: passed to the model.
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
        # Left out: max_stages (resuming with a larger budget is how a stopped run continues), and
        # where the particles live (a run may resume on other devices or with other batches).
        fingerprint = {k: v for k, v in self.config.items() if k != "max_stages" and k not in LAYOUT_FIELDS}
        fingerprint.update(method=self.method, key=np.asarray(jax.random.key_data(rng_key)).ravel().tolist())
        reference = None
        if init is not None:
            names = self._layouts(model_args, model_kwargs).latent_names
            values = as_site_values(init, names)
            fingerprint["init"] = init_digest(values)
            reference = self._fit_reference(values, model_args, model_kwargs)
        loaded = checkpointing.load(checkpoint, TSMCState, fingerprint) if checkpoint else None
        if loaded is not None:
            state, history = loaded
            state = self.layout.put(TSMCState(*state))
        else:
            state = self._init(key_init, model_args, model_kwargs, reference)
            raise_if_all_nonfinite(to_host(state.log_likelihood), "log-likelihood (cost)", "TSMC")
            history = {name: [] for name in StageInfo._fields}

        with single_threaded_blas(), progress(1.0, "TSMC", self.progress_bar, quantity="beta") as bar:
            beta, stage = jax.device_get((state.beta, state.stage))
            bar.update(float(beta))
            while beta < 1.0 and stage < self.max_stages:
                previous_beta = beta
                state, info = self._stage(key_stages, state, model_args, model_kwargs, reference)
                # One small transfer per stage: the per-stage scalars and the loop's own two
                # (beta, stage); the per-particle fields stay where they are until the end (only
                # the last stage's are reported). Every other host read would be one more wait
                # for the device between stages.
                scalars, beta, stage = jax.device_get(
                    ({name: getattr(info, name) for name in _PER_STAGE}, state.beta, state.stage))
                info = info._replace(**scalars)
                for name, value in info._asdict().items():
                    history[name].append(value)
                bar.set_description_str(f"TSMC stage {int(stage)}", refresh=False)
                bar.set_postfix_str(
                    f"beta={float(info.beta):.3g} ess={float(info.ess):.0f} "
                    f"acc={float(info.acceptance_rate):.2f} moves={int(info.num_moves)}x{int(info.num_leapfrog)} "
                    f"cost_min={float(info.cost_min):.4g}", refresh=False,
                )  # drawn by the update below
                bar.update(float(beta) - float(previous_beta))
                if checkpoint:
                    self._save(checkpoint, state, history, fingerprint)

        final_beta = float(beta)
        if final_beta < 1.0:
            warnings.warn(
                f"TSMC stopped at beta={final_beta:.4g} after max_stages={self.max_stages} stages; "
                "the particles target the tempered, not the final, distribution. Raise max_stages "
                "or lower target_ess.",
                stacklevel=2,
            )
        samples, log_likelihood = to_host(self._finalize(state.particles, model_args, model_kwargs))
        stats = {name: np.asarray(history[name]) for name in _PER_STAGE}
        last = {name: history[name][-1] for name in ("particle_acceptance_rate", "particle_diverging",
                                                     "particle_step_size")}
        last, lp, log_evidence = to_host((last, state.log_start + state.log_likelihood, state.log_evidence))
        particle_stats = {
            "lp": np.asarray(lp),
            "acceptance_rate": np.asarray(last["particle_acceptance_rate"]),
            "diverging": np.asarray(last["particle_diverging"]),
            "step_size": np.asarray(last["particle_step_size"]),
        }
        from ppl_control import Result

        return Result(
            method=self.method,
            samples={k: np.asarray(v) for k, v in samples.items()},
            log_weights=np.full(self.num_particles, -math.log(self.num_particles)),
            log_evidence=float(log_evidence),
            stats=stats,
            particle_stats=particle_stats,
            log_likelihood={k: np.asarray(v) for k, v in log_likelihood.items()},
            config=dict(self.config, num_stages=int(stage), final_beta=final_beta,
                        warm_start=init is not None),
        )

    def _save(self, path, state, history, fingerprint):
        """Checkpoint on the host; with several processes, every one gathers and the first writes."""
        state, history = to_host((state, history))
        if jax.process_index() == 0:
            checkpointing.save(path, state, history, fingerprint)
