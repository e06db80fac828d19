"""Flax NNX models used by the experiments; turn one into ``(apply_fn, params)`` with ``ldjax.from_nnx``."""

# One import line per public name; each model file adds its own lines below.

__all__: tuple[str, ...] = ()
