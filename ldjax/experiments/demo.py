"""The built-in demonstration (see :mod:`ldjax._src.experiments.demo`)."""

from ldjax._src.experiments.demo import FULL
from ldjax._src.experiments.demo import TINY
from ldjax._src.experiments.demo import Config
from ldjax._src.experiments.demo import fidelity
from ldjax._src.experiments.demo import main
from ldjax._src.experiments.demo import plot
from ldjax._src.experiments.demo import run

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run")

if __name__ == "__main__":
    raise SystemExit(main())
