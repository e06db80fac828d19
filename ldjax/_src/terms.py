"""The A and G terms of the one-step decomposition."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src import checks
from ldjax._src.typing import LossFn


def a_term(logits: Float[Array, "*batch k"]) -> Float[Array, "*batch k k"]:
    r"""Jacobian of log-softmax with respect to the logits: :math:`A = I - \mathbf{1}\pi^\top`.

    ``A[..., a, b] = δ_ab − π_b``: every row sums to zero, so A removes the part of a logit change
    that moves all classes equally (the normalisation of the force).

    Args:
      logits: ``[..., k]``; leading axes (examples, positions) are kept.

    Returns:
      ``[..., k, k]``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> ldjax.a_term(jnp.zeros(2))
      Array([[ 0.5, -0.5],
             [-0.5,  0.5]], dtype=float32)
    """
    probs = jax.nn.softmax(logits, axis=-1)
    eye = jnp.eye(logits.shape[-1], dtype=probs.dtype)
    return eye - probs[..., None, :]


def apply_a_term(logits: Float[Array, "*batch k"], dz: Float[Array, "*batch k"]) -> Float[Array, "*batch k"]:
    r""":math:`A \cdot \Delta z` without forming A: ``dz − Σ_b π_b dz_b`` along the last axis."""
    probs = jax.nn.softmax(logits, axis=-1)
    return dz - jnp.sum(probs * dz, axis=-1, keepdims=True)


def g_term(loss_fn: LossFn, logits: Float[Array, " n *o"], target: Any) -> Float[Array, " n *o"]:
    r"""The force :math:`G = \partial L / \partial z`, by automatic differentiation.

    Any loss works: ``loss_fn(logits, target)`` must return a scalar (the built-in losses return
    the mean over the batch, so G carries the 1/n factor of the loss). The loss's own target check
    (``loss_fn.check_target``: labels in ``[0, k)``, ...) runs first, so a label out of range is an
    error, not a zero row of G.

    Args:
      loss_fn: ``loss_fn(logits[n, *o], target) -> scalar``.
      logits: ``[n, *o]``.
      target: whatever ``loss_fn`` takes (labels ``[n]``, probabilities ``[n, k]``, a tuple ...).

    Returns:
      ``[n, *o]``, same shape as ``logits``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> ldjax.g_term(ldjax.losses.cross_entropy, jnp.zeros((1, 2)), jnp.array([1]))
      Array([[ 0.5, -0.5]], dtype=float32)
    """
    if np.ndim(logits) < 2:
        raise ValueError(
            f"logits has shape {np.shape(logits)}: expected a batch [n, *o] (for one example use logits[None])"
        )
    checks.check_loss_target(loss_fn, tuple(np.shape(logits)[1:]), target, "target")
    checks.check_targets_batch(target, np.shape(logits)[0], "target", "logits")
    checks.check_scalar_loss(loss_fn, logits, target, "loss_fn")
    return jax.grad(loss_fn)(logits, target)
