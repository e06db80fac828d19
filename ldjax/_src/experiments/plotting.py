"""Plotting pieces shared by the experiments (matplotlib is imported by the caller's ``plot``).

The figures themselves live in :mod:`ldjax._src.plotting` (public as ``ldjax.plot``).
"""

from ldjax._src.plotting import simplex_paths as simplex_paths
