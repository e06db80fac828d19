r"""Policy-gradient losses on sampled responses: GRPO and SimKO, with group-normalised advantages.

Without ``old_log_probs`` in the target they take their on-policy form, the one that matters for a single
update: the responses were sampled from the current policy, so every importance ratio
:math:`\pi/\pi_{\rm old}` equals 1 and PPO's clipping is inactive. The gradient of the clipped surrogate
is then that of

.. math:: L = -\frac1n \sum_i A_i\,\frac{1}{|o_i|} \sum_t \text{mask}_{it}\,\ell_{it},

with :math:`\ell_{it} = \log\pi_t(y_{it})` for GRPO. With ``old_log_probs`` (the log-probabilities of the
sampled tokens under the policy that sampled them, for the second and later minibatch updates on one
rollout) the per-token term is PPO's clipped surrogate

.. math:: \min\big(A_i\,\rho_{it},\; A_i\,\text{clip}(\rho_{it}, 1-\epsilon, 1+\epsilon)\big),\qquad
          \rho_{it} = r_{it}\, e^{\ell_{it} - \text{sg}(\ell_{it})},\quad
          r_{it} = \pi_t(y_{it}) / \pi_{\rm old}(y_{it}),

whose value is the ratio :math:`r` and whose gradient is :math:`A_i\, r_{it} \nabla\ell_{it}` where it is
not clipped (``clip`` = ε = 0.2); at :math:`r = 1` it is the on-policy gradient.

SimKO changes :math:`\ell` only at high-entropy tokens: entropy strictly above the ``quantile`` of the
entropies of the response's own masked tokens (80th percentile by default, per sequence as in the
authors' ``row_quantile_masked``):

* positive advantage: :math:`\ell = (1-\alpha)\log\pi_t(y_t) + \frac{\alpha}{K}\sum_{k\in\text{top-}K(\pi_t)}\log\pi_t(k)`
  (the top-K candidates get a share α of the boost; K = 3, α = 0.01);
* negative advantage where the sampled token is the top-1: :math:`\ell = \lambda \log\pi_t(y_t)`
  (λ = 1.1 amplifies the penalty on an over-confident token).

The entropy, the percentile and the top-K sets are treated as constants (no gradient flows through
the selection). This follows the authors' code (CLR-Lab/SimKO, ``verl/trainer/ppo/core_algos.py``,
``compute_policy_loss_simko``): there the top-K share is mixed into the ratio and λ multiplies the
advantage, which gives the same gradient; the positive branch is taken for *correct* responses, which for
binary rewards and group-normalised advantages are those with :math:`A > 0` (an all-correct group has
:math:`A = 0` and no gradient). The authors average the surrogate over all tokens of the batch; here each
response is averaged over its tokens first (the original GRPO); the two agree for responses of equal length.

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
from jax.typing import ArrayLike
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
      old_log_probs: ``[n, T]`` log-probabilities of the sampled tokens under the policy that sampled
        them (the clipped surrogate), or ``None`` for the on-policy loss (every ratio equal to 1).
    """

    tokens: Int[Array, "n T"]
    mask: Float[Array, "n T"]
    advantages: Float[Array, " n"]
    old_log_probs: Float[Array, "n T"] | None = None


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
    old = target.old_log_probs
    if old is not None and tuple(np.shape(old)) != tuple(np.shape(target.tokens)):
        raise ValueError(
            f"{name}.old_log_probs has shape {tuple(np.shape(old))}: expected {tuple(np.shape(target.tokens))}, "
            "one per sampled token (or None for the on-policy loss)"
        )


def group_advantages(
    rewards: Float[ArrayLike, " n"], group_size: int, *, eps: float = 1e-6
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


def _policy_loss(ell: Array, picked: Array, target: PolicyTarget, clip: float) -> Array:
    """``-mean_i (1/|o_i|) sum_t mask * objective``: ``A·ell`` on-policy, the clipped surrogate otherwise."""
    adv = target.advantages[:, None]
    if target.old_log_probs is None:
        objective = adv * ell
    else:
        ratio = jnp.exp(jax.lax.stop_gradient(picked) - target.old_log_probs)
        rho = ratio * jnp.exp(ell - jax.lax.stop_gradient(ell))
        objective = jnp.minimum(adv * rho, adv * jnp.clip(rho, 1.0 - clip, 1.0 + clip))
    mask = target.mask
    per_response = jnp.sum(mask * objective, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
    return -jnp.mean(per_response)


@with_target_check(check_policy_target)
def grpo(logits: Float[ArrayLike, "n T V"], target: PolicyTarget, *, clip: float = 0.2) -> Float[Array, ""]:
    r"""GRPO loss; on-policy :math:`-\frac1n\sum_i A_i \frac1{|o_i|}\sum_t \text{mask}_{it}\log\pi_t(y_{it})`.

    With ``target.old_log_probs`` the per-token term is PPO's clipped surrogate with ``clip`` = ε (see the
    module docstring).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> t = ldjax.losses.PolicyTarget(jnp.zeros((2, 3), int), jnp.ones((2, 3)), jnp.array([1.0, -1.0]))
      >>> float(ldjax.losses.grpo(jnp.zeros((2, 3, 4)), t)) == 0.0  # equal log-probs: advantages cancel
      True
    """
    picked = token_log_probs(logits, target.tokens)
    return _policy_loss(picked, picked, target, clip)


@checks_target(check_policy_target)
def grpo_g(
    logits: Float[ArrayLike, "n T V"], target: PolicyTarget, *, clip: float = 0.2
) -> Float[Array, "n T V"]:
    r"""Closed form for :func:`grpo`: :math:`G_{it} = \frac{A_i}{n |o_i|}\,\text{mask}_{it}(\pi_t - e_{y_{it}})`.

    With ``target.old_log_probs`` each token's force is multiplied by its ratio :math:`r_{it}` where the
    surrogate is not clipped (:math:`r \le 1+\epsilon` for :math:`A > 0`, :math:`r \ge 1-\epsilon` for
    :math:`A < 0`) and is zero where it is.
    """
    length = jnp.maximum(jnp.sum(target.mask, axis=-1), 1.0)
    adv = target.advantages[:, None]
    weight = target.mask * adv / (length * logits.shape[0])[:, None]
    if target.old_log_probs is not None:
        ratio = jnp.exp(token_log_probs(logits, target.tokens) - target.old_log_probs)
        active = jnp.where(adv > 0, ratio <= 1.0 + clip, ratio >= 1.0 - clip)
        weight = weight * ratio * active.astype(weight.dtype)
    return softmax_minus_one_hot(logits, target.tokens) * weight[..., None]


@with_target_check(check_policy_target)
def simko(
    logits: Float[ArrayLike, "n T V"],
    target: PolicyTarget,
    *,
    top_k: int = 3,
    alpha: float | Float[ArrayLike, ""] = 0.01,
    scale: float | Float[ArrayLike, ""] = 1.1,
    quantile: float = 0.8,
    clip: float = 0.2,
) -> Float[Array, ""]:
    r"""SimKO loss (see the module docstring for the per-token term and the clipped surrogate).

    Args:
      logits: ``[n, T, V]``.
      target: :class:`PolicyTarget`.
      top_k: K, the number of top candidates that share a positive update.
      alpha: α, their share (a float, or a scalar array: it may be traced, e.g. vmapped over settings).
      scale: λ, the factor on a negative update whose sampled token is the top-1 (a float or a scalar
        array, like ``alpha``; α = 0 and λ = 1 is GRPO).
      quantile: tokens whose entropy is strictly above this quantile of their own response's masked
        tokens are modified.
      clip: ε of the clipped surrogate (used with ``target.old_log_probs``).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> t = ldjax.losses.PolicyTarget(jnp.zeros((2, 3), int), jnp.ones((2, 3)), jnp.array([1.0, -1.0]))
      >>> float(ldjax.losses.simko(jnp.zeros((2, 3, 4)), t)) == 0.0
      True
    """
    ell = simko_token_terms(logits, target, top_k=top_k, alpha=alpha, scale=scale, quantile=quantile)
    return _policy_loss(ell, token_log_probs(logits, target.tokens), target, clip)


def simko_token_terms(
    logits: Float[ArrayLike, "n T V"],
    target: PolicyTarget,
    *,
    top_k: int,
    alpha: float | Float[ArrayLike, ""],
    scale: float | Float[ArrayLike, ""],
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
    threshold = jnp.nanquantile(masked, quantile, axis=-1, keepdims=True)  # per response, as the authors
    high = (entropy > threshold) & (target.mask > 0)
    _, top = jax.lax.top_k(frozen, top_k)
    top_mean = jnp.mean(jnp.take_along_axis(logp, top, axis=-1), axis=-1)
    is_top1 = target.tokens == jnp.argmax(frozen, axis=-1).astype(target.tokens.dtype)
    adv = target.advantages[:, None]
    positive = high & (adv > 0)
    negative = high & (adv < 0) & is_top1
    ell = jnp.where(positive, (1.0 - alpha) * picked + alpha * top_mean, picked)
    return jnp.where(negative, scale * picked, ell)


def simko_fn(
    top_k: int = 3, alpha: float = 0.01, scale: float = 1.1, quantile: float = 0.8, clip: float = 0.2
) -> Loss:
    """:func:`simko` with its hyper-parameters bound (:func:`bind`), carrying ``check_target``.

    Example:
      >>> import ldjax
      >>> loss = ldjax.losses.simko_fn(top_k=2)
      >>> loss.__name__, hasattr(loss, "check_target")
      ('simko(top_k=2, alpha=0.01, scale=1.1, quantile=0.8, clip=0.2)', True)
    """
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not 0.0 <= quantile <= 1.0:
        raise ValueError(f"quantile must be in [0, 1], got {quantile}")
    if not 0.0 < clip < 1.0:
        raise ValueError(f"clip must be in (0, 1), got {clip}")
    return bind(simko, top_k=top_k, alpha=alpha, scale=scale, quantile=quantile, clip=clip)
