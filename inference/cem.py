"""CEM: the cross-entropy method with elitism, a gradient-free baseline.

Searches the flat unconstrained space of the model's latent sites for high values of the log
target ``log p(z) + log L(z)`` (for ``trajectory_model``: ``log prior - J / lambda``) with a
diagonal Gaussian ``N(mu, diag(sigma^2))`` (Rubinstein 1999; de Boer et al. 2005), keeping the
elites across iterations as in iCEM (Pinneri et al. 2020):

0. the population is ``num_particles`` prior draws; ``mu, sigma`` are their mean and standard
   deviation;
1. each iteration, the ``K = ceil(elite_fraction * N)`` best of the population (clipped to
   ``[1, N - 1]``) are the elites; their mean and standard deviation ``(m, s)`` pull the sampler::

       mu    <- mu    + learning_rate * (m - mu)
       sigma <- max(sigma + learning_rate * (s - sigma), min_std)

2. ``N - K`` fresh draws from ``N(mu, diag(sigma^2))`` join the ``K`` elites to form the next
   population, so the best point found is never lost.

Non-finite scores rank last. Each iteration costs ``N - K`` model evaluations (the elites' scores
are kept); the initial population costs ``N``.
"""

import math
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp

from ppl_control import log_density

from ._common import (
    check_num_particles,
    check_progress_bar,
    check_positive,
    check_positive_int,
    check_unit_interval,
    finite_min_mean,
    particles_to_result,
    raise_if_all_nonfinite,
)
from ._iterate import LayoutCache, final_sites, iterate, objective_and_cost, run_fingerprint
from ._parallel import ParticleLayout
from ._warm import finite_moments, select_rows, site_values, unconstrained


class CEMState(NamedTuple):
    key: jax.Array
    mean: jax.Array  # (dim,)
    std: jax.Array  # (dim,)
    population: jax.Array  # (N, dim), elites first after every iteration
    score: jax.Array  # (N,) log target, -inf where not finite
    cost: jax.Array  # (N,)


def _evaluate(ld, z, layout: ParticleLayout):
    objective, cost = layout.map(objective_and_cost(ld))(z)
    score = -objective
    return jnp.where(jnp.isfinite(score), score, -jnp.inf), cost


class CEM:
    """The cross-entropy method on a NumPyro model (see the module docstring).

    Args:
      model: the NumPyro model.
      num_particles: population size ``N`` (>= 2).
      num_steps: iterations.
      learning_rate: how far ``mu`` and ``sigma`` move toward the elites' moments, in ``(0, 1]``
        (1 is classic CEM). Default 0.5.
      elite_fraction: the fraction of the population kept as elites, in ``(0, 1)``. Default 0.2.
      min_std: floor on ``sigma``, so the search never collapses to a point. Default 1e-3.
      progress_bar: ``"auto"`` (default) shows a tqdm bar on a terminal or in a notebook, not in
        a pipe or a log; ``True`` always, ``False`` never.
      devices: the devices the particles are sharded over: ``None`` (default) for every device
        (``jax.devices()``, the most of them that divide ``num_particles``), a list of devices or
        a one-axis ``jax.sharding.Mesh``; see ``inference._parallel``. ``config["num_devices"]``
        records how many were used.
      batch_size: evaluate at most this many particles per device at once (sequential batches),
        bounding memory; default ``None``: all at once.

    ``run(rng_key, *model_args, init=None, **model_kwargs) -> pc.Result`` (``init``: a warm start,
    see ``run``): the final population, the elites
    weighted uniformly and the rest zero; ``stats``: ``cost_min``, ``cost_mean`` of each iteration's
    population, ``std_mean`` (mean of ``sigma``), ``num_evaluations`` (model evaluations per
    iteration, the initial population's ``N`` counted in the first, so the sum is the total).
    """

    method = "cem"

    def __init__(
        self,
        model,
        num_particles: int = 64,
        num_steps: int = 100,
        learning_rate: float = 0.5,
        elite_fraction: float = 0.2,
        min_std: float = 1e-3,
        progress_bar: bool | str = "auto",
        devices=None,
        batch_size: int | None = None,
    ):
        self.model = model
        self.num_particles = check_num_particles(num_particles)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.learning_rate = check_unit_interval("learning_rate", learning_rate, closed_high=True)
        self.elite_fraction = check_unit_interval("elite_fraction", elite_fraction)
        self.min_std = check_positive("min_std", min_std)
        self.progress_bar = check_progress_bar(progress_bar)
        self.layout = ParticleLayout.build(self.num_particles, devices, batch_size)
        self.num_elites = min(max(math.ceil(self.elite_fraction * self.num_particles), 1), self.num_particles - 1)
        self._init = eqx.filter_jit(self._init_state)
        self._chunk = eqx.filter_jit(self._run_chunk)
        # The host-side layout per argument signature, and a compiled finalisation: a repeated run
        # (an MPC re-plan) traces nothing.
        self._sites = eqx.filter_jit(lambda args, kwargs, z: final_sites(self.model, self.layout, args, kwargs, z))
        self._layouts = LayoutCache(model)

    @property
    def config(self) -> dict:
        return dict(
            num_particles=self.num_particles,
            num_steps=self.num_steps,
            learning_rate=self.learning_rate,
            elite_fraction=self.elite_fraction,
            num_elites=self.num_elites,
            min_std=self.min_std,
            **self.layout.config,
        )

    def _init_state(self, args, kwargs, key, init_values=None):
        ld = log_density(self.model, *args, **kwargs)
        key, sub = jax.random.split(key)
        if init_values is None:
            z = ld.sample_prior(sub, self.num_particles)
            mean, std = jnp.mean(z, axis=0), jnp.std(z, axis=0)
        else:  # a warm start: the given particles are the population and fix mu and sigma
            given, finite = unconstrained(ld, init_values)
            z = select_rows(given, finite, self.num_particles)
            mean, std = finite_moments(given, finite)
        score, cost = _evaluate(ld, z, self.layout)
        order = jnp.argsort(-score)  # stable: ties keep their order
        state = CEMState(key, mean, jnp.maximum(std, self.min_std), z[order], score[order], cost[order])
        return self.layout.constrain(state)

    def _run_chunk(self, args, kwargs, state, steps):
        ld = log_density(self.model, *args, **kwargs)
        n, k = self.num_particles, self.num_elites
        lr = self.learning_rate

        def step(state, _):
            elites = state.population[:k]
            mean = state.mean + lr * (jnp.mean(elites, axis=0) - state.mean)
            std = state.std + lr * (jnp.std(elites, axis=0) - state.std)
            std = jnp.maximum(std, self.min_std)
            key, sub = jax.random.split(state.key)
            fresh = mean + std * jax.random.normal(sub, (n - k, mean.shape[0]), mean.dtype)
            fresh_score, fresh_cost = _evaluate(ld, fresh, self.layout)
            population = jnp.concatenate([elites, fresh])
            score = jnp.concatenate([state.score[:k], fresh_score])
            cost = jnp.concatenate([state.cost[:k], fresh_cost])
            order = jnp.argsort(-score)
            cost_min, cost_mean = finite_min_mean(cost, jnp.isfinite(score))
            stats = dict(
                cost_min=cost_min,
                cost_mean=cost_mean,
                std_mean=jnp.mean(std),
                num_evaluations=jnp.asarray(n - k, jnp.int32),
            )
            state = CEMState(key, mean, std, population[order], score[order], cost[order])
            return self.layout.constrain(state), stats

        return jax.lax.scan(step, state, steps)

    def run(self, rng_key, *args, init=None, checkpoint: str | None = None, **kwargs):
        """Run CEM from the prior, or from ``init``; see the class docstring for the result.

        Args:
          rng_key: a JAX PRNG key; the same key gives the same result, bit for bit.
          *args: positional arguments of the model.
          **kwargs: keyword arguments of the model.
          init: a warm start, a ``pc.Result`` or a dict latent site -> constrained values with a
            leading particle axis (>= 2 particles): they are the initial population (cycled or
            evenly subsampled to ``num_particles``), and their mean and standard deviation (in
            the unconstrained space, particles with a non-finite value skipped) the initial
            ``mu, sigma``.
          checkpoint: a file path; the state is saved there after every compiled chunk of
            iterations (about every ``num_steps / 20``), and a run started with an existing
            checkpoint of the same configuration, key and ``init`` resumes from it, bit for bit.
        """
        ld = self._layouts(args, kwargs)  # traced once per argument signature
        values = None if init is None else site_values(init, ld)
        state = self._init(args, kwargs, rng_key, values)
        state, stats = iterate(
            lambda s, steps: self._chunk(args, kwargs, s, steps),
            state,
            self.num_steps,
            desc=self.method,
            progress_bar=self.progress_bar,
            postfix=lambda s: f"best cost {float(s.cost[0]):.4g}",
            checkpoint=checkpoint,
            fingerprint=run_fingerprint(self.method, self.config, rng_key, ld, values),
        )
        raise_if_all_nonfinite(state.score, "log density", self.method)
        # The initial population's evaluations are counted in the first iteration.
        stats["num_evaluations"] = stats["num_evaluations"].at[0].add(self.num_particles)
        elite = jnp.arange(self.num_particles) < self.num_elites
        log_weights = jnp.where(elite & jnp.isfinite(state.score), 0.0, -jnp.inf)
        return particles_to_result(
            self.method, None, state.population, log_weights, stats=stats, config=self.config,
            sites=self._sites(args, kwargs, state.population),
        )
