"""Shared test set-up: CPU only, fixed seeds, nothing date-seeded; the longest test files first."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")


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
