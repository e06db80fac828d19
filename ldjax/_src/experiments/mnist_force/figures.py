"""The figures of :mod:`ldjax._src.experiments.mnist_force` (matplotlib is imported inside each function).

Each function draws one figure from the ``results`` dict of ``mnist_force.run`` and saves it as PNG and
PDF in ``out_dir`` (:func:`ldjax._src.experiments.common.save_figure`), returning the PNG's path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ldjax._src.experiments import common

NUM_CLASSES = 10


def decomposition(results: dict[str, Any], cp: dict[str, Any], out_dir: Path) -> Path:
    """(a) x_u and G, then for each shown probe its image, K(x_o, x_u), A(x_o) and Δ log π at one checkpoint."""
    import matplotlib.pyplot as plt

    u = int(results["update_class"])
    classes = np.arange(NUM_CLASSES)
    shown = cp["shown"]
    n_shown = len(results["probe_classes"])
    fig, axes = plt.subplots(n_shown + 1, 4, figsize=(15, 3.2 * (n_shown + 1)))
    fig.subplots_adjust(hspace=0.45, wspace=0.3)
    axes[0, 0].imshow(np.asarray(results["update_image"]), cmap="gray")
    axes[0, 0].set_title(f"x_u (label {u})")
    axes[0, 1].bar(classes, np.asarray(shown["g"]))
    axes[0, 1].set_title("G(x_u) = ∂L/∂z")
    axes[0, 1].set_xticks(classes)
    for ax in axes[0, 2:]:
        ax.axis("off")
    for row, cls in enumerate(results["probe_classes"], start=1):
        axes[row, 0].imshow(np.asarray(results["shown_probe_images"][row - 1]), cmap="gray")
        axes[row, 0].set_title(f"probe x_o (label {int(cls)})")
        for col, (name, mat) in enumerate((("K(x_o, x_u)", shown["k"]), ("A(x_o)", shown["a"])), start=1):
            mat = np.asarray(mat[row - 1])
            scale = float(np.abs(mat).max()) or 1.0
            image = axes[row, col].imshow(mat, cmap="RdBu_r", vmin=-scale, vmax=scale)
            fig.colorbar(image, ax=axes[row, col], shrink=0.8)
            axes[row, col].set_title(name)
            axes[row, col].set_xticks(classes)
            axes[row, col].set_yticks(classes)
        ax = axes[row, 3]
        ax.bar(classes - 0.2, np.asarray(shown["predicted"][row - 1]), 0.4, label="predicted −ηAKG")
        ax.bar(classes + 0.2, np.asarray(shown["actual"][row - 1]), 0.4, label="actual")
        ax.axhline(0, color="k", lw=0.5)
        ax.set_xticks(classes)
        ax.set_title("Δ log π(x_o)")
        if row == 1:
            ax.legend(fontsize=8)
    fig.suptitle(f"One SGD step on a {u} at epoch {cp['epoch']} — {results['dataset']}", fontsize=10, y=0.93)
    for ax in axes[:, 0]:
        ax.axis("off")
    return common.save_figure(fig, out_dir, f"mnist_a_decomposition_epoch{cp['epoch']}")


def scatter(results: dict[str, Any], out_dir: Path) -> Path:
    """(b) predicted against actual Δ log π on every probe and class, one panel per checkpoint."""
    import matplotlib.pyplot as plt

    cps = results["checkpoints"]
    fig, axes = plt.subplots(1, len(cps), figsize=(4.5 * len(cps), 4), layout="constrained", squeeze=False)
    for ax, cp in zip(axes[0], cps, strict=True):
        pred, act = np.ravel(cp["predicted"]), np.ravel(cp["actual"])
        ax.scatter(pred, act, s=2, alpha=0.3, rasterized=True)
        lim = [float(min(pred.min(), act.min())), float(max(pred.max(), act.max()))]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("predicted Δ log π")
        ax.set_ylabel("actual Δ log π")
        ax.set_title(f"epoch {cp['epoch']}: r = {cp['correlation']:.4f}")
    fig.suptitle(
        f"{results['n_probes']} probes x 10 classes, one step on a {results['update_class']}", fontsize=10
    )
    return common.save_figure(fig, out_dir, "mnist_b_scatter")


def by_class(results: dict[str, Any], out_dir: Path) -> Path:
    """(c) mean Δ log π(true class) and Δ log π(update class) by the probe's class, per checkpoint."""
    import matplotlib.pyplot as plt

    u = int(results["update_class"])
    classes = np.arange(NUM_CLASSES)
    cps = results["checkpoints"]
    fig, axes = plt.subplots(2, len(cps), figsize=(4.5 * len(cps), 7), layout="constrained", squeeze=False)
    for col, cp in enumerate(cps):
        panels = (
            ("mean_true_class_change", "mean Δ log π(true class)"),
            ("mean_update_class_change_by_class", f"mean Δ log π({u})"),
        )
        for row, (key, title) in enumerate(panels):
            ax = axes[row, col]
            ax.bar(classes - 0.2, cp[f"{key}_predicted"], 0.4, label="predicted")
            ax.bar(classes + 0.2, cp[f"{key}_actual"], 0.4, label="actual")
            ax.axhline(0, color="k", lw=0.5)
            ax.set_xticks(classes)
            ax.set_xlabel("class of the probe")
            ax.set_title(f"epoch {cp['epoch']}: {title}", fontsize=9)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle(f"one step on a {u}: which digits are pulled up, which pushed down", fontsize=10)
    return common.save_figure(fig, out_dir, "mnist_c_by_class")


def _map_panel(fig: Any, ax: Any, mat: np.ndarray, title: str) -> None:
    classes = np.arange(NUM_CLASSES)
    scale = float(np.nanmax(np.abs(mat))) or 1.0
    image = ax.imshow(mat, cmap="RdBu_r", vmin=-scale, vmax=scale)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("observing class c'")
    ax.set_ylabel("updating class c")
    ax.set_xticks(classes)
    ax.set_yticks(classes)


def force_maps(results: dict[str, Any], out_dir: Path) -> Path:
    """(d) the class force map F[c, c'] = mean Δ log π(c) on held-out c' after learning c, at the last
    checkpoint: each seed (top), the mean over seeds and its row for learning 4s with one dot per seed (bottom)."""
    import matplotlib.pyplot as plt

    classes = np.arange(NUM_CLASSES)
    per_seed = results["per_seed"]
    epoch = results["checkpoint_epochs"][-1]
    cols = max(len(per_seed), 2)
    fig, axes = plt.subplots(2, cols, figsize=(4.6 * cols, 8), layout="constrained", squeeze=False)
    maps = np.stack([np.asarray(s["force_map_towards_updating_class"]) for s in per_seed])
    for col, (s, mat) in enumerate(zip(per_seed, maps, strict=True)):
        _map_panel(fig, axes[0, col], mat, f"seed {s['seed']}")
    for ax in axes[0, len(per_seed) :]:
        ax.axis("off")
    _map_panel(fig, axes[1, 0], maps.mean(axis=0), f"mean over {len(per_seed)} seeds")
    ax = axes[1, 1]
    ax.bar(classes, maps.mean(axis=0)[4], color=["C3" if c == 9 else "C0" for c in classes])
    for row in maps:
        ax.plot(classes, row[4], "k.", ms=5)
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(classes)
    ax.set_xlabel("observing class c'")
    ax.set_ylabel("Δ log π(4)")
    ax.set_title("learning 4s: the pull on each digit (dots: seeds)", fontsize=9)
    for ax in axes[1, 2:]:
        ax.axis("off")
    fig.suptitle(
        f"class force map at epoch {epoch}: mean Δ log π(c) on held-out c' after plain-SGD steps of "
        f"η = {results['step_learning_rate']} on {results['force_map_updates_per_class']} training images of c "
        f"— {results['model']}",
        fontsize=10,
    )
    return common.save_figure(fig, out_dir, "mnist_d_force_map")


def accumulation(results: dict[str, Any], out_dir: Path) -> Path:
    """Per-epoch sums of the predicted forces against the actual change, their running sum and a scatter."""
    import matplotlib.pyplot as plt

    acc = results["accumulation"]
    pred_mean, act_mean = (
        np.asarray(acc["mean_true_class_change_predicted"]),
        np.asarray(acc["mean_true_class_change_actual"]),
    )
    epochs = np.arange(1, len(pred_mean) + 1)
    fig, axes = plt.subplots(1, 4, figsize=(18.5, 4), layout="constrained")
    axes[0].plot(epochs, pred_mean, "o-", label="Σ predicted forces over the epoch")
    axes[0].plot(epochs, act_mean, "s--", label="actual change over the epoch")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("mean Δ log π(true class)")
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].legend(fontsize=8)
    axes[1].plot(np.r_[0, epochs], np.r_[0, np.cumsum(pred_mean)], "o-", label="accumulated predicted")
    axes[1].plot(np.r_[0, epochs], np.r_[0, np.cumsum(act_mean)], "s--", label="actual")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("log π(true class) − initial, mean")
    axes[1].legend(fontsize=8)
    pred_all, act_all = (
        np.ravel(acc["true_class_change_predicted"]),
        np.ravel(acc["true_class_change_actual"]),
    )
    axes[2].scatter(pred_all, act_all, s=2, alpha=0.3, rasterized=True)
    lim = [float(min(pred_all.min(), act_all.min())), float(max(pred_all.max(), act_all.max()))]
    axes[2].plot(lim, lim, "k--", lw=0.8)
    axes[2].set_xlabel("Σ predicted over an epoch")
    axes[2].set_ylabel("actual over the epoch")
    axes[2].set_title(f"per probe and epoch; min r = {min(acc['epoch_correlation']):.4f}")
    nines = np.stack(
        [np.asarray(s["mean_distribution_by_epoch"])[:, 9] for s in results["per_seed"]]
    )  # [S, e+1, 10]
    for c in range(NUM_CLASSES):
        if c != 9:
            style = {"color": "C3", "lw": 2, "label": "π̄(4 | 9s)"} if c == 4 else {"color": "0.6", "lw": 0.8}
            axes[3].plot(np.r_[0, epochs], nines[:, :, c].mean(axis=0), **style)
    axes[3].plot([], [], color="0.6", lw=0.8, label="other wrong digits")
    axes[3].set_xlabel("epoch")
    axes[3].set_ylabel("mean π on held-out 9s (mean over seeds)")
    axes[3].set_title("the pull of the 4s accumulates", fontsize=9)
    axes[3].legend(fontsize=8)
    fig.suptitle(
        f"accumulated forces on {results['n_accumulate']} probes — {results['dataset']}", fontsize=10
    )
    return common.save_figure(fig, out_dir, "mnist_accumulation")


def final_distribution(results: dict[str, Any], out_dir: Path) -> Path:
    """The mean predicted distribution of the probes of each class after training."""
    import matplotlib.pyplot as plt

    classes = np.arange(NUM_CLASSES)
    fig, ax = plt.subplots(figsize=(5, 4.3), layout="constrained")
    image = ax.imshow(np.asarray(results["final_mean_distribution_by_class"]), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(classes)
    ax.set_yticks(classes)
    ax.set_title(f"mean π on probes after training (acc {results['final_probe_accuracy']:.3f})", fontsize=9)
    return common.save_figure(fig, out_dir, "mnist_final_distribution")
