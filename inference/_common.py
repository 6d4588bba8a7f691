"""Plumbing shared by every algorithm: argument checks, progress, and building a ``Result``."""

import contextlib
import numbers
import sys

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from ppl_control import InferenceError, LogDensity, Result

from ._parallel import to_host


def check_num_particles(num_particles) -> int:
    if not isinstance(num_particles, numbers.Integral) or num_particles < 2:
        raise ValueError(f"num_particles must be an integer >= 2, got {num_particles!r}")
    return int(num_particles)


def check_positive_int(name: str, value) -> int:
    if not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_positive(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or not (0.0 < float(value) < float("inf")):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_fraction(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or not (0.0 < float(value) < 1.0):
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or not (0.0 <= float(value) < float("inf")):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


def check_unit_interval(name: str, value, *, closed_low: bool = False, closed_high: bool = False) -> float:
    """``value`` in ``(0, 1)``; ``closed_low`` / ``closed_high`` admit 0 / 1."""
    ok = isinstance(value, numbers.Real) and (0.0 <= float(value) if closed_low else 0.0 < float(value)) and (
        float(value) <= 1.0 if closed_high else float(value) < 1.0
    )
    if not ok:
        interval = ("[" if closed_low else "(") + "0, 1" + ("]" if closed_high else ")")
        raise ValueError(f"{name} must lie in {interval}, got {value!r}")
    return float(value)


def argument_signature(model_args, model_kwargs):
    """A hashable summary of the model's arguments: their tree structure, array shapes and dtypes,
    and the values of non-array leaves; ``None`` where a leaf is not hashable.

    Two calls with the same signature trace to the same program, so what depends only on the
    model's shapes (its latent layout) can be cached under it.
    """
    leaves, treedef = jax.tree.flatten((model_args, model_kwargs))
    try:
        signature = (treedef, tuple((jnp.shape(x), jnp.result_type(x).name) if hasattr(x, "shape") else x
                                    for x in leaves))
        hash(signature)
    except TypeError:
        return None
    return signature


def tempered_target(log_density: LogDensity, beta):
    """``z -> (log_prior + beta * log_lik, (log_prior, log_lik, cost))`` for one particle.

    One model evaluation gives all of it. ``cost`` is the model's ``cost`` site (summed) when it
    has one, else ``-log_likelihood``: what every algorithm reports per particle.
    """

    def target(z):
        lp, ll, deterministic = log_density.evaluate(z)
        cost = jnp.sum(deterministic["cost"]) if "cost" in deterministic else -ll
        return lp + beta * ll, (lp, ll, cost)

    return target


def finite_min_mean(values: jax.Array, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """``(min, mean)`` over the finite (and ``valid``) entries; ``(inf, nan)`` when there are none."""
    ok = jnp.isfinite(values) if valid is None else jnp.isfinite(values) & valid
    count = jnp.sum(ok)
    vmin = jnp.min(jnp.where(ok, values, jnp.inf))
    vmean = jnp.where(count > 0, jnp.sum(jnp.where(ok, values, 0.0)) / jnp.maximum(count, 1), jnp.nan)
    return vmin, vmean


def finite_or(value: jax.Array, fallback) -> jax.Array:
    """``value`` where finite, else ``fallback`` (NaN and +-inf alike)."""
    return jnp.where(jnp.isfinite(value), value, fallback)


def normalise_log_weights(log_weights: jax.Array) -> jax.Array:
    """Log weights that sum to one; NaN becomes ``-inf`` (weight zero) rather than poisoning."""
    log_weights = jnp.where(jnp.isnan(log_weights), -jnp.inf, log_weights)
    return log_weights - logsumexp(log_weights)


def raise_if_all_nonfinite(values, what: str, method: str) -> None:
    """``InferenceError`` when no entry of ``values`` is finite: no particle can carry weight."""
    if not np.any(np.isfinite(np.asarray(to_host(values)))):
        raise InferenceError(
            f"{method}: every particle's {what} is non-finite (NaN or inf), so no particle can "
            "carry weight; check the model's cost for overflow or invalid operations"
        )


def check_progress_bar(value) -> bool | str:
    """``progress_bar`` as given: ``True``, ``False`` or ``"auto"`` (see ``show_progress``)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value == "auto":
        return "auto"
    raise ValueError(f"progress_bar must be True, False or 'auto', got {value!r}")


def show_progress(progress_bar, stream=None) -> bool:
    """Whether a progress bar is drawn.

    ``True`` and ``False`` are obeyed. ``"auto"`` (the algorithms' default) draws a bar only
    where someone watches it: when ``stream`` (default ``sys.stderr``, where tqdm writes) is a
    terminal, or in a Jupyter kernel (tqdm's notebook widget). A pipe, a file or a CI log gets
    no bar, as tqdm's own ``disable=None`` does, so logs stay readable.
    """
    progress_bar = check_progress_bar(progress_bar)
    if progress_bar != "auto":
        return progress_bar
    if _in_notebook():
        return True
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (tqdm.autonotebook's own test), which draws bars although its
    stderr is not a terminal: a widget with ipywidgets, carriage returns it renders otherwise."""
    return "ipykernel.zmqshell" in sys.modules


@contextlib.contextmanager
def progress(total, desc: str, enabled="auto", *, quantity: str | None = None):
    """A tqdm bar, or a silent stand-in, with ``update(n)``, ``set_description_str(s)`` and
    ``set_postfix_str(s)``; ``bar.disable`` tells which one it is.

    Args:
      total: the count the bar fills up to (iterations, say), or the end of a continuous
        quantity (``1.0`` for a temperature ``beta`` in ``[0, 1]``).
      desc: the label in front of the bar.
      enabled: ``True``, ``False`` or ``"auto"``; see ``show_progress``.
      quantity: for a continuous quantity, its name: the bar then reads
        ``desc: 43%|####      | beta=0.430 [00:05, postfix]``, its value instead of a count and
        no rate (an it/s over ``beta`` means nothing). Advance it with ``update(increment)``.

    A bar forced on (``enabled=True``) where no terminal watches it redraws at most every
    ``10`` seconds, so a log gets a few lines rather than hundreds of fragments.
    """
    if not show_progress(enabled):
        yield _SilentBar()
        return
    from tqdm.auto import tqdm

    options = dict(total=total, desc=desc, leave=True, dynamic_ncols=True)
    if quantity is not None:
        name = quantity.replace("{", "{{").replace("}", "}}")
        options["bar_format"] = "{desc}: {percentage:3.0f}%|{bar}| " + name + "={n:.3f} [{elapsed}{postfix}]"
    if not show_progress("auto"):
        options["mininterval"] = 10.0
    bar = tqdm(**options)
    try:
        yield bar
    finally:
        bar.close()


class _SilentBar:
    disable = True

    def update(self, n=1):
        pass

    def set_postfix_str(self, s="", refresh=True):
        pass

    def set_description_str(self, desc=None, refresh=True):
        pass


def particles_to_result(
    method: str,
    log_density: LogDensity,
    particles: jax.Array,
    log_weights: jax.Array | None = None,
    *,
    log_evidence=None,
    stats=None,
    particle_stats=None,
    config=None,
    sites=None,
) -> Result:
    """Map flat unconstrained particles ``(N, dim)`` to a ``Result``.

    Latent sites come back constrained, deterministic sites (``cost``) evaluated per particle, the
    observed sites' log densities recorded for ArviZ's ``log_likelihood`` group. ``log_weights``
    default to uniform; they are normalised here, NaN counting as zero weight. ``sites``: the
    particles' ``log_density.sites`` already computed (by compiled code, so a repeated run traces
    nothing); ``log_density`` is then not used.
    """
    # to_host: with several processes every one gathers the whole population.
    if sites is None:
        sites = jax.vmap(log_density.sites)(particles)
    samples, log_likelihood = to_host(sites)
    n = particles.shape[0]
    if log_weights is None:
        log_weights = jnp.full((n,), -jnp.log(n))
    log_weights, stats, particle_stats = to_host((log_weights, stats, particle_stats))
    to_numpy = lambda tree: {k: np.asarray(v) for k, v in (tree or {}).items()}
    return Result(
        method=method,
        samples=to_numpy(samples),
        log_weights=np.asarray(normalise_log_weights(jnp.asarray(log_weights))),
        log_evidence=None if log_evidence is None else float(log_evidence),
        stats=to_numpy(stats),
        particle_stats=to_numpy(particle_stats),
        log_likelihood=to_numpy(log_likelihood),
        config=dict(config or {}),
    )
