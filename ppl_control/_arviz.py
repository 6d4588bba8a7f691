"""``to_arviz``: a ``Result`` (or several independent runs) as an ArviZ ``xarray.DataTree``.

The layout follows ArviZ's schema so that ``az.summary``, ``az.plot_trace``, ``az.plot_forest``
and ``az.plot_dist`` work on it unchanged:

* ``posterior``: every latent and deterministic site, dims ``(chain, draw, ...)``. A chain is one
  independent run; a draw is one particle. Weighted particle sets are resampled to equal weights
  (deterministic systematic resampling, see ``resample_indices``), because every ArviZ statistic
  treats draws as equally weighted.
* ``sample_stats``: ``cost``, ``log_weight`` (the normalised log weight the drawn particle carried
  before resampling), ``particle`` (its index in the run) and the per-particle statistics the
  algorithm recorded, under ArviZ's reserved names where they apply (``lp``,
  ``acceptance_rate``, ``step_size``, ``diverging``).
* ``log_likelihood``: each observed site's log density per draw.
* ``tempering`` (TSMC; dims ``(chain, stage, ...)``) or ``optimization`` (MDPO, gradient descent,
  CEM, MPPI; dims ``(chain, iteration, ...)``): the run's per-stage / per-iteration statistics.
  Runs with different numbers of stages are padded with NaN.
* ``closed_loop`` (a ``ClosedLoop`` of ``pc.mpc`` instead of a ``Result``; dims ``(chain, step)``
  and ``(chain, time)``): states, actions, stage costs, solve times and per-step diagnostics.

The root node's attributes hold the method, its configuration (as a JSON string, since netCDF
attributes must be flat) and the log evidence, so ``dt.to_netcdf(path)`` followed by
``xarray.open_datatree(path)`` gives back the same tree.
"""

import json
import math
import numbers
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ._result import Result

# Statistics whose trailing axes have a known meaning; any other gets ``{name}_dim_{i}``.
_SITE_DIMS = {"controls": ("time", "action")}
_STAT_DIMS = {"noise_scale": ("time", "action")}
# The per-particle statistics ArviZ's schema reserves, with the dtype it expects.
_RESERVED_DTYPES = {"diverging": bool}


def resample_indices(log_weights, num_draws: int | None = None) -> np.ndarray:
    """Deterministic systematic resampling: ``num_draws`` particle indices with equal weights.

    Particle ``i`` appears ``floor(N w_i)`` or ``ceil(N w_i)`` times. The offset is fixed at the
    middle of each stratum (no randomness), so the same result always gives the same DataTree, and
    uniform weights give back every particle once, in order.
    """
    w = np.exp(np.asarray(log_weights, dtype=np.float64))
    w = np.where(np.isfinite(w), w, 0.0)
    total = w.sum()
    if not total > 0:
        raise ValueError("to_arviz: every log weight is -inf or NaN; there is no particle to draw")
    n = w.shape[0] if num_draws is None else int(num_draws)
    cumulative = np.cumsum(w / total)
    # Clip the queries below the last cumulative weight: rounding may leave it just under 1.
    queries = np.minimum((np.arange(n) + 0.5) / n, cumulative[-1])
    return np.minimum(np.searchsorted(cumulative, queries, side="left"), w.shape[0] - 1)


def _jsonable(value):
    """``value`` as plain JSON types; arrays become lists, anything else its ``repr``."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else repr(f)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return _jsonable(np.asarray(value).tolist())
    return repr(value)


def _dims(name: str, shape: tuple, leading: tuple, table: dict) -> tuple:
    """Dimension names for a variable of ``shape`` whose first axes are ``leading``."""
    event = shape[len(leading):]
    known = table.get(name)
    if known is not None and len(known) >= len(event):
        return leading + known[: len(event)]
    return leading + tuple(f"{name}_dim_{i}" for i in range(len(event)))


def _stack_chains(arrays: list[np.ndarray], pad_axis: int | None) -> np.ndarray:
    """Stack per-run arrays along a new chain axis, NaN-padding ``pad_axis`` to a common length."""
    if pad_axis is None or len({a.shape[pad_axis] for a in arrays}) == 1:
        return np.stack(arrays)
    length = max(a.shape[pad_axis] for a in arrays)
    padded = []
    for a in arrays:
        a = a.astype(np.float64) if not np.issubdtype(a.dtype, np.floating) else a
        widths = [(0, 0)] * a.ndim
        widths[pad_axis] = (0, length - a.shape[pad_axis])
        padded.append(np.pad(a, widths, constant_values=np.nan))
    return np.stack(padded)


def _dataset(per_run: list[dict], leading: tuple, table: dict, coords: dict, pad: bool) -> xr.Dataset:
    data_vars = {}
    for name in per_run[0]:
        arrays = [np.asarray(run[name]) for run in per_run]
        stacked = _stack_chains(arrays, 0 if pad else None)
        if name in _RESERVED_DTYPES:
            stacked = stacked.astype(_RESERVED_DTYPES[name])
        data_vars[name] = (_dims(name, stacked.shape, leading, table), stacked)
    ds = xr.Dataset(data_vars)
    return ds.assign_coords({d: c for d, c in coords.items() if d in ds.dims})


def _check_compatible(results: list[Result]) -> None:
    first = results[0]
    for r in results[1:]:
        if r.method != first.method:
            raise ValueError(
                f"to_arviz: chains must come from one method, got {first.method!r} and {r.method!r}"
            )
        if set(r.samples) != set(first.samples):
            raise ValueError(
                f"to_arviz: chains must have the same sites, got {sorted(first.samples)} and "
                f"{sorted(r.samples)}"
            )
        if r.num_particles != first.num_particles:
            raise ValueError(
                "to_arviz: chains must have the same number of particles, got "
                f"{first.num_particles} and {r.num_particles}"
            )


def _common_keys(dicts: list[dict]) -> list[str]:
    """Keys present in every dict, in the first dict's order."""
    return [k for k in dicts[0] if all(k in d for d in dicts[1:])]


def _stats_group(results: list[Result]) -> tuple[str, xr.Dataset] | None:
    names = _common_keys([r.stats for r in results])
    if not names:
        return None
    group, axis = ("tempering", "stage") if "beta" in names else ("optimization", "iteration")
    per_run = [{n: np.asarray(r.stats[n]) for n in names} for r in results]
    length = max(per_run[i][n].shape[0] for i in range(len(results)) for n in names)
    ds = _dataset(per_run, ("chain", axis), _STAT_DIMS, {"chain": np.arange(len(results)),
                                                          axis: np.arange(length)}, pad=True)
    return group, ds


def _root_attrs(results: list[Result]) -> dict:
    configs = [_jsonable(r.config) for r in results]
    attrs = {
        "method": results[0].method,
        "config": json.dumps(configs[0] if all(c == configs[0] for c in configs) else configs,
                             sort_keys=True),
        "num_chains": len(results),
        "num_particles": results[0].num_particles,
        "inference_library": "ppl_control",
    }
    evidence = [r.log_evidence for r in results]
    if any(e is not None for e in evidence):
        values = np.array([np.nan if e is None else float(e) for e in evidence])
        attrs["log_evidence"] = float(values[0]) if len(values) == 1 else values
    return attrs


def to_arviz(results: Result | Sequence[Result]) -> xr.DataTree:
    """Convert one ``Result``, or a list of independent runs (one chain each), to a DataTree.

    Args:
      results: a ``ppl_control.Result`` or a non-empty sequence of them, all from the same method
        with the same sites and number of particles (run with different keys, say); or a
        ``ClosedLoop`` or a sequence of them (see ``closed_loop_to_arviz``).

    Returns:
      An ``xarray.DataTree`` with groups ``posterior``, ``sample_stats``, ``log_likelihood`` and,
      where the run recorded them, ``tempering`` (TSMC) or ``optimization`` (the other methods).
      See the module docstring for the layout.

    Raises:
      ValueError: for an empty list, runs that do not match, or a run whose weights are all zero.

    Example::

        dt = pc.to_arviz([TSMC(model).run(jax.random.key(s)) for s in range(4)])
        az.summary(dt, var_names=["cost"])     # R-hat and ESS between the four runs
        dt.to_netcdf("run.nc")
    """
    if _is_closed_loop(results):
        return closed_loop_to_arviz(results)
    results = [results] if isinstance(results, Result) else list(results)
    if not results:
        raise ValueError("to_arviz needs at least one Result")
    for r in results:
        if not isinstance(r, Result):
            raise ValueError(f"to_arviz expects ppl_control.Result objects, got {type(r).__name__}")
    _check_compatible(results)

    ancestors = [resample_indices(r.log_weights) for r in results]
    num_draws = len(ancestors[0])
    coords = {"chain": np.arange(len(results)), "draw": np.arange(num_draws)}
    sample_dims = ("chain", "draw")

    def drawn(per_run_dicts):
        names = _common_keys(per_run_dicts)
        return [{n: np.asarray(d[n])[a] for n in names} for d, a in zip(per_run_dicts, ancestors)]

    posterior = _dataset(drawn([r.samples for r in results]), sample_dims, _SITE_DIMS, coords, False)

    stats = drawn([r.particle_stats for r in results])
    for run, r, a in zip(stats, results, ancestors):
        if "cost" in r.samples:
            run["cost"] = np.asarray(r.samples["cost"])[a]
        run["log_weight"] = np.asarray(r.log_weights, dtype=np.float64)[a]
        run["particle"] = a
    sample_stats = _dataset(stats, sample_dims, {}, coords, False)

    groups = {"posterior": posterior, "sample_stats": sample_stats}
    log_likelihood = drawn([r.log_likelihood for r in results])
    if log_likelihood[0]:
        groups["log_likelihood"] = _dataset(log_likelihood, sample_dims, {}, coords, False)
    stats_group = _stats_group(results)
    if stats_group is not None:
        groups[stats_group[0]] = stats_group[1]

    attrs = _root_attrs(results)
    for ds in groups.values():
        ds.attrs.update({"method": attrs["method"], "inference_library": "ppl_control"})
    tree = xr.DataTree.from_dict({f"/{name}": ds for name, ds in groups.items()})
    tree.attrs.update(attrs)
    return tree


def _is_closed_loop(obj) -> bool:
    from ._mpc import ClosedLoop

    if isinstance(obj, ClosedLoop):
        return True
    return isinstance(obj, Sequence) and bool(obj) and all(isinstance(o, ClosedLoop) for o in obj)


# Per-control-step variables of a ClosedLoop and their dimensions after (chain, ...).
_CLOSED_LOOP_DIMS = {
    "state": ("time", "state_dim"),
    "action": ("step", "action_dim"),
    "stage_cost": ("step",),
    "solve_time": ("step",),
    "plan": ("step", "plan_time", "action_dim"),
}


def closed_loop_to_arviz(loops) -> xr.DataTree:
    """One ``ClosedLoop`` (or several, one chain each: other initial states or keys) as a DataTree.

    The ``closed_loop`` group holds, with dims ``(chain, ...)``: ``state`` (the observations of
    the measured states, ``(time, state_dim)`` with ``num_steps + 1`` times), ``action``,
    ``stage_cost``, ``solve_time`` and every per-step diagnostic (``plan_cost``, ``num_stages``...)
    along ``step``, the chosen ``plan`` of every step ``(step, plan_time, action_dim)`` and the
    closed-loop ``cost`` per chain. The root's attributes hold the method, the configuration
    (JSON) and the initial (cold) plan's diagnostics of a warm-started loop.

    Raises:
      ValueError: loops from different methods or with different numbers of steps.
    """
    from ._mpc import ClosedLoop

    loops = [loops] if isinstance(loops, ClosedLoop) else list(loops)
    first = loops[0]
    for loop in loops[1:]:
        if loop.method != first.method or loop.num_steps != first.num_steps:
            raise ValueError(
                "to_arviz: closed loops must come from one method with one number of steps, got "
                f"{first.method!r} x {first.num_steps} and {loop.method!r} x {loop.num_steps}"
            )
    per_run = [dict(state=loop.observations, action=loop.actions, stage_cost=loop.stage_costs,
                    solve_time=loop.solve_time, plan=loop.plans, **loop.diagnostics) for loop in loops]
    data_vars = {}
    for name in per_run[0]:
        stacked = np.stack([np.asarray(run[name]) for run in per_run])
        dims = ("chain",) + _CLOSED_LOOP_DIMS.get(name, ("step",))
        data_vars[name] = (dims[: stacked.ndim], stacked)
    data_vars["cost"] = (("chain",), np.array([loop.cost for loop in loops]))
    ds = xr.Dataset(data_vars)
    ds = ds.assign_coords({d: np.arange(n) for d, n in ds.sizes.items() if d in ("chain", "step", "time")})
    attrs = {"method": first.method, "inference_library": "ppl_control", "num_chains": len(loops)}
    ds.attrs.update(attrs)
    tree = xr.DataTree.from_dict({"/closed_loop": ds})
    configs = [_jsonable(loop.config) for loop in loops]
    attrs["config"] = json.dumps(configs[0] if all(c == configs[0] for c in configs) else configs, sort_keys=True)
    if first.initial is not None:
        attrs["initial_plan"] = json.dumps([_jsonable(loop.initial) for loop in loops])
    tree.attrs.update(attrs)
    return tree


def config_from_arviz(tree: xr.DataTree):
    """The configuration recorded in ``tree.attrs['config']``, decoded from JSON."""
    return json.loads(tree.attrs.get("config", "{}"))
