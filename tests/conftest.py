"""Shared test set-up: CPU only, fixed seeds, nothing date-seeded."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
