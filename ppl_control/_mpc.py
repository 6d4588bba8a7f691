"""Receding-horizon control (MPC): re-plan by inference at every step from the measured state.

At control step ``t`` the planner solves the open-loop problem of ``trajectory_model`` from the
measured state ``x_t`` (the model's first argument), applies the first action of the lowest-cost
plan, and the real system moves on::

    plan_t   = algorithm.run(key_t, x_t, init=shift(plan_{t-1}))      # any algorithm, one interface
    u_t      = clip(best particle of plan_t, "controls"[0])
    x_{t+1}  = true_step(key'_t, x_t, u_t)                              # noise, model error, Brax...

*Warm starts.* The previous step's particles are an excellent proposal for the next problem once
shifted by one step: the time axis of the ``controls`` site drops its first row (the action just
applied) and gains a new last row. The new row repeats the old last one (``shift="repeat"``, the
default) or is drawn from the model's prior (``shift="prior"``); BENCHMARKS.md ("MPC: warm-start
settings of TSMC") compares the two on pendulum and cart-pole.
Weighted particle sets (MPPI's, CEM's elites) are first resampled to equal weights, so every
algorithm receives the particles its previous answer stood for. What an algorithm does with them
is its own business (TSMC tempers from a Gaussian fitted to them, so its log evidence stays the
model's; the optimisers start from them).

*One compiled re-plan.* The algorithm is built once; its compiled pieces trace the state like any
array argument, so a new state of the same shape and dtype never retraces (states are cast to
``problem.x0``'s dtypes before every call). With ``warm_start=True`` the loop first plans from
the prior at ``x0`` (the *initial plan*, outside the loop and its timings), then every control
step, the first included, is the same warm re-plan: nothing is traced after the first step.
"""

import dataclasses
import inspect
import numbers
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from numpyro import handlers

from ._arviz import resample_indices
from ._errors import InferenceError
from ._logdensity import log_density
from ._problem import CONTROLS_SITE
from ._result import Result

SHIFTS = ("repeat", "prior")
ACTIONS = ("best", "mean")


@dataclasses.dataclass(frozen=True)
class ClosedLoop:
    """The record of a receding-horizon run (``pc.mpc``).

    Attributes:
      method: the planning algorithm's name.
      states: the measured states ``x_0 .. x_N``: ``problem.x0``'s pytree with a leading axis of
        ``num_steps + 1`` (NumPy leaves).
      observations: ``problem.observation`` of every state, ``(num_steps + 1, obs_dim)``.
      actions: the applied (clipped) actions, ``(num_steps, action_dim)``.
      stage_costs: ``stage_cost(x_t, u_t)`` of the problem, ``(num_steps,)``.
      terminal_cost: ``terminal_cost(x_N)``.
      solve_time: wall-clock seconds of each re-plan (shift + run + picking the action).
      plans: the plan whose first action was applied at every step (the lowest-cost one, or the
        weighted mean with ``action="mean"``), ``(num_steps, horizon, action_dim)``.
      diagnostics: name -> ``(num_steps,)``: ``plan_cost`` (the chosen plan's model cost) and,
        where the algorithm reports them, ``num_stages``, ``log_evidence``, ``num_evaluations``.
      initial: ``None``, or for a warm-started loop the initial (cold) plan at ``x0``: its
        ``solve_time`` (compilation included) and the same diagnostics.
      config: the algorithm's configuration and the loop's settings.
    """

    method: str
    states: Any
    observations: np.ndarray
    actions: np.ndarray
    stage_costs: np.ndarray
    terminal_cost: float
    solve_time: np.ndarray
    plans: np.ndarray
    diagnostics: dict
    initial: dict | None = None
    config: dict = dataclasses.field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def cost(self) -> float:
        """The closed-loop cost: the summed stage costs plus the terminal cost of the last state."""
        return float(np.sum(self.stage_costs, dtype=np.float64) + self.terminal_cost)

    def to_arviz(self):
        """This closed loop as an ArviZ ``xarray.DataTree`` with a ``closed_loop`` group."""
        from ._arviz import to_arviz

        return to_arviz(self)

    def __repr__(self) -> str:
        times = self.solve_time[1:] if self.num_steps > 1 else self.solve_time
        return (f"ClosedLoop(method={self.method!r}, num_steps={self.num_steps}, cost={self.cost:.4g}, "
                f"median_solve_time={np.median(times):.3g}s)")


def _problem_of(algorithm):
    model = getattr(algorithm, "model", None)
    problem = getattr(model, "problem", None)
    if model is None or problem is None:
        raise ValueError(
            "mpc needs an algorithm built on pc.trajectory_model(problem) (a model that carries "
            f".problem and takes the state as its first argument); got {type(algorithm).__name__} "
            f"on {getattr(model, '__name__', model)!r}"
        )
    return model, problem


def _check_model(model, problem, x) -> tuple:
    """The latent sites, after checking the model has a time-first ``controls`` site."""
    ld = log_density(model, x)  # raises for a model with no latent or no observed site
    shape = ld.latent_shapes.get(CONTROLS_SITE)
    if shape != tuple(problem.controls_shape):
        raise ValueError(
            f"mpc needs the latent site {CONTROLS_SITE!r} of shape (horizon, action_dim) = "
            f"{tuple(problem.controls_shape)} (time first, as trajectory_model makes it); the model's "
            f"latent sites are {dict(ld.latent_shapes)}"
        )
    return ld.latent_names


def _accepts_init(algorithm) -> bool:
    try:
        return "init" in inspect.signature(algorithm.run).parameters
    except (TypeError, ValueError):
        return False


def _equal_weight_sites(result: Result, names) -> dict:
    """The latent sites of ``result``'s particles resampled to equal weights (deterministic)."""
    index = resample_indices(result.log_weights)
    return {n: np.asarray(result.samples[n])[index] for n in names}


def shift_controls(values: dict, new_last: np.ndarray | None = None) -> dict:
    """``values`` with the ``controls`` site moved one step forward in time.

    Row 0 (the action just applied) is dropped and a last row appended: ``new_last``
    ``(particles, action_dim)`` when given, else a repeat of the old last row.
    """
    controls = np.asarray(values[CONTROLS_SITE])
    last = controls[:, -1] if new_last is None else np.asarray(new_last, controls.dtype)
    shifted = dict(values)
    shifted[CONTROLS_SITE] = np.concatenate([controls[:, 1:], last[:, None]], axis=1)
    return shifted


def _diagnostics(result: Result) -> dict:
    best = result.best_index()
    out = {"plan_cost": float(np.sum(np.asarray(result.samples["cost"])[best]))}
    if "num_stages" in result.config:
        out["num_stages"] = int(result.config["num_stages"])
    if result.log_evidence is not None:
        out["log_evidence"] = float(result.log_evidence)
    if "num_evaluations" in result.stats:
        out["num_evaluations"] = int(np.sum(result.stats["num_evaluations"]))
    return out


def _applied_plan(result: Result, action: str, clip_all) -> np.ndarray:
    """The plan whose first action is applied: the lowest-cost particle's (``"best"``), or the
    weighted mean of the particles' clipped plans (``"mean"``), where particles whose plan or
    weight is not finite count for nothing; with none left, the best plan."""
    controls = np.asarray(result.samples[CONTROLS_SITE])
    best = controls[result.best_index()]
    if action == "best":
        return best
    plans = np.array(clip_all(jnp.asarray(controls)), dtype=np.float64)
    finite = np.all(np.isfinite(plans.reshape(plans.shape[0], -1)), axis=1)
    weights = np.where(finite, np.nan_to_num(result.weights), 0.0)
    if not weights.sum() > 0:
        return best
    plans[~finite] = 0.0
    return np.tensordot(weights / weights.sum(), plans, axes=1).astype(controls.dtype)


def _all_finite(tree) -> bool:
    return all(bool(np.all(np.isfinite(np.asarray(leaf)))) for leaf in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(leaf).dtype, np.inexact))


def mpc(
    algorithm,
    x0: Any,
    num_steps: int,
    rng_key: jax.Array,
    true_step: Callable | None = None,
    warm_start: bool = True,
    *,
    shift: str = "repeat",
    action: str = "best",
    progress_bar: bool = False,
) -> ClosedLoop:
    """Receding-horizon control with ``algorithm`` as the planner (see the module docstring).

    Example::

        problem = models.get("pendulum", horizon=40)
        planner = TSMC(pc.trajectory_model(problem), num_particles=128, progress_bar=False)
        loop = pc.mpc(planner, problem.x0, num_steps=100, rng_key=jax.random.key(0))
        loop.cost, loop.actions, loop.solve_time, loop.diagnostics["num_stages"]

    Args:
      algorithm: any ``ppl_control.inference`` algorithm (or one with the same ``run``) built on
        ``pc.trajectory_model(problem)``; its own progress bar is best switched off.
      x0: the initial state (``problem.x0``'s structure and shapes; any pytree).
      num_steps: control steps ``N``.
      rng_key: a JAX PRNG key; the plan of step ``t`` and the true system's step ``t`` get keys
        folded from it, so the same key gives the same closed loop.
      true_step: ``true_step(key, x, u) -> x_next``, the real system (noise, other parameters, a
        Brax env...); it receives the clipped action. Default: the model's own
        ``problem.step(x, u)``, compiled. A custom one is called as given (``jax.jit`` it).
      warm_start: re-plan from the previous plan shifted by one step (``run(..., init=...)``);
        ``False`` plans every step from the prior.
      shift: how the shifted plan gets its new last action: ``"repeat"`` the old last one, or a
        ``"prior"`` draw.
      action: which plan's first action is applied: ``"best"``, the lowest-cost particle's, or
        ``"mean"``, the weighted mean of the particles' (clipped) plans. The mean is the
        path-integral optimal control (Kappen 2005; what MPPI applies): for a Boltzmann
        posterior, the expected first action of the posterior over plans. It averages out the
        sampling noise a single particle carries at the model's temperature, but it also averages
        modes: use it when the particles follow one plan (a warm-started TSMC does, as do MPPI
        and CEM), not when they split between, say, swinging left and right.
      progress_bar: a tqdm bar over the control steps.

    Returns:
      A ``ClosedLoop``.

    Raises:
      ValueError: a model without ``.problem`` or without a time-first ``controls`` site, a model
        with no latent site, a state of the wrong structure or shape, an algorithm whose ``run``
        takes no ``init`` with ``warm_start=True``, an unknown ``shift``.
      InferenceError: the true system's state becomes non-finite.
    """
    model, problem = _problem_of(algorithm)
    if not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    if shift not in SHIFTS:
        raise ValueError(f"shift must be one of {SHIFTS}, got {shift!r}")
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
    warm_start = bool(warm_start)
    if warm_start and not _accepts_init(algorithm):
        raise ValueError(f"{type(algorithm).__name__}.run takes no init= (a warm start); "
                         "use warm_start=False")
    x = problem.as_state(x0)
    latent_names = _check_model(model, problem, x)

    key_initial, key_plan, key_true, key_shift = jax.random.split(rng_key, 4)
    if true_step is None:
        true_step = jax.jit(lambda key, state, u: problem.step(state, u))
    stage_cost = jax.jit(problem.stage_cost)
    clip = jax.jit(problem.clip)
    clip_all = jax.jit(jax.vmap(problem.clip))
    prior_controls = jax.jit(
        lambda key, state, n: jax.vmap(
            lambda k: handlers.trace(handlers.seed(model, k)).get_trace(state)[CONTROLS_SITE]["value"]
        )(jax.random.split(key, n)),
        static_argnums=2,
    )

    def next_init(result, t):
        values = _equal_weight_sites(result, latent_names)
        if t is None:  # the initial plan is for x0 itself: no shift
            return values
        new_last = None
        if shift == "prior":
            n = values[CONTROLS_SITE].shape[0]
            new_last = np.asarray(prior_controls(jax.random.fold_in(key_shift, t), x, n))[:, -1]
        return shift_controls(values, new_last)

    initial, init = None, None
    if warm_start:
        start = time.perf_counter()
        result = algorithm.run(key_initial, x)
        initial = dict(_diagnostics(result), solve_time=time.perf_counter() - start)
        init = next_init(result, None)

    states, actions, costs, times, plans, diagnostics = [x], [], [], [], [], []
    bar = _progress(num_steps, f"mpc ({algorithm.method})" if hasattr(algorithm, "method") else "mpc",
                    progress_bar)
    try:
        for t in range(num_steps):
            start = time.perf_counter()
            if warm_start:
                if t > 0:
                    init = next_init(result, t - 1)
                result = algorithm.run(jax.random.fold_in(key_plan, t), x, init=init)
            else:
                result = algorithm.run(jax.random.fold_in(key_plan, t), x)
            plan = _applied_plan(result, action, clip_all)
            u = clip(plan[0])
            times.append(time.perf_counter() - start)
            costs.append(float(stage_cost(x, u)))
            x_next = problem.as_state(true_step(jax.random.fold_in(key_true, t), x, u))
            if not _all_finite(x_next):
                raise InferenceError(
                    f"mpc: the true system's state became non-finite at control step {t} "
                    f"(action {np.asarray(u).tolist()}); the closed loop diverged"
                )
            actions.append(np.asarray(u))
            plans.append(plan)
            diagnostics.append(_diagnostics(result))
            states.append(x_next)
            x = x_next
            bar.update(1)
            bar.set_postfix_str(f"solve {times[-1]:.3g}s, stage cost {costs[-1]:.4g}")
    finally:
        bar.close()

    stacked = jax.tree.map(lambda *leaves: np.stack([np.asarray(leaf) for leaf in leaves]), *states)
    observations = np.asarray(jax.jit(jax.vmap(problem.observation))(stacked))
    config = dict(getattr(algorithm, "config", {}), mpc_num_steps=int(num_steps), warm_start=warm_start,
                  shift=shift, action=action, horizon=int(problem.horizon), problem=problem.name)
    return ClosedLoop(
        method=getattr(algorithm, "method", type(algorithm).__name__),
        states=stacked,
        observations=observations.reshape(observations.shape[0], -1),
        actions=np.stack(actions),
        stage_costs=np.asarray(costs),
        terminal_cost=float(jax.jit(problem.terminal_cost)(x)),
        solve_time=np.asarray(times),
        plans=np.stack(plans),
        diagnostics={k: np.asarray([d[k] for d in diagnostics]) for k in diagnostics[0]},
        initial=initial,
        config=config,
    )


def _progress(total: int, desc: str, enabled: bool):
    if enabled:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, leave=True, dynamic_ncols=True)
    return _SilentBar()


class _SilentBar:
    def update(self, n=1):
        pass

    def set_postfix_str(self, s, refresh=True):
        pass

    def close(self):
        pass
