"""The labelled data set returned by every real-data loader."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MNIST_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


class Dataset(NamedTuple):
    """Images with integer labels, and a plain statement of what they are and where they came from.

    Attributes:
      x: ``uint8 [n, H, W]`` (grey) or ``[n, H, W, 3]`` (RGB, channels last), pixel values 0..255.
      y: ``uint8 [n]`` class indices.
      name: what was loaded, e.g. ``"MNIST test (official, 10000 images)"``.
      source: where it was read from (a file or directory, or ``"scikit-learn bundled copy"``).
      classes: class names, ``classes[y[i]]``.
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    source: str
    classes: tuple[str, ...] = MNIST_CLASSES


class SoftLabels(NamedTuple):
    """Per-example label distributions (e.g. CIFAR-10H).

    Attributes:
      probs: ``float64 [n, k]``, rows sum to 1.
      name: what was loaded.
      source: the file it was read from.
    """

    probs: np.ndarray
    name: str
    source: str
