"""Where the particles live: sharded over host devices, evaluated in batches (inference._parallel).

Neither changes what is computed: a run on 4 devices, or in batches, equals the plain run for the
same key to float tolerance. The multi-device checks run in a subprocess, because the number of
host devices is fixed when JAX starts (``--xla_force_host_platform_device_count``).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppl_control as pc
from ppl_control import models
from ppl_control.inference import CEM, MDPO, MPPI, TSMC
from ppl_control.inference._parallel import ParticleLayout, batch_shape

pytestmark = pytest.mark.xdist_group("parallel")


def _lqr(horizon=5):
    """A 10-variable linear-quadratic problem: small enough to compile in a few seconds."""
    return pc.trajectory_model(models.get("lqr", horizon=horizon))


# -- the layout itself --------------------------------------------------------------------------


@pytest.mark.parametrize("batch_size", [1, 3, 4, 7, 100])
@pytest.mark.parametrize("size", [12, 7])
def test_map_in_batches_is_vmap(batch_size, size):
    """Every batch shape, with and without padding, and sizes other than num_particles (CEM's fresh
    draws): the same values, in the same order, as one vmap."""
    layout = ParticleLayout.build(12, devices=jax.devices()[:1], batch_size=batch_size)

    def fn(key, x):
        return jnp.sum(jnp.sin(x)) + jax.random.normal(key), {"twice": 2.0 * x}

    keys = jax.random.split(jax.random.key(0), size)
    x = jnp.arange(size * 3.0).reshape(size, 3)
    got, want = jax.jit(layout.map(fn))(keys, x), jax.vmap(fn)(keys, x)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-6), got, want)


def test_batch_shape_is_the_fewest_batches():
    assert batch_shape(64, None) == (1, 64)
    assert batch_shape(64, 16) == (4, 16)
    assert batch_shape(64, 20) == (4, 16)  # 4 batches are needed; 16 each wastes nothing
    assert batch_shape(10, 4) == (3, 4)  # padded to 12
    assert batch_shape(10, 50) == (1, 10)


def test_layout_errors_name_the_cause():
    with pytest.raises(ValueError, match="batch_size"):
        TSMC(_lqr(), num_particles=64, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        MPPI(_lqr(), num_particles=64, batch_size=2.5)
    with pytest.raises(ValueError, match="at least one device"):
        CEM(_lqr(), num_particles=64, devices=[])
    cpu = jax.devices()[0]
    with pytest.raises(ValueError, match="multiple of the number of devices"):
        MDPO(_lqr(), num_particles=7, devices=[cpu, cpu])


# -- batches give the unbatched result ----------------------------------------------------------


def test_tsmc_in_batches_equals_unbatched():
    model = _lqr()
    plain = TSMC(model, num_particles=64, progress_bar=False).run(jax.random.key(3))
    batched = TSMC(model, num_particles=64, batch_size=24, progress_bar=False).run(jax.random.key(3))
    assert batched.config["batch_size"] == 24 and plain.config["batch_size"] is None
    assert batched.config["num_stages"] == plain.config["num_stages"]
    np.testing.assert_allclose(batched.samples["controls"], plain.samples["controls"], atol=1e-4)
    np.testing.assert_allclose(batched.stats["beta"], plain.stats["beta"], rtol=1e-5)
    assert batched.log_evidence == pytest.approx(plain.log_evidence, abs=1e-3)


@pytest.mark.parametrize("algorithm", [MDPO, CEM, MPPI])  # GradientDescent is MDPO's code path
def test_iterative_methods_in_batches_equal_unbatched(algorithm):
    model = _lqr()
    make = lambda **kw: algorithm(model, num_particles=16, num_steps=10, progress_bar=False, **kw)
    plain, batched = make().run(jax.random.key(5)), make(batch_size=5).run(jax.random.key(5))
    assert batched.config["batch_size"] == 5
    np.testing.assert_allclose(batched.samples["controls"], plain.samples["controls"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batched.stats["cost_min"], plain.stats["cost_min"], rtol=1e-5)


# -- several devices (subprocess) ---------------------------------------------------------------

_FOUR_DEVICES = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    import ppl_control as pc
    from ppl_control import models
    import jax.numpy as jnp
    from ppl_control.inference import MDPO, MPPI, TSMC, CEM
    from ppl_control.inference._parallel import ParticleLayout

    devices = jax.devices()
    assert len(devices) == 4, devices
    model = pc.trajectory_model(models.get("lqr", horizon=5))
    out = {}

    def spread(x):
        return len(x.sharding.device_set), [s.data.shape[0] for s in x.addressable_shards]

    # Whole runs compared with standard rejuvenation (the default): waste-free chains amplify float
    # rounding along their sequential moves (an accept decided by 1e-7 sends a chain elsewhere), so
    # they are compared one stage at a time below.
    one = TSMC(model, num_particles=64, progress_bar=False, devices=devices[:1])
    four = TSMC(model, num_particles=64, progress_bar=False)  # every device by default
    state = four._init(jax.random.key(1), (), {}, None)
    state, _ = four._stage(jax.random.key(2), state, (), {}, None)
    out["tsmc_spread"] = [spread(state.particles), spread(state.log_likelihood)]
    chains_one = TSMC(model, num_particles=64, progress_bar=False, devices=devices[:1], chain_length="auto")
    chains_four = TSMC(model, num_particles=64, progress_bar=False, chain_length="auto")
    start = chains_one._init(jax.random.key(1), (), {}, None)
    stage_one, _ = chains_one._stage(jax.random.key(2), start, (), {}, None)
    stage_four, _ = chains_four._stage(jax.random.key(2), chains_four.layout.put(start), (), {}, None)
    out["waste_free"] = dict(
        chain_length=[chains_one.chain_length, chains_four.chain_length],
        spread=spread(stage_four.particles),
        particles=float(jnp.max(jnp.abs(stage_one.particles - stage_four.particles))),
        log_evidence=[float(stage_one.log_evidence), float(stage_four.log_evidence)],
    )
    a, b = one.run(jax.random.key(0)), four.run(jax.random.key(0))
    out["tsmc"] = dict(
        num_devices=[a.config["num_devices"], b.config["num_devices"]],
        stages=[a.config["num_stages"], b.config["num_stages"]],
        controls=float(np.max(np.abs(a.samples["controls"] - b.samples["controls"]))),
        log_evidence=[a.log_evidence, b.log_evidence],
        moves=[a.stats["num_moves"].tolist(), b.stats["num_moves"].tolist()],
    )
    # batches on several devices at once, padded (5 particles a device in batches of 2), for
    # the population and for a smaller set (CEM's fresh draws)
    layout = ParticleLayout.build(20, batch_size=2)
    fn = lambda key, x: (jnp.sum(jnp.sin(x)) + jax.random.normal(key), 2.0 * x)
    errors = []
    for size in (20, 13):
        keys, x = jax.random.split(jax.random.key(0), size), jnp.arange(size * 3.0).reshape(size, 3)
        got, want = jax.jit(layout.map(fn))(keys, x), jax.vmap(fn)(keys, x)
        errors += [float(jnp.max(jnp.abs(g - w))) for g, w in zip(got, want)]
    out["map_batched"] = max(errors)
    out["map_spread"] = spread(got[1])

    for cls in (MDPO, CEM):
        make = lambda **kw: cls(model, num_particles=16, num_steps=10, progress_bar=False, **kw)
        one, four = make(devices=devices[:1]), make()
        a, b = one.run(jax.random.key(0)), four.run(jax.random.key(0))
        out[cls.method] = dict(
            num_devices=[a.config["num_devices"], b.config["num_devices"]],
            controls=float(np.max(np.abs(a.samples["controls"] - b.samples["controls"]))),
            cost_min=float(np.max(np.abs(a.stats["cost_min"] - b.stats["cost_min"]))),
        )
    mppi = MPPI(model, num_particles=16, num_steps=2, progress_bar=False)
    out["mppi_spread"] = spread(mppi._init((), {}, jax.random.key(1)).population)
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _FOUR_DEVICES], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT"):])


def test_particles_are_spread_over_four_devices(four_devices):
    for num_devices, shard_sizes in four_devices["tsmc_spread"]:
        assert num_devices == 4 and shard_sizes == [16, 16, 16, 16]
    assert four_devices["mppi_spread"] == [4, [4, 4, 4, 4]]
    assert four_devices["tsmc"]["num_devices"] == [1, 4]


def test_tsmc_on_four_devices_equals_one_device(four_devices):
    tsmc = four_devices["tsmc"]
    assert tsmc["stages"][0] == tsmc["stages"][1]
    assert tsmc["moves"][0] == tsmc["moves"][1]
    assert tsmc["controls"] < 1e-3  # the controls are O(1): float rounding, not another path
    assert tsmc["log_evidence"][1] == pytest.approx(tsmc["log_evidence"][0], abs=1e-3)

def test_waste_free_stage_on_four_devices_equals_one_device(four_devices):
    """One stage of waste-free moves (8 chains of 8, 2 chains a device): the chains' states stay
    spread over the devices and equal the single-device stage's to float rounding."""
    chains = four_devices["waste_free"]
    assert chains["chain_length"] == [8, 8]
    assert chains["spread"] == [4, [16, 16, 16, 16]]
    assert chains["particles"] < 1e-3
    assert chains["log_evidence"][1] == pytest.approx(chains["log_evidence"][0], abs=1e-4)


def test_batches_on_four_devices_are_vmap(four_devices):
    assert four_devices["map_batched"] < 1e-5
    assert four_devices["map_spread"][0] == 4


@pytest.mark.parametrize("method", ["mdpo", "cem"])
def test_iterative_methods_on_four_devices_equal_one_device(four_devices, method):
    result = four_devices[method]
    assert result["num_devices"] == [1, 4]
    assert result["controls"] < 1e-4 and result["cost_min"] < 1e-4
