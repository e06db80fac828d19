"""Learn a 4, watch the other digits move: one-step and accumulated forces in LeNet-5 on MNIST.

Ren & Sutherland (ICLR 2025, "Learning Dynamics of LLM Finetuning") illustrate the one-step
decomposition ``Δ log π(x_o) = −η · A(x_o) · K(x_o, x_u) · G(x_u) + O(η²)`` on MNIST: one SGD update
on an image ``x_u`` labelled 4 pushes every other image's prediction; ``G`` at the 4 says which
logits to raise, the empirical NTK ``K`` carries that push to similar-looking digits (9s feel it
most), and ``A`` turns logit changes into log-probability changes.

Set-up (the authors'): LeNet-5 trained on a 2,000-image subset of the MNIST training set with SGD,
learning rate 1e-3, momentum 0.9, weight decay 5e-4, batch 64, cosine schedule. Inputs are
standardised with the mean and standard deviation of the training subset.

At an early, a middle and a late checkpoint, ONE plain-SGD update (``step_learning_rate``) on a
training image labelled 4 is taken and, on held-out test images ("probes"), the predicted change
(``ldjax.one_step``: one VJP at ``x_u``, one JVP at the probes) is compared with the actual change;
``A``, ``K`` and ``G`` are formed for three shown probes (a 4, a 9, a 0). The 10x10 "updating class x
observing class" map averages the predicted force over single-example updates on
``force_map_updates`` training images of each class; since the first-order prediction is linear in
the update, the average is computed exactly as ONE JVP of the averaged update per class.

Accumulation: every update of every epoch, inside the compiled training loop
(:func:`ldjax.train`'s ``accumulate`` hook), adds the first-order force ``A·J(x_o)·u`` of the actual
optimizer update ``u`` (momentum and weight decay included) on a fixed probe set; each epoch's sum
is compared with the actual change of log π over that epoch.

Without MNIST (no ``LDJAX_DATA_DIR``, cache or download) the run falls back to scikit-learn's
1,797 real 8x8 digits (1,000 train / 797 probes), upsampled to 28x28 (bilinear), and says so.

Quick settings (defaults): 10 epochs, 1,000 probes, 256 accumulation probes; 71 s of run time
(86 s for the whole command) on 2 CPU cores shared with other jobs. ``FULL``: 30 epochs, 5,000
probes, 1,000 accumulation probes, 100 updates per class in the force map; not timed here: the
per-update force on 1,000 probes dominates, roughly 10-15 minutes on 2 CPU cores (estimate).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src.adapters import from_nnx
from ldjax._src.data.dataset import Dataset
from ldjax._src.data.errors import DataUnavailable
from ldjax._src.data.mnist import load_digits
from ldjax._src.data.mnist import load_mnist
from ldjax._src.experiments import common
from ldjax._src.first_order import first_order_step
from ldjax._src.first_order import probe_change
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.models.lenet import LeNet5
from ldjax._src.one_step import one_step
from ldjax._src.training import epoch_batches
from ldjax._src.training import train
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params

NUM_CLASSES = 10
SIDE = 28


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults): about 1.5 minutes on 2 CPU cores.

    Attributes:
      seed: seeds the subsets, the initialisation and the minibatch order.
      dataset: ``"auto"`` (MNIST if found, else scikit-learn digits), ``"mnist"`` or ``"digits"``.
      download: allow downloading MNIST when it is not found locally.
      n_train: training images (a random subset of the training split).
      n_probes: held-out probe images (a random subset of the test split); also the evaluation set.
      n_accumulate: probes (the first of the probe set) on which forces are summed every update.
      epochs: passes over the training subset.
      batch_size, learning_rate, momentum, weight_decay: the optimizer (SGD, PyTorch-style decay).
      schedule: ``"cosine"`` (decay to 0 over training) or ``"constant"``.
      checkpoint_fractions: where the one-step analyses happen, as fractions of the epochs
        (rounded to whole epochs, at least 1; 0 means the initialisation).
      step_learning_rate: η of the single plain-SGD update analysed at each checkpoint.
      update_class: the label of the updated image x_u.
      probe_classes: the labels of the three probes whose A, K, G are shown.
      force_map_updates: training images per class averaged in the class x class force map.
    """

    seed: int = 0
    dataset: str = "auto"
    download: bool = False
    n_train: int = 2000
    n_probes: int = 1000
    n_accumulate: int = 256
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    checkpoint_fractions: tuple[float, ...] = (0.1, 0.5, 1.0)
    step_learning_rate: float = 1e-3
    update_class: int = 4
    probe_classes: tuple[int, ...] = (4, 9, 0)
    force_map_updates: int = 20


#: Full-size settings: roughly 10-15 minutes on 2 CPU cores (estimated, not timed).
FULL = Config(epochs=30, n_probes=5000, n_accumulate=1000, force_map_updates=100)


def _check_config(config: Config) -> None:
    if config.dataset not in ("auto", "mnist", "digits"):
        raise ValueError(f"dataset must be 'auto', 'mnist' or 'digits', got {config.dataset!r}")
    if config.schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {config.schedule!r}")
    if not 0 <= config.update_class < NUM_CLASSES:
        raise ValueError(f"update_class must be a digit 0..9, got {config.update_class}")
    if any(not 0 <= c < NUM_CLASSES for c in config.probe_classes) or not config.probe_classes:
        raise ValueError(f"probe_classes must be digits 0..9, got {config.probe_classes}")
    if any(not 0.0 <= f <= 1.0 for f in config.checkpoint_fractions) or not config.checkpoint_fractions:
        raise ValueError(f"checkpoint_fractions must lie in [0, 1], got {config.checkpoint_fractions}")
    for name in ("n_train", "n_probes", "n_accumulate", "epochs", "batch_size", "force_map_updates"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.batch_size > config.n_train:
        raise ValueError(f"batch_size must be <= n_train={config.n_train}, got {config.batch_size}")


def load_data(config: Config, data_dir: str | None) -> tuple[Dataset, Dataset, str]:
    """The training and probe splits, and a plain description of which data set they are."""
    if config.dataset in ("auto", "mnist"):
        try:
            train_split = load_mnist("train", path=data_dir, download=config.download)
            test_split = load_mnist("test", path=data_dir, download=config.download)
            return train_split, test_split, f"{train_split.name} / {test_split.name}"
        except DataUnavailable:
            if config.dataset == "mnist":
                raise
    train_split, test_split = load_digits("train"), load_digits("test")
    return train_split, test_split, "scikit-learn digits 8x8 upsampled to 28x28 (offline fallback)"


def _images(x: np.ndarray) -> jax.Array:
    """uint8 ``[n, h, w]`` → float32 ``[n, 28, 28, 1]`` in [0, 1] (bilinear upsampling when smaller)."""
    images = jnp.asarray(x, jnp.float32)[..., None] / 255.0
    if images.shape[1:3] != (SIDE, SIDE):
        images = jax.image.resize(images, (images.shape[0], SIDE, SIDE, 1), method="bilinear")
    return images


def class_force_map(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Float[Array, " n_o *d"],
    x_by_class: Float[Array, "c m *d"],
    *,
    learning_rate: float,
) -> Float[Array, "c n_o k"]:
    r"""Predicted Δ log π on ``x_o``, averaged over single-example SGD updates on ``m`` examples of each class.

    Entry ``[c]`` is :math:`\frac1m \sum_{j} -\eta\, A(x_o)\, K(x_o, x_{c,j})\, G(x_{c,j})` where
    ``x_{c,j}`` is labelled ``c``. The first-order prediction is linear in the update, so the mean
    over the ``m`` updates is one JVP along the mean update ``−η · mean_j ∇θ L(x_{c,j})``.

    Args:
      apply_fn: un-batched classifier, ``apply_fn(params, x) -> [k]``.
      params: parameters.
      x_o: observed examples ``[n_o, *d]``.
      x_by_class: ``m`` training examples of each class ``c = 0..C-1``, ``[C, m, *d]``.
      learning_rate: η.

    Returns:
      ``[C, n_o, k]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ldjax._src.experiments.mnist_force import class_force_map
      >>> f = lambda p, x: x @ p
      >>> x = jax.random.normal(jax.random.key(0), (2, 3, 5))
      >>> class_force_map(f, jnp.ones((5, 2)), x[0], x, learning_rate=0.1).shape
      (2, 3, 2)
    """
    sgd = optax.sgd(learning_rate)

    def one_class(args):
        xs, label = args
        labels = jnp.full((xs.shape[0],), label, jnp.int32)
        return first_order_step(apply_fn, params, x_o, xs, labels, cross_entropy, sgd).predicted

    return jax.lax.map(one_class, (x_by_class, jnp.arange(x_by_class.shape[0], dtype=jnp.int32)))


def _by_class(values: np.ndarray, labels: np.ndarray) -> list[float]:
    return [
        float(values[labels == c].mean()) if np.any(labels == c) else float("nan") for c in range(NUM_CLASSES)
    ]


def _class_means(delta: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Per-observed-class means of Δ log π(true class) and of the whole Δ log π vector."""
    true = delta[np.arange(len(labels)), labels]
    rows = [delta[labels == c].mean(axis=0) for c in range(NUM_CLASSES)]
    return {"true_class": _by_class(true, labels), "all_classes": np.asarray(rows)}


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train LeNet-5, analyse one-step forces at three checkpoints and accumulate forces over epochs.

    Returns a dict of plain numbers and arrays (see the module docstring); ``"dataset"`` names the
    data actually used. Raises :class:`ldjax.data.DataUnavailable` only for ``dataset="mnist"``.
    """
    _check_config(config)
    train_split, test_split, dataset_name = load_data(config, data_dir)
    key_train, key_probe, key_init, key_batches = jax.random.split(jax.random.key(config.seed), 4)
    n_train = min(config.n_train, len(train_split.y))
    n_probes = min(config.n_probes, len(test_split.y))
    n_acc = min(config.n_accumulate, n_probes)
    train_idx = np.asarray(jax.random.permutation(key_train, len(train_split.y)))[:n_train]
    probe_idx = np.asarray(jax.random.permutation(key_probe, len(test_split.y)))[:n_probes]
    x_train_raw, x_probe_raw = _images(train_split.x[train_idx]), _images(test_split.x[probe_idx])
    mean, std = jnp.mean(x_train_raw), jnp.std(x_train_raw)
    x_train, x_probe = (x_train_raw - mean) / std, (x_probe_raw - mean) / std
    y_train = np.asarray(train_split.y[train_idx], np.int32)
    y_probe = np.asarray(test_split.y[probe_idx], np.int32)
    for c in (config.update_class, *config.probe_classes):
        if not np.any(y_train == c) or not np.any(y_probe == c):
            raise ValueError(f"class {c} is missing from the training subset or the probes; use more images")

    model = LeNet5(NUM_CLASSES, 1, rngs=nnx.Rngs(int(jax.random.randint(key_init, (), 0, 2**31 - 1))))
    apply_fn, params = from_nnx(model, example_shape=(SIDE, SIDE, 1))
    f = jax.vmap(apply_fn, in_axes=(None, 0))

    steps_per_epoch = n_train // config.batch_size
    num_steps = steps_per_epoch * config.epochs
    schedule = (
        optax.cosine_decay_schedule(config.learning_rate, num_steps)
        if config.schedule == "cosine"
        else optax.constant_schedule(config.learning_rate)
    )
    optimizer = optax.chain(
        optax.add_decayed_weights(config.weight_decay), optax.sgd(schedule, momentum=config.momentum)
    )
    data = {"x": x_train, "y": jnp.asarray(y_train), "x_probe": x_probe, "y_probe": jnp.asarray(y_probe)}

    def loss_fn(p, idx, d):
        return cross_entropy(f(p, d["x"][idx]), d["y"][idx])

    def record(p, step, d):
        del step
        z = f(p, d["x_probe"])
        return {
            "params": p,
            "accuracy": jnp.mean(jnp.argmax(z, -1) == d["y_probe"]),
            "log_probs": jax.nn.log_softmax(z[:n_acc], axis=-1),
        }

    def accumulate(p, idx, updates, d):
        del idx
        return probe_change(apply_fn, p, updates, d["x_probe"][:n_acc])[0]

    batches = epoch_batches(key_batches, n_train, config.batch_size, config.epochs)
    trained = train(
        loss_fn, params, optimizer, batches, record=record, accumulate=accumulate,
        every=steps_per_epoch, data=data, progress=progress, desc="LeNet-5",
    )  # fmt: skip
    records = trained.records

    # ---- one-step analyses at the checkpoints
    epochs_at = sorted(
        {min(config.epochs, max(0, round(fr * config.epochs))) for fr in config.checkpoint_fractions}
    )
    u = int(np.flatnonzero(y_train == config.update_class)[0])
    x_u, y_u = x_train[u : u + 1], jnp.asarray(y_train[u : u + 1])
    shown = np.array([int(np.flatnonzero(y_probe == c)[0]) for c in config.probe_classes])
    m = min(config.force_map_updates, *(int(np.sum(y_train == c)) for c in range(NUM_CLASSES)))
    x_by_class = jnp.stack([x_train[np.flatnonzero(y_train == c)[:m]] for c in range(NUM_CLASSES)])
    eta = config.step_learning_rate

    @jax.jit
    def step_all(p):
        r = one_step(apply_fn, p, x_probe, x_u, y_u, loss=cross_entropy, learning_rate=eta, terms=False)
        return r.predicted, r.actual, r.g

    @jax.jit
    def step_terms(p):
        return one_step(
            apply_fn,
            p,
            x_probe[shown],
            x_u,
            y_u,
            loss=cross_entropy,
            learning_rate=eta,
            method="vector_products",
        )

    force_map_fn = jax.jit(lambda p: class_force_map(apply_fn, p, x_probe, x_by_class, learning_rate=eta))

    checkpoints = []
    for epoch in common.progress(epochs_at, desc="checkpoints", enabled=progress):
        p = jax.tree.map(lambda leaf, e=epoch: leaf[e], records["params"])
        predicted, actual, g = (np.asarray(v) for v in step_all(p))
        terms = step_terms(p)
        fmap = np.asarray(force_map_fn(p))  # [updating class, probe, k]
        map_true = np.zeros((NUM_CLASSES, NUM_CLASSES))
        map_towards = np.zeros((NUM_CLASSES, NUM_CLASSES))
        for c_u in range(NUM_CLASSES):
            true_change = fmap[c_u, np.arange(n_probes), y_probe]
            map_true[c_u] = _by_class(true_change, y_probe)
            map_towards[c_u] = _by_class(fmap[c_u, :, c_u], y_probe)
        pred_means, act_means = _class_means(predicted, y_probe), _class_means(actual, y_probe)
        towards_update_actual = _by_class(actual[:, config.update_class], y_probe)
        towards_update_predicted = _by_class(predicted[:, config.update_class], y_probe)
        others = [c for c in range(NUM_CLASSES) if c != config.update_class]
        ranked = sorted(others, key=lambda c: -towards_update_actual[c])
        checkpoints.append(
            {
                "epoch": int(epoch),
                "probe_accuracy": float(records["accuracy"][epoch]),
                "correlation": float(np.corrcoef(predicted.ravel(), actual.ravel())[0, 1]),
                "max_abs_residual": float(np.abs(actual - predicted).max()),
                "max_abs_actual": float(np.abs(actual).max()),
                "predicted": predicted,
                "actual": actual,
                "g": g[0],
                "shown": {
                    "predicted": np.asarray(terms.predicted),
                    "actual": np.asarray(terms.actual),
                    "a": np.asarray(terms.a),
                    "k": np.asarray(terms.k[:, 0]),
                    "g": np.asarray(terms.g[0]),
                },
                "mean_true_class_change_predicted": pred_means["true_class"],
                "mean_true_class_change_actual": act_means["true_class"],
                "mean_change_by_observed_class_actual": act_means["all_classes"],
                "mean_update_class_change_by_class_actual": towards_update_actual,
                "mean_update_class_change_by_class_predicted": towards_update_predicted,
                "most_pulled_towards_update_class": ranked,
                "force_map_true_class": map_true,
                "force_map_towards_updating_class": map_towards,
            }
        )

    # ---- accumulation over epochs
    log_probs = np.asarray(records["log_probs"])  # [epochs + 1, n_acc, k]
    actual_epoch = np.diff(log_probs, axis=0)  # [epochs, n_acc, k]
    predicted_epoch = np.asarray(trained.accumulated)  # [epochs, n_acc, k]
    y_acc = y_probe[:n_acc]
    rows = np.arange(n_acc)
    epoch_correlation = [
        float(np.corrcoef(predicted_epoch[e].ravel(), actual_epoch[e].ravel())[0, 1])
        for e in range(config.epochs)
    ]
    final_probs = np.asarray(jax.jit(lambda p: jax.nn.softmax(f(p, x_probe), axis=-1))(trained.params))
    heat = np.stack([final_probs[y_probe == c].mean(axis=0) for c in range(NUM_CLASSES)])

    return {
        "dataset": f"{dataset_name}: {n_train} training images, {n_probes} held-out probe images",
        "n_train": n_train,
        "n_probes": n_probes,
        "n_accumulate": n_acc,
        "steps_per_epoch": steps_per_epoch,
        "update_class": config.update_class,
        "update_index": int(train_idx[u]),
        "update_image": np.asarray(x_train_raw[u, ..., 0]),
        "probe_classes": list(config.probe_classes),
        "shown_probe_images": np.asarray(x_probe_raw[shown, ..., 0]),
        "probe_labels": y_probe,
        "force_map_updates_per_class": m,
        "step_learning_rate": eta,
        "train_loss": np.asarray(trained.losses),
        "probe_accuracy_by_epoch": np.asarray(records["accuracy"]),
        "checkpoints": checkpoints,
        "accumulation": {
            "epoch_correlation": epoch_correlation,
            "mean_true_class_change_predicted": predicted_epoch[:, rows, y_acc].mean(axis=1),
            "mean_true_class_change_actual": actual_epoch[:, rows, y_acc].mean(axis=1),
            "true_class_change_predicted": predicted_epoch[:, rows, y_acc],
            "true_class_change_actual": actual_epoch[:, rows, y_acc],
        },
        "final_mean_distribution_by_class": heat,
        "final_probe_accuracy": float(np.mean(final_probs.argmax(axis=1) == y_probe)),
    }


def fidelity(results: dict[str, Any]) -> list[common.Fidelity]:
    """The issue's targets: prediction quality, learning a 4 raises other 4s, which digit is pulled most."""
    cps = results["checkpoints"]
    u = results["update_class"]
    correlations = [cp["correlation"] for cp in cps]
    fours = [cp["mean_true_class_change_actual"][u] for cp in cps]
    late = cps[-1]
    pulled = late["most_pulled_towards_update_class"][0]
    per_checkpoint = ", ".join(
        f"epoch {cp['epoch']}: {cp['most_pulled_towards_update_class'][:3]}" for cp in cps
    )
    acc = results["accumulation"]["epoch_correlation"]
    epochs = ", ".join(str(cp["epoch"]) for cp in cps)
    return [
        common.Fidelity(
            "predicted vs actual Δ log π correlation for one small SGD step (min over checkpoints)",
            ">= 0.99",
            round(min(correlations), 5),
            min(correlations) >= 0.99,
            f"η = {results['step_learning_rate']}; {results['n_probes']} probes x 10 classes; checkpoints at "
            f"epochs {epochs}: {[round(c, 5) for c in correlations]}",
        ),
        common.Fidelity(
            f"after one update on a {u}, mean Δ log π({u}) of held-out {u}s is positive (every checkpoint)",
            "> 0",
            [round(v, 6) for v in fours],
            all(v > 0 for v in fours),
            "actual change",
        ),
        common.Fidelity(
            f"the other digit pulled most towards {u} (largest mean actual Δ log π({u}) on its probes), "
            "late checkpoint",
            "9",
            int(pulled),
            int(pulled) == 9,
            f"top 3 per checkpoint: {per_checkpoint}",
        ),
        common.Fidelity(
            "per-epoch sum of first-order forces vs actual epoch change of log π: correlation (min over epochs)",
            ">= 0.9 (this project's check; the paper shows the curves)",
            round(min(acc), 5),
            min(acc) >= 0.9,
            f"{results['n_accumulate']} probes, every update of every epoch",
        ),
    ]


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Figures (a)-(d), the accumulation curves and the final mean-distribution heat map."""
    common.use_agg()
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    paths = []
    u = int(results["update_class"])
    classes = np.arange(NUM_CLASSES)
    cps = results["checkpoints"]

    # (a) decomposition at each checkpoint
    for cp in cps:
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
        fig.suptitle(
            f"One SGD step on a {u} at epoch {cp['epoch']} — {results['dataset']}", fontsize=10, y=0.93
        )
        for ax in axes[:, 0]:
            ax.axis("off")
        paths.append(common.save_figure(fig, out_dir, f"mnist_a_decomposition_epoch{cp['epoch']}"))

    # (b) predicted vs actual scatter
    fig, axes = plt.subplots(1, len(cps), figsize=(4.5 * len(cps), 4), layout="constrained", squeeze=False)
    for ax, cp in zip(axes[0], cps, strict=True):
        pred, act = np.ravel(cp["predicted"]), np.ravel(cp["actual"])
        ax.scatter(pred, act, s=2, alpha=0.3, rasterized=True)
        lim = [float(min(pred.min(), act.min())), float(max(pred.max(), act.max()))]
        ax.plot(lim, lim, "k--", lw=0.8)
        ax.set_xlabel("predicted Δ log π")
        ax.set_ylabel("actual Δ log π")
        ax.set_title(f"epoch {cp['epoch']}: r = {cp['correlation']:.4f}")
    fig.suptitle(f"{results['n_probes']} probes x 10 classes, one step on a {u}", fontsize=10)
    paths.append(common.save_figure(fig, out_dir, "mnist_b_scatter"))

    # (c) mean Δ log π(true class) and Δ log π(update class) by observed class
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
    paths.append(common.save_figure(fig, out_dir, "mnist_c_by_class"))

    # (d) updating class x observing class force maps
    fig, axes = plt.subplots(2, len(cps), figsize=(4.5 * len(cps), 8), layout="constrained", squeeze=False)
    for col, cp in enumerate(cps):
        for row, (key, title) in enumerate(
            (
                ("force_map_true_class", "Δ log π(observer's class)"),
                ("force_map_towards_updating_class", "Δ log π(updating class)"),
            )
        ):
            mat = np.asarray(cp[key])
            scale = float(np.nanmax(np.abs(mat))) or 1.0
            image = axes[row, col].imshow(mat, cmap="RdBu_r", vmin=-scale, vmax=scale)
            fig.colorbar(image, ax=axes[row, col], shrink=0.8)
            axes[row, col].set_title(f"epoch {cp['epoch']}: {title}", fontsize=9)
            axes[row, col].set_xlabel("observing class")
            axes[row, col].set_ylabel("updating class")
            axes[row, col].set_xticks(classes)
            axes[row, col].set_yticks(classes)
    fig.suptitle(
        f"mean one-step force, {results['force_map_updates_per_class']} updates per class", fontsize=10
    )
    paths.append(common.save_figure(fig, out_dir, "mnist_d_force_map"))

    # accumulation over epochs
    acc = results["accumulation"]
    pred_mean, act_mean = (
        np.asarray(acc["mean_true_class_change_predicted"]),
        np.asarray(acc["mean_true_class_change_actual"]),
    )
    epochs = np.arange(1, len(pred_mean) + 1)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
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
    fig.suptitle(
        f"accumulated forces on {results['n_accumulate']} probes — {results['dataset']}", fontsize=10
    )
    paths.append(common.save_figure(fig, out_dir, "mnist_accumulation"))

    # final mean predicted distribution per class
    fig, ax = plt.subplots(figsize=(5, 4.3), layout="constrained")
    image = ax.imshow(np.asarray(results["final_mean_distribution_by_class"]), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_xticks(classes)
    ax.set_yticks(classes)
    ax.set_title(f"mean π on probes after training (acc {results['final_probe_accuracy']:.3f})", fontsize=9)
    paths.append(common.save_figure(fig, out_dir, "mnist_final_distribution"))
    return paths


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())
