"""The figures of :mod:`ldjax._src.experiments.squeeze`: the cases of the first seed and the sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ldjax._src.experiments import common
from ldjax._src.experiments.squeeze.config import CASES
from ldjax._src.experiments.squeeze.head import GAIN_LEVEL

TITLES = {
    "positive": "A: positive gradient on y⁺",
    "negative_flat": "B: negative gradient, flat π",
    "negative_peak": "C: negative gradient in the peak",
    "negative_valley": "negative gradient in a valley",
    "paired_valley": "D: y⁻ down and y⁺ up, both in valleys",
}


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
