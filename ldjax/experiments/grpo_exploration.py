"""GRPO squeezes exploration, SimKO restores pass@k (see :mod:`ldjax._src.experiments.grpo_exploration`)."""

from ldjax._src.experiments.grpo_exploration import FULL
from ldjax._src.experiments.grpo_exploration import METHODS
from ldjax._src.experiments.grpo_exploration import TINY
from ldjax._src.experiments.grpo_exploration import Config
from ldjax._src.experiments.grpo_exploration import candidate_probs
from ldjax._src.experiments.grpo_exploration import fidelity
from ldjax._src.experiments.grpo_exploration import main
from ldjax._src.experiments.grpo_exploration import pass_at_k
from ldjax._src.experiments.grpo_exploration import plot
from ldjax._src.experiments.grpo_exploration import run
from ldjax._src.experiments.grpo_exploration import sample_fn

__all__ = (
    "FULL",
    "TINY",
    "METHODS",
    "Config",
    "candidate_probs",
    "fidelity",
    "main",
    "pass_at_k",
    "plot",
    "run",
    "sample_fn",
)

if __name__ == "__main__":
    raise SystemExit(main())
