"""Waste-free rejuvenation (Dau & Chopin 2022): few long chains whose every state is kept.

Standard rejuvenation (``inference.rejuvenation``) resamples ``N`` particles and moves each of them
``K`` times, keeping only the last state: ``N K L`` gradients per stage (``L`` leapfrog steps a
move), and each lineage travels ``K`` moves. Waste-free SMC resamples only ``M = N / P`` particles,
runs an MCMC chain of ``P - 1`` moves from each and keeps *all* ``P`` states of every chain (its
start included) as the next population of ``N``. That costs ``N (P - 1) / P L`` gradients a stage,
about one move's worth of standard SMC, while every lineage travels ``P - 1`` moves.

Why it helps: at a fixed gradient budget a lineage of standard SMC with ``N`` particles travels
about ``1 / N`` as far as one long chain, and on barrier-crossing targets (a swing-up whose cheaper
basin lies beyond a ridge) it is travel that finds the cheaper basin. Shrinking ``N`` buys travel but
costs the evidence and robustness; waste-free keeps ``N`` for the weights, the metric fit and the
evidence while the chains travel. The states of a chain are correlated, so the population carries
less information than ``N`` independent draws; Dau & Chopin show the estimates stay consistent as
``M`` or ``P`` grows and that the evidence estimate is the usual one over all ``N`` particles.

The moves are the same self-tuning HMC moves as in standard rejuvenation: the refresh evaluates
every weighted particle at the new temperature (for the metric fit), the first move is a probe that
chooses the trajectory length when it adapts (``inference.tuning``), and the step size adapts after
every move. Only the number of moves is fixed, by the chain length.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._parallel import ParticleLayout
from .hmc import hmc_move
from .metric import CrossFitted, MetricInfo
from .rejuvenation import (MoveSettings, MovesInfo, adapt_after_move, fit_moves_metric, log_likelihood_of,
                           unit_moves_metric)
from .tuning import remaining_correlation, whitened_spread


# ``chain_length="auto"`` picks the longest chain up to this that splits the population evenly.
# Longer chains travel further per stage at the same gradient cost but leave fewer independent
# ancestors (N / P): on the LQR closed form at 1024 particles P = 16 kept the log evidence within
# 0.11 nats median at temperatures 1 to 0.005 and P = 32 drifted to -0.37 at 0.005
# (BENCHMARKS.md, "TSMC beside BlackJAX").
AUTO_CHAIN_LENGTH = 16
# ... and keeps at least this many chains (fewer and standard rejuvenation is used instead): the
# step size adapts from the chains' acceptance after every move, and with 4 chains one accept more
# or less moves it enough to send the run elsewhere (a perturbation of 1e-6 in the particles grew
# to differences of O(1) within two stages on the LQR; with 8 chains, 3e-3 after three).
MIN_CHAINS = 8


def check_chain_length(chain_length, num_particles: int, num_devices: int, num_moves=None) -> int | None:
    """The chain length ``P`` a TSMC uses: ``None`` for standard rejuvenation, or an integer
    ``P >= 2`` such that ``num_particles / P`` chains split evenly over the devices.

    ``"auto"`` resolves to the largest ``P <= AUTO_CHAIN_LENGTH`` that leaves at
    least ``MIN_CHAINS`` chains, evenly over the devices, or to ``None`` when there is none or the
    user fixed ``num_moves`` (a fixed move count is standard rejuvenation's knob).

    Raises:
      ValueError: an explicit ``chain_length`` that is not an integer >= 2, does not divide
        ``num_particles``, leaves a number of chains the devices do not divide, or comes with a fixed
        ``num_moves``.
    """
    if chain_length is None:
        return None
    if chain_length == "auto":
        if num_moves is not None:
            return None
        fits = [p for p in range(2, AUTO_CHAIN_LENGTH + 1)
                if num_particles % p == 0 and num_particles // p >= MIN_CHAINS and (num_particles // p) % num_devices == 0]
        return max(fits, default=None)
    if isinstance(chain_length, bool) or not isinstance(chain_length, int) or chain_length < 2:
        raise ValueError(f"chain_length must be an integer >= 2, 'auto' or None, got {chain_length!r}")
    if num_particles % chain_length:
        raise ValueError(
            f"chain_length ({chain_length}) must divide num_particles ({num_particles}): the population is "
            f"num_particles / chain_length chains of chain_length states each"
        )
    num_chains = num_particles // chain_length
    if num_chains % num_devices:
        raise ValueError(
            f"num_particles / chain_length = {num_chains} chains must be a multiple of the number of devices "
            f"({num_devices}) the particles are sharded over"
        )
    if num_moves is not None:
        raise ValueError(
            f"num_moves and chain_length both fix the moves per stage: a waste-free chain of chain_length="
            f"{chain_length} states makes chain_length - 1 moves; give one of them (chain_length=None for "
            f"standard rejuvenation with num_moves moves)"
        )
    return chain_length


class _Chains(NamedTuple):
    z: jax.Array
    logp: jax.Array
    grad: jax.Array
    aux: tuple


class _Carry(NamedTuple):
    blocks: _Chains  # the weighted population as (M, P, ...) blocks, refreshed one block a pass
    chains: _Chains  # (M, ...) the chains' current states (the refresh's block before the moves)
    start: _Chains  # (M, ...) the chains' first states (the resampled particles)
    metric: CrossFitted  # its use_second is per chain (M,)
    metric_info: MetricInfo
    spread: jax.Array
    step_size: jax.Array
    integration_time: jax.Array  # length * step of the moves after the probe
    length: jax.Array


def rejuvenate_waste_free(
    rng_key: jax.Array,
    particles: jax.Array,
    weights: jax.Array,
    aux: tuple,
    value_and_grad,
    resample,
    metric_kind: str,
    step_size: jax.Array,
    previous_length: jax.Array,
    settings: MoveSettings,
    chain_length: int,
    layout: ParticleLayout | None = None,
):
    """Fit the metric, resample ``N / chain_length`` particles and run a chain from each, keeping
    every state: the waste-free counterpart of ``rejuvenation.rejuvenate``, with its arguments and
    returns (``settings.num_moves`` and ``max_moves`` are not used: every chain makes
    ``chain_length - 1`` moves).

    One ``lax.scan`` of ``2 P - 1`` passes over ``M = N / P`` particles at a time: passes
    ``0 .. P - 1`` refresh the target and gradient of one block of ``M`` weighted particles each
    (a zero-length move, as in standard rejuvenation), after which the metric is fitted and ``M``
    ancestors resampled; passes ``P .. 2 P - 2`` move the chains. Every pass goes through the same
    ``hmc_move`` call, so the model's reverse pass is compiled once per stage, not twice.

    The returned population is ordered chain by chain (chain ``m``'s states are rows
    ``m P ... m P + P - 1``), so with several devices each device's chains stay on it. Per-particle
    diagnostics are those of the particle's chain.
    """
    n, dim = particles.shape
    num_chains = n // chain_length
    num_moves = chain_length - 1
    adaptive_length = settings.num_leapfrog is None
    buffer = settings.max_leapfrog if adaptive_length else 0
    probe_length = jnp.clip(2 * previous_length, 1, settings.max_leapfrog).astype(jnp.int32)
    fixed_length = jnp.asarray(settings.num_leapfrog or 1, jnp.int32)
    layout = ParticleLayout(n, None, None) if layout is None else layout
    chains_layout = ParticleLayout(num_chains, layout.mesh, layout.batch_size)
    key_resample, key_moves, key_split = jax.random.split(rng_key, 3)
    as_blocks = lambda x: x.reshape((num_chains, chain_length) + x.shape[1:])  # row m P + b -> [m, b]
    as_population = lambda x: layout.constrain(x.reshape((n,) + x.shape[2:]))
    block = lambda x, b: chains_layout.constrain(lax.dynamic_index_in_dim(x, b, axis=1, keepdims=False))
    put_block = lambda x, value, b: lax.dynamic_update_index_in_dim(x, value, b, axis=1)

    def fit_and_resample(c: _Carry) -> _Carry:
        z, grad, logp = (as_population(x) for x in (c.blocks.z, c.blocks.grad, c.blocks.logp))
        metric, metric_info = fit_moves_metric(key_split, z, grad, weights, metric_kind, layout, settings.cross_fit)
        ancestors = resample(key_resample, weights, num_chains)
        take = lambda x: chains_layout.constrain(as_population(x)[ancestors])
        start = _Chains(*(take(x) for x in c.blocks[:3]), jax.tree.map(take, c.blocks.aux))
        return c._replace(chains=start, start=start, metric=metric._replace(use_second=take(metric.use_second)),
                          metric_info=metric_info, spread=whitened_spread(metric, z, weights))

    def one_pass(c: _Carry, index):
        refresh = index < chain_length
        b = jnp.minimum(index, chain_length - 1)
        probing = (index == chain_length) & adaptive_length
        length = jnp.where(probing, probe_length, c.length)
        here = jax.tree.map(lambda x, y: jnp.where(refresh, block(x, b), y), c.blocks, c.chains)
        keys = chains_layout.constrain(jax.random.split(jax.random.fold_in(key_moves, index), num_chains))
        z, lp, g, a, info = chains_layout.map(lambda key, z, logp, grad, aux, use_second: hmc_move(
            key, z, logp, grad, aux, value_and_grad, c.step_size, c.metric._replace(use_second=use_second),
            length, settings.step_jitter, refresh, buffer, probing, watch=log_likelihood_of,
        ))(keys, *here, c.metric.use_second)
        moved = _Chains(z, lp, g, a)
        used_step = c.step_size
        step, integration_time, next_length = adapt_after_move(
            info, c.step_size, c.integration_time, refresh, probing, log_likelihood_of(here.aux), probe_length,
            c.spread, settings)
        next_length = next_length if adaptive_length else fixed_length
        blocks = jax.tree.map(lambda x, y: jnp.where(refresh, put_block(x, y, b), x), c.blocks, moved)
        c = c._replace(blocks=blocks, chains=moved, step_size=step, integration_time=integration_time,
                       length=next_length)
        c = lax.cond(index == chain_length - 1, fit_and_resample, lambda c: c, c)
        return c, (z, lp, a, info.acceptance_rate, info.diverging, info.step_size, length, used_step,
                   jnp.any(z != here.z, axis=-1))

    # Shapes only: the first P passes overwrite the blocks' log densities, gradients and aux.
    zeros = jnp.zeros((n,), particles.dtype)
    population = _Chains(particles, zeros, jnp.zeros_like(particles), jax.tree.map(jnp.zeros_like, aux))
    blocks = jax.tree.map(as_blocks, population)
    chains = jax.tree.map(lambda x: x[:, 0], blocks)
    scalar = jnp.zeros((), particles.dtype)
    carry = _Carry(blocks, chains, chains, unit_moves_metric(dim, metric_kind, num_chains, particles.dtype),
                   MetricInfo(scalar, scalar), scalar + 1.0, step_size,
                   previous_length * step_size,
                   previous_length.astype(jnp.int32) if adaptive_length else fixed_length)
    c, record = lax.scan(one_pass, carry, jnp.arange(chain_length + num_moves))
    zs, lps, auxs, acceptance, diverging, jittered, lengths, steps, changed = jax.tree.map(
        lambda x: x[chain_length:], record)

    def states(first, later):  # (M, ...) and (P - 1, M, ...) -> (N, ...), chain by chain
        both = jnp.concatenate([first[None], later], axis=0)
        return as_population(jnp.swapaxes(both, 0, 1))

    per_chain = lambda x: layout.constrain(jnp.repeat(x, chain_length, axis=0))
    info = MovesInfo(
        num_moves=jnp.asarray(num_moves, jnp.int32),
        num_leapfrog=c.length,
        probe_length=probe_length if adaptive_length else jnp.zeros((), jnp.int32),
        num_evaluations=(n + num_chains * jnp.sum(lengths)).astype(jnp.int32),
        acceptance_rate=jnp.mean(acceptance),
        step_size=jnp.mean(steps),
        num_divergent=jnp.sum(jnp.any(diverging, axis=0)) * chain_length,  # particles whose chain diverged
        correlation=remaining_correlation(c.metric, c.start.z, c.chains.z, c.spread,
                                          log_likelihood_of(c.start.aux), log_likelihood_of(c.chains.aux)),
        unmoved_fraction=jnp.mean(~jnp.any(changed, axis=0)),
        particle_acceptance_rate=per_chain(jnp.mean(acceptance, axis=0)),
        particle_diverging=per_chain(jnp.any(diverging, axis=0)),
        particle_step_size=per_chain(jittered[-1]),
    )
    return (states(c.start.z, zs), states(c.start.logp, lps), jax.tree.map(states, c.start.aux, auxs),
            c.step_size, c.length, info, c.metric_info)
