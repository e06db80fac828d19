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
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ldjax._src import paths as paths_lib
from ldjax._src.adapters import from_nnx
from ldjax._src.data.cifar3 import load_cifar3
from ldjax._src.data.dataset import provenance
from ldjax._src.data.gaussian import symmetric_label_noise
from ldjax._src.experiments import claims
from ldjax._src.experiments import common
from ldjax._src.experiments import learning_paths as lp
from ldjax._src.experiments import path_figures
from ldjax._src.experiments.fitting import Fit
from ldjax._src.experiments.fitting import Members
from ldjax._src.experiments.fitting import fit
from ldjax._src.experiments.fitting import initial_members
from ldjax._src.experiments.fitting import member
from ldjax._src.experiments.fitting import predict_fn
from ldjax._src.experiments.fitting import repeat
from ldjax._src.experiments.fitting import stack
from ldjax._src.models.resnet import ResNet
from ldjax._src.typing import Params


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults)."""

    seed: int = 0
    num_seeds: int = 3
    data_seed: int = 0
    classes: tuple[str, ...] = ("airplane", "bird", "ship")
    noise: float = 0.2
    train_size: int = 500
    val_size: int = 300
    widths: tuple[int, ...] = (8, 16, 32)
    blocks: tuple[int, ...] = (1, 1, 1)
    epochs: int = 30
    batch_size: int = 50
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = False
    records_per_epoch: int = 1
    zigzag_margin: float = 0.1
    num_observed: int = 4
    num_pull: int = 8


FULL = Config(
    widths=(64, 128, 256, 512),
    blocks=(2, 2, 2, 2),
    train_size=2000,
    val_size=500,
    epochs=60,
    augment=True,
    records_per_epoch=2,
    num_observed=8,
)


class Split(NamedTuple):
    x: np.ndarray
    images: np.ndarray
    y: np.ndarray  # (noisy) training label
    y_true: np.ndarray
    flipped: np.ndarray
    p_star: np.ndarray
    index: np.ndarray  # CIFAR-10 test index


class Splits(NamedTuple):
    """Train / validation / test parts of noisy CIFAR-3, its description and the files read."""

    train: Split
    val: Split
    test: Split
    name: str
    files: list[dict[str, Any]]


def make_splits(config: Config, data_dir: str | None, noise: float | None = None) -> Splits:
    """Shuffle CIFAR-3 and split it into train / val / test, then flip exactly ``noise`` of each split's labels."""
    noise = config.noise if noise is None else noise
    k_perm, *k_noise = jax.random.split(jax.random.key(config.data_seed), 4)
    d = load_cifar3(config.classes, noise=0.0, key=k_perm, path=data_dir)
    n = d.x.shape[0]
    if config.train_size + config.val_size >= n:
        raise ValueError(
            f"train_size + val_size must leave test images out of {n}, got {config.train_size} + {config.val_size}"
        )
    perm = np.asarray(jax.random.permutation(k_perm, n))
    parts = np.split(perm, [config.train_size, config.train_size + config.val_size])
    splits = []
    for p, key in zip(parts, k_noise, strict=True):
        y, flipped = symmetric_label_noise(d.y_true[p], len(d.classes), noise, key=key)
        splits.append(
            Split(
                d.x[p], d.images[p], np.asarray(y), d.y_true[p], np.asarray(flipped), d.p_star[p], d.index[p]
            )
        )
    name = d.name.replace("; 0 labels (0%) flipped", f"; {noise:.0%} of the labels of each split flipped")
    return Splits(splits[0], splits[1], splits[2], name, provenance(d))


def make_resnet(config: Config, k: int, key: jax.Array) -> tuple[Callable, Params]:
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    model = ResNet(k, widths=config.widths, blocks=config.blocks, rngs=nnx.Rngs(seed))
    return from_nnx(model, example_shape=(32, 32, 3))


def optimizer_for(config: Config) -> optax.GradientTransformation:
    """SGD with momentum (``optimizer="sgd"``) or Adam (``"adam"``), with L2 weight decay."""
    if config.optimizer == "sgd":
        base = optax.sgd(config.learning_rate, momentum=config.momentum)
    elif config.optimizer == "adam":
        base = optax.adam(config.learning_rate)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {config.optimizer!r}")
    return optax.chain(optax.add_decayed_weights(config.weight_decay), base)


def train_paths(config: Config, splits: Splits, seeds: list[int], *, progress: bool) -> tuple[Callable, Fit]:
    """One-hot training of one member per seed; train logits, val accuracy and params at every record."""
    k = len(config.classes)
    apply_fn, params, keys = initial_members(functools.partial(make_resnet, config, k), seeds)
    tr, va = splits.train, splits.val
    m = len(seeds)
    members = Members(
        x=repeat(tr.x, m), targets=repeat(np.eye(k)[tr.y], m), x_val=repeat(va.x, m), y_val=repeat(va.y, m)
    )
    run_ = fit(
        apply_fn,
        stack(params),
        members,
        keys=jnp.stack(keys),
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=optimizer_for(config),
        records_per_epoch=config.records_per_epoch,
        record_train=True,
        keep_params=True,
        augment=config.augment,
        chunk=200,
        progress=progress,
        desc="cifar3",
    )
    return apply_fn, run_


def pull_summary(
    config: Config, pull: Callable, params_r: Params, tr: Split, probs_r: np.ndarray, o: int
) -> dict[str, Any]:
    """The training examples pulling flipped example ``o`` hardest towards (and away from) p*."""
    dpi = pull(params_r, jnp.asarray(tr.x[o]), jnp.asarray(tr.x), jnp.asarray(tr.y))
    direction = tr.p_star[o] - probs_r[o]
    direction = direction / max(np.linalg.norm(direction), 1e-12)
    towards = dpi @ direction
    self_pull = float(towards[o])
    towards[o] = 0.0  # the example itself pulls towards its own (wrong) label; listed separately
    top = np.argsort(-towards)[: config.num_pull]
    away = np.argsort(towards)[: config.num_pull // 2]
    return {
        "observed": o,
        "observed_id": int(tr.index[o]),
        "observed_label": int(tr.y[o]),
        "observed_true": int(tr.y_true[o]),
        "observed_p_star": tr.p_star[o],
        "observed_prediction": probs_r[o],
        "self_pull": self_pull,
        "total_towards_p_star": float(towards.sum()),
        "top": top,
        "top_pull": towards[top],
        "away": away,
        "away_pull": towards[away],
        "top_label_is_p_star_argmax_fraction": float(np.mean(tr.y[top] == np.argmax(tr.p_star[o]))),
        "top_same_true_class_fraction": float(np.mean(tr.y_true[top] == tr.y_true[o])),
        "away_label_is_its_label_fraction": float(np.mean(tr.y[away] == tr.y[o])),
    }


def observed_examples(zz: paths_lib.ZigZag, flipped: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` flipped examples with the clearest zig-zag (largest smaller move), zig-zagging ones first."""
    f = np.flatnonzero(flipped)
    score = np.minimum(np.asarray(zz.to_p_star), np.asarray(zz.to_label))[f]
    order = np.lexsort((-score, ~np.asarray(zz.zigzag)[f]))
    return f[order[:count]]


def seed_summary(config: Config, run_: Fit, splits: Splits, m: int, pull: Callable) -> dict[str, Any]:
    """Zig-zag, early-stop and pull statistics of seed member ``m``."""
    tr = splits.train
    k = len(config.classes)
    probs = np.asarray(jax.nn.softmax(run_.train_logits[:, m], -1))  # [R, n, k]
    zz = paths_lib.zigzag(probs, tr.p_star, tr.y, margin=config.zigzag_margin)
    zig = np.asarray(zz.zigzag)
    label_gap = np.linalg.norm(np.eye(k)[tr.y] - tr.p_star, axis=-1)
    best = int(run_.best[m])
    es_gap = np.linalg.norm(probs[best] - tr.p_star, axis=-1)
    flipped, clean = tr.flipped, ~tr.flipped
    pulls = []
    for o in observed_examples(zz, flipped, config.num_observed):
        r = int(zz.t_min[o])
        params_r = jax.tree.map(lambda a, r=r: a[r, m], run_.params_records)
        pulls.append({"record": r, **pull_summary(config, pull, params_r, tr, probs[r], int(o))})
    d_star = np.asarray(paths_lib.distances(probs, tr.p_star))
    return {
        "best_record": best,
        "zigzag_flipped": float(np.mean(zig[flipped])),
        "zigzag_clean": float(np.mean(zig[clean])),
        "early_stop_gain_flipped": float(np.mean((label_gap - es_gap)[flipped])),
        "pull_label_is_p_star_argmax": float(
            np.mean([p["top_label_is_p_star_argmax_fraction"] for p in pulls])
        ),
        "train_fit_final": float(np.mean(np.argmax(probs[-1], -1) == tr.y)),
        "flipped_turn_record": np.asarray(zz.t_min)[flipped],
        "flipped_mean_distance_p_star": d_star[:, flipped].mean(1),
        "clean_mean_distance_p_star": d_star[:, clean].mean(1),
        "pulls": pulls,
        "probs": probs,
        "zigzag": zz,
    }


def path_group(tr: Split, probs: np.ndarray, ids: np.ndarray) -> dict[str, Any]:
    """The paths of training examples ``ids`` with their CIFAR-10 test indices, p* and labels."""
    return {
        "ids": tr.index[ids],
        "paths": probs[:, ids],
        "p_star": tr.p_star[ids],
        "label": tr.y[ids],
        "true": tr.y_true[ids],
    }


def test_scores(predict: Callable, run_: Fit, test: Split) -> tuple[np.ndarray, np.ndarray]:
    """Test accuracy and ECE (clean labels) of every member at its best-validation record ``[S]``."""
    acc, ece = [], []
    for m in range(len(run_.best)):
        probs = predict(member(run_.best_params, m), test.x)
        acc.append(float(np.mean(np.argmax(probs, -1) == test.y_true)))
        ece.append(float(paths_lib.expected_calibration_error(probs, test.y_true)))
    return np.array(acc), np.array(ece)


def gallery(tr: Split, pulls: list[dict[str, Any]], rec_epochs: np.ndarray) -> list[dict[str, Any]]:
    """The images, IDs and labels of the observed examples and their largest pullers, for the figure."""
    out = []
    for p in pulls:
        extra = {
            f"{key}_{what}": getattr(tr, attr)[p[key]]
            for key in ("top", "away")
            for what, attr in (("ids", "index"), ("labels", "y"), ("images", "images"))
        }
        out.append(
            {
                **p,
                **extra,
                "observed_image": tr.images[p["observed"]],
                "epoch": float(rec_epochs[p["record"]]),
            }
        )
    return out


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


def pull_claim(fractions: np.ndarray, num_observed: int, num_pull: int) -> claims.Row:
    """``cifar3.pulls_from_p_star_class`` from per-seed mean fractions ``[S]``."""
    return claims.claim(
        "cifar3.pulls_from_p_star_class",
        "what pulls a mislabelled example towards p* are examples labelled with p*'s top class",
        source=f"{lp.SOURCE}, Section 4 (the zig-zag comes from the pull of similar examples)",
        paper="explained by the NTK pull of similar examples (toy analysis, no CIFAR number)",
        values=fractions,
        criterion=claims.Above(
            0.5,
            f"fraction of the top {num_pull} pullers towards p* labelled with p*'s "
            f"argmax, mean over {num_observed} flipped examples (chance ≈ 1/3)",
        ),
        note="A·K·G force of one example in a minibatch, plain-SGD part, at each example's turning point",
    )


def fidelity(results: dict[str, Any]) -> list[claims.Row]:
    per_seed = results["per_seed"]
    rows = lp.path_claims(
        "cifar3",
        "flipped",
        "clean",
        *(np.asarray(per_seed[key]) for key in ("zigzag_flipped", "zigzag_clean", "early_stop_gain_flipped")),
        margin=results["zigzag_margin"],
        section="Section 3 (noisy CIFAR-10 paths)",
        what="mislabelled examples",
    )
    pulls = results["pulls"]
    if pulls and pulls[0]:
        rows.append(
            pull_claim(
                np.asarray(per_seed["pull_label_is_p_star_argmax"]),
                len(pulls[0]),
                len(pulls[0][0]["top_pull"]),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
