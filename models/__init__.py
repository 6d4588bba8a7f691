"""Ready-made control problems: each module has ``problem(**overrides) -> ControlProblem``.

    from ppl_control import models
    models.names()                      # the registered problems
    models.get("pendulum", horizon=40)  # build one, with overrides
"""

import importlib

from ppl_control import ControlProblem

# Registered problem modules, in the order ``names()`` lists them. Brax environments are reached
# through ``models.brax.problem(env_name)`` and RDDL domains through ``models.rddl.problem(domain,
# instance)`` (the ``rddl`` extra); neither is in this list (they need a name).
_PROBLEMS = ("lqr", "pendulum", "cartpole", "acrobot", "double_integrator", "navigation", "unicycle", "reservoir",
             "pusher_slider")


def names() -> tuple[str, ...]:
    """The names of the ready-made problems, for ``get``."""
    return _PROBLEMS


def module(name: str):
    """The module that defines problem ``name`` (its docstring documents the problem)."""
    if name not in _PROBLEMS:
        raise ValueError(f"unknown problem {name!r}; known problems: {', '.join(_PROBLEMS)}")
    return importlib.import_module(f"{__name__}.{name}")


def get(name: str, **overrides) -> ControlProblem:
    """Build problem ``name`` with keyword ``overrides`` (see the module's ``problem``)."""
    return module(name).problem(**overrides)


def __getattr__(name: str):
    # ``models.pendulum`` works without an explicit import; Brax and RDDL load only when asked for.
    if name in _PROBLEMS or name in ("brax", "rddl"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["get", "module", "names"]
