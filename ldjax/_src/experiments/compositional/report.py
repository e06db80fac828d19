r"""Claims, checks and figures of the compositional-mapping experiment (:mod:`ldjax._src.experiments.compositional`).

Every claim is a pure function of the ``results`` dict (one value per seed; :data:`STATISTICS`) and a
criterion with a margin (:data:`CLAIMS`), so a test can feed it a counter-example. The force measure of a
run is its **cooperation**: over every update of training, the summed first-order change of the OTHER
training objects' log π(y|x) divided by the summed change of the updated objects' own log π(y|x) — positive
when learning an object helps the others (cooperation), negative when it hurts them (contradiction).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from typing import NamedTuple

import numpy as np

from ldjax._src.experiments import claims
from ldjax._src.experiments import common
from ldjax._src.experiments.compositional.forces import PARTS
from ldjax._src.experiments.compositional.task import MAPS

SOURCE = (
    "Ren & Sutherland, Understanding simplicity bias towards compositional mappings via learning dynamics "
    "(NeurIPS 2024 workshop on compositional learning); Ren's thesis, ch. 7"
)


def learned_epochs(correct: np.ndarray) -> np.ndarray:
    """``[R, S, C]`` correctness per record → ``[S, C]``: the first record from which on the object is
    answered correctly at every later record; ``R`` when it is wrong at the last record (not learned).

    Example:
      >>> import numpy as np
      >>> from ldjax._src.experiments.compositional.report import learned_epochs
      >>> learned_epochs(np.array([[0, 0], [1, 1], [0, 1], [1, 1]], bool)[:, None]).tolist()
      [[3, 1]]
    """
    correct = np.asarray(correct, bool)
    stays = np.flip(np.logical_and.accumulate(np.flip(correct, 0), axis=0), 0)
    return np.where(stays[-1], np.argmax(stays, axis=0), correct.shape[0])


def epochs_to_full(results: dict[str, Any], name: str) -> np.ndarray:
    """``[S]``: the first epoch at which every training object of mapping ``name`` is answered correctly
    (``R = epochs + 1`` when never: a censored, i.e. conservative, value)."""
    acc = np.asarray(results["train_accuracy"], float)[MAPS.index(name)]  # [R, S]
    full = acc >= 1.0
    return np.where(full.any(0), np.argmax(full, axis=0), acc.shape[0]).astype(float)


def cooperation(
    results: dict[str, Any], name: str, part: str = "clean", *, actual: bool = False
) -> np.ndarray:
    """``[S]``: Σ over every update of the change of the OTHER training objects' log π(y|x) / Σ of the updated
    objects' own, for the force of ``part`` (first order); ``actual=True``: the same ratio of the actual
    changes, for the whole update."""
    m = MAPS.index(name)
    if actual:
        return np.sum(np.asarray(results["actual_others"], float)[m], 0) / np.sum(
            np.asarray(results["actual_self"], float)[m], 0
        )
    p = PARTS.index(part)
    others = np.asarray(results["others"], float)[m, ..., p]
    own = np.asarray(results["self"], float)[m, ..., p]
    return others.sum(0) / own.sum(0)


def noisy_slowdown(results: dict[str, Any]) -> np.ndarray:
    """``[S]``: mean learned epoch (:func:`learned_epochs`) of the mislabelled training objects of the noisy run
    over that of its clean training objects."""
    learned = np.asarray(results["learned_epoch"], float)[MAPS.index("noisy")]  # [S, C]
    noisy, train = np.asarray(results["noisy"], bool), np.asarray(results["train"], bool)
    return np.array(
        [
            learned[k, noisy[k]].mean() / max(learned[k, train[k] & ~noisy[k]].mean(), 1.0)
            for k in range(len(learned))
        ]
    )


STATISTICS: dict[str, Callable[[dict[str, Any]], np.ndarray]] = {
    "ch7.compositional_learned_faster": lambda r: (
        epochs_to_full(r, "random") / np.maximum(epochs_to_full(r, "compositional"), 1.0)
    ),
    "ch7.compositional_forces_cooperate": lambda r: cooperation(r, "compositional"),
    "ch7.random_forces_contradict": lambda r: cooperation(r, "random"),
    "ch7.clean_faster_than_noisy": noisy_slowdown,
    "ch7.noisy_forces_contradict": lambda r: cooperation(r, "noisy", "noisy"),
}
"""Each claim's per-seed statistic, a pure function of ``results``."""


class ClaimSpec(NamedTuple):
    """A claim as tested here: statement, the paper's finding, criterion, set-up note."""

    statement: str
    paper: str
    criterion: claims.Criterion
    note: str = ""


_COOPERATION = (
    "Σ over all updates of the first-order Δ log π(y|x) of the other training objects / Σ of the updated "
    "objects' own"
)
_SETUP = (
    "one example per object, plain SGD (the force is exactly −η·Jᵀ·G), two ReLU layers of 128; the authors' toy "
    "code repeats each object 100 times and trains three LeakyReLU layers of 128 with Adam"
)
CLAIMS: dict[str, ClaimSpec] = {
    "ch7.compositional_learned_faster": ClaimSpec(
        "the compositional mapping reaches 100 % training accuracy in fewer epochs than a random bijection "
        "(same inputs, model, initialisation and order)",
        "compositional mappings are learned faster (simplicity bias of gradient descent)",
        claims.Above(1.5, "epochs to 100 % training accuracy, random / compositional (paired seeds)"),
        note=_SETUP,
    ),
    "ch7.compositional_forces_cooperate": ClaimSpec(
        "under the compositional mapping, learning an object raises the correct answers of the other objects",
        "the examples' forces cooperate (shared factor → shared part of the answer)",
        claims.Above(0.1, f"{_COOPERATION} (compositional)"),
        note=_SETUP,
    ),
    "ch7.random_forces_contradict": ClaimSpec(
        "under a random bijection, learning an object lowers the correct answers of the other objects",
        "the examples' forces contradict each other (≤ 0)",
        claims.Below(-0.1, f"{_COOPERATION} (random bijection)"),
        note=_SETUP,
    ),
    "ch7.clean_faster_than_noisy": ClaimSpec(
        "with a share (noise_fraction) of the compositional labels corrupted, the clean objects are learned "
        "before the mislabelled ones",
        "clean labels are learned faster than noisy ones",
        claims.Above(1.5, "mean epoch from which a mislabelled object stays learned / that of a clean one"),
        note="learned epoch: first epoch from which both tokens stay right; an object not learned by the end "
        "counts as epochs + 1",
    ),
    "ch7.noisy_forces_contradict": ClaimSpec(
        "the mislabelled objects' forces lower the other objects' training labels (the clean ones' raise them)",
        "noisy labels' forces contradict the others (why they are learned late)",
        claims.Below(-0.1, f"{_COOPERATION}, the mislabelled rows' share of each update (noisy run)"),
        note="first_order.split_change of every update into its clean and its mislabelled rows",
    ),
}
"""The claims, by id."""
_ACTUAL = {"ch7.compositional_forces_cooperate": "compositional", "ch7.random_forces_contradict": "random"}


def fidelity(results: dict[str, Any]) -> list[claims.Row]:
    """Every claim of :data:`CLAIMS` over the seeds, then the checks of the force decomposition."""
    rows = []
    for claim_id, spec in CLAIMS.items():
        note = spec.note
        if claim_id in _ACTUAL:
            act = cooperation(results, _ACTUAL[claim_id], actual=True)
            note += f"; the same ratio of the actual changes: {act.mean():+.3f} (the second-order terms shift it down)"
        if claim_id == "ch7.noisy_forces_contradict":
            note += f"; the clean rows' share: {cooperation(results, 'noisy', 'clean').mean():+.3f}"
        rows.append(
            claims.claim(
                claim_id,
                spec.statement,
                source=SOURCE,
                paper=spec.paper,
                values=STATISTICS[claim_id](results),
                criterion=spec.criterion,
                note=note,
            )
        )
    return rows + checks(results)


def check_values(results: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per run (maps × seeds): the residual's order in the step, the relative error of the per-object change,
    the Pearson r of the per-epoch summed change of the others (predicted vs actual), and whether the
    cooperation from the first-order prediction has the sign of the one from the actual change."""
    err = np.sum(results["abs_error"], 1)  # [M, S]
    slope = np.log10(err / np.maximum(np.sum(results["abs_error_tenth"], 1), 1e-30))
    rel = err / np.maximum(np.sum(results["abs_actual"], 1), 1e-30)
    predicted = np.sum(results["others"], -1)  # [M, E, S]
    actual = np.asarray(results["actual_others"], float)
    centred_p = predicted - predicted.mean(1, keepdims=True)
    centred_a = actual - actual.mean(1, keepdims=True)
    norms = np.linalg.norm(centred_p, axis=1) * np.linalg.norm(centred_a, axis=1)
    r = np.sum(centred_p * centred_a, 1) / np.where(norms > 0, norms, np.nan)  # Pearson r over the epochs
    coop = predicted.sum(1) / np.sum(np.sum(results["self"], -1), 1)
    coop_actual = actual.sum(1) / np.sum(results["actual_self"], 1)
    return {
        "slope": slope,
        "rel_error": rel,
        "others_r": r,
        "same_sign": np.sign(coop) == np.sign(coop_actual),
    }


def checks(results: dict[str, Any]) -> list[claims.Row]:
    """The first-order decomposition of every update against the actual change after the real update."""
    v = check_values(results)
    runs = int(v["slope"].size)
    slope, rel, r = v["slope"], v["rel_error"], v["others_r"]
    return [
        claims.check(
            "ch7.residual_is_second_order",
            "the first-order prediction's residual shrinks like η²: log10 of Σ|error| at the update over Σ|error| "
            "at a tenth of it",
            value=round(float(np.min(slope)), 3),
            holds=bool(np.all((slope >= 1.8) & (slope <= 2.2))),
            criterion="in [1.8, 2.2] on every run (value: the smallest)",
            seeds=runs,
            note=f"range {np.min(slope):.3f} to {np.max(slope):.3f} over {runs} runs (maps × seeds)",
        ),
        claims.check(
            "ch7.first_order_matches_actual",
            "first-order Δ log π(y|x) of every object at every update vs the actual change: Σ|pred − actual| / Σ|actual|",
            value=round(float(np.max(rel)), 4),
            holds=bool(np.max(rel) <= 0.1),
            criterion="<= 0.1 on every run (value: the largest)",
            seeds=runs,
        ),
        claims.check(
            "ch7.others_track_actual",
            "per epoch, the summed first-order change of the other objects follows the actual one",
            value=round(float(np.nanmin(r)), 4) if np.isfinite(r).any() else float("nan"),
            holds=bool(np.all(r >= 0.9)),
            criterion="Pearson r >= 0.9 over the epochs on every run (value: the smallest)",
            seeds=runs,
        ),
        claims.check(
            "ch7.cooperation_sign_matches_actual",
            "the cooperation from the first-order prediction has the sign of the one from the actual changes",
            value=float(np.mean(v["same_sign"])),
            holds=bool(np.all(v["same_sign"])),
            criterion="same sign on every run (value: the share of runs)",
            seeds=runs,
        ),
    ]


# ------------------------------------------------------------------------------------------------ figures

_STYLE = {"compositional": "C0", "random": "C3", "noisy": "C2"}


def _band(ax: Any, t: np.ndarray, y: np.ndarray, label: str, color: str, **kw: Any) -> None:
    """Mean over seeds (the last axis) with a min–max band."""
    ax.plot(t, y.mean(-1), color=color, label=label, **kw)
    ax.fill_between(t, y.min(-1), y.max(-1), color=color, alpha=0.15, lw=0)


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """``compositional_learning`` (accuracy curves), ``compositional_forces`` (cooperation over training,
    predicted vs actual) and ``compositional_force_map`` (the pairwise influence at initialisation)."""
    common.use_agg()
    import matplotlib.pyplot as plt

    paths = [
        _learning_figure(plt, results, out_dir),
        _forces_figure(plt, results, out_dir),
        _force_map_figure(plt, results, out_dir),
    ]
    plt.close("all")
    return paths


def _learning_figure(plt: Any, results: dict[str, Any], out_dir: Path) -> Path:
    """Training accuracy (the noisy run's clean and mislabelled objects apart) and held-out accuracy."""
    train_acc, held_acc = np.asarray(results["train_accuracy"]), np.asarray(results["heldout_accuracy"])
    t = np.arange(train_acc.shape[1])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for m, name in enumerate(MAPS[:2]):
        _band(axes[0], t, train_acc[m], name, _STYLE[name])
    rows = np.asarray(results["noisy_row_accuracy"])
    _band(axes[0], t, rows[0], "noisy run: clean objects", _STYLE["noisy"])
    _band(axes[0], t, rows[1], "noisy run: mislabelled objects", _STYLE["noisy"], ls="--")
    for m, name in enumerate(MAPS):
        _band(axes[1], t, held_acc[m], name, _STYLE[name])
    axes[0].set_title("training accuracy (both tokens right)")
    axes[1].set_title("held-out objects (unseen combinations of seen values)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return common.save_figure(fig, out_dir, "compositional_learning")


def _forces_figure(plt: Any, results: dict[str, Any], out_dir: Path) -> Path:
    """Cooperation over training, predicted vs actual change of the other objects, held-out objects."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4))
    own, others, held = (np.asarray(results[key], float) for key in ("self", "others", "heldout"))
    e = np.arange(1, own.shape[1] + 1)
    curves = [("compositional", 0), ("random", 0), ("noisy", 0), ("noisy", 1)]
    for name, p in curves:
        m = MAPS.index(name)
        ratio = np.cumsum(others[m, ..., p], 0) / np.cumsum(own[m, ..., p], 0)
        label = name if name != "noisy" else f"noisy run: {PARTS[p]} rows' forces"
        _band(axes[0], e, ratio, label, _STYLE[name], ls="--" if p else "-")
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_title("cooperation: Σ Δ log π(others) / Σ Δ log π(own), cumulative")
    for m, name in enumerate(MAPS):
        predicted, actual = (
            others[m].sum(-1).mean(-1),
            np.asarray(results["actual_others"], float)[m].mean(-1),
        )
        axes[1].plot(e, predicted, color=_STYLE[name], label=f"{name}: first order")
        axes[1].plot(e, actual, color=_STYLE[name], ls=":", label=f"{name}: actual")
    axes[1].set_yscale("symlog", linthresh=0.1)
    axes[1].set_title("Δ log π of the other objects per epoch (mean over seeds)")
    for name in ("compositional", "random"):
        m = MAPS.index(name)
        _band(axes[2], e, np.cumsum(held[m, ..., 0], 0) / np.cumsum(own[m, ..., 0], 0), name, _STYLE[name])
    axes[2].axhline(0, color="k", lw=0.6)
    axes[2].set_title("held-out objects: Σ Δ log π(held-out) / Σ Δ log π(own)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.set_xscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return common.save_figure(fig, out_dir, "compositional_forces")


def _force_map_figure(plt: Any, results: dict[str, Any], out_dir: Path) -> Path:
    """The pairwise influence at initialisation (seed 0) and its means by what two objects share."""
    square = np.array(results["influence_map"], float)  # [2, n, n]: compositional, random
    idx = np.asarray(results["influence_train_idx"])
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    square[:, np.arange(len(idx)), np.arange(len(idx))] = np.nan  # the object's own change dwarfs the others
    lim = np.nanmax(np.abs(square))
    for ax, name, image in zip(axes[:2], MAPS[:2], square, strict=True):
        shown = ax.imshow(image, cmap="RdBu", vmin=-lim, vmax=lim)
        ax.set_title(f"{name}: Δ log π(y_o) from a step on x_u (seed 0, init)", fontsize=9)
        ax.set_xlabel("observed training object o, sorted by (g1, g2)")
        ax.set_ylabel("updated object u")
    fig.colorbar(shown, ax=axes[:2], shrink=0.8)
    influence = np.asarray(results["influence"], float)
    bars = [
        (f"{name}" if name != "noisy" else "noisy run: clean u", influence[m]) for m, name in enumerate(MAPS)
    ]
    bars.append(("noisy run: mislabelled u", np.asarray(results["influence_noisy_updaters"], float)))
    width = 0.8 / len(bars)
    pos = np.arange(len(results["relations"]))
    for i, (label, values) in enumerate(bars):
        finite = [v[np.isfinite(v)] for v in values.T]  # a relation without pairs (tiny sizes) is nan
        mean = [v.mean() if v.size else np.nan for v in finite]
        axes[2].bar(
            pos + i * width, mean, width, yerr=[v.std() if v.size else 0.0 for v in finite], label=label
        )
    axes[2].set_xticks(pos + 0.4 - width / 2, results["relations"])
    axes[2].axhline(0, color="k", lw=0.6)
    axes[2].set_title("mean Δ log π(y_o) by what o shares with u (at init, all seeds)", fontsize=9)
    axes[2].legend(fontsize=7)
    return common.save_figure(fig, out_dir, "compositional_force_map")
