"""Classification losses and their closed-form forces G = ∂L/∂z."""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src import checks
from ldjax._src.losses._base import checks_target
from ldjax._src.losses._base import softmax_minus_one_hot
from ldjax._src.losses._base import token_log_probs
from ldjax._src.losses._base import with_target_check


def check_integer_labels(out_shape: tuple[int, ...], labels: Any, name: str) -> None:
    """Labels must be integers in ``[0, k)`` with one label per example (and position)."""
    k = out_shape[-1]
    bound = f"the model has k={k} classes"
    checks.check_ids(labels, k, name, what="class labels", short="labels", bound=bound)
    expected = tuple(out_shape[:-1])
    if tuple(np.shape(labels)[1:]) != expected:
        raise ValueError(
            f"{name} has shape {tuple(np.shape(labels))}: expected one label per example "
            f"[n{''.join(', ' + str(s) for s in expected)}] for logits of shape {out_shape} per example"
        )


def check_probability_targets(out_shape: tuple[int, ...], targets: Any, name: str) -> None:
    if tuple(np.shape(targets)[1:]) != tuple(out_shape):
        raise ValueError(
            f"{name} has shape {tuple(np.shape(targets))}: expected target distributions [n, "
            f"{', '.join(map(str, out_shape))}]"
        )
    value = checks.concrete(targets)
    if value is not None and value.size:
        if value.min() < 0 or not np.allclose(value.sum(-1), 1.0, atol=1e-4):
            raise ValueError(f"{name} rows must be probability distributions (non-negative, summing to 1)")


@with_target_check(check_integer_labels)
def cross_entropy(logits: Float[Array, "n *t k"], labels: Int[Array, " n *t"]) -> Float[Array, ""]:
    r"""Mean cross-entropy :math:`-\frac1n\sum_i \log \pi_{y_i}(x_i)` with integer labels.

    Logits may carry extra axes before ``k`` (``[n, T, V]`` with labels ``[n, T]``); the mean is
    then over every position.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> float(ldjax.losses.cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])))  # log 4
      1.386...
    """
    return -jnp.mean(token_log_probs(logits, labels))


@checks_target(check_integer_labels)
def cross_entropy_g(logits: Float[Array, "n *t k"], labels: Int[Array, " n *t"]) -> Float[Array, "n *t k"]:
    r"""Closed form of :math:`\partial L/\partial z` for :func:`cross_entropy`: :math:`(\pi - e_y)/m`.

    ``m`` is the number of labelled positions (``n`` for a classifier).
    """
    return softmax_minus_one_hot(logits, labels) / labels.size


@with_target_check(check_probability_targets)
def soft_cross_entropy(logits: Float[Array, "n k"], targets: Float[Array, "n k"]) -> Float[Array, ""]:
    r"""Mean cross-entropy against target distributions :math:`-\frac1n\sum_i q_i^\top \log\pi(x_i)`.

    Used for label smoothing (:func:`smooth_labels`), distillation and training on :math:`p^*`.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(targets * logp) / np.prod(logits.shape[:-1])


@checks_target(check_probability_targets)
def soft_cross_entropy_g(logits: Float[Array, "n k"], targets: Float[Array, "n k"]) -> Float[Array, "n k"]:
    r"""Closed form for :func:`soft_cross_entropy`: :math:`(\pi - q)/n` (targets summing to one)."""
    probs = jax.nn.softmax(logits, axis=-1)
    return (probs - targets) / np.prod(logits.shape[:-1])


def smooth_labels(labels: Int[Array, " n"], num_classes: int, smoothing: float) -> Float[Array, "n k"]:
    r"""Label-smoothed targets :math:`(1-\epsilon) e_y + \epsilon / k`.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> ldjax.losses.smooth_labels(jnp.array([0]), 2, 0.25)
      Array([[0.875, 0.125]], dtype=float32)
    """
    if not 0.0 <= smoothing <= 1.0:
        raise ValueError(f"smoothing must be in [0, 1], got {smoothing}")
    onehot = jax.nn.one_hot(labels, num_classes)
    return (1.0 - smoothing) * onehot + smoothing / num_classes
