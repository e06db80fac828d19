"""The labelled data set returned by every real-data loader, and the record of the files it came from."""

from __future__ import annotations

from typing import Any
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


class DataFile(NamedTuple):
    """One file a data set was read from.

    Attributes:
      path: the absolute path the loader opened (a symbolic link is recorded as the link, not its target).
      sha256: hex SHA-256 of the file's bytes as stored (the compressed bytes for ``.gz`` and ``.npz``).
      bytes: the file's size.
    """

    path: str
    sha256: str
    bytes: int


class Dataset(NamedTuple):
    """Images with integer labels, and a plain statement of what they are and where they came from.

    Attributes:
      x: ``uint8 [n, H, W]`` (grey) or ``[n, H, W, 3]`` (RGB, channels last), pixel values 0..255.
      y: ``uint8 [n]`` class indices.
      name: what was loaded, e.g. ``"MNIST test (official, 10000 images)"``.
      source: where it was read from (a file or directory, or ``"scikit-learn bundled copy"``).
      classes: class names, ``classes[y[i]]``.
      files: every file that was read, with its SHA-256 (see :func:`provenance`).
    """

    x: np.ndarray
    y: np.ndarray
    name: str
    source: str
    classes: tuple[str, ...] = MNIST_CLASSES
    files: tuple[DataFile, ...] = ()


class SoftLabels(NamedTuple):
    """Per-example label distributions (e.g. CIFAR-10H).

    Attributes:
      probs: ``float64 [n, k]``, rows sum to 1.
      name: what was loaded.
      source: the file it was read from.
      files: the file that was read, with its SHA-256 (see :func:`provenance`).
    """

    probs: np.ndarray
    name: str
    source: str
    files: tuple[DataFile, ...] = ()


def provenance(*data: Any) -> list[dict[str, Any]]:
    """The files behind loaded data sets, as JSON-ready records for ``results.json``.

    Args:
      *data: objects with a ``files`` attribute (:class:`Dataset`, :class:`SoftLabels`,
        :class:`~ldjax.data.Cifar3`) or :class:`DataFile` records.

    Returns:
      One ``{"path", "sha256", "bytes"}`` dict per distinct file, in the order first seen.

    Example:
      >>> from ldjax.data import load_digits, provenance
      >>> [(r["path"].endswith("digits.csv.gz"), len(r["sha256"])) for r in provenance(load_digits())]
      [(True, 64)]
    """
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for item in data:
        for file in (item,) if isinstance(item, DataFile) else item.files:
            records.setdefault((file.path, file.sha256), file._asdict())
    return list(records.values())
