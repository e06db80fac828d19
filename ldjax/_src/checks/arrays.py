"""Arrays: batches and example shapes, finite values, parameter dtypes, positive scalars, integer ids."""

import contextlib
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src.typing import Params
from ldjax._src.typing import Precision

_PRECISIONS = ("highest", "high", "default", "float32", "bfloat16", "tensorfloat32")


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a numpy array when its value is known now (not under tracing), else ``None``."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def precision_scope(precision: Precision):
    """Context that fixes the matmul precision of everything traced inside it.

    ``None`` leaves the ambient setting (on GPU fp32 matmuls then default to TF32).
    """
    if precision is None:
        return contextlib.nullcontext()
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS} or None, got {precision!r}")
    return jax.default_matmul_precision(precision)


def shape_signature(*trees: Any) -> Any:
    """A hashable key of the structure, shapes and dtypes of ``trees`` (not their values)."""
    leaves, treedef = jax.tree.flatten(trees)
    return treedef, tuple((np.shape(leaf), getattr(leaf, "dtype", type(leaf))) for leaf in leaves)


def check_batch(x: Any, name: str) -> None:
    """``x`` must be an array (or pytree of arrays) with a non-empty leading batch axis."""
    leaves = jax.tree.leaves(x)
    if not leaves:
        raise ValueError(f"{name} is empty: expected a batch of examples [n, *d] with n >= 1")
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{name} is a scalar: expected a batch of examples [n, *d]; for one example x use x[None]"
            )
        if shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {tuple(shape)}): expected n >= 1 examples")
    n = {np.shape(leaf)[0] for leaf in leaves}
    if len(n) > 1:
        raise ValueError(f"{name} leaves disagree on the batch size: {sorted(n)}")


def batch_size(x: Any) -> int:
    return int(np.shape(jax.tree.leaves(x)[0])[0])


def example_shape(x: Any) -> Any:
    return jax.tree.map(lambda leaf: tuple(np.shape(leaf)[1:]), x)


def check_same_examples(x1: Any, name1: str, x2: Any, name2: str) -> None:
    s1, s2 = example_shape(x1), example_shape(x2)
    if s1 != s2:
        raise ValueError(
            f"{name1} holds examples of shape {str(s1)} but {name2} holds examples of shape {str(s2)}: "
            f"both must be batches [n, *d] of the same example shape"
        )


def _nonfinite(leaf: Any) -> int | None:
    """How many NaN/inf entries a float leaf holds (``None`` when its value is not known now)."""
    if isinstance(leaf, jax.Array):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            return 0
        try:  # on the device: no copy of the array to the host when it is finite
            if bool(jnp.all(jnp.isfinite(leaf))):
                return 0
        except jax.errors.ConcretizationTypeError:
            return None
    value = concrete(leaf)
    if value is None or not np.issubdtype(value.dtype, np.inexact):
        return 0 if value is not None else None
    return int(value.size - np.count_nonzero(np.isfinite(value)))


def check_finite(tree: Any, name: str) -> None:
    """Raise if any leaf of ``tree`` holds NaN or inf (only when values are concrete)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        bad = _nonfinite(leaf)
        if bad:
            where = jax.tree_util.keystr(path) or ""
            raise ValueError(f"{name}{where} contains {bad} NaN or inf value(s): expected finite numbers")


def check_finite_values(named: Sequence[tuple[Any, str]]) -> None:
    """:func:`check_finite` on each ``(tree, name)``."""
    for tree, name in named:
        check_finite(tree, name)


def check_params(params: Params, name: str = "params") -> None:
    """``params`` must hold at least one leaf and every leaf must be a float array.

    Every NTK method and every step differentiates with respect to every leaf, so an integer or
    boolean leaf (a step counter, a mask) is refused here rather than by some methods and not others.
    """
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    if not flat:
        raise ValueError(f"{name} has no leaves: expected a pytree of float arrays (the model's parameters)")
    for path, leaf in flat:
        where = name + jax.tree_util.keystr(path)
        dtype = getattr(leaf, "dtype", None)
        if dtype is None and isinstance(leaf, int | float | complex):
            dtype = jnp.result_type(leaf)
        if dtype is None:
            raise ValueError(
                f"{where} is a {type(leaf).__name__}, not an array: every leaf of {name} must be a float array"
            )
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise ValueError(
                f"{where} has dtype {dtype}: every leaf of {name} must be a float array (derivatives are "
                f"taken with respect to every leaf); keep integer or boolean state out of {name}, e.g. in "
                f"a closure of apply_fn"
            )


def params_dtype(params: Params) -> np.dtype:
    """The dtype of the results computed from ``params`` (their promoted float type)."""
    return np.dtype(jnp.result_type(*jax.tree.leaves(params)))


def check_positive(value: Any, name: str) -> None:
    """A positive finite scalar (when its value is known now)."""
    v = concrete(value)
    if v is None:
        return
    if v.shape != () or not np.issubdtype(v.dtype, np.number) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite scalar, got {value!r}")


def check_unit_interval(value: Any, name: str) -> None:
    """A scalar in ``[0, 1)`` (a decay rate such as Adam's ``b1``, ``b2`` or a momentum)."""
    v = concrete(value)
    if v is None:
        return
    if v.shape != () or not np.issubdtype(v.dtype, np.number) or not (0 <= v < 1):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_ids(ids: Any, size: int, name: str, *, what: str, short: str, bound: str) -> None:
    """``ids`` must be integers in ``[0, size)``: the shared dtype and range check of labels and tokens.

    Args:
      ids: integer labels or token ids (any shape).
      size: the number of classes ``k`` or the vocabulary size ``V``.
      name: the argument to name in the message (``"y_u"``, ``"y_u.tokens"``).
      what: what the ids are (``"class labels"``).
      short: their short name in the range message (``"labels"``).
      bound: where ``size`` comes from (``"the model has k=4 classes"``).
    """
    dtype = jnp.result_type(ids)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer {what} in [0, {size}), got dtype {dtype}")
    value = concrete(ids)
    if value is not None and value.size and (value.min() < 0 or value.max() >= size):
        raise ValueError(
            f"{name} holds {short} in [{value.min()}, {value.max()}] but {bound}: "
            f"expected {short} in [0, {size})"
        )
