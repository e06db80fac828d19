"""Tiny stand-in experiments for the CLI tests: one that works, one without data, one that fails."""

import dataclasses
import sys

import numpy as np

from ldjax._src.experiments import common
from ldjax.data import DataUnavailable

CALLS = {"ok": 0}


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
        common.Fidelity(
            "values sum", "> 0", float(np.sum(results["values"])), bool(np.sum(results["values"]) > 0)
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
