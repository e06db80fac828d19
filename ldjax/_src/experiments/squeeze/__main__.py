"""``python -m ldjax._src.experiments.squeeze``: the experiment's command line."""

from ldjax._src.experiments.squeeze import main

raise SystemExit(main())
