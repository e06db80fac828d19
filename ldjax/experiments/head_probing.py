"""Head probing before fine-tuning: the energy and the feature change (see :mod:`ldjax._src.experiments.head_probing`)."""

from ldjax._src.experiments.head_probing import FULL
from ldjax._src.experiments.head_probing import TINY
from ldjax._src.experiments.head_probing import Config
from ldjax._src.experiments.head_probing import TransferNet
from ldjax._src.experiments.head_probing import distance_trend
from ldjax._src.experiments.head_probing import fidelity
from ldjax._src.experiments.head_probing import main
from ldjax._src.experiments.head_probing import mild_margin
from ldjax._src.experiments.head_probing import plot
from ldjax._src.experiments.head_probing import rise_then_fall
from ldjax._src.experiments.head_probing import run

__all__ = (
    "FULL",
    "TINY",
    "Config",
    "TransferNet",
    "distance_trend",
    "fidelity",
    "main",
    "mild_margin",
    "plot",
    "rise_then_fall",
    "run",
)

if __name__ == "__main__":
    raise SystemExit(main())
