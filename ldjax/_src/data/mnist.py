"""MNIST from the official IDX files (or their parsed ``.npz`` form), and scikit-learn's 8x8 digits.

The IDX format (LeCun et al.): a big-endian header ``magic, dim_0, ..., dim_{d-1}`` (int32 each)
followed by the unsigned bytes. Images have magic 2051 (``0x00000803``: ubyte, 3 dimensions),
labels 2049 (``0x00000801``: ubyte, 1 dimension). Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from ldjax._src.data import files
from ldjax._src.data.dataset import MNIST_CLASSES
from ldjax._src.data.dataset import Dataset
from ldjax._src.data.errors import DataCorrupt
from ldjax._src.data.errors import DataUnavailable
from ldjax._src.data.files import read_xy_npz

Split = Literal["train", "test"]

#: Official file stems per split: (images, labels).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Number of examples in the official files.
MNIST_SIZES: dict[str, int] = {"train": 60000, "test": 10000}
#: Official md5 of the UNCOMPRESSED IDX files (yann.lecun.com/exdb/mnist; see shared/data/README.md).
#: Checking the decompressed bytes makes mirrors whose gzip headers differ acceptable.
MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: Where the official files are served: the PyTorch mirror (the original site is often down), then the original.
MNIST_URLS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def _check_split(split: str) -> None:
    if split not in MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def parse_idx(data: bytes, *, magic: int, source: str) -> np.ndarray:
    """Parse the bytes of one uncompressed IDX file of unsigned bytes.

    Args:
      data: the whole file.
      magic: the expected magic number (2051 images, 2049 labels).
      source: the file name, for error messages.

    Returns:
      ``uint8`` array of the shape the header declares.

    Raises:
      DataCorrupt: wrong magic number, or the length disagrees with the header.

    Example:
      >>> import numpy as np
      >>> from ldjax.data import parse_idx
      >>> raw = np.array([2049, 3], ">i4").tobytes() + bytes([1, 2, 3])
      >>> parse_idx(raw, magic=2049, source="labels").tolist()
      [1, 2, 3]
    """
    if len(data) < 4:
        raise DataCorrupt(f"{source}: truncated IDX file ({len(data)} bytes, no header)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DataCorrupt(f"{source}: wrong IDX magic number {found} (expected {magic})")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataCorrupt(f"{source}: truncated IDX header ({len(data)} bytes, expected {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">i4", count=ndim, offset=4))
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataCorrupt(
            f"{source}: IDX file {kind}: {len(data)} bytes but its header {shape} needs {expected}"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape).copy()


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        if path.suffix == ".gz":
            raise DataCorrupt(f"{path}: not a gzip file (expected the gzip magic bytes 1f 8b)")
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataCorrupt(f"{path}: truncated or corrupt gzip data ({error})") from None


def _check_pair(images: np.ndarray, labels: np.ndarray, source: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataCorrupt(f"{source}: MNIST images must be [n, 28, 28], got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataCorrupt(
            f"{source}: {images.shape[0]} images but labels of shape {labels.shape}: expected one label each"
        )
    if labels.size and int(labels.max()) > 9:
        raise DataCorrupt(f"{source}: label {int(labels.max())} out of range (MNIST labels are 0..9)")


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return np.array([magic, *array.shape], ">i4").tobytes() + np.ascontiguousarray(array, np.uint8).tobytes()


def _verify_full_size(split: str, images: np.ndarray, labels: np.ndarray, source: str) -> bool:
    """Full-size data (60000 / 10000 examples) must match the official md5s; smaller data is not checked."""
    if images.shape[0] != MNIST_SIZES[split]:
        return False
    image_stem, label_stem = MNIST_FILES[split]
    for stem, array, magic in ((image_stem, images, IMAGES_MAGIC), (label_stem, labels, LABELS_MAGIC)):
        got = hashlib.md5(_idx_bytes(array, magic)).hexdigest()
        if got != MNIST_MD5[stem]:
            raise DataCorrupt(
                f"{source}: checksum mismatch: the {stem} content has md5 {got}, the official md5 is "
                f"{MNIST_MD5[stem]}"
            )
    return True


def _load_npz(file: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_xy_npz(file)
    if x.dtype != np.uint8:
        raise DataCorrupt(f"{file}: x must be uint8 pixels, got dtype {x.dtype}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataCorrupt(f"{file}: y must hold integer labels, got dtype {y.dtype}")
    if y.size and int(y.min()) < 0:
        raise DataCorrupt(f"{file}: label {int(y.min())} out of range (MNIST labels are 0..9)")
    _check_pair(x, y, str(file))
    return x, y.astype(np.uint8)


def _find_idx(directory: Path, stem: str) -> Path | None:
    return files.find_first([directory], [stem, stem + ".gz"])


def _verify_download(stem: str):
    def verify(tmp: Path) -> str | None:
        digest = hashlib.md5()
        try:
            with gzip.open(tmp, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except (OSError, EOFError, zlib.error) as error:
            return f"not a valid gzip file ({error})"
        if digest.hexdigest() != MNIST_MD5[stem]:
            return f"checksum mismatch: md5 of the content {digest.hexdigest()}, official {MNIST_MD5[stem]}"
        return None

    return verify


def load_mnist(
    split: Split = "train",
    *,
    path: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str | Sequence[str] | None = None,
) -> Dataset:
    """Load the MNIST training or test set.

    Looks, in order, in ``path`` (only there when given), ``$LDJAX_DATA_DIR``, then the cache
    ``$LDJAX_CACHE_DIR`` or ``~/.cache/ldjax`` (each directory and its ``mnist/`` subdirectory), for
    the parsed ``mnist_{split}.npz`` (``x`` uint8 ``[n, 28, 28]``, ``y`` ``[n]``) or the official
    IDX files (``train-images-idx3-ubyte[.gz]`` ...). If neither is found and ``download`` is true,
    the official ``.gz`` files are downloaded into ``path`` or ``<cache>/mnist``, verified against
    the official md5 of their content, and moved into place atomically. Full-size data (60,000 /
    10,000 images) is always checked against the official md5s, whatever its form.

    Args:
      split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
      path: a directory holding the files; only it is searched (and downloaded into).
      download: whether to download missing files.
      base_url: download location(s) ending in ``/``; default :data:`MNIST_URLS`.

    Returns:
      :class:`Dataset` with ``x`` uint8 ``[n, 28, 28]`` and ``y`` uint8 ``[n]``.

    Raises:
      DataUnavailable: not found and not downloadable (the message names the files and directory).
      DataCorrupt: wrong magic number, wrong length, labels out of range, checksum mismatch.

    Example:
      >>> from ldjax.data import load_mnist
      >>> test = load_mnist("test", download=False)  # doctest: +SKIP
      >>> test.x.shape, test.name  # doctest: +SKIP
      ((10000, 28, 28), 'MNIST test (official, 10000 images)')
    """
    _check_split(split)
    image_stem, label_stem = MNIST_FILES[split]
    npz_name = f"mnist_{split}.npz"
    dirs = files.search_dirs(path, "mnist")
    for directory in dirs:
        npz = directory / npz_name
        if npz.is_file():
            x, y = _load_npz(npz, split)
            return _dataset(split, x, y, str(npz))
        images_file, labels_file = _find_idx(directory, image_stem), _find_idx(directory, label_stem)
        if images_file is not None and labels_file is not None:
            return _from_idx(split, images_file, labels_file)
    target = files.download_dir(path, "mnist")
    if not download:
        raise files.unavailable(
            f"MNIST {split}", [npz_name, image_stem + "[.gz]", label_stem + "[.gz]"], dirs, target
        )
    urls = (base_url,) if isinstance(base_url, str) else tuple(base_url or MNIST_URLS)
    for stem in (image_stem, label_stem):
        dest = target / (stem + ".gz")
        if not dest.is_file():
            files.download(
                [u + stem + ".gz" for u in urls], dest, verify=_verify_download(stem), what=f"MNIST {split}"
            )
    return _from_idx(split, target / (image_stem + ".gz"), target / (label_stem + ".gz"))


def _from_idx(split: str, images_file: Path, labels_file: Path) -> Dataset:
    images = parse_idx(_read_maybe_gzip(images_file), magic=IMAGES_MAGIC, source=str(images_file))
    labels = parse_idx(_read_maybe_gzip(labels_file), magic=LABELS_MAGIC, source=str(labels_file))
    _check_pair(images, labels, f"{images_file} / {labels_file.name}")
    return _dataset(split, images, labels, str(images_file.parent))


def _dataset(split: str, x: np.ndarray, y: np.ndarray, source: str) -> Dataset:
    official = _verify_full_size(split, x, y, source)
    what = "official" if official else "subset in the official format"
    return Dataset(x, y, f"MNIST {split} ({what}, {x.shape[0]} images)", source, MNIST_CLASSES)


DIGITS_TRAIN = 1000


def load_digits(split: Literal["train", "test", "all"] = "all") -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 real 8x8 images (UCI), no files or download.

    Pixel values 0..16 are rescaled to 0..255 (``round(v * 255 / 16)``) so every loader returns
    the same range. ``"train"`` is the first 1,000 images and ``"test"`` the remaining 797.

    Returns:
      :class:`Dataset` with ``x`` uint8 ``[n, 8, 8]``, ``y`` uint8 ``[n]``.

    Raises:
      DataUnavailable: scikit-learn is not installed (``pip install 'ldjax[digits]'``).

    Example:
      >>> from ldjax.data import load_digits
      >>> d = load_digits()
      >>> d.x.shape, d.x.dtype.name, int(d.x.max())
      ((1797, 8, 8), 'uint8', 255)
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataUnavailable(
            "scikit-learn digits: scikit-learn is not installed (pip install 'ldjax[digits]')"
        ) from None
    bunch = sk_load_digits()
    x = np.rint(np.asarray(bunch.images) * (255.0 / 16.0)).astype(np.uint8)
    y = np.asarray(bunch.target).astype(np.uint8)
    part = {"train": slice(0, DIGITS_TRAIN), "test": slice(DIGITS_TRAIN, None), "all": slice(None)}[split]
    x, y = x[part], y[part]
    name = f"scikit-learn digits 8x8 ({split}, {x.shape[0]} images)"
    return Dataset(x, y, name, "scikit-learn bundled copy (sklearn.datasets.load_digits)", MNIST_CLASSES)


def load_mnist_or_digits(
    split: Split = "train",
    *,
    path: str | os.PathLike | None = None,
    download: bool = False,
    base_url: str | Sequence[str] | None = None,
) -> Dataset:
    """MNIST when it can be found (or downloaded, if ``download``); otherwise scikit-learn's digits.

    ``Dataset.name`` says which one was loaded; a corrupt MNIST file still raises
    :class:`DataCorrupt` (a broken file is never silently replaced by other data).

    Example:
      >>> from ldjax.data import load_mnist_or_digits
      >>> d = load_mnist_or_digits("test", path="/nonexistent")
      >>> d.name
      'scikit-learn digits 8x8 (test, 797 images)'
    """
    _check_split(split)
    try:
        return load_mnist(split, path=path, download=download, base_url=base_url)
    except DataUnavailable:
        return load_digits(split)
