"""NUTS: NumPyro's own No-U-Turn sampler on the tilted target, as a baseline.

A thin wrapper around ``numpyro.infer.MCMC(numpyro.infer.NUTS(model, ...))`` (Hoffman & Gelman
2014, with NumPyro's windowed step-size and mass-matrix adaptation during warmup). It samples the
same density the other algorithms work with, ``p(z) * exp(-J(z) / lambda)`` for
``trajectory_model``, and its draws become the particles of a ``pc.Result`` with equal weights.
NumPyro keeps its compiled sampler across runs of one ``MCMC`` object, so one ``NUTS`` instance
compiles once for a given model and arguments.

No checkpoints: ``MCMC`` runs warm-up and sampling as one compiled loop, so there is no point
between iterations to save from; ``run(..., checkpoint=path)`` raises ``ValueError``. For runs
long enough to need one, TSMC, MDPO, gradient descent, CEM and MPPI checkpoint.
"""

import numbers

import jax
import jax.numpy as jnp
from numpyro.infer import MCMC
from numpyro.infer import NUTS as NumPyroNUTS

from ppl_control import log_density

from ._common import (
    check_fraction,
    check_positive_int,
    check_progress_bar,
    particles_to_result,
    raise_if_all_nonfinite,
    show_progress,
)
from ._warm import best_particles, site_values

_CHAIN_METHODS = ("sequential", "vectorized", "parallel")


def _unconstrained_draws(z):
    """``MCMC``'s post-processing hook, as the identity: keep NumPyro's unconstrained draws."""
    return z


class NUTS:
    """NumPyro's NUTS through ``numpyro.infer.MCMC``, returning a ``pc.Result``.

    Args:
      model: the NumPyro model.
      num_warmup: adaptation iterations per chain (discarded).
      num_samples: draws kept per chain; the result has ``num_samples * num_chains`` particles
        (at least 2).
      num_chains: independent chains. Default 1.
      chain_method: how chains run: ``"vectorized"`` (default; one compiled vmap on one device),
        ``"sequential"`` or ``"parallel"`` (one device per chain).
      target_accept_prob: step-size adaptation target, in ``(0, 1)``. Default 0.8.
      max_tree_depth: NUTS's tree-depth cap. Default 10.
      dense_mass: adapt a dense mass matrix. Default ``False`` (diagonal).
      progress_bar: NumPyro's progress bar: ``"auto"`` (default) shows it on a terminal or in a
        notebook, not in a pipe or a log; ``True`` always, ``False`` never.

    ``run(rng_key, *model_args, init=None, **model_kwargs) -> pc.Result`` (``init``: a warm
    start, see ``run``): the draws (all chains,
    concatenated chain by chain) as equally weighted particles; ``particle_stats``: ``lp`` (the
    unconstrained log joint, ``-potential_energy``), ``acceptance_rate``, ``step_size``,
    ``diverging``, ``tree_size`` (leapfrog steps) per draw. ``stats`` is empty: NUTS has no
    iterations in the sense of the optimisers.
    """

    method = "nuts"

    def __init__(
        self,
        model,
        num_warmup: int = 500,
        num_samples: int = 500,
        num_chains: int = 1,
        chain_method: str = "vectorized",
        target_accept_prob: float = 0.8,
        max_tree_depth: int = 10,
        dense_mass: bool = False,
        progress_bar: bool | str = "auto",
    ):
        self.model = model
        if not isinstance(num_warmup, numbers.Integral) or num_warmup < 0:
            raise ValueError(f"num_warmup must be a non-negative integer, got {num_warmup!r}")
        self.num_warmup = int(num_warmup)
        self.num_samples = check_positive_int("num_samples", num_samples)
        self.num_chains = check_positive_int("num_chains", num_chains)
        if self.num_samples * self.num_chains < 2:
            raise ValueError(
                f"num_samples * num_chains must be >= 2 (the particles of the result), got "
                f"{self.num_samples} * {self.num_chains}"
            )
        if chain_method not in _CHAIN_METHODS:
            raise ValueError(f"chain_method must be one of {_CHAIN_METHODS}, got {chain_method!r}")
        self.chain_method = chain_method
        self.target_accept_prob = check_fraction("target_accept_prob", target_accept_prob)
        self.max_tree_depth = check_positive_int("max_tree_depth", max_tree_depth)
        self.dense_mass = bool(dense_mass)
        self.progress_bar = check_progress_bar(progress_bar)
        kernel = NumPyroNUTS(
            model,
            target_accept_prob=self.target_accept_prob,
            max_tree_depth=self.max_tree_depth,
            dense_mass=self.dense_mass,
        )
        self.mcmc = MCMC(
            kernel,
            num_warmup=self.num_warmup,
            num_samples=self.num_samples,
            num_chains=self.num_chains,
            chain_method=self.chain_method,
            progress_bar=show_progress(self.progress_bar),
            # Keep draws in the unconstrained space: raveled, they are LogDensity's flat vectors.
            # (Asking for "z.<site>" extra fields instead breaks on dotted site names, such as
            # the policy parameters of pc.policy_model, because NumPyro splits field paths on '.')
            postprocess_fn=_unconstrained_draws,
        )

    @property
    def num_particles(self) -> int:
        return self.num_samples * self.num_chains

    @property
    def config(self) -> dict:
        return dict(
            num_warmup=self.num_warmup,
            num_samples=self.num_samples,
            num_chains=self.num_chains,
            chain_method=self.chain_method,
            target_accept_prob=self.target_accept_prob,
            max_tree_depth=self.max_tree_depth,
            dense_mass=self.dense_mass,
        )

    def run(self, rng_key, *args, init=None, checkpoint: str | None = None, **kwargs):
        """Sample with NumPyro's MCMC; see the class docstring for the result.

        ``init``: a warm start, a ``pc.Result`` or a dict latent site -> constrained values with a
        leading particle axis (>= 2 particles): each chain starts at one of the lowest-cost
        particles (by the ``cost`` site when ``init`` has one, else the first ones), passed to
        ``MCMC.run`` as ``init_params``. ``checkpoint`` is refused (``ValueError``): NUTS cannot
        checkpoint, see the module docstring.
        """
        if checkpoint is not None:
            raise ValueError(
                "NUTS cannot checkpoint: NumPyro's MCMC runs warm-up and sampling as one compiled "
                "loop; use TSMC, MDPO, GradientDescent, CEM or MPPI for runs that must survive"
            )
        ld = log_density(self.model, *args, **kwargs)  # validates the model, maps z to sites
        stat_fields = ("potential_energy", "accept_prob", "adapt_state.step_size", "num_steps")
        init_params = None
        if init is not None:
            starts = best_particles(init, site_values(init, ld), self.num_chains)
            z = jax.vmap(ld.unconstrain)(starts)
            init_params = jax.vmap(ld.unravel)(z)  # NumPyro's unconstrained sites
            if self.num_chains == 1:
                init_params = jax.tree.map(lambda leaf: leaf[0], init_params)
        self.mcmc.run(rng_key, *args, extra_fields=stat_fields, init_params=init_params, **kwargs)
        extra = self.mcmc.get_extra_fields()
        draws = self.mcmc.get_samples()  # unconstrained, see _unconstrained_draws
        z = jax.vmap(ld.ravel)({name: draws[name] for name in ld.latent_names})
        lp = -extra["potential_energy"]
        raise_if_all_nonfinite(lp, "log density", self.method)
        particle_stats = dict(
            lp=lp,
            acceptance_rate=extra["accept_prob"],
            step_size=extra["adapt_state.step_size"],
            diverging=extra["diverging"],
            tree_size=extra["num_steps"],
        )
        log_weights = jnp.where(jnp.isfinite(lp), 0.0, -jnp.inf)
        return particles_to_result(
            self.method, ld, z, log_weights, particle_stats=particle_stats, config=self.config
        )
