"""CIFAR-10H: human label distributions for the 10,000 CIFAR-10 test images (Peterson et al., ICCV 2019).

One official file, ``cifar10h-probs.npy`` (float ``[10000, 10]``, row ``i`` pairs with CIFAR-10 test image
``i``), read without pickles: its ``.npy`` header is checked before any data is read, then its rows, then its
official sha256. The images themselves are in :mod:`ldjax._src.data.cifar10`.
"""

import os
from pathlib import Path

import numpy as np

from ldjax._src.data import files
from ldjax._src.data.dataset import DataFile
from ldjax._src.data.dataset import SoftLabels
from ldjax._src.data.errors import DataCorrupt
from ldjax._src.data.npy import read_npy

CIFAR10H_URL = "https://raw.githubusercontent.com/jcpeterson/cifar-10h/master/data/cifar10h-probs.npy"
#: sha256 of the official ``cifar10h-probs.npy`` (jcpeterson/cifar-10h, see shared/data/README.md).
CIFAR10H_SHA256 = "436ae98620e00073f9d08585ac870573b588853e7af9f54eb1647408114af77d"
CIFAR10H_NAMES = ("cifar10h-probs.npy", "cifar10h_probs.npy")


def _check_probs(probs: np.ndarray, file: Path) -> None:
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise DataCorrupt(f"{file}: CIFAR-10H probabilities must lie in [0, 1]")
    worst = float(np.max(np.abs(probs.sum(axis=1) - 1.0)))
    if worst > 1e-6:
        raise DataCorrupt(f"{file}: CIFAR-10H rows must sum to 1 (largest deviation {worst:.3g})")


def _read_probs(file: Path) -> tuple[np.ndarray, DataFile]:
    """The checked CIFAR-10H array and the file's record; :class:`DataCorrupt` naming the file otherwise."""

    def check(name: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        if dtype.kind != "f" or shape != (10000, 10):
            return f"CIFAR-10H probabilities must be float [10000, 10], got {dtype} {shape}"
        return None

    probs = read_npy(file, check, name="probs")
    _check_probs(probs, file)
    record = files.record(file)
    if record.sha256 != CIFAR10H_SHA256:
        raise DataCorrupt(f"{file}: checksum mismatch: sha256 {record.sha256}, official {CIFAR10H_SHA256}")
    return probs, record


def _verify_probs_file(file: Path) -> str | None:
    try:
        _read_probs(file)
    except DataCorrupt as error:
        return str(error).removeprefix(f"{file}: ")
    return None


def load_cifar10h(
    *,
    path: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str | None = None,
) -> SoftLabels:
    """Load CIFAR-10H: human label distributions for the 10,000 CIFAR-10 test images, in test order.

    Looks for ``cifar10h-probs.npy`` (official name) or ``cifar10h_probs.npy`` in ``path`` (only
    there when given), ``$LDJAX_DATA_DIR``, then the cache (each directory and its ``cifar10h/``
    subdirectory), else downloads it from the authors' repository. The ``.npy`` header is checked
    before any data is read (never with pickles), then the rows, then the official sha256.

    Args:
      path: a directory holding the file; only it is searched (and downloaded into).
      download: whether to download a missing file (800 kB).
      base_url: the file's URL; default :data:`CIFAR10H_URL`.

    Returns:
      :class:`SoftLabels` with ``probs`` float64 ``[10000, 10]`` (row ``i`` pairs with CIFAR-10 test
      image ``i``) and ``files``, the file read with its SHA-256.

    Raises:
      DataUnavailable: not found and not downloadable.
      DataCorrupt: an unusable file (dangling link, directory, ...), wrong header, shape or dtype, rows
        not summing to 1, checksum mismatch; the message names the file.

    Example:
      >>> from ldjax.data import load_cifar10h
      >>> h = load_cifar10h(download=False)  # doctest: +SKIP
      >>> h.probs.shape  # doctest: +SKIP
      (10000, 10)
    """
    dirs = files.search_dirs(path, "cifar10h")
    file = files.find_first(dirs, CIFAR10H_NAMES)
    if file is None:
        target = files.download_dir(path, "cifar10h")
        if not download:
            raise files.unavailable("CIFAR-10H", CIFAR10H_NAMES, dirs, target)
        file = files.download(
            [base_url or CIFAR10H_URL],
            target / CIFAR10H_NAMES[0],
            verify=_verify_probs_file,
            what="CIFAR-10H",
        )
    probs, record = _read_probs(file)
    name = "CIFAR-10H human label distributions (official, 10000 x 10)"
    return SoftLabels(probs.astype(np.float64), name, str(file), (record,))
