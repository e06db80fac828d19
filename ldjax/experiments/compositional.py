"""Simplicity bias towards compositional mappings: cooperating vs contradicting forces (thesis ch. 7;
see :mod:`ldjax._src.experiments.compositional`)."""

from ldjax._src.experiments.compositional import FULL
from ldjax._src.experiments.compositional import MAPS
from ldjax._src.experiments.compositional import TINY
from ldjax._src.experiments.compositional import Config
from ldjax._src.experiments.compositional import fidelity
from ldjax._src.experiments.compositional import main
from ldjax._src.experiments.compositional import plot
from ldjax._src.experiments.compositional import run

__all__ = ("FULL", "MAPS", "TINY", "Config", "fidelity", "main", "plot", "run")

if __name__ == "__main__":
    raise SystemExit(main())
