"""Shared test set-up: CPU only, fixed seeds, nothing date-seeded; the longest test files first."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")


# `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder`: each xdist worker runs
# whole files (a module-scoped fixture is built once, not once per worker) and takes the next file
# in collection order when it runs dry. Starting the longest files first (longest processing time
# first) keeps both workers busy to the end instead of leaving one alone with a long file. The
# order below is by measured time per file; unlisted files follow in their usual order.
LONGEST_FIRST = (  # summed test durations of the full make test, 2026-11-23 18:07-19:01 at load 8-10
    "test_examples.py",  # 722 s (under that load; about 5x the unloaded times)
    "test_brax.py",  # 608 s
    "test_swap.py",  # 552 s
    "test_policy_noise.py",  # 450 s
    "test_mdpo.py",
    "test_tsmc.py",
    "test_policy.py",
    "test_baselines.py",
    "test_rddl.py",
    "test_mpc.py",
    "test_parallel.py",
    "test_models.py",
    "test_checkpoint_all.py",
    "test_pusher_slider.py",
    "test_plots.py",
    "test_cli.py",
    "test_navigation.py",
    "test_model_layer.py",  # 148 s; the rest, shorter, follow in their usual order
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
