"""Models (implementation). Public names live in :mod:`ldjax.models`."""
