"""``python -m ldjax._src.experiments.cifar3_paths``: the experiment's command line."""

from ldjax._src.experiments.cifar3_paths import main

raise SystemExit(main())
