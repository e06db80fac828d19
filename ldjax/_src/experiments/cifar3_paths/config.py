"""The settings of :mod:`ldjax._src.experiments.cifar3_paths`: quick (the defaults) and ``FULL``."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults)."""

    seed: int = 0
    num_seeds: int = 3
    data_seed: int = 0
    classes: tuple[str, ...] = ("airplane", "bird", "ship")
    noise: float = 0.2
    train_size: int = 500
    val_size: int = 300
    # 0: every image not in train / val (2,200 at the quick sizes); n > 0: the first n of them
    test_size: int = 0
    widths: tuple[int, ...] = (8, 16, 32)
    blocks: tuple[int, ...] = (1, 1, 1)
    epochs: int = 30
    batch_size: int = 50
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = False
    records_per_epoch: int = 1
    zigzag_margin: float = 0.1
    num_observed: int = 4
    num_pull: int = 8


FULL = Config(
    widths=(64, 128, 256, 512),
    blocks=(2, 2, 2, 2),
    train_size=2000,
    val_size=500,
    epochs=60,
    augment=True,
    records_per_epoch=2,
    num_observed=8,
)

#: The tiny run shared by the smoke test and the notebook under ``LDJAX_NOTEBOOK_TINY``: every phase, in seconds.
TINY = Config(
    train_size=100,
    val_size=100,
    epochs=2,
    widths=(4, 8),
    blocks=(1, 1),
    batch_size=25,
    test_size=300,
    num_seeds=2,
    num_observed=2,
    num_pull=2,
)
