"""SFT / DPO / IPO / extend / on-policy DPO learning dynamics on a tiny transformer
(see :mod:`ldjax._src.experiments.llm_dynamics`)."""

from ldjax._src.experiments.llm_dynamics import FULL
from ldjax._src.experiments.llm_dynamics import TINY
from ldjax._src.experiments.llm_dynamics import Config
from ldjax._src.experiments.llm_dynamics import fidelity
from ldjax._src.experiments.llm_dynamics import main
from ldjax._src.experiments.llm_dynamics import plot
from ldjax._src.experiments.llm_dynamics import run

__all__ = ("FULL", "TINY", "Config", "fidelity", "main", "plot", "run")

if __name__ == "__main__":
    raise SystemExit(main())
