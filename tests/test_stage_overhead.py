"""TSMC's per-stage costs that are not gradients: host round trips, tracing and compilation.

A stage is one compiled call; the Python loop over stages should read the device once per stage
(the stage's scalars, with the loop's own beta and stage counter), trace the model as few times
as the compiled pieces need, and compile nothing on a second run.
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest

import ppl_control as pc
from ppl_control.inference import TSMC


class CountingModel:
    """A 3-variable Gaussian control problem that counts how often it is traced."""

    def __init__(self):
        self.traces = 0

    def __call__(self):
        self.traces += 1
        x = numpyro.sample("x", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        pc.boltzmann(jnp.sum((x - 1.0) ** 2), temperature=0.01)  # sharp: several stages


@pytest.fixture(scope="module")
def compiled():
    """A TSMC with fixed moves, its model's trace count after the first (compiling) run, and the
    number of XLA compilations that run made."""
    model = CountingModel()
    algo = TSMC(model, num_particles=64, num_moves=2, num_leapfrog=3, progress_bar=False)
    compiles = []
    listener = lambda event, duration, **kwargs: compiles.append(event) if event.endswith("backend_compile_duration") else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        result = algo.run(jax.random.key(0))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return algo, model, model.traces, len(compiles), result


@pytest.mark.parametrize("moves", [dict(num_moves=2, num_leapfrog=3), dict(chain_length="auto")],
                         ids=["standard", "waste_free"])
def test_the_stage_traces_the_model_once_for_all_its_gradients(compiled, moves):
    """Compiling the stage traces the model twice: once to read its structure (``log_density``),
    once for the value-and-gradient that the refresh, the probe and every leapfrog step share,
    with standard moves and with waste-free chains (whose refresh goes block by block through the
    moves' call)."""
    _, model, _, _, _ = compiled
    fresh = TSMC(model, num_particles=64, progress_bar=False, **moves)  # nothing cached
    assert (fresh.chain_length is None) == ("chain_length" not in moves)
    state = fresh._init(jax.random.key(1), (), {}, None)
    before = model.traces
    fresh._stage.lower(jax.random.key(1), state, (), {}, None)
    assert model.traces - before == 2


def test_a_second_run_traces_and_compiles_nothing(compiled):
    algo, model, _, first_compiles, _ = compiled
    assert first_compiles >= 3  # init, stage, finalize at least: the listener did see compilations
    traces = model.traces
    compiles = []
    listener = lambda event, duration, **kwargs: compiles.append(event) if event.endswith("backend_compile_duration") else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        algo.run(jax.random.key(1))
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert model.traces == traces
    assert compiles == []


def test_the_loop_reads_the_device_once_per_stage_and_never_implicitly(compiled, monkeypatch):
    """Under a transfer guard that forbids implicit device-to-host reads (``float(x)`` of a device
    array, which waits for the device), a run finishes; its explicit reads are one per stage plus
    a fixed few (initial check, start of the loop, the result)."""
    algo, _, _, _, _ = compiled
    reads = []
    device_get = jax.device_get
    monkeypatch.setattr(jax, "device_get", lambda tree: reads.append(1) or device_get(tree))
    counts = {}
    for stages in (2, 4):
        algo.max_stages = stages  # only bounds the Python loop
        reads.clear()
        with jax.transfer_guard_device_to_host("disallow"), pytest.warns(UserWarning, match="max_stages"):
            result = algo.run(jax.random.key(2))
        assert result.config["num_stages"] == stages
        counts[stages] = len(reads)
    algo.max_stages = 200
    assert counts[4] - counts[2] == 2  # one read per stage
    assert counts[2] <= 2 + 5
