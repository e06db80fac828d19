"""The figures of the learning-path experiments (matplotlib is imported inside each function).

:func:`gaussian_figures`, :func:`cifar3_figures` and :func:`filter_kd_figures` draw from an
experiment's ``results`` dict and return the PNG paths; each experiment's ``plot`` calls its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ldjax._src import paths as paths_lib
from ldjax._src.experiments.common import save_figure
from ldjax._src.experiments.common import use_agg
from ldjax._src.experiments.plotting import simplex_paths


def gaussian_figures(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Simplex paths, distances over time, accuracy against target distance, and the per-update picture."""
    use_agg()
    import matplotlib.pyplot as plt

    out = []
    stride = results["plot_every"]
    es = results["early_stop_step"] // stride
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    sc = None
    for ax, g in zip(axes, results["groups"], strict=True):
        grp = results["groups"][g]
        paths = np.asarray(grp["paths"])
        sc = simplex_paths(
            ax,
            paths,
            np.asarray(grp["p_star"]),
            np.asarray(grp["label"]),
            np.asarray(grp["index"]),
            time=np.arange(paths.shape[0]),
            stop_index=es,
            max_paths=3,
        )
        frac = np.asarray(grp["zigzag_fraction"])
        ax.set_title(f"{g}: {frac.mean():.0%} zig-zag ({len(frac)} seeds)", fontsize=10)
    axes[0].legend(loc="upper left", fontsize=7)
    fig.colorbar(sc, ax=axes, label=f"record (every {stride} updates)")
    out.append(save_figure(fig, out_dir, "gaussian_simplex_paths"))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for g in results["groups"]:
        grp = results["groups"][g]
        d = np.asarray(grp["mean_distance_p_star"])
        axes[0].plot(np.arange(len(d)) * stride, d, label=g)
        axes[1].plot(np.arange(len(d)) * stride, np.asarray(grp["mean_distance_label"]), label=g)
    for ax, what in zip(axes, ("‖π − p*‖", "‖π − e_y‖"), strict=True):
        ax.axvline(es * stride, color="gray", ls="--", lw=0.8, label="early stop")
        ax.set_xlabel("update (seed 0)")
        ax.set_ylabel(f"mean {what}")
        ax.legend()
    out.append(save_figure(fig, out_dir, "gaussian_distances"))

    out.append(_gaussian_targets(results, out_dir))
    out.append(_gaussian_update_picture(results, out_dir))
    return out


def _gaussian_targets(results: dict[str, Any], out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    scatter, table = results["scatter"], results["table"]
    bayes = np.asarray(results["bayes_test_accuracy"])  # per seed: each seed draws its own toy
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    ax.scatter(
        np.ravel(scatter["distance"]),
        np.ravel(np.asarray(scatter["accuracy"]) - bayes[:, None]),
        c="tab:blue",
        alpha=0.5,
        label="η·e_y + (1−η)·p* (all seeds)",
    )
    for i, m in enumerate(table):
        gap = np.asarray(table[m]["accuracy"]) - bayes
        ax.scatter(table[m]["distance"], gap, marker="2", s=160, lw=2, color=f"C{i + 1}", label=m)
    ax.set_xlabel("RMS distance of the targets to p*")
    ax.set_ylabel("test accuracy − Bayes accuracy of the seed's draw")
    ax.legend(fontsize=7)
    ax = axes[1]
    names = list(table)
    x = np.arange(len(names))
    ax.bar(
        x - 0.2,
        [table[m]["accuracy_mean"] for m in names],
        0.4,
        yerr=[table[m]["accuracy_std"] for m in names],
        label="ldjax (mean ± std over seeds)",
    )
    ax.bar(x + 0.2, [table[m]["paper"] or np.nan for m in names], 0.4, label="authors' notebook (one run)")
    bayes = float(np.mean(bayes))
    ax.axhline(bayes, color="k", ls=":", lw=0.8, label="Bayes (argmax p*), mean over seeds")
    ax.set_xticks(x, names)
    lo = min(table[m]["accuracy_mean"] for m in names) - 0.03
    ax.set_ylim(lo, max(bayes, *(table[m]["paper"] or 0.0 for m in names)) + 0.02)
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir, "gaussian_targets")


def _gaussian_update_picture(results: dict[str, Any], out_dir: Path) -> Path:
    import matplotlib.pyplot as plt

    pic = results["update_picture"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    ax = axes[0]
    xy = paths_lib.simplex_coordinates(np.asarray(pic["path"]))
    ax.plot(xy[:, 0], xy[:, 1], color="tab:blue", lw=0.6, alpha=0.7, label="updates on other examples")
    start = paths_lib.simplex_coordinates(np.asarray(pic["own_start"]))
    end = paths_lib.simplex_coordinates(np.asarray(pic["own_end"]))
    for a, b in zip(start, end, strict=True):
        ax.annotate("", b, a, arrowprops={"arrowstyle": "->", "color": "red", "lw": 1.2})
    ax.plot([], [], color="red", label="updates on this example")
    for point, marker, size, colour, name in (
        (paths_lib.simplex_coordinates(np.asarray(pic["p_star"])), "*", 170, "red", "p*"),
        (paths_lib.SIMPLEX_CORNERS[pic["label"]], "s", 85, "orange", "label e_y"),
    ):
        ax.scatter(*point, marker=marker, s=size, c=colour, edgecolors="k", zorder=5, label=name)
    ax.plot(*np.vstack([paths_lib.SIMPLEX_CORNERS, paths_lib.SIMPLEX_CORNERS[:1]]).T, color="k", lw=0.8)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"hard example #{pic['example']} (seed 0), every update")
    ax = axes[1]
    t = np.arange(len(pic["own_p_star"])) * pic["stride"]
    ax.plot(t, pic["own_p_star"], color="red", label="own updates: Δ‖π − p*‖")
    ax.plot(t, pic["other_p_star"], color="tab:blue", label="other updates: Δ‖π − p*‖")
    ax.plot(t, pic["own_label"], color="red", ls="--", label="own updates: Δ‖π − e_y‖")
    ax.plot(t, pic["other_label"], color="tab:blue", ls="--", label="other updates: Δ‖π − e_y‖")
    ax.axvline(pic["t_min"], color="gray", lw=0.8, ls=":", label="closest to p*")
    ax.set_xlabel("update")
    ax.set_ylabel("running sum of distance changes")
    ax.legend(fontsize=7)
    return save_figure(fig, out_dir, "gaussian_update_picture")


def cifar3_figures(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Simplex paths of seed 0, the two moves of the zig-zag, and the largest pulls on flipped examples."""
    use_agg()
    epochs = np.asarray(results["record_epochs"])
    best = int(np.argmin(np.abs(epochs - np.asarray(results["best_epoch"])[0])))
    out = [
        cifar3_simplex_figure(results, out_dir, epochs, best),
        cifar3_zigzag_figure(results, out_dir, epochs, best),
    ]
    if results["pull_examples"]:
        out.append(cifar3_pull_figure(results, out_dir))
    return out


def cifar3_simplex_figure(results: dict[str, Any], out_dir: Path, epochs: np.ndarray, best: int) -> Path:
    """The easy, medium and flipped examples' paths on the simplex (seed 0), marked at record ``best``."""
    import matplotlib.pyplot as plt

    classes = results["classes"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    sc = None
    for ax, g in zip(axes, ("easy", "medium", "flipped"), strict=True):
        grp = results["groups"][g]
        if len(grp["ids"]) == 0:
            ax.axis("off")
            continue
        sc = simplex_paths(
            ax,
            np.asarray(grp["paths"]),
            np.asarray(grp["p_star"]),
            np.asarray(grp["label"]),
            np.asarray(grp["ids"]),
            time=epochs,
            stop_index=best,
            class_names=classes,
            stop_label="best val",
            p_star_label="p* (CIFAR-10H)",
        )
        ax.set_title(f"{g} (IDs = CIFAR-10 test index; seed 0)")
    axes[0].legend(loc="upper left", fontsize=7)
    if sc is not None:
        fig.colorbar(sc, ax=axes, label="epoch")
    return save_figure(fig, out_dir, "cifar3_simplex_paths")


def cifar3_zigzag_figure(results: dict[str, Any], out_dir: Path, epochs: np.ndarray, best: int) -> Path:
    """The mean distance to p* of flipped and clean examples over epochs, and each example's two moves."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(epochs, np.asarray(results["flipped_mean_distance_p_star"]), label="flipped")
    ax[0].plot(epochs, np.asarray(results["clean_mean_distance_p_star"]), label="clean")
    ax[0].axhline(results["flipped_label_distance_p_star"], color="C0", ls=":", label="‖e_y − p*‖ (flipped)")
    ax[0].axvline(epochs[best], color="gray", ls="--", label="best val")
    ax[0].set_xlabel("epoch (seed 0)")
    ax[0].set_ylabel("mean ‖π − p*‖")
    ax[0].legend(fontsize=7)
    margin = results["zigzag_margin"]
    ax[1].scatter(results["clean_to_p_star"], results["clean_to_label"], s=4, alpha=0.4, label="clean")
    ax[1].scatter(results["flipped_to_p_star"], results["flipped_to_label"], s=6, alpha=0.7, label="flipped")
    ax[1].axvline(margin, color="k", lw=0.6, ls=":")
    ax[1].axhline(margin, color="k", lw=0.6, ls=":", label=f"margin {margin:g}")
    ax[1].set_xlabel("first move towards p*: d*(0) − d*(t_min)")
    ax[1].set_ylabel("then towards e_y: d_y(t_min) − d_y(end)")
    ax[1].legend(fontsize=7)
    return save_figure(fig, out_dir, "cifar3_zigzag")


def cifar3_pull_figure(results: dict[str, Any], out_dir: Path) -> Path:
    """The largest pulls towards p* (and away) on flipped examples at their turning points (seed 0)."""
    import matplotlib.pyplot as plt

    classes = results["classes"]
    examples = results["pull_examples"]
    cols = 1 + len(examples[0]["top"]) + len(examples[0]["away"])
    fig, axes = plt.subplots(len(examples), cols, figsize=(1.5 * cols, 2.5 * len(examples)), squeeze=False)
    for row, pull in zip(axes, examples, strict=True):
        row[0].imshow(np.asarray(pull["observed_image"], np.uint8))
        row[0].set_title(
            f"#{pull['observed_id']} epoch {pull['epoch']:.1f}\nlabel {classes[pull['observed_label']]}\n"
            f"true {classes[pull['observed_true']]}",
            fontsize=6,
            color="red",
        )
        i = 1
        for key, what in (("top", "towards p*"), ("away", "away")):
            for j in range(len(pull[key])):
                row[i].imshow(np.asarray(pull[f"{key}_images"][j], np.uint8))
                row[i].set_title(
                    f"#{int(pull[f'{key}_ids'][j])} {what}\nlabel {classes[int(pull[f'{key}_labels'][j])]}"
                    f"\n{pull[f'{key}_pull'][j]:+.1e}",
                    fontsize=6,
                )
                i += 1
        for a in row:
            a.axis("off")
    fig.suptitle("largest pulls on flipped examples at their turning points (seed 0)", fontsize=8)
    return save_figure(fig, out_dir, "cifar3_pull")


def filter_kd_figures(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Test accuracy and ECE of every method against label noise (mean ± std over seeds)."""
    use_agg()
    import matplotlib.pyplot as plt

    if not results.get("table"):
        return []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    noises = results["noises"]
    for row, metric in enumerate(("accuracy", "ece")):
        ax = axes[row]
        for i, m in enumerate(results["methods"]):
            vals = [np.asarray(results["table"][f"{nz:g}"][m][metric]) for nz in noises]
            ax.errorbar(
                np.asarray(noises) + 0.004 * (i - 1.5),
                [v.mean() for v in vals],
                yerr=[v.std(ddof=1) if len(v) > 1 else 0.0 for v in vals],
                marker="o",
                capsize=3,
                label=m,
            )
        ax.set_xlabel("label noise")
        ax.set_ylabel(f"test {metric}")
        ax.set_title("noisy CIFAR-3")
        ax.legend(fontsize=7)
    out = [save_figure(fig, out_dir, "filterkd_noise")]
    return out
