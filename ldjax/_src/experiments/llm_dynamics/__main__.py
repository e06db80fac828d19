"""``python -m ldjax._src.experiments.llm_dynamics``: the experiment's command line."""

from ldjax._src.experiments.llm_dynamics import main

raise SystemExit(main())
