"""Adapters from flax NNX / linen models to ldjax's ``apply_fn(params, x)`` for ONE example."""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax

from ldjax._src.typing import Array
from ldjax._src.typing import Params


class ApplyFunction:
    """A one-example ``apply_fn(params, x) -> logits`` that may know the shape of one example.

    ldjax's input checks use ``example_shape`` to say exactly what was expected when a batch is
    passed where one example was meant, ``sequence_output`` to read a 2-D output ``[T, V]`` as a
    sequence model's (declared; token-id inputs need no declaration) and ``check_input(x, name)``, the
    model's own check of a batch of inputs (token ids in range for the built-in language models).
    """

    def __init__(
        self,
        fn: Callable[[Params, Array], Array],
        example_shape: Sequence[int] | None = None,
        *,
        sequence_output: bool | None = None,
        check_input: Callable[[Any, str], None] | None = None,
    ):
        self._fn = fn
        self.example_shape = None if example_shape is None else tuple(int(s) for s in example_shape)
        self.sequence_output = sequence_output
        self.check_input = check_input

    def __call__(self, params: Params, x: Array) -> Array:
        return self._fn(params, x)

    def __repr__(self) -> str:
        return f"ApplyFunction({self._fn!r}, example_shape={self.example_shape})"


def as_apply_fn(
    fn: Callable[[Params, Array], Array],
    example_shape: Sequence[int] | None = None,
    *,
    sequence_output: bool | None = None,
) -> ApplyFunction:
    """Wrap a plain one-example function, optionally recording the shape of one example.

    ``sequence_output=True`` declares that a 2-D output ``[T, V]`` is a sequence model's logits. Without
    it ldjax reads a 2-D output that way only for integer token inputs ``[T]``; otherwise it refuses it,
    since a 2-D output usually means a batch axis too many (``x`` batched twice, or ``apply_fn`` adding
    one).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> f = ldjax.as_apply_fn(lambda p, x: x @ p, example_shape=(3,))
      >>> f.example_shape
      (3,)
    """
    return ApplyFunction(fn, example_shape, sequence_output=sequence_output)


def from_nnx(
    module: Any,
    *,
    batched: bool = True,
    example_shape: Sequence[int] | None = None,
    method: Callable[[Any, Array], Array] | None = None,
) -> tuple[ApplyFunction, Params]:
    """Split a flax NNX module into ``(apply_fn, params)``.

    ``params`` is a plain nested dict of the module's ``nnx.Param`` arrays (so optax, ``jax.grad``
    and per-layer kernels see ordinary names such as ``{"conv1": {"kernel": ...}}``). All other state
    (batch statistics, RNG counters) is frozen at its current value: put the module in eval mode
    first (``module.eval()``) for deterministic logits. The module is not modified.

    Args:
      module: an ``nnx.Module`` mapping a batch ``[b, *d]`` to ``[b, *o]`` (or one example to
        ``[*o]`` when ``batched=False``).
      batched: whether the module expects a leading batch axis; the adapter then adds and removes one.
      example_shape: shape of one example, used for clear input errors.
      method: what to call instead of ``module(x)``: ``method(module, x)``, e.g. ``lambda m, x:
        m.backbone(x)`` for an intermediate feature or ``lambda m, h: m.head(h)`` for the head alone (as
        linen's ``apply(..., method=...)``; see :func:`ldjax.feature_step`).

    Returns:
      ``(apply_fn, params)`` with ``apply_fn(params, x[*d]) -> [*o]``.

    Example:
      >>> from flax import nnx
      >>> import jax.numpy as jnp, ldjax
      >>> f, p = ldjax.from_nnx(nnx.Linear(3, 2, rngs=nnx.Rngs(0)))
      >>> f(p, jnp.ones(3)).shape
      (2,)
    """
    from flax import nnx

    graphdef, param_state, rest = nnx.split(module, nnx.Param, ...)
    params = nnx.to_pure_dict(param_state)

    def apply_fn(p: Params, x: Array) -> Array:
        state = jax.tree.map(lambda v: v, param_state)
        nnx.replace_by_pure_dict(state, p)
        model = nnx.merge(graphdef, state, rest)
        call = model if method is None else (lambda inputs: method(model, inputs))
        if batched:
            return call(_add_batch(x))[0]
        return call(x)

    check_input = getattr(module, "check_input", None) if method is None else None  # the module's inputs only
    return ApplyFunction(apply_fn, example_shape, check_input=check_input), params


def to_nnx(module: Any, params: Params) -> Any:
    """A new NNX module equal to ``module`` with its ``nnx.Param`` values replaced by ``params``.

    Inverse of :func:`from_nnx`; ``module`` is not modified.

    Example:
      >>> from flax import nnx
      >>> import jax, ldjax
      >>> layer = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
      >>> f, p = ldjax.from_nnx(layer)
      >>> moved = ldjax.to_nnx(layer, jax.tree.map(lambda a: a * 0, p))
      >>> float(abs(moved.kernel[...]).sum()), float(abs(layer.kernel[...]).sum()) > 0
      (0.0, True)
    """
    from flax import nnx

    graphdef, param_state, rest = nnx.split(module, nnx.Param, ...)
    state = jax.tree.map(lambda v: v, param_state)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state, rest)


def from_linen(
    module: Any,
    variables: dict[str, Any],
    *,
    batched: bool = True,
    example_shape: Sequence[int] | None = None,
    **apply_kwargs: Any,
) -> tuple[ApplyFunction, Params]:
    """Turn a flax linen module and its variables into ``(apply_fn, params)``.

    ``params`` is ``variables["params"]``; other collections (``batch_stats``...) are frozen.

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp, ldjax
      >>> m = nn.Dense(2)
      >>> f, p = ldjax.from_linen(m, m.init(jax.random.key(0), jnp.ones((1, 3))))
      >>> f(p, jnp.ones(3)).shape
      (2,)
    """
    if "params" not in variables:
        raise ValueError(f"variables must hold a 'params' collection, got keys {sorted(variables)}")
    rest = {name: value for name, value in variables.items() if name != "params"}

    def apply_fn(p: Params, x: Array) -> Array:
        out = module.apply({**rest, "params": p}, _add_batch(x) if batched else x, **apply_kwargs)
        return out[0] if batched else out

    return ApplyFunction(apply_fn, example_shape), variables["params"]


def _add_batch(x: Any) -> Any:
    return jax.tree.map(lambda leaf: leaf[None], x)
