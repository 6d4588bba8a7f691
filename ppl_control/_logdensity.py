"""The log-density split every inference algorithm works with.

A NumPyro model's joint density factorises into the prior (every latent sample site) and the
likelihood (every observed site: ``numpyro.factor`` included, hence the Boltzmann term). Tempering
scales only the likelihood::

    log pi_beta(z) = log_prior(z) + beta * log_likelihood(z)

Algorithms see one flat unconstrained vector ``z`` per particle. ``log_prior`` includes the
log-Jacobian of the map to the constrained space, so ``log_prior`` is a density on ``z``.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.distributions import biject_to

# A fixed key for the structural trace and for models that draw randomness while being evaluated.
_TRACE_KEY = jax.random.key(0)


def _site_log_prob(site) -> jax.Array:
    log_prob = site["fn"].log_prob(site["value"])
    if site.get("scale") is not None:
        log_prob = site["scale"] * log_prob
    return jnp.sum(log_prob)


def _trace(model, args, kwargs, key, values=None):
    seeded = handlers.seed(model, key)
    if values is not None:
        seeded = handlers.substitute(seeded, data=values)
    return handlers.trace(seeded).get_trace(*args, **kwargs)


def _latent_sites(trace):
    return {n: s for n, s in trace.items() if s["type"] == "sample" and not s["is_observed"]}


def _observed_sites(trace):
    return {n: s for n, s in trace.items() if s["type"] == "sample" and s["is_observed"]}


class LogDensity(NamedTuple):
    """A model's tempered log density as functions of one flat unconstrained vector.

    Build one with ``log_density(model, *args, **kwargs)``. Every function takes one particle
    ``z`` of shape ``(dim,)``; ``jax.vmap`` them for a population.

    Attributes:
      dim: the length of ``z``.
      latent_names: latent sample sites, in model order.
      observed_names: observed sites (the likelihood that tempering scales), in model order.
      deterministic_names: deterministic sites (``cost`` among them when ``boltzmann`` is used).
      sample_prior: ``(key, num) -> (num, dim)`` unconstrained draws from the prior.
      log_parts: ``z -> (log_prior, log_likelihood)`` from one model evaluation.
      evaluate: ``z -> (log_prior, log_likelihood, deterministic)`` from one model evaluation,
        ``deterministic`` the dict of deterministic sites (``cost`` among them).
      constrain: ``z -> dict`` of latent sites (constrained) and deterministic sites.
      log_likelihood_sites: ``z -> dict`` observed site -> its summed log density.
      sites: ``z -> (constrain(z), log_likelihood_sites(z))`` from one model evaluation.
      unravel: ``z -> dict`` of unconstrained latent values (site shapes).
      ravel: ``dict -> z``, the inverse of ``unravel``.
      unconstrain: ``dict -> z`` from *constrained* latent values (one particle): the inverse of
        the latent part of ``constrain``; how a warm start's samples become particles.
    """

    dim: int
    latent_names: tuple
    observed_names: tuple
    deterministic_names: tuple
    latent_shapes: dict
    sample_prior: Callable
    log_parts: Callable
    evaluate: Callable
    constrain: Callable
    log_likelihood_sites: Callable
    sites: Callable
    unravel: Callable
    ravel: Callable
    unconstrain: Callable

    def log_prior(self, z):
        return self.log_parts(z)[0]

    def log_likelihood(self, z):
        return self.log_parts(z)[1]

    def log_target(self, z, beta):
        """``log_prior(z) + beta * log_likelihood(z)``."""
        lp, ll = self.log_parts(z)
        return lp + beta * ll


def _check_structure(trace, model) -> None:
    name = getattr(model, "__name__", repr(model))
    latent = _latent_sites(trace)
    if not latent:
        raise ValueError(
            f"model {name!r} has no latent sample site: the decision variables must be "
            "numpyro.sample sites without obs="
        )
    if not _observed_sites(trace):
        raise ValueError(
            f"model {name!r} has no observed site (no likelihood to temper): add the cost with "
            "pc.boltzmann(cost, temperature) or numpyro.factor"
        )
    for site_name, site in latent.items():
        if site["fn"].support.is_discrete:
            raise ValueError(
                f"latent site {site_name!r} of model {name!r} is discrete "
                f"({type(site['fn']).__name__}); ppl_control's algorithms need continuous latents"
            )
    for site_name in trace:
        if "/" in site_name:
            raise ValueError(
                f"site name {site_name!r} contains '/', which ArviZ and netCDF reject; "
                "use scope_divider='.' with numpyro.contrib.module"
            )


def log_density(model, *args: Any, **kwargs: Any) -> LogDensity:
    """Split ``model(*args, **kwargs)`` into log prior and tempered log likelihood.

    Raises:
      ValueError: when the model has no latent site, no observed site, a discrete latent site, or a
        site name ArviZ cannot store.
    """
    trace = _trace(model, args, kwargs, _TRACE_KEY)
    _check_structure(trace, model)
    latent = _latent_sites(trace)
    transforms = {n: biject_to(s["fn"].support) for n, s in latent.items()}
    unconstrained0 = {n: transforms[n].inv(s["value"]) for n, s in latent.items()}
    flat0, unravel = ravel_pytree(unconstrained0)

    def ravel(values):
        return ravel_pytree(values)[0]

    def _constrained_trace(z):
        unconstrained = unravel(z)
        values = {n: transforms[n](u) for n, u in unconstrained.items()}
        return unconstrained, values, _trace(model, args, kwargs, _TRACE_KEY, values)

    def evaluate(z):
        unconstrained, values, tr = _constrained_trace(z)
        lp = sum(_site_log_prob(tr[n]) for n in latent)
        lp = lp + sum(
            jnp.sum(transforms[n].log_abs_det_jacobian(unconstrained[n], values[n])) for n in latent
        )
        ll = sum(_site_log_prob(s) for s in _observed_sites(tr).values())
        deterministic = {n: s["value"] for n, s in tr.items() if s["type"] == "deterministic"}
        return lp, ll, deterministic

    def log_parts(z):
        lp, ll, _ = evaluate(z)
        return lp, ll

    def sites(z):
        _, values, tr = _constrained_trace(z)
        out = dict(values)
        out.update({n: s["value"] for n, s in tr.items() if s["type"] == "deterministic"})
        return out, {n: _site_log_prob(s) for n, s in _observed_sites(tr).items()}

    def constrain(z):
        return sites(z)[0]

    def log_likelihood_sites(z):
        return sites(z)[1]

    def unconstrain(values):
        missing = set(latent) - set(values)
        if missing:
            raise ValueError(f"unconstrain: no value for latent site(s) {sorted(missing)}")
        return ravel({n: transforms[n].inv(jnp.asarray(values[n])) for n in latent})

    def sample_prior(key, num):
        def one(k):
            tr = _trace(model, args, kwargs, k)
            return ravel({n: transforms[n].inv(tr[n]["value"]) for n in latent})

        return jax.vmap(one)(jax.random.split(key, num))

    return LogDensity(
        dim=int(flat0.shape[0]),
        latent_names=tuple(latent),
        observed_names=tuple(_observed_sites(trace)),
        deterministic_names=tuple(n for n, s in trace.items() if s["type"] == "deterministic"),
        latent_shapes={n: tuple(jnp.shape(s["value"])) for n, s in latent.items()},
        sample_prior=sample_prior,
        log_parts=log_parts,
        evaluate=evaluate,
        constrain=constrain,
        log_likelihood_sites=log_likelihood_sites,
        sites=sites,
        unravel=unravel,
        ravel=ravel,
        unconstrain=unconstrain,
    )
