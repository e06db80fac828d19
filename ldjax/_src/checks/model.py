"""The model and its outputs: one example's logits, its inputs, forward mode, losses, targets and forces."""

import contextlib
from collections.abc import Callable
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src.checks.arrays import batch_size
from ldjax._src.checks.arrays import example_shape
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params


def _token_sequence(example: Any, length: int) -> bool:
    """Whether one example holds integer ids ``[T, ...]`` with ``T = length`` (a sequence model's input)."""
    return any(
        jnp.issubdtype(leaf.dtype, jnp.integer) and len(leaf.shape) >= 1 and leaf.shape[0] == length
        for leaf in jax.tree.leaves(example)
    )


def _check_two_dimensional(apply_fn: ApplyFn, example: Any, out: tuple[int, ...], x: Any, name: str) -> None:
    """A 2-D output is a sequence model's ``[T, V]`` only for token inputs or when declared."""
    declared = getattr(apply_fn, "sequence_output", None)
    if declared or (declared is None and _token_sequence(example, out[0])):
        return
    got = str(example_shape(x))
    if out[0] == 1:
        why = "its leading axis of size 1 looks like a batch axis that apply_fn adds itself"
    elif out[0] == batch_size(x):
        why = (
            f"its leading axis equals the batch size n={out[0]} of {name}: apply_fn seems to see the whole "
            f"batch ({name} batched twice, or a closure over the batch)"
        )
    else:
        why = f"{name} may be batched twice (its examples have shape {got})"
    raise ValueError(
        f"apply_fn returned logits of shape {tuple(out)} for one example of {name}: {why}. apply_fn(params, x) "
        f"must return [k] for ONE example; a 2-D output is read as a sequence model's [T, V] only for "
        f"integer token inputs [T] or when declared with ldjax.as_apply_fn(f, sequence_output=True)"
    )


def check_example_shape(fn: Any, x: Any, name: str, fn_name: str = "apply_fn") -> None:
    """``x`` must be a batch of the examples ``fn`` expects, when ``fn`` knows their shape (``example_shape``)."""
    expected = getattr(fn, "example_shape", None)
    if expected is not None and tuple(expected) != example_shape(x):
        raise ValueError(
            f"{name} has shape {str(jax.tree.map(np.shape, x))} but {fn_name} expects one example of shape "
            f"{str(tuple(expected))}: pass a batch [n, {', '.join(map(str, expected))}]"
        )


def logits_shape(apply_fn: ApplyFn, params: Params, x: Any, name: str) -> tuple[int, ...]:
    """Shape of ``apply_fn`` on ONE example of the batch ``x``; a clear error when it does not fit."""
    check_example_shape(apply_fn, x, name)
    got = example_shape(x)
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
    if out.ndim == 2:
        _check_two_dimensional(apply_fn, one, tuple(out.shape), x, name)
    return tuple(out.shape)


def check_model_input(apply_fn: ApplyFn, x: Any, name: str) -> None:
    """Run the model's own input check, ``apply_fn.check_input(x, name)``, when it has one.

    The built-in token models carry one (ids in ``[0, V)``, length at most ``max_len``): JAX clamps an
    out-of-range gather going forward and drops it going back, so a bad id gives a wrong kernel, not
    an error. ``x`` is the whole batch.
    """
    check = getattr(apply_fn, "check_input", None)
    if check is not None:
        check(x, name)


@contextlib.contextmanager
def forward_mode(what: str) -> Iterator[None]:
    """Turn JAX's error for a ``jax.custom_vjp`` model under forward mode into one that says what to use."""
    try:
        yield
    except TypeError as err:
        if "custom_vjp" not in str(err):
            raise
        raise ValueError(
            f"apply_fn uses jax.custom_vjp, which has no forward mode, and {what} takes a JVP of the model. "
            f"Models with custom_vjp work with empirical_ntk(method='jacobian' or 'structured'); for "
            f"{what} define the custom derivative with jax.custom_jvp instead"
        ) from err


def check_log_softmax_outputs(out_shape: tuple[int, ...]) -> None:
    """Δ log π needs at least two logits per distribution: log-softmax of one logit is constant (0)."""
    if out_shape[-1] < 2:
        raise ValueError(
            f"apply_fn returns one logit per example (shape {out_shape}): log-softmax over one logit is "
            f"always 0, so Δ log π would be 0. For a sigmoid classifier wrap it with "
            f"ldjax.binary_logits(apply_fn) (logits [0, z]: softmax gives [1 - σ(z), σ(z)]); for regression "
            f"(A = I) use ldjax.empirical_ntk and ldjax.decomposition(None, k, g, learning_rate)"
        )


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


def check_loss_target(loss: Any, out_shape: tuple[int, ...], target: Any, name: str) -> None:
    """Run the loss's own target check, ``loss.check_target(out_shape, target, name)``, when it has one.

    ``out_shape`` is the shape of one example's logits. The built-in losses carry ``check_target``
    (integer labels in ``[0, k)``, probability rows, sequence masks ...); any other callable is accepted as is.
    """
    check = getattr(loss, "check_target", None)
    if check is not None:
        check(out_shape, target, name)


def check_targets_batch(y: Any, n: int, name: str, batch_name: str) -> None:
    """Every leaf of the target ``y`` has the batch axis first, with one entry per example (``n``)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(y)[0]:
        where = name + jax.tree_util.keystr(path)
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{where} is a scalar: expected one target per example of {batch_name}, a batch of {n} "
                f"(e.g. labels of shape ({n},))"
            )
        if shape[0] != n:
            raise ValueError(
                f"{where} has {shape[0]} targets but {batch_name} has {n} examples: expected one target each"
            )


def check_force(g: Any, shape: tuple[int, ...], name: str) -> None:
    """A force on the update batch's logits (shape ``shape``): one entry per example and logit, ``[n_u, *o]``."""
    if np.shape(g) != shape:
        raise ValueError(
            f"{name} has shape {np.shape(g)} but the logits of x_u have shape {shape}: expected one force "
            f"per example and logit [n_u, *o]"
        )


def check_force_parts(parts: Any, shape: tuple[int, ...]) -> None:
    """The parts of a force on logits of shape ``shape = [n_u, *o]``, stacked: ``[m, n_u, *o]``."""
    if np.ndim(parts) != 1 + len(shape) or np.shape(parts)[1:] != shape:
        raise ValueError(
            f"parts has shape {np.shape(parts)}: expected the parts of the force [m, {', '.join(map(str, shape))}]"
            f" (or masks [m, {shape[0]}] together with g)"
        )


def check_force_masks(masks: Any, shape: tuple[int, ...]) -> None:
    """Masks (weights) over the update batch of logits ``shape = [n_u, *o]``: ``[m, n_u]`` or ``[m, n_u, *o]``."""
    if np.ndim(masks) < 2 or np.shape(masks)[1:] not in (shape[:1], shape):
        raise ValueError(
            f"parts has shape {np.shape(masks)}: with g, expected masks over the update batch [m, {shape[0]}] "
            f"or [m, {', '.join(map(str, shape))}]"
        )


def check_feature_model(
    feature_fn: Callable, head_fn: Callable, params: Params, x_u: Any, terms: bool
) -> tuple[int, ...]:
    """``feature_fn`` on one example of ``x_u`` and ``head_fn`` on its output, with messages naming each
    (:func:`ldjax.feature_step`); the shape of one example's feature."""
    check_example_shape(feature_fn, x_u, "x_u", "feature_fn")
    one = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf)[1:], jnp.result_type(leaf)), x_u)
    h = _one_array(
        feature_fn, params, one, "feature_fn", "the feature h",
        f"feature_fn failed on one example of x_u (example shape {str(example_shape(x_u))}): "
        "feature_fn(params, x) takes ONE example without a batch axis",
    )  # fmt: skip
    if terms and h.ndim not in (1, 2):
        raise ValueError(
            f"feature_fn returns features of shape {tuple(h.shape)}: the kernel term (terms=True) needs [f] or "
            f"[T, f]; flatten the feature in feature_fn (and reshape it in head_fn) or pass terms=False"
        )
    _one_array(
        head_fn, params, h, "head_fn", "logits",
        f"head_fn failed on a feature of shape {tuple(h.shape)} (the output of feature_fn for one example): "
        "head_fn(params, h) takes ONE example's feature",
    )  # fmt: skip
    return tuple(h.shape)


def _one_array(
    fn: Callable, params: Params, arg: Any, name: str, what: str, failure: str
) -> jax.ShapeDtypeStruct:
    """The shape of ``fn(params, arg)``, which must be ONE array (``what``); ``failure`` starts the message."""
    try:
        out = jax.eval_shape(fn, params, arg)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(f"{failure}. The error was: {err}") from err
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"{name} must return one array ({what}), got {type(out).__name__}")
    return out
