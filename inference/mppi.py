"""MPPI: model predictive path integral optimisation, a gradient-free baseline.

Open-loop MPPI (Williams et al. 2017) in the flat unconstrained space of the model's latent sites.
The score of a point is the model's negative log density ``S(z) = -log p(z) - log L(z)`` (for
``trajectory_model``: ``J / lambda_model - log prior``). Each iteration, around the nominal ``mu``:

    eps_0 = 0,  eps_i ~ N(0, noise_scale^2 I)   (i = 1 .. N-1)      the nominal is sample 0
    w_i   = exp(-(S(mu + eps_i) - min_j S_j) / temperature),  normalised
    mu   <- mu + learning_rate * sum_i w_i eps_i

The temperature rule is the standard fixed one, in units of the log density: at
``temperature = 1`` the weights are the target density's ratios ``pi(z_i) / pi(z_j)``, the path
integral's importance weights; smaller is greedier. Subtracting ``min S`` only guards the
exponent. A non-finite score gets weight zero. ``mu`` starts at the mean of ``num_particles``
prior draws. Each iteration costs ``N`` model evaluations.

``fresh_noise="noise_key"`` redraws a stochastic model's noise key at every iteration (see MDPO's
"Fresh noise"): the samples of one iteration share their noise, so their weights compare plans
on the same scenarios, and the nominal follows the expected score rather than one fixed sample.
The ``Result`` (the last iteration's samples) reports costs on the arguments given to ``run``.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from ppl_control import log_density

from ._common import (
    check_num_particles,
    check_progress_bar,
    check_positive,
    check_positive_int,
    normalise_log_weights,
    particles_to_result,
    finite_min_mean,
    raise_if_all_nonfinite,
)
from ._iterate import (
    LayoutCache,
    check_fresh_noise,
    final_sites,
    iterate,
    iteration_kwargs,
    objective_and_cost,
    run_fingerprint,
)
from ._parallel import ParticleLayout
from ._warm import finite_moments, select_rows, site_values, unconstrained


class MPPIState(NamedTuple):
    key: jax.Array
    mean: jax.Array  # (dim,) the nominal
    population: jax.Array  # (N, dim) the last iteration's samples
    log_weights: jax.Array  # (N,) their normalised MPPI weights
    cost: jax.Array  # (N,)


class MPPI:
    """Model predictive path integral optimisation on a NumPyro model (see the module docstring).

    Args:
      model: the NumPyro model.
      num_particles: samples per iteration ``N`` (>= 2), the nominal among them.
      num_steps: iterations.
      learning_rate: step on the nominal toward the weighted perturbation. Default 1 (standard).
      noise_scale: standard deviation of the perturbations in the unconstrained space. Default 0.3.
      temperature: the MPPI temperature, in units of the model's log density. Default 1.
      progress_bar: ``"auto"`` (default) shows a tqdm bar on a terminal or in a notebook, not in
        a pipe or a log; ``True`` always, ``False`` never.
      devices: the devices the particles are sharded over: ``None`` (default) for every device
        (``jax.devices()``, the most of them that divide ``num_particles``), a list of devices or
        a one-axis ``jax.sharding.Mesh``; see ``inference._parallel``. ``config["num_devices"]``
        records how many were used.
      batch_size: evaluate at most this many particles per device at once (sequential batches),
        bounding memory; default ``None``: all at once.
      fresh_noise: ``None`` (default), or the name of the model's keyword argument that takes the
        key of its noise (``"noise_key"``), redrawn at every iteration (module docstring).

    ``run(rng_key, *model_args, init=None, **model_kwargs) -> pc.Result`` (``init``: a warm start,
    see ``run``): the last iteration's samples with
    their MPPI weights; ``stats``: ``cost_min``, ``cost_mean``, ``ess`` (effective sample size of
    the weights) per iteration and ``num_evaluations`` (model evaluations per iteration).
    """

    method = "mppi"

    def __init__(
        self,
        model,
        num_particles: int = 64,
        num_steps: int = 100,
        learning_rate: float = 1.0,
        noise_scale: float = 0.3,
        temperature: float = 1.0,
        progress_bar: bool | str = "auto",
        devices=None,
        batch_size: int | None = None,
        fresh_noise: str | None = None,
    ):
        self.model = model
        self.fresh_noise = check_fresh_noise(model, fresh_noise)
        self.num_particles = check_num_particles(num_particles)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.learning_rate = check_positive("learning_rate", learning_rate)
        self.noise_scale = check_positive("noise_scale", noise_scale)
        self.temperature = check_positive("temperature", temperature)
        self.progress_bar = check_progress_bar(progress_bar)
        self.layout = ParticleLayout.build(self.num_particles, devices, batch_size)
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
            noise_scale=self.noise_scale,
            temperature=self.temperature,
            **({} if self.fresh_noise is None else dict(fresh_noise=self.fresh_noise)),
            **self.layout.config,
        )

    def _init_state(self, args, kwargs, key, init_values=None):
        ld = log_density(self.model, *args, **kwargs)
        key, sub = jax.random.split(key)
        if init_values is None:
            z = ld.sample_prior(sub, self.num_particles)
            mean = jnp.mean(z, axis=0)
        else:  # a warm start: the nominal is the mean of the given particles
            given, finite = unconstrained(ld, init_values)
            z = select_rows(given, finite, self.num_particles)
            mean = finite_moments(given, finite)[0]
        n = self.num_particles
        uniform = jnp.full((n,), -jnp.log(n), z.dtype)
        return self.layout.constrain(MPPIState(key, mean, z, uniform, jnp.full((n,), jnp.inf, z.dtype)))

    def _run_chunk(self, args, kwargs, noise_root, state, steps):
        n = self.num_particles

        def step(state, k):
            ld = log_density(self.model, *args, **iteration_kwargs(kwargs, self.fresh_noise, noise_root, k))
            evaluate = self.layout.map(objective_and_cost(ld))
            key, sub = jax.random.split(state.key)
            eps = self.noise_scale * jax.random.normal(sub, (n, state.mean.shape[0]), state.mean.dtype)
            eps = self.layout.constrain(eps.at[0].set(0.0))
            z = state.mean + eps
            objective, cost = evaluate(z)
            ok = jnp.isfinite(objective)
            shifted = objective - jnp.min(jnp.where(ok, objective, jnp.inf))
            log_w = normalise_log_weights(jnp.where(ok, -shifted / self.temperature, -jnp.inf))
            w = jnp.exp(log_w)
            # An all-non-finite population leaves the nominal where it is (nansum of nothing).
            mean = state.mean + self.learning_rate * jnp.where(jnp.any(ok), w @ eps, 0.0)
            cost_min, cost_mean = finite_min_mean(cost, ok)
            stats = dict(
                cost_min=cost_min,
                cost_mean=cost_mean,
                ess=jnp.exp(-logsumexp(2.0 * log_w)),
                num_evaluations=jnp.asarray(n, jnp.int32),
            )
            return self.layout.constrain(MPPIState(key, mean, z, log_w, cost)), stats

        return jax.lax.scan(step, state, steps)

    def run(self, rng_key, *args, init=None, checkpoint: str | None = None, **kwargs):
        """Run MPPI from the prior mean, or from ``init``; see the class docstring for the result.

        Args:
          rng_key: a JAX PRNG key; the same key gives the same result, bit for bit.
          *args: positional arguments of the model.
          **kwargs: keyword arguments of the model.
          init: a warm start, a ``pc.Result`` or a dict latent site -> constrained values with a
            leading particle axis (>= 2 particles): the nominal starts at their mean in the
            unconstrained space (particles with a non-finite value skipped); the perturbation
            scale stays ``noise_scale``, MPPI's fixed sampling distribution.
          checkpoint: a file path; the state is saved there after every compiled chunk of
            iterations (about every ``num_steps / 20``), and a run started with an existing
            checkpoint of the same configuration, key and ``init`` resumes from it, bit for bit.
        """
        ld = self._layouts(args, kwargs)  # traced once per argument signature
        values = None if init is None else site_values(init, ld)
        noise_root = None
        if self.fresh_noise is not None:  # the run's key feeds the noise too; without, as before
            rng_key, noise_root = jax.random.split(rng_key)
        state = self._init(args, kwargs, rng_key, values)
        state, stats = iterate(
            lambda s, steps: self._chunk(args, kwargs, noise_root, s, steps),
            state,
            self.num_steps,
            desc=self.method,
            progress_bar=self.progress_bar,
            postfix=lambda s: f"nominal cost {float(s.cost[0]):.4g}",
            checkpoint=checkpoint,
            fingerprint=run_fingerprint(self.method, self.config, rng_key, ld, values),
        )
        raise_if_all_nonfinite(state.log_weights, "log density", self.method)
        return particles_to_result(
            self.method, None, state.population, state.log_weights, stats=stats, config=self.config,
            sites=self._sites(args, kwargs, state.population),
        )
