"""Zig-zag paths of mislabelled examples on noisy CIFAR-3 (see :mod:`ldjax._src.experiments.cifar3_paths`)."""

from ldjax._src.experiments.cifar3_paths import FULL
from ldjax._src.experiments.cifar3_paths import TINY
from ldjax._src.experiments.cifar3_paths import Config
from ldjax._src.experiments.cifar3_paths import fidelity
from ldjax._src.experiments.cifar3_paths import main
from ldjax._src.experiments.cifar3_paths import plot
from ldjax._src.experiments.cifar3_paths import run

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run")

if __name__ == "__main__":
    raise SystemExit(main())
