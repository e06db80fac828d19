"""Type aliases shared across ldjax.

Dimension names used everywhere: ``n`` examples, ``k`` classes/logits, ``V`` vocabulary,
``T`` sequence length, ``p`` parameters, ``*d`` the shape of one input example and ``*o`` the
shape of one example's logits (``[k]`` for classifiers, ``[T, V]`` for sequence models).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import TypeAlias

import jax

Array: TypeAlias = jax.Array
Params: TypeAlias = Any  # a pytree of arrays
PyTree: TypeAlias = Any
ApplyFn: TypeAlias = Callable[[Params, Array], Array]
"""``apply_fn(params, x) -> logits`` for ONE example (no batch axis)."""
LossFn: TypeAlias = Callable[[Array, Any], Array]
"""``loss_fn(logits[n, *o], targets) -> scalar``; the mean over the batch for the built-in losses."""
Precision: TypeAlias = Literal["highest", "high", "default", "float32", "bfloat16", "tensorfloat32"] | None
