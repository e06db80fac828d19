"""Timing shared by ldjax's and the peer's side of the benchmarks (works on JAX 0.4.23 and current).

Compile time is measured apart (``jax.jit(fn).lower(*args).compile()``); one warm-up call is
excluded; every call ends in ``block_until_ready``.
"""

from __future__ import annotations

import statistics
import time

import jax


def time_fn(fn, *args, budget_s: float = 3.0, max_reps: int = 5):
    """``(compile_s, median_s, min_s, reps, output)`` of ``jax.jit(fn)(*args)``."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))  # warm-up, excluded ...
    first = time.perf_counter() - t0
    if first > budget_s:  # ... unless one call already exceeds the budget: then it is the measurement
        return compile_s, first, first, 1, out
    times = []
    while True:
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
        if len(times) >= max_reps or sum(times) > budget_s:
            break
    return compile_s, statistics.median(times), min(times), len(times), out


def device_name() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', d.platform)}"
