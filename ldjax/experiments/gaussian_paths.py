"""Learning paths on the 3-class Gaussian toy (see :mod:`ldjax._src.experiments.gaussian_paths`)."""

from ldjax._src.experiments.gaussian_paths import FULL
from ldjax._src.experiments.gaussian_paths import TINY
from ldjax._src.experiments.gaussian_paths import Config
from ldjax._src.experiments.gaussian_paths import fidelity
from ldjax._src.experiments.gaussian_paths import main
from ldjax._src.experiments.gaussian_paths import plot
from ldjax._src.experiments.gaussian_paths import run

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run")

if __name__ == "__main__":
    raise SystemExit(main())
