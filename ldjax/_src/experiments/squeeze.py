r"""The squeezing effect of a negative gradient on a linear softmax head, in closed form.

Model: :math:`z = W x` with a fixed feature :math:`x \in \mathbb{R}^d` and :math:`\pi = \text{softmax}(z)`.
The empirical kernel of this head is :math:`K = \|x\|^2 I` (the logits' Jacobian w.r.t. W is
:math:`I \otimes x^\top`), so one SGD step of size η on a loss with force :math:`G = \partial L/\partial z`
moves the logits by exactly :math:`\Delta z = -\eta\|x\|^2 G`.

*Negative gradient* on a response :math:`y^-` (gradient ascent on its NLL, i.e. descent on
:math:`L = \log\pi_{y^-}`): :math:`G = e_{y^-} - \pi`, so with :math:`c = \eta\|x\|^2`

.. math:: z'_i = z_i + c\,\pi_i \ (i \ne y^-),\qquad z'_{y^-} = z_{y^-} - c\,(1 - \pi_{y^-}),

hence :math:`\pi'_i \propto \pi_i\, e^{c\pi_i}` for every :math:`i \ne y^-` (and
:math:`\pi'_{y^-} \propto \pi_{y^-} e^{c(\pi_{y^-} - 1)}`), with one normaliser over all V entries.
Entries gain in proportion to their own probability: the mass removed from :math:`y^-` flows to the
already-likely tokens, and when :math:`y^-` sits in a valley of a peaky π nearly every entry except
the argmax LOSES probability — the squeezing effect (Ren & Sutherland, ICLR 2025, §3.3).

*Positive gradient* on :math:`y^+` (SFT, :math:`L = -\log\pi_{y^+}`): :math:`\pi'_i \propto \pi_i e^{-c\pi_i}`
for :math:`i \ne y^+` and :math:`\pi'_{y^+} \propto \pi_{y^+} e^{c(1 - \pi_{y^+})}`: every other entry
shrinks, the likely ones the most.

The experiment checks the closed form against an actual optax SGD step in float64 and draws the four
cases (positive gradient; negative gradient on a flat π; on the peak of a peaky π; on a valley of a
peaky π) for V = 50 and V = 1000. Runs in seconds.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src.experiments import common

CASES = ("positive", "negative_flat", "negative_peak", "negative_valley")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings (seconds on a laptop CPU)."""

    seed: int = 0
    vocab_sizes: tuple[int, ...] = (50, 1000)
    feature_dim: int = 16
    learning_rate: float = 2.0
    peaky_scale: float = 3.0
    flat_scale: float = 0.1


FULL = Config()


def squeezed_probs(
    probs: Float[Array, " V"], token: int, c: float, *, negative: bool = True
) -> Float[Array, " V"]:
    r"""Closed-form π after one SGD step of ``c = η‖x‖²`` on a linear softmax head.

    ``negative=True``: the step lowers ``log π[token]`` (negative gradient); then
    :math:`\pi'_i \propto \pi_i e^{c\pi_i}` for ``i != token`` and
    :math:`\pi'_{token} \propto \pi_{token} e^{c(\pi_{token}-1)}`. ``negative=False``: the step raises it
    (:math:`\pi'_i \propto \pi_i e^{-c\pi_i}`, :math:`\pi'_{token} \propto \pi_{token} e^{c(1-\pi_{token})}`).

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.experiments.squeeze import squeezed_probs
      >>> p = squeezed_probs(jnp.array([0.7, 0.2, 0.1]), 2, 2.0)
      >>> bool(p[0] > 0.7 and p[1] < 0.2 and p[2] < 0.1)
      True
    """
    probs = jnp.asarray(probs)
    if not 0 <= token < probs.shape[-1]:
        raise ValueError(f"token must be in [0, {probs.shape[-1]}), got {token}")
    sign = 1.0 if negative else -1.0
    onehot = jax.nn.one_hot(token, probs.shape[-1], dtype=probs.dtype)
    logits = jnp.log(probs) + sign * c * (probs - onehot)
    return jax.nn.softmax(logits)


def actual_step(w: Array, x: Array, token: int, learning_rate: float, *, negative: bool = True) -> Array:
    """π after one real optax SGD step on ``L = ±log π[token]`` of the head ``z = W x``."""

    def loss(w):
        logp = jax.nn.log_softmax(w @ x)
        return logp[token] if negative else -logp[token]

    opt = optax.sgd(learning_rate)
    updates, _ = opt.update(jax.grad(loss)(w), opt.init(w), w)
    return jax.nn.softmax(optax.apply_updates(w, updates) @ x)


_jitted_step = jax.jit(actual_step, static_argnames=("negative",))


def _case(rng: np.random.Generator, vocab: int, d: int, config: Config, case: str):
    x = rng.normal(size=d)
    x = x / np.linalg.norm(x)
    scale = config.flat_scale if case == "negative_flat" else config.peaky_scale
    z = rng.normal(size=vocab) * scale
    noise = rng.normal(size=(vocab, d))
    noise -= np.outer(noise @ x, x)  # orthogonal to x: W x = z exactly (x has unit norm)
    w = np.outer(z, x) + noise
    order = np.argsort(-z)
    if case == "positive":
        token = int(order[vocab // 10])  # a moderately likely token
    elif case == "negative_peak":
        token = int(order[0])
    else:  # flat and valley: an unlikely token
        token = int(order[vocab // 2 if case == "negative_flat" else int(vocab * 0.9)])
    return w, x, token


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    del data_dir
    out: dict[str, Any] = {
        "dataset": "synthetic logits of a linear softmax head (no files)",
        "cases": list(CASES),
        "vocab_sizes": list(config.vocab_sizes),
    }
    rng = np.random.default_rng(config.seed)
    with jax.enable_x64(True):
        for vocab in common.progress(config.vocab_sizes, desc="squeeze", enabled=progress):
            for case in CASES:
                w, x, token = _case(rng, vocab, config.feature_dim, config, case)
                w, x = jnp.asarray(w, jnp.float64), jnp.asarray(x, jnp.float64)
                before = jax.nn.softmax(w @ x)
                c = config.learning_rate * float(x @ x)
                negative = case != "positive"
                closed = squeezed_probs(before, token, c, negative=negative)
                actual = _jitted_step(w, x, token, config.learning_rate, negative=negative)
                b, a = np.asarray(before), np.asarray(actual)
                arg = int(np.argmax(b))
                others = np.arange(vocab) != token
                key = f"V{vocab}_{case}"
                out[key] = {
                    "token": token,
                    "c": c,
                    "before": b,
                    "after": a,
                    "closed_form_max_abs_error": float(np.max(np.abs(np.asarray(closed) - a))),
                    "token_prob_before": float(b[token]),
                    "token_prob_after": float(a[token]),
                    "argmax_prob_before": float(b[arg]),
                    "argmax_prob_after": float(a[arg]),
                    "frac_others_decreased": float(np.mean(a[others] < b[others])),
                }
    return out


def fidelity(results: dict[str, Any]) -> list[common.Fidelity]:
    rows = []
    errors = [
        results[f"V{v}_{c}"]["closed_form_max_abs_error"] for v in results["vocab_sizes"] for c in CASES
    ]
    rows.append(
        common.Fidelity(
            "closed form π'_i ∝ π_i exp(c π_i) equals an actual SGD step (float64)",
            "exact",
            f"max |error| {max(errors):.2e}",
            max(errors) < 1e-12,
            "all cases, all V",
        )
    )
    for v in results["vocab_sizes"]:
        r = results[f"V{v}_negative_valley"]
        rows.append(
            common.Fidelity(
                f"V={v}: negative gradient on a valley token squeezes mass into the argmax",
                "argmax gains; almost every other entry loses",
                f"argmax {r['argmax_prob_before']:.3f} -> {r['argmax_prob_after']:.3f}; "
                f"{r['frac_others_decreased']:.1%} of other entries lose",
                r["argmax_prob_after"] > r["argmax_prob_before"] and r["frac_others_decreased"] > 0.9,
                f"c = η‖x‖² = {r['c']:.2f}",
            )
        )
        r = results[f"V{v}_negative_flat"]
        rows.append(
            common.Fidelity(
                f"V={v}: on a flat π the negative gradient spreads mass evenly",
                "little squeezing",
                f"argmax {r['argmax_prob_before']:.4f} -> {r['argmax_prob_after']:.4f}",
                abs(r["argmax_prob_after"] - r["argmax_prob_before"]) < 0.05,
                "",
            )
        )
    return rows


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    common.use_agg()
    import matplotlib.pyplot as plt

    paths = []
    titles = {
        "positive": "positive gradient on y⁺",
        "negative_flat": "negative gradient, flat π",
        "negative_peak": "negative gradient on the peak",
        "negative_valley": "negative gradient in a valley",
    }
    vocabs = results["vocab_sizes"]
    fig, axes = plt.subplots(len(vocabs), len(CASES), figsize=(18, 4 * len(vocabs)), squeeze=False)
    for row, v in enumerate(vocabs):
        for col, case in enumerate(CASES):
            r = results[f"V{v}_{case}"]
            before, after = np.asarray(r["before"]), np.asarray(r["after"])
            order = np.argsort(-before)
            show = order[: min(len(order), 50)]
            if r["token"] not in show:
                show = np.append(show[:-1], r["token"])
            ax = axes[row, col]
            pos = np.arange(len(show))
            ax.bar(pos - 0.2, before[show], width=0.4, label="before", color="C0")
            ax.bar(pos + 0.2, after[show], width=0.4, label="after", color="C1")
            k = int(np.where(show == r["token"])[0][0])
            ax.bar(k + 0.2, after[r["token"]], width=0.4, color="C3", label="updated token")
            ax.set_title(
                f"V={v}: {titles[case]}\n{r['frac_others_decreased']:.0%} of other entries lose", fontsize=9
            )
            ax.set_xlabel("entries sorted by π before" + (" (top 50)" if v > 50 else ""))
        axes[row, 0].set_ylabel("π")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    paths.append(common.save_figure(fig, out_dir, "squeeze_cases"))
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
