r"""How to prepare your task head for fine-tuning: head probing, the energy, and how features move.

Ren, Guo, Bae & Sutherland ("How to prepare your task head for finetuning", ICLR 2023; Ren's thesis,
ch. 6) split a network into a backbone giving the feature :math:`z` (``h`` in ldjax) and a task head.
During fine-tuning (FT) one SGD step moves a feature by

.. math:: h(x_o)^{t+1} - h(x_o)^t = -\eta\, \tfrac1N \textstyle\sum_n K_h(x_o, x_n)\,
          \nabla_h z(x_n)^\top\, (p(x_n) - e_{y_n}) + O(\eta^2)

(:func:`ldjax.feature_step`): a slowly changing feature kernel, a direction set by the head, and the
**energy** :math:`p - e_y`. Training the new head alone first ("head probing", HP) for τ epochs lowers the
energy at the start of FT (:func:`ldjax.energy`: the average :math:`\|p - e_y\|`), so features change
less. The authors sweep τ ∈ {0, 1, 2, 4, 8, 16, 32, 50, 100, 199} and find: as the energy grows, the
Euclidean and cosine distances of the fine-tuned features from the pretrained ones grow, while
:math:`z_T^\top z_0` and :math:`\|z_T\|` first rise then fall; a mild τ (probing stopped well before
convergence) gives better downstream accuracy than no probing and than a converged head.

Set-up here (chosen for the data available offline and a CPU budget): a flax NNX MLP
(784 → 256 → ReLU → 256 → ReLU = the feature ``h``, then a linear head) is pre-trained on MNIST digits
0–4 (one fixed pre-trained backbone, playing the role of the authors' public checkpoint) and transferred
to digits 5–9: a 1,000-image downstream training set, 1,000 validation images (model selection and the
per-epoch measures) and the MNIST test images of 5–9 (4,861) for the final accuracy. MNIST rather than
CIFAR-10: only the CIFAR-10 test set (10,000 images) is available, and a network that learns transferable
CIFAR features does not fit the CPU budget, while 0–4 → 5–9 shares strokes, so the pre-trained features
help but do not suffice (probing alone is several points below fine-tuning).

For each seed (a new head's initialisation and the minibatch order; the pre-trained backbone is the same)
the head is probed on the frozen features with SGD (momentum 0.9, a constant learning rate) for the
authors' τ epochs, all from one run of :func:`ldjax.train` that records the head every epoch. Then every
(seed, τ) network is fine-tuned end to end with the authors' schedule shape: SGD (momentum 0.9), a
learning rate 16× lower than pre-training's, cosine decay to 0. All runs are fine-tuned together in ONE
:func:`ldjax.train` loop (the loss is the sum of the runs' losses; SGD acts on every parameter
separately, so each run is exactly its own SGD run, with the same data order for every τ of a seed:
paired). The ``record`` hook measures after every FT epoch, on 500 validation images:
:math:`\cos(h_t, h_0)`, :math:`\|h_t - h_0\|`, :math:`h_t^\top h_0`, :math:`\|h_t\|` (means over the
images), the head's gradient norm and the energy on 256 training images, and the validation accuracy.
The first FT update is also decomposed (:func:`ldjax.feature_step`) for every τ of the first seed: the
predicted vs the actual feature change, and the kernel × direction × energy sum against the JVP.

Claims (``fidelity``): ``ch6.distance_grows_with_energy`` (Spearman correlation across the τ sweep between
the energy at the start of FT and the final Euclidean and cosine distances), ``ch6.inner_product_rises_then_falls``
(the inner product's peak over the energy-sorted sweep above both ends) and
``ch6.mild_hp_beats_none_and_converged`` (test accuracy of the τ chosen by validation accuracy among the
mild ones, minus the better of τ = 0 and the converged τ), each decided over the seeds.

The set-up was fixed after exploratory runs: with a 3× higher FT learning rate (0.01; a 64-wide feature,
500 or 2,000 downstream images) the long-probed head (large norm) still moved the features far, so the
distance rose again at the lowest energies; the note of ``ch6.distance_grows_with_energy`` says so.

Quick settings (defaults): 5 seeds × 10 τ = 50 fine-tuning runs of 10 epochs; 47 s of CPU time (user +
system; 3 minutes of wall time on 2 cores shared with other jobs at a load average of 22). ``FULL``:
30,000 pre-training images, 5,000 downstream, 2,000 validation, 50 FT epochs, a 512-wide hidden layer —
sized for one GPU in a few minutes (estimated, not run: no GPU in this session).

The package: :mod:`~ldjax._src.experiments.head_probing.world` (``Config``, ``FULL``, ``TINY``, the data
splits, :class:`TransferNet` and pre-training), :mod:`~ldjax._src.experiments.head_probing.phases` (head
probing, the energy at the start of fine-tuning, fine-tuning with the per-epoch feature measures, the first
update decomposed), :mod:`~ldjax._src.experiments.head_probing.measures` (the claims' statistics: pure
functions of arrays) and :mod:`~ldjax._src.experiments.head_probing.report` (claims, checks and figures);
:func:`run` here chains the phases.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src.data.dataset import provenance
from ldjax._src.experiments import common
from ldjax._src.experiments.head_probing.measures import distance_trend
from ldjax._src.experiments.head_probing.measures import mild_margin
from ldjax._src.experiments.head_probing.measures import rise_then_fall
from ldjax._src.experiments.head_probing.measures import spearman
from ldjax._src.experiments.head_probing.phases import fine_tune
from ldjax._src.experiments.head_probing.phases import first_update
from ldjax._src.experiments.head_probing.phases import probe_heads
from ldjax._src.experiments.head_probing.phases import start_stats
from ldjax._src.experiments.head_probing.report import SOURCE
from ldjax._src.experiments.head_probing.report import fidelity
from ldjax._src.experiments.head_probing.report import plot
from ldjax._src.experiments.head_probing.world import FULL
from ldjax._src.experiments.head_probing.world import PAPER_TAUS
from ldjax._src.experiments.head_probing.world import SOURCE_CLASSES
from ldjax._src.experiments.head_probing.world import TARGET_CLASSES
from ldjax._src.experiments.head_probing.world import TINY
from ldjax._src.experiments.head_probing.world import Config
from ldjax._src.experiments.head_probing.world import TransferNet
from ldjax._src.experiments.head_probing.world import build_model
from ldjax._src.experiments.head_probing.world import check_config
from ldjax._src.experiments.head_probing.world import load_data
from ldjax._src.experiments.head_probing.world import make_splits
from ldjax._src.experiments.head_probing.world import pretrain

__all__ = (
    "FULL",
    "PAPER_TAUS",
    "SOURCE",
    "SOURCE_CLASSES",
    "TARGET_CLASSES",
    "TINY",
    "Config",
    "TransferNet",
    "distance_trend",
    "fidelity",
    "load_data",
    "main",
    "mild_margin",
    "plot",
    "rise_then_fall",
    "run",
    "spearman",
)


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Pre-train, probe the head for every τ, fine-tune all runs, measure features every epoch."""
    check_config(config)
    train_split, test_split, dataset_name = load_data(config, data_dir)
    splits = make_splits(config, train_split, test_split)
    model, params = build_model(config, splits.x_pre.shape[1], len(TARGET_CLASSES))
    pre = pretrain(config, model, params, splits, progress)
    accuracy = jax.jit(lambda p, x, y: jnp.mean(jnp.argmax(model.logits(p, x), -1) == y))
    pretrain_accuracy = float(accuracy(pre.params, splits.x_src, splits.y_src))
    start_heads = probe_heads(config, model, pre.params, splits, progress)
    start = start_stats(model, pre.params, splits, start_heads)
    tuned = fine_tune(config, model, pre.params, splits, start_heads, progress)
    test_accuracy = np.asarray(
        jax.jit(jax.vmap(jax.vmap(lambda q: accuracy(q, splits.x_test, splits.y_test))))(tuned.params)
    )  # [S, T]
    return {
        "dataset": dataset_name,
        "data_files": provenance(train_split, test_split),
        "source_classes": list(SOURCE_CLASSES),
        "target_classes": list(TARGET_CLASSES),
        "n_pretrain": splits.x_pre.shape[0],
        "n_train": splits.x_ft.shape[0],
        "n_val": splits.x_val.shape[0],
        "n_test": splits.n_test,
        "n_probes": splits.n_probes,
        "pretrain_test_accuracy": pretrain_accuracy,
        "hp_epochs": list(config.hp_epochs),
        "h0_inner": float(jnp.mean(jnp.sum(tuned.h0**2, -1))),
        "h0_norm": float(jnp.mean(jnp.linalg.norm(tuned.h0, axis=-1))),
        "start": {name: np.asarray(v) for name, v in start.items()},  # [S, T]
        "curves": tuned.curves,  # [S, T, ft_epochs + 1], entry 0 = start of fine-tuning
        "test_accuracy": test_accuracy,  # [S, T] after fine-tuning
        "first_update": first_update(config, model, splits, tuned),  # seed 0: {name: [T]}
    }


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
