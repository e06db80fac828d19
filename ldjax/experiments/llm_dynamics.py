"""SFT / DPO / IPO learning dynamics on a tiny transformer (see :mod:`ldjax._src.experiments.llm_dynamics`)."""

from ldjax._src.experiments.llm_dynamics import FULL
from ldjax._src.experiments.llm_dynamics import Config
from ldjax._src.experiments.llm_dynamics import fidelity
from ldjax._src.experiments.llm_dynamics import main
from ldjax._src.experiments.llm_dynamics import plot
from ldjax._src.experiments.llm_dynamics import run
from ldjax._src.experiments.llm_dynamics import sign_table

__all__ = ("FULL", "Config", "fidelity", "main", "plot", "run", "sign_table")

if __name__ == "__main__":
    raise SystemExit(main())
