"""``python -m ldjax._src.experiments.head_probing``: the experiment's command line."""

from ldjax._src.experiments.head_probing import main

raise SystemExit(main())
