"""``python -m ldjax._src.experiments.filter_kd``: the experiment's command line."""

from ldjax._src.experiments.filter_kd import main

raise SystemExit(main())
