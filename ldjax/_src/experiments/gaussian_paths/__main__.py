"""``python -m ldjax._src.experiments.gaussian_paths``: the experiment's command line."""

from ldjax._src.experiments.gaussian_paths import main

raise SystemExit(main())
