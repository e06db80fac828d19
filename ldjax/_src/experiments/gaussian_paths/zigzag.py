"""The learning paths of the toy's easy / medium / hard samples (the zig-zag): their softmax after every
update of one-hot training, summarised per group, and one hard sample's path split into its own updates
and the others'."""

from __future__ import annotations

import functools
from typing import Any

import jax
import numpy as np

from ldjax._src import paths as paths_lib
from ldjax._src.experiments import learning_paths as lp
from ldjax._src.experiments.fitting import initial_members
from ldjax._src.experiments.gaussian_paths.toy import GROUPS
from ldjax._src.experiments.gaussian_paths.toy import Config
from ldjax._src.experiments.gaussian_paths.toy import SeedData
from ldjax._src.experiments.gaussian_paths.training import make_mlp
from ldjax._src.experiments.gaussian_paths.training import train_members


def record_paths(
    config: Config, datas: list[SeedData], seeds: list[int], *, progress: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Softmax of every seed's easy, medium and hard samples after EVERY update of one-hot training.

    Each seed's run starts from the initialisation and data order of its OHT teacher. Returns
    ``(paths [steps + 1, S, m, k], probe indices [S, m], data order [steps, S, batch])``.
    """
    split0 = datas[0].split
    dim, k = split0.train.x.shape[1], split0.train.p_star.shape[1]
    apply_fn, params, keys = initial_members(functools.partial(make_mlp, dim, config.hidden, k), seeds)
    idx = np.stack([np.concatenate([d.groups[g] for g in GROUPS]) for d in datas])
    onehots = [jax.nn.one_hot(d.labels, k) for d in datas]
    run_ = train_members(
        config, apply_fn, params, keys, datas, onehots, probes=list(idx), progress=progress, desc="paths"
    )
    return run_.probes, idx, run_.batches


def group_paths(
    config: Config, paths: np.ndarray, idx: np.ndarray, datas: list[SeedData], es_steps: np.ndarray
) -> dict[str, Any]:
    """Per group: zig-zag fraction and early-stop gain per seed, and seed 0's distances and example paths."""
    out: dict[str, Any] = {}
    start = 0
    for g in GROUPS:
        size = len(datas[0].groups[g])
        gi = idx[:, start : start + size]
        p_star = np.stack([np.asarray(d.split.train.p_star)[i] for d, i in zip(datas, gi, strict=True)])
        labels = np.stack([d.labels[i] for d, i in zip(datas, gi, strict=True)])
        summary = lp.group_summary(
            paths[:, :, start : start + size],
            p_star,
            labels,
            es_steps,
            margin=config.zigzag_margin,
            stride=config.plot_every,
        )
        out[g] = {"index": gi[0], "flipped": datas[0].flipped[gi[0]], **summary}
        start += size
    return out


def update_picture(config: Config, paths: np.ndarray, order: np.ndarray, data: SeedData) -> dict[str, Any]:
    """Seed 0's hard sample with the clearest zig-zag, its path split into its own and other updates."""
    hard = data.groups["hard"]
    offset = len(data.groups["easy"]) + len(data.groups["medium"])
    sub = paths[:, 0, offset : offset + len(hard)]
    p_star, labels = np.asarray(data.split.train.p_star)[hard], data.labels[hard]
    zz = paths_lib.zigzag(sub, p_star, labels, margin=config.zigzag_margin)
    j = int(np.argmax(np.minimum(np.asarray(zz.to_p_star), np.asarray(zz.to_label))))
    own = np.any(order[:, 0] == hard[j], axis=-1)
    picture = lp.update_picture(
        sub[:, j], own, p_star[j], int(labels[j]), stride=max(1, config.plot_every // 2)
    )
    return {"example": int(hard[j]), "t_min": int(zz.t_min[j]), **picture}
