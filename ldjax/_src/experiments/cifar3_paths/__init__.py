"""Zig-zag learning paths of mislabelled examples on noisy CIFAR-3, with human p* from CIFAR-10H.

Ren, Guo & Sutherland, "Better supervisory signals by observing learning paths" (ICLR 2022): an
example whose label disagrees with its true distribution p* is first pulled by similar examples
TOWARDS p*, and only later memorised towards its label. Here: the CIFAR-10 test images of three
classes (default airplane, bird, ship), p* = CIFAR-10H renormalised over them, and symmetric label
noise that really changes each flipped label (exactly ``noise · n`` of them). A GroupNorm ResNet is
trained with one-hot (noisy) labels from ``num_seeds`` initialisations and data orders (one
compiled program, :func:`~ldjax._src.experiments.fitting.fit`); every training example's softmax is
recorded every ``1 / records_per_epoch`` epoch inside the compiled loop. Claimed, over seeds:

* flipped examples zig-zag: their path moves towards p* and THEN towards their (wrong) label, each
  by ``zigzag_margin`` (:func:`ldjax.paths.zigzag`), more often than clean examples do;
* at the epoch of best validation accuracy, flipped examples' predictions are much closer to p* than
  their labels;
* for several flipped examples, each at its own turning point (closest to p*), the training examples
  pulling hardest towards p* (the one-step force −η·A(x_o)·K(x_o, x_j)·G(x_j)/B of example j in a
  minibatch, plain-SGD part of the update, projected on the direction to p*) are mostly labelled
  with p*'s top class.

Training: Adam (lr 1e-3, L2 weight decay 5e-4 added to the gradient), batch 50, no augmentation in
the quick settings, so the network memorises the flipped labels within the run; the authors trained
a ResNet-18 with SGD (lr 0.1, momentum 0.9, weight decay 5e-4, cosine schedule), batch 128, random
crops and flips, on all of CIFAR-10 (``FULL`` is closer: ResNet-18 layout, augmentation, 2,000 of the
3,000 images; GroupNorm instead of BatchNorm so that one example's logits never depend on the batch).

Quick settings (the defaults): 3 seeds, ResNet 8-16-32, 500 training images, 30 epochs, a record
per epoch: 252 s of CPU time (647 s wall on 2 cores shared at load ≈ 10), so at least 2 minutes
on 2 idle cores. ``FULL``: 3 seeds, ResNet-18 layout (64-128-256-512,
two blocks per stage) with crops and flips, 2,000 training images, 60 epochs, two records per epoch:
sized for one GPU in under 10 minutes (not run on a GPU yet).

Submodules: :mod:`~ldjax._src.experiments.cifar3_paths.config` (``Config``, ``FULL``),
:mod:`~ldjax._src.experiments.cifar3_paths.data` (the noisy splits),
:mod:`~ldjax._src.experiments.cifar3_paths.training` (the ResNet and its run),
:mod:`~ldjax._src.experiments.cifar3_paths.analysis` (the statistics of a run) and
:mod:`~ldjax._src.experiments.cifar3_paths.claims` (the rows).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from ldjax._src.experiments import common
from ldjax._src.experiments import learning_paths as lp
from ldjax._src.experiments import path_figures
from ldjax._src.experiments.cifar3_paths.analysis import gallery
from ldjax._src.experiments.cifar3_paths.analysis import observed_examples
from ldjax._src.experiments.cifar3_paths.analysis import path_group
from ldjax._src.experiments.cifar3_paths.analysis import seed_summary
from ldjax._src.experiments.cifar3_paths.analysis import test_scores
from ldjax._src.experiments.cifar3_paths.claims import fidelity
from ldjax._src.experiments.cifar3_paths.claims import pull_claim
from ldjax._src.experiments.cifar3_paths.config import FULL
from ldjax._src.experiments.cifar3_paths.config import TINY
from ldjax._src.experiments.cifar3_paths.config import Config
from ldjax._src.experiments.cifar3_paths.data import make_splits
from ldjax._src.experiments.cifar3_paths.training import train_paths
from ldjax._src.experiments.fitting import predict_fn

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "observed_examples", "plot", "pull_claim", "run")


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train on noisy CIFAR-3 over seeds, record every example's path, summarise the zig-zag and the pulls."""
    splits = make_splits(config, data_dir)
    tr, va, te = splits.train, splits.val, splits.test
    seeds = list(range(config.seed, config.seed + config.num_seeds))
    apply_fn, run_ = train_paths(config, splits, seeds, progress=progress)
    pull = lp.pull_fn(apply_fn, learning_rate=config.learning_rate, batch_size=config.batch_size)
    per_seed = [seed_summary(config, run_, splits, m, pull) for m in range(len(seeds))]
    test_acc, test_ece = test_scores(predict_fn(apply_fn, chunk=100), run_, te)
    probs0, zz0 = per_seed[0].pop("probs"), per_seed[0].pop("zigzag")
    for s in per_seed[1:]:
        del s["probs"], s["zigzag"]
    s0 = per_seed[0]
    k = len(config.classes)
    clean = np.flatnonzero(~tr.flipped)
    label_gap = np.linalg.norm(np.eye(k)[tr.y] - tr.p_star, axis=-1)
    order = clean[np.argsort(label_gap[clean], kind="stable")]
    rec_epochs = np.arange(run_.train_logits.shape[0]) / config.records_per_epoch
    stats = (
        "zigzag_flipped",
        "zigzag_clean",
        "early_stop_gain_flipped",
        "pull_label_is_p_star_argmax",
        "train_fit_final",
    )
    return {
        "dataset": f"{splits.name}; {tr.x.shape[0]} train / {va.x.shape[0]} val / {te.x.shape[0]} test",
        "data_files": splits.files,
        "classes": list(config.classes),
        "seeds": seeds,
        "record_epochs": rec_epochs,
        "val_accuracy": run_.val_accuracy,
        "best_epoch": rec_epochs[run_.best],
        "test_accuracy": test_acc,
        "test_ece": test_ece,
        "num_flipped": int(tr.flipped.sum()),
        "zigzag_margin": config.zigzag_margin,
        "per_seed": {key: np.array([s[key] for s in per_seed]) for key in stats},
        "flipped_turn_epoch": rec_epochs[s0["flipped_turn_record"]],
        "flipped_mean_distance_p_star": s0["flipped_mean_distance_p_star"],
        "clean_mean_distance_p_star": s0["clean_mean_distance_p_star"],
        "flipped_label_distance_p_star": float(label_gap[tr.flipped].mean()),
        "flipped_to_p_star": np.asarray(zz0.to_p_star)[tr.flipped],
        "flipped_to_label": np.asarray(zz0.to_label)[tr.flipped],
        "clean_to_p_star": np.asarray(zz0.to_p_star)[~tr.flipped],
        "clean_to_label": np.asarray(zz0.to_label)[~tr.flipped],
        "groups": {
            "easy": path_group(tr, probs0, order[:3]),
            "medium": path_group(tr, probs0, order[len(order) // 2 : len(order) // 2 + 3]),
            "flipped": path_group(tr, probs0, np.array([p["observed"] for p in s0["pulls"][:3]], dtype=int)),
        },
        "pulls": [s["pulls"] for s in per_seed],
        "pull_examples": gallery(tr, s0["pulls"][:2], rec_epochs),
    }


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Simplex paths of seed 0, the two moves of the zig-zag, and the largest pulls on flipped examples."""
    return path_figures.cifar3_figures(results, out_dir)


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
