"""The Boltzmann-tilted likelihood ``exp(-cost / temperature)`` as NumPyro sites."""

import numbers

import jax
import numpyro


def check_temperature(temperature) -> None:
    """Raise ``ValueError`` for a concrete temperature that is not a positive finite number."""
    if isinstance(temperature, numbers.Real) and not (0.0 < float(temperature) < float("inf")):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")


def boltzmann(cost: jax.Array, temperature: float = 1.0, name: str = "cost") -> jax.Array:
    """Tilt the model by ``exp(-cost / temperature)``; call it inside a NumPyro model.

    Adds two sites: a deterministic site ``name`` holding the cost (so every algorithm reports
    it per particle), and the factor ``f"{name}_boltzmann"`` with log-density
    ``-cost / temperature``. The factor is an observed site, so tempering scales it: at inverse
    temperature ``beta`` the target is ``prior(z) * exp(-beta * cost(z) / temperature)``.

    A NaN or infinite cost is passed through unchanged; the inference algorithms give such a
    particle weight zero.

    Returns:
      ``cost``, for chaining.
    """
    check_temperature(temperature)
    numpyro.deterministic(name, cost)
    numpyro.factor(f"{name}_boltzmann", -cost / temperature)
    return cost
