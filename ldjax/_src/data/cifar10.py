"""CIFAR-10 from the official python batches (or their parsed ``.npz`` form), and CIFAR-10H soft labels.

The official ``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/{data_batch_1..5, test_batch}``:
Python pickles of ``{"data": uint8 [10000, 3072], "labels": [10000], ...}`` (rows are 1024 red,
1024 green, 1024 blue values, each a row-major 32x32 plane). Pickles can run arbitrary code when
loaded, so they are read with :class:`RestrictedUnpickler`, which admits only the numpy and builtin
globals that the format needs.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any
from typing import Literal

import numpy as np

from ldjax._src.data import files
from ldjax._src.data.dataset import CIFAR10_CLASSES
from ldjax._src.data.dataset import Dataset
from ldjax._src.data.dataset import SoftLabels
from ldjax._src.data.errors import DataCorrupt
from ldjax._src.data.files import read_xy_npz

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: Official md5 of ``cifar-10-python.tar.gz`` (https://www.cs.toronto.edu/~kriz/cifar.html).
CIFAR10_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_BATCHES: dict[str, tuple[str, ...]] = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
CIFAR10H_URL = "https://raw.githubusercontent.com/jcpeterson/cifar-10h/master/data/cifar10h-probs.npy"
#: sha256 of the official ``cifar10h-probs.npy`` (jcpeterson/cifar-10h, see shared/data/README.md).
CIFAR10H_SHA256 = "436ae98620e00073f9d08585ac870573b588853e7af9f54eb1647408114af77d"
CIFAR10H_NAMES = ("cifar10h-probs.npy", "cifar10h_probs.npy")


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _numpy_frombuffer():
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer
    return _frombuffer


def _codecs_encode():
    import _codecs

    return _codecs.encode


# (module, name) -> a function returning the object. Nothing else may be loaded.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numpy_frombuffer,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    # How Python 3 writes ``bytes`` at pickle protocol <= 2: _codecs.encode(text, "latin1").
    ("_codecs", "encode"): _codecs_encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global that :class:`RestrictedUnpickler` does not admit."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that loads plain data and numpy arrays, and refuses every other global.

    Admitted: ``numpy.ndarray``, ``numpy.dtype``, the numpy array reconstructors
    (``numpy[._]core.multiarray._reconstruct``, ``numpy[._]core.numeric._frombuffer``) and
    ``_codecs.encode`` (how Python 3 pickles ``bytes`` at protocol 2). A pickle naming any other
    global (``os.system``, ``builtins.eval``, ...) raises :class:`pickle.UnpicklingError` BEFORE the
    global is imported or called.

    Example:
      >>> import io, pickle, numpy as np
      >>> from ldjax.data import RestrictedUnpickler
      >>> blob = pickle.dumps({"data": np.arange(3, dtype=np.uint8)}, protocol=2)
      >>> RestrictedUnpickler(io.BytesIO(blob)).load()["data"].tolist()
      [0, 1, 2]
    """

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise RefusedGlobal(
                f"refusing to load global {module}.{name}: only numpy arrays and plain data are allowed"
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("refusing to load a persistent id: only plain data is allowed")


def restricted_load(data: bytes, *, source: str, encoding: str = "latin1") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; any failure is a :class:`DataCorrupt`.

    ``encoding="latin1"`` reads the Python 2 pickles of the official CIFAR batches (numpy's
    recommended setting for Python 2 arrays); dictionary keys then come back as ``str``.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except RefusedGlobal as error:
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
    ) as error:
        raise DataCorrupt(f"{source}: not a valid CIFAR pickle ({type(error).__name__}: {error})") from None


def _key(batch: dict, name: str) -> Any:
    for key in (name, name.encode()):
        if key in batch:
            return batch[key]
    return None


def read_cifar_batch(file: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one official CIFAR-10 python batch file safely.

    Returns:
      ``x`` uint8 ``[n, 32, 32, 3]`` (HWC, RGB) and ``y`` uint8 ``[n]``.

    Raises:
      DataCorrupt: not a pickle of the expected layout, a refused global, wrong sizes, labels
        outside 0..9.

    Example:
      >>> from ldjax.data import read_cifar_batch
      >>> x, y = read_cifar_batch("cifar-10-batches-py/test_batch")  # doctest: +SKIP
    """
    file = Path(file)
    batch = restricted_load(file.read_bytes(), source=str(file))
    if not isinstance(batch, dict):
        raise DataCorrupt(f"{file}: expected a dict with 'data' and 'labels', got {type(batch).__name__}")
    data, labels = _key(batch, "data"), _key(batch, "labels")
    if data is None or labels is None:
        raise DataCorrupt(f"{file}: expected keys 'data' and 'labels', found {sorted(map(str, batch))}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        shape = getattr(data, "shape", None)
        dtype = getattr(data, "dtype", type(data).__name__)
        raise DataCorrupt(f"{file}: 'data' must be uint8 [n, 3072], got {dtype} {shape}")
    try:
        y = np.asarray(labels)
    except (TypeError, ValueError) as error:
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


def _load_npz(file: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_xy_npz(file)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (32, 32, 3):
        raise DataCorrupt(f"{file}: x must be uint8 [n, 32, 32, 3], got {x.dtype} {x.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.shape != x.shape[:1]:
        raise DataCorrupt(f"{file}: y must be integer [{x.shape[0]}], got {y.dtype} {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
        raise DataCorrupt(
            f"{file}: label out of range [{int(y.min())}, {int(y.max())}] (CIFAR-10 labels are 0..9)"
        )
    return x, y.astype(np.uint8)


def _batch_dir(directory: Path, split: str) -> Path | None:
    for candidate in (directory / CIFAR10_DIR, directory):
        if all((candidate / name).is_file() for name in CIFAR10_BATCHES[split]):
            return candidate
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
) -> Dataset:
    """Load the CIFAR-10 training (50,000) or test (10,000) images in the official order.

    Looks, in order, in ``path`` (only there when given), ``$LDJAX_DATA_DIR``, then the cache
    (``$LDJAX_CACHE_DIR`` or ``~/.cache/ldjax``, subdirectory ``cifar10/``), each directory and its
    ``cifar10/`` subdirectory, for the parsed ``cifar10_{split}.npz`` (``x`` uint8
    ``[n, 32, 32, 3]``, ``y``) or the official batches (``cifar-10-batches-py/test_batch`` ...,
    read with :class:`RestrictedUnpickler`). If neither is found and ``download`` is true, the
    official tarball is downloaded, checked against its md5 and its batches extracted atomically.

    Args:
      split: ``"train"`` or ``"test"``.
      path: a directory holding the files; only it is searched (and downloaded into).
      download: whether to download a missing tarball (163 MB).
      base_url: the tarball's URL; default :data:`CIFAR10_URL`.

    Returns:
      :class:`Dataset` with ``x`` uint8 ``[n, 32, 32, 3]`` (HWC, RGB) and ``y`` uint8 ``[n]``.

    Raises:
      DataUnavailable: not found and not downloadable (the message names the files and directory).
      DataCorrupt: refused pickle globals, wrong sizes or dtypes, labels out of range, bad checksum.

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
    for directory in dirs:
        npz = directory / npz_name
        if npz.is_file():
            x, y = _load_npz(npz)
            return _dataset(split, x, y, str(npz))
        batch_dir = _batch_dir(directory, split)
        if batch_dir is not None:
            return _from_batches(split, batch_dir)
    target = files.download_dir(path, "cifar10")
    names = [npz_name, f"{CIFAR10_DIR}/{CIFAR10_BATCHES[split][0]}"]
    if not download:
        raise files.unavailable(f"CIFAR-10 {split}", names, dirs, target)
    tar_path = target / "cifar-10-python.tar.gz"
    if not tar_path.is_file():
        files.download([base_url or CIFAR10_URL], tar_path, verify=_verify_tar, what="CIFAR-10")
    return _from_batches(split, _extract_batches(tar_path, target))


def _from_batches(split: str, batch_dir: Path) -> Dataset:
    parts = [read_cifar_batch(batch_dir / name) for name in CIFAR10_BATCHES[split]]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return _dataset(split, x, y, str(batch_dir))


def _dataset(split: str, x: np.ndarray, y: np.ndarray, source: str) -> Dataset:
    full = x.shape[0] == (50000 if split == "train" else 10000)
    what = "official" if full else "subset in the official format"
    return Dataset(x, y, f"CIFAR-10 {split} ({what}, {x.shape[0]} images)", source, CIFAR10_CLASSES)


def _check_probs(probs: np.ndarray, file: Path) -> None:
    if probs.dtype.kind != "f" or probs.shape != (10000, 10):
        raise DataCorrupt(
            f"{file}: CIFAR-10H probabilities must be float [10000, 10], got {probs.dtype} {probs.shape}"
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise DataCorrupt(f"{file}: CIFAR-10H probabilities must lie in [0, 1]")
    worst = float(np.max(np.abs(probs.sum(axis=1) - 1.0)))
    if worst > 1e-6:
        raise DataCorrupt(f"{file}: CIFAR-10H rows must sum to 1 (largest deviation {worst:.3g})")


def _verify_probs_file(file: Path) -> str | None:
    try:
        probs = np.load(file, allow_pickle=False)
        if not isinstance(probs, np.ndarray):
            return "not a .npy array"
        _check_probs(probs, file)
    except (OSError, ValueError, EOFError) as error:
        return str(error)
    got = files.file_digest(file, "sha256")
    if got != CIFAR10H_SHA256:
        return f"checksum mismatch: sha256 {got}, official {CIFAR10H_SHA256}"
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
    subdirectory), else downloads it from the authors' repository. The file is read with
    ``allow_pickle=False``, its shape and rows checked, and its sha256 compared with the official one.

    Args:
      path: a directory holding the file; only it is searched (and downloaded into).
      download: whether to download a missing file (800 kB).
      base_url: the file's URL; default :data:`CIFAR10H_URL`.

    Returns:
      :class:`SoftLabels` with ``probs`` float64 ``[10000, 10]``; row ``i`` pairs with CIFAR-10 test image ``i``.

    Raises:
      DataUnavailable: not found and not downloadable.
      DataCorrupt: wrong shape or dtype, rows not summing to 1, checksum mismatch.

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
    problem = _verify_probs_file(file)
    if problem is not None:
        raise DataCorrupt(f"{file}: {problem}" if not problem.startswith(str(file)) else problem)
    probs = np.load(file, allow_pickle=False)
    return SoftLabels(
        probs.astype(np.float64), "CIFAR-10H human label distributions (official, 10000 x 10)", str(file)
    )
