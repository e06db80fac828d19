"""Filter-KD vs OHT / LS / ESKD under label noise (see :mod:`ldjax._src.experiments.filter_kd`)."""

from ldjax._src.experiments.filter_kd import FULL
from ldjax._src.experiments.filter_kd import TINY
from ldjax._src.experiments.filter_kd import Config
from ldjax._src.experiments.filter_kd import fidelity
from ldjax._src.experiments.filter_kd import main
from ldjax._src.experiments.filter_kd import plot
from ldjax._src.experiments.filter_kd import run

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run")

if __name__ == "__main__":
    raise SystemExit(main())
