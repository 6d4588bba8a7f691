"""Checkpoints of the iterative methods (MDPO, gradient descent, CEM, MPPI): runs killed in a
subprocess resume, in this process, to the uninterrupted results bit for bit.

One child process starts the four runs one after the other, each in its own thread. A run that
writes its third checkpoint stops inside the write (the temporary file is on disk, the rename has
not happened) and the next run starts; when all four are stopped there, the process kills itself
with SIGKILL. So the kill is deterministic, it hits every run mid-write (checking that an
interrupted write leaves the previous checkpoint intact), and the four runs share one
interpreter start-up.
"""

import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from ppl_control.inference import CEM, MDPO, MPPI, GradientDescent
from ppl_control.inference.checkpoint import CheckpointMismatch

pytestmark = pytest.mark.xdist_group("checkpoint_all")  # one worker, one child process

MODEL_SOURCE = textwrap.dedent("""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

    import ppl_control as pc


    def model(dim=3):
        u = numpyro.sample("u", dist.Normal(0.0, 1.0).expand([dim]).to_event(1))
        pc.boltzmann(jnp.sum((u - jnp.arange(dim)) ** 2) + 0.3 * jnp.sum(jnp.sin(3.0 * u)), 0.5)
""")

NUM_STEPS = 40  # 20 chunks of 2 iterations
KILL_AT_SAVE = 3  # killed while writing the third checkpoint: two complete ones were written
CONFIGS = {  # method -> (class, configuration, key constructor)
    "mdpo": (MDPO, dict(num_particles=4, num_steps=NUM_STEPS), "key"),
    "gradient_descent": (GradientDescent, dict(num_particles=4, num_steps=NUM_STEPS), "key"),
    "cem": (CEM, dict(num_particles=8, num_steps=NUM_STEPS), "PRNGKey"),  # a raw uint32 key too
    "mppi": (MPPI, dict(num_particles=8, num_steps=NUM_STEPS), "key"),
}

CHILD = textwrap.dedent("""
    import os, signal, sys, threading
    import jax
    from ppl_control import inference

    RUNS = {runs!r}
    inside_write = threading.Semaphore(0)
    saves, errors = {{}}, []
    real_replace = os.replace

    def replace_or_hang(src, dst):  # checkpoint.py renames each finished temporary file with this
        saves[dst] = saves.get(dst, 0) + 1
        if saves[dst] == {kill_at}:
            inside_write.release()  # this run is inside its third write: it stays there
            threading.Event().wait()
        real_replace(src, dst)

    def run(cls, config, key_fn, path):
        try:
            algo = getattr(inference, cls)(model, progress_bar=False, **config)
            algo.run(getattr(jax.random, key_fn)(5), checkpoint=path)
            errors.append(f"{{cls}} finished")
        except BaseException as error:
            errors.append(f"{{cls}}: {{error!r}}")
        inside_write.release()

    os.replace = replace_or_hang
    for spec in RUNS.values():  # one after the other: NumPyro's tracing is not thread-safe
        threading.Thread(target=run, args=spec, daemon=True).start()
        inside_write.acquire()
        if errors:
            sys.exit(f"a run did not reach its third checkpoint: {{errors}}")
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _model():
    namespace = {}
    exec(MODEL_SOURCE, namespace)
    return namespace["model"]


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    """method -> checkpoint path, after the child process was killed mid-run."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {method: str(folder / f"{method}.ckpt.npz") for method in CONFIGS}
    runs = {m: (cls.__name__, config, key_fn, paths[m]) for m, (cls, config, key_fn) in CONFIGS.items()}
    child = MODEL_SOURCE + CHILD.format(runs=runs, kill_at=KILL_AT_SAVE)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    return paths


def _assert_same(a, b):
    assert a.samples.keys() == b.samples.keys() and a.stats.keys() == b.stats.keys()
    for name in a.samples:
        np.testing.assert_array_equal(a.samples[name], b.samples[name])
    for name in a.stats:
        np.testing.assert_array_equal(a.stats[name], b.stats[name])
    np.testing.assert_array_equal(a.log_weights, b.log_weights)


@pytest.mark.parametrize("method", list(CONFIGS))
def test_killed_run_resumes_bit_for_bit(method, killed_runs):
    cls, config, key_fn = CONFIGS[method]
    path = killed_runs[method]
    assert os.path.exists(path + ".tmp.npz")  # the write that was interrupted
    with np.load(path) as data:  # the previous checkpoint, complete
        steps_done = int(data["steps_done"])
    assert steps_done == 2 * (KILL_AT_SAVE - 1)

    key = getattr(jax.random, key_fn)(5)
    algo = cls(_model(), progress_bar=False, **config)
    full = algo.run(key)

    executed = []
    chunk = algo._chunk

    def counting_chunk(*args):
        executed.append(int(args[-1].shape[0]))
        return chunk(*args)

    algo._chunk = counting_chunk
    resumed = algo.run(key, checkpoint=path)
    assert sum(executed) == NUM_STEPS - steps_done  # it continued, it did not start again
    _assert_same(resumed, full)
    assert resumed.stats["cost_min"].shape[0] == NUM_STEPS

    executed.clear()
    again = algo.run(key, checkpoint=path)  # a finished checkpoint: nothing left to run
    assert executed == []
    _assert_same(again, full)

    with pytest.raises(CheckpointMismatch, match="key"):
        algo.run(jax.random.fold_in(jax.random.key(5), 1), checkpoint=path)
    if method == "mppi":  # the cheapest to build again; the check is the same code for all
        with pytest.raises(CheckpointMismatch, match="noise_scale"):
            cls(_model(), progress_bar=False, **dict(config, noise_scale=0.5)).run(key, checkpoint=path)
        with pytest.raises(CheckpointMismatch, match="latent_shapes"):  # another model
            algo.run(key, dim=4, checkpoint=path)
