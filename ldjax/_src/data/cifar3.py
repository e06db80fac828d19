"""Noisy CIFAR-3: three CIFAR-10 test classes with human label distributions p* (CIFAR-10H) and label noise.

Ren, Guo & Sutherland (ICLR 2022) study learning paths on CIFAR-10 test images, whose CIFAR-10H
annotations give an estimate of the true label distribution p*. Restricted to three classes,
p* is renormalised over them and every prediction lives on a 2-simplex.
"""

import os
from collections.abc import Sequence
from typing import NamedTuple

import jax
import numpy as np

from ldjax._src.data.cifar10 import load_cifar10
from ldjax._src.data.cifar10h import load_cifar10h
from ldjax._src.data.dataset import CIFAR10_CLASSES
from ldjax._src.data.dataset import DataFile
from ldjax._src.data.gaussian import symmetric_label_noise


class Cifar3(NamedTuple):
    """Noisy CIFAR-3.

    Attributes:
      x: images ``float32 [n, 32, 32, 3]`` scaled to [0, 1] then standardised per channel.
      images: the raw images ``uint8 [n, 32, 32, 3]`` (for display).
      y_true: the official CIFAR-10 label mapped to 0..2, ``int32 [n]``.
      y: the training label after noise, ``int32 [n]``.
      flipped: ``y != y_true``, ``bool [n]``.
      p_star: CIFAR-10H distributions renormalised over the three classes, ``float64 [n, 3]``.
      index: position of each image in the official CIFAR-10 test set (its sample ID), ``int [n]``.
      classes: the three class names.
      name: a plain description of the data.
      files: the CIFAR-10 and CIFAR-10H files read, with their SHA-256 (:func:`ldjax.data.provenance`).
    """

    x: np.ndarray
    images: np.ndarray
    y_true: np.ndarray
    y: np.ndarray
    flipped: np.ndarray
    p_star: np.ndarray
    index: np.ndarray
    classes: tuple[str, ...]
    name: str
    files: tuple[DataFile, ...] = ()


def renormalise(probs: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Restrict distributions ``[n, K]`` to ``classes`` and renormalise each row to sum to 1.

    A row with no mass on any of the classes becomes uniform over them.

    Example:
      >>> import numpy as np
      >>> from ldjax.data import renormalise
      >>> renormalise(np.array([[0.5, 0.1, 0.1, 0.3]]), [0, 3]).round(3).tolist()
      [[0.625, 0.375]]
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probs must be [n, K], got shape {probs.shape}")
    idx = np.asarray(classes, dtype=int)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= probs.shape[1] or len(set(idx.tolist())) != idx.size:
        raise ValueError(f"classes must be distinct indices in [0, {probs.shape[1]}), got {list(classes)}")
    sub = probs[:, idx]
    total = sub.sum(axis=1, keepdims=True)
    uniform = np.full_like(sub, 1.0 / idx.size)
    return np.where(total > 0, sub / np.where(total > 0, total, 1.0), uniform)


def class_indices(classes: Sequence[str | int]) -> tuple[int, ...]:
    """CIFAR-10 class indices for names (``"airplane"``) or indices."""
    out = []
    for c in classes:
        if isinstance(c, str):
            if c not in CIFAR10_CLASSES:
                raise ValueError(
                    f"classes holds unknown CIFAR-10 class {c!r}: expected one of {CIFAR10_CLASSES}"
                )
            out.append(CIFAR10_CLASSES.index(c))
        else:
            out.append(int(c))
    if len(out) < 2 or len(set(out)) != len(out):
        raise ValueError(f"classes must name at least two distinct CIFAR-10 classes, got {tuple(classes)}")
    return tuple(out)


def load_cifar3(
    classes: Sequence[str | int] = ("airplane", "bird", "ship"),
    *,
    noise: float = 0.2,
    key: jax.Array,
    path: str | os.PathLike | None = None,
    download: bool = False,
) -> Cifar3:
    """CIFAR-10 test images of ``classes`` with CIFAR-10H p* and symmetric label noise.

    Exactly ``round(noise * n)`` labels are flipped, each to a different class
    (:func:`ldjax.data.symmetric_label_noise`).

    Args:
      classes: CIFAR-10 class names or indices (default airplane, bird, ship).
      noise: fraction of labels to flip.
      key: PRNG key for the noise.
      path: directory with ``cifar10_test.npz`` / ``cifar10h_probs.npy`` (default: the loaders' search
        order, ``$LDJAX_DATA_DIR`` first).
      download: whether the loaders may download missing files.

    Raises:
      DataUnavailable: CIFAR-10 or CIFAR-10H is missing.
      DataCorrupt: one of their files is unusable; the full official test set is required (no subset).

    Example:
      >>> import jax
      >>> from ldjax.data import load_cifar3
      >>> d = load_cifar3(key=jax.random.key(0))  # doctest: +SKIP
      >>> d.x.shape, int(d.flipped.sum())  # doctest: +SKIP
      ((3000, 32, 32, 3), 600)
    """
    idx = class_indices(classes)
    test = load_cifar10("test", path=path, download=download)
    human = load_cifar10h(path=path, download=download)
    y10 = np.asarray(test.y).astype(int)
    keep = np.flatnonzero(np.isin(y10, idx))
    remap = {c: i for i, c in enumerate(idx)}
    y_true = np.array([remap[c] for c in y10[keep]], dtype=np.int32)
    p_star = renormalise(human.probs[keep], idx)
    noisy, flipped = symmetric_label_noise(y_true, len(idx), noise, key=key)
    images = np.asarray(test.x[keep])
    x = images.astype(np.float32) / 255.0
    x = (x - x.mean(axis=(0, 1, 2))) / x.std(axis=(0, 1, 2))
    names = tuple(CIFAR10_CLASSES[c] for c in idx)
    name = (
        f"CIFAR-10 test images of {', '.join(names)} ({len(keep)} images, {test.name}) with CIFAR-10H p* "
        f"renormalised over the three classes; {int(np.sum(flipped))} labels ({noise:.0%}) flipped"
    )
    return Cifar3(
        x=x.astype(np.float32),
        images=images,
        y_true=y_true,
        y=np.asarray(noisy),
        flipped=np.asarray(flipped),
        p_star=p_star,
        index=keep,
        classes=names,
        name=name,
        files=test.files + human.files,
    )
