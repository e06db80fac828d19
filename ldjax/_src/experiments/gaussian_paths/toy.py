"""The 3-class Gaussian toy of :mod:`ldjax._src.experiments.gaussian_paths`: its settings, each seed's draw with
exact p*, and the easy / medium / hard training samples (ranked by the distance of the label to p*)."""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import numpy as np

from ldjax._src.data.gaussian import Split
from ldjax._src.data.gaussian import gaussian_toy
from ldjax._src.data.gaussian import split_toy
from ldjax._src.data.gaussian import symmetric_label_noise

METHODS = ("OHT", "LS", "GT", "KD", "ESKD", "FilterKD")
GROUPS = ("easy", "medium", "hard")


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults). Ranks refer to 5,000 training samples and scale with ``n``."""

    seed: int = 0
    num_seeds: int = 3
    data_seed: int = 0  # base of the per-seed draws (no draw is chosen)
    n: int = 100_000
    train_fraction: float = 0.05
    val_fraction: float = 0.05
    hidden: int = 128
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 5e-4
    momentum: float = 0.9
    smoothing: float = 0.05
    temperature: float = 1.0
    ema_decay: float = 0.95
    noise: float = 0.0
    mixes: tuple[float, ...] = (0.25, 0.5, 0.75)
    path_seeds: int = 3
    zigzag_margin: float = 0.1
    plot_every: int = 8
    hard_ranks: tuple[int, ...] = (50, 150)
    medium_ranks: tuple[int, ...] = (800, 900)
    easy_ranks: tuple[int, ...] = (3000, 3100)
    methods: tuple[str, ...] = METHODS


FULL = Config(num_seeds=10, path_seeds=5, mixes=tuple(round(0.05 + 0.09 * i, 2) for i in range(10)))

#: The tiny run shared by the smoke test and the notebook under ``LDJAX_NOTEBOOK_TINY``: every phase, in seconds.
TINY = Config(n=4000, num_seeds=2, path_seeds=1, epochs=3, hidden=16, mixes=(0.5,), plot_every=2)


class SeedData(NamedTuple):
    """One seed's draw of the toy, its training labels and its easy / medium / hard samples."""

    split: Split
    labels: np.ndarray
    flipped: np.ndarray
    groups: dict[str, np.ndarray]


def group_indices(p_star: np.ndarray, labels: np.ndarray, config: Config) -> dict[str, np.ndarray]:
    """Training indices of the easy / medium / hard groups (ranks of ‖e_y − p*‖, largest first)."""
    n, k = p_star.shape
    gap = np.linalg.norm(np.eye(k)[labels] - p_star, axis=-1)
    order = np.argsort(-gap, kind="stable")
    scale = n / 5000.0
    out = {}
    for name, ranks in (
        ("easy", config.easy_ranks),
        ("medium", config.medium_ranks),
        ("hard", config.hard_ranks),
    ):
        lo = int(round(ranks[0] * scale))
        out[name] = order[lo : max(int(round(ranks[1] * scale)), lo + 1)]
    return out


def seed_data(config: Config, s: int) -> SeedData:
    """Seed ``s``'s draw of the toy (class means and samples from ``data_seed`` and ``s``)."""
    toy = gaussian_toy(key=jax.random.fold_in(jax.random.key(config.data_seed), s), n=config.n)
    split = split_toy(toy, (config.train_fraction, config.val_fraction))
    labels, flipped = split.train.y, np.zeros(split.train.y.shape[0], bool)
    if config.noise > 0:
        k = split.train.p_star.shape[1]
        key = jax.random.fold_in(jax.random.key(config.data_seed + 1), s)
        labels, flipped = symmetric_label_noise(split.train.y, k, config.noise, key=key)
    labels, p_star = np.asarray(labels), np.asarray(split.train.p_star)
    return SeedData(split, labels, np.asarray(flipped), group_indices(p_star, labels, config))


def mix_name(eta: float) -> str:
    """The method name of the noisy target ``η·e_y + (1 − η)·p*``."""
    return f"mix{eta:g}"
