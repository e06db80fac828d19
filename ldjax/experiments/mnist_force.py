"""Learn a 4, watch the other digits move (see :mod:`ldjax._src.experiments.mnist_force`)."""

from ldjax._src.experiments.mnist_force import FULL
from ldjax._src.experiments.mnist_force import TINY
from ldjax._src.experiments.mnist_force import Config
from ldjax._src.experiments.mnist_force import fidelity
from ldjax._src.experiments.mnist_force import main
from ldjax._src.experiments.mnist_force import plot
from ldjax._src.experiments.mnist_force import run

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run")

if __name__ == "__main__":
    raise SystemExit(main())
