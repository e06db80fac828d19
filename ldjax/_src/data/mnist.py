"""MNIST from the official IDX files (or their parsed ``.npz`` form), and scikit-learn's 8x8 digits.

The IDX format (LeCun et al.): a big-endian header ``magic, dim_0, ..., dim_{d-1}`` (int32 each)
followed by the unsigned bytes. Images have magic 2051 (``0x00000803``: ubyte, 3 dimensions),
labels 2049 (``0x00000801``: ubyte, 1 dimension). Files may be gzip-compressed (``.gz``).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import zlib
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO
from typing import Literal

import numpy as np

from ldjax._src.data import files
from ldjax._src.data.dataset import MNIST_CLASSES
from ldjax._src.data.dataset import Dataset
from ldjax._src.data.errors import DataCorrupt
from ldjax._src.data.errors import DataUnavailable
from ldjax._src.data.npy import read_npz

Split = Literal["train", "test"]

#: Official file stems per split: (images, labels).
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: Number of examples in the official files.
MNIST_SIZES: dict[str, int] = {"train": 60000, "test": 10000}
#: Size of each uncompressed official IDX file: the header, then one byte per pixel or label.
MNIST_IDX_BYTES: dict[str, int] = {
    "train-images-idx3-ubyte": 16 + 60000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60000,
    "t10k-images-idx3-ubyte": 16 + 10000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10000,
}
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
SIDE = 28


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
      DataCorrupt: wrong magic number, a negative dimension, or the length disagrees with the header.

    Example:
      >>> import numpy as np
      >>> from ldjax.data import parse_idx
      >>> raw = np.array([2049, 3], ">i4").tobytes() + bytes([1, 2, 3])
      >>> parse_idx(raw, magic=2049, source="labels").tolist()
      [1, 2, 3]
    """
    return _read_idx_stream(io.BytesIO(data), magic=magic, source=source, check=lambda shape: None)


def _read_idx_stream(
    stream: BinaryIO, *, magic: int, source: str, check: Callable[[tuple[int, ...]], str | None]
) -> np.ndarray:
    """Read the header, let ``check`` refuse its shape, then read exactly the bytes it declares, no more."""
    ndim = magic & 0xFF
    head = stream.read(4 + 4 * ndim)
    if len(head) < 4:
        raise DataCorrupt(f"{source}: truncated IDX file ({len(head)} bytes, no header)")
    found = int.from_bytes(head[:4], "big")
    if found != magic:
        raise DataCorrupt(f"{source}: wrong IDX magic number {found} (expected {magic})")
    if len(head) < 4 + 4 * ndim:
        raise DataCorrupt(f"{source}: truncated IDX header ({len(head)} bytes, expected {4 + 4 * ndim})")
    shape = tuple(int(d) for d in np.frombuffer(head, ">i4", count=ndim, offset=4))
    if any(d < 0 for d in shape):
        raise DataCorrupt(f"{source}: IDX header declares a negative dimension {shape}")
    problem = check(shape)
    if problem is not None:
        raise DataCorrupt(f"{source}: {problem}")
    array = np.empty(shape, np.uint8)
    got = files.read_into(stream, array)
    needed = len(head) + array.size
    if got != array.size:
        raise DataCorrupt(
            f"{source}: IDX file truncated: its header {shape} needs {needed} bytes, it holds {len(head) + got}"
        )
    if stream.read(1):
        raise DataCorrupt(f"{source}: IDX file has trailing bytes: its header {shape} needs {needed} bytes")
    return array


def _count_problem(n: int, kind: str, split: str, allow_subset: bool) -> str | None:
    """What is wrong with ``n`` images (or labels) for the official ``split``, or ``None``."""
    official = MNIST_SIZES[split]
    if n > official:
        return f"{n} {kind}, more than the {official} of the official MNIST {split} set"
    if kind == "images" and n < official and not allow_subset:
        return (
            f"{n} images, fewer than the {official} of the official MNIST {split} set; "
            f"pass allow_subset=True to load a smaller file in the official format"
        )
    return None


def _read_idx(file: Path, magic: int, split: str, allow_subset: bool) -> np.ndarray:
    """One IDX file, raw or gzip-compressed, streamed: the header is checked before anything is decompressed."""

    def check(shape: tuple[int, ...]) -> str | None:
        if magic == IMAGES_MAGIC and shape[1:] != (SIDE, SIDE):
            return f"MNIST images must be [n, {SIDE}, {SIDE}], got {shape}"
        return _count_problem(shape[0], "images" if magic == IMAGES_MAGIC else "labels", split, allow_subset)

    with files.open_data(file) as handle:
        gz = handle.read(2) == b"\x1f\x8b"
        handle.seek(0)
        if not gz and file.suffix == ".gz":
            raise DataCorrupt(f"{file}: not a gzip file (expected the gzip magic bytes 1f 8b)")
        try:
            with gzip.GzipFile(fileobj=handle, mode="rb") if gz else contextlib.nullcontext(handle) as stream:
                return _read_idx_stream(stream, magic=magic, source=str(file), check=check)
        except (OSError, EOFError, zlib.error) as error:
            what = "truncated or corrupt gzip data" if gz else "cannot be read"
            raise DataCorrupt(f"{file}: {what} ({error})") from None


def _check_pair(images: np.ndarray, labels: np.ndarray, source: str) -> None:
    if labels.shape != images.shape[:1]:
        raise DataCorrupt(
            f"{source}: {images.shape[0]} images but labels of shape {labels.shape}: expected one label each"
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) > 9):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataCorrupt(f"{source}: label {bad} out of range (MNIST labels are 0..9)")


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    return np.array([magic, *array.shape], ">i4").tobytes() + np.ascontiguousarray(array, np.uint8).tobytes()


def _verify_full_size(split: str, images: np.ndarray, labels: np.ndarray, source: str) -> bool:
    """Full-size data (60000 / 10000 examples) must match the official md5s; a requested subset is not checked."""
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


def _load_npz(file: Path, split: str, allow_subset: bool) -> tuple[np.ndarray, np.ndarray]:
    def check(name: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        if name == "x":
            if dtype != np.uint8:
                return f"x must be uint8 pixels, got dtype {dtype}"
            if len(shape) != 3 or shape[1:] != (SIDE, SIDE):
                return f"MNIST images must be [n, {SIDE}, {SIDE}], got {shape}"
            return _count_problem(shape[0], "images", split, allow_subset)
        if dtype.kind not in "iu":
            return f"y must hold integer labels, got dtype {dtype}"
        if len(shape) != 1:
            return f"y must be one label per image [n], got shape {shape}"
        return _count_problem(shape[0], "labels", split, allow_subset)

    arrays = read_npz(file, ("x", "y"), check)
    x, y = arrays["x"], arrays["y"]
    _check_pair(x, y, str(file))
    return x, y.astype(np.uint8)


def _find_idx(directory: Path, stem: str) -> Path | None:
    return files.find_first([directory], [stem, stem + ".gz"])


def _verify_download(stem: str):
    size = MNIST_IDX_BYTES[stem]

    def verify(tmp: Path) -> str | None:
        digest = hashlib.md5()
        try:
            with gzip.open(tmp, "rb") as handle:
                content = handle.read(size + 1)  # bounded: a gzip bomb is cut off here
        except (OSError, EOFError, zlib.error) as error:
            return f"not a valid gzip file ({error})"
        digest.update(content)
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
    allow_subset: bool = False,
) -> Dataset:
    """Load the MNIST training or test set.

    Looks, in order, in ``path`` (only there when given), ``$LDJAX_DATA_DIR``, then the cache
    ``$LDJAX_CACHE_DIR`` or ``~/.cache/ldjax`` (each directory and its ``mnist/`` subdirectory), for
    the parsed ``mnist_{split}.npz`` (``x`` uint8 ``[n, 28, 28]``, ``y`` ``[n]``) or the official
    IDX files (``train-images-idx3-ubyte[.gz]`` ...). If neither is found and ``download`` is true,
    the official ``.gz`` files are downloaded into ``path`` or ``<cache>/mnist``, verified against
    the official md5 of their content, and moved into place atomically. Full-size data (60,000 /
    10,000 images) is always checked against the official md5s, whatever its form.

    Every header is checked before data is read or decompressed: a file declaring more images than
    the official set, a negative dimension or another image size is refused without reading it, and
    a ``.gz`` is decompressed only up to the size its header declares.

    Args:
      split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
      path: a directory holding the files; only it is searched (and downloaded into).
      download: whether to download missing files.
      base_url: download location(s) ending in ``/``; default :data:`MNIST_URLS`.
      allow_subset: accept a consistent file with fewer images than the official set (its name then
        says "subset"); by default such a file is refused, since it is not MNIST.

    Returns:
      :class:`Dataset` with ``x`` uint8 ``[n, 28, 28]``, ``y`` uint8 ``[n]``, and ``files``: the files
      read, with their SHA-256 (:func:`ldjax.data.provenance`).

    Raises:
      DataUnavailable: not found and not downloadable (the message names the files and directory).
      DataCorrupt: a file that is there but unusable (a dangling link, a directory, unreadable),
        wrong magic number or header, wrong length, labels out of range, checksum mismatch, fewer
        images than the official set without ``allow_subset``; the message names the file.

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
        if files.probe(npz):
            x, y = _load_npz(npz, split, allow_subset)
            return _dataset(split, x, y, str(npz), (npz,))
        images_file, labels_file = _find_idx(directory, image_stem), _find_idx(directory, label_stem)
        if images_file is not None and labels_file is not None:
            return _from_idx(split, images_file, labels_file, allow_subset)
    target = files.download_dir(path, "mnist")
    if not download:
        raise files.unavailable(
            f"MNIST {split}", [npz_name, image_stem + "[.gz]", label_stem + "[.gz]"], dirs, target
        )
    urls = (base_url,) if isinstance(base_url, str) else tuple(base_url or MNIST_URLS)
    for stem in (image_stem, label_stem):
        dest = target / (stem + ".gz")
        if not files.probe(dest):
            files.download(
                [u + stem + ".gz" for u in urls], dest, verify=_verify_download(stem), what=f"MNIST {split}"
            )
    return _from_idx(split, target / (image_stem + ".gz"), target / (label_stem + ".gz"), allow_subset)


def _from_idx(split: str, images_file: Path, labels_file: Path, allow_subset: bool) -> Dataset:
    images = _read_idx(images_file, IMAGES_MAGIC, split, allow_subset)
    labels = _read_idx(labels_file, LABELS_MAGIC, split, allow_subset)
    _check_pair(images, labels, f"{images_file} / {labels_file.name}")
    return _dataset(split, images, labels, str(images_file.parent), (images_file, labels_file))


def _dataset(split: str, x: np.ndarray, y: np.ndarray, source: str, read: Sequence[Path]) -> Dataset:
    official = _verify_full_size(split, x, y, source)
    what = "official" if official else "subset in the official format"
    name = f"MNIST {split} ({what}, {x.shape[0]} images)"
    return Dataset(x, y, name, source, MNIST_CLASSES, tuple(files.record(f) for f in read))


DIGITS_TRAIN = 1000


def load_digits(split: Literal["train", "test", "all"] = "all") -> Dataset:
    """scikit-learn's bundled handwritten digits: 1,797 real 8x8 images (UCI), no files or download.

    Pixel values 0..16 are rescaled to 0..255 (``round(v * 255 / 16)``) so every loader returns
    the same range. ``"train"`` is the first 1,000 images and ``"test"`` the remaining 797.

    Returns:
      :class:`Dataset` with ``x`` uint8 ``[n, 8, 8]``, ``y`` uint8 ``[n]``, and ``files``: scikit-learn's
      ``digits.csv.gz`` with its SHA-256.

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
        import sklearn.datasets
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
    csv = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    read = (files.record(csv),) if csv.is_file() else ()
    return Dataset(
        x, y, name, "scikit-learn bundled copy (sklearn.datasets.load_digits)", MNIST_CLASSES, read
    )


def load_mnist_or_digits(
    split: Split = "train",
    *,
    path: str | os.PathLike | None = None,
    download: bool = False,
    base_url: str | Sequence[str] | None = None,
    allow_subset: bool = False,
) -> Dataset:
    """MNIST if it is found (or downloaded); scikit-learn's digits only when no data location was named.

    The digits stand in only when no data location was named (``path`` is ``None`` and
    ``$LDJAX_DATA_DIR`` is unset) and MNIST is in neither the cache nor (with ``download``) the
    network. A location that was named but holds no MNIST raises :class:`DataUnavailable`; a
    broken MNIST file anywhere raises :class:`DataCorrupt`. ``Dataset.name`` says which data set
    was loaded.

    Example:
      >>> from ldjax.data import load_mnist_or_digits
      >>> load_mnist_or_digits("test", path="/nonexistent")  # a named place without MNIST: no fallback
      Traceback (most recent call last):
      ...
      ldjax._src.data.errors.DataUnavailable: MNIST test: none of ... so MNIST must be there)
    """
    _check_split(split)
    try:
        return load_mnist(split, path=path, download=download, base_url=base_url, allow_subset=allow_subset)
    except DataUnavailable as error:
        if not files.configured(path):
            return load_digits(split)
        where = f"path {str(path)!r}" if path is not None else f"${files.DATA_DIR_ENV}"
        raise DataUnavailable(
            f"{error} (no fallback to the scikit-learn digits: {where} was given, so MNIST must be there)"
        ) from None
