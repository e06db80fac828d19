"""Learning paths on the probability simplex: coordinates, distances, the zig-zag, ECE and Filter-KD targets.

A learning path is the sequence of one example's predicted distributions over training,
``paths[t, i, :]`` for record ``t`` and example ``i``. Ren, Guo & Sutherland (ICLR 2022) observe that
an example whose label ``e_y`` disagrees with its true distribution ``p*`` first moves TOWARDS ``p*``
(pulled by similar examples) and is memorised towards ``e_y`` only later: a zig-zag.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Bool
from jaxtyping import Float
from jaxtyping import Int

#: Corners of the 2-simplex in the plane for classes 0, 1, 2.
SIMPLEX_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(0.75)]])


def simplex_coordinates(probs: Float[ArrayLike, "*b 3"]) -> Float[np.ndarray, "*b 2"]:
    """Map 3-class distributions to the plane: corners (0, 0), (1, 0), (0.5, √0.75).

    Example:
      >>> import numpy as np
      >>> from ldjax.paths import simplex_coordinates
      >>> simplex_coordinates(np.array([0.0, 0.0, 1.0])).round(3).tolist()
      [0.5, 0.866]
    """
    probs = np.asarray(probs)
    if probs.shape[-1] != 3:
        raise ValueError(f"probs must have 3 classes on its last axis, got shape {probs.shape}")
    return probs @ SIMPLEX_CORNERS


def distances(paths: Float[ArrayLike, "t n k"], target: Float[ArrayLike, "n k"]) -> Float[Array, "t n"]:
    """Euclidean distance of every point of every path to a per-example target distribution.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax.paths import distances
      >>> distances(jnp.array([[[1.0, 0.0]], [[0.5, 0.5]]]), jnp.array([[0.5, 0.5]])).tolist()
      [[0.7071067690849304], [0.0]]
    """
    paths, target = jnp.asarray(paths), jnp.asarray(target)
    if paths.ndim != 3 or target.shape != paths.shape[1:]:
        raise ValueError(f"paths must be [t, n, k] and target [n, k]; got {paths.shape} and {target.shape}")
    return jnp.sqrt(jnp.sum((paths - target[None]) ** 2, axis=-1))


class ZigZag(NamedTuple):
    """Per-example summary of a path's zig-zag (see :func:`zigzag`).

    Attributes:
      d_start: distance to p* at the first record ``[n]``.
      d_min: minimum distance to p* along the path ``[n]``.
      d_end: distance to p* at the last record ``[n]``.
      t_min: record index where the minimum is reached (the first of ties) ``int [n]``.
      to_p_star: how far the path first moved towards p*, ``d_start − d_min`` ``[n]``.
      to_label: how far it then moved towards its label, ``‖π(t_min) − e_y‖ − ‖π(end) − e_y‖`` ``[n]``.
      zigzag: both moves exceed the margin ``bool [n]``.
    """

    d_start: Array
    d_min: Array
    d_end: Array
    t_min: Array
    to_p_star: Array
    to_label: Array
    zigzag: Array


def zigzag(
    paths: Float[ArrayLike, "t n k"],
    p_star: Float[ArrayLike, "n k"],
    labels: Int[ArrayLike, " n"],
    *,
    margin: float = 0.0,
) -> ZigZag:
    """Does each path first move towards ``p*`` and THEN towards its label ``e_y``, each by ``margin``?

    With ``d*`` the Euclidean distance to ``p*`` and ``d_y`` the distance to ``e_y``, ``t_min`` the
    record of the smallest ``d*``: ``zigzag[i]`` is ``d*(0) − d*(t_min) > margin`` (the move towards
    p*) and ``d_y(t_min) − d_y(end) > margin`` (the later move towards the label). A path that heads
    straight for its label has ``t_min = 0`` (no first move) when the label is far from p*; a path
    that settles at p* never makes the second move.

    Args:
      paths: predicted distributions ``[t, n, k]`` (record ``t``, example ``n``).
      p_star: the true distributions ``[n, k]``.
      labels: the training labels ``int [n]``.
      margin: the distance each move must exceed (0: any strict move).

    Returns:
      :class:`ZigZag`.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax.paths import zigzag
      >>> path = jnp.array([[[0.5, 0.5]], [[0.8, 0.2]], [[0.1, 0.9]]])  # p* = (0.8, 0.2), y = 1
      >>> bool(zigzag(path, jnp.array([[0.8, 0.2]]), jnp.array([1]), margin=0.1).zigzag[0])
      True
    """
    paths = jnp.asarray(paths)
    d = distances(paths, p_star)
    labels = jnp.asarray(labels)
    if labels.shape != paths.shape[1:2]:
        raise ValueError(f"labels must be [n={paths.shape[1]}], got shape {labels.shape}")
    e_y = jax.nn.one_hot(labels, paths.shape[-1], dtype=paths.dtype)
    d_label = distances(paths, e_y)
    t_min = jnp.argmin(d, axis=0)
    d_min = jnp.min(d, axis=0)
    idx = jnp.arange(paths.shape[1])
    to_p_star = d[0] - d_min
    to_label = d_label[t_min, idx] - d_label[-1]
    both = (to_p_star > margin) & (to_label > margin)
    return ZigZag(d[0], d_min, d[-1], t_min.astype(jnp.int32), to_p_star, to_label, both)


def expected_calibration_error(
    probs: Float[ArrayLike, "n k"], labels: Int[ArrayLike, " n"], *, num_bins: int = 15
) -> Float[Array, ""]:
    r"""Top-label ECE :math:`\sum_b \frac{|B_b|}{n}\,|\mathrm{acc}(B_b) - \mathrm{conf}(B_b)|` over equal-width bins.

    Bins are ``(b/B, (b+1)/B]`` on the confidence ``max_k π_k`` (the first also holds 0).

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax.paths import expected_calibration_error
      >>> round(float(expected_calibration_error(jnp.array([[0.9, 0.1], [0.9, 0.1]]), jnp.array([0, 1]))), 3)
      0.4
    """
    probs, labels = jnp.asarray(probs), jnp.asarray(labels)
    if probs.ndim != 2 or labels.shape != probs.shape[:1]:
        raise ValueError(f"probs must be [n, k] and labels [n]; got {probs.shape} and {labels.shape}")
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}")
    conf = jnp.max(probs, axis=-1)
    predicted = jnp.argmax(probs, axis=-1)
    correct = (predicted == labels.astype(predicted.dtype)).astype(probs.dtype)
    b = jnp.clip(jnp.ceil(conf * num_bins).astype(jnp.int32) - 1, 0, num_bins - 1)
    gap = jnp.zeros(num_bins, probs.dtype).at[b].add(correct - conf)
    return jnp.sum(jnp.abs(gap)) / probs.shape[0]


def filter_targets(
    records: Float[ArrayLike, "t n k"],
    *,
    decay: float = 0.95,
    seen: Bool[ArrayLike, "t n"] | None = None,
    initial: Float[ArrayLike, "n k"] | None = None,
) -> Float[Array, "n k"]:
    r"""Filter-KD targets: each example's moving average :math:`q \leftarrow \alpha q + (1-\alpha)\,\pi_t`.

    The rule of the authors' code (Ren, Guo & Sutherland, ICLR 2022): an example's first record
    sets ``q`` to that prediction; every later record ``π_t`` of the example moves it to
    ``α·q + (1 − α)·π_t``. With ``seen``, record ``t`` of example ``i`` counts only where
    ``seen[t, i]`` (the authors update the table when a minibatch visits the example, and an epoch
    that drops its last incomplete batch does not visit every example); an example never seen keeps
    the uniform distribution.

    Args:
      records: the (temperature-scaled) softmax of each example at each record ``[t, n, k]``.
      decay: α (the authors: 0.95).
      seen: which records count ``bool [t, n]`` (default: all).
      initial: a starting ``q`` ``[n, k]``: then every record, the first included, is averaged in.

    Returns:
      ``q`` after the last record ``[n, k]``; rows sum to 1 when the records' rows do.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax.paths import filter_targets
      >>> q = filter_targets(jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]]), decay=0.75)  # 0.75·e_0 + 0.25·e_1
      >>> [round(v, 4) for v in q[0].tolist()]
      [0.75, 0.25]
    """
    records = jnp.asarray(records)
    if records.ndim != 3:
        raise ValueError(f"records must be [t, n, k], got shape {records.shape}")
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"decay must be in [0, 1), got {decay}")
    t, n, k = records.shape
    seen = jnp.ones((t, n), bool) if seen is None else jnp.asarray(seen, bool)
    if seen.shape != (t, n):
        raise ValueError(f"seen must be [t={t}, n={n}], got shape {seen.shape}")
    started = jnp.zeros(n, bool) if initial is None else jnp.ones(n, bool)
    q0 = jnp.full((n, k), 1.0 / k, records.dtype) if initial is None else jnp.asarray(initial, records.dtype)

    def step(carry: tuple[Array, Array], rec: tuple[Array, Array]) -> tuple[tuple[Array, Array], None]:
        q, started = carry
        p, s = rec
        mixed = jnp.where(started[:, None], decay * q + (1.0 - decay) * p, p)
        return (jnp.where(s[:, None], mixed, q), started | s), None

    (q, _), _ = jax.lax.scan(step, (q0, started), (records, seen))
    return q
