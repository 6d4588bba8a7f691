"""Policy optimisation: an Equinox policy's parameters as the latent of a NumPyro model.

The decision variable is no longer an open-loop plan but the parameters ``theta`` of a feedback
policy ``a = pi_theta(observe(x))``, and what a control engineer wants is the policy with the
lowest *expected* cost ``E_{x_0, w}[J(theta; x_0, w)]`` over initial states and process noise
``x_{t+1} = f(x_t, a_t) + sigma w_t``. Both sources of randomness are made deterministic, so the
target is a smooth function that HMC, gradient descent and every other algorithm of
``ppl_control.inference`` work on unchanged (they only see ``pc.log_density``):

* the initial-state distribution becomes a fixed empirical set ``x_0^1 .. x_0^N``, the same for
  every particle;
* the process noise, by default, becomes ``K`` fixed noise sequences per initial state, drawn once
  from a key (common random numbers: the sample-average approximation of ``E[J]``, whose
  minimiser is consistent for the expected-cost optimum); or, as an explicit option, a latent
  with a standard-normal prior (the extended-space construction of tempered SMC for policy
  optimisation, Yang 2026), whose Boltzmann tilt also favours lucky noise and so under-controls.

``policy_model`` documents the two treatments and the bias of the second; BENCHMARKS.md
("Policies under process noise") measures both against the Riccati optimum.
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
NOISE_TREATMENTS = ("common", "extended")
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


def _as_key(noise_key) -> jax.Array:
    """A typed PRNG key from a key (typed, or raw ``uint32[2]``) or an integer seed."""
    if isinstance(noise_key, numbers.Integral) and not isinstance(noise_key, bool):
        return jax.random.key(int(noise_key))
    if isinstance(noise_key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(noise_key.dtype, jax.dtypes.prng_key) and noise_key.shape == ():
            return noise_key
        if noise_key.dtype == np.uint32 and noise_key.shape == (2,):
            return jax.random.wrap_key_data(jnp.asarray(noise_key))
    raise ValueError(f"noise_key must be a JAX PRNG key or an integer seed, got {noise_key!r}")


def _float_dtype(states) -> jnp.dtype:
    """The states' floating dtype (so a float64 model gets float64 noise), else JAX's default."""
    dtype = jnp.result_type(states)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.result_type(float)


# --------------------------------------------------------------------------------------------
# The model and the way back to a trained module
# --------------------------------------------------------------------------------------------


def policy_model(problem: ControlProblem, policy: eqx.Module, initial_states: Any,
                 temperature: float | None = 1.0, param_prior_scale: float = 1.0,
                 process_noise: float = 0.0, *, noise_treatment: str = "common",
                 num_noise_samples: int = 1, noise_key: Any = 0, name: str = POLICY_SITE):
    """The NumPyro model of policy optimisation for ``problem``.

    Latent sites: every floating-point array of ``policy`` as ``f"{name}.{path}"`` (``path`` is
    the leaf's JAX key path, e.g. ``policy.layers[0].weight``), prior ``Normal(0,
    param_prior_scale)``, placed by ``numpyro.contrib.module.random_eqx_module`` with
    ``scope_divider="."``; with ``noise_treatment="extended"`` and ``process_noise > 0`` also
    ``"process_noise"`` (below).

    The scenarios: each of the ``N`` initial states is rolled out ``K = num_noise_samples`` times,
    each time with its own standardised noise sequence ``w^m`` (``m = 1 .. N K``, the copies of
    state ``i`` at ``m = i K .. i K + K - 1``; ``K`` only matters when there is noise). The closed
    loop runs ``a_t = squash(policy(observe(x_t)))``, ``x_{t+1} = step(x_t, a_t) + process_noise *
    w^m_t`` (``squash``: ``tanh`` onto the action box, see ``squash_action``); the cost
    ``J = 1/(N K) sum_m J_m`` enters through ``pc.boltzmann``. The noise treatments
    (``NOISE_TREATMENTS``):

    * ``"common"`` (default; common random numbers, the sample-average approximation, as in
      PEGASUS, Ng & Jordan 2000): the ``N K`` sequences are drawn once from ``noise_key`` when the
      model is built and held fixed, the same for every particle. The density is ``p(theta)
      exp(-J_hat(theta) / temperature)`` with ``J_hat`` an unbiased estimate of the expected cost
      ``E[J(theta)]`` for every ``theta``, so its minimiser tends to the expected-cost optimum
      as ``N K`` grows (the same role as the fixed empirical set of initial states). Its excess
      expected cost falls as (policy parameters) / ``N K``: keep ``N K`` well above the number of
      parameters, raising ``K`` when initial states are few (BENCHMARKS.md measures both).
    * ``"extended"`` (the extended-space construction, Yang 2026): the noise is the latent site
      ``"process_noise"`` of shape ``(N K, horizon, state_dim)``, prior ``Normal(0, 1)``, and
      the density ``p(theta) p(w) exp(-J(theta, w) / temperature)``. The tilt then applies to the
      noise too. The marginal of ``theta`` is ``p(theta) prod_m E_w exp(-J_m / c)`` with ``c = N K
      lambda``, a risk-seeking objective (per scenario ``-c log E exp(-J_m / c) ~ E[J_m] -
      Var[J_m] / (2 c)``, which rewards cost variance), and the joint mode over ``(theta, w)``
      (what gradient descent finds) lets the noise steer at a price of only ``c |w^m|^2 / 2``.
      Both make the learned policy under-control, by a bias that shrinks only as ``c`` grows
      against the cost's spread, and the reported cost is optimistic (lucky noise). Kept because
      it is the published method and lets a sampler explore rollout randomness jointly with the
      policy; BENCHMARKS.md measures the bias against its closed form on a noisy LQ.

    Redrawing the noise at every TSMC stage is not offered: it would need the sampler's help (the
    incremental weights then carry ``exp(-beta (J_new - J_old) / lambda)``, and BENCHMARKS.md
    measures the ESS that costs at ``beta = 1``), and the final target would still be the sample
    average over the last draw, no better than ``"common"`` with as many sequences.

    Args:
      problem: the ``ControlProblem``; ``problem.x0`` fixes the shape of one state.
      policy: an Equinox module from observation to raw action (shape ``(action_dim,)``, or a
        scalar when ``action_dim == 1``); only the shapes of its parameters matter here.
      initial_states: the empirical initial-state set: ``problem.x0``'s structure with a leading
        axis of ``N`` states on every leaf (an ``(N, state_dim)`` array for array states).
      temperature: lambda in ``exp(-J / lambda)``; ``None`` takes ``problem.temperature``.
      param_prior_scale: standard deviation of the Normal prior on every parameter.
      process_noise: the scale ``sigma`` of the additive process noise (0: deterministic rollout).
      noise_treatment: ``"common"`` or ``"extended"`` (above).
      num_noise_samples: ``K``, the noise sequences per initial state (a positive integer).
      noise_key: the key (or integer seed, default 0) the ``"common"`` noise is drawn from,
        ``jax.random.normal(noise_key, (N K, horizon, state_dim))``; the same key gives the same
        noise, so the same policy for the same algorithm key.
      name: the prefix of the parameter sites (``trained_policy`` needs the same one).

    Returns:
      A NumPyro model ``model(initial_states=None, noise=None, noise_key=None)``: called with no
      arguments it uses the scenarios it was built with; ``initial_states`` (another ``(N',
      state_dim)`` set) and, for ``"common"``, ``noise`` (``(N' K, horizon, state_dim)`` standardised
      sequences, e.g. recorded disturbances) or ``noise_key`` (a key they are drawn from, as
      ``noise_key`` above) replace them at run time
      (``algorithm.run(key, initial_states=..., noise=...)``), so one compiled algorithm serves
      many training sets of the same shape; ``MDPO(model, fresh_noise="noise_key")`` redraws the
      noise at every iteration (stochastic approximation of the expected cost, the best iterate
      judged on the model's fixed scenarios). Its attributes record what it was built from:
      ``problem``, ``policy``, ``initial_states``, ``process_noise``, ``noise_treatment``,
      ``num_noise_samples``, and the scenarios: ``scenario_states`` (the initial state of each
      rollout, ``N K`` of them; ``initial_states`` itself without noise) and ``noise`` (the fixed
      ``(N K, horizon, state_dim)`` sequences of ``"common"``, else ``None``), so that
      ``policy_cost(problem, net, model.scenario_states, model.noise, sigma).mean()`` is the cost
      the model saw.

    Raises:
      ValueError: for a non-positive temperature or prior scale, a negative process noise, an
        unknown noise treatment, a ``num_noise_samples`` that is not a positive integer, a
        ``noise_key`` that is not a key or an integer, initial states that do not stack
        ``problem.x0``, non-array states with process noise, or a policy whose output does not
        have the action's shape.
    """
    temperature = problem.temperature if temperature is None else temperature
    check_temperature(temperature)
    if not isinstance(param_prior_scale, numbers.Real) or not (0.0 < float(param_prior_scale) < float("inf")):
        raise ValueError(f"param_prior_scale must be a positive finite number, got {param_prior_scale!r}")
    process_noise = _check_nonnegative("process_noise", process_noise)
    if noise_treatment not in NOISE_TREATMENTS:
        raise ValueError(f"noise_treatment must be one of {NOISE_TREATMENTS}, got {noise_treatment!r}")
    if isinstance(num_noise_samples, bool) or not isinstance(num_noise_samples, numbers.Integral) \
            or num_noise_samples < 1:
        raise ValueError(f"num_noise_samples must be a positive integer, got {num_noise_samples!r}")
    key = _as_key(noise_key)
    num_states = _check_initial_states(problem, initial_states)
    _check_policy(problem, policy, initial_states)
    if "/" in name or not name:
        raise ValueError(f"name must be a non-empty site prefix without '/', got {name!r}")
    prior = dist.Normal(0.0, float(param_prior_scale))

    noisy = process_noise > 0
    k = int(num_noise_samples)
    scenario_states, fixed_noise = initial_states, None
    if noisy:
        state_dim = _state_dim(problem)
        scenario_states = jnp.repeat(jnp.asarray(initial_states), k, axis=0)
        if noise_treatment == "common":
            fixed_noise = jax.random.normal(key, (num_states * k, problem.horizon, state_dim),
                                            _float_dtype(scenario_states))

    def model(initial_states=None, noise=None, noise_key=None):
        """``initial_states`` / ``noise`` (``None``: those the model was built with) replace the
        scenarios without rebuilding the model, so one compiled algorithm serves many sets;
        ``noise_key`` draws the noise from that key instead (``fresh_noise="noise_key"``)."""
        if initial_states is None:
            scenarios = scenario_states
        else:
            _check_initial_states(problem, initial_states)
            scenarios = jnp.repeat(initial_states, k, axis=0) if noisy else initial_states
        for given, what in ((noise, "noise="), (noise_key, "noise_key=")):
            if given is not None and (not noisy or noise_treatment != "common"):
                raise ValueError(f"{what} replaces the fixed noise of noise_treatment='common' with "
                                 f"process_noise > 0; this model has process_noise={process_noise} and "
                                 f"noise_treatment={noise_treatment!r}")
        if noise is not None and noise_key is not None:
            raise ValueError("give noise= (the sequences) or noise_key= (a key to draw them from), not both")
        net = random_eqx_module(name, policy, prior, scope_divider=SCOPE_DIVIDER)
        if not noisy:
            costs = jax.vmap(lambda x0: closed_loop_cost(problem, net, x0))(scenarios)
        else:
            shape = (jnp.shape(scenarios)[0], problem.horizon, state_dim)
            if noise_treatment == "extended":
                w = numpyro.sample(NOISE_SITE, dist.Normal(jnp.zeros(shape), 1.0).to_event(3))
            elif noise_key is not None:
                w = jax.random.normal(_as_key(noise_key), shape, _float_dtype(scenarios))
            else:
                w = fixed_noise if noise is None else noise
                if tuple(jnp.shape(w)) != shape:
                    raise ValueError(
                        f"{problem.name}: the noise must have shape (N * num_noise_samples, horizon, "
                        f"state_dim) = {shape} for these initial states, got {tuple(jnp.shape(w))}"
                        + ("; pass noise= with new initial states of another size" if noise is None else ""))
            costs = jax.vmap(lambda x0, wm: closed_loop_cost(problem, net, x0, wm, process_noise))(
                scenarios, w)
        boltzmann(jnp.mean(costs), temperature)

    model.problem = problem
    model.policy = policy
    model.initial_states = initial_states
    model.process_noise = process_noise
    model.noise_treatment = noise_treatment
    model.num_noise_samples = k
    model.scenario_states = scenario_states
    model.noise = fixed_noise
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
