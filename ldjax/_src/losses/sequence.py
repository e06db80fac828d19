r"""Sequence losses of per-token logits: SFT, DPO, IPO and SLiC, with closed-form forces.

Every loss here is a function ``loss(logits[n, T, V], target) -> scalar`` of the logits of a whole
batch of sequences, so :func:`ldjax.g_term` and :func:`ldjax.one_step` apply to them unchanged: the
model is ``apply_fn(params, tokens[T]) -> logits[T, V]`` and ``x_u`` is a batch of token sequences.

Target format (both NamedTuples, every leaf with the batch axis ``n`` first):

* :class:`SequenceTarget` ``(tokens, mask)``: ``tokens[i, t]`` is the token that ``logits[i, t]``
  must predict (the input sequence shifted left by one, see :func:`next_token_target`) and
  ``mask[i, t]`` is 1 on response positions, 0 on the prompt and on padding.
* :class:`PreferenceTarget` ``(tokens, mask, ref_logp)``: a preference batch of ``m`` pairs is
  stacked on the batch axis, ``n = 2m``. Rows ``[0, m)`` hold the chosen responses
  :math:`y^+_i` and rows ``[m, 2m)`` the rejected responses :math:`y^-_i` of the same prompts, in
  the same order (row ``i`` pairs with row ``i + m``). ``ref_logp[i]`` is the summed log-probability
  of row ``i``'s response under the reference model. Stacking on the batch axis (rather than two
  fields) keeps one leading axis for the inputs, the logits and every leaf of the target, so
  ``one_step(apply_fn, params, x_o, x_u=concat([chosen, rejected]), y_u=target, loss=dpo_fn(β))``
  works as for any classifier, and the force ``G`` comes back with the ``y^+`` part in the first half
  and the ``y^-`` part in the second half (the force split of the paper is a slice).

Notation: :math:`\log\pi(y_i) = \sum_t \text{mask}_{it} \log\pi_{t}(y_{it})` is the summed response
log-probability, :math:`h_i = [\log\pi(y^+_i) - \log\pi_{\rm ref}(y^+_i)] - [\log\pi(y^-_i) -
\log\pi_{\rm ref}(y^-_i)]` the DPO margin.

Each loss with hyper-parameters takes them as keywords (``dpo(logits, target, beta=0.1)``) and has a
factory binding them (``dpo_fn(beta) = bind(dpo, beta=beta)``); its closed-form force ``*_g`` takes them
as required keywords, so a force cannot silently use another β than the loss.

References:
  Rafailov et al., Direct Preference Optimization, NeurIPS 2023 (DPO).
  Azar et al., A General Theoretical Paradigm to Understand Learning from Human Preferences, 2023 (IPO).
  Zhao et al., SLiC-HF: Sequence Likelihood Calibration with Human Feedback, 2023 (SLiC).
  Ren & Sutherland, Learning Dynamics of LLM Finetuning, ICLR 2025.
"""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src import checks
from ldjax._src.losses._base import bind
from ldjax._src.losses._base import checks_target
from ldjax._src.losses._base import softmax_minus_one_hot
from ldjax._src.losses._base import token_log_probs
from ldjax._src.losses._base import with_target_check
from ldjax._src.typing import Loss


class SequenceTarget(NamedTuple):
    """Next-token targets for a batch of sequences.

    Attributes:
      tokens: ``[n, T]`` integers in ``[0, V)``; ``tokens[i, t]`` is predicted by ``logits[i, t]``.
      mask: ``[n, T]`` weights (1 on response tokens, 0 on prompt and padding).
    """

    tokens: Int[Array, "n T"]
    mask: Float[Array, "n T"]


class PreferenceTarget(NamedTuple):
    """Preference pairs stacked on the batch axis: rows ``[0, m)`` chosen, ``[m, 2m)`` rejected.

    Attributes:
      tokens: ``[2m, T]`` next-token targets (see :class:`SequenceTarget`).
      mask: ``[2m, T]`` response masks.
      ref_logp: ``[2m]`` summed response log-probabilities under the reference model.
    """

    tokens: Int[Array, "n T"]
    mask: Float[Array, "n T"]
    ref_logp: Float[Array, " n"]


def next_token_target(
    sequences: Int[Array, "n L"], response_mask: Float[Array, "n L"], *, shift: int = 1
) -> tuple[Int[Array, "n L-shift"], SequenceTarget]:
    """Split full sequences into model inputs and aligned next-token targets.

    ``shift`` says where the model reads its target. ``shift=1`` (the default) is for models whose
    ``logits[t]`` is computed from ``inputs[:t+1]`` and predicts the next token (GPT-style, ldjax's
    ``TinyTransformer``): inputs drop the last token, targets the first. ``shift=0`` is for models
    that shift right internally (flax's lm1b/wmt decoders: ``logits[t]`` predicts ``inputs[t]`` from the
    tokens before it): inputs and targets are the whole sequence.

    Args:
      sequences: ``[n, L]`` token ids (prompt, response, padding).
      response_mask: ``[n, L]``, 1 where the token belongs to the response.
      shift: ``1`` or ``0``, as above.

    Returns:
      ``(inputs[n, L-shift], SequenceTarget(tokens[n, L-shift], mask[n, L-shift]))`` with ``inputs =
      sequences[:, :L-shift]``, ``tokens = sequences[:, shift:]`` and ``mask = response_mask[:, shift:]``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> x, t = ldjax.losses.next_token_target(jnp.array([[1, 2, 3]]), jnp.array([[0, 0, 1]]))
      >>> x, t.tokens, t.mask
      (Array([[1, 2]], dtype=int32), Array([[2, 3]], dtype=int32), Array([[0., 1.]], dtype=float32))
    """
    if shift not in (0, 1):
        raise ValueError(
            f"shift must be 1 (the model predicts the next token) or 0 (it shifts internally), got {shift!r}"
        )
    sequences = jnp.asarray(sequences)
    response_mask = jnp.asarray(response_mask)
    if sequences.ndim != 2 or sequences.shape[1] < 1 + shift:
        raise ValueError(
            f"sequences must be [n, L] with L >= {1 + shift}, got shape {tuple(sequences.shape)}"
        )
    if response_mask.shape != sequences.shape:
        raise ValueError(
            f"response_mask has shape {tuple(response_mask.shape)}: expected the shape of sequences "
            f"{tuple(sequences.shape)}"
        )
    length = sequences.shape[1]
    mask = response_mask[:, shift:].astype(jnp.result_type(float))
    return sequences[:, : length - shift], SequenceTarget(tokens=sequences[:, shift:], mask=mask)


def sequence_log_prob(
    logits: Float[Array, "n T V"], tokens: Int[Array, "n T"], mask: Float[Array, "n T"]
) -> Float[Array, " n"]:
    r"""Summed response log-probability :math:`\sum_t \text{mask}_t \log\pi_t(y_t)` per sequence.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> lp = ldjax.losses.sequence_log_prob(jnp.zeros((1, 3, 4)), jnp.zeros((1, 3), int), jnp.ones((1, 3)))
      >>> float(lp[0])  # 3 log(1/4)
      -4.158...
    """
    return jnp.sum(mask * token_log_probs(logits, tokens), axis=-1)


# ----------------------------------------------------------------------------------------------------
# target checks


def check_tokens(out_shape: tuple[int, ...], tokens: Any, mask: Any, name: str) -> int:
    """Token ids ``[n, T]`` in ``[0, V)`` and a mask of their shape for logits ``(T, V)``; returns ``n``."""
    if len(out_shape) != 2:
        raise ValueError(
            f"sequence losses need per-token logits [T, V] per example, got logits of shape {out_shape}"
        )
    seq_len, vocab = out_shape
    bound = f"the vocabulary has V={vocab} entries"
    checks.check_ids(tokens, vocab, f"{name}.tokens", what="token ids", short="ids", bound=bound)
    shape = tuple(np.shape(tokens))
    if len(shape) != 2 or shape[1] != seq_len:
        raise ValueError(
            f"{name}.tokens has shape {shape}: expected [n, {seq_len}] (one target token per logit position)"
        )
    if tuple(np.shape(mask)) != shape:
        raise ValueError(
            f"{name}.mask has shape {tuple(np.shape(mask))}: expected the shape of tokens {shape}"
        )
    m = checks.concrete(mask)
    if m is not None and m.size and (m.min() < 0 or not np.all(np.isfinite(m))):
        raise ValueError(f"{name}.mask must hold finite non-negative weights (1 on response tokens)")
    return shape[0]


def check_sequence_target(out_shape: tuple[int, ...], target: Any, name: str) -> None:
    """``target`` must be a :class:`SequenceTarget` matching logits of shape ``out_shape = (T, V)``."""
    if not isinstance(target, SequenceTarget):
        raise ValueError(
            f"{name} must be a ldjax.losses.SequenceTarget(tokens, mask), got {type(target).__name__}"
        )
    check_tokens(out_shape, target.tokens, target.mask, name)


def check_preference_target(out_shape: tuple[int, ...], target: Any, name: str) -> None:
    """``target`` must be a :class:`PreferenceTarget` with an even number of rows."""
    if not isinstance(target, PreferenceTarget):
        raise ValueError(
            f"{name} must be a ldjax.losses.PreferenceTarget(tokens, mask, ref_logp) with chosen rows "
            f"first and rejected rows second, got {type(target).__name__}"
        )
    n = check_tokens(out_shape, target.tokens, target.mask, name)
    if n % 2:
        raise ValueError(
            f"{name} has {n} rows: expected 2m rows, the m chosen responses followed by the m rejected ones"
        )
    if tuple(np.shape(target.ref_logp)) != (n,):
        raise ValueError(
            f"{name}.ref_logp has shape {tuple(np.shape(target.ref_logp))}: expected ({n},), one reference "
            f"log-probability per row"
        )


# ----------------------------------------------------------------------------------------------------
# SFT


@with_target_check(check_sequence_target)
def sft(logits: Float[Array, "n T V"], target: SequenceTarget) -> Float[Array, ""]:
    r"""Token-level supervised fine-tuning loss, masked to the response.

    .. math:: L = -\frac{1}{N} \sum_{i,t} \text{mask}_{it} \log \pi_t(y_{it}),\qquad N = \max(1, \textstyle\sum_{i,t}\text{mask}_{it})

    Args:
      logits: ``[n, T, V]``.
      target: :class:`SequenceTarget`.

    Returns:
      The mean negative log-likelihood per response token.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> t = ldjax.losses.SequenceTarget(jnp.array([[0, 1]]), jnp.array([[0.0, 1.0]]))
      >>> float(ldjax.losses.sft(jnp.zeros((1, 2, 4)), t))  # log 4
      1.386...
    """
    picked = token_log_probs(logits, target.tokens)
    return -jnp.sum(target.mask * picked) / _normaliser(target.mask)


@checks_target(check_sequence_target)
def sft_g(logits: Float[Array, "n T V"], target: SequenceTarget) -> Float[Array, "n T V"]:
    r"""Closed form of :math:`\partial L/\partial z` for :func:`sft`: :math:`(\pi - e_y)\,\text{mask}/N`."""
    weight = target.mask / _normaliser(target.mask)
    return softmax_minus_one_hot(logits, target.tokens) * weight[..., None]


def _normaliser(mask: Array) -> Array:
    return jnp.maximum(jnp.sum(mask), 1.0)


# ----------------------------------------------------------------------------------------------------
# preference losses


def _margin(logits: Array, target: PreferenceTarget) -> tuple[Array, int]:
    m = logits.shape[0] // 2
    ratio = sequence_log_prob(logits, target.tokens, target.mask) - target.ref_logp
    return ratio[:m] - ratio[m:], m


def _pair_force(logits: Array, target: PreferenceTarget, dloss_dh: Array) -> Array:
    """``∂L/∂z`` from ``∂L/∂h_i`` (per pair): chosen rows ``-w (π − e)``, rejected ``+w (π − e)``."""
    dloss_dlogp = jnp.concatenate([dloss_dh, -dloss_dh])  # dh/dlogπ(y+) = +1, dh/dlogπ(y-) = -1
    return _response_force(logits, target, dloss_dlogp)


def _response_force(logits: Array, target: PreferenceTarget, dloss_dlogp: Array) -> Array:
    """``∂L/∂z`` from ``∂L/∂logπ(y_i)`` per row: ``∂logπ(y_i)/∂z_it = −mask_it (π_t − e_{y_it})``."""
    weight = -target.mask * dloss_dlogp[:, None]
    return softmax_minus_one_hot(logits, target.tokens) * weight[..., None]


@with_target_check(check_preference_target)
def dpo(logits: Float[Array, "n T V"], target: PreferenceTarget, *, beta: float = 0.1) -> Float[Array, ""]:
    r"""Direct preference optimisation loss :math:`-\frac1m \sum_i \log\sigma(\beta h_i)`.

    Args:
      logits: ``[2m, T, V]``, chosen rows first (see :class:`PreferenceTarget`).
      target: :class:`PreferenceTarget`.
      beta: inverse temperature β > 0.

    Returns:
      The mean over the ``m`` pairs.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> t = ldjax.losses.PreferenceTarget(jnp.zeros((2, 3), int), jnp.ones((2, 3)), jnp.zeros(2))
      >>> float(ldjax.losses.dpo(jnp.zeros((2, 3, 5)), t, beta=0.1))  # h = 0: log 2
      0.693...
    """
    h, _ = _margin(logits, target)
    return -jnp.mean(jax.nn.log_sigmoid(beta * h))


@checks_target(check_preference_target)
def dpo_g(logits: Float[Array, "n T V"], target: PreferenceTarget, *, beta: float) -> Float[Array, "n T V"]:
    r"""Closed form for :func:`dpo`.

    .. math::
       G^+_{it} = \tfrac{\beta}{m}\,(1-\sigma(\beta h_i))\,\text{mask}_{it}\,(\pi_t - e_{y^+_{it}}),\qquad
       G^-_{it} = -\tfrac{\beta}{m}\,(1-\sigma(\beta h_i))\,\text{mask}_{it}\,(\pi_t - e_{y^-_{it}})

    Rows ``[0, m)`` hold :math:`G^+`, rows ``[m, 2m)`` :math:`G^-`.
    """
    h, m = _margin(logits, target)
    return _pair_force(logits, target, -(beta / m) * (1.0 - jax.nn.sigmoid(beta * h)))


@with_target_check(check_preference_target)
def ipo(logits: Float[Array, "n T V"], target: PreferenceTarget, *, tau: float = 0.1) -> Float[Array, ""]:
    r"""Identity preference optimisation loss :math:`\frac1m \sum_i (h_i - \frac{1}{2\tau})^2`.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> t = ldjax.losses.PreferenceTarget(jnp.zeros((2, 3), int), jnp.ones((2, 3)), jnp.zeros(2))
      >>> float(ldjax.losses.ipo(jnp.zeros((2, 3, 5)), t, tau=0.5))  # (0 - 1)^2
      1.0
    """
    h, _ = _margin(logits, target)
    return jnp.mean((h - 1.0 / (2.0 * tau)) ** 2)


@checks_target(check_preference_target)
def ipo_g(logits: Float[Array, "n T V"], target: PreferenceTarget, *, tau: float) -> Float[Array, "n T V"]:
    r"""Closed form for :func:`ipo`: :math:`\partial L/\partial h_i = \frac2m (h_i - \frac1{2\tau})`, then as DPO."""
    h, m = _margin(logits, target)
    return _pair_force(logits, target, (2.0 / m) * (h - 1.0 / (2.0 * tau)))


@with_target_check(check_preference_target)
def slic(
    logits: Float[Array, "n T V"],
    target: PreferenceTarget,
    *,
    delta: float = 1.0,
    regularization: float = 0.0,
) -> Float[Array, ""]:
    r"""SLiC calibration loss with an optional SFT term on the chosen response.

    .. math:: L = \frac1m \sum_i \max\big(0,\ \delta - \log\pi(y^+_i) + \log\pi(y^-_i)\big)
              - \frac{\lambda}{m} \sum_i \log\pi(y^+_i)

    The reference log-probabilities are not used (SLiC calibrates the policy directly).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> t = ldjax.losses.PreferenceTarget(jnp.zeros((2, 3), int), jnp.ones((2, 3)), jnp.zeros(2))
      >>> float(ldjax.losses.slic(jnp.zeros((2, 3, 5)), t, delta=1.0))
      1.0
    """
    m = logits.shape[0] // 2
    logp = sequence_log_prob(logits, target.tokens, target.mask)
    hinge = jnp.maximum(0.0, delta - logp[:m] + logp[m:])
    return jnp.mean(hinge) - regularization * jnp.mean(logp[:m])


@checks_target(check_preference_target)
def slic_g(
    logits: Float[Array, "n T V"], target: PreferenceTarget, *, delta: float, regularization: float
) -> Float[Array, "n T V"]:
    r"""Closed form for :func:`slic`: active hinge pairs push :math:`y^+` up and :math:`y^-` down by 1/m each."""
    m = logits.shape[0] // 2
    logp = sequence_log_prob(logits, target.tokens, target.mask)
    active = (delta - logp[:m] + logp[m:] > 0).astype(logits.dtype)
    dl_dchosen = -(active + regularization) / m
    dl_drejected = active / m
    return _response_force(logits, target, jnp.concatenate([dl_dchosen, dl_drejected]))


# ----------------------------------------------------------------------------------------------------
# factories binding the hyper-parameters (the result keeps ``check_target`` for one_step)


def dpo_fn(beta: float = 0.1) -> Loss:
    """:func:`dpo` with β bound (:func:`bind`), as ``loss(logits, target)`` carrying ``check_target``.

    Example:
      >>> import ldjax
      >>> loss = ldjax.losses.dpo_fn(beta=0.5)
      >>> loss.__name__, hasattr(loss, "check_target")
      ('dpo(beta=0.5)', True)
    """
    _positive(beta, "beta")
    return bind(dpo, beta=beta)


def ipo_fn(tau: float = 0.1) -> Loss:
    """:func:`ipo` with τ bound (:func:`bind`), as ``loss(logits, target)`` carrying ``check_target``."""
    _positive(tau, "tau")
    return bind(ipo, tau=tau)


def slic_fn(delta: float = 1.0, regularization: float = 0.0) -> Loss:
    """:func:`slic` with δ and λ bound (:func:`bind`), as ``loss(logits, target)`` carrying ``check_target``."""
    if not np.isfinite(delta):
        raise ValueError(f"delta must be a finite margin, got {delta!r}")
    if regularization < 0:
        raise ValueError(f"regularization must be >= 0, got {regularization}")
    return bind(slic, delta=delta, regularization=regularization)


def _positive(value: float, name: str) -> None:
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
