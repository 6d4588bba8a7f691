"""Differentiable open-loop rollout of a discrete-time system."""

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

StepFn = Callable[[Any, jax.Array], Any]


def rollout(step: StepFn, x0: Any, controls: jax.Array) -> Any:
    """Roll ``x_{t+1} = step(x_t, u_t)`` forward over ``controls`` with ``lax.scan``.

    Args:
      step: ``step(x, u) -> x_next``. ``x`` may be any pytree (an array, a Brax ``State``...).
      x0: the initial state.
      controls: array of shape ``(T, action_dim)`` (any leading time axis of length ``T``).

    Returns:
      The states ``x_0 .. x_T`` stacked on a new leading axis: every leaf gains a leading axis of
      length ``T + 1``. Differentiable in ``x0`` and ``controls``.
    """

    def body(x, u):
        x_next = step(x, u)
        return x_next, x_next

    _, tail = lax.scan(body, x0, controls)
    return jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), x0, tail)
