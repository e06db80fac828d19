"""Crafted data files, as a hostile but fair user would make them: every one is a clean, named error.

Each case writes small synthetic files into an empty directory ``d`` and calls a loader on it. The
loader must raise :class:`DataCorrupt` or :class:`DataUnavailable` whose message matches the case's
pattern from its start (``{d}`` stands for the directory): it names the file and says what is wrong.
Nothing may be returned, no other exception may escape, the interpreter may not die.

The risky cases (a 1 GiB gzip bomb, pickles nested 200,000 deep, headers declaring 10^12 rows,
30 million one-byte pickle opcodes) run together in one subprocess whose address space is limited
to what it had after ``import ldjax`` plus :data:`HEADROOM`; it must exit with code 0.

Run as a script (``python tests/test_data_crafted.py``) to count, in one subprocess per case, how the
loaders of the checkout on ``PYTHONPATH`` handle the table: clean / generic (another exception, or one
that does not name the file) / silently wrong (data returned) / crashed (signal or time-out).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ldjax.data import DataCorrupt
from ldjax.data import DataUnavailable
from ldjax.data import load_cifar10
from ldjax.data import load_cifar10h
from ldjax.data import load_mnist
from ldjax.data import load_mnist_or_digits

HERE = Path(__file__).resolve().parent
#: Address space the risky subprocess may use beyond what it holds after its imports.
HEADROOM = 512 << 20
IMAGES, LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"
BATCH = "cifar-10-batches-py/test_batch"
H = "cifar10h-probs.npy"


# ---------------------------------------------------------------- writing the official formats, and breaking them


def idx(array: np.ndarray, magic: int, shape: tuple[int, ...] | None = None) -> bytes:
    """An IDX file: big-endian int32 magic and dims (``shape`` overrides the array's), then ubytes."""
    dims = array.shape if shape is None else shape
    return np.array([magic, *dims], ">i4").tobytes() + np.ascontiguousarray(array, np.uint8).tobytes()


def mnist_test(n: int = 10000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write(d: Path, name: str, data: bytes) -> Path:
    path = d / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=1, mtime=0)


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=array.dtype.hasobject)
    return buffer.getvalue()


def write_idx(d: Path, images: bytes | None = None, labels: bytes | None = None, *, gz: bool = False) -> None:
    """The test-split IDX pair; a valid pair of 10,000 images for whichever of the two is not given."""
    x, y = mnist_test()
    suffix = ".gz" if gz else ""
    pack = globals()["gz"] if gz else bytes
    write(d, IMAGES + suffix, pack(idx(x, 2051)) if images is None else images)
    write(d, LABELS + suffix, pack(idx(y, 2049)) if labels is None else labels)


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npy_header(shape: tuple[int, ...], descr: str = "|u1") -> bytes:
    """A version 1.0 ``.npy`` header declaring ``shape`` (nothing else written)."""
    text = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    text += b" " * (63 - (len(text) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


def zip_of(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def cifar_rows(n: int = 10000) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (n, 3072), dtype=np.uint8)


def batch(labels: Any = None, n: int = 10000) -> bytes:
    """A CIFAR python batch (protocol 4, whose bytes pickle fast; test_data.py reads protocols 2, 4 and 5)."""
    labels = [i % 10 for i in range(n)] if labels is None else labels
    return pickle.dumps({b"data": cifar_rows(n), b"labels": labels}, protocol=4)


def u(text: str) -> bytes:
    """BINUNICODE opcode."""
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw


def batch_ops(label_ops: bytes, n: int = 2) -> bytes:
    """A batch whose 'labels' value is the raw pickle opcodes ``label_ops`` (protocol 2)."""
    data = pickle.dumps(cifar_rows(n), protocol=2)[2:-1]  # without PROTO and STOP
    return b"\x80\x02}(" + u("data") + data + u("labels") + label_ops + b"u."


def long_binput(i: int) -> bytes:
    return b"r" + i.to_bytes(4, "little")


def long_binget(i: int) -> bytes:
    return b"j" + i.to_bytes(4, "little")


def memo_chain(n: int) -> bytes:
    """``n`` lists made empty and memoised, then each appended into the previous through the memo."""
    ops = b"".join(b"]" + long_binput(10_000 + i) + b"0" for i in range(n))
    ops += b"".join(long_binget(10_000 + i) + long_binget(10_001 + i) + b"a0" for i in range(n - 1))
    return ops + long_binget(10_000)


def reconstruct(shape_ops: bytes) -> bytes:
    """``numpy._core.multiarray._reconstruct(ndarray, <shape>, b'b')`` as pickle opcodes."""
    return (
        b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + shape_ops + b"\x85" + u("b") + b"\x87R"
    )


def gzip_bomb(header: bytes, zeros_gib: int = 1) -> bytes:
    """``header`` then ``zeros_gib`` GiB of zeros as a 1 MB gzip file (1,024 identical 1 MiB members)."""
    member = gzip.compress(bytes(1 << 20), mtime=0)
    return gz(header) + member * (1024 * zeros_gib)


def symlink(target: str, name: str) -> Callable[[Path], None]:
    def build(d: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target if target != "<self>" else d / name, d / name)

    return build


# ---------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path], Any]
    load: Callable[[Path], Any]
    error: type
    message: str  # regex, matched from the start; {d} is the directory, escaped
    risky: bool = False  # runs in the memory-limited subprocess
    unprivileged: bool = False  # needs a user who cannot read a mode-000 file

    def pattern(self, d: Path) -> str:
        return self.message.replace("{d}", re.escape(str(d)))


def mnist(d: Path, **kw: Any) -> Any:
    return load_mnist("test", path=d, download=False, **kw)


def mnist_or_digits(d: Path) -> Any:
    return load_mnist_or_digits("test", path=d)


def cifar(d: Path, **kw: Any) -> Any:
    return load_cifar10("test", path=d, download=False, **kw)


def cifar_train(d: Path, **kw: Any) -> Any:
    return load_cifar10("train", path=d, download=False, **kw)


def cifar10h(d: Path) -> Any:
    return load_cifar10h(path=d, download=False)


def with_env(value: Callable[[Path], str], load: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """Run ``load`` with ``$LDJAX_DATA_DIR`` set to ``value(d)`` and no explicit path."""

    def run(d: Path) -> Any:
        old = os.environ.get("LDJAX_DATA_DIR")
        os.environ["LDJAX_DATA_DIR"] = value(d)
        try:
            return load(d)
        finally:
            if old is None:
                del os.environ["LDJAX_DATA_DIR"]
            else:
                os.environ["LDJAX_DATA_DIR"] = old

    return run


x10k, y10k = mnist_test()
SUBSET = r"9999 images, fewer than the 10000 of the official {what} test set; pass allow_subset=True"
C = DataCorrupt
DEEP = r"{d}/cifar-10-batches-py/test_batch: nesting deeper than 16 levels"
U = DataUnavailable

CASES: list[Case] = [
    # ---- MNIST IDX, raw
    Case(
        "idx-empty",
        lambda d: write_idx(d, images=b""),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: truncated IDX file \(0 bytes, no header\)",
    ),
    Case(
        "idx-wrong-magic",
        lambda d: write_idx(d, images=idx(x10k, 2049)),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: wrong IDX magic number 2049 \(expected 2051\)",
    ),
    Case(
        "idx-int32-type",
        lambda d: write_idx(d, images=idx(x10k, 0x0C03)),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: wrong IDX magic number 3075 \(expected 2051\)",
    ),
    Case(
        "idx-header-cut",
        lambda d: write_idx(d, images=idx(x10k, 2051)[:9]),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: truncated IDX header \(9 bytes, expected 16\)",
    ),
    Case(
        "idx-negative-dim",
        lambda d: write_idx(d, images=idx(x10k, 2051, (-5, 28, 28))),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: IDX header declares a negative dimension \(-5, 28, 28\)",
    ),
    Case(
        "idx-negative-labels",
        lambda d: write_idx(d, labels=idx(y10k, 2049, (-1,))),
        mnist,
        C,
        r"{d}/t10k-labels-idx1-ubyte: IDX header declares a negative dimension \(-1,\)",
    ),
    Case(
        "idx-huge-rows",
        lambda d: write_idx(d, images=idx(x10k[:1], 2051, (2**31 - 1, 28, 28))),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: 2147483647 images, more than the 10000 of the official MNIST test set",
    ),
    Case(
        "idx-10001-images",
        lambda d: write_idx(d, images=idx(np.zeros((10001, 28, 28)), 2051)),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: 10001 images, more than the 10000 of the official MNIST test set",
    ),
    Case(
        "idx-28x27",
        lambda d: write_idx(d, images=idx(x10k[:, :, :27], 2051)),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: MNIST images must be \[n, 28, 28\], got \(10000, 28, 27\)",
    ),
    Case(
        "idx-truncated",
        lambda d: write_idx(d, images=idx(x10k, 2051)[:-10]),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: IDX file truncated: its header \(10000, 28, 28\) needs 7840016 bytes, "
        r"it holds 7840006",
    ),
    Case(
        "idx-trailing",
        lambda d: write_idx(d, images=idx(x10k, 2051) + b"\0"),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: IDX file has trailing bytes: its header \(10000, 28, 28\) needs 7840016",
    ),
    Case(
        "idx-label-10",
        lambda d: write_idx(d, labels=idx(np.full(10000, 10), 2049)),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte: label 10 out of range \(MNIST labels are 0..9\)",
    ),
    Case(
        "idx-label-count",
        lambda d: write_idx(d, labels=idx(y10k[:9999], 2049)),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte: 10000 images but labels of shape \(9999,\)",
    ),
    Case(
        "idx-subset-9999",
        lambda d: write_idx(d, idx(x10k[:9999], 2051), idx(y10k[:9999], 2049)),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte: " + SUBSET.format(what="MNIST"),
    ),
    Case(
        "idx-full-size-wrong-content",
        lambda d: write_idx(d, images=idx(np.zeros((10000, 28, 28)), 2051)),
        mnist,
        C,
        r"{d}: checksum mismatch: the t10k-images-idx3-ubyte content has md5 \w+, "
        r"the official md5 is 2646ac647ad5339dbf082846283269ea",
    ),
    # ---- MNIST IDX, gzip
    Case(
        "gz-truncated",
        lambda d: write_idx(d, images=gz(idx(x10k, 2051))[:5000], gz=True),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte.gz: truncated or corrupt gzip data \(Compressed file ended",
    ),
    Case(
        "gz-not-gzip",
        lambda d: write_idx(d, images=idx(x10k, 2051), gz=True),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte.gz: not a gzip file \(expected the gzip magic bytes 1f 8b\)",
    ),
    Case(
        "gz-bad-crc",
        lambda d: write_idx(d, images=gz(idx(x10k, 2051))[:-8] + bytes(8), gz=True),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte.gz: truncated or corrupt gzip data \(CRC check failed",
    ),
    Case(
        "gz-trailing-garbage",
        lambda d: write_idx(d, images=gz(idx(x10k, 2051)) + b"junk", gz=True),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte.gz: truncated or corrupt gzip data \(Not a gzipped file",
    ),
    Case(
        "gz-negative-dim",
        lambda d: write_idx(d, images=gz(idx(x10k[:1], 2051, (-1, 28, 28))), gz=True),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte.gz: IDX header declares a negative dimension \(-1, 28, 28\)",
    ),
    Case(
        "gz-bomb-1GiB",
        lambda d: write_idx(d, images=gzip_bomb(idx(x10k, 2051)), gz=True),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte.gz: IDX file has trailing bytes: its header \(10000, 28, 28\) needs 7840016",
        risky=True,
    ),
    Case(
        "gz-bomb-huge-header",
        lambda d: write_idx(d, images=gzip_bomb(idx(x10k[:0], 2051, (2**31 - 1, 28, 28))), gz=True),
        mnist,
        C,
        r"{d}/t10k-images-idx3-ubyte.gz: 2147483647 images, more than the 10000 of the official MNIST test set",
        risky=True,
    ),
    # ---- MNIST parsed .npz
    Case(
        "npz-truncated",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k, y=y10k)[:100000]),
        mnist,
        C,
        r"{d}/mnist_test.npz: not a readable .npz archive \(no zip end-of-directory record\)",
    ),
    Case(
        "npz-cut-at-end",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k, y=y10k)[:-30]),
        mnist,
        C,
        r"{d}/mnist_test.npz: not a readable .npz archive \(no zip end-of-directory record\)",
    ),
    Case(
        "npz-is-npy",
        lambda d: write(d, "mnist_test.npz", npy(x10k)),
        mnist,
        C,
        r"{d}/mnist_test.npz: is a .npy file, not an .npz archive",
    ),
    Case(
        "npz-empty",
        lambda d: write(d, "mnist_test.npz", b""),
        mnist,
        C,
        r"{d}/mnist_test.npz: not a readable .npz archive \(no zip end-of-directory record\)",
    ),
    Case(
        "npz-random-bytes",
        lambda d: write(d, "mnist_test.npz", os.urandom(5000)),
        mnist,
        C,
        r"{d}/mnist_test.npz: not a readable .npz archive \(no zip end-of-directory record\)",
    ),
    Case(
        "npz-1e12-rows",
        lambda d: write(
            d,
            "mnist_test.npz",
            zip_of({"x.npy": npy_header((10**12, 28, 28)), "y.npy": npy_header((10**12,))}),
        ),
        mnist,
        C,
        r"{d}/mnist_test.npz: 1000000000000 images, more than the 10000 of the official MNIST test set",
        risky=True,
    ),
    Case(
        "npz-1e12-float64",
        lambda d: write(
            d, "mnist_test.npz", zip_of({"x.npy": npy_header((10**12,), "<f8"), "y.npy": npy_header((1,))})
        ),
        mnist,
        C,
        r"{d}/mnist_test.npz: x must be uint8 pixels, got dtype float64",
        risky=True,
    ),
    Case(
        "npz-negative-shape",
        lambda d: write(
            d, "mnist_test.npz", zip_of({"x.npy": npy_header((-3, 28, 28)), "y.npy": npy_header((3,))})
        ),
        mnist,
        C,
        r"{d}/mnist_test.npz: array 'x' declares a negative dimension \(-3, 28, 28\)",
    ),
    Case(
        "npz-header-lies",
        lambda d: write(
            d,
            "mnist_test.npz",
            zip_of(
                {"x.npy": npy_header((10000, 28, 28)) + b"\0", "y.npy": npy_header((10000,)) + bytes(10000)}
            ),
        ),
        mnist,
        C,
        r"{d}/mnist_test.npz: array 'x' of shape \(10000, 28, 28\) needs 7840000 bytes of data but holds 1",
    ),
    Case(
        "npz-object-array",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k, y=np.array([None] * 10000))),
        mnist,
        C,
        r"{d}/mnist_test.npz: array 'y' holds Python objects \(a pickle\), which is never loaded",
    ),
    Case(
        "npz-missing-y",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k)),
        mnist,
        C,
        r"{d}/mnist_test.npz: expected arrays 'x' and 'y', found \['x'\]",
    ),
    Case(
        "npz-float-pixels",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k.astype(np.float32), y=y10k)),
        mnist,
        C,
        r"{d}/mnist_test.npz: x must be uint8 pixels, got dtype float32",
    ),
    Case(
        "npz-float-labels",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k, y=y10k.astype(float))),
        mnist,
        C,
        r"{d}/mnist_test.npz: y must hold integer labels, got dtype float64",
    ),
    Case(
        "npz-negative-label",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k, y=-y10k.astype(np.int64) - 1)),
        mnist,
        C,
        r"{d}/mnist_test.npz: label -\d+ out of range \(MNIST labels are 0..9\)",
    ),
    Case(
        "npz-label-count",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k, y=y10k[:10])),
        mnist,
        C,
        r"{d}/mnist_test.npz: 10000 images but labels of shape \(10,\): expected one label each",
    ),
    Case(
        "npz-subset-9999",
        lambda d: write(d, "mnist_test.npz", npz(x=x10k[:9999], y=y10k[:9999])),
        mnist,
        C,
        r"{d}/mnist_test.npz: " + SUBSET.format(what="MNIST"),
    ),
    Case(
        "npz-bad-crc",
        lambda d: write(
            d, "mnist_test.npz", (lambda b: b[:200] + bytes([b[200] ^ 1]) + b[201:])(npz(x=x10k, y=y10k))
        ),
        mnist,
        C,
        r"{d}/mnist_test.npz: not a readable .npz archive \(Bad CRC-32",
    ),
    Case(
        "npz-100-members",
        lambda d: write(d, "mnist_test.npz", zip_of({f"m{i}.npy": b"" for i in range(100)})),
        mnist,
        C,
        r"{d}/mnist_test.npz: zip directory of 100 members in \d+ bytes; an .npz of this data set "
        r"has at most 64 members",
    ),
    # ---- names that exist but are not data files
    Case(
        "npz-dangling-link",
        symlink("/nonexistent/mnist_test.npz", "mnist_test.npz"),
        mnist_or_digits,
        C,
        r"{d}/mnist_test.npz: dangling symbolic link \(its target '/nonexistent/mnist_test.npz' does not exist\)",
    ),
    Case(
        "npz-link-loop",
        symlink("<self>", "mnist_test.npz"),
        mnist_or_digits,
        C,
        r"{d}/mnist_test.npz: symbolic link loop, not a data file",
    ),
    Case(
        "npz-is-directory",
        lambda d: (d / "mnist_test.npz").mkdir(),
        mnist_or_digits,
        C,
        r"{d}/mnist_test.npz: is a directory, not a data file",
    ),
    Case(
        "npz-is-fifo",
        lambda d: os.mkfifo(d / "mnist_test.npz"),
        mnist_or_digits,
        C,
        r"{d}/mnist_test.npz: is not a regular file \(a FIFO, socket or device\), not a data file",
    ),
    Case(
        "idx-dangling-link",
        symlink("gone", IMAGES + ".gz"),
        mnist_or_digits,
        C,
        r"{d}/t10k-images-idx3-ubyte.gz: dangling symbolic link \(its target 'gone' does not exist\)",
    ),
    Case(
        "idx-in-mnist-subdir-is-directory",
        lambda d: (d / "mnist" / IMAGES).mkdir(parents=True),
        mnist_or_digits,
        C,
        r"{d}/mnist/t10k-images-idx3-ubyte: is a directory, not a data file",
    ),
    Case(
        "npz-unreadable",
        lambda d: (write(d, "mnist_test.npz", npz(x=x10k, y=y10k)).chmod(0), d.chmod(0o755)),
        mnist_or_digits,
        C,
        r"{d}/mnist_test.npz: is not readable \(permission denied\)",
        unprivileged=True,
    ),
    # ---- explicit locations that hold nothing: an error, never the digits
    Case(
        "path-nonexistent",
        lambda d: None,
        lambda d: load_mnist_or_digits("test", path=d / "nowhere"),
        U,
        r"MNIST test: none of .* found \(searched {d}/nowhere, {d}/nowhere/mnist\) and download is off\. .*"
        r"\(no fallback to the scikit-learn digits: path '{d}/nowhere' was given, so MNIST must be there\)",
    ),
    Case(
        "path-empty-directory",
        lambda d: None,
        mnist_or_digits,
        U,
        r"MNIST test: none of .* found \(searched {d}, {d}/mnist\) .*\(no fallback to the scikit-learn digits",
    ),
    Case(
        "path-is-a-file",
        lambda d: write(d, "file", b"x"),
        lambda d: load_mnist_or_digits("test", path=d / "file"),
        U,
        r"{d}/file: the data path is not a directory; it must be a directory holding the data files",
    ),
    Case(
        "path-dangling-link",
        symlink("gone", "link"),
        lambda d: load_mnist_or_digits("test", path=d / "link"),
        U,
        r"{d}/link: the data path is a dangling or looping symbolic link; it must be a directory",
    ),
    Case(
        "env-nonexistent",
        lambda d: None,
        with_env(lambda d: str(d / "nowhere"), lambda d: load_mnist_or_digits("test")),
        U,
        r"MNIST test: none of .* found \(searched {d}/nowhere, {d}/nowhere/mnist, .*\(no fallback to the "
        r"scikit-learn digits: \$LDJAX_DATA_DIR was given",
    ),
    Case(
        "env-is-a-file",
        lambda d: write(d, "file", b"x"),
        with_env(lambda d: str(d / "file"), lambda d: load_mnist_or_digits("test")),
        U,
        r"{d}/file: \$LDJAX_DATA_DIR is not a directory; it must be a directory holding the data files",
    ),
    # ---- CIFAR-10 batches (pickles)
    *(
        Case(
            f"pickle-deep-tuple-key-{depth // 1000}k",
            lambda d, depth=depth: write(d, BATCH, b"\x80\x02}K\x00" + b"\x85" * depth + b"K\x01s."),
            cifar,
            C,
            DEEP + r" \(refused before unpickling\)",
            risky=depth > 1000,  # hashing the key recursed in C: SIGSEGV at 200k, RecursionError below
        )
        for depth in (1000, 100_000, 200_000)
    ),
    Case(
        "pickle-deep-list-labels-200k",
        lambda d: write(d, BATCH, batch_ops(b"(" * 200_000 + b"K\x00" + b"l" * 200_000)),
        cifar,
        C,
        DEEP,
        risky=True,
    ),
    Case(
        "pickle-deep-dict-200k",
        lambda d: write(d, BATCH, b"\x80\x02" + b"}K\x00" * 200_000 + b"N" + b"s" * 200_000 + b"."),
        cifar,
        C,
        DEEP,
        risky=True,
    ),
    Case(
        "pickle-memo-deep-chain",
        lambda d: write(d, BATCH, batch_ops(memo_chain(5000))),
        cifar,
        C,
        DEEP + "$",
    ),
    Case(
        "pickle-memo-cycle",
        lambda d: write(d, BATCH, batch_ops(b"]" + long_binput(99) + long_binget(99) + b"a")),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: a container that holds itself",
    ),
    Case(
        "pickle-opcode-bomb-30M",
        lambda d: write(d, BATCH, b"\x80\x02" + b"]" * 30_000_000 + b"."),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: more than 500000 pickle opcodes \(refused before unpickling\)",
        risky=True,
    ),
    Case(
        "pickle-reconstruct-1e12",
        lambda d: write(d, BATCH, b"\x80\x02" + reconstruct(b"\x8a\x06\x00\x10\xa5\xd4\xe8\x00") + b"."),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: array reconstructor asked to allocate 1000000000000 bytes",
        risky=True,
    ),
    Case(
        "pickle-ndarray-called",
        lambda d: write(
            d,
            BATCH,
            b"\x80\x02}(" + u("data") + b"cnumpy\nndarray\n"
            b"M\x10'M\x00\x0c\x86"
            + u("u1")
            + b"\x86R"
            + u("labels")
            + pickle.dumps([0] * 10000, protocol=2)[2:-1]
            + b"u.",
        ),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: refusing to call numpy.ndarray directly",
    ),
    Case(
        "pickle-os-system",
        lambda d: write(d, BATCH, b"\x80\x02cposix\nsystem\n" + u("true") + b"\x85R."),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: refusing to load global posix.system",
    ),
    Case(
        "pickle-eval",
        lambda d: write(d, BATCH, b"\x80\x02c__builtin__\neval\n" + u("1") + b"\x85R."),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: refusing to load global __builtin__\.eval: only numpy arrays",
    ),
    Case(
        "pickle-codecs-decompress",
        lambda d: write(d, BATCH, b"\x80\x02c_codecs\nencode\n" + u("x") + u("zlib") + b"\x86R."),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: refusing _codecs.encode with encoding 'zlib'",
    ),
    Case(
        "pickle-persistent-id",
        lambda d: write(d, BATCH, b"\x80\x02" + u("id") + b"Q."),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: refusing to load a persistent id",
    ),
    Case(
        "pickle-object-array",
        lambda d: write(d, BATCH, batch(labels=np.array([0] * 10000, dtype=object))),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: an array of Python objects \(only numeric arrays are allowed\)",
    ),
    Case(
        "pickle-truncated",
        lambda d: write(d, BATCH, batch()[:-1000]),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: malformed pickle \(",
    ),
    Case(
        "pickle-empty",
        lambda d: write(d, BATCH, b""),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: malformed pickle \(pickle exhausted before seeing STOP\)",
    ),
    Case(
        "pickle-random-bytes",
        lambda d: write(d, BATCH, bytes(range(256)) * 4),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: malformed pickle \(",
    ),
    Case(
        "pickle-stack-underflow",
        lambda d: write(d, BATCH, b"\x80\x02a."),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: malformed pickle \(stack or memo misuse: IndexError\)",
    ),
    Case(
        "pickle-list-not-dict",
        lambda d: write(d, BATCH, pickle.dumps([1, 2, 3])),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: expected a dict with 'data' and 'labels', got list",
    ),
    Case(
        "pickle-tuple-keys",
        lambda d: write(d, BATCH, pickle.dumps({(1, (2, (3,))): 0})),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: expected keys 'data' and 'labels', found \['\(1, \(2, \(3,\)\)\)'\]",
    ),
    Case(
        "pickle-data-float",
        lambda d: write(d, BATCH, pickle.dumps({b"data": cifar_rows(3).astype(float), b"labels": [0, 1, 2]})),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: 'data' must be uint8 \[n, 3072\], got float64 \(3, 3072\)",
    ),
    Case(
        "pickle-10001-rows",
        lambda d: write(d, BATCH, batch(n=10001)),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: 10001 images, more than the 10000 of an official batch",
    ),
    Case(
        "pickle-label-11",
        lambda d: write(d, BATCH, batch(labels=[11] * 10000)),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: label out of range \[11, 11\] \(CIFAR-10 labels are 0..9\)",
    ),
    Case(
        "pickle-label-bignum",
        lambda d: write(d, BATCH, batch(labels=[2**100] * 10000)),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: 10000 images but 'labels' is object \(10000,\)",
    ),
    Case(
        "pickle-label-count",
        lambda d: write(d, BATCH, batch(labels=[0, 1])),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: 10000 images but 'labels' is int64 \(2,\)",
    ),
    Case(
        "pickle-subset-9999",
        lambda d: write(d, BATCH, batch(n=9999)),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: 9999 images, fewer than the 10000 of an official batch; "
        r"pass allow_subset=True",
    ),
    Case(
        "pickle-full-size-wrong-content",
        lambda d: write(d, BATCH, batch()),
        cifar,
        C,
        r"{d}/cifar-10-batches-py: checksum mismatch: the CIFAR-10 test content has sha256 \w+, "
        r"the official content has 9a4c74f5",
    ),
    Case(
        "pickle-too-big",
        lambda d: os.truncate(write(d, BATCH, b""), 1 << 30),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: 1073741824 bytes, more than the 67108864 a genuine file",
    ),
    Case(
        "batch-dangling-link",
        symlink("gone", BATCH),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: dangling symbolic link \(its target 'gone' does not exist\)",
    ),
    Case(
        "batch-is-directory",
        lambda d: (d / BATCH).mkdir(parents=True),
        cifar,
        C,
        r"{d}/cifar-10-batches-py/test_batch: is a directory, not a data file",
    ),
    Case(
        "batch-dir-is-file",
        lambda d: write(d, "cifar-10-batches-py", b""),
        cifar,
        C,
        r"{d}/cifar-10-batches-py: is not a directory, expected a directory of data files",
    ),
    Case(
        "batch-dir-loop",
        symlink("<self>", "cifar-10-batches-py"),
        cifar,
        C,
        r"{d}/cifar-10-batches-py: dangling or looping symbolic link, expected a directory of data files",
    ),
    Case(
        "train-batches-incomplete",
        lambda d: [write(d, f"cifar-10-batches-py/data_batch_{i}", b"") for i in (1, 2)],
        cifar_train,
        C,
        r"{d}/cifar-10-batches-py: incomplete CIFAR-10 train batches: "
        r"\['data_batch_3', 'data_batch_4', 'data_batch_5'\] missing",
    ),
    # ---- CIFAR-10 parsed .npz
    Case(
        "cifar-npz-1e12-rows",
        lambda d: write(
            d,
            "cifar10_test.npz",
            zip_of({"x.npy": npy_header((10**12, 32, 32, 3)), "y.npy": npy_header((1,))}),
        ),
        cifar,
        C,
        r"{d}/cifar10_test.npz: 1000000000000 images, more than the 10000 of the official CIFAR-10 test set",
        risky=True,
    ),
    Case(
        "cifar-npz-is-npy",
        lambda d: write(d, "cifar10_test.npz", npy_header((1,)) + b"\0"),
        cifar,
        C,
        r"{d}/cifar10_test.npz: is a .npy file, not an .npz archive",
    ),
    Case(
        "cifar-npz-chw",
        lambda d: write(
            d, "cifar10_test.npz", npz(x=np.zeros((10, 3, 32, 32), np.uint8), y=np.zeros(10, np.uint8))
        ),
        cifar,
        C,
        r"{d}/cifar10_test.npz: x must be uint8 \[n, 32, 32, 3\], got uint8 \(10, 3, 32, 32\)",
    ),
    Case(
        "cifar-npz-subset",
        lambda d: write(
            d,
            "cifar10_test.npz",
            zip_of({"x.npy": npy_header((9999, 32, 32, 3)), "y.npy": npy_header((9999,))}),
        ),
        cifar,
        C,
        r"{d}/cifar10_test.npz: " + SUBSET.format(what="CIFAR-10"),
    ),
    # ---- CIFAR-10H
    Case(
        "cifar10h-1e12-rows",
        lambda d: write(d, H, npy_header((10**12, 10), "<f8")),
        cifar10h,
        C,
        r"{d}/cifar10h-probs.npy: CIFAR-10H probabilities must be float \[10000, 10\], got float64 "
        r"\(1000000000000, 10\)",
        risky=True,
    ),
    Case(
        "cifar10h-is-npz",
        lambda d: write(d, H, npz(probs=np.zeros(3))),
        cifar10h,
        C,
        r"{d}/cifar10h-probs.npy: not a readable .npy file \(the magic string is not correct",
    ),
    Case(
        "cifar10h-pickled",
        lambda d: write(d, H, npy(np.array([{}] * 3))),
        cifar10h,
        C,
        r"{d}/cifar10h-probs.npy: array 'probs' holds Python objects",
    ),
    Case(
        "cifar10h-truncated",
        lambda d: write(d, H, npy(np.full((10000, 10), 0.1))[:-8]),
        cifar10h,
        C,
        r"{d}/cifar10h-probs.npy: array 'probs' of shape \(10000, 10\) needs 800000 bytes of data but holds 799992",
    ),
    Case(
        "cifar10h-rows",
        lambda d: np.save(d / H, np.full((10000, 10), 0.2)),
        cifar10h,
        C,
        r"{d}/cifar10h-probs.npy: CIFAR-10H rows must sum to 1 \(largest deviation 1\)",
    ),
    Case(
        "cifar10h-nan",
        lambda d: np.save(d / H, np.full((10000, 10), np.nan)),
        cifar10h,
        C,
        r"{d}/cifar10h-probs.npy: CIFAR-10H probabilities must lie in \[0, 1\]",
    ),
    Case(
        "cifar10h-wrong-content",
        lambda d: np.save(d / H, np.full((10000, 10), 0.1)),
        cifar10h,
        C,
        r"{d}/cifar10h-probs.npy: checksum mismatch: sha256 \w+, official 436ae986",
    ),
    Case(
        "cifar10h-dangling-link",
        symlink("gone", H),
        cifar10h,
        C,
        r"{d}/cifar10h-probs.npy: dangling symbolic link",
    ),
]
BY_ID = {case.id: case for case in CASES}
assert len(BY_ID) == len(CASES), "case ids must be unique"


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No ``$LDJAX_DATA_DIR``, an empty cache, and an empty directory ``d`` for the crafted files."""
    monkeypatch.delenv("LDJAX_DATA_DIR", raising=False)
    monkeypatch.setenv("LDJAX_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "d").mkdir()
    return tmp_path / "d"


def assert_clean(case: Case, d: Path, kind: str, message: str) -> None:
    assert kind == case.error.__name__, f"{case.id}: {kind}: {message}"
    assert re.match(case.pattern(d), message), f"{case.id}: {message!r} does not match {case.pattern(d)!r}"
    assert str(d) in message, f"{case.id}: the message does not name the file or directory"


SAFE = [c for c in CASES if not c.risky and not c.unprivileged]


@pytest.mark.parametrize("case", SAFE, ids=[c.id for c in SAFE])
def test_crafted_file_is_a_clean_named_error(case, isolated):
    case.build(isolated)
    with pytest.raises(case.error) as info:
        case.load(isolated)
    assert_clean(case, isolated, type(info.value).__name__, str(info.value))


# ---------------------------------------------------------------- the risky cases, under a memory limit

DRIVER = """
import json, resource, sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import test_data_crafted as t
if sys.argv[3] == "unprivileged":
    t.drop_file_capabilities()
status = open("/proc/self/status").read().split("VmSize:")[1].split()[0]
limit = int(status) * 1024 + t.HEADROOM
resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
for case_id, d in json.loads(sys.argv[2]):
    try:
        t.BY_ID[case_id].load(Path(d))
        out = {"kind": "returned", "message": ""}
    except BaseException as error:
        out = {"kind": type(error).__name__, "message": str(error)}
    print(json.dumps({"id": case_id, **out}), flush=True)
"""


def drop_file_capabilities() -> None:
    """Make this (root) process subject to file permissions: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH."""
    import ctypes

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    assert libc.capget(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())
    data[0].effective &= ~0b110  # bits 1 and 2: CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
    data[0].permitted &= ~0b110
    assert libc.capset(ctypes.byref(header), data) == 0, os.strerror(ctypes.get_errno())


def run_isolated(
    runs: list[tuple[str, Path]], *, unprivileged: bool = False, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Load each ``(case id, directory)`` in a fresh interpreter limited to its imports plus HEADROOM.

    ``unprivileged``: the interpreter first gives up root's power to read any file.
    """
    env = {k: v for k, v in os.environ.items() if k != "LDJAX_DATA_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([*env.get("PYTHONPATH", "").split(os.pathsep), str(HERE.parent)])
    env.setdefault("LDJAX_CACHE_DIR", str(Path(tempfile.gettempdir()) / "ldjax-crafted-empty-cache"))
    env.setdefault("JAX_PLATFORMS", "cpu")
    payload = json.dumps([(i, str(d)) for i, d in runs])
    mode = "unprivileged" if unprivileged else "plain"
    return subprocess.run(
        [sys.executable, "-c", DRIVER, str(HERE), payload, mode],
        cwd=HERE,  # "-c" puts the working directory first on sys.path: not a checkout's root
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


RISKY = [c for c in CASES if c.risky]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_risky_crafted_files_fail_cleanly_in_bounded_memory(tmp_path):
    runs = []
    for case in RISKY:
        d = tmp_path / case.id
        d.mkdir()
        case.build(d)
        runs.append((case.id, d))
    done = run_isolated(runs, timeout=600)
    assert done.returncode == 0, (
        f"exit {done.returncode} (negative: killed by a signal)\n{done.stderr[-3000:]}"
    )
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in results] == [c.id for c in RISKY]
    for (case_id, d), result in zip(runs, results, strict=True):
        assert_clean(BY_ID[case_id], d, result["kind"], result["message"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="capabilities and /proc are Linux's")
def test_unreadable_file_is_corrupt_not_absent(isolated):
    """Root reads any file, so there the loader runs in a subprocess that has given up that power."""
    case = BY_ID["npz-unreadable"]
    case.build(isolated)
    done = run_isolated([(case.id, isolated)], unprivileged=os.geteuid() == 0, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert_clean(case, isolated, result["kind"], result["message"])


# ---------------------------------------------------------------- what a caller may still do on purpose


def test_subset_is_loaded_when_asked_for(isolated):
    write_idx(isolated, idx(x10k[:9999], 2051), idx(y10k[:9999], 2049))
    ds = mnist(isolated, allow_subset=True)
    assert ds.name == "MNIST test (subset in the official format, 9999 images)"
    np.testing.assert_array_equal(ds.x, x10k[:9999])
    write(isolated, BATCH, batch(n=9999))
    assert (
        cifar(isolated, allow_subset=True).name
        == "CIFAR-10 test (subset in the official format, 9999 images)"
    )


def test_nothing_configured_and_nothing_found_falls_back_to_digits(isolated):
    assert load_mnist_or_digits("test").name == "scikit-learn digits 8x8 (test, 797 images)"


def test_fortran_order_npz_is_read_in_the_right_order(isolated):
    write(isolated, "mnist_test.npz", npz(x=np.asfortranarray(x10k[:5]), y=y10k[:5]))
    np.testing.assert_array_equal(mnist(isolated, allow_subset=True).x, x10k[:5])


def test_the_table_covers_every_reported_case():
    """Issue 13's crafted files (negative dims, truncated npz, .npy named .npz, 1e12-row header, gzip bomb,
    200k-deep nesting, 1k-100k deep, dangling link, loop, directory, 9,999 images) are all in the table."""
    reported = {
        "idx-negative-dim", "npz-truncated", "npz-is-npy", "npz-1e12-rows", "gz-bomb-1GiB",
        "pickle-deep-tuple-key-200k", "pickle-deep-tuple-key-1k", "pickle-deep-tuple-key-100k",
        "npz-dangling-link", "npz-link-loop", "npz-is-directory", "idx-subset-9999",
    }  # fmt: skip
    assert reported <= set(BY_ID)
    assert len(CASES) >= 56


# ---------------------------------------------------------------- counting (python tests/test_data_crafted.py)


def classify(case: Case, d: Path, result: dict | None, returncode: int) -> str:
    if result is None:
        return "crashed" if returncode else "generic"
    if result["kind"] == "returned":
        return "silently wrong"
    if result["kind"] in ("DataCorrupt", "DataUnavailable") and str(d) in result["message"]:
        return "clean"
    return "generic"


def count(root: Path) -> dict[str, list[str]]:
    """Run every case in its own memory-limited subprocess; ``{outcome: [case ids]}``."""
    outcomes: dict[str, list[str]] = {}
    for case in CASES:
        d = root / case.id
        d.mkdir()
        case.build(d)
        try:
            unprivileged = case.unprivileged and os.geteuid() == 0
            done = run_isolated([(case.id, d)], unprivileged=unprivileged, timeout=120)
            lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            outcome = classify(case, d, lines[0] if lines else None, done.returncode)
        except subprocess.TimeoutExpired:
            outcome = "crashed"
        outcomes.setdefault(outcome, []).append(case.id)
        print(f"{outcome:15} {case.id}", flush=True)
    return outcomes


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp).chmod(0o755)
        summary = count(Path(tmp))
    print(json.dumps({"tried": len(CASES), **{k: len(v) for k, v in summary.items()}}))
