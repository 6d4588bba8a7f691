"""Plots of a run: tempering schedule, trajectory fan, MDPO noise profile, cost distributions,
and the closed loop of receding-horizon control (``plot_closed_loop``).

Every function builds a ``matplotlib.figure.Figure`` directly (no ``pyplot`` state, so it works
under the Agg backend, in threads and in loops) and returns it; save it with
``fig.savefig("run.png")``. Functions that read per-stage or per-iteration statistics accept a
``Result``, a list of independent ``Result`` runs, or the ``xarray.DataTree`` of ``to_arviz``
(a netCDF file read back with ``xarray.open_datatree`` included). Every function also takes
``fig=``, an existing figure or sub-figure to draw into, which is how ``plot_run`` composes them.
"""

from collections.abc import Mapping, Sequence

import jax
import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from ._arviz import resample_indices, to_arviz
from ._result import Result

BEST_COLOR = "#d62728"
FAN_COLOR = "#1f77b4"
_CHAIN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _tree(run) -> xr.DataTree:
    return run if isinstance(run, xr.DataTree) else to_arviz(run)


def _figure(fig, figsize):
    return Figure(figsize=figsize, layout="constrained") if fig is None else fig


def _stat_group(tree: xr.DataTree) -> tuple[str, xr.Dataset]:
    for name in ("tempering", "optimization"):
        if name in tree.children:
            return name, tree[name].to_dataset()
    raise ValueError(
        f"this run ({tree.attrs.get('method', '?')}) recorded no per-stage or per-iteration "
        "statistics (no 'tempering' or 'optimization' group)"
    )


def plot_tempering(run, *, fig=None) -> Figure:
    """TSMC's schedule per stage: inverse temperature, ESS, HMC acceptance rate and step size.

    Each independent run (chain) is one line. ``beta`` is drawn on a log axis because adaptive
    tempering moves through many decades near the prior before it reaches 1.
    """
    tree = _tree(run)
    if "tempering" not in tree.children:
        raise ValueError(f"plot_tempering needs a TSMC run; this one is {tree.attrs.get('method', '?')!r}")
    ds = tree["tempering"].to_dataset()
    fig = _figure(fig, (9, 6))
    panels = [("beta", "inverse temperature beta", True), ("ess", "ESS after reweighting", False),
              ("acceptance_rate", "HMC acceptance rate", False), ("step_size", "HMC step size", True)]
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (name, title, log) in zip(axes, panels):
        ax.set_title(title, fontsize=10)
        if name not in ds:
            ax.text(0.5, 0.5, f"'{name}' not recorded", ha="center", va="center", transform=ax.transAxes)
            continue
        values = ds[name].values
        for c in range(values.shape[0]):
            ax.plot(ds["stage"].values, values[c], marker="o", ms=3,
                    color=_CHAIN_COLORS[c % len(_CHAIN_COLORS)], label=f"run {c}")
        if log and np.all(values[np.isfinite(values)] > 0):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in axes[2:]:
        ax.set_xlabel("stage")
    if ds.sizes["chain"] > 1:
        axes[0].legend(fontsize=8)
    fig.suptitle(f"tempering schedule ({ds.sizes['chain']} run(s))")
    return fig


def plot_cost_history(run, *, fig=None) -> Figure:
    """Lowest and mean particle cost per TSMC stage or per optimisation iteration."""
    tree = _tree(run)
    group, ds = _stat_group(tree)
    axis = "stage" if group == "tempering" else "iteration"
    fig = _figure(fig, (6, 4))
    ax = fig.subplots()
    for c in range(ds.sizes["chain"]):
        color = _CHAIN_COLORS[c % len(_CHAIN_COLORS)]
        x = ds[axis].values
        if "cost_mean" in ds:
            ax.plot(x, ds["cost_mean"].values[c], color=color, ls="--", alpha=0.7,
                    label="mean" if c == 0 else None)
        if "cost_min" in ds:
            ax.plot(x, ds["cost_min"].values[c], color=color, label="lowest" if c == 0 else None)
    values = np.concatenate([ds[n].values.ravel() for n in ("cost_min", "cost_mean") if n in ds] or [[]])
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
        ax.set_yscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel("cost")
    ax.set_title(f"{tree.attrs.get('method', '')}: particle cost per {axis}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_noise_profile(run, *, chain: int = 0, fig=None) -> Figure:
    """MDPO's exploration-noise scale as a heat map, iteration (rows) x time step (columns).

    Noise recorded per action dimension is averaged over it. A log colour scale is used when the
    scale spans more than a decade, which it does as MDPO anneals.
    """
    tree = _tree(run)
    if "optimization" not in tree.children or "noise_scale" not in tree["optimization"]:
        raise ValueError("plot_noise_profile needs a run that recorded 'noise_scale' (MDPO)")
    noise = np.asarray(tree["optimization"]["noise_scale"].values[chain], dtype=np.float64)
    if noise.ndim == 1:
        noise = noise[:, None]
    noise = noise.reshape(noise.shape[0], noise.shape[1], -1).mean(axis=2)
    fig = _figure(fig, (8, 4.5))
    ax = fig.subplots()
    finite = noise[np.isfinite(noise)]
    norm = None
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 10:
        norm = LogNorm(vmin=finite.min(), vmax=finite.max())
    image = ax.imshow(noise, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis",
                      norm=norm)
    fig.colorbar(image, ax=ax, label="noise scale")
    ax.set_xlabel("time step")
    ax.set_ylabel("iteration")
    ax.set_title("MDPO exploration noise per time step", fontsize=10)
    return fig


def _problem_of(problem_or_model):
    problem = getattr(problem_or_model, "problem", problem_or_model)
    if not hasattr(problem, "trajectory") or not hasattr(problem, "observation"):
        raise ValueError(
            "plot_trajectories needs a ControlProblem or a model built by trajectory_model "
            f"(which carries .problem), got {type(problem_or_model).__name__}"
        )
    return problem


def _fan_indices(result: Result, max_particles: int) -> np.ndarray:
    """Up to ``max_particles`` distinct particles spread over the equal-weight draws."""
    drawn = np.unique(resample_indices(result.log_weights))
    if drawn.size > max_particles:
        drawn = drawn[np.linspace(0, drawn.size - 1, max_particles).round().astype(int)]
    return drawn


def plot_trajectories(
    result: Result,
    problem,
    *,
    max_particles: int = 48,
    state_dims: Sequence[int] | None = None,
    state_labels: Sequence[str] | None = None,
    planar: tuple[int, int] | None = None,
    fig=None,
) -> Figure:
    """A fan of particle trajectories (states and controls) with the lowest-cost one highlighted.

    States come from replaying each particle's ``controls`` through ``problem.trajectory`` and
    mapping every state through ``problem.observation`` (so a Brax ``State`` is drawn through the
    problem's chosen observation coordinates).

    Args:
      result: a run on a ``trajectory_model`` (it has a ``controls`` site).
      problem: the ``ControlProblem``, or the model ``trajectory_model`` returned.
      max_particles: how many of the equal-weight draws to draw in the fan.
      state_dims: which observation coordinates to draw (default: up to the first four).
      state_labels: names for them (default ``x[i]``).
      planar: a pair ``(i, j)`` of observation coordinates to also draw against each other as a
        path in the plane (useful for navigation problems).
      fig: a figure or sub-figure to draw into.
    """
    problem = _problem_of(problem)
    if "controls" not in result.samples:
        raise ValueError("plot_trajectories needs a result with a 'controls' site (trajectory_model)")
    fan = _fan_indices(result, max_particles)
    best = result.best_index()
    controls = np.asarray(result.samples["controls"])
    chosen = np.concatenate([fan, [best]])
    applied = jax.vmap(problem.clip)(controls[chosen])
    states = jax.vmap(problem.trajectory)(applied)
    obs = np.asarray(jax.vmap(jax.vmap(problem.observation))(states), dtype=np.float64)
    obs = obs.reshape(obs.shape[0], obs.shape[1], -1)
    applied = np.asarray(applied, dtype=np.float64)

    dims = list(range(min(4, obs.shape[2]))) if state_dims is None else list(state_dims)
    labels = [f"x[{d}]" for d in dims] if state_labels is None else list(state_labels)
    panels = [("state", d, lab) for d, lab in zip(dims, labels)]
    panels += [("control", a, f"u[{a}]") for a in range(applied.shape[2])]
    num_axes = len(panels) + (planar is not None)
    ncols = 2
    nrows = -(-num_axes // ncols)
    fig = _figure(fig, (10, 2.4 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    t_state = np.arange(obs.shape[1])
    t_control = np.arange(applied.shape[1])
    for ax, (kind, d, label) in zip(axes, panels):
        x, y = (t_state, obs[:, :, d]) if kind == "state" else (t_control, applied[:, :, d])
        draw = ax.plot if kind == "state" else ax.step
        kwargs = {} if kind == "state" else {"where": "post"}
        for row in y[:-1]:
            draw(x, row, color=FAN_COLOR, alpha=0.18, lw=0.8, **kwargs)
        draw(x, y[-1], color=BEST_COLOR, lw=2.0, label="lowest cost", **kwargs)
        ax.set_ylabel(label)
        ax.set_xlabel("time step")
        ax.grid(alpha=0.3)
    if planar is not None:
        ax = axes[len(panels)]
        i, j = planar
        for row in obs[:-1]:
            ax.plot(row[:, i], row[:, j], color=FAN_COLOR, alpha=0.18, lw=0.8)
        ax.plot(obs[-1, :, i], obs[-1, :, j], color=BEST_COLOR, lw=2.0)
        ax.plot(obs[-1, 0, i], obs[-1, 0, j], "ko", ms=5, label="start")
        ax.set_xlabel(f"x[{i}]")
        ax.set_ylabel(f"x[{j}]")
        ax.set_title("path in the plane", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[num_axes:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8, loc="best")
    cost = result.samples.get("cost")
    best_cost = "" if cost is None else f", lowest cost {float(np.asarray(cost)[best]):.4g}"
    fig.suptitle(f"{problem.name}: {len(fan)} {result.method} trajectories{best_cost}")
    return fig


def _equal_weight_costs(result: Result) -> np.ndarray:
    if "cost" not in result.samples:
        raise ValueError(f"result of {result.method!r} has no 'cost' site to plot")
    cost = np.asarray(result.samples["cost"], dtype=np.float64)[resample_indices(result.log_weights)]
    return cost[np.isfinite(cost)]


def plot_cost_distributions(
    results: Mapping[str, Result] | Sequence[Result],
    *,
    reference: float | None = None,
    log: bool | None = None,
    fig=None,
) -> Figure:
    """The particle cost distribution of several results side by side (violins + points).

    Weighted particle sets are resampled to equal weights first, so each violin is the
    distribution the method actually represents. The lowest cost of each result is marked.

    Args:
      results: ``{label: Result}``, or a list of results (labelled by their method).
      reference: a known good cost (``problem.reference_cost``), drawn as a horizontal line.
      log: log cost axis; by default when the costs span more than two decades and are positive.
      fig: a figure or sub-figure to draw into.
    """
    if isinstance(results, Result):
        results = [results]
    items = list(results.items()) if isinstance(results, Mapping) else [(r.method, r) for r in results]
    if not items:
        raise ValueError("plot_cost_distributions needs at least one result")
    costs = [_equal_weight_costs(r) for _, r in items]
    fig = _figure(fig, (1.6 * len(items) + 3, 4.5))
    ax = fig.subplots()
    everything = np.concatenate(costs + [np.array([reference])] if reference is not None else costs)
    if log is None:
        log = everything.size > 0 and everything.min() > 0 and everything.max() / everything.min() > 100
    if log:
        ax.set_yscale("log")
    rng = np.random.default_rng(0)  # jitter only; fixed so the figure is reproducible
    positions = np.arange(1, len(items) + 1)
    plotted = [(p, c) for p, c in zip(positions, costs) if c.size > 1 and np.ptp(c) > 0]
    if plotted:
        parts = ax.violinplot([c for _, c in plotted], positions=[p for p, _ in plotted],
                              showextrema=False, widths=0.8)
        for body in parts["bodies"]:
            body.set_alpha(0.35)
    for p, c in zip(positions, costs):
        if c.size:
            ax.scatter(p + rng.uniform(-0.15, 0.15, c.size), c, s=10, alpha=0.5, color="k", lw=0)
            ax.plot([p - 0.3, p + 0.3], [c.min()] * 2, color=BEST_COLOR, lw=2,
                    label="lowest" if p == 1 else None)
    if reference is not None:
        ax.axhline(reference, color="0.3", ls=":", label=f"reference {reference:.4g}")
    ax.set_xticks(positions, [label for label, _ in items])
    ax.set_ylabel("cost (equal-weight draws)")
    ax.set_title("cost distributions", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return fig


def plot_run(result: Result, problem=None, *, fig=None, **trajectory_kwargs) -> Figure:
    """One overview figure for a run: the trajectory fan (when ``problem`` is given and the run
    has ``controls``) above the tempering schedule (TSMC) or the cost history (other methods)."""
    tree = to_arviz(result)
    has_fan = problem is not None and "controls" in result.samples
    has_stats = any(g in tree.children for g in ("tempering", "optimization"))
    fig = _figure(fig, (11, 9 if has_fan and has_stats else 5.5))
    parts = [p for p, keep in (("fan", has_fan), ("stats", has_stats)) if keep]
    if not parts:
        return plot_cost_distributions({result.method: result}, fig=fig)
    subfigs = np.atleast_1d(fig.subfigures(len(parts), 1, height_ratios=[1.3, 1][: len(parts)]))
    for sub, part in zip(subfigs, parts):
        if part == "fan":
            plot_trajectories(result, problem, fig=sub, **trajectory_kwargs)
        elif "tempering" in tree.children:
            plot_tempering(tree, fig=sub)
        else:
            plot_cost_history(tree, fig=sub)
    return fig


def plot_closed_loop(loop, *, state_dims: Sequence[int] | None = None,
                     state_labels: Sequence[str] | None = None, fig=None) -> Figure:
    """A receding-horizon run (``pc.mpc``): measured states, applied actions, per-step solve time.

    ``loop`` is a ``ClosedLoop``, a list of them (one line each: other initial states, other
    methods' loops of the same length) or the DataTree of ``to_arviz`` with its ``closed_loop``
    group. The solve-time panel also draws TSMC's stage count per step (right axis) where the
    loop recorded it; a warm-started loop's first step includes compiling the warm re-plan.

    Args:
      state_dims: which observation coordinates to draw (default: up to the first four).
      state_labels: names for them (default ``x[i]``).
      fig: a figure or sub-figure to draw into.
    """
    tree = loop if isinstance(loop, xr.DataTree) else to_arviz(loop)
    if "closed_loop" not in tree.children:
        raise ValueError("plot_closed_loop needs a ClosedLoop (pc.mpc) or its DataTree with a 'closed_loop' group")
    ds = tree["closed_loop"].to_dataset()
    states = np.asarray(ds["state"].values, dtype=np.float64)  # (chain, time, state_dim)
    actions = np.asarray(ds["action"].values, dtype=np.float64)
    dims = list(range(min(4, states.shape[2]))) if state_dims is None else list(state_dims)
    labels = [f"x[{d}]" for d in dims] if state_labels is None else list(state_labels)
    panels = [("state", d, lab) for d, lab in zip(dims, labels)]
    panels += [("action", a, f"u[{a}]") for a in range(actions.shape[2])] + [("time", 0, "solve time (s)")]
    ncols = 2
    nrows = -(-len(panels) // ncols)
    fig = _figure(fig, (10, 2.4 * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    steps = ds["step"].values
    for ax, (kind, d, label) in zip(axes, panels):
        for c in range(ds.sizes["chain"]):
            color = _CHAIN_COLORS[c % len(_CHAIN_COLORS)]
            if kind == "state":
                ax.plot(ds["time"].values, states[c, :, d], color=color, lw=1.2)
            elif kind == "action":
                ax.step(steps, actions[c, :, d], where="post", color=color, lw=1.2)
            else:
                ax.plot(steps, ds["solve_time"].values[c], color=color, marker="o", ms=2, lw=1)
        if kind == "time":
            ax.set_yscale("log")
            if "num_stages" in ds:
                twin = ax.twinx()
                for c in range(ds.sizes["chain"]):
                    twin.plot(steps, ds["num_stages"].values[c], color=_CHAIN_COLORS[c % len(_CHAIN_COLORS)],
                              ls=":", lw=1)
                twin.set_ylabel("TSMC stages (dotted)")
        ax.set_ylabel(label)
        ax.set_xlabel("time step" if kind == "state" else "control step")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    cost = ds["cost"].values
    shown = f"cost {cost[0]:.4g}" if cost.size == 1 else f"mean cost {np.mean(cost):.4g} over {cost.size} loops"
    fig.suptitle(f"closed loop ({tree.attrs.get('method', '?')}): {ds.sizes['step']} steps, {shown}")
    return fig


__all__ = [
    "plot_closed_loop",
    "plot_cost_distributions",
    "plot_cost_history",
    "plot_noise_profile",
    "plot_run",
    "plot_tempering",
    "plot_trajectories",
]
