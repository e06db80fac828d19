"""Figures of the A·K·G terms, forces, learning paths and probe log-probabilities (``ldjax.plot``).

matplotlib is imported inside each function (``import ldjax`` stays light). Every function draws on the
``ax`` (or ``axes``) it is given, or on a new figure, and returns what it drew on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ldjax._src import paths as paths_lib


def _axes(ax: Any, n: int = 1, width: float = 4.0, height: float = 3.2) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return axes[0] if n > 1 else axes[0, 0]


def _names(names: Sequence[str] | None, k: int) -> list[str]:
    return list(names) if names is not None else [str(c) for c in range(k)]


def terms(
    result: Any,
    index: int = 0,
    *,
    class_names: Sequence[str] | None = None,
    axes: Any = None,
) -> Any:
    """Bars of the one-step terms for probe ``index`` of a :class:`ldjax.OneStepResult` (classifiers).

    Panels: the force ``G`` summed over the update batch; the force carried to the probe, ``Σ_u K G``;
    and the predicted change ``−η A K G`` beside the actual change of log π.

    Args:
      result: a ``OneStepResult`` with its terms (``terms=True``).
      index: which probe ``x_o``.
      class_names: names of the ``k`` classes.
      axes: three matplotlib Axes; default a new figure.

    Returns:
      The three Axes.
    """
    if result.k is None or result.a is None:
        raise ValueError("result has no terms: call one_step(..., terms=True)")
    g = np.asarray(result.g)
    if g.ndim != 2:
        raise ValueError(f"plot.terms draws classifiers (logits [k]); got a force of shape {g.shape}")
    k_row = np.asarray(result.k)[index]  # [n_u, k, k]
    carried = np.einsum("uab,ub->a", k_row, g)
    names = _names(class_names, g.shape[1])
    axes = _axes(axes, 3)
    x = np.arange(len(names))
    axes[0].bar(x, g.sum(axis=0), color="tab:red")
    axes[0].set_title("force G(x_u), summed over x_u")
    axes[1].bar(x, carried, color="tab:purple")
    axes[1].set_title(f"K(x_o, x_u) G: force at probe {index}")
    predicted, actual = np.asarray(result.predicted)[index], np.asarray(result.actual)[index]
    axes[2].bar(x - 0.2, predicted, 0.4, label="predicted −η A K G")
    axes[2].bar(x + 0.2, actual, 0.4, label="actual")
    axes[2].set_title(f"Δ log π at probe {index}")
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xticks(x, names, fontsize=7)
        ax.axhline(0.0, color="k", lw=0.5)
    return axes


def class_force_matrix(effect: np.ndarray, y_o: np.ndarray, y_u: np.ndarray, num_classes: int) -> np.ndarray:
    """``[k, k]`` mean of ``effect[o, u]`` over probe/update pairs by (class of x_o, class of x_u); NaN if empty.

    Example:
      >>> import numpy as np
      >>> from ldjax.plot import class_force_matrix
      >>> class_force_matrix(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]), np.array([1, 1]), 2)
      array([[nan, 1.5],
             [nan, 3.5]])
    """
    effect = np.asarray(effect, float)
    out = np.full((num_classes, num_classes), np.nan)
    for a in range(num_classes):
        for b in range(num_classes):
            block = effect[np.asarray(y_o) == a][:, np.asarray(y_u) == b]
            if block.size:
                out[a, b] = block.mean()
    return out


def force_map(
    matrix: np.ndarray,
    *,
    class_names: Sequence[str] | None = None,
    ax: Any = None,
    title: str = "mean Δ log π(y_o | x_o)",
    annotate: bool = True,
) -> Any:
    """A class-by-class map: rows the class of the probe, columns the class of the update (e.g.
    :func:`class_force_matrix` of the predicted changes); a diverging colour scale centred at 0.

    Returns:
      The Axes.
    """
    matrix = np.asarray(matrix, float)
    ax = _axes(ax)
    bound = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-bound, vmax=bound)
    names = _names(class_names, matrix.shape[0])
    ax.set_xticks(range(matrix.shape[1]), names[: matrix.shape[1]], fontsize=7)
    ax.set_yticks(range(matrix.shape[0]), names[: matrix.shape[0]], fontsize=7)
    ax.set_xlabel("class of the update x_u")
    ax.set_ylabel("class of the probe x_o")
    ax.set_title(title, fontsize=9)
    if annotate and matrix.size <= 400:
        for (i, j), value in np.ndenumerate(matrix):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2g}", ha="center", va="center", fontsize=6)
    ax.figure.colorbar(image, ax=ax, fraction=0.046)
    return ax


def log_prob_curves(
    log_probs: np.ndarray,
    *,
    steps: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
    ax: Any = None,
    title: str = "log π of the probes",
) -> Any:
    """Probe log-probabilities over training: ``log_probs[records, n_probe]``, one curve per probe.

    Returns:
      The Axes.
    """
    log_probs = np.asarray(log_probs, float)
    if log_probs.ndim == 1:
        log_probs = log_probs[:, None]
    steps = np.arange(log_probs.shape[0]) if steps is None else np.asarray(steps)
    ax = _axes(ax)
    names = _names(labels, log_probs.shape[1])
    for j in range(log_probs.shape[1]):
        ax.plot(steps, log_probs[:, j], label=names[j])
    ax.set_xlabel("step")
    ax.set_ylabel("log π")
    ax.set_title(title, fontsize=9)
    if log_probs.shape[1] <= 12:
        ax.legend(fontsize=7)
    return ax


def simplex_paths(
    ax: Any,
    paths: np.ndarray,
    p_star: np.ndarray,
    labels: np.ndarray,
    ids: np.ndarray,
    *,
    time: np.ndarray,
    stop_index: int,
    class_names: Sequence[str] = (),
    stop_label: str = "early stop",
    p_star_label: str = "p*",
    max_paths: int | None = None,
) -> Any:
    """Draw learning paths on the 2-simplex: one coloured track per example (colour = time).

    Marks each example's p* (star), its label e_y (square), the start (circle) and the point at
    ``stop_index`` (diamond), and writes the example's ID at the end of its path.

    Args:
      ax: a matplotlib Axes.
      paths: predicted distributions over time, ``[records, n, 3]``.
      p_star: ``[n, 3]``.
      labels: ``[n]`` training labels.
      ids: ``[n]`` example IDs to print.
      time: ``[records]`` values for the colour scale.
      stop_index: record index of the early-stopping point.
      class_names: names written at the corners.
      stop_label: legend entry of the stopping point.
      p_star_label: legend entry of p*.
      max_paths: draw at most this many examples.

    Returns:
      The scatter artist of the last track (for a colour bar).
    """
    corners = paths_lib.SIMPLEX_CORNERS
    ax.plot(*np.vstack([corners, corners[:1]]).T, color="k", lw=0.8)
    for c, name in enumerate(class_names):
        ax.annotate(name, corners[c], fontsize=8, ha="center", va="top" if c < 2 else "bottom")
    n = paths.shape[1] if max_paths is None else min(max_paths, paths.shape[1])
    stop = min(stop_index, paths.shape[0] - 1)
    track = None
    marks = (
        ("*", 170, "red", p_star_label),
        ("s", 85, "orange", "label e_y"),
        ("o", 60, "white", "start"),
        ("D", 55, "cyan", stop_label),
    )
    for j in range(n):
        xy = paths_lib.simplex_coordinates(paths[:, j])
        ax.plot(xy[:, 0], xy[:, 1], color="gray", lw=0.5)
        track = ax.scatter(xy[:, 0], xy[:, 1], c=time, cmap="viridis", s=6)
        points = (
            paths_lib.simplex_coordinates(np.asarray(p_star[j])),
            corners[int(labels[j])],
            xy[0],
            xy[stop],
        )
        for (marker, size, colour, name), point in zip(marks, points, strict=True):
            ax.scatter(
                *point,
                marker=marker,
                s=size,
                c=colour,
                edgecolors="k",
                zorder=5,
                label=name if j == 0 else None,
            )
        ax.annotate(f"#{int(ids[j])}", xy[-1], fontsize=7)
    ax.set_aspect("equal")
    ax.axis("off")
    return track
