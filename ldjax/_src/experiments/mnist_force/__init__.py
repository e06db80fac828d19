"""Learn a 4, watch the other digits move: class-averaged one-step forces and their accumulation on MNIST.

Ren & Sutherland (ICLR 2025, "Learning Dynamics of LLM Finetuning", §2 and Figure 1) illustrate the one-step
decomposition ``Δ log π(x_o) = −η · A(x_o) · K(x_o, x_u) · G(x_u) + O(η²)`` with a LeNet on MNIST: an update
on a 4 pushes every other image's prediction; ``G`` at the 4 says which logits to raise, the empirical NTK
``K`` carries that push to similar-looking digits (9s feel it most, 0s little), ``A`` turns logit changes
into log-probability changes; accumulated over training, the pulls leave held-out 9s with probability on 4
(the heat map of the trained model's mean prediction per class).

Set-up. The authors' network (their notebook ``squeeze_effect.ipynb``, class ``LeNet``): LeNet-5 with tanh,
AVERAGE pooling, dense layers 400-60-42-10 and PyTorch's default initialisation
(:class:`ldjax.models.LeNet5` ``variant="tanh"``; ``model="lenet_relu"`` selects the ReLU / max-pool / 120-84
variant). Trained on a 2,000-image random subset of the MNIST training split, pixels in [0, 1] as the
authors' ``ToTensor`` (``standardise=True`` uses the subset's mean and std instead), SGD with momentum 0.9,
weight decay 5e-4 (PyTorch-style, added to the gradient), batch 64, a cosine learning rate stepped once per
epoch down to 1e-6 (PyTorch's ``CosineAnnealingLR(T_max=epochs, eta_min=1e-6)``). Where this differs from
the authors': their run is 100 epochs at learning rate 1e-3 (``FULL``); the quick run is 10 epochs at 1e-2
(the same sum of learning rates; 10 epochs at 1e-3 leave this network at about 20% probe accuracy). The probes
are a random subset of the official test split (the authors' heat map uses the whole test split: ``FULL``).
Each seed (``seeds``; seed ``seed + i`` draws the subsets, the initialisation and the minibatch order) is
trained with :func:`ldjax.train`.

Analyses (:mod:`ldjax._src.experiments.mnist_force.analysis`):

* the **class force map** ``F[c, c']`` of every seed at the last checkpoint: the predicted change of log π(c)
  on held-out probes of class ``c'``, averaged over single-example plain-SGD updates (η =
  ``step_learning_rate`` = 1e-3) on ``force_map_updates`` different training images of class ``c`` — exactly
  one JVP of the averaged update per class, since the first-order change is linear in the update;
* at an early, a middle and the last checkpoint, ONE plain-SGD update of η on one training 4: predicted (one
  VJP at ``x_u``, one JVP at the probes) against actual Δ log π on every probe; for the first seed, ``A``,
  ``K`` and ``G`` of three shown probes (a 4, a 9, a 0).

Accumulation (first seed): at every update of every epoch, inside the compiled training loop
(:func:`ldjax.train`'s ``accumulate`` hook), the first-order change ``A·J(x_o)·u`` of the actual optimizer
update ``u`` (momentum and weight decay included) is summed on ``n_accumulate`` probes and compared with the
actual change of log π over each epoch. Every seed records its mean prediction per class after every epoch.

Reproduction rows (:func:`fidelity`, :mod:`ldjax._src.experiments.mnist_force.claims`): claims
``mnist.nine_pulled_most``, ``mnist.four_raises_fours`` and ``mnist.pull_accumulates`` (decided over the seeds),
checks ``mnist.one_step_correlation`` and ``mnist.epoch_accumulation``.

Data: MNIST from ``data_dir`` / ``$LDJAX_DATA_DIR`` / the cache (or a download). Only when no data location
was configured does ``dataset="auto"`` fall back to scikit-learn's 1,797 real 8x8 digits (1,000 train / 797
probes), upsampled to 28x28 (bilinear), and say so; ``results["data_files"]`` records the files read.

Quick settings (defaults): 3 seeds, 10 epochs, 1,000 probes, 64 accumulation probes, 150 updates per class
in the force map. ``FULL``: the authors' 100 epochs at 1e-3, the 10,000 test images as probes, 1,000
accumulation probes, 5 seeds — sized for one GPU (not run on a GPU in this version).

Submodules: :mod:`~ldjax._src.experiments.mnist_force.config` (``Config``, ``FULL``, ``TINY``),
:mod:`~ldjax._src.experiments.mnist_force.data`, :mod:`~ldjax._src.experiments.mnist_force.training`,
:mod:`~ldjax._src.experiments.mnist_force.analysis`, :mod:`~ldjax._src.experiments.mnist_force.claims` (the
statistics and the rows) and :mod:`~ldjax._src.experiments.mnist_force.figures`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from typing import NamedTuple

import jax
import numpy as np

from ldjax._src.data.dataset import provenance
from ldjax._src.experiments import common
from ldjax._src.experiments.claims import Row
from ldjax._src.experiments.mnist_force import claims as mnist_claims
from ldjax._src.experiments.mnist_force import figures
from ldjax._src.experiments.mnist_force.analysis import UpdateSet
from ldjax._src.experiments.mnist_force.analysis import accumulation_summary
from ldjax._src.experiments.mnist_force.analysis import analyse_checkpoint
from ldjax._src.experiments.mnist_force.analysis import choose_updates
from ldjax._src.experiments.mnist_force.config import FULL
from ldjax._src.experiments.mnist_force.config import MODELS
from ldjax._src.experiments.mnist_force.config import NUM_CLASSES
from ldjax._src.experiments.mnist_force.config import TINY
from ldjax._src.experiments.mnist_force.config import Config
from ldjax._src.experiments.mnist_force.config import check_config
from ldjax._src.experiments.mnist_force.config import checkpoint_epochs
from ldjax._src.experiments.mnist_force.data import MnistData
from ldjax._src.experiments.mnist_force.data import load_data
from ldjax._src.experiments.mnist_force.data import prepare_data
from ldjax._src.experiments.mnist_force.training import init_models
from ldjax._src.experiments.mnist_force.training import train_with_recorder
from ldjax._src.training import TrainResult
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run")


class SeedRun(NamedTuple):
    """One seed's training and checkpoint analyses: the summary the claims are decided on (``summary``) and the
    detail behind the figures."""

    summary: dict[str, Any]
    trained: TrainResult
    updates: UpdateSet
    checkpoints: list[dict[str, Any]]


def run_seed(
    apply_fn: ApplyFn,
    params: Params,
    d: MnistData,
    config: Config,
    key: jax.Array,
    *,
    seed: int,
    n_acc: int,
    n_updates: int,
    epochs_at: list[int],
    detail: bool,
    progress: bool,
) -> SeedRun:
    """Train one seed (summing the first-order forces on ``n_acc`` probes when ``n_acc > 0``), then analyse its
    checkpoints: the one-step correlation at every one, the force map (``n_updates`` updates per class) at the
    last one, and with ``detail`` the shown A, K, G."""
    trained = train_with_recorder(apply_fn, params, d, config, key, n_acc=n_acc, progress=progress)
    records = trained.records
    updates = choose_updates(d, config.update_class, config.probe_classes, n_updates)
    checkpoints = [
        analyse_checkpoint(
            apply_fn,
            jax.tree.map(lambda leaf, e=epoch: leaf[e], records["params"]),
            d,
            updates,
            epoch=epoch,
            accuracy=float(records["accuracy"][epoch]),
            update_class=config.update_class,
            learning_rate=config.step_learning_rate,
            force_map=epoch == epochs_at[-1],
            detail=detail,
        )
        for epoch in epochs_at
    ]
    summary = {
        "seed": seed,
        "probe_accuracy_by_epoch": np.asarray(records["accuracy"]),
        "one_step_correlation": [cp["correlation"] for cp in checkpoints],
        "force_map_towards_updating_class": checkpoints[-1]["force_map_towards_updating_class"],
        "force_map_true_class": checkpoints[-1]["force_map_true_class"],
        "mean_distribution_by_epoch": np.asarray(records["class_probs"]),  # [epochs + 1, 10, 10]
    }
    return SeedRun(summary, trained, updates, checkpoints)


def first_seed_detail(config: Config, d: MnistData, first: SeedRun, n_acc: int) -> dict[str, Any]:
    """The first seed's detail behind the figures: the update, the shown probes, the checkpoints' A, K, G, the
    accumulation over epochs and the final mean prediction per class."""
    updates, trained = first.updates, first.trained
    return {
        "update_class": config.update_class,
        "update_index": int(d.train_index[updates.index]),
        "update_image": np.asarray(d.train_images[updates.index, ..., 0]),
        "probe_classes": list(config.probe_classes),
        "shown_probe_images": np.asarray(d.probe_images[updates.shown, ..., 0]),
        "probe_labels": d.y_probe,
        "train_loss": np.asarray(trained.losses),
        "probe_accuracy_by_epoch": first.summary["probe_accuracy_by_epoch"],
        "checkpoints": first.checkpoints,
        "accumulation": accumulation_summary(
            trained.records["log_probs"], trained.accumulated, d.y_probe[:n_acc]
        ),
        "final_mean_distribution_by_class": first.summary["mean_distribution_by_epoch"][-1],
        "final_probe_accuracy": float(first.summary["probe_accuracy_by_epoch"][-1]),
    }


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train ``seeds`` LeNets, analyse the class forces at the checkpoints, accumulate the forces over epochs.

    Every seed: the one-step correlation at every checkpoint, the force map at the last one, the mean
    prediction per class after every epoch. The first seed also: the shown A, K, G at every checkpoint and
    the per-update accumulation over epochs (the figures).

    Returns a dict of plain numbers and arrays: ``per_seed`` (what the claims are decided on) and the first
    seed's detail. ``"dataset"`` names the data actually used, ``"data_files"`` its files. Raises
    :class:`ldjax.data.DataUnavailable` when MNIST is required (``dataset="mnist"``, or a data location was
    configured) and not found.
    """
    check_config(config)
    train_split, test_split, dataset_name = load_data(config, data_dir)
    seeds = [config.seed + i for i in range(config.seeds)]
    keys = [jax.random.split(jax.random.key(seed), 4) for seed in seeds]  # subsets, init, batches
    data = [prepare_data(config, train_split, test_split, key_train=k[0], key_probe=k[1]) for k in keys]
    n_train, n_probes = len(data[0].y_train), len(data[0].y_probe)
    n_acc = min(config.n_accumulate, n_probes)
    apply_fn, inits = init_models(config, [k[2] for k in keys])
    epochs_at = checkpoint_epochs(config)
    m = min(
        config.force_map_updates, *(int(np.sum(d.y_train == c)) for d in data for c in range(NUM_CLASSES))
    )

    per_seed = []
    for s, (seed, d, k) in enumerate(zip(seeds, data, keys, strict=True)):
        seed_run = run_seed(
            apply_fn,
            inits[s],
            d,
            config,
            k[3],
            seed=seed,
            n_acc=n_acc if s == 0 else 0,
            n_updates=m,
            epochs_at=epochs_at,
            detail=s == 0,
            progress=progress,
        )
        per_seed.append(seed_run.summary)
        if s == 0:
            first = seed_run

    return {
        "dataset": f"{dataset_name}: {n_train} training images, {n_probes} held-out probe images per seed",
        "data_files": provenance(train_split, test_split),
        "model": f"{config.model} (LeNet5 variant {MODELS[config.model]!r})",
        "seeds": seeds,
        "n_train": n_train,
        "n_probes": n_probes,
        "n_accumulate": n_acc,
        "steps_per_epoch": n_train // config.batch_size,
        "checkpoint_epochs": epochs_at,
        "force_map_updates_per_class": m,
        "step_learning_rate": config.step_learning_rate,
        "per_seed": per_seed,
        **first_seed_detail(config, data[0], first, n_acc),
    }


def fidelity(results: dict[str, Any]) -> list[Row]:
    """The claims (decided over the seeds) and the checks: see :mod:`ldjax._src.experiments.mnist_force.claims`."""
    return mnist_claims.fidelity(results)


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """(a) the decomposition at the last checkpoint, (b) scatter, (c) by class, (d) the class force map, the
    accumulation curves and the final heat map."""
    common.use_agg()
    out_dir = Path(out_dir)
    paths = [figures.decomposition(results, results["checkpoints"][-1], out_dir)]
    paths.append(figures.scatter(results, out_dir))
    paths.append(figures.by_class(results, out_dir))
    paths.append(figures.force_maps(results, out_dir))
    paths.append(figures.accumulation(results, out_dir))
    paths.append(figures.final_distribution(results, out_dir))
    return paths


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
