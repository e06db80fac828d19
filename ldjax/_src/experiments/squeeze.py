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
the argmax LOSES probability — the squeezing effect (Ren & Sutherland, ICLR 2025, §3.3 and Appendix C).
The argmax of the other entries always gains (its factor :math:`e^{c\pi_i}` is the largest); how much
depends on c and on how peaky π is.

*Positive gradient* on :math:`y^+` (SFT, :math:`L = -\log\pi_{y^+}`): :math:`\pi'_i \propto \pi_i e^{-c\pi_i}`
for :math:`i \ne y^+` and :math:`\pi'_{y^+} \propto \pi_{y^+} e^{c(1 - \pi_{y^+})}`: every other entry
shrinks, the likely ones the most.

*Both at once* (the authors' case D: a negative step on a valley token :math:`y^-` and an equally large
positive step on another valley token :math:`y^+`, as an off-policy DPO pair on one context): the two
:math:`\pi` terms cancel, :math:`z' = z + c\,(e_{y^+} - e_{y^-})`, so nothing is squeezed: :math:`y^-` falls,
:math:`y^+` rises and the rest is only renormalised.

Set-up (differences from the authors' notebook ``squeeze_effect.ipynb``, which draws one example of each
case with V = 50, a 4-dimensional feature and steps of 0.3-1): here each seed draws a unit-norm feature
``x`` (``feature_dim`` = 16) and logits ``z`` with i.i.d. normal entries scaled by ``peaky_scale`` (3: the
largest π is about 0.35 at V = 50, the authors' peaky π has 0.76) or ``flat_scale`` (0.1), and ``W`` with
``W x = z`` exactly; the step is ``c = learning_rate · ‖x‖² = 2``. Tokens: the positive case updates the
entry ranked V/10, the peak case the third most likely entry (the authors: an entry inside the peak), the
flat case the median entry, the valley cases the entry ranked 0.9·V (and, for case D, 0.8·V for y⁺). Every
case and seed is checked against an actual optax SGD step in float64.

Sweep: the negative step on the valley token at V = 50 over the step size c and the peakiness (the scale of
the logits), averaged over the seeds: the gain of the argmax and the fraction of other entries that lose
mass, with the contours where the argmax gain reaches 0.01 and where half of the other entries lose.
Runs in seconds.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src.experiments import claims
from ldjax._src.experiments import common

CASES = ("positive", "negative_flat", "negative_peak", "negative_valley", "paired_valley")
TITLES = {
    "positive": "A: positive gradient on y⁺",
    "negative_flat": "B: negative gradient, flat π",
    "negative_peak": "C: negative gradient in the peak",
    "negative_valley": "negative gradient in a valley",
    "paired_valley": "D: y⁻ down and y⁺ up, both in valleys",
}
SOURCE = "Ren & Sutherland, ICLR 2025, §3.3 and Appendix C (squeezing figure); notebook squeeze_effect.ipynb"
#: The sweep's "argmax gain has started" level and the squeeze's "half of the other entries lose" level.
GAIN_LEVEL = 0.01


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings (seconds on a laptop CPU).

    Attributes:
      seed: the first seed; seed ``seed + i`` draws run ``i``'s feature, logits and ``W``.
      seeds: independent draws the claims are decided over.
      vocab_sizes: the vocabularies V of the four cases.
      feature_dim: the dimension of the feature ``x`` (unit norm).
      learning_rate: η; the step on the logits is ``c = η‖x‖² = η``.
      peaky_scale: standard deviation of the logits of a peaky π.
      flat_scale: standard deviation of the logits of a flat π.
      sweep_vocab: V of the sweep.
      sweep_steps: the step sizes ``c`` of the sweep.
      sweep_scales: the logit scales (peakiness) of the sweep.
    """

    seed: int = 0
    seeds: int = 5
    vocab_sizes: tuple[int, ...] = (50, 1000)
    feature_dim: int = 16
    learning_rate: float = 2.0
    peaky_scale: float = 3.0
    flat_scale: float = 0.1
    sweep_vocab: int = 50
    sweep_steps: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    sweep_scales: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)


FULL = Config(seeds=20, vocab_sizes=(50, 1000, 50000))

#: The tiny run shared by the smoke test and the notebook under ``LDJAX_NOTEBOOK_TINY``.
TINY = Config(vocab_sizes=(20,), feature_dim=4, sweep_steps=(0.5, 2.0, 8.0), sweep_scales=(0.0, 1.0, 4.0))


def _check_config(config: Config) -> None:
    if config.seeds < 1 or config.feature_dim < 1:
        raise ValueError(f"seeds and feature_dim must be >= 1, got {config.seeds}, {config.feature_dim}")
    if not config.vocab_sizes or min(config.vocab_sizes) < 10 or config.sweep_vocab < 10:
        raise ValueError(
            f"vocab_sizes and sweep_vocab must be >= 10 (a peak, a median and a valley token), got "
            f"{config.vocab_sizes}, {config.sweep_vocab}"
        )
    if not config.sweep_steps or not config.sweep_scales:
        raise ValueError("sweep_steps and sweep_scales must not be empty")


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
      >>> from ldjax._src.experiments.squeeze import summarise
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
      >>> from ldjax._src.experiments.squeeze import gain_onset
      >>> gain_onset((1.0, 2.0, 4.0), np.array([[0.0, 0.005, 0.02], [0.0, 0.0, 0.0]]))
      [4.0, None]
    """
    return [next((float(c) for c, g in zip(steps, row, strict=True) if g >= level), None) for row in gain]


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """The five cases for every seed and V (closed form checked against a real step) and the sweep."""
    del data_dir
    _check_config(config)
    seeds = [config.seed + i for i in range(config.seeds)]
    per_seed, sweeps = [], []
    for seed in common.progress(seeds, desc="squeeze", enabled=progress):
        per_seed.append(run_cases(config, seed))
        sweeps.append(sweep(config, seed))
    mean_sweep = {key: np.mean([s[key] for s in sweeps], axis=0) for key in sweeps[0]}
    return {
        "dataset": "synthetic logits of a linear softmax head (no files)",
        "cases": list(CASES),
        "vocab_sizes": list(config.vocab_sizes),
        "seeds": seeds,
        "per_seed": per_seed,
        "sweep": {
            "vocab": config.sweep_vocab,
            "steps": list(config.sweep_steps),
            "scales": list(config.sweep_scales),
            **mean_sweep,
            "gain_onset": gain_onset(config.sweep_steps, mean_sweep["argmax_gain"]),
        },
    }


def fidelity(results: dict[str, Any]) -> list[claims.Row]:
    """Per V: the valley squeeze (others lose, the argmax gains), the flat π (others gain), case D (no squeeze);
    the check that the closed form equals an SGD step."""
    per_seed = results["per_seed"]

    def values(key: str, field: str) -> list[float]:
        return [float(s[key][field]) for s in per_seed]

    def gains(key: str) -> list[float]:
        return [float(s[key]["argmax_after"] - s[key]["argmax_before"]) for s in per_seed]

    rows = []
    for v in results["vocab_sizes"]:
        c = per_seed[0][f"V{v}_negative_valley"]["c"]
        setup = f"V = {v}, c = η‖x‖² = {c:g}, logits N(0, 3²) (peaky) or N(0, 0.1²) (flat)"
        table = (
            (
                "valley_others_lose",
                "a negative gradient on a valley token of a peaky π takes mass from almost every other entry",
                "every entry but the top one falls (large-V panel); 48 of 49 with the notebook's peaky π",
                values(f"V{v}_negative_valley", "frac_others_decreased"),
                claims.Above(0.9, "the fraction of the other entries whose π falls"),
            ),
            (
                "valley_argmax_gains",
                "... and squeezes it into the argmax",
                "the top entry rises: 0.76 -> 0.99 with the notebook's peaky π (V=50)",
                gains(f"V{v}_negative_valley"),
                claims.Above(0.02, "the rise of π(argmax)"),
            ),
            (
                "flat_others_gain",
                "on a flat π the mass of the negative gradient spreads: most other entries gain",
                "all 49 other entries rise (case B)",
                values(f"V{v}_negative_flat", "frac_others_decreased"),
                claims.Below(0.5, "the fraction of the other entries whose π falls"),
            ),
            (
                "paired_valley_peak_still",
                "with an equal positive step on another valley token (case D; y⁻ at rank 0.9·V, y⁺ at 0.8·V), "
                "the peak does not move",
                "the top entry stays at 0.763 (case D)",
                [abs(g) for g in gains(f"V{v}_paired_valley")],
                claims.Below(0.01, "|the change of π(argmax)|"),
            ),
        )
        rows += [
            claims.claim(
                f"squeeze.{name}_v{v}",
                f"V={v}: {statement}",
                source=SOURCE,
                paper=paper,
                values=vals,
                criterion=criterion,
                note=setup,
            )
            for name, statement, paper, vals, criterion in table
        ]
    errors = [s[key]["closed_form_max_abs_error"] for s in per_seed for key in s]
    rows.append(
        claims.check(
            "squeeze.closed_form_equals_step",
            "the closed form π'_i ∝ π_i exp(±c π_i) equals an actual optax SGD step (float64)",
            value=float(f"{max(errors):.3g}"),
            holds=max(errors) < 1e-12,
            criterion="max |closed form − step| < 1e-12 over every case, V and seed",
            seeds=len(per_seed),
        )
    )
    return rows


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """The cases of the first seed (bars before/after) and the sweep (two heat maps with their contours)."""
    common.use_agg()
    return [plot_cases(results, Path(out_dir)), plot_sweep(results, Path(out_dir))]


def plot_cases(results: dict[str, Any], out_dir: Path) -> Path:
    """π before and after the step in every case (first seed), the 50 most likely entries and the updated ones."""
    import matplotlib.pyplot as plt

    first = results["per_seed"][0]
    vocabs = results["vocab_sizes"]
    fig, axes = plt.subplots(
        len(vocabs), len(CASES), figsize=(4.2 * len(CASES), 4 * len(vocabs)), squeeze=False
    )
    for row, v in enumerate(vocabs):
        for col, case in enumerate(CASES):
            r = first[f"V{v}_{case}"]
            before, after = np.asarray(r["before"]), np.asarray(r["after"])
            updated = [t for t in (r["token"], r["positive_token"]) if t is not None]
            show = [t for t in np.argsort(-before)[:50] if t not in updated][: 50 - len(updated)] + updated
            ax = axes[row, col]
            pos = np.arange(len(show))
            ax.bar(pos - 0.2, before[show], width=0.4, label="before", color="C0")
            ax.bar(pos + 0.2, after[show], width=0.4, label="after", color="C1")
            for k, t in enumerate(updated):
                ax.bar(
                    len(show) - len(updated) + k + 0.2, after[t], width=0.4, color="C3" if k == 0 else "C2"
                )
            ax.set_title(
                f"V={v}: {TITLES[case]}\n{r['frac_others_decreased']:.0%} of the other entries lose",
                fontsize=9,
            )
            ax.set_xlabel("top entries by π before; the updated token(s) last")
        axes[row, 0].set_ylabel("π")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return common.save_figure(fig, out_dir, "squeeze_cases")


def plot_sweep(results: dict[str, Any], out_dir: Path) -> Path:
    """The argmax gain and the fraction of other entries that lose, over step size x peakiness (mean over seeds)."""
    import matplotlib.pyplot as plt

    sw = results["sweep"]
    steps, scales = np.asarray(sw["steps"]), np.asarray(sw["scales"])
    top = np.asarray(sw["max_prob"])[:, 0]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained")
    panels = (
        ("argmax_gain", "rise of π(argmax)", GAIN_LEVEL, "viridis"),
        ("frac_others_decreased", "fraction of the other entries that lose", 0.5, "magma"),
    )
    for ax, (key, title, level, cmap) in zip(axes, panels, strict=True):
        mat = np.asarray(sw[key])
        image = ax.imshow(mat, origin="lower", aspect="auto", cmap=cmap)
        fig.colorbar(image, ax=ax)
        if mat.min() < level < mat.max() and min(mat.shape) > 1:
            ax.contour(mat, levels=[level], colors="w", linewidths=1.5)
        ax.set_xticks(range(len(steps)), [f"{c:g}" for c in steps])
        ax.set_yticks(range(len(scales)), [f"{s:g} ({p:.2f})" for s, p in zip(scales, top, strict=True)])
        ax.set_xlabel("size of the negative step c = η‖x‖²")
        ax.set_ylabel("logit scale (largest π)")
        ax.set_title(f"{title}; contour at {level:g}", fontsize=9)
    fig.suptitle(
        f"negative gradient on a valley token, V = {sw['vocab']}, mean over {len(results['seeds'])} seeds",
        fontsize=10,
    )
    return common.save_figure(fig, out_dir, "squeeze_sweep")


def main(argv=None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
