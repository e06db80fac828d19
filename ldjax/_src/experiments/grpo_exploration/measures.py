"""The measures of :mod:`ldjax._src.experiments.grpo_exploration`: pure functions of arrays.

pass@k (the unbiased estimator and its brute-force check), the average k-th highest candidate probability,
the k3 KL to the reference policy, where a predicted change moves probability, and the concentration
statistic of the claims; the tests feed them synthetic inputs.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src.losses import policy
from ldjax._src.losses import sequence as seq_losses

TOP_CANDIDATES = 5
"""How many candidates :func:`candidate_probs` ranks."""


def pass_at_k(correct: Any, n: int, ks: Any) -> np.ndarray:
    r"""The unbiased pass@k estimator (Chen et al., 2021), averaged over prompts.

    For a prompt with ``c`` correct answers among ``n`` samples,
    :math:`\text{pass@}k = 1 - \binom{n-c}{k} / \binom{n}{k}`: the probability that ``k`` of the ``n``
    samples drawn without replacement contain a correct one (computed as a product, no large binomials).

    Args:
      correct: ``[m]`` numbers of correct samples per prompt (integers in ``[0, n]``).
      n: samples per prompt.
      ks: the k values (``1 <= k <= n``).

    Returns:
      ``float64 [len(ks)]``, the mean over prompts.

    Example:
      >>> from ldjax._src.experiments.grpo_exploration import pass_at_k
      >>> pass_at_k([0, 1, 4], n=4, ks=[1, 2, 4]).round(4).tolist()
      [0.4167, 0.5, 0.6667]
    """
    correct = np.asarray(correct, np.int64).reshape(-1)
    ks = np.asarray(ks, np.int64).reshape(-1)
    if np.any(correct < 0) or np.any(correct > n):
        raise ValueError(
            f"correct must hold counts in [0, n={n}], got values in [{correct.min()}, {correct.max()}]"
        )
    if np.any(ks < 1) or np.any(ks > n):
        raise ValueError(f"ks must be in [1, n={n}] (pass@k needs n >= k samples), got {ks.tolist()}")
    out = np.zeros(len(ks))
    for j, k in enumerate(ks):
        values = []
        for c in correct:
            if n - c < k:
                values.append(1.0)
            else:
                values.append(1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1))))
        out[j] = np.mean(values)
    return out


def candidate_probs(
    logits: Float[Array, "n T V"], mask: Float[Array, "n T"], top: int = TOP_CANDIDATES
) -> tuple[Float[Array, " top"], Float[Array, ""]]:
    """The average k-th highest candidate probability (k = 1…``top``) and the entropy at masked positions.

    The SimKO authors' diagnostic: at every generated token, sort π descending and average the k-th entry
    over tokens.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.experiments.grpo_exploration import candidate_probs
      >>> z = jnp.log(jnp.array([[[0.1, 0.6, 0.3]]]))
      >>> probs, entropy = candidate_probs(z, jnp.ones((1, 1)), top=2)
      >>> [round(float(p), 3) for p in probs]
      [0.6, 0.3]
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    probs = jnp.exp(logp)
    ranked = jax.lax.top_k(probs, top)[0]
    weight = mask / jnp.maximum(jnp.sum(mask), 1.0)
    entropy = -jnp.sum(probs * logp, axis=-1)
    return jnp.sum(ranked * weight[..., None], axis=(0, 1)), jnp.sum(entropy * weight)


def reference_kl(
    logits: Float[Array, "n T V"], target: policy.PolicyTarget, ref_log_probs: Float[Array, "n T"]
) -> Float[Array, ""]:
    r"""KL to the reference policy by the "k3" estimator on the sampled tokens (verl's ``low_var_kl``).

    :math:`\frac1n\sum_i \frac1{|o_i|}\sum_t \text{mask}_{it}\,(e^{d} - d - 1)`, :math:`d = \log\pi_{\rm ref} - \log\pi`.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> from ldjax._src.experiments.grpo_exploration import reference_kl
      >>> t = ldjax.losses.PolicyTarget(jnp.zeros((1, 2), int), jnp.ones((1, 2)), jnp.ones(1))
      >>> float(reference_kl(jnp.zeros((1, 2, 3)), t, jnp.log(jnp.full((1, 2), 1 / 3))))
      0.0
    """
    d = ref_log_probs - seq_losses.token_log_probs(logits, target.tokens)
    k3 = jnp.exp(d) - d - 1.0
    mask = target.mask
    return jnp.mean(jnp.sum(mask * k3, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0))


def argmax_gain_stats(
    change: Float[Array, "n T V"],
    logits: Float[Array, "n T V"],
    target: policy.PolicyTarget,
) -> dict[str, float]:
    """Where a (part of a) predicted change moves probability at the negative responses' tokens.

    At the masked positions of rows with negative advantage whose sampled token is NOT the argmax of π
    (a negative gradient in a valley): the fraction where ``change`` raises log π of the argmax, and the mean
    change of the argmax, of the sampled token and of the other tokens. At the positions where the sampled
    token IS the argmax (a negative gradient on the peak): the mean change of the argmax and of the runner-up.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> from ldjax._src.experiments.grpo_exploration import argmax_gain_stats
      >>> z = jnp.log(jnp.array([[[0.7, 0.2, 0.1]]]))
      >>> t = ldjax.losses.PolicyTarget(jnp.array([[2]]), jnp.ones((1, 1)), jnp.array([-1.0]))
      >>> argmax_gain_stats(jnp.array([[[0.1, 0.0, -0.5]]]), z, t)["valley_argmax_gain_fraction"]
      1.0
    """
    change, logits = np.asarray(change), np.asarray(logits)
    tokens, mask, adv = (np.asarray(a) for a in (target.tokens, target.mask, target.advantages))
    order = np.argsort(-logits, axis=-1)
    top1, top2 = order[..., 0], order[..., 1]
    negative = (adv < 0)[:, None] & (mask > 0)
    valley, peak = negative & (tokens != top1), negative & (tokens == top1)
    at = lambda idx: np.take_along_axis(change, idx[..., None], axis=-1)[..., 0]  # noqa: E731
    d_top1, d_top2, d_token = at(top1), at(top2), at(tokens)
    vocab = change.shape[-1]
    d_rest = (change.sum(-1) - d_top1 - d_token) / max(vocab - 2, 1)
    nan = float("nan")
    mean = lambda a, sel: float(a[sel].mean()) if sel.any() else nan  # noqa: E731
    return {
        "valley_positions": int(valley.sum()),
        "valley_argmax_gain_fraction": mean((d_top1 > 0).astype(float), valley),
        "valley_argmax_change": mean(d_top1, valley),
        "valley_token_change": mean(d_token, valley),
        "valley_rest_change": mean(d_rest, valley),
        "peak_positions": int(peak.sum()),
        "peak_argmax_change": mean(d_top1, peak),
        "peak_runner_up_change": mean(d_top2, peak),
    }


def brute_force_pass_at_k(correct: Any, n: int, k: int, *, draws: int, seed: int) -> float:
    """pass@k by brute force: ``draws`` random k-subsets of each prompt's ``n`` outcomes, any correct?

    Example:
      >>> from ldjax._src.experiments.grpo_exploration import brute_force_pass_at_k
      >>> brute_force_pass_at_k([0, 4], n=4, k=2, draws=10, seed=0)
      0.5
    """
    rng = np.random.default_rng(seed)
    hits = []
    for c in np.asarray(correct, np.int64).reshape(-1):
        outcomes = np.arange(n) < c  # the samples are exchangeable: c correct ones among n
        picks = np.argpartition(rng.random((draws, n)), k - 1, axis=1)[:, :k]
        hits.append(outcomes[picks].any(axis=1).mean())
    return float(np.mean(hits))


def concentration(probs_before: Any, probs_after: Any) -> np.ndarray:
    """Per seed: min(Δ p₁, −Δ (p₂ + … + p₅)) of the average k-th highest candidate probabilities.

    Positive exactly when the top-1 candidate gains AND the next candidates together lose (over-concentration).

    Example:
      >>> from ldjax._src.experiments.grpo_exploration import concentration
      >>> concentration([[0.6, 0.2, 0.1, 0.05, 0.05]], [[0.8, 0.1, 0.05, 0.03, 0.02]]).round(3).tolist()
      [0.2]
    """
    before, after = np.asarray(probs_before, float), np.asarray(probs_after, float)
    d_top1 = after[:, 0] - before[:, 0]
    d_rest = after[:, 1:].sum(1) - before[:, 1:].sum(1)
    return np.minimum(d_top1, -d_rest)
