"""Early validation with messages that name the argument and what was expected."""

from __future__ import annotations

import contextlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src.typing import ApplyFn
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


def check_finite(tree: Any, name: str) -> None:
    """Raise if any leaf of ``tree`` holds NaN or inf (only when values are concrete)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        value = concrete(leaf)
        if value is None or not np.issubdtype(value.dtype, np.inexact):
            continue
        if not np.all(np.isfinite(value)):
            where = jax.tree_util.keystr(path) or ""
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise ValueError(f"{name}{where} contains {bad} NaN or inf value(s): expected finite numbers")


def logits_shape(apply_fn: ApplyFn, params: Params, x: Any, name: str) -> tuple[int, ...]:
    """Shape of ``apply_fn`` on ONE example of the batch ``x``; a clear error when it does not fit."""
    expected = getattr(apply_fn, "example_shape", None)
    got = example_shape(x)
    if expected is not None and tuple(expected) != got:
        raise ValueError(
            f"{name} has shape {str(jax.tree.map(np.shape, x))} but apply_fn expects one example of shape "
            f"{str(tuple(expected))}: pass a batch [n, {', '.join(map(str, expected))}]"
        )
    one = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf)[1:], jnp.result_type(leaf)), x)
    try:
        out = jax.eval_shape(apply_fn, params, one)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"apply_fn failed on one example of {name} (example shape {str(got)}, {name} has shape "
            f"{str(jax.tree.map(np.shape, x))}). apply_fn(params, x) takes ONE example without a batch "
            f"axis; {name} must be a batch [n, *d] of such examples. The error was: {err}"
        ) from err
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"apply_fn must return one array of logits, got {type(out).__name__}")
    if out.ndim not in (1, 2):
        raise ValueError(
            f"apply_fn returned logits of shape {tuple(out.shape)} for one example of {name}: expected [k] "
            f"(classifier) or [T, V] (sequence model). Is {name} batched twice, or does apply_fn add a "
            f"batch axis?"
        )
    return tuple(out.shape)


def check_scalar_loss(loss_fn: Any, logits: Any, target: Any, name: str = "loss") -> None:
    try:
        out = jax.eval_shape(loss_fn, logits, target)
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{name}(logits, target) failed on logits of shape {np.shape(logits)}: {err}"
        ) from err
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"{name} must return a scalar (the mean loss over the batch), got shape {shape}; "
            f"reduce it, e.g. with .mean()"
        )


def check_learning_rate(learning_rate: Any) -> None:
    value = concrete(learning_rate)
    if value is None:
        return
    if value.shape != () or not np.isfinite(value) or value <= 0:
        raise ValueError(f"learning_rate must be a positive finite scalar, got {learning_rate!r}")


def check_loss_target(loss: Any, out_shape: tuple[int, ...], target: Any, name: str) -> None:
    """Run the loss's own target check, ``loss.check_target(out_shape, target, name)``, when it has one.

    ``out_shape`` is the shape of one example's logits. The built-in losses carry ``check_target``
    (integer labels in ``[0, k)``, probability rows, sequence masks ...); any other callable is accepted as is.
    """
    check = getattr(loss, "check_target", None)
    if check is not None:
        check(out_shape, target, name)


def check_update_rule(learning_rate: Any, optimizer: Any) -> None:
    """Plain SGD needs ``learning_rate``; an optax ``optimizer`` carries its own, so then it must be ``None``."""
    if optimizer is None:
        if learning_rate is None:
            raise ValueError("learning_rate is required with the default plain SGD (optimizer=None)")
        check_learning_rate(learning_rate)
    elif learning_rate is not None:
        raise ValueError(
            "learning_rate must be None when optimizer is given: the optimizer carries its own schedule"
        )


def _shape_signature(*trees: Any) -> Any:
    """A hashable key of the structure, shapes and dtypes of ``trees`` (not their values)."""
    leaves, treedef = jax.tree.flatten(trees)
    return treedef, tuple((np.shape(leaf), jnp.result_type(leaf)) for leaf in leaves)


def _check_step_shapes(apply_fn: ApplyFn, params: Params, x_o: Any, x_u: Any, y_u: Any, probe_name: str):
    """The shape part of :func:`validate_step`; returns the shape of one example's logits."""
    check_batch(x_o, probe_name)
    check_batch(x_u, "x_u")
    check_same_examples(x_o, probe_name, x_u, "x_u")
    out_shape = logits_shape(apply_fn, params, x_u, "x_u")
    check_log_softmax_outputs(out_shape)
    n_u = batch_size(x_u)
    targets = jax.tree.leaves(y_u)
    if targets and jnp.ndim(targets[0]) > 0 and jnp.shape(targets[0])[0] != n_u:
        n_y = jnp.shape(targets[0])[0]
        raise ValueError(f"y_u has {n_y} targets but x_u has {n_u} examples: expected one target each")
    return out_shape


def validate_step(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Any,
    x_u: Any,
    y_u: Any,
    loss: Any,
    learning_rate: Any = None,
    optimizer: Any = None,
    *,
    probe_name: str = "x_o",
    known_shapes: dict | None = None,
) -> None:
    """Check the arguments of a one-step prediction before anything is traced.

    Shape checks (batches, example shapes, ``apply_fn`` on one example, one target per example, a scalar
    loss) run once per shape signature of ``(params, x_o, x_u, y_u)`` when the caller keeps
    ``known_shapes`` (a dict held by a returned function, e.g. :func:`ldjax.one_step_fn`'s). Value
    checks (finite inputs, a positive learning rate, the loss's ``check_target``) run on every call
    whose values are concrete.

    Args:
      apply_fn, params, x_o, x_u, y_u, loss: as in :func:`ldjax.one_step`.
      learning_rate: η of plain SGD (``optimizer=None``), else ``None``.
      optimizer: an optax optimizer or ``None``.
      probe_name: the probes' name in messages (``"x_probe"`` for :func:`ldjax.predict_log_prob_change`).
      known_shapes: a cache ``{shape signature: logits shape}`` the caller owns; ``None`` checks every time.
    """
    check_update_rule(learning_rate, optimizer)
    if not callable(loss):
        raise ValueError(f"loss must be a function loss(logits, target) -> scalar, got {type(loss).__name__}")
    key = _shape_signature(params, x_o, x_u, y_u)
    known = known_shapes is not None and key in known_shapes
    out_shape = (
        known_shapes[key] if known else _check_step_shapes(apply_fn, params, x_o, x_u, y_u, probe_name)
    )
    check_finite(params, "params")
    check_finite(x_o, probe_name)
    check_finite(x_u, "x_u")
    check_loss_target(loss, out_shape, y_u, "y_u")
    if not known:
        n_u = batch_size(x_u)
        check_scalar_loss(
            loss, jax.ShapeDtypeStruct((n_u, *out_shape), jax.tree.leaves(params)[0].dtype), y_u
        )
        if known_shapes is not None:
            known_shapes[key] = out_shape


def check_log_softmax_outputs(out_shape: tuple[int, ...]) -> None:
    """Δ log π needs at least two logits per distribution: log-softmax of one logit is constant (0)."""
    if out_shape[-1] < 2:
        raise ValueError(
            f"apply_fn returns one logit per example (shape {out_shape}): log-softmax over one logit is "
            f"always 0, so Δ log π would be 0. For a sigmoid classifier wrap it with "
            f"ldjax.binary_logits(apply_fn) (logits [0, z]: softmax gives [1 - σ(z), σ(z)]); for regression "
            f"(A = I) use ldjax.empirical_ntk and ldjax.decomposition(None, k, g, learning_rate)"
        )
