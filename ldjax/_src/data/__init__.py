"""Data loaders (implementation). Public names live in :mod:`ldjax.data`."""
