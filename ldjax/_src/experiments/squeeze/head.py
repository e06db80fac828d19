r"""The linear softmax head ``z = W x`` of :mod:`ldjax._src.experiments.squeeze`: the closed-form step, an actual
optax step to check it against, the drawn cases and the sweep over step size and peakiness."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src.experiments.squeeze.config import CASES
from ldjax._src.experiments.squeeze.config import Config

#: The sweep's "argmax gain has started" level and the squeeze's "half of the other entries lose" level.
GAIN_LEVEL = 0.01


def squeezed_probs(
    probs: Float[Array, " V"],
    token: int,
    c: float,
    *,
    negative: bool = True,
    positive_token: int | None = None,
) -> Float[Array, " V"]:
    r"""Closed-form π after one SGD step of ``c = η‖x‖²`` on a linear softmax head.

    ``negative=True``: the step lowers ``log π[token]`` (negative gradient); then
    :math:`\pi'_i \propto \pi_i e^{c\pi_i}` for ``i != token`` and
    :math:`\pi'_{token} \propto \pi_{token} e^{c(\pi_{token}-1)}`. ``negative=False``: the step raises it
    (:math:`\pi'_i \propto \pi_i e^{-c\pi_i}`, :math:`\pi'_{token} \propto \pi_{token} e^{c(1-\pi_{token})}`).
    ``positive_token``: the same step also raises ``log π[positive_token]`` (a preference pair); with
    ``negative=True`` the π terms cancel and :math:`z' = z + c\,(e_{+} - e_{-})`.

    Args:
      probs: π before the step, ``[V]``.
      token: the token whose log-probability the step lowers (``negative``) or raises.
      c: the step on the logits, ``η‖x‖²``.
      negative: lower (True) or raise (False) ``log π[token]``.
      positive_token: a second token whose log-probability the step raises.

    Returns:
      π after the step, ``[V]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.experiments.squeeze import squeezed_probs
      >>> p = squeezed_probs(jnp.array([0.7, 0.2, 0.1]), 2, 2.0)
      >>> bool(p[0] > 0.7 and p[1] < 0.2 and p[2] < 0.1)
      True
    """
    probs = jnp.asarray(probs)
    vocab = probs.shape[-1]
    for name, value in (("token", token), ("positive_token", positive_token)):
        if value is not None and not 0 <= value < vocab:
            raise ValueError(f"{name} must be in [0, {vocab}), got {value}")
    force = (1.0 if negative else -1.0) * (probs - jax.nn.one_hot(token, vocab, dtype=probs.dtype))
    if positive_token is not None:
        force = force - (probs - jax.nn.one_hot(positive_token, vocab, dtype=probs.dtype))
    return jax.nn.softmax(jnp.log(probs) + c * force)


def actual_step(
    w: Array,
    x: Array,
    token: int,
    learning_rate: float,
    *,
    negative: bool = True,
    positive_token: int | None = None,
) -> Array:
    """π after one real optax SGD step on ``L = ±log π[token] (− log π[positive_token])`` of the head ``z = W x``."""

    def loss(w):
        logp = jax.nn.log_softmax(w @ x)
        value = logp[token] if negative else -logp[token]
        return value if positive_token is None else value - logp[positive_token]

    opt = optax.sgd(learning_rate)
    updates, _ = opt.update(jax.grad(loss)(w), opt.init(w), w)
    return jax.nn.softmax(optax.apply_updates(w, updates) @ x)


_jitted_step = jax.jit(actual_step, static_argnames=("negative", "positive_token"))


class Case(NamedTuple):
    """One drawn case: the head ``W`` (``W x = z``), the unit feature ``x`` and the updated tokens."""

    w: np.ndarray
    x: np.ndarray
    token: int
    positive_token: int | None


def draw_case(rng: np.random.Generator, vocab: int, d: int, scale: float, case: str) -> Case:
    """A head with logits of standard deviation ``scale`` and the token(s) the case updates (see the module)."""
    x = rng.normal(size=d)
    x = x / np.linalg.norm(x)
    z = rng.normal(size=vocab) * scale
    noise = rng.normal(size=(vocab, d))
    noise -= np.outer(noise @ x, x)  # orthogonal to x: W x = z exactly (x has unit norm)
    order = np.argsort(-z)
    rank = {
        "positive": vocab // 10,
        "negative_flat": vocab // 2,
        "negative_peak": 2,
        "negative_valley": int(vocab * 0.9),
        "paired_valley": int(vocab * 0.9),
    }[case]
    plus = int(order[int(vocab * 0.8)]) if case == "paired_valley" else None
    return Case(np.outer(z, x) + noise, x, int(order[rank]), plus)


class StepSummary(NamedTuple):
    """What one step did to π (``others``: every entry except the updated token(s))."""

    argmax_before: float
    argmax_after: float
    frac_others_decreased: float
    token_before: float
    token_after: float


def summarise(before: np.ndarray, after: np.ndarray, updated: tuple[int, ...]) -> StepSummary:
    """The argmax of the other entries before/after, the fraction of them that lose, the first token's π.

    Example:
      >>> import numpy as np
      >>> from ldjax._src.experiments.squeeze.head import summarise
      >>> summarise(np.array([0.5, 0.3, 0.2]), np.array([0.6, 0.3, 0.1]), (2,)).frac_others_decreased
      0.0
    """
    others = np.ones(len(before), bool)
    others[list(updated)] = False
    arg = int(np.flatnonzero(others)[np.argmax(before[others])])
    return StepSummary(
        float(before[arg]),
        float(after[arg]),
        float(np.mean(after[others] < before[others])),
        float(before[updated[0]]),
        float(after[updated[0]]),
    )


def run_cases(config: Config, seed: int) -> dict[str, Any]:
    """Every case at every V for one seed, the closed form against an actual optax SGD step (float64)."""
    rng = np.random.default_rng(seed)
    out = {}
    with jax.enable_x64(True):
        for vocab in config.vocab_sizes:
            for case in CASES:
                scale = config.flat_scale if case == "negative_flat" else config.peaky_scale
                drawn = draw_case(rng, vocab, config.feature_dim, scale, case)
                w, x = jnp.asarray(drawn.w, jnp.float64), jnp.asarray(drawn.x, jnp.float64)
                before = jax.nn.softmax(w @ x)
                c = config.learning_rate * float(x @ x)
                negative = case != "positive"
                plus = drawn.positive_token
                closed = squeezed_probs(before, drawn.token, c, negative=negative, positive_token=plus)
                actual = _jitted_step(
                    w, x, drawn.token, config.learning_rate, negative=negative, positive_token=plus
                )
                b, a = np.asarray(before), np.asarray(actual)
                updated = (drawn.token,) if plus is None else (drawn.token, plus)
                out[f"V{vocab}_{case}"] = {
                    "token": drawn.token,
                    "positive_token": plus,
                    "c": c,
                    "before": b,
                    "after": a,
                    "closed_form_max_abs_error": float(np.max(np.abs(np.asarray(closed) - a))),
                    **summarise(b, a, updated)._asdict(),
                }
    return out


def sweep(config: Config, seed: int) -> dict[str, np.ndarray]:
    """The negative step on a valley token over ``sweep_steps`` x ``sweep_scales`` (closed form, float64).

    One draw of standard normal logits ``ε`` per seed, scaled by each of ``sweep_scales`` (so the peakiness
    is the only thing that changes along that axis); the updated token is ``ε``'s entry ranked 0.9·V.

    Returns ``argmax_gain``, ``frac_others_decreased`` and ``max_prob`` (π's largest entry before the step),
    each ``[scales, steps]``.
    """
    eps = np.random.default_rng(seed).normal(size=config.sweep_vocab)
    token = int(np.argsort(-eps)[int(config.sweep_vocab * 0.9)])
    shape = (len(config.sweep_scales), len(config.sweep_steps))
    gain, frac, top = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    with jax.enable_x64(True):
        for i, scale in enumerate(config.sweep_scales):
            before = jax.nn.softmax(jnp.asarray(scale * eps))
            b = np.asarray(before)
            for j, c in enumerate(config.sweep_steps):
                step = summarise(b, np.asarray(squeezed_probs(before, token, c)), (token,))
                gain[i, j] = step.argmax_after - step.argmax_before
                frac[i, j], top[i, j] = step.frac_others_decreased, b.max()
    return {"argmax_gain": gain, "frac_others_decreased": frac, "max_prob": top}


def gain_onset(
    steps: tuple[float, ...], gain: Float[np.ndarray, "scales steps"], level: float = GAIN_LEVEL
) -> list:
    """For each peakiness, the smallest step c at which the argmax gain reaches ``level`` (``None``: never).

    Example:
      >>> import numpy as np
      >>> from ldjax._src.experiments.squeeze.head import gain_onset
      >>> gain_onset((1.0, 2.0, 4.0), np.array([[0.0, 0.005, 0.02], [0.0, 0.0, 0.0]]))
      [4.0, None]
    """
    return [next((float(c) for c, g in zip(steps, row, strict=True) if g >= level), None) for row in gain]
