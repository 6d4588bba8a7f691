"""Control problems and the NumPyro model that turns one into an inference problem."""

import dataclasses
import numbers
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ._boltzmann import boltzmann, check_temperature
from ._rollout import rollout

CONTROLS_SITE = "controls"


def _last_state(states):
    return jax.tree.map(lambda leaf: leaf[-1], states)


def _all_but_last_state(states):
    return jax.tree.map(lambda leaf: leaf[:-1], states)


@dataclasses.dataclass(frozen=True, eq=False)
class ControlProblem:
    """A finite-horizon optimal-control problem with a differentiable cost.

    Immutable, and hashed by identity, so ``jax.jit(problem.cost)`` works (its arrays, such as
    ``x0``, are compile-time constants of that function).

    The cost of an open-loop control sequence ``u_0 .. u_{T-1}`` is::

        J(u) = sum_t stage_cost(x_t, u_t) + terminal_cost(x_T),   x_{t+1} = step(x_t, u_t)

    Attributes:
      step: ``step(x, u) -> x_next``; ``x`` may be any pytree (a Brax ``State``, say).
      stage_cost: ``stage_cost(x, u) -> scalar``.
      terminal_cost: ``terminal_cost(x) -> scalar``.
      x0: the initial state.
      horizon: the number of control steps ``T``.
      action_dim: the dimension of one control ``u_t``.
      name: a short identifier (used in reports and file names).
      action_bounds: ``None``, or ``(low, high)`` (scalars or arrays of shape ``(action_dim,)``).
        Controls are clipped to the bounds inside the dynamics, and ``trajectory_model`` puts a
        prior supported on the box so samples always respect them.
      observe: ``observe(x) -> vector``: what a policy sees and what plots draw of a state.
        Defaults to the state itself, which must then be an array.
      temperature: the temperature the problem's author recommends for ``trajectory_model``.
      reference_cost: a known good (near-optimal) cost, with how it was found in the model's
        docstring; ``None`` where there is none.
    """

    step: Callable
    stage_cost: Callable
    terminal_cost: Callable
    x0: Any
    horizon: int
    action_dim: int
    name: str
    action_bounds: tuple | None = None
    observe: Callable | None = None
    temperature: float = 1.0
    reference_cost: float | None = None

    def __post_init__(self):
        if int(self.horizon) < 1:
            raise ValueError(f"horizon must be a positive integer, got {self.horizon!r}")
        if int(self.action_dim) < 1:
            raise ValueError(f"action_dim must be a positive integer, got {self.action_dim!r}")
        check_temperature(self.temperature)

    @property
    def controls_shape(self) -> tuple[int, int]:
        return (self.horizon, self.action_dim)

    def _check_controls(self, controls):
        if tuple(jnp.shape(controls)) != self.controls_shape:
            raise ValueError(
                f"{self.name}: controls must have shape (horizon, action_dim) = "
                f"{self.controls_shape}, got {tuple(jnp.shape(controls))}"
            )

    def clip(self, controls: jax.Array) -> jax.Array:
        """Clip controls to ``action_bounds`` (the identity when there are none)."""
        if self.action_bounds is None:
            return controls
        low, high = self.action_bounds
        return jnp.clip(controls, low, high)

    def as_state(self, x: Any) -> Any:
        """``x`` checked against ``x0`` (same pytree structure, same leaf shapes) and cast to its
        dtypes, so that every state a compiled function sees has one type (no retracing).

        Raises:
          ValueError: when ``x`` has another structure or another shape than ``x0``.
        """
        ref_leaves, ref_tree = jax.tree.flatten(self.x0)
        if jax.tree_util.treedef_is_leaf(ref_tree) and isinstance(x, (list, tuple, np.ndarray, numbers.Number)):
            x = jnp.asarray(x)  # an array state may be given as a list or a NumPy array
        x_leaves, x_tree = jax.tree.flatten(x)
        if x_tree != ref_tree:
            raise ValueError(f"{self.name}: a state must have the structure of problem.x0 ({ref_tree}), got {x_tree}")
        shapes = [tuple(jnp.shape(leaf)) for leaf in x_leaves]
        expected = [tuple(jnp.shape(leaf)) for leaf in ref_leaves]
        if shapes != expected:
            shown = lambda s: s[0] if len(s) == 1 else s
            raise ValueError(f"{self.name}: a state must have the shape of problem.x0, {shown(expected)}, "
                             f"got {shown(shapes)}")
        cast = [jnp.asarray(leaf, dtype=jnp.result_type(ref)) for leaf, ref in zip(x_leaves, ref_leaves)]
        return jax.tree.unflatten(ref_tree, cast)

    def _initial(self, x0):
        return self.x0 if x0 is None else self.as_state(x0)

    def trajectory(self, controls: jax.Array, x0: Any = None) -> Any:
        """The states ``x_0 .. x_T`` under ``controls`` (leading axis ``T + 1``), from ``x0``
        (default ``problem.x0``)."""
        self._check_controls(controls)
        return rollout(self.step, self._initial(x0), self.clip(controls))

    def cost_terms(self, controls: jax.Array, x0: Any = None) -> tuple[jax.Array, jax.Array]:
        """``(stage costs of shape (T,), terminal cost)``: the parts of ``cost``."""
        controls = self.clip(controls)
        states = self.trajectory(controls, x0)
        stage = jax.vmap(self.stage_cost)(_all_but_last_state(states), controls)
        return stage, self.terminal_cost(_last_state(states))

    def cost(self, controls: jax.Array, x0: Any = None) -> jax.Array:
        """The total cost ``J(controls)`` from ``x0`` (default ``problem.x0``): rollout plus
        summed costs, differentiable in both."""
        stage, terminal = self.cost_terms(controls, x0)
        return jnp.sum(stage) + terminal

    def observation(self, state: Any) -> jax.Array:
        """``observe(state)``, or the state itself when no ``observe`` was given."""
        return state if self.observe is None else self.observe(state)


def control_prior(problem: ControlProblem, prior_scale: float = 1.0) -> dist.Distribution:
    """The prior over a ``(horizon, action_dim)`` control sequence used by ``trajectory_model``.

    Unbounded problems: independent ``Normal(0, prior_scale)``. Bounded problems: a normal centred
    on the middle of the box with scale ``prior_scale * half_width``, truncated to the box, so
    every sample is admissible and the unconstrained space inference works in is all of R^n.
    """
    if not prior_scale > 0:
        raise ValueError(f"prior_scale must be positive, got {prior_scale!r}")
    shape = problem.controls_shape
    if problem.action_bounds is None:
        base = dist.Normal(jnp.zeros(shape), prior_scale)
    else:
        low, high = (jnp.broadcast_to(jnp.asarray(b, jnp.result_type(float)), shape) for b in problem.action_bounds)
        if not bool(jnp.all(high > low)):
            raise ValueError(f"{problem.name}: action_bounds need low < high, got {problem.action_bounds}")
        mid, half = 0.5 * (low + high), 0.5 * (high - low)
        base = dist.TruncatedNormal(mid, prior_scale * half, low=low, high=high)
    return base.to_event(2)


def trajectory_model(problem: ControlProblem, temperature: float | None = None, prior_scale: float = 1.0):
    """The NumPyro model of open-loop trajectory optimisation for ``problem``.

    The latent site ``"controls"`` (shape ``(horizon, action_dim)``, time first) has the prior of
    ``control_prior``; the cost enters through ``boltzmann``, so the model's density is::

        p(u) * exp(-J(u; x0) / temperature)

    The model takes the initial (measured) state as its one argument, ``model(x0=None)``; ``None``
    keeps ``problem.x0``. An algorithm built once on the model serves every state:
    ``algo.run(key, x)`` traces ``x`` like any array argument, so a new state of the same shape
    reuses the compiled code (receding-horizon control, ``pc.mpc``, relies on this).

    Args:
      problem: the ``ControlProblem``.
      temperature: lambda in ``exp(-J / lambda)``; defaults to ``problem.temperature``.
      prior_scale: the scale of the prior on the controls (see ``control_prior``).

    Returns:
      A NumPyro model ``model(x0=None)``.
    """
    temperature = problem.temperature if temperature is None else temperature
    check_temperature(temperature)
    prior = control_prior(problem, prior_scale)
    # Compiled once: every algorithm's ``run`` also evaluates the model outside its compiled code
    # (to split the log density, to report the particles), and an uncompiled rollout costs a
    # fresh trace of its ``lax.scan`` each time (12x slower measured on pendulum, horizon 30).
    # Inside an algorithm's own trace the call is inlined as usual.
    cost = jax.jit(problem.cost)

    def model(x0=None):
        x0 = problem.x0 if x0 is None else problem.as_state(x0)
        controls = numpyro.sample(CONTROLS_SITE, prior)
        boltzmann(cost(controls, x0), temperature)

    model.problem = problem  # lets tools (plots, the CLI) find the problem behind a model
    return model
