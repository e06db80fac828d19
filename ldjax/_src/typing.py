"""Type aliases shared across ldjax.

Dimension names used everywhere: ``n`` examples, ``k`` classes/logits, ``V`` vocabulary,
``T`` sequence length, ``p`` parameters, ``*d`` the shape of one input example and ``*o`` the
shape of one example's logits (``[k]`` for classifiers, ``[T, V]`` for sequence models).
"""

from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import Protocol
from typing import TypeAlias

import jax

Array: TypeAlias = jax.Array
Params: TypeAlias = Any  # a pytree of arrays
LearningRate: TypeAlias = float | Array
"""η: a Python number or a scalar array (a traced one under ``jax.jit``)."""
PyTree: TypeAlias = Any
ApplyFn: TypeAlias = Callable[[Params, Array], Array]
"""``apply_fn(params, x) -> logits`` for ONE example (no batch axis)."""
CheckTarget: TypeAlias = Callable[[tuple[int, ...], Any, str], None]
"""``check_target(out_shape, target, name)``: raises ``ValueError`` naming ``name`` when ``target`` does
not fit logits of shape ``out_shape`` per example."""


class Loss(Protocol):
    """What ldjax takes as a loss: ``loss(logits[n, *o], target) -> scalar``.

    ``logits`` holds the whole batch (``n`` examples, ``*o`` the shape of one example's logits) and
    ``target`` is any pytree with the batch axis first. The built-in losses return the batch mean, so
    the force ``G = ∂L/∂z`` carries the ``1/n``. Hyper-parameters are bound beforehand
    (``ldjax.losses.bind(dpo, beta=0.1)``, or a factory such as ``dpo_fn``).

    Optional attribute ``check_target`` (a :data:`CheckTarget`, attached with
    ``ldjax.losses.with_target_check``): :func:`ldjax.one_step` and the other analyses call
    ``loss.check_target(out_shape, y_u, "y_u")`` before tracing, so a target that does not fit the
    logits fails early with a message. A loss without it is used as it is.
    """

    def __call__(self, logits: Array, target: Any, /) -> Array: ...


LossFn: TypeAlias = Loss
"""The name the analyses' signatures use for :class:`Loss`."""
Precision: TypeAlias = Literal["highest", "high", "default", "float32", "bfloat16", "tensorfloat32"] | None
