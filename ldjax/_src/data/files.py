"""Where data files are found, and how they are downloaded and written: checksums, atomic writes.

Lookup order for every real data set (see :func:`search_dirs`):

1. an explicit ``path`` argument (only that directory is searched);
2. the directory named by the environment variable ``LDJAX_DATA_DIR``;
3. the cache directory, ``$LDJAX_CACHE_DIR`` or else ``~/.cache/ldjax``;
4. a download from the official location into the cache directory (or into ``path``), verified
   against the published checksum before it is moved into place with ``os.replace``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable
from collections.abc import Iterator
from collections.abc import Sequence
from pathlib import Path

import numpy as np

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
    """
    if path is not None:
        root = Path(path).expanduser()
        return [root, root / subdir]
    dirs: list[Path] = []
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        root = Path(env).expanduser()
        dirs += [root, root / subdir]
    dirs.append(cache_dir() / subdir)
    return dirs


def download_dir(path: str | os.PathLike | None, subdir: str) -> Path:
    """Where a download is written: ``path`` when given, else ``cache_dir()/subdir``."""
    return Path(path).expanduser() if path is not None else cache_dir() / subdir


def find_first(dirs: Sequence[Path], names: Sequence[str]) -> Path | None:
    """The first existing file ``dir/name`` over ``dirs`` (outer) and ``names`` (inner)."""
    for directory in dirs:
        for name in names:
            candidate = directory / name
            if candidate.is_file():
                return candidate
    return None


def file_digest(path: str | os.PathLike, algorithm: str) -> str:
    """Hex digest (``"md5"`` or ``"sha256"``) of a file, read in chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


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


def read_xy_npz(file: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays ``x`` and ``y`` of a parsed ``.npz`` (no pickles); ``DataCorrupt`` naming the file otherwise."""
    try:
        with np.load(file, allow_pickle=False) as archive:
            if "x" not in archive or "y" not in archive:
                raise DataCorrupt(f"{file}: expected arrays 'x' and 'y', found {sorted(archive.files)}")
            x, y = archive["x"], archive["y"]
    except (OSError, ValueError, EOFError, zlib.error) as error:
        if isinstance(error, DataCorrupt):
            raise
        raise DataCorrupt(f"{file}: not a readable .npz archive ({error})") from None
    return x, y
