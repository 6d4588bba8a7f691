"""Helpers the problem modules share: override checking and explicit integrators."""

from typing import Callable

import jax
import jax.numpy as jnp


def settings(name: str, defaults: dict, overrides: dict, extra: tuple = ()) -> dict:
    """``defaults`` updated by ``overrides``; an unknown key raises ``ValueError`` naming it."""
    unknown = set(overrides) - set(defaults) - set(extra)
    if unknown:
        known = sorted(set(defaults) | set(extra))
        raise ValueError(f"{name}.problem: unknown overrides {sorted(unknown)}; known: {known}")
    return dict(defaults, **overrides)


def as_float_array(value) -> jax.Array:
    """``value`` as an array of JAX's default float type (float64 under ``enable_x64``)."""
    return jnp.asarray(value, dtype=jnp.result_type(float))


def euler(f: Callable, x: jax.Array, u: jax.Array, dt: float) -> jax.Array:
    """One explicit Euler step of ``dx/dt = f(x, u)`` with ``u`` held constant."""
    return x + dt * f(x, u)


def rk4(f: Callable, x: jax.Array, u: jax.Array, dt: float) -> jax.Array:
    """One classical fourth-order Runge-Kutta step of ``dx/dt = f(x, u)``, ``u`` held constant."""
    k1 = f(x, u)
    k2 = f(x + 0.5 * dt * k1, u)
    k3 = f(x + 0.5 * dt * k2, u)
    k4 = f(x + dt * k3, u)
    return x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


INTEGRATORS = {"euler": euler, "rk4": rk4}


def integrator(name: str, problem_name: str) -> Callable:
    """The integrator called ``name``; an unknown name raises ``ValueError``."""
    if name not in INTEGRATORS:
        raise ValueError(f"{problem_name}: unknown integrator {name!r}; choose one of {sorted(INTEGRATORS)}")
    return INTEGRATORS[name]


def reference_for(reference_cost, overrides: dict):
    """The default problem's reference cost, or ``None`` once an override changes the problem.

    The temperature does not change the optimum, so overriding only it keeps the reference.
    """
    return reference_cost if set(overrides) <= {"temperature"} else None
