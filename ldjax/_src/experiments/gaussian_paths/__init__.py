"""Learning paths on the 3-class Gaussian toy with exact p*: which targets generalise, and the zig-zag.

Reproduces the toy of Ren, Guo & Sutherland, "Better Supervisory Signals by Observing Learning Paths"
(ICLR 2022; the authors' notebooks ``ToyGaussian_Part1_noisylabel`` and ``Part2_LearningDynamics``):
K = 3, d = 30, class means in {−1, 0, 1}^30, x ~ N(μ_y, 6·I), p*(x) = softmax_k(−‖x − μ_k‖²/12);
10⁵ samples split 5% / 5% / 90% into train / validation / test; an MLP 30-128-128-3 (ReLU) trained by
SGD (learning rate 5e-4, momentum 0.9, batch 32, 100 epochs; the authors' notebook settings of
Part 1). Every model is read at its epoch of best validation accuracy (validation labels are the
generating classes, like the training labels), as in the authors' notebook.

**Targets and generalisation** (the paper's Hypothesis 1): a target closer to p* gives better
generalisation. Per seed, from one initialisation and one data order shared by every method:
one-hot training (OHT), label smoothing (LS, 0.05), training on p* (GT), KD from the final OHT
teacher, ESKD from the teacher at its best-validation epoch, Filter-KD from the teacher's table (each
example's prediction at the update that visits it, averaged ``q ← 0.95·q + 0.05·softmax(z/τ)``, read
at the teacher's best-validation epoch, as in the authors' code), and noisy targets
``η·e_y + (1 − η)·p*`` for a grid of η (η = 1 is OHT, η = 0 is GT; the authors drew 120 random η).
Claimed: the order of the paper's five methods (OHT, LS, GT, KD, ESKD) by test accuracy agrees with
the order of their targets' distance to p* (Spearman; the authors' one run gives 0.7), and over the
noisy targets accuracy falls as the distance grows (Spearman; the authors: −0.93 over 120 runs). The
table against the authors' single run is kept as information, and so is Filter-KD, which the authors
did not run on the toy: with the teacher's best epoch early (about epoch 10-25 here), the table still
gives about half its weight to the first epoch's predictions.

**The zig-zag**: training samples are ranked by ‖e_y − p*‖ (largest first): hard = ranks 50-150,
medium = 800-900, easy = 3000-3100 of 5,000 (the authors' choice); their softmax is recorded after
EVERY update of one-hot training (inside the compiled loop). A path zig-zags when it first moves
towards p* and then towards its label, each by ``zigzag_margin`` (:func:`ldjax.paths.zigzag`);
claimed for hard samples, with easy samples (label ≈ p*) as the control. The per-update picture
splits one hard example's path into the updates whose minibatch holds it and those on other examples.

Differences from the authors: the data draw varies with the seed (``data_seed`` is the base of the
draws; the authors used one draw, whose Bayes accuracy is not reported); the noisy targets lie on a
grid of η instead of 120 random draws (``FULL`` has 120 runs); the learning paths use the Part 1
settings (the authors' Part 2 used batch 10, learning rate 3e-4 and 200 epochs); distances to p* are
root-mean-square over the training set (the authors' Frobenius norm divided by √n).

Quick settings (the defaults): 3 seeds, 8 methods per seed, 3 seeds of every-update paths: 112 s of
CPU time (224 s wall on 2 cores shared at load ≈ 10; about 1-2 minutes on 2 idle cores). ``FULL``: 10 seeds and a 12-point η grid (120 noisy-target runs):
about 3 minutes on one GPU.

Submodules: :mod:`~ldjax._src.experiments.gaussian_paths.toy` (``Config``, ``FULL``, the draws and the
groups), :mod:`~ldjax._src.experiments.gaussian_paths.training` (the MLP and the members' runs),
:mod:`~ldjax._src.experiments.gaussian_paths.targets` (the methods and noisy targets),
:mod:`~ldjax._src.experiments.gaussian_paths.zigzag` (the learning paths) and
:mod:`~ldjax._src.experiments.gaussian_paths.claims` (the rows).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from ldjax._src.experiments import common
from ldjax._src.experiments import path_figures
from ldjax._src.experiments.gaussian_paths.claims import fidelity
from ldjax._src.experiments.gaussian_paths.claims import method_order_claim
from ldjax._src.experiments.gaussian_paths.claims import method_spread_note
from ldjax._src.experiments.gaussian_paths.claims import noisy_targets_claim
from ldjax._src.experiments.gaussian_paths.targets import compare_targets
from ldjax._src.experiments.gaussian_paths.targets import method_table
from ldjax._src.experiments.gaussian_paths.toy import FULL
from ldjax._src.experiments.gaussian_paths.toy import METHODS
from ldjax._src.experiments.gaussian_paths.toy import TINY
from ldjax._src.experiments.gaussian_paths.toy import Config
from ldjax._src.experiments.gaussian_paths.toy import mix_name
from ldjax._src.experiments.gaussian_paths.toy import seed_data
from ldjax._src.experiments.gaussian_paths.zigzag import group_paths
from ldjax._src.experiments.gaussian_paths.zigzag import record_paths
from ldjax._src.experiments.gaussian_paths.zigzag import update_picture

__all__ = (
    "FULL",
    "TINY",
    "METHODS",
    "Config",
    "fidelity",
    "main",
    "method_order_claim",
    "method_spread_note",
    "noisy_targets_claim",
    "plot",
    "record_paths",
    "run",
    "seed_data",
)


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Targets vs generalisation over seeds and methods, and the learning paths of easy / medium / hard samples."""
    del data_dir
    seeds = list(range(config.seed, config.seed + config.num_seeds))
    if config.path_seeds > config.num_seeds:
        raise ValueError(f"path_seeds={config.path_seeds} must be <= num_seeds={config.num_seeds}")
    datas = [seed_data(config, s) for s in seeds]
    per_method, teachers = compare_targets(config, datas, seeds, progress=progress)
    methods = tuple(m for m in config.methods if m in per_method)
    path_seeds = seeds[: config.path_seeds]
    paths, idx, order = record_paths(config, datas[: config.path_seeds], path_seeds, progress=progress)
    split0 = datas[0].split
    per_epoch = split0.train.x.shape[0] // config.batch_size
    es_steps = teachers.best[: config.path_seeds] * per_epoch  # the paths replay the teachers' runs
    scatter = ["OHT", *(mix_name(e) for e in sorted(config.mixes, reverse=True)), "GT"]
    scatter = [name for name in scatter if name in per_method]
    return {
        "dataset": (
            f"synthetic 3-class Gaussian toy (d=30, variance 6; one draw per seed from data_seed "
            f"{config.data_seed}): {split0.train.x.shape[0]} train / {split0.val.x.shape[0]} val / "
            f"{split0.test.x.shape[0]} test"
        ),
        "seeds": seeds,
        "bayes_test_accuracy": np.array(
            [
                np.mean(np.argmax(np.asarray(d.split.test.p_star), -1) == np.asarray(d.split.test.y))
                for d in datas
            ]
        ),
        "label_agrees_with_argmax_p_star": float(
            np.mean([np.mean(np.argmax(np.asarray(d.split.train.p_star), -1) == d.labels) for d in datas])
        ),
        "steps_per_epoch": per_epoch,
        "early_stop_step": int(es_steps[0]),
        "plot_every": config.plot_every,
        "val_accuracy_seed0": teachers.val_accuracy[:, 0],
        "table": method_table(per_method, methods),
        "scatter": {
            "names": scatter,
            "mix": np.array([1.0 if n == "OHT" else 0.0 if n == "GT" else float(n[3:]) for n in scatter]),
            "accuracy": np.stack([per_method[n]["accuracy"] for n in scatter], axis=1),
            "ece": np.stack([per_method[n]["ece"] for n in scatter], axis=1),
            "distance": np.stack([per_method[n]["distance"] for n in scatter], axis=1),
        },
        "groups": group_paths(config, paths, idx, datas[: config.path_seeds], es_steps),
        "update_picture": update_picture(config, paths, order, datas[0]),
        "zigzag_margin": config.zigzag_margin,
    }


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Simplex paths, distances over time, accuracy against target distance, and the per-update picture."""
    return path_figures.gaussian_figures(results, out_dir)


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
