"""MDPO: gradient descent through the differentiable rollout with sensitivity-scaled exploration.

The problem: minimise the negative log density of the model over the flat unconstrained vector
``z`` (the decision variables)::

    f(z) = -log p(z) - log L(z) = -log p(z) + J(z) / lambda      (for ``trajectory_model``)

with ``num_particles`` independent restarts drawn from the prior, updated in parallel. Each
iteration ``k`` takes an optimiser step (Adam by default) and adds Gaussian exploration noise to
the decision variables, with one scale per *time step*::

    z_{k+1} = z_k + optimiser_update(grad f(z_k)) + sigma_k[b(i)] * xi_i,   xi ~ N(0, I)

where ``b(i)`` is the time block of coordinate ``i``. The noise is *annealed preconditioned
Langevin* noise: plain Langevin dynamics ``z <- z - eta grad f + sqrt(2 eta T) xi`` with step
``eta`` samples ``p(z) exp(-J / lambda)^(1/T)``, so ``T = 1`` is the model's own Boltzmann target
and ``T -> 0`` is its mode. The optimiser's effective step per unit gradient differs per block
(Adam's is about ``learning_rate / |gradient|``), and MDPO uses exactly that step in the noise,
with a per-block temperature that follows the gradient's sensitivity (Model-Driven Policy
Optimization: spend exploration where the objective is flat, keep the iterate steady where it is
sensitive) and anneals. Per particle and block ``b``::

    s_k[b]      = sqrt(mean_{i in b} (df/dz_i)^2)                 sensitivity (RMS gradient)
    S_k[b]      = rho S_{k-1}[b] + (1 - rho) s_k[b]               smoothed over iterations,
    S^_k[b]     = S_k[b] / (1 - rho^(k+1))                        bias-corrected as in Adam
    a_k         = sqrt(mean_i update_i^2), smoothed and bias-corrected likewise   (A^_k)
    eta_k[b]    = A^_k / max(S^_k[b], 1)                          effective step per unit gradient
    r_k[b]      = S^_k[b] / mean_b S^_k[b]                        sensitivity relative to the mean
    w_k[b]      = 1 / (r_k[b] + kappa),  normalised to mean_b w_k = 1
    tau_k[b]    = noise_scale * (1 - k / num_steps)^noise_decay * w_k[b]
    sigma_k[b]  = tau_k[b] * sqrt(2 eta_k[b])

``update`` is the inner optimiser's update (before the noise), so ``A^`` is about the learning
rate for Adam. ``tau^2`` is the exploration temperature of block ``b`` relative to the model's:
``noise_scale = 1`` (the default) starts an average block at the model's own temperature; ``w``
makes flat blocks hotter (``(1 + kappa) / kappa`` times an average block's ``tau``, 3x for the
default ``kappa = 0.5``) and sensitive ones colder, with the mean of ``tau`` over blocks exactly
the annealed ``noise_scale``: the adaptive profile *redistributes* a fixed temperature budget.
With ``adaptive_noise=False`` the temperature is flat (``w = 1``), the same mean. The floor of 1
on the sensitivity (one nat of negative log density per unconstrained unit, the gradient of a
standard-normal prior one standard deviation out) bounds the noise where the gradient vanishes:
a flat block's noise is ``tau sqrt(2 A^)``, about ``0.32 tau`` for Adam's default learning rate.

Why the step and not an absolute scale: noise of a fixed size in ``z`` is harmless on a flat
objective and ruinous on a stiff one (``f = J / lambda`` with a small ``lambda``), where every
evaluation then lands far up the valley walls, the gradients there are huge, and Adam's second
moment (memory ~1000 steps) keeps its later steps tiny, so the run never settles. Scaled by the
optimiser's step per unit gradient, the noise shrinks as ``1 / sqrt(|gradient|)`` exactly where
the objective is stiff, and the gradients it causes stay commensurate with the optimiser's own.
``noise_scale = 0`` is plain multi-start gradient descent (``GradientDescent``), computed by the
very same code.

Time blocks: a latent site's leading axis is time (``trajectory_model``'s ``controls`` of shape
``(horizon, action_dim)`` gives one block per time step); a scalar site, or a site not listed in
``time_sites`` when that is given, is a single block. Blocks are numbered site by site in the
order of the flat vector (site names sorted), and ``Result.stats["noise_scale"]`` has shape
``(num_steps, num_blocks)`` (the mean over particles of ``sigma_k``).

Each restart keeps its best iterate (lowest ``f`` among the ``num_steps`` evaluated iterates
``z_0 .. z_{K-1}``; a run costs exactly ``num_particles * num_steps`` gradient evaluations), which
is what the ``Result`` holds. A particle
whose objective or gradient is NaN or inf never becomes its best iterate: it steps again from its
best iterate with the gradient recorded there (zero if it never had a finite evaluation), so
nothing non-finite reaches the optimiser state and the restart is not poisoned.

Fresh noise (``fresh_noise="noise_key"``): a stochastic model (``models.rddl.trajectory_model``,
``pc.policy_model`` with process noise) takes the key of its noise scenarios as a keyword argument.
By default the model is evaluated on one fixed set of scenarios (common random numbers), so ``f``
is their sample average and the plan fits those scenarios. With ``fresh_noise`` naming that
argument, iteration ``k`` evaluates the model with ``noise_key = fold_in(key, k)``: every step's
gradient is an unbiased estimate of the gradient of the *expected* objective (stochastic
approximation, as JaxPlan trains), so a few scenarios per step optimise the expectation itself.
The objective values of two iterations then sit on different noise and are not comparable, so the
best iterate is chosen on a fixed, held-out evaluation set instead: the model called with the
arguments given to ``run`` (its own fixed scenarios, or the ``noise_key`` passed to ``run``),
evaluated (no gradient) every ``eval_interval`` iterations and after the last one, on two
candidates per restart: the current iterate and the mean of the iterates since the previous
evaluation. The mean is Polyak-Ruppert averaging (Polyak & Juditsky 1992): a stochastic gradient
step leaves the iterate jittering about the optimum by an amount that grows with the gradient's
noise (few scenarios per step), and averaging the window cancels most of that jitter. A
non-finite particle steps again from its last finite iterate.
"""

from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ppl_control import log_density

from ._common import (
    check_nonnegative,
    check_num_particles,
    check_progress_bar,
    check_positive,
    check_positive_int,
    finite_min_mean,
    particles_to_result,
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
from ._warm import select_rows, site_values, unconstrained


class SensitivityNoiseState(NamedTuple):
    """State of ``sensitivity_noise``: the key lives here and is split at every update."""

    count: jax.Array  # iterations done
    key: jax.Array
    sensitivity: jax.Array  # (..., num_blocks) exponential moving average, not bias-corrected
    step: jax.Array  # (...,) moving average of the inner update's RMS, not bias-corrected
    scale: jax.Array  # (..., num_blocks) the noise scale of the last update
    inner_state: Any


def time_blocks(log_density_, time_sites=None) -> tuple[np.ndarray, int, dict]:
    """Block index of every coordinate of the flat vector ``z`` (``log_density_``: a
    ``LogDensity`` or an ``_iterate.ModelLayout``).

    Returns:
      ``(block_ids, num_blocks, layout)``: ``block_ids`` of shape ``(dim,)`` (int32), the number of
      blocks, and ``layout`` site -> number of blocks the site contributes.
    """
    shapes = jax.eval_shape(log_density_.unravel, jnp.zeros(log_density_.dim))
    ids, layout, offset = {}, {}, 0
    for name in sorted(shapes):  # the flat vector's order (ravel_pytree sorts dict keys)
        shape = shapes[name].shape
        timed = len(shape) >= 1 and (time_sites is None or name in time_sites)
        n = shape[0] if timed else 1
        block = np.arange(n).reshape((n,) + (1,) * (len(shape) - 1)) if timed else np.zeros(())
        ids[name] = np.broadcast_to(block + offset, shape).astype(np.float32)
        layout[name] = int(n)
        offset += n
    block_ids = np.asarray(log_density_.ravel(ids)).astype(np.int32)
    return block_ids, offset, layout


# Sensitivities below this (nats per unconstrained unit) count as flat: see the module docstring.
SENSITIVITY_FLOOR = 1.0


def noise_profile(sensitivity: jax.Array, offset: float) -> jax.Array:
    """``w[b] = 1 / (r[b] + offset)`` with ``r`` the sensitivity relative to its mean over blocks
    (last axis), normalised so the mean over blocks is one. All-zero sensitivity gives ``w = 1``."""
    mean = jnp.mean(sensitivity, axis=-1, keepdims=True)
    relative = sensitivity / jnp.maximum(mean, jnp.finfo(sensitivity.dtype).tiny)
    w = 1.0 / (relative + offset)
    return w / jnp.mean(w, axis=-1, keepdims=True)


def sensitivity_noise(
    inner: optax.GradientTransformation,
    block_ids: jax.Array,
    num_blocks: int,
    noise_scale: float,
    schedule: Callable[[jax.Array], jax.Array],
    *,
    smoothing: float = 0.9,
    offset: float = 0.5,
    adaptive: bool = True,
    floor: float = SENSITIVITY_FLOOR,
    key: jax.Array | None = None,
) -> optax.GradientTransformation:
    """Wrap ``inner`` (Adam, say) so each update also explores: ``inner(g) + sigma[block] * xi``.

    Works on parameters of shape ``(..., dim)`` (a batch of restarts); the sensitivity, profile
    and noise are per leading index. The raw gradient feeds the sensitivity and the inner update
    the step size (the inner optimiser would normalise the gradient away, and the noise needs
    both), which is why this wraps ``inner`` rather than following it in ``optax.chain``.
    ``schedule(count)`` is the annealing multiplier; ``key`` is needed by ``init`` only (the state
    carries it afterwards). ``sigma = noise_scale * schedule * w * sqrt(2 A / max(S, floor))``;
    see the module docstring for the formulas.
    """
    block_ids = jnp.asarray(block_ids)

    def init(params):
        if key is None:
            raise ValueError("sensitivity_noise.init needs the key given at construction")
        zeros = jnp.zeros(params.shape[:-1] + (num_blocks,), params.dtype)
        return SensitivityNoiseState(
            count=jnp.zeros((), jnp.int32), key=key, sensitivity=zeros,
            step=jnp.zeros(params.shape[:-1], params.dtype), scale=zeros, inner_state=inner.init(params),
        )

    def update(grads, state, params=None):
        updates, inner_state = inner.update(grads, state.inner_state, params)
        count = state.count + 1
        if noise_scale == 0.0:  # noise off: exactly the inner optimiser, no random draws
            return updates, state._replace(count=count, inner_state=inner_state)
        # Per block RMS gradient: segment sums along the last axis.
        flat = jnp.moveaxis(grads**2, -1, 0)
        sums = jax.ops.segment_sum(flat, block_ids, num_segments=num_blocks)
        sizes = jax.ops.segment_sum(jnp.ones_like(block_ids, grads.dtype), block_ids, num_segments=num_blocks)
        sensitivity = jnp.sqrt(jnp.moveaxis(sums, 0, -1) / sizes)
        ema = smoothing * state.sensitivity + (1.0 - smoothing) * sensitivity
        step = smoothing * state.step + (1.0 - smoothing) * jnp.sqrt(jnp.mean(updates**2, axis=-1))
        correction = 1.0 - smoothing ** count.astype(grads.dtype)
        corrected, step_size = ema / correction, step / correction
        # Effective step per unit gradient, per block: the preconditioned Langevin step.
        eta = step_size[..., None] / jnp.maximum(corrected, floor)
        profile = noise_profile(corrected, offset) if adaptive else jnp.ones_like(corrected)
        tau = noise_scale * schedule(state.count).astype(grads.dtype) * profile  # sqrt(temperature)
        scale = tau * jnp.sqrt(2.0 * eta)
        next_key, sub = jax.random.split(state.key)
        xi = jax.random.normal(sub, grads.shape, grads.dtype)
        updates = updates + scale[..., block_ids] * xi
        return updates, SensitivityNoiseState(count, next_key, ema, step, scale, inner_state)

    return optax.GradientTransformation(init, update)


class MDPOState(NamedTuple):
    z: jax.Array  # (N, dim) current iterates
    opt_state: SensitivityNoiseState
    best_z: jax.Array  # (N, dim)
    best_objective: jax.Array  # (N,), +inf until a finite evaluation (held-out with fresh noise)
    best_cost: jax.Array  # (N,)
    anchor_z: jax.Array  # (N, dim) where a non-finite particle steps again from: best_z, or with
    anchor_grad: jax.Array  # fresh noise the last finite iterate; and the gradient there
    window_sum: jax.Array  # (N, dim) with fresh noise: the sum of the iterates since the last evaluation


# With fresh noise and no eval_interval given, the best iterate is chosen among this many
# evaluations of the held-out set, evenly spread over the run.
NUM_EVALUATIONS = 20


class MDPO:
    """Model-Driven Policy Optimization on a NumPyro model (see the module docstring).

    Args:
      model: the NumPyro model (``pc.trajectory_model(problem)``, say).
      num_particles: parallel restarts, each from its own prior draw (>= 2).
      num_steps: iterations; each costs ``num_particles`` gradient evaluations.
      learning_rate: Adam's step size (ignored, and must be left ``None``, when ``optimizer`` is
        given). Default 0.05.
      noise_scale: ``tau`` at iteration 0, averaged over time blocks: the exploration temperature
        multiplier relative to the model's own (``1`` explores like Langevin dynamics on the
        Boltzmann target itself, with the optimiser's effective step per unit gradient as the step:
        the absolute noise shrinks where the objective is stiff, see the module docstring); 0
        switches exploration off. Default 1.
      optimizer: an ``optax.GradientTransformation``; default ``optax.adam(learning_rate)``.
      noise_decay: the annealing power ``p``: ``sigma_k ~ (1 - k / num_steps)^p``; 0 keeps the
        scale constant. Default 1 (linear decay to zero).
      sensitivity_smoothing: ``rho``, the moving-average weight of past sensitivities, in
        ``[0, 1)``. Default 0.9.
      sensitivity_offset: ``kappa > 0``; a flat block gets ``(1 + kappa) / kappa`` times the noise
        of an average block. Default 0.5.
      adaptive_noise: ``False`` gives the flat profile with the same mean. Default ``True``.
      time_sites: names of the latent sites whose leading axis is time; ``None`` (default) means
        every non-scalar site. Other sites are one block each.
      progress_bar: ``"auto"`` (default) shows a tqdm bar on a terminal or in a notebook, not in
        a pipe or a log; ``True`` always, ``False`` never.
      devices: the devices the particles are sharded over: ``None`` (default) for every device
        (``jax.devices()``, the most of them that divide ``num_particles``), a list of devices or
        a one-axis ``jax.sharding.Mesh``; see ``inference._parallel``. ``config["num_devices"]``
        records how many were used.
      batch_size: evaluate at most this many particles per device at once (sequential batches),
        bounding memory; default ``None``: all at once.
      fresh_noise: ``None`` (default: the model's noise, if any, is fixed), or the name of the
        model's keyword argument that takes the key of its noise (``"noise_key"`` for
        ``models.rddl.trajectory_model`` and ``pc.policy_model``): every iteration redraws it,
        and the best iterate is chosen on the held-out set of the model called as ``run`` calls
        it (see the module docstring, "Fresh noise").
      eval_interval: with ``fresh_noise``, the iterations between two evaluations of the held-out
        set; default ``ceil(num_steps / 20)``. Each costs two forward evaluations per restart (the
        iterate and the window's mean).

    ``run(rng_key, *model_args, init=None, **model_kwargs) -> pc.Result`` (``init``: a warm start,
    see ``run``) with the best iterate of every restart as the particles (uniform weights, zero for restarts that never had a finite
    objective) and ``stats``: ``cost_min``, ``cost_mean`` (over the restarts' current iterates, on
    that iteration's noise),
    ``noise_scale`` (iterations x blocks: the mean over restarts of ``sigma_k``, the standard
    deviation of the noise actually added, in unconstrained units), ``num_evaluations``
    (gradient evaluations).
    """

    method = "mdpo"

    def __init__(
        self,
        model,
        num_particles: int = 16,
        num_steps: int = 200,
        learning_rate: float | None = None,
        noise_scale: float = 1.0,
        optimizer: optax.GradientTransformation | None = None,
        noise_decay: float = 1.0,
        sensitivity_smoothing: float = 0.9,
        sensitivity_offset: float = 0.5,
        adaptive_noise: bool = True,
        time_sites=None,
        progress_bar: bool | str = "auto",
        devices=None,
        batch_size: int | None = None,
        fresh_noise: str | None = None,
        eval_interval: int | None = None,
    ):
        self.model = model
        self.num_particles = check_num_particles(num_particles)
        self.num_steps = check_positive_int("num_steps", num_steps)
        self.fresh_noise = check_fresh_noise(model, fresh_noise)
        if eval_interval is not None:
            eval_interval = check_positive_int("eval_interval", eval_interval)
            if self.fresh_noise is None:
                raise ValueError("eval_interval applies to fresh_noise runs only (the best iterate is "
                                 "otherwise tracked at every iteration)")
        self.eval_interval = eval_interval or -(-self.num_steps // NUM_EVALUATIONS)
        if optimizer is None:
            self.learning_rate = check_positive("learning_rate", 0.05 if learning_rate is None else learning_rate)
            self.optimizer = optax.adam(self.learning_rate)
        else:
            if learning_rate is not None:
                raise ValueError("give either learning_rate (for the default Adam) or optimizer, not both")
            if not isinstance(optimizer, optax.GradientTransformation):
                raise ValueError(f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}")
            self.learning_rate = None
            self.optimizer = optimizer
        self.noise_scale = check_nonnegative("noise_scale", noise_scale)
        self.noise_decay = check_nonnegative("noise_decay", noise_decay)
        smoothing = sensitivity_smoothing
        if not isinstance(smoothing, (int, float)) or not 0.0 <= float(smoothing) < 1.0:
            raise ValueError(f"sensitivity_smoothing must lie in [0, 1), got {smoothing!r}")
        self.sensitivity_smoothing = float(smoothing)
        self.sensitivity_offset = check_positive("sensitivity_offset", sensitivity_offset)
        self.adaptive_noise = bool(adaptive_noise)
        if time_sites is not None:
            time_sites = (time_sites,) if isinstance(time_sites, str) else tuple(time_sites)
        self.time_sites = time_sites
        self.progress_bar = check_progress_bar(progress_bar)
        self.layout = ParticleLayout.build(self.num_particles, devices, batch_size)
        # Compiled once per instance; model arguments are traced (arrays) or static (the rest), and
        # the host-side layout is cached per argument signature: a repeated run traces nothing.
        self._init = eqx.filter_jit(self._init_state)
        self._chunk = eqx.filter_jit(self._run_chunk)
        self._sites = eqx.filter_jit(lambda args, kwargs, z: final_sites(self.model, self.layout, args, kwargs, z))
        self._layouts = LayoutCache(model)

    @property
    def config(self) -> dict:
        return dict(
            num_particles=self.num_particles,
            num_steps=self.num_steps,
            learning_rate=self.learning_rate,
            noise_scale=self.noise_scale,
            optimizer="adam" if self.learning_rate is not None else repr(self.optimizer),
            noise_decay=self.noise_decay,
            sensitivity_smoothing=self.sensitivity_smoothing,
            sensitivity_offset=self.sensitivity_offset,
            adaptive_noise=self.adaptive_noise,
            time_sites="all" if self.time_sites is None else ",".join(self.time_sites),
            **self._fresh_config,
            **self.layout.config,
        )

    @property
    def _fresh_config(self) -> dict:
        """The fresh-noise settings, recorded only when on (configurations of runs without it are
        unchanged, so are their checkpoints' fingerprints)."""
        if self.fresh_noise is None:
            return {}
        return dict(fresh_noise=self.fresh_noise, eval_interval=self.eval_interval)

    def _schedule(self, count):
        frac = 1.0 - count / self.num_steps
        return frac**self.noise_decay if self.noise_decay != 0.0 else jnp.ones_like(frac)

    def _transformation(self, block_ids, num_blocks, key=None):
        return sensitivity_noise(
            self.optimizer, block_ids, num_blocks, self.noise_scale, self._schedule,
            smoothing=self.sensitivity_smoothing, offset=self.sensitivity_offset,
            adaptive=self.adaptive_noise, key=key,
        )

    def _init_state(self, args, kwargs, block_ids, num_blocks, key, init_values=None):
        ld = log_density(self.model, *args, **kwargs)
        init_key, noise_key = jax.random.split(key)
        if init_values is None:
            z = ld.sample_prior(init_key, self.num_particles)
        else:  # a warm start: the restarts begin at the given particles
            z = select_rows(*unconstrained(ld, init_values), self.num_particles)
        opt_state = self._transformation(block_ids, num_blocks, noise_key).init(z)
        n = self.num_particles
        inf = jnp.full((n,), jnp.inf, z.dtype)
        zeros = jnp.zeros_like(z)
        return self.layout.constrain(MDPOState(z, opt_state, z, inf, inf, z, zeros, zeros))

    def _run_chunk(self, args, kwargs, block_ids, num_blocks, noise_root, state, steps):
        fresh = self.fresh_noise is not None
        tx = self._transformation(block_ids, num_blocks)
        held_out = self.layout.map(objective_and_cost(log_density(self.model, *args, **kwargs)))

        def value_and_grad(z, k):
            ld = log_density(self.model, *args, **iteration_kwargs(kwargs, self.fresh_noise, noise_root, k))
            return self.layout.map(jax.value_and_grad(objective_and_cost(ld), has_aux=True))(z)

        def keep_better(candidate, objective, cost, best):
            """``best`` (``(z, objective, cost)``) updated where ``objective`` is lower."""
            improved = objective < best[1]
            return (jnp.where(improved[:, None], candidate, best[0]), jnp.where(improved, objective, best[1]),
                    jnp.where(improved, cost, best[2]))

        def step(state, k):
            (objective, cost), grad = value_and_grad(state.z, k)
            bad = ~(jnp.isfinite(objective) & jnp.all(jnp.isfinite(grad), axis=-1))
            objective = jnp.where(bad, jnp.inf, objective)
            best = (state.best_z, state.best_objective, state.best_cost)
            if fresh:  # this iteration's noise is its own: the anchor is the last finite iterate
                anchor_z = jnp.where(bad[:, None], state.anchor_z, state.z)
                anchor_grad = jnp.where(bad[:, None], state.anchor_grad, grad)
            else:  # the anchor is the best iterate
                best = keep_better(state.z, objective, cost, best)
                improved = objective < state.best_objective
                anchor_z = best[0]
                anchor_grad = jnp.where(improved[:, None], grad, state.anchor_grad)
            # A non-finite particle steps again from its anchor, with the gradient there (zero if
            # it never had a finite evaluation): nothing non-finite reaches the optimiser.
            grad = jnp.where(bad[:, None], anchor_grad, grad)
            z_from = jnp.where(bad[:, None], anchor_z, state.z)
            updates, opt_state = tx.update(grad, state.opt_state, z_from)
            z = optax.apply_updates(z_from, updates)
            window_sum = state.window_sum
            if fresh:  # at the evaluation points, the new iterate and the window's mean, held out
                window_sum = window_sum + jnp.where(jnp.isfinite(z), z, anchor_z)
                due = ((k + 1) % self.eval_interval == 0) | (k + 1 == self.num_steps)
                count = (k + 1 - (k // self.eval_interval) * self.eval_interval).astype(z.dtype)

                def score(carry):
                    best, window_sum = carry
                    for candidate in (z, window_sum / count):
                        objective, cost = held_out(candidate)
                        ok = jnp.isfinite(objective) & jnp.all(jnp.isfinite(candidate), axis=-1)
                        best = keep_better(candidate, jnp.where(ok, objective, jnp.inf), cost, best)
                    return best, jnp.zeros_like(window_sum)

                best, window_sum = jax.lax.cond(due, score, lambda carry: carry, (best, window_sum))
            cost_min, cost_mean = finite_min_mean(cost, ~bad)
            stats = dict(
                cost_min=cost_min,
                cost_mean=cost_mean,
                noise_scale=jnp.mean(opt_state.scale, axis=0),
                num_evaluations=jnp.asarray(self.num_particles, jnp.int32),
            )
            state = MDPOState(z, opt_state, *best, anchor_z, anchor_grad, window_sum)
            return self.layout.constrain(state), stats

        return jax.lax.scan(step, state, steps)

    def run(self, rng_key, *args, init=None, checkpoint: str | None = None, **kwargs):
        """Optimise from ``num_particles`` prior draws, or from ``init``; see the class docstring.

        Args:
          rng_key: a JAX PRNG key; the same key gives the same result, bit for bit.
          *args: positional arguments of the model.
          **kwargs: keyword arguments of the model.
          init: a warm start, a ``pc.Result`` or a dict latent site -> constrained values with a
            leading particle axis (>= 2 particles): the restarts begin at those particles (cycled
            when there are fewer than ``num_particles``, evenly spaced when more; particles with
            a non-finite unconstrained value are skipped).
          checkpoint: a file path; the state is saved there after every compiled chunk of
            iterations (about every ``num_steps / 20``), and a run started with an existing
            checkpoint of the same configuration, key and ``init`` resumes from it, bit for bit. With a custom ``optimizer`` the fingerprint cannot tell two
            optimizers apart: resume with the same one.

        With ``fresh_noise``, the model argument it names may be given here: it fixes the held-out
        evaluation set (by default the model's own scenarios); the iterations redraw it.
        """
        ld = self._layouts(args, kwargs)  # traced once per argument signature
        block_ids, num_blocks, _ = time_blocks(ld, self.time_sites)  # shapes only: no model call
        values = None if init is None else site_values(init, ld)
        noise_root = None
        if self.fresh_noise is not None:  # the run's key feeds the noise too; without, as before
            rng_key, noise_root = jax.random.split(rng_key)
        state = self._init(args, kwargs, block_ids, num_blocks, rng_key, values)
        fingerprint = run_fingerprint(self.method, self.config, rng_key, ld, values)
        if self.learning_rate is None:  # repr(optimizer) holds memory addresses
            fingerprint["optimizer"] = "custom"
        state, stats = iterate(
            lambda s, steps: self._chunk(args, kwargs, block_ids, num_blocks, noise_root, s, steps),
            state,
            self.num_steps,
            desc=self.method,
            progress_bar=self.progress_bar,
            postfix=lambda s: f"best cost {float(jnp.min(s.best_cost)):.4g}",
            checkpoint=checkpoint,
            fingerprint=fingerprint,
        )
        raise_if_all_nonfinite(state.best_objective, "objective (negative log density)", self.method)
        log_weights = jnp.where(jnp.isfinite(state.best_objective), 0.0, -jnp.inf)
        return particles_to_result(
            self.method, None, state.best_z, log_weights, stats=stats, config=self.config,
            sites=self._sites(args, kwargs, state.best_z),
        )


class GradientDescent(MDPO):
    """Multi-start gradient descent (Adam by default): ``MDPO`` with the exploration noise off.

    The same code path as ``MDPO(noise_scale=0)``, so the two agree bit for bit for the same key.
    ``stats["noise_scale"]`` is recorded (all zeros) to keep the two results the same shape.
    """

    method = "gradient_descent"

    def __init__(
        self,
        model,
        num_particles: int = 16,
        num_steps: int = 200,
        learning_rate: float | None = None,
        optimizer: optax.GradientTransformation | None = None,
        time_sites=None,
        progress_bar: bool | str = "auto",
        devices=None,
        batch_size: int | None = None,
        fresh_noise: str | None = None,
        eval_interval: int | None = None,
    ):
        super().__init__(
            model, num_particles=num_particles, num_steps=num_steps, learning_rate=learning_rate,
            noise_scale=0.0, optimizer=optimizer, time_sites=time_sites, progress_bar=progress_bar,
            devices=devices, batch_size=batch_size, fresh_noise=fresh_noise, eval_interval=eval_interval,
        )

    @property
    def config(self) -> dict:
        return dict(
            num_particles=self.num_particles,
            num_steps=self.num_steps,
            learning_rate=self.learning_rate,
            optimizer="adam" if self.learning_rate is not None else repr(self.optimizer),
            **self._fresh_config,
            **self.layout.config,
        )
