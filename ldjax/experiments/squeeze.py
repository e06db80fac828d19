"""The squeezing effect on a linear softmax head (see :mod:`ldjax._src.experiments.squeeze`)."""

from ldjax._src.experiments.squeeze import FULL
from ldjax._src.experiments.squeeze import TINY
from ldjax._src.experiments.squeeze import Config
from ldjax._src.experiments.squeeze import fidelity
from ldjax._src.experiments.squeeze import main
from ldjax._src.experiments.squeeze import plot
from ldjax._src.experiments.squeeze import run
from ldjax._src.experiments.squeeze import squeezed_probs

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run", "squeezed_probs")

if __name__ == "__main__":
    raise SystemExit(main())
