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

Analyses (:mod:`ldjax._src.experiments.mnist_force_analysis`):

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

Reproduction rows (:func:`fidelity`, :mod:`ldjax._src.experiments.mnist_force_claims`): claims
``mnist.nine_pulled_most``, ``mnist.four_raises_fours`` and ``mnist.pull_accumulates`` (decided over the seeds),
checks ``mnist.one_step_correlation`` and ``mnist.epoch_accumulation``.

Data: MNIST from ``data_dir`` / ``$LDJAX_DATA_DIR`` / the cache (or a download). Only when no data location
was configured does ``dataset="auto"`` fall back to scikit-learn's 1,797 real 8x8 digits (1,000 train / 797
probes), upsampled to 28x28 (bilinear), and say so; ``results["data_files"]`` records the files read.

Quick settings (defaults): 3 seeds, 10 epochs, 1,000 probes, 64 accumulation probes, 150 updates per class
in the force map. ``FULL``: the authors' 100 epochs at 1e-3, the 10,000 test images as probes, 1,000
accumulation probes, 5 seeds — sized for one GPU (not run on a GPU in this version).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array
from jaxtyping import Int

from ldjax._src.adapters import from_nnx
from ldjax._src.data.dataset import Dataset
from ldjax._src.data.dataset import provenance
from ldjax._src.data.mnist import load_digits
from ldjax._src.data.mnist import load_mnist
from ldjax._src.data.mnist import load_mnist_or_digits
from ldjax._src.experiments import claims
from ldjax._src.experiments import common
from ldjax._src.experiments import mnist_force_claims
from ldjax._src.experiments import mnist_force_figures as figures
from ldjax._src.experiments.mnist_force_analysis import MnistData
from ldjax._src.experiments.mnist_force_analysis import accumulation_summary
from ldjax._src.experiments.mnist_force_analysis import analyse_checkpoint
from ldjax._src.experiments.mnist_force_analysis import choose_updates
from ldjax._src.first_order import probe_change
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.models.lenet import LeNet5
from ldjax._src.ntk import batched
from ldjax._src.training import TrainResult
from ldjax._src.training import epoch_batches
from ldjax._src.training import train
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params

NUM_CLASSES = 10
SIDE = 28
#: Config.model → the LeNet5 variant.
MODELS = {"lenet_tanh": "tanh", "lenet_relu": "relu"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults): about a minute on 2 CPU cores.

    Attributes:
      seed: the first seed; seed ``seed + i`` draws run ``i``'s subsets, initialisation and minibatch order.
      seeds: independent runs the claims are decided over.
      dataset: ``"auto"`` (MNIST if found; scikit-learn digits only when no data location is configured),
        ``"mnist"`` or ``"digits"``.
      download: allow downloading MNIST when it is not found locally.
      model: ``"lenet_tanh"`` (the authors': tanh, average pooling, 60-42) or ``"lenet_relu"`` (ReLU,
        max-pooling, 120-84).
      standardise: standardise pixels with the training subset's mean and std (the authors: [0, 1]).
      n_train: training images (a random subset of the training split).
      n_probes: held-out probe images (a random subset of the test split); also the evaluation set.
      n_accumulate: probes (the first of the probe set) on which forces are summed every update.
      epochs: passes over the training subset.
      batch_size, learning_rate, momentum, weight_decay: the optimizer (SGD, PyTorch-style decay).
      schedule: ``"cosine"`` (per epoch, down to ``final_learning_rate``) or ``"constant"``.
      final_learning_rate: the cosine schedule's floor (PyTorch's ``eta_min``).
      checkpoint_fractions: where the one-step analyses happen, as fractions of the epochs
        (rounded to whole epochs; 0 means the initialisation).
      step_learning_rate: η of the plain-SGD updates analysed at each checkpoint.
      update_class: the label of the single analysed update image x_u.
      probe_classes: the labels of the three probes whose A, K, G are shown.
      force_map_updates: training images per class averaged in the class x class force map.
    """

    seed: int = 0
    seeds: int = 3
    dataset: str = "auto"
    download: bool = False
    model: str = "lenet_tanh"
    standardise: bool = False
    n_train: int = 2000
    n_probes: int = 1000
    n_accumulate: int = 64
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    final_learning_rate: float = 1e-6
    checkpoint_fractions: tuple[float, ...] = (0.1, 0.5, 1.0)
    step_learning_rate: float = 1e-3
    update_class: int = 4
    probe_classes: tuple[int, ...] = (4, 9, 0)
    force_map_updates: int = 150


#: The authors' schedule (100 epochs at 1e-3), all 10,000 test images as probes, 5 seeds: one GPU.
FULL = Config(seeds=5, epochs=100, learning_rate=1e-3, n_probes=10000, n_accumulate=1000)

#: The tiny run shared by the smoke test and the notebook under ``LDJAX_NOTEBOOK_TINY``.
TINY = Config(
    seeds=2,
    n_train=256,
    n_probes=200,
    n_accumulate=16,
    epochs=2,
    force_map_updates=8,
    checkpoint_fractions=(1.0,),
)


def _check_config(config: Config) -> None:
    if config.dataset not in ("auto", "mnist", "digits"):
        raise ValueError(f"dataset must be 'auto', 'mnist' or 'digits', got {config.dataset!r}")
    if config.model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {config.model!r}")
    if config.schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {config.schedule!r}")
    if not 0 <= config.update_class < NUM_CLASSES:
        raise ValueError(f"update_class must be a digit 0..9, got {config.update_class}")
    if any(not 0 <= c < NUM_CLASSES for c in config.probe_classes) or not config.probe_classes:
        raise ValueError(f"probe_classes must be digits 0..9, got {config.probe_classes}")
    if any(not 0.0 <= f <= 1.0 for f in config.checkpoint_fractions) or not config.checkpoint_fractions:
        raise ValueError(f"checkpoint_fractions must lie in [0, 1], got {config.checkpoint_fractions}")
    for name in ("seeds", "n_train", "n_probes", "n_accumulate", "epochs", "batch_size", "force_map_updates"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.batch_size > config.n_train:
        raise ValueError(f"batch_size must be <= n_train={config.n_train}, got {config.batch_size}")


# ---------------------------------------------------------------------------------------------- data


def load_data(config: Config, data_dir: str | None) -> tuple[Dataset, Dataset, str]:
    """The training and probe splits, and a plain description of which data set they are.

    ``dataset="auto"`` falls back to scikit-learn's digits only when no data location was configured
    (``data_dir`` is ``None`` and ``$LDJAX_DATA_DIR`` is unset); a configured location without MNIST raises
    :class:`ldjax.data.DataUnavailable`.
    """
    if config.dataset == "digits":
        return load_digits("train"), load_digits("test"), "scikit-learn digits 8x8 upsampled to 28x28"
    load = load_mnist if config.dataset == "mnist" else load_mnist_or_digits
    train_split = load("train", path=data_dir, download=config.download)
    test_split = load("test", path=data_dir, download=config.download)
    if "MNIST" not in train_split.name:
        return train_split, test_split, "scikit-learn digits 8x8 upsampled to 28x28 (offline fallback)"
    return train_split, test_split, f"{train_split.name} / {test_split.name}"


def _images(x: np.ndarray) -> jax.Array:
    """uint8 ``[n, h, w]`` → float32 ``[n, 28, 28, 1]`` in [0, 1] (bilinear upsampling when smaller)."""
    images = jnp.asarray(x, jnp.float32)[..., None] / 255.0
    if images.shape[1:3] != (SIDE, SIDE):
        images = jax.image.resize(images, (images.shape[0], SIDE, SIDE, 1), method="bilinear")
    return images


def prepare_data(
    config: Config, train_split: Dataset, test_split: Dataset, *, key_train: jax.Array, key_probe: jax.Array
) -> MnistData:
    """Draw one seed's training subset and probes; pixels in [0, 1] or standardised with the subset's statistics.

    Args:
      config: ``n_train``, ``n_probes``, ``standardise`` and the classes that must be present.
      train_split: the training split the subset is drawn from.
      test_split: the test split the probes are drawn from.
      key_train: PRNG key of the training subset.
      key_probe: PRNG key of the probe subset.

    Returns:
      :class:`MnistData`.
    """
    n_train = min(config.n_train, len(train_split.y))
    n_probes = min(config.n_probes, len(test_split.y))
    train_idx = np.asarray(jax.random.permutation(key_train, len(train_split.y)))[:n_train]
    probe_idx = np.asarray(jax.random.permutation(key_probe, len(test_split.y)))[:n_probes]
    x_train_raw, x_probe_raw = _images(train_split.x[train_idx]), _images(test_split.x[probe_idx])
    y_train = np.asarray(train_split.y[train_idx], np.int32)
    y_probe = np.asarray(test_split.y[probe_idx], np.int32)
    for c in (config.update_class, *config.probe_classes):
        if not np.any(y_train == c) or not np.any(y_probe == c):
            raise ValueError(f"class {c} is missing from the training subset or the probes; use more images")
    mean, std = (jnp.mean(x_train_raw), jnp.std(x_train_raw)) if config.standardise else (0.0, 1.0)
    return MnistData(
        x_train=(x_train_raw - mean) / std,
        y_train=y_train,
        x_probe=(x_probe_raw - mean) / std,
        y_probe=y_probe,
        train_images=x_train_raw,
        probe_images=x_probe_raw,
        train_index=train_idx,
    )


# ------------------------------------------------------------------------------------ model, training


def init_models(config: Config, keys: list[jax.Array]) -> tuple[ApplyFn, list[Params]]:
    """One ``apply_fn`` (the same graph for every seed, so every jitted analysis compiles once) and the
    initial parameters of each seed."""
    apply_fn, inits = None, []
    for key in keys:
        rngs = nnx.Rngs(int(jax.random.randint(key, (), 0, 2**31 - 1)))
        model = LeNet5(NUM_CLASSES, 1, rngs=rngs, variant=MODELS[config.model])
        fn, params = from_nnx(model, example_shape=(SIDE, SIDE, 1))
        apply_fn = apply_fn or fn
        inits.append(params)
    return apply_fn, inits


def learning_rate_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    """PyTorch's ``CosineAnnealingLR(T_max=epochs, eta_min=final_learning_rate)`` stepped once per epoch."""
    if config.schedule == "constant":
        return optax.constant_schedule(config.learning_rate)
    top, floor, epochs = config.learning_rate, config.final_learning_rate, config.epochs

    def schedule(step: Array) -> Array:
        epoch = jnp.asarray(step // steps_per_epoch, jnp.float32)
        return floor + (top - floor) * (1 + jnp.cos(math.pi * epoch / epochs)) / 2

    return schedule


def make_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """SGD with momentum and PyTorch-style weight decay (added to the gradient before the momentum)."""
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.sgd(learning_rate_schedule(config, steps_per_epoch), momentum=config.momentum),
    )


def _train_loss(apply_fn: ApplyFn, params: Params, idx: Int[Array, " b"], data: dict[str, Array]) -> Array:
    """Cross-entropy of the minibatch ``idx`` of the training images."""
    return cross_entropy(batched(apply_fn)(params, data["x"][idx]), data["y"][idx])


def _record(
    apply_fn: ApplyFn, n_acc: int, params: Params, step: Array, data: dict[str, Array]
) -> dict[str, Any]:
    """Recorded every epoch: the parameters, the probe accuracy, log π of the accumulation probes and the
    mean prediction on the probes of each class ``[10, 10]``."""
    del step
    z = batched(apply_fn)(params, data["x_probe"])
    onehot = jax.nn.one_hot(data["y_probe"], NUM_CLASSES)
    return {
        "params": params,
        "accuracy": jnp.mean(jnp.argmax(z, -1) == data["y_probe"]),
        "log_probs": jax.nn.log_softmax(z[:n_acc], axis=-1),
        "class_probs": (onehot.T @ jax.nn.softmax(z, axis=-1)) / jnp.sum(onehot, axis=0)[:, None],
    }


def _accumulate(
    apply_fn: ApplyFn, n_acc: int, params: Params, idx: Array, updates: Params, data: dict[str, Array]
) -> Array:
    """The first-order change ``A·J(x_o)·u`` of the optimizer's update ``u`` on the accumulation probes."""
    del idx
    return probe_change(apply_fn, params, updates, data["x_probe"][:n_acc])[0]


def train_with_recorder(
    apply_fn: ApplyFn,
    params: Params,
    data: MnistData,
    config: Config,
    key: jax.Array,
    *,
    n_acc: int,
    progress: bool,
) -> TrainResult:
    """Train one seed with :func:`ldjax.train`, recording every epoch and, with ``n_acc > 0``, summing the
    first-order force of every update on the first ``n_acc`` probes.

    Args:
      apply_fn: the model, one example at a time.
      params: the initial parameters.
      data: the training subset and the probes.
      config: the optimizer's settings and the number of epochs.
      key: PRNG key of the minibatch order.
      n_acc: probes that receive the per-update force (0: none).
      progress: show a progress bar.

    Returns:
      :class:`ldjax.TrainResult`: ``records`` are ``params``, ``accuracy``, ``log_probs`` (of the first
      ``n_acc`` probes) and ``class_probs`` after every epoch (entry 0 before training); ``accumulated`` the
      per-epoch sums of the first-order force ``[epochs, n_acc, k]`` (``None`` when ``n_acc`` is 0).
    """
    n_train = len(data.y_train)
    steps_per_epoch = n_train // config.batch_size
    arrays = {
        "x": data.x_train,
        "y": jnp.asarray(data.y_train),
        "x_probe": data.x_probe,
        "y_probe": jnp.asarray(data.y_probe),
    }
    return train(
        functools.partial(_train_loss, apply_fn),
        params,
        make_optimizer(config, steps_per_epoch),
        epoch_batches(key, n_train, config.batch_size, config.epochs),
        record=functools.partial(_record, apply_fn, n_acc),
        accumulate=functools.partial(_accumulate, apply_fn, n_acc) if n_acc else None,
        every=steps_per_epoch,
        data=arrays,
        progress=progress,
        desc="LeNet-5",
    )


# ------------------------------------------------------------------------------------------------ run


def checkpoint_epochs(config: Config) -> list[int]:
    """The epochs of the one-step analyses (``checkpoint_fractions`` rounded to whole epochs)."""
    return sorted(
        {min(config.epochs, max(0, round(fr * config.epochs))) for fr in config.checkpoint_fractions}
    )


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
    _check_config(config)
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

    per_seed, first = [], {}
    for s, (seed, d, k) in enumerate(zip(seeds, data, keys, strict=True)):
        trained = train_with_recorder(
            apply_fn, inits[s], d, config, k[3], n_acc=n_acc if s == 0 else 0, progress=progress
        )
        records = trained.records
        updates = choose_updates(d, config.update_class, config.probe_classes, m)
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
                detail=s == 0,
            )
            for epoch in epochs_at
        ]
        per_seed.append(
            {
                "seed": seed,
                "probe_accuracy_by_epoch": np.asarray(records["accuracy"]),
                "one_step_correlation": [cp["correlation"] for cp in checkpoints],
                "force_map_towards_updating_class": checkpoints[-1]["force_map_towards_updating_class"],
                "force_map_true_class": checkpoints[-1]["force_map_true_class"],
                "mean_distribution_by_epoch": np.asarray(records["class_probs"]),  # [epochs + 1, 10, 10]
            }
        )
        if s == 0:
            first = {"trained": trained, "updates": updates, "checkpoints": checkpoints}

    d, updates, trained = data[0], first["updates"], first["trained"]
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
        # the first seed's detail, behind the figures
        "update_class": config.update_class,
        "update_index": int(d.train_index[updates.index]),
        "update_image": np.asarray(d.train_images[updates.index, ..., 0]),
        "probe_classes": list(config.probe_classes),
        "shown_probe_images": np.asarray(d.probe_images[updates.shown, ..., 0]),
        "probe_labels": d.y_probe,
        "train_loss": np.asarray(trained.losses),
        "probe_accuracy_by_epoch": per_seed[0]["probe_accuracy_by_epoch"],
        "checkpoints": first["checkpoints"],
        "accumulation": accumulation_summary(
            trained.records["log_probs"], trained.accumulated, d.y_probe[:n_acc]
        ),
        "final_mean_distribution_by_class": per_seed[0]["mean_distribution_by_epoch"][-1],
        "final_probe_accuracy": float(per_seed[0]["probe_accuracy_by_epoch"][-1]),
    }


def fidelity(results: dict[str, Any]) -> list[claims.Row]:
    """The claims (decided over the seeds) and the checks: see :mod:`ldjax._src.experiments.mnist_force_claims`."""
    return mnist_force_claims.fidelity(results)


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


if __name__ == "__main__":
    raise SystemExit(main())
