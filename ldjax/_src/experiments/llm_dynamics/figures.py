"""The figures of the LLM fine-tuning experiment (:mod:`ldjax._src.experiments.llm_dynamics`): probe curves, the
force analysis of the first DPO update, the influence map and the generations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ldjax._src.data.language import GENERATION_CLASSES
from ldjax._src.data.language import PROBE_TYPES
from ldjax._src.experiments import common
from ldjax._src.experiments.llm_dynamics.report import PROBES
from ldjax._src.experiments.llm_dynamics.report import curve
from ldjax._src.experiments.llm_dynamics.report import force_check_values

_COLORS = {
    "sft": "C0",
    "extend_sft": "C5",
    "dpo": "C1",
    "dpo_base": "C2",
    "ipo": "C3",
    "extend": "C4",
    "onpolicy": "C6",
}


def _band(ax: Any, x: np.ndarray, values: np.ndarray, color: str, label: str) -> None:
    ax.plot(x, values.mean(1), color=color, label=label)
    if values.shape[1] > 1:
        ax.fill_between(x, values.min(1), values.max(1), color=color, alpha=0.15, lw=0)


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Probe curves, force analysis, squeezing, influence map and generations; returns the PNG paths."""
    common.use_agg()
    import matplotlib.pyplot as plt

    every = results["record_every"]
    paths = []
    fig, axes = plt.subplots(3, 4, figsize=(17, 11))
    for ax, probe in zip(axes.ravel(), PROBES, strict=False):
        for phase in results["phases"]:
            c = curve(results, phase, probe)
            _band(ax, np.arange(len(c)) * every, c, _COLORS[phase], phase)
        ax.set_title(probe)
        ax.set_xlabel("updates")
    ax = axes.ravel()[len(PROBES)]
    for phase in ("dpo", "dpo_base", "extend", "onpolicy", "ipo"):
        c = np.asarray(results[f"{phase}_argmax_prob_valley"], float)
        _band(ax, np.arange(len(c)) * every, c, _COLORS[phase], phase)
    ax.set_title("argmax prob at y⁻ valley positions")
    axes.ravel()[0].set_ylabel("summed log π (mean over prompts; band: seeds)")
    axes.ravel()[0].legend(fontsize=7)
    fig.tight_layout()
    paths.append(common.save_figure(fig, out_dir, "llm_probes"))
    paths.append(_force_figure(results, out_dir, plt))
    paths.append(_influence_figure(results, out_dir, plt))
    paths.append(_generation_figure(results, out_dir, plt))
    return paths


def _force_figure(results: dict[str, Any], out_dir: Path, plt: Any) -> Path:
    force = results["force"]
    values = force_check_values(force)
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.5))
    for ax, level in zip(axes[:2], ("token", "sequence"), strict=True):
        pred = np.asarray(force[f"heldout_{level}_predicted"], float).ravel()
        act = np.asarray(force[f"heldout_{level}_actual"], float).ravel()
        ax.scatter(act, pred, s=4, alpha=0.5)
        lim = [min(act.min(), pred.min()), max(act.max(), pred.max())]
        ax.plot(lim, lim, "k--", lw=0.7)
        ax.set_xlabel("actual Δ log π")
        ax.set_ylabel("predicted (first order)")
        ax.set_title(
            f"first Adam step of DPO, held-out, per {level}: r ≥ {min(values[f'heldout_{level}_r']):.4f}"
        )
    split = np.asarray(force["split"], float).mean(0)
    x = np.arange(len(PROBE_TYPES))
    ax = axes[2]
    for offset, label, bars in zip((-0.25, 0.0, 0.25), ("y⁺ half", "y⁻ half", "whole"), split, strict=True):
        ax.bar(x + offset, bars, width=0.25, label=label)
    ax.set_xticks(x, PROBE_TYPES, rotation=35, ha="right")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title("first DPO minibatch, −η·A·K·G split into its y⁺ and y⁻ halves (training probes)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return common.save_figure(fig, out_dir, "llm_force")


def _influence_figure(results: dict[str, Any], out_dir: Path, plt: Any) -> Path:
    raw = np.asarray(results["influence"], float)  # [S, trained, observed]
    diagonal = np.abs(np.diagonal(raw, axis1=1, axis2=2))[:, :, None]
    grid = (raw / np.maximum(diagonal, 1e-30)).mean(0)  # per nat of the trained response's own change
    fig, ax = plt.subplots(figsize=(8, 6.5))
    bound = float(np.abs(grid).max()) or 1.0
    image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound)
    ax.set_xticks(np.arange(len(PROBE_TYPES)), PROBE_TYPES, rotation=40, ha="right")
    ax.set_yticks(np.arange(len(PROBE_TYPES)), PROBE_TYPES)
    ax.set_xlabel("observed probe type")
    ax.set_ylabel("trained response type (SFT)")
    ax.set_title(
        "accumulated influence of one SFT epoch at the pre-trained model\n(Δ log π of the observed type per nat of the trained type's own change)"
    )
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return common.save_figure(fig, out_dir, "llm_influence")


def _generation_figure(results: dict[str, Any], out_dir: Path, plt: Any) -> Path:
    gen = results["generation"]
    names = list(gen)
    kinds = (*GENERATION_CLASSES, "repeater")
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.5))
    width = 0.8 / len(kinds)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        for k, kind in enumerate(kinds):
            heights = [float(np.mean(gen[n][split][kind])) for n in names]
            ax.bar(
                np.arange(len(names)) + width * (k - (len(kinds) - 1) / 2), heights, width=width, label=kind
            )
        ax.set_xticks(np.arange(len(names)), names, rotation=20)
        ax.set_title(f"greedy answers to {split} prompts (mean over seeds)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return common.save_figure(fig, out_dir, "llm_generations")
