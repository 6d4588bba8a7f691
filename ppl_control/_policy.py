"""Policy optimisation: an Equinox policy's parameters as the latent of a NumPyro model.

The decision variable is no longer an open-loop plan but the parameters ``theta`` of a feedback
policy ``a = pi_theta(observe(x))``. Following the extended-space construction of tempered SMC for
policy optimisation (Yang, 2026), two sources of randomness are made deterministic:

* the initial-state distribution is replaced by a fixed empirical set ``x_0^1 .. x_0^M`` (the same
  for every particle), and
* the additive process noise ``w`` of the rollout is an explicit latent with a standard-normal
  prior, ``x_{t+1} = f(x_t, a_t) + sigma * w_t``,

so the target over ``z = (theta, w)``::

    p(theta) p(w) exp(-J(theta, w) / lambda),   J = 1/M sum_m J_m(theta, w^m)

is a smooth deterministic function that HMC, gradient descent and every other algorithm of
``ppl_control.inference`` can work on unchanged (they only see ``pc.log_density``).
"""

import numbers
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
import numpyro
import numpyro.distributions as dist
from jax import lax
from numpyro.contrib.module import random_eqx_module

from ._boltzmann import boltzmann, check_temperature
from ._problem import ControlProblem
from ._result import Result

POLICY_SITE = "policy"
NOISE_SITE = "process_noise"
# ArviZ and netCDF reject "/" in variable names, numpyro's default scope divider.
SCOPE_DIVIDER = "."


# --------------------------------------------------------------------------------------------
# The closed-loop rollout (ControlProblem-agnostic helpers, also used for evaluation)
# --------------------------------------------------------------------------------------------


def squash_action(problem: ControlProblem, raw: jax.Array) -> jax.Array:
    """Map a policy's raw output to an admissible action.

    Bounded problems: ``mid + half_width * tanh(raw)``, a smooth bijection from R onto the open
    box, so gradients never vanish at a clip boundary. Unbounded problems: the identity.
    """
    if problem.action_bounds is None:
        return raw
    low, high = (jnp.asarray(b, dtype=jnp.result_type(raw)) for b in problem.action_bounds)
    return 0.5 * (low + high) + 0.5 * (high - low) * jnp.tanh(raw)


def policy_action(problem: ControlProblem, policy, state: Any) -> jax.Array:
    """The squashed action ``(action_dim,)`` of ``policy`` at ``state``.

    ``policy`` maps ``problem.observation(state)`` to a raw action of shape ``(action_dim,)``
    (or a scalar when ``action_dim == 1``).
    """
    raw = jnp.asarray(policy(problem.observation(state)))
    return squash_action(problem, jnp.reshape(raw, (problem.action_dim,)))


def closed_loop_rollout(problem: ControlProblem, policy, x0: Any, noise: jax.Array | None = None,
                        process_noise: float = 0.0) -> tuple[Any, jax.Array]:
    """Roll the closed loop ``x_{t+1} = step(x_t, a_t) + process_noise * noise_t`` from one state.

    Args:
      problem: the ``ControlProblem`` (its ``step``, ``observation`` and ``action_bounds``).
      policy: a callable (an Equinox module) from observation to raw action.
      x0: one initial state (any pytree when there is no noise, an array otherwise).
      noise: ``None``, or an array ``(horizon, state_dim)`` of standardised noise.
      process_noise: the noise scale ``sigma``.

    Returns:
      ``(states, actions)``: states ``x_0 .. x_T`` with a leading axis ``T + 1`` on every leaf,
      actions of shape ``(T, action_dim)``.
    """

    def body(x, w):
        a = policy_action(problem, policy, x)
        x_next = problem.step(x, a)
        if w is not None:
            x_next = x_next + process_noise * w
        return x_next, (x_next, a)

    _, (tail, actions) = lax.scan(body, x0, noise, length=problem.horizon)
    states = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), x0, tail)
    return states, actions


def closed_loop_cost(problem: ControlProblem, policy, x0: Any, noise: jax.Array | None = None,
                     process_noise: float = 0.0) -> jax.Array:
    """The trajectory cost ``sum_t stage_cost(x_t, a_t) + terminal_cost(x_T)`` of the closed loop
    started at one state ``x0`` (see ``closed_loop_rollout`` for the arguments)."""
    states, actions = closed_loop_rollout(problem, policy, x0, noise, process_noise)
    stage = jax.vmap(problem.stage_cost)(jax.tree.map(lambda s: s[:-1], states), actions)
    return jnp.sum(stage) + problem.terminal_cost(jax.tree.map(lambda s: s[-1], states))


def policy_cost(problem: ControlProblem, policy, initial_states: Any, noise: jax.Array | None = None,
                process_noise: float = 0.0) -> jax.Array:
    """Per-initial-state closed-loop costs, shape ``(M,)``, for evaluating a policy.

    ``initial_states`` carries a leading axis ``M`` on every leaf; ``noise`` is ``None`` or of
    shape ``(M, horizon, state_dim)`` (standardised; scaled by ``process_noise``). Evaluate a
    trained policy's expected cost with fresh states and fresh noise: ``policy_cost(...).mean()``.
    """
    num = _check_initial_states(problem, initial_states)
    if noise is not None:
        _check_noise_shape(problem, initial_states, noise, num)
        return jax.vmap(lambda x0, w: closed_loop_cost(problem, policy, x0, w, process_noise))(
            initial_states, noise)
    return jax.vmap(lambda x0: closed_loop_cost(problem, policy, x0))(initial_states)


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _check_initial_states(problem: ControlProblem, initial_states: Any) -> int:
    """The number ``M`` of initial states; ``ValueError`` unless they look like stacked ``x0``."""
    ref_leaves, ref_def = jtu.tree_flatten(problem.x0)
    leaves, treedef = jtu.tree_flatten(initial_states)
    if treedef != ref_def:
        raise ValueError(
            f"{problem.name}: initial_states must have the structure of problem.x0 with a leading "
            f"axis of M states; got structure {treedef}, expected {ref_def}"
        )
    counts = set()
    for ref, leaf in zip(ref_leaves, leaves):
        ref_shape, shape = tuple(jnp.shape(ref)), tuple(jnp.shape(leaf))
        if len(shape) != len(ref_shape) + 1 or shape[1:] != ref_shape:
            raise ValueError(
                f"{problem.name}: initial_states must stack M states of shape {ref_shape} on a "
                f"leading axis, i.e. have shape (M, {', '.join(map(str, ref_shape))}); got {shape}"
                + (" (a single state: add a leading axis, initial_states[None])" if shape == ref_shape else "")
            )
        counts.add(shape[0])
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"{problem.name}: initial_states must hold M >= 1 states on every leaf, got {sorted(counts)}")
    return counts.pop()


def _state_dim(problem: ControlProblem) -> int:
    if not isinstance(problem.x0, (jax.Array, np.ndarray)) or jnp.ndim(problem.x0) != 1:
        raise ValueError(
            f"{problem.name}: process_noise > 0 needs states that are 1-D arrays (additive noise of "
            f"shape (horizon, state_dim)); problem.x0 is {type(problem.x0).__name__}"
            f" of shape {jnp.shape(problem.x0) if hasattr(problem.x0, 'shape') else '?'}"
        )
    return int(jnp.shape(problem.x0)[0])


def _check_noise_shape(problem, initial_states, noise, num):
    expected = (num, problem.horizon, _state_dim(problem))
    if tuple(jnp.shape(noise)) != expected:
        raise ValueError(f"{problem.name}: noise must have shape (M, horizon, state_dim) = {expected}, "
                         f"got {tuple(jnp.shape(noise))}")


def _check_policy(problem: ControlProblem, policy, initial_states) -> None:
    if not callable(policy):
        raise ValueError(f"policy must be a callable Equinox module, got {type(policy).__name__}")
    if not jtu.tree_leaves(eqx.filter(policy, eqx.is_inexact_array)):
        raise ValueError("policy has no floating-point array parameters to infer")
    x = jax.tree.map(lambda leaf: leaf[0], initial_states)
    try:
        out = jax.eval_shape(lambda s: policy(problem.observation(s)), x)
    except Exception as err:  # noqa: BLE001 - report the user's mistake with context
        raise ValueError(f"{problem.name}: calling the policy on problem.observation(x0) failed: {err}") from err
    shape = tuple(out.shape)
    if shape != (problem.action_dim,) and not (shape == () and problem.action_dim == 1):
        raise ValueError(
            f"{problem.name}: the policy must return a raw action of shape (action_dim,) = "
            f"({problem.action_dim},), got shape {shape}"
        )


def _check_nonnegative(name: str, value) -> float:
    if not isinstance(value, numbers.Real) or not (0.0 <= float(value) < float("inf")):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------
# The model and the way back to a trained module
# --------------------------------------------------------------------------------------------


def policy_model(problem: ControlProblem, policy: eqx.Module, initial_states: Any,
                 temperature: float | None = 1.0, param_prior_scale: float = 1.0,
                 process_noise: float = 0.0, *, name: str = POLICY_SITE):
    """The NumPyro model of policy optimisation for ``problem``.

    Latent sites:

    * every floating-point array of ``policy`` as ``f"{name}.{path}"`` (``path`` is the leaf's JAX
      key path, e.g. ``policy.layers[0].weight``), prior ``Normal(0, param_prior_scale)``,
      placed by ``numpyro.contrib.module.random_eqx_module`` with ``scope_divider="."``;
    * when ``process_noise > 0``, ``"process_noise"`` of shape ``(M, horizon, state_dim)``, prior
      ``Normal(0, 1)``: the rollout noise made an explicit variable (extended space).

    For each initial state ``x_0^m`` the closed loop runs ``a_t = squash(policy(observe(x_t)))``,
    ``x_{t+1} = step(x_t, a_t) + process_noise * w^m_t`` (``squash``: ``tanh`` onto the action box,
    see ``squash_action``); the cost is the mean over the M trajectories and enters through
    ``pc.boltzmann``, so the density is ``p(theta) p(w) exp(-J(theta, w) / temperature)``.

    Args:
      problem: the ``ControlProblem``; ``problem.x0`` fixes the shape of one state.
      policy: an Equinox module from observation to raw action (shape ``(action_dim,)``, or a
        scalar when ``action_dim == 1``); only the shapes of its parameters matter here.
      initial_states: the empirical initial-state set: ``problem.x0``'s structure with a leading
        axis of ``M`` states on every leaf (an ``(M, state_dim)`` array for array states).
      temperature: lambda in ``exp(-J / lambda)``; ``None`` takes ``problem.temperature``.
      param_prior_scale: standard deviation of the Normal prior on every parameter.
      process_noise: the scale ``sigma`` of the additive process noise (0: deterministic rollout).
      name: the prefix of the parameter sites (``trained_policy`` needs the same one).

    Returns:
      A NumPyro model that takes no arguments; ``model.problem``, ``model.policy``,
      ``model.initial_states`` and ``model.process_noise`` record what it was built from.

    Raises:
      ValueError: for a non-positive temperature or prior scale, a negative process noise,
        initial states that do not stack ``problem.x0``, non-array states with process noise, or
        a policy whose output does not have the action's shape.
    """
    temperature = problem.temperature if temperature is None else temperature
    check_temperature(temperature)
    if not isinstance(param_prior_scale, numbers.Real) or not (0.0 < float(param_prior_scale) < float("inf")):
        raise ValueError(f"param_prior_scale must be a positive finite number, got {param_prior_scale!r}")
    process_noise = _check_nonnegative("process_noise", process_noise)
    num_states = _check_initial_states(problem, initial_states)
    noise_shape = (num_states, problem.horizon, _state_dim(problem)) if process_noise > 0 else None
    _check_policy(problem, policy, initial_states)
    if "/" in name or not name:
        raise ValueError(f"name must be a non-empty site prefix without '/', got {name!r}")
    prior = dist.Normal(0.0, float(param_prior_scale))

    def model():
        net = random_eqx_module(name, policy, prior, scope_divider=SCOPE_DIVIDER)
        if noise_shape is None:
            costs = jax.vmap(lambda x0: closed_loop_cost(problem, net, x0))(initial_states)
        else:
            w = numpyro.sample(NOISE_SITE, dist.Normal(jnp.zeros(noise_shape), 1.0).to_event(3))
            costs = jax.vmap(lambda x0, wm: closed_loop_cost(problem, net, x0, wm, process_noise))(
                initial_states, w)
        boltzmann(jnp.mean(costs), temperature)

    model.problem = problem
    model.policy = policy
    model.initial_states = initial_states
    model.process_noise = process_noise
    return model


def policy_site_names(policy: eqx.Module, name: str = POLICY_SITE) -> list[str]:
    """The latent site names ``policy_model`` gives the parameters of ``policy``, in leaf order."""
    params = eqx.filter(policy, eqx.is_inexact_array)
    return [f"{name}{SCOPE_DIVIDER}{jtu.keystr(path)[1:]}" for path, _ in jtu.tree_leaves_with_path(params)]


def trained_policy(result: Result, policy: eqx.Module, index: int | None = None, *,
                   name: str = POLICY_SITE) -> eqx.Module:
    """The Equinox module ``policy`` with the parameters of one particle of ``result``.

    Args:
      result: a ``Result`` of any algorithm run on ``policy_model(problem, policy, ...)``.
      policy: the module passed to ``policy_model`` (its structure and static parts are kept).
      index: the particle; ``None`` takes the lowest-cost one (``result.best_index()``).
      name: the site prefix given to ``policy_model``.

    Returns:
      A module of the same type, ready to call (``pc.policy_action(problem, module, x)`` applies
      the action squashing) or to save with ``equinox.tree_serialise_leaves``.

    Raises:
      ValueError: when ``result`` has no site for one of the parameters, a site's shape differs
        from the parameter's, or ``index`` is out of range.
    """
    if index is None:
        index = result.best_index()
    n = result.num_particles
    if not isinstance(index, numbers.Integral) or not -n <= int(index) < n:
        raise ValueError(f"index must be an integer in [-{n}, {n}), got {index!r}")
    params, static = eqx.partition(policy, eqx.is_inexact_array)
    names = policy_site_names(policy, name)
    missing = [s for s in names if s not in result.samples]
    if missing:
        raise ValueError(
            f"result has no site for the policy parameters {missing}; was it run on "
            f"policy_model(problem, policy, ..., name={name!r}) with this policy? "
            f"Its sites: {sorted(result.samples)}"
        )
    leaves, treedef = jtu.tree_flatten(params)
    new_leaves = []
    for site, leaf in zip(names, leaves):
        value = np.asarray(result.samples[site])[int(index)]
        if value.shape != leaf.shape:
            raise ValueError(f"site {site!r} holds shape {value.shape} per particle, the policy's "
                             f"parameter has shape {leaf.shape}")
        new_leaves.append(jnp.asarray(value, dtype=leaf.dtype))
    return eqx.combine(jtu.tree_unflatten(treedef, new_leaves), static)
