r"""Policy-gradient losses on sampled responses: GRPO and SimKO, with group-normalised advantages.

Both are written in their on-policy form, the one that matters for a single update: the responses were
sampled from the current policy, so every importance ratio :math:`\pi/\pi_{\rm old}` equals 1 and PPO's
clipping is inactive. The gradient of the clipped surrogate is then that of

.. math:: L = -\frac1n \sum_i A_i\,\frac{1}{|o_i|} \sum_t \text{mask}_{it}\,\ell_{it},

with :math:`\ell_{it} = \log\pi_t(y_{it})` for GRPO. SimKO changes :math:`\ell` only at
high-entropy tokens (entropy strictly above the ``quantile`` of the masked tokens' entropies in the
batch, 80th percentile by default):

* positive advantage: :math:`\ell = (1-\alpha)\log\pi_t(y_t) + \frac{\alpha}{K}\sum_{k\in\text{top-}K(\pi_t)}\log\pi_t(k)`
  (the top-K candidates get a share α of the boost; K = 3, α = 0.01);
* negative advantage where the sampled token is the top-1: :math:`\ell = \lambda \log\pi_t(y_t)`
  (λ = 1.1 amplifies the penalty on an over-confident token).

The entropy, the percentile and the top-K sets are treated as constants (no gradient flows through
the selection).

Target: :class:`PolicyTarget` ``(tokens[n, T], mask[n, T], advantages[n])``; get advantages from
rewards with :func:`group_advantages`.

References:
  Shao et al., DeepSeekMath, 2024 (GRPO).
  Peng et al., SimKO: Simple Pass@K Policy Optimization, 2025.
"""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.losses._base import bind
from ldjax._src.losses._base import checks_target
from ldjax._src.losses._base import softmax_minus_one_hot
from ldjax._src.losses._base import token_log_probs
from ldjax._src.losses._base import with_target_check
from ldjax._src.losses.sequence import check_tokens
from ldjax._src.typing import Loss


class PolicyTarget(NamedTuple):
    """Sampled responses with their advantages.

    Attributes:
      tokens: ``[n, T]`` next-token targets (the sampled tokens).
      mask: ``[n, T]`` response masks.
      advantages: ``[n]`` per-response advantages (e.g. :func:`group_advantages`).
    """

    tokens: Int[Array, "n T"]
    mask: Float[Array, "n T"]
    advantages: Float[Array, " n"]


def check_policy_target(out_shape: tuple[int, ...], target: Any, name: str) -> None:
    """``target`` must be a :class:`PolicyTarget` matching logits ``[T, V]`` per example."""
    if not isinstance(target, PolicyTarget):
        raise ValueError(
            f"{name} must be a ldjax.losses.PolicyTarget(tokens, mask, advantages), got {type(target).__name__}"
        )
    n = check_tokens(out_shape, target.tokens, target.mask, name)
    if tuple(np.shape(target.advantages)) != (n,):
        raise ValueError(
            f"{name}.advantages has shape {tuple(np.shape(target.advantages))}: expected ({n},), one per response"
        )


def group_advantages(
    rewards: Float[Array, " n"], group_size: int, *, eps: float = 1e-6
) -> Float[Array, " n"]:
    r"""GRPO advantages: rewards standardised within consecutive groups of ``group_size`` responses.

    :math:`A_i = (r_i - \text{mean}_g\, r) / (\text{std}_g\, r + \epsilon)` over the group ``g`` of response ``i``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> ldjax.losses.group_advantages(jnp.array([1.0, 0.0, 0.0, 0.0]), 2)
      Array([ 0.999998, -0.999998,  0.      ,  0.      ], dtype=float32)
    """
    rewards = jnp.asarray(rewards)
    if rewards.ndim != 1:
        raise ValueError(f"rewards must be [n], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.shape[0] % group_size:
        raise ValueError(
            f"group_size={group_size} must be >= 1 and divide the number of responses {rewards.shape[0]}"
        )
    groups = rewards.reshape(-1, group_size)
    adv = (groups - groups.mean(axis=1, keepdims=True)) / (groups.std(axis=1, keepdims=True) + eps)
    return adv.reshape(-1)


def _policy_loss(ell: Array, target: PolicyTarget) -> Array:
    mask = target.mask
    per_response = jnp.sum(mask * ell, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
    return -jnp.mean(target.advantages * per_response)


@with_target_check(check_policy_target)
def grpo(logits: Float[Array, "n T V"], target: PolicyTarget) -> Float[Array, ""]:
    r"""On-policy GRPO loss :math:`-\frac1n\sum_i A_i \frac1{|o_i|}\sum_t \text{mask}_{it}\log\pi_t(y_{it})`.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> t = ldjax.losses.PolicyTarget(jnp.zeros((2, 3), int), jnp.ones((2, 3)), jnp.array([1.0, -1.0]))
      >>> float(ldjax.losses.grpo(jnp.zeros((2, 3, 4)), t)) == 0.0  # equal log-probs: advantages cancel
      True
    """
    return _policy_loss(token_log_probs(logits, target.tokens), target)


@checks_target(check_policy_target)
def grpo_g(logits: Float[Array, "n T V"], target: PolicyTarget) -> Float[Array, "n T V"]:
    r"""Closed form for :func:`grpo`: :math:`G_{it} = \frac{A_i}{n |o_i|}\,\text{mask}_{it}(\pi_t - e_{y_{it}})`."""
    length = jnp.maximum(jnp.sum(target.mask, axis=-1), 1.0)
    weight = target.mask * (target.advantages / (length * logits.shape[0]))[:, None]
    return softmax_minus_one_hot(logits, target.tokens) * weight[..., None]


@with_target_check(check_policy_target)
def simko(
    logits: Float[Array, "n T V"],
    target: PolicyTarget,
    *,
    top_k: int = 3,
    alpha: float = 0.01,
    scale: float = 1.1,
    quantile: float = 0.8,
) -> Float[Array, ""]:
    r"""On-policy SimKO loss (see the module docstring for the per-token term).

    Args:
      logits: ``[n, T, V]``.
      target: :class:`PolicyTarget`.
      top_k: K, the number of top candidates that share a positive update.
      alpha: α, their share.
      scale: λ, the factor on a negative update whose sampled token is the top-1.
      quantile: tokens whose entropy is strictly above this quantile (over masked tokens) are modified.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> t = ldjax.losses.PolicyTarget(jnp.zeros((2, 3), int), jnp.ones((2, 3)), jnp.array([1.0, -1.0]))
      >>> float(ldjax.losses.simko(jnp.zeros((2, 3, 4)), t)) == 0.0
      True
    """
    return _policy_loss(
        simko_token_terms(logits, target, top_k=top_k, alpha=alpha, scale=scale, quantile=quantile), target
    )


def simko_token_terms(
    logits: Float[Array, "n T V"],
    target: PolicyTarget,
    *,
    top_k: int,
    alpha: float,
    scale: float,
    quantile: float,
) -> Float[Array, "n T"]:
    r"""SimKO's per-token term :math:`\ell_{it}` (its gradient; the selections are constants).

    The hyper-parameters are those of :func:`simko` and are required here.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = token_log_probs(logits, target.tokens)
    frozen = jax.lax.stop_gradient(logp)
    entropy = -jnp.sum(jnp.exp(frozen) * frozen, axis=-1)
    masked = jnp.where(target.mask > 0, entropy, jnp.nan)
    threshold = jnp.nanquantile(masked, quantile)
    high = (entropy > threshold) & (target.mask > 0)
    _, top = jax.lax.top_k(frozen, top_k)
    top_mean = jnp.mean(jnp.take_along_axis(logp, top, axis=-1), axis=-1)
    is_top1 = target.tokens == jnp.argmax(frozen, axis=-1)
    adv = target.advantages[:, None]
    positive = high & (adv > 0)
    negative = high & (adv < 0) & is_top1
    ell = jnp.where(positive, (1.0 - alpha) * picked + alpha * top_mean, picked)
    return jnp.where(negative, scale * picked, ell)


def simko_fn(top_k: int = 3, alpha: float = 0.01, scale: float = 1.1, quantile: float = 0.8) -> Loss:
    """:func:`simko` with its hyper-parameters bound (:func:`bind`), carrying ``check_target``.

    Example:
      >>> import ldjax
      >>> loss = ldjax.losses.simko_fn(top_k=2)
      >>> loss.__name__, hasattr(loss, "check_target")
      ('simko(top_k=2, alpha=0.01, scale=1.1, quantile=0.8)', True)
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    return bind(simko, top_k=top_k, alpha=alpha, scale=scale, quantile=quantile)
