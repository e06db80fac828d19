"""``python -m ldjax._src.experiments.mnist_force``: the experiment's command line."""

from ldjax._src.experiments.mnist_force import main

raise SystemExit(main())
