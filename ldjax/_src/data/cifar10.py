"""CIFAR-10 from the official python batches (or their parsed ``.npz`` form).

The official ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/{data_batch_1..5, test_batch}``:
Python pickles of ``{"data": uint8 [10000, 3072], "labels": [10000], ...}`` (rows are 1024 red,
1024 green, 1024 blue values, each a row-major 32x32 plane). Pickles can run arbitrary code when
loaded, so they are read with :class:`RestrictedUnpickler`, which admits only the numpy and builtin
globals that the format needs. The CIFAR-10H soft labels of the test images are in
:mod:`ldjax._src.data.cifar10h`.
"""

import hashlib
import io
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np

from ldjax._src.data import files
from ldjax._src.data.dataset import CIFAR10_CLASSES
from ldjax._src.data.dataset import Dataset
from ldjax._src.data.errors import DataCorrupt
from ldjax._src.data.errors import DataUnavailable
from ldjax._src.data.npy import read_npz
from ldjax._src.data.pickles import RefusedGlobal
from ldjax._src.data.pickles import RefusedStructure
from ldjax._src.data.pickles import RestrictedUnpickler

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: Official md5 of ``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
#: Images per official batch file, and in each split.
CIFAR10_BATCH_SIZE = 10000
CIFAR10_SIZES: dict[str, int] = {"train": 50000, "test": 10000}
#: Largest batch file accepted: 10,000 rows of 3,072 bytes, labels and file names, also when written
#: by Python 3 at protocol 2 (bytes as latin1 text, 1.5x); an official batch has about 31 MB.
CIFAR10_BATCH_MAX_BYTES = 64 << 20
#: sha256 of the official test set's content: ``test_batch``'s ``data`` (uint8 [10000, 3072], the red,
#: green and blue planes of each image) followed by its 10,000 labels as bytes. Computed from the
#: verified copy described in shared/data/README.md (CIFAR-10H agreement 99.21%, sample images and
#: labels matching independent sources); only the tarball's md5 is published.
CIFAR10_TEST_SHA256 = "9a4c74f5c8b6f2c4e13d3a1dfb43a5a8cda8a9da515e99fd620d2013a1a6287a"


def restricted_load(data: bytes, *, source: str, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure is a :class:`DataCorrupt` naming ``source``.

    ``encoding="latin1"`` reads the Python 2 pickles of the official CIFAR batches (numpy's
    recommended setting for Python 2 arrays); dictionary keys then come back as ``str``.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except (RefusedGlobal, RefusedStructure) as error:
        raise DataCorrupt(f"{source}: {error}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        RecursionError,
    ) as error:
        raise DataCorrupt(f"{source}: not a valid CIFAR pickle ({type(error).__name__}: {error})") from None


def _key(batch: dict, name: str) -> Any:
    for key in (name, name.encode()):
        if key in batch:
            return batch[key]
    return None


def read_cifar_batch(file: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one official CIFAR-10 python batch file safely.

    The file is refused before it is unpickled if it is larger than any batch can be
    (:data:`CIFAR10_BATCH_MAX_BYTES`), has too many opcodes or nests too deep; see
    :class:`RestrictedUnpickler`.

    Returns:
      ``x`` uint8 ``[n, 32, 32, 3]`` (HWC, RGB) and ``y`` uint8 ``[n]``, ``n <= 10000``.

    Raises:
      DataUnavailable: there is no file at ``file``.
      DataCorrupt: not a pickle of the expected layout, a refused global or structure, wrong sizes,
        labels outside 0..9, or something unusable at ``file`` (a directory, a dangling link, ...);
        the message names the file.

    Example:
      >>> from ldjax.data import read_cifar_batch
      >>> x, y = read_cifar_batch("cifar-10-batches-py/test_batch")  # doctest: +SKIP
    """
    file = Path(file)
    if not files.probe(file):
        raise DataUnavailable(f"{file}: no such file")
    with files.open_data(file, max_bytes=CIFAR10_BATCH_MAX_BYTES) as handle:
        try:
            raw = handle.read()
        except OSError as error:
            raise DataCorrupt(f"{file}: cannot be read ({error.strerror or error})") from None
    batch = restricted_load(raw, source=str(file))
    del raw
    if not isinstance(batch, dict):
        raise DataCorrupt(f"{file}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    data, labels = _key(batch, "data"), _key(batch, "labels")
    if data is None or labels is None:
        keys = sorted(repr(k)[:40] for k in batch)
        shown = f"{keys[:10]} and {len(keys) - 10} more" if len(keys) > 10 else f"{keys}"
        raise DataCorrupt(f"{file}: expected keys 'data' and 'labels', found {shown}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataCorrupt(f"{file}: 'data' must be uint8 [n, 3072], got {dtype} {shape}")
    if data.shape[0] > CIFAR10_BATCH_SIZE:
        raise DataCorrupt(
            f"{file}: {data.shape[0]} images, more than the {CIFAR10_BATCH_SIZE} of an official batch"
        )
    try:
        y = np.asarray(labels)
    except (TypeError, ValueError, OverflowError) as error:
        raise DataCorrupt(f"{file}: 'labels' is not a list of integers ({error})") from None
    if y.ndim != 1 or y.shape[0] != data.shape[0] or not np.issubdtype(y.dtype, np.integer):
        raise DataCorrupt(
            f"{file}: {data.shape[0]} images but 'labels' is {y.dtype} {y.shape}: expected one integer each"
        )
    if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
        raise DataCorrupt(
            f"{file}: label out of range [{int(y.min())}, {int(y.max())}] (CIFAR-10 labels are 0..9)"
        )
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return x, y.astype(np.uint8)


def _load_npz(file: Path, split: str, allow_subset: bool) -> tuple[np.ndarray, np.ndarray]:
    official = CIFAR10_SIZES[split]

    def check(name: str, shape: tuple[int, ...], dtype: np.dtype) -> str | None:
        if name == "x":
            if dtype != np.uint8 or len(shape) != 4 or shape[1:] != (32, 32, 3):
                return f"x must be uint8 [n, 32, 32, 3], got {dtype} {shape}"
            return _count_problem(shape[0], split, allow_subset)
        if dtype.kind not in "iu" or len(shape) != 1 or shape[0] > official:
            return f"y must be integer [n <= {official}], got {dtype} {shape}"
        return None

    arrays = read_npz(file, ("x", "y"), check)
    x, y = arrays["x"], arrays["y"]
    if y.shape != x.shape[:1]:
        raise DataCorrupt(f"{file}: y must be integer [{x.shape[0]}], got {y.dtype} {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
        raise DataCorrupt(
            f"{file}: label out of range [{int(y.min())}, {int(y.max())}] (CIFAR-10 labels are 0..9)"
        )
    return x, y.astype(np.uint8)


def _count_problem(n: int, split: str, allow_subset: bool) -> str | None:
    official = CIFAR10_SIZES[split]
    if n > official:
        return f"{n} images, more than the {official} of the official CIFAR-10 {split} set"
    if n < official and not allow_subset:
        return (
            f"{n} images, fewer than the {official} of the official CIFAR-10 {split} set; "
            f"pass allow_subset=True to load a smaller file in the official format"
        )
    return None


def _batch_dir(directory: Path, split: str) -> Path | None:
    """The directory holding all of ``split``'s batch files; ``DataCorrupt`` if only some are there."""
    for candidate in (directory / CIFAR10_DIR, directory):
        if candidate is not directory and not files.probe_dir(candidate):
            continue
        present = [name for name in CIFAR10_BATCHES[split] if files.probe(candidate / name)]
        if len(present) == len(CIFAR10_BATCHES[split]):
            return candidate
        if present:
            missing = [name for name in CIFAR10_BATCHES[split] if name not in present]
            raise DataCorrupt(f"{candidate}: incomplete CIFAR-10 {split} batches: {missing} missing")
    return None


def _verify_tar(tmp: Path) -> str | None:
    got = files.file_digest(tmp, "md5")
    if got != CIFAR10_TAR_MD5:
        return f"checksum mismatch: md5 {got}, official {CIFAR10_TAR_MD5}"
    return None


def _extract_batches(tar_path: Path, target: Path) -> Path:
    """Extract only the batch files of the official tarball into ``target/cifar-10-batches-py`` atomically."""
    final = target / CIFAR10_DIR
    tmp = Path(tempfile.mkdtemp(dir=target, prefix=f".{CIFAR10_DIR}."))
    try:
        wanted = {f"{CIFAR10_DIR}/{n}" for names in CIFAR10_BATCHES.values() for n in names}
        wanted.add(f"{CIFAR10_DIR}/batches.meta")
        with tarfile.open(tar_path, "r:gz") as archive:
            for member in archive.getmembers():
                if member.name in wanted and member.isfile():
                    source = archive.extractfile(member)
                    if source is None:
                        raise DataCorrupt(f"{tar_path}: cannot read {member.name}")
                    (tmp / Path(member.name).name).write_bytes(source.read())
        missing = [name for name in wanted if not (tmp / Path(name).name).is_file()]
        if missing:
            raise DataCorrupt(f"{tar_path}: missing {sorted(missing)}")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DataCorrupt(f"{tar_path}: cannot extract the CIFAR-10 batches ({error})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def load_cifar10(
    split: Literal["train", "test"] = "test",
    *,
    path: str | os.PathLike | None = None,
    download: bool = True,
    base_url: str | None = None,
    allow_subset: bool = False,
) -> Dataset:
    """Load the CIFAR-10 training (50,000) or test (10,000) images in the official order.

    Looks, in order, in ``path`` (only there when given), ``$LDJAX_DATA_DIR``, then the cache
    (``$LDJAX_CACHE_DIR`` or ``~/.cache/ldjax``, subdirectory ``cifar10/``), each directory and its
    ``cifar10/`` subdirectory, for the parsed ``cifar10_{split}.npz`` (``x`` uint8
    ``[n, 32, 32, 3]``, ``y``) or the official batches (``cifar-10-batches-py/test_batch`` ...,
    read with :class:`RestrictedUnpickler`). If neither is found and ``download`` is true, the
    official tarball is downloaded, checked against its md5 and its batches extracted atomically.
    The full test set is checked against the official content (:data:`CIFAR10_TEST_SHA256`);
    every ``.npz`` header and pickle is checked before its data are read or unpickled.

    Args:
      split: ``"train"`` or ``"test"``.
      path: a directory holding the files; only it is searched (and downloaded into).
      download: whether to download a missing tarball (163 MB).
      base_url: the tarball's URL; default :data:`CIFAR10_URL`.
      allow_subset: accept consistent files with fewer images than the official ones (the name then
        says "subset"); by default they are refused, since they are not CIFAR-10.

    Returns:
      :class:`Dataset` with ``x`` uint8 ``[n, 32, 32, 3]`` (HWC, RGB), ``y`` uint8 ``[n]``, and
      ``files``: the files read, with their SHA-256 (:func:`ldjax.data.provenance`).

    Raises:
      DataUnavailable: not found and not downloadable (the message names the files and directory).
      DataCorrupt: an unusable file (dangling link, directory, unreadable), refused pickle globals or
        structures, wrong headers, sizes or dtypes, labels out of range, bad checksum, some batches
        missing, fewer images than the official set without ``allow_subset``; the message names the file.

    Example:
      >>> from ldjax.data import load_cifar10
      >>> test = load_cifar10("test", download=False)  # doctest: +SKIP
      >>> test.x.shape  # doctest: +SKIP
      (10000, 32, 32, 3)
    """
    if split not in CIFAR10_BATCHES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    npz_name = f"cifar10_{split}.npz"
    dirs = files.search_dirs(path, "cifar10")

    def load_npz(npz: Path) -> Dataset:
        return _dataset(split, *_load_npz(npz, split, allow_subset), str(npz), (npz,))

    def load_batches(directory: Path) -> Dataset | None:
        batch_dir = _batch_dir(directory, split)
        return None if batch_dir is None else _from_batches(split, batch_dir, allow_subset)

    found = files.load_local(dirs, npz_name, load_npz, load_batches)
    if found is not None:
        return found
    target = files.download_dir(path, "cifar10")
    names = [npz_name, f"{CIFAR10_DIR}/{CIFAR10_BATCHES[split][0]}"]
    if not download:
        raise files.unavailable(f"CIFAR-10 {split}", names, dirs, target)
    tar_path = target / "cifar-10-python.tar.gz"
    if not files.probe(tar_path):
        files.download([base_url or CIFAR10_URL], tar_path, verify=_verify_tar, what="CIFAR-10")
    return _from_batches(split, _extract_batches(tar_path, target), allow_subset)


def _from_batches(split: str, batch_dir: Path, allow_subset: bool) -> Dataset:
    read = [batch_dir / name for name in CIFAR10_BATCHES[split]]
    parts = []
    for file in read:
        x, y = read_cifar_batch(file)
        if x.shape[0] < CIFAR10_BATCH_SIZE and not allow_subset:
            raise DataCorrupt(
                f"{file}: {x.shape[0]} images, fewer than the {CIFAR10_BATCH_SIZE} of an official batch; "
                f"pass allow_subset=True to load a smaller file in the official format"
            )
        parts.append((x, y))
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return _dataset(split, x, y, str(batch_dir), read)


def _dataset(split: str, x: np.ndarray, y: np.ndarray, source: str, read: Sequence[Path]) -> Dataset:
    """Full-size test data must have the official content (:data:`CIFAR10_TEST_SHA256`)."""
    n = x.shape[0]
    if n < CIFAR10_SIZES[split]:
        what = "subset in the official format"
    elif split == "test":
        digest = hashlib.sha256(np.ascontiguousarray(x.transpose(0, 3, 1, 2)).tobytes())
        digest.update(y.tobytes())
        if digest.hexdigest() != CIFAR10_TEST_SHA256:
            raise DataCorrupt(
                f"{source}: checksum mismatch: the CIFAR-10 test content has sha256 {digest.hexdigest()}, "
                f"the official content has {CIFAR10_TEST_SHA256}"
            )
        what = "official"
    else:
        what = "official format; no official checksum of the training batches to check"
    name = f"CIFAR-10 {split} ({what}, {n} images)"
    return Dataset(x, y, name, source, CIFAR10_CLASSES, tuple(files.record(f) for f in read))
