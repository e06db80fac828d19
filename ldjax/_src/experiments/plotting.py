"""Plotting pieces shared by the experiments (matplotlib is imported by the caller's ``plot``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ldjax._src import paths as paths_lib


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
