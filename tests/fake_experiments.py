"""Tiny stand-in experiments for the CLI tests: one that works, one without data, one that fails, one that
reads a data file (and records it), one with a corrupt data file, and one that waits for a gate file.

``install(setattr)`` puts them in the registry (the tests pass ``monkeypatch.setattr``); ``python
tests/fake_experiments.py ARGS`` runs ``ldjax ARGS`` with them, for the tests that need two processes.
"""

import dataclasses
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np

from ldjax._src.experiments import claims
from ldjax._src.experiments import common
from ldjax._src.experiments import registry
from ldjax.data import DataCorrupt
from ldjax.data import DataUnavailable

CALLS = {"ok": 0, "files": 0}


@dataclasses.dataclass(frozen=True)
class Config:
    size: int = 3
    scale: float = 1.0
    names: tuple[str, ...] = ("a", "b")
    flag: bool = False


FULL = Config(size=5)


def run(config, *, data_dir=None, progress=True):
    CALLS["ok"] += 1
    return {"dataset": "synthetic", "values": np.arange(config.size) * config.scale}


def plot(results, out_dir):
    common.use_agg()
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(results["values"])
    return [common.save_figure(fig, out_dir, "values")]


def fidelity(results):
    return [
        claims.check(
            "fake.values_sum",
            "the values sum to more than 0",
            value=float(np.sum(results["values"])),
            holds=bool(np.sum(results["values"]) > 0),
            criterion="> 0",
        )
    ]


def main(argv=None):
    return common.main(sys.modules[__name__], argv)


class NoData:
    Config = Config
    FULL = FULL
    plot = staticmethod(plot)
    fidelity = staticmethod(fidelity)

    @staticmethod
    def run(config, *, data_dir=None, progress=True):
        raise DataUnavailable(
            "cifar10_test.npz not found in /nowhere: put it in /nowhere or set LDJAX_DATA_DIR"
        )


class Broken(NoData):
    @staticmethod
    def run(config, *, data_dir=None, progress=True):
        raise RuntimeError("boom")


class Corrupt(NoData):
    @staticmethod
    def run(config, *, data_dir=None, progress=True):
        raise DataCorrupt("/data/train-images-idx3-ubyte.gz: IDX header claims -5 images")


class Files(NoData):
    """Reads ``data.bin`` from the data directory (or the cache's ``fake/``); without it, built-in values."""

    @staticmethod
    def run(config, *, data_dir=None, progress=True):
        from ldjax.data import cache_dir

        CALLS["files"] += 1
        root = Path(data_dir) if data_dir else Path(os.environ.get("LDJAX_DATA_DIR") or cache_dir() / "fake")
        path = root / "data.bin"
        if not path.is_file():
            if data_dir or os.environ.get("LDJAX_DATA_DIR"):
                raise DataUnavailable(f"{path} not found")
            return {"dataset": "built-in values (no data.bin)", "values": np.arange(3.0), "data_files": []}
        data = path.read_bytes()
        record = {
            "path": str(path.absolute()),
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
        }
        values = np.frombuffer(data, np.uint8).astype(float)
        return {"dataset": f"data.bin ({len(data)} bytes)", "values": values, "data_files": [record]}


class Gated(NoData):
    """Logs its start to ``$GATE.log`` and waits (at most 60 s) until the file ``$GATE`` exists."""

    @staticmethod
    def run(config, *, data_dir=None, progress=True):
        gate = Path(os.environ["LDJAX_TEST_GATE"])
        with open(f"{gate}.log", "a") as log:
            log.write(f"{os.getpid()}\n")
        deadline = time.monotonic() + 60
        while not gate.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        return {"dataset": "synthetic", "values": np.arange(3.0)}


SPECS = (
    registry.ExperimentSpec("ok", "works", "none", 0.1, 0.1, aliases=("okay",), module="fake_experiments"),
    registry.ExperimentSpec("nodata", "needs data", "CIFAR", 0.1, 0.1, module="fake_experiments"),
    registry.ExperimentSpec("broken", "fails", "none", 0.1, 0.1, module="fake_experiments"),
)
EXTRA = (
    registry.ExperimentSpec("files", "reads data.bin", "data.bin", 0.1, 0.1, module="fake_experiments"),
    registry.ExperimentSpec("corrupt", "a corrupt file", "MNIST", 0.1, 0.1, module="fake_experiments"),
    registry.ExperimentSpec("gated", "waits for a gate", "none", 0.1, 0.1, module="fake_experiments"),
)
MODULES = {"nodata": NoData, "broken": Broken, "files": Files, "corrupt": Corrupt, "gated": Gated}


def install(set_attribute, specs=SPECS):
    """Make ``specs`` the registry (``set_attribute`` is ``monkeypatch.setattr`` or ``setattr``)."""
    set_attribute(registry, "EXPERIMENTS", specs)
    set_attribute(registry.ExperimentSpec, "load", lambda spec: MODULES.get(spec.name, sys.modules[__name__]))
    for key in CALLS:
        CALLS[key] = 0


if __name__ == "__main__":
    sys.modules["fake_experiments"] = sys.modules[__name__]
    install(setattr, SPECS + EXTRA)
    from ldjax._src.app import cli

    raise SystemExit(cli.main(sys.argv[1:]))
