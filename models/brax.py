"""Brax environments as control problems: the state is the Brax ``State`` pytree.

    from ppl_control.models import brax as pcbrax
    problem = pcbrax.problem("inverted_pendulum", horizon=50)
    problem.cost(controls)          # differentiable through the physics

``problem(env_name, ...)`` builds the Brax 0.14 environment, resets it once from a fixed key
(``seed``) to get ``x0``, and steps it with the action: ``step(state, u) = env.step(state, u)``.
Actions are bounded to ``[-1, 1]`` (every Brax environment's action convention). Episode
termination (``done``) is not applied: the rollout always runs ``horizon`` steps, and a cost that
penalises falling plays the role of termination. ``observe(state) = state.obs``, the coordinates
policies and plots see.

Cost. ``cost=None`` picks the environment's shipped differentiable cost where there is one
(``COSTS``), else ``-reward``; ``cost="reward"`` forces ``-reward``; a callable ``cost(state) ->
scalar`` is summed over the states ``x_0 .. x_T``. ``control_weight`` adds ``w |u_t|^2`` per step.
With ``-reward``, ``stage(x_t) = -x_t.reward`` and ``terminal(x_T) = -x_T.reward``: since a Brax
state holds the reward of the transition that produced it and ``x_0.reward = 0``, the sum is the
negated return of the ``T`` transitions. Brax's own rewards are not always useful to a gradient
(``inverted_pendulum``'s is a constant alive bonus; ``inverted_double_pendulum``'s alive bonus is
a step function), hence the shipped costs, each a smooth function of the state:

- ``inverted_pendulum`` (obs ``[x, theta, x_dot, theta_dot]``, ``theta = 0`` upright):
  ``10 (1 - cos theta) + 0.1 x^2 + 0.01 theta_dot^2``, control weight 0.01.
- ``inverted_double_pendulum``: Brax's own reward without its alive bonus,
  ``0.01 x_tip^2 + (y_tip - 2)^2 + 1e-3 v1^2 + 5e-3 v2^2``, control weight 0.01.
- ``reacher``: ``100 |fingertip - target|^2`` (the squared distance: smooth at the target, unlike
  Brax's ``-|d|``), control weight 0.1.

Backend. ``backend="generalized"`` is the default because its reverse-mode gradients agree with
central finite differences: in float64, through 20 steps of ``inverted_pendulum``, ``reacher`` and
``inverted_double_pendulum``, the directional derivative matched to about 1e-9 relative
(``tests/test_brax.py`` checks it). ``"spring"`` and ``"positional"`` also matched on
``inverted_pendulum`` but change the physics (Brax reduces their timestep to 0.005 s) and compile
slower; ``"mjx"`` cannot be differentiated in reverse mode at all (its constraint solver is a
``lax.while_loop``: "Reverse-mode differentiation does not work for lax.while_loop").

Compiling a Brax rollout and its gradient takes tens of seconds on a CPU; keep horizons short
when exploring.
"""

from typing import Callable

import jax
import jax.numpy as jnp

from ppl_control import ControlProblem


def _inverted_pendulum_cost(state):
    x, theta, _, theta_dot = (state.obs[i] for i in range(4))
    return 10.0 * (1.0 - jnp.cos(theta)) + 0.1 * x**2 + 0.01 * theta_dot**2


def _inverted_double_pendulum_cost(state):
    from brax import base

    ps = state.pipeline_state
    # The tip of the second pole, exactly as Brax's InvertedDoublePendulum computes it.
    tip = ps.x.take(2).do(base.Transform.create(pos=jnp.array([0.0, 0.0, 0.6], dtype=ps.q.dtype)))
    x, _, y = tip.pos
    v1, v2 = ps.qd[1], ps.qd[2]
    return 0.01 * x**2 + (y - 2.0) ** 2 + 1e-3 * v1**2 + 5e-3 * v2**2


def _reacher_cost(state):
    tip_to_target = state.obs[-3:]  # fingertip - target, as Brax's Reacher observes it
    return 100.0 * jnp.sum(tip_to_target**2)


# env name -> (state cost, control weight, recommended temperature)
COSTS: dict[str, tuple[Callable, float, float]] = {
    "inverted_pendulum": (_inverted_pendulum_cost, 0.01, 1.0),
    "inverted_double_pendulum": (_inverted_double_pendulum_cost, 0.01, 1.0),
    "reacher": (_reacher_cost, 0.1, 0.1),
}

BACKENDS = ("generalized", "spring", "positional", "mjx")


def env_names() -> tuple[str, ...]:
    """The Brax environments ``problem`` accepts."""
    from brax import envs

    return tuple(sorted(envs._envs))


def make_env(env_name: str, backend: str = "generalized", **env_kwargs):
    """The Brax environment ``env_name``; unknown names, backends and kwargs raise ``ValueError``."""
    from brax import envs

    if env_name not in env_names():
        raise ValueError(f"unknown Brax environment {env_name!r}; known: {', '.join(env_names())}")
    if backend not in BACKENDS:
        raise ValueError(f"unknown Brax backend {backend!r}; choose one of {BACKENDS}")
    try:
        return envs.get_environment(env_name, backend=backend, **env_kwargs)
    except TypeError as err:
        raise ValueError(f"Brax environment {env_name!r} rejected the keyword arguments {sorted(env_kwargs)}: {err}") from err


def _same_types(new, old):
    """``new`` with every leaf cast to the dtype of ``old``'s leaf, so ``lax.scan`` sees one carry type.

    Brax's step returns some leaves with a different dtype or weak type than ``reset`` (a Python
    ``1.0`` reward, a ``float32`` ``done`` under x64).
    """
    return jax.tree.map(lambda n, o: jnp.asarray(n, dtype=jnp.result_type(o)), new, old)


def _env_and_initial_state(env_name: str, backend: str, seed: int, x64: bool, **env_kwargs):
    """``(env, env.reset(PRNGKey(seed)))``, remembered for hashable arguments.

    ``reset`` runs compiled as one function: run eagerly, each of its many operations compiles on
    its own (about 6 s against 1.5 s for the reacher on a 2-core CPU). The environment and its
    initial state are immutable, so building the same problem again (another horizon or cost)
    reuses them. ``x64`` is part of the key: the state's dtypes follow it.
    """
    try:
        key = (env_name, backend, seed, x64, tuple(sorted(env_kwargs.items())))
        hash(key)
    except TypeError:
        key = None
    if key is not None and key in _ENV_CACHE:
        return _ENV_CACHE[key]
    env = make_env(env_name, backend, **env_kwargs)
    built = env, jax.jit(env.reset)(jax.random.PRNGKey(seed))
    if key is not None:
        _ENV_CACHE[key] = built
    return built


_ENV_CACHE: dict = {}  # _env_and_initial_state's memo: (name, backend, seed, x64, kwargs) -> (env, x0)


def problem(env_name: str, backend: str = "generalized", horizon: int = 50, cost=None, *,
            control_weight: float | None = None, seed: int = 0, temperature: float | None = None,
            **env_kwargs) -> ControlProblem:
    """A Brax environment as a ``ControlProblem`` (see the module docstring).

    Args:
      env_name: a Brax environment (``env_names()``).
      backend: the Brax physics pipeline; ``"generalized"`` by default (see the module docstring).
      horizon: the number of environment steps.
      cost: ``None`` (the shipped cost if any, else ``-reward``), ``"reward"`` (``-reward``), or a
        callable ``cost(state) -> scalar`` summed over ``x_0 .. x_T``.
      control_weight: ``w`` in the added ``w |u|^2`` per step; default the shipped cost's weight
        (0 for ``-reward`` and user costs).
      seed: the key ``jax.random.PRNGKey(seed)`` that ``env.reset`` gets: a fixed initial state.
      temperature: the recommended temperature; default the shipped cost's, else 1.
      **env_kwargs: passed to the environment's constructor (``n_frames``, ...).
    """
    env, x0 = _env_and_initial_state(env_name, backend, seed, jax.config.jax_enable_x64, **env_kwargs)
    shipped = COSTS.get(env_name) if cost is None else None
    if shipped is not None:
        state_cost, default_weight, default_temperature = shipped
    elif cost is None or (isinstance(cost, str) and cost == "reward"):
        state_cost, default_weight, default_temperature = (lambda s: -s.reward), 0.0, 1.0
    elif callable(cost):
        state_cost, default_weight, default_temperature = cost, 0.0, 1.0
    else:
        raise ValueError(f"cost must be None, 'reward' or a callable cost(state), got {cost!r}")
    weight = float(default_weight if control_weight is None else control_weight)

    def step(state, u):
        # Fresh dicts: some Brax envs update state.metrics in place, which must not touch x0.
        state = state.replace(metrics=dict(state.metrics), info=dict(state.info))
        return _same_types(env.step(state, u), state)

    def stage_cost(state, u):
        return state_cost(state) + weight * jnp.sum(u**2)

    return ControlProblem(
        step=step,
        stage_cost=stage_cost,
        terminal_cost=state_cost,
        x0=x0,
        horizon=int(horizon),
        action_dim=int(env.action_size),
        name=f"brax.{env_name}",
        action_bounds=(-1.0, 1.0),
        observe=lambda state: state.obs,
        temperature=float(default_temperature if temperature is None else temperature),
    )
