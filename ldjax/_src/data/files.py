"""Where data files are found, how they are opened and recorded, and how they are downloaded.

Lookup order for every real data set (see :func:`search_dirs`):

1. an explicit ``path`` argument (only that directory is searched);
2. the directory named by the environment variable ``LDJAX_DATA_DIR``;
3. the cache directory, ``$LDJAX_CACHE_DIR`` or else ``~/.cache/ldjax``;
4. a download from the official location into the cache directory (or into ``path``), verified
   against the published checksum before it is moved into place with ``os.replace``.

A name that exists but cannot be read as a data file (a dangling symbolic link, a link loop, a
directory, a FIFO or device, an unreadable file) is :class:`DataCorrupt`, never "absent" (see
:func:`probe`): the search stops there, so a broken file is never silently replaced by another copy
or another data set. Every file a loader reads is recorded with its SHA-256 (:func:`record`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ldjax._src.data.dataset import DataFile
from ldjax._src.data.errors import DataCorrupt
from ldjax._src.data.errors import DataUnavailable

DATA_DIR_ENV = "LDJAX_DATA_DIR"
CACHE_DIR_ENV = "LDJAX_CACHE_DIR"
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The cache directory: ``$LDJAX_CACHE_DIR`` if set, else ``~/.cache/ldjax``.

    Example:
      >>> import pathlib
      >>> from ldjax.data import cache_dir
      >>> isinstance(cache_dir(), pathlib.Path)
      True
    """
    value = os.environ.get(CACHE_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".cache" / "ldjax"


def search_dirs(path: str | os.PathLike | None, subdir: str) -> list[Path]:
    """The directories searched, in order, for a data set stored under ``subdir``.

    With an explicit ``path`` only ``path`` (and ``path/subdir``) are searched. Otherwise
    ``$LDJAX_DATA_DIR`` (and its ``subdir``) when set, then ``cache_dir()/subdir``.

    Raises:
      DataUnavailable: ``path`` or ``$LDJAX_DATA_DIR`` exists but is not a directory (a file, a
        dangling link): a configured location that cannot hold data is an error, not a reason to
        look elsewhere.
    """
    if path is not None:
        root = _check_root(Path(path).expanduser(), "the data path")
        return [root, root / subdir]
    dirs: list[Path] = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        root = _check_root(Path(env).expanduser(), f"${DATA_DIR_ENV}")
        dirs += [root, root / subdir]
    dirs.append(cache_dir() / subdir)
    return dirs


def configured(path: str | os.PathLike | None) -> bool:
    """Whether the user named a data location: an explicit ``path`` or a non-empty ``$LDJAX_DATA_DIR``.

    A loader may fall back to another data set only when this is false (nothing was configured).
    """
    return path is not None or bool(os.environ.get(DATA_DIR_ENV))


def _check_root(root: Path, what: str) -> Path:
    if os.path.lexists(root) and not root.is_dir():
        dangling = root.is_symlink() and not root.exists()
        kind = "a dangling or looping symbolic link" if dangling else "not a directory"
        raise DataUnavailable(f"{root}: {what} is {kind}; it must be a directory holding the data files")
    return root


def download_dir(path: str | os.PathLike | None, subdir: str) -> Path:
    """Where a download is written: ``path`` when given, else ``cache_dir()/subdir``."""
    return Path(path).expanduser() if path is not None else cache_dir() / subdir


def probe(path: Path) -> bool:
    """Whether a readable regular file is at ``path``; ``False`` when nothing is there.

    Raises:
      DataCorrupt: something is there but cannot be a data file (a dangling symbolic link, a link
        loop, a directory, a FIFO, socket or device, an unreadable file); the message names it.
    """
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as error:
        raise DataCorrupt(f"{path}: cannot be examined ({error.strerror})") from None
    try:
        info = os.stat(path)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise DataCorrupt(f"{path}: symbolic link loop, not a data file") from None
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            raise DataCorrupt(
                f"{path}: dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
            ) from None
        raise DataCorrupt(f"{path}: cannot be examined ({error.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataCorrupt(f"{path}: is a directory, not a data file")
    if not stat.S_ISREG(info.st_mode):
        raise DataCorrupt(f"{path}: is not a regular file (a FIFO, socket or device), not a data file")
    if not os.access(path, os.R_OK):
        raise DataCorrupt(f"{path}: is not readable (permission denied)")
    return True


def probe_dir(path: Path) -> bool:
    """Whether a directory is at ``path``; ``False`` when nothing is there, :class:`DataCorrupt` if something else is."""
    if not os.path.lexists(path):
        return False
    if path.is_dir():
        return True
    if path.is_symlink() and not path.exists():
        raise DataCorrupt(f"{path}: dangling or looping symbolic link, expected a directory of data files")
    raise DataCorrupt(f"{path}: is not a directory, expected a directory of data files")


def find_first(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first file ``dir/name`` over ``dirs`` (outer) and ``names`` (inner); see :func:`probe`."""
    for directory in dirs:
        for name in names:
            candidate = directory / name
            if probe(candidate):
                return candidate
    return None


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest (``"md5"`` or ``"sha256"``) of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record(path: Path) -> DataFile:
    """The :class:`~ldjax.data.DataFile` of a file: absolute path, SHA-256 of its bytes, size."""
    try:
        return DataFile(str(path.absolute()), file_digest(path, "sha256"), path.stat().st_size)
    except OSError as error:
        raise DataCorrupt(f"{path}: cannot be read ({error.strerror or error})") from None


def open_data(path: Path, *, max_bytes: int | None = None) -> BinaryIO:
    """Open a data file for binary reading, refusing one larger than ``max_bytes`` (when given).

    Raises:
      DataCorrupt: it cannot be opened, or it is larger than any genuine file of its kind;
        the message names it.
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - the caller closes it (``with``)
    except OSError as error:
        raise DataCorrupt(f"{path}: cannot be read ({error.strerror or error})") from None
    size = os.fstat(handle.fileno()).st_size
    if max_bytes is not None and size > max_bytes:
        handle.close()
        raise DataCorrupt(
            f"{path}: {size} bytes, more than the {max_bytes} a genuine file of its kind can have"
        )
    return handle


def read_into(stream: BinaryIO, array: np.ndarray) -> int:
    """Fill a C-contiguous ``array`` from a binary stream in 1 MiB chunks; returns the bytes read (short at EOF)."""
    view = memoryview(array.reshape(-1).view(np.uint8))
    done = 0
    while done < len(view):
        chunk = stream.read(min(_CHUNK, len(view) - done))
        if not chunk:
            break
        view[done : done + len(chunk)] = chunk
        done += len(chunk)
    return done


def download(
    urls: Sequence[str],
    dest: Path,
    *,
    verify: Callable[[Path], str | None],
    what: str,
    timeout: float = 30.0,
) -> Path:
    """Download the first reachable URL of ``urls`` to ``dest``, verified before it is moved into place.

    The bytes go to a temporary file beside ``dest``; ``verify(tmp)`` returns ``None`` when the file
    is right, or a description of the problem (e.g. a checksum mismatch). Only a verified file is
    renamed to ``dest``; otherwise the temporary file is deleted, so nothing half-written remains.

    Raises:
      DataCorrupt: a server answered but its file failed ``verify`` (and no other URL gave a good one).
      DataUnavailable: no URL could be reached (offline); the message names the file and ``dest.parent``.
    """
    failures: list[str] = []
    corrupt: list[str] = []
    for url in urls:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as handle, urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda r=response: r.read(_CHUNK), b""):
                        handle.write(chunk)
            except urllib.error.HTTPError as error:
                failures.append(f"{url}: HTTP {error.code} {error.reason}")
                continue
            except (urllib.error.URLError, OSError, ValueError) as error:
                failures.append(f"{url}: {getattr(error, 'reason', error)}")
                continue
            problem = verify(tmp)
            if problem is not None:
                corrupt.append(f"{url}: {problem}")
                continue
            os.replace(tmp, dest)
            return dest
        finally:
            tmp.unlink(missing_ok=True)
    if corrupt:
        raise DataCorrupt(
            f"downloaded {what} file {dest.name!r} is corrupt and was discarded (nothing was written to "
            f"{dest.parent}): " + "; ".join(corrupt + failures)
        )
    raise DataUnavailable(
        f"{what} file {dest.name!r} is not on this machine and could not be downloaded ("
        + "; ".join(failures)
        + f"). Put the official file in {dest.parent}, or point the environment variable "
        f"{DATA_DIR_ENV} at a directory holding it."
    )


def unavailable(
    what: str, names: Sequence[str], dirs: Sequence[Path], put_in: Path, hint: str = ""
) -> DataUnavailable:
    """A :class:`DataUnavailable` naming the missing files, where they were looked for and where to put them."""
    searched = ", ".join(str(d) for d in _unique(dirs))
    return DataUnavailable(
        f"{what}: none of {list(names)} found (searched {searched}) and download is off. "
        f"Put the official file(s) in {put_in}, set {DATA_DIR_ENV} to a directory holding them, "
        f"or pass download=True.{(' ' + hint) if hint else ''}"
    )


def _unique(items: Sequence[Path]) -> Iterator[Path]:
    seen: set[Path] = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item
