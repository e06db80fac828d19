"""Reading ``.npy`` and ``.npz`` files that may be hostile: every header is checked before anything is allocated.

``numpy.load`` allocates whatever an array header declares and reads a zip archive's whole central
directory into memory. Here the zip directory is bounded first, then each member's ``.npy`` header
(shape, dtype, byte order) is parsed and handed to a ``check`` that knows what the data set must
hold; only an accepted header is read, into an array of exactly the declared size, and the member
must end exactly where its header says.
"""

from __future__ import annotations

import math
import os
import zipfile
import zlib
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ldjax._src.data import files
from ldjax._src.data.errors import DataCorrupt

#: ``check(name, shape, dtype)`` returns what is wrong with a declared array, or ``None`` to accept it.
Check = Callable[[str, tuple[int, ...], np.dtype], "str | None"]

#: An ``.npz`` written by ``numpy.savez`` holds one member per array; more is not a data file of ours.
MAX_MEMBERS = 64
#: Bytes of zip central directory accepted (about 100 bytes per member).
MAX_DIRECTORY_BYTES = 1 << 16
_NPY_MAGIC = b"\x93NUMPY"
_EOCD = b"PK\x05\x06"


def read_npy(file: Path, check: Check, *, name: str = "array") -> np.ndarray:
    """The array of a ``.npy`` file whose header ``check`` accepted (``allow_pickle`` is never on).

    Raises:
      DataCorrupt: not a ``.npy`` file, a refused or inconsistent header, truncated or trailing data.
    """
    with files.open_data(file) as handle:
        size = os.fstat(handle.fileno()).st_size
        try:
            return _read_array(handle, str(file), name, check, size)
        except (OSError, EOFError, ValueError) as error:
            if isinstance(error, DataCorrupt):
                raise
            raise DataCorrupt(f"{file}: not a readable .npy file ({error})") from None


def read_npz(file: Path, names: Sequence[str], check: Check) -> dict[str, np.ndarray]:
    """The arrays ``names`` of an ``.npz`` archive, each header accepted by ``check`` before it is read.

    Raises:
      DataCorrupt: not a zip archive (or a ``.npy`` file under an ``.npz`` name), too many members,
        a missing array, a refused or inconsistent header, truncated data or a bad CRC.
    """
    with files.open_data(file) as handle:
        _check_zip_directory(handle, file)
        try:
            with zipfile.ZipFile(handle) as archive:
                members = {m.removesuffix(".npy"): m for m in archive.namelist()}
                if any(n not in members for n in names):
                    wanted = " and ".join(repr(n) for n in names)
                    raise DataCorrupt(f"{file}: expected arrays {wanted}, found {sorted(members)}")
                out = {}
                for n in names:
                    info = archive.getinfo(members[n])
                    with archive.open(info) as member:
                        out[n] = _read_array(member, f"{file}", n, check, info.file_size)
                return out
        except (
            zipfile.BadZipFile,
            OSError,
            EOFError,
            ValueError,
            zlib.error,
            NotImplementedError,
            RuntimeError,
        ) as error:
            if isinstance(error, DataCorrupt):
                raise
            raise DataCorrupt(f"{file}: not a readable .npz archive ({error})") from None


def _check_zip_directory(handle: BinaryIO, file: Path) -> None:
    """Refuse before ``zipfile`` reads the central directory: no zip at all, or a directory too large."""
    size = os.fstat(handle.fileno()).st_size
    if handle.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
        raise DataCorrupt(f"{file}: is a .npy file, not an .npz archive")
    tail_size = min(size, 22 + 0xFFFF)
    handle.seek(size - tail_size)
    tail = handle.read(tail_size)
    handle.seek(0)
    at = tail.rfind(_EOCD)
    if at < 0 or len(tail) - at < 22:
        raise DataCorrupt(f"{file}: not a readable .npz archive (no zip end-of-directory record)")
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    directory = int.from_bytes(tail[at + 12 : at + 16], "little")
    if entries > MAX_MEMBERS or directory > MAX_DIRECTORY_BYTES:
        raise DataCorrupt(
            f"{file}: zip directory of {entries} members in {directory} bytes; an .npz of this data set "
            f"has at most {MAX_MEMBERS} members in {MAX_DIRECTORY_BYTES} bytes"
        )


def _read_array(stream: BinaryIO, source: str, name: str, check: Check, stored: int) -> np.ndarray:
    """Parse one ``.npy`` stream of ``stored`` bytes; read its data only if the header is accepted."""
    fmt = np.lib.format
    version = fmt.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = fmt.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = fmt.read_array_header_2_0(stream)
    else:
        raise DataCorrupt(f"{source}: array {name!r} has .npy format version {version}, expected 1.0 or 2.0")
    header = stream.tell()
    if dtype.hasobject:
        raise DataCorrupt(f"{source}: array {name!r} holds Python objects (a pickle), which is never loaded")
    if any(d < 0 for d in shape):
        raise DataCorrupt(f"{source}: array {name!r} declares a negative dimension {shape}")
    problem = check(name, tuple(shape), dtype)
    if problem is not None:
        raise DataCorrupt(f"{source}: {problem}")
    nbytes = math.prod(shape) * dtype.itemsize
    if stored != header + nbytes:
        raise DataCorrupt(
            f"{source}: array {name!r} of shape {shape} needs {nbytes} bytes of data but holds {stored - header}"
        )
    flat = np.empty(math.prod(shape), dtype)
    got = files.read_into(stream, flat)
    if got != nbytes:
        raise DataCorrupt(f"{source}: array {name!r} is truncated ({got} of {nbytes} bytes)")
    if stream.read(1):  # also where a zip member's CRC is checked
        raise DataCorrupt(f"{source}: array {name!r} has bytes after its {nbytes} bytes of data")
    return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)
