"""Figures of force analysis: A/K/G term bars, class-by-class force maps, simplex learning paths and
probe log-probability curves. matplotlib is imported when a function is called.

Example:
  >>> import numpy as np, ldjax
  >>> ax = ldjax.plot.log_prob_curves(np.log([[0.5, 0.2], [0.6, 0.1]]), labels=["y+", "y-"])
  >>> ax.get_ylabel()
  'log π'
"""

from ldjax._src.plotting import class_force_matrix
from ldjax._src.plotting import force_map
from ldjax._src.plotting import log_prob_curves
from ldjax._src.plotting import simplex_paths
from ldjax._src.plotting import terms

__all__ = (
    "class_force_matrix",
    "force_map",
    "log_prob_curves",
    "simplex_paths",
    "terms",
)
