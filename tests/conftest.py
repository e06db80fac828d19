"""Shared test set-up: warnings are errors (pyproject), float64 references via ``jax.enable_x64``."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
