"""The statistics of the claims of :mod:`ldjax._src.experiments.head_probing`: pure functions of arrays
(the tests feed them synthetic inputs)."""

from __future__ import annotations

import numpy as np


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); 0 when either side is constant.

    Example:
      >>> from ldjax._src.experiments.head_probing import spearman
      >>> round(spearman([1, 2, 3, 4], [10, 20, 40, 30]), 6), spearman([1, 2, 3], [3, 2, 1])
      (0.8, -1.0)
    """

    def ranks(x):
        x = np.asarray(x, float)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        for value in np.unique(x):  # average ranks of ties
            r[x == value] = r[x == value].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    if np.std(ra) == 0 or np.std(rb) == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def distance_trend(energies: np.ndarray, distance: np.ndarray, cosine_distance: np.ndarray) -> float:
    """The smaller of the Spearman correlations of the energy with the Euclidean and the cosine distance.

    One seed: the arrays run over the τ sweep. Positive and near 1 when both distances grow with the energy.

    Example:
      >>> from ldjax._src.experiments.head_probing import distance_trend
      >>> distance_trend([0.1, 0.5, 0.9], [1.0, 2.0, 3.0], [0.01, 0.05, 0.04])
      0.5
    """
    return min(spearman(energies, distance), spearman(energies, cosine_distance))


def rise_then_fall(energies: np.ndarray, values: np.ndarray, scale: float) -> float:
    """How far the peak of ``values`` over the energy-sorted sweep lies above BOTH ends, over ``scale``.

    ``min(max − value at the lowest energy, max − value at the highest energy) / scale``: positive only for
    an interior peak (rise, then fall); 0 for a monotone trend.

    Example:
      >>> from ldjax._src.experiments.head_probing import rise_then_fall
      >>> rise_then_fall([0.1, 0.5, 0.9], [10.0, 12.0, 11.0], 10.0), rise_then_fall([0.1, 0.5, 0.9], [1, 2, 3], 1)
      (0.1, 0.0)
    """
    order = np.argsort(np.asarray(energies, float), kind="stable")
    v = np.asarray(values, float)[order]
    return float(min(v.max() - v[0], v.max() - v[-1]) / scale)


def mild_margin(val_accuracy: np.ndarray, test_accuracy: np.ndarray) -> float:
    """Test accuracy of the mild τ chosen by validation accuracy minus the better of no and converged probing.

    The arrays run over the τ sweep (first: no probing, last: converged); the mild τ are the ones between.

    Example:
      >>> from ldjax._src.experiments.head_probing import mild_margin
      >>> round(mild_margin([0.90, 0.95, 0.93, 0.92], [0.91, 0.94, 0.96, 0.92]), 4)  # picks τ #1 by validation
      0.02
    """
    val, test = np.asarray(val_accuracy, float), np.asarray(test_accuracy, float)
    chosen = 1 + int(np.argmax(val[1:-1]))
    return float(test[chosen] - max(test[0], test[-1]))
