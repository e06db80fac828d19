"""The data of :mod:`ldjax._src.experiments.mnist_force`: the MNIST (or digits) splits and one seed's subsets."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.data.dataset import Dataset
from ldjax._src.data.mnist import load_digits
from ldjax._src.data.mnist import load_mnist
from ldjax._src.data.mnist import load_mnist_or_digits
from ldjax._src.experiments.mnist_force.config import SIDE
from ldjax._src.experiments.mnist_force.config import Config


class MnistData(NamedTuple):
    """The training subset and the held-out probes of one seed.

    Attributes:
      x_train: the model's training inputs ``[n, 28, 28, 1]`` ([0, 1], or standardised).
      y_train: their labels ``[n]``.
      x_probe: the model's probe inputs ``[n_p, 28, 28, 1]`` (from the test split).
      y_probe: their labels ``[n_p]``.
      train_images: the training images in [0, 1] (for the figures).
      probe_images: the probe images in [0, 1].
      train_index: the rows of the training split that were drawn ``[n]``.
    """

    x_train: Float[Array, "n 28 28 1"]
    y_train: Int[np.ndarray, " n"]
    x_probe: Float[Array, "n_p 28 28 1"]
    y_probe: Int[np.ndarray, " n_p"]
    train_images: Float[Array, "n 28 28 1"]
    probe_images: Float[Array, "n_p 28 28 1"]
    train_index: Int[np.ndarray, " n"]


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


def images(x: np.ndarray) -> jax.Array:
    """uint8 ``[n, h, w]`` → float32 ``[n, 28, 28, 1]`` in [0, 1] (bilinear upsampling when smaller)."""
    out = jnp.asarray(x, jnp.float32)[..., None] / 255.0
    if out.shape[1:3] != (SIDE, SIDE):
        out = jax.image.resize(out, (out.shape[0], SIDE, SIDE, 1), method="bilinear")
    return out


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
    x_train_raw, x_probe_raw = images(train_split.x[train_idx]), images(test_split.x[probe_idx])
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
