"""Data loaders: official formats written here, corrupt variants, a malicious pickle, downloads, real data."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import pickle
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from ldjax._src.data import cifar10 as cifar_module
from ldjax._src.data import mnist as mnist_module
from ldjax.data import DataCorrupt
from ldjax.data import DataUnavailable
from ldjax.data import RestrictedUnpickler
from ldjax.data import cache_dir
from ldjax.data import load_cifar10
from ldjax.data import load_cifar10h
from ldjax.data import load_digits
from ldjax.data import load_mnist
from ldjax.data import load_mnist_or_digits
from ldjax.data import parse_idx
from ldjax.data import provenance
from ldjax.data import read_cifar_batch

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


# ---------------------------------------------------------------- helpers writing the official formats


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """The IDX format written from its specification: big-endian int32 magic and dims, then ubytes."""
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def small_mnist(n: int = 7, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_mnist(directory: Path, split: str, x: np.ndarray, y: np.ndarray, *, gz: bool) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    names = {
        "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
    }[split]
    paths = []
    for name, data in zip(names, (idx_bytes(x, 2051), idx_bytes(y, 2049)), strict=True):
        path = directory / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(data) if gz else data)
        paths.append(path)
    return paths[0], paths[1]


def cifar_batch(x_hwc: np.ndarray, y: np.ndarray, protocol: int = 2) -> bytes:
    """A CIFAR python batch as the official files lay it out: rows of 1024 R, 1024 G, 1024 B values."""
    data = x_hwc.transpose(0, 3, 1, 2).reshape(len(x_hwc), 3072)
    batch = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": [int(v) for v in y],
        b"data": data,
        b"filenames": [b"img_%d.png" % i for i in range(len(y))],
    }
    return pickle.dumps(batch, protocol=protocol)


def small_cifar(n: int = 6, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No LDJAX_DATA_DIR, and a fresh cache directory under tmp_path."""
    monkeypatch.delenv("LDJAX_DATA_DIR", raising=False)
    monkeypatch.setenv("LDJAX_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


class _Server:
    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        del format, args


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file()) if path.exists() else []


# ---------------------------------------------------------------- MNIST IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("split", ["train", "test"])
def test_mnist_reads_official_idx_files(isolated, split, gz):
    x, y = small_mnist()
    write_mnist(isolated / "d", split, x, y, gz=gz)
    ds = load_mnist(split, path=isolated / "d", download=False, allow_subset=True)
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.x.dtype == np.uint8 and ds.y.dtype == np.uint8
    assert ds.name == f"MNIST {split} (subset in the official format, 7 images)"
    assert ds.source == str(isolated / "d")


def test_parse_idx_header_and_shape():
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(parse_idx(idx_bytes(a, 2051), magic=2051, source="f"), a)


@pytest.mark.parametrize(
    "corruption, match",
    [
        ("magic", r"t10k-images-idx3-ubyte: wrong IDX magic number 2049 \(expected 2051\)"),
        ("truncated", r"t10k-images-idx3-ubyte: IDX file truncated"),
        ("trailing", r"t10k-images-idx3-ubyte: IDX file has trailing bytes"),
        ("label_range", r"label 10 out of range"),
        ("count", r"7 images but labels of shape \(6,\)"),
        ("size", r"MNIST images must be \[n, 28, 28\], got \(7, 28, 27\)"),
    ],
)
def test_mnist_corrupt_idx(isolated, corruption, match):
    x, y = small_mnist()
    images, labels = write_mnist(isolated / "d", "test", x, y, gz=False)
    if corruption == "magic":
        raw = bytearray(images.read_bytes())  # an image file whose magic number says "labels"
        raw[:4] = (2049).to_bytes(4, "big")
        images.write_bytes(bytes(raw))
    elif corruption == "truncated":
        images.write_bytes(images.read_bytes()[:-10])
    elif corruption == "trailing":
        images.write_bytes(images.read_bytes() + b"\x00")
    elif corruption == "label_range":
        labels.write_bytes(idx_bytes(np.array([0, 1, 2, 10, 3, 4, 5], np.uint8), 2049))
    elif corruption == "count":
        labels.write_bytes(idx_bytes(y[:6], 2049))
    elif corruption == "size":
        images.write_bytes(idx_bytes(x[:, :, :27], 2051))
    with pytest.raises(DataCorrupt, match=match):
        load_mnist("test", path=isolated / "d", download=False, allow_subset=True)


def test_mnist_truncated_gzip_and_not_gzip(isolated):
    x, y = small_mnist()
    images, _ = write_mnist(isolated / "d", "test", x, y, gz=True)
    images.write_bytes(images.read_bytes()[:100])
    with pytest.raises(DataCorrupt, match=r"t10k-images-idx3-ubyte.gz: truncated or corrupt gzip data"):
        load_mnist("test", path=isolated / "d", download=False, allow_subset=True)
    images.write_bytes(idx_bytes(x, 2051))  # raw bytes under a .gz name
    with pytest.raises(DataCorrupt, match=r"t10k-images-idx3-ubyte.gz: not a gzip file"):
        load_mnist("test", path=isolated / "d", download=False, allow_subset=True)


def test_mnist_parsed_npz_and_its_validation(isolated):
    x, y = small_mnist()
    np.savez(isolated / "mnist_test.npz", x=x, y=y)
    ds = load_mnist("test", path=isolated, download=False, allow_subset=True)
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    np.savez(isolated / "mnist_test.npz", x=x.astype(np.float32), y=y)
    with pytest.raises(DataCorrupt, match=r"mnist_test.npz: x must be uint8 pixels, got dtype float32"):
        load_mnist("test", path=isolated, download=False, allow_subset=True)
    np.savez(isolated / "mnist_test.npz", x=x, y=np.array([object()] * 7, dtype=object))
    with pytest.raises(
        DataCorrupt, match=r"mnist_test.npz: array 'y' holds Python objects \(a pickle\), which is never"
    ):
        load_mnist("test", path=isolated, download=False, allow_subset=True)
    np.savez(isolated / "mnist_test.npz", images=x)
    with pytest.raises(DataCorrupt, match=r"expected arrays 'x' and 'y', found \['images'\]"):
        load_mnist("test", path=isolated, download=False, allow_subset=True)


def test_full_size_mnist_is_checked_against_the_official_md5(isolated):
    # 10,000 blank images have the official test-set size, so their content must match the official md5.
    np.savez(isolated / "mnist_test.npz", x=np.zeros((10000, 28, 28), np.uint8), y=np.zeros(10000, np.uint8))
    with pytest.raises(
        DataCorrupt,
        match=r"checksum mismatch: the t10k-images-idx3-ubyte content has md5 \w+, "
        r"the official md5 is 2646ac647ad5339dbf082846283269ea",
    ):
        load_mnist("test", path=isolated, download=False, allow_subset=True)


def test_lookup_order_path_then_env_then_cache(isolated, monkeypatch):
    xa, ya = small_mnist(3, seed=1)
    xb, yb = small_mnist(4, seed=2)
    xc, yc = small_mnist(5, seed=3)
    write_mnist(isolated / "explicit", "test", xa, ya, gz=False)
    write_mnist(
        isolated / "env" / "mnist", "test", xb, yb, gz=True
    )  # the mnist/ subdirectory is searched too
    write_mnist(cache_dir() / "mnist", "test", xc, yc, gz=True)
    assert cache_dir() == isolated / "cache"
    monkeypatch.setenv("LDJAX_DATA_DIR", str(isolated / "env"))
    assert load_mnist("test", path=isolated / "explicit", download=False, allow_subset=True).x.shape[0] == 3
    assert load_mnist("test", download=False, allow_subset=True).x.shape[0] == 4
    monkeypatch.delenv("LDJAX_DATA_DIR")
    assert load_mnist("test", download=False, allow_subset=True).x.shape[0] == 5
    # An explicit path is the only place searched: its absence is an error, not a silent fallback.
    with pytest.raises(
        DataUnavailable,
        match=r"MNIST test: none of .*t10k-images-idx3-ubyte\[\.gz\].* found "
        r"\(searched .*empty.*\).* Put the official file\(s\) in .*empty",
    ):
        load_mnist("test", path=isolated / "empty", download=False, allow_subset=True)


def test_bad_split_is_a_value_error():
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got 'val'"):
        load_mnist("val")
    with pytest.raises(ValueError, match=r"split must be 'train' or 'test', got 'val'"):
        load_cifar10("val")


# ---------------------------------------------------------------- downloads against a local server


def test_mnist_download_verified_and_atomic(isolated, monkeypatch):
    x, y = small_mnist()
    served = isolated / "served"
    images, labels = write_mnist(served, "test", x, y, gz=True)
    # The test files are not the official ones, so make their md5s the expected ones for this test.
    monkeypatch.setitem(
        mnist_module.MNIST_MD5, "t10k-images-idx3-ubyte", hashlib.md5(idx_bytes(x, 2051)).hexdigest()
    )
    monkeypatch.setitem(
        mnist_module.MNIST_MD5, "t10k-labels-idx1-ubyte", hashlib.md5(idx_bytes(y, 2049)).hexdigest()
    )
    with _Server(served) as server:
        ds = load_mnist("test", base_url=server.url, allow_subset=True)
    np.testing.assert_array_equal(ds.x, x)
    assert files_under(isolated / "cache") == [
        "mnist/t10k-images-idx3-ubyte.gz",
        "mnist/t10k-labels-idx1-ubyte.gz",
    ]
    # Second load reads the cache (no server running).
    np.testing.assert_array_equal(load_mnist("test", download=False, allow_subset=True).y, y)


def test_mnist_download_with_wrong_bytes_writes_nothing(isolated):
    x, y = small_mnist()
    served = isolated / "served"
    write_mnist(served, "test", x, y, gz=True)  # valid IDX, but not the official content
    with _Server(served) as server:
        with pytest.raises(
            DataCorrupt,
            match=r"downloaded MNIST test file 't10k-images-idx3-ubyte.gz' is corrupt "
            r"and was discarded .*checksum mismatch: md5 of the content \w+, "
            r"official 2646ac647ad5339dbf082846283269ea",
        ):
            load_mnist("test", base_url=server.url, allow_subset=True)
    (served / "t10k-images-idx3-ubyte.gz").write_bytes(b"<html>not found</html>")
    with _Server(served) as server:
        with pytest.raises(DataCorrupt, match=r"not a valid gzip file"):
            load_mnist("test", base_url=server.url, allow_subset=True)
    assert files_under(isolated / "cache") == []  # no file, no temporary left behind


def test_mnist_offline_download_names_file_and_directory(isolated):
    with pytest.raises(
        DataUnavailable,
        match=r"MNIST test file 't10k-images-idx3-ubyte.gz' is not on this machine "
        r"and could not be downloaded .*Put the official file in .*cache/mnist",
    ):
        load_mnist("test", base_url=closed_port_url(), allow_subset=True)
    with _Server(isolated / "nothing_served") as server:  # a server that answers 404
        (isolated / "nothing_served").mkdir()
        with pytest.raises(DataUnavailable, match=r"404"):
            load_mnist("test", base_url=server.url, allow_subset=True)
    assert files_under(isolated / "cache") == []


def test_cifar_download_with_wrong_bytes_writes_nothing(isolated):
    served = isolated / "served"
    served.mkdir()
    (served / "cifar-10-python.tar.gz").write_bytes(os.urandom(2048))
    with _Server(served) as server:
        with pytest.raises(
            DataCorrupt,
            match=r"cifar-10-python.tar.gz.* checksum mismatch: md5 \w+, "
            r"official c58f30108f718f92721af3b95e74349a",
        ):
            load_cifar10("test", base_url=server.url + "cifar-10-python.tar.gz", allow_subset=True)
    with pytest.raises(DataUnavailable, match=r"CIFAR-10 file 'cifar-10-python.tar.gz' .*cache/cifar10"):
        load_cifar10("test", base_url=closed_port_url() + "cifar-10-python.tar.gz")
    assert files_under(isolated / "cache") == []


def test_cifar_download_verified_and_extracted(isolated, monkeypatch):
    import io
    import tarfile

    x, y = small_cifar(4)
    served = isolated / "served"
    served.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        members = {f"data_batch_{i}": cifar_batch(*small_cifar(2, seed=i)) for i in range(1, 6)}
        members |= {"test_batch": cifar_batch(x, y), "batches.meta": pickle.dumps({b"label_names": []})}
        members["../outside"] = b"must not be extracted"
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    (served / "cifar-10-python.tar.gz").write_bytes(buffer.getvalue())
    monkeypatch.setattr(cifar_module, "CIFAR10_TAR_MD5", hashlib.md5(buffer.getvalue()).hexdigest())
    with _Server(served) as server:
        ds = load_cifar10("test", base_url=server.url + "cifar-10-python.tar.gz", allow_subset=True)
    np.testing.assert_array_equal(ds.x, x)
    expected = [
        "batches.meta",
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
    ]
    expected = ["cifar10/cifar-10-python.tar.gz"] + [f"cifar10/cifar-10-batches-py/{n}" for n in expected]
    assert files_under(isolated / "cache") == sorted(expected + ["cifar10/cifar-10-batches-py/test_batch"])
    assert load_cifar10("train", download=False, allow_subset=True).x.shape == (10, 32, 32, 3)


def test_cifar10h_download_checked(isolated):
    served = isolated / "served"
    served.mkdir()
    probs = np.random.default_rng(0).dirichlet(np.ones(10), 10000)
    np.save(served / "cifar10h-probs.npy", probs)
    with _Server(served) as server:
        with pytest.raises(DataCorrupt, match=r"checksum mismatch: sha256 \w+, official 436ae986"):
            load_cifar10h(base_url=server.url + "cifar10h-probs.npy")
    assert files_under(isolated / "cache") == []


# ---------------------------------------------------------------- CIFAR-10 batches and the restricted unpickler


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_read_in_hwc_order(isolated, protocol):
    x, y = small_cifar()
    batches = isolated / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "test_batch").write_bytes(cifar_batch(x, y, protocol))
    ds = load_cifar10("test", path=isolated, download=False, allow_subset=True)
    np.testing.assert_array_equal(ds.x, x)
    np.testing.assert_array_equal(ds.y, y)
    assert ds.classes[3] == "cat" and ds.name == "CIFAR-10 test (subset in the official format, 6 images)"
    # The first 1024 values of a row are the red plane, row-major: pixel (0, 1) red is data[1].
    data = pickle.loads(cifar_batch(x, y, protocol))[b"data"]
    assert data[0, 1] == x[0, 0, 1, 0] and data[0, 1024] == x[0, 0, 0, 1]


def test_cifar_train_batches_concatenate(isolated):
    batches = isolated / "cifar-10-batches-py"
    batches.mkdir()
    parts = [small_cifar(3, seed=s) for s in range(5)]
    for i, (x, y) in enumerate(parts, start=1):
        (batches / f"data_batch_{i}").write_bytes(cifar_batch(x, y))
    ds = load_cifar10("train", path=isolated, download=False, allow_subset=True)
    np.testing.assert_array_equal(ds.x, np.concatenate([p[0] for p in parts]))
    np.testing.assert_array_equal(ds.y, np.concatenate([p[1] for p in parts]))


class _Evil:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path('EVAL_MARKER').touch()",))


@pytest.mark.parametrize("protocol", [2, 5])
def test_malicious_pickle_is_refused_without_running(isolated, protocol, monkeypatch):
    monkeypatch.chdir(isolated)
    marker = isolated / "PWNED"
    batches = isolated / "cifar-10-batches-py"
    batches.mkdir()
    x, _ = small_cifar(2)
    payload = {b"data": x.transpose(0, 3, 1, 2).reshape(2, 3072), b"labels": _Evil(f"touch {marker}")}
    (batches / "test_batch").write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(DataCorrupt, match=r"test_batch: refusing to load global (posix|os|nt)\.system"):
        load_cifar10("test", path=isolated, download=False, allow_subset=True)
    assert not marker.exists()
    (batches / "test_batch").write_bytes(pickle.dumps([_EvilEval()], protocol=protocol))
    with pytest.raises(DataCorrupt, match=r"refusing to load global (__builtin__|builtins)\.eval"):
        read_cifar_batch(batches / "test_batch")
    assert not (isolated / "EVAL_MARKER").exists()


def test_restricted_unpickler_admits_only_listed_globals():
    import io

    blob = pickle.dumps(
        {"data": np.arange(4, dtype=np.uint8).reshape(2, 2), "n": [1, 2.5, "a", b"b"]}, protocol=2
    )
    out = RestrictedUnpickler(io.BytesIO(blob)).load()
    np.testing.assert_array_equal(out["data"], [[0, 1], [2, 3]])
    assert out["n"] == [1, 2.5, "a", b"b"]
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global collections\.OrderedDict"):
        import collections

        RestrictedUnpickler(io.BytesIO(pickle.dumps(collections.OrderedDict(a=1)))).load()


@pytest.mark.parametrize(
    "make, match",
    [
        (
            lambda x, y: cifar_batch(x, y)[:-40],
            r"test_batch: malformed pickle \(expected 9 bytes in a unicodestring4",
        ),
        (
            lambda x, y: pickle.dumps(
                {b"data": x.reshape(len(x), -1)[:, :100], b"labels": [int(v) for v in y]}
            ),
            r"'data' must be uint8 \[n, 3072\], got uint8 \(6, 100\)",
        ),
        (
            lambda x, y: pickle.dumps(
                {b"data": x.transpose(0, 3, 1, 2).reshape(6, 3072), b"labels": [0, 1, 2, 3, 4, 11]}
            ),
            r"label out of range \[0, 11\]",
        ),
        (
            lambda x, y: pickle.dumps({b"data": x.transpose(0, 3, 1, 2).reshape(6, 3072), b"labels": [0, 1]}),
            r"6 images but 'labels' is int64 \(2,\)",
        ),
        (lambda x, y: pickle.dumps([1, 2, 3]), r"expected a dict with 'data' and 'labels', got list"),
    ],
)
def test_cifar_corrupt_batches(isolated, make, match):
    x, y = small_cifar()
    batches = isolated / "cifar-10-batches-py"
    batches.mkdir()
    (batches / "test_batch").write_bytes(make(x, y))
    with pytest.raises(DataCorrupt, match=match):
        load_cifar10("test", path=isolated, download=False, allow_subset=True)


def test_cifar_parsed_npz(isolated):
    x, y = small_cifar()
    np.savez(isolated / "cifar10_test.npz", x=x, y=y, index=np.arange(6, dtype=np.int32))
    np.testing.assert_array_equal(load_cifar10("test", path=isolated, download=False, allow_subset=True).x, x)
    np.savez(isolated / "cifar10_test.npz", x=x.transpose(0, 3, 1, 2), y=y)
    with pytest.raises(
        DataCorrupt, match=r"cifar10_test.npz: x must be uint8 \[n, 32, 32, 3\], got uint8 \(6, 3, 32, 32\)"
    ):
        load_cifar10("test", path=isolated, download=False, allow_subset=True)


def test_cifar10h_validation(isolated):
    with pytest.raises(DataUnavailable, match=r"CIFAR-10H: none of .*cifar10h-probs.npy"):
        load_cifar10h(path=isolated, download=False)
    np.save(isolated / "cifar10h-probs.npy", np.full((10000, 9), 1 / 9))
    with pytest.raises(DataCorrupt, match=r"must be float \[10000, 10\], got float64 \(10000, 9\)"):
        load_cifar10h(path=isolated, download=False)
    np.save(isolated / "cifar10h-probs.npy", np.full((10000, 10), 0.2))
    with pytest.raises(DataCorrupt, match=r"rows must sum to 1 \(largest deviation 1\)"):
        load_cifar10h(path=isolated, download=False)
    np.save(isolated / "cifar10h-probs.npy", np.full((10000, 10), 0.1))
    with pytest.raises(DataCorrupt, match=r"checksum mismatch: sha256 \w+, official 436ae98620e0"):
        load_cifar10h(path=isolated, download=False)


# ---------------------------------------------------------------- scikit-learn digits fallback


def test_digits_fallback(isolated):
    all_ = load_digits()
    assert all_.x.shape == (1797, 8, 8) and all_.x.dtype == np.uint8 and int(all_.x.max()) == 255
    # Rescaling 0..16 → 0..255 is invertible: it keeps every original grey level.
    from sklearn.datasets import load_digits as sk

    np.testing.assert_array_equal(np.rint(all_.x / (255 / 16)), sk().images)
    train, test = load_digits("train"), load_digits("test")
    assert train.x.shape[0] == 1000 and test.x.shape[0] == 797
    ds = load_mnist_or_digits("test", allow_subset=True)  # nothing in the empty cache, download off
    assert ds.name == "scikit-learn digits 8x8 (test, 797 images)"
    x, y = small_mnist()
    write_mnist(isolated / "d", "test", x, y, gz=True)
    assert load_mnist_or_digits("test", path=isolated / "d", allow_subset=True).name.startswith("MNIST test")
    (isolated / "d" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    with pytest.raises(DataCorrupt):  # a broken MNIST file is an error, never silently replaced
        load_mnist_or_digits("test", path=isolated / "d", allow_subset=True)


# ---------------------------------------------------------------- real data (CI sets LDJAX_DATA_DIR)

real_data = pytest.mark.skipif(
    not os.environ.get("LDJAX_DATA_DIR"), reason="LDJAX_DATA_DIR is not set (CI sets it to ../shared/data)"
)


@real_data
def test_real_mnist_label_counts():
    test = load_mnist("test", download=False, allow_subset=True)
    assert test.x.shape == (10000, 28, 28) and test.name == "MNIST test (official, 10000 images)"
    assert np.bincount(test.y, minlength=10).tolist() == MNIST_TEST_COUNTS
    train = load_mnist("train", download=False, allow_subset=True)
    assert train.x.shape == (60000, 28, 28)
    assert np.bincount(train.y, minlength=10).tolist() == MNIST_TRAIN_COUNTS


@real_data
def test_real_cifar10_and_cifar10h():
    test = load_cifar10("test", download=False, allow_subset=True)
    assert test.x.shape == (10000, 32, 32, 3) and test.x.dtype == np.uint8
    assert np.bincount(test.y, minlength=10).tolist() == [1000] * 10
    assert test.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # the known start of test_batch
    human = load_cifar10h(download=False)
    np.testing.assert_allclose(human.probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    agreement = float(np.mean(human.probs.argmax(axis=1) == test.y))
    assert agreement == pytest.approx(0.9921, abs=5e-5)


# ---------------------------------------------------------------- provenance: which files, with which checksums


def test_every_loader_records_the_files_it_read(isolated):
    x, y = small_mnist()
    images, labels = write_mnist(isolated / "d", "test", x, y, gz=True)
    ds = load_mnist("test", path=isolated / "d", download=False, allow_subset=True)
    expected = [
        {"path": str(f), "sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "bytes": f.stat().st_size}
        for f in (images, labels)
    ]
    assert provenance(ds) == expected
    assert provenance(ds, ds, *ds.files) == expected  # each file once
    batches = isolated / "c" / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    for i in range(1, 6):
        (batches / f"data_batch_{i}").write_bytes(cifar_batch(*small_cifar(2, seed=i)))
    train = load_cifar10("train", path=isolated / "c", download=False, allow_subset=True)
    assert [f.path for f in train.files] == [str(batches / f"data_batch_{i}") for i in range(1, 6)]
    assert train.files[2].sha256 == hashlib.sha256((batches / "data_batch_3").read_bytes()).hexdigest()
    digits = load_digits("test").files
    assert len(digits) == 1 and digits[0].path.endswith("sklearn/datasets/data/digits.csv.gz")


@real_data
def test_real_files_have_the_published_sha256():
    # The sha256 values published in shared/data/README.md, an independent record of the files.
    readme = {
        "mnist_test.npz": "3ba302235efdc3e7e4e84db9ce6a6d6cbc9dd1162d4e79dd0b6a606afc745423",
        "cifar10_test.npz": "29ed15383e9755d0c850c2fac972af7871370282c0cbab386bb33f9eb7710408",
        "cifar10h_probs.npy": "436ae98620e00073f9d08585ac870573b588853e7af9f54eb1647408114af77d",
    }
    loaded = [
        load_mnist("test", download=False),
        load_cifar10("test", download=False),
        load_cifar10h(download=False),
    ]
    records = provenance(*loaded)
    assert {Path(r["path"]).name: r["sha256"] for r in records} == readme
    assert all(
        Path(r["path"]).is_absolute() and r["bytes"] == Path(r["path"]).stat().st_size for r in records
    )
