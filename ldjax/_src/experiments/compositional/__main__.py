"""``python -m ldjax._src.experiments.compositional``: the experiment's command line."""

from ldjax._src.experiments.compositional import main

raise SystemExit(main())
