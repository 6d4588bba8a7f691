"""RDDL planning domains as control problems, compiled by pyRDDLGym-jax (JaxPlan's compiler).

    from ppl_control.models import rddl
    problem = rddl.problem("Reservoir_Continuous", "1")      # horizon: the instance's (120)
    problem.cost(controls)                                   # minus the return, differentiable
    result = MDPO(rddl.trajectory_model(problem)).run(jax.random.key(0))
    rddl.evaluate(problem, result.best()["controls"], episodes=10, rng_key=jax.random.key(1))

Needs the ``rddl`` extra (``pip install 'ppl_control[rddl]'``: pyRDDLGym-jax and rddlrepository,
which ships the domain files, so nothing is downloaded). ``domains()`` lists the domains.

The compiled model. The domain and instance are read from rddlrepository and compiled by
pyRDDLGym-jax's differentiable compiler, with the relaxations JaxPlan plans with
(``DefaultJaxRDDLCompilerWithGrad``: comparisons become sigmoids, ``if`` a linear blend, logic a
product t-norm, Bernoulli draws reparametrised sigmoids, ...; the comparisons and ``if`` use
straight-through estimators, so their forward value is exact and only their gradient is relaxed).
Its keyword arguments (``sigmoid_weight`` and friends) are those of the configuration JaxPlan
ships for the domain (``jaxplan_config``), updated by ``compiler_kwargs``. ``relaxed=False``
compiles the exact model instead (JaxPlan's test-time compiler), for gradient-free methods.

State: a pytree ``{"fluents": {name: (K, ...)}, "key": (K, 2) uint32, "reward": (K,),
"discount": ()}``: the domain's state fluents for ``K`` noise scenarios, each scenario's PRNG key,
the discounted reward of the transition that produced the state in each scenario (0 at ``x_0``)
and the discount ``gamma^t`` still to apply. ``step`` runs the compiled transition once per
scenario; the stage cost is minus the state's reward averaged over the scenarios, the terminal
cost the same of ``x_T``, so the cost of a plan is minus its discounted return ``sum_t gamma^t
r_t``, averaged over the scenarios (like Brax's ``-reward`` cost in ``models.brax``). Terminal
states (RDDL ``termination``) are not applied: every rollout runs ``horizon`` steps, as JaxPlan's
planning rollouts do. ``observe(state)`` is the state fluents averaged over the scenarios,
flattened.

Controls: one row per decision epoch, holding every action fluent flattened in the domain's order
(``problem.actions`` lists ``(name, shape, range)``; ``action_dict`` splits a row). Bounds come
from the domain's box preconditions; a side the domain leaves open gets
``unbounded_action_limit`` (``[low, low + limit]``, ``[high - limit, high]`` or
``[-limit, limit]``), and ``action_bounds={name: (low, high)}`` overrides a fluent's box. Boolean
and integer actions are relaxed to real numbers in their box (``evaluate`` thresholds booleans at
1/2 and rounds integers, as JaxPlan does at test time); a domain whose actions are all discrete is
rejected. Action preconditions other than boxes, and ``max-nondef-actions``, are not enforced (nor
are they by JaxPlan's straight-line plans on real-valued actions).

Noise: stochastic domains keep their randomness as explicit noise, common random numbers: ``K =
num_scenarios`` PRNG keys drawn once from ``seed`` live in ``x_0``, every rollout replays the same
``K`` noise sequences, and the cost is the sample-average approximation of the expected cost (the
same idea as ``policy_model``'s fixed set of initial states). The default ``K`` is 1 for a
deterministic domain and ``DEFAULT_SCENARIOS`` otherwise: an optimiser fits the ``K`` scenarios
it sees, so with few of them its plan does worse on fresh noise than its cost says
(BENCHMARKS.md, "RDDL domains beside JaxPlan", measures ``K``). JaxPlan draws fresh noise at every
step instead; so can the iterative methods here: ``trajectory_model``'s model takes the key of its
scenarios as an argument, ``model(noise_key=None)``, and ``MDPO(model, fresh_noise="noise_key")``
redraws it at every iteration (stochastic approximation of the expected cost), choosing its best
iterate on the problem's own ``K`` scenarios. ``scenarios(problem, key, num)`` is such an
initial state. A domain counts as deterministic when it has no random expression, or when the
compiled model gives the same rewards under two keys for random plans (HVAC's ``Bernoulli(1 -
P-SWITCH)`` with ``P-SWITCH = 0``, say). ``seed`` picks other scenarios; ``evaluate`` scores a
plan on fresh noise.

Temperature: unless given, ``max(|J_probe|, 1) * DEFAULT_RELATIVE_TEMPERATURE / (horizon *
action_dim)`` with ``J_probe`` the lowest cost among five probe plans (the domain's no-op, the
middle of the box, three uniform random plans). At ``beta = 1`` the tilted target's cost spread
is about ``dim * temperature / 2`` above its optimum, so this keeps it near
``DEFAULT_RELATIVE_TEMPERATURE / 2`` of the scale of a known plan's cost, whatever the domain's
reward units.

Prior: ``trajectory_model(problem)`` is ``pc.trajectory_model`` with the prior centred on the
domain's no-op action (``problem.noop``, the RDDL default action) instead of the middle of the
box; its docstring says why.

``evaluate`` runs a plan open loop on pyRDDLGym's own environment (numpy simulator, the real
non-relaxed stochastic model) for ``episodes`` episodes and reports the mean, standard deviation
and every episode's return, the way JaxPlan's controllers are scored.
"""

import ast
import configparser
import contextlib
import dataclasses
import importlib.util
import inspect
import os
import threading
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from ppl_control import ControlProblem, boltzmann

EXTRA_HINT = "install the extra: pip install 'ppl_control[rddl]' (pyRDDLGym-jax and rddlrepository)"
DEFAULT_SCENARIOS = 32
DEFAULT_PRIOR_SCALE = 0.1
DEFAULT_UNBOUNDED_LIMIT = 1000.0
DEFAULT_RELATIVE_TEMPERATURE = 0.01


def available() -> bool:
    """Whether the ``rddl`` extra (pyRDDLGym-jax and rddlrepository) is installed."""
    return all(importlib.util.find_spec(name) is not None for name in ("pyRDDLGym", "pyRDDLGym_jax", "rddlrepository"))


def _require():
    if not available():
        raise ImportError(f"ppl_control.models.rddl needs pyRDDLGym-jax and rddlrepository: {EXTRA_HINT}")


def _manager():
    _require()
    from rddlrepository import RDDLRepoManager

    return RDDLRepoManager()


def domains() -> tuple[str, ...]:
    """Every domain of rddlrepository (``problem``'s first argument), sorted."""
    return tuple(sorted(_manager().list_problems()))


def instances(domain: str) -> tuple[str, ...]:
    """The instances of ``domain`` (``problem``'s second argument)."""
    return tuple(_problem_info(domain).list_instances())


def _problem_info(domain: str):
    manager = _manager()
    names = manager.list_problems()
    if domain not in names:
        near = sorted(n for n in names if domain.lower().split("_")[0] in n.lower())[:8]
        hint = f"; similar: {', '.join(near)}" if near else ""
        raise ValueError(f"unknown RDDL domain {domain!r} ({len(names)} domains in rddlrepository, "
                         f"models.rddl.domains() lists them{hint})")
    return manager.get_problem(domain)


def files(domain: str, instance) -> tuple[str, str]:
    """``(domain_path, instance_path)`` of the RDDL files inside rddlrepository."""
    info = _problem_info(domain)
    instance = str(instance)
    if instance not in info.list_instances():
        raise ValueError(f"RDDL domain {domain!r} has no instance {instance!r}; its instances: "
                         f"{', '.join(info.list_instances())}")
    return info.get_domain(), info.get_instance(instance)


def load_model(domain: str, instance):
    """The parsed, lifted pyRDDLGym model (``RDDLLiftedModel``) of ``domain`` and ``instance``."""
    from pyRDDLGym.core.compiler.model import RDDLLiftedModel
    from pyRDDLGym.core.parser.parser import RDDLParser
    from pyRDDLGym.core.parser.reader import RDDLReader

    domain_path, instance_path = files(domain, instance)
    parser = RDDLParser(lexer=None, verbose=False)
    parser.build()
    return RDDLLiftedModel(parser.parse(RDDLReader(domain_path, instance_path).rddltxt))


def jaxplan_config(domain: str, method: str = "slp") -> str | None:
    """The path of the planner configuration JaxPlan ships for ``domain`` (``None`` if none)."""
    _require()
    import pyRDDLGym_jax

    path = os.path.join(os.path.dirname(pyRDDLGym_jax.__file__), "examples", "configs", f"{domain}_{method}.cfg")
    return path if os.path.isfile(path) else None


def _shipped_compiler_kwargs(domain: str) -> dict:
    """The ``[Compiler]`` section of JaxPlan's shipped straight-line-plan configuration, if any."""
    path = jaxplan_config(domain)
    if path is None:
        return {}
    config = configparser.RawConfigParser()
    config.optionxform = str
    config.read(path)
    if not config.has_section("Compiler"):
        return {}
    kwargs = {k: ast.literal_eval(v) for k, v in config.items("Compiler")}
    kwargs.pop("method", None)
    return kwargs


def _global_x64() -> bool:
    """The process-wide x64 flag: ``jax.enable_x64`` contexts are thread-local, a new thread sees
    only the global value."""
    seen = []
    thread = threading.Thread(target=lambda: seen.append(bool(jax.config.jax_enable_x64)))
    thread.start()
    thread.join()
    return seen[0]


@contextlib.contextmanager
def _x64_left_alone():
    """pyRDDLGym-jax's compilers set the *global* x64 flag; put it back as it was."""
    before = _global_x64()
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


def _compiler(model, relaxed: bool, kwargs: dict):
    from pyRDDLGym_jax.core.compiler import JaxRDDLCompiler
    from pyRDDLGym_jax.core.logic import DefaultJaxRDDLCompilerWithGrad

    use64bit = jnp.result_type(float) == jnp.float64
    if relaxed:
        # the compiler only prints a warning for a keyword it does not know
        known = {name for cls in DefaultJaxRDDLCompilerWithGrad.__mro__ if "__init__" in vars(cls)
                 for name in inspect.signature(cls.__init__).parameters} - {"self", "args", "kwargs", "rddl", "logger"}
        unknown = set(kwargs) - known
        if unknown:
            raise ValueError(f"compiler_kwargs {sorted(unknown)} are not settings of pyRDDLGym-jax's "
                             f"relaxation; known: {sorted(known)}")
    with _x64_left_alone(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if relaxed:
            compiled = DefaultJaxRDDLCompilerWithGrad(rddl=model, use64bit=use64bit, print_warnings=False, **kwargs)
        else:
            compiled = JaxRDDLCompiler(rddl=model, use64bit=use64bit)
        compiled.compile()
    return compiled


def _has_random_expression(model) -> bool:
    """Whether the reward or a CPF of ``model`` draws a random variable."""
    def visit(expr):
        if not hasattr(expr, "etype"):
            return False
        if expr.etype[0] in ("randomvar", "randomvector"):
            return True
        args = getattr(expr, "args", None)
        return isinstance(args, (list, tuple)) and any(visit(arg) for arg in args)

    return visit(model.reward) or any(visit(expr) for _, expr in model.cpfs.values())


@dataclasses.dataclass(frozen=True, eq=False)
class RDDLProblem(ControlProblem):
    """A ``ControlProblem`` compiled from an RDDL domain, with what ``evaluate`` needs.

    Attributes (beyond ``ControlProblem``'s):
      domain, instance: the rddlrepository names.
      actions: ``((name, shape, range), ...)``: the action fluents, in the order of a control row.
      domain_bounds: ``(low, high)`` of shape ``(action_dim,)``: the domain's own action bounds
        (``inf`` where it has none); ``action_bounds`` is the finite box the problem uses.
      noop: ``(action_dim,)``: the domain's default ("no-op") action, clipped to the box.
      num_scenarios: ``K``, the noise scenarios the cost averages over (1: deterministic).
      discount: the instance's discount factor.
      relaxed: whether the relaxed (JaxPlan) compiler built the model.
    """

    domain: str = ""
    instance: str = ""
    actions: tuple = ()
    domain_bounds: tuple | None = None
    noop: np.ndarray | None = None
    num_scenarios: int = 1
    discount: float = 1.0
    relaxed: bool = True

    def action_dict(self, row) -> dict:
        """One control row ``(action_dim,)`` as ``{action fluent: array of its shape}``."""
        return split_row(self.actions, row)


def split_row(actions, row) -> dict:
    """``row`` (``(action_dim,)``, or ``(..., action_dim)``) split into ``{name: (..., *shape)}``."""
    out, start = {}, 0
    for name, shape, _ in actions:
        size = int(np.prod(shape, dtype=np.int64))
        out[name] = jnp.reshape(row[..., start:start + size], row.shape[:-1] + tuple(shape))
        start += size
    return out


def scenarios(problem: RDDLProblem, key, num: int | None = None) -> dict:
    """``problem.x0`` with ``num`` noise scenarios (default ``problem.num_scenarios``) drawn from
    ``key`` (a typed or raw JAX key, or an integer seed; traceable) instead of the fixed ones.
    Every scenario starts from the instance's initial fluents."""
    num = problem.num_scenarios if num is None else num
    if isinstance(num, bool) or int(num) != num or num < 1:
        raise ValueError(f"the number of scenarios must be a positive integer, got {num!r}")
    num = int(num)
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        key = jax.random.PRNGKey(int(key))
    keys = jax.random.split(key, num)
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        keys = jax.random.key_data(keys)
    x0 = problem.x0
    if keys.shape[1:] != x0["key"].shape[1:]:
        raise ValueError(f"noise key of another PRNG implementation: scenario keys of shape "
                         f"{keys.shape[1:]}, the problem's are {x0['key'].shape[1:]}")
    fluents = jax.tree.map(lambda v: jnp.broadcast_to(v[0], (num,) + v.shape[1:]), x0["fluents"])
    return dict(fluents=fluents, key=keys.astype(x0["key"].dtype), reward=jnp.zeros((num,), x0["reward"].dtype),
                discount=x0["discount"])


def trajectory_model(problem: RDDLProblem, temperature: float | None = None,
                     prior_scale: float = DEFAULT_PRIOR_SCALE, fresh_scenarios: int | None = None):
    """``pc.trajectory_model`` with the prior centred on the domain's no-op action.

    The latent ``"controls"`` has the prior ``TruncatedNormal(noop, prior_scale * (high - low))``
    on the box, independently per entry, and the cost enters through ``pc.boltzmann``. Planning
    domains often have a good region next to doing nothing and flat regions far from it (a
    reservoir released faster than it fills: ``min[level, release]`` takes no gradient from the
    release), and JaxPlan starts its plans at zero for that reason; the box-centred prior of
    ``pc.trajectory_model`` starts every particle in the middle of the box instead (measured in
    BENCHMARKS.md, "RDDL domains beside JaxPlan").

    The model is ``model(noise_key=None)``: ``None`` rolls out on the problem's ``K`` fixed noise
    scenarios (common random numbers); a key rolls out on ``fresh_scenarios`` scenarios drawn from
    it (``scenarios``; default ``K``). ``MDPO(model, fresh_noise="noise_key")`` (or
    ``GradientDescent``, ``MPPI``) passes a new key at every iteration, so a few fresh scenarios
    per step optimise the expected return while the best iterate is judged on the fixed ``K``.
    """
    if not isinstance(problem, RDDLProblem):
        raise ValueError(f"trajectory_model needs a problem built by models.rddl.problem, got {type(problem).__name__}")
    if not prior_scale > 0:
        raise ValueError(f"prior_scale must be positive, got {prior_scale!r}")
    temperature = problem.temperature if temperature is None else float(temperature)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    dtype = problem.x0["reward"].dtype
    low, high = (jnp.broadcast_to(jnp.asarray(b, dtype), problem.controls_shape) for b in problem.action_bounds)
    loc = jnp.broadcast_to(jnp.asarray(problem.noop, dtype), problem.controls_shape)
    prior = dist.TruncatedNormal(loc, prior_scale * (high - low), low=low, high=high).to_event(2)
    if fresh_scenarios is not None and (isinstance(fresh_scenarios, bool) or int(fresh_scenarios) != fresh_scenarios
                                        or fresh_scenarios < 1):
        raise ValueError(f"fresh_scenarios must be a positive integer, got {fresh_scenarios!r}")

    fresh = problem
    if fresh_scenarios is not None and int(fresh_scenarios) != problem.num_scenarios:  # another K: another x0 shape
        fresh_scenarios = int(fresh_scenarios)
        fresh = dataclasses.replace(problem, x0=scenarios(problem, 0, fresh_scenarios), num_scenarios=fresh_scenarios)

    def model(noise_key=None):
        controls = numpyro.sample("controls", prior)
        if noise_key is None:
            cost = problem.cost(controls)
        else:
            cost = fresh.cost(controls, scenarios(problem, noise_key, fresh.num_scenarios))
        boltzmann(cost, temperature)

    model.problem = problem
    return model


def _action_layout(model, compiled, action_bounds: dict, limit: float):
    """``(actions, domain_low, domain_high, low, high)`` for the flat control row."""
    actions, lows, highs = [], [], []
    known = set(model.action_fluents)
    unknown = set(action_bounds) - known
    if unknown:
        raise ValueError(f"action_bounds names {sorted(unknown)}, not action fluents of the domain; "
                         f"its action fluents: {sorted(known)}")
    discrete, enums = [], []
    for name in model.action_fluents:
        prange = model.variable_ranges[name]
        shape = tuple(np.shape(compiled.init_values[name]))
        if prange in model.enum_types:
            enums.append(name)
            continue
        if prange == "bool":
            low, high = np.zeros(shape), np.ones(shape)
            discrete.append(f"{name} (bool)")
        else:
            low, high = (np.broadcast_to(np.asarray(b, np.float64), shape) for b in compiled.constraints.bounds[name])
            if prange == "int":
                discrete.append(f"{name} (int)")
        actions.append((name, shape, prange))
        lows.append(np.ravel(low))
        highs.append(np.ravel(high))
    if enums:
        raise ValueError(f"models.rddl does not handle enum-valued action fluents: {', '.join(enums)}")
    if len(discrete) == len(actions):
        raise ValueError(f"every action of this domain is discrete ({', '.join(discrete)}): models.rddl needs "
                         "at least one real-valued action fluent (pick the domain's continuous variant)")
    domain_low, domain_high = np.concatenate(lows), np.concatenate(highs)
    low, high = domain_low.copy(), domain_high.copy()
    start = 0
    for name, shape, _ in actions:
        size = int(np.prod(shape, dtype=np.int64))
        if name in action_bounds:
            b_low, b_high = action_bounds[name]
            low[start:start + size] = np.broadcast_to(np.asarray(b_low, np.float64), shape).ravel()
            high[start:start + size] = np.broadcast_to(np.asarray(b_high, np.float64), shape).ravel()
        start += size
    # Open sides get the limit, measured from the closed side when there is one.
    open_low, open_high = ~np.isfinite(low), ~np.isfinite(high)
    low = np.where(open_low, np.where(open_high, -limit, high - limit), low)
    high = np.where(open_high, np.where(open_low, limit, low + limit), high)
    if not np.all(high > low):
        raise ValueError(f"action bounds need low < high, got low={low}, high={high}")
    return tuple(actions), domain_low, domain_high, low, high


def problem(domain: str, instance, horizon: int | None = None, *, num_scenarios: int | None = None,
            seed: int = 0, relaxed: bool = True, compiler_kwargs: dict | None = None,
            action_bounds: dict | None = None, unbounded_action_limit: float = DEFAULT_UNBOUNDED_LIMIT,
            temperature: float | None = None) -> RDDLProblem:
    """An RDDL domain and instance from rddlrepository as a ``ControlProblem`` (module docstring).

    Args:
      domain: a domain of rddlrepository (``domains()``), e.g. ``"Reservoir_Continuous"``.
      instance: one of its instances (``instances(domain)``).
      horizon: decision epochs; default the instance's horizon.
      num_scenarios: ``K`` noise scenarios (common random numbers); default 1 for a deterministic
        domain, else ``DEFAULT_SCENARIOS``.
      seed: the key the scenarios are drawn from.
      relaxed: ``True`` (default): JaxPlan's differentiable relaxation; ``False``: the exact model.
      compiler_kwargs: updates the relaxation's settings (``sigmoid_weight``, ``use_sigmoid_ste``,
        ...; see pyRDDLGym-jax's ``logic.py``), over those of JaxPlan's shipped configuration.
      action_bounds: ``{action fluent: (low, high)}`` boxes replacing the domain's.
      unbounded_action_limit: the width given to a side of an action box the domain leaves open.
      temperature: the recommended temperature; default see the module docstring.
    """
    _require()
    if horizon is not None and (int(horizon) != horizon or horizon < 1):
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    if num_scenarios is not None and (int(num_scenarios) != num_scenarios or num_scenarios < 1):
        raise ValueError(f"num_scenarios must be a positive integer, got {num_scenarios!r}")
    if not unbounded_action_limit > 0:
        raise ValueError(f"unbounded_action_limit must be positive, got {unbounded_action_limit!r}")
    instance = str(instance)
    model = load_model(domain, instance)
    kwargs = dict(_shipped_compiler_kwargs(domain), **(compiler_kwargs or {})) if relaxed else {}
    if not relaxed and compiler_kwargs:
        raise ValueError("compiler_kwargs set the relaxation; they make no sense with relaxed=False")
    compiled = _compiler(model, relaxed, kwargs)
    actions, domain_low, domain_high, low, high = _action_layout(model, compiled, dict(action_bounds or {}),
                                                                 float(unbounded_action_limit))
    horizon = int(model.horizon if horizon is None else horizon)
    gamma = float(model.discount)
    real = compiled.REAL
    transition = compiled.compile_transition()
    state_names = tuple(model.state_fluents)
    fluents0 = {name: np.asarray(compiled.init_values[name]) for name in state_names}
    _, nonfluents = compiled.split_fluent_nonfluent(compiled.init_values)
    nonfluents = {k: jnp.asarray(v) for k, v in nonfluents.items()}
    relax_params = compiled.model_aux["params"]

    def to_model_actions(row):
        acts = split_row(actions, jnp.asarray(row, real))
        if relaxed:
            return acts
        # the exact model wants booleans and integers
        return {name: (acts[name] > 0.5 if prange == "bool" else
                       jnp.round(acts[name]).astype(compiled.INT) if prange == "int" else acts[name])
                for name, _, prange in actions}

    def step(x, u):
        acts = to_model_actions(u)

        def one(key, fluents):
            key, sub = jax.random.split(key)
            out, log, _ = transition(sub, acts, dict(fluents), nonfluents, relax_params)
            return key, {name: out[name] for name in state_names}, jnp.asarray(log["reward"], real)

        keys, fluents, rewards = jax.vmap(one)(x["key"], x["fluents"])
        return dict(fluents=fluents, key=keys, reward=x["discount"] * rewards, discount=x["discount"] * gamma)

    def stage_cost(x, u):
        return -jnp.mean(x["reward"])

    def terminal_cost(x):
        return -jnp.mean(x["reward"])

    def observe(x):
        return jnp.concatenate([jnp.ravel(jnp.mean(jnp.asarray(x["fluents"][n], real), axis=0)) for n in state_names])

    def initial_state(k):
        keys = jax.random.split(jax.random.PRNGKey(seed), k)
        fluents = {n: jnp.broadcast_to(jnp.asarray(v), (k,) + v.shape) for n, v in fluents0.items()}
        return dict(fluents=fluents, key=keys, reward=jnp.zeros((k,), real), discount=jnp.ones((), real))

    noop = np.clip(np.concatenate([np.ravel(compiled.init_values[name]) for name, _, _ in actions]), low, high)

    def build(k, temp):
        box = (jnp.asarray(low, real), jnp.asarray(high, real))
        return RDDLProblem(
            step=step, stage_cost=stage_cost, terminal_cost=terminal_cost, x0=initial_state(k), horizon=horizon,
            action_dim=len(low), name=f"rddl.{domain}.{instance}", action_bounds=box, observe=observe,
            temperature=temp, domain=domain, instance=instance, actions=actions,
            domain_bounds=(domain_low, domain_high), noop=noop, num_scenarios=k, discount=gamma, relaxed=relaxed,
        )

    random = _has_random_expression(model)
    if temperature is not None and (num_scenarios is not None or not random):
        return build(int(num_scenarios or 1), float(temperature))
    best_cost, noise_seen = _probe(build(2, 1.0), noop, low, high)
    if num_scenarios is None:
        num_scenarios = DEFAULT_SCENARIOS if random and noise_seen else 1
    if temperature is None:
        temperature = max(abs(best_cost), 1.0) * DEFAULT_RELATIVE_TEMPERATURE / (horizon * len(low))
    return build(int(num_scenarios), float(temperature))


def _probe(problem: RDDLProblem, noop, low, high) -> tuple[float, bool]:
    """``(lowest finite cost, whether two scenarios ever got different rewards)`` over five probe
    plans: the domain's no-op, the middle of the box and three uniform random plans (one compiled
    rollout of ``problem``, which has K = 2 scenarios)."""
    rng = np.random.default_rng(0)
    plans = np.stack([np.broadcast_to(row, (problem.horizon, len(low))) for row in (noop, 0.5 * (low + high))]
                     + [rng.uniform(low, high, (problem.horizon, len(low))) for _ in range(3)])
    dtype = problem.x0["reward"].dtype
    rewards = jax.jit(jax.vmap(lambda plan: problem.trajectory(plan)["reward"]))(jnp.asarray(plans, dtype))
    rewards = np.asarray(rewards, np.float64)  # (plans, T + 1, K = 2)
    first, second = rewards[..., 0], rewards[..., 1]
    differ = (first != second) & ~(np.isnan(first) & np.isnan(second))
    costs = -np.sum(np.mean(rewards, axis=-1), axis=-1)
    costs = costs[np.isfinite(costs)]
    return (float(np.min(costs)) if costs.size else 1.0), bool(np.any(differ))


def make_env(problem: RDDLProblem):
    """pyRDDLGym's own environment (numpy simulator, vectorized actions) of ``problem``'s instance."""
    import pyRDDLGym

    domain_path, instance_path = files(problem.domain, problem.instance)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyRDDLGym.make(domain_path, instance_path, vectorized=True)


def env_actions(problem: RDDLProblem, row) -> dict:
    """One control row as the environment's action dict: clipped to the domain's own bounds,
    booleans thresholded at 1/2 and integers rounded (JaxPlan's test-time conversion)."""
    low, high = problem.domain_bounds
    row = np.clip(np.asarray(row, np.float64), low, high)
    out = {}
    for name, value in split_row(problem.actions, row).items():
        value = np.asarray(value)
        prange = next(r for n, _, r in problem.actions if n == name)
        out[name] = value > 0.5 if prange == "bool" else np.round(value).astype(np.int64) if prange == "int" else value
    return out


def evaluate(problem: RDDLProblem, controls, episodes: int = 10, rng_key=None) -> dict:
    """Run the open-loop plan ``controls`` on the real environment for ``episodes`` episodes.

    The environment is pyRDDLGym's (numpy simulator: exact operations, fresh noise); each episode
    resets it with a seed drawn from ``rng_key`` and plays ``controls[t]`` (through
    ``env_actions``) for ``problem.horizon`` steps, or until the environment ends the episode (a
    terminal state or a violated state invariant), summing the discounted rewards.

    Returns:
      ``{"mean", "std", "returns" (episodes,), "episodes"}``: the mean and standard deviation
      (``ddof = 0``, as JaxPlan reports it) of the episodes' returns, and the returns.
    """
    if not isinstance(problem, RDDLProblem):
        raise ValueError(f"evaluate needs a problem built by models.rddl.problem, got {type(problem).__name__}")
    if int(episodes) != episodes or episodes < 1:
        raise ValueError(f"episodes must be a positive integer, got {episodes!r}")
    controls = np.asarray(controls, np.float64)
    if controls.shape != problem.controls_shape:
        raise ValueError(f"{problem.name}: controls must have shape {problem.controls_shape}, got {controls.shape}")
    rng_key = jax.random.key(0) if rng_key is None else rng_key
    seeds = np.asarray(jax.random.randint(rng_key, (int(episodes),), 0, np.iinfo(np.int32).max))
    plan = [env_actions(problem, row) for row in controls]
    env = make_env(problem)
    returns = np.zeros(int(episodes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for e, seed in enumerate(seeds):
            env.reset(seed=int(seed))
            total, weight = 0.0, 1.0
            for action in plan:
                _, reward, terminated, truncated, _ = env.step(action)
                total += weight * float(reward)
                weight *= problem.discount
                if terminated or truncated:
                    break
            returns[e] = total
    env.close()
    return dict(mean=float(np.mean(returns)), std=float(np.std(returns)), returns=returns, episodes=int(episodes))
