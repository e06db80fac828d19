r"""Exact pushes: the structured per-layer kernels of the scalar push model between probes and training
examples (:func:`ldjax._src.structured.structured_ntk` with one output, traced), one kernel per
parameter leaf. Each leaf is computed by the structured formula or by materialised per-example
gradients, whichever costs fewer FLOPs, and by Jacobian contraction where the structured package
cannot see through it, so the result is exact.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src import checks
from ldjax._src.attribution.projected import example_bytes
from ldjax._src.structured import structured_ntk
from ldjax._src.structured.jaxpr import size
from ldjax._src.structured.plans import KINDS
from ldjax._src.structured.prepare import Prepared
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params


def scores(
    model: ApplyFn, params: Params, names: list[str], probe: tuple[Any, Array], train: tuple[Any, Array]
) -> Float[Array, "L n_o n"]:
    """Per-leaf exact pushes ``[L, n_o, n]`` (leaves in ``names`` order) between ``(x_o, w_o)`` and ``(x, w)``."""
    kernels = structured_ntk(model, params, probe, train, trace=True)
    return jnp.stack([kernels[name] for name in names])


def memory(prepared: Prepared, n_o: int, dtype: Any) -> tuple[int, int]:
    """``(fixed, per_example)`` bytes of one exact chunk: the probes' share (recomputed in every chunk)
    and each training example's (its forward values and cotangents, and its materialised gradients or
    its input Gram with every probe)."""
    values = example_bytes(prepared, dtype)
    gradients = 0
    grams = 0
    for leaf, route in enumerate(prepared.routes):
        if route in KINDS:
            b, s, _, _ = prepared.plans[prepared.sites[leaf][0]].dims  # type: ignore[misc]
            grams += b * s * s
        elif route != "unused":
            gradients += size(jnp.shape(prepared.leaves[leaf]))
    per_example = values + checks.array_bytes((gradients + n_o * grams,), dtype)
    fixed = n_o * (values + checks.array_bytes((gradients,), dtype))
    return fixed, per_example
