"""Zig-zag learning paths of mislabelled examples on noisy CIFAR-3, with human p* from CIFAR-10H.

Ren, Guo & Sutherland (ICLR 2022): an example whose label disagrees with its true distribution p*
is first pulled by similar examples TOWARDS p*, and only later memorised towards its label. Here:
the CIFAR-10 test images of three classes (default airplane, bird, ship), p* = CIFAR-10H
renormalised over them, and symmetric label noise that really changes each flipped label
(exactly ``noise · n`` of them). A small GroupNorm ResNet is trained on a split with one-hot
(noisy) labels; every training example's softmax is recorded every ``record_every`` updates inside
the compiled loop (:func:`ldjax.train`). Reported:

* simplex paths of easy, medium and flipped examples, with their CIFAR-10 test indices;
* for flipped examples: the fraction whose path comes closer to p* than both its start and its end,
  the time of that turn relative to the epoch of best validation accuracy, and the distance to p*
  of the early-stopped prediction vs that of the (noisy) label;
* for one flipped example at its turning point: the training examples exerting the largest pull,
  the one-step force −η·A(x_o)·K(x_o, x_j)·G(x_j)/B that example j exerts when it is in a batch
  (once per epoch), evaluated at the parameters of the turning point (plain-SGD part of the
  update; momentum ignored), projected on the direction from the prediction towards p*.

Training: Adam (lr 1e-3, weight decay 5e-4), batch 50, no augmentation, so the network memorises the
flipped labels within the run. Quick settings (the defaults): ResNet 8-16-32, 600 training images,
40 epochs, a record every 6 updates; about 3 minutes on 2 CPU cores. ``FULL``: ResNet 32-64-128 with
2 blocks per stage, 2,000 training images, 100 epochs, a record every 10 updates; about 5 minutes on
one GPU (more than an hour on 2 CPU cores).
"""

from __future__ import annotations

import dataclasses
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
from ldjax._src.data.gaussian import symmetric_label_noise
from ldjax._src.experiments import common
from ldjax._src.experiments import plotting
from ldjax._src.experiments.fitting import Fit
from ldjax._src.experiments.fitting import fit
from ldjax._src.experiments.fitting import probabilities
from ldjax._src.first_order import split_change
from ldjax._src.losses.classification import cross_entropy_g
from ldjax._src.models.resnet import ResNet
from ldjax._src.typing import Params


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults)."""

    seed: int = 0
    data_seed: int = 0
    classes: tuple[str, ...] = ("airplane", "bird", "ship")
    noise: float = 0.2
    train_size: int = 600
    val_size: int = 400
    widths: tuple[int, ...] = (8, 16, 32)
    blocks: tuple[int, ...] = (1, 1, 1)
    epochs: int = 40
    batch_size: int = 50
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    records_per_epoch: int = 2
    num_pull: int = 8


FULL = Config(
    widths=(32, 64, 128), blocks=(2, 2, 2), train_size=2000, val_size=500, epochs=100, records_per_epoch=4
)


class Split(NamedTuple):
    x: np.ndarray
    images: np.ndarray
    y: np.ndarray  # (noisy) training label
    y_true: np.ndarray
    flipped: np.ndarray
    p_star: np.ndarray
    index: np.ndarray  # CIFAR-10 test index


def make_splits(
    config: Config, data_dir: str | None, noise: float | None = None
) -> tuple[Split, Split, Split, str]:
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
    return splits[0], splits[1], splits[2], name


def make_resnet(config: Config, k: int, *, key: jax.Array):
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


def train_images(
    config: Config,
    apply_fn: Callable,
    params: Params,
    train_split: Split,
    targets: np.ndarray,
    val_split: Split,
    *,
    key: jax.Array,
    records_per_epoch: int,
    temperature: float = 1.0,
    progress: bool = False,
    desc: str = "train",
) -> Fit:
    """Minibatch training on soft targets; records train softmax(z/τ), val accuracy and params in-loop."""
    return fit(
        apply_fn,
        params,
        jnp.asarray(train_split.x),
        jnp.asarray(targets),
        key=key,
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=optimizer_for(config),
        validation=(jnp.asarray(val_split.x), jnp.asarray(val_split.y)),
        records_per_epoch=records_per_epoch,
        temperature=temperature,
        chunk=200,
        progress=progress,
        desc=desc,
    )


def pull_on(apply_fn, params, x_o, x, labels, *, learning_rate: float, batch_size: int):
    """Per-example one-step force on ``x_o``: ``Δπ_j ≈ π ⊙ (−η/B · A(x_o) K(x_o, x_j) (π_j − e_{y_j}))``.

    Returns ``Δπ`` ``[n, k]`` (first-order change of the probabilities of ``x_o`` caused by example j).
    """
    z_o = jax.jit(apply_fn)(params, x_o)
    pi_o = jax.nn.softmax(z_o)
    k = z_o.shape[-1]

    def one(xj, yj):
        # example j's share of the force of a batch of B (the loss is the batch mean): G_j = (π_j − e_{y_j}) / B
        g_j = cross_entropy_g(apply_fn(params, xj)[None], yj[None]) / batch_size
        change = split_change(apply_fn, params, x_o[None], xj[None], g_j[None], learning_rate=learning_rate)
        return pi_o * change[0, 0]

    chunk = jax.jit(jax.vmap(one))
    n, size = x.shape[0], 100
    out = [np.asarray(chunk(x[i : i + size], labels[i : i + size])) for i in range(0, n, size)]
    return np.concatenate(out).reshape(n, k)


def pull_summary(
    config: Config,
    apply_fn: Callable,
    run_: Fit,
    tr: Split,
    probs: np.ndarray,
    o: int,
    r: int,
    rec_epochs: np.ndarray,
) -> dict[str, Any]:
    """The training examples pulling flipped example ``o`` hardest towards (and away from) p* at record ``r``."""
    params_r = jax.tree.map(lambda a: a[r], run_.params_records)
    dpi = pull_on(
        apply_fn,
        params_r,
        jnp.asarray(tr.x[o]),
        jnp.asarray(tr.x),
        jnp.asarray(tr.y),
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
    )
    direction = tr.p_star[o] - probs[r, o]
    direction = direction / max(np.linalg.norm(direction), 1e-12)
    towards = dpi @ direction
    towards[o] = 0.0  # the example itself pulls towards its own (wrong) label; listed separately
    top = np.argsort(-towards)[: config.num_pull]
    away = np.argsort(towards)[: config.num_pull // 2]
    return {
        "observed": o,
        "observed_id": int(tr.index[o]),
        "record": r,
        "epoch": float(rec_epochs[r]),
        "observed_label": int(tr.y[o]),
        "observed_true": int(tr.y_true[o]),
        "observed_p_star": tr.p_star[o],
        "observed_image": tr.images[o],
        "observed_prediction": probs[r, o],
        "self_pull": float(dpi[o] @ direction),
        "total_towards_p_star": float(towards.sum()),
        "top": top,
        "top_ids": tr.index[top],
        "top_pull": towards[top],
        "top_labels": tr.y[top],
        "top_true": tr.y_true[top],
        "top_images": tr.images[top],
        "away": away,
        "away_ids": tr.index[away],
        "away_pull": towards[away],
        "away_labels": tr.y[away],
        "away_true": tr.y_true[away],
        "away_images": tr.images[away],
        "top_same_true_class_fraction": float(np.mean(tr.y_true[top] == tr.y_true[o])),
        "top_label_is_p_star_argmax_fraction": float(np.mean(tr.y[top] == np.argmax(tr.p_star[o]))),
        "away_label_is_its_label_fraction": float(np.mean(tr.y[away] == tr.y[o])),
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


def _fraction(mask: np.ndarray) -> float:
    return float(np.mean(mask)) if len(mask) else float("nan")


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train on noisy CIFAR-3, record every example's path, and summarise the zig-zag and the pulls."""
    tr, va, te, name = make_splits(config, data_dir)
    k = len(config.classes)
    k_init, k_batches = jax.random.split(jax.random.key(config.seed))
    apply_fn, params0 = make_resnet(config, k, key=k_init)
    run_ = train_images(
        config,
        apply_fn,
        params0,
        tr,
        jax.nn.one_hot(tr.y, k),
        va,
        key=k_batches,
        records_per_epoch=config.records_per_epoch,
        progress=progress,
        desc="cifar3",
    )
    probs = run_.train_probs  # [R, n, k]
    rec_epochs = np.arange(probs.shape[0]) / config.records_per_epoch
    best_epoch = float(rec_epochs[run_.best])
    test_probs = probabilities(apply_fn, run_.best_params, te.x)

    zz = paths_lib.zigzag(probs, tr.p_star, tr.y)
    d_star = np.asarray(paths_lib.distances(probs, tr.p_star))
    label_dist = np.linalg.norm(np.eye(k)[tr.y] - tr.p_star, axis=-1)
    f = np.flatnonzero(tr.flipped)
    turned = np.asarray(zz.turned)
    t_turn = rec_epochs[np.asarray(zz.t_min)]

    # easy: label agrees with p* and p* is confident; medium: clean labels around the median gap.
    clean = np.flatnonzero(~tr.flipped)
    order = clean[np.argsort(label_dist[clean], kind="stable")]
    easy = order[:3]
    medium = order[len(order) // 2 : len(order) // 2 + 3]
    gain = d_star[0] - np.asarray(zz.d_min)
    turned_f = f[turned[f]]
    show_f = (
        turned_f[np.argsort(-(np.minimum(gain, d_star[-1] - np.asarray(zz.d_min)))[turned_f])][:3]
        if len(turned_f)
        else f[:3]
    )
    pull: dict[str, Any] = {}
    if len(turned_f):  # the pull on one flipped example at its turning point
        o = int(show_f[0])
        pull = pull_summary(config, apply_fn, run_, tr, probs, o, int(zz.t_min[o]), rec_epochs)

    return {
        "dataset": f"{name}; {tr.x.shape[0]} train / {va.x.shape[0]} val / {te.x.shape[0]} test",
        "classes": list(config.classes),
        "record_epochs": rec_epochs,
        "val_accuracy": run_.val_accuracy,
        "best_epoch": best_epoch,
        "test_accuracy": float(np.mean(np.argmax(test_probs, -1) == te.y_true)),
        "test_accuracy_noisy_labels": float(np.mean(np.argmax(test_probs, -1) == te.y)),
        "test_ece": float(paths_lib.expected_calibration_error(test_probs, te.y_true)),
        "train_fit_final": float(np.mean(np.argmax(probs[-1], -1) == tr.y)),
        "num_flipped": int(len(f)),
        "flipped_turned_fraction": _fraction(turned[f]),
        "clean_turned_fraction": float(np.mean(turned[clean])),
        "flipped_turn_minus_best_epoch_median": float(np.median(t_turn[turned_f] - best_epoch))
        if len(turned_f)
        else float("nan"),
        "flipped_turn_before_best_fraction": _fraction(t_turn[turned_f] <= best_epoch),
        "flipped_turn_epoch": t_turn[f],
        "flipped_es_distance_p_star": float(d_star[run_.best, f].mean()) if len(f) else float("nan"),
        "flipped_end_distance_p_star": float(d_star[-1, f].mean()) if len(f) else float("nan"),
        "flipped_label_distance_p_star": float(label_dist[f].mean()) if len(f) else float("nan"),
        "flipped_es_closer_than_label_fraction": _fraction(d_star[run_.best, f] < label_dist[f]),
        "flipped_mean_distance_p_star": d_star[:, f].mean(1) if len(f) else np.zeros(0),
        "clean_mean_distance_p_star": d_star[:, clean].mean(1),
        "groups": {
            "easy": path_group(tr, probs, easy),
            "medium": path_group(tr, probs, medium),
            "flipped": path_group(tr, probs, show_f),
        },
        "pull": pull,
    }


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    common.use_agg()
    import matplotlib.pyplot as plt

    out = []
    classes = results["classes"]
    epochs = np.asarray(results["record_epochs"])
    best = int(np.argmin(np.abs(epochs - results["best_epoch"])))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    for ax, g in zip(axes, ("easy", "medium", "flipped"), strict=True):
        grp = results["groups"][g]
        sc = plotting.simplex_paths(
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
        ax.set_title(f"{g} (IDs = CIFAR-10 test index)")
    axes[0].legend(loc="upper left", fontsize=7)
    fig.colorbar(sc, ax=axes, label="epoch")
    out.append(common.save_figure(fig, out_dir, "cifar3_simplex_paths"))
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].plot(epochs, np.asarray(results["flipped_mean_distance_p_star"]), label="flipped")
    ax[0].plot(epochs, np.asarray(results["clean_mean_distance_p_star"]), label="clean")
    ax[0].axhline(results["flipped_label_distance_p_star"], color="C0", ls=":", label="‖e_y − p*‖ (flipped)")
    ax[0].axvline(results["best_epoch"], color="gray", ls="--", label="best val")
    ax[0].set_xlabel("epoch")
    ax[0].set_ylabel("mean ‖π − p*‖")
    ax[0].legend(fontsize=7)
    turns = np.asarray(results["flipped_turn_epoch"])
    ax[1].hist(turns - results["best_epoch"], bins=20)
    ax[1].set_xlabel("epoch of closest approach to p* − best-val epoch (flipped)")
    ax[1].set_ylabel("examples")
    out.append(common.save_figure(fig, out_dir, "cifar3_zigzag"))
    plt.close(fig)

    pull = results["pull"]
    if pull:
        m = len(pull["top"]) + len(pull["away"]) + 1
        fig, axes = plt.subplots(1, m, figsize=(1.6 * m, 2.4))
        axes[0].imshow(np.asarray(pull["observed_image"], np.uint8))
        axes[0].set_title(
            f"#{pull['observed_id']}\nlabel {classes[pull['observed_label']]}\n"
            f"true {classes[pull['observed_true']]}",
            fontsize=6,
            color="red",
        )
        cols = [("top", "towards p*"), ("away", "away")]
        i = 1
        for key, what in cols:
            for j in range(len(pull[key])):
                axes[i].imshow(np.asarray(pull[f"{key}_images"][j], np.uint8))
                axes[i].set_title(
                    f"#{int(pull[f'{key}_ids'][j])} {what}\nlabel {classes[int(pull[f'{key}_labels'][j])]}"
                    f"\n{pull[f'{key}_pull'][j]:+.1e}",
                    fontsize=6,
                )
                i += 1
        for a in axes:
            a.axis("off")
        fig.suptitle(
            f"largest pulls on #{pull['observed_id']} at epoch {pull['epoch']:.2f} (its turning point)",
            fontsize=8,
        )
        out.append(common.save_figure(fig, out_dir, "cifar3_pull"))
        plt.close(fig)
    return out


def fidelity(results: dict[str, Any]) -> list[common.Fidelity]:
    rows = [
        common.Fidelity(
            "flipped examples zig-zag: path comes closer to p* than its start and its end",
            "most (paper: the typical path)",
            f"{results['flipped_turned_fraction']:.0%} of {results['num_flipped']}",
            results["flipped_turned_fraction"] > 0.5,
            f"clean examples: {results['clean_turned_fraction']:.0%}",
        ),
        common.Fidelity(
            "early-stopped predictions of flipped examples are closer to p* than their labels",
            "smaller distance",
            f"{results['flipped_es_distance_p_star']:.3f} vs {results['flipped_label_distance_p_star']:.3f}",
            results["flipped_es_distance_p_star"] < results["flipped_label_distance_p_star"],
            "mean Euclidean distance",
        ),
    ]
    if results["pull"]:
        pull = results["pull"]
        rows.append(
            common.Fidelity(
                "the strongest pulls towards p* come from examples labelled with p*'s top class",
                "> 1/3 (chance)",
                f"{pull['top_label_is_p_star_argmax_fraction']:.0%} of the top {len(pull['top'])}",
                pull["top_label_is_p_star_argmax_fraction"] > 1 / 3,
                f"example #{pull['observed_id']} at epoch {pull['epoch']:.1f}; the strongest pushes towards its label "
                f"come from examples with that same label in {pull['away_label_is_its_label_fraction']:.0%} of cases",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)
