"""Experiments (implementation). Public modules live in :mod:`ldjax.experiments`."""
