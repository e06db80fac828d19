"""What the learning-path experiments share: rank statistics, zig-zag and early-stop statistics over
seeds, the per-update split of a path, the pull of single training examples, and the claim rows built
on them (:mod:`~ldjax._src.experiments.gaussian_paths`, :mod:`~ldjax._src.experiments.cifar3_paths`).

Every statistic is a pure function of arrays, so a test can feed a criterion a counter-example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jaxtyping import Array

from ldjax._src import paths as paths_lib
from ldjax._src.experiments import claims
from ldjax._src.first_order import split_change
from ldjax._src.losses.classification import cross_entropy_g
from ldjax._src.typing import Params

SOURCE = 'Ren, Guo & Sutherland, "Better supervisory signals by observing learning paths", ICLR 2022'


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values`` with ties given their average rank."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="stable")
    out = np.empty(len(values))
    out[order] = np.arange(1, len(values) + 1)
    for v in np.unique(values):
        tie = values == v
        out[tie] = out[tie].mean()
    return out


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); nan when either is constant.

    Example:
      >>> from ldjax._src.experiments.learning_paths import spearman
      >>> spearman([1, 2, 3, 4], [10, 20, 40, 30])
      0.8
    """
    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt(np.sum(ra**2) * np.sum(rb**2))
    return float(np.sum(ra * rb) / denom) if denom > 0 else float("nan")


def per_seed_spearman(accuracy: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Spearman of test accuracy against target distance over the runs of each seed: ``[S, M] -> [S]``."""
    accuracy, distance = np.asarray(accuracy), np.asarray(distance)
    return np.array([spearman(a, d) for a, d in zip(accuracy, distance, strict=True)])


def zigzag_fractions(
    paths: np.ndarray, p_star: np.ndarray, labels: np.ndarray, *, margin: float
) -> np.ndarray:
    """Per seed, the fraction of paths that zig-zag: ``[t, S, m, k]`` paths, ``[S, m, k]`` p* -> ``[S]``."""
    return np.array(
        [
            float(np.mean(paths_lib.zigzag(paths[:, s], p_star[s], labels[s], margin=margin).zigzag))
            for s in range(paths.shape[1])
        ]
    )


def early_stop_gain(
    paths: np.ndarray, steps: np.ndarray, p_star: np.ndarray, labels: np.ndarray
) -> np.ndarray:
    """Per seed, the mean over samples of ``‖e_y − p*‖ − ‖π(step) − p*‖``: how much closer to p* the
    prediction at ``steps[s]`` is than the label. ``[t, S, m, k]``, ``[S]``, ``[S, m, k]``, ``[S, m]`` -> ``[S]``."""
    k = p_star.shape[-1]
    out = []
    for s in range(paths.shape[1]):
        label_gap = np.linalg.norm(np.eye(k)[labels[s]] - p_star[s], axis=-1)
        es_gap = np.linalg.norm(paths[int(steps[s]), s] - p_star[s], axis=-1)
        out.append(float(np.mean(label_gap - es_gap)))
    return np.array(out)


def update_split(path: np.ndarray, own: np.ndarray, p_star: np.ndarray, label: int) -> dict[str, np.ndarray]:
    """One example's path ``[t + 1, k]`` split by update: ``own[t]`` says update t's minibatch held it.

    Returns the change of its distance to p* and to e_y at every update (``d_p_star``, ``d_label``,
    ``[t]``) and their running sums over its own updates and over the other updates.
    """
    k = path.shape[-1]
    d_star = np.linalg.norm(path - p_star, axis=-1)
    d_label = np.linalg.norm(path - np.eye(k)[label], axis=-1)
    step_star, step_label = np.diff(d_star), np.diff(d_label)
    own = np.asarray(own, bool)
    return {
        "d_p_star": step_star,
        "d_label": step_label,
        "own_p_star": np.cumsum(np.where(own, step_star, 0.0)),
        "own_label": np.cumsum(np.where(own, step_label, 0.0)),
        "other_p_star": np.cumsum(np.where(own, 0.0, step_star)),
        "other_label": np.cumsum(np.where(own, 0.0, step_label)),
    }


def group_summary(
    paths: np.ndarray,
    p_star: np.ndarray,
    labels: np.ndarray,
    es_steps: np.ndarray,
    *,
    margin: float,
    stride: int,
) -> dict[str, Any]:
    """A group of paths ``[t, S, m, k]`` (p* ``[S, m, k]``, labels ``[S, m]``, early-stop records ``[S]``):
    per seed its zig-zag fraction and early-stop gain; for seed 0 its mean distances to p* and e_y and
    three example paths (every ``stride``-th record), with each example's two moves."""
    k = paths.shape[-1]
    first, p0, y0 = paths[:, 0], p_star[0], labels[0]
    zz0 = paths_lib.zigzag(first, p0, y0, margin=margin)
    return {
        "label": y0,
        "p_star": p0,
        "paths": first[::stride, :3],
        "zigzag_fraction": zigzag_fractions(paths, p_star, labels, margin=margin),
        "early_stop_gain": early_stop_gain(paths, es_steps, p_star, labels),
        "to_p_star_seed0": np.asarray(zz0.to_p_star),
        "to_label_seed0": np.asarray(zz0.to_label),
        "mean_distance_p_star": np.linalg.norm(first - p0, axis=-1).mean(1)[::stride],
        "mean_distance_label": np.linalg.norm(first - np.eye(k)[y0], axis=-1).mean(1)[::stride],
        "label_distance_p_star": float(np.linalg.norm(np.eye(k)[labels] - p_star, axis=-1).mean()),
    }


def update_picture(
    path: np.ndarray, own: np.ndarray, p_star: np.ndarray, label: int, *, stride: int
) -> dict[str, Any]:
    """One example's path ``[t + 1, k]`` recorded every update, for the per-update picture: the path
    (every ``stride``-th record), the start and end of each of its own updates (``own[t]``: update t's
    minibatch held it), and the running sums of :func:`update_split`."""
    split = update_split(path, own, p_star, label)
    own_steps = np.flatnonzero(own)
    return {
        "label": label,
        "p_star": p_star,
        "path": path[::stride],
        "stride": stride,
        "own_steps": own_steps,
        "own_start": path[own_steps],
        "own_end": path[own_steps + 1],
        **{key: v[::stride] for key, v in split.items() if key.startswith(("own_", "other_"))},
    }


def pull_fn(apply_fn: Callable, *, learning_rate: float, batch_size: int) -> Callable:
    """A compiled ``pull(params, x_o, x, labels) -> Δπ [n, k]``: the first-order change of the probabilities
    of ``x_o`` caused by each training example j in a minibatch of ``batch_size`` (plain SGD):
    ``Δπ_j ≈ π ⊙ (−η/B · A(x_o) K(x_o, x_j) (π_j − e_{y_j}))``."""

    def one(params: Params, x_o: Array, pi_o: Array, xj: Array, yj: Array) -> Array:
        # example j's share of the force of a batch of B (the loss is the batch mean): G_j = (π_j − e_{y_j}) / B
        g_j = cross_entropy_g(apply_fn(params, xj)[None], yj[None]) / batch_size
        change = split_change(apply_fn, params, x_o[None], xj[None], g_j[None], learning_rate=learning_rate)
        return pi_o * change[0, 0]

    @jax.jit
    def chunk(params: Params, x_o: Array, xs: Array, ys: Array) -> Array:
        pi_o = jax.nn.softmax(apply_fn(params, x_o))
        return jax.vmap(one, (None, None, None, 0, 0))(params, x_o, pi_o, xs, ys)

    def pull(params: Params, x_o: Array, x: Array, labels: Array) -> np.ndarray:
        n, size = x.shape[0], 100
        out = [
            np.asarray(chunk(params, x_o, x[i : i + size], labels[i : i + size])) for i in range(0, n, size)
        ]
        return np.concatenate(out)

    return pull


def pull_on(apply_fn, params, x_o, x, labels, *, learning_rate: float, batch_size: int) -> np.ndarray:
    """Per-example one-step force on ``x_o`` (see :func:`pull_fn`): ``Δπ`` ``[n, k]``."""
    return pull_fn(apply_fn, learning_rate=learning_rate, batch_size=batch_size)(params, x_o, x, labels)


def path_claims(
    experiment: str,
    group: str,
    control: str,
    fractions: np.ndarray,
    control_fractions: np.ndarray,
    gains: np.ndarray,
    *,
    margin: float,
    section: str,
    what: str,
) -> list[claims.Row]:
    """The three path claims of an experiment, from per-seed statistics ``[S]``:
    ``<experiment>.zigzag_<group>`` (fraction of the group's paths that zig-zag, :func:`ldjax.paths.zigzag`
    with ``margin``), ``<experiment>.zigzag_<group>_vs_<control>`` (minus the control group's fraction)
    and ``<experiment>.early_stop_near_p_star`` (:func:`early_stop_gain` of the group)."""
    moves = f"moves > {margin:g} towards p*, then > {margin:g} towards e_y"
    source = f"{SOURCE}, {section}"
    return [
        claims.claim(
            f"{experiment}.zigzag_{group}",
            f"{what} first move towards p*, then towards their label: a zig-zag",
            source=source,
            paper=f"the typical path of {what} (figures, no number)",
            values=fractions,
            criterion=claims.Above(0.5, f"fraction of {group} examples whose path {moves}"),
        ),
        claims.claim(
            f"{experiment}.zigzag_{group}_vs_{control}",
            f"the zig-zag belongs to {what}: {control} examples go straight to their label",
            source=source,
            paper=f"{control} examples converge directly (figures, no number)",
            values=np.asarray(fractions) - np.asarray(control_fractions),
            criterion=claims.Above(
                0.3 if control == "easy" else 0.2,
                f"zig-zag fraction of {group} minus {control} examples (same seed; path {moves})",
            ),
        ),
        claims.claim(
            f"{experiment}.early_stop_near_p_star",
            f"at the early-stopping epoch, {what}' predictions are much closer to p* than their labels",
            source=source,
            paper="the early-stopped prediction is far nearer p* than the label (figures, no number)",
            values=gains,
            criterion=claims.Above(
                0.2, f"mean over {group} examples of ‖e_y − p*‖ − ‖π(best-val epoch) − p*‖"
            ),
        ),
    ]
