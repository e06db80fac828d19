"""``python -m ldjax._src.experiments.grpo_exploration``: the experiment's command line."""

from ldjax._src.experiments.grpo_exploration import main

raise SystemExit(main())
