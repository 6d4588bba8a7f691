"""Shared test set-up: CPU only, fixed seeds, nothing date-seeded; the longest test files first."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")


# `make test` runs `pytest -n 2 --dist loadfile --no-loadscope-reorder`: each xdist worker runs
# whole files (a module-scoped fixture is built once, not once per worker) and takes the next file
# in collection order when it runs dry. Starting the longest files first (longest processing time
# first) keeps both workers busy to the end instead of leaving one alone with a long file. The
# order below is by measured time per file; unlisted files follow in their usual order.
LONGEST_FIRST = (  # summed test durations per file (s), full make test on a quiet machine, 2026-11-24
    "test_brax.py",  # 162
    "test_examples.py",  # 115
    "test_policy.py",  # 87
    "test_models.py",  # 83
    "test_swap.py",  # 76
    "test_parallel.py",  # 66
    "test_mpc.py",  # 46
    "test_tsmc.py",  # 39
    "test_cli.py",  # 38
    "test_mdpo.py",  # 37
    "test_rddl.py",  # 33
    "test_policy_noise.py",  # 24
    "test_tuning.py",  # 23
    "test_baselines.py",  # 22
    "test_cross_fit.py",  # 18
    "test_metric.py",  # 14
    "test_navigation.py",  # 14
    "test_model_layer.py",  # 14; the rest, each under 14 s, follow in their usual order
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file keeps its order
