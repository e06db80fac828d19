"""Results on disk: checked output paths, atomic writes with the user's umask, locks, reuse and swaps.

* :func:`check_out_dir` / :func:`check_data_dir` turn a bad ``--out`` / ``--data-dir`` into a
  :class:`UsageError` (one line on stderr and exit code 2 in the command line tools).
* :func:`write_atomic` writes through a temporary file and a rename; the file gets the mode the user's
  umask gives (``mkstemp`` alone would leave 0600).
* :func:`locked` is an exclusive lock file: one run writes an experiment's folder at a time
  (:func:`experiment_lock`), and ``status.json`` is read, updated and written under its own lock
  (:func:`update_status`), so concurrent runs into one ``--out`` lose no update.
* :func:`reusable` says whether a finished result may be reused for a request: same config, same data
  directory, the recorded data files unchanged (SHA-256) and the data locations as they were.
* :func:`replace_dir` swaps a freshly written folder in whole: a run killed at any moment leaves either
  the old results or the new ones, never a mix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None  # type: ignore[assignment]

RESULTS_FILE = "results.json"
STATUS_FILE = "status.json"
_NEW, _OLD = ".new-", ".old-"
_LISTING_LIMIT = 2000


class UsageError(Exception):
    """A mistake in how ldjax was called (a path, a name): reported in one line, exit code 2."""


# ----------------------------------------------------------------------------------------------------
# paths given on the command line


def check_out_dir(out: str | os.PathLike, *, flag: str = "--out", create: bool = True) -> Path:
    """The output directory ``out``, created (with ``create``) and checked writable.

    Raises:
      UsageError: ``out`` is empty, a file, under a file, cannot be created or is not writable; or, with
        ``create=False``, does not exist.
    """
    text = os.fspath(out)
    if not text.strip():
        raise UsageError(f"{flag} is empty: give a directory, e.g. {flag} results")
    path = Path(text).expanduser()
    if os.path.lexists(path) and not path.is_dir():
        raise UsageError(f"{flag} {text} is a file, not a directory")
    for parent in path.absolute().parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise UsageError(f"{flag} {text} is under {parent}, which is a file, not a directory")
            break
    if not create:
        if not path.is_dir():
            raise UsageError(f"{flag} {text} does not exist: run `ldjax reproduce --out {text}` first")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".ldjax-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{flag} {text} is not writable: {err.strerror or err}") from None
    return path


def check_data_dir(data_dir: str | os.PathLike | None, *, flag: str = "--data-dir") -> str | None:
    """``data_dir`` itself when it is an existing directory (``None`` stays ``None``).

    A data directory that was named must exist: the loaders never fall back to another data set when
    a location was given, and a typo should say so at once, not after the other experiments ran.

    Raises:
      UsageError: ``data_dir`` is empty, does not exist or is not a directory.
    """
    if data_dir is None:
        return None
    text = os.fspath(data_dir)
    if not text.strip():
        raise UsageError(f"{flag} is empty: give the directory that holds the data files, or leave it out")
    path = Path(text).expanduser()
    if not path.exists():
        raise UsageError(
            f"{flag} {text} does not exist: give the directory that holds the data files, or leave it out "
            f"to use $LDJAX_DATA_DIR or the cache"
        )
    if not path.is_dir():
        raise UsageError(f"{flag} {text} is not a directory")
    return text


# ----------------------------------------------------------------------------------------------------
# writing


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename.

    The file gets mode ``0o666`` less the user's umask, as a plain ``open`` would give it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_jsonable(obj: Any) -> Any:
    """numpy/jax arrays → lists, NamedTuples/dataclasses → dicts, non-finite floats → None."""
    if isinstance(obj, dict):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if hasattr(obj, "_asdict"):
        return to_jsonable(obj._asdict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, list | tuple):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, str | bytes):
        array = np.asarray(obj)
        if array.ndim == 0:
            return to_jsonable(array.item())
        return to_jsonable(array.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON (see :func:`to_jsonable`) atomically (see :func:`write_atomic`)."""
    return write_atomic(path, json.dumps(to_jsonable(obj), indent=1).encode())


def read_json(path: Path) -> tuple[Any, str]:
    """``(content, "")`` of a JSON file, or ``(None, why)`` when it is absent or unreadable."""
    try:
        return json.loads(path.read_text()), ""
    except FileNotFoundError:
        return None, "absent"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{path} is corrupt ({type(err).__name__}: {err})"


def new_dir(target: Path) -> Path:
    """A fresh hidden directory beside ``target`` to write a run into (mode from the user's umask)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{_NEW}"))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def replace_dir(new: Path, target: Path) -> None:
    """Swap the finished folder ``new`` in for ``target`` whole (renames in one directory)."""
    if os.path.lexists(target):
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{_OLD}"))
        os.rename(target, old / "x")
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, target)


def remove_leftovers(target: Path) -> None:
    """Remove the hidden folders of runs into ``target`` that were killed (call under its lock)."""
    for prefix in (_NEW, _OLD):
        for leftover in target.parent.glob(f".{target.name}{prefix}*"):
            shutil.rmtree(leftover, ignore_errors=True)


def check_replaceable(target: Path, flag: str = "--out") -> None:
    """``target`` must be absent, empty or an ldjax result folder: it is replaced whole by the next run.

    Raises:
      UsageError: ``target`` is a file, the current directory (or holds it), or holds files ldjax did
        not write there.
    """
    if not os.path.lexists(target):
        return
    if not target.is_dir():
        raise UsageError(f"{flag} {target} is a file, not a directory")
    here = Path.cwd().resolve()
    if target.resolve() == here or target.resolve() in here.parents:
        raise UsageError(
            f"{flag} {target} is the current directory or holds it: ldjax replaces its output folder whole "
            f"when it reruns, so give a folder of its own, e.g. {flag} results/NAME"
        )
    record, why = read_json(target / RESULTS_FILE)
    known = {RESULTS_FILE}
    if isinstance(record, dict):
        for name in record.get("files") or record.get("figures") or []:
            known |= {str(name), str(Path(str(name)).with_suffix(".pdf"))}
    elif why != "absent":  # an unreadable results.json: the figures beside it are ldjax's too
        known |= {entry.name for entry in target.iterdir() if entry.suffix in (".png", ".pdf")}
    foreign = sorted(entry.name for entry in target.iterdir() if entry.name not in known)
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise UsageError(
            f"{flag} {target} holds files that ldjax did not write ({shown}): ldjax replaces its output "
            f"folder whole when it reruns, so give an empty or new folder (or move them away)"
        )


# ----------------------------------------------------------------------------------------------------
# locks and the status file


@contextlib.contextmanager
def locked(path: Path, *, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file ``path`` (created if needed) for the ``with`` block.

    When another process holds it, ``on_wait(holder)`` is called (``holder`` is what that process
    wrote, its pid) and the call blocks until the lock is free. The lock goes with the process: a
    killed run never leaves a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(os.pread(fd, 64, 0).decode(errors="replace").strip() or "?")
                fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


def experiment_lock(target: Path, name: str) -> contextlib.AbstractContextManager[None]:
    """The lock of one experiment's folder ``target`` (a hidden file beside it); says when it waits."""

    def waiting(holder: str) -> None:
        print(
            f"[wait] {name}: another ldjax run (pid {holder}) is writing {target}; waiting for it", flush=True
        )

    return locked(target.parent / f".{target.name}.lock", on_wait=waiting)


def update_status(out: Path, name: str, entry: dict[str, Any]) -> None:
    """Set ``status.json[name] = entry`` under the status lock, keeping every other run's entries.

    A corrupt ``status.json`` is reported on stderr and started afresh (it only caches what the result
    folders hold).
    """
    path = out / STATUS_FILE
    with locked(out / f".{STATUS_FILE}.lock"):
        status, why = read_json(path)
        if not isinstance(status, dict):
            if why != "absent":
                print(
                    f"ldjax: warning: {why or f'{path} is not a JSON object'}; starting it afresh",
                    file=sys.stderr,
                )
            status = {}
        status[name] = entry
        write_json_atomic(path, status)


def read_status(out: Path) -> dict[str, Any]:
    """``status.json`` of ``out`` as a dict; ``{}`` (with a warning on stderr) when it is corrupt."""
    path = out / STATUS_FILE
    status, why = read_json(path)
    if isinstance(status, dict):
        return status
    if why != "absent":
        print(f"ldjax: warning: {why or f'{path} is not a JSON object'}; ignoring it", file=sys.stderr)
    return {}


# ----------------------------------------------------------------------------------------------------
# reuse of finished results


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_locations(data_dir: str | None) -> dict[str, list[list[Any]]]:
    """What the data loaders can see for a request: ``{directory: [[relative path, bytes], ...]}``.

    The directories are ``data_dir`` when given, else ``$LDJAX_DATA_DIR`` (when set) and the cache, each
    listed two levels deep (names and sizes; no file is read). A result recorded when, say, MNIST was not
    in the cache (and the digits stood in) is stale once MNIST is there: the listing differs.
    """
    from ldjax._src.data.files import DATA_DIR_ENV
    from ldjax._src.data.files import cache_dir

    if data_dir is not None:
        roots = [Path(data_dir)]
    else:
        env = os.environ.get(DATA_DIR_ENV)
        roots = ([Path(env)] if env else []) + [cache_dir()]
    listing: dict[str, list[list[Any]]] = {}
    for root in roots:
        entries: list[list[Any]] = []
        for depth_one in sorted(root.iterdir()) if root.is_dir() else []:
            inner = sorted(depth_one.iterdir()) if depth_one.is_dir() and not depth_one.is_symlink() else []
            for entry in [depth_one, *inner]:
                if entry.is_file() and len(entries) < _LISTING_LIMIT:
                    entries.append([str(entry.relative_to(root)), entry.stat().st_size])
        listing[str(root.expanduser().absolute())] = entries
    return listing


def request(data_dir: str | None, reads_files: bool) -> dict[str, Any]:
    """The request a result answers: the data directory asked for and, for experiments that read data
    files, what the loaders could see (:func:`data_locations`)."""
    from ldjax._src.data.files import DATA_DIR_ENV

    named = data_dir if data_dir is not None else os.environ.get(DATA_DIR_ENV) or None
    return {
        "data_dir": None if named is None else str(Path(named).expanduser().absolute()),
        "data_locations": data_locations(data_dir) if reads_files else None,
    }


def reusable(target: Path, config: dict[str, Any], *, data_dir: str | None) -> tuple[bool, str]:
    """Whether ``target`` holds a finished result for ``config`` and ``data_dir``; if not, why.

    Reused only when the saved config equals ``config``, the data directory asked for is the same, every
    recorded data file still has its size and SHA-256, the data locations list the same files
    (:func:`data_locations`) and every figure is there. A corrupt ``results.json`` is reported as such.
    """
    record, why = read_json(target / RESULTS_FILE)
    if record is None:
        return False, "not run yet" if why == "absent" else why
    if not isinstance(record, dict) or not record.get("complete"):
        return False, f"{target / RESULTS_FILE} is incomplete"
    if record.get("config") != config:
        return False, "the settings differ from the saved run"
    saved = record.get("request")
    if not isinstance(saved, dict):
        return False, "the saved run does not record its data (an older version of ldjax)"
    now = request(data_dir, reads_files=saved.get("data_locations") is not None)
    if saved.get("data_dir") != now["data_dir"]:
        return (
            False,
            f"the data directory differs (saved run: {saved.get('data_dir')}, now: {now['data_dir']})",
        )
    for file in record.get("data_files") or []:
        path = Path(str(file.get("path")))
        if not path.is_file():
            return False, f"its data file {path} is gone"
        if path.stat().st_size != file.get("bytes") or _sha256(path) != file.get("sha256"):
            return False, f"its data file {path} changed (SHA-256 differs)"
    if saved.get("data_locations") != now["data_locations"]:
        return False, "the data directories hold other files than when it ran"
    missing = [name for name in record.get("figures", []) if not (target / str(name)).is_file()]
    if missing:
        return False, f"figure {missing[0]} is missing"
    return True, "same settings, data directory and data files"
