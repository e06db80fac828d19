"""Adapters from flax NNX / linen and equinox models to ldjax's ``apply_fn(params, x)`` for ONE example."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax

from ldjax._src import checks
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


def _library(obj: Any) -> str | None:
    """``"equinox"``, ``"nnx"``, ``"linen"`` for a module of that library, else ``None`` (imports nothing new)."""
    eqx = sys.modules.get("equinox")
    if eqx is not None and isinstance(obj, eqx.Module):
        return "equinox"
    nnx = sys.modules.get("flax.nnx")
    if nnx is not None and isinstance(obj, nnx.Module):
        return "nnx"
    linen = sys.modules.get("flax.linen")
    if linen is not None and isinstance(obj, linen.Module):
        return "linen"
    return None


_ADAPTER = {
    "equinox": "ldjax.from_equinox(model)",
    "nnx": "ldjax.from_nnx(module)",
    "linen": "ldjax.from_linen(module, variables)",
}


def _check_library(obj: Any, expected: str, name: str) -> None:
    found = _library(obj)
    if found == expected:
        return
    what = (
        f"{_article(found)} {found} Module" if found else f"a {type(obj).__module__}.{type(obj).__qualname__}"
    )
    hint = f": use {_ADAPTER[found]}" if found else ""
    raise ValueError(f"{name} must be {_article(expected)} {expected} Module, got {what}{hint}")


def _article(library: str) -> str:
    return "an" if library in ("equinox", "nnx") else "a"


def _spread(x: Any) -> tuple[Any, ...]:
    """A tuple ``x`` is the model's leading positional arguments; anything else is its first argument."""
    return tuple(x) if isinstance(x, tuple) else (x,)


def _output(out: Any, has_aux: bool) -> Any:
    return out[0] if has_aux else out


def from_nnx(
    module: Any,
    *call_args: Any,
    method: str | Callable[..., Any] | None = None,
    batched: bool = True,
    eval_mode: bool = True,
    has_aux: bool = False,
    example_shape: Sequence[int] | None = None,
    **call_kwargs: Any,
) -> tuple[ApplyFunction, Params]:
    """Split a flax NNX module into ``(apply_fn, params)``.

    ``params`` is a plain nested dict of the module's ``nnx.Param`` arrays (so optax, ``jax.grad``
    and per-layer kernels see ordinary names such as ``{"conv1": {"kernel": ...}}``). All other state
    (batch statistics, RNG counters) is frozen at its current value and copied on every call, so the
    module is never modified, whatever the model does to its state. Stacks of layers built with
    ``nnx.vmap`` and applied with ``nnx.scan`` work (their parameters carry a leading layer axis).

    ``apply_fn(params, x)`` calls ``module(x, *call_args, **call_kwargs)`` (or the method ``method``);
    a tuple ``x`` is spread over the leading positional arguments, e.g. ``x = (inputs, targets)`` for
    ``module(inputs, targets)``. NNX graph nodes among the call arguments (an ``nnx.Rngs``) are copied
    on every call too.

    Args:
      module: an ``nnx.Module`` mapping a batch ``[b, *d]`` to ``[b, *o]`` (or one example to
        ``[*o]`` when ``batched=False``).
      *call_args: further positional arguments of the call (e.g. flax's MNIST CNN takes ``rngs``).
      method: a method name (``"encode"``) or a function ``method(module, x, ...)`` called instead of
        ``module(x, ...)``, e.g. ``lambda m, x: m.backbone(x)`` for an intermediate feature or ``lambda m,
        h: m.head(h)`` for the head alone (as linen's ``apply(..., method=...)``; see
        :func:`ldjax.feature_step`); default ``__call__``.
      batched: whether the module expects a leading batch axis; the adapter then adds and removes one.
      eval_mode: call ``.eval()`` on the adapter's copy (``nnx.Dropout`` off, ``BatchNorm`` on its
        running statistics): the logits of one example do not depend on the rest of its batch. With
        ``False`` the module's own mode is kept (a BatchNorm in training mode then normalises by the
        statistics of the one example).
      has_aux: the call returns ``(logits, aux)``; ``apply_fn`` returns the logits.
      example_shape: shape of one example, used for clear input errors.
      **call_kwargs: keyword arguments of the call (``deterministic=True``, ``rngs=...``).

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

    _check_library(module, "nnx", "module")
    graphdef, param_state, rest = nnx.split(module, nnx.Param, ...)
    params = nnx.to_pure_dict(param_state)
    checks.check_params(params, "params")
    rest = _copy(rest)  # frozen now: later changes to the module do not leak in
    thaw_args = _frozen_nodes(nnx, call_args)
    thaw_kwargs = _frozen_nodes(nnx, call_kwargs)

    def apply_fn(p: Params, x: Array) -> Array:
        state = _copy(param_state)
        nnx.replace_by_pure_dict(state, p)
        model = nnx.merge(graphdef, state, _copy(rest))
        if eval_mode:
            model.eval()
        fn = (
            model
            if method is None
            else (getattr(model, method) if isinstance(method, str) else functools.partial(method, model))
        )
        out = fn(*_spread(_add_batch(x) if batched else x), *thaw_args(), **thaw_kwargs())
        out = _output(out, has_aux)
        return out[0] if batched else out

    check_input = getattr(module, "check_input", None) if method is None else None  # the module's inputs only
    return ApplyFunction(apply_fn, example_shape, check_input=check_input), params


def _copy(tree: Any) -> Any:
    """A fresh copy of an NNX state (new Variable objects holding the same arrays)."""
    return jax.tree.map(lambda v: v, tree)


def _frozen_nodes(nnx: Any, values: Any) -> Callable[[], Any]:
    """A function returning ``values`` with every NNX graph node (an ``nnx.Rngs``...) replaced by a fresh copy."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    frozen = {k: nnx.split(v) if isinstance(v, nnx.Pytree) else None for k, v in items}

    def thaw() -> Any:
        fresh = {k: (nnx.merge(f[0], _copy(f[1])) if f is not None else values[k]) for k, f in frozen.items()}
        return fresh if isinstance(values, dict) else tuple(fresh[k] for k in range(len(values)))

    return thaw


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

    _check_library(module, "nnx", "module")
    graphdef, param_state, rest = nnx.split(module, nnx.Param, ...)
    state = _copy(param_state)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state, _copy(rest))


def from_linen(
    module: Any,
    variables: dict[str, Any],
    *,
    method: str | Callable[..., Any] | None = None,
    mutable: bool | str | Sequence[str] = False,
    batched: bool = True,
    has_aux: bool = False,
    example_shape: Sequence[int] | None = None,
    **call_kwargs: Any,
) -> tuple[ApplyFunction, Params]:
    """Turn a flax linen module and its variables into ``(apply_fn, params)``.

    ``params`` is ``variables["params"]``; other collections (``batch_stats``...) are frozen.
    ``apply_fn(params, x)`` is ``module.apply(variables, x, method=method, mutable=mutable,
    **call_kwargs)``; a tuple ``x`` is spread over the leading positional arguments (the wmt
    Transformer's ``(inputs, targets)``). Pass the module's eval flags as keywords (``train=False``,
    ``deterministic=True``) and PRNG keys as ``rngs={"dropout": key}``.

    Args:
      module: a ``flax.linen.Module``.
      variables: its variables, with a ``"params"`` collection.
      method: a method name or function, as in ``Module.apply``.
      mutable: as in ``Module.apply``; the updated collections are discarded (the variables stay frozen).
      batched: whether the module expects a leading batch axis; the adapter then adds and removes one.
      has_aux: the call returns ``(logits, aux)``; ``apply_fn`` returns the logits.
      example_shape: shape of one example, used for clear input errors.
      **call_kwargs: keyword arguments of the call (``train=False``, ``rngs=...``).

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp, ldjax
      >>> m = nn.Dense(2)
      >>> f, p = ldjax.from_linen(m, m.init(jax.random.key(0), jnp.ones((1, 3))))
      >>> f(p, jnp.ones(3)).shape
      (2,)
    """
    _check_library(module, "linen", "module")
    if not hasattr(variables, "keys") or "params" not in variables:
        keys = sorted(variables) if hasattr(variables, "keys") else type(variables).__name__
        raise ValueError(f"variables must hold a 'params' collection, got keys {keys}")
    checks.check_params(variables["params"], "variables['params']")
    rest = {name: value for name, value in variables.items() if name != "params"}

    def apply_fn(p: Params, x: Array) -> Array:
        inputs = _spread(_add_batch(x) if batched else x)
        try:
            out = module.apply({**rest, "params": p}, *inputs, method=method, mutable=mutable, **call_kwargs)
        except NameError as err:
            if "unbound axis name" not in str(err):
                raise
            raise ValueError(
                f"{err}: a layer of the module averages over a named batch axis (linen BatchNorm with "
                f"axis_name=... in training mode). ldjax calls the model on one example: pass the module's "
                f"eval flag, e.g. ldjax.from_linen(module, variables, train=False)"
            ) from err
        except Exception as err:
            if type(err).__name__ != "ModifyScopeVariableError":
                raise
            raise ValueError(
                f"{err}. The module updates a collection in this mode (BatchNorm statistics in training "
                f"mode): pass its eval flag (e.g. train=False), or mutable=['batch_stats'] to discard the update"
            ) from err
        if mutable is not False:
            out = out[0]
        out = _output(out, has_aux)
        return out[0] if batched else out

    return ApplyFunction(apply_fn, example_shape), variables["params"]


def from_equinox(
    model: Any,
    *call_args: Any,
    filter: Callable[[Any], bool] | None = None,
    batched: bool = False,
    has_aux: bool = False,
    example_shape: Sequence[int] | None = None,
    **call_kwargs: Any,
) -> tuple[ApplyFunction, Params]:
    """Split an equinox Module into ``(apply_fn, params)`` (``pip install 'ldjax[equinox]'``).

    ``params, static = eqx.partition(model, filter)``; ``apply_fn(params, x)`` is
    ``eqx.combine(params, static)(x, *call_args, **call_kwargs)`` (a tuple ``x`` is spread over the
    leading positional arguments). Equinox layers are written for one example, as ldjax's ``apply_fn``
    is, so no batch axis is added unless ``batched``. ``params`` is a pytree of the model's own type
    (``None`` where a leaf is not a parameter); optax and per-layer kernels (``"layers/0/weight"``)
    work on it directly.

    Args:
      model: an ``equinox.Module``.
      *call_args: further positional arguments of the call.
      filter: which leaves are parameters (default ``eqx.is_inexact_array``).
      batched: whether the model expects a leading batch axis.
      has_aux: the call returns ``(logits, aux)`` (e.g. ``(logits, state)``); ``apply_fn`` returns the logits.
      example_shape: shape of one example, used for clear input errors.
      **call_kwargs: keyword arguments of the call (``key=...``, ``inference=True``).

    Example:
      >>> import equinox as eqx, jax, jax.numpy as jnp, ldjax
      >>> f, p = ldjax.from_equinox(eqx.nn.Linear(3, 2, key=jax.random.key(0)))
      >>> f(p, jnp.ones(3)).shape
      (2,)
    """
    try:
        import equinox as eqx
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("from_equinox needs equinox: pip install 'ldjax[equinox]'") from err
    _check_library(model, "equinox", "model")
    params, static = eqx.partition(model, eqx.is_inexact_array if filter is None else filter)
    checks.check_params(params, "params")

    def apply_fn(p: Params, x: Array) -> Array:
        out = eqx.combine(p, static)(*_spread(_add_batch(x) if batched else x), *call_args, **call_kwargs)
        out = _output(out, has_aux)
        return out[0] if batched else out

    return ApplyFunction(apply_fn, example_shape), params


def binary_logits(apply_fn: Callable[[Params, Array], Array]) -> ApplyFunction:
    """A one-logit (sigmoid) model as a two-class model: logits ``[0, z]``, so softmax is ``[1 − σ(z), σ(z)]``.

    ``log π`` of class 1 is then ``log σ(z)`` and of class 0 ``log(1 − σ(z))``; cross-entropy with labels
    in ``{0, 1}`` is binary cross-entropy, and ``A`` applied to ``[0, Δz]`` gives the sigmoid's own
    Jacobian: ``Δ log σ(z) = (1 − σ(z)) Δz``.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = ldjax.binary_logits(lambda w, x: x @ w)  # [d] -> [1]
      >>> z = f(jnp.ones((3, 1)), jnp.ones(3))
      >>> z, jax.nn.softmax(z)[1] == jax.nn.sigmoid(3.0)
      (Array([0., 3.], dtype=float32), Array(True, dtype=bool))
    """

    def two(params: Params, x: Array) -> Array:
        z = apply_fn(params, x)
        if z.shape[-1:] != (1,):
            raise ValueError(f"binary_logits expects apply_fn to return [..., 1] logits, got shape {z.shape}")
        return jax.numpy.concatenate([jax.numpy.zeros_like(z), z], axis=-1)

    return ApplyFunction(two, getattr(apply_fn, "example_shape", None))


def _add_batch(x: Any) -> Any:
    return jax.tree.map(lambda leaf: leaf[None], x)
