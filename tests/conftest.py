"""Shared test set-up: CPU only, fixed seeds, nothing date-seeded, one compilation cache per run.

The suite is compile-bound: many tests (and both xdist workers, and the example and CLI
subprocesses) compile the very same XLA computations, because every ``TSMC(...)`` or ``jax.jit``
builds fresh Python closures that JAX's in-memory cache cannot match. JAX's persistent
compilation cache keys an executable by its HLO (debug locations stripped), the compile options
and the JAX version, so an identical computation compiled anywhere in the run is read back
instead of compiled again. It changes no result: the cached executable is the one XLA built.

The cache lives in a fresh temporary folder made by the first process (the xdist controller,
whose environment the workers and every subprocess inherit) and removed when that process ends,
so each run starts empty, as on a fresh clone, and nothing is written into the repository. Set
``JAX_COMPILATION_CACHE_DIR`` yourself to keep a cache between runs (it is then left alone).
"""

import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_CACHE = tempfile.mkdtemp(prefix="ppl-control-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
# Cache every computation that takes noticeable time to compile (JAX's default is 1 s).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.1")

import jax  # noqa: E402  (after the environment: subprocesses read it; this process may have imported JAX already)

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


# `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder`: each xdist worker runs
# whole files (a module-scoped fixture is built once, not once per worker) and takes the next file
# in collection order when it runs dry. Starting the longest files first (longest processing time
# first) keeps both workers busy to the end instead of leaving one alone with a long file. The
# order below is by measured time per file; unlisted files follow in their usual order.
LONGEST_FIRST = (  # measured 2026-11-23 under load: test_brax.py 565 s of worker time ... test_mdpo.py 116 s
    "test_brax.py",
    "test_policy.py",
    "test_models.py",
    "test_examples.py",
    "test_swap.py",
    "test_parallel.py",
    "test_mpc.py",
    "test_cli.py",
    "test_tsmc.py",
    "test_rddl.py",
    "test_mdpo.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
