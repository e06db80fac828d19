"""Noisy CIFAR-3 for :mod:`ldjax._src.experiments.cifar3_paths`: train / validation / test parts of three
CIFAR-10 test classes with CIFAR-10H's p*, exactly ``noise`` of each part's labels flipped."""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import numpy as np

from ldjax._src.data.cifar3 import load_cifar3
from ldjax._src.data.dataset import provenance
from ldjax._src.data.gaussian import symmetric_label_noise
from ldjax._src.experiments.cifar3_paths.config import Config


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
    """Shuffle CIFAR-3 and split it into train / val / test, then flip exactly ``noise`` of each split's labels.

    The test part is every remaining image, or the first ``config.test_size`` of them when that is > 0.
    """
    noise = config.noise if noise is None else noise
    k_perm, *k_noise = jax.random.split(jax.random.key(config.data_seed), 4)
    d = load_cifar3(config.classes, noise=0.0, key=k_perm, path=data_dir)
    n = d.x.shape[0]
    if config.train_size + config.val_size >= n:
        raise ValueError(
            f"train_size + val_size must leave test images out of {n}, got {config.train_size} + {config.val_size}"
        )
    rest = n - config.train_size - config.val_size
    if not 0 <= config.test_size <= rest:
        raise ValueError(
            f"test_size must be in [0, {rest}] (0: all {rest} remaining images), got {config.test_size}"
        )
    perm = np.asarray(jax.random.permutation(k_perm, n))
    parts = np.split(perm, [config.train_size, config.train_size + config.val_size])
    if config.test_size:
        parts[2] = parts[2][: config.test_size]
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
